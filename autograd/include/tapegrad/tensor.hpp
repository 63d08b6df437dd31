// Tensors on a tape: n-d float32/float64 arrays recorded op by op, with the
// scalar tape's op table, gradient semantics and step-through backward.

#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tapegrad/error.hpp"
#include "tapegrad/ops.hpp"
#include "tapegrad/shape.hpp"
#include "tapegrad/tape.hpp"

namespace ag {

class TensorTape;

// What a tensor node computes. Elementwise nodes also name their op-table row
// (ops.hpp), so scalars and tensors share every elementwise rule.
enum class TOp : std::uint8_t {
  input,        // a leaf that gets a gradient (data owned by the tape)
  parameter,    // a leaf whose data and gradient live outside the tape (nn::Parameter)
  constant,     // a leaf without gradient
  elementwise,  // one row of the op table, with NumPy broadcasting for binary rows
  matmul,
  linear,  // x W^T + b in one node, W stored (out, in) as in PyTorch
  transpose,
  reshape,
  sum,
  mean,
  amax,  // max over an axis
  log_softmax,
  softmax,
  pick,  // one entry per row, by class index (cross-entropy's gather)
  // ---- reductions by comparison, and selection ----
  amin,    // min over all elements or an axis
  argmax,  // index of the first maximum: a constant, no gradient
  where,   // where(cond, a, b): a where cond is nonzero, else b
  // ---- shape ops: joining, slicing and indexing along an axis ----
  cat,           // any number of inputs, joined along an existing axis
  stack,         // any number of inputs of one shape, joined along a new axis
  slice,         // start:stop:step along an axis
  index_select,  // whole slices along an axis, by index
  gather,        // one element along an axis per index element, as torch.gather
};
inline constexpr TOp kLastTOp = TOp::gather;  // loops over every TOp stop here
std::string_view top_name(TOp op);            // "matmul"; "elementwise" (the rule has its own name)

// Leaves hold given data and end backward (Note [Gradient semantics]); every other TOp is an op
// with inputs. The op table (autograd/src/tensor_ops.hpp) checks its entries agree.
constexpr bool is_leaf(TOp op) {
  return op == TOp::input || op == TOp::parameter || op == TOp::constant;
}

// The most inputs a tensor node keeps in its record (linear: x, W, b; where: cond, a, b); an op
// with more (cat, stack) keeps them in the tape's arena (Note [Many inputs], tensor_storage.hpp).
inline constexpr int kMaxInputs = 3;

// TensorTape::axis of a reduction over all elements.
inline constexpr int kAllAxes = std::numeric_limits<int>::min();

struct TensorOptions {
  DType dtype = DType::f32;
  bool requires_grad = false;  // true makes the tensor an input that gets a gradient
  std::string_view name = {};
};

// A cheap handle to one node of a TensorTape (tape, node id, generation), like
// ag::Value for the scalar tape: using it after the tape's reset() throws.
class Tensor {
 public:
  Tensor() = default;

  // By value, as TensorTape::shape: Note [Shapes are returned by value].
  Shape shape() const;
  DType dtype() const;
  std::int64_t numel() const { return shape().numel(); }
  int rank() const { return shape().rank(); }
  bool requires_grad() const;  // gets a gradient in backward

  // The elements, row-major. T must match the dtype (an ag::Error says so if not).
  template <class T> std::span<const T> data() const;
  // The gradient after backward; all zeros before. Empty when !requires_grad().
  template <class T> std::span<const T> grad() const;
  double item() const;                    // the single element of a 1-element tensor
  double value(std::int64_t flat) const;  // one element, as double
  double grad_at(std::int64_t flat) const;
  std::vector<double> values() const;  // every element, as double (allocates)
  std::vector<double> grads() const;

  std::string_view name() const;
  Tensor named(std::string_view name) const;  // names the node; returns *this
  NodeId id() const { return id_; }
  TensorTape& tape() const;  // throws if empty or its tape was reset. Inline: every op calls it
  bool valid() const;
  bool empty() const { return tape_ == nullptr; }  // default-constructed: refers to nothing

