// Anomaly mode on both tapes: the first non-finite forward value or gradient is reported with
// its op, node, name or module path and input values; leaves given non-finite are reported as
// such; with the mode off the same computations give NaN and infinities silently, as before.

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

using namespace ag;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Runs f, which must throw an AnomalyError; returns what it found.
template <class F> Anomaly anomaly_of(F f) {
  try {
    f();
  } catch (const AnomalyError& e) {
    CHECK(std::string(e.what()) == describe(e.anomaly()));
    return e.anomaly();
  }
  FAIL("no AnomalyError was thrown");
  return {};
}

template <class F> std::string message_of(F f) {
  try {
    f();
  } catch (const AnomalyError& e) {
    return e.what();
  }
  FAIL("no AnomalyError was thrown");
  return {};
}

using Index = std::vector<std::int64_t>;

}  // namespace

// ---- the scalar tape ------------------------------------------------------------------

TEST_CASE("scalar forward: log(0) is -inf, reported at the log with its input") {
  Tape tape;
  tape.set_check_finite(true);
  Value x = tape.input(0.0, "x");
  const Anomaly a = anomaly_of([&] { (void)log(x); });
  CHECK(a.kind == AnomalyKind::forward);
  CHECK(a.op == "log");
  CHECK(a.node == 1);
  CHECK(a.value == -kInf);
  REQUIRE(a.operands.size() == 1);
  CHECK(a.operands[0].id == x.id());
  CHECK(a.operands[0].values == std::vector<double>{0.0});
  CHECK(describe(a) == "anomaly: forward of log (node 1, input 0 = 0) produced -inf");
}

TEST_CASE("scalar forward: 0/0 is nan, exp(1000) overflows; the node's name is shown") {
  Tape tape;
  AnomalyMode mode(tape);
  Value x = tape.input(0.0, "x"), y = tape.input(1000.0, "y");
  CHECK(message_of([&] { (void)(x / x); }) ==
        "anomaly: forward of div (node 2, input 0 = 0, input 1 = 0) produced nan");
  CHECK(message_of([&] { (void)exp(y); }) ==
        "anomaly: forward of exp (node 3, input 0 = 1000) produced inf");
  // A tape checked after recording (tools/program.cpp names its nodes then) shows the name.
  Tape named;
  Value z = named.input(0.0, "z");
  (void)log(z).named("h");
  CHECK(message_of([&] { named.check_forward(); }) ==
        "anomaly: forward of log (node 1 'h', input 0 = 0) produced -inf");
  // A fixed parameter is part of the report: pow(0, -1).
  CHECK(message_of([&] { (void)pow(x, -1.0); }) ==
        "anomaly: forward of pow_scalar (node 4, input 0 = 0, exponent = -1) produced inf");
}

TEST_CASE("scalar backward: sqrt at 0 has an infinite gradient, named with the input it hit") {
  Tape tape;
  tape.set_check_finite(true);
  Value x = tape.input(0.0, "x");
  Value y = sqrt(x).named("y");  // sqrt(0) = 0 is fine; d/dx = 1 / (2 sqrt x) is not
  const Anomaly a = anomaly_of([&] { tape.backward(y); });
  CHECK(a.kind == AnomalyKind::backward);
  CHECK(a.op == "sqrt");
  CHECK(a.node == y.id());
  CHECK(a.name == "y");
  CHECK(a.input == 0);
  CHECK(a.target == x.id());
  CHECK(a.value == kInf);
  CHECK(a.upstream == 1.0);
  CHECK(a.local == kInf);
  CHECK(describe(a) ==
        "anomaly: backward of sqrt (node 1 'y', input 0 = 0) produced gradient inf for x (node "
        "0): upstream 1 times local gradient inf");
  // The stepper, which the teaching views use, checks each step the same way.
  Tape again;
  again.set_check_finite(true);
  Value u = again.input(0.0, "u");
  Value v = sqrt(u);
  Stepper stepper = again.stepper(v);
  CHECK(message_of([&] { stepper.next(); }).find("backward of sqrt (node 1, input 0 = 0)") !=
        std::string::npos);
}

