// The tensor op entries (Note [The tensor op table], tensor_ops.hpp): for each op, its
// user-facing function, forward, backward, formatted text and anomaly operands, side by side.

#include "tensor_ops.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "anomaly_index.hpp"
#include "broadcast.hpp"
#include "product_kernels.hpp"
#include "tapegrad/format.hpp"

namespace ag {

using namespace anomaly_index;

// The table's leaf flags and is_leaf(TOp) (tensor.hpp, used on the hot path) say the same.
static_assert([] {
  for (int k = 0; k <= int(kLastTOp); ++k)
    if (top_info(TOp(k)).leaf != is_leaf(TOp(k))) return false;
  return true;
}());

std::string_view top_name(TOp op) { return top_info(op).name; }

std::string_view node_op_name(const TensorTape& tape, NodeId id) {
  const TOp op = tape.op(id);
  return op == TOp::elementwise ? op_info(tape.elementwise_op(id)).name : top_info(op).name;
}

std::string_view node_symbol(const TensorTape& tape, NodeId id) {
  const TOp op = tape.op(id);
  return op == TOp::elementwise ? op_info(tape.elementwise_op(id)).symbol : top_info(op).symbol;
}

// ---- recording helpers ------------------------------------------------------------

namespace {

// The tape and checked node of an operand.
struct Operand {
  TensorTape* tape;
  NodeId id;
};

// t.tape() throws for an empty or stale handle (it names the "Tensor"), so t needs no second
// check naming the op; check_same names the op for the other operand.
Operand operand(const Tensor& t, std::string_view) { return {&t.tape(), t.id()}; }

// b is live, on a's tape, and of a's dtype. Reads the nodes directly: the Tensor accessors are
// exported functions, which even this file calls through the PLT.
void check_same(const Operand& a, const Tensor& b, std::string_view op) {
  a.tape->check(b, op);
  const auto& nodes = Recorder::impl(*a.tape).nodes;
  const DType da = nodes[a.id].dtype, db = nodes[b.id()].dtype;
  if (da != db) fail("{}: dtype mismatch: {} and {}", op, dtype_name(da), dtype_name(db));
}

// An axis split as (outer, length, inner): element (o, l, i) is at
// (o * length + l) * inner + i. Reductions and softmax walk it.
struct AxisSplit {
  std::int64_t outer = 1, length = 1, inner = 1;
  AxisSplit(const Shape& s, int axis) {
    for (int i = 0; i < axis; ++i) outer *= s[i];
    length = s[axis];
    for (int i = axis + 1; i < s.rank(); ++i) inner *= s[i];
  }
};

Shape reduced_shape(const Shape& s, int axis, bool keepdims) {
  std::int64_t dims[kMaxRank];
  int r = 0;
  for (int i = 0; i < s.rank(); ++i) {
    if (i != axis)
      dims[r++] = s[i];
    else if (keepdims)
      dims[r++] = 1;
  }
  return Shape(std::span<const std::int64_t>(dims, std::size_t(r)));
}

std::string label_of_input(const TensorTape& tape, NodeId id, int k) {
  return tape.label(tape.input_of(id, k));
}

// The anomaly operand "input k" at `index`.
AnomalyOperand input_operand(const TensorTape& tape, NodeId id, int k,
                             std::vector<std::int64_t> index) {
  return tensor_operand(tape, fmt::format("input {}", k), tape.input_of(id, k), std::move(index));
}

// The anomaly operand "upstream": node id's own gradient at `index`.
void add_upstream(const TensorTape& tape, NodeId id, std::vector<std::int64_t> index,
                  Anomaly& report) {
  report.operands.push_back(tensor_operand(tape, "upstream", id, std::move(index), true));
}

}  // namespace

// ---- create_graph: backward written with the tape's own ops ------------------------------
// Note [Tensor gradients on the tape] (tensor_tape.cpp). Each entry's backward_graph is in its
// section below; these are what they share.

// A rule's local derivatives at the recorded elements, as constants of the result's shape: the
// local_graph of a row whose derivative is constant near every point but its kinks (Note [Local
// derivatives on the tape], ops.hpp). value.hpp's constant_local for the scalar tape; here in
// namespace ag, not an unnamed one, as the rules find it by argument-dependent lookup.
template <class Rule>
static Local<Tensor> constant_local(Rule, const Tensor& a, const Tensor& b, const Tensor& y,
                                    double param) {
  TensorTape& tape = a.tape();
  const Shape shape = y.shape();
  const TensorOptions options{.dtype = a.dtype()};
  const Tensor da = zeros(tape, shape, options);
  const Tensor db = Rule::info.arity == 2 ? zeros(tape, shape, options) : Tensor{};
  auto& impl = Recorder::impl(tape);
  with_dtype(a.dtype(), [&](auto z) {
    using T = decltype(z);
    T* out_a = static_cast<T*>(impl.nodes[da.id()].data);
    const T* va = a.data<T>().data();
    const T* vy = y.data<T>().data();
    if constexpr (Rule::info.arity == 2) {
      T* out_b = static_cast<T*>(impl.nodes[db.id()].data);
      const T* vb = b.data<T>().data();
      for_each_broadcast(shape, a.shape(), b.shape(),
                         [&](std::int64_t i, std::int64_t ia, std::int64_t ib) {
                           const Local<T> l = Rule::local(va[ia], vb[ib], vy[i], T(param));
                           out_a[i] = l.da;
                           out_b[i] = l.db;
                         });
    } else {
      for (std::int64_t i = 0, e = shape.numel(); i < e; ++i)
        out_a[i] = Rule::local(va[i], T(0), vy[i], T(param)).da;
    }
  });
  return {da, db};
}

namespace {

// g summed over the axes it was broadcast along, back to `shape`: Note [Broadcasting]'s
// accumulation, recorded with sum nodes.
Tensor sum_to(Tensor g, const Shape& shape) {
  while (g.rank() > shape.rank()) g = sum(g, 0);
  for (int axis = 0; axis < shape.rank(); ++axis)
    if (shape[axis] == 1 && g.shape()[axis] != 1) g = sum(g, axis, true);
  return g;
}

// A constant of `shape` whose element i is value(i): the masks that pick's and amax's recorded
// backwards multiply by. A constant, as their derivative is 0 wherever it exists: the mask
// depends on which element was chosen, not on how much.
template <class F>
Tensor constant_from(TensorTape& tape, const Shape& shape, DType dtype, F&& value) {
  const Tensor mask = zeros(tape, shape, {.dtype = dtype});
  auto& impl = Recorder::impl(tape);
  with_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    T* out = static_cast<T*>(impl.nodes[mask.id()].data);
    for (std::int64_t i = 0, e = shape.numel(); i < e; ++i) out[i] = T(value(i));
  });
  return mask;
}

// Note [Selections differentiate as gathers]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// slice, index_select and gather read each output element p from one input element, its
// source(p); their vector-Jacobian product adds up[p] into da[source(p)]: a scatter-add, which
// no op on the tape does. It is recorded as gathers instead. With the upstream flattened and a
// zero appended (at position numel), pass r reads for each input element the r-th output
// element that read it, or the zero, through index_select; da is the sum of R such passes, R
// the most times one element was read (1, unless an index repeats). index_select's own recorded
// backward is this again, so a selection differentiates to any order. Each pass costs one
// element per input element: O(R * numel), never a dense Jacobian.
Tensor scatter_to(const Tensor& upstream, const Shape& in, std::span<const std::int64_t> source) {
  TensorTape& tape = upstream.tape();
  const DType dtype = upstream.dtype();
  const auto zero = std::int64_t(source.size());  // where the appended zero sits
  std::vector<std::int64_t> times_read(std::size_t(in.numel()), 0);
  std::vector<std::vector<std::int64_t>> passes;
  for (std::int64_t p = 0; p < zero; ++p) {
    std::int64_t& r = times_read[std::size_t(source[std::size_t(p)])];
    if (std::size_t(r) == passes.size()) passes.emplace_back(std::size_t(in.numel()), zero);
    passes[std::size_t(r++)][std::size_t(source[std::size_t(p)])] = p;
  }
  if (passes.empty()) return zeros(tape, in, {.dtype = dtype});  // nothing was read
  const Tensor padded = cat({reshape(upstream, {zero}), zeros(tape, Shape{1}, {.dtype = dtype})});
  Tensor flat;
  for (const std::vector<std::int64_t>& pass : passes) {
    const Tensor term = index_select(padded, 0, pass);
    flat = flat.empty() ? term : flat + term;
  }
  return reshape(flat, in);
}

// Where each element of a selection along `split`'s axis was read from (scatter_to's source):
// the output's entry j on that axis read the input's entry row(j); `count` entries in all.
template <class Row>
std::vector<std::int64_t> selection_sources(const AxisSplit& split, std::int64_t count, Row row) {
  std::vector<std::int64_t> source(std::size_t(split.outer * count * split.inner));
  for (std::int64_t o = 0; o < split.outer; ++o)
    for (std::int64_t j = 0; j < count; ++j)
      for (std::int64_t i = 0; i < split.inner; ++i)
        source[std::size_t((o * count + j) * split.inner + i)] =
            (o * split.length + row(j)) * split.inner + i;
  return source;
}

}  // namespace

// ---- leaves: input, parameter, constant ------------------------------------------------
// Recorded by TensorTape::input, ::parameter, ::constant and the creation functions
// (tensor_tape.cpp). Nothing to compute forward, nothing to pass back: their gradient is where
// backward stops (Note [Gradient semantics]).

namespace tensor_ops {

std::string Leaf::expression(const TensorTape& tape, NodeId id) { return tape.label(id); }

}  // namespace tensor_ops

// ---- elementwise: the op table's rules (ops.hpp) over arrays -----------------------------
// out = R::forward(a, b, param) per element, broadcasting as NumPy (Note [Broadcasting]);
// da += up * R::local(...).da, db += up * R::local(...).db through the same walk.

namespace {

// Note [Elementwise loops in AVX2]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The library is compiled for the x86-64 baseline, so GCC vectorizes an elementwise loop in
// 16-byte SSE2 registers: relu's forward and backward over moons' 100x16 activations were a
// seventh of its step. The flat loops (a unary op's forward, and a backward whose gradients
// need no broadcast walk) are therefore compiled a second time for AVX2 (8 floats a vector) and
// taken when the products take the AVX2 or AVX-512 kernel (kernels::simd(), so TAPEGRAD_SIMD=sse2
// keeps the baseline loops) and the tensor holds at least 256 bytes (64 floats): deep XOR's 4x10
// activations paid 1.1% more instructions a step through the second loop's call and set-up than
// its vectors saved. The target is "avx2" without "fma": with no fused multiply-add to contract
// into, every element is the same IEEE operations in the same order in both, so both give the
// same bits (a test compares 77 floats with each one alone, under every TAPEGRAD_SIMD).
template <class R, class T>
[[gnu::always_inline]] inline void unary_forward_loop(const T* pa, T* out, std::int64_t e, T p) {
  for (std::int64_t i = 0; i < e; ++i) out[i] = R::forward(pa[i], T(0), p);
}

#ifdef TAPEGRAD_AVX2  // x86-64 only (Note [Products without BLAS]); elsewhere the loops above
inline bool elementwise_in_avx2(std::int64_t bytes) {
  return bytes >= 256 && kernels::simd() != kernels::Simd::sse2;
}

template <class R, class T>
[[gnu::target("avx2")]] void unary_forward_avx2(const T* pa, T* out, std::int64_t e, T p) {
  unary_forward_loop<R, T>(pa, out, e, p);
}
#endif

template <class R> void elementwise_forward(TensorTape::Impl& impl, Node& n) {
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const Node& a = impl.nodes[n.in[0]];
    const T* pa = static_cast<const T*>(a.data);
    T* out = static_cast<T*>(n.data);
    const T p = T(n.param);
    if constexpr (R::info.arity == 1) {
      const std::int64_t e = n.shape.numel();
#ifdef TAPEGRAD_AVX2
      if (elementwise_in_avx2(e * std::int64_t(sizeof(T))))
        return unary_forward_avx2<R, T>(pa, out, e, p);
#endif
      unary_forward_loop<R, T>(pa, out, e, p);
    } else {
      const Node& b = impl.nodes[n.in[1]];
      const T* pb = static_cast<const T*>(b.data);
      for_each_broadcast(n.shape, a.shape, b.shape,
                         [&](std::int64_t i, std::int64_t ia, std::int64_t ib) {
                           out[i] = R::forward(pa[ia], pb[ib], p);
                         });
    }
  });
}

