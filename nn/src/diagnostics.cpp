// Per-layer gradient norms and dead-unit fractions.

#include "tapegrad/nn/diagnostics.hpp"

#include <algorithm>

namespace nn {

std::vector<double> layer_grad_norms(MLP& mlp) {
  std::vector<double> norms;
  for (Linear* l : mlp.linears()) norms.push_back(l->weight.grad_norm());
  return norms;
}

namespace {

bool is_rectifier(ag::Op op) { return ag::op_info(op).rectifier; }

template <class T>
void mark_alive(std::span<const T> x, std::int64_t units, std::vector<char>& alive) {
  for (std::size_t i = 0; i < x.size(); ++i)
    if (x[i] > T(0)) alive[i % std::size_t(units)] = 1;
}

}  // namespace

void DeadUnits::observe(ag::TensorTape& tape) {
  std::size_t layer = 0;
  for (ag::NodeId id = 0; id < tape.size(); ++id) {
    if (tape.op(id) != ag::TOp::elementwise || !is_rectifier(tape.elementwise_op(id))) continue;
    // Only layers: a rectifier recorded outside any module is part of a loss (hinge).
    if (tape.shape(id).rank() != 2 || tape.scope(id) == 0) continue;
    const std::int64_t units = tape.shape(id)[1];
    const std::string_view scope = tape.scope_name(tape.scope(id));
    // Layers are matched by position; a different model (or order) starts over.
    if (layer == layers_.size())
      layers_.push_back(Layer{std::string(scope), std::vector<char>(std::size_t(units), 0)});
    Layer& l = layers_[layer++];
    if (l.scope != scope || std::int64_t(l.alive.size()) != units)
      l = Layer{std::string(scope), std::vector<char>(std::size_t(units), 0)};
    const ag::Tensor input = tape.handle(tape.input_of(id, 0));
    if (input.dtype() == ag::DType::f32)
      mark_alive(input.data<float>(), units, l.alive);
    else
      mark_alive(input.data<double>(), units, l.alive);
  }
}

std::vector<std::pair<std::string, double>> DeadUnits::fractions() const {
  std::vector<std::pair<std::string, double>> out;
  for (const Layer& l : layers_) {
    const auto dead = std::count(l.alive.begin(), l.alive.end(), 0);
    out.emplace_back(l.scope, l.alive.empty() ? 0.0 : double(dead) / double(l.alive.size()));
  }
  return out;
}

}  // namespace nn
