// SGD, Adam (amsgrad), AdamW, RMSprop and Adagrad as torch.optim computes them, learning-rate
// schedules, gradient clipping, and anomaly mode's check that a step left every parameter finite.

#include "tapegrad/nn/optim.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>

#include "tapegrad/anomaly.hpp"
#include "tapegrad/parallel.hpp"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace nn {

void check_parameter(std::string_view name, const Parameter& parameter) {
  const std::span<const float> data = parameter.data(), grad = parameter.grad();
  const auto bad =
      std::find_if(data.begin(), data.end(), [](float x) { return !std::isfinite(x); });
  if (bad == data.end()) return;
  const std::size_t flat = std::size_t(bad - data.begin());
  ag::Anomaly a;
  a.kind = ag::AnomalyKind::update;
  a.tensor = true;
  a.op = "optimizer step";
  a.name = std::string(name);
  a.dtype = ag::DType::f32;
  a.value = *bad;
  a.shape = parameter.shape();
  a.index = a.shape.unravel(std::int64_t(flat));
  if (flat < grad.size())
    a.operands.push_back({"gradient", 0, a.name, a.shape, a.index, {grad[flat]}});
  throw ag::AnomalyError(std::move(a));
}

double clip_grad_norm(std::span<Parameter* const> params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
  if (!(max_norm >= 0)) ag::fail("clip_grad_norm: max_norm must be 0 or more, not {}", max_norm);
  if (!(norm_type > 0)) ag::fail("clip_grad_norm: norm_type must be positive, not {}", norm_type);
  // Note [Gradient clipping]: the norm of the per-parameter norms, which is the norm of all the
  // elements together; for the infinity norm, the largest |g|.
  const bool infinity = std::isinf(norm_type);
  double total = 0;
  for (const Parameter* p : params) {
    if (p == nullptr) ag::fail("clip_grad_norm: a null parameter");
    for (const float g : p->grad()) {
      const double magnitude = std::abs(double(g));
      if (infinity)
        total = std::isnan(magnitude) || std::isnan(total)
                    ? std::numeric_limits<double>::quiet_NaN()
                    : std::max(total, magnitude);
      else
        total += norm_type == 2 ? magnitude * magnitude : std::pow(magnitude, norm_type);
    }
  }
  if (!infinity) total = norm_type == 2 ? std::sqrt(total) : std::pow(total, 1 / norm_type);
  if (error_if_nonfinite && !std::isfinite(total))
    ag::fail("clip_grad_norm: the total {}-norm of the gradients is {}, so they cannot be clipped",
             norm_type, total);
  const double scale = max_norm / (total + 1e-6);
  if (!(scale >= 1)) {  // a NaN norm scales by NaN, as torch's clamp(max=1) passes NaN
    const float factor = float(scale);
    for (Parameter* p : params)
      for (float& g : p->grad()) g *= factor;
  }
  return total;
}

void clip_grad_value(std::span<Parameter* const> params, double clip_value) {
  if (!(clip_value >= 0))
    ag::fail("clip_grad_value: clip_value must be 0 or more, not {}", clip_value);
  const float bound = float(clip_value);
  for (Parameter* p : params) {
    if (p == nullptr) ag::fail("clip_grad_value: a null parameter");
    // std::clamp keeps a NaN, as torch.clamp does
    for (float& g : p->grad()) g = std::clamp(g, -bound, bound);
  }
}

Optimizer::Optimizer(std::vector<Parameter*> params, double lr)
    : params_(std::move(params)), lr_(lr) {
  for (Parameter* p : params_)
    if (p == nullptr) throw ag::Error("optimizer: a null parameter");
  if (!(lr >= 0)) ag::fail("optimizer: learning rate {} is invalid", lr);
}