template <class R> Tensor unary(Tensor a, double param = R::info.default_param) {
  const Operand x = operand(a, R::info.name);
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const DType dt = impl.nodes[x.id].dtype;
  const Shape shape = impl.nodes[x.id].shape;
  const NodeId id = impl.push(TOp::elementwise, dt, shape, Recorder::grad_for(tape, {x.id}), x.id,
                              0, R::info.op, param);
  elementwise_forward<R>(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

template <class R> Tensor binary(Tensor a, Tensor b, double param = 0) {
  const Operand x = operand(a, R::info.name);
  check_same(x, b, R::info.name);
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const DType dt = impl.nodes[x.id].dtype;
  const Shape sa = impl.nodes[x.id].shape, sb = impl.nodes[b.id()].shape;
  const Shape shape = sa == sb ? sa : broadcast_shapes(sa, sb, R::info.name);
  const NodeId id = impl.push(TOp::elementwise, dt, shape, Recorder::grad_for(tape, {x.id, b.id()}),
                              x.id, b.id(), R::info.op, param);
  elementwise_forward<R>(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

// d(out)/d(a) and d(out)/d(b) of an elementwise node, accumulated through the
// broadcast walk (Note [Broadcasting]).
template <class R, class T> void elementwise_backward(Node& n, Node& a, Node* b) {
  const T* up = static_cast<const T*>(n.grad);
  const T* y = static_cast<const T*>(n.data);
  const T* pa = static_cast<const T*>(a.data);
  T* ga = static_cast<T*>(a.grad);
  const T p = T(n.param);
  if constexpr (R::info.arity == 1) {
    const std::int64_t e = n.shape.numel();
    if (TensorTape::Impl::first_write(a))  // Note [Lazy gradients]
      for (std::int64_t i = 0; i < e; ++i) ga[i] = up[i] * R::local(pa[i], T(0), y[i], p).da;
    else
      for (std::int64_t i = 0; i < e; ++i) ga[i] += up[i] * R::local(pa[i], T(0), y[i], p).da;
  } else {
    const T* pb = static_cast<const T*>(b->data);
    T* gb = static_cast<T*>(b->grad);
    // Without broadcasting into a gradient (each input has the output's shape, or is one element
    // that needs none, such as the 1 of 1 - y s), each gradient is one flat loop that assigns
    // its first write (Note [Lazy gradients]) instead of a memset and the broadcast walk.
    // a and b may be one node (x * x): its first loop assigns, its second adds.
    const bool a_full = a.shape == n.shape, b_full = b->shape == n.shape;
    if ((a_full || (!ga && a.shape.numel() == 1)) && (b_full || (!gb && b->shape.numel() == 1))) {
      const std::int64_t e = n.shape.numel(), step_a = a_full ? 1 : 0, step_b = b_full ? 1 : 0;
      const auto local = [&](std::int64_t i) {
        return R::local(pa[i * step_a], pb[i * step_b], y[i], p);
      };
      if (ga) {
        if (TensorTape::Impl::first_write(a))
          for (std::int64_t i = 0; i < e; ++i) ga[i] = up[i] * local(i).da;
        else
          for (std::int64_t i = 0; i < e; ++i) ga[i] += up[i] * local(i).da;
      }
      if (gb) {
        if (TensorTape::Impl::first_write(*b))
          for (std::int64_t i = 0; i < e; ++i) gb[i] = up[i] * local(i).db;
        else
          for (std::int64_t i = 0; i < e; ++i) gb[i] += up[i] * local(i).db;
      }
      return;
    }
    TensorTape::Impl::zeroed(a);
    TensorTape::Impl::zeroed(*b);
    for_each_broadcast(n.shape, a.shape, b->shape,
                       [&](std::int64_t i, std::int64_t ia, std::int64_t ib) {
                         const Local<T> l = R::local(pa[ia], pb[ib], y[i], p);
                         if (ga) ga[ia] += up[i] * l.da;
                         if (gb) gb[ib] += up[i] * l.db;
                       });
  }
}

// The chain rule of an elementwise node at one element, in the node's precision: the output
// element that sends input k's element `target` its gradient (the first whose contribution is
// non-finite, else the first), its upstream gradient, and the local derivative there.
template <class T>
void elementwise_chain(const TensorTape& tape, NodeId id, int k,
                       const std::vector<std::int64_t>& target, Anomaly& a) {
  const Shape& out = tape.shape(id);
  const int arity = tape.arity(id);
  std::vector<std::int64_t> chosen;
  for (std::int64_t i = 0; i < out.numel(); ++i) {
    const std::vector<std::int64_t> oi = unravel(out, i);
    if (broadcast_index(oi, tape.shape(tape.input_of(id, k))) != target) continue;
    const std::vector<std::int64_t> ia = broadcast_index(oi, tape.shape(tape.input_of(id, 0)));
    const T va = T(tape.value(tape.input_of(id, 0), ravel(tape.shape(tape.input_of(id, 0)), ia)));
    T vb = T(0);
    if (arity == 2) {
      const Shape& sb = tape.shape(tape.input_of(id, 1));
      vb = T(tape.value(tape.input_of(id, 1), ravel(sb, broadcast_index(oi, sb))));
    }
    const T y = T(tape.value(id, i)), up = T(tape.grad(id, i)), p = T(tape.param(id));
    const Local<T> l = dispatch(tape.elementwise_op(id), [&](auto rule) -> Local<T> {
      using R = decltype(rule);
      if constexpr (R::info.arity == 0)
        return {T(0), T(0)};
      else
        return R::local(va, vb, y, p);
    });
    const T local = k == 0 ? l.da : l.db;
    const bool bad = !std::isfinite(up * local);
    if (chosen.empty() || bad) {
      chosen = oi;
      a.upstream = double(up);
      a.local = double(local);
      a.upstream_index = oi;
      a.operands = tensor_ops::Elementwise::forward_operands(tape, id, oi);
    }
    if (bad) return;
  }
}

}  // namespace

namespace tensor_ops {

void Elementwise::forward(TensorTape::Impl& impl, Node& n) {
  dispatch(n.elem, [&](auto rule) {
    using R = decltype(rule);
    if constexpr (R::info.arity > 0) elementwise_forward<R>(impl, n);
  });
}

namespace {

// Elementwise::backward's dispatch to the rule's loops, written once for both compilations.
[[gnu::always_inline]] inline void elementwise_backward_any(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  Node* b = op_info(n.elem).arity == 2 ? &impl.nodes[n.in[1]] : nullptr;
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    dispatch(n.elem, [&](auto rule) {
      using R = decltype(rule);
      if constexpr (R::info.arity > 0) elementwise_backward<R, T>(n, a, b);
    });
  });
}

#ifdef TAPEGRAD_AVX2
// The same compiled for AVX2 (Note [Elementwise loops in AVX2]); `flatten` inlines the rules'
// loops here, so that they are vectorized for this target rather than called at the baseline.
[[gnu::target("avx2"), gnu::flatten]] void elementwise_backward_avx2(TensorTape::Impl& impl,
                                                                     Node& n) {
  elementwise_backward_any(impl, n);
}
#endif

}  // namespace

void Elementwise::backward(TensorTape::Impl& impl, Node& n) {
#ifdef TAPEGRAD_AVX2
  if (elementwise_in_avx2(n.shape.numel() * std::int64_t(dtype_size(n.dtype))))
    return elementwise_backward_avx2(impl, n);
#endif
  elementwise_backward_any(impl, n);
}

std::string Elementwise::expression(const TensorTape& tape, NodeId id) {
  const Op e = tape.elementwise_op(id);
  return op_expression(e, label_of_input(tape, id, 0),
                       op_info(e).arity == 2 ? label_of_input(tape, id, 1) : std::string(),
                       tape.param(id));
}

// out[i] reads each input's element at i, broadcast; and the fixed parameter, if any.
std::vector<AnomalyOperand> Elementwise::forward_operands(const TensorTape& tape, NodeId id,
                                                          const ElementIndex& out) {
  std::vector<AnomalyOperand> operands;
  for (int k = 0; k < tape.arity(id); ++k)
    operands.push_back(
        input_operand(tape, id, k, broadcast_index(out, tape.shape(tape.input_of(id, k)))));
  if (op_info(tape.elementwise_op(id)).has_param)
    operands.push_back(param_operand(tape.elementwise_op(id), id, tape.param(id)));
  return operands;
}

void Elementwise::backward_operands(const TensorTape& tape, NodeId id, int k,
                                    const ElementIndex& target, Anomaly& report) {
  if (tape.dtype(id) == DType::f32)
    elementwise_chain<float>(tape, id, k, target, report);
  else
    elementwise_chain<double>(tape, id, k, target, report);
}

// upstream times the row's local_graph, summed back to each input's shape
void Elementwise::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                                 std::span<Tensor> contributions) {
  const Node n = Recorder::node(tape, id);  // a copy: recording below moves the records
  dispatch(n.elem, [&](auto rule) {
    using R = decltype(rule);
    if constexpr (R::info.arity > 0) {
      const Tensor a = tape.handle(n.in[0]);
      const Tensor b = R::info.arity == 2 ? tape.handle(n.in[1]) : Tensor{};
      const Local<Tensor> local = R::local_graph(a, b, tape.handle(id), n.param);
      // Shapes copied first: recording the products moves the node records.
      const Shape shape_a = a.shape();
      if (a.requires_grad()) contributions[0] = sum_to(upstream * local.da, shape_a);
      if constexpr (R::info.arity == 2) {
        const Shape shape_b = b.shape();
        if (b.requires_grad()) contributions[1] = sum_to(upstream * local.db, shape_b);
      }
    }
  });
}

}  // namespace tensor_ops

static Tensor scalar_like(const Tensor& like, double value) {
  return full(like.tape(), Shape{}, value, {like.dtype(), false, {}});
}

Tensor operator+(Tensor a, Tensor b) { return binary<rules::Add>(a, b); }
Tensor operator-(Tensor a, Tensor b) { return binary<rules::Sub>(a, b); }
Tensor operator*(Tensor a, Tensor b) { return binary<rules::Mul>(a, b); }
Tensor operator/(Tensor a, Tensor b) { return binary<rules::Div>(a, b); }
Tensor operator+(Tensor a, double b) { return a + scalar_like(a, b); }
Tensor operator-(Tensor a, double b) { return a - scalar_like(a, b); }
Tensor operator*(Tensor a, double b) { return a * scalar_like(a, b); }
Tensor operator/(Tensor a, double b) { return a / scalar_like(a, b); }
Tensor operator+(double a, Tensor b) { return scalar_like(b, a) + b; }
Tensor operator-(double a, Tensor b) { return scalar_like(b, a) - b; }
Tensor operator*(double a, Tensor b) { return scalar_like(b, a) * b; }
Tensor operator/(double a, Tensor b) { return scalar_like(b, a) / b; }
Tensor operator-(Tensor a) { return unary<rules::Neg>(a); }
Tensor pow(Tensor a, double p) { return unary<rules::PowScalar>(a, p); }
Tensor pow(Tensor a, Tensor b) { return binary<rules::Pow>(a, b); }
Tensor exp(Tensor a) { return unary<rules::Exp>(a); }
Tensor log(Tensor a) { return unary<rules::Log>(a); }
Tensor sqrt(Tensor a) { return unary<rules::Sqrt>(a); }
Tensor abs(Tensor a) { return unary<rules::Abs>(a); }
Tensor sigmoid(Tensor a) { return unary<rules::Sigmoid>(a); }
Tensor tanh(Tensor a) { return unary<rules::Tanh>(a); }
Tensor relu(Tensor a) { return unary<rules::Relu>(a); }
Tensor softplus(Tensor a) { return unary<rules::Softplus>(a); }
Tensor gelu(Tensor a) { return unary<rules::Gelu>(a); }
Tensor gelu_tanh(Tensor a) { return unary<rules::GeluTanh>(a); }
Tensor silu(Tensor a) { return unary<rules::Silu>(a); }
Tensor normal_cdf(Tensor a) { return unary<rules::NormalCdf>(a); }
Tensor leaky_relu(Tensor a, double alpha) { return unary<rules::LeakyRelu>(a, alpha); }
Tensor elu(Tensor a, double alpha) { return unary<rules::Elu>(a, alpha); }
Tensor max(Tensor a, Tensor b) { return binary<rules::Max>(a, b); }
Tensor max(Tensor a, double b) { return max(a, scalar_like(a, b)); }
Tensor min(Tensor a, Tensor b) { return binary<rules::Min>(a, b); }
Tensor min(Tensor a, double b) { return min(a, scalar_like(a, b)); }
Tensor clamp_min(Tensor a, double lo) { return unary<rules::ClampMin>(a, lo); }
Tensor clamp_max(Tensor a, double hi) { return unary<rules::ClampMax>(a, hi); }
Tensor clamp(Tensor a, double lo, double hi) { return clamp_max(clamp_min(a, lo), hi); }
Tensor bce(Tensor p, Tensor y) { return binary<rules::Bce>(p, y); }

Tensor apply(Op op, Tensor a) { return apply(op, a, op_info(op).default_param); }

Tensor apply(Op op, Tensor a, double param) {
  return dispatch(op, [&](auto rule) -> Tensor {
    using R = decltype(rule);
    if constexpr (R::info.arity == 1)
      return unary<R>(a, param);
    else
      throw Error(
          fmt::format("apply: {} takes {} tensor operands, not 1", R::info.name, R::info.arity));
  });
}

Tensor apply(Op op, Tensor a, Tensor b) {
  if (op == Op::prelu) return prelu(a, b);
  return dispatch(op, [&](auto rule) -> Tensor {
    using R = decltype(rule);
    if constexpr (R::info.arity == 2)
      return binary<R>(a, b);
    else
      throw Error(
          fmt::format("apply: {} takes {} tensor operands, not 2", R::info.name, R::info.arity));
  });
}

Tensor prelu(Tensor a, Tensor alpha) {
  const Shape& sa = alpha.shape();
  const Shape& sx = a.shape();
  const bool one = sa.numel() == 1 && sa.rank() <= 1;
  const bool per_feature = sa.rank() == 1 && sx.rank() >= 1 && sa[0] == sx[sx.rank() - 1];
  if (!one && !per_feature)
    throw Error(
        fmt::format("prelu: alpha of shape {} fits neither one slope () nor one per "
                    "feature ({},) for input {}",
                    sa, sx.rank() ? sx[sx.rank() - 1] : 1, sx));
  return binary<rules::Prelu>(a, alpha);
}
// ---- matmul -----------------------------------------------------------------------
// C = A B; dA += dC B^T, dB += A^T dC (transposes passed to gemm as flags).
//
// Note [Batched products]
// ~~~~~~~~~~~~~~~~~~~~~~~
// As torch.matmul, a 3-D operand is a batch of matrices. (B, m, k) @ (B, k, n) runs one gemm per
// batch. (B, m, k) @ (k, n) is one gemm of B*m rows, the batch laid end to end in row-major
// order: no loop, and dB = A^T dC sums over every batch in that gemm's inner dimension. linear
// treats all leading axes of x as rows the same way. A 2-D product is the single-batch case of
// the same code, so it pays one branch and no copy.

