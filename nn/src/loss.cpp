// Losses as compositions of tape ops (every one of them gradient-checked), and the
// names of the loss kinds.

#include "tapegrad/nn/loss.hpp"

#include <fmt/format.h>

#include <string>
#include <utility>

namespace nn {

namespace {

ag::Tensor reduce(ag::Tensor per_element, Reduction r) {
  return r == Reduction::mean ? ag::mean(per_element) : ag::sum(per_element);
}

void check_shapes(const ag::Tensor& prediction, const ag::Tensor& target, const char* loss) {
  if (!(prediction.shape() == target.shape()))
    throw ag::Error(fmt::format("{}: prediction {} and target {} must have the same shape", loss,
                                prediction.shape().str(), target.shape().str()));
}

}  // namespace

ag::Tensor mse_loss(ag::Tensor prediction, ag::Tensor target, Reduction r) {
  check_shapes(prediction, target, "mse_loss");
  return reduce(ag::pow(prediction - target, 2.0), r);
}

ag::Tensor bce_loss(ag::Tensor p, ag::Tensor y, Reduction r) {
  check_shapes(p, y, "bce_loss");
  return reduce(ag::bce(p, y), r);
}

ag::Tensor bce_with_logits(ag::Tensor z, ag::Tensor y, Reduction r) {
  check_shapes(z, y, "bce_with_logits");
  // -(y log σ(z) + (1 - y) log(1 - σ(z))) = softplus(z) - y z
  return reduce(ag::softplus(z) - y * z, r);
}

ag::Tensor cross_entropy(ag::Tensor logits, std::span<const std::int32_t> labels, Reduction r) {
  return reduce(-ag::pick(ag::log_softmax(logits, -1), labels), r);
}

ag::Tensor hinge_loss(ag::Tensor score, ag::Tensor y, Reduction r) {
  check_shapes(score, y, "hinge_loss");
  return reduce(ag::relu(1.0 - y * score), r);
}

namespace {

constexpr std::pair<LossKind, std::string_view> kLosses[] = {
    {LossKind::bce, "bce"},          {LossKind::bce_with_logits, "bce_logits"},
    {LossKind::cross_entropy, "ce"}, {LossKind::mse, "mse"},
    {LossKind::hinge, "hinge"},
};

}  // namespace

LossKind parse_loss(std::string_view name) {
  std::string known;
  for (auto [kind, n] : kLosses) {
    if (n == name) return kind;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  throw ag::Error(fmt::format("unknown loss '{}': use one of {}", name, known));
}

std::string_view loss_name(LossKind kind) {
  for (auto [k, n] : kLosses)
    if (k == kind) return n;
  return "?";
}

Scores scores_of(LossKind loss) {
  return loss == LossKind::bce || loss == LossKind::mse ? Scores::probabilities : Scores::logits;
}

}  // namespace nn
