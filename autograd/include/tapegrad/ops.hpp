// The op table: every differentiable operation of tapegrad, defined once.
// Each rule holds its forward formula and its local derivatives side by side.

#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <optional>
#include <span>
#include <string_view>

namespace ag {

// Note [The op table]
// ~~~~~~~~~~~~~~~~~~~
// An op is one `struct ...Rule` below: its metadata (`info`: name, lecture
// symbol, arity, its fixed number if it takes one, how the program language
// calls it and what --help says, whether it is a rectifier), `forward`, and
// `local`, which returns the local derivatives d(out)/d(a) and d(out)/d(b) given
// the inputs, the forward result and the parameter. Backward multiplies them by
// the upstream gradient (the chain rule); the rules never see the tape. They are
// templates on the number type so that the scalar tape (double) and the tensor
// kernels (float and double) share them. `test_points` lists where the gradient
// check evaluates the rule: both sides of every kink, inside the domain.
//
// Everything that lists ops reads `info`: the program language's functions and
// their argument checks (tools/program.cpp: every row with a `signature`),
// `tapegrad --help`, graph symbols, anomaly reports (`param_name`), dead-unit
// counts (`rectifier`), and the tests, which gradient-check every row at its
// `test_points` and compare every language function with PyTorch.
//
// Adding an op: a row in `enum class Op`, a rule struct (with its `local_graph`, Note [Local
// derivatives on the tape]: backward with create_graph calls it for every row, so a rule
// without it does not compile), a line in `dispatch`,
// the user-facing function in value.hpp, and its tensor declaration in
// tensor.hpp with its one-line definition in tensor.cpp (`unary<R>` or
// `binary<R>`). Give it a `signature` and `help` and the program language,
// --help and the property tests have it; add its name to
// tests/torch_ops_test.py's table (it fails for a row it cannot compare) and
// the PyTorch comparison covers it. A rule with a kink lists test points on both
// sides of it, and says what it does at the kink and at NaN.
//
// Note [Local derivatives on the tape]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Beside `local`, each rule has `local_graph`: the same local derivatives written with the tape's
// own ops (V is ag::Value; the rules name the functions unqualified, and argument-dependent lookup
// finds them beside V), so that a backward with create_graph records d(out)/d(a) as nodes that
// can be differentiated again, to any order (Note [Gradients on the tape], tape.hpp). `a`, `b`
// and `y` are the operands and the result as nodes (`b` is empty for a unary row or a row with a
// fixed number); a unary row leaves `db` empty. Each form computes its number with the same
// operations in the same order as `local`, so a gradient recorded with create_graph equals the
// plain backward's bit for bit (tests/test_higher_order.cpp checks every row).
//
// A row whose local derivative is constant on each side of its kinks (add, relu, max, clamp...)
// records it with `constant_local`: the number `local` gives, as a constant, whose own
// derivative is 0. So relu''(x) = 0 everywhere, the kink included, and the second derivatives of
// leaky_relu, abs, max, min, clamp_min and clamp_max are 0 too, as in PyTorch. Rows that are
// piecewise smooth (elu, prelu) pick their branch with such a constant 0/1 mask, which follows
// Note [Kink policy]: elu''(0) = alpha, the x <= 0 branch's.
//
// Where the recorded form differs from `local`: pow(a, b) at a = 0 records b a^(b-1) and
// a^b log(a) as they stand, NaN where `local` takes the limit 0 (the points PyTorch's pow backward
// masks); away from a = 0 they agree.
//
// Note [Kink policy]
// ~~~~~~~~~~~~~~~~~~
// Where a function has a kink, its derivative there is the one of the branch
// x <= 0 (the non-positive side), as PyTorch computes it and as the lecture
// notes write ReLU: relu'(0) = 0, leaky_relu'(0) = alpha, prelu'(0) = alpha,
// elu'(0) = alpha. abs follows PyTorch's sign(0) = 0, so abs'(0) = 0.
// max(a, b) and min(a, b) with a == b split the gradient evenly, 1/2 to each
// side, as torch.maximum and torch.minimum do (it is also what a central
// difference gives). clamp_min(x, lo) and clamp_max(x, hi), and so clamp(x, lo,
// hi), pass the gradient at their bounds (1 on [lo, hi] inclusive), as
// torch.clamp does; a central difference there gives 1/2.
//
// NaN is never swallowed: a NaN operand gives a NaN result in every row, as in
// PyTorch (relu(NaN), max(NaN, 1) and max(1, NaN) are NaN), so a hinge loss over
// a NaN score is NaN, not a finite number. A comparison with NaN is false, so
// each rule orders its test so that NaN falls on the side PyTorch takes: relu
// tests x <= 0 (NaN keeps x), max and min test for NaN on the left. The
// derivative at NaN is PyTorch's too, which is the branch its backward's test
// sends NaN to: relu'(NaN) = 1, leaky_relu'(NaN) = alpha, elu'(NaN) = 1, prelu
// gives alpha and NaN, max and min give 1 to both sides, clamp_min/clamp_max 0,
// abs 0; smooth rules give NaN. tests/torch_ops_test.py checks all of it.

enum class Op : std::uint8_t {
  input,     // a named leaf the user differentiates with respect to
  constant,  // a literal; a leaf too
  add,
  sub,
  mul,
  div,
  neg,
  exp,
  log,
  sqrt,
  abs,
  sigmoid,
  tanh,
  relu,
  softplus,
  leaky_relu,
  elu,
  prelu,  // prelu(x, alpha) with alpha on the tape (learnable)
  max,
  pow,         // pow(a, b), both on the tape
  pow_scalar,  // pow(a, p) with p a fixed number
  gelu,
  gelu_tanh,
  silu,
  min,
  clamp_min,
  clamp_max,
  bce,         // binary cross-entropy of a probability p against a target y
  normal_cdf,  // Φ(x), the standard normal CDF: GELU's derivative records it (create_graph)
};
inline constexpr int kOpCount = static_cast<int>(Op::normal_cdf) + 1;

// How an op node reads as an expression (format.hpp's op_expression): "x + y", "-x",
// "sigmoid(x)", "leaky_relu(x, 0.2)".
enum class Notation : std::uint8_t { call, infix, prefix };

struct OpInfo {
  Op op;
  std::string_view name;    // as the user calls it: "sigmoid"
  std::string_view symbol;  // as the lecture draws it: "σ"
  int arity;                // operands on the tape; 0 for leaves
  bool has_param = false;   // a fixed number: leaky_relu's alpha, pow's exponent
  double default_param = 0;
  std::string_view param_name = {};  // "alpha": error messages and anomaly reports name it
  bool param_optional = false;       // a call may leave it out, and gets default_param
  // The program language's call, "leaky_relu(x[, alpha])": the operands, then the param.
  // Empty for rows the language does not offer as a function (operators, leaves, bce).
  std::string_view signature = {};
  std::string_view help = {};  // what --help says about the function, after its signature
  // A rectified unit (x for x > 0, something flatter otherwise): the units a dead-unit count
  // makes sense for (nn/src/diagnostics.cpp).
  bool rectifier = false;
  // An activation function: nn offers it as a module, by name to MLP and to --act (Note
  // [Activations from the op table], nn/include/tapegrad/nn/layers.hpp).
  bool activation = false;
  Notation notation = Notation::call;
};

template <class T> struct Local {
  T da;
  T db;
};

// The rules read as a table, a rule per block and its metadata in a few dense lines:
// clang-format off
namespace rules {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Input {
  static constexpr OpInfo info{Op::input, "input", "", 0};
};
struct Constant {
  static constexpr OpInfo info{Op::constant, "constant", "", 0};
};

struct Add {
  static constexpr OpInfo info{.op = Op::add, .name = "add", .symbol = "+", .arity = 2,
                               .notation = Notation::infix};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T b, T) { return a + b; }
  // d(a+b)/da = 1, d(a+b)/db = 1
  template <class T> static Local<T> local(T, T, T, T) { return {T(1), T(1)}; }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double p) {
    return constant_local(Add{}, a, b, y, p);
  }
};

