// The command line's shared helpers: checks of output paths, standard output and option values
// (seeds, counts), each defined once in cli_options.cpp; layer sizes and the JSON writer are in
// train_setup.hpp.

#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "train_setup.hpp"  // parse_layers, Json and json_text, which the playground shares

namespace tapegrad {

// Checks that `path` ends in one of `extensions` (any case) and can be written (its missing
// directories created: Note [Missing parent directories]) before anything is computed or written,
// so a bad name costs nothing and leaves nothing behind; `formats` says which extensions are known,
// `what` names the file in the message (Note [What a write replaces]).
void check_output_path(const std::string& path, std::initializer_list<std::string_view> extensions,
                       std::string_view formats, std::string_view what);

// Throws ag::Error unless `path` can take a graph (.dot, .svg or .png; Note [Missing parent
// directories]).
void check_graph_path(const std::string& path);

// Note [Missing parent directories]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// An output's missing parent directories are created, as `mkdir -p` and PyTorch users' scripts
// do (-o plots/g.svg, --save runs/m.safetensors, --plot plots/moons). The check comes first,
// with the other checks of the output: the nearest ancestor that exists must be a directory
// ("a/b is a file, not a directory"). The directories are created only just before the file is
// written, so a run that fails earlier leaves nothing behind; the write itself stays atomic.

// Throws ag::Error "PREFIX: DIR is a file, not a directory" unless the nearest existing ancestor
// of `path` is a directory (missing ones are created by create_parent_directories).
void check_parent_directories(const std::string& path, std::string_view prefix);

// Creates `path`'s missing parent directories; ag::Error "PREFIX: cannot create DIR: REASON".
void create_parent_directories(const std::string& path, std::string_view prefix);

// Throws ag::Error "OPTION OUTPUT: it is an input of this run (INPUT); give another file" if
// `output` is the same file as one of `inputs` (empty names and "-" are skipped), so that an
// output never replaces what the run reads.
void check_not_input(const std::string& output, std::string_view option,
                     std::initializer_list<std::string_view> inputs);

// Flushes standard output; ag::Error "cannot write to standard output: REASON" if any of it was
// lost (a full disk, /dev/full), since an exit status of 0 would say it is there.
void check_standard_output();

// Accepts a --seed: a non-negative integer, digits only, below 2^64 (CLI11 would clamp a larger
// one to 2^64 - 1 without a word).
CLI::Validator seed_validator();

// Accepts an integer option (--epochs, --batch): digits with an optional sign, within int64
// (CLI11 would read 1e20 as a double and clamp it). Ranges are checked where it is used.
CLI::Validator integer_validator();

}  // namespace tapegrad
