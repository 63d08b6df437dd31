// The scalar tape: the lecture's classic circuits with their published numbers,
// accumulation at forks, repeated backward, reset, and the Stepper's steps.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tapegrad/core.hpp>
#include <vector>

using namespace ag;

TEST_CASE("CS231n: f = (x + y) z at x=-2, y=5, z=-4") {
  Tape tape;
  Value x = tape.input(-2.0, "x"), y = tape.input(5.0, "y"), z = tape.input(-4.0, "z");
  Value q = (x + y).named("q");
  Value f = (q * z).named("f");
  tape.backward(f);
  CHECK(f.value() == -12);
  CHECK(q.grad() == -4);  // df/dq = z
  CHECK(z.grad() == 3);   // df/dz = q
  CHECK(x.grad() == -4);  // df/dx = df/dq * dq/dx = -4 * 1
  CHECK(y.grad() == -4);
}

TEST_CASE("CS231n: the sigmoid neuron f = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2)))") {
  Tape tape;
  Value w0 = tape.input(2.0, "w0"), x0 = tape.input(-1.0, "x0");
  Value w1 = tape.input(-3.0, "w1"), x1 = tape.input(-2.0, "x1"), w2 = tape.input(-3.0, "w2");
  Value f = 1.0 / (1.0 + exp(-(w0 * x0 + w1 * x1 + w2)));
  tape.backward(f);
  CHECK(f.value() == doctest::Approx(0.73).epsilon(0.01));
  // The published gradients: [-0.2, 0.39, -0.39, -0.59, 0.2] (rounded)
  CHECK(w0.grad() == doctest::Approx(-0.20).epsilon(0.02));
  CHECK(x0.grad() == doctest::Approx(0.39).epsilon(0.02));
  CHECK(w1.grad() == doctest::Approx(-0.39).epsilon(0.02));
  CHECK(x1.grad() == doctest::Approx(-0.59).epsilon(0.02));
  CHECK(w2.grad() == doctest::Approx(0.20).epsilon(0.02));

  // The same neuron with the sigmoid gate: the local gradient is s(1 - s).
  Tape gate;
  Value v0 = gate.input(2.0), u0 = gate.input(-1.0), v1 = gate.input(-3.0), u1 = gate.input(-2.0),
        v2 = gate.input(-3.0);
  Value s = sigmoid(v0 * u0 + v1 * u1 + v2);
  gate.backward(s);
  CHECK(s.value() == doctest::Approx(f.value()));
  CHECK(v0.grad() == doctest::Approx(w0.grad()));
  CHECK(u1.grad() == doctest::Approx(x1.grad()));
  CHECK(v2.grad() == doctest::Approx(s.value() * (1 - s.value())));
}

TEST_CASE("micrograd's README example: g = 24.7041, dg/da = 138.8338, dg/db = 645.5773") {
  Tape tape;
  Value a = tape.input(-4.0, "a"), b = tape.input(2.0, "b");
  Value c = a + b;
  Value d = a * b + pow(b, 3.0);
  c += c + 1;
  c += 1 + c + (-a);
  d += d * 2 + relu(b + a);
  d += 3 * d + relu(b - a);
  Value e = c - d;
  Value f = pow(e, 2.0);
  Value g = f / 2.0;
  g += 10.0 / f;
  tape.backward(g);
  CHECK(g.value() == doctest::Approx(24.7041).epsilon(1e-6));
  CHECK(a.grad() == doctest::Approx(138.8338).epsilon(1e-6));
  CHECK(b.grad() == doctest::Approx(645.5773).epsilon(1e-6));
}

TEST_CASE("micrograd's neuron: o = tanh(x1 w1 + x2 w2 + b)") {
  Tape tape;
  Value x1 = tape.input(2.0, "x1"), x2 = tape.input(0.0, "x2");
  Value w1 = tape.input(-3.0, "w1"), w2 = tape.input(1.0, "w2");
  Value b = tape.input(6.8813735870195432, "b");
  Value o = tanh(x1 * w1 + x2 * w2 + b);
  tape.backward(o);
  CHECK(o.value() == doctest::Approx(0.7071).epsilon(1e-4));
  CHECK(x1.grad() == doctest::Approx(-1.5).epsilon(1e-4));
  CHECK(w1.grad() == doctest::Approx(1.0).epsilon(1e-4));
  CHECK(x2.grad() == doctest::Approx(0.5).epsilon(1e-4));
  CHECK(w2.grad() == doctest::Approx(0.0));
}

