// `tapegrad html --mlp`: a tiny MLP on one training example, recorded on a scalar tape by
// nn::expand, for the step-through page (ag::step_page). The program half of `html` is in
// tapegrad.cpp, with the other subcommands on programs.

#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <tapegrad/tape.hpp>

namespace tapegrad {

struct MlpExample {
  std::string sizes;  // --mlp 2,2,1; empty: the page is of a program
  std::string act = "sigmoid";
  std::string out = "sigmoid";
  std::string loss = "mse";
  std::string x = "1,0";
  std::string y = "1";
  std::uint64_t seed = 0;
};

// The options of `html` beyond a program's: --mlp, --act, --out, --loss, --x, --y, --seed.
void add_mlp_options(CLI::App* html, MlpExample& m);

// The help's part on pages.
extern const char* const kHtmlHelp;

struct RecordedMlp {
  ag::Value loss;
  std::string title;  // "MLP 2-2-1, sigmoid, MSE loss; x = (1, 0), y = 1; seed 1"
};

// Builds the MLP (seeded as `tapegrad train` seeds it) and records its loss on (x, y). Throws
// ag::Error, naming the option, for bad sizes, activations, losses or values.
RecordedMlp record_mlp(ag::Tape& tape, const MlpExample& m);

}  // namespace tapegrad
