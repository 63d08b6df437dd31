// The tensor tape: handles, creation of leaves, read access to the node records, scopes, and
// the stepper that runs backward through the op table (Note [The tensor op table]).

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "tapegrad/anomaly.hpp"
#include "tapegrad/format.hpp"
#include "tapegrad/random.hpp"
#include "tapegrad/tensor.hpp"
#include "tensor_ops.hpp"
#include "tensor_storage.hpp"

namespace ag {

// ---- handles ------------------------------------------------------------------

TensorTape::TensorTape() : impl_(std::make_unique<Impl>()) {}
TensorTape::~TensorTape() = default;

void TensorTape::check_failed(const Tensor& t, std::string_view what) const {
  if (t.tape_ == nullptr)
    throw Error(std::string(what) + ": an empty Tensor (default-constructed)");
  if (t.tape_ != this) throw Error(std::string(what) + ": the operands belong to different tapes");
  throw Error(std::string(what) +
              ": this Tensor was recorded before its tape was reset; record it again");
}

void TensorTape::tensor_failed(const Tensor& t) {
  if (t.tape_ == nullptr) throw Error("an empty Tensor (default-constructed) was used");
  t.tape_->check_failed(t, "Tensor");
}

Shape Tensor::shape() const { return tape().shape(id_); }
DType Tensor::dtype() const { return tape().dtype(id_); }
bool Tensor::requires_grad() const { return tape().needs_grad(id_); }
std::string_view Tensor::name() const { return tape().name(id_); }
Tensor Tensor::named(std::string_view name) const {
  tape().set_name(id_, name);
  return *this;
}

template <class T> std::span<const T> Tensor::data() const {
  TensorTape& t = tape();
  auto& n = t.impl_->nodes[id_];
  if (n.dtype != dtype_of<T>())
    fail("Tensor::data<{}>: the tensor holds {}", dtype_name(dtype_of<T>()), dtype_name(n.dtype));
  return {static_cast<const T*>(n.data), std::size_t(n.shape.numel())};
}

template <class T> std::span<const T> Tensor::grad() const {
  TensorTape& t = tape();
  auto& n = t.impl_->nodes[id_];
  if (n.dtype != dtype_of<T>())
    fail("Tensor::grad<{}>: the tensor holds {}", dtype_name(dtype_of<T>()), dtype_name(n.dtype));
  if (n.grad == nullptr) return {};
  TensorTape::Impl::zeroed(n);
  return {static_cast<const T*>(n.grad), std::size_t(n.shape.numel())};
}

template <class T> std::span<const T> TensorTape::elements(NodeId id) const {
  const auto& n = impl_->nodes[id];
  if (n.dtype != dtype_of<T>())
    fail("TensorTape::elements<{}>: node {} holds {}", dtype_name(dtype_of<T>()), id,
         dtype_name(n.dtype));
  return {static_cast<const T*>(n.data), std::size_t(n.shape.numel())};
}

template <class T> std::span<const T> TensorTape::gradients(NodeId id) const {
  auto& n = impl_->nodes[id];
  if (n.dtype != dtype_of<T>())
    fail("TensorTape::gradients<{}>: node {} holds {}", dtype_name(dtype_of<T>()), id,
         dtype_name(n.dtype));
  if (n.grad == nullptr) return {};
  Impl::zeroed(n);  // Note [Lazy gradients]
  return {static_cast<const T*>(n.grad), std::size_t(n.shape.numel())};
}

template std::span<const float> TensorTape::elements<float>(NodeId) const;
template std::span<const double> TensorTape::elements<double>(NodeId) const;
template std::span<const float> TensorTape::gradients<float>(NodeId) const;
template std::span<const double> TensorTape::gradients<double>(NodeId) const;
template std::span<const float> Tensor::data<float>() const;
template std::span<const double> Tensor::data<double>() const;
template std::span<const float> Tensor::grad<float>() const;
template std::span<const double> Tensor::grad<double>() const;

double Tensor::item() const {
  if (numel() != 1) fail("item: the tensor has shape {}, not a single element", shape());
  return value(0);
}
double Tensor::value(std::int64_t flat) const { return tape().value(id_, flat); }
double Tensor::grad_at(std::int64_t flat) const { return tape().grad(id_, flat); }

// One dtype dispatch per tensor, not a checked value(i) per element: the playground's snapshot
// reads every hidden unit's map this way, 60 times a second (playground/README.md).
std::vector<double> Tensor::values() const {
  return with_dtype(dtype(), [&](auto t) {
    const auto elements = data<decltype(t)>();
    return std::vector<double>(elements.begin(), elements.end());
  });
}
std::vector<double> Tensor::grads() const {
  return with_dtype(dtype(), [&](auto t) {
    const auto elements = grad<decltype(t)>();  // empty: no gradient yet, every element 0
    std::vector<double> v(elements.begin(), elements.end());
    v.resize(static_cast<std::size_t>(numel()));
    return v;
  });
}

// ---- tape accessors -----------------------------------------------------------

std::size_t TensorTape::size() const { return impl_->nodes.size(); }
TOp TensorTape::op(NodeId id) const { return impl_->nodes[id].op; }
Op TensorTape::elementwise_op(NodeId id) const { return impl_->nodes[id].elem; }
Shape TensorTape::shape(NodeId id) const { return impl_->nodes[id].shape; }
DType TensorTape::dtype(NodeId id) const { return impl_->nodes[id].dtype; }
NodeId TensorTape::input_of(NodeId id, int k) const { return input_id(impl_->nodes[id], k); }
bool TensorTape::needs_grad(NodeId id) const { return impl_->nodes[id].flags & kNeedsGrad; }
bool TensorTape::reached(NodeId id) const { return impl_->nodes[id].flags & kReached; }
double TensorTape::param(NodeId id) const { return impl_->nodes[id].param; }
int TensorTape::axis(NodeId id) const { return impl_->nodes[id].axis; }

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
    fail("a node name of {} characters is too long", name.size());
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
    fail("a scope name of {} characters is too long", name.size());
  impl.scopes.push_back({static_cast<std::uint32_t>(impl.names.size()),
                         static_cast<std::uint16_t>(name.size()), previous_});
  impl.names.append(name);
  impl.current_scope = static_cast<std::uint16_t>(impl.scopes.size() - 1);
}