// Note [Subnormal optimizer state]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Momentum and Adam's moments decay geometrically wherever the gradient is zero: on
// Fashion-MNIST every first-layer weight of a pixel that is rarely lit. m = 0.9 m reaches the
// subnormal floats (below 1.2e-38) some 800 steps after the last nonzero gradient, and x86
// handles subnormal operands in microcode, about a hundred times slower: Adam's update went
// from 94 ms in the first epoch to 560 ms in the third, half the epoch. So the updates run
// with the SSE control register's flush-to-zero and denormals-are-zero bits set, and restore
// it after: a state that would be subnormal is 0. That changes an update by at most
// lr * 1e-38 / eps (Adam) or lr * 1e-38 (momentum), far below a float's resolution of any
// weight, and the optimizer then matches torch.optim everywhere else bit for bit as before.
namespace {
class FlushSubnormals {
 public:
#if defined(__SSE2__)
  FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtz | kDaz); }
  ~FlushSubnormals() { _mm_setcsr(saved_); }
#else  // elsewhere the update runs in the caller's mode
  FlushSubnormals() = default;
#endif
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;

#if defined(__SSE2__)
 private:
  static constexpr unsigned kFtz = 1u << 15, kDaz = 1u << 6;
  unsigned saved_;
#endif
};
}  // namespace

void Optimizer::zero_grad() {
  for (Parameter* p : params_) p->zero_grad();
}

static std::vector<std::vector<float>> zeros_like(const std::vector<Parameter*>& params) {
  std::vector<std::vector<float>> out;
  for (Parameter* p : params) out.emplace_back(static_cast<std::size_t>(p->numel()), 0.0f);
  return out;
}

static std::vector<std::vector<float>*> pointers(std::vector<std::vector<float>>& buffers) {
  std::vector<std::vector<float>*> out;
  for (auto& b : buffers) out.push_back(&b);
  return out;
}

SGD::SGD(std::vector<Parameter*> params, SGDOptions opts)
    : Optimizer(std::move(params), opts.lr), options(opts) {
  if (options.nesterov && (options.momentum <= 0 || options.dampening != 0))
    throw ag::Error("SGD: Nesterov momentum needs a momentum > 0 and no dampening");
  if (options.momentum != 0) momentum_ = zeros_like(params_);
}

void SGD::step() {
  const float lr = float(lr_), wd = float(options.weight_decay), mu = float(options.momentum);
  const float damp = 1.0f - float(options.dampening);
  [[maybe_unused]] const FlushSubnormals flush;  // Note [Subnormal optimizer state]
  for (std::size_t k = 0; k < params_.size(); ++k) {
    float* p = params_[k]->data().data();
    const float* g = params_[k]->grad().data();
    float* b = mu != 0 ? momentum_[k].data() : nullptr;
    for (std::int64_t i = 0, n = params_[k]->numel(); i < n; ++i) {
      float d = g[i] + wd * p[i];
      if (b) {
        b[i] = steps_ == 0 ? d : mu * b[i] + damp * d;
        d = options.nesterov ? d + mu * b[i] : b[i];
      }
      p[i] -= lr * d;
    }
  }
  ++steps_;
}

std::vector<std::vector<float>*> SGD::state() { return pointers(momentum_); }

Adam::Adam(std::vector<Parameter*> params, AdamOptions opts)
    : Optimizer(std::move(params), opts.lr),
      options(opts),
      m_(zeros_like(params_)),
      v_(zeros_like(params_)) {
  if (options.amsgrad) v_max_ = zeros_like(params_);
}

