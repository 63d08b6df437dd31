// Anomaly mode (Note [Anomaly mode], anomaly.hpp): the checks a tape calls out to while it is on,
// and the report of what they found, for both tapes. Free functions over a const tape, reading
// only its public accessors and the op tables' operand descriptions.

#include "tapegrad/anomaly.hpp"

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <iterator>
#include <type_traits>

#include "anomaly_index.hpp"
#include "tensor_ops.hpp"

namespace ag {

using namespace anomaly_index;

// ---- the one line ---------------------------------------------------------------------

namespace {

// The shortest text that reads back as the same number, at the precision it was computed in;
// every NaN is "nan" (0/0 on x86 has its sign bit set, which fmt would print as "-nan").
std::string number(double x, DType dtype) {
  if (std::isnan(x)) return "nan";
  return dtype == DType::f32 ? fmt::format("{}", static_cast<float>(x)) : fmt::format("{}", x);
}

// "[1, 2]", "[0, :]" (-1 is a whole axis); "" for a single element of shape ().
std::string index_text(const std::vector<std::int64_t>& index) {
  if (index.empty()) return "";
  std::string s = "[";
  for (std::size_t i = 0; i < index.size(); ++i)
    s += (i ? ", " : "") + (index[i] < 0 ? std::string(":") : std::to_string(index[i]));
  return s + "]";
}

// "x[1, 2] of (2, 3)"; "x of shape ()" for a tensor of one element without axes.
std::string element(std::string_view label, const std::vector<std::int64_t>& index,
                    const Shape& shape) {
  if (shape.rank() == 0) return fmt::format("{} of shape ()", label);
  return fmt::format("{}{} of {}", label, index_text(index), shape);
}

// How many elements an operand's index covers (a whole axis counts its length).
std::int64_t covered(const AnomalyOperand& o) {
  std::int64_t n = 1;
  for (std::size_t i = 0; i < o.index.size(); ++i)
    if (o.index[i] < 0) n *= o.shape[int(i)];
  return n;
}

std::string operand_text(const Anomaly& a, const AnomalyOperand& o) {
  std::string values;
  if (o.values.size() == 1 && covered(o) == 1) {
    values = number(o.values[0], a.dtype);
  } else {
    values = "[";
    for (std::size_t i = 0; i < o.values.size(); ++i)
      values += (i ? ", " : "") + number(o.values[i], a.dtype);
    values += std::int64_t(o.values.size()) < covered(o) ? ", ...]" : "]";
  }
  if (!a.tensor || o.label.empty()) return fmt::format("{} = {}", o.role, values);  // a param
  return fmt::format("{} = {} at {}", o.role, values, element(o.label, o.index, o.shape));
}

// " 'h' in layers.2": the name, and the module path on a tensor tape.
std::string naming(std::string_view name, std::string_view scope) {
  std::string s;
  if (!name.empty()) s += fmt::format(" '{}'", name);
  if (!scope.empty()) s += fmt::format(" in {}", scope);
  return s;
}

// " at [1, 2] of (4, 3)" for tensors; "" for scalars.
std::string position(const Anomaly& a) {
  if (!a.tensor) return "";
  return a.shape.rank() == 0 ? " of shape ()" : " at " + element("", a.index, a.shape);
}

bool is_leaf_name(std::string_view op) {
  return op == "input" || op == "constant" || op == "parameter";
}

}  // namespace

std::string describe(const Anomaly& a) {
  std::string s = "anomaly: ";
  auto out = std::back_inserter(s);
  const std::string value = number(a.value, a.dtype);
  std::string site = fmt::format("node {}{}", a.node, naming(a.name, a.scope));
  for (const AnomalyOperand& o : a.operands) site += ", " + operand_text(a, o);
  switch (a.kind) {
    case AnomalyKind::forward:
      fmt::format_to(out, "forward of {} ({}) produced {}{}", a.op, site, value, position(a));
      break;
    case AnomalyKind::backward:
      fmt::format_to(out, "backward of {} ({}) produced gradient {} for {} (node {}){}", a.op, site,
                     value, a.target_label, a.target, position(a));
      if (a.upstream && a.local) {
        fmt::format_to(out, ": upstream {}", number(*a.upstream, a.dtype));
        if (a.tensor) fmt::format_to(out, " at {}", index_text(a.upstream_index));
        fmt::format_to(out, " times local gradient {}", number(*a.local, a.dtype));
      }
      break;
    case AnomalyKind::given: {
      if (is_leaf_name(a.op))
        fmt::format_to(out, "{}{} (node {}{}) is {}{} as given, before any op", a.op,
                       a.name.empty() ? "" : " " + a.name, a.node, naming({}, a.scope), value,
                       position(a));
      else
        fmt::format_to(out, "{} (node {}, {}{}) is {}{}, recorded before anomaly mode was on",
                       a.name.empty() ? fmt::format("t{}", a.node) : a.name, a.node, a.op,
                       naming({}, a.scope), value, position(a));
      if (!a.target_label.empty())
        fmt::format_to(out, " (used by {}, node {}{})", a.target_label, a.target,
                       naming({}, a.target_scope));
      break;
    }
    case AnomalyKind::update:
      fmt::format_to(out, "an optimizer step made parameter {} {}{}", a.name, value, position(a));
      if (!a.operands.empty() && !a.operands[0].values.empty())
        fmt::format_to(out, " ({} there {})", a.operands[0].role,
                       number(a.operands[0].values[0], a.dtype));
      break;
  }
  return s;
}

// ---- the scalar tape --------------------------------------------------------------------

namespace {

// A non-finite leaf, or node recorded while the mode was off; `user` is the op that reads it
// (none for an input checked as it is created).
Anomaly scalar_given(const Tape& tape, NodeId id, std::optional<NodeId> user) {
  Anomaly a;
  a.kind = AnomalyKind::given;
  a.node = id;
  a.op = std::string(op_info(tape.op(id)).name);
  a.name = std::string(tape.name(id));
  a.value = tape.value(id);
  if (user) {
    a.target = *user;
    a.target_label = std::string(op_info(tape.op(*user)).name);
  }
  return a;
}

// The op's inputs ("input 0 = 0") and its fixed parameter ("exponent = -1").
std::vector<AnomalyOperand> scalar_operands(const Tape& tape, NodeId id) {
  std::vector<AnomalyOperand> operands;
  for (int k = 0; k < tape.arity(id); ++k) {
    const NodeId in = tape.input_of(id, k);
    operands.push_back({fmt::format("input {}", k), in, tape.label(in), {}, {}, {tape.value(in)}});
  }
  if (op_info(tape.op(id)).has_param)
    operands.push_back(param_operand(tape.op(id), id, tape.param(id)));
  return operands;
}

Anomaly scalar_op(const Tape& tape, NodeId id, AnomalyKind kind) {
  Anomaly a;
  a.kind = kind;
  a.node = id;
  a.op = std::string(op_info(tape.op(id)).name);
  a.name = std::string(tape.name(id));
  a.value = tape.value(id);
  a.operands = scalar_operands(tape, id);
  return a;
}

}  // namespace

namespace detail {

void scalar_forward_anomaly(const Tape& tape, NodeId id) {
  if (is_leaf(tape.op(id))) throw AnomalyError(scalar_given(tape, id, std::nullopt));
  // An input that is already non-finite was given so: the op that reads it is not to blame.
  for (int k = 0; k < tape.arity(id); ++k)
    if (!std::isfinite(tape.value(tape.input_of(id, k))))
      throw AnomalyError(scalar_given(tape, tape.input_of(id, k), id));
  throw AnomalyError(scalar_op(tape, id, AnomalyKind::forward));
}

void check_scalar_forward(const Tape& tape) {
  for (NodeId id = 0; id < tape.size(); ++id)
    if (tape.op(id) != Op::constant && !std::isfinite(tape.value(id)))
      scalar_forward_anomaly(tape, id);
}

void scalar_backward_anomaly(const Tape& tape, NodeId id) {
  for (int k = 0; k < tape.arity(id); ++k) {
    const NodeId in = tape.input_of(id, k);
    if (!tape.needs_grad(in) || std::isfinite(tape.grad(in))) continue;
    Anomaly a = scalar_op(tape, id, AnomalyKind::backward);
    a.value = tape.grad(in);
    a.input = k;
    a.target = in;
    a.target_label = tape.label(in);
    a.upstream = tape.grad(id);
    a.local = tape.local_grad(id, k);
    throw AnomalyError(std::move(a));
  }
  fail("anomaly: node {}: backward_anomaly found every gradient finite", id);
}

}  // namespace detail

namespace anomaly_index {

std::vector<std::int64_t> unravel(const Shape& s, std::int64_t flat) { return s.unravel(flat); }

std::int64_t ravel(const Shape& s, const std::vector<std::int64_t>& index) {
  std::int64_t flat = 0;
  for (int i = 0; i < s.rank(); ++i) flat = flat * s[i] + index[std::size_t(i)];
  return flat;
}

// The element of an input of shape `in` that output element `out` reads (Note [Broadcasting],
// broadcast.hpp): axes aligned on the right, an axis of length 1 repeats.
std::vector<std::int64_t> broadcast_index(const std::vector<std::int64_t>& out, const Shape& in) {
  std::vector<std::int64_t> index(std::size_t(in.rank()));
  const int shift = int(out.size()) - in.rank();
  for (int i = 0; i < in.rank(); ++i)
    index[std::size_t(i)] = in[i] == 1 ? 0 : out[std::size_t(i + shift)];
  return index;
}

// The index with a whole axis (-1) at `axis`: replacing it if the rank is the input's, or
// inserted if the output lost it (a reduction without keepdims).
std::vector<std::int64_t> with_axis(std::vector<std::int64_t> index, int rank, int axis) {
  if (int(index.size()) == rank)
    index[std::size_t(axis)] = -1;
  else
    index.insert(index.begin() + axis, -1);
  return index;
}

// The reduced output's element for an input element: the axis dropped, or 0 with keepdims.
std::vector<std::int64_t> without_axis(std::vector<std::int64_t> index, int out_rank, int axis) {
  if (int(index.size()) == out_rank)
    index[std::size_t(axis)] = 0;
  else
    index.erase(index.begin() + axis);
  return index;
}

// Node id's elements (or gradient) at `index` (-1: the whole axis), the first kAnomalyShown.
AnomalyOperand tensor_operand(const TensorTape& tape, std::string role, NodeId id,
                              std::vector<std::int64_t> index, bool grad) {
  AnomalyOperand o{std::move(role), id, tape.label(id), tape.shape(id), std::move(index), {}};
  if (o.shape.numel() == 0) return o;  // a mean of nothing reads no element
  std::vector<std::int64_t> at = o.index;
  for (std::int64_t& i : at) i = i < 0 ? 0 : i;
  while (o.values.size() < kAnomalyShown) {
    const std::int64_t flat = ravel(o.shape, at);
    o.values.push_back(grad ? tape.grad(id, flat) : tape.value(id, flat));
    // The next element along the whole axes, the last one fastest.
    int axis = int(at.size()) - 1;
    for (; axis >= 0; --axis) {
      if (o.index[std::size_t(axis)] >= 0) continue;
      if (++at[std::size_t(axis)] < o.shape[axis]) break;
      at[std::size_t(axis)] = 0;
    }
    if (axis < 0) break;
  }
  return o;
}

// An op's fixed parameter as an operand: "exponent = -1", "alpha = 0.01".
AnomalyOperand param_operand(Op op, NodeId id, double param) {
  return {std::string(op_info(op).param_name), id, {}, {}, {}, {param}};
}

}  // namespace anomaly_index

// ---- the tensor tape ----------------------------------------------------------------------

namespace {

std::string op_name(const TensorTape& tape, NodeId id) {
  return std::string(node_op_name(tape, id));
}

std::string scope_path(const TensorTape& tape, NodeId id) {
  return std::string(tape.scope_name(tape.scope(id)));
}

// The first element that is NaN or infinite, or -1. The first pass only ORs a bit test (which
// vectorizes); the second finds the element when there is one.
template <class T> std::int64_t first_non_finite(std::span<const T> x) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr U kExponent = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
  U bad = 0;
  // The builtin behind std::bit_cast: emscripten's libc++ 14 (the playground) lacks the latter.
  for (const T v : x) bad |= U((__builtin_bit_cast(U, v) & kExponent) == kExponent);
  if (!bad) return -1;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i])) return std::int64_t(i);
  return -1;
}

