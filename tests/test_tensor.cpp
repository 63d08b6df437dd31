// Tensors: every op gradient-checked in float64 (broadcasting in every
// direction, reductions over each axis), the scalar lecture circuits rebuilt
// from 1-element tensors, and each shape and dtype error's message.

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <tapegrad/core.hpp>
#include <tapegrad/gradcheck.hpp>
#include <vector>

using namespace ag;

namespace {

// Distinct values in about [-0.9, 1.6], none exactly at 0 (a kink of several ops).
std::vector<double> values(const Shape& s, double offset = 0) {
  std::vector<double> v(static_cast<std::size_t>(s.numel()));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = offset + 0.37 * double(i % 7) - 0.93 + 0.05 * double(i / 7);
  return v;
}

TensorArg arg(const Shape& s, double offset = 0) { return {s, values(s, offset)}; }

template <class F> void check_grad(F f, std::vector<TensorArg> args, const std::string& what) {
  GradcheckResult r = gradcheck(f, std::span<const TensorArg>(args));
  INFO(what, ": ", r.message);
  CHECK(r.ok);
  CHECK(r.analytic.size() == r.numeric.size());
}

// Keeps an operand inside its op's domain: positive for log, sqrt and pow's base,
// away from 0 for a divisor.
Tensor positive(Tensor t) { return abs(t) + 0.5; }

}  // namespace

TEST_CASE("every unary op of the table, elementwise on a (2, 3) tensor") {
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = static_cast<Op>(i);
    if (op_info(op).arity != 1) continue;
    const bool domain = op == Op::log || op == Op::sqrt;
    check_grad([&](TensorTape&,
                   std::span<const Tensor> x) { return apply(op, domain ? positive(x[0]) : x[0]); },
               {arg(Shape{2, 3})}, std::string(op_info(op).name));
  }
}

TEST_CASE("every binary op of the table, broadcasting in every direction") {
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {Shape{2, 3}, Shape{2, 3}},     // same shape
      {Shape{2, 3}, Shape{3}},        // a row, rank change
      {Shape{2, 3}, Shape{2, 1}},     // a column
      {Shape{2, 3}, Shape{}},         // a scalar
      {Shape{}, Shape{2, 3}},         // a scalar on the left
      {Shape{3}, Shape{2, 3}},        // rank change on the left
      {Shape{2, 1}, Shape{1, 3}},     // both broadcast: an outer product
      {Shape{4, 1, 3}, Shape{2, 3}},  // rank 3 against rank 2
  };
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = static_cast<Op>(i);
    if (op_info(op).arity != 2) continue;
    for (const auto& [sa, sb] : pairs) {
      if (op == Op::prelu &&
          !(sb.rank() == 0 || (sb.rank() == 1 && sa.rank() >= 1 && sb[0] == sa[sa.rank() - 1])))
        continue;  // prelu's alpha is one slope or one per feature
      check_grad(
          [&](TensorTape&, std::span<const Tensor> x) {
            Tensor a = op == Op::pow ? positive(x[0]) : op == Op::bce ? sigmoid(x[0]) : x[0];
            Tensor b = op == Op::div ? positive(x[1]) : x[1];
            return apply(op, a, b);
          },
          {arg(sa), arg(sb, 0.11)}, fmt::format("{} {} {}", op_info(op).name, sa.str(), sb.str()));
    }
  }
}

TEST_CASE("every binary op of the table on op nodes: first writes assign, one node twice adds") {
  // Op-node operands of the output's shape, or a one-element constant, take the flat backward
  // loops (Note [Lazy gradients]): the first write to a gradient assigns, later ones add.
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = static_cast<Op>(i);
    if (op_info(op).arity != 2) continue;
    const auto left = [&](Tensor t) {
      return op == Op::pow ? positive(t) : op == Op::bce ? sigmoid(t) : t * 1.5;
    };
    const auto right = [&](Tensor t) { return op == Op::div ? positive(t) : t * 0.5; };
    const std::string name(op_info(op).name);
    if (op != Op::prelu) {  // prelu's alpha is one slope or one per feature
      check_grad([&](TensorTape&,
                     std::span<const Tensor> x) { return apply(op, left(x[0]), right(x[1])); },
                 {arg(Shape{2, 3}), arg(Shape{2, 3}, 0.11)}, name + " of two op nodes");
      check_grad(
          [&](TensorTape&, std::span<const Tensor> x) {
            Tensor a = op == Op::pow || op == Op::div ? positive(x[0]) : left(x[0]);
            return apply(op, a, a) + a;  // a's gradient: written by the sum, then twice by op
          },
          {arg(Shape{2, 3})}, name + " of one op node twice");
    }
    check_grad(
        [&](TensorTape& tape, std::span<const Tensor> x) {
          const Tensor c = tape.constant<double>(Shape{}, std::vector<double>{0.7});
          const Tensor on_left = apply(op, left(x[0]), c);
          if (op == Op::prelu) return on_left * right(x[1]);  // no per-element slope on a scalar
          return on_left + apply(op, op == Op::bce ? sigmoid(c) : c, right(x[1]));
        },
        {arg(Shape{2, 3}), arg(Shape{2, 3}, 0.11)}, name + " with a one-element constant");
  }
}

namespace {

// One elementwise op over floats of `shape`: its output and the gradients of
// sum(op(a, b) * w), each element's bits (std::bit_cast keeps NaN comparable).
struct ElementwiseBits {
  std::vector<std::uint32_t> out, da, db;
};

std::vector<std::uint32_t> bits(std::span<const float> v) {
  std::vector<std::uint32_t> b;
  for (float f : v) b.push_back(std::bit_cast<std::uint32_t>(f));
  return b;
}

ElementwiseBits elementwise_bits(Op op, const Shape& shape, std::span<const float> a,
                                 std::span<const float> b, std::span<const float> w) {
  TensorTape tape;
  const Tensor x = tape.input<float>(shape, a), y = tape.input<float>(shape, b);
  const Tensor out = op_info(op).arity == 1 ? apply(op, x) : apply(op, x, y);
  tape.backward(sum(out * tape.constant<float>(shape, w)));
  return {bits(out.data<float>()), bits(x.grad<float>()),
          op_info(op).arity == 2 ? bits(y.grad<float>()) : std::vector<std::uint32_t>{}};
}

}  // namespace

TEST_CASE("every elementwise op on 77 floats gives, bit for bit, its results one at a time") {
  // 77 floats (308 bytes, a ragged tail for any vector width) take the AVX2 loops where the CPU
  // has them, a 1-element tensor the baseline ones (Note [Elementwise loops in AVX2]); the
  // suite runs this under every TAPEGRAD_SIMD as well.
  const std::int64_t count = 77;
  std::vector<float> mixed, positive, unit, w;
  for (std::int64_t i = 0; i < count; ++i) {
    const double s = std::sin(0.7 * double(i) + 0.2);
    mixed.push_back(float(1.5 * s));
    positive.push_back(float(0.3 + std::abs(s)));
    unit.push_back(float(0.1 + 0.8 * std::abs(s)));
    w.push_back(float(std::cos(0.3 * double(i))));
  }
  for (int k = 0; k < kOpCount; ++k) {
    const Op op = static_cast<Op>(k);
    if (op_info(op).arity == 0 || op == Op::prelu) continue;  // prelu's alpha: one per feature
    const std::vector<float>& a = op == Op::log || op == Op::sqrt || op == Op::pow ? positive
                                  : op == Op::bce                                  ? unit
                                                                                   : mixed;
    const std::vector<float>& b = op == Op::div ? positive : op == Op::bce ? unit : mixed;
    std::vector<float> b_shifted(b.rbegin(), b.rend());  // b's elements against other a's
    const ElementwiseBits whole = elementwise_bits(op, Shape{7, 11}, a, b_shifted, w);
    for (std::size_t i = 0; i < std::size_t(count); ++i) {
      const ElementwiseBits one =
          elementwise_bits(op, Shape{1}, std::span(a).subspan(i, 1),
                           std::span(b_shifted).subspan(i, 1), std::span(w).subspan(i, 1));
      INFO(op_info(op).name, " element ", i);
      CHECK(whole.out[i] == one.out[0]);
      CHECK(whole.da[i] == one.da[0]);
      if (op_info(op).arity == 2) CHECK(whole.db[i] == one.db[0]);
    }
  }
}

TEST_CASE("matmul, transpose and reshape") {
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], x[1]); },
             {arg(Shape{3, 4}), arg(Shape{4, 2}, 0.2)}, "matmul");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], transpose(x[1])); },
             {arg(Shape{3, 4}), arg(Shape{2, 4}, 0.2)}, "matmul with a transpose");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(transpose(x[0]), x[0]); },
             {arg(Shape{3, 4})}, "x^T x: one input twice");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return transpose(x[0]); },
             {arg(Shape{2, 3, 4})}, "transpose of a batch");
  check_grad(
      [](TensorTape&, std::span<const Tensor> x) {
        return reshape(x[0], {3, -1}) * 2.0;
      },
      {arg(Shape{2, 3})}, "reshape");
  // Large enough to go through BLAS (kBlasThreshold), in both directions.
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], x[1]); },
             {arg(Shape{40, 33}), arg(Shape{33, 30}, 0.1)}, "matmul through BLAS");
}

