// Predictions, accuracy, the confusion matrix, R² and RMSE, read straight from a
// tensor's data: no tape nodes, no allocation per row.

#include "tapegrad/nn/metrics.hpp"

#include <algorithm>
#include <cmath>

namespace nn {

namespace {

using ag::fail;

// A confusion matrix holds classes^2 counts; more classes than this is a mistake.
constexpr std::int64_t kMaxMatrixClasses = 4096;

// The scores' layout: n rows of c columns, c = 1 for one binary score per row.
struct Layout {
  std::int64_t rows, cols;
};

Layout layout(const ag::Tensor& scores, const char* who) {
  const ag::Shape& s = scores.shape();
  if (s.rank() == 1 && s[0] >= 0) return {s[0], 1};
  if (s.rank() == 2 && s[1] >= 1) return {s[0], s[1]};
  fail("{}: scores must have shape (n, classes) or (n,), not {}", who, s);
}

template <class T>
std::int32_t predict_row(std::span<const T> data, Layout l, std::int64_t i, Scores kind) {
  const T* row = data.data() + i * l.cols;
  if (l.cols == 1) return row[0] > (kind == Scores::probabilities ? T(0.5) : T(0)) ? 1 : 0;
  return std::int32_t(std::max_element(row, row + l.cols) - row);  // the first of equal maxima
}

// Calls f(i, predicted class of row i) for every row.
template <class F> void each_prediction(const ag::Tensor& scores, Layout l, Scores kind, F&& f) {
  if (scores.dtype() == ag::DType::f32) {
    std::span<const float> d = scores.data<float>();
    for (std::int64_t i = 0; i < l.rows; ++i) f(i, predict_row(d, l, i, kind));
  } else {
    std::span<const double> d = scores.data<double>();
    for (std::int64_t i = 0; i < l.rows; ++i) f(i, predict_row(d, l, i, kind));
  }
}

void check_labels(Layout l, std::span<const std::int32_t> labels, std::int64_t classes,
                  const char* who) {
  if (std::int64_t(labels.size()) != l.rows)
    fail("{}: {} labels for {} rows of scores", who, labels.size(), l.rows);
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      fail("{}: label {} of row {} is not one of the {} classes", who, labels[i], i, classes);
}

}  // namespace

std::vector<std::int32_t> predict(const ag::Tensor& scores, Scores kind) {
  const Layout l = layout(scores, "predict");
  std::vector<std::int32_t> out(std::size_t(l.rows));
  each_prediction(scores, l, kind,
                  [&](std::int64_t i, std::int32_t c) { out[std::size_t(i)] = c; });
  return out;
}

double accuracy(const ag::Tensor& scores, std::span<const std::int32_t> labels, Scores kind) {
  const Layout l = layout(scores, "accuracy");
  check_labels(l, labels, l.cols == 1 ? 2 : l.cols, "accuracy");
  std::int64_t correct = 0;
  each_prediction(scores, l, kind,
                  [&](std::int64_t i, std::int32_t c) { correct += c == labels[std::size_t(i)]; });
  return l.rows ? double(correct) / double(l.rows) : 0.0;
}

double accuracy(std::span<const std::int32_t> predicted, std::span<const std::int32_t> labels) {
  if (predicted.size() != labels.size())
    fail("accuracy: {} predictions for {} labels", predicted.size(), labels.size());
  std::int64_t correct = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) correct += predicted[i] == labels[i];
  return labels.empty() ? 0.0 : double(correct) / double(labels.size());
}

// ---- ConfusionMatrix ------------------------------------------------------------

ConfusionMatrix::ConfusionMatrix(std::int64_t classes, std::vector<std::string> class_names)
    : classes_(classes), names_(std::move(class_names)) {
  if (classes < 1 || classes > kMaxMatrixClasses)
    fail("ConfusionMatrix: classes must be in [1, {}], not {}", kMaxMatrixClasses, classes);
  if (!names_.empty() && std::int64_t(names_.size()) != classes)
    fail("ConfusionMatrix: {} class names for {} classes", names_.size(), classes);
  counts_.assign(std::size_t(classes * classes), 0);
}

void ConfusionMatrix::add(std::int32_t label, std::int32_t predicted) {
  if (label < 0 || label >= classes_ || predicted < 0 || predicted >= classes_)
    fail("ConfusionMatrix::add: label {} or prediction {} is not one of the {} classes", label,
         predicted, classes_);
  ++counts_[std::size_t(label * classes_ + predicted)];
  ++total_;
}

