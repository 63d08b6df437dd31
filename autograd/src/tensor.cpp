// The tensor tape: node records, the arena that holds their elements, and each
// tensor op's forward and backward, side by side, one section per op.

#include "tapegrad/tensor.hpp"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TAPEGRAD_AVX2 1
#endif

#include "tapegrad/anomaly.hpp"
#include "tapegrad/format.hpp"
#include "tapegrad/random.hpp"

namespace ag {

namespace {

constexpr std::uint8_t kNeedsGrad = 1;  // gets a gradient in backward
constexpr std::uint8_t kReached = 2;    // the latest backward passed it a gradient
constexpr std::uint8_t kKeepDims = 4;   // reductions: the reduced axis stays, as 1
constexpr std::uint8_t kGradValid = 8;  // the gradient buffer holds values (Note [Lazy gradients])
constexpr NodeId kNoInput = std::numeric_limits<NodeId>::max();

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
    if (memory == nullptr) throw Error(fmt::format("out of memory allocating {} bytes", size));
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

template <class F>
decltype(auto) with_dtype(DType dtype, F&& f) {
  if (dtype == DType::f32) return f(float{});
  return f(double{});
}

}  // namespace

struct TensorTape::Impl {
  struct Node {
    void* data;
    void* grad;  // null when the node gets no gradient
    void* aux;   // amax: argmax per output element; pick: the class indices (int32)
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
  NodeId push(TOp op, DType dtype, const Shape& shape, bool needs_grad, NodeId a = 0,
              NodeId b = 0, Op elem = Op::input, double param = 0, int axis = 0) {
    const std::size_t bytes = std::size_t(shape.numel()) * dtype_size(dtype);
    Node n{};
    n.data = arena.allocate(bytes);
    n.grad = needs_grad ? arena.allocate(bytes) : nullptr;
    const bool leaf = op == TOp::input || op == TOp::parameter || op == TOp::constant;
    if (needs_grad && leaf) std::memset(n.grad, 0, bytes);  // Note [Lazy gradients]
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
    if (nodes.size() >= std::numeric_limits<NodeId>::max())
      throw Error("the tensor tape is full (2^32 nodes)");
    nodes.push_back(n);
    return static_cast<NodeId>(nodes.size() - 1);
  }
};

// ---- handles ------------------------------------------------------------------

std::string_view top_name(TOp op) {
  switch (op) {
    case TOp::input: return "input";
    case TOp::parameter: return "parameter";
    case TOp::constant: return "constant";
    case TOp::elementwise: return "elementwise";
    case TOp::matmul: return "matmul";
    case TOp::linear: return "linear";
    case TOp::transpose: return "transpose";
    case TOp::reshape: return "reshape";
    case TOp::sum: return "sum";
    case TOp::mean: return "mean";
    case TOp::amax: return "amax";
    case TOp::log_softmax: return "log_softmax";
    case TOp::softmax: return "softmax";
    case TOp::pick: return "pick";
  }
  return "?";
}

static bool is_leaf(TOp op) {
  return op == TOp::input || op == TOp::parameter || op == TOp::constant;
}

TensorTape::TensorTape() : impl_(std::make_unique<Impl>()) {}
TensorTape::~TensorTape() = default;

void TensorTape::check_failed(const Tensor& t, std::string_view what) const {
  if (t.tape_ == nullptr) throw Error(std::string(what) + ": an empty Tensor (default-constructed)");
  if (t.tape_ != this) throw Error(std::string(what) + ": the operands belong to different tapes");
  throw Error(std::string(what) +
              ": this Tensor was recorded before its tape was reset; record it again");
}

void TensorTape::tensor_failed(const Tensor& t) {
  if (t.tape_ == nullptr) throw Error("an empty Tensor (default-constructed) was used");
  t.tape_->check_failed(t, "Tensor");
}

const Shape& Tensor::shape() const { return tape().shape(id_); }
DType Tensor::dtype() const { return tape().dtype(id_); }
bool Tensor::requires_grad() const { return tape().needs_grad(id_); }
std::string_view Tensor::name() const { return tape().name(id_); }
Tensor Tensor::named(std::string_view name) const {
  tape().set_name(id_, name);
  return *this;
}

template <class T>
std::span<const T> Tensor::data() const {
  TensorTape& t = tape();
  auto& n = t.impl_->nodes[id_];
  if (n.dtype != dtype_of<T>())
    throw Error(fmt::format("Tensor::data<{}>: the tensor holds {}", dtype_name(dtype_of<T>()),
                            dtype_name(n.dtype)));
  return {static_cast<const T*>(n.data), std::size_t(n.shape.numel())};
}

template <class T>
std::span<const T> Tensor::grad() const {
  TensorTape& t = tape();
  auto& n = t.impl_->nodes[id_];
  if (n.dtype != dtype_of<T>())
    throw Error(fmt::format("Tensor::grad<{}>: the tensor holds {}", dtype_name(dtype_of<T>()),
                            dtype_name(n.dtype)));
  if (n.grad == nullptr) return {};
  TensorTape::Impl::zeroed(n);
  return {static_cast<const T*>(n.grad), std::size_t(n.shape.numel())};
}

template std::span<const float> Tensor::data<float>() const;
template std::span<const double> Tensor::data<double>() const;
template std::span<const float> Tensor::grad<float>() const;
template std::span<const double> Tensor::grad<double>() const;

double Tensor::item() const {
  if (numel() != 1)
    throw Error(fmt::format("item: the tensor has shape {}, not a single element", shape().str()));
  return value(0);
}
double Tensor::value(std::int64_t flat) const { return tape().value(id_, flat); }
double Tensor::grad_at(std::int64_t flat) const { return tape().grad(id_, flat); }

std::vector<double> Tensor::values() const {
  std::vector<double> v(static_cast<std::size_t>(numel()));
  for (std::int64_t i = 0; i < numel(); ++i) v[std::size_t(i)] = value(i);
  return v;
}
std::vector<double> Tensor::grads() const {
  std::vector<double> v(static_cast<std::size_t>(numel()));
  for (std::int64_t i = 0; i < numel(); ++i) v[std::size_t(i)] = grad_at(i);
  return v;
}

// ---- tape accessors -----------------------------------------------------------

std::size_t TensorTape::size() const { return impl_->nodes.size(); }
TOp TensorTape::op(NodeId id) const { return impl_->nodes[id].op; }
Op TensorTape::elementwise_op(NodeId id) const { return impl_->nodes[id].elem; }
const Shape& TensorTape::shape(NodeId id) const { return impl_->nodes[id].shape; }
DType TensorTape::dtype(NodeId id) const { return impl_->nodes[id].dtype; }
NodeId TensorTape::input_of(NodeId id, int k) const { return impl_->nodes[id].in[k]; }
bool TensorTape::needs_grad(NodeId id) const { return impl_->nodes[id].flags & kNeedsGrad; }
bool TensorTape::reached(NodeId id) const { return impl_->nodes[id].flags & kReached; }
double TensorTape::param(NodeId id) const { return impl_->nodes[id].param; }
int TensorTape::axis(NodeId id) const { return impl_->nodes[id].axis; }

static int arity_of(const TensorTape::Impl::Node& n) {
  switch (n.op) {
    case TOp::input:
    case TOp::parameter:
    case TOp::constant: return 0;
    case TOp::elementwise: return op_info(n.elem).arity;
    case TOp::matmul: return 2;
    case TOp::linear: return n.in[2] == kNoInput ? 2 : 3;
    default: return 1;
  }
}

int TensorTape::arity(NodeId id) const { return arity_of(impl_->nodes[id]); }

std::string_view TensorTape::name(NodeId id) const {
  const auto& n = impl_->nodes[id];
  return std::string_view(impl_->names).substr(n.name_offset, n.name_length);
}

std::string TensorTape::label(NodeId id) const {
  if (std::string_view n = name(id); !n.empty()) return std::string(n);
  if (op(id) == TOp::constant && shape(id).numel() == 1) return format_number(value(id, 0));
  return fmt::format("t{}", id);
}

void TensorTape::set_name(NodeId id, std::string_view name) {
  if (name.size() > std::numeric_limits<std::uint16_t>::max())
    throw Error(fmt::format("a node name of {} characters is too long", name.size()));
  auto& n = impl_->nodes.at(id);
  n.name_offset = static_cast<std::uint32_t>(impl_->names.size());
  n.name_length = static_cast<std::uint16_t>(name.size());
  impl_->names.append(name);
}

std::uint16_t TensorTape::scope(NodeId id) const { return impl_->nodes[id].scope; }
std::size_t TensorTape::scope_count() const { return impl_->scopes.size(); }
std::string_view TensorTape::scope_name(std::uint16_t scope) const {
  const auto& s = impl_->scopes.at(scope);
  return std::string_view(impl_->names).substr(s.name_offset, s.name_length);
}
std::uint16_t TensorTape::scope_parent(std::uint16_t scope) const {
  return impl_->scopes.at(scope).parent;
}

TensorTape::Scope::Scope(TensorTape& tape, std::string_view name)
    : tape_(tape), previous_(tape.impl_->current_scope) {
  auto& impl = *tape.impl_;
  if (impl.scopes.size() >= std::numeric_limits<std::uint16_t>::max())
    throw Error("the tensor tape has too many scopes (65535)");
  if (name.size() > std::numeric_limits<std::uint16_t>::max())
    throw Error(fmt::format("a scope name of {} characters is too long", name.size()));
  impl.scopes.push_back({static_cast<std::uint32_t>(impl.names.size()),
                         static_cast<std::uint16_t>(name.size()), previous_});
  impl.names.append(name);
  impl.current_scope = static_cast<std::uint16_t>(impl.scopes.size() - 1);
}

TensorTape::Scope::~Scope() { tape_.impl_->current_scope = previous_; }

Tensor TensorTape::handle(NodeId id) {
  if (id >= impl_->nodes.size())
    throw Error(fmt::format("node {} does not exist: the tape has {} nodes", id, size()));
  return Tensor(this, id, generation_);
}

double TensorTape::value(NodeId id, std::int64_t flat) const {
  auto& n = impl_->nodes[id];
  if (flat < 0 || flat >= n.shape.numel())
    throw Error(fmt::format("element {} is out of range for shape {}", flat, n.shape.str()));
  return with_dtype(n.dtype, [&](auto t) -> double {
    return Impl::data<decltype(t)>(n)[flat];
  });
}

double TensorTape::grad(NodeId id, std::int64_t flat) const {
  auto& n = impl_->nodes[id];
  if (flat < 0 || flat >= n.shape.numel())
    throw Error(fmt::format("element {} is out of range for shape {}", flat, n.shape.str()));
  if (n.grad == nullptr) return 0.0;
  Impl::zeroed(n);
  return with_dtype(n.dtype, [&](auto t) -> double {
    return Impl::grad<decltype(t)>(n)[flat];
  });
}

double TensorTape::grad_norm(NodeId id) const {
  auto& n = impl_->nodes[id];
  if (n.grad == nullptr) return 0.0;
  Impl::zeroed(n);
  return with_dtype(n.dtype, [&](auto t) {
    const auto* g = Impl::grad<decltype(t)>(n);
    double s = 0;
    for (std::int64_t i = 0, e = n.shape.numel(); i < e; ++i) s += double(g[i]) * double(g[i]);
    return std::sqrt(s);
  });
}

void TensorTape::zero_grad() {
  for (auto& n : impl_->nodes) {
    if (n.grad == nullptr) continue;
    if (is_leaf(n.op))
      std::memset(n.grad, 0, std::size_t(n.shape.numel()) * dtype_size(n.dtype));
    else  // Note [Lazy gradients]
      n.flags &= static_cast<std::uint8_t>(~kGradValid);
  }
}

void TensorTape::reset() {
  impl_->nodes.clear();
  impl_->names.clear();
  impl_->scopes.resize(1);
  impl_->current_scope = 0;
  impl_->arena.reset();
  impl_->dirty = false;
  ++generation_;
}

// ---- leaves ---------------------------------------------------------------------

static void check_length(const Shape& shape, std::size_t length, std::string_view what) {
  if (std::int64_t(length) != shape.numel())
    throw Error(fmt::format("{}: {} values given for shape {}, which holds {}", what, length,
                            shape.str(), shape.numel()));
}

template <class T>
Tensor TensorTape::input(const Shape& shape, std::span<const T> data, std::string_view name) {
  check_length(shape, data.size(), "input");
  const NodeId id = impl_->push(TOp::input, dtype_of<T>(), shape, true);
  std::copy(data.begin(), data.end(), Impl::data<T>(impl_->nodes[id]));
  if (!name.empty()) set_name(id, name);
  return Tensor(this, id, generation_);
}

Tensor TensorTape::input(const Shape& shape, std::initializer_list<double> data,
                         std::string_view name, DType dtype) {
  check_length(shape, data.size(), "input");
  Tensor t = leaf(shape, {dtype, true, name});
  with_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    std::transform(data.begin(), data.end(), Impl::data<T>(impl_->nodes[t.id_]),
                   [](double x) { return T(x); });
  });
  return t;
}