struct Sub {
  static constexpr OpInfo info{.op = Op::sub, .name = "sub", .symbol = "-", .arity = 2,
                               .notation = Notation::infix};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T b, T) { return a - b; }
  // d(a-b)/da = 1, d(a-b)/db = -1
  template <class T> static Local<T> local(T, T, T, T) { return {T(1), T(-1)}; }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double p) {
    return constant_local(Sub{}, a, b, y, p);
  }
};

struct Mul {
  static constexpr OpInfo info{.op = Op::mul, .name = "mul", .symbol = "*", .arity = 2,
                               .notation = Notation::infix};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T b, T) { return a * b; }
  // d(ab)/da = b, d(ab)/db = a
  template <class T> static Local<T> local(T a, T b, T, T) { return {b, a}; }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V&, double) {
    return {b, a};
  }
};

struct Div {
  static constexpr OpInfo info{.op = Op::div, .name = "div", .symbol = "/", .arity = 2,
                               .notation = Notation::infix};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T b, T) { return a / b; }
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -(a/b)/b
  template <class T> static Local<T> local(T, T b, T y, T) { return {T(1) / b, -y / b}; }
  template <class V> static Local<V> local_graph(const V&, const V& b, const V& y, double) {
    return {1.0 / b, -y / b};
  }
};

