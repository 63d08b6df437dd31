// Property tests of tensor tapes: random float64 graphs with broadcasting, checked against
// central differences over every input element, and metamorphic properties (the stepper,
// backward twice). Note [Property cases] (property.hpp).

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/format.hpp>
#include <tapegrad/gradcheck.hpp>
#include <tapegrad/nn/loss.hpp>
#include <tapegrad/random.hpp>
#include <vector>

#include "property.hpp"

using namespace ag;
using property::PointCheck;
using property::Skip;

namespace {

// Whether shapes a and b broadcast (NumPy's rule, shape.hpp).
bool broadcastable(const Shape& a, const Shape& b) {
  for (int i = 1; i <= std::min(a.rank(), b.rank()); ++i) {
    const std::int64_t da = a[a.rank() - i], db = b[b.rank() - i];
    if (da != db && da != 1 && db != 1) return false;
  }
  return true;
}

// The inputs of a case: shapes of rank 0 to 3 drawn from one "universe" shape (a suffix of it,
// some axes 1), so that most pairs broadcast, with rank differences and size-1 axes. Axes are
// 1 to 4 long; in one case of 20 they are up to 12 long, so that matmul reaches its packed
// kernel (Note [Small gemm]) in every layout (BLAS, beyond, is too large for central
// differences); in another, up to kMaxRank axes of length 1 or 2.
std::vector<TensorArg> random_inputs(Rng& rng) {
  const double kind = rng.uniform();
  const bool large = kind<0.05, deep = kind> 0.95;
  const int rank = large                 ? 2
                   : deep                ? 4 + int(rng.below(kMaxRank - 3))
                   : rng.uniform() < 0.1 ? 0
                                         : 1 + int(rng.below(3));
  std::int64_t universe[kMaxRank];
  for (int j = 0; j < rank; ++j)
    universe[j] = large  ? 6 + std::int64_t(rng.below(7))
                  : deep ? 1 + std::int64_t(rng.below(2))
                         : 1 + std::int64_t(rng.below(4));
  std::vector<TensorArg> args(1 + rng.below(4));
  for (TensorArg& a : args) {
    const int r = int(rng.below(std::uint64_t(rank) + 1));
    std::int64_t dims[kMaxRank];
    for (int j = 0; j < r; ++j) {
      dims[j] = universe[rank - r + j];
      if (rng.uniform() < 0.25) dims[j] = 1;
    }
    a.shape = Shape(std::span<const std::int64_t>(dims, std::size_t(r)));
  }
  return args;
}

// Values in [-2, 2], or for one point in ten in [-12, 12]: the tails of sigmoid and softplus.
void sample(Rng& rng, std::vector<TensorArg>& args) {
  const double range = rng.uniform() < 0.1 ? 12 : 2;
  for (TensorArg& a : args) {
    a.values.resize(std::size_t(a.shape.numel()));
    for (double& v : a.values) v = rng.uniform(-range, range);
  }
}

// Records a random graph on the inputs' tape: elementwise rows of the op table (through
// ag::apply and the named functions) with broadcasting, matmul (batched too), linear, transpose,
// reshape, sum, mean, amax and amin over everything or one axis with and without keepdims,
// where, softmax, log_softmax, pick, the shape ops (cat, stack, slice, index_select, gather,
// transpose of any two axes) and nn's losses. Every choice comes from the seed and none from the
// input values, so the same seed records the same graph at every point the central differences
// evaluate. Domains are kept by construction, as in the program generator.
class GraphBuilder {
 public:
  GraphBuilder(std::uint64_t seed, std::span<const Tensor> inputs)
      : rng_(seed), tape_(inputs[0].tape()) {
    for (const Tensor& t : inputs) {
      live_.push_back({t, false});
      large_ |= t.numel() > max_elements_;
    }
    if (large_) max_elements_ = 256;
  }

  Tensor build() {
    for (int i = 0, n = 3 + int(rng_.below(8)); i < n; ++i) step();
    Tensor out = live_.back().t;
    live_.back().used = true;
    // Usually, every tensor nothing read yet also reaches the output, as sum(t) added to it.
    if (chance() < 0.8)
      for (Entry& e : live_)
        if (!e.used) out = out + sum(e.t);
    return out;
  }

 private:
  struct Entry {
    Tensor t;
    bool used;
  };

  double chance() { return rng_.uniform(); }
  template <class T, std::size_t N> const T& pick(const T (&from)[N]) {
    return from[rng_.below(N)];
  }

  // An operand: one not read yet, most of the time.
  Tensor operand() {
    std::vector<std::size_t> unused;
    for (std::size_t i = 0; i < live_.size(); ++i)
      if (!live_[i].used) unused.push_back(i);
    const std::size_t i = !unused.empty() && chance() < 0.7 ? unused[rng_.below(unused.size())]
                                                            : rng_.below(live_.size());
    live_[i].used = true;
    return live_[i].t;
  }

