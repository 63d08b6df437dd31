// Classification metrics: the predicted class of each row of a model's
// output, accuracy, and a confusion matrix that prints as a table; and the
// regression metrics R² and RMSE.

#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tapegrad/tensor.hpp"

namespace nn {

// What a model's output holds, which decides a binary prediction: class 1
// when a probability is above 0.5, or when a logit (or hinge score) is above 0.
// Outputs of two or more columns predict their argmax (first on ties), whatever the kind.
enum class Scores { logits, probabilities };

// The predicted class of each row of `scores`: shape (n, c) with c >= 2 for
// c classes; (n, 1) or (n,) for one binary score per row.
std::vector<std::int32_t> predict(const ag::Tensor& scores, Scores kind);
// The fraction of rows predicted as labelled (0 for no rows). Allocates nothing.
double accuracy(const ag::Tensor& scores, std::span<const std::int32_t> labels, Scores kind);
double accuracy(std::span<const std::int32_t> predicted, std::span<const std::int32_t> labels);

// counts[label][predicted], rows the true class as in sklearn. Accumulates
// over batches with add(); its storage is sized once, at construction.
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(std::int64_t classes, std::vector<std::string> class_names = {});

  void add(std::int32_t label, std::int32_t predicted);
  void add(const ag::Tensor& scores, std::span<const std::int32_t> labels, Scores kind);
  void reset();

  std::int64_t classes() const { return classes_; }
  std::int64_t count(std::int32_t label, std::int32_t predicted) const;
  std::int64_t total() const { return total_; }
  std::int64_t correct() const;
  double accuracy() const;                 // correct / total, 0 when empty
  double recall(std::int32_t c) const;     // of the rows labelled c, the fraction predicted c
  double precision(std::int32_t c) const;  // of the rows predicted c, the fraction labelled c
  const std::vector<std::string>& class_names() const { return names_; }

  // The counts as a table, true classes down and predictions across, with
  // each class's recall and precision and the overall accuracy.
  std::string table() const;

 private:
  std::int64_t classes_;
  std::vector<std::string> names_;
  std::vector<std::int64_t> counts_;
  std::int64_t total_ = 0;
};

// One pass over `scores` and `labels`; classes from the scores' columns (2 for
// one binary column) unless given.
ConfusionMatrix confusion_matrix(const ag::Tensor& scores, std::span<const std::int32_t> labels,
                                 Scores kind, std::int64_t classes = 0,
                                 std::vector<std::string> class_names = {});

// Regression metrics of a prediction against its target, both (n,) or (n, outputs), read from
// their data (float32 or float64), accumulated in double:
// - r2_score: per output 1 - sum (y - p)^2 / sum (y - mean y)^2, averaged over the outputs, as
//   sklearn's r2_score (multioutput="uniform_average"): 1 is perfect, 0 is predicting the mean;
//   a constant target scores 1 if predicted exactly, else 0 (sklearn's force_finite).
// - rmse: sqrt(mean (y - p)^2) over every element.
// Both need at least one row (r2_score two), and throw ag::Error naming mismatched shapes.
double r2_score(const ag::Tensor& prediction, const ag::Tensor& target);
double rmse(const ag::Tensor& prediction, const ag::Tensor& target);

// r2_score and rmse over batches added one after another, equal (to rounding) to the two over
// their concatenation, as nn::fit reports them per epoch. Per output it keeps the count, the
// target's mean and its sum of squared deviations, merged batch by batch by Chan et al.'s
// pairwise update (no sum of squares minus a square of sums to cancel), and the sum of squared
// errors. Sized once, at construction: add() allocates nothing.
class RegressionMetrics {
 public:
  explicit RegressionMetrics(std::int64_t outputs);
  // prediction and target as r2_score takes them, with `outputs` columns (any rows, even 0).
  void add(const ag::Tensor& prediction, const ag::Tensor& target);
  void reset();
  std::int64_t rows() const { return rows_; }
  // As r2_score (a target without spread scores 1 if predicted exactly, else 0); 0 with no rows.
  double r2() const;
  double rmse() const;  // 0 with no rows

 private:
  std::int64_t outputs_, rows_ = 0;
  std::vector<double> mean_, spread_, squared_error_;
};

}  // namespace nn

template <> struct fmt::formatter<nn::ConfusionMatrix> : fmt::formatter<std::string> {
  auto format(const nn::ConfusionMatrix& m, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(m.table(), ctx);
  }
};