TEST_CASE("scalar backward: log at a tiny positive number, finite forward, inf gradient") {
  Tape tape;
  Value x = tape.input(1e-320, "x");  // a subnormal double: log is -737, 1/x overflows
  Value h = (x * 1.0).named("t");
  h = log(h).named("h");
  CHECK(std::isfinite(h.value()));
  AnomalyMode mode(tape);
  const Anomaly a = anomaly_of([&] { tape.backward(h); });
  CHECK(describe(a) ==
        "anomaly: backward of log (node 3 'h', input 0 = 1e-320) produced gradient inf for t "
        "(node 2): upstream 1 times local gradient inf");
}

TEST_CASE("scalar leaves given non-finite are reported as given, not blamed on an op") {
  Tape tape;
  tape.set_check_finite(true);
  // An input is checked as it is created.
  const Anomaly a = anomaly_of([&] { (void)tape.input(kNaN, "x"); });
  CHECK(a.kind == AnomalyKind::given);
  CHECK(a.op == "input");
  CHECK(a.name == "x");
  CHECK(describe(a) == "anomaly: input x (node 0) is nan as given, before any op");
  // A constant, where an op reads it.
  Value y = tape.input(2.0, "y");
  CHECK(message_of([&] { (void)(y * kInf); }) ==
        "anomaly: constant (node 2) is inf as given, before any op (used by mul, node 3)");
  // A node recorded while the mode was off is what the checked op was given.
  Tape off;
  Value z = off.input(0.0, "z");
  Value l = log(z);
  off.set_check_finite(true);
  CHECK(message_of([&] { (void)(l * 2.0); }) ==
        "anomaly: t1 (node 1, log) is -inf, recorded before anomaly mode was on (used by mul, "
        "node 3)");
}

// Note [Tape storage]: while the mode is on, the tape's fast path has no room (fast_limit_ is 0),
// so every op goes the checked way; turning it off gives the room back. A warm tape with its
// capacity reserved, and one that grows while the mode is on, must both check every op.
TEST_CASE("scalar: the mode turned on and off on a warm tape checks exactly while it is on") {
  Tape tape(1000);
  Value x = tape.input(0.0, "x");
  Value sum = x;
  for (int i = 0; i < 10; ++i) sum = sum + 1.0;  // warm, well inside the capacity
  tape.set_check_finite(true);
  CHECK(message_of([&] { (void)log(x); }).find("forward of log") != std::string::npos);
  tape.set_check_finite(false);
  const Value silent = log(x);  // off again: -inf is recorded, nothing thrown
  CHECK(silent.value() == -kInf);
  tape.set_check_finite(true);
  CHECK(message_of([&] { (void)(x / x); }).find("forward of div") != std::string::npos);
  // Recording past the reserved capacity in anomaly mode: every op is still checked, and the
  // tape grows as it would with the mode off.
  Value y = tape.input(1.0, "y");
  for (int i = 0; i < 2000; ++i) y = y * 1.0;
  CHECK(tape.size() > 2000);
  CHECK(y.value() == 1.0);
  CHECK(message_of([&] { (void)log(y - 1.0); }).find("forward of log") != std::string::npos);
  tape.set_check_finite(false);
  CHECK(log(y - 1.0).value() == -kInf);
}

TEST_CASE("scalar: with the mode off the same computations give nan and inf silently") {
  Tape tape;
  CHECK_FALSE(tape.check_finite());
  Value x = tape.input(0.0, "x"), n = tape.input(kNaN, "n");
  CHECK(log(x).value() == -kInf);
  CHECK(std::isnan((x / x).value()));
  CHECK(std::isnan((n + 1.0).value()));
  Value y = sqrt(x);
  tape.backward(y);
  CHECK(x.grad() == kInf);
  {
    AnomalyMode mode(tape);
    CHECK(tape.check_finite());
    AnomalyMode off(tape, false);
    CHECK_FALSE(tape.check_finite());
  }
  CHECK_FALSE(tape.check_finite());  // each guard restores what it found
}

