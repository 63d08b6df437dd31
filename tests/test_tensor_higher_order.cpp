// Gradients of gradients on the tensor tape: every op of the table differentiated twice (the
// selections three times) against central differences, cross-entropy among them, a
// Hessian-vector product against differences of gradients, and grad's semantics and errors.

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <string>
#include <tapegrad/core.hpp>
#include <tapegrad/gradcheck.hpp>
#include <vector>

using namespace ag;

namespace {

// Distinct values in about [-0.9, 1.6], none exactly at 0 (a kink of several ops), as
// tests/test_tensor.cpp's.
std::vector<double> values(const Shape& s, double offset = 0) {
  std::vector<double> v(static_cast<std::size_t>(s.numel()));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = offset + 0.37 * double(i % 7) - 0.93 + 0.05 * double(i / 7);
  return v;
}

TensorArg arg(const Shape& s, double offset = 0) { return {s, values(s, offset)}; }

Tensor positive(Tensor t) { return abs(t) + 0.5; }

// Checks the recorded gradient as a function of the inputs: its backward (the second
// derivatives) against central differences of its values, which are first derivatives.
template <class F> void check_second(F f, std::vector<TensorArg> args, const std::string& what) {
  GradcheckResult r = gradcheck(f, std::span<const TensorArg>(args));
  INFO(what, ": ", r.message);
  CHECK(r.ok);
}

// The gradients of `loss` with respect to every input, recorded, as one flat tensor.
Tensor recorded_gradient(Tensor loss, std::span<const Tensor> x) {
  std::vector<Tensor> flat;
  for (const Tensor& g : loss.tape().grad(loss, x, {.create_graph = true}))
    flat.push_back(reshape(g, {-1}));
  return flat.size() == 1 ? flat[0] : cat(flat);
}

// The recorded gradient of loss(inputs) twice over: its values equal backward's (a recorded form
// that differentiates consistently but computes the wrong first derivative fails here), and its
// own derivative, the second, agrees with central differences (check_second).
template <class F>
void check_twice(F loss_of, const std::vector<TensorArg>& args, const std::string& what) {
  TensorTape tape;
  std::vector<Tensor> x;
  for (const TensorArg& a : args) x.push_back(tape.input<double>(a.shape, a.values));
  const Tensor loss = loss_of(tape, std::span<const Tensor>(x));
  const std::vector<Tensor> recorded = tape.grad(loss, x, {.create_graph = true});
  tape.backward(loss);
  for (std::size_t k = 0; k < x.size(); ++k) {
    const std::vector<double> expected = x[k].grads();
    REQUIRE(recorded[k].numel() == std::int64_t(expected.size()));
    for (std::size_t i = 0; i < expected.size(); ++i) {
      INFO(what, ": input ", k, " element ", i);
      CHECK(recorded[k].value(std::int64_t(i)) == doctest::Approx(expected[i]).epsilon(1e-12));
    }
  }
  const auto gradient_of = [&](TensorTape& t, std::span<const Tensor> in) {
    return recorded_gradient(loss_of(t, in), in);
  };
  check_second(gradient_of, args, what);
}

}  // namespace

TEST_CASE("every unary row's recorded gradient equals backward's, and differentiates again") {
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = static_cast<Op>(i);
    if (op_info(op).arity != 1) continue;
    const bool domain = op == Op::log || op == Op::sqrt;
    auto f = [&](TensorTape&, std::span<const Tensor> x) {
      return sum(apply(op, domain ? positive(x[0]) : x[0]) * x[0]);  // a non-trivial seed
    };
    // The values: the recorded gradient is backward's
    TensorTape tape;
    const std::vector<double> v = values(Shape{2, 3});
    Tensor x = tape.input<double>(Shape{2, 3}, v);
    Tensor loss = f(tape, std::array{x});
    const std::vector<double> recorded = tape.grad(loss, {x}, {.create_graph = true})[0].values();
    tape.backward(loss);
    CHECK_MESSAGE(recorded == x.grads(), op_info(op).name);
    check_second(
        [&](TensorTape& t, std::span<const Tensor> in) { return recorded_gradient(f(t, in), in); },
        {arg(Shape{2, 3})}, std::string(op_info(op).name));
  }
}

