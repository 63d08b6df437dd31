// The losses a small regression or classification problem reaches for next: L1, Huber, NLL,
// reductions, class weights, pos_weight, label smoothing and probability targets, against
// hand-computed values, central differences and the errors their bad options give; and the
// regression metrics R² and RMSE.

#include <doctest/doctest.h>

#include <cmath>
#include <tapegrad/autograd.hpp>
#include <tapegrad/gradcheck.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

using namespace ag;

namespace {

void check_gradient(auto f, std::vector<TensorArg> args, const char* what) {
  const GradcheckResult r = gradcheck(f, std::span<const TensorArg>(args));
  INFO(what, ": ", r.message);
  CHECK(r.ok);
}

}  // namespace

TEST_CASE("L1, Huber and smooth L1 against the formulas, with every reduction") {
  TensorTape tape;
  // d = prediction - target = 0.5, -2, 3: inside and outside Huber's delta = 1
  Tensor p = tape.input(Shape{3}, {1.5, -1, 3}, "p");
  Tensor y = tape.input(Shape{3}, {1, 1, 0}, "y");
  CHECK(nn::l1_loss(p, y).item() == doctest::Approx((0.5 + 2 + 3) / 3));
  CHECK(nn::l1_loss(p, y, nn::Reduction::sum).item() == doctest::Approx(5.5));
  // 0.5 d^2 inside, delta (|d| - 0.5 delta) outside
  CHECK(nn::huber_loss(p, y, nn::Reduction::none).values() == std::vector<double>{0.125, 1.5, 2.5});
  CHECK(nn::huber_loss(p, y, nn::Reduction::none, 2.5).values() ==
        std::vector<double>{0.125, 2, 2.5 * (3 - 1.25)});
  // smooth L1 = Huber / beta; beta = 0 is L1
  CHECK(nn::smooth_l1_loss(p, y, nn::Reduction::sum, 0.5).item() ==
        doctest::Approx((0.25 + 1.75 + 2.75)));
  CHECK(nn::smooth_l1_loss(p, y, nn::Reduction::sum, 0).item() == doctest::Approx(5.5));
  const Tensor none = nn::mse_loss(p, y, nn::Reduction::none);
  CHECK(none.shape() == Shape{3});
  CHECK(none.values() == std::vector<double>{0.25, 4, 9});
}

TEST_CASE("the L1 kink: a prediction equal to its target gets gradient sign(0) = 0") {
  TensorTape tape;
  Tensor p = tape.input(Shape{2}, {1, 2}, "p");
  Tensor y = tape.input(Shape{2}, {1, 0}, "y");
  for (double beta : {0.0, 1.0}) {
    tape.zero_grad();
    tape.backward(nn::smooth_l1_loss(p, y, nn::Reduction::sum, beta));
    CHECK(p.grads() == std::vector<double>{0, 1});
  }
}

TEST_CASE("class weights make the mean a weighted mean; NLL is cross-entropy on log-softmax") {
  TensorTape tape;
  Tensor z = tape.input(Shape{2, 3}, {1, 2, 3, 0, 0, 0}, "z");
  const std::vector<std::int32_t> labels{2, 1};
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  const double l0 = lse - 3, l1 = std::log(3.0);
  // weights 1, 4, 2: rows weigh w[2] = 2 and w[1] = 4
  const nn::CrossEntropyOptions weighted{.weight = {1, 4, 2}};
  CHECK(nn::cross_entropy(z, labels, weighted).item() == doctest::Approx((2 * l0 + 4 * l1) / 6));
  const Tensor per_row = nn::cross_entropy(z, labels, {nn::Reduction::none, {1, 4, 2}});
  CHECK(per_row.shape() == Shape{2});
  CHECK(per_row.value(0) == doctest::Approx(2 * l0));
  CHECK(per_row.value(1) == doctest::Approx(4 * l1));
  CHECK(nn::nll_loss(log_softmax(z), labels, {.weight = {1, 4, 2}}).item() ==
        doctest::Approx(nn::cross_entropy(z, labels, weighted).item()));
  CHECK(nn::nll_loss(log_softmax(z), labels).item() ==
        doctest::Approx(nn::cross_entropy(z, labels).item()));
}