template <class T>
Tensor TensorTape::constant(const Shape& shape, std::span<const T> data) {
  check_length(shape, data.size(), "constant");
  const NodeId id = impl_->push(TOp::constant, dtype_of<T>(), shape, false);
  std::copy(data.begin(), data.end(), Impl::data<T>(impl_->nodes[id]));
  return Tensor(this, id, generation_);
}

template <class T>
Tensor TensorTape::parameter(const Shape& shape, T* data, T* grad, std::string_view name) {
  if (data == nullptr || grad == nullptr)
    throw Error("parameter: the data and gradient pointers must not be null");
  Impl::Node n{};
  n.data = data;
  n.grad = grad;
  n.shape = shape;
  n.op = TOp::parameter;
  n.dtype = dtype_of<T>();
  n.flags = grad_enabled_ ? kNeedsGrad | kGradValid : 0;
  n.scope = impl_->current_scope;
  if (!grad_enabled_) n.grad = nullptr;
  impl_->nodes.push_back(n);
  const NodeId id = static_cast<NodeId>(impl_->nodes.size() - 1);
  if (!name.empty()) set_name(id, name);
  return Tensor(this, id, generation_);
}

template Tensor TensorTape::input<float>(const Shape&, std::span<const float>, std::string_view);
template Tensor TensorTape::input<double>(const Shape&, std::span<const double>, std::string_view);
template Tensor TensorTape::constant<float>(const Shape&, std::span<const float>);
template Tensor TensorTape::constant<double>(const Shape&, std::span<const double>);
template Tensor TensorTape::parameter<float>(const Shape&, float*, float*, std::string_view);
template Tensor TensorTape::parameter<double>(const Shape&, double*, double*, std::string_view);

Tensor TensorTape::leaf(const Shape& shape, const TensorOptions& options) {
  const bool grad = options.requires_grad && grad_enabled_;
  const NodeId id = impl_->push(grad ? TOp::input : TOp::constant, options.dtype, shape, grad);
  std::memset(impl_->nodes[id].data, 0, std::size_t(shape.numel()) * dtype_size(options.dtype));
  if (!options.name.empty()) set_name(id, options.name);
  return Tensor(this, id, generation_);
}

// Fills a fresh leaf element by element with f(i).
template <class F>
static Tensor filled(TensorTape& tape, const Shape& shape, const TensorOptions& options, F f);

Tensor zeros(TensorTape& tape, const Shape& shape, const TensorOptions& options) {
  return tape.leaf(shape, options);
}
Tensor ones(TensorTape& tape, const Shape& shape, const TensorOptions& options) {
  return full(tape, shape, 1.0, options);
}
Tensor full(TensorTape& tape, const Shape& shape, double value, const TensorOptions& options) {
  return filled(tape, shape, options, [&](std::int64_t) { return value; });
}
Tensor arange(TensorTape& tape, double start, double stop, double step,
              const TensorOptions& options) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step))
    throw Error(fmt::format("arange({}, {}, {}): the step must be non-zero and all finite", start,
                            stop, step));
  const double count = std::ceil((stop - start) / step);
  const std::int64_t n = count > 0 ? std::int64_t(count) : 0;
  return filled(tape, Shape{n}, options, [&](std::int64_t i) { return start + double(i) * step; });
}
Tensor uniform(TensorTape& tape, const Shape& shape, double low, double high, std::uint64_t seed,
               const TensorOptions& options) {
  Rng rng(seed);
  return filled(tape, shape, options, [&](std::int64_t) { return rng.uniform(low, high); });
}
Tensor normal(TensorTape& tape, const Shape& shape, double mean, double stddev,
              std::uint64_t seed, const TensorOptions& options) {
  Rng rng(seed);
  return filled(tape, shape, options, [&](std::int64_t) { return rng.normal(mean, stddev); });
}