void ConfusionMatrix::add(const ag::Tensor& scores, std::span<const std::int32_t> labels,
                          Scores kind) {
  const Layout l = layout(scores, "ConfusionMatrix::add");
  if (l.cols > 1 && l.cols != classes_)
    fail("ConfusionMatrix::add: scores of {} columns for {} classes", l.cols, classes_);
  if (l.cols == 1 && classes_ != 2)
    fail("ConfusionMatrix::add: one binary score per row for {} classes", classes_);
  check_labels(l, labels, classes_, "ConfusionMatrix::add");
  each_prediction(scores, l, kind, [&](std::int64_t i, std::int32_t c) {
    ++counts_[std::size_t(labels[std::size_t(i)] * classes_ + c)];
  });
  total_ += l.rows;
}

void ConfusionMatrix::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
}

std::int64_t ConfusionMatrix::count(std::int32_t label, std::int32_t predicted) const {
  if (label < 0 || label >= classes_ || predicted < 0 || predicted >= classes_)
    fail("ConfusionMatrix::count: ({}, {}) is outside the {} classes", label, predicted, classes_);
  return counts_[std::size_t(label * classes_ + predicted)];
}

std::int64_t ConfusionMatrix::correct() const {
  std::int64_t n = 0;
  for (std::int64_t c = 0; c < classes_; ++c) n += counts_[std::size_t(c * classes_ + c)];
  return n;
}

double ConfusionMatrix::accuracy() const { return total_ ? double(correct()) / double(total_) : 0; }

double ConfusionMatrix::recall(std::int32_t c) const {
  std::int64_t row = 0;
  for (std::int32_t p = 0; p < classes_; ++p) row += count(c, p);
  return row ? double(count(c, c)) / double(row) : 0;
}

double ConfusionMatrix::precision(std::int32_t c) const {
  std::int64_t column = 0;
  for (std::int32_t l = 0; l < classes_; ++l) column += count(l, c);
  return column ? double(count(c, c)) / double(column) : 0;
}

std::string ConfusionMatrix::table() const {
  auto name = [&](std::int64_t c) {
    return names_.empty() ? std::to_string(c) : names_[std::size_t(c)];
  };
  // A class with no rows (or no predictions) has no recall (precision): "-".
  auto fraction = [](std::int64_t num, std::int64_t den) {
    return den ? fmt::format("{:.3f}", double(num) / double(den)) : std::string("-");
  };
  const std::string corner = "true \\ predicted";
  std::size_t first = std::max(corner.size(), std::string("precision").size());
  std::size_t width = 5;  // "0.947"
  for (std::int64_t c = 0; c < classes_; ++c) {
    first = std::max(first, name(c).size());
    width = std::max(width, name(c).size());
  }
  for (std::int64_t n : counts_) width = std::max(width, std::to_string(n).size());

  std::string out = fmt::format("{:>{}}", corner, first);
  for (std::int64_t c = 0; c < classes_; ++c) out += fmt::format("  {:>{}}", name(c), width);
  out += "  recall\n";
  std::vector<std::int64_t> column(std::size_t(classes_), 0);
  for (std::int64_t l = 0; l < classes_; ++l) {
    out += fmt::format("{:>{}}", name(l), first);
    std::int64_t row = 0;
    for (std::int64_t p = 0; p < classes_; ++p) {
      const std::int64_t n = counts_[std::size_t(l * classes_ + p)];
      out += fmt::format("  {:>{}}", n, width);
      row += n;
      column[std::size_t(p)] += n;
    }
    out += fmt::format("  {:>6}\n", fraction(counts_[std::size_t(l * classes_ + l)], row));
  }
  out += fmt::format("{:>{}}", "precision", first);
  for (std::int64_t p = 0; p < classes_; ++p)
    out += fmt::format("  {:>{}}",
                       fraction(counts_[std::size_t(p * classes_ + p)], column[std::size_t(p)]),
                       width);
  out += fmt::format("\naccuracy {} ({} of {})\n", fraction(correct(), total_), correct(), total_);
  return out;
}

ConfusionMatrix confusion_matrix(const ag::Tensor& scores, std::span<const std::int32_t> labels,
                                 Scores kind, std::int64_t classes,
                                 std::vector<std::string> class_names) {
  const Layout l = layout(scores, "confusion_matrix");
  ConfusionMatrix m(classes ? classes : std::max<std::int64_t>(l.cols, 2), std::move(class_names));
  m.add(scores, labels, kind);
  return m;
}