 private:
  friend class TensorTape;
  friend struct Recorder;
  Tensor(TensorTape* tape, NodeId id, std::uint32_t generation)
      : tape_(tape), id_(id), generation_(generation) {}
  TensorTape* tape_ = nullptr;
  NodeId id_ = 0;
  std::uint32_t generation_ = 0;
};

// One backward step on a tensor tape. A tensor op's local gradient is a
// Jacobian, so a step reports sizes: the norm of the upstream gradient, of
// each contribution (the vector-Jacobian product for that input) and of each
// input's accumulated gradient after it.
struct TensorInputStep {
  NodeId id;
  double contribution_norm;  // ||upstream · d(node)/d(input)||, NaN when not computed
  double grad_norm;          // ||d(output)/d(input)|| after this step
  bool accumulated;          // the input had a contribution earlier in this pass (a fork)
  bool needs_grad;
};
struct TensorStep {
  const TensorTape* tape;
  NodeId output;
  NodeId node;
  double upstream_norm;
  int arity;
  std::vector<TensorInputStep> inputs;  // `arity` of them: any number (cat of many)
  std::size_t index;
};

// Note [The Stepper is backward] (tape.hpp) holds here too: TensorTape::backward
// runs a TensorStepper to the end. A stepper made for teaching (detailed = true)
// also measures each contribution, which costs a copy of the input's gradient.
class TensorStepper {
 public:
  // Seeds d(output)/d(output) with `seed` (of the output's shape), or with 1
  // when it is empty and the output has a single element.
  TensorStepper(TensorTape& tape, Tensor output, bool detailed = true,
                std::span<const double> seed = {});
  bool next();
  const TensorStep& step() const { return step_; }
  bool done() const { return cursor_ == 0; }

 private:
  friend class TensorTape;
  void run();  // the remaining steps in one loop, without filling step_: TensorTape::backward

  TensorTape* tape_;
  std::uint32_t generation_;
  NodeId cursor_;
  std::size_t taken_ = 0;
  bool detailed_;
  TensorStep step_{};
  std::vector<std::size_t> offsets_;  // where each input's gradient before the step is in scratch
};

// Note [Tensor storage]
// ~~~~~~~~~~~~~~~~~~~~~
// Node records live in one vector, as on the scalar tape (Note [Tape
// storage]); element data, gradients and index buffers live in an arena of
// large blocks that never move, so a node's data pointer stays valid while the
// tape grows. reset() rewinds the arena and keeps its blocks: once a training
// step has run, recording the same step again allocates nothing. Parameters
// are not copied in: their node points at the caller's data and gradient.
class TensorTape {
 public:
  TensorTape();
  ~TensorTape();
  TensorTape(const TensorTape&) = delete;
  TensorTape& operator=(const TensorTape&) = delete;

  // Leaves. `data` is copied; its length must equal the shape's element count.
  template <class T>
  Tensor input(const Shape& shape, std::span<const T> data, std::string_view name = {});
  Tensor input(const Shape& shape, std::initializer_list<double> data, std::string_view name = {},
               DType dtype = DType::f64);
  template <class T> Tensor constant(const Shape& shape, std::span<const T> data);
  // A leaf over external storage (not copied); backward adds into `grad`.
  template <class T>
  Tensor parameter(const Shape& shape, T* data, T* grad, std::string_view name = {});
  // A new zero-filled leaf: an input when options.requires_grad, else a constant.
  Tensor leaf(const Shape& shape, const TensorOptions& options);

  // Backward from a single-element output (d output / d output = 1), or with
  // an explicit seed gradient of the output's shape.
  void backward(Tensor output);
  void backward(Tensor output, std::span<const double> seed);
  TensorStepper stepper(Tensor output, std::span<const double> seed = {}) {
    return TensorStepper(*this, output, true, seed);
  }

  // d(output)/d(wrt[k]) into out[k] for a single-element output, as torch.autograd.grad (Note
  // [Tensor gradients on the tape], tensor_tape.cpp): with create_graph, nodes recorded on this
  // tape that can be differentiated again; without, constants holding the numbers. The nodes'
  // .grad are left alone. Every op on the way needs its recorded backward (every entry has one;
  // an ag::Error would name one that had none: backward() needs none).
  void grad(Tensor output, std::span<const Tensor> wrt, std::span<Tensor> out,
            GradOptions options = {});
  std::vector<Tensor> grad(Tensor output, std::span<const Tensor> wrt, GradOptions options = {});
  std::vector<Tensor> grad(Tensor output, std::initializer_list<Tensor> wrt,
                           GradOptions options = {}) {
    return grad(output, std::span<const Tensor>(wrt.begin(), wrt.size()), options);
  }