// ---- kernels --------------------------------------------------------------------

namespace {

// Note [Broadcasting]
// ~~~~~~~~~~~~~~~~~~~
// for_each_broadcast calls f(i, ia, ib) for every element i of the output, with
// the indices of the input elements it is computed from (NumPy's rule: an
// input's axis of length 1, or a missing leading axis, repeats). Backward uses
// the same walk and accumulates into the inputs' gradients at ia and ib, so a
// broadcast gradient is summed back to each input's shape here, in the walk,
// and nowhere else.
template <class F>
void for_each_broadcast(const Shape& out, const Shape& a, const Shape& b, F&& f) {
  const std::int64_t n = out.numel();
  if (a == out && b == out) {
    for (std::int64_t i = 0; i < n; ++i) f(i, i, i);
    return;
  }
  if (a == out && b.numel() == 1) {
    for (std::int64_t i = 0; i < n; ++i) f(i, i, std::int64_t(0));
    return;
  }
  if (b == out && a.numel() == 1) {
    for (std::int64_t i = 0; i < n; ++i) f(i, std::int64_t(0), i);
    return;
  }
  // Strides of a and b aligned to the output's axes; 0 where an input repeats.
  const int rank = out.rank();
  std::int64_t sa[kMaxRank] = {}, sb[kMaxRank] = {};
  std::int64_t stride_a = 1, stride_b = 1;
  for (int axis = rank - 1; axis >= 0; --axis) {
    const int ia = a.rank() - rank + axis, ib = b.rank() - rank + axis;
    if (ia >= 0) {
      sa[axis] = a[ia] == 1 ? 0 : stride_a;
      stride_a *= a[ia];
    }
    if (ib >= 0) {
      sb[axis] = b[ib] == 1 ? 0 : stride_b;
      stride_b *= b[ib];
    }
  }
  const std::int64_t inner = rank ? out[rank - 1] : 1;
  const std::int64_t inner_a = rank ? sa[rank - 1] : 0, inner_b = rank ? sb[rank - 1] : 0;
  std::int64_t counter[kMaxRank] = {};
  std::int64_t base_a = 0, base_b = 0;
  for (std::int64_t i = 0; i < n; i += inner) {
    for (std::int64_t j = 0; j < inner; ++j) f(i + j, base_a + j * inner_a, base_b + j * inner_b);
    // Advance the outer axes like an odometer.
    for (int axis = rank - 2; axis >= 0; --axis) {
      base_a += sa[axis];
      base_b += sb[axis];
      if (++counter[axis] < out[axis]) break;
      base_a -= sa[axis] * out[axis];
      base_b -= sb[axis] * out[axis];
      counter[axis] = 0;
    }
  }
}

// Below this many multiply-adds a plain loop beats a BLAS call's overhead
// (about 80 ns for a 4x5 by 5x5 sgemm on this machine).
constexpr std::int64_t kBlasThreshold = 32 * 32 * 32;
// Below this many, the plain loops; from here to kBlasThreshold, the packed kernel (Note [Small
// gemm]). A 4x5 by 5x5 product is faster unpacked; 100x16 by 16x16 takes half the instructions
// packed.
constexpr std::int64_t kPackThreshold = 1024;

// Note [Small gemm]
// ~~~~~~~~~~~~~~~~~
// From kPackThreshold to kBlasThreshold multiply-adds the product runs here. op(B) is packed
// once per call into a k x np buffer (np: n rounded up to whole blocks of W columns, zero
// padded), so every operand layout (plain or transposed) meets the same kernel: a block of 4
// rows by W columns of C (W = 8 floats or 4 doubles; 4 or 2 when n is that narrow) held in
// eight (or fewer) 16-byte vector registers, updated with a(i, p) times a contiguous row of the
// packed B for each p. The vectors are GCC's vector extension at the baseline's width (SSE2),
// which every x86-64 has: a wider generic vector is emulated through memory on a target without
// it, and runtime dispatch (target_clones) is not worth its complexity at these sizes. Each
// element of C still sums its k products in order p = 0, 1, ..., as the plain loops do.
template <class T>
using Vec [[gnu::vector_size(16)]] = T;
template <class T>
inline constexpr int kVecLen = int(16 / sizeof(T));

template <class T, int R, int NV, bool TA>
[[gnu::always_inline]] inline void small_block(std::int64_t lda, std::int64_t i0, std::int64_t n,
                                               std::int64_t k, std::int64_t np, const T* A,
                                               const T* pb, T beta, T* C) {
  static_assert((R == 1 || R == 4) && (NV == 1 || NV == 2));
  using V = Vec<T>;
  constexpr int L = kVecLen<T>, W = NV * L;
  auto a = [&](std::int64_t p, int r) { return TA ? A[p * lda + i0 + r] : A[(i0 + r) * lda + p]; };
  for (std::int64_t j0 = 0; j0 < np; j0 += W) {
    // Named accumulators, so that they stay in registers.
    V c00{}, c01{}, c10{}, c11{}, c20{}, c21{}, c30{}, c31{};
    const T* row = pb + j0;
    for (std::int64_t p = 0; p < k; ++p, row += np) {
      V b0, b1{};
      std::memcpy(&b0, row, sizeof b0);
      if constexpr (NV == 2) std::memcpy(&b1, row + L, sizeof b1);
      const T a0 = a(p, 0);
      c00 += a0 * b0;
      if constexpr (NV == 2) c01 += a0 * b1;
      if constexpr (R == 4) {
        const T a1 = a(p, 1), a2 = a(p, 2), a3 = a(p, 3);
        c10 += a1 * b0;
        c20 += a2 * b0;
        c30 += a3 * b0;
        if constexpr (NV == 2) {
          c11 += a1 * b1;
          c21 += a2 * b1;
          c31 += a3 * b1;
        }
      }
    }
    auto store = [&](V v, int r, int q) {
      const std::int64_t j = j0 + q * L, w = std::min<std::int64_t>(L, n - j);
      T* c = C + (i0 + r) * n + j;
      if (w == L) {  // a whole vector: one load and store
        if (beta != T(0)) {
          V old;
          std::memcpy(&old, c, sizeof old);
          v += old;
        }
        std::memcpy(c, &v, sizeof v);
      } else {
        for (std::int64_t e = 0; e < w; ++e) c[e] = beta == T(0) ? v[e] : c[e] + v[e];
      }
    };
    store(c00, 0, 0);
    if constexpr (NV == 2) store(c01, 0, 1);
    if constexpr (R == 4) {
      store(c10, 1, 0), store(c20, 2, 0), store(c30, 3, 0);
      if constexpr (NV == 2) store(c11, 1, 1), store(c21, 2, 1), store(c31, 3, 1);
    }
  }
}

template <class T, int NV, bool TA>
void small_rows(std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t np, const T* A,
                const T* pb, T beta, T* C) {
  const std::int64_t lda = TA ? m : k;
  std::int64_t i = 0;
  for (; i + 4 <= m; i += 4) small_block<T, 4, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
  for (; i < m; ++i) small_block<T, 1, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
}

#ifdef TAPEGRAD_AVX2
// Note [Wide small gemm]
// ~~~~~~~~~~~~~~~~~~~~~~
// The same blocking as Note [Small gemm] in 32-byte AVX2 registers with fused multiply-adds,
// for CPUs that have both (checked once, at the first product: `__builtin_cpu_supports`). A
// block of 4 rows by 2 vectors (16 floats or 8 doubles) of C lives in eight ymm registers; each
// step over p loads two vectors of the packed B, broadcasts four elements of A and issues eight
// FMAs: 14 instructions for 64 float multiply-adds, against 36 for 32 in the SSE2 kernel. The
// portable kernel stays for other CPUs and when TAPEGRAD_SIMD=sse2 is set in the environment
// (the test suite runs the tensor tests both ways). Each element of C still sums its products
// in order p = 0, 1, ..., but every step rounds once (a fused multiply-add) instead of twice, so
// the two kernels agree to rounding, not bit for bit; each is deterministic.
template <class T>
struct Avx;
template <>
struct Avx<float> {
  using V = __m256;
  static constexpr int L = 8;
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V zero() { return _mm256_setzero_ps(); }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V load(const float* p) {
    return _mm256_loadu_ps(p);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static void store(float* p, V v) {
    _mm256_storeu_ps(p, v);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V splat(float a) {
    return _mm256_set1_ps(a);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V add(V a, V b) {
    return _mm256_add_ps(a, b);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V fma(V a, V b, V c) {
    return _mm256_fmadd_ps(a, b, c);
  }
};
template <>
struct Avx<double> {
  using V = __m256d;
  static constexpr int L = 4;
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V zero() { return _mm256_setzero_pd(); }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V load(const double* p) {
    return _mm256_loadu_pd(p);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static void store(double* p, V v) {
    _mm256_storeu_pd(p, v);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V splat(double a) {
    return _mm256_set1_pd(a);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V add(V a, V b) {
    return _mm256_add_pd(a, b);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V fma(V a, V b, V c) {
    return _mm256_fmadd_pd(a, b, c);
  }
};

// Writes the first w lanes of v to c (w <= L), or adds them to c unless beta is 0.
template <class T>
[[gnu::target("avx2,fma"), gnu::always_inline]] inline void wide_store(typename Avx<T>::V v, T* c,
                                                                       std::int64_t w, T beta) {
  using O = Avx<T>;
  if (w == O::L) {  // a whole vector: one load and store
    O::store(c, beta != T(0) ? O::add(v, O::load(c)) : v);
  } else if (w > 0) {
    alignas(32) T lanes[O::L];
    O::store(lanes, v);
    for (std::int64_t e = 0; e < w; ++e) c[e] = beta == T(0) ? lanes[e] : c[e] + lanes[e];
  }
}

template <class T, int R, int NV, bool TA>
[[gnu::target("avx2,fma"), gnu::always_inline]] inline void wide_block(
    std::int64_t lda, std::int64_t i0, std::int64_t n, std::int64_t k, std::int64_t np, const T* A,
    const T* pb, T beta, T* C) {
  static_assert((R == 1 || R == 4) && (NV == 1 || NV == 2));
  using O = Avx<T>;
  using V = typename O::V;
  constexpr int L = O::L, W = NV * L;
  auto a = [&](std::int64_t p, int r) { return TA ? A[p * lda + i0 + r] : A[(i0 + r) * lda + p]; };
  for (std::int64_t j0 = 0; j0 < np; j0 += W) {
    V c00 = O::zero(), c01 = O::zero(), c10 = O::zero(), c11 = O::zero();
    V c20 = O::zero(), c21 = O::zero(), c30 = O::zero(), c31 = O::zero();
    const T* row = pb + j0;
    for (std::int64_t p = 0; p < k; ++p, row += np) {
      const V b0 = O::load(row);
      const V b1 = NV == 2 ? O::load(row + L) : O::zero();
      const V a0 = O::splat(a(p, 0));
      c00 = O::fma(a0, b0, c00);
      if constexpr (NV == 2) c01 = O::fma(a0, b1, c01);
      if constexpr (R == 4) {
        const V a1 = O::splat(a(p, 1)), a2 = O::splat(a(p, 2)), a3 = O::splat(a(p, 3));
        c10 = O::fma(a1, b0, c10);
        c20 = O::fma(a2, b0, c20);
        c30 = O::fma(a3, b0, c30);
        if constexpr (NV == 2) {
          c11 = O::fma(a1, b1, c11);
          c21 = O::fma(a2, b1, c21);
          c31 = O::fma(a3, b1, c31);
        }
      }
    }
    // (No lambda here: a lambda would not inherit the target attribute.)
    const std::int64_t w0 = std::min<std::int64_t>(L, n - j0),
                       w1 = std::min<std::int64_t>(L, n - j0 - L);
    T* c = C + i0 * n + j0;
    wide_store<T>(c00, c, w0, beta);
    if constexpr (NV == 2) wide_store<T>(c01, c + L, w1, beta);
    if constexpr (R == 4) {
      wide_store<T>(c10, c + n, w0, beta);
      wide_store<T>(c20, c + 2 * n, w0, beta);
      wide_store<T>(c30, c + 3 * n, w0, beta);
      if constexpr (NV == 2) {
        wide_store<T>(c11, c + n + L, w1, beta);
        wide_store<T>(c21, c + 2 * n + L, w1, beta);
        wide_store<T>(c31, c + 3 * n + L, w1, beta);
      }
    }
  }
}

template <class T, int NV, bool TA>
[[gnu::target("avx2,fma")]] void wide_rows(std::int64_t m, std::int64_t n, std::int64_t k,
                                           std::int64_t np, const T* A, const T* pb, T beta, T* C) {
  const std::int64_t lda = TA ? m : k;
  std::int64_t i = 0;
  for (; i + 4 <= m; i += 4) wide_block<T, 4, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
  for (; i < m; ++i) wide_block<T, 1, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
}

// Whether the AVX2 kernel runs: the CPU has AVX2 and FMA, and TAPEGRAD_SIMD is not "sse2".
bool use_avx2() {
  static const bool yes = [] {
    const char* simd = std::getenv("TAPEGRAD_SIMD");
    if (simd != nullptr && std::string_view(simd) == "sse2") return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}
#endif

// The padded width of op(B)'s rows in the packed buffer: whole blocks of the kernel's width.
template <class T>
std::int64_t small_padded(std::int64_t n, bool wide) {
  const std::int64_t l = wide ? 32 / std::int64_t(sizeof(T)) : kVecLen<T>;
  const std::int64_t w = n <= l ? l : 2 * l;
  return (n + w - 1) / w * w;
}

// C = op(A) op(B) + beta C through a packed kernel; pb holds at least k * np elements, np as
// small_padded gives it for `wide`.
template <class T>
void small_gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* A,
                const T* B, T beta, T* C, T* pb, bool wide) {
  const std::int64_t np = small_padded<T>(n, wide), ldb = tb ? k : n;
  for (std::int64_t p = 0; p < k; ++p) {  // op(B) (k x n) row by row into pb (k x np)
    T* row = pb + p * np;
    if (tb)
      for (std::int64_t j = 0; j < n; ++j) row[j] = B[j * ldb + p];
    else
      std::memcpy(row, B + p * ldb, std::size_t(n) * sizeof(T));
    for (std::int64_t j = n; j < np; ++j) row[j] = T(0);
  }
#ifdef TAPEGRAD_AVX2
  if (wide) {
    const bool two = n > Avx<T>::L;
    if (ta)
      two ? wide_rows<T, 2, true>(m, n, k, np, A, pb, beta, C)
          : wide_rows<T, 1, true>(m, n, k, np, A, pb, beta, C);
    else
      two ? wide_rows<T, 2, false>(m, n, k, np, A, pb, beta, C)
          : wide_rows<T, 1, false>(m, n, k, np, A, pb, beta, C);
    return;
  }
#endif
  const bool two = n > kVecLen<T>;
  if (ta)
    two ? small_rows<T, 2, true>(m, n, k, np, A, pb, beta, C)
        : small_rows<T, 1, true>(m, n, k, np, A, pb, beta, C);
  else
    two ? small_rows<T, 2, false>(m, n, k, np, A, pb, beta, C)
        : small_rows<T, 1, false>(m, n, k, np, A, pb, beta, C);
}

// C (m x n, row-major, leading dimension n) = op(A) op(B) + beta C, where
// op(A) is m x k and op(B) is k x n; ta/tb mean A/B are stored transposed.
template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* A,
          const T* B, T beta, T* C) {
  const std::int64_t lda = ta ? m : k, ldb = tb ? k : n;
  if (m * n * k >= kBlasThreshold) {
    const auto TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemm(CblasRowMajor, TA, TB, int(m), int(n), int(k), 1.0f, A, int(lda), B, int(ldb),
                  beta, C, int(n));
    else
      cblas_dgemm(CblasRowMajor, TA, TB, int(m), int(n), int(k), 1.0, A, int(lda), B, int(ldb),
                  beta, C, int(n));
    return;
  }
  if (m * n * k < kPackThreshold) {
    // Tiny products (the lecture's 4x5 by 5x5): packing would cost as much as the product.
    if (beta == T(0)) std::fill(C, C + m * n, T(0));
    if (!tb) {
      // Row i of C accumulates a[i, p] times row p of B: contiguous, vectorizable.
      for (std::int64_t i = 0; i < m; ++i) {
        T* c = C + i * n;
        for (std::int64_t p = 0; p < k; ++p) {
          const T a = ta ? A[p * lda + i] : A[i * lda + p];
          const T* b = B + p * ldb;
          for (std::int64_t j = 0; j < n; ++j) c[j] += a * b[j];
        }
      }
    } else {
      // B stored transposed: C[i, j] is a dot product of two contiguous rows.
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          T s = 0;
          const T* b = B + j * ldb;
          if (!ta) {
            const T* a = A + i * lda;
            for (std::int64_t p = 0; p < k; ++p) s += a[p] * b[p];
          } else {
            for (std::int64_t p = 0; p < k; ++p) s += A[p * lda + i] * b[p];
          }
          C[i * n + j] += s;
        }
    }
    return;
  }
  // The packed op(B) (Note [Small gemm]): a buffer per thread that only grows, so a warm
  // training step allocates nothing.
  thread_local std::vector<T> packed;
#ifdef TAPEGRAD_AVX2
  const bool wide = use_avx2();
#else
  const bool wide = false;
#endif
  const std::size_t need = std::size_t(k * small_padded<T>(n, wide));
  if (packed.size() < need) packed.resize(need);
  small_gemm<T>(ta, tb, m, n, k, A, B, beta, C, packed.data(), wide);
}

// Every row of y (rows x cols) += b (cols): linear's bias. `__restrict` (the two never overlap:
// they are different nodes' buffers) lets GCC vectorize the inner loop without a runtime check.
template <class T>
void add_to_rows(T* __restrict y, const T* __restrict b, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) y[i * cols + j] += b[j];
}

// out (cols) += the sum of the rows of x (rows x cols): the bias's gradient.
template <class T>
void add_rows_into(T* __restrict out, const T* __restrict x, std::int64_t rows,
                   std::int64_t cols) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) out[j] += x[i * cols + j];
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
    if (i != axis) dims[r++] = s[i];
    else if (keepdims) dims[r++] = 1;
  }
  return Shape(std::span<const std::int64_t>(dims, std::size_t(r)));
}

}  // namespace

// ---- recording helpers ------------------------------------------------------------

namespace {

using Node = TensorTape::Impl::Node;

// The tape and checked node of an operand.
struct Operand {
  TensorTape* tape;
  NodeId id;
};

// t.tape() throws for an empty or stale handle (it names the "Tensor"), so t needs no second
// check naming the op; check_same names the op for the other operand.
Operand operand(const Tensor& t, std::string_view) { return {&t.tape(), t.id()}; }

}  // namespace

// Access for the free functions below, which record nodes.
struct Recorder {
  static TensorTape::Impl& impl(TensorTape& t) { return *t.impl_; }
  // Every op ends here: the place of anomaly mode's forward check (Note [Anomaly mode]).
  static Tensor make(TensorTape& t, NodeId id) {
    if (t.check_finite_) [[unlikely]] detail::check_tensor_forward(t, id);
    return Tensor(&t, id, t.generation());
  }
  static bool grad_for(TensorTape& t, std::initializer_list<NodeId> inputs) {
    if (!t.grad_enabled()) return false;
    for (NodeId i : inputs)
      if (t.needs_grad(i)) return true;
    return false;
  }
};

// b is live, on a's tape, and of a's dtype. Reads the nodes directly: the Tensor accessors are
// exported functions, which even this file calls through the PLT.
static void check_same(const Operand& a, const Tensor& b, std::string_view op) {
  a.tape->check(b, op);
  const auto& nodes = Recorder::impl(*a.tape).nodes;
  const DType da = nodes[a.id].dtype, db = nodes[b.id()].dtype;
  if (da != db)
    throw Error(fmt::format("{}: dtype mismatch: {} and {}", op, dtype_name(da), dtype_name(db)));
}

template <class F>
static Tensor filled(TensorTape& tape, const Shape& shape, const TensorOptions& options, F f) {
  Tensor t = tape.leaf(shape, options);
  void* data = Recorder::impl(tape).nodes[t.id()].data;
  with_dtype(options.dtype, [&](auto z) {
    using T = decltype(z);
    T* p = static_cast<T*>(data);
    for (std::int64_t i = 0, n = shape.numel(); i < n; ++i) p[i] = T(f(i));
  });
  return t;
}

// ---- elementwise: the op table's rules over arrays --------------------------------

template <class R>
static Tensor unary(Tensor a, double param = R::info.default_param) {
  const Operand x = operand(a, R::info.name);
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const DType dt = impl.nodes[x.id].dtype;
  const Shape shape = impl.nodes[x.id].shape;
  const NodeId id = impl.push(TOp::elementwise, dt, shape, Recorder::grad_for(tape, {x.id}), x.id,
                              0, R::info.op, param);
  with_dtype(dt, [&](auto z) {
    using T = decltype(z);
    const T* in = static_cast<const T*>(impl.nodes[x.id].data);
    T* out = static_cast<T*>(impl.nodes[id].data);
    const T p = T(param);
    for (std::int64_t i = 0, n = shape.numel(); i < n; ++i) out[i] = R::forward(in[i], T(0), p);
  });
  return Recorder::make(tape, id);
}

template <class R>
static Tensor binary(Tensor a, Tensor b, double param = 0) {
  const Operand x = operand(a, R::info.name);
  check_same(x, b, R::info.name);
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const DType dt = impl.nodes[x.id].dtype;
  const Shape sa = impl.nodes[x.id].shape, sb = impl.nodes[b.id()].shape;
  const Shape shape = sa == sb ? sa : broadcast_shapes(sa, sb, R::info.name);
  const NodeId id = impl.push(TOp::elementwise, dt, shape,
                              Recorder::grad_for(tape, {x.id, b.id()}), x.id, b.id(), R::info.op,
                              param);
  with_dtype(dt, [&](auto z) {
    using T = decltype(z);
    const T* pa = static_cast<const T*>(impl.nodes[x.id].data);
    const T* pb = static_cast<const T*>(impl.nodes[b.id()].data);
    T* out = static_cast<T*>(impl.nodes[id].data);
    const T p = T(param);
    for_each_broadcast(shape, sa, sb, [&](std::int64_t i, std::int64_t ia, std::int64_t ib) {
      out[i] = R::forward(pa[ia], pb[ib], p);
    });
  });
  return Recorder::make(tape, id);
}

// d(out)/d(a) and d(out)/d(b) of an elementwise node, accumulated through the
// broadcast walk (Note [Broadcasting]).
template <class R, class T>
static void elementwise_backward(Node& n, Node& a, Node* b) {
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
    TensorTape::Impl::zeroed(a);
    TensorTape::Impl::zeroed(*b);
    const T* pb = static_cast<const T*>(b->data);
    T* gb = static_cast<T*>(b->grad);
    for_each_broadcast(n.shape, a.shape, b->shape,
                       [&](std::int64_t i, std::int64_t ia, std::int64_t ib) {
                         const Local<T> l = R::local(pa[ia], pb[ib], y[i], p);
                         if (ga) ga[ia] += up[i] * l.da;
                         if (gb) gb[ib] += up[i] * l.db;
                       });
  }
}

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
      throw Error(fmt::format("apply: {} takes {} tensor operands, not 1", R::info.name,
                              R::info.arity));
  });
}