  // A second operand for `a`: another tensor that broadcasts with it, a constant tensor that
  // does, or `a` itself (a fork).
  Tensor partner(const Tensor& a) {
    std::vector<std::size_t> fits;
    for (std::size_t i = 0; i < live_.size(); ++i)
      if (broadcastable(a.shape(), live_[i].t.shape()) &&
          (a.id() != live_[i].t.id() || chance() < 0.2))
        fits.push_back(i);
    if (!fits.empty() && chance() < 0.75) {
      const std::size_t i = fits[rng_.below(fits.size())];
      live_[i].used = true;
      return live_[i].t;
    }
    return constant(fitting(a.shape()), -2, 2);
  }

  // A shape that broadcasts with s: a suffix of it with some axes 1, or one more axis in front.
  Shape fitting(const Shape& s) {
    std::int64_t dims[kMaxRank];
    int r = 0;
    const int suffix = int(rng_.below(std::uint64_t(s.rank()) + 1));
    if (suffix == s.rank() && s.rank() < kMaxRank && chance() < 0.3)
      dims[r++] = 1 + std::int64_t(rng_.below(2));
    for (int j = suffix; j > 0; --j) dims[r++] = chance() < 0.3 ? 1 : s[s.rank() - j];
    return Shape(std::span<const std::int64_t>(dims, std::size_t(r)));
  }

  // A number in [low, high) that float32 holds exactly, so that graphs recorded in float32 and
  // in float64 from one seed compute with the same constants.
  double number(double low, double high) { return double(float(rng_.uniform(low, high))); }

  // A constant of the inputs' dtype.
  Tensor constant(const Shape& s, std::vector<double> v) {
    if (tape_.dtype(live_[0].t.id()) == DType::f64) return tape_.constant<double>(s, v);
    const std::vector<float> f(v.begin(), v.end());
    return tape_.constant<float>(s, f);
  }
  Tensor constant(const Shape& s, double low, double high) {
    std::vector<double> v(std::size_t(s.numel()));
    for (double& x : v) x = number(low, high);
    return constant(s, std::move(v));
  }

  // Positive by construction, at least about 0.1 for most forms.
  Tensor positive(const Tensor& t) {
    switch (rng_.below(5)) {
      case 0: return softplus(t) + 0.1;
      case 1: return exp(t);
      case 2: return sigmoid(t) + 0.1;
      case 3: return pow(t, 2.0) + 0.25;
      default: return abs(t) + 0.5;
    }
  }

  // t as a matrix: a 2-D view of its elements.
  Tensor matrix(const Tensor& t) {
    const Shape& s = t.shape();
    switch (s.rank()) {
      case 0: return reshape(t, {1, 1});
      case 1: return chance() < 0.5 ? reshape(t, {1, -1}) : reshape(t, {-1, 1});
      case 2: return chance() < 0.8 ? t : transpose(t);
      default: return chance() < 0.5 ? reshape(t, {-1, s[s.rank() - 1]}) : reshape(t, {s[0], -1});
    }
  }

  // A (rows, cols) view of a tensor with rows * k elements, preferring one recorded so far.
  Tensor matrix_with(std::int64_t rows, std::int64_t max_cols) {
    std::vector<std::size_t> fits;
    for (std::size_t i = 0; i < live_.size(); ++i) {
      const std::int64_t n = live_[i].t.numel();
      if (n % rows == 0 && n / rows <= max_cols) fits.push_back(i);
    }
    if (fits.empty() || chance() < 0.2)
      return constant(Shape{rows, 1 + std::int64_t(rng_.below(3))}, -1, 1);
    Entry& e = live_[fits[rng_.below(fits.size())]];
    e.used = true;
    return reshape(e.t, Shape{rows, e.t.numel() / rows});
  }

  void push(Tensor t) { live_.push_back({t, false}); }

  void step() {
    if (large_ && chance() < 0.5) return chance() < 0.7 ? matmul_step() : linear_step();
    const double c = chance();
    if (c < 0.25) return unary_step();
    if (c < 0.5) return binary_step();
    if (c < 0.57) return matmul_step();
    if (c < 0.62) return linear_step();
    if (c < 0.7) return shape_step();
    if (c < 0.8) return reduce_step();
    if (c < 0.86) return softmax_step();
    if (c < 0.89) return pick_step();
    if (c < 0.93) return comparison_step();
    return loss_step();
  }