Tensor matmul(Tensor a, Tensor b) {
  const Operand x = operand(a, "matmul");
  check_same(x, b, "matmul");
  auto& impl = Recorder::impl(*x.tape);
  const Shape sa = impl.nodes[x.id].shape, sb = impl.nodes[b.id()].shape;
  const DType dt = impl.nodes[x.id].dtype;
  const bool batched_b = sb.rank() == 3;
  // A vector operand keeps the message it always had (tests and users match it).
  if (sa.rank() < 2 || sb.rank() < 2) fail("matmul: {} x {}: both operands must be 2-D", sa, sb);
  if (sa.rank() > 3 || sb.rank() > 3 || (batched_b && sa.rank() != 3))
    throw Error(
        fmt::format("matmul: {} x {}: the operands must be 2-D, or 3-D batches as "
                    "(B, m, k) x (B, k, n) or (B, m, k) x (k, n)",
                    sa, sb));
  const int ra = sa.rank(), rb = sb.rank();
  if (sa[ra - 1] != sb[rb - 2])
    fail("matmul: {} x {}: inner dimensions {} and {} differ", sa, sb, sa[ra - 1], sb[rb - 2]);
  if (batched_b && sa[0] != sb[0])
    fail("matmul: {} x {}: batch sizes {} and {} differ", sa, sb, sa[0], sb[0]);
  const Shape shape = ra == 3 ? Shape{sa[0], sa[1], sb[rb - 1]} : Shape{sa[0], sb[1]};
  TensorTape& tape = *x.tape;
  const NodeId id =
      impl.push(TOp::matmul, dt, shape, Recorder::grad_for(tape, {x.id, b.id()}), x.id, b.id());
  tensor_ops::Matmul::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

namespace tensor_ops {

namespace {

// The product as `batches` gemms of (rows, inner) x (inner, cols) (Note [Batched products]).
struct ProductShape {
  std::int64_t batches, rows, inner, cols;
};

ProductShape product_shape(const Node& a, const Node& b) {
  const int ra = a.shape.rank(), rb = b.shape.rank();
  const std::int64_t batches = rb == 3 ? b.shape[0] : 1;
  const std::int64_t rows = a.shape[ra - 2] * (ra == 3 && rb == 2 ? a.shape[0] : 1);
  return {batches, rows, a.shape[ra - 1], b.shape[rb - 1]};
}

}  // namespace

void Matmul::forward(TensorTape::Impl& impl, Node& n) {
  const Node& a = impl.nodes[n.in[0]];
  const Node& b = impl.nodes[n.in[1]];
  const ProductShape p = product_shape(a, b);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* pa = static_cast<const T*>(a.data);
    const T* pb = static_cast<const T*>(b.data);
    T* out = static_cast<T*>(n.data);
    for (std::int64_t g = 0; g < p.batches; ++g)
      kernels::gemm<T>(false, false, p.rows, p.cols, p.inner, pa + g * p.rows * p.inner,
                       pb + g * p.inner * p.cols, T(0), out + g * p.rows * p.cols);
  });
}

void Matmul::backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  Node& b = impl.nodes[n.in[1]];
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    // Note [Lazy gradients]: a product assigns (beta 0) a gradient that nothing wrote yet.
    const auto beta = [](Node& in) { return TensorTape::Impl::first_write(in) ? T(0) : T(1); };
    const T* up = static_cast<const T*>(n.grad);
    const ProductShape p = product_shape(a, b);
    const std::int64_t m = p.rows, k = p.inner, cols = p.cols;
    const T* pa = static_cast<const T*>(a.data);
    const T* pb = static_cast<const T*>(b.data);
    if (T* ga = static_cast<T*>(a.grad)) {
      const T beta_a = beta(a);  // once: every batch's block is written for the first time
      for (std::int64_t g = 0; g < p.batches; ++g)
        kernels::gemm<T>(false, true, m, k, cols, up + g * m * cols, pb + g * k * cols, beta_a,
                         ga + g * m * k);
    }
    if (T* gb = static_cast<T*>(b.grad)) {  // after a's: in x @ x, the second call adds
      const T beta_b = beta(b);
      for (std::int64_t g = 0; g < p.batches; ++g)
        kernels::gemm<T>(true, false, k, cols, m, pa + g * m * k, up + g * m * cols, beta_b,
                         gb + g * k * cols);
    }
  });
}

std::string Matmul::expression(const TensorTape& tape, NodeId id) {
  return fmt::format("{} @ {}", label_of_input(tape, id, 0), label_of_input(tape, id, 1));
}

// out[g, i, j] = a[g, i, :] . b[g, :, j] (no g for a 2-D operand; Note [Batched products]).
std::vector<AnomalyOperand> Matmul::forward_operands(const TensorTape& tape, NodeId id,
                                                     const ElementIndex& out) {
  const bool batched_b = tape.shape(tape.input_of(id, 1)).rank() == 3;
  const std::size_t r = out.size();
  ElementIndex row(out.begin(), out.end()), column{-1, out[r - 1]};
  row[r - 1] = -1;
  if (batched_b) column.insert(column.begin(), out[0]);
  return {input_operand(tape, id, 0, row), input_operand(tape, id, 1, column)};
}

// da[g, i, p] = up[g, i, :] . b[g, p, :]; db[g, p, j] = a[g, :, p] . up[g, :, j]. A 2-D b shared
// by the batch gets db[p, j] from every batch: a[:, :, p] . up[:, :, j].
void Matmul::backward_operands(const TensorTape& tape, NodeId id, int k, const ElementIndex& target,
                               Anomaly& report) {
  const int out_rank = tape.shape(id).rank();
  const bool batched_b = tape.shape(tape.input_of(id, 1)).rank() == 3;
  const std::size_t t = target.size();
  if (k == 0) {
    ElementIndex up(target.begin(), target.end()), row{target[t - 1], -1};
    up[t - 1] = -1;
    if (batched_b) row.insert(row.begin(), target[0]);
    add_upstream(tape, id, up, report);
    report.operands.push_back(input_operand(tape, id, 1, row));
  } else {
    ElementIndex column(std::size_t(out_rank), -1), up(std::size_t(out_rank), -1);
    column[std::size_t(out_rank) - 1] = target[t - 2];
    up[std::size_t(out_rank) - 1] = target[t - 1];
    if (batched_b) column[0] = up[0] = target[0];
    report.operands.push_back(input_operand(tape, id, 0, column));
    add_upstream(tape, id, up, report);
  }
}

// d(a @ b)/da = up @ b^T, d/db = a^T @ up, batch by batch (transpose swaps the last two axes).
// With a 2-D b, up @ b^T is recorded as linear(up, b), which is x W^T: one node where transpose
// and matmul would record two, and no copy of b. A 2-D b shared by a batch of a's gets the sum
// over the batch: the batch laid end to end as rows, one product (Note [Batched products]).
void Matmul::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                            std::span<Tensor> contributions) {
  const Node n = Recorder::node(tape, id);
  const Tensor a = tape.handle(n.in[0]), b = tape.handle(n.in[1]);
  const Shape sa = a.shape(), sb = b.shape();
  if (a.requires_grad())
    contributions[0] = sb.rank() == 2 ? linear(upstream, b) : matmul(upstream, transpose(b));
  if (!b.requires_grad()) return;
  if (sa.rank() == 3 && sb.rank() == 2) {
    const std::int64_t rows = sa[0] * sa[1];
    contributions[1] =
        matmul(transpose(reshape(a, {rows, sa[2]})), reshape(upstream, {rows, sb[1]}));
  } else {
    contributions[1] = matmul(transpose(a), upstream);
  }
}

}  // namespace tensor_ops

// ---- linear ---------------------------------------------------------------------
// y = x W^T + b, with W stored (out, in) as PyTorch stores it: one node where
// transpose, matmul and add would record three. dx += dy W; dW += dy^T x;
// db += the column sums of dy.

Tensor linear(Tensor x, Tensor weight, Tensor bias) {
  const Operand op = operand(x, "linear");
  check_same(op, weight, "linear");
  auto& impl = Recorder::impl(*op.tape);
  const Shape sx = impl.nodes[op.id].shape, sw = impl.nodes[weight.id()].shape;
  const DType dt = impl.nodes[op.id].dtype;
  if (sx.rank() < 2 || sw.rank() != 2)
    fail("linear: input {} must have 2 or more axes and weight {} 2", sx, sw);
  const int last = sx.rank() - 1;
  if (sx[last] != sw[1])
    fail("linear: input {} has {} features but weight {} expects {}", sx, sx[last], sw, sw[1]);
  const bool has_bias = !bias.empty();
  if (has_bias) {
    check_same(op, bias, "linear");
    if (!(impl.nodes[bias.id()].shape == Shape{sw[0]}))
      fail("linear: bias {} does not match weight {}: expected ({},)", bias.shape(), sw, sw[0]);
  }
  TensorTape& tape = *op.tape;
  const bool grad = has_bias ? Recorder::grad_for(tape, {op.id, weight.id(), bias.id()})
                             : Recorder::grad_for(tape, {op.id, weight.id()});
  Shape shape = sx;  // the leading axes are rows (Note [Batched products])
  shape[last] = sw[0];
  const NodeId id = impl.push(TOp::linear, dt, shape, grad, op.id, weight.id());
  impl.nodes[id].in[2] = has_bias ? bias.id() : kNoInput;
  tensor_ops::Linear::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

namespace {

// The rows of a linear's x or y: the product of every axis but the last.
std::int64_t leading_rows(const Shape& s) {
  std::int64_t rows = 1;
  for (int i = 0; i + 1 < s.rank(); ++i) rows *= s[i];
  return rows;
}

}  // namespace

namespace tensor_ops {

void Linear::forward(TensorTape::Impl& impl, Node& n) {
  const Node& x = impl.nodes[n.in[0]];
  const Node& w = impl.nodes[n.in[1]];
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    T* y = static_cast<T*>(n.data);
    const std::int64_t rows = leading_rows(x.shape);
    kernels::gemm<T>(false, true, rows, w.shape[0], w.shape[1], static_cast<const T*>(x.data),
                     static_cast<const T*>(w.data), T(0), y);
    if (n.in[2] != kNoInput)
      kernels::add_to_rows(y, static_cast<const T*>(impl.nodes[n.in[2]].data), rows, w.shape[0]);
  });
}

void Linear::backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  Node& w = impl.nodes[n.in[1]];
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    // Note [Lazy gradients]: a product assigns (beta 0) a gradient that nothing wrote yet.
    const auto beta = [](Node& in) { return TensorTape::Impl::first_write(in) ? T(0) : T(1); };
    const T* up = static_cast<const T*>(n.grad);
    const std::int64_t rows = leading_rows(n.shape), outs = w.shape[0], ins = w.shape[1];
    if (T* ga = static_cast<T*>(a.grad))
      kernels::gemm<T>(false, false, rows, ins, outs, up, static_cast<const T*>(w.data), beta(a),
                       ga);
    if (w.grad)
      kernels::gemm<T>(true, false, outs, ins, rows, up, static_cast<const T*>(a.data), beta(w),
                       static_cast<T*>(w.grad));
    if (n.in[2] != kNoInput) {
      Node& bias = impl.nodes[n.in[2]];
      TensorTape::Impl::zeroed(bias);
      if (T* gb = static_cast<T*>(bias.grad)) kernels::add_rows_into(gb, up, rows, outs);
    }
  });
}

std::string Linear::expression(const TensorTape& tape, NodeId id) {
  if (tape.arity(id) == 3)
    return fmt::format("linear({}, {}, {})", label_of_input(tape, id, 0),
                       label_of_input(tape, id, 1), label_of_input(tape, id, 2));
  return fmt::format("linear({}, {})", label_of_input(tape, id, 0), label_of_input(tape, id, 1));
}

// out[..., j] = x[..., :] . W[j, :] + b[j]
std::vector<AnomalyOperand> Linear::forward_operands(const TensorTape& tape, NodeId id,
                                                     const ElementIndex& out) {
  const std::int64_t j = out.back();
  ElementIndex row = out;
  row.back() = -1;
  std::vector<AnomalyOperand> operands{input_operand(tape, id, 0, row),
                                       input_operand(tape, id, 1, {j, -1})};
  if (tape.arity(id) == 3) operands.push_back(input_operand(tape, id, 2, {j}));
  return operands;
}

// dx[..., p] = up[..., :] . W[:, p]; dW[j, p] = up[..., j] . x[..., p] over every row;
// db[j] = sum of up[..., j]
void Linear::backward_operands(const TensorTape& tape, NodeId id, int k, const ElementIndex& target,
                               Anomaly& report) {
  const std::size_t rank = std::size_t(tape.shape(id).rank());
  ElementIndex every_row(rank, -1);  // the column target[0] of up, or of x, over all rows
  if (k == 0) {
    ElementIndex row = target;
    row.back() = -1;
    add_upstream(tape, id, row, report);
    report.operands.push_back(input_operand(tape, id, 1, {-1, target.back()}));
  } else if (k == 1) {
    every_row.back() = target[0];
    add_upstream(tape, id, every_row, report);
    every_row.back() = target[1];
    report.operands.push_back(input_operand(tape, id, 0, every_row));
  } else {
    every_row.back() = target[0];
    add_upstream(tape, id, every_row, report);
  }
}