Tensor apply(Op op, Tensor a, Tensor b) {
  if (op == Op::prelu) return prelu(a, b);
  return dispatch(op, [&](auto rule) -> Tensor {
    using R = decltype(rule);
    if constexpr (R::info.arity == 2)
      return binary<R>(a, b);
    else
      throw Error(fmt::format("apply: {} takes {} tensor operands, not 2", R::info.name,
                              R::info.arity));
  });
}

Tensor prelu(Tensor a, Tensor alpha) {
  const Shape& sa = alpha.shape();
  const Shape& sx = a.shape();
  const bool one = sa.numel() == 1 && sa.rank() <= 1;
  const bool per_feature = sa.rank() == 1 && sx.rank() >= 1 && sa[0] == sx[sx.rank() - 1];
  if (!one && !per_feature)
    throw Error(fmt::format("prelu: alpha of shape {} fits neither one slope () nor one per "
                            "feature ({},) for input {}",
                            sa.str(), sx.rank() ? sx[sx.rank() - 1] : 1, sx.str()));
  return binary<rules::Prelu>(a, alpha);
}

// ---- matmul -----------------------------------------------------------------------
// C = A B; dA += dC B^T, dB += A^T dC (transposes passed to gemm as flags).

Tensor matmul(Tensor a, Tensor b) {
  const Operand x = operand(a, "matmul");
  check_same(x, b, "matmul");
  auto& impl = Recorder::impl(*x.tape);
  const Shape sa = impl.nodes[x.id].shape, sb = impl.nodes[b.id()].shape;
  const DType dt = impl.nodes[x.id].dtype;
  if (sa.rank() != 2 || sb.rank() != 2)
    throw Error(fmt::format("matmul: {} x {}: both operands must be 2-D", sa.str(), sb.str()));
  if (sa[1] != sb[0])
    throw Error(fmt::format("matmul: {} x {}: inner dimensions {} and {} differ", sa.str(),
                            sb.str(), sa[1], sb[0]));
  TensorTape& tape = *x.tape;
  const NodeId id = impl.push(TOp::matmul, dt, Shape{sa[0], sb[1]},
                              Recorder::grad_for(tape, {x.id, b.id()}), x.id, b.id());
  with_dtype(dt, [&](auto z) {
    using T = decltype(z);
    gemm<T>(false, false, sa[0], sb[1], sa[1], static_cast<const T*>(impl.nodes[x.id].data),
            static_cast<const T*>(impl.nodes[b.id()].data), T(0),
            static_cast<T*>(impl.nodes[id].data));
  });
  return Recorder::make(tape, id);
}

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
  if (sx.rank() != 2 || sw.rank() != 2)
    throw Error(fmt::format("linear: input {} and weight {} must both be 2-D", sx.str(), sw.str()));
  if (sx[1] != sw[1])
    throw Error(fmt::format("linear: input {} has {} features but weight {} expects {}", sx.str(),
                            sx[1], sw.str(), sw[1]));
  const bool has_bias = !bias.empty();
  if (has_bias) {
    check_same(op, bias, "linear");
    if (!(impl.nodes[bias.id()].shape == Shape{sw[0]}))
      throw Error(fmt::format("linear: bias {} does not match weight {}: expected ({},)",
                              bias.shape().str(), sw.str(), sw[0]));
  }
  TensorTape& tape = *op.tape;
  const bool grad = has_bias ? Recorder::grad_for(tape, {op.id, weight.id(), bias.id()})
                             : Recorder::grad_for(tape, {op.id, weight.id()});
  const NodeId id =
      impl.push(TOp::linear, dt, Shape{sx[0], sw[0]}, grad, op.id, weight.id());
  impl.nodes[id].in[2] = has_bias ? bias.id() : kNoInput;
  with_dtype(dt, [&](auto z) {
    using T = decltype(z);
    T* y = static_cast<T*>(impl.nodes[id].data);
    gemm<T>(false, true, sx[0], sw[0], sx[1], static_cast<const T*>(impl.nodes[op.id].data),
            static_cast<const T*>(impl.nodes[weight.id()].data), T(0), y);
    if (has_bias) add_to_rows(y, static_cast<const T*>(impl.nodes[bias.id()].data), sx[0], sw[0]);
  });
  return Recorder::make(tape, id);
}