struct Neg {
  static constexpr OpInfo info{.op = Op::neg, .name = "neg", .symbol = "-", .arity = 1,
                               .notation = Notation::prefix};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T, T) { return -a; }
  // d(-a)/da = -1
  template <class T> static Local<T> local(T, T, T, T) { return {T(-1), T(0)}; }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double p) {
    return constant_local(Neg{}, a, b, y, p);
  }
};

struct Exp {
  static constexpr OpInfo info{.op = Op::exp, .name = "exp", .symbol = "exp", .arity = 1,
                               .signature = "exp(x)", .help = "e^x"};
  static constexpr double test_points[] = {-2, 0.5, 1.5};
  template <class T> static T forward(T a, T, T) { return std::exp(a); }
  // d(e^a)/da = e^a, the result itself
  template <class T> static Local<T> local(T, T, T y, T) { return {y, T(0)}; }
  template <class V> static Local<V> local_graph(const V&, const V&, const V& y, double) {
    return {y, V{}};
  }
};

struct Log {
  static constexpr OpInfo info{.op = Op::log, .name = "log", .symbol = "log", .arity = 1,
                               .signature = "log(x)", .help = "natural logarithm"};
  static constexpr double test_points[] = {0.3, 1, 4};
  template <class T> static T forward(T a, T, T) { return std::log(a); }
  // d(log a)/da = 1/a
  template <class T> static Local<T> local(T a, T, T, T) { return {T(1) / a, T(0)}; }
  template <class V> static Local<V> local_graph(const V& a, const V&, const V&, double) {
    return {1.0 / a, V{}};
  }
};

struct Sqrt {
  static constexpr OpInfo info{.op = Op::sqrt, .name = "sqrt", .symbol = "√", .arity = 1,
                               .signature = "sqrt(x)", .help = "square root"};
  static constexpr double test_points[] = {0.3, 1, 4};
  template <class T> static T forward(T a, T, T) { return std::sqrt(a); }
  // d(sqrt a)/da = 1 / (2 sqrt a)
  template <class T> static Local<T> local(T, T, T y, T) { return {T(0.5) / y, T(0)}; }
  template <class V> static Local<V> local_graph(const V&, const V&, const V& y, double) {
    return {0.5 / y, V{}};
  }
};

struct Abs {
  static constexpr OpInfo info{.op = Op::abs, .name = "abs", .symbol = "abs", .arity = 1,
                               .signature = "abs(x)", .help = "|x|"};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};
  template <class T> static T forward(T a, T, T) { return std::abs(a); }
  // d|a|/da = sign(a), 0 at 0 and at NaN (Note [Kink policy])
  template <class T> static Local<T> local(T a, T, T, T) {
    return {a > T(0) ? T(1) : (a < T(0) ? T(-1) : T(0)), T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double p) {
    return constant_local(Abs{}, a, b, y, p);
  }
};

struct Sigmoid {
  static constexpr OpInfo info{.op = Op::sigmoid, .name = "sigmoid", .symbol = "σ", .arity = 1,
                               .signature = "sigmoid(x)", .help = "1 / (1 + e^-x)",
                               .activation = true};
  static constexpr double test_points[] = {-3, 0, 0.5, 4};
  // Stable on both tails: exp is only taken of a non-positive number.
  template <class T> static T forward(T a, T, T) {
    if (a >= T(0)) return T(1) / (T(1) + std::exp(-a));
    T e = std::exp(a);
    return e / (T(1) + e);
  }
  // dσ/da = σ (1 - σ)
  template <class T> static Local<T> local(T, T, T y, T) { return {y * (T(1) - y), T(0)}; }
  // σ'' = σ (1 - σ) (1 - 2σ) follows by differentiating this form again
  template <class V> static Local<V> local_graph(const V&, const V&, const V& y, double) {
    return {y * (1.0 - y), V{}};
  }
};