// ---- the tensor tape ------------------------------------------------------------------

TEST_CASE("tensor forward: log(0) at [1, 2], the index and the input element reported") {
  TensorTape tape;
  tape.set_check_finite(true);
  Tensor x = tape.input(Shape{2, 3}, {1, 2, 3, 4, 5, 0}, "x", DType::f32);
  const Anomaly a = anomaly_of([&] { (void)log(x); });
  CHECK(a.kind == AnomalyKind::forward);
  CHECK(a.tensor);
  CHECK(a.op == "log");
  CHECK(a.shape == Shape{2, 3});
  CHECK(a.index == Index{1, 2});
  CHECK(a.value == -kInf);
  REQUIRE(a.operands.size() == 1);
  CHECK(a.operands[0].index == Index{1, 2});
  CHECK(describe(a) ==
        "anomaly: forward of log (node 1, input 0 = 0 at x[1, 2] of (2, 3)) produced -inf at "
        "[1, 2] of (2, 3)");
}

TEST_CASE("tensor forward: 0/0 through broadcasting names each input's own element") {
  TensorTape tape;
  AnomalyMode mode(tape);
  Tensor a = tape.input(Shape{2, 3}, {1, 2, 0, 4, 5, 0}, "a", DType::f32);
  Tensor b = tape.input(Shape{3}, {1, 1, 0}, "b", DType::f32);
  const Anomaly r = anomaly_of([&] { (void)(a / b); });
  CHECK(r.index == Index{0, 2});
  CHECK(std::isnan(r.value));
  CHECK(r.operands[0].index == Index{0, 2});
  CHECK(r.operands[1].index == Index{2});
  CHECK(describe(r) ==
        "anomaly: forward of div (node 2, input 0 = 0 at a[0, 2] of (2, 3), input 1 = 0 at b[2] "
        "of (3,)) produced nan at [0, 2] of (2, 3)");
}

TEST_CASE("tensor forward: exp overflows float32 at 89, not float64") {
  TensorTape tape;
  tape.set_check_finite(true);
  Tensor d = tape.input(Shape{2, 2}, {1, 2, 89, 4}, "d", DType::f64);
  CHECK(std::isfinite(exp(d).value(2)));
  Tensor x = tape.input(Shape{2, 2}, {1, 2, 89, 4}, "x", DType::f32);
  CHECK(message_of([&] { (void)exp(x); }) ==
        "anomaly: forward of exp (node 3, input 0 = 89 at x[1, 0] of (2, 2)) produced inf at "
        "[1, 0] of (2, 2)");
}

TEST_CASE("tensor forward: a fixed parameter is part of the report") {
  TensorTape tape;
  tape.set_check_finite(true);
  Tensor x = tape.input(Shape{3}, {1, 0, 2}, "x");
  CHECK(message_of([&] { (void)pow(x, -1.0); }) ==
        "anomaly: forward of pow_scalar (node 1, input 0 = 0 at x[1] of (3,), exponent = -1) "
        "produced inf at [1] of (3,)");
}

TEST_CASE("tensor backward: sqrt at 0 and log at 1e-39 overflow float32 gradients") {
  TensorTape tape;
  tape.set_check_finite(true);
  Tensor x = tape.input(Shape{2, 2}, {1, 2, 0, 4}, "x", DType::f32);
  Tensor y = sum(sqrt(x));
  const Anomaly a = anomaly_of([&] { tape.backward(y); });
  CHECK(a.kind == AnomalyKind::backward);
  CHECK(a.op == "sqrt");
  CHECK(a.target == x.id());
  CHECK(a.index == Index{1, 0});
  CHECK(a.value == kInf);
  CHECK(describe(a) ==
        "anomaly: backward of sqrt (node 1, input 0 = 0 at x[1, 0] of (2, 2)) produced gradient "
        "inf for x (node 0) at [1, 0] of (2, 2): upstream 1 at [1, 0] times local gradient inf");

  TensorTape tiny;
  tiny.set_check_finite(true);
  Tensor t = tiny.input(Shape{2, 2}, {1, 2, 1e-39, 4}, "t", DType::f32);  // log is -89.8
  Tensor h = log(t).named("h");
  CHECK(std::isfinite(h.value(2)));
  CHECK(message_of([&] { tiny.backward(sum(h)); }) ==
        "anomaly: backward of log (node 1 'h', input 0 = 1e-39 at t[1, 0] of (2, 2)) produced "
        "gradient inf for t (node 0) at [1, 0] of (2, 2): upstream 1 at [1, 0] times local "
        "gradient inf");
}

