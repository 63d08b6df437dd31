// Loss functions, composed from the tape's ops so that backward and the teaching views see every
// step: MSE, L1, Huber, binary cross-entropy (on probabilities and on logits), cross-entropy and
// NLL over classes, and the hinge loss, each with torch.nn's options; and LossKind, the name by
// which the trainer and the CLI choose one.

#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tapegrad/nn/metrics.hpp"  // Scores
#include "tapegrad/tensor.hpp"

namespace nn {

// What a loss returns, as torch.nn's `reduction`: the mean of the per-element (per-row, for the
// class losses) losses, their sum, or all of them unreduced (none), in the input's shape.
enum class Reduction { mean, sum, none };

// mean (or sum) of (prediction - target)^2.
ag::Tensor mse_loss(ag::Tensor prediction, ag::Tensor target, Reduction r = Reduction::mean);

// |prediction - target|, as torch.nn.L1Loss; its gradient at a difference of 0 is 0 (sign(0)).
ag::Tensor l1_loss(ag::Tensor prediction, ag::Tensor target, Reduction r = Reduction::mean);

// torch.nn.HuberLoss: 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), d = prediction -
// target: quadratic near the target, linear (robust to outliers) beyond delta > 0.
ag::Tensor huber_loss(ag::Tensor prediction, ag::Tensor target, Reduction r = Reduction::mean,
                      double delta = 1.0);
// torch.nn.SmoothL1Loss: huber_loss / beta (0.5 d^2 / beta, else |d| - 0.5 beta); beta = 0 is
// the L1 loss, as in PyTorch (whose gradient there at d = 0 is -1, ours sign(0) = 0, as L1's).
ag::Tensor smooth_l1_loss(ag::Tensor prediction, ag::Tensor target, Reduction r = Reduction::mean,
                          double beta = 1.0);

// L = -(y log p + (1 - y) log(1 - p)), the notes' cross-entropy for a
// probability p in [0, 1]. Each log is clamped at -100, as PyTorch's BCELoss
// does, so p = 0 or 1 gives a large finite loss instead of infinity, and its
// gradient stays finite there too (the bce op, not a composition of logs).
ag::Tensor bce_loss(ag::Tensor probability, ag::Tensor target, Reduction r = Reduction::mean);

// The same loss on a logit z (p = sigmoid(z)), computed stably as
// softplus(z) - y z: no overflow or log(0) for any z.
ag::Tensor bce_with_logits(ag::Tensor logit, ag::Tensor target, Reduction r = Reduction::mean);

struct BceWithLogitsOptions {
  Reduction reduction = Reduction::mean;
  // torch's pos_weight: the positive term's weight, one per column of the target (its last axis)
  // or one for all; > 1 counts a missed positive more (recall), < 1 less. Empty: all 1.
  std::vector<double> pos_weight = {};
};
// -(w y log σ(z) + (1 - y) log(1 - σ(z))) with w the column's pos_weight, computed stably as
// (1 - y) z + (1 + (w - 1) y) softplus(-z).
ag::Tensor bce_with_logits(ag::Tensor logit, ag::Tensor target,
                           const BceWithLogitsOptions& options);

// -log softmax(z)[label] per row of z (rows, classes), averaged (or summed).
ag::Tensor cross_entropy(ag::Tensor logits, std::span<const std::int32_t> labels,
                         Reduction r = Reduction::mean);

// Note [Class weights]
// ~~~~~~~~~~~~~~~~~~~~
// torch.nn's class weights w (one per class) scale row i's loss by w[label_i], and the mean is
// then a weighted mean: sum_i w[label_i] l_i / sum_i w[label_i], so the loss stays on the scale
// of an unweighted one whatever the weights. With probability targets (no label per row) the
// mean divides by the number of rows instead, as PyTorch does.
struct CrossEntropyOptions {
  Reduction reduction = Reduction::mean;
  std::vector<double> weight = {};  // one per class (Note [Class weights]); empty: all 1
  // In [0, 1]: the target is (1 - s) one_hot(label) + s / classes, torch's label_smoothing.
  double label_smoothing = 0;
};
// torch.nn.functional.cross_entropy with class labels: per row,
// (1 - s) w[y] (-log p[y]) + (s / C) sum_c w[c] (-log p[c]), p = softmax(z).
ag::Tensor cross_entropy(ag::Tensor logits, std::span<const std::int32_t> labels,
                         const CrossEntropyOptions& options);
// The same with a probability per class as the target (shape (rows, classes), rows summing to 1,
// as torch accepts): per row, -sum_c w[c] t[c] log p[c], t smoothed as above first.
ag::Tensor cross_entropy(ag::Tensor logits, ag::Tensor target_probabilities,
                         const CrossEntropyOptions& options = {});

struct NllOptions {
  Reduction reduction = Reduction::mean;
  std::vector<double> weight = {};  // one per class (Note [Class weights]); empty: all 1
};
// torch.nn.NLLLoss: -w[y] log_probabilities[y] per row of (rows, classes) log-probabilities (a
// LogSoftmax output); cross_entropy(z, y) is nll_loss(log_softmax(z), y).
ag::Tensor nll_loss(ag::Tensor log_probabilities, std::span<const std::int32_t> labels,
                    const NllOptions& options = {});

// micrograd's max-margin loss: relu(1 - y score) with labels y in {-1, +1}.
ag::Tensor hinge_loss(ag::Tensor score, ag::Tensor target, Reduction r = Reduction::mean);

// What the model outputs and which loss it is trained with.
enum class LossKind {
  bce,              // probabilities (a sigmoid output), binary cross-entropy
  bce_with_logits,  // one logit per row
  cross_entropy,    // one logit per class
  mse,              // probabilities or values against 0/1 targets, or a regression's targets
  hinge,            // one score per row against -1/+1 targets (micrograd)
  l1,               // a regression's targets: mean |prediction - target| (l1_loss)
  huber,            // a regression's targets: huber_loss with delta 1, as torch.nn.HuberLoss()
};
// "bce", "bce_logits", "ce", "mse", "hinge", "l1", "huber"; throws ag::Error listing them.
LossKind parse_loss(std::string_view name);
std::string_view loss_name(LossKind kind);
// What a model trained with `loss` outputs, which decides its predictions (nn::predict):
// probabilities for bce and mse, logits (or hinge scores) otherwise.
Scores scores_of(LossKind loss);

}  // namespace nn