// Note [Shapes are returned by value]: a shape read from a node and passed to an op that records
// a node stays valid while the tape's records move (under ASan a reference would be a
// use-after-free as soon as the records are reallocated, which 2000 nodes make certain).
TEST_CASE("an op given another tensor's shape records while the tape grows") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "x");
  Tensor y = reshape(x, {3, 2});
  for (int i = 0; i < 1000; ++i) {
    Tensor z = zeros(tape, y.shape());
    CHECK(z.shape() == Shape{3, 2});
    Tensor w = reshape(x, y.shape());
    CHECK(w.values() == x.values());
    y = w;
  }
  CHECK(tape.size() > 2000);
}

TEST_CASE("sum, mean and amax over all elements and over each axis, with keepdims") {
  const Shape s{2, 3, 4};
  check_grad([](TensorTape&, std::span<const Tensor> x) { return sum(x[0]); }, {arg(s)}, "sum");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return mean(x[0]); }, {arg(s)}, "mean");
  for (int axis : {0, 1, 2, -1}) {
    for (bool keep : {false, true}) {
      const std::string where = fmt::format(" axis {} keepdims {}", axis, keep);
      check_grad([&](TensorTape&, std::span<const Tensor> x) { return sum(x[0], axis, keep); },
                 {arg(s)}, "sum" + where);
      check_grad([&](TensorTape&, std::span<const Tensor> x) { return mean(x[0], axis, keep); },
                 {arg(s)}, "mean" + where);
      check_grad([&](TensorTape&, std::span<const Tensor> x) { return amax(x[0], axis, keep); },
                 {arg(s)}, "amax" + where);
    }
  }
  // Reduced twice, an op node's gradient is assigned by the first reduction's backward and added
  // to by the second (Note [Lazy gradients]), over the last axis (a contiguous row per upstream
  // element) and over an inner one.
  for (int axis : {0, 1, 2}) {
    for (int other : {0, 1, 2}) {
      check_grad(
          [&](TensorTape&, std::span<const Tensor> x) {
            Tensor y = x[0] * x[0];
            return sum(sum(y, axis)) + mean(mean(y, other));
          },
          {arg(s)}, fmt::format("sum over {} and mean over {} of one node", axis, other));
    }
  }
  TensorTape tape;
  Tensor t = tape.input(Shape{2, 3}, {1, 5, 2, 7, 0, 7}, "t");
  CHECK(sum(t, 1).values() == std::vector<double>{8, 14});
  CHECK(mean(t, 0, true).shape() == Shape{1, 3});
  CHECK(amax(t, 1).values() == std::vector<double>{5, 7});
  tape.backward(sum(amax(t, 1)));
  CHECK(t.grads() == std::vector<double>{0, 1, 0, 1, 0, 0});  // a tie goes to the first
}

TEST_CASE("every tensor op is named by the op table, and is_leaf picks the three leaves") {
  std::vector<std::string_view> names;
  for (int k = 0; k <= int(kLastTOp); ++k) {
    const TOp op = TOp(k);
    CAPTURE(k);
    CHECK(!top_name(op).empty());
    CHECK(std::find(names.begin(), names.end(), top_name(op)) == names.end());
    names.push_back(top_name(op));
    CHECK(is_leaf(op) == (op == TOp::input || op == TOp::parameter || op == TOp::constant));
  }
  CHECK(top_name(TOp::matmul) == "matmul");
  CHECK(top_name(TOp::log_softmax) == "log_softmax");
}

TEST_CASE("NaN is never swallowed: amax propagates it, and the mean of nothing is NaN") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    TensorTape tape;
    // As torch.amax: a NaN anywhere in the reduced slice is the result, wherever it stands
    // (after a larger number, or first); a slice without NaN keeps its maximum.
    Tensor t = tape.input(Shape{3, 3}, {3, nan, 1, nan, 2, 5, 5, 7, 7}, "t", dtype);
    const std::vector<double> m = amax(t, 1).values();
    CHECK(std::isnan(m[0]));
    CHECK(std::isnan(m[1]));
    CHECK(m[2] == 7);
    CHECK(std::isnan(amax(t, 0).values()[0]));
    // The gradient goes to the NaN's index, as torch.max(t, dim) names it.
    tape.backward(sum(amax(t, 1)));
    CHECK(t.grads() == std::vector<double>{0, 1, 0, 1, 0, 0, 0, 1, 0});
  }
  TensorTape tape;
  // mean = sum / count, and 0 / 0 is NaN (PyTorch: torch.empty(0).mean() is nan).
  Tensor empty = tape.input(Shape{0}, {}, "empty");
  CHECK(std::isnan(mean(empty).item()));
  CHECK(sum(empty).item() == 0);
  Tensor rows = tape.input(Shape{2, 0}, {}, "rows");
  const std::vector<double> per_row = mean(rows, 1).values();
  REQUIRE(per_row.size() == 2);
  CHECK(std::isnan(per_row[0]));
  CHECK(std::isnan(per_row[1]));
  CHECK(mean(rows, 0).numel() == 0);
  // Backward through a mean of nothing reaches no element and stays quiet.
  tape.backward(mean(empty));
  CHECK(empty.grads().empty());
  // Anomaly mode names it: the forward of mean produced nan.
  TensorTape checked;
  checked.set_check_finite(true);
  Tensor none = checked.input(Shape{0}, {}, "none");
  CHECK_THROWS_WITH_AS(mean(none), doctest::Contains("forward of mean"), AnomalyError);
}

TEST_CASE("log_softmax and softmax over each axis, stable for large logits") {
  for (int axis : {0, 1, -1}) {
    check_grad([&](TensorTape&, std::span<const Tensor> x) { return log_softmax(x[0], axis); },
               {arg(Shape{3, 4})}, fmt::format("log_softmax axis {}", axis));
    check_grad([&](TensorTape&, std::span<const Tensor> x) { return softmax(x[0], axis); },
               {arg(Shape{3, 4})}, fmt::format("softmax axis {}", axis));
  }
  TensorTape tape;
  Tensor big = tape.input(Shape{1, 3}, {1000, 0, -1000}, "big", DType::f32);
  Tensor p = softmax(big), lp = log_softmax(big);
  CHECK(p.value(0) == 1.0);
  CHECK(p.value(2) == 0.0);
  CHECK(lp.value(1) == -1000.0);
  CHECK(std::isfinite(lp.value(2)));
}

TEST_CASE("pick: cross-entropy as -mean(pick(log_softmax(z), y))") {
  const std::vector<std::int32_t> labels{2, 0, 1};
  check_grad([&](TensorTape&,
                 std::span<const Tensor> x) { return -mean(pick(log_softmax(x[0]), labels)); },
             {arg(Shape{3, 4})}, "cross-entropy");
  TensorTape tape;
  Tensor z = tape.input(Shape{2, 2}, {0, 0, 0, 0}, "z");
  Tensor loss = -mean(pick(log_softmax(z), std::vector<std::int32_t>{0, 1}));
  CHECK(loss.item() == doctest::Approx(std::log(2.0)));
  tape.backward(loss);
  CHECK(z.grads() == std::vector<double>{-0.25, 0.25, 0.25, -0.25});  // (softmax - onehot) / N
}

TEST_CASE("prelu with one learnable slope and with one per feature") {
  check_grad([](TensorTape&, std::span<const Tensor> x) { return prelu(x[0], x[1]); },
             {arg(Shape{4, 3}), TensorArg{Shape{}, {0.2}}}, "prelu, one slope");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return prelu(x[0], x[1]); },
             {arg(Shape{4, 3}), TensorArg{Shape{3}, {0.1, 0.2, 0.3}}}, "prelu per feature");
}

TEST_CASE("a two-layer MLP and binary cross-entropy, gradient-checked end to end") {
  check_grad(
      [](TensorTape&, std::span<const Tensor> x) {
        Tensor h = tanh(matmul(x[0], x[1]) + x[2]);
        Tensor p = sigmoid(matmul(h, x[3]));
        return -mean(x[4] * log(p) + (1.0 - x[4]) * log(1.0 - p));
      },
      {arg(Shape{4, 2}), arg(Shape{2, 3}, 0.1), arg(Shape{3}), arg(Shape{3, 1}, 0.2),
       TensorArg{Shape{4, 1}, {0, 1, 1, 0}}},
      "MLP with BCE");
}