// Of node id's elements (or gradient, when grad is set; -1 if it has none).
std::int64_t first_non_finite(const TensorTape& tape, NodeId id, bool grad) {
  if (tape.dtype(id) == DType::f32)
    return first_non_finite(grad ? tape.gradients<float>(id) : tape.elements<float>(id));
  return first_non_finite(grad ? tape.gradients<double>(id) : tape.elements<double>(id));
}

Anomaly tensor_anomaly(const TensorTape& tape, NodeId id, AnomalyKind kind) {
  Anomaly a;
  a.kind = kind;
  a.tensor = true;
  a.node = id;
  a.op = op_name(tape, id);
  a.name = std::string(tape.name(id));
  a.scope = scope_path(tape, id);
  a.dtype = tape.dtype(id);
  return a;
}

Anomaly tensor_given(const TensorTape& tape, NodeId id, std::int64_t flat, NodeId user) {
  Anomaly a = tensor_anomaly(tape, id, AnomalyKind::given);
  a.value = tape.value(id, flat);
  a.shape = tape.shape(id);
  a.index = unravel(a.shape, flat);
  a.target = user;
  a.target_label = op_name(tape, user);
  a.target_scope = scope_path(tape, user);
  return a;
}

}  // namespace

namespace detail {

void check_tensor_forward(const TensorTape& tape, NodeId id) {
  if (is_leaf(tape.op(id))) return;  // a leaf is checked where an op reads it
  const int arity = tape.arity(id);
  for (int k = 0; k < arity; ++k) {
    const NodeId in = tape.input_of(id, k);
    if (!is_leaf(tape.op(in))) continue;
    if (const std::int64_t bad = first_non_finite(tape, in, false); bad >= 0)
      throw AnomalyError(tensor_given(tape, in, bad, id));
  }
  const std::int64_t bad = first_non_finite(tape, id, false);
  if (bad < 0) return;
  // An input recorded while the mode was off may be non-finite already: it is the cause.
  for (int k = 0; k < arity; ++k) {
    const NodeId in = tape.input_of(id, k);
    if (const std::int64_t b = first_non_finite(tape, in, false); b >= 0)
      throw AnomalyError(tensor_given(tape, in, b, id));
  }
  Anomaly a = tensor_anomaly(tape, id, AnomalyKind::forward);
  a.shape = tape.shape(id);
  a.value = tape.value(id, bad);
  a.index = unravel(a.shape, bad);
  a.operands = dispatch(tape.op(id), [&](auto entry) {
    return decltype(entry)::forward_operands(tape, id, a.index);
  });
  throw AnomalyError(std::move(a));
}

void check_tensor_backward(const TensorTape& tape, NodeId id) {
  for (int k = 0, arity = tape.arity(id); k < arity; ++k) {
    const NodeId in = tape.input_of(id, k);
    if (!tape.needs_grad(in)) continue;
    const std::int64_t bad = first_non_finite(tape, in, true);
    if (bad < 0) continue;
    Anomaly a = tensor_anomaly(tape, id, AnomalyKind::backward);
    a.shape = tape.shape(in);
    a.value = tape.grad(in, bad);
    a.index = unravel(a.shape, bad);
    a.input = k;
    a.target = in;
    a.target_label = tape.label(in);
    dispatch(tape.op(id),
             [&](auto entry) { decltype(entry)::backward_operands(tape, id, k, a.index, a); });
    throw AnomalyError(std::move(a));
  }
}

}  // namespace detail

}  // namespace ag
