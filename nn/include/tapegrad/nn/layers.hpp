// The layers: Linear and its options, the activation modules (one per activation row of the
// op table), Maxout, Sequential and MLP. Shapes and parameter names follow torch.nn.

#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tapegrad/nn/module.hpp"
#include "tapegrad/ops.hpp"

namespace nn {

// The options of a Linear layer, in the manner of torch::nn::LinearOptions:
// Linear(LinearOptions(784, 128).bias(false).seed(7)). Each setter returns the options, so
// they chain; a getter of the same name reads one.
class LinearOptions {
 public:
  LinearOptions(std::int64_t in_features, std::int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  LinearOptions& bias(bool with_bias) {
    bias_ = with_bias;
    return *this;
  }
  // The seed of the initial weights (and, mixed, of the bias).
  LinearOptions& seed(std::uint64_t seed) {
    seed_ = seed;
    return *this;
  }
  std::int64_t in_features() const { return in_features_; }
  std::int64_t out_features() const { return out_features_; }
  bool bias() const { return bias_; }
  std::uint64_t seed() const { return seed_; }

 private:
  std::int64_t in_features_, out_features_;
  bool bias_ = true;
  std::uint64_t seed_ = 0;
};

// y = x W^T + b with W of shape (out, in) and b of shape (out,), as
// torch.nn.Linear; initialised as PyTorch does, U(-1/sqrt(in), 1/sqrt(in)),
// from the options' seed. Everything but the sizes is an option: a bool or a
// seed given as a third argument (Linear(2, 16, 42)) does not compile, rather
// than silently turning into bias = true and seed 0.
class Linear : public Module {
 public:
  Linear(std::int64_t in, std::int64_t out) : Linear(LinearOptions(in, out)) {}
  explicit Linear(const LinearOptions& options);
  ag::Tensor forward(ag::Tensor x) override;
  std::string describe() const override;

  Parameter& weight;
  Parameter* bias;  // null without a bias
  std::int64_t in_features, out_features;

 private:
  // "path.weight" and "path.bias", built when the path changes rather than on every forward.
  std::string labelled_path_, weight_label_, bias_label_;
  bool labelled_ = false;
};

// Note [Activations from the op table]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// An activation is a row of the op table (ops.hpp) that the table marks as one
// (OpInfo::activation), applied elementwise: with the row's fixed parameter if it
// has one (leaky_relu's alpha), and prelu, whose second operand is a learned
// Parameter (the PReLU module). Nothing in nn lists them: a row marked in the
// table is at once a module (Elementwise), a name for parse_activation (and the
// CLI's --act), a choice for MLP, and a unit of the scalar expansion (scalar.hpp).
constexpr bool is_activation(ag::Op op) { return ag::op_info(op).activation; }

// One row of the op table with one operand, applied elementwise with its fixed
// parameter (Note [Activations from the op table]). It prints as PyTorch names
// the module: "ReLU()", "LeakyReLU(alpha=0.01)".
class Elementwise : public Module {
 public:
  // With the row's default parameter (leaky_relu: 0.01); throws ag::Error for a row with two
  // operands or a leaf.
  explicit Elementwise(ag::Op op) : Elementwise(op, ag::op_info(op).default_param) {}
  Elementwise(ag::Op op, double param);
  ag::Tensor forward(ag::Tensor x) override { return ag::apply(op_, x, param_); }
  std::string describe() const override;
  ag::Op op() const { return op_; }
  double param() const { return param_; }  // the row's default for a row without one