TEST_CASE("the scalar lecture circuits rebuilt from 1-element tensors give the same numbers") {
  Tape scalar;
  Value x = scalar.input(-2.0), y = scalar.input(5.0), z = scalar.input(-4.0);
  Value f = (x + y) * z;
  scalar.backward(f);

  TensorTape tape;
  Tensor tx = tape.input(Shape{1}, {-2.0}), ty = tape.input(Shape{1}, {5.0}),
         tz = tape.input(Shape{1}, {-4.0});
  Tensor tf = (tx + ty) * tz;
  tape.backward(tf);
  CHECK(tf.item() == f.value());
  CHECK(tx.grad_at(0) == x.grad());
  CHECK(ty.grad_at(0) == y.grad());
  CHECK(tz.grad_at(0) == z.grad());

  // The CS231n sigmoid neuron, in float64 and float32.
  for (DType dt : {DType::f64, DType::f32}) {
    Tape s;
    Value w0 = s.input(2.0), x0 = s.input(-1.0), w1 = s.input(-3.0), x1 = s.input(-2.0),
          w2 = s.input(-3.0);
    Value o = 1.0 / (1.0 + exp(-(w0 * x0 + w1 * x1 + w2)));
    s.backward(o);
    TensorTape t;
    auto in = [&](double v) { return t.input(Shape{1}, {v}, "", dt); };
    Tensor tw0 = in(2.0), tx0 = in(-1.0), tw1 = in(-3.0), tx1 = in(-2.0), tw2 = in(-3.0);
    Tensor to = 1.0 / (1.0 + exp(-(tw0 * tx0 + tw1 * tx1 + tw2)));
    t.backward(to);
    const double tol = dt == DType::f64 ? 1e-15 : 1e-6;
    CHECK(to.item() == doctest::Approx(o.value()).epsilon(tol));
    CHECK(tw0.grad_at(0) == doctest::Approx(w0.grad()).epsilon(tol));
    CHECK(tx1.grad_at(0) == doctest::Approx(x1.grad()).epsilon(tol));
    CHECK(tw2.grad_at(0) == doctest::Approx(w2.grad()).epsilon(tol));
  }
}

TEST_CASE("gradients accumulate into inputs and parameters across backward calls") {
  TensorTape tape;
  std::vector<float> w{1, 2, 3}, gw(3, 0.0f);
  Tensor x = tape.input(Shape{3}, {1, 1, 1}, "x", DType::f32);
  Tensor p = tape.parameter(Shape{3}, w.data(), gw.data(), "w");
  Tensor y = sum(x * p);
  tape.backward(y);
  tape.backward(y);
  CHECK(gw == std::vector<float>{2, 2, 2});
  CHECK(x.grads() == std::vector<double>{2, 4, 6});
  tape.zero_grad();
  CHECK(gw == std::vector<float>{0, 0, 0});
}

TEST_CASE("an op's gradient is defined before and after backward writes it (lazy zeroing)") {
  // Note [Lazy gradients]: op nodes' gradient buffers are not cleared at record time. Fill the
  // arena with nonzero gradients, reset, and record over the same memory: every gradient read
  // must still be what backward gave, or zero where backward did not reach.
  TensorTape tape;
  for (int pass = 0; pass < 2; ++pass) {
    tape.reset();
    const std::vector<double> xv = values(Shape{4, 4}), wv = values(Shape{4, 4}, 0.3);
    Tensor x = tape.input(Shape{4, 4}, std::span<const double>(xv), "x");
    Tensor w = tape.input(Shape{4, 4}, std::span<const double>(wv), "w");
    Tensor h = matmul(x, w);                  // written by relu's backward (assigns)
    Tensor r = relu(h);                       // written by matmul's backward (beta 0)
    Tensor side = sigmoid(h) * 2.0;           // pass 1: not on the loss's path, never reached
    Tensor twice = matmul(r, r);              // one node as both operands: the second gemm adds
    Tensor loss = sum(twice) + sum(tanh(r));  // r has two consumers: the second accumulates
    // Pass 0 puts a nonzero gradient in the memory that pass 1's `side` gets.
    if (pass == 0) loss = loss + sum(side);
    tape.backward(loss);
    if (pass == 0) {
      CHECK(side.grads() == std::vector<double>(16, 1.0));
      continue;
    }
    for (double g : side.grads()) CHECK(g == 0.0);
    CHECK(tape.reached(h.id()));
    CHECK(!tape.reached(side.id()));
    // r's gradient by hand: d sum(r r)/dr = 1 r^T + r^T 1 (all-ones 4x4), plus tanh's.
    const std::vector<double> rv = r.values();
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        double expect = 1 - std::pow(std::tanh(rv[std::size_t(i * 4 + j)]), 2);
        for (int k = 0; k < 4; ++k)
          expect += rv[std::size_t(j * 4 + k)] + rv[std::size_t(k * 4 + i)];
        CHECK(r.grad_at(i * 4 + j) == doctest::Approx(expect).epsilon(1e-5));
      }
  }
  check_grad(
      [](TensorTape&, std::span<const Tensor> t) {
        Tensor h = matmul(t[0], t[1]);
        Tensor r = relu(h);
        return sum(matmul(r, r)) + sum(tanh(r)) + sum(sigmoid(h));
      },
      {arg(Shape{3, 3}), arg(Shape{3, 3}, 0.2)}, "relu/matmul with forks and x @ x");
}

TEST_CASE("NoGrad and detach stop gradients") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2}, {1, 2}, "x");
  Tensor c;
  {
    NoGrad no_grad(tape);
    c = x * 3.0;
    CHECK(!c.requires_grad());
  }
  Tensor y = sum(x * detach(x) + c);
  CHECK(y.requires_grad());
  tape.backward(y);
  CHECK(x.grads() == std::vector<double>{1, 2});  // only the non-detached factor
}

TEST_CASE("creation: zeros, ones, full, arange, and seeded uniform and normal") {
  TensorTape tape;
  CHECK(zeros(tape, Shape{2, 2}).values() == std::vector<double>{0, 0, 0, 0});
  CHECK(ones(tape, Shape{3}).values() == std::vector<double>{1, 1, 1});
  CHECK(full(tape, Shape{2}, 2.5).values() == std::vector<double>{2.5, 2.5});
  CHECK(arange(tape, 0, 5).values() == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(arange(tape, 1, 0, -0.25).values() == std::vector<double>{1, 0.75, 0.5, 0.25});
  CHECK_THROWS_AS(arange(tape, 0, 1, 0), Error);
  Tensor u1 = uniform(tape, Shape{1000}, -1, 1, 42), u2 = uniform(tape, Shape{1000}, -1, 1, 42);
  CHECK(u1.values() == u2.values());
  CHECK(uniform(tape, Shape{3}, -1, 1, 43).values() != uniform(tape, Shape{3}, -1, 1, 42).values());
  const std::vector<double> u = u1.values();
  CHECK(*std::min_element(u.begin(), u.end()) >= -1.0);
  CHECK(*std::max_element(u.begin(), u.end()) < 1.0);
  const std::vector<double> n = normal(tape, Shape{20000}, 1.0, 2.0, 7, {DType::f64}).values();
  const double m = std::accumulate(n.begin(), n.end(), 0.0) / double(n.size());
  double var = 0;
  for (double v : n) var += (v - m) * (v - m);
  var /= double(n.size());
  CHECK(m == doctest::Approx(1.0).epsilon(0.05));
  CHECK(std::sqrt(var) == doctest::Approx(2.0).epsilon(0.03));
  // The portable generator's first numbers are fixed forever: every machine gets these.
  Rng rng(0);
  CHECK(rng.next() == 0x99ec5f36cb75f2b4ull);
}

TEST_CASE("shape, dtype and axis errors name the op and the shapes") {
  TensorTape tape;
  Tensor a = zeros(tape, Shape{4, 3}), b = zeros(tape, Shape{2, 5});
  CHECK_THROWS_WITH_AS(matmul(a, b), "matmul: (4, 3) x (2, 5): inner dimensions 3 and 2 differ",
                       Error);
  CHECK_THROWS_WITH_AS(a + b, "add: shapes (4, 3) and (2, 5) do not broadcast (axis -1: 3 vs 5)",
                       Error);
  CHECK_THROWS_WITH_AS(matmul(a, zeros(tape, Shape{3})),
                       "matmul: (4, 3) x (3,): both operands must be 2-D", Error);
  Tensor d = zeros(tape, Shape{4, 3}, {DType::f64});
  CHECK_THROWS_WITH_AS(a * d, "mul: dtype mismatch: float32 and float64", Error);
  CHECK_THROWS_WITH_AS(sum(a, 2), "sum: axis 2 is out of range for shape (4, 3)", Error);
  CHECK_THROWS_WITH_AS(softmax(a, -3), "softmax: axis -3 is out of range for shape (4, 3)", Error);
  CHECK_THROWS_WITH_AS(reshape(a, {5, -1}),
                       "reshape: cannot view shape (4, 3) (12 elements) with a -1 dimension and "
                       "the others multiplying to 5",
                       Error);
  CHECK_THROWS_WITH_AS(reshape(a, Shape{5, 2}),
                       "reshape: cannot view shape (4, 3) (12 elements) as (5, 2) (10 elements)",
                       Error);
  const std::vector<std::int32_t> bad{0, 1, 3, 0};
  CHECK_THROWS_WITH_AS(pick(a, bad), "pick: class index 3 in row 2 is out of range for 3 classes",
                       Error);
  const std::vector<float> twelve(12, 1.0f);
  Tensor x = tape.input<float>(Shape{4, 3}, twelve);
  CHECK_THROWS_WITH_AS(tape.backward(x * 2.0),
                       "backward: the output has shape (4, 3); backward needs a single-element "
                       "output, or a seed gradient of that shape",
                       Error);
  CHECK_THROWS_WITH_AS(prelu(a, zeros(tape, Shape{4})),
                       "prelu: alpha of shape (4,) fits neither one slope () nor one per feature "
                       "(3,) for input (4, 3)",
                       Error);
  CHECK_THROWS_WITH_AS(tape.input(Shape{2, 2}, {1.0, 2.0}),
                       "input: 2 values given for shape (2, 2), which holds 4", Error);
  CHECK_THROWS_WITH_AS(a.data<double>(), "Tensor::data<float64>: the tensor holds float32", Error);
  tape.reset();
  CHECK_THROWS_WITH_AS(a + 1.0, doctest::Contains("reset"), Error);
}

TEST_CASE("the tensor stepper reports the size of each contribution") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2}, {3, 4}, "x");
  Tensor y = (x * 2.0).named("y");
  Tensor l = sum(y * x).named("L");  // x reaches L twice: a fork
  TensorStepper stepper = tape.stepper(l);
  std::vector<NodeId> order;
  while (stepper.next()) {
    const TensorStep& s = stepper.step();
    order.push_back(s.node);
    if (s.node == y.id() + 1) {  // y * x
      CHECK(s.upstream_norm == doctest::Approx(std::sqrt(2.0)));
      CHECK(s.inputs[1].id == x.id());
      CHECK(s.inputs[1].contribution_norm == doctest::Approx(std::sqrt(6.0 * 6 + 8 * 8)));
    }
    if (s.node == y.id()) {
      CHECK(s.inputs[0].accumulated);  // x already got y * x's contribution
      CHECK(s.inputs[0].contribution_norm == doctest::Approx(std::sqrt(36.0 + 64.0)));
      CHECK(s.inputs[0].grad_norm == doctest::Approx(std::sqrt(12.0 * 12 + 16 * 16)));
    }
  }
  CHECK(order == std::vector<NodeId>{l.id(), l.id() - 1, y.id()});
  CHECK(x.grads() == std::vector<double>{12, 16});  // d/dx 2x^2 = 4x
}