TEST_CASE("every binary row, broadcasting: gradients summed back with recorded sums") {
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {Shape{2, 3}, Shape{2, 3}}, {Shape{2, 3}, Shape{3}},    {Shape{2, 3}, Shape{2, 1}},
      {Shape{2, 3}, Shape{}},     {Shape{2, 1}, Shape{1, 3}}, {Shape{4, 1, 3}, Shape{2, 3}},
  };
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = static_cast<Op>(i);
    if (op_info(op).arity != 2) continue;
    for (const auto& [sa, sb] : pairs) {
      if (op == Op::prelu &&
          !(sb.rank() == 0 || (sb.rank() == 1 && sa.rank() >= 1 && sb[0] == sa[sa.rank() - 1])))
        continue;  // prelu's alpha is one slope or one per feature
      check_second(
          [&](TensorTape&, std::span<const Tensor> x) {
            Tensor a = op == Op::pow ? positive(x[0]) : op == Op::bce ? sigmoid(x[0]) : x[0];
            Tensor b = op == Op::div ? positive(x[1]) : x[1];
            return recorded_gradient(sum(apply(op, a, b) * apply(op, a, b)), x);
          },
          {arg(sa), arg(sb, 0.11)}, fmt::format("{} {} {}", op_info(op).name, sa.str(), sb.str()));
    }
  }
}

TEST_CASE("the MLP path differentiates twice: linear, matmul, transpose, reshape, sum, mean") {
  // loss = mean(tanh(linear(x, W1, b1)) @ W2 ...) with every parameter an input
  auto mlp = [](std::span<const Tensor> p) {
    const Tensor x = p[0], w1 = p[1], b1 = p[2], w2 = p[3];
    const Tensor h = gelu(linear(x, w1, b1));
    const Tensor out = matmul(h, transpose(w2));  // (4, 2)
    return mean(sigmoid(reshape(out, {2, 4})) *
                out.tape().constant<double>(Shape{4}, std::vector<double>{1, -2, 3, 0.5})) +
           sum(softplus(w1)) * 0.1;
  };
  check_second(
      [&](TensorTape&, std::span<const Tensor> p) { return recorded_gradient(mlp(p), p); },
      {arg(Shape{4, 3}), arg(Shape{5, 3}, 0.1), arg(Shape{5}, -0.2), arg(Shape{2, 5}, 0.3)}, "MLP");
  // sum and mean over an axis, with and without keepdims
  check_second(
      [](TensorTape&, std::span<const Tensor> x) {
        const Tensor y = exp(x[0] * 0.5);
        return recorded_gradient(
            sum(mean(y, 0) * mean(y, 1, true)) + sum(sum(y * y, 0) * sum(y, 1, true)), x);
      },
      {arg(Shape{3, 4})}, "sum and mean over axes");
}

TEST_CASE("cross-entropy differentiates twice: log_softmax, softmax and pick") {
  const std::vector<std::int32_t> labels{2, 0, 1, 2};
  // cross-entropy of a linear classifier, every parameter an input
  check_twice(
      [&](TensorTape&, std::span<const Tensor> p) {
        const Tensor logits = linear(p[0], p[1], p[2]);  // (4, 3)
        return -mean(pick(log_softmax(logits, 1), labels));
      },
      {arg(Shape{4, 2}), arg(Shape{3, 2}, 0.2), arg(Shape{3}, -0.3)}, "cross-entropy");
  // pick's upstream depending on its input: the one-hot rows carry a varying gradient
  check_twice([&](TensorTape&,
                  std::span<const Tensor> x) { return sum(pow(pick(x[0] * x[0], labels), 3.0)); },
              {arg(Shape{4, 3})}, "pick");
  // softmax and log_softmax along every axis of a 3-D tensor, with a weight so the upstream
  // is not uniform
  for (int axis : {0, 1, 2, -1}) {
    check_twice(
        [&](TensorTape& t, std::span<const Tensor> x) {
          const Tensor w = t.constant<double>(Shape{2, 3, 2}, values(Shape{2, 3, 2}, 0.4));
          return sum(softmax(x[0], axis) * w) +
                 sum(log_softmax(x[0], axis) * w * softmax(x[0], axis));
        },
        {arg(Shape{2, 3, 2})}, fmt::format("softmax and log_softmax, axis {}", axis));
  }
}

