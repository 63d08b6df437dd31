// Dropout, LayerNorm and BatchNorm1d, composed from the tape's ops (mean, sqrt, products), so
// that backward, the graphs and the step views see every step of a normalization.

#include "tapegrad/nn/norm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <type_traits>

#include "constant_like.hpp"
#include "tapegrad/nn/init.hpp"

namespace nn {

namespace {

const char* python_bool(bool b) { return b ? "True" : "False"; }

}  // namespace

void AffineLabels::update(const std::string& path) {
  if (set_ && path == path_) return;
  path_ = path;
  weight_ = path.empty() ? "weight" : path + ".weight";
  bias_ = path.empty() ? "bias" : path + ".bias";
  set_ = true;
}

Dropout::Dropout(double p_, std::uint64_t seed) : p(p_), rng_(seed) {
  if (!(p >= 0 && p <= 1)) ag::fail("Dropout: p must be in [0, 1], not {}", p);
}

ag::Tensor Dropout::forward(ag::Tensor x) {
  if (!is_training() || p == 0) return x;
  // Inverted dropout: kept elements are scaled by 1 / (1 - p), so the expected output is x.
  const double keep_scale = p < 1 ? 1 / (1 - p) : 0;
  const auto draw = [&](auto& mask) {
    using T = typename std::remove_reference_t<decltype(mask)>::value_type;
    mask.resize(std::size_t(x.numel()));  // no allocation once warm
    for (T& m : mask) m = rng_.uniform(0, 1) < p ? T(0) : T(keep_scale);
    return x.tape().constant<T>(x.shape(), std::span<const T>(mask));
  };
  return x * (x.dtype() == ag::DType::f64 ? draw(mask_f64_) : draw(mask_f32_));
}

std::string Dropout::describe() const { return fmt::format("Dropout(p={})", p); }

LayerNorm::LayerNorm(std::int64_t features_, double eps_, bool elementwise_affine)
    : weight(elementwise_affine ? &register_parameter("weight", ag::Shape{features_}) : nullptr),
      bias(elementwise_affine ? &register_parameter("bias", ag::Shape{features_}) : nullptr),
      features(features_),
      eps(eps_) {
  if (features <= 0) ag::fail("LayerNorm({}): features must be positive", features);
  if (!(eps >= 0)) ag::fail("LayerNorm: eps must be 0 or more, not {}", eps);
  if (weight) init::constant(*weight, 1);  // bias stays 0
}

ag::Tensor LayerNorm::forward(ag::Tensor x) {
  if (x.rank() == 0 || x.shape()[x.rank() - 1] != features)
    ag::fail("LayerNorm({}): input {} must have {} features in its last axis", features, x.shape(),
             features);
  const ag::Tensor centered = x - ag::mean(x, -1, true);
  const ag::Tensor variance = ag::mean(centered * centered, -1, true);  // biased, as torch's
  ag::Tensor y = centered / ag::sqrt(variance + eps);
  if (weight) {
    labels_.update(path());
    ag::TensorTape& tape = x.tape();
    y = y * weight->on(tape, labels_.weight()) + bias->on(tape, labels_.bias());
  }
  return y;
}

std::string LayerNorm::describe() const {
  return fmt::format("LayerNorm(({},), eps={}, elementwise_affine={})", features, eps,
                     python_bool(weight != nullptr));
}

BatchNorm1d::BatchNorm1d(std::int64_t features_, BatchNormOptions opts)
    : weight(opts.affine ? &register_parameter("weight", ag::Shape{features_}) : nullptr),
      bias(opts.affine ? &register_parameter("bias", ag::Shape{features_}) : nullptr),
      running_mean(opts.track_running_stats ? &register_buffer("running_mean", ag::Shape{features_})
                                            : nullptr),
      running_var(opts.track_running_stats ? &register_buffer("running_var", ag::Shape{features_})
                                           : nullptr),
      num_batches_tracked(
          opts.track_running_stats
              ? &register_buffer("num_batches_tracked", ag::Shape{}, Buffer::Kind::i64)
              : nullptr),
      features(features_),
      options(opts) {
  if (features <= 0) ag::fail("BatchNorm1d({}): features must be positive", features);
  if (!(options.eps >= 0)) ag::fail("BatchNorm1d: eps must be 0 or more, not {}", options.eps);
  if (options.momentum && !(*options.momentum >= 0 && *options.momentum <= 1))
    ag::fail("BatchNorm1d: momentum must be in [0, 1], not {}", *options.momentum);
  if (weight) init::constant(*weight, 1);
  if (running_var) std::fill(running_var->data().begin(), running_var->data().end(), 1.0f);
}

ag::Tensor BatchNorm1d::forward(ag::Tensor x) {
  if (x.rank() != 2 || x.shape()[1] != features)
    ag::fail("BatchNorm1d({}): input {} must be (rows, {})", features, x.shape(), features);
  const std::int64_t rows = x.shape()[0];
  ag::Tensor y;
  if (is_training() || !running_mean) {
    if (is_training() && rows < 2)
      ag::fail(
          "BatchNorm1d({}): a training batch needs more than 1 row to have a variance, not "
          "input {}",
          features, x.shape());
    const ag::Tensor mean = ag::mean(x, 0, true);
    const ag::Tensor centered = x - mean;
    const ag::Tensor variance = ag::mean(centered * centered, 0, true);  // biased, to normalize
    y = centered / ag::sqrt(variance + options.eps);
    if (is_training() && running_mean) {
      // The running variance is the unbiased one, n / (n - 1) times the batch's, as torch's.
      std::int64_t& batches = num_batches_tracked->integers()[0];
      ++batches;
      const double rate = options.momentum ? *options.momentum : 1.0 / double(batches);
      const double unbiased = double(rows) / double(rows - 1);
      const std::span<float> rm = running_mean->data(), rv = running_var->data();
      for (std::int64_t f = 0; f < features; ++f) {
        const auto i = std::size_t(f);
        rm[i] = float((1 - rate) * rm[i] + rate * mean.value(f));
        rv[i] = float((1 - rate) * rv[i] + rate * variance.value(f) * unbiased);
      }
    }
  } else {
    std::vector<double> shift, scale;
    for (std::int64_t f = 0; f < features; ++f) {
      shift.push_back(running_mean->data()[std::size_t(f)]);
      scale.push_back(1 / std::sqrt(double(running_var->data()[std::size_t(f)]) + options.eps));
    }
    const ag::Shape per_feature{features};
    y = (x - constant_like(x, per_feature, shift)) * constant_like(x, per_feature, scale);
  }
  if (weight) {
    labels_.update(path());
    ag::TensorTape& tape = x.tape();
    y = y * weight->on(tape, labels_.weight()) + bias->on(tape, labels_.bias());
  }
  return y;
}

std::string BatchNorm1d::describe() const {
  return fmt::format("BatchNorm1d({}, eps={}, momentum={}, affine={}, track_running_stats={})",
                     features, options.eps,
                     options.momentum ? fmt::format("{}", *options.momentum) : "None",
                     python_bool(weight != nullptr), python_bool(running_mean != nullptr));
}

namespace {
const BatchNorm1d* find_batch_norm(const Module& m) {
  if (const auto* norm = dynamic_cast<const BatchNorm1d*>(&m)) return norm;
  for (const auto& [name, child] : m.children())
    if (const BatchNorm1d* norm = find_batch_norm(*child)) return norm;
  return nullptr;
}
}  // namespace

void check_batch_norm_batches(Module& model, std::int64_t rows, std::int64_t batch_size) {
  if (rows <= 0 || batch_size <= 0) return;  // the data set and the loader say what is wrong
  const BatchNorm1d* norm = find_batch_norm(model);
  if (norm == nullptr || rows % std::min(batch_size, rows) != 1) return;
  ag::fail(
      "{} training rows in batches of {} leave a last batch of 1 row, which BatchNorm1d "
      "({}) cannot normalize in training: choose another batch size",
      rows, batch_size, norm->path().empty() ? "the model" : norm->path());
}

}  // namespace nn