struct Tanh {
  static constexpr OpInfo info{.op = Op::tanh, .name = "tanh", .symbol = "tanh", .arity = 1,
                               .signature = "tanh(x)", .help = "hyperbolic tangent",
                               .activation = true};
  static constexpr double test_points[] = {-2, 0, 0.5, 3};
  template <class T> static T forward(T a, T, T) { return std::tanh(a); }
  // d(tanh a)/da = 1 - tanh^2
  template <class T> static Local<T> local(T, T, T y, T) { return {T(1) - y * y, T(0)}; }
  template <class V> static Local<V> local_graph(const V&, const V&, const V& y, double) {
    return {1.0 - y * y, V{}};
  }
};

struct Relu {
  static constexpr OpInfo info{.op = Op::relu, .name = "relu", .symbol = "relu", .arity = 1,
                               .signature = "relu(x)", .help = "x for x > 0, else 0",
                               .rectifier = true,
                               .activation = true};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};
  // Written as the x <= 0 test, not x > 0, so that NaN (unordered) takes the x branch and
  // stays NaN; both forms compile to one compare and a blend (Note [Kink policy]).
  template <class T> static T forward(T a, T, T) { return a <= T(0) ? T(0) : a; }
  // relu'(a) = 0 for a <= 0, else 1: relu'(0) = 0, relu'(NaN) = 1 as PyTorch's
  // threshold_backward gives (Note [Kink policy])
  template <class T> static Local<T> local(T a, T, T, T) {
    return {a <= T(0) ? T(0) : T(1), T(0)};
  }
  // relu'' = 0 everywhere, at the kink too (Note [Local derivatives on the tape])
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double p) {
    return constant_local(Relu{}, a, b, y, p);
  }
};

struct Softplus {
  static constexpr OpInfo info{.op = Op::softplus, .name = "softplus", .symbol = "softplus",
                               .arity = 1, .signature = "softplus(x)", .help = "log(1 + e^x)",
                               .activation = true};
  static constexpr double test_points[] = {-3, 0, 0.5, 4};
  // log(1 + e^a) = max(a, 0) + log1p(e^-|a|): no overflow for large |a|
  template <class T> static T forward(T a, T, T) {
    return (a > T(0) ? a : T(0)) + std::log1p(std::exp(-std::abs(a)));
  }
  // d softplus/da = σ(a)
  template <class T> static Local<T> local(T a, T, T, T) {
    return {Sigmoid::forward(a, T(0), T(0)), T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V&, const V&, double) {
    return {sigmoid(a), V{}};
  }
};

struct LeakyRelu {
  static constexpr OpInfo info{.op = Op::leaky_relu, .name = "leaky_relu", .symbol = "lrelu",
                               .arity = 1, .has_param = true, .default_param = 0.01,
                               .param_name = "alpha", .param_optional = true,
                               .signature = "leaky_relu(x[, alpha])",
                               .help = "x for x > 0, else alpha x; alpha a number, 0.01 if "
                                       "left out",
                               .rectifier = true,
                               .activation = true};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};
  // NaN fails a > 0 and gives alpha NaN = NaN
  template <class T> static T forward(T a, T, T alpha) { return a > T(0) ? a : alpha * a; }
  // 1 for a > 0, else alpha; alpha at NaN, as PyTorch (Note [Kink policy])
  template <class T> static Local<T> local(T a, T, T, T alpha) {
    return {a > T(0) ? T(1) : alpha, T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double p) {
    return constant_local(LeakyRelu{}, a, b, y, p);
  }
};

struct Elu {
  static constexpr OpInfo info{.op = Op::elu, .name = "elu", .symbol = "elu", .arity = 1,
                               .has_param = true, .default_param = 1.0, .param_name = "alpha",
                               .param_optional = true, .signature = "elu(x[, alpha])",
                               .help = "x for x > 0, else alpha (e^x - 1); alpha 1 if left out",
                               .rectifier = true,
                               .activation = true};
  static constexpr double test_points[] = {-30, -1.5, -0.01, 0.01, 2};
  // a for a > 0, alpha (e^a - 1) otherwise; NaN fails a > 0 and expm1(NaN) is NaN
  template <class T> static T forward(T a, T, T alpha) {
    return a > T(0) ? a : alpha * std::expm1(a);
  }
  // 0 < a: 1; a <= 0: alpha e^a, computed as such: y + alpha is the same number in exact
  // arithmetic, but for very negative a it cancels (at a = -30 it keeps 4 digits). 1 at NaN,
  // as PyTorch's elu_backward (Note [Kink policy]).
  template <class T> static Local<T> local(T a, T, T, T alpha) {
    return {a <= T(0) ? alpha * std::exp(a) : T(1), T(0)};
  }
  // r + (1 - r) alpha e^min(a, 0) with the constant mask r = relu'(a): the branch's value, and
  // alpha e^a as its derivative on a <= 0 (clamp_max passes its bound, so elu''(0) = alpha).
  // The clamp keeps e^a from overflowing to inf where the mask is 0 (0 inf would be NaN).
  template <class V> static Local<V> local_graph(const V& a, const V&, const V&, double alpha) {
    const V r = constant_local(Relu{}, a, V{}, a, 0.0).da;
    return {r + (1.0 - r) * alpha * exp(clamp_max(a, 0.0)), V{}};
  }
};

struct Prelu {
  static constexpr OpInfo info{.op = Op::prelu, .name = "prelu", .symbol = "prelu", .arity = 2,
                               .signature = "prelu(x, a)",
                               .help = "x for x > 0, else a x, with the slope a on the tape",
                               .rectifier = true,
                               .activation = true};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};
  // a for a > 0, alpha a otherwise; alpha (the second input) is learned. NaN gives alpha NaN.
  template <class T> static T forward(T a, T alpha, T) { return a > T(0) ? a : alpha * a; }
  // d/da = 1 or alpha; d/dalpha = 0 or a (Note [Kink policy]); at a = NaN: alpha and NaN,
  // as PyTorch's prelu backward
  template <class T> static Local<T> local(T a, T alpha, T, T) {
    return a > T(0) ? Local<T>{T(1), T(0)} : Local<T>{alpha, a};
  }
  // m + (1 - m) alpha and (1 - m) a with the constant mask m = 1 for a > 0 (0 at NaN, as the
  // test above): d²/da dalpha = 1 - m, every other second derivative 0.
  template <class V> static Local<V> local_graph(const V& a, const V& alpha, const V&, double) {
    const V m = constant_local(LeakyRelu{}, a, V{}, a, 0.0).da;
    return {m + (1.0 - m) * alpha, (1.0 - m) * a};
  }
};

