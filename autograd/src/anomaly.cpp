// Anomaly mode (Note [Anomaly mode], anomaly.hpp): the checks a tape runs while it is on, and
// the report of what they found, for both tapes. Tensor reports use only the tape's public
// accessors, so the node layout in tensor.cpp can change without touching this file.

#include "tapegrad/anomaly.hpp"

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <iterator>
#include <type_traits>

namespace ag {

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
  return fmt::format("{}{} of {}", label, index_text(index), shape.str());
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

// An op's fixed parameter as an operand: "exponent = -1", "alpha = 0.01".
AnomalyOperand param_operand(Op op, NodeId id, double param) {
  return {std::string(op_info(op).param_name), id, {}, {}, {}, {param}};
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

void Tape::forward_anomaly(NodeId id) const {
  if (is_leaf(op(id))) throw AnomalyError(scalar_given(*this, id, std::nullopt));
  // An input that is already non-finite was given so: the op that reads it is not to blame.
  for (int k = 0; k < arity(id); ++k)
    if (!std::isfinite(value(input_of(id, k))))
      throw AnomalyError(scalar_given(*this, input_of(id, k), id));
  throw AnomalyError(scalar_op(*this, id, AnomalyKind::forward));
}

void Tape::record_anomaly(Op op, double value, NodeId a, NodeId b, std::uint8_t flags) {
  forward_anomaly(push(op, value, a, b, flags).id());
}

void Tape::check_forward() const {
  for (NodeId id = 0; id < size(); ++id)
    if (op(id) != Op::constant && !std::isfinite(value(id))) forward_anomaly(id);
}

void Tape::backward_anomaly(NodeId id) const {
  for (int k = 0; k < arity(id); ++k) {
    const NodeId in = input_of(id, k);
    if (!needs_grad(in) || std::isfinite(grad(in))) continue;
    Anomaly a = scalar_op(*this, id, AnomalyKind::backward);
    a.value = grad(in);
    a.input = k;
    a.target = in;
    a.target_label = label(in);
    a.upstream = grad(id);
    a.local = local_grad(id, k);
    throw AnomalyError(std::move(a));
  }
  throw Error(fmt::format("anomaly: node {}: backward_anomaly found every gradient finite", id));
}

void Stepper::run_checked() {
  Tape& tape = *tape_;
  for (NodeId i = cursor_; i-- > 0;) {
    if (!Tape::active(tape.nodes_[i])) continue;
    propagate<false, true>(tape, i);
    ++taken_;
  }
  cursor_ = 0;
}

// ---- the tensor tape ----------------------------------------------------------------------

namespace {

bool is_leaf(TOp op) { return op == TOp::input || op == TOp::parameter || op == TOp::constant; }

std::string op_name(const TensorTape& tape, NodeId id) {
  const TOp op = tape.op(id);
  return std::string(op == TOp::elementwise ? op_info(tape.elementwise_op(id)).name : top_name(op));
}

std::string scope_path(const TensorTape& tape, NodeId id) {
  return std::string(tape.scope_name(tape.scope(id)));
}

// The first element that is NaN or infinite, or -1. The first pass only ORs a bit test (which
// vectorizes); the second finds the element when there is one.
template <class T>
std::int64_t first_non_finite(std::span<const T> x) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr U kExponent = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
  U bad = 0;
  for (const T v : x) bad |= U((std::bit_cast<U>(v) & kExponent) == kExponent);
  if (!bad) return -1;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i])) return std::int64_t(i);
  return -1;
}

// Of node id's elements (or gradient, when grad is set; -1 if it has none).
std::int64_t first_non_finite(TensorTape& tape, NodeId id, bool grad) {
  const Tensor t = tape.handle(id);
  if (tape.dtype(id) == DType::f32)
    return first_non_finite(grad ? t.grad<float>() : t.data<float>());
  return first_non_finite(grad ? t.grad<double>() : t.data<double>());
}

std::vector<std::int64_t> unravel(const Shape& s, std::int64_t flat) {
  std::vector<std::int64_t> index(std::size_t(s.rank()));
  for (int i = s.rank() - 1; i >= 0; --i) {
    index[std::size_t(i)] = s[i] ? flat % s[i] : 0;
    flat = s[i] ? flat / s[i] : 0;
  }
  return index;
}

std::int64_t ravel(const Shape& s, const std::vector<std::int64_t>& index) {
  std::int64_t flat = 0;
  for (int i = 0; i < s.rank(); ++i) flat = flat * s[i] + index[std::size_t(i)];
  return flat;
}