TEST_CASE("a logistic unit with binary cross-entropy: dL/dz = y_hat - y") {
  Tape tape;
  Value w = tape.input(0.5, "w"), x = tape.input(2.0, "x"), b = tape.input(-0.3, "b");
  const double y = 1.0;
  Value z = w * x + b;
  Value yhat = sigmoid(z);
  Value loss = -(y * log(yhat) + (1 - y) * log(1 - yhat));
  tape.backward(loss);
  CHECK(z.grad() == doctest::Approx(yhat.value() - y));
  CHECK(w.grad() == doctest::Approx((yhat.value() - y) * 2.0));  // dL/dw = (y_hat - y) x
  CHECK(b.grad() == doctest::Approx(yhat.value() - y));
}

TEST_CASE("a node used several times gets the sum of its contributions") {
  Tape tape;
  Value x = tape.input(3.0, "x");
  tape.backward(x * x);
  CHECK(x.grad() == 6);  // 2x
  tape.zero_grad();
  tape.backward(x + x);
  CHECK(x.grad() == 2);
  tape.zero_grad();
  Value a = x * 2.0;  // fan-out: a feeds three nodes
  Value y = a * a + a + exp(a * 0.0);
  tape.backward(y);
  CHECK(x.grad() == doctest::Approx((2 * 6.0 + 1 + 0) * 2));
}

TEST_CASE("backward from an intermediate node, and a second backward accumulates into inputs") {
  Tape tape;
  Value x = tape.input(-2.0, "x"), y = tape.input(5.0, "y"), z = tape.input(-4.0, "z");
  Value q = x + y;
  Value f = q * z;
  tape.backward(q);
  CHECK(x.grad() == 1);
  CHECK(z.grad() == 0);  // q does not depend on z
  CHECK(q.grad() == 1);

  tape.zero_grad();
  tape.backward(f);
  tape.backward(f);  // accumulates into inputs, as PyTorch's leaf .grad
  CHECK(x.grad() == -8);
  CHECK(z.grad() == 6);
  CHECK(q.grad() == -4);  // an intermediate gradient describes the latest pass only
  tape.zero_grad();
  CHECK(x.grad() == 0);
  CHECK(q.grad() == 0);
}

TEST_CASE("constants get no gradient and add no step") {
  Tape tape;
  Value x = tape.input(2.0, "x");
  Value c = tape.constant(3.0);
  Value k = c * c;  // depends on no input
  Value y = x * k;
  Stepper stepper = tape.stepper(y);
  int steps = 0;
  while (stepper.next()) ++steps;
  CHECK(steps == 1);  // only y = x * k; k = c * c needs no gradient
  CHECK(x.grad() == 9);
  CHECK(c.grad() == 0);
  CHECK(k.grad() == 0);
}

TEST_CASE("reset keeps capacity and invalidates old Values with a clear error") {
  Tape tape;
  Value x = tape.input(1.0, "x");
  Value y = exp(x);
  for (int i = 0; i < 100; ++i) y = y * x;
  const std::size_t nodes = tape.size();
  tape.reset();
  CHECK(tape.size() == 0);
  CHECK(!x.valid());
  CHECK_THROWS_WITH_AS(x.value(), doctest::Contains("reset"), Error);
  CHECK_THROWS_WITH_AS(x + 1.0, doctest::Contains("reset"), Error);
  CHECK_THROWS_AS(tape.backward(y), Error);
  Value fresh = tape.input(2.0, "x");
  CHECK(fresh.valid());
  CHECK(fresh.value() == 2.0);
  CHECK(nodes > 100);
}

