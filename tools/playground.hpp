// `tapegrad playground -o PAGE.html`: writes the playground page (playground/, the engine in
// WebAssembly) that the build of build-wasm/ made, wherever the user wants it.

#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace tapegrad {

// Adds the `playground` subcommand to `app`, its -o option stored in `output`.
CLI::App* add_playground_command(CLI::App& app, std::string& output);

// Copies the built page to `output` (atomically: a failed write leaves nothing). Throws ag::Error
// for a bad output name, or when the page is not built, saying how to build it.
int run_playground(const std::string& output);

}  // namespace tapegrad
