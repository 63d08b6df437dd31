// Tensor storage (internal): the node record, the arena that holds elements and gradients, and
// Recorder, the door through which op entries append nodes. Included only by autograd/src.

#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "tapegrad/anomaly.hpp"
#include "tapegrad/tensor.hpp"

namespace ag {

inline constexpr std::uint8_t kNeedsGrad = 1;  // gets a gradient in backward
inline constexpr std::uint8_t kReached = 2;    // the latest backward passed it a gradient
inline constexpr std::uint8_t kKeepDims = 4;   // reductions: the reduced axis stays, as 1
// The gradient buffer holds values (Note [Lazy gradients]).
inline constexpr std::uint8_t kGradValid = 8;
// The node's inputs are in the arena, not in `in` (Note [Many inputs]).
inline constexpr std::uint8_t kManyInputs = 16;
inline constexpr NodeId kNoInput = std::numeric_limits<NodeId>::max();

// Note [Tensor storage] (tensor.hpp): blocks never move; reset() rewinds.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    for (Block& b : blocks_) std::free(b.memory);
  }

  void* allocate(std::size_t bytes) {
    bytes = (bytes + kAlign - 1) / kAlign * kAlign;
    if (bytes == 0) bytes = kAlign;
    while (current_ < blocks_.size()) {
      Block& b = blocks_[current_];
      if (used_ + bytes <= b.size) {
        void* p = b.memory + used_;
        used_ += bytes;
        return p;
      }
      ++current_;  // the rest of this block stays unused until the next reset
      used_ = 0;
    }
    const std::size_t size = std::max(bytes, kBlockSize);
    auto* memory = static_cast<std::byte*>(std::aligned_alloc(kAlign, size));
    if (memory == nullptr) fail("out of memory allocating {} bytes", size);
    blocks_.push_back(Block{memory, size});
    current_ = blocks_.size() - 1;
    used_ = bytes;
    return memory;
  }

  void reset() {
    current_ = 0;
    used_ = 0;
  }

 private:
  static constexpr std::size_t kAlign = 64;
  static constexpr std::size_t kBlockSize = std::size_t(1) << 20;
  struct Block {
    std::byte* memory;
    std::size_t size;
  };
  std::vector<Block> blocks_;
  std::size_t current_ = 0;
  std::size_t used_ = 0;
};

template <class F> decltype(auto) with_dtype(DType dtype, F&& f) {
  if (dtype == DType::f32) return f(float{});
  return f(double{});
}

struct TensorTape::Impl {
  struct Node {
    void* data;
    void* grad;  // null when the node gets no gradient
    void* aux;   // amax over an axis: argmax per output element; pick: class indices (int32);
                 // cat, stack: their inputs (Note [Many inputs]); slice, gather: their parameters
    double param;
    Shape shape;
    NodeId in[kMaxInputs];
    std::int32_t axis;
    std::uint32_t name_offset;
    std::uint16_t name_length;
    std::uint16_t scope;  // index into scopes; 0: recorded outside any scope
    TOp op;
    Op elem;
    DType dtype;
    std::uint8_t flags;
  };

  std::vector<Node> nodes;
  std::string names;
  // Note [Scopes]: scopes[0] is the outermost (no scope); each entry names a
  // module path in `names` and points at the scope it was entered from.
  struct ScopeRecord {
    std::uint32_t name_offset;
    std::uint16_t name_length;
    std::uint16_t parent;
  };
  std::vector<ScopeRecord> scopes{ScopeRecord{0, 0, 0}};
  std::uint16_t current_scope = 0;
  Arena arena;
  std::vector<double> scratch;  // a detailed stepper's copy of gradients before a step
  // TensorTape::grad's gradient node of each node (Note [Tensor gradients on the tape]), kept
  // with its capacity.
  std::vector<NodeId> gradient_of;
  // False until a backward pass starts after reset(): until then no node is kReached and no
  // op node's gradient is kGradValid, so the pass need not clear flags.
  bool dirty = false;

  // Note [Lazy gradients]
  // ~~~~~~~~~~~~~~~~~~~~~
  // An op node's gradient buffer is not zeroed when the op is recorded: its contents count only
  // once the node is kGradValid. The first backward kernel to write it assigns instead of
  // accumulating (a gemm with beta 0, an elementwise loop that stores) and sets the flag; a
  // kernel that accumulates, and anyone who reads a gradient, calls zeroed() first, which clears
  // the buffer if nothing has written it yet. A second backward over the same recording just
  // clears the flags. Leaves (inputs, parameters) are always valid: their gradients accumulate
  // across passes (Note [Gradient semantics]). A training step so never zeroes an activation's
  // gradient only to overwrite it: for a 2-64-64-1 MLP on 256 rows that was 256 KB a step.
  static void zeroed(Node& n) {
    if (n.grad != nullptr && !(n.flags & kGradValid)) {
      std::memset(n.grad, 0, std::size_t(n.shape.numel()) * dtype_size(n.dtype));
      n.flags |= kGradValid;
    }
  }
  // Whether a kernel may assign n's gradient (nobody wrote it yet); marks it written.
  static bool first_write(Node& n) {
    const bool first = !(n.flags & kGradValid);
    n.flags |= kGradValid;
    return first;
  }