// y = x W^T + b: dx = up @ W, dW = up^T @ x, db = the sum of up over rows. An x of more than
// two axes is rows too (Note [Batched products]): x and up are viewed as 2-D for the products,
// and dx viewed back as x.
void Linear::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                            std::span<Tensor> contributions) {
  const Node n = Recorder::node(tape, id);
  const Tensor weight = tape.handle(n.in[1]);
  Tensor x = tape.handle(n.in[0]), up = upstream;
  const Shape sx = x.shape();
  const bool x_needs_grad = x.requires_grad();
  if (sx.rank() > 2) {
    const std::int64_t rows = leading_rows(sx), outs = weight.shape()[0];
    x = reshape(x, {rows, sx[sx.rank() - 1]});
    up = reshape(upstream, {rows, outs});
  }
  if (x_needs_grad) {
    const Tensor dx = matmul(up, weight);
    contributions[0] = sx.rank() > 2 ? reshape(dx, sx) : dx;
  }
  if (weight.requires_grad()) contributions[1] = matmul(transpose(up), x);
  if (n.in[2] != kNoInput && tape.needs_grad(n.in[2])) contributions[2] = sum(up, 0);
}

}  // namespace tensor_ops

// ---- transpose -------------------------------------------------------------------------
// Swaps two axes d0 < d1: with a of shape (outer, n0, middle, n1, inner),
// out[o, j, m, i, c] = a[o, i, m, j, c]. Backward swaps back. transpose(a) swaps the last two.
// The two axes are kept in the arena (aux).

namespace {

struct SwappedAxes {
  std::int32_t first, second;  // first <= second
};

const SwappedAxes& swapped_axes(const void* aux) { return *static_cast<const SwappedAxes*>(aux); }

// Calls f(input offset, output offset) for every element of a transpose of input shape `in`.
template <class F> void for_each_swapped(const Shape& in, const SwappedAxes& axes, F&& f) {
  if (axes.first == axes.second) {  // an axis swapped with itself: every element stays
    for (std::int64_t p = 0, e = in.numel(); p < e; ++p) f(p, p);
    return;
  }
  std::int64_t outer = 1, middle = 1, inner = 1;
  for (int d = 0; d < axes.first; ++d) outer *= in[d];
  for (int d = axes.first + 1; d < axes.second; ++d) middle *= in[d];
  for (int d = axes.second + 1; d < in.rank(); ++d) inner *= in[d];
  const std::int64_t n0 = in[axes.first], n1 = in[axes.second];
  if (middle == 1 && inner == 1) {
    // Two adjacent axes, the transpose every recorded product's backward takes (Linear's up^T,
    // Matmul's a^T): one matrix per `outer`. The general loop below spends 3.8 times the
    // instructions on it (its five-deep index arithmetic), a third of a Hessian-vector
    // product's cost on the moons MLP (bench/README.md).
    for (std::int64_t o = 0; o < outer; ++o) {
      const std::int64_t base = o * n0 * n1;
      for (std::int64_t i = 0; i < n0; ++i)
        for (std::int64_t j = 0; j < n1; ++j) f(base + i * n1 + j, base + j * n0 + i);
    }
    return;
  }
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t i = 0; i < n0; ++i)
      for (std::int64_t m = 0; m < middle; ++m)
        for (std::int64_t j = 0; j < n1; ++j)
          for (std::int64_t c = 0; c < inner; ++c)
            f((((o * n0 + i) * middle + m) * n1 + j) * inner + c,
              (((o * n1 + j) * middle + m) * n0 + i) * inner + c);
}

ElementIndex swap_index(ElementIndex index, const SwappedAxes& axes) {
  std::swap(index[std::size_t(axes.first)], index[std::size_t(axes.second)]);
  return index;
}

}  // namespace

Tensor transpose(Tensor a) {
  if (a.rank() < 2) fail("transpose: shape {} has fewer than 2 axes", a.shape());
  return transpose(a, -2, -1);
}

Tensor transpose(Tensor a, int dim0, int dim1) {
  const Operand x = operand(a, "transpose");
  Shape shape = a.shape();
  const int d0 = shape.axis(dim0, "transpose"), d1 = shape.axis(dim1, "transpose");
  std::swap(shape[d0], shape[d1]);
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id =
      impl.push(TOp::transpose, a.dtype(), shape, Recorder::grad_for(tape, {x.id}), x.id);
  const SwappedAxes axes{std::min(d0, d1), std::max(d0, d1)};
  void* aux = impl.arena.allocate(sizeof axes);
  std::memcpy(aux, &axes, sizeof axes);
  impl.nodes[id].aux = aux;
  tensor_ops::Transpose::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

namespace tensor_ops {

void Transpose::forward(TensorTape::Impl& impl, Node& n) {
  const Node& a = impl.nodes[n.in[0]];
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* in = static_cast<const T*>(a.data);
    T* out = static_cast<T*>(n.data);
    for_each_swapped(a.shape, swapped_axes(n.aux),
                     [&](std::int64_t from, std::int64_t to) { out[to] = in[from]; });
  });
}

void Transpose::backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  TensorTape::Impl::zeroed(a);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    T* ga = static_cast<T*>(a.grad);
    for_each_swapped(a.shape, swapped_axes(n.aux),
                     [&](std::int64_t from, std::int64_t to) { ga[from] += up[to]; });
  });
}

// "transpose(x)" for the last two axes, else "transpose(x, 0, 2)".
std::string Transpose::expression(const TensorTape& tape, NodeId id) {
  const SwappedAxes& axes = swapped_axes(Recorder::node(tape, id).aux);
  const int rank = tape.shape(id).rank();
  if (axes.first == rank - 2 && axes.second == rank - 1)
    return fmt::format("transpose({})", label_of_input(tape, id, 0));
  return fmt::format("transpose({}, {}, {})", label_of_input(tape, id, 0), axes.first, axes.second);
}

std::vector<AnomalyOperand> Transpose::forward_operands(const TensorTape& tape, NodeId id,
                                                        const ElementIndex& out) {
  return {input_operand(tape, id, 0, swap_index(out, swapped_axes(Recorder::node(tape, id).aux)))};
}

void Transpose::backward_operands(const TensorTape& tape, NodeId id, int,
                                  const ElementIndex& target, Anomaly& report) {
  add_upstream(tape, id, swap_index(target, swapped_axes(Recorder::node(tape, id).aux)), report);
}

// the same two axes swapped back
void Transpose::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                               std::span<Tensor> contributions) {
  const SwappedAxes axes = swapped_axes(Recorder::node(tape, id).aux);
  contributions[0] = transpose(upstream, axes.first, axes.second);
}

}  // namespace tensor_ops

// ---- reshape ------------------------------------------------------------------------
// The same elements under another shape. The output shares the input's data
// (no copy); it has a gradient of its own, added back to the input's.

Tensor reshape(Tensor a, const Shape& shape) {
  const Operand x = operand(a, "reshape");
  if (shape.numel() != a.numel())
    fail("reshape: cannot view shape {} ({} elements) as {} ({} elements)", a.shape(), a.numel(),
         shape, shape.numel());
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const bool grad = Recorder::grad_for(tape, {x.id});
  const NodeId id = impl.push(TOp::reshape, a.dtype(), Shape{}, grad, x.id);
  // push allocated one element for shape (): the data pointer is replaced by the
  // input's, and the gradient needs the full size.
  Node& n = impl.nodes[id];
  n.shape = shape;
  if (grad)  // not zeroed: Note [Lazy gradients]
    n.grad = impl.arena.allocate(std::size_t(shape.numel()) * dtype_size(n.dtype));
  tensor_ops::Reshape::forward(impl, n);
  return Recorder::make(tape, id);
}

// The one rule of every reshape form: at most one dimension may be -1, inferred from the others.
Tensor reshape(Tensor a, std::span<const std::int64_t> dims) {
  std::int64_t resolved[kMaxRank];
  if (dims.size() > kMaxRank) return reshape(a, Shape(dims));  // Shape names the error
  int infer = -1, i = 0;
  std::int64_t known = 1;
  for (std::int64_t d : dims) {
    if (d == -1) {
      if (infer >= 0) throw Error("reshape: only one dimension can be -1");
      infer = i;
    } else {
      known *= d;
    }
    resolved[i++] = d;
  }
  if (infer >= 0) {
    if (known == 0 || a.numel() % known != 0)
      throw Error(
          fmt::format("reshape: cannot view shape {} ({} elements) with a -1 dimension "
                      "and the others multiplying to {}",
                      a.shape(), a.numel(), known));
    resolved[infer] = a.numel() / known;
  }
  return reshape(a, Shape(std::span<const std::int64_t>(resolved, dims.size())));
}

Tensor reshape(Tensor a, std::initializer_list<std::int64_t> dims) {
  return reshape(a, std::span<const std::int64_t>(dims.begin(), dims.size()));
}

namespace tensor_ops {

void Reshape::forward(TensorTape::Impl& impl, Node& n) { n.data = impl.nodes[n.in[0]].data; }

void Reshape::backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  TensorTape::Impl::zeroed(a);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    T* ga = static_cast<T*>(a.grad);
    for (std::int64_t i = 0, e = n.shape.numel(); i < e; ++i) ga[i] += up[i];
  });
}

std::string Reshape::expression(const TensorTape& tape, NodeId id) {
  return fmt::format("reshape({}, {})", label_of_input(tape, id, 0), tape.shape(id));
}

std::vector<AnomalyOperand> Reshape::forward_operands(const TensorTape& tape, NodeId id,
                                                      const ElementIndex& out) {
  const Shape& in = tape.shape(tape.input_of(id, 0));
  return {input_operand(tape, id, 0, unravel(in, ravel(tape.shape(id), out)))};
}

void Reshape::backward_operands(const TensorTape& tape, NodeId id, int, const ElementIndex& target,
                                Anomaly& report) {
  add_upstream(tape, id, unravel(tape.shape(id), ravel(tape.shape(tape.input_of(id, 0)), target)),
               report);
}

void Reshape::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                             std::span<Tensor> contributions) {
  const Shape in = tape.shape(tape.input_of(id, 0));
  contributions[0] = reshape(upstream, in);
}

}  // namespace tensor_ops

// ---- sum and mean --------------------------------------------------------------------------
// Over one axis (or all, with axis == kAllAxes): out[o, i] = scale * sum_l a[o, l, i], scale 1
// for sum and 1/length for mean (kept in param: a mean over nothing is 0 * inf = NaN, as in
// PyTorch, never a silent 0); backward: da[o, l, i] += scale * dout[o, i].

namespace {

// Sum's and Mean's recorded backward: upstream broadcast back to the input's shape. It reads
// the node before recording, as recording moves the records.
Tensor spread(TensorTape& tape, const Node& node, const Tensor& upstream) {
  const Shape in = tape.shape(node.in[0]);
  const int axis = node.axis;
  const bool keepdims = node.flags & kKeepDims;
  const DType dtype = node.dtype;
  Tensor g = upstream;
  if (axis != kAllAxes && !keepdims) g = reshape(g, reduced_shape(in, axis, true));
  return zeros(tape, in, {.dtype = dtype}) + g;
}

Tensor reduce_sum(Tensor a, int axis, bool keepdims, TOp op) {
  const std::string_view what = top_name(op);
  const Operand x = operand(a, what);
  const Shape in = a.shape();
  int ax = kAllAxes;
  Shape shape;
  if (axis != kAllAxes) {
    ax = in.axis(axis, what);
    shape = reduced_shape(in, ax, keepdims);
  }
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id =
      impl.push(op, a.dtype(), shape, Recorder::grad_for(tape, {x.id}), x.id, 0, Op::input, 0, ax);
  if (keepdims) impl.nodes[id].flags |= kKeepDims;
  const std::int64_t length = ax == kAllAxes ? in.numel() : in[ax];
  impl.nodes[id].param = op == TOp::mean ? 1.0 / double(length) : 1.0;
  if (op == TOp::mean)
    tensor_ops::Mean::forward(impl, impl.nodes[id]);
  else
    tensor_ops::Sum::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

AxisSplit reduction_split(const Node& n, const Shape& in) {
  return n.axis == kAllAxes ? AxisSplit(Shape{1, in.numel(), 1}, 1) : AxisSplit(in, n.axis);
}

void reduce_forward(TensorTape::Impl& impl, Node& n) {
  const Node& a = impl.nodes[n.in[0]];
  const AxisSplit split = reduction_split(n, a.shape);
  const double scale = n.param;
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(a.data);
    T* out = static_cast<T*>(n.data);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t i = 0; i < split.inner; ++i) {
        double s = 0;  // accumulate in double: float sums of many terms drift
        for (std::int64_t l = 0; l < split.length; ++l)
          s += double(src[(o * split.length + l) * split.inner + i]);
        out[o * split.inner + i] = T(s * scale);
      }
  });
}

void reduce_backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  // Note [Lazy gradients]: the first write assigns, so a's gradient is not cleared first.
  const bool assign = TensorTape::Impl::first_write(a);
  const AxisSplit split = reduction_split(n, a.shape);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    T* ga = static_cast<T*>(a.grad);
    const T scale = T(n.param);
    if (split.inner == 1) {
      // The last axis or all of them (the loss's mean, an L2 term's sums): each upstream
      // element spreads over a contiguous row, one vectorized loop rather than a loop of one.
      for (std::int64_t o = 0; o < split.outer; ++o) {
        const T g = scale * up[o];
        T* row = ga + o * split.length;
        if (assign)
          std::fill(row, row + split.length, g);
        else
          for (std::int64_t l = 0; l < split.length; ++l) row[l] += g;
      }
      return;
    }
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t l = 0; l < split.length; ++l) {
        T* g = ga + (o * split.length + l) * split.inner;
        const T* u = up + o * split.inner;
        if (assign)
          for (std::int64_t i = 0; i < split.inner; ++i) g[i] = scale * u[i];
        else
          for (std::int64_t i = 0; i < split.inner; ++i) g[i] += scale * u[i];
      }
  });
}

