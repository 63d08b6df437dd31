// A warm training step allocates nothing: operator new is counted while an MLP
// is recorded, differentiated and updated, on the tensor tape and the scalar tape, also in
// anomaly mode (which allocates only to report what it found); and a Newton loop whose Hessians
// are recorded on the tape.

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <tapegrad/core.hpp>
#include <vector>

#include "count_allocations.hpp"

using count_allocations::allocations;
using count_allocations::counting;

using namespace ag;

namespace {

// A layer's parameters, owned outside the tape as nn::Parameter will own them.
struct Layer {
  std::vector<float> w, gw, b, gb;
  std::int64_t in, out;
  Layer(std::int64_t in_, std::int64_t out_, std::uint64_t seed)
      : w(std::size_t(in_ * out_)),
        gw(w.size()),
        b(std::size_t(out_)),
        gb(b.size()),
        in(in_),
        out(out_) {
    Rng rng(seed);
    const double scale = 1.0 / std::sqrt(double(in_));  // keeps the sigmoid unsaturated
    for (float& x : w) x = float(rng.uniform(-scale, scale));
  }
  Tensor forward(TensorTape& tape, Tensor x) {
    Tensor W = tape.parameter(Shape{in, out}, w.data(), gw.data(), "W");
    Tensor B = tape.parameter(Shape{out}, b.data(), gb.data(), "b");
    return matmul(x, W) + B;
  }
  void step(float lr) {
    for (std::size_t i = 0; i < w.size(); ++i) w[i] -= lr * gw[i], gw[i] = 0;
    for (std::size_t i = 0; i < b.size(); ++i) b[i] -= lr * gb[i], gb[i] = 0;
  }
};

// Runs `steps` training steps of a sizes[0]-...-1 MLP on a batch, in anomaly mode if asked;
// returns the allocations counted after the first step, and the first and last loss.
struct Run {
  long allocations_after_warmup;
  double first_loss, last_loss;
};
Run train(std::vector<std::int64_t> sizes, std::int64_t batch, int steps,
          bool check_finite = false) {
  std::vector<Layer> layers;
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) layers.emplace_back(sizes[i], sizes[i + 1], i);
  std::vector<float> x(static_cast<std::size_t>(batch * sizes[0]));
  std::vector<float> y(static_cast<std::size_t>(batch));
  Rng rng(7);
  for (float& v : x) v = float(rng.uniform(-1, 1));
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = x[i * std::size_t(sizes[0])] > 0 ? 1.f : 0.f;

  TensorTape tape;
  tape.set_check_finite(check_finite);
  Run run{0, 0, 0};
  for (int s = 0; s < steps; ++s) {
    if (s == 1) {
      allocations = 0;
      counting = true;
    }
    tape.reset();
    Tensor h = tape.constant<float>(Shape{batch, sizes[0]}, x);
    Tensor target = tape.constant<float>(Shape{batch, 1}, y);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      h = layers[l].forward(tape, h);
      h = l + 1 < layers.size() ? relu(h) : sigmoid(h);
    }
    Tensor loss = -mean(target * log(h) + (1.0 - target) * log(1.0 - h));
    tape.backward(loss);
    for (Layer& layer : layers) layer.step(0.5f);
    (s == 0 ? run.first_loss : run.last_loss) = loss.item();
  }
  counting = false;
  run.allocations_after_warmup = allocations;
  return run;
}

}  // namespace

TEST_CASE("a warm tensor training step allocates nothing (small layers, plain loops)") {
  Run run = train({2, 8, 8, 1}, 4, 50);
  CHECK(run.allocations_after_warmup == 0);
  CHECK(run.last_loss < run.first_loss);  // and it does train
}

TEST_CASE("a warm tensor training step allocates nothing (layers large enough for BLAS)") {
  Run run = train({32, 64, 64, 1}, 64, 20);
  CHECK(run.allocations_after_warmup == 0);
  CHECK(run.last_loss < run.first_loss);
}

TEST_CASE("a warm tensor training step in anomaly mode allocates nothing") {
  Run small = train({2, 8, 8, 1}, 4, 50, true);
  CHECK(small.allocations_after_warmup == 0);
  CHECK(small.last_loss < small.first_loss);
  Run large = train({32, 64, 64, 1}, 64, 20, true);
  CHECK(large.allocations_after_warmup == 0);
}

TEST_CASE("the counter does count: a step that grows a std::vector is seen") {
  counting = true;
  allocations = 0;
  std::vector<int> v(100);
  counting = false;
  CHECK(allocations == 1);
}

// The allocations of 19 warm steps of a tiny scalar model, in anomaly mode if asked.
static long scalar_allocations(bool check_finite) {
  Tape tape;
  tape.set_check_finite(check_finite);
  std::vector<double> w{0.5, -0.3, 0.8};
  for (int s = 0; s < 20; ++s) {
    if (s == 1) {
      allocations = 0;
      counting = true;
    }
    tape.reset();
    Value w0 = tape.input(w[0], "w0"), w1 = tape.input(w[1], "w1"), b = tape.input(w[2], "b");
    Value loss = tape.constant(0.0);
    for (double x : {-1.0, 0.5, 2.0}) {
      Value p = sigmoid(w0 * x + w1 * x * x + b);
      loss = loss + pow(p - (x > 0 ? 1.0 : 0.0), 2.0);
    }
    tape.backward(loss);
    w[0] -= 0.1 * w0.grad();
    w[1] -= 0.1 * w1.grad();
    w[2] -= 0.1 * b.grad();
  }
  counting = false;
  return allocations;
}

TEST_CASE("a warm scalar training step allocates nothing, in anomaly mode too") {
  CHECK(scalar_allocations(false) == 0);
  CHECK(scalar_allocations(true) == 0);
}

TEST_CASE("a warm Newton loop allocates nothing: Hessians recorded on the tape (Rosenbrock)") {
  // f = (1 - x)^2 + 100 (y - x^2)^2 from (-1.2, 1), the classic start; each step records f, its
  // gradient with create_graph and the Hessian's rows (Note [Gradients on the tape]), and solves
  // the 2x2 system H d = -g.
  Tape tape;
  std::array<double, 2> at{-1.2, 1.0};
  std::array<double, 4> h{};
  std::array<double, 2> g{};
  for (int step = 0; step < 20; ++step) {
    if (step == 1) {
      allocations = 0;
      counting = true;
    }
    tape.reset();
    const std::array<Value, 2> v{tape.input(at[0], "x"), tape.input(at[1], "y")};
    const Value f = pow(1.0 - v[0], 2.0) + 100.0 * pow(v[1] - v[0] * v[0], 2.0);
    tape.hessian(f, v, h, g);
    const double det = h[0] * h[3] - h[1] * h[2];
    at[0] -= (h[3] * g[0] - h[1] * g[1]) / det;
    at[1] -= (h[0] * g[1] - h[2] * g[0]) / det;
  }
  counting = false;
  CHECK(allocations == 0);
  CHECK(at[0] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(at[1] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(g[0] == doctest::Approx(0.0));
}
