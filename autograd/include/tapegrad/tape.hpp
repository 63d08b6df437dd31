// The scalar tape: one recorded computation in contiguous storage, the Value
// handles that record onto it, and the Stepper that runs backward.

#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tapegrad/error.hpp"
#include "tapegrad/ops.hpp"

namespace ag {

using NodeId = std::uint32_t;

class Tape;
class Stepper;

// Note [The tape invariant]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// A node's inputs are always recorded before the node itself: an op can only
// take Values that already exist. So the tape in reverse order is a valid
// backward schedule (every node's gradient is complete before it is passed
// on), and no topological sort is ever needed. Everything that walks the tape
// backwards (Stepper, graph export, reachability) relies on this.

// Note [Gradient semantics]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// backward(y) seeds dy/dy = 1 and propagates to every node that y depends on.
// Gradients of intermediate nodes are recomputed from zero on every backward
// (they describe the latest pass, which is what a graph should show).
// Gradients of inputs accumulate across backward calls, as PyTorch's leaf
// .grad does: two backward(y) give 2 dy/dx until zero_grad() clears them.
// Constants, and nodes computed from constants only, get no gradient (as
// PyTorch's requires_grad=False tensors): the stepper skips them.

// A cheap handle to one node of a Tape: a tape pointer, a node id and the
// tape's generation when it was recorded. Using a Value after its tape was
// reset() throws ag::Error instead of reading a recycled node.
class Value {
 public:
  Value() = default;

  double value() const;  // the forward result
  double grad() const;   // d(output)/d(this) after backward
  std::string_view name() const;
  Op op() const;
  NodeId id() const { return id_; }
  Tape& tape() const;  // the tape it belongs to; throws if reset or empty. Inline: ops call it

  // Names this node (shown by the graph and the step lines); returns *this.
  Value named(std::string_view name) const;

  bool valid() const;  // false when empty or when its tape has been reset

 private:
  friend class Tape;
  Value(Tape* tape, NodeId id, std::uint32_t generation)
      : tape_(tape), id_(id), generation_(generation) {}

  Tape* tape_ = nullptr;
  NodeId id_ = 0;
  std::uint32_t generation_ = 0;
};

// What one backward step did to one input of the node: the chain rule
// d(out)/d(input) += d(out)/d(node) * d(node)/d(input).
struct InputStep {
  NodeId id;
  double local;         // d(node)/d(input)
  double contribution;  // upstream * local
  double grad_after;    // the input's accumulated gradient after this step
  bool accumulated;     // it had received a contribution earlier in this pass (a fork)
  bool needs_grad;      // false for constants: nothing is added to them
};

// One backward step: the node whose gradient is complete and is now passed to
// its inputs.
struct Step {
  const Tape* tape;
  NodeId output;    // where backward started
  NodeId node;      // the node being processed
  double upstream;  // d(output)/d(node)
  int arity;
  std::array<InputStep, 2> inputs;
  std::size_t index;  // 0 for the first step of the pass
};

// Note [The Stepper is backward]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// There is one backward: Tape::backward(y) runs a Stepper to the end, and the
// teaching views (step lines, highlighted graph frames, the web page) consume
// the same steps. Constructing a Stepper starts a backward pass (it zeroes the
// intermediate gradients and seeds the output, Note [Gradient semantics]);
// each next() processes one node in reverse tape order (Note [The tape
// invariant]), skipping nodes that do not reach the output. Only one pass per
// tape may be in progress at a time.
class Stepper {
 public:
  Stepper(Tape& tape, Value output);

  // Performs the next chain-rule step; false when the pass is complete.
  bool next();
  const Step& step() const { return step_; }
  bool done() const { return cursor_ == 0; }

 private:
  friend class Tape;
  // The chain rule at node i: its gradient times each local gradient, added to its inputs.
  // With kFillStep it also writes what it did into step_ for the teaching views; run() does
  // the same arithmetic without it, as nobody reads the steps of Tape::backward. With kCheck it
  // reports an input gradient that is not finite (Note [Anomaly mode], anomaly.hpp).
  template <bool kFillStep, bool kCheck = false> void propagate(Tape& tape, NodeId i);
  void run();          // the remaining steps in one loop, for Tape::backward
  void run_checked();  // run() checking each step's gradients (Note [Anomaly mode], anomaly.hpp)