  // amin over an axis or everything, amax over everything, where, batched matmul.
  // argmax is left out: it has no gradient, and its value jumps where an input's order does.
  void comparison_step() {
    const Tensor a = operand();
    switch (rng_.below(4)) {
      case 0: {
        if (a.rank() == 0 || chance() < 0.3) return push(chance() < 0.5 ? amin(a) : amax(a));
        const int axis = int(rng_.below(std::uint64_t(2 * a.rank()))) - a.rank();
        return push(amin(a, axis, chance() < 0.5));
      }
      case 1: {
        // cond is a constant of 0s and 1s from the seed, broadcasting with both branches.
        const Tensor b = partner(a);
        const Shape both = broadcast_shapes(a.shape(), b.shape(), "where");
        const Shape cs = fitting(both);
        std::vector<double> cond(std::size_t(cs.numel()));
        for (double& v : cond) v = chance() < 0.5 ? 1 : 0;
        return push(where(constant(cs, std::move(cond)), a, b));
      }
      default: {
        // (B, m, k) @ (B, k, n) or @ (k, n): a batch of B = 2 when m is even, else of 1.
        const Tensor m = matrix(a);
        const std::int64_t rows = m.shape()[0], k = m.shape()[1];
        const std::int64_t batch = rows % 2 == 0 ? 2 : 1;
        const Tensor x = reshape(m, Shape{batch, rows / batch, k});
        const std::int64_t max_cols = std::max<std::int64_t>(1, max_elements_ / rows);
        if (chance() < 0.5) return push(matmul(x, matrix_with(k, max_cols)));
        const Tensor w = matrix_with(batch * k, max_cols);
        return push(matmul(x, reshape(w, Shape{batch, k, w.shape()[1]})));
      }
    }
  }

  void unary_step() {
    static constexpr Op kUnary[] = {Op::neg,  Op::pow_scalar, Op::exp,     Op::log,
                                    Op::sqrt, Op::abs,        Op::sigmoid, Op::tanh,
                                    Op::relu, Op::leaky_relu, Op::elu,     Op::softplus};
    const Op op = pick(kUnary);
    Tensor a = operand();
    double param = op_info(op).default_param;
    if (op == Op::pow_scalar) {
      static constexpr double kExponents[] = {2, 3, 0.5, -1, 1.5, -2};
      param = pick(kExponents);
      if (param < 0 || param != std::floor(param)) a = positive(a);
    }
    if (op == Op::log || op == Op::sqrt) a = positive(a);
    if ((op == Op::leaky_relu || op == Op::elu) && chance() < 0.5) {
      static constexpr double kAlphas[] = {0.2, 1.5, -0.1};
      param = pick(kAlphas);
    }
    // apply() and the named functions record the same nodes: both ways are used.
    if (chance() < 0.5) return push(apply(op, a, param));
    switch (op) {
      case Op::neg: return push(-a);
      case Op::pow_scalar: return push(pow(a, param));
      case Op::exp: return push(exp(a));
      case Op::log: return push(log(a));
      case Op::sqrt: return push(sqrt(a));
      case Op::abs: return push(abs(a));
      case Op::sigmoid: return push(sigmoid(a));
      case Op::tanh: return push(tanh(a));
      case Op::relu: return push(relu(a));
      case Op::leaky_relu: return push(leaky_relu(a, param));
      case Op::elu: return push(elu(a, param));
      default: return push(softplus(a));
    }
  }

  void binary_step() {
    static constexpr Op kBinary[] = {Op::add, Op::sub, Op::mul,   Op::div,
                                     Op::pow, Op::max, Op::prelu, Op::bce};
    const Op op = pick(kBinary);
    Tensor a = operand();
    if (op == Op::prelu) {
      // alpha: one slope (), or one per feature (F,) for a's last axis F.
      const std::int64_t f = a.rank() > 0 && chance() < 0.6 ? a.shape()[a.rank() - 1] : 1;
      Tensor alpha = matrix_with(1, f);
      alpha = alpha.numel() == f ? reshape(alpha, f == 1 && chance() < 0.5 ? Shape{} : Shape{f})
                                 : constant(Shape{f}, -0.5, 0.5);
      return push(chance() < 0.5 ? prelu(a, alpha) : apply(op, a, alpha));
    }
    // A number for the other operand, now and then: a constant of shape ().
    if (op <= Op::div && chance() < 0.2) {
      const double x = number(0.5, 2);
      switch (op) {
        case Op::add: return push(chance() < 0.5 ? a + x : x + a);
        case Op::sub: return push(chance() < 0.5 ? a - x : x - a);
        case Op::mul: return push(chance() < 0.5 ? a * x : x * a);
        default: return push(chance() < 0.5 ? a / x : x / positive(a));
      }
    }
    if (op == Op::max && chance() < 0.2) return push(max(a, number(-1, 1)));
    Tensor b = partner(a);
    if (op == Op::div) b = chance() < 0.7 ? positive(b) : -positive(b);
    if (op == Op::pow) a = positive(a);
    if (op == Op::bce) {
      a = sigmoid(a);
      b = b.requires_grad() ? sigmoid(b) : constant(b.shape(), 0, 1);  // a target in [0, 1]
    }
    if (chance() < 0.5) return push(apply(op, a, b));
    switch (op) {
      case Op::add: return push(a + b);
      case Op::sub: return push(a - b);
      case Op::mul: return push(a * b);
      case Op::div: return push(a / b);
      case Op::pow: return push(pow(a, b));
      case Op::max: return push(max(a, b));
      default: return push(bce(a, b));
    }
  }

