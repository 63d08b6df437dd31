// The playground's network lab as a session: a config object (the long names of `tapegrad
// train`'s options) made into the very run `tapegrad train` makes, trained in slices, and drawn.

#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <tapegrad/nn/scalar.hpp>
#include <tapegrad/tape.hpp>
#include <vector>

#include "train_setup.hpp"

namespace tapegrad {

// The config object's keys as `tapegrad train`'s options (playground/README.md): "data",
// "hidden" ([8, 8]; [] for none), "act", "out", "loss", "lr", "epochs", "batch", "seed", "noise",
// "n", "features" (["x1", "x1*x2"]), "opt", "l1", "l2", "test_fraction", "init". Keys absent take
// train's defaults; "task" ("classification" or "regression") is --task, and "noise_percent"
// --noise-percent, TensorFlow Playground's noise control (Note [The noise in percent],
// train_setup.cpp). ag::Error names a bad key or value; the values themselves are checked later,
// by the command line's own checks and messages.
NnOptions options_from_config(const std::string& config_json);

// `tapegrad train ...`: the command line that makes the same run as `o` natively.
std::string command_line(const NnOptions& o, std::int64_t epochs);

// Note [The network lab's session]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A session builds what run_train builds for the same options, in the same order (train_setup:
// the data, the MLP, its initialization, the optimizer, fit's options), and trains it with
// nn::fit one epoch per call, each starting at first_epoch: N epochs in any slices are the N
// epochs of `tapegrad train --epochs N` (tests/test_network_lab.cpp checks it). It keeps the
// points before --features, for the page to draw, split by the same seeded shuffle as the
// expanded rows (Dataset::split shuffles by row count and seed alone). The first epoch whose loss
// or weights are not finite stops it: it trains no more, and its snapshot says why.
class NetworkLab {
 public:
  explicit NetworkLab(NnOptions options);
  NetworkLab(const NetworkLab&) = delete;  // fit's options point at data_'s test rows
  NetworkLab& operator=(const NetworkLab&) = delete;

  // net_create's object: layers, inputs, command, classes, domain, train, test and a snapshot.
  Json created();
  // Trains `epochs` more epochs (fewer if it diverges) and returns the snapshot.
  Json train(std::int64_t epochs);
  // The snapshot's keys (Note [The network lab's session]); see the protocol for each.
  Json snapshot();
  // `tapegrad train --json`'s last line after the config's epochs, trained as that command does
  // (one fit call); for a fresh session.
  Json summary();

  // Note [A point's pass in the graph lab]
  // ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
  // A click on the map shows one point's forward and backward pass through the current weights
  // in the graph lab, which draws and steps a scalar tape: so the pass is recorded on ag::Tape
  // by nn::expand (every weight, bias, product, sum and unit its own node, named as the lecture
  // names them: w1_12, b1_2, z1_2, h1_2, ŷ), with the session's loss on the output (named L).
  // Its leaves are the point's input features, as training computes them (in float: the very
  // numbers the tensor tape is fed), then every weight and bias in named_parameters() order.
  // The target is the data point's label when the point is one of the data's (its coordinates
  // exactly), else the class the network predicts there (the pass then shows how the network
  // would reinforce its own answer). The regularization penalties (--l1, --l2) are not part of
  // the point's loss: they are not a point's. tests/test_network_lab.cpp checks that every
  // gradient is the tensor tape's for a batch of that one point: the lab shows the real backward.
  struct Point {
    double x1 = 0, x2 = 0;
    std::int32_t label = 0;
    std::string label_from;          // "train" or "test": the data point's; or "prediction"
    std::vector<std::string> names;  // the leaves': the features, then the weights and biases
    std::vector<double> values;      // the leaves' values, in that order
    std::size_t nodes = 0;           // on the tape
  };
  // The point at (x1, x2), recorded once to check that the graph lab can draw it. ag::Error for
  // a regression session, a model with other layers than Linear and activations, or a pass past
  // the drawing budget (ag's Note [The drawing budget]), saying how large it is.
  Point point(double x1, double x2);
  struct RecordedPoint {
    ag::Value loss;
    std::vector<ag::Value> leaves;  // in Point::names' order
  };
  // The point's pass on `tape` with `values` for its leaves (point.values, or one of them moved
  // for a central difference).
  RecordedPoint record_point(ag::Tape& tape, const Point& point, std::span<const double> values);

  // The model as `tapegrad train --save` writes it (nn's Note [Checkpoint format]): the weights
  // and biases with PyTorch's names, and train's metadata of the model, data and options; not
  // the optimizer's state (a file to use elsewhere, as in PyTorch, rather than to resume).
  // Encoded as base64 (RFC 4648, padded), the text a page turns back into a file to download.
  std::string safetensors_base64();

  // Note [Rates changed in place]
  // ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
  // TensorFlow Playground keeps the weights when its learning rate changes (src/playground.ts)
  // and training goes on from there. set_rates({"lr": 0.1, "l1": 0, "l2": 0.001}, any of the
  // three) does that: the rate is the optimizer's (nn::Optimizer::set_lr, which the next step
  // uses; SGD's and Adam's buffers are kept) and the penalties are fit's options (FitOptions::l1,
  // l2), both read afresh by each epoch's fit call. The values are checked as the command line
  // checks --lr, --l1 and --l2. The command shown says the new rates: from here on it reproduces
  // a run that had them from the start, not this one. Returns {lr, l1, l2, command}.
  Json set_rates(const std::string& rates_json);

  const NnOptions& options() const { return o_; }
  nn::MLP& model() { return *mlp_; }
  std::int64_t epoch() const { return epoch_; }

  static constexpr std::int64_t kMapSize = 50;        // the output's map, cells a side
  static constexpr std::int64_t kNeuronMapSize = 16;  // each hidden unit's map
  static constexpr std::int64_t kMaxEpochsPerCall = 100'000;

 private:
  struct Forward {
    std::vector<double> output;               // probability of class 1 per grid point
    std::vector<std::vector<double>> hidden;  // per hidden layer: (points, units)
    std::vector<std::int64_t> units;          // per hidden layer
  };
  Forward forward_grid(std::int64_t size);
  nn::ScalarNet expand_point(ag::Tape& tape, const Point& point, std::span<const double> values);
  void check_finite();

  NnOptions o_;
  Data data_;    // the rows trained on, after --features
  Data points_;  // the same rows before --features: the page's (x1, x2)
  std::vector<std::int64_t> sizes_;
  nn::LossKind loss_;
  bool regression_ = false;  // Note [Regression tasks]
  std::unique_ptr<nn::MLP> mlp_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  nn::FitOptions fit_;
  std::int64_t epoch_ = 0;
  nn::EpochStats last_;
  double lo_ = 0, hi_ = 0;  // the maps' square, x1 and x2 alike
  bool diverged_ = false;
  std::string message_;
};

}  // namespace tapegrad