  Tape* tape_;
  std::uint32_t generation_;
  NodeId cursor_;          // nodes below it are not processed yet
  std::size_t taken_ = 0;  // steps next() has taken (run() does not count)
  Step step_{};
};

// Note [Gradients on the tape]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// grad(y, x, {.create_graph = true}) is backward with nodes for numbers: the gradient of every
// node that reaches y is a node of the same tape, and each chain-rule step records
// upstream * local, the local derivative recorded by the row's `local_graph` (Note [Local
// derivatives on the tape], ops.hpp), and adds it to the input's gradient node (a fork's sum is
// an add node). The gradients are then ordinary nodes: backward, grad or hessian over them give
// second derivatives, and so on to any order. The pass walks the tape in reverse as the Stepper
// does (Note [The tape invariant]); what it records comes after y, so it never visits its own
// nodes. As torch.autograd.grad, it returns the gradients and leaves every node's .grad alone;
// d(y)/d(x) for an x that y does not depend on is a constant 0 (PyTorch returns None there, or
// zeros with materialize_grads). The seed d(y)/d(y) = 1 is a constant, so the gradient of a
// linear function is a constant too, whose own gradient is 0.
//
// Without create_graph nothing is recorded: backward(y) is the Stepper as always, and the
// pass above is a separate loop out of line, so the plain backward costs what it did.

struct GradOptions {
  bool create_graph = false;  // record the gradients as nodes, differentiable again
};

// What one chain-rule step of grad(..., {.create_graph = true}) recorded: the nodes it added to
// the tape are [first, end), all made for `node`'s rule, so a drawing of the backward graph can
// say which rule each came from (Note [Drawing the backward pass], graph_model.hpp). Per input
// k: the local derivative d(node)/d(input k), the contribution upstream * local, and the sum
// node when the input already had a gradient (a fork); kNoNode where there is none. A local or
// contribution below `first` is an earlier node reused (mul's local derivative is its other
// input; add passes the upstream node on unchanged).
struct GradientStep {
  static constexpr NodeId kNoNode = ~NodeId{0};
  NodeId node;
  NodeId first, end;
  std::array<NodeId, 2> local{kNoNode, kNoNode};
  std::array<NodeId, 2> contribution{kNoNode, kNoNode};
  std::array<NodeId, 2> sum{kNoNode, kNoNode};
};

// Note [Tape storage]
// ~~~~~~~~~~~~~~~~~~~
// Nodes live in one array (an arena) that grows by doubling: no allocation per
// node, no pointers between nodes, inputs referred to by index. Recording an op
// tests one thing before it writes its node: that size_ is below fast_limit_,
// which is the capacity while anomaly mode is off and 0 while it is on, so the
// one test stands for "room left" and "no check to make" (the slow path,
// out of line, grows the array and makes the check). Names live in one
// string pool, found through a list of (node, span) sorted by node, apart from
// the nodes: few nodes have a name, and a name field in every node cost each
// recorded op two stores. reset() clears all three but keeps their capacity,
// so recording the same computation again allocates nothing.
class Tape {
 public:
  Tape() = default;
  explicit Tape(std::size_t expected_nodes) { reserve(expected_nodes); }
  Tape(const Tape&) = delete;  // Values point at their tape: it must not move
  Tape& operator=(const Tape&) = delete;

  // Leaves.
  Value input(double value, std::string_view name = {});
  Value constant(double value);  // inline: every double operand of an op becomes one

  // Records the op of `Rule` applied to a (and b for binary ops) with the
  // fixed parameter `param`. The user-facing functions in value.hpp call it.
  template <class Rule>
  Value record(Value a, Value b = {}, double param = Rule::info.default_param);

  // Runs the whole backward pass from `output` (Note [The Stepper is backward]).
  void backward(Value output);
  Stepper stepper(Value output) { return Stepper(*this, output); }

