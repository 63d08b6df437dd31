// Out-of-line parts of the tape: leaves, names, the start of a backward pass.

#include "tapegrad/tape.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "tapegrad/anomaly.hpp"
#include "tapegrad/format.hpp"
#include "tapegrad/value.hpp"

namespace ag {

double Value::value() const { return tape().value(id_); }
double Value::grad() const { return tape().grad(id_); }
std::string_view Value::name() const { return tape().name(id_); }
Op Value::op() const { return tape().op(id_); }

void Tape::value_failed(const Value& v) {
  if (v.tape_ == nullptr) throw Error("an empty Value (default-constructed) was used");
  v.tape_->check_failed(v, "Value");
}

void Tape::check_failed(const Value& v, std::string_view what) const {
  if (v.tape_ == nullptr) throw Error(std::string(what) + ": an empty Value (default-constructed)");
  if (v.tape_ != this) throw Error(std::string(what) + ": the operands belong to different tapes");
  throw Error(std::string(what) +
              ": this Value was recorded before its tape was reset; record it again");
}

Value Value::named(std::string_view name) const {
  tape().set_name(id_, name);
  return *this;
}

Value Tape::input(double value, std::string_view name) {
  Value v = push(Op::input, value, 0, 0, kNeedsGrad);
  if (!name.empty()) set_name(v.id_, name);
  if (check_finite_ && !std::isfinite(value)) forward_anomaly(v.id_);  // Note [Anomaly mode]
  return v;
}

Value Tape::handle(NodeId id) {
  if (id >= size_) fail("node {} does not exist: the tape has {} nodes", id, size_);
  return Value(this, id, generation_);
}

void Tape::set_name(NodeId id, std::string_view name) {
  if (name.size() > std::numeric_limits<std::uint16_t>::max())
    fail("a node name of {} characters is too long", name.size());
  if (names_.size() + name.size() > std::numeric_limits<std::uint32_t>::max())
    throw Error("the tape's name pool is full");
  const NameSpan span{id, static_cast<std::uint32_t>(names_.size()),
                      static_cast<std::uint16_t>(name.size())};
  names_.append(name);
  // Names usually come in recording order, so the span goes at the end; a node named again
  // (or named after later ones) takes its place in the order.
  if (name_spans_.empty() || name_spans_.back().node < id) {
    name_spans_.push_back(span);
    return;
  }
  auto at = std::lower_bound(name_spans_.begin(), name_spans_.end(), id,
                             [](const NameSpan& s, NodeId node) { return s.node < node; });
  if (at != name_spans_.end() && at->node == id) {
    *at = span;
  } else {
    name_spans_.insert(at, span);
  }
}

std::string_view Tape::name(NodeId id) const {
  auto at = std::lower_bound(name_spans_.begin(), name_spans_.end(), id,
                             [](const NameSpan& s, NodeId node) { return s.node < node; });
  if (at == name_spans_.end() || at->node != id) return {};
  return std::string_view(names_).substr(at->offset, at->length);
}

std::string Tape::label(NodeId id) const {
  if (std::string_view n = name(id); !n.empty()) return std::string(n);
  if (op(id) == Op::constant) return format_number(value(id));
  return fmt::format("t{}", id);
}

double Tape::local_grad(NodeId id, int k) const {
  if (id >= size_) fail("node {} does not exist: the tape has {} nodes", id, size_);
  const Node& n = nodes_[id];
  return dispatch(n.op, [&](auto rule) -> double {
    using R = decltype(rule);
    if constexpr (R::info.arity == 0) {
      fail("node {} is a leaf: it has no inputs", id);
    } else {
      if (k < 0 || k >= R::info.arity) fail("node {} ({}) has no input {}", id, R::info.name, k);
      const double b = R::info.arity == 2 ? nodes_[n.in[1]].value : 0.0;
      const Local<double> local = R::local(nodes_[n.in[0]].value, b, n.value, param(id));
      return k == 0 ? local.da : local.db;
    }
  });
}

void Tape::zero_grad() {
  for (NodeId i = 0; i < size_; ++i) nodes_[i].grad = 0.0;
}

void Tape::reserve(std::size_t nodes) {
  constexpr std::size_t kMaxNodes = std::numeric_limits<NodeId>::max();
  if (nodes <= capacity_) return;
  if (nodes > kMaxNodes) fail("a tape holds at most {} nodes, not {}", kMaxNodes, nodes);
  // Uninitialized, as make_unique_for_overwrite would leave it (emscripten's libc++ lacks it).
  std::unique_ptr<Node[]> grown(new Node[nodes]);
  std::copy_n(nodes_.get(), size_, grown.get());
  nodes_ = std::move(grown);
  capacity_ = static_cast<NodeId>(nodes);
  fast_limit_ = check_finite_ ? 0 : capacity_;  // Note [Tape storage]
}

void Tape::make_room() {
  if (size_ < capacity_) return;  // anomaly mode's fast_limit_ of 0 sent us here
  constexpr std::size_t kMaxNodes = std::numeric_limits<NodeId>::max();
  if (size_ == kMaxNodes) fail("the tape is full: it holds at most {} nodes", kMaxNodes);
  reserve(std::min(kMaxNodes, std::max<std::size_t>(64, 2 * std::size_t{capacity_})));
}

void Tape::make_room_checked(Op op, double value, NodeId a, NodeId b, std::uint8_t flags) {
  make_room();
  if (check_finite_ && !std::isfinite(value)) record_anomaly(op, value, a, b, flags);
}

void Tape::reset() {
  size_ = 0;
  params_.clear();
  names_.clear();
  name_spans_.clear();
  ++generation_;
  dirty_ = false;
}

Stepper::Stepper(Tape& tape, Value output)
    : tape_(&tape), generation_(tape.generation_), cursor_(0) {
  tape.check(output, "backward");
  // Note [Gradient semantics]: intermediate gradients start from zero, inputs
  // keep what they have accumulated; no node has been reached yet.
  // A fresh recording is already in that state (Tape::dirty_): a training step, which resets,
  // records and runs backward once, skips this sweep over the whole tape.
  if (tape.dirty_) {
    for (NodeId i = 0; i < tape.size_; ++i) {
      Tape::Node& n = tape.nodes_[i];
      if (n.op != Op::input) n.grad = 0.0;
      n.flags &= static_cast<std::uint8_t>(~Tape::kReached);
    }
  }
  tape.dirty_ = true;
  Tape::Node& out = tape.nodes_[output.id()];
  if (out.flags & Tape::kNeedsGrad) {
    out.grad += 1.0;  // d(output)/d(output)
    out.flags |= Tape::kReached;
  }
  cursor_ = output.id() + 1;
  step_.tape = &tape;
  step_.output = output.id();
}

// ---- gradients as nodes, and as numbers (Note [Gradients on the tape]) -------------------------

namespace {

constexpr NodeId kNoGradient = std::numeric_limits<NodeId>::max();

void check_sizes(std::string_view what, std::size_t wrt, std::size_t out) {
  if (wrt != out)
    fail("{}: {} values to differentiate with respect to, but room for {} results", what, wrt, out);
}

}  // namespace

void Tape::record_gradients(Value output, std::span<const Value> wrt, std::span<Value> out) {
  const NodeId top = output.id();
  gradient_of_.assign(top + 1, kNoGradient);
  gradient_steps_.clear();
  if (nodes_[top].flags & kNeedsGrad) gradient_of_[top] = constant(1.0).id();  // dy/dy
  // upstream * local, without a node where the local derivative is a constant 1 or -1
  // (add, sub, neg): the product would be the same number
  auto chain = [this](Value upstream, Value local) {
    if (nodes_[local.id_].op == Op::constant) {
      if (nodes_[local.id_].value == 1.0) return upstream;
      if (nodes_[local.id_].value == -1.0) return -upstream;
    }
    return upstream * local;
  };
  for (NodeId i = top + 1; i-- > 0;) {
    const NodeId upstream = gradient_of_[i];
    if (upstream == kNoGradient || is_leaf(nodes_[i].op)) continue;
    dispatch(nodes_[i].op, [&](auto rule) {
      using R = decltype(rule);
      constexpr int arity = R::info.arity;
      if constexpr (arity > 0) {
        // Copies, not references: recording below may move nodes_.
        const NodeId in[2] = {nodes_[i].in[0], nodes_[i].in[1]};
        const Value a(this, in[0], generation_);
        const Value b = arity == 2 ? Value(this, in[1], generation_) : Value{};
        GradientStep step{.node = i, .first = size_, .end = 0};
        const Local<Value> local = R::local_graph(a, b, Value(this, i, generation_), param(i));
        for (int k = 0; k < arity; ++k) {
          if (!(nodes_[in[k]].flags & kNeedsGrad)) continue;  // a constant: nothing to add
          const Value local_k = k == 0 ? local.da : local.db;
          const Value contribution = chain(Value(this, upstream, generation_), local_k);
          step.local[k] = local_k.id_;
          step.contribution[k] = contribution.id_;
          NodeId& sum = gradient_of_[in[k]];
          if (sum == kNoGradient) {
            sum = contribution.id_;
          } else {
            sum = (Value(this, sum, generation_) + contribution).id_;
            step.sum[k] = sum;
          }
        }
        step.end = size_;
        gradient_steps_.push_back(step);
      }
    });
  }
  for (std::size_t k = 0; k < wrt.size(); ++k) {
    const NodeId id = wrt[k].id_;
    const NodeId g = id <= top ? gradient_of_[id] : kNoGradient;
    out[k] = g == kNoGradient ? constant(0.0) : Value(this, g, generation_);
  }
}

void Tape::grad(Value output, std::span<const Value> wrt, std::span<Value> out,
                GradOptions options) {
  check(output, "grad");
  for (const Value& x : wrt) check(x, "grad");
  check_sizes("grad", wrt.size(), out.size());
  if (options.create_graph) {
    record_gradients(output, wrt, out);
    return;
  }
  // As torch.autograd.grad without create_graph: the numbers of one plain pass, as constants.
  std::vector<double> numbers(wrt.size());
  grad(output, wrt, numbers);
  for (std::size_t k = 0; k < wrt.size(); ++k) out[k] = constant(numbers[k]);
}

std::vector<Value> Tape::grad(Value output, std::span<const Value> wrt, GradOptions options) {
  std::vector<Value> out(wrt.size());
  grad(output, wrt, out, options);
  return out;
}

void Tape::grad(Value output, std::span<const Value> wrt, std::span<double> out) {
  check(output, "grad");
  for (const Value& x : wrt) check(x, "grad");
  check_sizes("grad", wrt.size(), out.size());
  // The plain backward accumulates into the inputs (Note [Gradient semantics]): their gradients
  // are set aside, the pass starts them from 0, and they are put back whatever happens, an
  // anomaly report included.
  saved_grads_.clear();
  for (NodeId i = 0; i < size_; ++i) {
    Node& n = nodes_[i];
    if (n.op != Op::input) continue;
    saved_grads_.push_back(n.grad);
    n.grad = 0.0;
  }
  struct Restore {
    Tape& tape;
    ~Restore() {
      std::size_t next = 0;
      for (NodeId i = 0; i < tape.size_; ++i)
        if (tape.nodes_[i].op == Op::input) tape.nodes_[i].grad = tape.saved_grads_[next++];
    }
  };
  {
    Restore restore{*this};
    backward(output);
    // An input or an intermediate node: the pass just gave it its gradient (0 when unreached).
    for (std::size_t k = 0; k < wrt.size(); ++k) out[k] = nodes_[wrt[k].id_].grad;
  }
}

void Tape::hessian(Value output, std::span<const Value> x, std::span<double> out,
                   std::span<double> gradient) {
  const std::size_t n = x.size();
  if (out.size() != n * n)
    fail("hessian: {} inputs make {} second partials, but out has room for {}", n, n * n,
         out.size());
  if (!gradient.empty()) check_sizes("hessian", n, gradient.size());
  first_derivatives_.resize(n);  // keeps its capacity
  grad(output, x, first_derivatives_, {.create_graph = true});
  for (std::size_t i = 0; i < n; ++i) {
    if (!gradient.empty()) gradient[i] = first_derivatives_[i].value();
    grad(first_derivatives_[i], x, out.subspan(i * n, n));
  }
}

void Tape::jacobian(std::span<const Value> outputs, std::span<const Value> x,
                    std::span<double> out) {
  const std::size_t n = x.size();
  if (out.size() != outputs.size() * n)
    fail("jacobian: {} outputs by {} inputs make {} partials, but out has room for {}",
         outputs.size(), n, outputs.size() * n, out.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) grad(outputs[i], x, out.subspan(i * n, n));
}

// ---- anomaly mode: the branch that calls out (Note [Anomaly mode], anomaly.hpp) ----------

void Tape::forward_anomaly(NodeId id) const { detail::scalar_forward_anomaly(*this, id); }

void Tape::record_anomaly(Op op, double value, NodeId a, NodeId b, std::uint8_t flags) {
  forward_anomaly(push(op, value, a, b, flags).id());
}

void Tape::check_forward() const { detail::check_scalar_forward(*this); }

void Tape::backward_anomaly(NodeId id) const { detail::scalar_backward_anomaly(*this, id); }

void Stepper::run_checked() {
  Tape& tape = *tape_;
  for (NodeId i = cursor_; i-- > 0;) {
    if (!Tape::active(tape.nodes_[i])) continue;
    propagate<false, true>(tape, i);
    ++taken_;
  }
  cursor_ = 0;
}

}  // namespace ag
