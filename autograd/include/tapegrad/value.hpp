// The user-facing scalar operations: arithmetic operators and functions on
// ag::Value, each recording one row of the op table (ops.hpp) on the tape.

#pragma once

#include "tapegrad/tape.hpp"

namespace ag {

namespace detail {
// A double operand becomes a constant node on the Value's tape.
inline Value lift(const Value& like, double x) { return like.tape().constant(x); }
}  // namespace detail

// Binary operators: Value with Value, or with a double on either side.
inline Value operator+(Value a, Value b) { return a.tape().record<rules::Add>(a, b); }
inline Value operator+(Value a, double b) { return a + detail::lift(a, b); }
inline Value operator+(double a, Value b) { return detail::lift(b, a) + b; }
inline Value operator-(Value a, Value b) { return a.tape().record<rules::Sub>(a, b); }
inline Value operator-(Value a, double b) { return a - detail::lift(a, b); }
inline Value operator-(double a, Value b) { return detail::lift(b, a) - b; }
inline Value operator*(Value a, Value b) { return a.tape().record<rules::Mul>(a, b); }
inline Value operator*(Value a, double b) { return a * detail::lift(a, b); }
inline Value operator*(double a, Value b) { return detail::lift(b, a) * b; }
inline Value operator/(Value a, Value b) { return a.tape().record<rules::Div>(a, b); }
inline Value operator/(Value a, double b) { return a / detail::lift(a, b); }
inline Value operator/(double a, Value b) { return detail::lift(b, a) / b; }

inline Value operator-(Value a) { return a.tape().record<rules::Neg>(a); }
inline Value operator+(Value a) { return a; }
inline Value& operator+=(Value& a, Value b) { return a = a + b; }
inline Value& operator-=(Value& a, Value b) { return a = a - b; }
inline Value& operator*=(Value& a, Value b) { return a = a * b; }
inline Value& operator/=(Value& a, Value b) { return a = a / b; }
inline Value& operator+=(Value& a, double b) { return a = a + b; }
inline Value& operator-=(Value& a, double b) { return a = a - b; }
inline Value& operator*=(Value& a, double b) { return a = a * b; }
inline Value& operator/=(Value& a, double b) { return a = a / b; }

// a^p with a fixed exponent, and a^b with the exponent on the tape (so it gets a
// gradient too: a^b log a, NaN for a < 0).
inline Value pow(Value a, double p) { return a.tape().record<rules::PowScalar>(a, {}, p); }
inline Value pow(Value a, Value b) { return a.tape().record<rules::Pow>(a, b); }
inline Value pow(double a, Value b) { return pow(detail::lift(b, a), b); }

inline Value exp(Value a) { return a.tape().record<rules::Exp>(a); }
inline Value log(Value a) { return a.tape().record<rules::Log>(a); }
inline Value sqrt(Value a) { return a.tape().record<rules::Sqrt>(a); }
inline Value abs(Value a) { return a.tape().record<rules::Abs>(a); }
inline Value sigmoid(Value a) { return a.tape().record<rules::Sigmoid>(a); }
inline Value tanh(Value a) { return a.tape().record<rules::Tanh>(a); }
inline Value relu(Value a) { return a.tape().record<rules::Relu>(a); }
inline Value softplus(Value a) { return a.tape().record<rules::Softplus>(a); }
inline Value gelu(Value a) { return a.tape().record<rules::Gelu>(a); }
// gelu(x, approximate='tanh') in PyTorch's spelling
inline Value gelu_tanh(Value a) { return a.tape().record<rules::GeluTanh>(a); }
inline Value silu(Value a) { return a.tape().record<rules::Silu>(a); }
// Φ(x), the standard normal CDF: the row GELU's derivative records (create_graph)
inline Value normal_cdf(Value a) { return a.tape().record<rules::NormalCdf>(a); }
inline Value leaky_relu(Value a, double alpha = 0.01) {
  return a.tape().record<rules::LeakyRelu>(a, {}, alpha);
}
inline Value elu(Value a, double alpha = 1.0) { return a.tape().record<rules::Elu>(a, {}, alpha); }
// PReLU: alpha is a Value, so it is learned like a weight.
inline Value prelu(Value a, Value alpha) { return a.tape().record<rules::Prelu>(a, alpha); }
inline Value prelu(Value a, double alpha) { return prelu(a, detail::lift(a, alpha)); }
// Maxout's building block: the larger of two values (a tie splits the gradient).
inline Value max(Value a, Value b) { return a.tape().record<rules::Max>(a, b); }
inline Value max(Value a, double b) { return max(a, detail::lift(a, b)); }
inline Value max(double a, Value b) { return max(detail::lift(b, a), b); }
inline Value min(Value a, Value b) { return a.tape().record<rules::Min>(a, b); }
inline Value min(Value a, double b) { return min(a, detail::lift(a, b)); }
inline Value min(double a, Value b) { return min(detail::lift(b, a), b); }
// clamp(x, lo, hi) = clamp_max(clamp_min(x, lo), hi), torch.clamp's value and gradient.
inline Value clamp_min(Value a, double lo) { return a.tape().record<rules::ClampMin>(a, {}, lo); }
inline Value clamp_max(Value a, double hi) { return a.tape().record<rules::ClampMax>(a, {}, hi); }
inline Value clamp(Value a, double lo, double hi) { return clamp_max(clamp_min(a, lo), hi); }

// Binary cross-entropy of a probability p against a target y (ops.hpp's Bce).
inline Value bce(Value p, Value y) { return p.tape().record<rules::Bce>(p, y); }
inline Value bce(Value p, double y) { return bce(p, detail::lift(p, y)); }

// A rule's local derivatives at the recorded values, recorded as constants: `local_graph` of a
// row whose local derivative is constant near every point but its kinks (Note [Local derivatives
// on the tape], ops.hpp). `b` is empty for a unary row, and so is the result's db.
template <class Rule>
Local<Value> constant_local(Rule, const Value& a, const Value& b, const Value& y, double param) {
  Tape& tape = a.tape();
  const double vb = b.valid() ? b.value() : 0.0;
  const double vy = y.valid() ? y.value() : 0.0;
  const Local<double> local = Rule::local(a.value(), vb, vy, param);
  return {tape.constant(local.da), Rule::info.arity == 2 ? tape.constant(local.db) : Value{}};
}

}  // namespace ag