TEST_CASE("tensor backward through broadcasting: the broadcast input's element and its source") {
  TensorTape tape;
  tape.set_check_finite(true);
  // Forward a / b is finite everywhere (at most 1 / 1e-20), and so is d/da = 1 / b; but
  // d/db = -(a/b) / b is -1e40 at [1, 2], beyond float32.
  Tensor a = tape.input(Shape{2, 3}, {1, 2, 0, 4, 5, 1}, "a", DType::f32);
  Tensor b = tape.input(Shape{3}, {1, 1, 1e-20}, "b", DType::f32);
  Tensor y = sum(a / b);
  const Anomaly r = anomaly_of([&] { tape.backward(y); });
  CHECK(r.target == b.id());
  CHECK(r.input == 1);
  CHECK(r.shape == Shape{3});
  CHECK(r.index == Index{2});
  CHECK(r.upstream_index == Index{1, 2});
  CHECK(describe(r) ==
        "anomaly: backward of div (node 2, input 0 = 1 at a[1, 2] of (2, 3), input 1 = 1e-20 at "
        "b[2] of (3,)) produced gradient -inf for b (node 1) at [2] of (3,): upstream 1 at [1, "
        "2] times local gradient -inf");
}

TEST_CASE("tensor reductions and matmul: the rows and columns that fed the element") {
  TensorTape tape;
  tape.set_check_finite(true);
  Tensor x = tape.input(Shape{2, 3}, {1, 3e38, 3, 4, 3e38, 6}, "x", DType::f32);
  // sum over axis 0 with keepdims: column 1 overflows.
  CHECK(message_of([&] { (void)sum(x, 0, true); }) ==
        "anomaly: forward of sum (node 1, input 0 = [3e+38, 3e+38] at x[:, 1] of (2, 3)) "
        "produced inf at [0, 1] of (1, 3)");
  // Over axis 1, without keepdims: row 1 overflows.
  Tensor w = tape.input(Shape{2, 3}, {1, 2, 3, 3e38, 3e38, 6}, "w", DType::f32);
  const Anomaly r = anomaly_of([&] { (void)sum(w, 1); });
  CHECK(r.index == Index{1});
  CHECK(r.operands[0].index == Index{1, -1});
  CHECK(r.operands[0].values == std::vector<double>{double(3e38f), double(3e38f), 6});
  // matmul forward: row 0 of a times column 0 of b.
  Tensor m = tape.input(Shape{2, 2}, {1e20, 1e20, 1, 1}, "m", DType::f32);
  Tensor n = tape.input(Shape{2, 2}, {1e20, 1, 1, 1}, "n", DType::f32);
  CHECK(message_of([&] { (void)matmul(m, n); }) ==
        "anomaly: forward of matmul (node 6, input 0 = [1e+20, 1e+20] at m[0, :] of (2, 2), "
        "input 1 = [1e+20, 1] at n[:, 0] of (2, 2)) produced inf at [0, 0] of (2, 2)");

  // matmul backward: dA[i, p] = up[i, :] . B[p, :] overflows while A B does not.
  TensorTape back;
  back.set_check_finite(true);
  Tensor A = back.input(Shape{2, 2}, {1e-20, 0, 0, 1e-20}, "A", DType::f32);
  Tensor B = back.input(Shape{2, 2}, {1, 1, 1e20, 1e20}, "B", DType::f32);
  Tensor loss = sum(matmul(A, B) * 1e20);
  const Anomaly g = anomaly_of([&] { back.backward(loss); });
  CHECK(g.op == "matmul");
  CHECK(g.target == A.id());
  CHECK(g.index == Index{0, 1});
  CHECK(describe(g) ==
        "anomaly: backward of matmul (node 2, upstream = [1e+20, 1e+20] at t2[0, :] of (2, 2), "
        "input 1 = [1e+20, 1e+20] at B[1, :] of (2, 2)) produced gradient inf for A (node 0) at "
        "[0, 1] of (2, 2)");
}