struct Max {
  static constexpr OpInfo info{.op = Op::max, .name = "max", .symbol = "max", .arity = 2,
                               .signature = "max(a, b)", .help = "the larger of a and b"};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  // NaN on either side is the result, as torch.maximum: a >= b alone would answer
  // max(NaN, 1) = 1 but max(1, NaN) = NaN.
  template <class T> static T forward(T a, T b, T) { return a >= b || a != a ? a : b; }
  // 1 to the larger input, 0 to the other; a tie splits it 1/2, 1/2. With a NaN, neither is
  // smaller, so each gets 1, as torch.maximum's backward (Note [Kink policy]).
  template <class T> static Local<T> local(T a, T b, T, T) {
    if (a == b) return {T(0.5), T(0.5)};
    return {a < b ? T(0) : T(1), b < a ? T(0) : T(1)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double p) {
    return constant_local(Max{}, a, b, y, p);
  }
};

struct Min {
  static constexpr OpInfo info{.op = Op::min, .name = "min", .symbol = "min", .arity = 2,
                               .signature = "min(a, b)", .help = "the smaller of a and b"};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  // NaN on either side is the result, as torch.minimum
  template <class T> static T forward(T a, T b, T) { return a <= b || a != a ? a : b; }
  // 1 to the smaller input, 0 to the other; a tie splits it 1/2, 1/2; a NaN gives each 1
  template <class T> static Local<T> local(T a, T b, T, T) {
    if (a == b) return {T(0.5), T(0.5)};
    return {a > b ? T(0) : T(1), b > a ? T(0) : T(1)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double p) {
    return constant_local(Min{}, a, b, y, p);
  }
};

// clamp(x, lo, hi) is clamp_max(clamp_min(x, lo), hi): PyTorch's two one-sided rows, each with
// one fixed number, which compose to exactly torch.clamp's value and gradient (1 on [lo, hi]
// inclusive, 0 outside, 0 at NaN; hi when lo > hi), so the rules keep one param and the scalar
// tape's node record stays as it is (Note [Kink policy]).
struct ClampMin {
  static constexpr OpInfo info{.op = Op::clamp_min, .name = "clamp_min", .symbol = "clamp_min",
                               .arity = 1, .has_param = true, .param_name = "lo",
                               .signature = "clamp_min(x, lo)",
                               .help = "x, but at least lo; lo a number"};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};  // around the default lo 0
  // NaN fails a < lo and stays NaN
  template <class T> static T forward(T a, T, T lo) { return a < lo ? lo : a; }
  // 1 for a >= lo (lo itself included), else 0; 0 at NaN, as torch.clamp_min's backward
  template <class T> static Local<T> local(T a, T, T, T lo) {
    return {a >= lo ? T(1) : T(0), T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double lo) {
    return constant_local(ClampMin{}, a, b, y, lo);
  }
};

struct ClampMax {
  static constexpr OpInfo info{.op = Op::clamp_max, .name = "clamp_max", .symbol = "clamp_max",
                               .arity = 1, .has_param = true, .param_name = "hi",
                               .signature = "clamp_max(x, hi)",
                               .help = "x, but at most hi; hi a number"};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};  // around the default hi 0
  // NaN fails a > hi and stays NaN
  template <class T> static T forward(T a, T, T hi) { return a > hi ? hi : a; }
  // 1 for a <= hi (hi itself included), else 0; 0 at NaN, as torch.clamp_max's backward
  template <class T> static Local<T> local(T a, T, T, T hi) {
    return {a <= hi ? T(1) : T(0), T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double hi) {
    return constant_local(ClampMax{}, a, b, y, hi);
  }
};

struct Pow {
  static constexpr OpInfo info{.op = Op::pow, .name = "pow", .symbol = "^", .arity = 2,
                               .signature = "pow(a, b)",
                               .help = "a^b; a number b records a fixed exponent, as a ^ 2 does",
                               .notation = Notation::infix};
  static constexpr double test_points[] = {0.5, 1.5, 2.5};
  template <class T> static T forward(T a, T b, T) { return std::pow(a, b); }
  // d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log(a): NaN for a < 0, as in PyTorch,
  // and 0 where a == 0 and b >= 0 (the limit PyTorch also takes).
  template <class T> static Local<T> local(T a, T b, T y, T) {
    T da = b == T(0) ? T(0) : b * std::pow(a, b - T(1));
    T db = (a == T(0) && b >= T(0)) ? T(0) : y * std::log(a);
    return {da, db};
  }
  // The same two formulas without the a == 0 limits (Note [Local derivatives on the tape])
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double) {
    return {b * pow(a, b - 1.0), y * log(a)};
  }
};

struct PowScalar {
  static constexpr OpInfo info{.op = Op::pow_scalar, .name = "pow_scalar", .symbol = "^",
                               .arity = 1, .has_param = true, .default_param = 2.0,
                               .param_name = "exponent", .notation = Notation::infix};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T, T p) { return std::pow(a, p); }
  // d(a^p)/da = p a^(p-1)
  template <class T> static Local<T> local(T a, T, T, T p) {
    return {p == T(0) ? T(0) : p * std::pow(a, p - T(1)), T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V& b, const V& y, double p) {
    if (p == 0) return constant_local(PowScalar{}, a, b, y, p);  // a^0 = 1: derivative 0
    return {p * pow(a, p - 1.0), V{}};
  }
};

// Φ(x), the standard normal CDF, written with erfc, not 1 + erf: the same function, but it keeps
// its digits on the left tail, where 1 + erf(x/√2) cancels to 0 (x < -8.3). A row of its own
// because GELU's derivative, Φ(x) + x φ(x), must be recorded for gradients of gradients; the
// program language does not offer it (no signature).
struct NormalCdf {
  static constexpr OpInfo info{.op = Op::normal_cdf, .name = "normal_cdf", .symbol = "Φ",
                               .arity = 1};
  static constexpr double test_points[] = {-3, -0.5, 0, 0.7, 2.5};
  static constexpr double kInvSqrt2Pi = std::numbers::inv_sqrtpi / std::numbers::sqrt2;
  template <class T> static T forward(T a, T, T) {
    return T(0.5) * std::erfc(-a * T(std::numbers::sqrt2 / 2));
  }
  // dΦ/dx = φ(x) = e^(-x^2/2) / √(2π)
  template <class T> static Local<T> local(T a, T, T, T) {
    return {std::exp(T(-0.5) * a * a) * T(kInvSqrt2Pi), T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V&, const V&, double) {
    return {exp(-0.5 * a * a) * kInvSqrt2Pi, V{}};
  }
};

// GELU, x Φ(x) with Φ the standard normal CDF, in PyTorch's default (exact) form. Φ is written
// with erfc, not 1 + erf: the same function, but it keeps its digits on the left tail, where
// 1 + erf(x/√2) cancels to 0 (x < -8.3).
struct Gelu {
  static constexpr OpInfo info{.op = Op::gelu, .name = "gelu", .symbol = "gelu", .arity = 1,
                               .signature = "gelu(x)", .help = "x Φ(x), Φ the normal CDF",
                               .activation = true};
  static constexpr double test_points[] = {-3, -0.5, 0, 0.7, 2.5};
  template <class T> static T cdf(T a) { return NormalCdf::forward(a, T(0), T(0)); }
  template <class T> static T forward(T a, T, T) { return a * cdf(a); }
  // d(x Φ(x))/dx = Φ(x) + x φ(x), φ(x) = e^(-x^2/2) / √(2π)
  template <class T> static Local<T> local(T a, T, T, T) {
    const T pdf = std::exp(T(-0.5) * a * a) * T(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
    return {cdf(a) + a * pdf, T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V&, const V&, double) {
    return {normal_cdf(a) + a * (exp(-0.5 * a * a) * NormalCdf::kInvSqrt2Pi), V{}};
  }
};

// PyTorch's gelu(x, approximate='tanh'), a row of its own rather than a parameter of Gelu: it is
// another function (not the same one at another setting), a parameter would be a number standing
// for a formula, tested per element in the vectorised loops, and the graph, the program language
// and anomaly reports should name which one ran.
struct GeluTanh {
  static constexpr OpInfo info{.op = Op::gelu_tanh, .name = "gelu_tanh", .symbol = "gelu_tanh",
                               .arity = 1, .signature = "gelu_tanh(x)",
                               .help = "x/2 (1 + tanh(√(2/π) (x + 0.044715 x^3)))",
                               .activation = true};
  static constexpr double test_points[] = {-3, -0.5, 0, 0.7, 2.5};
  static constexpr double kBeta = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;  // √(2/π)
  static constexpr double kKappa = 0.044715;
  // (1 + tanh u)/2 = σ(2u): the same function, but σ keeps its digits on the left tail, where
  // 1 + tanh u cancels (float32 loses 3 of its 7 digits at x = -3).
  template <class T> static T u(T a) { return T(kBeta) * (a + T(kKappa) * a * a * a); }
  template <class T> static T forward(T a, T, T) {
    return a * Sigmoid::forward(T(2) * u(a), T(0), T(0));
  }
  // With s = σ(2u), u = β (x + κ x^3): s + x 2 s (1 - s) β (1 + 3κ x^2)
  template <class T> static Local<T> local(T a, T, T, T) {
    const T s = Sigmoid::forward(T(2) * u(a), T(0), T(0));
    const T du = T(kBeta) * (T(1) + T(3 * kKappa) * a * a);
    return {s + T(2) * a * s * (T(1) - s) * du, T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V&, const V&, double) {
    const V s = sigmoid(2.0 * (kBeta * (a + kKappa * a * a * a)));
    const V du = kBeta * (1.0 + 3 * kKappa * a * a);
    return {s + 2.0 * a * s * (1.0 - s) * du, V{}};
  }
};

// SiLU (swish), x σ(x).
struct Silu {
  static constexpr OpInfo info{.op = Op::silu, .name = "silu", .symbol = "silu", .arity = 1,
                               .signature = "silu(x)", .help = "x sigmoid(x)",
                               .activation = true};
  static constexpr double test_points[] = {-3, -0.5, 0, 0.7, 4};
  template <class T> static T forward(T a, T, T) { return a * Sigmoid::forward(a, T(0), T(0)); }
  // d(x σ(x))/dx = σ + x σ (1 - σ) = σ (1 + x (1 - σ))
  template <class T> static Local<T> local(T a, T, T, T) {
    const T s = Sigmoid::forward(a, T(0), T(0));
    return {s * (T(1) + a * (T(1) - s)), T(0)};
  }
  template <class V> static Local<V> local_graph(const V& a, const V&, const V&, double) {
    const V s = sigmoid(a);
    return {s * (1.0 + a * (1.0 - s)), V{}};
  }
};

// Binary cross-entropy as one op, with PyTorch's BCELoss numerics: composed
// of log and max, a probability saturated at exactly 0 or 1 (as float32 ones
// do) sends a zero gradient into log's 1/p = inf, and 0 * inf poisons every
// weight with NaN; this rule's derivative stays finite there.
struct Bce {
  static constexpr OpInfo info{Op::bce, "bce", "BCE", 2};
  static constexpr double test_points[] = {0.2, 0.5, 0.8};
  // -(y log p + (1 - y) log(1 - p)), each log clamped at -100 as PyTorch does
  template <class T> static T forward(T p, T y, T) {
    return -(y * clamped_log(p) + (T(1) - y) * clamped_log(T(1) - p));
  }
  // d/dp = (p - y) / (p (1 - p)), the denominator kept >= 1e-12 (PyTorch's
  // BCELoss backward); d/dy = log(1 - p) - log(p), clamped as in forward
  template <class T> static Local<T> local(T p, T y, T, T) {
    const T denominator = p * (T(1) - p);
    return {(p - y) / (denominator > T(1e-12) ? denominator : T(1e-12)),
            clamped_log(T(1) - p) - clamped_log(p)};
  }
  // The same with the clamps as clamp_min rows (equal values; each passes its bound)
  template <class V> static Local<V> local_graph(const V& p, const V& target, const V&, double) {
    return {(p - target) / clamp_min(p * (1.0 - p), 1e-12),
            clamp_min(log(1.0 - p), -100.0) - clamp_min(log(p), -100.0)};
  }
  // log(NaN) fails l < -100 and stays NaN (Note [Kink policy])
  template <class T> static T clamped_log(T x) {
    const T l = std::log(x);
    return l < T(-100) ? T(-100) : l;
  }
};

}  // namespace rules
// clang-format on

// Calls f(Rule{}) with the rule of `op`: the one switch over the op table. Always inlined: GCC
// otherwise keeps it a call (its inlined cases are over its size limit), which costs the
// backward loop a call, a spill of its live registers and a return per node.
template <class F> [[gnu::always_inline]] constexpr decltype(auto) dispatch(Op op, F&& f) {
  using namespace rules;
  switch (op) {
    case Op::input: return f(Input{});
    case Op::constant: return f(Constant{});
    case Op::add: return f(Add{});
    case Op::sub: return f(Sub{});
    case Op::mul: return f(Mul{});
    case Op::div: return f(Div{});
    case Op::neg: return f(Neg{});
    case Op::exp: return f(Exp{});
    case Op::log: return f(Log{});
    case Op::sqrt: return f(Sqrt{});
    case Op::abs: return f(Abs{});
    case Op::sigmoid: return f(Sigmoid{});
    case Op::tanh: return f(Tanh{});
    case Op::relu: return f(Relu{});
    case Op::softplus: return f(Softplus{});
    case Op::leaky_relu: return f(LeakyRelu{});
    case Op::elu: return f(Elu{});
    case Op::prelu: return f(Prelu{});
    case Op::max: return f(Max{});
    case Op::pow: return f(Pow{});
    case Op::pow_scalar: return f(PowScalar{});
    case Op::gelu: return f(Gelu{});
    case Op::gelu_tanh: return f(GeluTanh{});
    case Op::silu: return f(Silu{});
    case Op::min: return f(Min{});
    case Op::clamp_min: return f(ClampMin{});
    case Op::clamp_max: return f(ClampMax{});
    case Op::bce: return f(Bce{});
    case Op::normal_cdf: return f(NormalCdf{});
  }
  return f(Input{});  // unreachable for a valid Op; keeps -Wreturn-type quiet
}

constexpr const OpInfo& op_info(Op op) {
  return dispatch(op, [](auto rule) -> const OpInfo& { return decltype(rule)::info; });
}

// True for ops with a forward and a local derivative (everything but leaves).
constexpr bool is_leaf(Op op) { return op == Op::input || op == Op::constant; }

// The row called `name` ("gelu"), if there is one: how a name read from text finds its rule.
constexpr std::optional<Op> find_op(std::string_view name) {
  for (int i = 0; i < kOpCount; ++i)
    if (op_info(static_cast<Op>(i)).name == name) return static_cast<Op>(i);
  return std::nullopt;
}

}  // namespace ag
