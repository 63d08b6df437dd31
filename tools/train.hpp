// The tapegrad program's nn subcommands: `train` (an MLP on a data set with nn::fit) and
// `graph` (a checkpointed MLP's forward pass drawn at module level). Errors a user can cause
// are thrown as ag::Error, which main() turns into one line on stderr and exit code 2.

#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tapegrad {

// Throws ag::Error unless `path` can take a graph (.dot, .svg or .png in an existing
// directory); defined in tapegrad.cpp.
void check_graph_path(const std::string& path);

// Throws ag::Error "OPTION OUTPUT: it is an input of this run (INPUT); give another file" if
// `output` is the same file as one of `inputs` (empty names and "-" are skipped), so that an
// output never replaces what the run reads; defined in tapegrad.cpp.
void check_not_input(const std::string& output, std::string_view option,
                     std::initializer_list<std::string_view> inputs);

// Flushes standard output; ag::Error "cannot write to standard output: REASON" if any of it was
// lost (a full disk, /dev/full), since an exit status of 0 would say it is there.
void check_standard_output();

// The most parameters (weights and biases) an MLP of train, graph or html may have: 400 MB of
// weights, 1.6 GB with their gradients and Adam's buffers.
inline constexpr std::int64_t kMaxMlpParameters = 100'000'000;

// "2,16,16,1" as layer sizes; ag::Error naming `option` unless at least two positive sizes
// making at most kMaxMlpParameters parameters.
std::vector<std::int64_t> parse_layers(const std::string& text, std::string_view option);

// Accepts a --seed: a non-negative integer, digits only.
CLI::Validator seed_validator();

struct NnOptions;

struct NnCommands {
  CLI::App* train = nullptr;
  CLI::App* graph = nullptr;
  std::shared_ptr<NnOptions> options;
};

// Registers `train` and `graph` on `app`.
NnCommands add_nn_commands(CLI::App& app);

// Runs whichever of the two was parsed; returns the exit code.
int run_nn_command(const NnCommands& commands);

}  // namespace tapegrad
