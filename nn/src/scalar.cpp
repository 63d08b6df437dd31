// Expands a small nn::MLP into scalar Values, named as the lecture names them.

#include "tapegrad/nn/scalar.hpp"

#include <fmt/format.h>

#include "tapegrad/value.hpp"

namespace nn {

namespace {

// The activation module after a Linear, applied to one scalar: the same row of the op table
// (Note [Activations from the op table]) with the same parameter, so any row the table gains
// expands too.
ag::Value activate(const Module* m, ag::Value z) {
  if (m == nullptr) return z;
  const auto* activation = dynamic_cast<const Elementwise*>(m);
  if (activation == nullptr) ag::fail("expand: {} has no scalar form here", m->describe());
  return ag::dispatch(activation->op(), [&](auto rule) -> ag::Value {
    using Rule = decltype(rule);
    if constexpr (Rule::info.arity == 1)
      return z.tape().record<Rule>(z, {}, activation->param());
    else  // Elementwise's constructor refuses these rows
      ag::fail("expand: {} is not a one-operand row", Rule::info.name);
  });
}

// "11" for unit 1 from input 1, "10_3" once an index passes 9.
std::string pair_name(std::size_t j, std::size_t i) {
  return j < 10 && i < 10 ? fmt::format("{}{}", j, i) : fmt::format("{}_{}", j, i);
}

}  // namespace

ScalarNet expand(MLP& mlp, ag::Tape& tape, std::span<const double> x, ScalarLoss loss,
                 std::span<const double> y) {
  if (loss != ScalarLoss::none && std::int64_t(y.size()) != mlp.sizes.back())
    ag::fail("expand: {} target values for an MLP with {} outputs", y.size(), mlp.sizes.back());
  ScalarNet net = expand(mlp, tape, x, ScalarNetOptions{});
  if (loss != ScalarLoss::none) {
    ag::Value total;
    for (std::size_t j = 0; j < net.outputs.size(); ++j) {
      const ag::Value p = net.outputs[j];
      // The notes' cases: y = 1 gives -log y_hat, y = 0 gives -log(1 - y_hat).
      ag::Value term = loss == ScalarLoss::mse ? ag::pow(p - y[j], 2.0)
                       : y[j] == 1.0           ? -ag::log(p)
                       : y[j] == 0.0           ? -ag::log(1.0 - p)
                                     : -(y[j] * ag::log(p) + (1 - y[j]) * ag::log(1.0 - p));
      total = j == 0 ? term : total + term;
    }
    net.loss = (net.outputs.size() == 1 ? total : total / double(net.outputs.size())).named("L");
  }
  return net;
}

ScalarNet expand(MLP& mlp, ag::Tape& tape, std::span<const double> x,
                 const ScalarNetOptions& options) {
  if (mlp.extras.norm != MLPExtras::Norm::none || mlp.extras.dropout > 0)
    ag::fail("expand: an MLP with dropout or normalization layers has no scalar expansion");
  std::int64_t weights = 0;
  for (const Linear* l : mlp.linears()) weights += l->weight.numel();
  if (weights > options.max_weights)
    throw ag::Error(
        fmt::format("expand: the MLP has {} weights; a scalar graph of more than {} "
                    "is too large to read",
                    weights, options.max_weights));
  if (std::int64_t(x.size()) != mlp.sizes.front())
    ag::fail("expand: {} input values for an MLP with {} inputs", x.size(), mlp.sizes.front());
  if (!options.input_names.empty() && options.input_names.size() != x.size())
    ag::fail("expand: {} input names for {} inputs", options.input_names.size(), x.size());
  std::size_t parameters = 0;
  for (const Parameter* p : mlp.parameters()) parameters += std::size_t(p->numel());
  if (!options.parameters.empty() && options.parameters.size() != parameters)
    ag::fail("expand: {} parameter values for an MLP with {} weights and biases",
             options.parameters.size(), parameters);
  // The value of the next weight or bias, from the options or the MLP, in parameters' order.
  std::size_t next_parameter = 0;
  const auto parameter = [&](float own) {
    const double value = options.parameters.empty() ? own : options.parameters[next_parameter];
    ++next_parameter;
    return value;
  };

  ScalarNet net;
  for (std::size_t i = 0; i < x.size(); ++i)
    net.inputs.push_back(tape.input(
        x[i], options.input_names.empty() ? fmt::format("x{}", i + 1) : options.input_names[i]));

  // Each Linear is followed by its activation, if any, in the Sequential.
  std::vector<const Module*> after;
  const auto children = mlp.layers.children();
  for (std::size_t c = 0; c < children.size(); ++c) {
    if (dynamic_cast<const Linear*>(children[c].second) == nullptr) continue;
    const bool has_next =
        c + 1 < children.size() && dynamic_cast<const Linear*>(children[c + 1].second) == nullptr;
    after.push_back(has_next ? children[c + 1].second : nullptr);
  }

  std::vector<ag::Value> in = net.inputs;
  const auto linears = mlp.linears();
  for (std::size_t l = 0; l < linears.size(); ++l) {
    const Linear& layer = *linears[l];
    const std::size_t outs = std::size_t(layer.out_features), ins = std::size_t(layer.in_features);
    std::vector<ag::Value> w, b;
    for (std::size_t j = 0; j < outs; ++j)
      for (std::size_t i = 0; i < ins; ++i)
        w.push_back(tape.input(parameter(layer.weight.data()[j * ins + i]),
                               fmt::format("w{}_{}", l + 1, pair_name(j + 1, i + 1))));
    if (layer.bias)
      for (std::size_t j = 0; j < outs; ++j)
        b.push_back(
            tape.input(parameter(layer.bias->data()[j]), fmt::format("b{}_{}", l + 1, j + 1)));
    net.parameters.insert(net.parameters.end(), w.begin(), w.end());
    net.parameters.insert(net.parameters.end(), b.begin(), b.end());

    std::vector<ag::Value> out;
    const bool last = l + 1 == linears.size();
    for (std::size_t j = 0; j < outs; ++j) {
      ag::Value z = w[j * ins] * in[0];
      for (std::size_t i = 1; i < ins; ++i) z = z + w[j * ins + i] * in[i];
      if (layer.bias) z = z + b[j];
      z.named(fmt::format("z{}_{}", l + 1, j + 1));
      // The unit: h<l>_<j> after an activation; the net's output is the prediction ŷ (y is
      // the target). A hidden layer without activation keeps its z name (the unit is z itself).
      const std::string unit = last ? (outs == 1 ? std::string("ŷ") : fmt::format("ŷ{}", j + 1))
                                    : fmt::format("h{}_{}", l + 1, j + 1);
      ag::Value h = activate(after[l], z);
      if (after[l] != nullptr || last) h.named(unit);
      out.push_back(h);
    }
    net.units.push_back(out);
    in = out;
  }
  net.outputs = in;
  return net;
}

}  // namespace nn