TEST_CASE("tensor forward lines show shapes, and values when small") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 2}, {1, -2, 3, 0.5}, "x");
  Tensor w = tape.input(Shape{2}, {0.5, 1}, "w");
  Tensor h = relu(x * w).named("h");
  Tensor s = sum(h, 1).named("s");
  Tensor l = mean(s).named("L");
  Tensor big = zeros(tape, Shape{4, 5}, {DType::f32, false, "big"});
  CHECK(forward_line(tape, x.id()) == "x: (2, 2) = [[1, -2], [3, 0.5]]");
  CHECK(forward_line(tape, h.id()) ==
        fmt::format("h = relu(t{}): (2, 2) = [[0.5, 0], [1.5, 0.5]]", h.id() - 1));
  CHECK(forward_line(tape, h.id() - 1) ==
        fmt::format("t{} = x * w: (2, 2) = [[0.5, -2], [1.5, 0.5]]", h.id() - 1));
  CHECK(forward_line(tape, s.id()) == "s = sum(h, axis=1): (2,) = [0.5, 2]");
  CHECK(forward_line(tape, l.id()) == "L = mean(s): () = 1.25");
  CHECK(forward_line(tape, big.id()) == "big: (4, 5)");  // 20 elements: no values
  Tensor m = matmul(x, reshape(w, {2, 1}).named("col")).named("m");
  CHECK(expression(tape, m.id()) == "x @ col");
  Tensor twice = x * 2.0;  // the 2 is a 1-element constant: labelled by its value
  CHECK(forward_line(tape, twice.id()) ==
        fmt::format("t{} = x * 2: (2, 2) = [[2, -4], [6, 1]]", twice.id()));
}

TEST_CASE("tensor step lines show shapes, the contribution's norm and forks") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2}, {3, 4}, "x");
  Tensor y = (x * 2.0).named("y");
  Tensor p = (y * x).named("p");
  Tensor l = sum(p).named("L");
  TensorStepper stepper = tape.stepper(l);
  std::vector<std::string> lines;
  while (stepper.next()) lines.push_back(fmt::format("{}", stepper.step()));
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == "dL/dp (2,) = dL/dL () · dL/dp   |contribution| = 1.414");
  CHECK(lines[1] ==
        "dL/dy (2,) = dL/dp (2,) · dp/dy   |contribution| = 5\n"
        "dL/dx (2,) = dL/dp (2,) · dp/dx   |contribution| = 10");
  CHECK(lines[2] == "dL/dx (2,) += dL/dy (2,) · dy/dx   |contribution| = 10, so |dL/dx| = 20");
}

TEST_CASE("the packed small-matrix kernel: every layout, ragged rows and columns") {
  // Between kPackThreshold (1024) and kBlasThreshold (32768) multiply-adds: forward and both
  // backward products run through the packed kernel, plain and transposed, with row counts
  // that are not a multiple of 4 and column counts that are not a multiple of the vector.
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], x[1]); },
             {arg(Shape{13, 9}), arg(Shape{9, 11}, 0.1)}, "matmul 13x9 9x11");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return linear(x[0], x[1], x[2]); },
             {arg(Shape{10, 17}), arg(Shape{21, 17}, 0.1), arg(Shape{21}, 0.2)}, "linear 21 out");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return linear(x[0], x[1], x[2]); },
             {arg(Shape{50, 30}), arg(Shape{1, 30}, 0.1), arg(Shape{1}, 0.2)}, "linear 1 out");
  // A plain B whose width is whole kernel blocks is read in place, not packed (Note [Unpacked
  // B]): forward, and dB = A^T dC with A transposed, at 16 and 8 columns.
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], x[1]); },
             {arg(Shape{13, 9}), arg(Shape{9, 16}, 0.1)}, "matmul 13x9 9x16");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], x[1]); },
             {arg(Shape{37, 30}), arg(Shape{30, 8}, 0.1)}, "matmul 37x30 30x8");
  // One output column: the matrix-vector kernel (Note [Matrix-vector products]), A plain and
  // transposed, k a multiple of its lanes and not, in float64 here and float32 below.
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], x[1]); },
             {arg(Shape{70, 19}), arg(Shape{19, 1}, 0.1)}, "matmul 70x19 19x1");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(transpose(x[0]), x[1]); },
             {arg(Shape{24, 50}), arg(Shape{24, 1}, 0.1)}, "matmul (24x50)^T 24x1");
  // ...and bit for bit what the packed kernel gives the same column (the examples quote
  // figures that depend on it): a 100x16 by 16x1 product against column 0 of 100x16 by 16x2.
  {
    std::vector<float> a(100 * 16), b2(16 * 2), b1(16);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(std::sin(0.3 * double(i)));
    for (std::size_t p = 0; p < 16; ++p) {
      b1[p] = b2[2 * p] = float(std::cos(0.7 * double(p)));
      b2[2 * p + 1] = 1;
    }
    TensorTape tape;
    const Tensor x = tape.constant<float>(Shape{100, 16}, a);
    auto one = matmul(x, tape.constant<float>(Shape{16, 1}, b1)).data<float>();
    auto two = matmul(x, tape.constant<float>(Shape{16, 2}, b2)).data<float>();
    for (std::size_t i = 0; i < 100; ++i) {
      INFO("row ", i);
      CHECK(one[i] == two[2 * i]);
    }
  }
  // float32 against a double reference.
  for (const auto& mkn : {std::array<std::int64_t, 3>{7, 33, 9},
                          {33, 16, 16},
                          {100, 16, 1},
                          {5, 64, 3},
                          {9, 20, 32},
                          {6, 40, 8},
                          {3, 50, 64},
                          {300, 5, 1},
                          {40, 37, 1}}) {
    // Not a structured binding: INFO takes m, k, n into a lambda, which clang 14 cannot do.
    const std::int64_t m = mkn[0], k = mkn[1], n = mkn[2];
    std::vector<float> a(std::size_t(m * k)), b(std::size_t(k * n));
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(std::sin(double(i)));
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = float(std::cos(0.5 * double(i)));
    TensorTape tape;
    Tensor c = matmul(tape.constant<float>(Shape{m, k}, a), tape.constant<float>(Shape{k, n}, b));
    auto got = c.data<float>();
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::int64_t p = 0; p < k; ++p)
          s += double(a[std::size_t(i * k + p)]) * double(b[std::size_t(p * n + j)]);
        INFO(m, "x", k, " by ", k, "x", n, " at ", i, ",", j);
        CHECK(double(got[std::size_t(i * n + j)]) == doctest::Approx(s).epsilon(1e-5));
      }
  }
}