TEST_CASE("label smoothing and probability targets: a smoothed label is a probability target") {
  TensorTape tape;
  Tensor z = tape.input(Shape{2, 3}, {1, 2, 3, 0.5, -1, 0}, "z");
  const std::vector<std::int32_t> labels{0, 2};
  // label smoothing s = 0.3 over 3 classes: the target is 0.8 on the label, 0.1 elsewhere
  Tensor smoothed =
      tape.constant<double>(Shape{2, 3}, std::vector<double>{0.8, 0.1, 0.1, 0.1, 0.1, 0.8});
  for (const std::vector<double>& weight : {std::vector<double>{}, std::vector<double>{1, 1, 1}})
    CHECK(nn::cross_entropy(z, labels, {.weight = weight, .label_smoothing = 0.3}).item() ==
          doctest::Approx(nn::cross_entropy(z, smoothed).item()));
  // a one-hot probability target is the label
  Tensor one_hot = tape.constant<double>(Shape{2, 3}, std::vector<double>{1, 0, 0, 0, 0, 1});
  CHECK(nn::cross_entropy(z, one_hot).item() ==
        doctest::Approx(nn::cross_entropy(z, labels).item()));
  // probability targets average over rows even with class weights (Note [Class weights])
  CHECK(nn::cross_entropy(z, one_hot, {.weight = {2, 1, 1}}).item() ==
        doctest::Approx(nn::cross_entropy(z, labels, {nn::Reduction::sum, {2, 1, 1}}).item() / 2));
}

TEST_CASE("pos_weight scales the positive term of BCE with logits, per column") {
  TensorTape tape;
  Tensor z = tape.input(Shape{1, 2}, {0.5, -1}, "z");
  Tensor y = tape.input(Shape{1, 2}, {1, 0}, "y");
  const auto softplus = [](double x) { return std::log1p(std::exp(x)); };
  // y = 1: w softplus(-z); y = 0: softplus(z), whatever its column's weight
  const Tensor per_element = nn::bce_with_logits(z, y, {nn::Reduction::none, {3, 5}});
  CHECK(per_element.value(0) == doctest::Approx(3 * softplus(-0.5)));
  CHECK(per_element.value(1) == doctest::Approx(softplus(-1)));
  CHECK(nn::bce_with_logits(z, y, {.pos_weight = {1}}).item() ==
        doctest::Approx(nn::bce_with_logits(z, y).item()));
  // stable far out, as the unweighted form
  Tensor far = tape.input(Shape{2}, {-1000, 1000}, "far");
  Tensor far_y = tape.input(Shape{2}, {1, 0}, "far_y");
  CHECK(nn::bce_with_logits(far, far_y, {nn::Reduction::sum, {2}}).item() == doctest::Approx(3000));
}

TEST_CASE("the new losses and options agree with central differences") {
  const TensorArg pred{Shape{2, 3}, {0.3, -1.7, 2.2, 0.05, 1.4, -0.6}};
  const TensorArg target{Shape{2, 3}, {0.1, 0.2, -0.3, 0.4, -0.5, 0.6}};
  const TensorArg probabilities{Shape{2, 3}, {0.2, 0.5, 0.3, 0.6, 0.1, 0.3}};
  const std::vector<std::int32_t> labels{1, 2};
  check_gradient([](TensorTape&, std::span<const Tensor> x) { return nn::l1_loss(x[0], x[1]); },
                 {pred, target}, "l1");
  check_gradient(
      [](TensorTape&, std::span<const Tensor> x) {
        return nn::huber_loss(x[0], x[1], nn::Reduction::none, 0.8);
      },
      {pred, target}, "huber");
  check_gradient(
      [](TensorTape&, std::span<const Tensor> x) {
        return nn::smooth_l1_loss(x[0], x[1], nn::Reduction::sum, 0.4);
      },
      {pred, target}, "smooth l1");
  check_gradient(
      [](TensorTape&, std::span<const Tensor> x) {
        return nn::bce_with_logits(x[0], x[1], {nn::Reduction::mean, {0.5, 2, 3}});
      },
      {pred, probabilities}, "bce with logits and pos_weight");
  check_gradient(
      [&](TensorTape&, std::span<const Tensor> x) {
        return nn::cross_entropy(x[0], labels, {nn::Reduction::mean, {0.5, 2, 3}, 0.2});
      },
      {pred}, "weighted, smoothed cross-entropy");
  check_gradient(
      [](TensorTape&, std::span<const Tensor> x) {
        return nn::cross_entropy(x[0], x[1], {nn::Reduction::none, {0.5, 2, 3}, 0.2});
      },
      {pred, probabilities}, "cross-entropy on probabilities (both operands)");
  check_gradient(
      [&](TensorTape&, std::span<const Tensor> x) {
        return nn::nll_loss(x[0], labels, {nn::Reduction::sum, {0.5, 2, 3}});
      },
      {pred}, "weighted nll");
}

