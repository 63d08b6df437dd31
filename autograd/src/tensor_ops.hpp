// The tensor op table (internal): one entry per TOp, structural ops and leaves included, and the
// one `dispatch` over them. Graph export, formatting, anomaly mode and the stepper read it.

#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tapegrad/anomaly.hpp"
#include "tapegrad/tensor.hpp"
#include "tensor_storage.hpp"

namespace ag {

// Note [The tensor op table]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// Every TOp is one `struct` in namespace ag::tensor_ops, declared below and defined, all of it
// side by side, in tensor_ops.cpp (one section per op, its user-facing function first):
//  - `info`: name (as the user calls it), lecture symbol (graphs; "" for leaves), leaf or not;
//  - `arity(node)`: how many inputs the node reads (linear: 2 or 3, with or without a bias);
//  - `forward(impl, node)`: fills the node's elements from its inputs. The user-facing function
//    checks the operands, works out the shape and appends the node (Impl::push), then calls it;
//  - `backward(impl, node)`: adds each input's vector-Jacobian product into its gradient
//    (Note [Lazy gradients]: assign only where Impl::first_write says nothing wrote it yet);
//  - `expression(tape, id)`: the text tensor_format.cpp writes ("a @ b", "sum(x, axis=1)");
//  - `forward_operands(tape, id, out)`: for anomaly mode, which elements of which inputs output
//    element `out` reads (-1 in an index: a whole axis, the row of a product);
//  - `backward_operands(tape, id, k, target, report)`: which upstream (and input or output)
//    elements input k's gradient element `target` came from;
//  - `backward_graph(tape, id, upstream, contributions)`: backward written with the tape's own
//    ops, for create_graph (Note [Tensor gradients on the tape], tensor_tape.cpp): each input's
//    vector-Jacobian product as a recorded Tensor of the input's shape, left empty for an input
//    that needs no gradient. An entry that has no such form yet says so in its body, as
//    `static constexpr NoGraphForm backward_graph{};`, and create_graph stops there with an
//    ag::Error naming the op.
// The concept TensorOpEntry requires all of them, and `dispatch` is one switch with a case per
// TOp and no `default:`: a missing case is a -Wswitch error, an incomplete entry a constraint
// failure, so neither compiles. Leaves (input, parameter, constant) are entries too, with
// nothing to compute; `elementwise` defers to its rule in ops.hpp.
//
// The node record (Impl::Node) stays as small as it is: inputs (kMaxInputs), an axis, a double
// `param`, and `aux`, a pointer into the arena. An op whose parameters outgrow those fields
// (slice's start, stop and step; a permutation) allocates a struct of them in the arena at
// recording time and keeps it in `aux`, as amax keeps its argmax and pick its class indices.
//
// Adding an op (cat, slice, gather, amin, argmax, where, ...):
//  1. a TOp in tensor.hpp (and its user-facing declaration there);
//  2. its entry struct below and a `case` in dispatch;
//  3. its section in tensor_ops.cpp: the user-facing function, then the entry's members;
//  4. tests: a gradient check against central differences in tests/test_tensor.cpp, and its
//     recorded backward checked twice over (check_twice) in tests/test_tensor_higher_order.cpp.
// Nothing else: graph.cpp, tensor_format.cpp, anomaly.cpp and the stepper read the entry. An op
// with more than kMaxInputs inputs (cat, stack) keeps its input ids in the arena (store_inputs,
// Note [Many inputs] in tensor_storage.hpp), `arity` reading their count there; everything that
// walks inputs goes through input_id. The read-only members (expression, the anomaly operands)
// reach what an op keeps in `aux` through Recorder::node(tape, id).

struct TOpInfo {
  TOp op;
  std::string_view name;    // as the user calls it: "matmul"
  std::string_view symbol;  // as the lecture draws it: "@"; "" for a leaf
  bool leaf = false;        // no inputs, nothing to compute: input, parameter, constant
};

using ElementIndex = std::vector<std::int64_t>;

// What an entry without a recorded backward declares in place of `backward_graph`, so that the
// gap is written in the entry and create_graph reports it (Note [The tensor op table]).
struct NoGraphForm {};
template <class E>
concept RecordsItsBackward = requires(TensorTape& tape, NodeId id, const Tensor& upstream,
                                      std::span<Tensor> contributions) {
  { E::backward_graph(tape, id, upstream, contributions) } -> std::same_as<void>;
};
template <class E>
concept LacksRecordedBackward =
    std::same_as<std::remove_cv_t<decltype(E::backward_graph)>, NoGraphForm>;

template <class E>
concept TensorOpEntry = requires(TensorTape::Impl& impl, Node& node, const Node& cnode,
                                 const TensorTape& tape, NodeId id, int k,
                                 const ElementIndex& index, Anomaly& report) {
  { E::info } -> std::convertible_to<TOpInfo>;
  { E::arity(cnode) } -> std::same_as<int>;
  { E::forward(impl, node) } -> std::same_as<void>;
  { E::backward(impl, node) } -> std::same_as<void>;
  { E::expression(tape, id) } -> std::same_as<std::string>;
  { E::forward_operands(tape, id, index) } -> std::same_as<std::vector<AnomalyOperand>>;
  { E::backward_operands(tape, id, k, index, report) } -> std::same_as<void>;
  requires RecordsItsBackward<E> || LacksRecordedBackward<E>;
};

namespace tensor_ops {

// The leaves share their members (tensor_ops.cpp): nothing to compute forward, nothing to pass
// back (their gradient is where backward stops, Note [Gradient semantics]); each is its own
// entry by its info.
struct Leaf {
  static int arity(const Node&) { return 0; }
  static void forward(TensorTape::Impl&, Node&) {}
  static void backward(TensorTape::Impl&, Node&) {}
  static std::string expression(const TensorTape& tape, NodeId id);  // its label
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&) {
    return {};
  }
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&) {}
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>) {}
};
struct Input : Leaf {
  static constexpr TOpInfo info{TOp::input, "input", "", true};
};
struct Parameter : Leaf {
  static constexpr TOpInfo info{TOp::parameter, "parameter", "", true};
};
struct Constant : Leaf {
  static constexpr TOpInfo info{TOp::constant, "constant", "", true};
};

