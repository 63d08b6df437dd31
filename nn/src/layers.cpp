// Linear, the activation modules, Maxout, Sequential and MLP.

#include "tapegrad/nn/layers.hpp"

#include <fmt/format.h>

#include <cmath>

#include "tapegrad/format.hpp"
#include "tapegrad/nn/init.hpp"

namespace nn {

Linear::Linear(const LinearOptions& options)
    : weight(register_parameter("weight",
                                ag::Shape{options.out_features(), options.in_features()})),
      bias(options.bias() ? &register_parameter("bias", ag::Shape{options.out_features()})
                          : nullptr),
      in_features(options.in_features()),
      out_features(options.out_features()) {
  const std::int64_t in = in_features, out = out_features;
  const std::uint64_t seed = options.seed();
  if (in <= 0 || out <= 0)
    throw ag::Error(fmt::format("Linear({}, {}): sizes must be positive", in, out));
  // PyTorch's default: kaiming_uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)),
  // and the same bound for the bias.
  const double bound = 1.0 / std::sqrt(double(in));
  init::uniform(weight, -bound, bound, seed);
  if (bias) init::uniform(*bias, -bound, bound, seed ^ 0xb1a5b1a5ull);
}

ag::Tensor Linear::forward(ag::Tensor x) {
  if (!labelled_ || labelled_path_ != path()) {
    labelled_path_ = path();
    weight_label_ = label("weight");
    bias_label_ = label("bias");
    labelled_ = true;
  }
  ag::TensorTape& tape = x.tape();
  ag::Tensor w = weight.on(tape, weight_label_);
  if (!bias) return ag::linear(x, w);
  return ag::linear(x, w, bias->on(tape, bias_label_));
}

std::string Linear::describe() const {
  return fmt::format("Linear(in={}, out={}, bias={})", in_features, out_features,
                     bias != nullptr);
}

std::string LeakyReLU::describe() const {
  return fmt::format("LeakyReLU(alpha={})", ag::format_number(alpha));
}
std::string ELU::describe() const { return fmt::format("ELU(alpha={})", ag::format_number(alpha)); }

PReLU::PReLU(std::int64_t features, double init_value)
    : weight(register_parameter("weight", ag::Shape{features})) {
  if (features <= 0) throw ag::Error(fmt::format("PReLU({}): features must be positive", features));
  init::constant(weight, init_value);
}

ag::Tensor PReLU::forward(ag::Tensor x) {
  return ag::prelu(x, weight.on(x.tape(), label("weight")));
}

std::string PReLU::describe() const { return fmt::format("PReLU(features={})", weight.numel()); }

Maxout::Maxout(std::int64_t in, std::int64_t out, std::int64_t pieces_, std::uint64_t seed)
    : linear(register_module(
          "linear", std::make_unique<Linear>(LinearOptions(in, out * pieces_).seed(seed)))),
      out_features(out),
      pieces(pieces_) {
  if (pieces_ <= 0) throw ag::Error(fmt::format("Maxout: pieces must be positive, not {}", pieces_));
}

ag::Tensor Maxout::forward(ag::Tensor x) {
  ag::Tensor z = linear(x);  // (n, out * pieces): output j's pieces are adjacent
  return ag::amax(ag::reshape(z, {-1, out_features, pieces}), 2);
}

std::string Maxout::describe() const {
  return fmt::format("Maxout(in={}, out={}, pieces={})", linear.in_features, out_features, pieces);
}

ag::Tensor Sequential::forward(ag::Tensor x) {
  for (auto& [name, child] : children()) x = (*child)(x);
  return x;
}

Module& Sequential::operator[](std::size_t i) const {
  if (i >= size_) throw ag::Error(fmt::format("Sequential has {} modules, not {}", size_, i + 1));
  return *children()[i].second;
}

std::string Sequential::describe() const {
  std::string s = "Sequential(\n";
  for (auto& [name, child] : children()) s += fmt::format("  ({}): {}\n", name, child->describe());
  return s + ")";
}

static constexpr std::pair<Activation, std::string_view> kActivations[] = {
    {Activation::none, "none"},       {Activation::sigmoid, "sigmoid"},
    {Activation::tanh, "tanh"},       {Activation::relu, "relu"},
    {Activation::leaky_relu, "leaky_relu"}, {Activation::prelu, "prelu"},
    {Activation::elu, "elu"},
};

Activation parse_activation(std::string_view name) {
  std::string known;
  for (auto [a, n] : kActivations) {
    if (n == name) return a;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  throw ag::Error(fmt::format("unknown activation '{}': use one of {}", name, known));
}

std::string_view activation_name(Activation a) {
  for (auto [b, n] : kActivations)
    if (a == b) return n;
  return "?";
}

std::unique_ptr<Module> make_activation(Activation a, std::int64_t features) {
  switch (a) {
    case Activation::none: return nullptr;
    case Activation::sigmoid: return std::make_unique<Sigmoid>();
    case Activation::tanh: return std::make_unique<Tanh>();
    case Activation::relu: return std::make_unique<ReLU>();
    case Activation::leaky_relu: return std::make_unique<LeakyReLU>();
    case Activation::prelu: return std::make_unique<PReLU>(features);
    case Activation::elu: return std::make_unique<ELU>();
  }
  return nullptr;
}

MLP::MLP(std::vector<std::int64_t> sizes_, Activation hidden, Activation output,
         std::uint64_t seed)
    : layers(register_module("layers", std::make_unique<Sequential>())), sizes(std::move(sizes_)) {
  if (sizes.size() < 2)
    throw ag::Error(fmt::format("MLP needs at least an input and an output size, got {}",
                                sizes.size()));
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    linears_.push_back(&layers.push_back(
        Linear(LinearOptions(sizes[i], sizes[i + 1]).seed(seed * 1000003ull + i))));
    const Activation act = i + 2 < sizes.size() ? hidden : output;
    if (auto m = make_activation(act, sizes[i + 1])) layers.push_back(std::move(m));
  }
}

std::string MLP::describe() const {
  // The Sequential's lines, indented one level further, as PyTorch prints nested modules.
  std::string inner = layers.describe();
  for (std::size_t at = inner.find('\n'); at != std::string::npos; at = inner.find('\n', at + 3))
    inner.insert(at + 1, "  ");
  return "MLP(\n  (layers): " + inner + "\n)";
}

}  // namespace nn