TEST_CASE("bad options are errors that name the loss and the problem") {
  TensorTape tape;
  Tensor z = tape.input(Shape{2, 3}, {1, 2, 3, 0, 0, 0}, "z");
  Tensor y = tape.input(Shape{2, 3}, {1, 0, 0, 0, 1, 0}, "y");
  const std::vector<std::int32_t> labels{2, 1};
  CHECK_THROWS_WITH_AS(nn::cross_entropy(z, labels, {.weight = {1, 2}}),
                       "cross_entropy: 2 class weights for 3 classes (scores (2, 3))", Error);
  CHECK_THROWS_WITH_AS(nn::cross_entropy(z, y, {.label_smoothing = 1.5}),
                       "cross_entropy: label_smoothing 1.5 is not in [0, 1]", Error);
  CHECK_THROWS_WITH_AS(nn::nll_loss(sum(z, 1), labels),
                       "nll_loss: the scores must be 2-D (rows, classes), not (2,)", Error);
  CHECK_THROWS_WITH_AS(nn::bce_with_logits(z, y, {.pos_weight = {1, 2}}),
                       "bce_with_logits: 2 pos_weight values for 3 columns (logits (2, 3)): give "
                       "one per column or one for all",
                       Error);
  CHECK_THROWS_WITH_AS(nn::huber_loss(z, y, nn::Reduction::mean, 0),
                       "huber_loss: delta must be positive, not 0", Error);
  CHECK_THROWS_WITH_AS(nn::smooth_l1_loss(z, y, nn::Reduction::mean, -1),
                       "smooth_l1_loss: beta must be 0 or more, not -1", Error);
  CHECK_THROWS_WITH_AS(nn::l1_loss(z, sum(y, 1)),
                       "l1_loss: prediction (2, 3) and target (2,) must have the same shape",
                       Error);
}

TEST_CASE("R² and RMSE, per output and averaged, as sklearn computes them") {
  TensorTape tape;
  // column 0: y = 1, 2, 3, 4 (mean 2.5, spread 5), p off by 0.5, -0.5, 0, 1: residual 1.5
  // column 1: a constant target, predicted exactly
  Tensor y = tape.input(Shape{4, 2}, {1, 7, 2, 7, 3, 7, 4, 7}, "y");
  Tensor p = tape.input(Shape{4, 2}, {1.5, 7, 1.5, 7, 3, 7, 5, 7}, "p");
  CHECK(nn::r2_score(p, y) == doctest::Approx((1 - 1.5 / 5 + 1) / 2));
  CHECK(nn::rmse(p, y) == doctest::Approx(std::sqrt(1.5 / 8)));
  CHECK(nn::r2_score(y, y) == 1);
  // predicting the mean scores 0; a constant target missed scores 0 (sklearn's force_finite)
  Tensor column = tape.input(Shape{4}, {1, 2, 3, 4}, "column");
  Tensor mean = tape.input(Shape{4}, {2.5, 2.5, 2.5, 2.5}, "mean");
  CHECK(nn::r2_score(mean, column) == 0);
  CHECK(nn::r2_score(column, mean) == 0);
  CHECK_THROWS_WITH_AS(nn::rmse(column, y),
                       "rmse: prediction (4,) and target (4, 2) must have the same shape", Error);
  Tensor one = tape.input(Shape{1}, {1}, "one");
  CHECK_THROWS_WITH_AS(nn::r2_score(one, one),
                       "r2_score: the target (1,) is too small: it needs at least 2 rows and 1 "
                       "output",
                       Error);
  CHECK(nn::rmse(one, one) == 0);
}