  void matmul_step() {
    const Tensor a = matrix(operand());
    const std::int64_t m = a.shape()[0], k = a.shape()[1];
    Tensor b = chance() < 0.2 && m * m <= max_elements_ ? transpose(a)  // a a^T: one input twice
                                                        : matrix_with(k, max_elements_ / m);
    push(matmul(a, b));
  }

  void linear_step() {
    const Tensor x = matrix(operand());
    const std::int64_t in = x.shape()[1];
    // The weight (out, in) as a reshaped tensor of out * in elements: matrix_with gives
    // (in, out), whose transpose is not what linear reads, so reshape its elements instead.
    Tensor w = matrix_with(in, std::max<std::int64_t>(1, max_elements_ / x.shape()[0]));
    const std::int64_t out = w.shape()[1];
    w = reshape(w, Shape{out, in});
    Tensor bias;
    if (chance() < 0.7) {
      bias = matrix_with(1, out);
      bias = bias.numel() == out ? reshape(bias, Shape{out}) : constant(Shape{out}, -1, 1);
    }
    push(linear(x, w, bias));
  }

  void shape_step() {
    const Tensor a = operand();
    if (a.rank() >= 1 && chance() < 0.5) return select_step(a);
    if (a.rank() >= 2 && chance() < 0.4) return push(transpose(a));
    // A random factorisation of the element count into 0 to 3 axes.
    const std::int64_t n = a.numel();
    const int rank = n == 1 ? int(rng_.below(4)) : 1 + int(rng_.below(3));
    std::int64_t dims[3];
    std::int64_t left = n;
    for (int j = 0; j + 1 < rank; ++j) {
      std::vector<std::int64_t> divisors;
      for (std::int64_t d = 1; d <= left; ++d)
        if (left % d == 0) divisors.push_back(d);
      dims[j] = divisors[rng_.below(divisors.size())];
      left /= dims[j];
    }
    if (rank > 0) dims[rank - 1] = left;
    if (rank == 2 && chance() < 0.5) return push(reshape(a, {dims[0], -1}));
    push(reshape(a, Shape(std::span<const std::int64_t>(dims, std::size_t(rank)))));
  }

  // cat, stack, slice, index_select, gather, or transpose of any two axes, along a random axis
  // of `a` (rank >= 1; no step records an empty tensor).
  void select_step(const Tensor& a) {
    const Shape s = a.shape();  // a copy: recording nodes may move the tape's records
    const int axis = int(rng_.below(std::uint64_t(s.rank())));
    const std::int64_t length = s[axis];
    const auto index_in = [&](std::int64_t count) {
      std::vector<std::int64_t> index(static_cast<std::size_t>(count));
      for (std::int64_t& i : index) i = std::int64_t(rng_.below(std::uint64_t(length)));
      return index;
    };
    switch (rng_.below(6)) {
      case 0: {  // cat with a itself, another tensor or a constant fitting off the axis
        Shape other = s;
        other[axis] = 1 + std::int64_t(rng_.below(2));
        Tensor b = chance() < 0.3 ? a : partner_of_shape(other);
        return push(chance() < 0.5 ? cat({a, b}, axis - (chance() < 0.5 ? s.rank() : 0))
                                   : cat({b, a, a, b}, axis));
      }
      case 1: {  // stack along a new axis, anywhere in [0, rank]
        const int at = int(rng_.below(std::uint64_t(s.rank()) + 1));
        return push(stack({a, partner_of_shape(s), a}, at));
      }
      case 2: {  // Python's slice: bounds in [-length - 1, length + 1], step 1 to 3
        const auto bound = [&] {
          return std::int64_t(rng_.below(std::uint64_t(2 * length + 3))) - length - 1;
        };
        const auto clamped = [&](std::int64_t v) {
          return std::clamp<std::int64_t>(v < 0 ? v + length : v, 0, length);
        };
        std::int64_t start = bound(), stop = bound();
        if (clamped(stop) <= clamped(start)) start = -1, stop = length + 1;  // the last element:
        // an empty tensor would leave the later steps (amax, pick, matmul) nothing to work on
        return push(slice(a, axis, start, stop, 1 + std::int64_t(rng_.below(3))));
      }
      case 3: return push(index_select(a, axis, index_in(1 + std::int64_t(rng_.below(4)))));
      case 4: {  // gather: an index no longer than a off the axis, 1 to 3 long on it
        Shape index_shape = s;
        for (int d = 0; d < s.rank(); ++d)
          index_shape[d] = d == axis ? 1 + std::int64_t(rng_.below(3))
                                     : 1 + std::int64_t(rng_.below(std::uint64_t(s[d])));
        return push(gather(a, axis, index_in(index_shape.numel()), index_shape));
      }
      default: {
        const int other = int(rng_.below(std::uint64_t(s.rank())));
        return push(transpose(a, axis, other - (chance() < 0.5 ? s.rank() : 0)));
      }
    }
  }

