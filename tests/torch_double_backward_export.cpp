// Prints, as JSON, double backward on the tensor tape in float64 for torch_double_backward_test.py
// to compare with torch.autograd.grad(..., create_graph=True): every elementwise row at its test
// points, small MLPs with each activation, a softmax classifier's two losses, and one loss
// through every structural op.

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <span>
#include <string>
#include <tapegrad/core.hpp>
#include <vector>

namespace {

std::string number(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  return fmt::format("{:.17g}", x);
}

std::string numbers(std::span<const double> xs) {
  std::string out = "[";
  for (std::size_t i = 0; i < xs.size(); ++i) out += (i ? ", " : "") + number(xs[i]);
  return out + "]";
}

std::string list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + "]";
}

// The second operand of a binary row at test point p, as tests/test_ops.cpp chooses it.
double second_operand(ag::Op op, double p) {
  switch (op) {
    case ag::Op::pow: return 1.3;
    case ag::Op::max: return 0.25;
    case ag::Op::min: return 0.25;
    case ag::Op::prelu: return 0.2;
    case ag::Op::div: return p + 3.5;
    case ag::Op::bce: return 0.3;
    default: return 0.75 - p;
  }
}

std::vector<double> ramp(std::size_t n, double start, double step) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = start + step * double(i);
  return v;
}

// The gradient of `loss` with respect to `wrt` recorded with create_graph, and the gradient of
// <gradient, v>: a Hessian-vector product by double backward.
struct Derivatives {
  std::vector<std::vector<double>> grad, hvp;
};
Derivatives differentiate(ag::TensorTape& tape, ag::Tensor loss, std::span<const ag::Tensor> wrt,
                          std::span<const std::vector<double>> v) {
  Derivatives out;
  const std::vector<ag::Tensor> g = tape.grad(loss, wrt, {.create_graph = true});
  std::vector<ag::Tensor> vectors;
  for (std::size_t k = 0; k < wrt.size(); ++k) {
    out.grad.push_back(g[k].values());
    vectors.push_back(tape.constant<double>(wrt[k].shape(), v[k]));
  }
  for (const ag::Tensor& h : ag::hessian_vector_product(loss, wrt, vectors))
    out.hvp.push_back(h.values());
  return out;
}

std::string derivatives_json(const Derivatives& d) {
  std::vector<std::string> grads, hvps;
  for (const auto& g : d.grad) grads.push_back(numbers(g));
  for (const auto& h : d.hvp) hvps.push_back(numbers(h));
  return fmt::format("\"grad\": {}, \"hvp\": {}", list(grads), list(hvps));
}

// Every elementwise row: L = sum(w * row(a, b)) at the row's test points, differentiated with
// respect to a (and b, but bce's target, which PyTorch does not differentiate).
std::string row_cases() {
  std::vector<std::string> cases;
  for (int i = 0; i < ag::kOpCount; ++i) {
    ag::dispatch(static_cast<ag::Op>(i), [&](auto rule) {
      using R = decltype(rule);
      if constexpr (R::info.arity > 0) {
        const std::vector<double> a(std::begin(R::test_points), std::end(R::test_points));
        std::vector<double> b;
        for (double p : a) b.push_back(second_operand(R::info.op, p));
        const std::size_t n = a.size();
        const std::vector<double> w = ramp(n, 0.5, 0.25);
        const std::vector<std::vector<double>> v{ramp(n, 1.0, -0.3), ramp(n, 0.4, 0.2)};
        ag::TensorTape tape;
        const ag::Shape shape{std::int64_t(n)};
        std::vector<ag::Tensor> wrt{tape.input<double>(shape, a)};
        ag::Tensor y;
        if constexpr (R::info.arity == 2) {
          const bool target = R::info.op == ag::Op::bce;
          const ag::Tensor tb =
              target ? tape.constant<double>(shape, b) : tape.input<double>(shape, b);
          if (!target) wrt.push_back(tb);
          y = ag::apply(R::info.op, wrt[0], tb);
        } else {
          y = ag::apply(R::info.op, wrt[0], R::info.default_param);
        }
        const ag::Tensor loss = ag::sum(y * tape.constant<double>(shape, w));
        const Derivatives d = differentiate(tape, loss, wrt, std::span(v).first(wrt.size()));
        cases.push_back(
            fmt::format("\n  {{\"op\": \"{}\", \"param\": {}, \"a\": {}, \"b\": {}, \"w\": {}, "
                        "\"v\": [{}, {}], "
                        "\"wrt\": {}, {}}}",
                        R::info.name, number(R::info.default_param), numbers(a),
                        R::info.arity == 2 ? numbers(b) : "null", numbers(w), numbers(v[0]),
                        numbers(v[1]), wrt.size(), derivatives_json(d)));
      }
    });
  }
  return list(cases);
}