namespace {
// One Adam step's constants, passed by value so that the loops keep them in registers (captured
// by reference, GCC reloaded them around every store through p, m and v: +0.4% instructions on
// a 2-64-64-1 step).
struct AdamStep {
  float step_size, sqrt_c2, b1, b2, eps, wd, decay;
  bool decoupled, amsgrad;
};

// Elements [begin, end) of one parameter; every element is updated on its own, so any split of
// the range computes the same bits (Note [Parallel work]; the pool's threads run in the caller's
// MXCSR, flush included). v_max: amsgrad's buffer, else null.
void adam_range(const AdamStep step, float* p, const float* g, float* m, float* v, float* v_max,
                std::int64_t begin, std::int64_t end) {
  const float step_size = step.step_size, sqrt_c2 = step.sqrt_c2, b1 = step.b1, b2 = step.b2,
              eps = step.eps, wd = step.wd, decay = step.decay;
  const bool decoupled = step.decoupled, amsgrad = step.amsgrad;
  std::int64_t i = begin;
#if defined(__SSE2__)
  // Four at a time (amsgrad runs the scalar loop alone: its maximum keeps a NaN either side,
  // as torch.maximum does, which _mm_max_ps does not): the same operations in the same order as
  // the loop below, so the same bits. GCC leaves that loop scalar: std::sqrt must set errno for a
  // negative argument, which keeps sqrtss and divss one element at a time (a quarter of a
  // Fashion-MNIST batch).
  const __m128 vb1 = _mm_set1_ps(b1), vc1 = _mm_set1_ps(1 - b1), vb2 = _mm_set1_ps(b2),
               vc2 = _mm_set1_ps(1 - b2), vstep = _mm_set1_ps(step_size),
               vsqrt_c2 = _mm_set1_ps(sqrt_c2), veps = _mm_set1_ps(eps), vwd = _mm_set1_ps(wd),
               vdecay = _mm_set1_ps(decay);
  for (; !amsgrad && i + 4 <= end; i += 4) {
    __m128 pv = _mm_loadu_ps(p + i), grad = _mm_loadu_ps(g + i);
    if (decoupled)
      pv = _mm_mul_ps(pv, vdecay);
    else
      grad = _mm_add_ps(grad, _mm_mul_ps(vwd, pv));
    const __m128 mv = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vc1, grad));
    const __m128 vv =
        _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)), _mm_mul_ps(_mm_mul_ps(vc2, grad), grad));
    _mm_storeu_ps(m + i, mv);
    _mm_storeu_ps(v + i, vv);
    const __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vv), vsqrt_c2), veps);
    _mm_storeu_ps(p + i, _mm_sub_ps(pv, _mm_div_ps(_mm_mul_ps(vstep, mv), denom)));
  }
#endif
  for (; i < end; ++i) {
    float grad = g[i];
    if (decoupled)
      p[i] *= decay;
    else
      grad += wd * p[i];
    m[i] = b1 * m[i] + (1 - b1) * grad;
    v[i] = b2 * v[i] + (1 - b2) * grad * grad;
    float second = v[i];
    if (amsgrad) {
      float& largest = v_max[i];
      if (std::isnan(largest) || std::isnan(second) || second > largest) largest = second;
      second = largest;
    }
    p[i] -= step_size * m[i] / (std::sqrt(second) / sqrt_c2 + eps);
  }
}
}  // namespace

void Adam::update(bool decoupled) {
  ++steps_;
  const double t = double(steps_);
  const double correction1 = 1 - std::pow(options.beta1, t);
  const double correction2 = 1 - std::pow(options.beta2, t);
  const float step_size = float(lr_ / correction1);
  const float sqrt_c2 = float(std::sqrt(correction2));
  const float b1 = float(options.beta1), b2 = float(options.beta2), eps = float(options.eps);
  const float wd = float(options.weight_decay), decay = float(1 - lr_ * options.weight_decay);
  [[maybe_unused]] const FlushSubnormals flush;  // Note [Subnormal optimizer state]
  const AdamStep step{step_size, sqrt_c2, b1, b2, eps, wd, decay, decoupled, options.amsgrad};
  auto update_range = [&](std::size_t k, std::int64_t begin, std::int64_t end) {
    adam_range(step, params_[k]->data().data(), params_[k]->grad().data(), m_[k].data(),
               v_[k].data(), options.amsgrad ? v_max_[k].data() : nullptr, begin, end);
  };
  // Large parameters are cut into chunks of half the threshold (a multiple of 4, so the vector
  // loop covers the same elements), fixed by the size alone.
  const std::int64_t split_from = ag::parallel_thresholds().elementwise;
  const std::int64_t chunk = std::max<std::int64_t>(4, split_from / 2 / 4 * 4);
  for (std::size_t k = 0; k < params_.size(); ++k) {
    const std::int64_t n = params_[k]->numel();
    if (n >= split_from && ag::num_threads() > 1)
      ag::parallel_for((n + chunk - 1) / chunk, [&](std::int64_t c) {
        update_range(k, c * chunk, std::min(n, (c + 1) * chunk));
      });
    else
      update_range(k, 0, n);
  }
}