  // A tensor of shape s: one recorded so far, or a constant.
  Tensor partner_of_shape(const Shape& s) {
    for (Entry& e : live_)
      if (e.t.shape() == s && chance() < 0.5) {
        e.used = true;
        return e.t;
      }
    return constant(s, -2, 2);
  }

  void reduce_step() {
    const Tensor a = operand();
    const int kind = int(rng_.below(3));  // sum, mean, amax
    if (a.rank() == 0 || (kind < 2 && chance() < 0.3))
      return push(kind == 1 ? mean(a) : sum(a));  // amax has no all-axes form
    const int axis = int(rng_.below(std::uint64_t(2 * a.rank()))) - a.rank();  // -rank .. rank-1
    const bool keep = chance() < 0.5;
    if (kind == 0) return push(sum(a, axis, keep));
    if (kind == 1) return push(mean(a, axis, keep));
    push(amax(a, axis, keep));
  }

  void softmax_step() {
    Tensor a = operand();
    if (a.rank() == 0) a = reshape(a, {1});
    const int axis = int(rng_.below(std::uint64_t(2 * a.rank()))) - a.rank();
    push(chance() < 0.5 ? softmax(a, axis) : log_softmax(a, axis));
  }

  std::vector<std::int32_t> labels(const Tensor& scores) {
    std::vector<std::int32_t> index(std::size_t(scores.shape()[0]));
    for (std::int32_t& i : index) i = std::int32_t(rng_.below(std::uint64_t(scores.shape()[1])));
    return index;
  }

  void pick_step() {
    const Tensor a = matrix(operand());
    push(ag::pick(a, labels(a)));
  }

  void loss_step() {
    const Tensor a = operand();
    const nn::Reduction r = chance() < 0.5 ? nn::Reduction::mean : nn::Reduction::sum;
    // A target of a's shape: another tensor of that shape (which then gets a gradient too), or
    // a constant in [low, high].
    auto target = [&](double low, double high, bool squash) {
      for (Entry& e : live_)
        if (e.t.id() != a.id() && e.t.shape() == a.shape() && chance() < 0.5) {
          e.used = true;
          return squash ? sigmoid(e.t) : e.t;
        }
      return constant(a.shape(), low, high);
    };
    switch (rng_.below(5)) {
      case 0: return push(nn::mse_loss(a, target(-2, 2, false), r));
      case 1: return push(nn::bce_loss(sigmoid(a), target(0, 1, true), r));
      case 2: return push(nn::bce_with_logits(a, target(0, 1, true), r));
      case 3: {
        const Tensor scores = matrix(a);
        return push(nn::cross_entropy(scores, labels(scores), r));
      }
      default: {
        // Labels -1 and +1, as micrograd's moons have them.
        std::vector<double> y(std::size_t(a.numel()));
        for (double& v : y) v = chance() < 0.5 ? -1.0 : 1.0;
        return push(nn::hinge_loss(a, constant(a.shape(), std::move(y)), r));
      }
    }
  }