  template <class T> static T* data(Node& n) { return static_cast<T*>(n.data); }
  template <class T> static T* grad(Node& n) { return static_cast<T*>(n.grad); }

  // Appends a node with fresh storage for its elements, and for its gradient
  // when it needs one. The caller fills the data.
  NodeId push(TOp op, DType dtype, const Shape& shape, bool needs_grad, NodeId a = 0, NodeId b = 0,
              Op elem = Op::input, double param = 0, int axis = 0) {
    if (nodes.size() >= std::numeric_limits<NodeId>::max())
      throw Error("the tensor tape is full (2^32 nodes)");
    if (nodes.size() == nodes.capacity()) [[unlikely]] {
      // Growing moves the records, and `shape` may be one's: grow first, from a copy.
      const Shape copy = shape;
      nodes.reserve(std::max<std::size_t>(64, 2 * nodes.capacity()));
      return push(op, dtype, copy, needs_grad, a, b, elem, param, axis);
    }
    const std::size_t bytes = std::size_t(shape.numel()) * dtype_size(dtype);
    void* data = arena.allocate(bytes);
    void* grad = needs_grad ? arena.allocate(bytes) : nullptr;
    const bool leaf = op == TOp::input || op == TOp::parameter || op == TOp::constant;
    if (needs_grad && leaf) std::memset(grad, 0, bytes);  // Note [Lazy gradients]
    // The record is written where it stays, not built on the stack and copied: the copy read
    // 16 bytes at a time what had just been stored as 1, 2 and 4-byte fields, which the CPU
    // cannot forward from its store buffer, and a sampling profile put a sixth of a native
    // moons step in push.
    Node& n = nodes.emplace_back();
    n.data = data;
    n.grad = grad;
    n.param = param;
    n.shape = shape;
    n.in[0] = a;
    n.in[1] = b;
    n.axis = axis;
    n.op = op;
    n.elem = elem;
    n.dtype = dtype;
    n.flags = needs_grad ? (leaf ? kNeedsGrad | kGradValid : kNeedsGrad) : 0;
    n.scope = current_scope;
    return static_cast<NodeId>(nodes.size() - 1);
  }
};

using Node = TensorTape::Impl::Node;

// Note [Many inputs]
// ~~~~~~~~~~~~~~~~~~
// A node keeps up to kMaxInputs input ids in `in`. An op with any number of inputs (cat, stack)
// sets kManyInputs and keeps them in the arena instead, through `aux`: a NodeId array whose
// first entry is the count (store_inputs makes room for them). Everyone who walks a node's inputs
// (the stepper, graphs, formatting, anomaly mode) goes through input_id and the entry's arity, so
// an op's arity is not bounded by the record's size.
inline NodeId input_id(const Node& n, int k) {
  if (n.flags & kManyInputs) [[unlikely]]
    return static_cast<const NodeId*>(n.aux)[k + 1];
  return n.in[k];
}
inline int stored_input_count(const Node& n) { return int(static_cast<const NodeId*>(n.aux)[0]); }
// Room for node n's `count` input ids in the arena, for the caller to fill.
inline NodeId* store_inputs(TensorTape::Impl& impl, Node& n, std::size_t count) {
  auto* stored = static_cast<NodeId*>(impl.arena.allocate((count + 1) * sizeof(NodeId)));
  stored[0] = NodeId(count);
  n.aux = stored;
  n.flags |= kManyInputs;
  return stored + 1;
}

// Access for the free functions that record nodes (the op entries, the creation functions).
struct Recorder {
  static TensorTape::Impl& impl(TensorTape& t) { return *t.impl_; }
  // A node's record, for the read-only members of an entry (expression, anomaly operands) that
  // need what the op keeps in the arena (aux): a slice's range, a gather's indices.
  static const Node& node(const TensorTape& t, NodeId id) { return t.impl_->nodes[id]; }
  // Every op ends here: the place of anomaly mode's forward check (Note [Anomaly mode]).
  static Tensor make(TensorTape& t, NodeId id) {
    if (t.check_finite_) [[unlikely]]
      detail::check_tensor_forward(t, id);
    return Tensor(&t, id, t.generation());
  }
  static bool grad_for(TensorTape& t, std::initializer_list<NodeId> inputs) {
    return grad_for(t, std::span<const NodeId>(inputs.begin(), inputs.size()));
  }
  static bool grad_for(TensorTape& t, std::span<const NodeId> inputs) {
    if (!t.grad_enabled()) return false;
    for (NodeId i : inputs)
      if (t.needs_grad(i)) return true;
    return false;
  }
};

void check_length(const Shape& shape, std::size_t length, std::string_view what);

}  // namespace ag