// A 2-8-1 MLP on 6 points, mean squared error: the Hessian-vector product of its parameters.
std::string mlp_cases() {
  std::vector<std::string> cases;
  const ag::Shape xs{6, 2}, ys{6, 1}, w1s{8, 2}, b1s{8}, w2s{1, 8}, b2s{1};
  const std::vector<double> x{0.5, -1.2, 1.5, 0.3, -0.7, 0.9, 0.1, -0.4, 2.0, 1.1, -1.6, -0.2};
  const std::vector<double> y{1, -1, 0.5, 0, -0.5, 1};
  const std::vector<std::vector<double>> params{ramp(16, -0.8, 0.11), ramp(8, 0.3, -0.09),
                                                ramp(8, 0.7, -0.17), ramp(1, 0.05, 0)};
  const std::vector<std::vector<double>> v{ramp(16, 1.0, -0.13), ramp(8, -0.5, 0.15),
                                           ramp(8, 0.2, 0.1), ramp(1, 0.9, 0)};
  for (const ag::Op act : {ag::Op::tanh, ag::Op::relu, ag::Op::gelu, ag::Op::sigmoid}) {
    ag::TensorTape tape;
    const std::vector<ag::Tensor> p{
        tape.input<double>(w1s, params[0]), tape.input<double>(b1s, params[1]),
        tape.input<double>(w2s, params[2]), tape.input<double>(b2s, params[3])};
    const ag::Tensor h = ag::apply(act, ag::linear(tape.constant<double>(xs, x), p[0], p[1]));
    const ag::Tensor out = ag::linear(h, p[2], p[3]);
    const ag::Tensor loss = ag::mean(ag::pow(out - tape.constant<double>(ys, y), 2.0));
    const Derivatives d = differentiate(tape, loss, p, v);
    std::vector<std::string> ps, vs;
    for (const auto& q : params) ps.push_back(numbers(q));
    for (const auto& q : v) vs.push_back(numbers(q));
    cases.push_back(fmt::format(
        "\n  {{\"activation\": \"{}\", \"x\": {}, \"y\": {}, \"params\": {}, \"v\": {}, \"loss\": "
        "{}, {}}}",
        ag::op_info(act).name, numbers(x), numbers(y), list(ps), list(vs), number(loss.item()),
        derivatives_json(d)));
  }
  return list(cases);
}

// A 2-4-3 tanh classifier on 6 points: cross-entropy (log_softmax and pick) and the squared
// distance of its softmax from the one-hot labels, each loss's Hessian-vector product.
std::string classifier_cases() {
  std::vector<std::string> cases;
  const ag::Shape xs{6, 2}, w1s{4, 2}, b1s{4}, w2s{3, 4}, b2s{3};
  const std::vector<double> x{0.5, -1.2, 1.5, 0.3, -0.7, 0.9, 0.1, -0.4, 2.0, 1.1, -1.6, -0.2};
  const std::vector<std::int32_t> labels{0, 2, 1, 1, 0, 2};
  std::vector<double> one_hot(18, 0.0);
  for (std::size_t i = 0; i < labels.size(); ++i) one_hot[i * 3 + std::size_t(labels[i])] = 1;
  const std::vector<std::vector<double>> params{ramp(8, -0.8, 0.23), ramp(4, 0.3, -0.19),
                                                ramp(12, 0.7, -0.13), ramp(3, 0.05, 0.2)};
  const std::vector<std::vector<double>> v{ramp(8, 1.0, -0.27), ramp(4, -0.5, 0.35),
                                           ramp(12, 0.2, 0.1), ramp(3, 0.9, -0.6)};
  for (const std::string loss_name : {"cross_entropy", "softmax_squared"}) {
    ag::TensorTape tape;
    const std::vector<ag::Tensor> p{
        tape.input<double>(w1s, params[0]), tape.input<double>(b1s, params[1]),
        tape.input<double>(w2s, params[2]), tape.input<double>(b2s, params[3])};
    const ag::Tensor h = ag::tanh(ag::linear(tape.constant<double>(xs, x), p[0], p[1]));
    const ag::Tensor logits = ag::linear(h, p[2], p[3]);
    const ag::Tensor loss =
        loss_name == "cross_entropy"
            ? -ag::mean(ag::pick(ag::log_softmax(logits, 1), labels))
            : ag::mean(ag::pow(
                  ag::softmax(logits, 1) - tape.constant<double>(ag::Shape{6, 3}, one_hot), 2.0));
    const Derivatives d = differentiate(tape, loss, p, v);
    std::vector<std::string> ps, vs, ls;
    for (const auto& q : params) ps.push_back(numbers(q));
    for (const auto& q : v) vs.push_back(numbers(q));
    for (std::int32_t l : labels) ls.push_back(std::to_string(l));
    cases.push_back(
        fmt::format("\n  {{\"loss\": \"{}\", \"x\": {}, \"labels\": {}, \"params\": {}, \"v\": {}, "
                    "\"value\": {}, {}}}",
                    loss_name, numbers(x), list(ls), list(ps), list(vs), number(loss.item()),
                    derivatives_json(d)));
  }
  return list(cases);
}

