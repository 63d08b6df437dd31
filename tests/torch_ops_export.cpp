// For torch_ops_test.py: every elementwise row of the op table, evaluated with its gradients on
// both tapes at points on both sides of its kinks and at NaN, and the structural tensor ops on
// tensors with ties and NaN, printed as JSON for PyTorch to redo.
// both tapes at points on both sides of its kinks and at NaN, and the tensor shape ops, printed as
// JSON for PyTorch to redo.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <tapegrad/autograd.hpp>
#include <vector>

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// One function at a set of points: `inputs[k]` holds operand k at every point, so a tensor tape
// evaluates a case as one op over vectors. Shape ops (cat, stack, slice, ...) have records of
// their own, with shapes: ShapeCase below.
struct Case {
  std::string op;
  std::optional<double> param;
  std::vector<std::vector<double>> inputs;
};

struct Result {
  std::vector<double> value;
  std::vector<std::vector<double>> grad;  // d value[i] / d inputs[k][i]
};

// A JSON number, with Python's json spellings for what JSON lacks: NaN, Infinity, -Infinity.
std::string number(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  return fmt::format("{}", x);  // shortest round-trip form
}

std::string numbers(const std::vector<double>& xs) {
  std::string s = "[";
  for (std::size_t i = 0; i < xs.size(); ++i) s += (i ? ", " : "") + number(xs[i]);
  return s + "]";
}

std::string result_json(const Result& r) {
  std::string grads = "[";
  for (std::size_t k = 0; k < r.grad.size(); ++k) grads += (k ? ", " : "") + numbers(r.grad[k]);
  return fmt::format("{{\"value\": {}, \"grad\": {}]}}", numbers(r.value), grads);
}

// The scalar tape, one tape per point: the row recorded as Program::record and value.hpp do.
Result scalar_tape(ag::Op op, const Case& c) {
  const std::size_t n = c.inputs[0].size();
  Result r{{}, std::vector<std::vector<double>>(c.inputs.size())};
  for (std::size_t i = 0; i < n; ++i) {
    ag::Tape tape;
    std::vector<ag::Value> x;
    for (const auto& operand : c.inputs) x.push_back(tape.input(operand[i], "x"));
    const ag::Value y = ag::dispatch(op, [&](auto rule) -> ag::Value {
      using R = decltype(rule);
      if constexpr (R::info.arity == 2)
        return tape.record<R>(x[0], x[1]);
      else if constexpr (R::info.arity == 1)
        return tape.record<R>(x[0], {}, c.param.value_or(R::info.default_param));
      else
        return x[0];
    });
    tape.backward(y);
    r.value.push_back(y.value());
    for (std::size_t k = 0; k < x.size(); ++k) r.grad[k].push_back(x[k].grad());
  }
  return r;
}

// The tensor tape in float64, all points at once: the tensor kernels over vectors.
Result tensor_tape(ag::Op op, const Case& c) {
  ag::TensorTape tape;
  const ag::Shape shape{static_cast<std::int64_t>(c.inputs[0].size())};
  std::vector<ag::Tensor> x;
  for (const auto& operand : c.inputs)
    x.push_back(tape.input(shape, std::span<const double>(operand), "x"));
  const ag::Tensor y = x.size() == 2
                           ? ag::apply(op, x[0], x[1])
                           : ag::apply(op, x[0], c.param.value_or(ag::op_info(op).default_param));
  tape.backward(ag::sum(y));
  Result r{y.values(), {}};
  for (const ag::Tensor& t : x) r.grad.push_back(t.grads());
  return r;
}