  // d(output)/d(wrt[k]) into out[k], as torch.autograd.grad (Note [Gradients on the tape]): with
  // create_graph the gradients are nodes recorded on this tape, without they are constants
  // holding the numbers. The inputs' accumulated gradients are left as they were.
  void grad(Value output, std::span<const Value> wrt, std::span<Value> out,
            GradOptions options = {});
  std::vector<Value> grad(Value output, std::span<const Value> wrt, GradOptions options = {});
  std::vector<Value> grad(Value output, std::initializer_list<Value> wrt,
                          GradOptions options = {}) {
    return grad(output, std::span<const Value>(wrt.begin(), wrt.size()), options);
  }
  // The same gradients as numbers, recording nothing: one plain backward pass.
  void grad(Value output, std::span<const Value> wrt, std::span<double> out);
  // The Hessian d²(output)/d(x[i])d(x[j]) into out, row-major (x.size() squared entries), and
  // the gradient into `gradient` when it is not empty: the gradient recorded with create_graph,
  // then one plain backward per component. Allocates nothing once the tape is warm.
  void hessian(Value output, std::span<const Value> x, std::span<double> out,
               std::span<double> gradient = {});
  // The steps the latest grad with create_graph recorded, in the order it took them (down the
  // tape), for drawings of the backward pass; hessian() records such a pass too. The seed
  // d(output)/d(output) = 1 is the constant right after the output, before the first step.
  std::span<const GradientStep> gradient_steps() const { return gradient_steps_; }
  // The Jacobian d(outputs[i])/d(x[j]) into out, row-major: one plain backward per output.
  void jacobian(std::span<const Value> outputs, std::span<const Value> x, std::span<double> out);

  void zero_grad();  // all gradients to 0
  void reset();      // forgets every node, keeps capacity; old Values become invalid
  void reserve(std::size_t nodes);

  std::size_t size() const { return size_; }
  std::uint32_t generation() const { return generation_; }

  // Anomaly mode (Note [Anomaly mode], anomaly.hpp): while on, the first non-finite forward
  // value or gradient throws ag::AnomalyError naming the op.
  bool check_finite() const { return check_finite_; }
  void set_check_finite(bool on) {
    check_finite_ = on;
    fast_limit_ = on ? 0 : capacity_;  // Note [Tape storage]
  }
  // The mode's forward check over the nodes recorded so far, in tape order: the report the mode
  // would have given while recording them, for a tape recorded with it off, or whose nodes
  // were named after recording (as tools/program.cpp does), so the report has their names.
  void check_forward() const;

  // Read access by node id, for the stepper, graphs and formatters.
  Op op(NodeId id) const { return nodes_[id].op; }
  double value(NodeId id) const { return nodes_[id].value; }
  double grad(NodeId id) const { return nodes_[id].grad; }
  double param(NodeId id) const {
    return op_info(op(id)).has_param ? params_[nodes_[id].in[1]] : 0.0;
  }
  int arity(NodeId id) const { return op_info(op(id)).arity; }
  NodeId input_of(NodeId id, int k) const { return nodes_[id].in[k]; }
  bool needs_grad(NodeId id) const { return nodes_[id].flags & kNeedsGrad; }
  // True once the latest backward pass has passed a gradient to this node.
  bool reached(NodeId id) const { return nodes_[id].flags & kReached; }
  // d(node)/d(input k) at the recorded values: the local gradient of an edge.
  double local_grad(NodeId id, int k) const;
  std::string_view name(NodeId id) const;
  // The name if it has one; otherwise the number for a constant, "t<id>" else.
  std::string label(NodeId id) const;
  void set_name(NodeId id, std::string_view name);
  Value handle(NodeId id);  // a Value for an existing node

  // Throws unless `v` is a live handle of this tape.
  void check(const Value& v, std::string_view what) const;
  // The throwing half of check(), out of line so that the hot half inlines into every op.
  [[noreturn, gnu::cold]] void check_failed(const Value& v, std::string_view what) const;

 private:
  friend class Stepper;
  friend class Value;

  [[noreturn, gnu::cold]] static void value_failed(const Value& v);
  // Anomaly mode's calls out, behind the check_finite_ branch: the reports are free functions
  // over the tape (detail::scalar_forward_anomaly and ..._backward_anomaly, anomaly.hpp).
  [[noreturn, gnu::cold]] void forward_anomaly(NodeId id) const;
  // Pushes an op whose value is not finite (so that the report names its node) and reports it.
  [[noreturn, gnu::cold]] void record_anomaly(Op op, double value, NodeId a, NodeId b,
                                              std::uint8_t flags);
  [[noreturn, gnu::cold]] void backward_anomaly(NodeId id) const;
  // Whether the backward step of node id left every input's gradient finite.
  bool step_finite(NodeId id) const;
  // Note [Gradients on the tape]: records the gradient of every node up to output into
  // gradient_of_, and d(output)/d(x) for x in wrt into out.
  void record_gradients(Value output, std::span<const Value> wrt, std::span<Value> out);