// "sum(x)", "mean(x, axis=1)", "amax(x, axis=0)"
std::string reduction_expression(const TensorTape& tape, NodeId id, bool all_allowed) {
  const std::string_view name = top_name(tape.op(id));
  if (all_allowed && tape.axis(id) == kAllAxes)
    return fmt::format("{}({})", name, label_of_input(tape, id, 0));
  return fmt::format("{}({}, axis={})", name, label_of_input(tape, id, 0), tape.axis(id));
}

// out[o, i] reads the whole reduced axis (every element, for a reduction over all).
std::vector<AnomalyOperand> reduction_operands(const TensorTape& tape, NodeId id,
                                               const ElementIndex& out) {
  const int rank = tape.shape(tape.input_of(id, 0)).rank();
  if (tape.axis(id) == kAllAxes)
    return {input_operand(tape, id, 0, ElementIndex(std::size_t(rank), -1))};
  return {input_operand(tape, id, 0, with_axis(out, rank, tape.axis(id)))};
}

// da[o, l, i] comes from up[o, i].
void reduction_backward_operands(const TensorTape& tape, NodeId id, const ElementIndex& target,
                                 Anomaly& report) {
  const int out_rank = tape.shape(id).rank();
  add_upstream(tape, id,
               tape.axis(id) == kAllAxes ? ElementIndex(std::size_t(out_rank), 0)
                                         : without_axis(target, out_rank, tape.axis(id)),
               report);
}

}  // namespace

Tensor sum(Tensor a) { return reduce_sum(a, kAllAxes, false, TOp::sum); }
Tensor sum(Tensor a, int axis, bool keepdims) { return reduce_sum(a, axis, keepdims, TOp::sum); }
Tensor mean(Tensor a) { return reduce_sum(a, kAllAxes, false, TOp::mean); }
Tensor mean(Tensor a, int axis, bool keepdims) { return reduce_sum(a, axis, keepdims, TOp::mean); }

namespace tensor_ops {

void Sum::forward(TensorTape::Impl& impl, Node& n) { reduce_forward(impl, n); }
void Sum::backward(TensorTape::Impl& impl, Node& n) { reduce_backward(impl, n); }
std::string Sum::expression(const TensorTape& tape, NodeId id) {
  return reduction_expression(tape, id, true);
}
std::vector<AnomalyOperand> Sum::forward_operands(const TensorTape& tape, NodeId id,
                                                  const ElementIndex& out) {
  return reduction_operands(tape, id, out);
}
void Sum::backward_operands(const TensorTape& tape, NodeId id, int, const ElementIndex& target,
                            Anomaly& report) {
  reduction_backward_operands(tape, id, target, report);
}

// upstream repeated along the summed axes: added to zeros of the input's shape, which
// broadcasts it (and whose backward sums it back, Note [Broadcasting])
void Sum::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                         std::span<Tensor> contributions) {
  contributions[0] = spread(tape, Recorder::node(tape, id), upstream);
}

void Mean::forward(TensorTape::Impl& impl, Node& n) { reduce_forward(impl, n); }
void Mean::backward(TensorTape::Impl& impl, Node& n) { reduce_backward(impl, n); }
std::string Mean::expression(const TensorTape& tape, NodeId id) {
  return reduction_expression(tape, id, true);
}
std::vector<AnomalyOperand> Mean::forward_operands(const TensorTape& tape, NodeId id,
                                                   const ElementIndex& out) {
  return reduction_operands(tape, id, out);
}
void Mean::backward_operands(const TensorTape& tape, NodeId id, int, const ElementIndex& target,
                             Anomaly& report) {
  reduction_backward_operands(tape, id, target, report);
}

void Mean::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                          std::span<Tensor> contributions) {
  const double scale = Recorder::node(tape, id).param;  // 1 / the count averaged over
  contributions[0] = spread(tape, Recorder::node(tape, id), upstream) * scale;
}

}  // namespace tensor_ops

// ---- amax, amin and argmax ----------------------------------------------------------------
// Over one axis (or all, axis == kAllAxes): out[o, i] = max_l a[o, l, i] (min for amin). A NaN
// in the slice is its result, as in PyTorch, and argmax names the first NaN.
//
// Note [Ties in amax and amin]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// torch.amax and torch.amin split the gradient evenly among the elements equal to the result:
// da[o, l, i] += dout[o, i] / count where a[o, l, i] == out[o, i], count of them in the slice;
// a NaN result equals nothing, and torch's 0/0 sends NaN to the whole slice: so do we. The
// older amax(a, axis) keeps torch.max(a, dim)'s rule instead: the whole gradient to the first
// maximum (the first NaN), whose index its node keeps in the arena (aux); nn::Maxout and its
// tests were built on it. So a node with aux sends to one index and a node without splits:
// amax(a), amin(a) and amin(a, axis) split as torch.amax/amin do.

namespace {

// v replaces m as the running extreme: larger (smaller), or the first NaN.
template <bool kMax, class T> bool beats(T v, T m) {
  return (kMax ? v > m : v < m) || (std::isnan(v) && !std::isnan(m));
}

Tensor extreme(Tensor a, int axis, bool keepdims, TOp op, bool first_index) {
  const std::string_view what = top_name(op);
  const Operand x = operand(a, what);
  const Shape in = a.shape();
  int ax = kAllAxes;
  Shape shape;
  if (axis == kAllAxes) {
    if (in.numel() == 0) fail("{}: shape {} has no elements", what, in);
  } else {
    ax = in.axis(axis, what);
    if (in[ax] == 0) fail("{}: axis {} of shape {} is empty", what, axis, in);
    shape = reduced_shape(in, ax, keepdims);
  }
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  // argmax's result is an index: a constant, whatever its input.
  const bool grad = op != TOp::argmax && Recorder::grad_for(tape, {x.id});
  const NodeId id = impl.push(op, a.dtype(), shape, grad, x.id, 0, Op::input, 0, ax);
  if (first_index)
    impl.nodes[id].aux = impl.arena.allocate(std::size_t(shape.numel()) * sizeof(std::int32_t));
  if (keepdims) impl.nodes[id].flags |= kKeepDims;
  dispatch(op, [&](auto entry) { decltype(entry)::forward(impl, impl.nodes[id]); });
  return Recorder::make(tape, id);
}

// Fills the node with each slice's extreme (argmax: its index, as a value) and, when the node
// keeps them (aux), the index of each.
template <bool kMax, bool kIndexAsValue> void extreme_forward(TensorTape::Impl& impl, Node& n) {
  const Node& a = impl.nodes[n.in[0]];
  const AxisSplit split = reduction_split(n, a.shape);
  auto* arg = static_cast<std::int32_t*>(n.aux);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(a.data);
    T* out = static_cast<T*>(n.data);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t i = 0; i < split.inner; ++i) {
        std::int64_t best = 0;
        T m = src[o * split.length * split.inner + i];
        for (std::int64_t l = 1; l < split.length; ++l) {
          const T v = src[(o * split.length + l) * split.inner + i];
          if (beats<kMax>(v, m)) m = v, best = l;
        }
        out[o * split.inner + i] = kIndexAsValue ? T(best) : m;
        if (arg) arg[o * split.inner + i] = std::int32_t(best);
      }
  });
}

// Note [Ties in amax and amin]: to the kept index, or split among the ties.
void extreme_backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  TensorTape::Impl::zeroed(a);
  const AxisSplit split = reduction_split(n, a.shape);
  const auto* arg = static_cast<const std::int32_t*>(n.aux);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    const T* src = static_cast<const T*>(a.data);
    const T* y = static_cast<const T*>(n.data);
    T* ga = static_cast<T*>(a.grad);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t i = 0; i < split.inner; ++i) {
        const std::int64_t j = o * split.inner + i;
        auto at = [&](std::int64_t l) { return (o * split.length + l) * split.inner + i; };
        if (arg) {
          ga[at(arg[j])] += up[j];
          continue;
        }
        std::int64_t count = 0;
        for (std::int64_t l = 0; l < split.length; ++l) count += src[at(l)] == y[j];
        const T share = count ? up[j] / T(count) : std::numeric_limits<T>::quiet_NaN();
        for (std::int64_t l = 0; l < split.length; ++l)
          if (count == 0 || src[at(l)] == y[j]) ga[at(l)] += share;
      }
  });
}

// extreme_backward recorded: the upstream spread over the slice (as sum's) times a constant
// mask of each element's share, 1 at the kept index or 1/count at each tie (NaN over a slice
// whose result is NaN). The mask depends only on which elements won, so amax is linear where
// it is differentiable and its second derivative is 0, as torch's.
Tensor extreme_graph(TensorTape& tape, NodeId id, const Tensor& upstream) {
  const Node n = Recorder::node(tape, id);  // a copy: recording below moves the records
  const Node& a = Recorder::node(tape, n.in[0]);
  const Shape in = a.shape;
  const AxisSplit split = reduction_split(n, in);
  std::vector<double> share(std::size_t(in.numel()), 0.0);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(a.data);
    const T* y = static_cast<const T*>(n.data);
    const auto* arg = static_cast<const std::int32_t*>(n.aux);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t i = 0; i < split.inner; ++i) {
        const std::int64_t j = o * split.inner + i;
        auto at = [&](std::int64_t l) {
          return std::size_t((o * split.length + l) * split.inner + i);
        };
        if (arg) {
          share[at(arg[j])] = 1;
          continue;
        }
        std::int64_t count = 0;
        for (std::int64_t l = 0; l < split.length; ++l) count += src[at(l)] == y[j];
        for (std::int64_t l = 0; l < split.length; ++l)
          if (count == 0)
            share[at(l)] = std::numeric_limits<double>::quiet_NaN();
          else if (src[at(l)] == y[j])
            share[at(l)] = 1.0 / double(count);
      }
  });
  const Tensor mask =
      constant_from(tape, in, n.dtype, [&](std::int64_t p) { return share[std::size_t(p)]; });
  return spread(tape, n, upstream) * mask;
}

}  // namespace

Tensor amax(Tensor a, int axis, bool keepdims) {
  return extreme(a, axis, keepdims, TOp::amax, true);
}
Tensor amax(Tensor a) { return extreme(a, kAllAxes, false, TOp::amax, false); }
Tensor amin(Tensor a) { return extreme(a, kAllAxes, false, TOp::amin, false); }
Tensor amin(Tensor a, int axis, bool keepdims) {
  return extreme(a, axis, keepdims, TOp::amin, false);
}
Tensor argmax(Tensor a) { return extreme(a, kAllAxes, false, TOp::argmax, false); }
Tensor argmax(Tensor a, int axis, bool keepdims) {
  return extreme(a, axis, keepdims, TOp::argmax, false);
}

namespace tensor_ops {

void Amax::forward(TensorTape::Impl& impl, Node& n) { extreme_forward<true, false>(impl, n); }
void Amax::backward(TensorTape::Impl& impl, Node& n) { extreme_backward(impl, n); }
std::string Amax::expression(const TensorTape& tape, NodeId id) {
  return reduction_expression(tape, id, true);
}
std::vector<AnomalyOperand> Amax::forward_operands(const TensorTape& tape, NodeId id,
                                                   const ElementIndex& out) {
  return reduction_operands(tape, id, out);
}
void Amax::backward_operands(const TensorTape& tape, NodeId id, int, const ElementIndex& target,
                             Anomaly& report) {
  reduction_backward_operands(tape, id, target, report);
}
void Amax::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                          std::span<Tensor> contributions) {
  contributions[0] = extreme_graph(tape, id, upstream);
}

void Amin::forward(TensorTape::Impl& impl, Node& n) { extreme_forward<false, false>(impl, n); }
void Amin::backward(TensorTape::Impl& impl, Node& n) { extreme_backward(impl, n); }
std::string Amin::expression(const TensorTape& tape, NodeId id) {
  return reduction_expression(tape, id, true);
}
std::vector<AnomalyOperand> Amin::forward_operands(const TensorTape& tape, NodeId id,
                                                   const ElementIndex& out) {
  return reduction_operands(tape, id, out);
}
void Amin::backward_operands(const TensorTape& tape, NodeId id, int, const ElementIndex& target,
                             Anomaly& report) {
  reduction_backward_operands(tape, id, target, report);
}
void Amin::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                          std::span<Tensor> contributions) {
  contributions[0] = extreme_graph(tape, id, upstream);
}

// The result is a constant (no gradient): backward never reaches this node.
void Argmax::forward(TensorTape::Impl& impl, Node& n) { extreme_forward<true, true>(impl, n); }
void Argmax::backward(TensorTape::Impl&, Node&) {}
std::string Argmax::expression(const TensorTape& tape, NodeId id) {
  return reduction_expression(tape, id, true);
}
std::vector<AnomalyOperand> Argmax::forward_operands(const TensorTape& tape, NodeId id,
                                                     const ElementIndex& out) {
  return reduction_operands(tape, id, out);
}
void Argmax::backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&) {}
// Records nothing: the result is an index, a constant with no gradient (as torch.argmax's), so
// grad never reaches this node and its input gets nothing from it.
void Argmax::backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>) {}

}  // namespace tensor_ops

// ---- where ----------------------------------------------------------------------------------
// out[i] = cond[i] != 0 ? a[i] : b[i], all three broadcast (Note [Broadcasting]);
// da[i] += dout[i] where cond chose a, db[i] += dout[i] elsewhere; cond gets nothing.

