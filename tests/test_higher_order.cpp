// Gradients of gradients on the scalar tape: every row's recorded local derivative, second and
// third derivatives against central differences and closed forms, Hessians, Jacobians.

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <numbers>
#include <span>
#include <string>
#include <tapegrad/core.hpp>
#include <vector>

using namespace ag;

namespace {

// The second operand of a binary row at test point p: pow's exponent, both sides of max's, min's
// and prelu's kinks, a divisor away from 0, a target in [0, 1] (as tests/test_ops.cpp).
double second_operand(Op op, double p) {
  switch (op) {
    case Op::pow: return 1.3;
    case Op::max: return 0.25;
    case Op::min: return 0.25;
    case Op::prelu: return 0.2;
    case Op::div: return p + 3.5;
    case Op::bce: return 0.3;
    default: return 0.75 - p;
  }
}

// The row R recorded on fresh inputs at `point` (one or two numbers).
template <class R>
Value record_row(Tape& tape, std::span<const double> point, std::vector<Value>& inputs) {
  inputs.clear();
  for (double v : point) inputs.push_back(tape.input(v));
  if constexpr (R::info.arity == 2)
    return tape.record<R>(inputs[0], inputs[1]);
  else
    return tape.record<R>(inputs[0]);
}

std::vector<double> point_of(Op op, int arity, double p) {
  std::vector<double> point{p};
  if (arity == 2) point.push_back(second_operand(op, p));
  return point;
}

// The k-th derivatives of a row at `point`, all orders flattened: the gradient recorded with
// create_graph (order - 1) times, then one plain pass. For order 2 and two inputs: H00 H01 H10
// H11.
template <class R> std::vector<double> derivatives(std::span<const double> point, int order) {
  Tape tape;
  std::vector<Value> x;
  std::vector<Value> level{record_row<R>(tape, point, x)};
  for (int o = 1; o < order; ++o) {
    std::vector<Value> next;
    for (Value v : level)
      for (Value g : tape.grad(v, x, {.create_graph = true})) next.push_back(g);
    level = next;
  }
  std::vector<double> out;
  for (Value v : level) {
    std::vector<double> g(x.size());
    tape.grad(v, x, g);
    out.insert(out.end(), g.begin(), g.end());
  }
  return out;
}

// Central differences of the (order - 1)-th derivatives: derivative k of the result is
// (D(x + h e_j) - D(x - h e_j)) / 2h, laid out as derivatives<R>(point, order) lays it out.
template <class R>
std::vector<double> central_differences(std::span<const double> point, int order, double h) {
  const std::size_t n = point.size();
  const std::size_t lower = std::size_t(std::pow(double(n), order - 1));
  std::vector<double> out(lower * n);
  for (std::size_t j = 0; j < n; ++j) {
    std::vector<double> plus(point.begin(), point.end()), minus = plus;
    plus[j] += h;
    minus[j] -= h;
    const std::vector<double> up = derivatives<R>(plus, order - 1);
    const std::vector<double> down = derivatives<R>(minus, order - 1);
    for (std::size_t i = 0; i < lower; ++i) out[i * n + j] = (up[i] - down[i]) / (2 * h);
  }
  return out;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double rtol,
                 double atol) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("entry ", i, ": engine ", got[i], ", central differences ", want[i]);
    CHECK(std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]));
  }
}

double sigmoid_of(double x) { return 1 / (1 + std::exp(-x)); }
double normal_pdf(double x) { return std::exp(-x * x / 2) / std::sqrt(2 * std::numbers::pi); }

// The derivative of order `order` of a unary function at x, by create_graph.
template <class F> double nth_derivative(F f, double at, int order) {
  Tape tape;
  Value x = tape.input(at, "x");
  Value d = f(x);
  for (int o = 0; o < order; ++o) d = tape.grad(d, {x}, {.create_graph = true})[0];
  return d.value();
}

}  // namespace

TEST_CASE("every row's gradient recorded with create_graph equals the plain backward's") {
  // Note [Local derivatives on the tape]: local_graph computes its numbers as local does.
  for (int i = 0; i < kOpCount; ++i) {
    dispatch(static_cast<Op>(i), [&](auto rule) {
      using R = decltype(rule);
      if constexpr (R::info.arity > 0) {
        for (double p : R::test_points) {
          const std::vector<double> point = point_of(R::info.op, R::info.arity, p);
          Tape tape;
          std::vector<Value> x;
          Value y = record_row<R>(tape, point, x);
          std::vector<double> plain(x.size());
          tape.grad(y, x, plain);
          const std::vector<Value> recorded = tape.grad(y, x, {.create_graph = true});
          INFO(R::info.name, " at ", p);
          for (std::size_t k = 0; k < x.size(); ++k) CHECK(recorded[k].value() == plain[k]);
        }
      }
    });
  }
}