  void zero_grad();
  void reset();  // forgets every node, keeps memory; old Tensors become invalid
  std::size_t size() const;
  std::uint32_t generation() const { return generation_; }

  // While false, new nodes get no gradient (see ag::NoGrad).
  bool grad_enabled() const { return grad_enabled_; }
  void set_grad_enabled(bool on) { grad_enabled_ = on; }

  // Anomaly mode (Note [Anomaly mode], anomaly.hpp): while on, the first non-finite forward
  // value or gradient throws ag::AnomalyError naming the op, its module path and the elements.
  // The tape only tests the flag; the checks are anomaly.cpp's free functions over the tape.
  bool check_finite() const { return check_finite_; }
  void set_check_finite(bool on) { check_finite_ = on; }

  // Read access by node id, for the stepper, graphs and formatting.
  TOp op(NodeId id) const;
  Op elementwise_op(NodeId id) const;  // the op-table row of an elementwise node
  // Note [Shapes are returned by value]
  // ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
  // A node's shape lives in the tape's node records, which move when recording grows the tape.
  // A reference to it would dangle as soon as the next op is recorded: zeros(tape, t.shape())
  // or reshape(x, y.shape()) read freed memory. A Shape is a small fixed array (Note in
  // shape.hpp), so it is returned by value, which no recording can invalidate.
  Shape shape(NodeId id) const;
  DType dtype(NodeId id) const;
  int arity(NodeId id) const;
  NodeId input_of(NodeId id, int k) const;
  bool needs_grad(NodeId id) const;
  bool reached(NodeId id) const;
  double param(NodeId id) const;
  int axis(NodeId id) const;
  std::string_view name(NodeId id) const;
  // The name; else the number of a 1-element constant; else "t<id>".
  std::string label(NodeId id) const;
  void set_name(NodeId id, std::string_view name);
  Tensor handle(NodeId id);
  double value(NodeId id, std::int64_t flat) const;
  double grad(NodeId id, std::int64_t flat) const;  // 0 when the node has no gradient
  double grad_norm(NodeId id) const;
  // Every element (or gradient element: none when the node has no gradient) of node id, for
  // code that watches the tape from outside (anomaly mode). T must match the dtype.
  template <class T> std::span<const T> elements(NodeId id) const;
  template <class T> std::span<const T> gradients(NodeId id) const;

  // Throws unless `t` is a live handle of this tape.
  void check(const Tensor& t, std::string_view what) const;
  // The throwing halves of check() and Tensor::tape(), out of line so the hot halves inline.
  [[noreturn, gnu::cold]] void check_failed(const Tensor& t, std::string_view what) const;
  [[noreturn, gnu::cold]] static void tensor_failed(const Tensor& t);

  // Note [Scopes]
  // ~~~~~~~~~~~~~
  // Nodes recorded while a Scope is alive belong to it: nn::Module's call
  // operator opens one named by the module's path ("layers.0"), so a graph can
  // draw one cluster per module. Scopes nest; scope 0 is "outside any".
  class Scope {
   public:
    Scope(TensorTape& tape, std::string_view name);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    TensorTape& tape_;
    std::uint16_t previous_;
  };
  std::uint16_t scope(NodeId id) const;
  std::size_t scope_count() const;
  std::string_view scope_name(std::uint16_t scope) const;
  std::uint16_t scope_parent(std::uint16_t scope) const;

  struct Impl;  // node records and arena: autograd/src/tensor_storage.hpp