TEST_CASE("the comparison, selection and shape ops differentiate twice") {
  check_twice(
      [](TensorTape&, std::span<const Tensor> x) {
        return sum(pow(amax(x[0], 1), 3.0)) + sum(amin(x[0], 0) * amax(x[0], 0, true)) +
               amax(x[0] * x[0]) * amin(x[0]);
      },
      {arg(Shape{3, 4})}, "amax and amin");
  check_twice(
      [](TensorTape&, std::span<const Tensor> x) {
        return sum(x[0] * x[0] * argmax(x[0], 1, true));  // argmax a constant factor
      },
      {arg(Shape{3, 4})}, "argmax");
  check_twice(
      [](TensorTape& t, std::span<const Tensor> x) {
        const Tensor cond = t.constant<double>(Shape{2, 3}, std::vector<double>{1, 0, 0, 1, 1, 0});
        return sum(pow(where(cond, x[0] * x[0], x[1] * x[1] * x[1]), 2.0));
      },
      {arg(Shape{2, 3}), arg(Shape{3}, 0.2)}, "where, broadcasting");
  // more inputs than a node record holds, one of them twice (Note [Many inputs])
  check_twice(
      [](TensorTape&, std::span<const Tensor> x) {
        const Tensor joined = cat({x[0], x[1], x[0], x[1] * x[1]}, 1);           // (2, 8)
        const Tensor stacked = stack({x[0], x[1] * x[0], x[0], exp(x[1])}, -1);  // (2, 2, 4)
        return sum(pow(joined, 3.0)) + sum(tanh(stacked) * stacked);
      },
      {arg(Shape{2, 2}), arg(Shape{2, 2}, 0.3)}, "cat and stack");
  check_twice(
      [](TensorTape&, std::span<const Tensor> x) {
        const Tensor s = slice(x[0], 1, -4, 5, 2);              // columns 1 and 3
        const Tensor t = slice(slice(x[0], 0, 1, 3), 1, 0, 2);  // rows 1, 2 and columns 0, 1
        return sum(pow(s, 3.0)) + sum(t * t * slice(s, 0, 0, 2));
      },
      {arg(Shape{3, 5})}, "slice");
  const std::vector<std::int64_t> repeated{2, 0, 2, 2};
  check_twice(
      [&](TensorTape&, std::span<const Tensor> x) {
        return sum(pow(index_select(x[0], 1, repeated), 3.0)) +
               sum(index_select(x[0] * x[0], 0, std::vector<std::int64_t>{1}));
      },
      {arg(Shape{2, 3})}, "index_select, an index repeated");
  const std::vector<std::int64_t> rows{0, 2, 2, 1, 0, 0};  // an index of shape (2, 3), repeats
  check_twice(
      [&](TensorTape&, std::span<const Tensor> x) {
        return sum(pow(gather(x[0], 0, rows, Shape{2, 3}), 3.0));
      },
      {arg(Shape{3, 4})}, "gather, an index repeated");
  check_twice(
      [](TensorTape&, std::span<const Tensor> x) {
        return sum(pow(matmul(x[0], x[1]), 2.0)) + sum(tanh(matmul(x[0], x[2])));
      },
      {arg(Shape{2, 3, 2}), arg(Shape{2, 2, 4}, 0.1), arg(Shape{2, 3}, -0.2)},
      "batched matmul, (B, m, k) @ (B, k, n) and @ (k, n)");
  check_twice(
      [](TensorTape&, std::span<const Tensor> p) {
        const Tensor w = p[0].tape().constant<double>(Shape{3}, std::vector<double>{1, -2, 0.5});
        return sum(pow(tanh(linear(p[0], p[1], p[2])), 2.0) * w);
      },
      {arg(Shape{2, 2, 4}), arg(Shape{3, 4}, 0.1), arg(Shape{3}, -0.4)}, "linear of a 3-D input");
}

