// nn::Parameter, nn::Buffer and nn::Module: persistent weights that outlive tapes, untrained
// state (running statistics), and the modules that own them, with PyTorch's dotted names.

#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tapegrad/tensor.hpp"

namespace nn {

// A trainable float32 tensor and its gradient. It lives outside any tape: a
// forward pass puts it on the tape as a leaf that points at this storage (no
// copy), and backward accumulates into grad(). Optimizers update data().
class Parameter {
 public:
  explicit Parameter(ag::Shape shape);
  Parameter(const Parameter&) = delete;  // tapes and optimizers hold its address
  Parameter& operator=(const Parameter&) = delete;

  const ag::Shape& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::span<float> data() { return data_; }
  std::span<const float> data() const { return data_; }
  std::span<float> grad() { return grad_; }
  std::span<const float> grad() const { return grad_; }

  // This parameter as a leaf of `tape`, labelled `name` in graphs and steps.
  ag::Tensor on(ag::TensorTape& tape, std::string_view name = {});
  void zero_grad();
  double grad_norm() const;

 private:
  ag::Shape shape_;
  std::vector<float> data_, grad_;
};

// Note [Buffers]
// ~~~~~~~~~~~~~~
// A buffer is a module's state that is not trained: BatchNorm1d's running mean and variance and
// its count of batches seen. It has no gradient and no optimizer sees it, but it is the model:
// checkpoints save and load it beside the parameters under the name torch's state_dict gives it
// ("layers.1.running_mean"), in torch's dtype (float32, or int64 for a count), so a checkpoint
// still loads into the equivalent torch.nn model with load_state_dict(strict=True).
class Buffer {
 public:
  enum class Kind { f32, i64 };
  // Zeros of `shape`.
  Buffer(ag::Shape shape, Kind kind);
  Buffer(const Buffer&) = delete;  // modules hold its address
  Buffer& operator=(const Buffer&) = delete;

  const ag::Shape& shape() const { return shape_; }
  Kind kind() const { return kind_; }
  std::span<float> data() { return floats_; }  // empty for an i64 buffer
  std::span<const float> data() const { return floats_; }
  std::span<std::int64_t> integers() { return integers_; }  // empty for an f32 buffer
  std::span<const std::int64_t> integers() const { return integers_; }
  // The elements as safetensors stores them: "F32" or "I64", little-endian bytes.
  std::string_view dtype_name() const { return kind_ == Kind::f32 ? "F32" : "I64"; }
  std::span<const std::byte> bytes() const;
  std::span<std::byte> writable_bytes();

 private:
  ag::Shape shape_;
  Kind kind_;
  std::vector<float> floats_;
  std::vector<std::int64_t> integers_;
};

// The base of every layer. A Module owns its Parameters and its child modules;
// parameters() and named_parameters() walk the tree in registration order,
// naming each parameter by its path ("layers.0.weight"), as PyTorch does, so
// checkpoints load into the equivalent torch.nn module.
class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;  // parameters are referred to by address
  Module& operator=(const Module&) = delete;
  // Moving keeps every address: parameters and children live on the heap, so references a
  // derived module holds to them (Linear::weight) still point at what the new object owns.
  // Sequential::push_back(nn::Linear(2, 16)) relies on it.
  Module(Module&&) = default;
  virtual ~Module() = default;

  // Records the module on x's tape (a Tensor knows its tape, so no tape is passed).
  virtual ag::Tensor forward(ag::Tensor x) = 0;
  // `net(x)`, as in PyTorch: forward(), with the nodes it records in a scope named by path()
  // (Note [Scopes]).
  ag::Tensor operator()(ag::Tensor x) {
    if (path_.empty()) return forward(x);
    ag::TensorTape::Scope scope(x.tape(), path_);
    return forward(x);
  }
  // How the module prints: "Linear(in=2, out=5, bias=true)".
  virtual std::string describe() const = 0;

  std::vector<Parameter*> parameters();
  std::vector<std::pair<std::string, Parameter*>> named_parameters();
  // Every buffer of the tree (Note [Buffers]), named as named_parameters() names parameters.
  std::vector<std::pair<std::string, Buffer*>> named_buffers();
  std::int64_t parameter_count();
  // A reference, not a copy: Sequential::forward walks it on every call, and a warm training
  // step allocates nothing.
  const std::vector<std::pair<std::string, Module*>>& children() const { return children_; }
  void zero_grad();

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // The module's path from the root ("layers.0"); "" for the root. Labels the
  // nodes it records, so a graph can draw one cluster per module.
  const std::string& path() const { return path_; }

 protected:
  Parameter& register_parameter(std::string name, ag::Shape shape);
  Buffer& register_buffer(std::string name, ag::Shape shape, Buffer::Kind kind = Buffer::Kind::f32);
  template <class M> M& register_module(std::string name, std::unique_ptr<M> module) {
    M& ref = *module;
    adopt(std::move(name), std::move(module));
    return ref;
  }
  // "path.name": the label of this module's parameter `name`.
  std::string label(std::string_view name) const;

 private:
  void adopt(std::string name, std::unique_ptr<Module> module);
  void set_path(const std::string& path);
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Parameter*>>& out);
  void collect(std::vector<Parameter*>& out);
  void collect_buffers(const std::string& prefix,
                       std::vector<std::pair<std::string, Buffer*>>& out);

  std::vector<std::pair<std::string, std::unique_ptr<Parameter>>> params_;
  std::vector<std::pair<std::string, std::unique_ptr<Buffer>>> buffers_;
  std::vector<std::unique_ptr<Module>> owned_;
  std::vector<std::pair<std::string, Module*>> children_;
  std::string path_;
  bool training_ = true;
};

}  // namespace nn