// The members every other entry declares; each entry's definitions are in tensor_ops.cpp.
// One row of ops.hpp's table over arrays; its name and symbol are the row's (node_name).
struct Elementwise {
  static constexpr TOpInfo info{TOp::elementwise, "elementwise", ""};
  static int arity(const Node& n) { return op_info(n.elem).arity; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Matmul {
  static constexpr TOpInfo info{TOp::matmul, "matmul", "@"};
  static int arity(const Node&) { return 2; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Linear {
  static constexpr TOpInfo info{TOp::linear, "linear", "linear"};
  static int arity(const Node& n) { return n.in[2] == kNoInput ? 2 : 3; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Transpose {
  static constexpr TOpInfo info{TOp::transpose, "transpose", "ᵀ"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Reshape {
  static constexpr TOpInfo info{TOp::reshape, "reshape", "reshape"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Sum {
  static constexpr TOpInfo info{TOp::sum, "sum", "Σ"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Mean {
  static constexpr TOpInfo info{TOp::mean, "mean", "mean"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Amax {
  static constexpr TOpInfo info{TOp::amax, "amax", "max"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct LogSoftmax {
  static constexpr TOpInfo info{TOp::log_softmax, "log_softmax", "log_softmax"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Softmax {
  static constexpr TOpInfo info{TOp::softmax, "softmax", "softmax"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Pick {
  static constexpr TOpInfo info{TOp::pick, "pick", "pick"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
// ---- reductions by comparison, and selection ----
struct Amin {
  static constexpr TOpInfo info{TOp::amin, "amin", "min"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Argmax {
  static constexpr TOpInfo info{TOp::argmax, "argmax", "argmax"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Where {
  static constexpr TOpInfo info{TOp::where, "where", "where"};
  static int arity(const Node&) { return 3; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};

// ---- shape ops: joining, slicing and indexing along an axis ----
// cat and stack keep their inputs in the arena (Note [Many inputs], tensor_storage.hpp).
struct Cat {
  static constexpr TOpInfo info{TOp::cat, "cat", "cat"};
  static int arity(const Node& n) { return stored_input_count(n); }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Stack {
  static constexpr TOpInfo info{TOp::stack, "stack", "stack"};
  static int arity(const Node& n) { return stored_input_count(n); }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Slice {
  static constexpr TOpInfo info{TOp::slice, "slice", "[:]"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct IndexSelect {
  static constexpr TOpInfo info{TOp::index_select, "index_select", "index_select"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};
struct Gather {
  static constexpr TOpInfo info{TOp::gather, "gather", "gather"};
  static int arity(const Node&) { return 1; }
  static void forward(TensorTape::Impl&, Node&);
  static void backward(TensorTape::Impl&, Node&);
  static std::string expression(const TensorTape& tape, NodeId id);
  static std::vector<AnomalyOperand> forward_operands(const TensorTape&, NodeId,
                                                      const ElementIndex&);
  static void backward_operands(const TensorTape&, NodeId, int, const ElementIndex&, Anomaly&);
  static void backward_graph(TensorTape&, NodeId, const Tensor&, std::span<Tensor>);
};

// Names E in dispatch only if it is a complete entry.
template <TensorOpEntry E> constexpr E entry() { return E{}; }

}  // namespace tensor_ops

// Calls f(Entry{}) with the entry of `op`: the one switch over the tensor op table.
template <class F> [[gnu::always_inline]] constexpr decltype(auto) dispatch(TOp op, F&& f) {
  using namespace tensor_ops;
  switch (op) {
    case TOp::input: return f(entry<Input>());
    case TOp::parameter: return f(entry<Parameter>());
    case TOp::constant: return f(entry<Constant>());
    case TOp::elementwise: return f(entry<Elementwise>());
    case TOp::matmul: return f(entry<Matmul>());
    case TOp::linear: return f(entry<Linear>());
    case TOp::transpose: return f(entry<Transpose>());
    case TOp::reshape: return f(entry<Reshape>());
    case TOp::sum: return f(entry<Sum>());
    case TOp::mean: return f(entry<Mean>());
    case TOp::amax: return f(entry<Amax>());
    case TOp::log_softmax: return f(entry<LogSoftmax>());
    case TOp::softmax: return f(entry<Softmax>());
    case TOp::pick: return f(entry<Pick>());
    case TOp::amin: return f(entry<Amin>());
    case TOp::argmax: return f(entry<Argmax>());
    case TOp::where: return f(entry<Where>());
    case TOp::cat: return f(entry<Cat>());
    case TOp::stack: return f(entry<Stack>());
    case TOp::slice: return f(entry<Slice>());
    case TOp::index_select: return f(entry<IndexSelect>());
    case TOp::gather: return f(entry<Gather>());
  }
  return f(entry<Input>());  // unreachable for a valid TOp; keeps -Wreturn-type quiet
}

constexpr const TOpInfo& top_info(TOp op) {
  return dispatch(op, [](auto e) -> const TOpInfo& { return decltype(e)::info; });
}

// How many inputs node n reads.
inline int arity_of(const Node& n) {
  return dispatch(n.op, [&](auto e) { return decltype(e)::arity(n); });
}

// The name and lecture symbol of node id: its entry's, or for an elementwise node its rule's
// (ops.hpp), so a graph draws "σ" and a report says "sigmoid".
std::string_view node_op_name(const TensorTape& tape, NodeId id);
std::string_view node_symbol(const TensorTape& tape, NodeId id);

}  // namespace ag