Tensor where(Tensor cond, Tensor a, Tensor b) {
  const Operand c = operand(cond, "where");
  check_same(c, a, "where");
  check_same(c, b, "where");
  TensorTape& tape = *c.tape;
  auto& impl = Recorder::impl(tape);
  const Shape sc = impl.nodes[c.id].shape, sa = impl.nodes[a.id()].shape,
              sb = impl.nodes[b.id()].shape;
  const Shape shape = broadcast_shapes(broadcast_shapes(sc, sa, "where"), sb, "where");
  const NodeId id = impl.push(TOp::where, impl.nodes[c.id].dtype, shape,
                              Recorder::grad_for(tape, {a.id(), b.id()}), c.id, a.id());
  impl.nodes[id].in[2] = b.id();
  tensor_ops::Where::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

namespace tensor_ops {

void Where::forward(TensorTape::Impl& impl, Node& n) {
  const Node& c = impl.nodes[n.in[0]];
  const Node& a = impl.nodes[n.in[1]];
  const Node& b = impl.nodes[n.in[2]];
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* pc = static_cast<const T*>(c.data);
    const T* pa = static_cast<const T*>(a.data);
    const T* pb = static_cast<const T*>(b.data);
    T* out = static_cast<T*>(n.data);
    for_each_broadcast3(n.shape, c.shape, a.shape, b.shape,
                        [&](std::int64_t i, std::int64_t ic, std::int64_t ia, std::int64_t ib) {
                          out[i] = pc[ic] != T(0) ? pa[ia] : pb[ib];
                        });
  });
}

void Where::backward(TensorTape::Impl& impl, Node& n) {
  Node& c = impl.nodes[n.in[0]];
  Node& a = impl.nodes[n.in[1]];
  Node& b = impl.nodes[n.in[2]];
  // A cond that needs a gradient (an input) is marked reached: its zeros must be valid.
  TensorTape::Impl::zeroed(c);
  TensorTape::Impl::zeroed(a);
  TensorTape::Impl::zeroed(b);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    const T* pc = static_cast<const T*>(c.data);
    T* ga = static_cast<T*>(a.grad);
    T* gb = static_cast<T*>(b.grad);
    for_each_broadcast3(n.shape, c.shape, a.shape, b.shape,
                        [&](std::int64_t i, std::int64_t ic, std::int64_t ia, std::int64_t ib) {
                          if (pc[ic] != T(0)) {
                            if (ga) ga[ia] += up[i];
                          } else if (gb) {
                            gb[ib] += up[i];
                          }
                        });
  });
}

std::string Where::expression(const TensorTape& tape, NodeId id) {
  return fmt::format("where({}, {}, {})", label_of_input(tape, id, 0), label_of_input(tape, id, 1),
                     label_of_input(tape, id, 2));
}

// out[i] reads each input's element at i, broadcast.
std::vector<AnomalyOperand> Where::forward_operands(const TensorTape& tape, NodeId id,
                                                    const ElementIndex& out) {
  std::vector<AnomalyOperand> operands;
  for (int k = 0; k < 3; ++k)
    operands.push_back(
        input_operand(tape, id, k, broadcast_index(out, tape.shape(tape.input_of(id, k)))));
  return operands;
}

// Branch k's element `target` gets the upstream of the output elements it was chosen for: the
// first whose upstream is not finite, else the first; with the condition there.
void Where::backward_operands(const TensorTape& tape, NodeId id, int k, const ElementIndex& target,
                              Anomaly& report) {
  const Shape& out = tape.shape(id);
  const NodeId cond = tape.input_of(id, 0);
  ElementIndex chosen;
  for (std::int64_t i = 0; i < out.numel(); ++i) {
    const ElementIndex oi = unravel(out, i);
    if (k == 0 || broadcast_index(oi, tape.shape(tape.input_of(id, k))) != target) continue;
    const Shape& sc = tape.shape(cond);
    const bool picks_a = tape.value(cond, ravel(sc, broadcast_index(oi, sc))) != 0;
    if (picks_a != (k == 1)) continue;
    if (chosen.empty() || !std::isfinite(tape.grad(id, i))) chosen = oi;
    if (!std::isfinite(tape.grad(id, i))) break;
  }
  if (chosen.empty()) return;  // never chosen: its gradient is 0
  add_upstream(tape, id, chosen, report);
  report.operands.push_back(input_operand(tape, id, 0, broadcast_index(chosen, tape.shape(cond))));
}

// da = where(cond, up, 0), db = where(cond, 0, up), each summed back to its branch's shape; the
// condition gets nothing (as in backward)
void Where::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                           std::span<Tensor> contributions) {
  const Node n = Recorder::node(tape, id);
  const Tensor cond = tape.handle(n.in[0]), a = tape.handle(n.in[1]), b = tape.handle(n.in[2]);
  const Shape sa = a.shape(), sb = b.shape();
  const Tensor zero = scalar_like(upstream, 0);
  if (a.requires_grad()) contributions[1] = sum_to(where(cond, upstream, zero), sa);
  if (b.requires_grad()) contributions[2] = sum_to(where(cond, zero, upstream), sb);
}

}  // namespace tensor_ops

// ---- softmax and log_softmax ------------------------------------------------------------
// log_softmax(a) = a - m - log sum exp(a - m), m the max along the axis (stable).
// backward: da = dy - softmax * sum(dy). softmax: y = exp(a - m) / sum;
// backward: da = y * (dy - sum(dy * y)).

namespace {

Tensor softmax_op(Tensor a, int axis, TOp op) {
  const std::string_view what = top_name(op);
  const Operand x = operand(a, what);
  const Shape in = a.shape();
  const int ax = in.axis(axis, what);
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id =
      impl.push(op, a.dtype(), in, Recorder::grad_for(tape, {x.id}), x.id, 0, Op::input, 0, ax);
  if (op == TOp::log_softmax)
    tensor_ops::LogSoftmax::forward(impl, impl.nodes[id]);
  else
    tensor_ops::Softmax::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

template <bool kLog> void softmax_forward(TensorTape::Impl& impl, Node& n) {
  const Node& a = impl.nodes[n.in[0]];
  const AxisSplit split(a.shape, n.axis);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(a.data);
    T* out = static_cast<T*>(n.data);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t i = 0; i < split.inner; ++i) {
        auto at = [&](std::int64_t l) { return (o * split.length + l) * split.inner + i; };
        T m = -std::numeric_limits<T>::infinity();
        for (std::int64_t l = 0; l < split.length; ++l) m = std::max(m, src[at(l)]);
        if (!std::isfinite(m)) m = 0;  // all -inf (or inf): let the arithmetic say so
        double s = 0;
        for (std::int64_t l = 0; l < split.length; ++l) s += std::exp(double(src[at(l)] - m));
        if constexpr (kLog) {
          const T log_s = T(std::log(s));
          for (std::int64_t l = 0; l < split.length; ++l) out[at(l)] = src[at(l)] - m - log_s;
        } else {
          for (std::int64_t l = 0; l < split.length; ++l)
            out[at(l)] = T(std::exp(double(src[at(l)] - m)) / s);
        }
      }
  });
}

template <bool kLog> void softmax_backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  TensorTape::Impl::zeroed(a);
  const AxisSplit split(a.shape, n.axis);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    const T* y = static_cast<const T*>(n.data);
    T* ga = static_cast<T*>(a.grad);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t i = 0; i < split.inner; ++i) {
        auto at = [&](std::int64_t l) { return (o * split.length + l) * split.inner + i; };
        double s = 0;
        if constexpr (kLog) {
          for (std::int64_t l = 0; l < split.length; ++l) s += double(up[at(l)]);
          for (std::int64_t l = 0; l < split.length; ++l)
            ga[at(l)] += up[at(l)] - T(std::exp(double(y[at(l)])) * s);
        } else {
          for (std::int64_t l = 0; l < split.length; ++l) s += double(up[at(l)] * y[at(l)]);
          for (std::int64_t l = 0; l < split.length; ++l)
            ga[at(l)] += y[at(l)] * (up[at(l)] - T(s));
        }
      }
  });
}

// out[..., l, ...] reads its whole row along the axis.
std::vector<AnomalyOperand> softmax_operands(const TensorTape& tape, NodeId id,
                                             const ElementIndex& out) {
  const int rank = tape.shape(tape.input_of(id, 0)).rank();
  return {input_operand(tape, id, 0, with_axis(out, rank, tape.axis(id)))};
}

// da's row comes from the upstream row and the output row (the backward reads y).
void softmax_backward_operands(const TensorTape& tape, NodeId id, const ElementIndex& target,
                               Anomaly& report) {
  const ElementIndex row = with_axis(target, tape.shape(id).rank(), tape.axis(id));
  add_upstream(tape, id, row, report);
  report.operands.push_back(tensor_operand(tape, "output", id, row));
}

}  // namespace

Tensor log_softmax(Tensor a, int axis) { return softmax_op(a, axis, TOp::log_softmax); }
Tensor softmax(Tensor a, int axis) { return softmax_op(a, axis, TOp::softmax); }

namespace tensor_ops {

void LogSoftmax::forward(TensorTape::Impl& impl, Node& n) { softmax_forward<true>(impl, n); }
void LogSoftmax::backward(TensorTape::Impl& impl, Node& n) { softmax_backward<true>(impl, n); }
std::string LogSoftmax::expression(const TensorTape& tape, NodeId id) {
  return reduction_expression(tape, id, false);
}
std::vector<AnomalyOperand> LogSoftmax::forward_operands(const TensorTape& tape, NodeId id,
                                                         const ElementIndex& out) {
  return softmax_operands(tape, id, out);
}
void LogSoftmax::backward_operands(const TensorTape& tape, NodeId id, int,
                                   const ElementIndex& target, Anomaly& report) {
  softmax_backward_operands(tape, id, target, report);
}

// da = up - softmax(a) * sum(up) along the axis, softmax(a) recorded as exp(y): the second
// derivative flows through y
void LogSoftmax::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                                std::span<Tensor> contributions) {
  const int axis = Recorder::node(tape, id).axis;
  contributions[0] = upstream - exp(tape.handle(id)) * sum(upstream, axis, true);
}

void Softmax::forward(TensorTape::Impl& impl, Node& n) { softmax_forward<false>(impl, n); }
void Softmax::backward(TensorTape::Impl& impl, Node& n) { softmax_backward<false>(impl, n); }
std::string Softmax::expression(const TensorTape& tape, NodeId id) {
  return reduction_expression(tape, id, false);
}
std::vector<AnomalyOperand> Softmax::forward_operands(const TensorTape& tape, NodeId id,
                                                      const ElementIndex& out) {
  return softmax_operands(tape, id, out);
}
void Softmax::backward_operands(const TensorTape& tape, NodeId id, int, const ElementIndex& target,
                                Anomaly& report) {
  softmax_backward_operands(tape, id, target, report);
}

// da = y * (up - sum(up * y)) along the axis
void Softmax::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                             std::span<Tensor> contributions) {
  const int axis = Recorder::node(tape, id).axis;
  const Tensor y = tape.handle(id);
  contributions[0] = y * (upstream - sum(upstream * y, axis, true));
}

}  // namespace tensor_ops

// ---- pick ---------------------------------------------------------------------------
// out[i] = a[i, index[i]], the class indices kept in the arena (aux);
// backward: da[i, index[i]] += dout[i].

Tensor pick(Tensor a, std::span<const std::int32_t> index) {
  const Operand x = operand(a, "pick");
  const Shape in = a.shape();
  if (in.rank() != 2) fail("pick: the scores must be 2-D (rows, classes), not {}", in);
  if (std::int64_t(index.size()) != in[0])
    fail("pick: {} class indices for {} rows (shape {})", index.size(), in[0], in);
  for (std::size_t i = 0; i < index.size(); ++i)
    if (index[i] < 0 || index[i] >= in[1])
      fail("pick: class index {} in row {} is out of range for {} classes", index[i], i, in[1]);
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id =
      impl.push(TOp::pick, a.dtype(), Shape{in[0]}, Recorder::grad_for(tape, {x.id}), x.id);
  auto* idx = static_cast<std::int32_t*>(impl.arena.allocate(index.size() * sizeof(std::int32_t)));
  std::copy(index.begin(), index.end(), idx);
  impl.nodes[id].aux = idx;
  tensor_ops::Pick::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

namespace tensor_ops {

void Pick::forward(TensorTape::Impl& impl, Node& n) {
  const Node& a = impl.nodes[n.in[0]];
  const auto* idx = static_cast<const std::int32_t*>(n.aux);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(a.data);
    T* out = static_cast<T*>(n.data);
    const std::int64_t classes = a.shape[1];
    for (std::int64_t i = 0, rows = a.shape[0]; i < rows; ++i) out[i] = src[i * classes + idx[i]];
  });
}

void Pick::backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  TensorTape::Impl::zeroed(a);
  const auto* idx = static_cast<const std::int32_t*>(n.aux);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    T* ga = static_cast<T*>(a.grad);
    const std::int64_t classes = a.shape[1];
    for (std::int64_t i = 0, rows = n.shape[0]; i < rows; ++i) ga[i * classes + idx[i]] += up[i];
  });
}

std::string Pick::expression(const TensorTape& tape, NodeId id) {
  return fmt::format("pick({}, labels)", label_of_input(tape, id, 0));
}

// out[i] reads row i (the class index is not on the tape).
std::vector<AnomalyOperand> Pick::forward_operands(const TensorTape& tape, NodeId id,
                                                   const ElementIndex& out) {
  return {input_operand(tape, id, 0, {out[0], -1})};
}