  Rng rng_;
  TensorTape& tape_;
  std::vector<Entry> live_;
  std::int64_t max_elements_ = 48;  // a matmul's output at most: keeps central differences cheap
  bool large_ = false;              // inputs of the large kind: matmul and linear half the time
};

// ---- the checks ----------------------------------------------------------------------------

// A recorded graph at one point: the largest |value| of a node that depends on an input, and
// whether central differences can be trusted there (property.hpp), element by element.
struct Point {
  double scale = 0;
  PointCheck check;
};

Point inspect(const TensorTape& tape) {
  Point p;
  for (NodeId id = 0; id < tape.size(); ++id) {
    if (!tape.needs_grad(id)) continue;
    const Shape& shape = tape.shape(id);
    for (std::int64_t i = 0; i < shape.numel(); ++i) {
      p.check.value(tape.value(id, i));
      p.scale = std::max(p.scale, std::abs(tape.value(id, i)));
    }
    if (tape.op(id) == TOp::elementwise) {
      const Op op = tape.elementwise_op(id);
      const NodeId a = tape.input_of(id, 0);
      const bool binary = op_info(op).arity == 2;
      const NodeId b = binary ? tape.input_of(id, 1) : a;
      for (std::int64_t i = 0; i < shape.numel(); ++i)
        p.check.elementwise(op, tape.value(a, property::source(shape, tape.shape(a), i)),
                            binary ? tape.value(b, property::source(shape, tape.shape(b), i)) : 0.0,
                            tape.param(id));
    } else if (tape.op(id) == TOp::amax || tape.op(id) == TOp::amin) {
      // The maximum along the axis (or over all) and the runner-up below it; elements equal to
      // the maximum (a broadcast axis) are a tie that must stay one. amin: the same, negated.
      const NodeId a = tape.input_of(id, 0);
      const Shape& in = tape.shape(a);
      const int axis = tape.axis(id);
      const double sign = tape.op(id) == TOp::amin ? -1 : 1;
      std::int64_t inner = 1;
      if (axis != kAllAxes)
        for (int j = axis + 1; j < in.rank(); ++j) inner *= in[j];
      const std::int64_t length = axis == kAllAxes ? in.numel() : in[axis];
      const std::int64_t outer = in.numel() / (length * inner);
      for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t i = 0; i < inner; ++i) {
          auto at = [&](std::int64_t l) {
            return sign * tape.value(a, (o * length + l) * inner + i);
          };
          double best = at(0), second = -INFINITY;
          std::int64_t arg = 0, ties = 1;
          for (std::int64_t l = 1; l < length; ++l) {
            const double v = at(l);
            if (v > best)
              second = best, best = v, arg = l, ties = 1;
            else if (v == best)
              ++ties;
            else
              second = std::max(second, v);
          }
          p.check.kink(std::isinf(second) ? 0 : best - second, double(arg * 100 + ties));
        }
    }
  }
  return p;
}

std::string describe(const TensorTape& tape, std::span<const TensorArg> args) {
  std::string text;
  for (std::size_t k = 0; k < args.size(); ++k)
    text += fmt::format("\n  input {}: {} = {}", k, args[k].shape.str(),
                        format_nested(args[k].shape, [&](std::int64_t i) {
                          return args[k].values[std::size_t(i)];
                        }));
  text += "\n  graph:";
  for (NodeId id = 0; id < tape.size(); ++id)
    if (tape.op(id) != TOp::constant) text += "\n    " + forward_line(tape, id);
  return text;
}

// The same number, or both NaN.
bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// One case's inputs and graph: the seed of its GraphBuilder, the inputs' shapes and values.
struct Case {
  Rng rng;
  std::vector<TensorArg> args;
  std::uint64_t graph;

  explicit Case(std::uint64_t seed) : rng(seed), args(random_inputs(rng)), graph(rng.next()) {
    sample(rng, args);
  }
  std::vector<Tensor> inputs(TensorTape& tape) const {
    std::vector<Tensor> x;
    for (const TensorArg& a : args) x.push_back(tape.input<double>(a.shape, a.values));
    return x;
  }
};

// Every input element's gradient against central differences (through ag::gradcheck, which
// seeds backward with fixed weights when the output has several elements). A third of the cases
// differentiate a node inside the graph instead of its output, after a backward pass from the
// output: backward may start from any node, on a used tape too.
property::Outcome central_differences(std::uint64_t seed, property::Tally& tally) {
  Case c(seed);
  const bool inner = c.graph % 3 == 0;
  auto build = [&](TensorTape& tape, std::span<const Tensor> x) {
    const Tensor y = GraphBuilder(c.graph, x).build();
    if (!inner) return y;
    std::vector<NodeId> ops;
    for (NodeId id = 0; id < tape.size(); ++id)
      if (tape.needs_grad(id) && tape.arity(id) > 0) ops.push_back(id);
    if (ops.empty()) return y;
    tape.backward(y, std::vector<double>(std::size_t(y.numel()), 1.0));
    tape.zero_grad();
    return tape.handle(ops[Rng(c.graph).below(ops.size())]);
  };
  Skip why = Skip::none;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0) sample(c.rng, c.args);
    TensorTape tape;
    const Tensor y = build(tape, c.inputs(tape));
    const Point base = inspect(tape);
    if (base.check.skip != Skip::none) {
      why = base.check.skip;
      continue;
    }
    // Every point the central differences evaluate must keep each kink argument on its side.
    bool crossed = false;
    auto checked = [&](TensorTape& t, std::span<const Tensor> x) {
      const Tensor out = build(t, x);
      const Point p = inspect(t);
      crossed |= p.check.sides != base.check.sides || p.check.skip == Skip::domain ||
                 p.check.skip == Skip::range;
      return out;
    };
    const GradcheckResult r =
        gradcheck(checked, std::span<const TensorArg>(c.args), {.eps = property::kStep});
    if (crossed) {
      why = Skip::crossing;
      continue;
    }
    // The numeric side sums the output's elements with weights up to 1.5: its rounding grows
    // with their count.
    const double scale = base.scale * double(1 + y.numel());
    std::string mismatches;
    for (std::size_t i = 0; i < r.analytic.size(); ++i) {
      const double ratio = property::error_ratio(r.analytic[i], r.numeric[i], scale);
      tally.error(ratio);
      if (ratio > 1)
        mismatches += fmt::format(
            "\n  element {} of the inputs: backward {}, central difference {} ({:.3g} times the "
            "tolerance)",
            i, r.analytic[i], r.numeric[i], ratio);
    }
    return property::Outcome{
        Skip::none, r.analytic.size(),
        mismatches.empty() ? ""
                           : fmt::format("backward and central differences disagree{}\n  "
                                         "differentiated: {}{}",
                                         describe(tape, c.args), tape.label(y.id()), mismatches)};
  }
  return property::Outcome{why, 0, {}};
}