TensorTape::Scope::~Scope() { tape_.impl_->current_scope = previous_; }

Tensor TensorTape::handle(NodeId id) {
  if (id >= impl_->nodes.size()) fail("node {} does not exist: the tape has {} nodes", id, size());
  return Tensor(this, id, generation_);
}

double TensorTape::value(NodeId id, std::int64_t flat) const {
  auto& n = impl_->nodes[id];
  if (flat < 0 || flat >= n.shape.numel())
    fail("element {} is out of range for shape {}", flat, n.shape);
  return with_dtype(n.dtype, [&](auto t) -> double { return Impl::data<decltype(t)>(n)[flat]; });
}

double TensorTape::grad(NodeId id, std::int64_t flat) const {
  auto& n = impl_->nodes[id];
  if (flat < 0 || flat >= n.shape.numel())
    fail("element {} is out of range for shape {}", flat, n.shape);
  if (n.grad == nullptr) return 0.0;
  Impl::zeroed(n);
  return with_dtype(n.dtype, [&](auto t) -> double { return Impl::grad<decltype(t)>(n)[flat]; });
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

// Note [Tensor gradients on the tape]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Note [Gradients on the tape] (tape.hpp), for tensors: grad(y, x, {.create_graph = true}) walks
// the tape in reverse from y, and at each node that has a gradient asks its entry's
// backward_graph (Note [The tensor op table]) for each input's vector-Jacobian product, written
// with the tape's own ops: elementwise rows through their local_graph (ops.hpp), broadcast
// gradients summed back with sum nodes, products through matmul and transpose, selections as
// gathers (Note [Selections differentiate as gathers], tensor_ops.cpp). A fork's
// contributions are added with an add node. The seed is a constant one of y's shape (y has one
// element, as backward() without a seed asks). Without create_graph the same pass runs under
// NoGrad, so what it records is constants: the numbers, as torch.autograd.grad returns them.
// backward() is not this pass and needs no recorded forms; an entry that declares NoGraphForm
// stops this one with an ag::Error naming the op. As in PyTorch, the gradients have the dtype
// of what they differentiate, and d(y)/d(x) for an x that y does not reach is zeros.
void TensorTape::grad(Tensor output, std::span<const Tensor> wrt, std::span<Tensor> out,
                      GradOptions options) {
  check(output, "grad");
  for (const Tensor& x : wrt) check(x, "grad");
  if (wrt.size() != out.size())
    fail("grad: {} tensors to differentiate with respect to, but room for {} results", wrt.size(),
         out.size());
  if (output.numel() != 1)
    fail("grad: the output has shape {}, not a single element; reduce it first (sum, mean)",
         output.shape());
  std::optional<NoGrad> numbers_only;
  if (!options.create_graph) numbers_only.emplace(*this);
  Impl& impl = *impl_;
  const NodeId top = output.id();
  impl.gradient_of.assign(std::size_t(top) + 1, kNoInput);
  // Shapes are copied before anything records: recording moves the node records.
  if (needs_grad(top)) {
    const Shape seed_shape = shape(top);
    impl.gradient_of[top] = ones(*this, seed_shape, {.dtype = dtype(top)}).id();
  }
  for (NodeId i = top + 1; i-- > 0;) {
    const NodeId upstream = impl.gradient_of[i];
    if (upstream == kNoInput || is_leaf(impl.nodes[i].op)) continue;
    dispatch(impl.nodes[i].op, [&](auto entry) {
      using E = decltype(entry);
      if constexpr (LacksRecordedBackward<E>) {
        fail(
            "grad: {} (node {}) has no recorded backward yet, so it cannot be differentiated "
            "with create_graph; backward() differentiates it once",
            E::info.name, i);
      } else {
        const int arity = E::arity(impl.nodes[i]);
        std::array<Tensor, kMaxInputs> few{};
        std::vector<Tensor> many;  // cat and stack of more tensors (Note [Many inputs])
        if (arity > kMaxInputs) many.resize(std::size_t(arity));
        const std::span<Tensor> contributions =
            arity > kMaxInputs ? std::span<Tensor>(many)
                               : std::span<Tensor>(few.data(), std::size_t(arity));
        E::backward_graph(*this, i, Tensor(this, upstream, generation_), contributions);
        for (int k = 0; k < arity; ++k) {
          if (contributions[k].empty()) continue;  // the input needs no gradient
          NodeId& sum = impl.gradient_of[input_id(impl.nodes[i], k)];
          sum = sum == kNoInput ? contributions[k].id()
                                : (Tensor(this, sum, generation_) + contributions[k]).id();
        }
      }
    });
  }
  for (std::size_t k = 0; k < wrt.size(); ++k) {
    const NodeId id = wrt[k].id();
    const NodeId g = id <= top ? impl.gradient_of[id] : kNoInput;
    if (g != kNoInput) {
      out[k] = Tensor(this, g, generation_);
    } else {
      const Shape zero_shape = wrt[k].shape();
      out[k] = zeros(*this, zero_shape, {.dtype = wrt[k].dtype()});
    }
  }
}

std::vector<Tensor> TensorTape::grad(Tensor output, std::span<const Tensor> wrt,
                                     GradOptions options) {
  std::vector<Tensor> out(wrt.size());
  grad(output, wrt, out, options);
  return out;
}

namespace {

// Note [The second backward of a Hessian-vector product]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// d<g, v>/dp needs numbers only, so it is a plain backward pass (the Stepper's kernels: a
// product's gradients by gemm with transposed operands) rather than grad() without create_graph,
// which runs each entry's recorded form under NoGrad: a transpose copied and a node pushed per
// product. On the moons MLP that pass was most of the product's cost (bench/README.md). Plain
// backward accumulates into the leaves' .grad, which grad() promises to leave alone (as
// torch.autograd.grad does), so every leaf gradient is saved and zeroed before and restored
// after; the intermediate nodes' gradients are this pass's, as after any backward. Two leaves
// sharing one gradient buffer (a Parameter put on the tape twice) would mix their gradients in
// it: there the recorded pass runs, which tells them apart.
std::vector<Tensor> numbers_by_backward(Tensor output, std::span<const Tensor> wrt) {
  TensorTape& tape = output.tape();
  auto& impl = Recorder::impl(tape);
  std::vector<Node*> leaves;
  for (NodeId id = 0; id <= output.id(); ++id) {
    Node& n = impl.nodes[id];
    if (is_leaf(n.op) && n.grad != nullptr) leaves.push_back(&n);
  }
  std::vector<const void*> buffers;
  for (const Node* n : leaves) buffers.push_back(n->grad);
  std::sort(buffers.begin(), buffers.end());
  if (std::adjacent_find(buffers.begin(), buffers.end()) != buffers.end())
    return tape.grad(output, wrt);

  std::vector<std::byte> saved;
  for (Node* n : leaves) {
    const std::size_t bytes = std::size_t(n->shape.numel()) * dtype_size(n->dtype);
    const auto* grad = static_cast<const std::byte*>(n->grad);
    saved.insert(saved.end(), grad, grad + bytes);
    std::memset(n->grad, 0, bytes);
  }
  tape.backward(output);
  std::vector<Tensor> out;
  for (const Tensor& x : wrt) {
    const Shape shape = x.shape();
    out.push_back(with_dtype(x.dtype(), [&](auto z) {
      using T = decltype(z);
      const std::span<const T> g = x.grad<T>();
      if (g.empty()) return zeros(tape, shape, {.dtype = dtype_of<T>()});
      return tape.constant<T>(shape, g);
    }));
  }
  // The records move as the constants above are pushed: the leaves are found again by id.
  std::size_t offset = 0;
  for (NodeId id = 0; id <= output.id(); ++id) {
    Node& n = impl.nodes[id];
    if (!is_leaf(n.op) || n.grad == nullptr) continue;
    const std::size_t bytes = std::size_t(n.shape.numel()) * dtype_size(n.dtype);
    std::memcpy(n.grad, saved.data() + offset, bytes);
    offset += bytes;
  }
  return out;
}

}  // namespace

std::vector<Tensor> hessian_vector_product(Tensor loss, std::span<const Tensor> params,
                                           std::span<const Tensor> v) {
  if (params.size() != v.size())
    fail("hessian_vector_product: {} parameters but {} vectors", params.size(), v.size());
  for (std::size_t k = 0; k < params.size(); ++k)
    if (params[k].shape() != v[k].shape())
      fail("hessian_vector_product: vector {} has shape {}, its parameter {}", k, v[k].shape(),
           params[k].shape());
  TensorTape& tape = loss.tape();
  const std::vector<Tensor> gradient = tape.grad(loss, params, {.create_graph = true});
  Tensor inner;  // <d loss/dp, v>, summed over the parameters
  for (std::size_t k = 0; k < params.size(); ++k) {
    const Tensor term = sum(gradient[k] * v[k]);
    inner = k == 0 ? term : inner + term;
  }
  return numbers_by_backward(inner, params);
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

void check_length(const Shape& shape, std::size_t length, std::string_view what) {
  if (std::int64_t(length) != shape.numel())
    fail("{}: {} values given for shape {}, which holds {}", what, length, shape, shape.numel());
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

template <class T> Tensor TensorTape::constant(const Shape& shape, std::span<const T> data) {
  check_length(shape, data.size(), "constant");
  const NodeId id = impl_->push(TOp::constant, dtype_of<T>(), shape, false);
  std::copy(data.begin(), data.end(), Impl::data<T>(impl_->nodes[id]));
  return Tensor(this, id, generation_);
}

template <class T>
Tensor TensorTape::parameter(const Shape& shape, T* data, T* grad, std::string_view name) {
  if (data == nullptr || grad == nullptr)
    throw Error("parameter: the data and gradient pointers must not be null");
  // Written in place, as Impl::push writes its records (`shape` is the caller's, never a
  // record's: Tensor::shape returns a copy).
  Impl::Node& n = impl_->nodes.emplace_back();
  n.data = data;
  n.grad = grad_enabled_ ? grad : nullptr;
  n.shape = shape;
  n.op = TOp::parameter;
  n.dtype = dtype_of<T>();
  n.flags = grad_enabled_ ? kNeedsGrad | kGradValid : 0;
  n.scope = impl_->current_scope;
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
    fail("arange({}, {}, {}): the step must be non-zero and all finite", start, stop, step);
  const double count = std::ceil((stop - start) / step);
  const std::int64_t n = count > 0 ? std::int64_t(count) : 0;
  return filled(tape, Shape{n}, options, [&](std::int64_t i) { return start + double(i) * step; });
}
Tensor uniform(TensorTape& tape, const Shape& shape, double low, double high, std::uint64_t seed,
               const TensorOptions& options) {
  Rng rng(seed);
  return filled(tape, shape, options, [&](std::int64_t) { return rng.uniform(low, high); });
}
Tensor normal(TensorTape& tape, const Shape& shape, double mean, double stddev, std::uint64_t seed,
              const TensorOptions& options) {
  Rng rng(seed);
  return filled(tape, shape, options, [&](std::int64_t) { return rng.normal(mean, stddev); });
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
      throw Error(
          fmt::format("backward: the output has shape {}; backward needs a "
                      "single-element output, or a seed gradient of that shape",
                      shape));
    seed = std::span<const double>(&one, 1);
  }
  check_length(shape, seed.size(), "backward: the seed gradient");
  // Note [Gradient semantics] (tape.hpp): intermediate gradients restart from
  // zero; inputs and parameters keep what they accumulated. A fresh recording is
  // already in that state (Impl::dirty): a training step skips this sweep.
  if (impl.dirty) {
    for (Node& n : impl.nodes) {
      n.flags &= static_cast<std::uint8_t>(~kReached);
      if (!is_leaf(n.op))
        n.flags &= static_cast<std::uint8_t>(~kGradValid);  // Note [Lazy gradients]
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
    // Any number of inputs (Note [Many inputs]): the vectors keep their capacity across steps.
    step_.inputs.resize(std::size_t(arity));
    offsets_.resize(std::size_t(arity));
    if (detailed_) {
      impl.scratch.clear();
      for (int k = 0; k < arity; ++k) {
        offsets_[std::size_t(k)] = impl.scratch.size();
        const NodeId in = input_id(n, k);
        for (std::int64_t i = 0, e = impl.nodes[in].shape.numel(); i < e; ++i)
          impl.scratch.push_back(tape_->grad(in, i));
      }
    }
    for (int k = 0; k < arity; ++k) {
      Node& in = impl.nodes[input_id(n, k)];
      TensorInputStep& s = step_.inputs[std::size_t(k)];
      s.id = input_id(n, k);
      s.needs_grad = in.flags & kNeedsGrad;
      s.accumulated = in.flags & kReached;
    }
    dispatch(n.op, [&](auto entry) { decltype(entry)::backward(impl, n); });
    for (int k = 0; k < arity; ++k) {
      Node& in = impl.nodes[input_id(n, k)];
      TensorInputStep& s = step_.inputs[std::size_t(k)];
      if (s.needs_grad) in.flags |= kReached;
      s.contribution_norm = std::nan("");
      s.grad_norm = std::nan("");
      if (detailed_) {
        double sq = 0;
        for (std::int64_t i = 0, e = in.shape.numel(); i < e; ++i) {
          const double d =
              tape_->grad(s.id, i) - impl.scratch[offsets_[std::size_t(k)] + std::size_t(i)];
          sq += d * d;
        }
        s.contribution_norm = std::sqrt(sq);
        s.grad_norm = tape_->grad_norm(s.id);
      }
    }
    step_.index = taken_++;
    if (tape_->check_finite_) [[unlikely]]
      detail::check_tensor_backward(*tape_, id);
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
    dispatch(n.op, [&](auto entry) { decltype(entry)::backward(impl, n); });
    for (int k = 0, arity = arity_of(n); k < arity; ++k) {
      Node& in = impl.nodes[input_id(n, k)];
      if (in.flags & kNeedsGrad) in.flags |= kReached;
    }
    ++taken_;
    if (tape_->check_finite_) [[unlikely]]
      detail::check_tensor_backward(*tape_, id);
  }
  cursor_ = 0;
}

}  // namespace ag