TEST_CASE("every row's second derivatives agree with central differences of its gradient") {
  int rows = 0;
  for (int i = 0; i < kOpCount; ++i) {
    dispatch(static_cast<Op>(i), [&](auto rule) {
      using R = decltype(rule);
      if constexpr (R::info.arity > 0) {
        ++rows;
        for (double p : R::test_points) {
          const std::vector<double> point = point_of(R::info.op, R::info.arity, p);
          INFO(R::info.name, " at ", p);
          check_close(derivatives<R>(point, 2), central_differences<R>(point, 2, 1e-6), 1e-6, 1e-7);
        }
      }
    });
  }
  CHECK(rows == kOpCount - 2);  // all but the two leaves
}

TEST_CASE("every row's third derivatives agree with central differences of its Hessian") {
  for (int i = 0; i < kOpCount; ++i) {
    dispatch(static_cast<Op>(i), [&](auto rule) {
      using R = decltype(rule);
      if constexpr (R::info.arity > 0) {
        for (double p : R::test_points) {
          const std::vector<double> point = point_of(R::info.op, R::info.arity, p);
          INFO(R::info.name, " at ", p);
          check_close(derivatives<R>(point, 3), central_differences<R>(point, 3, 1e-5), 1e-5, 1e-6);
        }
      }
    });
  }
}

TEST_CASE("second and third derivatives against their closed forms") {
  for (double x : {-2.5, -0.3, 0.0, 0.8, 3.0}) {
    INFO("x = ", x);
    const double s = sigmoid_of(x), t = std::tanh(x);
    // σ'' = σ (1 - σ) (1 - 2σ), the lecture's; σ''' = σ (1 - σ) (1 - 6σ + 6σ^2)
    CHECK(nth_derivative([](Value v) { return sigmoid(v); }, x, 2) ==
          doctest::Approx(s * (1 - s) * (1 - 2 * s)).epsilon(1e-12));
    CHECK(nth_derivative([](Value v) { return sigmoid(v); }, x, 3) ==
          doctest::Approx(s * (1 - s) * (1 - 6 * s + 6 * s * s)).epsilon(1e-12));
    // tanh'' = -2 tanh (1 - tanh^2); tanh''' = -2 (1 - tanh^2) (1 - 3 tanh^2)
    CHECK(nth_derivative([](Value v) { return tanh(v); }, x, 2) ==
          doctest::Approx(-2 * t * (1 - t * t)).epsilon(1e-12));
    CHECK(nth_derivative([](Value v) { return tanh(v); }, x, 3) ==
          doctest::Approx(-2 * (1 - t * t) * (1 - 3 * t * t)).epsilon(1e-12));
    // softplus'' = σ (1 - σ)
    CHECK(nth_derivative([](Value v) { return softplus(v); }, x, 2) ==
          doctest::Approx(s * (1 - s)).epsilon(1e-12));
    // gelu'' = φ(x) (2 - x^2); gelu''' = φ(x) (x^3 - 4x)
    CHECK(nth_derivative([](Value v) { return gelu(v); }, x, 2) ==
          doctest::Approx(normal_pdf(x) * (2 - x * x)).epsilon(1e-12));
    CHECK(nth_derivative([](Value v) { return gelu(v); }, x, 3) ==
          doctest::Approx(normal_pdf(x) * (x * x * x - 4 * x)).epsilon(1e-12));
    // silu'' = σ (1 - σ) (2 + x (1 - 2σ))
    CHECK(nth_derivative([](Value v) { return silu(v); }, x, 2) ==
          doctest::Approx(s * (1 - s) * (2 + x * (1 - 2 * s))).epsilon(1e-12));
    CHECK(nth_derivative([](Value v) { return exp(v); }, x, 3) ==
          doctest::Approx(std::exp(x)).epsilon(1e-15));
  }
  for (double x : {0.4, 1.0, 2.5}) {
    CHECK(nth_derivative([](Value v) { return log(v); }, x, 3) ==
          doctest::Approx(2 / (x * x * x)).epsilon(1e-12));
    CHECK(nth_derivative([](Value v) { return sqrt(v); }, x, 2) ==
          doctest::Approx(-0.25 * std::pow(x, -1.5)).epsilon(1e-12));
  }
}