TEST_CASE("selections differentiate a third time: their recorded backward is gathers again") {
  // d/dx of |grad|^2, itself recorded: its derivative, the third, against central differences
  const std::vector<std::int64_t> repeated{1, 1, 0};
  check_second(
      [&](TensorTape&, std::span<const Tensor> x) {
        const Tensor loss =
            sum(pow(index_select(slice(x[0], 0, 0, 3, 2), 1, repeated), 4.0)) +
            sum(pow(gather(x[0], 1, std::vector<std::int64_t>{1, 0, 0}, Shape{3, 1}), 4.0));
        const std::vector<Tensor> g = x[0].tape().grad(loss, x, {.create_graph = true});
        return recorded_gradient(sum(g[0] * g[0]), x);
      },
      {arg(Shape{3, 2})}, "slice, index_select and gather, third derivative");
}

TEST_CASE("a Hessian-vector product by double backward agrees with differences of gradients") {
  const std::vector<Shape> shapes{Shape{6, 2}, Shape{2}};  // W (out, in), b
  auto loss_of = [](TensorTape& tape, std::span<const Tensor> p) {
    const Tensor x = tape.constant<double>(Shape{3, 2}, std::vector<double>{1, -2, 0.5, 3, -1, 2});
    const Tensor h = tanh(linear(x, p[0]));         // (3, 6)
    return mean(pow(matmul(h, p[0]) + p[1], 2.0));  // (3, 2)
  };
  const std::vector<double> w = values(shapes[0]), b = values(shapes[1], 0.3);
  const std::vector<double> vw = values(shapes[0], -0.4), vb{0.7, -1.1};
  TensorTape tape;
  const std::array<Tensor, 2> p{tape.input<double>(shapes[0], w), tape.input<double>(shapes[1], b)};
  const std::array<Tensor, 2> v{tape.constant<double>(shapes[0], vw),
                                tape.constant<double>(shapes[1], vb)};
  const std::vector<Tensor> hv = hessian_vector_product(loss_of(tape, p), p, v);
  // (g(p + h v) - g(p - h v)) / 2h from plain backward
  const double step = 1e-6;
  std::array<std::vector<double>, 2> plus, minus;
  for (double sign : {1.0, -1.0}) {
    TensorTape t;
    std::vector<double> ws = w, bs = b;
    for (std::size_t i = 0; i < ws.size(); ++i) ws[i] += sign * step * vw[i];
    for (std::size_t i = 0; i < bs.size(); ++i) bs[i] += sign * step * vb[i];
    const std::array<Tensor, 2> q{t.input<double>(shapes[0], ws), t.input<double>(shapes[1], bs)};
    t.backward(loss_of(t, q));
    (sign > 0 ? plus : minus) = {q[0].grads(), q[1].grads()};
  }
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(hv[k].shape() == shapes[k]);
    CHECK(!hv[k].requires_grad());  // the numbers, as constants
    for (std::int64_t i = 0; i < hv[k].numel(); ++i) {
      const std::size_t j = std::size_t(i);
      INFO("parameter ", k, " element ", i);
      CHECK(hv[k].value(i) ==
            doctest::Approx((plus[k][j] - minus[k][j]) / (2 * step)).epsilon(1e-6));
    }
  }
}

TEST_CASE("a Hessian-vector product leaves every leaf's gradient as it was") {
  // Its second backward is a plain backward pass (Note [The second backward of a
  // Hessian-vector product]), which accumulates into the leaves: it must give them back.
  // loss = sum(w^3 x): d/dw = 3 w^2 x, so H_ww v = 6 w x v (diagonal)
  std::vector<double> w{1, -2, 0.5}, w_grad{5, 5, 5};  // an accumulated gradient
  TensorTape tape;
  const Tensor wt = tape.parameter<double>(Shape{3}, w.data(), w_grad.data(), "w");
  const Tensor x = tape.input(Shape{3}, {2, 3, -1}, "x");
  tape.backward(sum(x * 4.0));  // x.grad = 4 before the product
  const Tensor v = tape.constant<double>(Shape{3}, std::vector<double>{1, 0.5, -2});
  const std::vector<Tensor> hv =
      hessian_vector_product(sum(wt * wt * wt * x), std::array{wt}, std::array{v});
  CHECK(hv[0].values() == std::vector<double>{6 * 1 * 2 * 1, 6 * -2 * 3 * 0.5, 6 * 0.5 * -1 * -2});
  CHECK(w_grad == std::vector<double>{5, 5, 5});
  CHECK(x.grads() == std::vector<double>{4, 4, 4});
}

