// The op table: every differentiable operation of tapegrad, defined once.
// Each rule holds its forward formula and its local derivatives side by side.

#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

namespace ag {

// Note [The op table]
// ~~~~~~~~~~~~~~~~~~~
// An op is one `struct ...Rule` below: its metadata (`info`: name, lecture
// symbol, arity, whether it takes a numeric parameter), `forward`, and `local`,
// which returns the local derivatives d(out)/d(a) and d(out)/d(b) given the
// inputs, the forward result and the parameter. Backward multiplies them by the
// upstream gradient (the chain rule); the rules never see the tape. They are
// templates on the number type so that the scalar tape (double) and the
// tensor kernels (float and double) share them. `test_points` lists where the
// gradient check evaluates the rule: both sides of every kink, inside the
// domain.
//
// Adding an op: a row in `enum class Op`, a rule struct, a line in
// `dispatch`, and a user-facing function in value.hpp. The tests iterate over
// every op and gradient-check it at its `test_points`.
//
// Note [Kink policy]
// ~~~~~~~~~~~~~~~~~~
// Where a function has a kink, its derivative there is the one of the branch
// x <= 0 (the non-positive side), as PyTorch computes it and as the lecture
// notes write ReLU: relu'(0) = 0, leaky_relu'(0) = alpha, prelu'(0) = alpha,
// elu'(0) = alpha. abs follows PyTorch's sign(0) = 0, so abs'(0) = 0.
// max(a, b) with a == b splits the gradient evenly, 1/2 to each side, as
// PyTorch's torch.maximum does (it is also what a central difference gives).

enum class Op : std::uint8_t {
  input,      // a named leaf the user differentiates with respect to
  constant,   // a literal; a leaf too
  add,
  sub,
  mul,
  div,
  neg,
  pow,         // pow(a, b), both on the tape
  pow_scalar,  // pow(a, p) with p a fixed number
  exp,
  log,
  sqrt,
  abs,
  sigmoid,
  tanh,
  relu,
  leaky_relu,
  elu,
  prelu,  // prelu(x, alpha) with alpha on the tape (learnable)
  max,
  softplus,
  bce,  // binary cross-entropy of a probability p against a target y
};
inline constexpr int kOpCount = static_cast<int>(Op::bce) + 1;

struct OpInfo {
  Op op;
  std::string_view name;    // as the user calls it: "sigmoid"
  std::string_view symbol;  // as the lecture draws it: "σ"
  int arity;                // 0 for leaves
  bool has_param = false;   // a fixed number: leaky_relu's alpha, pow's exponent
  double default_param = 0;
};

template <class T>
struct Local {
  T da;
  T db;
};

namespace rules {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Input {
  static constexpr OpInfo info{Op::input, "input", "", 0};
};
struct Constant {
  static constexpr OpInfo info{Op::constant, "constant", "", 0};
};

struct Add {
  static constexpr OpInfo info{Op::add, "add", "+", 2};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T b, T) { return a + b; }
  // d(a+b)/da = 1, d(a+b)/db = 1
  template <class T> static Local<T> local(T, T, T, T) { return {T(1), T(1)}; }
};

struct Sub {
  static constexpr OpInfo info{Op::sub, "sub", "-", 2};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T b, T) { return a - b; }
  // d(a-b)/da = 1, d(a-b)/db = -1
  template <class T> static Local<T> local(T, T, T, T) { return {T(1), T(-1)}; }
};

struct Mul {
  static constexpr OpInfo info{Op::mul, "mul", "*", 2};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T b, T) { return a * b; }
  // d(ab)/da = b, d(ab)/db = a
  template <class T> static Local<T> local(T a, T b, T, T) { return {b, a}; }
};

struct Div {
  static constexpr OpInfo info{Op::div, "div", "/", 2};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T b, T) { return a / b; }
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -(a/b)/b
  template <class T> static Local<T> local(T, T b, T y, T) { return {T(1) / b, -y / b}; }
};

struct Neg {
  static constexpr OpInfo info{Op::neg, "neg", "-", 1};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T, T) { return -a; }
  // d(-a)/da = -1
  template <class T> static Local<T> local(T, T, T, T) { return {T(-1), T(0)}; }
};

