// Every row of the op table: gradient-checked against central differences at
// its test points, the kink policy, and numerical stability on the tails.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tapegrad/core.hpp>
#include <tapegrad/gradcheck.hpp>
#include <vector>

using namespace ag;

namespace {

// Records `op` on the given inputs: the generic way to call any row of the table.
template <class Rule> Value apply(std::span<const Value> x) {
  Tape& tape = x[0].tape();
  if constexpr (Rule::info.arity == 2)
    return tape.record<Rule>(x[0], x[1]);
  else
    return tape.record<Rule>(x[0]);
}

// The second operand of a binary op at test point p: keeps pow's base positive,
// and max/prelu on both sides of their kinks.
double second_operand(Op op, double p) {
  switch (op) {
    case Op::pow: return 1.3;
    case Op::max: return 0.25;
    case Op::min: return 0.25;
    case Op::prelu: return 0.2;
    case Op::div: return p + 3.5;  // away from 0
    case Op::bce: return 0.3;      // a target in [0, 1]
    default: return 0.75 - p;
  }
}

}  // namespace

TEST_CASE("every op's rule names the op it is dispatched for") {
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = static_cast<Op>(i);
    CHECK(static_cast<int>(op_info(op).op) == i);
    CHECK(!op_info(op).name.empty());
  }
}

TEST_CASE("every op agrees with central differences at each of its test points") {
  int checked_ops = 0;
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = static_cast<Op>(i);
    dispatch(op, [&](auto rule) {
      using R = decltype(rule);
      if constexpr (R::info.arity > 0) {
        ++checked_ops;
        for (double p : R::test_points) {
          std::vector<double> point{p};
          if (R::info.arity == 2) point.push_back(second_operand(op, p));
          GradcheckResult r =
              gradcheck([](Tape&, std::span<const Value> x) { return apply<R>(x); }, point);
          INFO(R::info.name, " at ", p, ": ", r.message);
          CHECK(r.ok);
        }
      }
    });
  }
  CHECK(checked_ops == kOpCount - 2);  // all but the two leaves
}

