// Losses as compositions of tape ops (every one of them gradient-checked), with torch.nn's
// reductions, class weights, pos_weight and label smoothing, and the names of the loss kinds.

#include "tapegrad/nn/loss.hpp"

#include <fmt/format.h>

#include <numeric>
#include <string>
#include <utility>

#include "constant_like.hpp"

namespace nn {

namespace {

ag::Tensor reduce(ag::Tensor per_element, Reduction r) {
  switch (r) {
    case Reduction::mean: return ag::mean(per_element);
    case Reduction::sum: return ag::sum(per_element);
    case Reduction::none: return per_element;
  }
  return per_element;
}

// The class losses take (rows, classes) scores, one weight per class and a smoothing in [0, 1].
void check_class_options(const ag::Tensor& scores, std::span<const double> weight,
                         double label_smoothing, const char* loss) {
  if (scores.rank() != 2)
    ag::fail("{}: the scores must be 2-D (rows, classes), not {}", loss, scores.shape());
  if (!weight.empty() && std::int64_t(weight.size()) != scores.shape()[1])
    ag::fail("{}: {} class weights for {} classes (scores {})", loss, weight.size(),
             scores.shape()[1], scores.shape());
  if (!(label_smoothing >= 0 && label_smoothing <= 1))
    ag::fail("{}: label_smoothing {} is not in [0, 1]", loss, label_smoothing);
}

// Cross-entropy on log-probabilities with class labels: nll_loss, and cross_entropy after its
// log_softmax. Note [Class weights] gives the weighted mean.
ag::Tensor labelled_class_loss(ag::Tensor log_p, std::span<const std::int32_t> labels,
                               std::span<const double> weight, double label_smoothing,
                               Reduction reduction) {
  ag::Tensor per_row = -ag::pick(log_p, labels);  // checks every label against the classes
  const std::int64_t rows = log_p.shape()[0], classes = log_p.shape()[1];
  double total_weight = double(rows);
  if (!weight.empty()) {
    std::vector<double> row_weight;
    row_weight.reserve(labels.size());
    for (const std::int32_t label : labels) row_weight.push_back(weight[std::size_t(label)]);
    per_row = per_row * constant_like(log_p, ag::Shape{rows}, row_weight);
    total_weight = std::accumulate(row_weight.begin(), row_weight.end(), 0.0);
  }
  if (label_smoothing > 0) {
    // The smoothed target's uniform part: s / C of every class's (weighted) -log p.
    ag::Tensor all =
        weight.empty() ? log_p : log_p * constant_like(log_p, ag::Shape{classes}, weight);
    per_row =
        (1 - label_smoothing) * per_row + (label_smoothing / double(classes)) * -ag::sum(all, 1);
  }
  if (reduction == Reduction::mean && !weight.empty()) return ag::sum(per_row) / total_weight;
  return reduce(per_row, reduction);
}

void check_shapes(const ag::Tensor& prediction, const ag::Tensor& target, const char* loss) {
  if (!(prediction.shape() == target.shape()))
    ag::fail("{}: prediction {} and target {} must have the same shape", loss, prediction.shape(),
             target.shape());
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

ag::Tensor bce_with_logits(ag::Tensor z, ag::Tensor y, const BceWithLogitsOptions& options) {
  if (options.pos_weight.empty()) return bce_with_logits(z, y, options.reduction);
  check_shapes(z, y, "bce_with_logits");
  const std::int64_t columns = z.rank() == 0 ? 1 : z.shape()[z.rank() - 1];
  const std::int64_t given = std::int64_t(options.pos_weight.size());
  if (given != 1 && given != columns)
    ag::fail(
        "bce_with_logits: {} pos_weight values for {} columns (logits {}): give one per "
        "column or one for all",
        given, columns, z.shape());
  const ag::Tensor w = constant_like(z, ag::Shape{given}, options.pos_weight);
  // -(w y log σ(z) + (1 - y) log(1 - σ(z))) with log σ(z) = -softplus(-z) and
  // log(1 - σ(z)) = -z - softplus(-z): (1 - y) z + (1 + (w - 1) y) softplus(-z).
  return reduce((1.0 - y) * z + (1.0 + (w - 1.0) * y) * ag::softplus(-z), options.reduction);
}

ag::Tensor l1_loss(ag::Tensor prediction, ag::Tensor target, Reduction r) {
  check_shapes(prediction, target, "l1_loss");
  return reduce(ag::abs(prediction - target), r);
}

ag::Tensor huber_loss(ag::Tensor prediction, ag::Tensor target, Reduction r, double delta) {
  check_shapes(prediction, target, "huber_loss");
  if (!(delta > 0)) ag::fail("huber_loss: delta must be positive, not {}", delta);
  // With c = clamp(d, -delta, delta): 0.5 c^2 + delta (|d| - |c|) is 0.5 d^2 inside and
  // delta (|d| - 0.5 delta) outside, and its gradient c + delta (sign d - sign c) is d inside,
  // delta sign(d) outside, as torch's; no comparison op needed.
  const ag::Tensor d = prediction - target;
  const ag::Tensor c = ag::clamp(d, -delta, delta);
  return reduce(0.5 * (c * c) + delta * (ag::abs(d) - ag::abs(c)), r);
}

ag::Tensor smooth_l1_loss(ag::Tensor prediction, ag::Tensor target, Reduction r, double beta) {
  if (!(beta >= 0)) ag::fail("smooth_l1_loss: beta must be 0 or more, not {}", beta);
  if (beta == 0) return l1_loss(prediction, target, r);
  check_shapes(prediction, target, "smooth_l1_loss");
  const ag::Tensor d = prediction - target;
  const ag::Tensor c = ag::clamp(d, -beta, beta);
  return reduce((0.5 / beta) * (c * c) + (ag::abs(d) - ag::abs(c)), r);
}

ag::Tensor cross_entropy(ag::Tensor logits, std::span<const std::int32_t> labels, Reduction r) {
  return reduce(-ag::pick(ag::log_softmax(logits, -1), labels), r);
}

ag::Tensor cross_entropy(ag::Tensor logits, std::span<const std::int32_t> labels,
                         const CrossEntropyOptions& options) {
  check_class_options(logits, options.weight, options.label_smoothing, "cross_entropy");
  return labelled_class_loss(ag::log_softmax(logits, -1), labels, options.weight,
                             options.label_smoothing, options.reduction);
}

ag::Tensor cross_entropy(ag::Tensor logits, ag::Tensor target, const CrossEntropyOptions& options) {
  check_class_options(logits, options.weight, options.label_smoothing, "cross_entropy");
  check_shapes(logits, target, "cross_entropy");
  const double s = options.label_smoothing, classes = double(logits.shape()[1]);
  if (s > 0) target = (1 - s) * target + s / classes;
  ag::Tensor terms = ag::log_softmax(logits, -1) * target;
  if (!options.weight.empty())
    terms = terms * constant_like(logits, ag::Shape{logits.shape()[1]}, options.weight);
  // The mean is over rows whatever the weights (Note [Class weights]).
  return reduce(-ag::sum(terms, 1), options.reduction);
}

ag::Tensor nll_loss(ag::Tensor log_p, std::span<const std::int32_t> labels,
                    const NllOptions& options) {
  check_class_options(log_p, options.weight, 0, "nll_loss");
  return labelled_class_loss(log_p, labels, options.weight, 0, options.reduction);
}

ag::Tensor hinge_loss(ag::Tensor score, ag::Tensor y, Reduction r) {
  check_shapes(score, y, "hinge_loss");
  return reduce(ag::relu(1.0 - y * score), r);
}

namespace {

constexpr std::pair<LossKind, std::string_view> kLosses[] = {
    {LossKind::bce, "bce"},          {LossKind::bce_with_logits, "bce_logits"},
    {LossKind::cross_entropy, "ce"}, {LossKind::mse, "mse"},
    {LossKind::hinge, "hinge"},      {LossKind::l1, "l1"},
    {LossKind::huber, "huber"},
};

}  // namespace

LossKind parse_loss(std::string_view name) {
  std::string known;
  for (auto [kind, n] : kLosses) {
    if (n == name) return kind;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  ag::fail("unknown loss '{}': use one of {}", name, known);
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