  static constexpr std::uint8_t kNeedsGrad = 1;  // depends on an input
  static constexpr std::uint8_t kReached = 2;    // reaches the output in this pass

  struct Node {
    double value;
    double grad;
    NodeId in[2];  // an op with a fixed number (param) has one input; in[1] indexes params_
    Op op;
    std::uint8_t flags;
  };
  static bool active(const Node& n);

  // Writes a node where there is room for it (Note [Tape storage]).
  Value append(Op op, double value, NodeId a, NodeId b, std::uint8_t flags) {
    nodes_[size_] = Node{value, 0.0, {a, b}, op, flags};
    return Value(this, size_++, generation_);
  }
  Value push(Op op, double value, NodeId a, NodeId b, std::uint8_t flags) {
    if (size_ >= fast_limit_) [[unlikely]]
      make_room();
    return append(op, value, a, b, flags);
  }
  // The slow paths: room for one more node, and (record's) that with anomaly mode's check. Both
  // return nothing, so the hot path does not have to meet a Value coming out of them.
  [[gnu::cold]] void make_room();
  [[gnu::cold]] void make_room_checked(Op op, double value, NodeId a, NodeId b, std::uint8_t flags);

  std::unique_ptr<Node[]> nodes_;  // [0, size_) recorded, room for capacity_
  NodeId size_ = 0;
  NodeId capacity_ = 0;
  NodeId fast_limit_ = 0;       // capacity_, or 0 in anomaly mode (Note [Tape storage])
  std::vector<double> params_;  // the fixed numbers of the ops that have one (Node stays 32 bytes)
  std::string names_;
  struct NameSpan {
    NodeId node;
    std::uint32_t offset;  // into names_
    std::uint16_t length;
  };
  std::vector<NameSpan> name_spans_;  // sorted by node (Note [Tape storage])
  // Scratch of grad() and hessian(), kept with its capacity so that warm calls allocate nothing:
  // each node's gradient node (Note [Gradients on the tape]), the inputs' accumulated gradients
  // while a plain pass computes others, the gradient nodes of a Hessian.
  std::vector<NodeId> gradient_of_;
  std::vector<GradientStep> gradient_steps_;
  std::vector<double> saved_grads_;
  std::vector<Value> first_derivatives_;
  std::uint32_t generation_ = 0;
  // False until a backward pass starts after reset(): until then every intermediate gradient is
  // still the 0 it was recorded with and no node is kReached, so the pass need not clear them.
  bool dirty_ = false;
  bool check_finite_ = false;  // Note [Anomaly mode]
};

// ---- inline definitions: the hot paths --------------------------------------

inline bool Value::valid() const { return tape_ != nullptr && tape_->generation_ == generation_; }

inline void Tape::check(const Value& v, std::string_view what) const {
  if (v.tape_ != this || v.generation_ != generation_) [[unlikely]]
    check_failed(v, what);
}

inline Tape& Value::tape() const {
  if (tape_ == nullptr || tape_->generation_ != generation_) [[unlikely]]
    Tape::value_failed(*this);
  return *tape_;
}

inline Value Tape::constant(double value) { return push(Op::constant, value, 0, 0, 0); }

template <class Rule> Value Tape::record(Value a, Value b, double param) {
  constexpr OpInfo info = Rule::info;
  static_assert(info.arity == 1 || info.arity == 2);
  check(a, info.name);
  const Node& na = nodes_[a.id_];
  double vb = 0;
  NodeId ib = 0;
  std::uint8_t flags = na.flags & kNeedsGrad;
  if constexpr (info.arity == 2) {
    check(b, info.name);
    const Node& nb = nodes_[b.id_];
    vb = nb.value;
    ib = b.id_;
    flags |= nb.flags & kNeedsGrad;
  }
  if constexpr (info.has_param) {
    static_assert(info.arity == 1, "in[1] holds the index of the param");
    ib = static_cast<NodeId>(params_.size());
    params_.push_back(param);
  }
  const double y = Rule::forward(na.value, vb, param);
  // Note [Anomaly mode]: off, the test for room is its only cost (Note [Tape storage]). Only
  // the result is checked (an input's check would keep its value in a register the off path
  // needs): when it is not finite, forward_anomaly looks at the inputs first.
  if (size_ >= fast_limit_) [[unlikely]]
    make_room_checked(info.op, y, a.id_, ib, flags);
  return append(info.op, y, a.id_, ib, flags);
}

template <bool kFillStep, bool kCheck>
[[gnu::always_inline]] inline void Stepper::propagate(Tape& tape, NodeId i) {
  Tape::Node* nodes = tape.nodes_.get();
  Tape::Node& n = nodes[i];
  dispatch(n.op, [&](auto rule) {
    using R = decltype(rule);
    constexpr int arity = R::info.arity;
    if constexpr (arity > 0) {
      const double a = nodes[n.in[0]].value;
      const double b = arity == 2 ? nodes[n.in[1]].value : 0.0;
      const double param = R::info.has_param ? tape.params_[n.in[1]] : 0.0;
      const Local<double> local = R::local(a, b, n.value, param);
      const double up = n.grad;
      if constexpr (kFillStep) {
        step_.node = i;
        step_.upstream = up;
        step_.arity = arity;
      }
      for (int k = 0; k < arity; ++k) {
        Tape::Node& in = nodes[n.in[k]];
        const double l = k == 0 ? local.da : local.db;
        const double contribution = up * l;
        const bool needs_grad = in.flags & Tape::kNeedsGrad;
        const bool accumulated = in.flags & Tape::kReached;
        if (needs_grad) {
          in.grad += contribution;
          in.flags |= Tape::kReached;
        }
        if constexpr (kFillStep)
          step_.inputs[k] = InputStep{n.in[k], l, contribution, in.grad, accumulated, needs_grad};
      }
      if constexpr (kCheck) {
        bool finite = true;
        for (int k = 0; k < arity; ++k) finite = finite && std::isfinite(nodes[n.in[k]].grad);
        if (!finite) [[unlikely]]
          tape.backward_anomaly(i);
      }
    }
  });
}

// Whether node n takes part in the pass: it reaches the output, depends on an input, and is
// not a leaf (Note [Gradient semantics]).
inline bool Tape::active(const Node& n) {
  constexpr std::uint8_t active = kNeedsGrad | kReached;
  return (n.flags & active) == active && !is_leaf(n.op);
}

inline bool Stepper::next() {
  if (tape_->generation_ != generation_) throw Error("Stepper: the tape was reset during backward");
  while (cursor_ > 0) {
    const NodeId i = --cursor_;
    if (!Tape::active(tape_->nodes_[i])) continue;
    propagate<true>(*tape_, i);
    step_.index = taken_++;
    if (tape_->check_finite_ && !tape_->step_finite(i)) [[unlikely]]
      tape_->backward_anomaly(i);
    return true;
  }
  return false;
}

inline void Stepper::run() {
  if (tape_->generation_ != generation_) throw Error("Stepper: the tape was reset during backward");
  Tape& tape = *tape_;
  // Note [Anomaly mode]: the checked loop is out of line, so this one stays as it was.
  if (tape.check_finite_) [[unlikely]] {
    run_checked();
    return;
  }
  // Tape::active without its leaf test: the one leaf that can be reached and need a gradient
  // is an input (constants never need one), and its dispatch case does nothing, so the test
  // would cost every node to spare the few inputs. taken_ is not counted either: it numbers the
  // steps next() hands out, and nobody reads it once the pass is done.
  constexpr std::uint8_t active = Tape::kNeedsGrad | Tape::kReached;
  for (NodeId i = cursor_; i-- > 0;) {
    if ((tape.nodes_[i].flags & active) != active) continue;
    propagate<false>(tape, i);
  }
  cursor_ = 0;
}

inline bool Tape::step_finite(NodeId id) const {
  const Node& n = nodes_[id];
  if (!std::isfinite(nodes_[n.in[0]].grad)) return false;
  return op_info(n.op).arity != 2 || std::isfinite(nodes_[n.in[1]].grad);
}

// The same steps as a Stepper's next() until done, minus the Step records nobody reads here.
inline void Tape::backward(Value output) { Stepper(*this, output).run(); }

}  // namespace ag