// ---- shape ops ----------------------------------------------------------------------

// Swaps the last two axes: out[..., j, i] = a[..., i, j]. Backward swaps back.
Tensor transpose(Tensor a) {
  const Operand x = operand(a, "transpose");
  Shape shape = a.shape();
  if (shape.rank() < 2)
    throw Error(fmt::format("transpose: shape {} has fewer than 2 axes", shape.str()));
  const int r = shape.rank();
  std::swap(shape[r - 1], shape[r - 2]);
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id =
      impl.push(TOp::transpose, a.dtype(), shape, Recorder::grad_for(tape, {x.id}), x.id);
  const std::int64_t rows = shape[r - 1], cols = shape[r - 2], plane = rows * cols;
  const std::int64_t batch = plane != 0 ? shape.numel() / plane : 0;
  with_dtype(a.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* in = static_cast<const T*>(impl.nodes[x.id].data);
    T* out = static_cast<T*>(impl.nodes[id].data);
    for (std::int64_t g = 0; g < batch; ++g)
      for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t j = 0; j < cols; ++j)
          out[g * rows * cols + j * rows + i] = in[g * rows * cols + i * cols + j];
  });
  return Recorder::make(tape, id);
}

// The same elements under another shape. The output shares the input's data
// (no copy); it has a gradient of its own, added back to the input's.
Tensor reshape(Tensor a, const Shape& shape) {
  const Operand x = operand(a, "reshape");
  if (shape.numel() != a.numel())
    throw Error(fmt::format("reshape: cannot view shape {} ({} elements) as {} ({} elements)",
                            a.shape().str(), a.numel(), shape.str(), shape.numel()));
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const bool grad = Recorder::grad_for(tape, {x.id});
  const NodeId id = impl.push(TOp::reshape, a.dtype(), Shape{}, grad, x.id);
  // push allocated one element for shape (): the data pointer is replaced by the
  // input's, and the gradient needs the full size.
  Node& n = impl.nodes[id];
  n.shape = shape;
  n.data = impl.nodes[x.id].data;
  if (grad)  // not zeroed: Note [Lazy gradients]
    n.grad = impl.arena.allocate(std::size_t(shape.numel()) * dtype_size(n.dtype));
  return Recorder::make(tape, id);
}

