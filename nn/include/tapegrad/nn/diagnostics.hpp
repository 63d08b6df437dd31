// The lecture's diagnostics, read off the model and the tape: the gradient
// norm of each layer (vanishing gradients) and the fraction of dead units.

#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/nn/layers.hpp"
#include "tapegrad/tensor.hpp"

namespace nn {

// ||dL/dW|| of each Linear layer's weight, first layer first: the numbers the
// notes compare to show the vanishing gradient.
std::vector<double> layer_grad_norms(MLP& mlp);

// Counts, per activation layer, the units whose input was <= 0 for every
// example observed: for ReLU those units pass no gradient at all (dead); for
// Leaky ReLU, PReLU and ELU the same units still learn through the negative
// slope, which is the point of those activations.
class DeadUnits {
 public:
  // Scans a recorded forward pass: every relu, leaky_relu, prelu and elu node
  // of a 2-D (batch, units) tensor recorded inside a module, grouped by the
  // scope (module path) that recorded it, in tape order. Nodes outside any
  // module (a hinge loss's relu) are not layers and are left out.
  void observe(ag::TensorTape& tape);
  // Per layer: its scope and the fraction of its units seen only at <= 0.
  std::vector<std::pair<std::string, double>> fractions() const;
  void clear() { layers_.clear(); }

 private:
  struct Layer {
    std::string scope;
    std::vector<char> alive;  // per unit: an input > 0 was seen
  };
  std::vector<Layer> layers_;
};

}  // namespace nn
