// Loss functions, composed from the tape's ops so that backward and the
// teaching views see every step: MSE, binary cross-entropy (on probabilities
// and on logits), cross-entropy over class logits, and the hinge loss.

#pragma once

#include <cstdint>
#include <span>

#include "tapegrad/tensor.hpp"

namespace nn {

enum class Reduction { mean, sum };

// mean (or sum) of (prediction - target)^2.
ag::Tensor mse_loss(ag::Tensor prediction, ag::Tensor target, Reduction r = Reduction::mean);

// L = -(y log p + (1 - y) log(1 - p)), the notes' cross-entropy for a
// probability p in [0, 1]. Each log is clamped at -100, as PyTorch's BCELoss
// does, so p = 0 or 1 gives a large finite loss instead of infinity, and its
// gradient stays finite there too (the bce op, not a composition of logs).
ag::Tensor bce_loss(ag::Tensor probability, ag::Tensor target, Reduction r = Reduction::mean);

// The same loss on a logit z (p = sigmoid(z)), computed stably as
// softplus(z) - y z: no overflow or log(0) for any z.
ag::Tensor bce_with_logits(ag::Tensor logit, ag::Tensor target, Reduction r = Reduction::mean);

// -log softmax(z)[label] per row of z (rows, classes), averaged (or summed).
ag::Tensor cross_entropy(ag::Tensor logits, std::span<const std::int32_t> labels,
                         Reduction r = Reduction::mean);

// micrograd's max-margin loss: relu(1 - y score) with labels y in {-1, +1}.
ag::Tensor hinge_loss(ag::Tensor score, ag::Tensor target, Reduction r = Reduction::mean);

}  // namespace nn