TEST_CASE("narrow products: computed transposed, bit for bit the columns of a wide product") {
  // C two or four columns wide over many rows is computed as C^T (Note [Narrow products]):
  // gradient-checked in float64 (19 outputs by 2 inputs: transposed under AVX-512), and in
  // float32 (16 by 2: transposed under AVX2 and AVX-512) against the first two columns of the
  // same product eight wide, which the direct kernel computes, bit for bit.
  check_grad([](TensorTape&, std::span<const Tensor> x) { return linear(x[0], x[1], x[2]); },
             {arg(Shape{40, 2}), arg(Shape{19, 2}, 0.1), arg(Shape{19}, 0.2)}, "linear 2 in");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(transpose(x[0]), x[1]); },
             {arg(Shape{40, 19}), arg(Shape{40, 2}, 0.1)}, "matmul (40x19)^T 40x2");
  const std::int64_t rows = 100, outs = 16;
  std::vector<float> u(std::size_t(rows * outs)), x2(std::size_t(rows * 2)),
      x8(std::size_t(rows * 8)), w2(std::size_t(outs * 2)), w8(std::size_t(outs * 8));
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = float(std::sin(0.3 * double(i)));
  for (std::size_t i = 0; i < x8.size(); ++i) x8[i] = float(std::cos(0.7 * double(i)));
  for (std::size_t i = 0; i < w8.size(); ++i) w8[i] = float(std::sin(1.1 * double(i)));
  for (std::size_t r = 0; r < std::size_t(rows); ++r)
    for (std::size_t j = 0; j < 2; ++j) x2[2 * r + j] = x8[8 * r + j];
  for (std::size_t o = 0; o < std::size_t(outs); ++o)
    for (std::size_t j = 0; j < 2; ++j) w2[2 * o + j] = w8[8 * o + j];
  // Forward: (U^T) X, U^T materialized (op(A)^T is then packed); backward of two linear nodes
  // on one W: dW = dY^T X with A transposed (read in place), assigned, then added to.
  const auto run = [&](std::int64_t width, std::span<const float> x, std::span<const float> w,
                       std::vector<float>& product, std::vector<float>& dw) {
    TensorTape tape;
    const Tensor ut = tape.constant<float>(Shape{rows, outs}, u);
    const Tensor xt = tape.constant<float>(Shape{rows, width}, x);
    const Tensor wt = tape.input<float>(Shape{outs, width}, w);
    const auto p = matmul(transpose(ut), xt).data<float>();
    product.assign(p.begin(), p.end());
    tape.backward(sum(linear(xt, wt) * ut) + sum(linear(xt * 0.5, wt) * ut));
    const auto g = wt.grad<float>();
    dw.assign(g.begin(), g.end());
  };
  std::vector<float> narrow_product, narrow_dw, wide_product, wide_dw;
  run(2, x2, w2, narrow_product, narrow_dw);
  run(8, x8, w8, wide_product, wide_dw);
  for (std::size_t o = 0; o < std::size_t(outs); ++o)
    for (std::size_t j = 0; j < 2; ++j) {
      INFO("row ", o, " column ", j);
      CHECK(std::bit_cast<std::uint32_t>(narrow_product[2 * o + j]) ==
            std::bit_cast<std::uint32_t>(wide_product[8 * o + j]));
      CHECK(std::bit_cast<std::uint32_t>(narrow_dw[2 * o + j]) ==
            std::bit_cast<std::uint32_t>(wide_dw[8 * o + j]));
    }
}

TEST_CASE("linear's bias gradient sums each column over the rows in order, bit for bit") {
  // 37 columns: whole groups of registers and a ragged tail in every kernel (the AVX2 one keeps
  // the sums in registers over the rows); each element is 0 + u[0][j] + u[1][j] + ... in float.
  const std::int64_t rows = 100, outs = 37, ins = 3;
  std::vector<float> x(std::size_t(rows * ins)), w(std::size_t(outs * ins)),
      b(std::size_t(outs), 0.25f), u(std::size_t(rows * outs));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.9 * double(i)));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float(std::cos(0.4 * double(i)));
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = float(std::sin(0.37 * double(i) + 1));
  TensorTape tape;
  const Tensor bias = tape.input<float>(Shape{outs}, b);
  const Tensor y = linear(tape.constant<float>(Shape{rows, ins}, x),
                          tape.constant<float>(Shape{outs, ins}, w), bias);
  tape.backward(sum(y * tape.constant<float>(Shape{rows, outs}, u)));
  const auto got = bias.grad<float>();
  for (std::size_t j = 0; j < std::size_t(outs); ++j) {
    float expected = 0;
    for (std::size_t i = 0; i < std::size_t(rows); ++i) expected += u[i * std::size_t(outs) + j];
    INFO("column ", j);
    CHECK(std::bit_cast<std::uint32_t>(got[j]) == std::bit_cast<std::uint32_t>(expected));
  }
}

// The largest error of `got` (rows x cols) against sum_p x(i, p) y(p, j) in double, relative to
// sum_p |x(i, p) y(p, j)|: the scale of the rounding error of any order of summation.
template <class T, class X, class Y>
double product_error(std::span<const T> got, std::int64_t rows, std::int64_t cols,
                     std::int64_t inner, X x, Y y) {
  double worst = 0;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) {
      double sum = 0, scale = 0;
      for (std::int64_t p = 0; p < inner; ++p) {
        sum += x(i, p) * y(p, j);
        scale += std::abs(x(i, p) * y(p, j));
      }
      worst = std::max(worst, std::abs(double(got[std::size_t(i * cols + j)]) - sum) / scale);
    }
  return worst;
}

template <class T> void check_large_products(double tolerance) {
  // Beyond kBlasThreshold (32768 multiply-adds): BLAS when the build has it, else the packed
  // kernel (Note [Products without BLAS]). Forward C = op(A) op(B) in every layout; backward of
  // sum(C * G) gives dA = G op(B)^T and dB = op(A)^T G, the other two layouts of the kernel.
  for (const auto& mkn :
       {std::array<std::int64_t, 3>{67, 129, 45}, {128, 196, 33}, {9, 300, 130}, {200, 40, 70}})
    for (const bool ta : {false, true})
      for (const bool tb : {false, true}) {
        const std::int64_t m = mkn[0], k = mkn[1], n = mkn[2];
        std::vector<T> a(std::size_t(m * k)), b(std::size_t(k * n)), g(std::size_t(m * n));
        for (std::size_t i = 0; i < a.size(); ++i) a[i] = T(std::sin(0.7 * double(i)));
        for (std::size_t i = 0; i < b.size(); ++i) b[i] = T(std::cos(0.3 * double(i)));
        for (std::size_t i = 0; i < g.size(); ++i) g[i] = T(std::sin(1.3 * double(i) + 0.5));
        // op(A) is m x k: stored (m, k), or (k, m) and transposed on the tape; so for op(B).
        auto op_a = [&](std::int64_t i, std::int64_t p) {
          return double(a[std::size_t(ta ? p * m + i : i * k + p)]);
        };
        auto op_b = [&](std::int64_t p, std::int64_t j) {
          return double(b[std::size_t(tb ? j * k + p : p * n + j)]);
        };
        auto at_g = [&](std::int64_t i, std::int64_t j) {
          return double(g[std::size_t(i * n + j)]);
        };

        TensorTape tape;
        Tensor ta_leaf = tape.input<T>(ta ? Shape{k, m} : Shape{m, k}, a, "A");
        Tensor tb_leaf = tape.input<T>(tb ? Shape{n, k} : Shape{k, n}, b, "B");
        Tensor c = matmul(ta ? transpose(ta_leaf) : ta_leaf, tb ? transpose(tb_leaf) : tb_leaf);
        tape.backward(sum(c * tape.constant<T>(Shape{m, n}, g)));
        INFO(m, "x", k, " by ", k, "x", n, ta ? ", A transposed" : "", tb ? ", B transposed" : "");
        CHECK(product_error<T>(c.data<T>(), m, n, k, op_a, op_b) < tolerance);
        if (ta)  // dA[p, i] = sum_j op(B)[p, j] G[i, j]
          CHECK(product_error<T>(ta_leaf.grad<T>(), k, m, n, op_b,
                                 [&](std::int64_t j, std::int64_t i) { return at_g(i, j); }) <
                tolerance);
        else  // dA[i, p] = sum_j G[i, j] op(B)[p, j]
          CHECK(product_error<T>(ta_leaf.grad<T>(), m, k, n, at_g,
                                 [&](std::int64_t j, std::int64_t p) { return op_b(p, j); }) <
                tolerance);
        if (tb)  // dB[j, p] = sum_i G[i, j] op(A)[i, p]
          CHECK(product_error<T>(
                    tb_leaf.grad<T>(), n, k, m,
                    [&](std::int64_t j, std::int64_t i) { return at_g(i, j); }, op_a) < tolerance);
        else  // dB[p, j] = sum_i op(A)[i, p] G[i, j]
          CHECK(product_error<T>(
                    tb_leaf.grad<T>(), k, n, m,
                    [&](std::int64_t p, std::int64_t i) { return op_a(i, p); }, at_g) < tolerance);
      }
}

TEST_CASE("large products, with BLAS or without: every layout against a product in double") {
  // The bound is a few units of rounding times the length of the sums (k up to 300).
  SUBCASE("float32") { check_large_products<float>(3e-5); }
  SUBCASE("float64") { check_large_products<double>(1e-13); }
}