// One loss through every structural op (where, amax, amin, slice, index_select with a repeated
// index, gather, cat, stack, a batched matmul, linear of a 3-D input, softmax along axis 0):
// its gradient and Hessian-vector product, for torch_double_backward_test.py's test_structural.
std::string structural_case() {
  const ag::Shape as{3, 4}, bs{4}, ws{2, 4, 3}, lws{5, 3}, lbs{5};
  const std::vector<double> cond{1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0};
  const std::vector<std::int64_t> columns{2, 0, 2}, rows{2, 0, 1, 1, 0, 2, 2, 1};
  const std::vector<std::vector<double>> params{ramp(12, -0.9, 0.17), ramp(4, 0.4, -0.3),
                                                ramp(24, 0.6, -0.05), ramp(15, -0.4, 0.07),
                                                ramp(5, 0.1, 0.1)};
  const std::vector<std::vector<double>> v{ramp(12, 0.3, 0.1), ramp(4, -1.0, 0.5),
                                           ramp(24, 0.8, -0.07), ramp(15, 0.5, -0.06),
                                           ramp(5, -0.2, 0.15)};
  ag::TensorTape tape;
  const std::vector<ag::Tensor> p{
      tape.input<double>(as, params[0]), tape.input<double>(bs, params[1]),
      tape.input<double>(ws, params[2]), tape.input<double>(lws, params[3]),
      tape.input<double>(lbs, params[4])};
  const ag::Tensor a = p[0];
  const ag::Tensor h = ag::where(tape.constant<double>(as, cond), a * a, p[1]);  // (3, 4)
  // (3, 2) and (3, 3) side by side
  const ag::Tensor joined = ag::cat({ag::slice(h, 1, 0, 4, 2), ag::index_select(h, 1, columns)}, 1);
  const ag::Tensor gathered = ag::gather(a, 0, rows, ag::Shape{2, 4});
  const ag::Tensor product = ag::matmul(ag::stack({a, h}, 0), p[2]);  // (2, 3, 3)
  const ag::Tensor out = ag::linear(ag::tanh(product), p[3], p[4]);   // (2, 3, 5)
  const ag::Tensor loss = ag::sum(ag::pow(ag::amax(h, 1), 3.0)) + ag::amin(a) * ag::amin(a) +
                          ag::sum(ag::tanh(joined) * joined) + ag::sum(ag::pow(gathered, 3.0)) +
                          ag::sum(ag::softmax(out, 0) * out);
  const Derivatives d = differentiate(tape, loss, p, v);
  std::vector<std::string> ps, vs;
  for (const auto& q : params) ps.push_back(numbers(q));
  for (const auto& q : v) vs.push_back(numbers(q));
  return fmt::format("{{\"cond\": {}, \"params\": {}, \"v\": {}, \"value\": {}, {}}}",
                     numbers(cond), list(ps), list(vs), number(loss.item()), derivatives_json(d));
}

}  // namespace

int main() {
  try {
    fmt::print("{{\"rows\": {},\n\"mlps\": {},\n\"classifiers\": {},\n\"structural\": {}}}\n",
               row_cases(), mlp_cases(), classifier_cases(), structural_case());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torch_double_backward_export: %s\n", e.what());
    return 1;
  }
}