// The element of an input of shape `in` that output element `out` reads (Note [Broadcasting],
// tensor.cpp): axes aligned on the right, an axis of length 1 repeats.
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
                              std::vector<std::int64_t> index, bool grad = false) {
  AnomalyOperand o{std::move(role), id, tape.label(id), tape.shape(id), std::move(index), {}};
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

// What output element `out` of node id is computed from: each input's element, or the
// rows and columns (whole axes) a product or reduction reads.
std::vector<AnomalyOperand> forward_operands(const TensorTape& tape, NodeId id,
                                             const std::vector<std::int64_t>& out) {
  std::vector<AnomalyOperand> operands;
  auto input = [&](int k, std::vector<std::int64_t> index) {
    operands.push_back(
        tensor_operand(tape, fmt::format("input {}", k), tape.input_of(id, k), std::move(index)));
  };
  const NodeId a = tape.input_of(id, 0);
  const int rank = tape.shape(a).rank();
  switch (tape.op(id)) {
    case TOp::input:
    case TOp::parameter:
    case TOp::constant: break;
    case TOp::elementwise:
      for (int k = 0; k < tape.arity(id); ++k)
        input(k, broadcast_index(out, tape.shape(tape.input_of(id, k))));
      if (op_info(tape.elementwise_op(id)).has_param)
        operands.push_back(param_operand(tape.elementwise_op(id), id, tape.param(id)));
      break;
    case TOp::matmul:  // out[i, j] = a[i, :] . b[:, j]
      input(0, {out[0], -1});
      input(1, {-1, out[1]});
      break;
    case TOp::linear:  // out[i, j] = x[i, :] . W[j, :] + b[j]
      input(0, {out[0], -1});
      input(1, {out[1], -1});
      if (tape.arity(id) == 3) input(2, {out[1]});
      break;
    case TOp::transpose: {
      std::vector<std::int64_t> index = out;
      std::swap(index[index.size() - 1], index[index.size() - 2]);
      input(0, index);
      break;
    }
    case TOp::reshape: input(0, unravel(tape.shape(a), ravel(tape.shape(id), out))); break;
    case TOp::sum:
    case TOp::mean:
    case TOp::amax:
      if (tape.axis(id) == kAllAxes)
        input(0, std::vector<std::int64_t>(std::size_t(rank), -1));
      else
        input(0, with_axis(out, rank, tape.axis(id)));
      break;
    case TOp::log_softmax:
    case TOp::softmax: input(0, with_axis(out, rank, tape.axis(id))); break;
    case TOp::pick: input(0, {out[0], -1}); break;
  }
  return operands;
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
      if constexpr (R::info.arity == 0) return {T(0), T(0)};
      else return R::local(va, vb, y, p);
    });
    const T local = k == 0 ? l.da : l.db;
    const bool bad = !std::isfinite(up * local);
    if (chosen.empty() || bad) {
      chosen = oi;
      a.upstream = double(up);
      a.local = double(local);
      a.upstream_index = oi;
      a.operands = forward_operands(tape, id, oi);
    }
    if (bad) return;
  }
}

// What input k's gradient element `target` of node id was computed from: the upstream
// gradient's rows and columns, and the inputs (or output) the backward rule reads.
void backward_operands(const TensorTape& tape, NodeId id, int k,
                       const std::vector<std::int64_t>& target, Anomaly& a) {
  const TOp op = tape.op(id);
  if (op == TOp::elementwise) {
    if (tape.dtype(id) == DType::f32)
      elementwise_chain<float>(tape, id, k, target, a);
    else
      elementwise_chain<double>(tape, id, k, target, a);
    return;
  }
  auto upstream = [&](std::vector<std::int64_t> index) {
    a.operands.push_back(tensor_operand(tape, "upstream", id, std::move(index), true));
  };
  auto input = [&](int j, std::vector<std::int64_t> index) {
    a.operands.push_back(
        tensor_operand(tape, fmt::format("input {}", j), tape.input_of(id, j), std::move(index)));
  };
  const int out_rank = tape.shape(id).rank();
  switch (op) {
    case TOp::matmul:  // da[i, p] = up[i, :] . b[p, :]; db[p, j] = a[:, p] . up[:, j]
      if (k == 0) {
        upstream({target[0], -1});
        input(1, {target[1], -1});
      } else {
        input(0, {-1, target[0]});
        upstream({-1, target[1]});
      }
      break;
    case TOp::linear:  // dx[i, p] = up[i, :] . W[:, p]; dW[j, p] = up[:, j] . x[:, p]; db[j]
      if (k == 0) {
        upstream({target[0], -1});
        input(1, {-1, target[1]});
      } else if (k == 1) {
        upstream({-1, target[0]});
        input(0, {-1, target[1]});
      } else {
        upstream({-1, target[0]});
      }
      break;
    case TOp::transpose: {
      std::vector<std::int64_t> index = target;
      std::swap(index[index.size() - 1], index[index.size() - 2]);
      upstream(index);
      break;
    }
    case TOp::reshape:
      upstream(unravel(tape.shape(id), ravel(tape.shape(tape.input_of(id, 0)), target)));
      break;
    case TOp::sum:
    case TOp::mean:
    case TOp::amax:
      upstream(tape.axis(id) == kAllAxes ? std::vector<std::int64_t>(std::size_t(out_rank), 0)
                                         : without_axis(target, out_rank, tape.axis(id)));
      break;
    case TOp::log_softmax:
    case TOp::softmax: {
      const std::vector<std::int64_t> row = with_axis(target, out_rank, tape.axis(id));
      upstream(row);
      a.operands.push_back(tensor_operand(tape, "output", id, row));
      break;
    }
    case TOp::pick: upstream({target[0]}); break;
    default: break;
  }
}

}  // namespace

void check_parameter(std::string_view name, const Shape& shape, std::span<const float> data,
                     std::span<const float> grad) {
  const std::int64_t bad = first_non_finite(data);
  if (bad < 0) return;
  Anomaly a;
  a.kind = AnomalyKind::update;
  a.tensor = true;
  a.op = "optimizer step";
  a.name = std::string(name);
  a.dtype = DType::f32;
  a.value = data[std::size_t(bad)];
  a.shape = shape;
  a.index = unravel(shape, bad);
  if (std::size_t(bad) < grad.size())
    a.operands.push_back({"gradient", 0, a.name, shape, a.index, {grad[std::size_t(bad)]}});
  throw AnomalyError(std::move(a));
}

namespace detail {

void check_tensor_forward(TensorTape& tape, NodeId id) {
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
  a.operands = forward_operands(tape, id, a.index);
  throw AnomalyError(std::move(a));
}

void check_tensor_backward(TensorTape& tape, NodeId id) {
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
    backward_operands(tape, id, k, a.index, a);
    throw AnomalyError(std::move(a));
  }
}

}  // namespace detail

}  // namespace ag