TEST_CASE("linear: x W^T + b in one node, as torch.nn.functional.linear") {
  check_grad([](TensorTape&, std::span<const Tensor> x) { return linear(x[0], x[1], x[2]); },
             {arg(Shape{4, 3}), arg(Shape{2, 3}, 0.1), arg(Shape{2}, 0.2)}, "linear");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return linear(x[0], x[1]); },
             {arg(Shape{4, 3}), arg(Shape{2, 3}, 0.1)}, "linear without bias");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return linear(x[0], x[1], x[2]); },
             {arg(Shape{40, 30}), arg(Shape{35, 30}, 0.1), arg(Shape{35}, 0.2)},
             "linear through BLAS");
  TensorTape tape;
  Tensor x = tape.input(Shape{1, 2}, {1, 2}, "x");
  Tensor w = tape.input(Shape{3, 2}, {1, 0, 0, 1, 1, 1}, "W");
  Tensor b = tape.input(Shape{3}, {0.5, 0, -1}, "b");
  Tensor y = linear(x, w, b).named("y");
  CHECK(y.values() == std::vector<double>{1.5, 2, 2});
  CHECK(forward_line(tape, y.id()) == "y = linear(x, W, b): (1, 3) = [[1.5, 2, 2]]");
  CHECK_THROWS_WITH_AS(linear(x, zeros(tape, Shape{3, 4}, {DType::f64})),
                       "linear: input (1, 2) has 2 features but weight (3, 4) expects 4", Error);
  CHECK_THROWS_WITH_AS(linear(x, w, zeros(tape, Shape{2}, {DType::f64})),
                       "linear: bias (2,) does not match weight (3, 2): expected (3,)", Error);
  TensorStepper stepper = tape.stepper(sum(y).named("L"));
  REQUIRE(stepper.next());
  REQUIRE(stepper.next());
  CHECK(stepper.step().arity == 3);
  CHECK(fmt::format("{}", stepper.step()) ==
        "dL/dx (1, 2) = dL/dy (1, 3) · dy/dx   |contribution| = 2.828\n"  // |[1 1 1] W|
        "dL/dW (3, 2) = dL/dy (1, 3) · dy/dW   |contribution| = 3.873\n"
        "dL/db (3,) = dL/dy (1, 3) · dy/db   |contribution| = 1.732");
}

TEST_CASE("one shape printer: Shape::str, fmt's {} and shape_str agree, as NumPy prints") {
  CHECK(Shape{4, 3}.str() == "(4, 3)");
  CHECK(fmt::format("{}", Shape{5}) == "(5,)");
  CHECK(fmt::format("{:>8}", Shape{}) == "      ()");
  const std::vector<std::int64_t> empty{0, 3};
  CHECK(shape_str(empty) == "(0, 3)");
  CHECK(fmt::format("{}", Shape{0, 3}) == shape_str(empty));
}

TEST_CASE("messages are printable: control characters escaped once, when an Error is made") {
  CHECK(printable("plain text, with\ttab and\nnewline") == "plain text, with\ttab and\nnewline");
  CHECK(printable(std::string_view("a\0b\x1b[2J\x7f", 8)) == "a\\x00b\\x1b[2J\\x7f");
  CHECK(printable("caf\xc3\xa9") == "caf\xc3\xa9");  // UTF-8 passes as it is
  // A NUL no longer cuts what() short; the escape sequence no longer reaches the terminal.
  const Error e(std::string("name '\x1b[2J\0' here", 17));
  CHECK(std::string(e.what()) == "name '\\x1b[2J\\x00' here");
  CHECK_THROWS_WITH_AS(fail("{}: shape {} has {} elements", "t\x1b", Shape{2, 0}, 0),
                       "t\\x1b: shape (2, 0) has 0 elements", Error);
}

// ---- amax and amin over everything, amin over an axis, argmax, where, batched
// products ---------------------------------------------------------------------------------

TEST_CASE("amax and amin over all elements, amin over each axis, with keepdims") {
  const Shape s{2, 3, 4};
  check_grad([](TensorTape&, std::span<const Tensor> x) { return amax(x[0]); }, {arg(s)},
             "amax over all");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return amin(x[0]); }, {arg(s)},
             "amin over all");
  for (int axis : {0, 1, 2, -1})
    for (bool keep : {false, true})
      check_grad([&](TensorTape&, std::span<const Tensor> x) { return amin(x[0], axis, keep); },
                 {arg(s)}, fmt::format("amin axis {} keepdims {}", axis, keep));
  TensorTape tape;
  Tensor t = tape.input(Shape{2, 3}, {1, 5, 2, 7, 0, 7}, "t");
  CHECK(amax(t).shape() == Shape{});
  CHECK(amax(t).item() == 7);
  CHECK(amin(t).item() == 0);
  CHECK(amin(t, 1).values() == std::vector<double>{1, 0});
  CHECK(amin(t, 0, true).shape() == Shape{1, 3});
  CHECK(expression(tape, amin(t, 1).id()) == "amin(t, axis=1)");
  CHECK(expression(tape, amax(t).id()) == "amax(t)");
}

TEST_CASE("amax and amin split a tie's gradient evenly, as torch.amax and torch.amin") {
  // Note [Ties in amax and amin]: torch.amax(t) of [[1, 7], [7, 0]] sends 1/2 to each 7;
  // amax(t, axis) keeps torch.max(t, dim)'s first index (the test above asserts it).
  TensorTape tape;
  Tensor t = tape.input(Shape{2, 3}, {7, 0, 7, 3, 0, 0}, "t");
  tape.backward(amax(t));
  CHECK(t.grads() == std::vector<double>{0.5, 0, 0.5, 0, 0, 0});
  tape.zero_grad();
  tape.backward(sum(amin(t, 1)));  // row 0: one minimum; row 1: two
  CHECK(t.grads() == std::vector<double>{0, 1, 0, 0, 0.5, 0.5});
  tape.zero_grad();
  tape.backward(amin(t));  // three zeros share it
  const double third = 1.0 / 3.0;
  CHECK(t.grads() == std::vector<double>{0, third, 0, 0, third, third});
}

TEST_CASE("amin and amax over all propagate NaN, and so does their gradient, as in torch") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    TensorTape tape;
    Tensor t = tape.input(Shape{2, 3}, {3, nan, 1, 5, 2, 7}, "t", dtype);
    CHECK(std::isnan(amax(t).item()));
    CHECK(std::isnan(amin(t).item()));
    const std::vector<double> m = amin(t, 1).values();
    CHECK(std::isnan(m[0]));
    CHECK(m[1] == 2);
    // A NaN result equals no element: torch's gradient (grad * mask / count) is 0/0 = NaN over
    // the whole slice; the slice without NaN is untouched.
    tape.backward(sum(amin(t, 1)));
    const std::vector<double> g = t.grads();
    CHECK(std::all_of(g.begin(), g.begin() + 3, [](double v) { return std::isnan(v); }));
    CHECK(std::vector<double>(g.begin() + 3, g.end()) == std::vector<double>{0, 1, 0});
  }
}

TEST_CASE("argmax: the first maximum's index as a value, NaN the maximum, no gradient") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    TensorTape tape;
    Tensor t = tape.input(Shape{3, 3}, {1, 5, 5, nan, 2, nan, 4, 0, 4}, "t", dtype);
    CHECK(argmax(t, 1).values() == std::vector<double>{1, 0, 0});  // ties: the first
    CHECK(argmax(t, 0).values() == std::vector<double>{1, 0, 1});
    CHECK(argmax(t, -1, true).shape() == Shape{3, 1});
    CHECK(argmax(t).item() == 3);  // the flat index of the first NaN
    CHECK(argmax(t).dtype() == dtype);
    CHECK(!argmax(t).requires_grad());
    CHECK(expression(tape, argmax(t, 0).id()) == "argmax(t, axis=0)");
    // A constant in a graph: the loss's gradient reaches t only through the product.
    Tensor loss = sum(t * argmax(t, 0, true));
    tape.backward(loss);
    CHECK(t.grads()[1] == 0);
    CHECK(t.grads()[3] == 1);
  }
  TensorTape tape;
  CHECK_THROWS_WITH_AS(argmax(zeros(tape, Shape{0})), "argmax: shape (0,) has no elements", Error);
  CHECK_THROWS_WITH_AS(amin(zeros(tape, Shape{2, 0}), 1), "amin: axis 1 of shape (2, 0) is empty",
                       Error);
}