void Pick::backward_operands(const TensorTape& tape, NodeId id, int, const ElementIndex& target,
                             Anomaly& report) {
  add_upstream(tape, id, {target[0]}, report);
}

// da[i, :] = up[i] * onehot(index[i]): each row's upstream in its picked column, the one-hot
// rows a constant (the class indices are not on the tape)
void Pick::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                          std::span<Tensor> contributions) {
  const Node n = Recorder::node(tape, id);  // a copy: recording below moves the records
  const Shape in = tape.shape(n.in[0]);
  const auto* index = static_cast<const std::int32_t*>(n.aux);
  const std::int64_t classes = in[1];
  const Tensor one_hot = constant_from(tape, in, n.dtype, [&](std::int64_t p) {
    return index[p / classes] == p % classes ? 1.0 : 0.0;
  });
  contributions[0] = reshape(upstream, {in[0], 1}) * one_hot;
}

}  // namespace tensor_ops

// The same data, as a constant: no gradient flows back through it.
Tensor detach(Tensor a) {
  const Operand x = operand(a, "detach");
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id = impl.push(TOp::constant, a.dtype(), Shape{}, false);
  impl.nodes[id].shape = a.shape();
  impl.nodes[id].data = impl.nodes[x.id].data;  // shares the elements: no copy
  return Recorder::make(tape, id);
}

// ---- shape ops: joining, slicing and indexing along an axis ---------------------------------
// Each copies elements (no arithmetic): forward reads a[source(p)] into out[p], and backward adds
// up[p] into da[source(p)]. A source read twice (stack([x, x]), a repeated index) so gets both
// gradients, as in PyTorch.

namespace {

// "[a, b, c]": the labels of a joining node's inputs.
std::string input_labels(const TensorTape& tape, NodeId id) {
  std::string text = "[";
  for (int k = 0, arity = tape.arity(id); k < arity; ++k)
    text += (k ? ", " : "") + label_of_input(tape, id, k);
  return text + "]";
}

// The upstream element among `candidates` whose gradient is non-finite (the one that made the
// input's gradient so), else the first: for a gradient gathered from several output elements.
void add_worst_upstream(const TensorTape& tape, NodeId id,
                        const std::vector<ElementIndex>& candidates, Anomaly& report) {
  if (candidates.empty()) return;
  const Shape& out = tape.shape(id);
  for (const ElementIndex& c : candidates)
    if (!std::isfinite(tape.grad(id, ravel(out, c)))) return add_upstream(tape, id, c, report);
  add_upstream(tape, id, candidates.front(), report);
}

}  // namespace

// ---- cat and stack ----------------------------------------------------------------------------
// out = the inputs side by side along the axis: input k fills lengths [offset_k, offset_k + L_k)
// of it, L_k its length along the axis (cat) or 1 (stack, whose axis is new). Backward hands each
// input its part of the upstream gradient. The input ids are in the arena (Note [Many inputs]).

namespace {

// How much of the output's axis input `in` fills.
std::int64_t joined_length(const Node& n, const Node& in) {
  return n.op == TOp::stack ? 1 : in.shape[n.axis];
}

Tensor join(std::span<const Tensor> tensors, int axis, TOp op) {
  const std::string_view what = top_name(op);
  if (tensors.empty()) fail("{}: no tensors to join", what);
  const Operand first = operand(tensors[0], what);
  TensorTape& tape = *first.tape;
  auto& impl = Recorder::impl(tape);
  const Shape s0 = impl.nodes[first.id].shape;
  int ax = 0;
  if (op == TOp::cat) {
    ax = s0.axis(axis, what);
  } else {
    ax = axis < 0 ? axis + s0.rank() + 1 : axis;
    if (ax < 0 || ax > s0.rank())
      throw Error(
          fmt::format("stack: axis {} is out of range for tensors of shape {} (a new axis "
                      "goes in [{}, {}])",
                      axis, s0, -s0.rank() - 1, s0.rank()));
  }
  std::int64_t length = 0;
  bool grad = false;
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    check_same(first, tensors[k], what);
    const Shape& sk = impl.nodes[tensors[k].id()].shape;
    if (op == TOp::stack && !(sk == s0))
      throw Error(
          fmt::format("stack: tensor {} of shape {} differs from tensor 0 of shape {} "
                      "(stacking along axis {} needs one shape)",
                      k, sk, s0, axis));
    if (op == TOp::cat) {
      bool fits = sk.rank() == s0.rank();
      for (int d = 0; fits && d < s0.rank(); ++d) fits = d == ax || sk[d] == s0[d];
      if (!fits)
        throw Error(
            fmt::format("cat: tensor {} of shape {} does not fit tensor 0 of shape {} "
                        "along axis {}: the other axes must agree",
                        k, sk, s0, axis));
    }
    length += op == TOp::cat ? sk[ax] : 1;
    grad = grad || Recorder::grad_for(tape, {tensors[k].id()});
  }
  std::int64_t dims[kMaxRank + 1];
  for (int d = 0, r = 0; d <= s0.rank(); ++d) {
    if (op == TOp::stack)
      dims[d] = d == ax ? length : s0[r++];
    else if (d < s0.rank())
      dims[d] = d == ax ? length : s0[d];
  }
  const int rank = op == TOp::stack ? s0.rank() + 1 : s0.rank();
  const Shape shape(std::span<const std::int64_t>(dims, std::size_t(rank)));  // names rank > 6
  const NodeId id =
      impl.push(op, impl.nodes[first.id].dtype, shape, grad, first.id, 0, Op::input, 0, ax);
  NodeId* inputs = store_inputs(impl, impl.nodes[id], tensors.size());
  for (std::size_t k = 0; k < tensors.size(); ++k) inputs[k] = tensors[k].id();
  tensor_ops::Cat::forward(impl, impl.nodes[id]);  // one forward for both: joined_length differs
  return Recorder::make(tape, id);
}

void join_forward(TensorTape::Impl& impl, Node& n) {
  const AxisSplit split(n.shape, n.axis);
  const std::size_t size = dtype_size(n.dtype);
  auto* out = static_cast<std::byte*>(n.data);
  std::int64_t offset = 0;
  for (int k = 0, arity = stored_input_count(n); k < arity; ++k) {
    const Node& in = impl.nodes[input_id(n, k)];
    const std::int64_t length = joined_length(n, in), chunk = length * split.inner;
    const auto* src = static_cast<const std::byte*>(in.data);
    for (std::int64_t o = 0; o < split.outer; ++o)
      std::memcpy(out + std::size_t((o * split.length + offset) * split.inner) * size,
                  src + std::size_t(o * chunk) * size, std::size_t(chunk) * size);
    offset += length;
  }
}

void join_backward(TensorTape::Impl& impl, Node& n) {
  const AxisSplit split(n.shape, n.axis);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    std::int64_t offset = 0;
    for (int k = 0, arity = stored_input_count(n); k < arity; ++k) {
      Node& in = impl.nodes[input_id(n, k)];
      const std::int64_t length = joined_length(n, in), chunk = length * split.inner;
      if (in.grad != nullptr) {
        TensorTape::Impl::zeroed(in);  // accumulates: an input may be joined twice
        T* g = static_cast<T*>(in.grad);
        for (std::int64_t o = 0; o < split.outer; ++o)
          for (std::int64_t j = 0; j < chunk; ++j)
            g[o * chunk + j] += up[(o * split.length + offset) * split.inner + j];
      }
      offset += length;
    }
  });
}

// Where input k starts along the output's axis.
std::int64_t join_offset(const TensorTape& tape, NodeId id, int k) {
  std::int64_t offset = 0;
  const int ax = tape.axis(id);
  for (int j = 0; j < k; ++j)
    offset += tape.op(id) == TOp::stack ? 1 : tape.shape(tape.input_of(id, j))[ax];
  return offset;
}

// out[..., l, ...] is input k's element at l - offset_k along the axis (cat), or its element
// without the axis, k = l (stack).
std::vector<AnomalyOperand> join_operands(const TensorTape& tape, NodeId id,
                                          const ElementIndex& out) {
  const int ax = tape.axis(id);
  ElementIndex index = out;
  if (tape.op(id) == TOp::stack) {
    index.erase(index.begin() + ax);
    return {input_operand(tape, id, int(out[std::size_t(ax)]), index)};
  }
  for (int k = 0, arity = tape.arity(id); k < arity; ++k) {
    const std::int64_t offset = join_offset(tape, id, k);
    if (out[std::size_t(ax)] < offset + tape.shape(tape.input_of(id, k))[ax]) {
      index[std::size_t(ax)] -= offset;
      return {input_operand(tape, id, k, index)};
    }
  }
  return {};
}

// join_backward recorded: each input's part of the upstream, a slice along the axis (stack's
// viewed without its new axis).
void join_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                std::span<Tensor> contributions) {
  const Node n = Recorder::node(tape, id);  // a copy: recording below moves the records
  std::int64_t offset = 0;
  for (int k = 0, arity = stored_input_count(n); k < arity; ++k) {
    const NodeId in = input_id(n, k);
    const Shape shape = tape.shape(in);
    const std::int64_t length = n.op == TOp::stack ? 1 : shape[n.axis];
    if (tape.needs_grad(in)) {
      const Tensor part = slice(upstream, n.axis, offset, offset + length);
      contributions[std::size_t(k)] = n.op == TOp::stack ? reshape(part, shape) : part;
    }
    offset += length;
  }
}

void join_backward_operands(const TensorTape& tape, NodeId id, int k, const ElementIndex& target,
                            Anomaly& report) {
  const int ax = tape.axis(id);
  ElementIndex index = target;
  if (tape.op(id) == TOp::stack)
    index.insert(index.begin() + ax, k);
  else
    index[std::size_t(ax)] += join_offset(tape, id, k);
  add_upstream(tape, id, index, report);
}

}  // namespace

Tensor cat(std::span<const Tensor> tensors, int axis) { return join(tensors, axis, TOp::cat); }
Tensor cat(std::initializer_list<Tensor> tensors, int axis) {
  return join(std::span(tensors.begin(), tensors.size()), axis, TOp::cat);
}
Tensor stack(std::span<const Tensor> tensors, int axis) { return join(tensors, axis, TOp::stack); }
Tensor stack(std::initializer_list<Tensor> tensors, int axis) {
  return join(std::span(tensors.begin(), tensors.size()), axis, TOp::stack);
}

namespace tensor_ops {

void Cat::forward(TensorTape::Impl& impl, Node& n) { join_forward(impl, n); }
void Cat::backward(TensorTape::Impl& impl, Node& n) { join_backward(impl, n); }
std::string Cat::expression(const TensorTape& tape, NodeId id) {
  return fmt::format("cat({}, axis={})", input_labels(tape, id), tape.axis(id));
}
std::vector<AnomalyOperand> Cat::forward_operands(const TensorTape& tape, NodeId id,
                                                  const ElementIndex& out) {
  return join_operands(tape, id, out);
}
void Cat::backward_operands(const TensorTape& tape, NodeId id, int k, const ElementIndex& target,
                            Anomaly& report) {
  join_backward_operands(tape, id, k, target, report);
}
void Cat::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                         std::span<Tensor> contributions) {
  join_graph(tape, id, upstream, contributions);
}

void Stack::forward(TensorTape::Impl& impl, Node& n) { join_forward(impl, n); }
void Stack::backward(TensorTape::Impl& impl, Node& n) { join_backward(impl, n); }
std::string Stack::expression(const TensorTape& tape, NodeId id) {
  return fmt::format("stack({}, axis={})", input_labels(tape, id), tape.axis(id));
}
std::vector<AnomalyOperand> Stack::forward_operands(const TensorTape& tape, NodeId id,
                                                    const ElementIndex& out) {
  return join_operands(tape, id, out);
}
void Stack::backward_operands(const TensorTape& tape, NodeId id, int k, const ElementIndex& target,
                              Anomaly& report) {
  join_backward_operands(tape, id, k, target, report);
}
void Stack::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                           std::span<Tensor> contributions) {
  join_graph(tape, id, upstream, contributions);
}

}  // namespace tensor_ops

// ---- slice ------------------------------------------------------------------------------------
// out[o, j, i] = a[o, start + j * step, i]; backward: da[o, start + j * step, i] += dout[o, j, i].
// start, stop (clamped, as Python leaves them) and step are kept in the arena (aux).

namespace {

struct SliceRange {
  std::int64_t start, stop, step;
};

const SliceRange& slice_range(const void* aux) { return *static_cast<const SliceRange*>(aux); }

}  // namespace

Tensor slice(Tensor a, int axis, std::int64_t start, std::int64_t stop, std::int64_t step) {
  const Operand x = operand(a, "slice");
  const Shape in = a.shape();
  const int ax = in.axis(axis, "slice");
  if (step <= 0) fail("slice: step must be positive, not {}", step);
  const std::int64_t length = in[ax];
  // Python's rule: a negative bound counts from the end; both are clamped to [0, length].
  const auto bound = [&](std::int64_t v) {
    if (v < 0) v = v < -length ? 0 : v + length;
    return std::min(v, length);
  };
  const SliceRange range{bound(start), bound(stop), step};
  Shape shape = in;
  shape[ax] = range.stop > range.start ? (range.stop - range.start + step - 1) / step : 0;
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id = impl.push(TOp::slice, a.dtype(), shape, Recorder::grad_for(tape, {x.id}), x.id,
                              0, Op::input, 0, ax);
  void* aux = impl.arena.allocate(sizeof(SliceRange));
  std::memcpy(aux, &range, sizeof range);
  impl.nodes[id].aux = aux;
  tensor_ops::Slice::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

namespace tensor_ops {

void Slice::forward(TensorTape::Impl& impl, Node& n) {
  const Node& a = impl.nodes[n.in[0]];
  const AxisSplit split(a.shape, n.axis);
  const SliceRange& r = slice_range(n.aux);
  const std::int64_t count = n.shape[n.axis];
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(a.data);
    T* out = static_cast<T*>(n.data);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t j = 0; j < count; ++j)
        for (std::int64_t i = 0; i < split.inner; ++i)
          out[(o * count + j) * split.inner + i] =
              src[(o * split.length + r.start + j * r.step) * split.inner + i];
  });
}