TEST_CASE("any order: the fifth derivative of x^5 is 120, the sixth 0") {
  CHECK(nth_derivative([](Value v) { return pow(v, 5.0); }, 1.5, 4) == doctest::Approx(180.0));
  CHECK(nth_derivative([](Value v) { return pow(v, 5.0); }, 1.5, 5) == doctest::Approx(120.0));
  CHECK(nth_derivative([](Value v) { return pow(v, 5.0); }, 1.5, 6) == 0.0);
  CHECK(nth_derivative([](Value v) { return v * v * v; }, -2.0, 3) == 6.0);
  CHECK(nth_derivative([](Value v) { return exp(2.0 * v); }, 0.5, 4) ==
        doctest::Approx(16 * std::exp(1.0)).epsilon(1e-14));
}

TEST_CASE("kink policy: relu'' = 0 everywhere, the kink included; elu''(0) = alpha") {
  for (double x : {-1.0, -1e-9, 0.0, 1e-9, 1.0}) {
    INFO("x = ", x);
    CHECK(nth_derivative([](Value v) { return relu(v); }, x, 2) == 0.0);
    CHECK(nth_derivative([](Value v) { return leaky_relu(v, 0.1); }, x, 2) == 0.0);
    CHECK(nth_derivative([](Value v) { return abs(v); }, x, 2) == 0.0);
    CHECK(nth_derivative([](Value v) { return clamp(v, -0.5, 0.5); }, x, 2) == 0.0);
  }
  // The x <= 0 branch's alpha e^x at the kink, 0 on the right
  CHECK(nth_derivative([](Value v) { return elu(v, 2.0); }, 0.0, 2) == 2.0);
  CHECK(nth_derivative([](Value v) { return elu(v, 2.0); }, 1.0, 2) == 0.0);
  CHECK(nth_derivative([](Value v) { return elu(v, 2.0); }, -1.0, 3) ==
        doctest::Approx(2 * std::exp(-1.0)));
  // Far right, e^x would overflow; the branch mask is 0 there and the result stays finite.
  CHECK(nth_derivative([](Value v) { return elu(v); }, 800.0, 2) == 0.0);
  // prelu: d²/dx dalpha = 1 on the left, 0 on the right
  for (double at : {-0.5, 0.5}) {
    Tape tape;
    Value x = tape.input(at, "x"), alpha = tape.input(0.2, "alpha");
    std::array<double, 4> h{};
    tape.hessian(prelu(x, alpha), std::array{x, alpha}, h);
    CHECK(h == std::array<double, 4>{0, at < 0 ? 1.0 : 0.0, at < 0 ? 1.0 : 0.0, 0});
  }
}

