// Loss functions, composed from the tape's ops so that backward and the
// teaching views see every step: MSE, binary cross-entropy (on probabilities
// and on logits), cross-entropy over class logits, and the hinge loss; and
// LossKind, the name by which the trainer and the CLI choose one.

#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "tapegrad/nn/metrics.hpp"  // Scores
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

// What the model outputs and which loss it is trained with.
enum class LossKind {
  bce,              // probabilities (a sigmoid output), binary cross-entropy
  bce_with_logits,  // one logit per row
  cross_entropy,    // one logit per class
  mse,              // probabilities or values against 0/1 targets
  hinge,            // one score per row against -1/+1 targets (micrograd)
};
// "bce", "bce_logits", "ce", "mse", "hinge"; throws ag::Error listing them.
LossKind parse_loss(std::string_view name);
std::string_view loss_name(LossKind kind);
// What a model trained with `loss` outputs, which decides its predictions (nn::predict):
// probabilities for bce and mse, logits (or hinge scores) otherwise.
Scores scores_of(LossKind loss);

}  // namespace nn