// Note [The Stepper is backward] and Note [Gradient semantics], on tensor tapes: a detailed
// TensorStepper (which also measures each contribution) computes exactly what backward computes;
// a second backward recomputes every intermediate gradient (exactly the same) and adds the
// leaves' gradients again. A leaf adds each contribution to what it holds, ((g + c1) + c2) +
// ..., which is 2g but for the rounding of those additions where several reach one element.
// Half the leaves are parameters, whose data and gradient live outside the tape (nn::Parameter's
// way, Note [Tensor storage]): they get exactly the gradients inputs get.
property::Outcome stepper_and_twice(std::uint64_t seed, property::Tally& tally) {
  Case c(seed);
  TensorTape tape, reference;
  std::vector<std::vector<double>> data(c.args.size()), grad(c.args.size());
  std::vector<Tensor> leaves;
  for (std::size_t k = 0; k < c.args.size(); ++k) {
    const TensorArg& a = c.args[k];
    if (c.rng.uniform() < 0.5) {
      leaves.push_back(tape.input<double>(a.shape, a.values));
      continue;
    }
    data[k] = a.values;
    grad[k].assign(a.values.size(), 0.0);
    leaves.push_back(tape.parameter<double>(a.shape, data[k].data(), grad[k].data()));
  }
  const Tensor y = GraphBuilder(c.graph, leaves).build();
  std::vector<double> weights;
  for (std::int64_t i = 0; i < y.numel(); ++i) weights.push_back(c.rng.uniform(0.5, 1.5));
  reference.backward(GraphBuilder(c.graph, c.inputs(reference)).build(), weights);
  auto grads = [](TensorTape& t) {
    std::vector<std::vector<double>> g;
    for (NodeId id = 0; id < t.size(); ++id) g.push_back(t.handle(id).grads());
    return g;
  };
  const auto inputs_only = grads(reference);
  TensorStepper stepper = tape.stepper(y, weights);
  while (stepper.next()) {
  }
  const auto stepped = grads(tape);
  tape.zero_grad();
  tape.backward(y, weights);
  const auto once = grads(tape);
  tape.backward(y, weights);
  const auto twice = grads(tape);
  // The rounding of adding contributions again: relative to the largest gradient and value on
  // the tape, which bound a contribution's size; a gradient left over from the first pass, or
  // one added twice, is off by a whole contribution.
  double largest = 0, value = 0;
  for (NodeId id = 0; id < tape.size(); ++id) {
    for (double g : once[id])
      if (std::isfinite(g)) largest = std::max(largest, std::abs(g));
    for (double v : tape.handle(id).values())
      if (std::isfinite(v)) value = std::max(value, std::abs(v));
  }
  const double tolerance =
      64 * std::numeric_limits<double>::epsilon() * (1 + largest) * (1 + value);
  std::string problems;
  std::size_t compared = 0;
  for (NodeId id = 0; id < tape.size(); ++id) {
    const bool input = tape.op(id) == TOp::input || tape.op(id) == TOp::parameter;
    compared += once[id].size();
    for (std::size_t i = 0; i < once[id].size(); ++i) {
      if (!same(stepped[id][i], once[id][i]))
        problems += fmt::format("\n  {} element {}: {} after stepping, {} after backward",
                                tape.label(id), i, stepped[id][i], once[id][i]);
      if (!same(once[id][i], inputs_only[id][i]))
        problems += fmt::format("\n  {} element {}: {} with parameters, {} with inputs only",
                                tape.label(id), i, once[id][i], inputs_only[id][i]);
      const double expected = input ? 2 * once[id][i] : once[id][i];
      if (input && std::isfinite(expected))
        tally.error(std::abs(twice[id][i] - expected) / tolerance);
      if (!same(twice[id][i], expected) &&
          !(input && std::abs(twice[id][i] - expected) <= tolerance))
        problems += fmt::format("\n  {} element {}: {} after two backward passes, expected {}",
                                tape.label(id), i, twice[id][i], expected);
    }
  }
  return property::Outcome{
      Skip::none, compared,
      problems.empty()
          ? ""
          : "the stepper or a second backward went wrong:" + problems + describe(tape, c.args)};
}