// The arena grows by copying (Note [Tape storage]), and reset() keeps it: gradients of an earlier
// pass or recording must read 0 where the latest pass did not reach, the inputs' accumulated
// gradients must survive the arena growing, and a first contribution of -0.0 must give the +0.0
// of 0.0 + -0.0 (what a cleared gradient gives), as any change to how gradients start must keep.
TEST_CASE("gradients across passes, growth and reset: stale ones read 0, inputs keep theirs") {
  Tape tape;
  Value x = tape.input(3.0, "x"), w = tape.input(-1.0, "w");
  Value h = x * x;  // 9, dh/dx = 6
  Value y = h * w;
  tape.backward(y);
  CHECK(h.grad() == -1);
  CHECK(x.grad() == -6);
  // A second pass from a node that h does not reach: h's gradient of the first pass is gone,
  // as h is not reached in this one; x accumulates.
  tape.backward(x * 2.0);
  CHECK(h.grad() == 0);
  CHECK(!tape.reached(h.id()));
  CHECK(x.grad() == -4);
  CHECK(w.grad() == 9);  // the input not reached this time keeps what it had

  // Grow the arena well past its first capacity: the recorded values and the inputs'
  // accumulated gradients are carried over.
  Value z = x;
  for (int i = 0; i < 5000; ++i) z = z * 1.0;
  CHECK(tape.size() > 5000);
  CHECK(x.grad() == -4);
  CHECK(w.grad() == 9);
  CHECK(h.value() == 9);
  tape.backward(z);
  CHECK(x.grad() == -3);

  // After reset, new nodes at the old ids read 0 until reached, and a new input starts from 0
  // whatever the node at its id held.
  tape.reset();
  Value a = tape.input(2.0, "a");
  Value b = tape.input(5.0, "b");
  Value c = a * b;
  CHECK(a.grad() == 0);
  CHECK(b.grad() == 0);
  CHECK(c.grad() == 0);
  tape.backward(c);
  CHECK(a.grad() == 5);
  CHECK(b.grad() == 2);

  // A first contribution of -0.0 lands as 0.0 + -0.0 = +0.0, as a zeroed slot gave.
  tape.reset();
  Value u = tape.input(0.0, "u");
  Value v = u * -1.0;  // dv/du = -1
  Value s = v * -0.0;  // ds/dv = -0.0: v's first contribution is 1 * -0.0
  tape.backward(s);
  CHECK(v.grad() == 0.0);
  CHECK(!std::signbit(v.grad()));
  CHECK(!std::signbit(u.grad()));
}

// Names live apart from the nodes (Note [Tape storage]): naming out of recording order, naming
// again and resetting must each leave every node with the name it was last given.
TEST_CASE("names: out of order, renamed, and forgotten by reset") {
  Tape tape;
  Value x = tape.input(1.0, "x");
  Value y = tape.input(2.0);
  Value q = (x * y).named("q");
  Value r = (q + x).named("r");
  y.named("y");            // before q and r on the tape, named after them
  q.named("product");      // named again: the new name wins
  Value unnamed = exp(r);  // between named nodes, it has none
  Value s = (unnamed - y).named("s");
  CHECK(x.name() == "x");
  CHECK(y.name() == "y");
  CHECK(q.name() == "product");
  CHECK(r.name() == "r");
  CHECK(unnamed.name().empty());
  CHECK(s.name() == "s");
  CHECK(unnamed.id() == 4);
  CHECK(tape.label(unnamed.id()) == "t4");
  tape.reset();
  Value fresh = tape.input(3.0);
  Value named = (fresh * fresh).named("sq");
  CHECK(fresh.name().empty());  // its id was x's: the old name is gone
  CHECK(named.name() == "sq");
}

TEST_CASE("mixing tapes and empty Values are errors, not undefined behaviour") {
  Tape a, b;
  Value x = a.input(1.0), y = b.input(2.0);
  CHECK_THROWS_WITH_AS(x * y, doctest::Contains("different tapes"), Error);
  Value empty;
  CHECK(!empty.valid());
  CHECK_THROWS_WITH_AS(empty.value(), doctest::Contains("empty"), Error);
}