TEST_CASE("where: broadcasting all three, the gradient to the chosen branch only") {
  // cond of (2, 1), a of (3,), b of (2, 3): every input broadcast in its own way.
  const auto chosen = [](TensorTape& tape, std::span<const Tensor> x) {
    Tensor cond = tape.input(Shape{2, 1}, {1, 0}, "cond");
    return where(cond, x[0], x[1]) * x[1];
  };
  check_grad(chosen, {arg(Shape{3}), arg(Shape{2, 3}, 0.1)}, "where, broadcast");
  check_grad(
      [](TensorTape& tape, std::span<const Tensor> x) {
        Tensor cond = tape.input(Shape{2, 3}, {1, 0, 0, 2, -1, 0}, "cond");
        return where(cond, x[0], x[1]);
      },
      {arg(Shape{2, 3}), arg(Shape{})}, "where, b a scalar");
  TensorTape tape;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor cond = tape.input(Shape{4}, {1, 0, nan, -2}, "c");
  Tensor a = tape.input(Shape{4}, {1, 2, 3, 4}, "a");
  Tensor b = tape.input(Shape{1}, {10}, "b");
  Tensor y = where(cond, a, b);
  CHECK(y.values() == std::vector<double>{1, 10, 3, 4});  // NaN is nonzero: it chooses a
  CHECK(expression(tape, y.id()) == "where(c, a, b)");
  tape.backward(sum(y * 2.0));
  CHECK(a.grads() == std::vector<double>{2, 0, 2, 2});
  CHECK(b.grads() == std::vector<double>{2});  // summed back to its shape
  CHECK(cond.grads() == std::vector<double>{0, 0, 0, 0});
  Tensor f = zeros(tape, Shape{4}, {DType::f32});
  CHECK_THROWS_WITH_AS(where(cond, a, f), "where: dtype mismatch: float64 and float32", Error);
  CHECK_THROWS_WITH_AS(where(cond, a, zeros(tape, Shape{3}, {DType::f64})),
                       doctest::Contains("where: shapes (4,) and (3,) do not broadcast"), Error);
}

TEST_CASE("batched matmul: (B, m, k) x (B, k, n) and (B, m, k) x (k, n), as torch.matmul") {
  const auto product = [](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], x[1]); };
  check_grad(product, {arg(Shape{2, 3, 4}), arg(Shape{2, 4, 5}, 0.1)}, "batch by batch");
  check_grad(product, {arg(Shape{2, 3, 4}), arg(Shape{4, 5}, 0.1)}, "batch by matrix");
  check_grad(product, {arg(Shape{2, 40, 33}), arg(Shape{2, 33, 30}, 0.1)}, "batches by BLAS");
  check_grad(product, {arg(Shape{3, 20, 33}), arg(Shape{33, 30}, 0.1)}, "batch by BLAS matrix");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], x[0]); },
             {arg(Shape{2, 3, 3})}, "a batch times itself");
  TensorTape tape;
  // Batch 1 is the product of the second matrices only.
  Tensor a = tape.input(Shape{2, 1, 2}, {1, 2, 3, 4}, "a");
  Tensor b = tape.input(Shape{2, 2, 1}, {1, 1, 10, 100}, "b");
  CHECK(matmul(a, b).shape() == Shape{2, 1, 1});
  CHECK(matmul(a, b).values() == std::vector<double>{3, 430});
  CHECK_THROWS_WITH_AS(matmul(a, zeros(tape, Shape{3, 2, 1}, {DType::f64})),
                       "matmul: (2, 1, 2) x (3, 2, 1): batch sizes 2 and 3 differ", Error);
  CHECK_THROWS_WITH_AS(matmul(zeros(tape, Shape{1, 2}, {DType::f64}), b),
                       doctest::Contains("(B, m, k) x (B, k, n) or (B, m, k) x (k, n)"), Error);
}

TEST_CASE("linear on (N, L, in): the leading axes are rows, as torch.nn.functional.linear") {
  check_grad([](TensorTape&, std::span<const Tensor> x) { return linear(x[0], x[1], x[2]); },
             {arg(Shape{2, 3, 4}), arg(Shape{5, 4}, 0.1), arg(Shape{5}, 0.2)}, "linear, 3-D");
  check_grad([](TensorTape&, std::span<const Tensor> x) { return linear(x[0], x[1]); },
             {arg(Shape{2, 20, 30}), arg(Shape{35, 30}, 0.1)}, "linear, 3-D through BLAS");
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 1, 2}, {1, 2, 3, 4}, "x");
  Tensor w = tape.input(Shape{1, 2}, {1, 10}, "W");
  Tensor y = linear(x, w);
  CHECK(y.shape() == Shape{2, 1, 1});
  CHECK(y.values() == std::vector<double>{21, 43});
}

// ---- shape ops: cat, stack, slice, index_select, gather, transpose of any two axes ----------

TEST_CASE("cat and stack: gradients, any number of inputs, an input joined twice") {
  for (int axis : {0, 1, -1})
    check_grad([axis](TensorTape&, std::span<const Tensor> x) { return cat(x, axis); },
               {arg(Shape{2, 3}), arg(Shape{2, 3}, 0.1), arg(Shape{2, 3}, 0.2)},
               fmt::format("cat along axis {}", axis));
  check_grad(
      [](TensorTape&, std::span<const Tensor> x) {
        return cat({x[0], x[1], x[0]}, 1);
      },
      {arg(Shape{2, 1, 3}), arg(Shape{2, 4, 3}, 0.3)}, "cat of lengths 1, 4, 1; x twice");
  // More inputs than a node record holds (kMaxInputs): they live in the arena.
  check_grad([](TensorTape&, std::span<const Tensor> x) { return cat(x, 0) * 2.0; },
             {arg(Shape{1, 2}), arg(Shape{2, 2}, 0.1), arg(Shape{3, 2}, 0.2), arg(Shape{1, 2}, 0.3),
              arg(Shape{2, 2}, 0.4)},
             "cat of five");
  for (int axis : {0, 1, 2, -1, -3})
    check_grad(
        [axis](TensorTape&, std::span<const Tensor> x) { return stack(x, axis); },
        {arg(Shape{2, 3}), arg(Shape{2, 3}, 0.1), arg(Shape{2, 3}, 0.2), arg(Shape{2, 3}, 0.3)},
        fmt::format("stack of four along axis {}", axis));
  check_grad(
      [](TensorTape&, std::span<const Tensor> x) {
        return stack({x[0], x[0]}, 1);
      },
      {arg(Shape{3})}, "stack of x with itself");

  TensorTape tape;
  Tensor a = tape.input(Shape{2, 2}, {1, 2, 3, 4}, "a");
  Tensor b = tape.input(Shape{2, 1}, {5, 6}, "b");
  CHECK(cat({a, b}, 1).values() == std::vector<double>{1, 2, 5, 3, 4, 6});
  CHECK(cat({a, b}, 1).shape() == Shape{2, 3});
  CHECK(stack({a, a}, 1).shape() == Shape{2, 2, 2});
  CHECK(stack({a, a}, 1).values() == std::vector<double>{1, 2, 1, 2, 3, 4, 3, 4});
  CHECK(stack({a, a}, -1).values() == std::vector<double>{1, 1, 2, 2, 3, 3, 4, 4});
  std::vector<Tensor> many;
  for (int k = 0; k < 7; ++k) many.push_back(a * double(k));
  Tensor joined = cat(many, 0).named("joined");
  CHECK(joined.shape() == Shape{14, 2});
  CHECK(joined.value(27) == 4 * 6);  // the last element: a[1, 1] * 6
  tape.backward(sum(joined));
  CHECK(a.grads() == std::vector<double>{21, 21, 21, 21});  // 0 + 1 + ... + 6
  // The stepper reports every input of a 7-input node.
  TensorTape steps;
  Tensor x = steps.input(Shape{2}, {1, 2}, "x");
  std::vector<Tensor> copies(7, x);
  Tensor s = sum(cat(copies, 0));
  TensorStepper stepper = steps.stepper(s);
  REQUIRE(stepper.next());  // the sum
  REQUIRE(stepper.next());  // the cat
  CHECK(stepper.step().arity == 7);
  REQUIRE(stepper.step().inputs.size() == 7);
  for (const TensorInputStep& in : stepper.step().inputs) CHECK(in.id == x.id());
  CHECK(stepper.step().inputs[6].grad_norm == doctest::Approx(7 * std::sqrt(2.0)));
  CHECK(expression(steps, s.id() - 1) == "cat([x, x, x, x, x, x, x], axis=0)");
}

TEST_CASE("slice: Python's start:stop:step, negative bounds and clamping") {
  TensorTape tape;
  Tensor v = tape.input(Shape{6}, {0, 1, 2, 3, 4, 5}, "v");
  CHECK(slice(v, 0, 1, 4).values() == std::vector<double>{1, 2, 3});
  CHECK(slice(v, 0, -2, 100).values() == std::vector<double>{4, 5});   // v[-2:100]
  CHECK(slice(v, 0, -100, 2).values() == std::vector<double>{0, 1});   // v[-100:2]
  CHECK(slice(v, 0, 0, 6, 4).values() == std::vector<double>{0, 4});   // v[0:6:4]
  CHECK(slice(v, 0, 1, -1, 2).values() == std::vector<double>{1, 3});  // v[1:-1:2]
  CHECK(slice(v, 0, 4, 2).shape() == Shape{0});                        // v[4:2] is empty
  CHECK(slice(v, 0, 7, 9).shape() == Shape{0});
  Tensor m = tape.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "m");
  CHECK(slice(m, 1, 1, 3).values() == std::vector<double>{2, 3, 5, 6});
  CHECK(expression(tape, slice(m, 1, -2, 3).id()) == "m[:, 1:3]");
  CHECK(expression(tape, slice(m, 0, 0, 2, 2).id()) == "m[0:2:2]");
  CHECK_THROWS_WITH_AS((void)slice(m, 1, 0, 3, 0), "slice: step must be positive, not 0", Error);
  CHECK_THROWS_WITH_AS((void)slice(m, 2, 0, 3), "slice: axis 2 is out of range for shape (2, 3)",
                       Error);
  for (int axis : {0, 1, 2, -1})
    check_grad([axis](TensorTape&, std::span<const Tensor> x) { return slice(x[0], axis, 1, -1); },
               {arg(Shape{3, 4, 5})}, fmt::format("slice 1:-1 along axis {}", axis));
  check_grad([](TensorTape&, std::span<const Tensor> x) { return slice(x[0], 1, -7, 100, 3); },
             {arg(Shape{2, 7})}, "slice -7:100:3, clamped");
  check_grad(
      [](TensorTape&, std::span<const Tensor> x) {
        return slice(x[0], 0, 0, 2) * slice(x[0], 0, 1, 3);  // overlapping slices of one input
      },
      {arg(Shape{3, 2})}, "overlapping slices");
}