TEST_CASE("a Hessian-vector product tells apart two leaves over one gradient buffer") {
  // One parameter put on the tape twice, p and q over the same numbers a: loss = sum(p p q).
  // d/dp = 2 p q, d/dq = p^2; H v = (2 q v_p + 2 p v_q, 2 p v_p), per leaf, as the recorded
  // pass gives it; one shared buffer would have summed the two.
  std::vector<double> a{1, -2}, a_grad{0, 0};
  TensorTape tape;
  const Tensor p = tape.parameter<double>(Shape{2}, a.data(), a_grad.data(), "p");
  const Tensor q = tape.parameter<double>(Shape{2}, a.data(), a_grad.data(), "q");
  const std::array v{tape.constant<double>(Shape{2}, std::vector<double>{1, 3}),
                     tape.constant<double>(Shape{2}, std::vector<double>{-1, 2})};
  const std::vector<Tensor> hv = hessian_vector_product(sum(p * p * q), std::array{p, q}, v);
  CHECK(hv[0].values() == std::vector<double>{2 * 1 * 1 + 2 * 1 * -1, 2 * -2 * 3 + 2 * -2 * 2});
  CHECK(hv[1].values() == std::vector<double>{2 * 1 * 1, 2 * -2 * 3});
  CHECK(a_grad == std::vector<double>{0, 0});
}

TEST_CASE("grad on the tensor tape: semantics and errors") {
  TensorTape tape;
  Tensor x = tape.input(Shape{3}, {1, 2, 3}, "x");
  Tensor unused = tape.input(Shape{2}, {1, 1}, "u");
  Tensor y = sum(x * x * x);  // dy/dx = 3x^2, d²y/dx² = 6x (diagonal)
  const std::size_t size = tape.size();
  std::vector<Tensor> g = tape.grad(y, {x, unused});
  CHECK(g[0].values() == std::vector<double>{3, 12, 27});
  CHECK(!g[0].requires_grad());
  CHECK(g[1].values() == std::vector<double>{0, 0});
  CHECK(x.grads() == std::vector<double>{0, 0, 0});  // .grad left alone
  CHECK(tape.size() > size);

  g = tape.grad(y, {x}, {.create_graph = true});
  CHECK(g[0].requires_grad());
  CHECK(tape.grad(sum(g[0]), {x})[0].values() == std::vector<double>{6, 12, 18});

  CHECK_THROWS_WITH_AS(tape.grad(x * 2.0, {x}),
                       "grad: the output has shape (3,), not a single element; reduce it first "
                       "(sum, mean)",
                       Error);
  // Every entry records its backward now (an entry declaring NoGraphForm would stop
  // create_graph with its name): argmax records nothing, its result an index with no gradient
  Tensor logits = tape.input(Shape{2, 3}, {1, 2, 3, 0, -1, 2}, "logits");
  g = tape.grad(sum(argmax(logits, 1)) + sum(logits), {logits}, {.create_graph = true});
  CHECK(g[0].values() == std::vector<double>{1, 1, 1, 1, 1, 1});
  // amax's ties split the gradient evenly, recorded as in backward (Note [Ties in amax and
  // amin]); a tie is a kink, where the second derivative is 0
  Tensor tied = tape.input(Shape{4}, {1, 3, 3, -2}, "tied");
  Tensor peak = amax(tied) * amax(tied) + amin(tied);
  g = tape.grad(peak, {tied}, {.create_graph = true});
  CHECK(g[0].values() == std::vector<double>{0, 3, 3, 1});
  CHECK(tape.grad(sum(g[0]), {tied})[0].values() == std::vector<double>{0, 1, 1, 0});
  CHECK_THROWS_WITH_AS(hessian_vector_product(y, std::array{x}, std::array{unused}),
                       "hessian_vector_product: vector 0 has shape (2,), its parameter (3,)",
                       Error);
}
