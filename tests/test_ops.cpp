// Every row of the op table: gradient-checked against central differences at
// its test points, the kink policy, and numerical stability on the tails.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <tapegrad/core.hpp>
#include <tapegrad/gradcheck.hpp>

using namespace ag;

namespace {

// Records `op` on the given inputs: the generic way to call any row of the table.
template <class Rule>
Value apply(std::span<const Value> x) {
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
  CHECK(local(relu(x)) == 0.0);              // relu'(0) = 0, as the lecture notes take it
  CHECK(local(leaky_relu(x)) == 0.01);       // leaky_relu'(0) = alpha
  CHECK(local(leaky_relu(x, 0.3)) == 0.3);
  CHECK(local(elu(x, 2.0)) == 2.0);          // elu'(0) = alpha e^0 = alpha
  CHECK(local(abs(x)) == 0.0);               // sign(0) = 0
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
  CHECK(a.grad() == doctest::Approx(12.0));               // b a^(b-1)
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
