// What every example shares: its command line (--seed, --out, --quick), data
// files for plots, and gnuplot, which draws every picture from those files.

#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <tapegrad/nn/plot.hpp>
#include <vector>

namespace example {

// The options every example takes. --quick makes the run short (fewer seeds,
// epochs or sizes) for the end-to-end tests; the outcome it shows must be the same.
struct Options {
  std::uint64_t seed = 1;
  std::filesystem::path out = "build/examples-out";
  bool quick = false;
  bool plots = true;  // --no-plots skips gnuplot (the numbers are still printed)
};

// Parses the common options plus whatever `extra` adds to the CLI11 app, prints
// help or a usage error (exit code 2) as CLI11 does, creates the output folder,
// and returns the options. `about` is the example's one-line description.
Options parse(int argc, char** argv, std::string_view about,
              const std::function<void(CLI::App&)>& extra = {});

// Runs `main_body` and turns an ag::Error or a std::exception into one line on
// stderr and exit code 2, as the tapegrad command does.
int run(const std::function<int()>& main_body);

// Data files and gnuplot: shared with `tapegrad train` (nn/plot.hpp).
using nn::plot::gnuplot;
using nn::plot::png_terminal;
using nn::plot::write_columns;

// Prints "wrote PATH" for each picture: the examples end with where they are.
void announce(std::span<const std::filesystem::path> files);

}  // namespace example
