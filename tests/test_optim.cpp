// Gradient clipping (by global norm and by value, alone and in nn::fit), against the formulas of
// torch.nn.utils, and the errors its bad arguments give.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <tapegrad/nn.hpp>
#include <vector>

using namespace ag;

namespace {

std::vector<float> vec(std::span<const float> s) { return {s.begin(), s.end()}; }

void set(std::span<float> to, std::vector<float> values) {
  std::copy(values.begin(), values.end(), to.begin());
}

}  // namespace

TEST_CASE("clip_grad_norm scales all gradients together and returns the norm before clipping") {
  nn::Parameter a(Shape{2}), b(Shape{1});
  std::vector<nn::Parameter*> params{&a, &b};
  // ||(3, 4, 12)|| = 13
  set(a.grad(), {3, 4});
  set(b.grad(), {12});
  CHECK(nn::clip_grad_norm(params, 26) == 13);  // below max_norm: unchanged
  CHECK(vec(a.grad()) == std::vector<float>{3, 4});
  CHECK(nn::clip_grad_norm(params, 6.5) == 13);
  const double scale = 6.5 / (13 + 1e-6);  // torch's max_norm / (norm + 1e-6)
  CHECK(a.grad()[0] == doctest::Approx(3 * scale).epsilon(1e-7));
  CHECK(a.grad()[1] == doctest::Approx(4 * scale).epsilon(1e-7));
  CHECK(b.grad()[0] == doctest::Approx(12 * scale).epsilon(1e-7));
  // the infinity norm is the largest |g|, the 1-norm the sum of |g|
  set(a.grad(), {3, -4});
  set(b.grad(), {-12});
  CHECK(nn::clip_grad_norm(params, 100, nn::kInfNorm) == 12);
  CHECK(nn::clip_grad_norm(params, 100, 1) == 19);
  CHECK(nn::clip_grad_norm(params, 100, 3) == doctest::Approx(std::cbrt(27 + 64 + 1728.0)));
}

TEST_CASE("clip_grad_value clamps every element; bad arguments and non-finite norms are named") {
  nn::Parameter a(Shape{4});
  std::vector<nn::Parameter*> params{&a};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  set(a.grad(), {-3, 0.5, 2, nan});
  nn::clip_grad_value(params, 1);
  CHECK(a.grad()[0] == -1);
  CHECK(a.grad()[1] == 0.5);
  CHECK(a.grad()[2] == 1);
  CHECK(std::isnan(a.grad()[3]));  // as torch.clamp: a NaN stays NaN
  CHECK(std::isnan(nn::clip_grad_norm(params, 1)));
  CHECK_THROWS_WITH_AS(nn::clip_grad_norm(params, 1, 2, true),
                       "clip_grad_norm: the total 2-norm of the gradients is nan, so they cannot "
                       "be clipped",
                       Error);
  CHECK_THROWS_WITH_AS(nn::clip_grad_norm(params, -1),
                       "clip_grad_norm: max_norm must be 0 or more, not -1", Error);
  CHECK_THROWS_WITH_AS(nn::clip_grad_norm(params, 1, 0),
                       "clip_grad_norm: norm_type must be positive, not 0", Error);
  CHECK_THROWS_WITH_AS(nn::clip_grad_value(params, -0.5),
                       "clip_grad_value: clip_value must be 0 or more, not -0.5", Error);
}

TEST_CASE("fit clips before each step: SGD with lr 1 moves the weights by at most max_norm") {
  nn::Dataset data = nn::moons(64, 0.1, 3);
  for (const bool by_value : {false, true}) {
    nn::MLP mlp({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 5);
    std::vector<float> before;
    for (nn::Parameter* p : mlp.parameters())
      before.insert(before.end(), p->data().begin(), p->data().end());
    nn::SGD sgd(mlp.parameters(), {.lr = 1});
    nn::FitOptions options;
    options.epochs = 1;
    options.batch_size = 64;  // one step
    options.loss = nn::LossKind::bce_with_logits;
    options.progress = nn::FitOptions::Progress::quiet;
    if (by_value)
      options.clip_grad_value = 1e-3;
    else
      options.clip_grad_norm = 1e-3;
    nn::fit(mlp, sgd, data, options);
    double squares = 0, largest = 0;
    std::size_t i = 0;
    for (nn::Parameter* p : mlp.parameters())
      for (float x : p->data()) {
        const double step = double(x) - double(before[i++]);
        squares += step * step;
        largest = std::max(largest, std::abs(step));
      }
    INFO("by value: ", by_value);
    if (by_value) {
      CHECK(largest <= 1e-3 * (1 + 1e-4));  // float weights near 1 resolve 6e-8
      CHECK(largest >= 0.9e-3);             // a gradient this size is clipped
    } else {
      CHECK(std::sqrt(squares) == doctest::Approx(1e-3).epsilon(1e-3));
    }
  }
}