TEST_CASE("the Hessian of a function of three inputs: symmetric, and as central differences say") {
  auto f = [](std::span<const Value> v) {
    const Value a = v[0], b = v[1], c = v[2];
    return tanh(a * b + c) * sigmoid(a) / (1.0 + exp(c)) + pow(a, 3.0) - log(b * b + 1.0) +
           softplus(c) * b + sqrt(abs(b) + 1.0) * gelu(a) + pow(b * b + 0.5, c) + elu(c) * silu(a);
  };
  for (const std::array<double, 3> point :
       {std::array{0.3, -1.2, 0.7}, std::array{-0.8, 2.0, -1.5}, std::array{1.1, 0.4, 2.2}}) {
    Tape tape;
    std::array<Value, 3> x{};
    for (std::size_t i = 0; i < 3; ++i) x[i] = tape.input(point[i]);
    std::array<double, 9> h{};
    std::array<double, 3> g{};
    tape.hessian(f(x), x, h, g);
    // The gradient it reports is the plain backward's
    std::array<double, 3> plain{};
    tape.grad(f(x), x, plain);
    CHECK(g == plain);
    for (std::size_t i = 0; i < 3; ++i) {
      for (std::size_t j = 0; j < 3; ++j) {
        INFO("H[", i, "][", j, "] at ", point[0], ", ", point[1], ", ", point[2]);
        // mixed partials commute (to rounding: the two are different sums)
        CHECK(h[i * 3 + j] == doctest::Approx(h[j * 3 + i]).epsilon(1e-12));
        // d/dx_j of the gradient's component i, by central differences of plain backward
        const double step = 1e-6;
        std::array<double, 3> up{}, down{};
        for (double sign : {1.0, -1.0}) {
          Tape t;
          std::array<Value, 3> v{};
          for (std::size_t k = 0; k < 3; ++k)
            v[k] = t.input(point[k] + (k == j ? sign * step : 0.0));
          t.grad(f(v), v, sign > 0 ? up : down);
        }
        CHECK(h[i * 3 + j] == doctest::Approx((up[i] - down[i]) / (2 * step)).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("grad: recorded gradients are nodes; without create_graph nothing changes") {
  Tape tape;
  Value x = tape.input(3.0, "x"), y = tape.input(-2.0, "y"), unused = tape.input(1.0, "u");
  Value f = x * x * y;  // df/dx = 2xy = -12, df/dy = x^2 = 9
  tape.backward(f);     // x.grad() = -12, accumulated
  const std::size_t size = tape.size();

  std::array<double, 3> numbers{};
  tape.grad(f, std::array{x, y, unused}, numbers);
  CHECK(numbers == std::array<double, 3>{-12, 9, 0});
  CHECK(tape.size() == size);  // recorded nothing
  CHECK(x.grad() == -12);      // the accumulated gradients are as they were
  CHECK(y.grad() == 9);

  const std::vector<Value> g = tape.grad(f, {x, y, unused}, {.create_graph = true});
  CHECK(tape.size() > size);
  CHECK(g[0].value() == -12);
  CHECK(g[1].value() == 9);
  CHECK(g[2].op() == Op::constant);  // f does not depend on u: a constant 0
  CHECK(g[2].value() == 0);
  CHECK(x.grad() == -12);
  // d(2xy)/dx = 2y, d(2xy)/dy = 2x; d(x^2)/dx = 2x
  const std::vector<Value> gg = tape.grad(g[0], {x, y});
  CHECK(gg[0].op() == Op::constant);  // without create_graph: constants holding the numbers
  CHECK(gg[0].value() == -4);
  CHECK(gg[1].value() == 6);
  CHECK(tape.grad(g[1], {x, y})[0].value() == 6);
  // The recorded gradient is an ordinary node: backward accumulates into the inputs from it
  tape.zero_grad();
  tape.backward(g[1]);
  CHECK(x.grad() == 6);
  // The gradient of a linear function is a constant, and its gradient 0
  const Value linear = tape.grad(3.0 * x + y, {x}, {.create_graph = true})[0];
  CHECK(linear.value() == 3);
  CHECK(tape.grad(linear, {x}, {.create_graph = true})[0].value() == 0);
}

TEST_CASE("grad with respect to an intermediate node, and a node f does not reach") {
  Tape tape;
  Value x = tape.input(0.5, "x");
  Value h = tanh(x);
  Value f = h * h;  // df/dh = 2h
  Value later = exp(x);
  const std::vector<Value> g = tape.grad(f, {h, later}, {.create_graph = true});
  CHECK(g[0].value() == doctest::Approx(2 * std::tanh(0.5)));
  CHECK(g[1].value() == 0);
  // d(2h)/dx = 2 (1 - h^2)
  CHECK(tape.grad(g[0], {x})[0].value() ==
        doctest::Approx(2 * (1 - std::tanh(0.5) * std::tanh(0.5))));
}

TEST_CASE("the Jacobian of a small vector function") {
  Tape tape;
  Value r = tape.input(2.0, "r"), t = tape.input(0.5, "t");
  // (r e^t, r^2 t): one plain backward per output
  const std::array<Value, 2> y{r * exp(t), r * r * t};
  std::array<double, 4> jac{};
  tape.jacobian(y, std::array{r, t}, jac);
  CHECK(jac[0] == doctest::Approx(std::exp(0.5)));  // d(r e^t)/dr
  CHECK(jac[1] == doctest::Approx(2 * std::exp(0.5)));
  CHECK(jac[2] == doctest::Approx(2.0));  // d(r^2 t)/dr = 2rt
  CHECK(jac[3] == doctest::Approx(4.0));  // r^2
}

TEST_CASE("grad, hessian and jacobian say what is wrong with their arguments") {
  Tape tape, other;
  Value x = tape.input(1.0, "x");
  Value f = x * x;
  std::array<double, 1> one{};
  std::array<double, 3> three{};
  CHECK_THROWS_WITH_AS(tape.grad(f, std::array{x, x}, one),
                       "grad: 2 values to differentiate with respect to, but room for 1 results",
                       Error);
  CHECK_THROWS_WITH_AS(tape.hessian(f, std::array{x}, three),
                       "hessian: 1 inputs make 1 second partials, but out has room for 3", Error);
  CHECK_THROWS_WITH_AS(tape.jacobian(std::array{f}, std::array{x}, three),
                       "jacobian: 1 outputs by 1 inputs make 1 partials, but out has room for 3",
                       Error);
  Value y = other.input(1.0, "y");
  CHECK_THROWS_AS(tape.grad(f, {y}, {.create_graph = true}), Error);
}

TEST_CASE("an anomaly in a plain grad still puts the inputs' gradients back") {
  Tape tape;
  Value x = tape.input(0.0, "x");
  tape.backward(x * 2.0);
  CHECK(x.grad() == 2);
  Value f = sqrt(x);  // d/dx = inf at 0
  tape.set_check_finite(true);
  std::array<double, 1> g{};
  CHECK_THROWS_AS(tape.grad(f, std::array{x}, g), AnomalyError);
  CHECK(x.grad() == 2);
}
