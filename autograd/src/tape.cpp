// Out-of-line parts of the tape: leaves, names, the start of a backward pass.

#include <fmt/format.h>

#include <limits>

#include "tapegrad/format.hpp"
#include "tapegrad/tape.hpp"

namespace ag {

double Value::value() const { return tape().value(id_); }
double Value::grad() const { return tape().grad(id_); }
std::string_view Value::name() const { return tape().name(id_); }
Op Value::op() const { return tape().op(id_); }

Tape& Value::tape() const {
  if (tape_ == nullptr) throw Error("an empty Value (default-constructed) was used");
  tape_->check(*this, "Value");
  return *tape_;
}

Value Value::named(std::string_view name) const {
  tape().set_name(id_, name);
  return *this;
}

Value Tape::input(double value, std::string_view name) {
  Value v = push(Op::input, value, 0, 0, 0.0, kNeedsGrad);
  if (!name.empty()) set_name(v.id_, name);
  return v;
}

Value Tape::constant(double value) { return push(Op::constant, value, 0, 0, 0.0, 0); }

Value Tape::handle(NodeId id) {
  if (id >= nodes_.size())
    throw Error(fmt::format("node {} does not exist: the tape has {} nodes", id, nodes_.size()));
  return Value(this, id, generation_);
}

void Tape::set_name(NodeId id, std::string_view name) {
  if (name.size() > std::numeric_limits<std::uint16_t>::max())
    throw Error(fmt::format("a node name of {} characters is too long", name.size()));
  if (names_.size() + name.size() > std::numeric_limits<std::uint32_t>::max())
    throw Error("the tape's name pool is full");
  nodes_[id].name_offset = static_cast<std::uint32_t>(names_.size());
  nodes_[id].name_length = static_cast<std::uint16_t>(name.size());
  names_.append(name);
}

std::string Tape::label(NodeId id) const {
  if (std::string_view n = name(id); !n.empty()) return std::string(n);
  if (op(id) == Op::constant) return format_number(value(id));
  return fmt::format("t{}", id);
}

double Tape::local_grad(NodeId id, int k) const {
  const Node& n = nodes_.at(id);
  return dispatch(n.op, [&](auto rule) -> double {
    using R = decltype(rule);
    if constexpr (R::info.arity == 0) {
      throw Error(fmt::format("node {} is a leaf: it has no inputs", id));
    } else {
      if (k < 0 || k >= R::info.arity)
        throw Error(fmt::format("node {} ({}) has no input {}", id, R::info.name, k));
      const double b = R::info.arity == 2 ? nodes_[n.in[1]].value : 0.0;
      const Local<double> local = R::local(nodes_[n.in[0]].value, b, n.value, n.param);
      return k == 0 ? local.da : local.db;
    }
  });
}

void Tape::zero_grad() {
  for (Node& n : nodes_) n.grad = 0.0;
}

void Tape::reset() {
  nodes_.clear();
  names_.clear();
  ++generation_;
}

Stepper::Stepper(Tape& tape, Value output)
    : tape_(&tape), generation_(tape.generation_), cursor_(0) {
  tape.check(output, "backward");
  // Note [Gradient semantics]: intermediate gradients start from zero, inputs
  // keep what they have accumulated; no node has been reached yet.
  for (Tape::Node& n : tape.nodes_) {
    if (n.op != Op::input) n.grad = 0.0;
    n.flags &= static_cast<std::uint8_t>(~Tape::kReached);
  }
  Tape::Node& out = tape.nodes_[output.id()];
  if (out.flags & Tape::kNeedsGrad) {
    out.grad += 1.0;  // d(output)/d(output)
    out.flags |= Tape::kReached;
  }
  cursor_ = output.id() + 1;
  step_.tape = &tape;
  step_.output = output.id();
}

}  // namespace ag