// The kernels are templates on the element type, and float32 is what training uses: the same
// graph recorded in float32 gives float64's values and gradients to within float32's rounding.
// The inputs are rounded to float32 for both, the constants are float32 numbers already.
property::Outcome float32(std::uint64_t seed, property::Tally& tally) {
  Case c(seed);
  TensorTape t64, t32;
  std::vector<Tensor> x64, x32;
  Tensor y64, y32;
  Point p64;
  Skip why = Skip::none;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0) sample(c.rng, c.args);
    t64.reset();
    t32.reset();
    x64.clear();
    x32.clear();
    for (TensorArg& a : c.args) {
      const std::vector<float> f(a.values.begin(), a.values.end());
      a.values.assign(f.begin(), f.end());
      x64.push_back(t64.input<double>(a.shape, a.values));
      x32.push_back(t32.input<float>(a.shape, f));
    }
    y64 = GraphBuilder(c.graph, x64).build();
    y32 = GraphBuilder(c.graph, x32).build();
    p64 = inspect(t64);
    const Point p32 = inspect(t32);
    why = p64.check.skip != Skip::none ? p64.check.skip
          : p32.check.sides != p64.check.sides || p32.check.skip == Skip::range
              ? Skip::crossing  // float32's rounding moved a kink argument across
              : Skip::none;
    if (why == Skip::none) break;
  }
  if (why != Skip::none) return property::Outcome{why, 0, {}};
  std::vector<double> weights;
  for (std::int64_t i = 0; i < y64.numel(); ++i) weights.push_back(c.rng.uniform(0.5, 1.5));
  t64.backward(y64, weights);
  t32.backward(y32, weights);
  // float32 carries 24 bits, and a case of a few dozen ops loses a few of them; a wrong kernel
  // loses them all. Where terms cancel, their rounding stays: a contribution is about a gradient
  // times a value, so the bound has a floor at the largest of those on the tape.
  double largest = 0;
  for (NodeId id = 0; id < t64.size(); ++id)
    for (double g : t64.handle(id).grads())
      if (std::isfinite(g)) largest = std::max(largest, std::abs(g));
  constexpr double kEpsilon = std::numeric_limits<float>::epsilon();
  std::string problems;
  std::size_t compared = 0;
  auto compare = [&](double a32, double a64, double scale, const std::string& what) {
    const double tolerance = 1e-4 * std::abs(a64) + 64 * kEpsilon * (1 + scale) * (1 + p64.scale);
    const double ratio = std::abs(a32 - a64) / tolerance;
    tally.error(ratio);
    ++compared;
    if (ratio > 1) problems += fmt::format("\n  {}: float32 {}, float64 {}", what, a32, a64);
  };
  for (std::int64_t i = 0; i < y64.numel(); ++i)
    compare(y32.value(i), y64.value(i), 0, fmt::format("output element {}", i));
  for (std::size_t k = 0; k < x64.size(); ++k)
    for (std::int64_t i = 0; i < x64[k].numel(); ++i)
      compare(x32[k].grad_at(i), x64[k].grad_at(i), largest,
              fmt::format("d/d(input {}) element {}", k, i));
  return property::Outcome{
      Skip::none, compared,
      problems.empty() ? "" : "float32 and float64 disagree" + describe(t64, c.args) + problems};
}

constexpr const char* kExecutable = "test_tensor_property";

}  // namespace

TEST_CASE("random tensor graphs: backward agrees with central differences") {
  property::run("random tensor graphs, backward against central differences", kExecutable,
                "random tensor graphs: backward agrees*", 2000, central_differences);
}

TEST_CASE("random tensor graphs: the stepper is backward; backward twice doubles leaves' grads") {
  property::run("random tensor graphs, step by step and backward twice", kExecutable,
                "random tensor graphs: the stepper is backward*", 1000, stepper_and_twice);
}

TEST_CASE("random tensor graphs: float32 gives float64's values and gradients") {
  property::run("random tensor graphs, float32 against float64", kExecutable,
                "random tensor graphs: float32*", 2000, float32);
}