 private:
  friend class Tensor;
  friend class TensorStepper;
  friend struct Impl;
  friend struct Recorder;
  std::unique_ptr<Impl> impl_;
  std::uint32_t generation_ = 0;
  bool grad_enabled_ = true;
  bool check_finite_ = false;
};

// Runs a block without recording gradients: results are constants, as under
// PyTorch's torch.no_grad().
class NoGrad {
 public:
  explicit NoGrad(TensorTape& tape) : tape_(tape), was_(tape.grad_enabled()) {
    tape.set_grad_enabled(false);
  }
  ~NoGrad() { tape_.set_grad_enabled(was_); }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  TensorTape& tape_;
  bool was_;
};

// The Hessian of a single-element `loss` with respect to `params`, times the vectors `v` (one
// per parameter, of its shape), by double backward: d/dp <d loss/dp, v>, never by finite
// differences. The products come back as constants, one per parameter; the leaves' gradients
// are left as they were (Note [The second backward of a Hessian-vector product]).
std::vector<Tensor> hessian_vector_product(Tensor loss, std::span<const Tensor> params,
                                           std::span<const Tensor> v);

// ---- inline definitions: the checks every op makes --------------------------

inline bool Tensor::valid() const { return tape_ != nullptr && tape_->generation_ == generation_; }

inline TensorTape& Tensor::tape() const {
  if (!valid()) [[unlikely]]
    TensorTape::tensor_failed(*this);
  return *tape_;
}

inline void TensorTape::check(const Tensor& t, std::string_view what) const {
  if (t.tape_ != this || t.generation_ != generation_) [[unlikely]]
    check_failed(t, what);
}

// ---- creation ---------------------------------------------------------------
Tensor zeros(TensorTape& tape, const Shape& shape, const TensorOptions& options = {});
Tensor ones(TensorTape& tape, const Shape& shape, const TensorOptions& options = {});
Tensor full(TensorTape& tape, const Shape& shape, double value, const TensorOptions& options = {});
// start, start + step, ... below stop, as a 1-D tensor.
Tensor arange(TensorTape& tape, double start, double stop, double step = 1,
              const TensorOptions& options = {});
// Seeded with a portable generator (random.hpp): the same numbers on every machine.
Tensor uniform(TensorTape& tape, const Shape& shape, double low, double high, std::uint64_t seed,
               const TensorOptions& options = {});
Tensor normal(TensorTape& tape, const Shape& shape, double mean, double stddev, std::uint64_t seed,
              const TensorOptions& options = {});

// ---- elementwise ops, broadcasting as NumPy ---------------------------------
Tensor operator+(Tensor a, Tensor b);
Tensor operator-(Tensor a, Tensor b);
Tensor operator*(Tensor a, Tensor b);
Tensor operator/(Tensor a, Tensor b);
Tensor operator+(Tensor a, double b);
Tensor operator-(Tensor a, double b);
Tensor operator*(Tensor a, double b);
Tensor operator/(Tensor a, double b);
Tensor operator+(double a, Tensor b);
Tensor operator-(double a, Tensor b);
Tensor operator*(double a, Tensor b);
Tensor operator/(double a, Tensor b);
Tensor operator-(Tensor a);
Tensor pow(Tensor a, double p);
Tensor pow(Tensor a, Tensor b);
Tensor exp(Tensor a);
Tensor log(Tensor a);
Tensor sqrt(Tensor a);
Tensor abs(Tensor a);
Tensor sigmoid(Tensor a);
Tensor tanh(Tensor a);
Tensor relu(Tensor a);
Tensor softplus(Tensor a);
Tensor gelu(Tensor a);
Tensor gelu_tanh(Tensor a);  // gelu(x, approximate='tanh') in PyTorch's spelling
Tensor silu(Tensor a);
Tensor normal_cdf(Tensor a);  // Φ(x), the standard normal CDF (GELU's derivative records it)
Tensor leaky_relu(Tensor a, double alpha = 0.01);
Tensor elu(Tensor a, double alpha = 1.0);
// alpha of shape () for one learnable slope, or (F,) for one per feature (last axis).
Tensor prelu(Tensor a, Tensor alpha);
Tensor max(Tensor a, Tensor b);  // elementwise (maxout); a tie splits the gradient
Tensor max(Tensor a, double b);
Tensor min(Tensor a, Tensor b);  // elementwise; a tie splits the gradient
Tensor min(Tensor a, double b);
// clamp(x, lo, hi) = clamp_max(clamp_min(x, lo), hi), torch.clamp's value and gradient.
Tensor clamp_min(Tensor a, double lo);
Tensor clamp_max(Tensor a, double hi);
Tensor clamp(Tensor a, double lo, double hi);
// Binary cross-entropy per element, -(y log p + (1 - y) log(1 - p)), with
// PyTorch's clamps, so a saturated p gives a finite gradient (ops.hpp's Bce).
Tensor bce(Tensor p, Tensor y);

// Any row of the op table by its code, for code that iterates over the table
// (the named functions above record the same nodes). Throws for a leaf op or
// the wrong number of operands.
Tensor apply(Op op, Tensor a);  // unary rows, with the row's default parameter
Tensor apply(Op op, Tensor a, double param);
Tensor apply(Op op, Tensor a, Tensor b);  // binary rows

// ---- linear algebra, shape and reductions -----------------------------------
// (m, k) x (k, n) -> (m, n), through BLAS when large; batched as torch.matmul:
// (B, m, k) x (B, k, n) -> (B, m, n) one product per batch, (B, m, k) x (k, n) -> (B, m, n).
Tensor matmul(Tensor a, Tensor b);
// x (n, in) or (..., in), weight (out, in), bias (out,) or an empty Tensor: x W^T + b, as
// torch.nn.functional.linear (leading axes of x are rows), in one node.
Tensor linear(Tensor x, Tensor weight, Tensor bias = {});
Tensor transpose(Tensor a);  // swaps the last two axes
// Swaps any two axes (negative counts from the end), as torch.transpose.
Tensor transpose(Tensor a, int dim0, int dim1);
// One rule for every form: one dimension may be -1, inferred from the element count (a Shape
// holds no negative dimension, so its form has nothing to infer; dims() of a Shape and any
// std::vector of dimensions go through the span form).
Tensor reshape(Tensor a, std::initializer_list<std::int64_t> dims);
Tensor reshape(Tensor a, std::span<const std::int64_t> dims);
Tensor reshape(Tensor a, const Shape& shape);
Tensor sum(Tensor a);  // over all elements: shape ()
Tensor sum(Tensor a, int axis, bool keepdims = false);
Tensor mean(Tensor a);
Tensor mean(Tensor a, int axis, bool keepdims = false);
// Note [Ties in amax and amin] (tensor_ops.cpp): amax(a, axis) sends the gradient to the first
// maximum (torch.max(a, dim)'s rule); amax(a), amin(a) and amin(a, axis) split it evenly among
// the tied elements, as torch.amax and torch.amin do. A NaN in a slice is its result.
Tensor amax(Tensor a, int axis, bool keepdims = false);
Tensor amax(Tensor a);  // over all elements: shape ()
Tensor amin(Tensor a);
Tensor amin(Tensor a, int axis, bool keepdims = false);
// The index of the first maximum (a NaN counts as the maximum, as in torch.argmax), as a value of
// a's dtype in a constant: nothing flows back. Over all elements: the flat row-major index.
Tensor argmax(Tensor a);
Tensor argmax(Tensor a, int axis, bool keepdims = false);
// a where cond is nonzero (NaN included), else b; all three broadcast as NumPy. cond gets no
// gradient; a and b get the upstream gradient where they were chosen, summed to their shapes.
Tensor where(Tensor cond, Tensor a, Tensor b);
Tensor log_softmax(Tensor a, int axis = -1);
Tensor softmax(Tensor a, int axis = -1);
// out[i] = a[i, index[i]] for a of shape (n, c): picks one class score per row.
Tensor pick(Tensor a, std::span<const std::int32_t> index);
// The same data, as a constant: no gradient flows back through it.
Tensor detach(Tensor a);

// ---- shape ops: joining, slicing and indexing along an axis -------------------
// Joins any number of tensors (of one dtype, on one tape) along an existing axis; their shapes
// agree off the axis. As torch.cat.
Tensor cat(std::span<const Tensor> tensors, int axis = 0);
Tensor cat(std::initializer_list<Tensor> tensors, int axis = 0);
// Joins tensors of one shape along a new axis, in [-(rank + 1), rank]. As torch.stack.
Tensor stack(std::span<const Tensor> tensors, int axis = 0);
Tensor stack(std::initializer_list<Tensor> tensors, int axis = 0);
// a[..., start:stop:step] along `axis`, with Python's rules: negative start and stop count from
// the end, both are clamped to the axis, step > 0; an empty range gives a length of 0.
Tensor slice(Tensor a, int axis, std::int64_t start, std::int64_t stop, std::int64_t step = 1);
// The slices a[..., index[j], ...] along `axis`, as torch.index_select; an index may repeat
// (its gradients add up).
Tensor index_select(Tensor a, int axis, std::span<const std::int64_t> index);
// out[p] = a[p with axis replaced by index[p]], the index of shape `index_shape` (a's rank, no
// longer than a off the axis): torch.gather. Backward scatter-adds, repeated indices accumulate.
Tensor gather(Tensor a, int axis, std::span<const std::int64_t> index, const Shape& index_shape);

}  // namespace ag