 private:
  ag::Op op_;
  double param_;
};

// The activations of the notes under the names users write, as in torch.nn.
class Sigmoid : public Elementwise {
 public:
  Sigmoid() : Elementwise(ag::Op::sigmoid) {}
};
class Tanh : public Elementwise {
 public:
  Tanh() : Elementwise(ag::Op::tanh) {}
};
class ReLU : public Elementwise {
 public:
  ReLU() : Elementwise(ag::Op::relu) {}
};
class LeakyReLU : public Elementwise {
 public:
  explicit LeakyReLU(double alpha = ag::op_info(ag::Op::leaky_relu).default_param)
      : Elementwise(ag::Op::leaky_relu, alpha) {}
  double alpha() const { return param(); }
};
class ELU : public Elementwise {
 public:
  explicit ELU(double alpha = ag::op_info(ag::Op::elu).default_param)
      : Elementwise(ag::Op::elu, alpha) {}
  double alpha() const { return param(); }
};
// PReLU: the negative slope is a learned parameter, one shared (features = 1)
// or one per feature; "weight" of shape (features,), initialised to `init`.
class PReLU : public Module {
 public:
  explicit PReLU(std::int64_t features = 1, double init = 0.25);
  ag::Tensor forward(ag::Tensor x) override;
  std::string describe() const override;
  Parameter& weight;
};
// Maxout (Goodfellow et al.): `pieces` linear units per output, keeping the
// largest: y_j = max_k (x W_jk^T + b_jk). A Linear(in, out * pieces) named
// "linear" holds the weights.
class Maxout : public Module {
 public:
  Maxout(std::int64_t in, std::int64_t out, std::int64_t pieces, std::uint64_t seed = 0);
  ag::Tensor forward(ag::Tensor x) override;
  std::string describe() const override;
  Linear& linear;
  std::int64_t out_features, pieces;
};

// Modules applied in order; the children are named "0", "1", ... as in
// torch.nn.Sequential. push_back takes any module: a concrete one by value
// (moved into the Sequential, which owns it) or a unique_ptr.
class Sequential : public Module {
 public:
  Sequential() = default;
  template <class M>
  requires std::derived_from<M, Module> M& push_back(std::unique_ptr<M> module) {
    if (module == nullptr) throw ag::Error("Sequential::push_back: a null module");
    ++size_;
    return register_module(std::to_string(size_ - 1), std::move(module));
  }
  // Modules are not copyable (parameters are referred to by address), so by value means a
  // temporary: seq.push_back(nn::Linear(2, 16)). The module is moved to the heap through its
  // move constructor, which a concrete module class gets when its members allow it.
  template <class M>
  requires std::derived_from<std::remove_cvref_t<M>, Module> &&
      (!std::is_lvalue_reference_v<M>)std::remove_cvref_t<M>& push_back(M&& module) {
    return push_back(std::make_unique<std::remove_cvref_t<M>>(std::move(module)));
  }
  ag::Tensor forward(ag::Tensor x) override;
  std::string describe() const override;
  std::size_t size() const { return size_; }
  Module& operator[](std::size_t i) const;

 private:
  std::size_t size_ = 0;
};

// Which activation follows a layer: a row of the op table that can act as one
// (Note [Activations from the op table]), or none. It converts from the row,
// so MLP({2, 16, 1}, ag::Op::relu) reads as it should.
struct Activation {
  static const Activation none;
  constexpr Activation() = default;
  constexpr Activation(ag::Op row) : op(row) {}  // implicit on purpose: the row is the choice
  bool operator==(const Activation&) const = default;
  std::optional<ag::Op> op;  // empty: none, the identity
};
inline constexpr Activation Activation::none{};

// "relu", "leaky_relu", ... or "none"; throws ag::Error listing every known name.
Activation parse_activation(std::string_view name);
std::string_view activation_name(Activation a);
// Every name parse_activation knows, "none" first, then the table's order: "none, ..., relu, ...".
std::string activation_names();
// The module of `a` after a layer of `features` units (PReLU learns one slope per unit); null
// for none. Throws ag::Error for a row of the table that is not an activation.
std::unique_ptr<Module> make_activation(Activation a, std::int64_t features);

// What an MLP puts around each hidden activation besides its Linear layers (norm.hpp's layers).
struct MLPExtras {
  enum class Norm { none, layer, batch };
  Norm norm = Norm::none;  // a LayerNorm or BatchNorm1d after each hidden Linear, before its act
  double dropout = 0;      // a Dropout(p) after each hidden activation when p > 0
};
// "none", "layer", "batch"; throws ag::Error listing them.
MLPExtras::Norm parse_norm(std::string_view name);

// A multi-layer perceptron: Linear layers of the given sizes with
// `hidden` after each but the last and `output` after the last, held in a
// Sequential named "layers" (so parameters are "layers.0.weight", ...). With extras, each hidden
// layer is Linear, norm, activation, Dropout, as torch users write it, and numbered so.
class MLP : public Module {
 public:
  MLP(std::vector<std::int64_t> sizes, Activation hidden, Activation output = Activation::none,
      std::uint64_t seed = 0, const MLPExtras& extras = {});
  ag::Tensor forward(ag::Tensor x) override { return layers(x); }
  std::string describe() const override;
  // The Linear layers, in order.
  std::vector<Linear*> linears() const { return linears_; }

  Sequential& layers;
  std::vector<std::int64_t> sizes;
  MLPExtras extras;

 private:
  std::vector<Linear*> linears_;
};

}  // namespace nn
