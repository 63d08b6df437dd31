// What the tapegrad command line reads before CLI11 parses it: a command's arguments checked
// against its options (a misspelt one named with the nearest, a program that starts with '-').

#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tapegrad {

// The number of single-character insertions, deletions, substitutions and swaps of two
// neighbours that turn `a` into `b` (Damerau-Levenshtein, optimal string alignment): a swap is
// one typo, as in --epcohs.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The one name of `names` that `word` (3 characters or more, dashes aside) begins; else the
// one nearest to `word` if near enough to be a typo of it: at most 1 edit for a word of up to 4
// characters, 2 beyond, and fewer than half its characters. Ties go to the first in `names`.
std::optional<std::string> nearest(std::string_view word, std::span<const std::string> names);

// Note [Arguments before CLI11]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// CLI11 2.1 reports a misspelt option as "The following argument was not expected: --epoch",
// or not at all when a required option is missing ("--data is required"), and takes a program
// that starts with '-' ('-x^2') for an option. So the arguments after the command's name are
// read once before CLI11 sees them, with the command's own option table: a word that starts
// with '-' and is neither a number, an option, nor the value of the option before it is an
// error naming the nearest option (`nearest`). A program that starts with '-' is recognised by
// a character no option name has ('-x^2', '-(a + b)', '-2*x'); for a command that takes a
// program the arguments are then reordered as CLI11 reads them without guessing: the options
// with their values, then '--', then the program and its NAME=VALUE inputs in their order.

// The arguments of `command` (those after its name) checked and, where a program starts with
// '-', reordered (Note [Arguments before CLI11]). Throws ag::Error naming an unknown option,
// with the nearest option or, for a command that takes a program, the '--' remedy.
std::vector<std::string> check_arguments(const CLI::App& command, std::vector<std::string> args,
                                         bool takes_program);

// The names of `command`'s options as written on the command line: "--epochs", "-f".
std::vector<std::string> option_names(const CLI::App& command);

}  // namespace tapegrad