TEST_CASE("index_select and gather: repeated indices accumulate their gradients") {
  TensorTape tape;
  Tensor m = tape.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "m");
  const std::vector<std::int64_t> cols{2, 0, 2};
  Tensor picked = index_select(m, 1, cols);
  CHECK(picked.values() == std::vector<double>{3, 1, 3, 6, 4, 6});
  const std::vector<std::int64_t> rows{1, 1};
  CHECK(index_select(m, 0, rows).values() == std::vector<double>{4, 5, 6, 4, 5, 6});
  tape.backward(sum(picked));
  CHECK(m.grads() == std::vector<double>{1, 0, 2, 1, 0, 2});
  CHECK(expression(tape, picked.id()) == "index_select(m, axis=1, [2, 0, 2])");

  TensorTape g;
  Tensor a = g.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "a");
  // torch.gather(a, 1, [[0, 0], [2, 1]]) = [[1, 1], [6, 5]]
  const std::vector<std::int64_t> index{0, 0, 2, 1};
  Tensor out = gather(a, 1, index, Shape{2, 2});
  CHECK(out.values() == std::vector<double>{1, 1, 6, 5});
  // Along axis 0, an index shorter than a on axis 1: out[i][j] = a[index[i][j]][j].
  const std::vector<std::int64_t> down{1, 0, 1, 1};
  CHECK(gather(a, 0, down, Shape{2, 2}).values() == std::vector<double>{4, 2, 4, 5});
  g.backward(sum(out));
  CHECK(a.grads() == std::vector<double>{2, 0, 0, 0, 1, 1});
  CHECK(expression(g, out.id()) == "gather(a, axis=1, [0, 0, 2, 1])");

  for (int axis : {0, 1, 2})
    check_grad(
        [axis](TensorTape&, std::span<const Tensor> x) {
          const std::vector<std::int64_t> idx{1, 0, 1, 1, 2};
          return index_select(x[0], axis, idx);
        },
        {arg(Shape{3, 4, 3})}, fmt::format("index_select along axis {}", axis));
  for (int axis : {0, 1, -1})
    check_grad(
        [axis](TensorTape&, std::span<const Tensor> x) {
          const std::vector<std::int64_t> idx{0, 2, 2, 1, 0, 0, 1, 2, 2, 0, 1, 1};
          return gather(x[0], axis, idx, Shape{2, 3, 2});
        },
        {arg(Shape{3, 4, 3})}, fmt::format("gather along axis {}", axis));
}

TEST_CASE("transpose of any two axes, and reshape's -1 from a span of dimensions") {
  TensorTape tape;
  const std::vector<double> data = values(Shape{2, 3, 4});
  Tensor t = tape.input(Shape{2, 3, 4}, std::span<const double>(data), "t");
  Tensor swapped = transpose(t, 0, 2);
  CHECK(swapped.shape() == Shape{4, 3, 2});
  CHECK(swapped.value(1) == t.value(12));  // out[0, 0, 1] = t[1, 0, 0]
  CHECK(transpose(t, -1, 0).values() == swapped.values());
  CHECK(transpose(t, 1, 1).values() == t.values());
  CHECK(transpose(t).values() == transpose(t, -2, -1).values());
  CHECK(expression(tape, swapped.id()) == "transpose(t, 0, 2)");
  CHECK(expression(tape, transpose(t, 2, 1).id()) == "transpose(t)");
  CHECK_THROWS_WITH_AS((void)transpose(t, 0, 3),
                       "transpose: axis 3 is out of range for shape (2, 3, 4)", Error);
  for (auto [d0, d1] : {std::pair{0, 2}, {0, 1}, {1, 2}, {-1, -3}, {2, 2}})
    check_grad([d0, d1](TensorTape&, std::span<const Tensor> x) { return transpose(x[0], d0, d1); },
               {arg(Shape{2, 3, 4})}, fmt::format("transpose({}, {})", d0, d1));
  check_grad([](TensorTape&, std::span<const Tensor> x) { return transpose(x[0], 1, 3); },
             {arg(Shape{2, 2, 3, 2, 2})}, "transpose of two middle axes of a rank-5 tensor");

  const std::vector<std::int64_t> dims{-1, 4};
  CHECK(reshape(t, dims).shape() == Shape{6, 4});
  CHECK(reshape(t, Shape{4, 6}.dims()).shape() == Shape{4, 6});
  CHECK(reshape(t, {2, -1}).shape() == Shape{2, 12});
  const std::vector<std::int64_t> two{-1, -1};
  CHECK_THROWS_WITH_AS((void)reshape(t, two), "reshape: only one dimension can be -1", Error);
  const std::vector<std::int64_t> odd{5, -1};
  CHECK_THROWS_WITH_AS((void)reshape(t, odd),
                       "reshape: cannot view shape (2, 3, 4) (24 elements) with a -1 dimension "
                       "and the others multiplying to 5",
                       Error);
  check_grad(
      [](TensorTape&, std::span<const Tensor> x) {
        const std::vector<std::int64_t> d{3, -1};
        return reshape(x[0], d) * 2.0;
      },
      {arg(Shape{2, 3})}, "reshape with -1 from a span");
  // A Shape is always concrete: -1 there is refused, pointing at the list form.
  CHECK_THROWS_WITH_AS((void)reshape(t, Shape{-1, 4}),
                       "a dimension cannot be negative (-1); to infer one in reshape, list the "
                       "dimensions: reshape(x, {-1, 4})",
                       Error);
  CHECK_THROWS_WITH_AS((void)Shape({3, -2}), "a dimension cannot be negative (-2)", Error);
}

TEST_CASE("shape op errors name both shapes, the axis, the index and its position") {
  TensorTape tape;
  Tensor a = tape.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "a");
  Tensor b = tape.input(Shape{2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}, "b");
  CHECK_THROWS_WITH_AS((void)cat({a, b}, 0),
                       "cat: tensor 1 of shape (2, 4) does not fit tensor 0 of shape (2, 3) along "
                       "axis 0: the other axes must agree",
                       Error);
  CHECK(cat({a, b}, 1).shape() == Shape{2, 7});
  CHECK_THROWS_WITH_AS((void)stack({a, b}, 1),
                       "stack: tensor 1 of shape (2, 4) differs from tensor 0 of shape (2, 3) "
                       "(stacking along axis 1 needs one shape)",
                       Error);
  CHECK_THROWS_WITH_AS((void)stack({a, a}, 3),
                       "stack: axis 3 is out of range for tensors of shape (2, 3) (a new axis "
                       "goes in [-3, 2])",
                       Error);
  CHECK_THROWS_WITH_AS((void)cat(std::span<const Tensor>{}, 0), "cat: no tensors to join", Error);
  Tensor f = tape.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "f", DType::f32);
  CHECK_THROWS_WITH_AS((void)cat({a, f}, 0), "cat: dtype mismatch: float64 and float32", Error);
  const std::vector<std::int64_t> bad{0, 3, 1};
  CHECK_THROWS_WITH_AS((void)index_select(a, -1, bad),
                       "index_select: index 3 at position 1 is out of range for axis -1 of length "
                       "3 (shape (2, 3))",
                       Error);
  const std::vector<std::int64_t> gbad{0, 1, -1, 0};
  CHECK_THROWS_WITH_AS((void)gather(a, 0, gbad, Shape{2, 2}),
                       "gather: index -1 at [1, 0] is out of range for axis 0 of length 2 (shape "
                       "(2, 3))",
                       Error);
  CHECK_THROWS_WITH_AS((void)gather(a, 0, gbad, Shape{4}),
                       "gather: an index of shape (4,) for a tensor of shape (2, 3): the ranks "
                       "must agree",
                       Error);
  CHECK_THROWS_WITH_AS((void)gather(a, 0, gbad, Shape{1, 4}),
                       "gather: an index of shape (1, 4) is longer than the tensor's shape (2, 3) "
                       "on axis 1 (gathering along axis 0)",
                       Error);
  CHECK_THROWS_WITH_AS((void)gather(a, 0, gbad, Shape{1, 3}),
                       "gather: 4 indices for an index of shape (1, 3) (3 elements)", Error);
}
