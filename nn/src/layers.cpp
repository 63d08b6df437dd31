// Linear, the activation modules, Maxout, Sequential and MLP (with dropout and normalization);
// the activations and norms by name.

#include "tapegrad/nn/layers.hpp"

#include <fmt/format.h>

#include <cctype>
#include <cmath>

#include "tapegrad/format.hpp"
#include "tapegrad/nn/init.hpp"
#include "tapegrad/nn/norm.hpp"

namespace nn {

Linear::Linear(const LinearOptions& options)
    : weight(
          register_parameter("weight", ag::Shape{options.out_features(), options.in_features()})),
      bias(options.bias() ? &register_parameter("bias", ag::Shape{options.out_features()})
                          : nullptr),
      in_features(options.in_features()),
      out_features(options.out_features()) {
  const std::int64_t in = in_features, out = out_features;
  const std::uint64_t seed = options.seed();
  if (in <= 0 || out <= 0) ag::fail("Linear({}, {}): sizes must be positive", in, out);
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
  return fmt::format("Linear(in={}, out={}, bias={})", in_features, out_features, bias != nullptr);
}

Elementwise::Elementwise(ag::Op op, double param) : op_(op), param_(param) {
  if (ag::op_info(op).arity != 1)
    throw ag::Error(
        fmt::format("Elementwise({}): an elementwise module applies a row of the op "
                    "table with one operand, not {}",
                    ag::op_info(op).name, ag::op_info(op).arity));
}

namespace {

// PyTorch's name of the module of a row: each word of the row's name capitalised, with "lu"
// (linear unit) in capitals, as torch.nn writes it: relu -> ReLU, leaky_relu -> LeakyReLU,
// elu -> ELU, sigmoid -> Sigmoid.
std::string module_name(std::string_view row) {
  std::string name;
  for (std::size_t start = 0; start <= row.size();) {
    std::size_t end = row.find('_', start);
    if (end == std::string_view::npos) end = row.size();
    std::string word(row.substr(start, end - start));
    if (!word.empty()) word[0] = char(std::toupper(static_cast<unsigned char>(word[0])));
    if (word.ends_with("lu")) word.replace(word.size() - 2, 2, "LU");
    name += word;
    start = end + 1;
  }
  return name;
}

}  // namespace

std::string Elementwise::describe() const {
  const ag::OpInfo& info = ag::op_info(op_);
  if (!info.has_param) return module_name(info.name) + "()";
  // The name anomaly reports give the same parameter (anomaly.cpp).
  const std::string_view param_name = op_ == ag::Op::pow_scalar ? "exponent" : "alpha";
  return fmt::format("{}({}={})", module_name(info.name), param_name, ag::format_number(param_));
}

PReLU::PReLU(std::int64_t features, double init_value)
    : weight(register_parameter("weight", ag::Shape{features})) {
  if (features <= 0) ag::fail("PReLU({}): features must be positive", features);
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
  if (pieces_ <= 0) ag::fail("Maxout: pieces must be positive, not {}", pieces_);
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
  if (i >= size_) ag::fail("Sequential has {} modules, not {}", size_, i + 1);
  return *children()[i].second;
}

std::string Sequential::describe() const {
  std::string s = "Sequential(\n";
  for (auto& [name, child] : children()) s += fmt::format("  ({}): {}\n", name, child->describe());
  return s + ")";
}

namespace {

// The rows of the op table that are activations, in the table's order.
std::vector<ag::Op> activation_rows() {
  std::vector<ag::Op> rows;
  for (int row = 0; row < ag::kOpCount; ++row)
    if (is_activation(static_cast<ag::Op>(row))) rows.push_back(static_cast<ag::Op>(row));
  return rows;
}

}  // namespace

Activation parse_activation(std::string_view name) {
  if (name == "none") return Activation::none;
  for (ag::Op op : activation_rows())
    if (ag::op_info(op).name == name) return op;
  ag::fail("unknown activation '{}': use one of {}", name, activation_names());
}

std::string activation_names() {
  std::string names = "none";
  for (ag::Op op : activation_rows()) names += fmt::format(", {}", ag::op_info(op).name);
  return names;
}

std::string_view activation_name(Activation a) { return a.op ? ag::op_info(*a.op).name : "none"; }

std::unique_ptr<Module> make_activation(Activation a, std::int64_t features) {
  if (!a.op) return nullptr;
  if (!is_activation(*a.op))
    ag::fail("{} is not an activation (Note [Activations from the op table])",
             ag::op_info(*a.op).name);
  if (*a.op == ag::Op::prelu) return std::make_unique<PReLU>(features);
  return std::make_unique<Elementwise>(*a.op);
}

MLPExtras::Norm parse_norm(std::string_view name) {
  if (name == "none") return MLPExtras::Norm::none;
  if (name == "layer") return MLPExtras::Norm::layer;
  if (name == "batch") return MLPExtras::Norm::batch;
  ag::fail("unknown norm '{}': use one of none, layer, batch", name);
}

MLP::MLP(std::vector<std::int64_t> sizes_, Activation hidden, Activation output, std::uint64_t seed,
         const MLPExtras& extras_)
    : layers(register_module("layers", std::make_unique<Sequential>())),
      sizes(std::move(sizes_)),
      extras(extras_) {
  if (sizes.size() < 2)
    throw ag::Error(
        fmt::format("MLP needs at least an input and an output size, got {}", sizes.size()));
  if (!(extras.dropout >= 0 && extras.dropout <= 1))
    ag::fail("MLP: dropout must be in [0, 1], not {}", extras.dropout);
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    linears_.push_back(&layers.push_back(
        Linear(LinearOptions(sizes[i], sizes[i + 1]).seed(seed * 1000003ull + i))));
    const bool is_hidden = i + 2 < sizes.size();
    if (is_hidden && extras.norm == MLPExtras::Norm::layer)
      layers.push_back(LayerNorm(sizes[i + 1]));
    if (is_hidden && extras.norm == MLPExtras::Norm::batch)
      layers.push_back(BatchNorm1d(sizes[i + 1]));
    if (auto m = make_activation(is_hidden ? hidden : output, sizes[i + 1]))
      layers.push_back(std::move(m));
    if (is_hidden && extras.dropout > 0)
      layers.push_back(Dropout(extras.dropout, seed * 1000003ull + 0xd20b0u + i));
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
