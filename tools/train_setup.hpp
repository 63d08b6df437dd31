// What `tapegrad train` makes of its options, with no CLI11, Graphviz, gnuplot or BLAS in it, so
// that the native command and the playground's WebAssembly module build the same run from them.

#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tapegrad/nn/data.hpp>
#include <tapegrad/nn/layers.hpp>
#include <tapegrad/nn/optim.hpp>
#include <tapegrad/nn/trainer.hpp>
#include <vector>

namespace tapegrad {

// The options of `train` and `graph` by their long names (the command line fills them; the
// playground reads them from its config object).
struct NnOptions {
  // train
  std::string data;    // empty: the --resume checkpoint's
  std::string layers;  // empty: the data's sizes around --hidden
  std::string hidden;  // empty: the data set's default
  std::string act;     // empty: the checkpoint's, else relu
  std::string out;     // empty: the checkpoint's, else the loss's first output
  std::string loss;    // empty: the checkpoint's, else what --layers and --out suggest
  std::string opt = "adam";
  double lr = 0;            // 0 and the epochs, batch and schedule below: the data set's
  std::int64_t epochs = 0;  // default (Note [Defaults per data set])
  std::int64_t batch = 0;
  std::string schedule;
  std::uint64_t seed = 0;
  std::string init;
  std::string save;
  std::string resume;
  bool json = false;
  std::string plot;
  bool check_finite = false;
  std::string norm;           // train and graph: the MLP's layers (nn::MLPExtras); empty: the
  double dropout = 0;         // checkpoint's, else none (and 0)
  double clip_grad_norm = 0;  // each used when given on the command line
  double clip_grad_value = 0;
  double noise = -1;      // --noise and --n: a synthetic set's (Note [Synthetic data options]),
  std::int64_t rows = 0;  // when given or resumed; -1 and 0: its row of kSynthetic
  // --noise-percent: TensorFlow Playground's control, made --noise (Note [The noise in percent])
  double noise_percent = 0;
  std::string features;  // --features; empty: the checkpoint's, else none (the data's columns)
  double test_fraction = 0.25;  // --test-fraction: the rows a synthetic set or CSV file holds out
  double l1 = 0;                // --l1 and --l2: nn::FitOptions's penalties on every parameter
  double l2 = 0;
  std::string task;  // --task classification or regression; empty: the checkpoint's, else
                     // the data's (Note [Regression tasks])
  double val = 0;    // --val: the share of the training rows held out for
  std::int64_t early_stop = 0;  // validation, --early-stop's patience (0: none) and
  std::string save_best;        // --save-best's file (nn's Note [Validation and early stopping])
  // graph
  std::string checkpoint;
  std::string output;
  // The options on the command line, rather than their defaults: "--lr", "--act", ...
  std::set<std::string, std::less<>> given;
  bool was_given(std::string_view option) const { return given.contains(option); }
};

// The --data names, for the help and the messages.
inline constexpr const char* kDataSets =
    "xor, moons, circles, spirals, blobs, gaussian, two-spirals, plane, multi-gaussian, "
    "fashion-mnist, "
    "csv:FILE[:LABEL_COLUMN] (with --task regression csv:FILE[:COLUMN,COLUMN...], the targets)";

// Note [Regression tasks]
// ~~~~~~~~~~~~~~~~~~~~~~~
// --task regression trains on real-valued targets (nn's Note [Classification or regression]):
// the MLP has one output per target, the loss is mse (default), l1 or huber, and the run
// reports R² and RMSE where a classifier reports accuracy. plane and multi-gaussian (TensorFlow
// Playground's regression sets) are regression sets and take no other task; a CSV file is read
// as either, its targets the columns after the last ':' (default the last column); every other
// set is classification. The task is in the checkpoint ("model.task"), so --resume and the
// plots know it.
// Whether the (resolved) options make a regression run.
bool is_regression(const NnOptions& o);

// The data of a run: its training rows and, unless there are too few to hold any out, its test
// rows.
struct Data {
  std::string name;
  std::string file;  // the CSV file read, if any: an input no output may replace
  nn::Dataset train, test;
  bool has_test = false;
};

// The most parameters (weights and biases) an MLP of train, graph or html may have: 400 MB of
// weights, 1.6 GB with their gradients and Adam's buffers.
inline constexpr std::int64_t kMaxMlpParameters = 100'000'000;

// "2,16,16,1" as layer sizes; ag::Error naming `option` unless at least two positive sizes
// making at most kMaxMlpParameters parameters.
std::vector<std::int64_t> parse_layers(const std::string& text, std::string_view option);

// "2,16,16,1".
std::string layers_str(const std::vector<std::int64_t>& sizes);

// "16,16" (or "none", no hidden layer) as hidden layer sizes.
std::vector<std::int64_t> parse_hidden(const std::string& text);

// Whether --data names a generated set, which takes --n and --noise (Note [Synthetic data
// options]).
bool is_synthetic(std::string_view data);

// --features as nn's list; "none" (or not given) is the data's own columns.
std::vector<nn::InputFeature> input_features(const std::string& text);

// --features as the checkpoint says it: the names joined by commas, or none.
std::string features_text(const std::string& text);

// The help's table of the defaults per data set (Note [Defaults per data set]).
std::string defaults_help();

// The checks of options given on the command line, before a checkpoint or the data is read.
void check_given_options(const NnOptions& o);

// Fills in what is still left out after a --resume checkpoint's values are adopted: the data
// set's defaults (Note [Defaults per data set]), --n and --noise, the loss and the output.
void resolve_defaults(NnOptions& o);

// The data --data names, made and split (a resolved NnOptions: resolve_defaults).
Data load_data(const NnOptions& o);

// The MLP's sizes: --layers, checked against the data, or the data's around --hidden.
std::vector<std::int64_t> model_sizes(const NnOptions& o, const Data& d, nn::LossKind loss);

// --norm and --dropout, which train and graph must agree on: they decide the checkpoint's names.
nn::MLPExtras model_extras(const NnOptions& o);

// A --clip-grad-* bound, when given: a positive number.
std::optional<double> clip_bound(const NnOptions& o, double bound, std::string_view option);

// --init: the weights drawn again (xavier, he, zeros, uniform); empty keeps PyTorch's default.
void initialize(nn::MLP& mlp, const std::string& how, std::uint64_t seed);

// --opt and --lr: SGD or Adam over the MLP's parameters.
std::unique_ptr<nn::Optimizer> make_optimizer(nn::MLP& mlp, const NnOptions& o);

// nn::fit's options for a fresh run: epochs, batches, seed, loss, test rows, diagnostics,
// anomaly mode, clipping and schedule (the caller adds output, checkpoints and callbacks).
nn::FitOptions fit_options(const NnOptions& o, const Data& d, nn::LossKind loss,
                           std::optional<double> clip_norm, std::optional<double> clip_value);

// The metadata `train --save` writes beside the weights (Note [What a checkpoint says of its
// model], train.cpp): the model, the data and the training options, each a string.
std::map<std::string, std::string> checkpoint_metadata(const NnOptions& o,
                                                       const std::vector<std::int64_t>& sizes,
                                                       const Data& d);

// Note [The command line's JSON]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// `grad --json` and `train --json` build their documents as nlohmann::ordered_json (keys in the
// order written; nlohmann escapes the strings) and print them with json_text, in the layout they
// have always had and scripts may match: Python's json.dumps layout (", " and ": "), a double as
// the shortest text that reads back as the same double ("-12", "0.1", not nlohmann's "-12.0"),
// NaN and infinities, which JSON lacks, as null.
using Json = nlohmann::ordered_json;
std::string json_text(const Json& value);

// The last line of `train --json`: the trained model's accuracies, the last epoch's loss and
// diagnostics.
// A regression's summary (Note [Regression tasks]) has r2 and rmse on the test split, and
// train_r2 and train_rmse, instead of the accuracies.
struct Summary {
  bool regression = false;
  double train_accuracy = 0;
  double test_accuracy = 0;  // NaN without test rows: null
  double train_r2 = 0, train_rmse = 0;
  double r2 = 0, rmse = 0;  // NaN without test rows: null
  double loss = 0;
  double seconds = 0;
  std::size_t epochs = 0;
  std::vector<double> grad_norms;
  std::vector<double> dead_fraction;
  // With --val: the epoch of the lowest validation loss, and whether --early-stop ended the run.
  bool validated = false;
  std::size_t best_epoch = 0;
  bool stopped_early = false;
};
Json summary_json(const Summary& s);

}  // namespace tapegrad