Tensor reshape(Tensor a, std::initializer_list<std::int64_t> dims) {
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
      throw Error(fmt::format("reshape: cannot view shape {} ({} elements) with a -1 dimension "
                              "and the others multiplying to {}",
                              a.shape().str(), a.numel(), known));
    resolved[infer] = a.numel() / known;
  }
  return reshape(a, Shape(std::span<const std::int64_t>(resolved, dims.size())));
}

// ---- reductions -----------------------------------------------------------------------

// sum and mean over one axis (or all, with axis == kAll): out[o, i] = scale *
// sum_l a[o, l, i]; backward: da[o, l, i] += scale * dout[o, i].
static constexpr int kAll = kAllAxes;

static Tensor reduce_sum(Tensor a, int axis, bool keepdims, TOp op) {
  const std::string_view what = op == TOp::sum ? "sum" : "mean";
  const Operand x = operand(a, what);
  const Shape in = a.shape();
  int ax = kAll;
  Shape shape;
  if (axis != kAll) {
    ax = in.axis(axis, what);
    shape = reduced_shape(in, ax, keepdims);
  }
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id = impl.push(op, a.dtype(), shape, Recorder::grad_for(tape, {x.id}), x.id, 0,
                              Op::input, 0, ax);
  if (keepdims) impl.nodes[id].flags |= kKeepDims;
  const AxisSplit split = ax == kAll ? AxisSplit(Shape{1, in.numel(), 1}, 1) : AxisSplit(in, ax);
  const double scale = op == TOp::mean ? 1.0 / double(split.length ? split.length : 1) : 1.0;
  impl.nodes[id].param = scale;
  with_dtype(a.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(impl.nodes[x.id].data);
    T* out = static_cast<T*>(impl.nodes[id].data);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t i = 0; i < split.inner; ++i) {
        double s = 0;  // accumulate in double: float sums of many terms drift
        for (std::int64_t l = 0; l < split.length; ++l)
          s += double(src[(o * split.length + l) * split.inner + i]);
        out[o * split.inner + i] = T(s * scale);
      }
  });
  return Recorder::make(tape, id);
}

Tensor sum(Tensor a) { return reduce_sum(a, kAll, false, TOp::sum); }
Tensor sum(Tensor a, int axis, bool keepdims) { return reduce_sum(a, axis, keepdims, TOp::sum); }
Tensor mean(Tensor a) { return reduce_sum(a, kAll, false, TOp::mean); }
Tensor mean(Tensor a, int axis, bool keepdims) {
  return reduce_sum(a, axis, keepdims, TOp::mean);
}