struct Pow {
  static constexpr OpInfo info{Op::pow, "pow", "^", 2};
  static constexpr double test_points[] = {0.5, 1.5, 2.5};
  template <class T> static T forward(T a, T b, T) { return std::pow(a, b); }
  // d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log(a): NaN for a < 0, as in PyTorch,
  // and 0 where a == 0 and b >= 0 (the limit PyTorch also takes).
  template <class T> static Local<T> local(T a, T b, T y, T) {
    T da = b == T(0) ? T(0) : b * std::pow(a, b - T(1));
    T db = (a == T(0) && b >= T(0)) ? T(0) : y * std::log(a);
    return {da, db};
  }
};

struct PowScalar {
  static constexpr OpInfo info{Op::pow_scalar, "pow_scalar", "^", 1, true, 2.0};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T, T p) { return std::pow(a, p); }
  // d(a^p)/da = p a^(p-1)
  template <class T> static Local<T> local(T a, T, T, T p) {
    return {p == T(0) ? T(0) : p * std::pow(a, p - T(1)), T(0)};
  }
};

struct Exp {
  static constexpr OpInfo info{Op::exp, "exp", "exp", 1};
  static constexpr double test_points[] = {-2, 0.5, 1.5};
  template <class T> static T forward(T a, T, T) { return std::exp(a); }
  // d(e^a)/da = e^a, the result itself
  template <class T> static Local<T> local(T, T, T y, T) { return {y, T(0)}; }
};

struct Log {
  static constexpr OpInfo info{Op::log, "log", "log", 1};
  static constexpr double test_points[] = {0.3, 1, 4};
  template <class T> static T forward(T a, T, T) { return std::log(a); }
  // d(log a)/da = 1/a
  template <class T> static Local<T> local(T a, T, T, T) { return {T(1) / a, T(0)}; }
};

struct Sqrt {
  static constexpr OpInfo info{Op::sqrt, "sqrt", "√", 1};
  static constexpr double test_points[] = {0.3, 1, 4};
  template <class T> static T forward(T a, T, T) { return std::sqrt(a); }
  // d(sqrt a)/da = 1 / (2 sqrt a)
  template <class T> static Local<T> local(T, T, T y, T) { return {T(0.5) / y, T(0)}; }
};

struct Abs {
  static constexpr OpInfo info{Op::abs, "abs", "abs", 1};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};
  template <class T> static T forward(T a, T, T) { return std::abs(a); }
  // d|a|/da = sign(a), 0 at 0 (Note [Kink policy])
  template <class T> static Local<T> local(T a, T, T, T) {
    return {a > T(0) ? T(1) : (a < T(0) ? T(-1) : T(0)), T(0)};
  }
};

struct Sigmoid {
  static constexpr OpInfo info{Op::sigmoid, "sigmoid", "σ", 1};
  static constexpr double test_points[] = {-3, 0, 0.5, 4};
  // Stable on both tails: exp is only taken of a non-positive number.
  template <class T> static T forward(T a, T, T) {
    if (a >= T(0)) return T(1) / (T(1) + std::exp(-a));
    T e = std::exp(a);
    return e / (T(1) + e);
  }
  // dσ/da = σ (1 - σ)
  template <class T> static Local<T> local(T, T, T y, T) { return {y * (T(1) - y), T(0)}; }
};

struct Tanh {
  static constexpr OpInfo info{Op::tanh, "tanh", "tanh", 1};
  static constexpr double test_points[] = {-2, 0, 0.5, 3};
  template <class T> static T forward(T a, T, T) { return std::tanh(a); }
  // d(tanh a)/da = 1 - tanh^2
  template <class T> static Local<T> local(T, T, T y, T) { return {T(1) - y * y, T(0)}; }
};

struct Relu {
  static constexpr OpInfo info{Op::relu, "relu", "relu", 1};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};
  template <class T> static T forward(T a, T, T) { return a > T(0) ? a : T(0); }
  // relu'(a) = 1 for a > 0, else 0 (relu'(0) = 0: Note [Kink policy])
  template <class T> static Local<T> local(T a, T, T, T) { return {a > T(0) ? T(1) : T(0), T(0)}; }
};

struct LeakyRelu {
  static constexpr OpInfo info{Op::leaky_relu, "leaky_relu", "lrelu", 1, true, 0.01};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};
  template <class T> static T forward(T a, T, T alpha) { return a > T(0) ? a : alpha * a; }
  // 1 for a > 0, else alpha (Note [Kink policy])
  template <class T> static Local<T> local(T a, T, T, T alpha) {
    return {a > T(0) ? T(1) : alpha, T(0)};
  }
};

