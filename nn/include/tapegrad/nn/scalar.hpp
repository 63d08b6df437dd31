// A tiny MLP expanded into scalar nodes: every weight, bias and unit its own
// node, so a 2-2-1 net can be drawn and stepped through weight by weight.

#pragma once

#include <span>
#include <string>
#include <vector>

#include "tapegrad/nn/layers.hpp"
#include "tapegrad/tape.hpp"

namespace nn {

// The scalar tape's view of an MLP on one example. Names follow the lecture:
// inputs x1, x2, ...; layer l's weights w<l>_<j><i> (to unit j from input i,
// 1-based; an underscore between j and i when either passes 9), biases
// b<l>_<j>, pre-activations z<l>_<j> and units h<l>_<j>; the net's output y
// and, with a target, the loss L.
struct ScalarNet {
  std::vector<ag::Value> inputs;
  // Every weight and bias, in named_parameters() order and row-major within
  // each, so grads can be compared with (or copied to) the Parameters.
  std::vector<ag::Value> parameters;
  std::vector<std::vector<ag::Value>> units;  // per layer, after its activation
  std::vector<ag::Value> outputs;
  ag::Value loss;  // empty without a target
};

enum class ScalarLoss { none, mse, bce };

// Records `mlp` on the example `x` (and, with a loss, the target `y`) on a
// scalar tape. The MLP may use any activation that is an Elementwise module
// (the op table's activation rows: sigmoid, tanh, relu, leaky_relu, elu...);
// anything else (PReLU, Maxout, other modules) is an ag::Error.
// A net with more than kMaxScalarWeights weights is refused: the point is to draw it.
inline constexpr std::int64_t kMaxScalarWeights = 64;
ScalarNet expand(MLP& mlp, ag::Tape& tape, std::span<const double> x,
                 ScalarLoss loss = ScalarLoss::none, std::span<const double> y = {});

// What a caller larger than the lecture's 2-2-1 nets may change (the playground's network lab
// draws one point's pass through a 2-8-8-1 net, bounded by the drawing budget instead).
struct ScalarNetOptions {
  std::int64_t max_weights = kMaxScalarWeights;
  // The inputs' names, one per input ("x1", "x1^2"); empty: x1, x2, ...
  std::span<const std::string> input_names = {};
  // One value per weight and bias, in ScalarNet::parameters' order, recorded instead of the
  // MLP's own; empty: the MLP's. Central differences move one at a time.
  std::span<const double> parameters = {};
};
// The same expansion without a loss (the caller records its own on the outputs).
ScalarNet expand(MLP& mlp, ag::Tape& tape, std::span<const double> x,
                 const ScalarNetOptions& options);

}  // namespace nn