namespace {

// The (rows, outputs) layout both regression metrics read, after checking the shapes agree.
Layout regression_layout(const ag::Tensor& prediction, const ag::Tensor& target, const char* who,
                         std::int64_t min_rows) {
  const ag::Shape& s = target.shape();
  if (!(prediction.shape() == s))
    fail("{}: prediction {} and target {} must have the same shape", who, prediction.shape(), s);
  if (s.rank() != 1 && s.rank() != 2)
    fail("{}: the target must have shape (n,) or (n, outputs), not {}", who, s);
  const Layout l{s[0], s.rank() == 2 ? s[1] : 1};
  if (l.rows < min_rows || l.cols < 1)
    fail("{}: the target {} is too small: it needs at least {} rows and 1 output", who, s,
         min_rows);
  return l;
}

}  // namespace

double r2_score(const ag::Tensor& prediction, const ag::Tensor& target) {
  const Layout l = regression_layout(prediction, target, "r2_score", 2);
  double total = 0;
  for (std::int64_t c = 0; c < l.cols; ++c) {
    double mean = 0;
    for (std::int64_t r = 0; r < l.rows; ++r) mean += target.value(r * l.cols + c);
    mean /= double(l.rows);
    double residual = 0, spread = 0;
    for (std::int64_t r = 0; r < l.rows; ++r) {
      const double y = target.value(r * l.cols + c), p = prediction.value(r * l.cols + c);
      residual += (y - p) * (y - p);
      spread += (y - mean) * (y - mean);
    }
    // A constant column has no spread to explain: sklearn's force_finite scores.
    total += spread > 0 ? 1 - residual / spread : (residual == 0 ? 1 : 0);
  }
  return total / double(l.cols);
}

double rmse(const ag::Tensor& prediction, const ag::Tensor& target) {
  const Layout l = regression_layout(prediction, target, "rmse", 1);
  double squares = 0;
  for (std::int64_t i = 0; i < l.rows * l.cols; ++i) {
    const double d = target.value(i) - prediction.value(i);
    squares += d * d;
  }
  return std::sqrt(squares / double(l.rows * l.cols));
}

RegressionMetrics::RegressionMetrics(std::int64_t outputs)
    : outputs_(outputs),
      mean_(std::size_t(std::max<std::int64_t>(outputs, 0))),
      spread_(mean_.size()),
      squared_error_(mean_.size()) {
  if (outputs < 1) fail("RegressionMetrics: outputs must be at least 1, not {}", outputs);
}

void RegressionMetrics::add(const ag::Tensor& prediction, const ag::Tensor& target) {
  const Layout l = regression_layout(prediction, target, "RegressionMetrics::add", 0);
  if (l.cols != outputs_)
    fail("RegressionMetrics::add: the target {} has {} outputs, not {}", target.shape(), l.cols,
         outputs_);
  if (l.rows == 0) return;
  const double n_a = double(rows_), n_b = double(l.rows), n = n_a + n_b;
  for (std::int64_t c = 0; c < l.cols; ++c) {
    const std::size_t k = std::size_t(c);
    double mean = 0, spread = 0, squared_error = 0;
    for (std::int64_t r = 0; r < l.rows; ++r) mean += target.value(r * l.cols + c);
    mean /= n_b;
    for (std::int64_t r = 0; r < l.rows; ++r) {
      const double y = target.value(r * l.cols + c), p = prediction.value(r * l.cols + c);
      spread += (y - mean) * (y - mean);
      squared_error += (y - p) * (y - p);
    }
    // Chan et al.: M2 = M2_a + M2_b + delta^2 n_a n_b / n, mean = mean_a + delta n_b / n.
    const double delta = mean - mean_[k];
    spread_[k] += spread + delta * delta * n_a * n_b / n;
    mean_[k] += delta * n_b / n;
    squared_error_[k] += squared_error;
  }
  rows_ += l.rows;
}

void RegressionMetrics::reset() {
  rows_ = 0;
  std::fill(mean_.begin(), mean_.end(), 0.0);
  std::fill(spread_.begin(), spread_.end(), 0.0);
  std::fill(squared_error_.begin(), squared_error_.end(), 0.0);
}

double RegressionMetrics::r2() const {
  if (rows_ == 0) return 0;
  double total = 0;
  for (std::size_t k = 0; k < spread_.size(); ++k)
    total += spread_[k] > 0 ? 1 - squared_error_[k] / spread_[k] : (squared_error_[k] == 0 ? 1 : 0);
  return total / double(outputs_);
}

double RegressionMetrics::rmse() const {
  if (rows_ == 0) return 0;
  double squares = 0;
  for (const double e : squared_error_) squares += e;
  return std::sqrt(squares / double(rows_ * outputs_));
}

}  // namespace nn