void Slice::backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  TensorTape::Impl::zeroed(a);
  const AxisSplit split(a.shape, n.axis);
  const SliceRange& r = slice_range(n.aux);
  const std::int64_t count = n.shape[n.axis];
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    T* ga = static_cast<T*>(a.grad);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t j = 0; j < count; ++j)
        for (std::int64_t i = 0; i < split.inner; ++i)
          ga[(o * split.length + r.start + j * r.step) * split.inner + i] +=
              up[(o * count + j) * split.inner + i];
  });
}

// As Python writes it: "x[:, 1:5:2]" (the axes after the sliced one left out).
std::string Slice::expression(const TensorTape& tape, NodeId id) {
  const SliceRange& r = slice_range(Recorder::node(tape, id).aux);
  std::string text = label_of_input(tape, id, 0) + "[";
  for (int d = 0; d < tape.axis(id); ++d) text += ":, ";
  text += fmt::format("{}:{}", r.start, r.stop);
  if (r.step != 1) text += fmt::format(":{}", r.step);
  return text + "]";
}

std::vector<AnomalyOperand> Slice::forward_operands(const TensorTape& tape, NodeId id,
                                                    const ElementIndex& out) {
  const SliceRange& r = slice_range(Recorder::node(tape, id).aux);
  ElementIndex index = out;
  const auto ax = std::size_t(tape.axis(id));
  index[ax] = r.start + index[ax] * r.step;
  return {input_operand(tape, id, 0, index)};
}

// da at l came from up at (l - start) / step, if l is one of the slice's.
void Slice::backward_operands(const TensorTape& tape, NodeId id, int, const ElementIndex& target,
                              Anomaly& report) {
  const SliceRange& r = slice_range(Recorder::node(tape, id).aux);
  const auto ax = std::size_t(tape.axis(id));
  const std::int64_t l = target[ax] - r.start;
  if (l < 0 || l % r.step != 0 || l / r.step >= tape.shape(id)[int(ax)]) return;
  ElementIndex index = target;
  index[ax] = l / r.step;
  add_upstream(tape, id, index, report);
}

// the upstream put back where the slice read it, zeros elsewhere
// (Note [Selections differentiate as gathers])
void Slice::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                           std::span<Tensor> contributions) {
  const Node n = Recorder::node(tape, id);
  const Shape in = tape.shape(n.in[0]);
  const AxisSplit split(in, n.axis);
  const SliceRange r = slice_range(n.aux);
  const auto row = [&](std::int64_t j) { return r.start + j * r.step; };
  contributions[0] = scatter_to(upstream, in, selection_sources(split, n.shape[n.axis], row));
}

}  // namespace tensor_ops

// ---- index_select -----------------------------------------------------------------------------
// out[o, j, i] = a[o, index[j], i]; backward: da[o, index[j], i] += dout[o, j, i], so a repeated
// index gets every gradient sent to it. The indices are kept in the arena (aux).

namespace {

const std::int64_t* stored_index(const TensorTape& tape, NodeId id) {
  return static_cast<const std::int64_t*>(Recorder::node(tape, id).aux);
}

std::int64_t* copy_index(TensorTape::Impl& impl, std::span<const std::int64_t> index) {
  auto* stored = static_cast<std::int64_t*>(
      impl.arena.allocate(std::max<std::size_t>(index.size(), 1) * sizeof(std::int64_t)));
  std::copy(index.begin(), index.end(), stored);
  return stored;
}

// "[2, 0, 2]", the first few of them.
std::string index_text(const std::int64_t* index, std::int64_t count) {
  constexpr std::int64_t kShown = 6;
  std::string text = "[";
  for (std::int64_t j = 0; j < std::min(count, kShown); ++j)
    text += fmt::format("{}{}", j ? ", " : "", index[j]);
  return text + (count > kShown ? ", ...]" : "]");
}

}  // namespace

Tensor index_select(Tensor a, int axis, std::span<const std::int64_t> index) {
  const Operand x = operand(a, "index_select");
  const Shape in = a.shape();
  const int ax = in.axis(axis, "index_select");
  for (std::size_t j = 0; j < index.size(); ++j)
    if (index[j] < 0 || index[j] >= in[ax])
      throw Error(
          fmt::format("index_select: index {} at position {} is out of range for axis {} "
                      "of length {} (shape {})",
                      index[j], j, axis, in[ax], in));
  Shape shape = in;
  shape[ax] = std::int64_t(index.size());
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id = impl.push(TOp::index_select, a.dtype(), shape, Recorder::grad_for(tape, {x.id}),
                              x.id, 0, Op::input, 0, ax);
  impl.nodes[id].aux = copy_index(impl, index);
  tensor_ops::IndexSelect::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

namespace tensor_ops {

void IndexSelect::forward(TensorTape::Impl& impl, Node& n) {
  const Node& a = impl.nodes[n.in[0]];
  const AxisSplit split(a.shape, n.axis);
  const auto* index = static_cast<const std::int64_t*>(n.aux);
  const std::int64_t count = n.shape[n.axis];
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(a.data);
    T* out = static_cast<T*>(n.data);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t j = 0; j < count; ++j)
        for (std::int64_t i = 0; i < split.inner; ++i)
          out[(o * count + j) * split.inner + i] =
              src[(o * split.length + index[j]) * split.inner + i];
  });
}

void IndexSelect::backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  TensorTape::Impl::zeroed(a);
  const AxisSplit split(a.shape, n.axis);
  const auto* index = static_cast<const std::int64_t*>(n.aux);
  const std::int64_t count = n.shape[n.axis];
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    T* ga = static_cast<T*>(a.grad);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t j = 0; j < count; ++j)
        for (std::int64_t i = 0; i < split.inner; ++i)
          ga[(o * split.length + index[j]) * split.inner + i] +=
              up[(o * count + j) * split.inner + i];
  });
}

std::string IndexSelect::expression(const TensorTape& tape, NodeId id) {
  return fmt::format("index_select({}, axis={}, {})", label_of_input(tape, id, 0), tape.axis(id),
                     index_text(stored_index(tape, id), tape.shape(id)[tape.axis(id)]));
}

std::vector<AnomalyOperand> IndexSelect::forward_operands(const TensorTape& tape, NodeId id,
                                                          const ElementIndex& out) {
  ElementIndex index = out;
  const auto ax = std::size_t(tape.axis(id));
  index[ax] = stored_index(tape, id)[index[ax]];
  return {input_operand(tape, id, 0, index)};
}

// da at l came from every j with index[j] == l: the one whose upstream is non-finite.
void IndexSelect::backward_operands(const TensorTape& tape, NodeId id, int,
                                    const ElementIndex& target, Anomaly& report) {
  const auto ax = std::size_t(tape.axis(id));
  const std::int64_t* index = stored_index(tape, id);
  std::vector<ElementIndex> candidates;
  for (std::int64_t j = 0, count = tape.shape(id)[int(ax)]; j < count; ++j)
    if (index[j] == target[ax]) {
      candidates.push_back(target);
      candidates.back()[ax] = j;
    }
  add_worst_upstream(tape, id, candidates, report);
}

// the upstream added back where each slice was read (Note [Selections differentiate as gathers])
void IndexSelect::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                                 std::span<Tensor> contributions) {
  const Node n = Recorder::node(tape, id);
  const Shape in = tape.shape(n.in[0]);
  const AxisSplit split(in, n.axis);
  const auto* index = static_cast<const std::int64_t*>(n.aux);
  const auto row = [&](std::int64_t j) { return index[j]; };
  contributions[0] = scatter_to(upstream, in, selection_sources(split, n.shape[n.axis], row));
}

}  // namespace tensor_ops

// ---- gather -------------------------------------------------------------------------------------
// out[p] = a[p with the axis's entry replaced by index[p]] (out has the index's shape);
// backward: da[that element] += dout[p], scatter-adding: repeated indices accumulate.

namespace {

// The flat position in a (of shape `in`) that out element p reads.
std::int64_t gather_source(const Shape& in, const Shape& out, int axis, const std::int64_t* index,
                           std::int64_t p) {
  std::int64_t source = 0, stride = 1, rest = p;
  for (int d = out.rank() - 1; d >= 0; --d) {
    const std::int64_t coordinate = rest % out[d];
    rest /= out[d];
    source += (d == axis ? index[p] : coordinate) * stride;
    stride *= in[d];
  }
  return source;
}

}  // namespace

Tensor gather(Tensor a, int axis, std::span<const std::int64_t> index, const Shape& index_shape) {
  const Operand x = operand(a, "gather");
  const Shape in = a.shape();
  const int ax = in.axis(axis, "gather");
  if (index_shape.rank() != in.rank())
    throw Error(
        fmt::format("gather: an index of shape {} for a tensor of shape {}: the ranks "
                    "must agree",
                    index_shape, in));
  for (int d = 0; d < in.rank(); ++d)
    if (d != ax && index_shape[d] > in[d])
      throw Error(
          fmt::format("gather: an index of shape {} is longer than the tensor's shape {} "
                      "on axis {} (gathering along axis {})",
                      index_shape, in, d, axis));
  if (std::int64_t(index.size()) != index_shape.numel())
    fail("gather: {} indices for an index of shape {} ({} elements)", index.size(), index_shape,
         index_shape.numel());
  for (std::size_t p = 0; p < index.size(); ++p)
    if (index[p] < 0 || index[p] >= in[ax]) {
      const std::vector<std::int64_t> at = unravel(index_shape, std::int64_t(p));
      std::string where;
      for (std::size_t d = 0; d < at.size(); ++d)
        where += fmt::format("{}{}", d ? ", " : "", at[d]);
      throw Error(
          fmt::format("gather: index {} at [{}] is out of range for axis {} of length {} "
                      "(shape {})",
                      index[p], where, axis, in[ax], in));
    }
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id = impl.push(TOp::gather, a.dtype(), index_shape, Recorder::grad_for(tape, {x.id}),
                              x.id, 0, Op::input, 0, ax);
  impl.nodes[id].aux = copy_index(impl, index);
  tensor_ops::Gather::forward(impl, impl.nodes[id]);
  return Recorder::make(tape, id);
}

namespace tensor_ops {

void Gather::forward(TensorTape::Impl& impl, Node& n) {
  const Node& a = impl.nodes[n.in[0]];
  const auto* index = static_cast<const std::int64_t*>(n.aux);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(a.data);
    T* out = static_cast<T*>(n.data);
    for (std::int64_t p = 0, e = n.shape.numel(); p < e; ++p)
      out[p] = src[gather_source(a.shape, n.shape, n.axis, index, p)];
  });
}

void Gather::backward(TensorTape::Impl& impl, Node& n) {
  Node& a = impl.nodes[n.in[0]];
  TensorTape::Impl::zeroed(a);
  const auto* index = static_cast<const std::int64_t*>(n.aux);
  with_dtype(n.dtype, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(n.grad);
    T* ga = static_cast<T*>(a.grad);
    for (std::int64_t p = 0, e = n.shape.numel(); p < e; ++p)
      ga[gather_source(a.shape, n.shape, n.axis, index, p)] += up[p];
  });
}

std::string Gather::expression(const TensorTape& tape, NodeId id) {
  return fmt::format("gather({}, axis={}, {})", label_of_input(tape, id, 0), tape.axis(id),
                     index_text(stored_index(tape, id), tape.shape(id).numel()));
}

std::vector<AnomalyOperand> Gather::forward_operands(const TensorTape& tape, NodeId id,
                                                     const ElementIndex& out) {
  ElementIndex index = out;
  const auto ax = std::size_t(tape.axis(id));
  index[ax] = stored_index(tape, id)[ravel(tape.shape(id), out)];
  return {input_operand(tape, id, 0, index)};
}

// da at target came from every p that agrees with it off the axis and whose index is target's.
void Gather::backward_operands(const TensorTape& tape, NodeId id, int, const ElementIndex& target,
                               Anomaly& report) {
  const auto ax = std::size_t(tape.axis(id));
  const std::int64_t* index = stored_index(tape, id);
  const Shape& out = tape.shape(id);
  std::vector<ElementIndex> candidates;
  for (std::int64_t p = 0, e = out.numel(); p < e; ++p) {
    ElementIndex at = unravel(out, p);
    bool same = index[p] == target[ax];
    for (std::size_t d = 0; same && d < at.size(); ++d) same = d == ax || at[d] == target[d];
    if (same) candidates.push_back(std::move(at));
  }
  add_worst_upstream(tape, id, candidates, report);
}

// the upstream scatter-added back (Note [Selections differentiate as gathers])
void Gather::backward_graph(TensorTape& tape, NodeId id, const Tensor& upstream,
                            std::span<Tensor> contributions) {
  const Node n = Recorder::node(tape, id);
  const Shape in = tape.shape(n.in[0]);
  const auto* index = static_cast<const std::int64_t*>(n.aux);
  std::vector<std::int64_t> source(std::size_t(n.shape.numel()));
  for (std::int64_t p = 0; p < n.shape.numel(); ++p)
    source[std::size_t(p)] = gather_source(in, n.shape, n.axis, index, p);
  contributions[0] = scatter_to(upstream, in, source);
}

}  // namespace tensor_ops

}  // namespace ag
