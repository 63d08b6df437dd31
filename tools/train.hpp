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
