// Optimizers over nn::Parameters (SGD with momentum, Nesterov and weight decay; Adam and AdamW,
// with amsgrad; RMSprop, with momentum and centered; Adagrad), updating as PyTorch's torch.optim
// does; learning-rate schedules (warm-up, and reduce-on-plateau); and gradient clipping as
// torch.nn.utils clips.

#pragma once

#include <cstddef>
#include <functional>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "tapegrad/nn/module.hpp"

namespace nn {

// Borrows the parameters it updates; their owner must outlive it. State
// (momentum, Adam's moments) is allocated once, here, not per step.
class Optimizer {
 public:
  Optimizer(std::vector<Parameter*> params, double lr);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  std::size_t steps() const { return steps_; }
  const std::vector<Parameter*>& params() const { return params_; }

  // The state a checkpoint must keep to resume exactly: one vector per buffer.
  virtual std::vector<std::vector<float>*> state() { return {}; }
  void set_steps(std::size_t steps) { steps_ = steps; }

 protected:
  std::vector<Parameter*> params_;
  double lr_;
  std::size_t steps_ = 0;
};

// Anomaly mode after an optimizer step (Note [Anomaly mode], tapegrad/anomaly.hpp): throws an
// ag::AnomalyError of kind update when parameter `name` holds a non-finite element, quoting its
// gradient there. nn::fit calls it after each step when FitOptions::check_finite is set, so
// poisoned weights are never used or saved.
void check_parameter(std::string_view name, const Parameter& parameter);

// Note [Gradient clipping]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Between backward and step, as torch.nn.utils does it:
// - clip_grad_norm: the total norm N of all the gradients together (the norm of the per-parameter
//   norms); when it exceeds max_norm, every gradient is scaled by max_norm / (N + 1e-6), so the
//   direction of the step is kept and its size bounded. It returns N, before clipping: the number
//   to watch for exploding gradients. The norm is accumulated in double.
// - clip_grad_value: each gradient element clamped to [-clip_value, clip_value].
// A NaN or infinite N is an ag::Error when error_if_nonfinite is set; otherwise the gradients are
// scaled by max_norm / (N + 1e-6) as torch's are (NaN, or 0 where finite), so the optimizer step
// shows the damage, and anomaly mode (FitOptions::check_finite) names it.
inline constexpr double kInfNorm = std::numeric_limits<double>::infinity();
double clip_grad_norm(std::span<Parameter* const> params, double max_norm, double norm_type = 2,
                      bool error_if_nonfinite = false);
void clip_grad_value(std::span<Parameter* const> params, double clip_value);

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

// g += wd p; b = momentum b + (1 - dampening) g (b = g on the first step);
// g = g + momentum b (Nesterov) or b; p -= lr g.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Parameter*> params, SGDOptions options = {});
  void step() override;
  std::vector<std::vector<float>*> state() override;
  SGDOptions options;

 private:
  std::vector<std::vector<float>> momentum_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  // Adam: added to the gradient; AdamW: decoupled
  // AMSGrad (Reddi et al.): divide by the largest v seen so far, v_max = max(v_max, v), so the
  // step size never grows back; one more buffer per parameter.
  bool amsgrad = false;
};

// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), with v_max for v under amsgrad.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Parameter*> params, AdamOptions options = {});
  void step() override;
  std::vector<std::vector<float>*> state() override;
  AdamOptions options;

 protected:
  void update(bool decoupled_weight_decay);
  std::vector<std::vector<float>> m_, v_, v_max_;  // v_max_: amsgrad only
};

// Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr wd
// before the Adam update; PyTorch's default wd is 0.01.
class AdamW : public Adam {
 public:
  AdamW(std::vector<Parameter*> params, AdamOptions options = {0.001, 0.9, 0.999, 1e-8, 0.01});
  void step() override;
};

struct RMSpropOptions {
  double lr = 0.01;
  double alpha = 0.99;  // the decay of the running mean of g^2
  double eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0;
  bool centered = false;  // divide by the running variance of g, not its mean square
};

// g += wd p; s = alpha s + (1 - alpha) g^2; centered: a = alpha a + (1 - alpha) g and
// d = sqrt(s - a^2) + eps, else d = sqrt(s) + eps; momentum: b = momentum b + g / d, p -= lr b;
// else p -= lr g / d. Buffers: s, then b (with momentum), then a (centered).
class RMSprop : public Optimizer {
 public:
  RMSprop(std::vector<Parameter*> params, RMSpropOptions options = {});
  void step() override;
  std::vector<std::vector<float>*> state() override;
  RMSpropOptions options;

 private:
  std::vector<std::vector<float>> square_avg_, momentum_, grad_avg_;
};

struct AdagradOptions {
  double lr = 0.01;
  double lr_decay = 0;  // the step's rate is lr / (1 + (t - 1) lr_decay)
  double weight_decay = 0;
  double initial_accumulator_value = 0;
  double eps = 1e-10;
};

// g += wd p; s += g^2; p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps): each weight's
// rate shrinks with the squared gradients it has seen. One buffer per parameter: s.
class Adagrad : public Optimizer {
 public:
  Adagrad(std::vector<Parameter*> params, AdagradOptions options = {});
  void step() override;
  std::vector<std::vector<float>*> state() override;
  AdagradOptions options;

 private:
  std::vector<std::vector<float>> sum_;
};

// A learning rate as a function of the epoch (0-based) and the initial rate.
using LrSchedule = std::function<double(std::size_t epoch, double base_lr)>;
namespace schedule {
LrSchedule constant();
LrSchedule step(std::size_t step_size, double gamma);            // lr gamma^(epoch / step_size)
LrSchedule linear(std::size_t total_epochs, double end_factor);  // to base * end_factor
LrSchedule cosine(std::size_t total_epochs, double min_lr = 0);  // half a cosine down to min_lr
// Linear warm-up, as torch's LinearLR(start_factor, total_iters=warmup_epochs) followed by
// `after` in a SequentialLR: base * (start + (1 - start) epoch / warmup_epochs) during the
// warm-up, then after(epoch - warmup_epochs, base), which starts again from its epoch 0.
LrSchedule warmup(std::size_t warmup_epochs, double start_factor = 1.0 / 3,
                  LrSchedule after = constant());
}  // namespace schedule

struct PlateauOptions {
  enum class Mode { min, max };  // a loss falls (min), an accuracy rises (max)
  Mode mode = Mode::min;
  double factor = 0.1;             // lr *= factor on a plateau
  std::size_t patience = 10;       // epochs without improvement tolerated
  double threshold = 1e-4;         // what counts as an improvement:
  bool relative_threshold = true;  // metric < best (1 - threshold), or < best - threshold
  std::size_t cooldown = 0;        // epochs after a reduction before counting again
  double min_lr = 0;
  double eps = 1e-8;  // a change of lr smaller than this is not made
};

// torch.optim.lr_scheduler.ReduceLROnPlateau: step(metric) once per epoch; after more than
// `patience` epochs without the metric improving on its best, the optimizer's rate is
// multiplied by `factor` (not below min_lr). Borrows the optimizer, which must outlive it.
class ReduceLROnPlateau {
 public:
  ReduceLROnPlateau(Optimizer& optimizer, PlateauOptions options = {});
  // Returns whether the rate was reduced.
  bool step(double metric);
  double best() const { return best_; }
  std::size_t bad_epochs() const { return bad_epochs_; }
  PlateauOptions options;

 private:
  bool better(double metric) const;
  Optimizer& optimizer_;
  double best_;
  std::size_t bad_epochs_ = 0, cooldown_left_ = 0;
};

}  // namespace nn