void Adam::step() { update(false); }

std::vector<std::vector<float>*> Adam::state() {
  std::vector<std::vector<float>*> out = pointers(m_);
  for (auto* v : pointers(v_)) out.push_back(v);
  for (auto* v : pointers(v_max_)) out.push_back(v);
  return out;
}

AdamW::AdamW(std::vector<Parameter*> params, AdamOptions opts) : Adam(std::move(params), opts) {}

void AdamW::step() { update(true); }

namespace {
// torch.optim's checks of the options: each must be a number >= 0.
void check_option(double value, const char* optimizer, const char* option) {
  if (!(value >= 0)) ag::fail("{}: {} must be 0 or more, not {}", optimizer, option, value);
}
}  // namespace

RMSprop::RMSprop(std::vector<Parameter*> params, RMSpropOptions opts)
    : Optimizer(std::move(params), opts.lr), options(opts), square_avg_(zeros_like(params_)) {
  check_option(options.alpha, "RMSprop", "alpha");
  check_option(options.eps, "RMSprop", "eps");
  check_option(options.weight_decay, "RMSprop", "weight_decay");
  check_option(options.momentum, "RMSprop", "momentum");
  if (options.momentum > 0) momentum_ = zeros_like(params_);
  if (options.centered) grad_avg_ = zeros_like(params_);
}

void RMSprop::step() {
  const float lr = float(lr_), alpha = float(options.alpha), eps = float(options.eps);
  const float wd = float(options.weight_decay), mu = float(options.momentum);
  [[maybe_unused]] const FlushSubnormals flush;  // Note [Subnormal optimizer state]
  for (std::size_t k = 0; k < params_.size(); ++k) {
    float* p = params_[k]->data().data();
    const float* g = params_[k]->grad().data();
    float* s = square_avg_[k].data();
    float* b = options.momentum > 0 ? momentum_[k].data() : nullptr;
    float* a = options.centered ? grad_avg_[k].data() : nullptr;
    for (std::int64_t i = 0, n = params_[k]->numel(); i < n; ++i) {
      const float grad = g[i] + wd * p[i];
      s[i] = alpha * s[i] + (1 - alpha) * grad * grad;
      float mean_square = s[i];
      if (a) {
        a[i] = alpha * a[i] + (1 - alpha) * grad;
        mean_square -= a[i] * a[i];  // the variance of g: E[g^2] - E[g]^2
      }
      const float denominator = std::sqrt(mean_square) + eps;
      if (b) {
        b[i] = mu * b[i] + grad / denominator;
        p[i] -= lr * b[i];
      } else {
        p[i] -= lr * (grad / denominator);
      }
    }
  }
  ++steps_;
}

std::vector<std::vector<float>*> RMSprop::state() {
  std::vector<std::vector<float>*> out = pointers(square_avg_);
  for (auto* b : pointers(momentum_)) out.push_back(b);
  for (auto* a : pointers(grad_avg_)) out.push_back(a);
  return out;
}

Adagrad::Adagrad(std::vector<Parameter*> params, AdagradOptions opts)
    : Optimizer(std::move(params), opts.lr), options(opts) {
  check_option(options.lr_decay, "Adagrad", "lr_decay");
  check_option(options.weight_decay, "Adagrad", "weight_decay");
  check_option(options.initial_accumulator_value, "Adagrad", "initial_accumulator_value");
  check_option(options.eps, "Adagrad", "eps");
  for (Parameter* p : params_)
    sum_.emplace_back(static_cast<std::size_t>(p->numel()),
                      float(options.initial_accumulator_value));
}

