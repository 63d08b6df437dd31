// The layers that train and evaluate differently, as torch.nn's do: Dropout, LayerNorm and
// BatchNorm1d (whose running statistics are buffers, saved in checkpoints under torch's names).

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tapegrad/nn/module.hpp"
#include "tapegrad/random.hpp"

namespace nn {

// "path.weight" and "path.bias" of a module, rebuilt only when its path changes, so that a warm
// forward pass allocates nothing (as Linear's labels).
class AffineLabels {
 public:
  void update(const std::string& path);
  const std::string& weight() const { return weight_; }
  const std::string& bias() const { return bias_; }

 private:
  std::string path_, weight_, bias_;
  bool set_ = false;
};

// torch.nn.Dropout: in training, each element is zeroed with probability p and the survivors are
// scaled by 1 / (1 - p) ("inverted" dropout), so evaluation, where it is the identity, needs no
// rescaling. The mask comes from the module's own generator, seeded here: a run is repeatable,
// and each forward draws a new mask. The generator's position is not saved in checkpoints, so a
// run resumed from one draws other masks than an uninterrupted run would (torch's does too,
// unless the caller saves its RNG state).
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, std::uint64_t seed = 0);
  ag::Tensor forward(ag::Tensor x) override;
  std::string describe() const override;
  double p;

 private:
  ag::Rng rng_;
  std::vector<float> mask_f32_;  // reused from forward to forward, one per dtype
  std::vector<double> mask_f64_;
};

// torch.nn.LayerNorm over the last axis: y = (x - mean) / sqrt(var + eps) * weight + bias, the
// mean and (biased) variance taken over each row's `features` elements, in training and in
// evaluation alike. weight starts at 1, bias at 0; without elementwise_affine there are none.
// (torch also normalizes over several trailing axes; this takes one.)
class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::int64_t features, double eps = 1e-5, bool elementwise_affine = true);
  ag::Tensor forward(ag::Tensor x) override;
  std::string describe() const override;
  Parameter* weight;  // null without elementwise_affine
  Parameter* bias;
  std::int64_t features;
  double eps;

 private:
  AffineLabels labels_;
};

struct BatchNormOptions {
  double eps = 1e-5;
  // The running statistics' update rate: r = (1 - momentum) r + momentum batch. Unset: a
  // cumulative average over the batches seen (momentum = 1 / num_batches_tracked), as torch's
  // momentum=None.
  std::optional<double> momentum = 0.1;
  bool affine = true;               // a learned weight (from 1) and bias (from 0) per feature
  bool track_running_stats = true;  // without: batch statistics in evaluation too, no buffers
};

// torch.nn.BatchNorm1d on (rows, features): in training, each feature is normalized by the
// batch's mean and biased variance, and the running mean and unbiased variance are updated (the
// buffers running_mean, from 0, and running_var, from 1, and num_batches_tracked, int64); in
// evaluation the running statistics normalize instead, so one row's output does not depend on the
// others'. (torch also takes (rows, features, length); this takes rows.)
class BatchNorm1d : public Module {
 public:
  explicit BatchNorm1d(std::int64_t features, BatchNormOptions options = {});
  ag::Tensor forward(ag::Tensor x) override;
  std::string describe() const override;
  Parameter* weight;  // null without affine
  Parameter* bias;
  Buffer* running_mean;  // null without track_running_stats
  Buffer* running_var;
  Buffer* num_batches_tracked;
  std::int64_t features;
  BatchNormOptions options;

 private:
  AffineLabels labels_;
};

// Throws ag::Error when `model` holds a BatchNorm1d and `rows` training rows in batches of
// `batch_size` leave a last batch of one row, which it cannot normalize in training: nn::fit
// asks before the first step, where torch fails in the middle of an epoch.
void check_batch_norm_batches(Module& model, std::int64_t rows, std::int64_t batch_size);

}  // namespace nn