// out[o, i] = max_l a[o, l, i]; the index of the (first) maximum is kept, and
// backward sends the whole gradient there.
Tensor amax(Tensor a, int axis, bool keepdims) {
  const Operand x = operand(a, "amax");
  const Shape in = a.shape();
  const int ax = in.axis(axis, "amax");
  if (in[ax] == 0) throw Error(fmt::format("amax: axis {} of shape {} is empty", axis, in.str()));
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const Shape shape = reduced_shape(in, ax, keepdims);
  const NodeId id = impl.push(TOp::amax, a.dtype(), shape, Recorder::grad_for(tape, {x.id}), x.id,
                              0, Op::input, 0, ax);
  const AxisSplit split(in, ax);
  auto* arg = static_cast<std::int32_t*>(
      impl.arena.allocate(std::size_t(shape.numel()) * sizeof(std::int32_t)));
  impl.nodes[id].aux = arg;
  if (keepdims) impl.nodes[id].flags |= kKeepDims;
  with_dtype(a.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(impl.nodes[x.id].data);
    T* out = static_cast<T*>(impl.nodes[id].data);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t i = 0; i < split.inner; ++i) {
        std::int64_t best = 0;
        T m = src[o * split.length * split.inner + i];
        for (std::int64_t l = 1; l < split.length; ++l) {
          const T v = src[(o * split.length + l) * split.inner + i];
          if (v > m || (std::isnan(v) && !std::isnan(m))) m = v, best = l;
        }
        out[o * split.inner + i] = m;
        arg[o * split.inner + i] = std::int32_t(best);
      }
  });
  return Recorder::make(tape, id);
}

// ---- softmax ------------------------------------------------------------------------
// log_softmax(a) = a - m - log sum exp(a - m), m the max along the axis (stable).
// backward: da = dy - softmax * sum(dy). softmax: y = exp(a - m) / sum;
// backward: da = y * (dy - sum(dy * y)).

static Tensor softmax_op(Tensor a, int axis, TOp op) {
  const std::string_view what = op == TOp::softmax ? "softmax" : "log_softmax";
  const Operand x = operand(a, what);
  const Shape in = a.shape();
  const int ax = in.axis(axis, what);
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id =
      impl.push(op, a.dtype(), in, Recorder::grad_for(tape, {x.id}), x.id, 0, Op::input, 0, ax);
  const AxisSplit split(in, ax);
  with_dtype(a.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(impl.nodes[x.id].data);
    T* out = static_cast<T*>(impl.nodes[id].data);
    for (std::int64_t o = 0; o < split.outer; ++o)
      for (std::int64_t i = 0; i < split.inner; ++i) {
        auto at = [&](std::int64_t l) { return (o * split.length + l) * split.inner + i; };
        T m = -std::numeric_limits<T>::infinity();
        for (std::int64_t l = 0; l < split.length; ++l) m = std::max(m, src[at(l)]);
        if (!std::isfinite(m)) m = 0;  // all -inf (or inf): let the arithmetic say so
        double s = 0;
        for (std::int64_t l = 0; l < split.length; ++l) s += std::exp(double(src[at(l)] - m));
        if (op == TOp::log_softmax) {
          const T log_s = T(std::log(s));
          for (std::int64_t l = 0; l < split.length; ++l) out[at(l)] = src[at(l)] - m - log_s;
        } else {
          for (std::int64_t l = 0; l < split.length; ++l)
            out[at(l)] = T(std::exp(double(src[at(l)] - m)) / s);
        }
      }
  });
  return Recorder::make(tape, id);
}

Tensor log_softmax(Tensor a, int axis) { return softmax_op(a, axis, TOp::log_softmax); }
Tensor softmax(Tensor a, int axis) { return softmax_op(a, axis, TOp::softmax); }

// ---- pick ---------------------------------------------------------------------------
// out[i] = a[i, index[i]]; backward: da[i, index[i]] += dout[i].

Tensor pick(Tensor a, std::span<const std::int32_t> index) {
  const Operand x = operand(a, "pick");
  const Shape in = a.shape();
  if (in.rank() != 2)
    throw Error(fmt::format("pick: the scores must be 2-D (rows, classes), not {}", in.str()));
  if (std::int64_t(index.size()) != in[0])
    throw Error(fmt::format("pick: {} class indices for {} rows (shape {})", index.size(), in[0],
                            in.str()));
  for (std::size_t i = 0; i < index.size(); ++i)
    if (index[i] < 0 || index[i] >= in[1])
      throw Error(fmt::format("pick: class index {} in row {} is out of range for {} classes",
                              index[i], i, in[1]));
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id =
      impl.push(TOp::pick, a.dtype(), Shape{in[0]}, Recorder::grad_for(tape, {x.id}), x.id);
  auto* idx = static_cast<std::int32_t*>(impl.arena.allocate(index.size() * sizeof(std::int32_t)));
  std::copy(index.begin(), index.end(), idx);
  impl.nodes[id].aux = idx;
  with_dtype(a.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(impl.nodes[x.id].data);
    T* out = static_cast<T*>(impl.nodes[id].data);
    for (std::int64_t i = 0; i < in[0]; ++i) out[i] = src[i * in[1] + idx[i]];
  });
  return Recorder::make(tape, id);
}

Tensor detach(Tensor a) {
  const Operand x = operand(a, "detach");
  TensorTape& tape = *x.tape;
  auto& impl = Recorder::impl(tape);
  const NodeId id = impl.push(TOp::constant, a.dtype(), Shape{}, false);
  impl.nodes[id].shape = a.shape();
  impl.nodes[id].data = impl.nodes[x.id].data;  // shares the elements: no copy
  return Recorder::make(tape, id);
}

// ---- backward: one node's vector-Jacobian products --------------------------------------