TEST_CASE("tensor leaves given non-finite: reported where an op reads them, even if masked") {
  TensorTape tape;
  tape.set_check_finite(true);
  Tensor x = tape.input(Shape{2, 2}, {1, 2, kNaN, 4}, "x", DType::f32);
  // relu(nan) is 0 here: the output alone would not show it.
  const Anomaly a = anomaly_of([&] { (void)relu(x); });
  CHECK(a.kind == AnomalyKind::given);
  CHECK(a.node == x.id());
  CHECK(a.index == Index{1, 0});
  CHECK(describe(a) ==
        "anomaly: input x (node 0) is nan at [1, 0] of (2, 2) as given, before any op (used by "
        "relu, node 1)");
}

TEST_CASE("tensor: with the mode off the same computations give nan and inf silently") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 2}, {1, 2, 0, 89}, "x", DType::f32);
  CHECK(log(x).value(2) == -kInf);
  CHECK(exp(x).value(3) == kInf);
  CHECK(std::isnan((x / x).value(2)));
  tape.backward(sum(sqrt(x)));
  CHECK(x.grad_at(2) == kInf);
}

TEST_CASE("inside an nn MLP the report names the module path of the op") {
  nn::MLP mlp({2, 4, 4, 1}, ag::Op::relu);
  for (auto& [name, p] : mlp.named_parameters())
    for (float& v : p->data()) v = name == "layers.2.weight" ? 3e38f : name == "layers.0.weight";
  TensorTape tape;
  AnomalyMode mode(tape);
  const std::vector<float> x{1, 1};
  const Anomaly a = anomaly_of([&] {
    (void)mlp(tape.constant(Shape{1, 2}, std::span<const float>(x)));
  });
  CHECK(a.op == "linear");
  CHECK(a.scope == "layers.2");
  CHECK(describe(a) ==
        "anomaly: forward of linear (node 7 in layers.2, input 0 = [2, 2, 2, 2] at t4[0, :] of "
        "(1, 4), input 1 = [3e+38, 3e+38, 3e+38, 3e+38] at layers.2.weight[0, :] of (4, 4), "
        "input 2 = 0 at layers.2.bias[0] of (4,)) produced inf at [0, 0] of (1, 4)");
}

// ---- amin, amax over all, argmax, where, batched products -------------------------

TEST_CASE("amin backward: a NaN minimum sends NaN to its row, reported at amin; where reads") {
  // amin and where make nothing non-finite from finite numbers forward; amin's backward does
  // when a NaN is the minimum (torch's 0/0), and where is where a given NaN is first read.
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 3}, {1, 2, 3, 4, -1, 6}, "x");
  Tensor l = log(x).named("l");  // nan at [1, 1], recorded before the mode is on
  Tensor loss = sum(amin(l, 1));
  tape.set_check_finite(true);
  const Anomaly a = anomaly_of([&] { tape.backward(loss); });
  CHECK(a.kind == AnomalyKind::backward);
  CHECK(a.op == "amin");
  CHECK(a.target == l.id());
  CHECK(a.index == Index{1, 0});
  CHECK(describe(a) ==
        "anomaly: backward of amin (node 2, upstream = 1 at t2[1] of (2,)) produced gradient nan "
        "for l (node 1) at [1, 0] of (2, 3)");
  Tensor c = tape.input(Shape{3}, {0, 1, 0}, "c");
  Tensor z = tape.input(Shape{2, 3}, {0, 0, 0, 0, kNaN, 0}, "z");
  const Anomaly w = anomaly_of([&] { (void)where(c, x, z); });
  CHECK(w.kind == AnomalyKind::given);
  CHECK(w.node == z.id());
  CHECK(w.index == Index{1, 1});
  CHECK(describe(w) ==
        "anomaly: input z (node 5) is nan at [1, 1] of (2, 3) as given, before any op (used by "
        "where, node 6)");
  // argmax of a row with a NaN is an index, finite: nothing to report (torch.argmax gives 1).
  CHECK(argmax(l, 1).values() == std::vector<double>{2, 1});
}