// Test points, both sides of 0 (every kink of the table but clamp's is at 0), 0 itself, far on
// both tails, and NaN; those of a clamp are around its bound too.
std::vector<Case> cases_for(const ag::OpInfo& info, std::span<const double> test_points) {
  std::vector<double> points(test_points.begin(), test_points.end());
  for (double p : {-30.0, -1.0, -0.01, 0.0, 0.01, 1.0, 30.0}) points.push_back(p);
  std::vector<std::optional<double>> params{std::nullopt};
  if (info.has_param) {
    const double other =
        info.op == ag::Op::pow_scalar ? 0.5 : (info.param_name == "alpha" ? 0.2 : -1);
    params = {info.default_param, other};
    if (info.op == ag::Op::pow_scalar) params.push_back(-1.0);
  }
  std::vector<Case> cases;
  for (const std::optional<double>& param : params) {
    std::vector<double> xs = points;
    if (param && info.op != ag::Op::pow_scalar)
      for (double d : {-0.01, 0.0, 0.01}) xs.push_back(*param + d);  // around a clamp's bound
    std::sort(xs.begin(), xs.end());
    xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
    xs.push_back(kNaN);
    Case c{std::string(info.name), param, {}};
    if (info.arity == 1) {
      c.inputs = {xs};
    } else {
      // The second operand: fixed values, the first operand itself (max's and min's tie), NaN.
      std::vector<double> a, b;
      for (double x : xs)
        for (double other : {-0.5, 0.25, 0.3, 1.0, x, kNaN}) a.push_back(x), b.push_back(other);
      c.inputs = {a, b};
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

// ---- structural tensor ops (amax, amin, argmax, where, batched products) -------
// One op on whole tensors: the inputs with their shapes, the tensor tape's value and shape, and
// each input's gradient of sum(y * seed) for a seed of distinct weights (so a gradient sent to
// the wrong element shows). `graded` lists the inputs torch differentiates (not where's cond).
struct Structural {
  std::string op;
  int axis;  // -99: none (over all elements)
  bool keepdims;
  std::vector<ag::Shape> shapes;
  std::vector<std::vector<double>> inputs;
  std::vector<int> graded;
  std::function<ag::Tensor(std::span<const ag::Tensor>)> f;
};

std::string shape_json(const ag::Shape& s) {
  std::string out = "[";
  for (int i = 0; i < s.rank(); ++i) out += fmt::format("{}{}", i ? ", " : "", s[i]);
  return out + "]";
}

std::string structural_json(const Structural& c) {
  ag::TensorTape tape;
  std::vector<ag::Tensor> x;
  for (std::size_t k = 0; k < c.inputs.size(); ++k)
    x.push_back(tape.input(c.shapes[k], std::span<const double>(c.inputs[k]), "x"));
  const ag::Tensor y = c.f(x);
  std::vector<double> seed;
  for (std::int64_t i = 0; i < y.numel(); ++i) seed.push_back(0.5 + 0.25 * double(i));
  std::string grads = "[";
  if (y.requires_grad()) tape.backward(y, seed);
  for (std::size_t k = 0; k < x.size(); ++k) grads += (k ? ", " : "") + numbers(x[k].grads());
  std::string shapes = "[", inputs = "[", graded = "[";
  for (std::size_t k = 0; k < x.size(); ++k) {
    shapes += (k ? ", " : "") + shape_json(c.shapes[k]);
    inputs += (k ? ", " : "") + numbers(c.inputs[k]);
  }
  for (std::size_t k = 0; k < c.graded.size(); ++k)
    graded += fmt::format("{}{}", k ? ", " : "", c.graded[k]);
  return fmt::format(
      "\n  {{\"op\": \"{}\", \"axis\": {}, \"keepdims\": {}, \"shapes\": {}], \"inputs\": {}], "
      "\"graded\": {}], \"seed\": {}, \"value\": {}, \"shape\": {}, \"grad\": {}]}}",
      c.op, c.axis == -99 ? "null" : fmt::format("{}", c.axis), c.keepdims, shapes, inputs, graded,
      numbers(seed), numbers(y.values()), shape_json(y.shape()), grads);
}

std::vector<Structural> structural_cases() {
  using ag::Shape;
  using ag::Tensor;
  using Args = std::span<const Tensor>;
  // Ties within rows, columns and the whole tensor; a NaN in one row and one column.
  const std::vector<double> ties{3, 1, 3, 0, 2, 2, 0, 5, 1, 5, 5, 1,
                                 0, 4, 4, 4, 0, 0, 4, 1, 2, 3, 0, 4};
  std::vector<double> with_nan = ties;
  with_nan[5] = kNaN;
  std::vector<double> distinct;
  for (int i = 0; i < 60; ++i)
    distinct.push_back(0.37 * double(i % 7) - 0.93 + 0.05 * double(i / 7));
  auto first = [&](std::size_t n) {
    return std::vector<double>(distinct.begin(), distinct.begin() + long(n));
  };
  std::vector<Structural> cases;
  for (const auto& data : {ties, with_nan}) {
    const Shape s{2, 3, 4};
    cases.push_back({"amax", -99, false, {s}, {data}, {0}, [](Args x) { return ag::amax(x[0]); }});
    cases.push_back({"amin", -99, false, {s}, {data}, {0}, [](Args x) { return ag::amin(x[0]); }});
    cases.push_back(
        {"argmax", -99, false, {s}, {data}, {}, [](Args x) { return ag::argmax(x[0]); }});
    for (int axis : {0, 1, 2, -1})
      for (bool keep : {false, true}) {
        cases.push_back({"amax_axis", axis, keep, {s}, {data}, {0}, [=](Args x) {
                           return ag::amax(x[0], axis, keep);
                         }});
        cases.push_back({"amin", axis, keep, {s}, {data}, {0}, [=](Args x) {
                           return ag::amin(x[0], axis, keep);
                         }});
        cases.push_back({"argmax", axis, keep, {s}, {data}, {}, [=](Args x) {
                           return ag::argmax(x[0], axis, keep);
                         }});
      }
  }
  // where: cond (2, 1, 4) with zeros, nonzeros and a NaN; a (3, 1); b (2, 3, 4).
  const auto where = [](Args x) { return ag::where(x[0], x[1], x[2]); };
  cases.push_back({"where",
                   -99,
                   false,
                   {Shape{2, 1, 4}, Shape{3, 1}, Shape{2, 3, 4}},
                   {{1, 0, -2, kNaN, 0, 0, 3, 0}, first(3), first(24)},
                   {1, 2},
                   where});
  cases.push_back({"where",
                   -99,
                   false,
                   {Shape{3}, Shape{}, Shape{2, 3}},
                   {{0, 1, 0}, {7}, first(6)},
                   {1, 2},
                   where});
  const auto matmul = [](Args x) { return ag::matmul(x[0], x[1]); };
  cases.push_back({"matmul",
                   -99,
                   false,
                   {Shape{2, 3, 4}, Shape{2, 4, 5}},
                   {first(24), first(40)},
                   {0, 1},
                   matmul});
  cases.push_back({"matmul",
                   -99,
                   false,
                   {Shape{3, 2, 4}, Shape{4, 5}},
                   {first(24), first(20)},
                   {0, 1},
                   matmul});
  cases.push_back({"linear",
                   -99,
                   false,
                   {Shape{2, 3, 4}, Shape{5, 4}, Shape{5}},
                   {first(24), first(20), first(5)},
                   {0, 1, 2},
                   [](Args x) { return ag::linear(x[0], x[1], x[2]); }});
  return cases;
}

// ---- shape ops ---------------------------------------------------------------------------------
// Each case records one shape op on the tensor tape in float64 and runs backward with a seed of
// its output's shape, so every output element sends a different gradient. It prints the inputs,
// which input each operand is (`uses`: an input joined twice), the op's arguments, the value and
// each input's gradient, for torch_ops_test.py's SHAPE_OPS to redo.
struct ShapeCase {
  std::string op;
  std::string args;  // a JSON object: the op's arguments as torch names them
  std::vector<ag::Shape> shapes;
  std::vector<int> uses;  // operand k is input uses[k]
  std::function<ag::Tensor(std::span<const ag::Tensor>)> record;
};

std::string dims_json(const ag::Shape& s) {
  std::string text = "[";
  for (int d = 0; d < s.rank(); ++d) text += fmt::format("{}{}", d ? ", " : "", s[d]);
  return text + "]";
}

std::string shape_case_json(const ShapeCase& c) {
  ag::TensorTape tape;
  std::vector<ag::Tensor> inputs, operands;
  std::string inputs_json = "[";
  for (std::size_t k = 0; k < c.shapes.size(); ++k) {
    std::vector<double> data(std::size_t(c.shapes[k].numel()));
    for (std::size_t i = 0; i < data.size(); ++i)
      data[i] = 0.37 * double((i + 3 * k) % 7) - 0.9 + 0.05 * double(i / 7) + double(k);
    if (c.op == "cat" && k == 0 && !data.empty()) data.back() = kNaN;  // NaN is copied, not lost
    inputs.push_back(tape.input(c.shapes[k], std::span<const double>(data), "x"));
    inputs_json += fmt::format("{}{{\"shape\": {}, \"data\": {}}}", k ? ", " : "",
                               dims_json(c.shapes[k]), numbers(data));
  }
  for (int use : c.uses) operands.push_back(inputs[std::size_t(use)]);
  const ag::Tensor y = c.record(operands);
  std::vector<double> seed(std::size_t(y.numel()));
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = 1.0 + 0.5 * double(i % 5);
  if (y.numel() > 0) tape.backward(y, seed);  // an empty slice sends nothing back (an empty
  // seed would mean "the output's single element")
  std::string grads = "[";
  for (std::size_t k = 0; k < inputs.size(); ++k)
    grads += (k ? ", " : "") + numbers(inputs[k].grads());
  std::string uses = "[";
  for (std::size_t k = 0; k < c.uses.size(); ++k)
    uses += fmt::format("{}{}", k ? ", " : "", c.uses[k]);
  return fmt::format(
      "{{\"op\": \"{}\", \"args\": {}, \"inputs\": {}], \"uses\": {}], \"seed\": {}, "
      "\"value\": {{\"shape\": {}, \"data\": {}}}, \"grads\": {}]}}",
      c.op, c.args, inputs_json, uses, numbers(seed), dims_json(y.shape()), numbers(y.values()),
      grads);
}

std::vector<ShapeCase> shape_cases() {
  using ag::Shape;
  using ag::Tensor;
  using Operands = std::span<const Tensor>;
  std::vector<ShapeCase> cases{
      {"cat",
       R"({"axis": 1})",
       {Shape{2, 1, 3}, Shape{2, 4, 3}},
       {0, 1, 0},
       [](Operands x) { return ag::cat(x, 1); }},
      {"cat",
       R"({"axis": -1})",
       {Shape{2, 2}, Shape{2, 1}, Shape{2, 3}, Shape{2, 1}, Shape{2, 2}},
       {0, 1, 2, 3, 4},
       [](Operands x) { return ag::cat(x, -1); }},
      {"stack",
       R"({"axis": 0})",
       {Shape{3}, Shape{3}},
       {0, 1, 1},
       [](Operands x) { return ag::stack(x, 0); }},
      {"stack",
       R"({"axis": -1})",
       {Shape{2, 3}, Shape{2, 3}, Shape{2, 3}, Shape{2, 3}},
       {0, 1, 2, 3},
       [](Operands x) { return ag::stack(x, -1); }},
      {"reshape",
       R"({"dims": [-1, 4]})",
       {Shape{2, 3, 4}},
       {0},
       [](Operands x) {
         const std::vector<std::int64_t> dims{-1, 4};
         return ag::reshape(x[0], dims);
       }},
  };
  for (auto [d0, d1] : {std::pair{0, 2}, {-1, 1}, {1, 0}})
    cases.push_back({"transpose",
                     fmt::format(R"({{"dim0": {}, "dim1": {}}})", d0, d1),
                     {Shape{2, 3, 4}},
                     {0},
                     [d0, d1](Operands x) { return ag::transpose(x[0], d0, d1); }});
  // Python's slices: negative bounds, clamped bounds, steps, an empty range.
  const std::int64_t slices[][4] = {{1, 1, 3, 1}, {0, -3, 100, 2}, {-1, -100, 2, 1},
                                    {1, 0, 4, 3}, {0, 2, 1, 1},    {2, -4, -1, 2}};
  for (const auto& [axis, start, stop, step] : slices)
    cases.push_back({"slice",
                     fmt::format(R"({{"axis": {}, "start": {}, "stop": {}, "step": {}}})", axis,
                                 start, stop, step),
                     {Shape{3, 4, 5}},
                     {0},
                     [=](Operands x) { return ag::slice(x[0], int(axis), start, stop, step); }});
  for (int axis : {0, 1, -1})
    cases.push_back({"index_select",
                     fmt::format(R"({{"axis": {}, "index": [2, 0, 2, 1]}})", axis),
                     {Shape{3, 4, 3}},
                     {0},
                     [axis](Operands x) {
                       const std::vector<std::int64_t> index{2, 0, 2, 1};
                       return ag::index_select(x[0], axis, index);
                     }});
  for (int axis : {0, 1, 2})
    cases.push_back({"gather",
                     fmt::format(R"({{"axis": {}, "index": [0, 2, 2, 1, 0, 0, 1, 2, 2, 0, 1, 1], )"
                                 R"("index_shape": [2, 3, 2]}})",
                                 axis),
                     {Shape{3, 4, 3}},
                     {0},
                     [axis](Operands x) {
                       const std::vector<std::int64_t> index{0, 2, 2, 1, 0, 0, 1, 2, 2, 0, 1, 1};
                       return ag::gather(x[0], axis, index, ag::Shape{2, 3, 2});
                     }});
  return cases;
}

}  // namespace

int main() {
  try {
    std::string out = "{\"cases\": [";
    bool first = true;
    for (int i = 0; i < ag::kOpCount; ++i) {
      const auto op = static_cast<ag::Op>(i);
      ag::dispatch(op, [&](auto rule) {
        using R = decltype(rule);
        if constexpr (R::info.arity > 0) {
          for (const Case& c : cases_for(R::info, R::test_points)) {
            std::string inputs = "[";
            for (std::size_t k = 0; k < c.inputs.size(); ++k)
              inputs += (k ? ", " : "") + numbers(c.inputs[k]);
            out += fmt::format(
                "{}\n  {{\"op\": \"{}\", \"param\": {}, \"inputs\": {}], \"tapes\": "
                "{{\"scalar\": {}, \"tensor\": {}}}}}",
                first ? "" : ",", c.op, c.param ? number(*c.param) : "null", inputs,
                result_json(scalar_tape(op, c)), result_json(tensor_tape(op, c)));
            first = false;
          }
        }
      });
    }
    out += "\n], \"structural\": [";
    first = true;
    for (const Structural& c : structural_cases()) {
      out += (first ? "" : ",") + structural_json(c);
      first = false;
    }
    out += "\n], \"shape_ops\": [";
    first = true;
    for (const ShapeCase& c : shape_cases()) {
      out += (first ? "\n  " : ",\n  ") + shape_case_json(c);
      first = false;
    }
    std::puts((out + "\n]}").c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torch_ops_export: %s\n", e.what());
    return 1;
  }
}