template <class T>
static void backward_node(TensorTape::Impl& impl, Node& n) {
  if (is_leaf(n.op)) return;
  Node& a = impl.nodes[n.in[0]];
  const T* up = static_cast<const T*>(n.grad);
  T* ga = static_cast<T*>(a.grad);
  // Note [Lazy gradients]: the products assign an input's gradient that nothing wrote yet (beta
  // 0); every other kernel below accumulates, so its input's gradient is cleared first.
  const auto beta = [](Node& in) { return TensorTape::Impl::first_write(in) ? T(0) : T(1); };
  if (n.op != TOp::elementwise && n.op != TOp::matmul && n.op != TOp::linear)
    TensorTape::Impl::zeroed(a);
  switch (n.op) {
    case TOp::input:
    case TOp::parameter:
    case TOp::constant: return;
    case TOp::elementwise: {
      Node* b = op_info(n.elem).arity == 2 ? &impl.nodes[n.in[1]] : nullptr;
      dispatch(n.elem, [&](auto rule) {
        using R = decltype(rule);
        if constexpr (R::info.arity > 0) elementwise_backward<R, T>(n, a, b);
      });
      return;
    }
    case TOp::matmul: {
      Node& b = impl.nodes[n.in[1]];
      const std::int64_t m = a.shape[0], k = a.shape[1], cols = b.shape[1];
      if (ga) gemm<T>(false, true, m, k, cols, up, static_cast<const T*>(b.data), beta(a), ga);
      if (b.grad)  // after a's: in x @ x, a and b are one node, and the second call adds
        gemm<T>(true, false, k, cols, m, static_cast<const T*>(a.data), up, beta(b),
                static_cast<T*>(b.grad));
      return;
    }
    case TOp::linear: {
      Node& w = impl.nodes[n.in[1]];
      const std::int64_t rows = n.shape[0], outs = n.shape[1], ins = a.shape[1];
      if (ga)
        gemm<T>(false, false, rows, ins, outs, up, static_cast<const T*>(w.data), beta(a), ga);
      if (w.grad)
        gemm<T>(true, false, outs, ins, rows, up, static_cast<const T*>(a.data), beta(w),
                static_cast<T*>(w.grad));
      if (n.in[2] != kNoInput) {
        Node& bias = impl.nodes[n.in[2]];
        TensorTape::Impl::zeroed(bias);
        if (T* gb = static_cast<T*>(bias.grad)) add_rows_into(gb, up, rows, outs);
      }
      return;
    }
    case TOp::transpose: {
      const int r = n.shape.rank();
      const std::int64_t rows = n.shape[r - 1], cols = n.shape[r - 2];
      const std::int64_t plane = rows * cols, batch = plane != 0 ? n.shape.numel() / plane : 0;
      for (std::int64_t g = 0; g < batch; ++g)
        for (std::int64_t i = 0; i < rows; ++i)
          for (std::int64_t j = 0; j < cols; ++j)
            ga[g * rows * cols + i * cols + j] += up[g * rows * cols + j * rows + i];
      return;
    }
    case TOp::reshape:
      for (std::int64_t i = 0, e = n.shape.numel(); i < e; ++i) ga[i] += up[i];
      return;
    case TOp::sum:
    case TOp::mean: {
      const AxisSplit split =
          n.axis == kAll ? AxisSplit(Shape{1, a.shape.numel(), 1}, 1) : AxisSplit(a.shape, n.axis);
      const T scale = T(n.param);
      for (std::int64_t o = 0; o < split.outer; ++o)
        for (std::int64_t l = 0; l < split.length; ++l)
          for (std::int64_t i = 0; i < split.inner; ++i)
            ga[(o * split.length + l) * split.inner + i] += scale * up[o * split.inner + i];
      return;
    }
    case TOp::amax: {
      const AxisSplit split(a.shape, n.axis);
      const auto* arg = static_cast<const std::int32_t*>(n.aux);
      for (std::int64_t o = 0; o < split.outer; ++o)
        for (std::int64_t i = 0; i < split.inner; ++i)
          ga[(o * split.length + arg[o * split.inner + i]) * split.inner + i] +=
              up[o * split.inner + i];
      return;
    }
    case TOp::log_softmax:
    case TOp::softmax: {
      const AxisSplit split(a.shape, n.axis);
      const T* y = static_cast<const T*>(n.data);
      for (std::int64_t o = 0; o < split.outer; ++o)
        for (std::int64_t i = 0; i < split.inner; ++i) {
          auto at = [&](std::int64_t l) { return (o * split.length + l) * split.inner + i; };
          double s = 0;
          if (n.op == TOp::log_softmax) {
            for (std::int64_t l = 0; l < split.length; ++l) s += double(up[at(l)]);
            for (std::int64_t l = 0; l < split.length; ++l)
              ga[at(l)] += up[at(l)] - T(std::exp(double(y[at(l)])) * s);
          } else {
            for (std::int64_t l = 0; l < split.length; ++l) s += double(up[at(l)] * y[at(l)]);
            for (std::int64_t l = 0; l < split.length; ++l)
              ga[at(l)] += y[at(l)] * (up[at(l)] - T(s));
          }
        }
      return;
    }
    case TOp::pick: {
      const auto* idx = static_cast<const std::int32_t*>(n.aux);
      const std::int64_t classes = a.shape[1];
      for (std::int64_t i = 0, rows = n.shape[0]; i < rows; ++i) ga[i * classes + idx[i]] += up[i];
      return;
    }
  }
}

// ---- the stepper ------------------------------------------------------------------------

TensorStepper::TensorStepper(TensorTape& tape, Tensor output, bool detailed,
                             std::span<const double> seed)
    : tape_(&tape), generation_(tape.generation()), cursor_(0), detailed_(detailed) {
  tape.check(output, "backward");
  auto& impl = *tape.impl_;
  const Shape& shape = impl.nodes[output.id()].shape;
  const double one = 1.0;
  if (seed.empty()) {
    if (shape.numel() != 1)
      throw Error(fmt::format("backward: the output has shape {}; backward needs a "
                              "single-element output, or a seed gradient of that shape",
                              shape.str()));
    seed = std::span<const double>(&one, 1);
  }
  check_length(shape, seed.size(), "backward: the seed gradient");
  // Note [Gradient semantics] (tape.hpp): intermediate gradients restart from
  // zero; inputs and parameters keep what they accumulated. A fresh recording is
  // already in that state (Impl::dirty): a training step skips this sweep.
  if (impl.dirty) {
    for (Node& n : impl.nodes) {
      n.flags &= static_cast<std::uint8_t>(~kReached);
      if (!is_leaf(n.op)) n.flags &= static_cast<std::uint8_t>(~kGradValid);  // Note [Lazy gradients]
    }
  }
  impl.dirty = true;
  Node& out = impl.nodes[output.id()];
  if (out.flags & kNeedsGrad) {
    out.flags |= kReached;
    TensorTape::Impl::zeroed(out);
    with_dtype(out.dtype, [&](auto z) {
      using T = decltype(z);
      T* g = static_cast<T*>(out.grad);
      for (std::size_t i = 0; i < seed.size(); ++i) g[i] += T(seed[i]);  // d out / d out
    });
  }
  cursor_ = output.id() + 1;
  step_.tape = &tape;
  step_.output = output.id();
}

bool TensorStepper::next() {
  if (tape_->generation() != generation_)
    throw Error("TensorStepper: the tape was reset during backward");
  auto& impl = *tape_->impl_;
  while (cursor_ > 0) {
    const NodeId id = --cursor_;
    Node& n = impl.nodes[id];
    if ((n.flags & (kNeedsGrad | kReached)) != (kNeedsGrad | kReached) || is_leaf(n.op)) continue;
    const int arity = arity_of(n);
    step_.node = id;
    step_.arity = arity;
    step_.upstream_norm = detailed_ ? tape_->grad_norm(id) : std::nan("");
    // A detailed step keeps each input's gradient from before, to measure
    // the contribution as the difference.
    std::size_t offsets[kMaxInputs] = {};
    if (detailed_) {
      impl.scratch.clear();
      for (int k = 0; k < arity; ++k) {
        offsets[k] = impl.scratch.size();
        for (std::int64_t i = 0, e = impl.nodes[n.in[k]].shape.numel(); i < e; ++i)
          impl.scratch.push_back(tape_->grad(n.in[k], i));
      }
    }
    for (int k = 0; k < arity; ++k) {
      Node& in = impl.nodes[n.in[k]];
      TensorInputStep& s = step_.inputs[k];
      s.id = n.in[k];
      s.needs_grad = in.flags & kNeedsGrad;
      s.accumulated = in.flags & kReached;
    }
    with_dtype(n.dtype, [&](auto z) { backward_node<decltype(z)>(impl, n); });
    for (int k = 0; k < arity; ++k) {
      Node& in = impl.nodes[n.in[k]];
      TensorInputStep& s = step_.inputs[k];
      if (s.needs_grad) in.flags |= kReached;
      s.contribution_norm = std::nan("");
      s.grad_norm = std::nan("");
      if (detailed_) {
        double sq = 0;
        for (std::int64_t i = 0, e = in.shape.numel(); i < e; ++i) {
          const double d = tape_->grad(n.in[k], i) - impl.scratch[offsets[k] + std::size_t(i)];
          sq += d * d;
        }
        s.contribution_norm = std::sqrt(sq);
        s.grad_norm = tape_->grad_norm(n.in[k]);
      }
    }
    step_.index = taken_++;
    if (tape_->check_finite_) [[unlikely]] detail::check_tensor_backward(*tape_, id);
    return true;
  }
  return false;
}

void TensorTape::backward(Tensor output) { backward(output, {}); }

void TensorTape::backward(Tensor output, std::span<const double> seed) {
  TensorStepper(*this, output, false, seed).run();
}

// The steps of next() until done, minus the TensorStep records nobody reads in backward().
void TensorStepper::run() {
  if (tape_->generation() != generation_)
    throw Error("TensorStepper: the tape was reset during backward");
  auto& impl = *tape_->impl_;
  for (NodeId id = cursor_; id-- > 0;) {
    Node& n = impl.nodes[id];
    if ((n.flags & (kNeedsGrad | kReached)) != (kNeedsGrad | kReached) || is_leaf(n.op)) continue;
    with_dtype(n.dtype, [&](auto z) { backward_node<decltype(z)>(impl, n); });
    for (int k = 0, arity = arity_of(n); k < arity; ++k) {
      Node& in = impl.nodes[n.in[k]];
      if (in.flags & kNeedsGrad) in.flags |= kReached;
    }
    ++taken_;
    if (tape_->check_finite_) [[unlikely]] detail::check_tensor_backward(*tape_, id);
  }
  cursor_ = 0;
}

}  // namespace ag