TEST_CASE("amax over all backward: a NaN maximum sends NaN to every element, named there") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 2}, {1, 2, 3, 4}, "x");
  Tensor s = sqrt(x - 3.5).named("s");  // nan at [0, 0], [0, 1], [1, 0]
  Tensor m = amax(s).named("m");
  tape.set_check_finite(true);
  const Anomaly a = anomaly_of([&] { tape.backward(m); });
  CHECK(a.kind == AnomalyKind::backward);
  CHECK(a.op == "amax");
  CHECK(a.target == s.id());
  CHECK(a.index == Index{0, 0});
  CHECK(describe(a) ==
        "anomaly: backward of amax (node 4 'm', upstream = 1 at m of shape ()) produced gradient "
        "nan for s (node 3) at [0, 0] of (2, 2)");
}

TEST_CASE("batched matmul and 3-D linear: the batch, row and column that overflowed") {
  TensorTape tape;
  tape.set_check_finite(true);
  Tensor a = tape.input(Shape{2, 1, 2}, {1, 1, 1e20, 1e20}, "a", DType::f32);
  Tensor b = tape.input(Shape{2, 2, 1}, {1, 1, 1e20, 1}, "b", DType::f32);
  const Anomaly m = anomaly_of([&] { (void)matmul(a, b); });
  CHECK(m.op == "matmul");
  CHECK(m.index == Index{1, 0, 0});
  REQUIRE(m.operands.size() == 2);
  CHECK(m.operands[0].index == Index{1, 0, -1});
  CHECK(m.operands[1].index == Index{1, -1, 0});
  CHECK(describe(m) ==
        "anomaly: forward of matmul (node 2, input 0 = [1e+20, 1e+20] at a[1, 0, :] of (2, 1, 2), "
        "input 1 = [1e+20, 1] at b[1, :, 0] of (2, 2, 1)) produced inf at [1, 0, 0] of (2, 1, 1)");
  Tensor w = tape.input(Shape{2, 2}, {1, 1, 1e20, 1}, "W", DType::f32);
  const Anomaly l = anomaly_of([&] { (void)linear(a, w); });
  CHECK(l.op == "linear");
  CHECK(l.index == Index{1, 0, 1});
  REQUIRE(l.operands.size() == 2);
  CHECK(l.operands[0].index == Index{1, 0, -1});
  CHECK(l.operands[1].index == Index{1, -1});
  CHECK(describe(l) ==
        "anomaly: forward of linear (node 4, input 0 = [1e+20, 1e+20] at a[1, 0, :] of (2, 1, 2), "
        "input 1 = [1e+20, 1] at W[1, :] of (2, 2)) produced inf at [1, 0, 1] of (2, 1, 2)");
}

// ---- shape ops: cat, stack, slice, index_select, gather, transpose ------------------------------