TEST_CASE("composite expressions agree with central differences") {
  auto f = [](Tape&, std::span<const Value> x) {
    Value a = x[0], b = x[1], c = x[2];
    return tanh(a * b + c) * sigmoid(a) / (1.0 + exp(c)) + pow(a, 3.0) - log(b * b + 1.0) +
           max(a, b) * softplus(c) + sqrt(abs(b) + 1.0) + prelu(c, a) + elu(b) + leaky_relu(c);
  };
  for (auto point : {std::vector<double>{0.3, -1.2, 0.7}, std::vector<double>{-0.8, 2.0, -1.5},
                     std::vector<double>{1.1, 0.4, 2.2}}) {
    GradcheckResult r = gradcheck(f, point);
    INFO(r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("kink policy: the derivative at 0 is the one of the x <= 0 branch") {
  Tape tape;
  Value x = tape.input(0.0, "x");
  auto local = [&](Value y) { return tape.local_grad(y.id(), 0); };
  CHECK(local(relu(x)) == 0.0);         // relu'(0) = 0, as the lecture notes take it
  CHECK(local(leaky_relu(x)) == 0.01);  // leaky_relu'(0) = alpha
  CHECK(local(leaky_relu(x, 0.3)) == 0.3);
  CHECK(local(elu(x, 2.0)) == 2.0);  // elu'(0) = alpha e^0 = alpha
  CHECK(local(abs(x)) == 0.0);       // sign(0) = 0
  Value alpha = tape.input(0.25, "alpha");
  Value p = prelu(x, alpha);
  CHECK(tape.local_grad(p.id(), 0) == 0.25);  // d prelu / dx = alpha
  CHECK(tape.local_grad(p.id(), 1) == 0.0);   // d prelu / d alpha = x = 0
}

TEST_CASE("max: the larger input gets the gradient, a tie splits it evenly") {
  Tape tape;
  Value a = tape.input(2.0, "a"), b = tape.input(2.0, "b"), c = tape.input(-1.0, "c");
  Value tie = max(a, b);
  tape.backward(tie);
  CHECK(a.grad() == 0.5);
  CHECK(b.grad() == 0.5);
  tape.zero_grad();
  Value m = max(a, c);
  tape.backward(m);
  CHECK(a.grad() == 1.0);
  CHECK(c.grad() == 0.0);
}

TEST_CASE("sigmoid, tanh and softplus are finite and exact on the tails (|x| = 1000)") {
  Tape tape;
  for (double v : {1000.0, -1000.0}) {
    Value x = tape.input(v, "x");
    Value s = sigmoid(x), t = tanh(x), sp = softplus(x);
    CHECK(s.value() == (v > 0 ? 1.0 : 0.0));
    CHECK(t.value() == (v > 0 ? 1.0 : -1.0));
    CHECK(sp.value() == (v > 0 ? 1000.0 : 0.0));
    for (Value y : {s, t, sp}) {
      tape.zero_grad();
      tape.backward(y);
      CHECK(std::isfinite(x.grad()));
    }
    CHECK(x.grad() == doctest::Approx(v > 0 ? 1.0 : 0.0));  // softplus' = sigmoid, last one run
  }
}

TEST_CASE("pow(Value, Value): exponent gradient a^b log a, NaN for a negative base") {
  Tape tape;
  Value a = tape.input(2.0, "a"), b = tape.input(3.0, "b");
  Value y = pow(a, b);
  tape.backward(y);
  CHECK(y.value() == 8.0);
  CHECK(a.grad() == doctest::Approx(12.0));                 // b a^(b-1)
  CHECK(b.grad() == doctest::Approx(8.0 * std::log(2.0)));  // a^b log a

  Value n = tape.input(-2.0, "n");
  Value yn = pow(n, b);
  tape.backward(yn);
  CHECK(yn.value() == -8.0);
  CHECK(n.grad() == doctest::Approx(12.0));
  CHECK(std::isnan(b.grad()));  // log of a negative base, as PyTorch gives

  Value zero = tape.input(0.0, "zero");
  tape.backward(pow(zero, b));
  CHECK(zero.grad() == 0.0);
}

TEST_CASE("pow with a fixed exponent, and the derived ops") {
  Tape tape;
  Value x = tape.input(3.0, "x");
  Value y = pow(x, 2.0);
  tape.backward(y);
  CHECK(y.value() == 9.0);
  CHECK(x.grad() == 6.0);
  tape.zero_grad();
  tape.backward(pow(x, 0.0));
  CHECK(x.grad() == 0.0);
  tape.zero_grad();
  Value z = 1.0 / x;  // a double on the left records a constant
  tape.backward(z);
  CHECK(z.value() == doctest::Approx(1.0 / 3));
  CHECK(x.grad() == doctest::Approx(-1.0 / 9));
}

TEST_CASE("NaN is never swallowed: every row's value at a NaN operand is NaN") {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  for (int i = 0; i < kOpCount; ++i) {
    dispatch(static_cast<Op>(i), [&](auto rule) {
      using R = decltype(rule);
      if constexpr (R::info.arity > 0) {
        Tape tape;
        Value x = tape.input(nan, "x");
        Value y = R::info.arity == 2
                      ? tape.record<R>(x, tape.input(second_operand(R::info.op, 1), "b"))
                      : tape.record<R>(x);
        INFO(R::info.name);
        CHECK(std::isnan(y.value()));
      }
    });
  }
  // The order of max's and min's operands does not matter (max(NaN, 1) was 1, max(1, NaN) NaN).
  Tape tape;
  Value x = tape.input(nan, "x"), one = tape.input(1.0, "one");
  for (Value y : {max(x, one), max(one, x), min(x, one), min(one, x), clamp(x, -1, 1), relu(x),
                  leaky_relu(x), elu(x), prelu(x, 0.2)})
    CHECK(std::isnan(y.value()));
}

TEST_CASE("the derivative at NaN is PyTorch's (Note [Kink policy])") {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  Tape tape;
  Value x = tape.input(nan, "x"), one = tape.input(1.0, "one");
  auto local = [&](Value y, int k = 0) { return tape.local_grad(y.id(), k); };
  CHECK(local(relu(x)) == 1.0);  // threshold_backward: x <= 0 is false for NaN
  CHECK(local(leaky_relu(x, 0.3)) == 0.3);
  CHECK(local(elu(x, 2.0)) == 1.0);
  Value alpha = tape.input(0.25, "alpha");
  Value p = prelu(x, alpha);
  CHECK(local(p, 0) == 0.25);
  CHECK(std::isnan(local(p, 1)));  // d/dalpha = x
  for (Value m : {max(x, one), max(one, x), min(x, one), min(one, x)}) {
    CHECK(local(m, 0) == 1.0);  // neither operand is smaller, so neither is masked out
    CHECK(local(m, 1) == 1.0);
  }
  CHECK(local(clamp_min(x, 0.0)) == 0.0);
  CHECK(local(clamp_max(x, 0.0)) == 0.0);
  CHECK(local(abs(x)) == 0.0);
  for (Value y : {sigmoid(x), tanh(x), softplus(x), gelu(x), gelu_tanh(x), silu(x)})
    CHECK(std::isnan(local(y)));
}

TEST_CASE("elu's derivative on the far left is alpha e^x, with no cancellation") {
  Tape tape;
  for (double v : {-30.0, -50.0, -700.0}) {
    Value x = tape.input(v, "x");
    const double exact = 2.0 * std::exp(v);
    const double local = tape.local_grad(elu(x, 2.0).id(), 0);
    CAPTURE(v);
    // y + alpha, the old form, is 2 expm1(-30) + 2: 1.7e-4 relative error at -30, 0 at -50
    CHECK(std::abs(local - exact) <= 1e-15 * exact);
  }
}

TEST_CASE("min: the smaller input gets the gradient, a tie splits it evenly") {
  Tape tape;
  Value a = tape.input(2.0, "a"), b = tape.input(2.0, "b"), c = tape.input(-1.0, "c");
  Value tie = min(a, b);
  tape.backward(tie);
  CHECK(tie.value() == 2.0);
  CHECK(a.grad() == 0.5);
  CHECK(b.grad() == 0.5);
  tape.zero_grad();
  Value m = min(a, c);
  tape.backward(m);
  CHECK(m.value() == -1.0);
  CHECK(a.grad() == 0.0);
  CHECK(c.grad() == 1.0);
  CHECK(min(3.0, a).value() == 2.0);
}

TEST_CASE("clamp: torch.clamp's value, gradient 1 on [lo, hi] inclusive and 0 outside") {
  struct Case {
    double x, lo, hi, value, grad;
  };
  const Case cases[] = {
      {-2, -1, 1, -1, 0},
      {-1, -1, 1, -1, 1},
      {0.5, -1, 1, 0.5, 1},
      {1, -1, 1, 1, 1},
      {3, -1, 1, 1, 0},
      {0, 1, -1, -1, 0},  // lo > hi gives hi
      {0.25, 0.25, 0.25, 0.25, 1},
  };
  for (const Case& c : cases) {
    Tape tape;
    Value x = tape.input(c.x, "x");
    Value y = clamp(x, c.lo, c.hi);
    tape.backward(y);
    CAPTURE(c.x);
    CAPTURE(c.lo);
    CAPTURE(c.hi);
    CHECK(y.value() == c.value);
    CHECK(x.grad() == c.grad);
  }
  // Inside and outside (not at the bounds, where a central difference gives 1/2).
  for (double v : {-1.5, -0.5, 0.3, 0.9, 1.7}) {
    const std::vector<double> point{v};
    GradcheckResult r =
        gradcheck([](Tape&, std::span<const Value> x) { return clamp(x[0], -1.0, 1.0); }, point);
    INFO(v, ": ", r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("gelu, gelu_tanh and silu: PyTorch's values, and gelu exact on the left tail") {
  Tape tape;
  Value one = tape.input(1.0, "one");
  CHECK(gelu(one).value() == doctest::Approx(0.8413447460685429).epsilon(1e-15));
  CHECK(gelu_tanh(one).value() == doctest::Approx(0.8411919906082768).epsilon(1e-15));
  CHECK(silu(one).value() == doctest::Approx(0.7310585786300049).epsilon(1e-15));
  // x Φ(x) at -10 is -7.62e-23; 1 + erf(x/√2) would cancel it to 0
  Value far = tape.input(-10.0, "far");
  CHECK(gelu(far).value() == doctest::Approx(-7.619853024160527e-23).epsilon(1e-13));
  for (Value y : {gelu(tape.input(-40.0, "x")), gelu_tanh(tape.input(-40.0, "x")),
                  silu(tape.input(-1000.0, "x")), silu(tape.input(1000.0, "x"))}) {
    CHECK(std::isfinite(y.value()));
    CHECK(std::isfinite(tape.local_grad(y.id(), 0)));
  }
}

TEST_CASE("the table says how the language calls each function, and which are rectifiers") {
  int functions = 0;
  for (int i = 0; i < kOpCount; ++i) {
    const OpInfo& info = op_info(static_cast<Op>(i));
    CAPTURE(info.name);
    CHECK(info.has_param == !info.param_name.empty());
    CHECK((info.param_optional ? info.has_param : true));
    if (info.signature.empty()) continue;
    ++functions;
    const std::string_view sig = info.signature;
    CHECK(sig.starts_with(std::string(info.name) + "("));
    CHECK(sig.ends_with(")"));
    CHECK(!info.help.empty());
    // operands and the fixed number, one comma between each two
    const auto commas = std::count(sig.begin(), sig.end(), ',');
    CHECK(commas + 1 == info.arity + (info.has_param ? 1 : 0));
    CHECK((sig.find('[') != std::string_view::npos) == info.param_optional);
    if (info.has_param) CHECK(sig.find(info.param_name) != std::string_view::npos);
  }
  CHECK(functions == 19);
  std::vector<std::string_view> rectifiers;
  for (int i = 0; i < kOpCount; ++i) {
    const OpInfo& info = op_info(static_cast<Op>(i));
    if (info.rectifier) rectifiers.push_back(info.name);
  }
  CHECK(rectifiers == std::vector<std::string_view>{"relu", "leaky_relu", "elu", "prelu"});
  CHECK(find_op("gelu_tanh") == Op::gelu_tanh);
  CHECK(!find_op("sin"));
}