struct Elu {
  static constexpr OpInfo info{Op::elu, "elu", "elu", 1, true, 1.0};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};
  // a for a > 0, alpha (e^a - 1) otherwise
  template <class T> static T forward(T a, T, T alpha) {
    return a > T(0) ? a : alpha * std::expm1(a);
  }
  // 1 for a > 0, else alpha e^a = y + alpha (Note [Kink policy])
  template <class T> static Local<T> local(T a, T, T y, T alpha) {
    return {a > T(0) ? T(1) : y + alpha, T(0)};
  }
};

struct Prelu {
  static constexpr OpInfo info{Op::prelu, "prelu", "prelu", 2};
  static constexpr double test_points[] = {-1.5, -0.01, 0.01, 2};
  // a for a > 0, alpha a otherwise; alpha (the second input) is learned
  template <class T> static T forward(T a, T alpha, T) { return a > T(0) ? a : alpha * a; }
  // d/da = 1 or alpha; d/dalpha = 0 or a (Note [Kink policy])
  template <class T> static Local<T> local(T a, T alpha, T, T) {
    return a > T(0) ? Local<T>{T(1), T(0)} : Local<T>{alpha, a};
  }
};

struct Max {
  static constexpr OpInfo info{Op::max, "max", "max", 2};
  static constexpr double test_points[] = {-1.5, 0.5, 2};
  template <class T> static T forward(T a, T b, T) { return a >= b ? a : b; }
  // 1 to the larger input, 0 to the other; a tie splits it 1/2, 1/2
  template <class T> static Local<T> local(T a, T b, T, T) {
    if (a == b) return {T(0.5), T(0.5)};
    return a > b ? Local<T>{T(1), T(0)} : Local<T>{T(0), T(1)};
  }
};

struct Softplus {
  static constexpr OpInfo info{Op::softplus, "softplus", "softplus", 1};
  static constexpr double test_points[] = {-3, 0, 0.5, 4};
  // log(1 + e^a) = max(a, 0) + log1p(e^-|a|): no overflow for large |a|
  template <class T> static T forward(T a, T, T) {
    return (a > T(0) ? a : T(0)) + std::log1p(std::exp(-std::abs(a)));
  }
  // d softplus/da = σ(a)
  template <class T> static Local<T> local(T a, T, T, T) {
    return {Sigmoid::forward(a, T(0), T(0)), T(0)};
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
  template <class T> static T clamped_log(T x) {
    const T l = std::log(x);
    return l > T(-100) ? l : T(-100);
  }
};

}  // namespace rules

// Calls f(Rule{}) with the rule of `op`: the one switch over the op table. Always inlined: GCC
// otherwise keeps it a call (21 inlined cases are over its size limit), which costs the
// backward loop a call, a spill of its live registers and a return per node.
template <class F>
[[gnu::always_inline]] constexpr decltype(auto) dispatch(Op op, F&& f) {
  using namespace rules;
  switch (op) {
    case Op::input: return f(Input{});
    case Op::constant: return f(Constant{});
    case Op::add: return f(Add{});
    case Op::sub: return f(Sub{});
    case Op::mul: return f(Mul{});
    case Op::div: return f(Div{});
    case Op::neg: return f(Neg{});
    case Op::pow: return f(Pow{});
    case Op::pow_scalar: return f(PowScalar{});
    case Op::exp: return f(Exp{});
    case Op::log: return f(Log{});
    case Op::sqrt: return f(Sqrt{});
    case Op::abs: return f(Abs{});
    case Op::sigmoid: return f(Sigmoid{});
    case Op::tanh: return f(Tanh{});
    case Op::relu: return f(Relu{});
    case Op::leaky_relu: return f(LeakyRelu{});
    case Op::elu: return f(Elu{});
    case Op::prelu: return f(Prelu{});
    case Op::max: return f(Max{});
    case Op::softplus: return f(Softplus{});
    case Op::bce: return f(Bce{});
  }
  return f(Input{});  // unreachable for a valid Op; keeps -Wreturn-type quiet
}

constexpr const OpInfo& op_info(Op op) {
  return dispatch(op, [](auto rule) -> const OpInfo& { return decltype(rule)::info; });
}

// True for ops with a forward and a local derivative (everything but leaves).
constexpr bool is_leaf(Op op) { return op == Op::input || op == Op::constant; }

}  // namespace ag