TEST_CASE("shape ops forward: a NaN they are given is found where the op reads it") {
  TensorTape tape;
  tape.set_check_finite(true);
  Tensor x = tape.input(Shape{2, 2}, {1, 2, kNaN, 4}, "x");
  Tensor w = tape.input(Shape{2, 2}, {5, 6, 7, 8}, "w");
  CHECK(message_of([&] {
          (void)cat({w, x}, 0);
        }) ==
        "anomaly: input x (node 0) is nan at [1, 0] of (2, 2) as given, before any op (used by "
        "cat, node 2)");
  const std::vector<std::int64_t> rows{1}, index{1, 0, 0, 1};
  const std::vector<std::pair<std::string, std::function<void()>>> ops{
      {"stack",
       [&] {
         (void)stack({w, x, w, w}, 1);
       }},
      {"slice", [&] { (void)slice(x, 0, 1, 2); }},
      {"index_select", [&] { (void)index_select(x, 0, rows); }},
      {"gather",
       [&] {
         (void)gather(x, 0, index, Shape{2, 2});
       }},
      {"transpose", [&] { (void)transpose(x, 0, 1); }}};
  for (const auto& [name, f] : ops) {
    CAPTURE(name);
    const Anomaly a = anomaly_of(f);
    CHECK(a.kind == AnomalyKind::given);
    CHECK(a.node == x.id());
    CHECK(a.index == Index{1, 0});
    CHECK(a.target_label == name);
  }
}

TEST_CASE("shape ops backward: a NaN upstream element is traced to the input element it reaches") {
  TensorTape tape;
  tape.set_check_finite(true);
  Tensor a = tape.input(Shape{2, 2}, {1, 2, 3, 4}, "a");
  Tensor b = tape.input(Shape{2, 1}, {5, 6}, "b");
  Tensor y = cat({a, b}, 1).named("y");
  // y[1, 2] is b[1, 0].
  const Anomaly c = anomaly_of([&] { tape.backward(y, std::vector<double>{1, 1, 1, 1, 1, kNaN}); });
  CHECK(c.kind == AnomalyKind::backward);
  CHECK(c.op == "cat");
  CHECK(c.input == 1);
  CHECK(c.target == b.id());
  CHECK(c.index == Index{1, 0});
  REQUIRE(c.operands.size() == 1);
  CHECK(c.operands[0].role == "upstream");
  CHECK(c.operands[0].index == Index{1, 2});
  CHECK(describe(c) ==
        "anomaly: backward of cat (node 2 'y', upstream = nan at y[1, 2] of (2, 3)) produced "
        "gradient nan for b (node 1) at [1, 0] of (2, 1)");

  struct Case {
    std::string op;
    Tensor out;
    std::int64_t bad;  // the seed's NaN, flat in out
    Tensor input;      // the input it reaches
    Index at;          // there
    Index upstream;    // the upstream element reported
  };
  TensorTape t;
  t.set_check_finite(true);
  Tensor v = t.input(Shape{6}, {0, 1, 2, 3, 4, 5}, "v");
  Tensor p = t.input(Shape{2}, {1, 2}, "p");
  Tensor q = t.input(Shape{2}, {3, 4}, "q");
  Tensor m = t.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "m");
  const std::vector<std::int64_t> cols{2, 0, 2}, index{0, 0, 2, 1};
  const std::vector<Case> cases{{"stack", stack({p, q}, 0), 2, q, {0}, {1, 0}},
                                {"slice", slice(v, 0, 1, 6, 2), 2, v, {5}, {2}},
                                // m[1, 2] gets up[1, 0] and up[1, 2]: the report names the NaN one.
                                {"index_select", index_select(m, 1, cols), 5, m, {1, 2}, {1, 2}},
                                // m[0, 0] gets up[0, 0] and up[0, 1]; the NaN is at [0, 1].
                                {"gather", gather(m, 1, index, Shape{2, 2}), 1, m, {0, 0}, {0, 1}},
                                {"transpose", transpose(m, 0, 1), 4, m, {0, 2}, {2, 0}}};
  for (const Case& k : cases) {
    CAPTURE(k.op);
    std::vector<double> seed(std::size_t(k.out.numel()), 1.0);
    seed[std::size_t(k.bad)] = kNaN;
    t.zero_grad();
    const Anomaly r = anomaly_of([&] { t.backward(k.out, seed); });
    CHECK(r.op == k.op);
    CHECK(r.target == k.input.id());
    CHECK(r.index == k.at);
    REQUIRE(!r.operands.empty());
    CHECK(r.operands[0].role == "upstream");
    CHECK(r.operands[0].index == k.upstream);
    CHECK(std::isnan(r.operands[0].values.at(0)));
  }
}