void Adagrad::step() {
  ++steps_;
  const float rate = float(lr_ / (1 + double(steps_ - 1) * options.lr_decay));
  const float wd = float(options.weight_decay), eps = float(options.eps);
  [[maybe_unused]] const FlushSubnormals flush;  // Note [Subnormal optimizer state]
  for (std::size_t k = 0; k < params_.size(); ++k) {
    float* p = params_[k]->data().data();
    const float* g = params_[k]->grad().data();
    float* s = sum_[k].data();
    for (std::int64_t i = 0, n = params_[k]->numel(); i < n; ++i) {
      const float grad = g[i] + wd * p[i];
      s[i] += grad * grad;
      p[i] -= rate * (grad / (std::sqrt(s[i]) + eps));
    }
  }
}

std::vector<std::vector<float>*> Adagrad::state() { return pointers(sum_); }

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, PlateauOptions opts)
    : options(opts), optimizer_(optimizer) {
  if (!(options.factor >= 0 && options.factor < 1))
    ag::fail("ReduceLROnPlateau: factor must be in [0, 1), not {}", options.factor);
  check_option(options.threshold, "ReduceLROnPlateau", "threshold");
  check_option(options.min_lr, "ReduceLROnPlateau", "min_lr");
  check_option(options.eps, "ReduceLROnPlateau", "eps");
  constexpr double kInfinity = std::numeric_limits<double>::infinity();
  best_ = options.mode == PlateauOptions::Mode::min ? kInfinity : -kInfinity;
}

bool ReduceLROnPlateau::better(double metric) const {
  const double t = options.threshold;
  if (options.mode == PlateauOptions::Mode::min)
    return options.relative_threshold ? metric < best_ * (1 - t) : metric < best_ - t;
  return options.relative_threshold ? metric > best_ * (1 + t) : metric > best_ + t;
}

bool ReduceLROnPlateau::step(double metric) {
  // torch's order: judge the metric, then let a cooldown wipe the count, then reduce.
  if (better(metric)) {
    best_ = metric;
    bad_epochs_ = 0;
  } else {
    ++bad_epochs_;
  }
  if (cooldown_left_ > 0) {
    --cooldown_left_;
    bad_epochs_ = 0;
  }
  if (bad_epochs_ <= options.patience) return false;
  cooldown_left_ = options.cooldown;
  bad_epochs_ = 0;
  const double old_lr = optimizer_.lr(), new_lr = std::max(old_lr * options.factor, options.min_lr);
  if (!(old_lr - new_lr > options.eps)) return false;
  optimizer_.set_lr(new_lr);
  return true;
}

namespace schedule {

LrSchedule constant() {
  return [](std::size_t, double base) { return base; };
}

LrSchedule step(std::size_t step_size, double gamma) {
  if (step_size == 0) throw ag::Error("schedule::step: step_size must be positive");
  return [=](std::size_t epoch, double base) {
    return base * std::pow(gamma, double(epoch / step_size));
  };
}

LrSchedule linear(std::size_t total, double end_factor) {
  if (total == 0) throw ag::Error("schedule::linear: total_epochs must be positive");
  return [=](std::size_t epoch, double base) {
    const double f = std::min(1.0, double(epoch) / double(total));
    return base * (1.0 + (end_factor - 1.0) * f);
  };
}

LrSchedule cosine(std::size_t total, double min_lr) {
  if (total == 0) throw ag::Error("schedule::cosine: total_epochs must be positive");
  return [=](std::size_t epoch, double base) {
    const double f = std::min(1.0, double(epoch) / double(total));
    return min_lr + (base - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * f));
  };
}

LrSchedule warmup(std::size_t warmup_epochs, double start_factor, LrSchedule after) {
  if (warmup_epochs == 0) ag::fail("schedule::warmup: warmup_epochs must be positive");
  if (!(start_factor > 0 && start_factor <= 1))
    ag::fail("schedule::warmup: start_factor must be in (0, 1], not {}", start_factor);
  if (!after) ag::fail("schedule::warmup: the schedule after the warm-up is empty");
  return [=](std::size_t epoch, double base) {
    if (epoch >= warmup_epochs) return after(epoch - warmup_epochs, base);
    return base * (start_factor + (1 - start_factor) * double(epoch) / double(warmup_epochs));
  };
}

}  // namespace schedule

}  // namespace nn