TEST_CASE("the stepper walks reaching nodes in reverse tape order and exposes each step") {
  Tape tape;
  Value x = tape.input(-2.0, "x"), y = tape.input(5.0, "y"), z = tape.input(-4.0, "z");
  Value q = (x + y).named("q");
  Value unused = exp(x).named("unused");  // does not reach f: skipped
  Value f = (q * z).named("f");
  Stepper stepper = tape.stepper(f);

  REQUIRE(stepper.next());
  const Step& s1 = stepper.step();
  CHECK(s1.index == 0);
  CHECK(s1.node == f.id());
  CHECK(s1.upstream == 1);
  CHECK(s1.arity == 2);
  CHECK(s1.inputs[0].id == q.id());
  CHECK(s1.inputs[0].local == 3 * 0 + -4);  // df/dq = z
  CHECK(s1.inputs[0].contribution == -4);
  CHECK(s1.inputs[1].local == 3);  // df/dz = q
  CHECK(s1.inputs[1].grad_after == 3);
  CHECK(step_heading(s1) == "step 1: f = q * z");
  CHECK(fmt::format("{}", s1) ==
        "df/df = 1\n"
        "df/dq = df/df · ∂f/∂q = 1 · -4 = -4\n"
        "df/dz = df/df · ∂f/∂z = 1 · 3 = 3");

  REQUIRE(stepper.next());
  const Step& s2 = stepper.step();
  CHECK(s2.index == 1);
  CHECK(s2.node == q.id());
  CHECK(s2.upstream == -4);
  CHECK(step_heading(s2) == "step 2: q = x + y");
  CHECK(fmt::format("{}", s2) ==
        "df/dx = df/dq · ∂q/∂x = -4 · 1 = -4\n"
        "df/dy = df/dq · ∂q/∂y = -4 · 1 = -4");
  CHECK(!stepper.next());
  CHECK(stepper.done());
  CHECK(unused.grad() == 0);
  CHECK(!tape.reached(unused.id()));
}

TEST_CASE("a step line shows accumulation at a fork") {
  Tape tape;
  Value x = tape.input(3.0, "x");
  Value f = (x * x).named("f");
  Stepper stepper = tape.stepper(f);
  REQUIRE(stepper.next());
  CHECK(!stepper.step().inputs[0].accumulated);
  CHECK(stepper.step().inputs[1].accumulated);
  CHECK(fmt::format("{}", stepper.step()) ==
        "df/df = 1\n"
        "df/dx = df/df · ∂f/∂x = 1 · 3 = 3\n"
        "df/dx += df/df · ∂f/∂x = 1 · 3 = 3, so df/dx = 6");
}

TEST_CASE("forward lines read like the lecture") {
  Tape tape;
  Value x = tape.input(-2.0, "x"), y = tape.input(5.0, "y");
  Value q = (x + y).named("q");
  Value s = sigmoid(q);
  Value l = leaky_relu(x, 0.1).named("l");
  CHECK(forward_line(tape, x.id()) == "x = -2");
  CHECK(forward_line(tape, q.id()) == "q = x + y = 3");
  CHECK(forward_line(tape, s.id()) == fmt::format("t{} = sigmoid(q) = 0.9526", s.id()));
  CHECK(forward_line(tape, l.id()) == "l = leaky_relu(x, 0.1) = -0.2");
  // A constant bound by a statement is referred to by name later, so it gets a line; an
  // unnamed one is its number wherever it is used.
  Value c = tape.constant(3.0).named("c");
  Value half = tape.constant(0.5);
  CHECK(forward_line(tape, c.id()) == "c = 3");
  CHECK(forward_line(tape, half.id()).empty());
  CHECK(format_number(-0.0) == "0");
  CHECK(format_number(1.0 / 3) == "0.3333");
  // Note [Digits shown]: 4 significant digits, but from 10^4 on the whole part.
  CHECK(format_number(9999.4) == "9999");
  CHECK(format_number(70000) == "70000");
  CHECK(format_number(-123456789) == "-123456789");
  CHECK(format_number(12345.6) == "12346");
  CHECK(format_number(0.1) == "0.1");
  CHECK(format_number(1.5e-5) == "1.5e-05");
  CHECK(format_number(1e15) == "1e+15");
  CHECK(format_number(std::numeric_limits<double>::infinity()) == "inf");
  CHECK(format_number(std::nan("")) == "nan");
}
