// Dataset, DataLoader, the synthetic generators and the CSV and IDX loaders.
// Loaders treat every file as hostile: sizes are checked before allocating.

#include "tapegrad/nn/data.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
// zlib declares its input const only when asked to. The WebAssembly build has no zlib
// (nn/meson.build): it reads plain IDX files only, and says so of a gzip one (IdxReader).
#if TAPEGRAD_HAVE_ZLIB
#define ZLIB_CONST
#include <zlib.h>
#endif

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <numbers>
#include <numeric>
#include <string_view>

#include "tapegrad/chars.hpp"
#include "tapegrad/file.hpp"
#include "tapegrad/random.hpp"

namespace nn {

namespace {

using ag::fail;

std::size_t sz(std::int64_t n) { return static_cast<std::size_t>(n); }

// Fisher-Yates with ag::Rng::below: each of the n! orders equally likely.
void shuffle(std::span<std::int64_t> order, ag::Rng& rng) {
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
}

Dataset empty_set(std::int64_t rows, std::int64_t cols, std::int64_t classes) {
  Dataset d;
  d.rows = rows, d.cols = cols, d.classes = classes;
  d.features.resize(sz(rows * cols));
  d.labels.resize(sz(rows));
  for (std::int64_t j = 0; j < cols; ++j) d.feature_names.push_back(fmt::format("x{}", j + 1));
  return d;
}

// The class accessors refuse a regression set (Note [Classification or regression]).
void check_classes(bool regression, const char* who) {
  if (regression)
    fail("{}: a regression set has real-valued targets, not classes: use regression_targets", who);
}

void check_targets(bool regression, std::int64_t classes, const char* who) {
  check_classes(regression, who);
  if (classes > 2)
    fail("{}: float targets need a binary data set, this one has {} classes", who, classes);
}

}  // namespace

// ---- Dataset ------------------------------------------------------------------

std::span<const float> Dataset::row(std::int64_t i) const {
  if (i < 0 || i >= rows) fail("Dataset::row: row {} is outside [0, {})", i, rows);
  return std::span<const float>(features).subspan(sz(i * cols), sz(cols));
}

ag::Tensor Dataset::inputs(ag::TensorTape& tape) const {
  validate();
  return tape.constant(ag::Shape{rows, cols}, std::span<const float>(features));
}

ag::Tensor Dataset::targets(ag::TensorTape& tape, Target kind) const {
  validate();
  check_targets(regression(), classes, "Dataset::targets");
  std::vector<float> t(labels.size());
  for (std::size_t i = 0; i < t.size(); ++i)
    t[i] = kind == Target::binary ? float(labels[i]) : 2.f * float(labels[i]) - 1.f;
  return tape.constant(ag::Shape{rows, 1}, std::span<const float>(t));
}

ag::Tensor Dataset::regression_targets(ag::TensorTape& tape) const {
  validate();
  if (!regression()) fail("Dataset::regression_targets: a classification set has no real targets");
  return tape.constant(ag::Shape{rows, outputs}, std::span<const float>(target_values));
}

std::vector<std::int64_t> Dataset::class_counts() const {
  validate();
  check_classes(regression(), "Dataset::class_counts");
  std::vector<std::int64_t> counts(sz(classes));
  for (std::int32_t l : labels) ++counts[sz(l)];
  return counts;
}

Dataset Dataset::subset(std::span<const std::int64_t> indices) const {
  validate();
  Dataset out;
  out.rows = std::int64_t(indices.size()), out.cols = cols, out.classes = classes;
  out.feature_names = feature_names, out.class_names = class_names;
  out.outputs = outputs, out.target_names = target_names;
  out.features.reserve(indices.size() * sz(cols));
  out.labels.reserve(regression() ? 0 : indices.size());
  out.target_values.reserve(indices.size() * sz(outputs));
  for (std::int64_t i : indices) {
    if (i < 0 || i >= rows) fail("Dataset::subset: row {} is outside [0, {})", i, rows);
    std::span<const float> r = row(i);
    out.features.insert(out.features.end(), r.begin(), r.end());
    if (regression()) {
      const auto first = target_values.begin() + i * outputs;
      out.target_values.insert(out.target_values.end(), first, first + outputs);
    } else {
      out.labels.push_back(labels[sz(i)]);
    }
  }
  return out;
}

TrainTest Dataset::split(double test_fraction, std::uint64_t seed) const {
  validate();
  if (!(test_fraction >= 0 && test_fraction <= 1))
    fail("Dataset::split: test_fraction must be in [0, 1], not {}", test_fraction);
  std::vector<std::int64_t> order(sz(rows));
  std::iota(order.begin(), order.end(), 0);
  ag::Rng rng(seed);
  shuffle(order, rng);
  const auto n_test = std::int64_t(std::llround(test_fraction * double(rows)));
  std::span<const std::int64_t> all(order);
  return {subset(all.subspan(sz(n_test))), subset(all.first(sz(n_test)))};
}

Standardization Dataset::standardize() {
  validate();
  // Population statistics (ddof 0), in double, as sklearn's StandardScaler.
  std::vector<double> sum(sz(cols)), sq(sz(cols));
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) sum[sz(j)] += features[sz(i * cols + j)];
  Standardization s;
  s.mean.resize(sz(cols)), s.stddev.resize(sz(cols));
  for (std::int64_t j = 0; j < cols; ++j)
    s.mean[sz(j)] = float(rows ? sum[sz(j)] / double(rows) : 0);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) {
      const double d = features[sz(i * cols + j)] - double(s.mean[sz(j)]);
      sq[sz(j)] += d * d;
    }
  for (std::int64_t j = 0; j < cols; ++j) {
    const double sd = rows ? std::sqrt(sq[sz(j)] / double(rows)) : 0;
    s.stddev[sz(j)] = sd > 0 ? float(sd) : 1.f;  // a constant column is only centred
  }
  standardize(s);
  return s;
}

void Dataset::standardize(const Standardization& s) {
  validate();
  if (std::int64_t(s.mean.size()) != cols || std::int64_t(s.stddev.size()) != cols)
    fail("Dataset::standardize: statistics of {} columns for a data set of {}", s.mean.size(),
         cols);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) {
      float& x = features[sz(i * cols + j)];
      x = (x - s.mean[sz(j)]) / s.stddev[sz(j)];
    }
}

void Dataset::scale(float factor) {
  for (float& x : features) x *= factor;
}

void Dataset::validate() const {
  if (rows < 0 || cols < 0 || classes < 0)
    fail("Dataset: rows ({}), cols ({}) and classes ({}) cannot be negative", rows, cols, classes);
  if (cols && rows > std::numeric_limits<std::int64_t>::max() / cols)
    fail("Dataset: {} rows of {} columns is too large", rows, cols);
  if (std::int64_t(features.size()) != rows * cols)
    fail("Dataset: {} features for {} rows of {} columns (expected {})", features.size(), rows,
         cols, rows * cols);
  if (outputs < 0) fail("Dataset: outputs ({}) cannot be negative", outputs);
  if (regression()) {  // Note [Classification or regression]
    if (classes != 0 || !labels.empty())
      fail("Dataset: a regression set ({} outputs) cannot have classes ({}) or labels ({})",
           outputs, classes, labels.size());
    if (rows > std::numeric_limits<std::int64_t>::max() / outputs)
      fail("Dataset: {} rows of {} outputs is too large", rows, outputs);
    if (std::int64_t(target_values.size()) != rows * outputs)
      fail("Dataset: {} target values for {} rows of {} outputs (expected {})",
           target_values.size(), rows, outputs, rows * outputs);
    for (std::size_t i = 0; i < target_values.size(); ++i)
      if (!std::isfinite(target_values[i]))
        fail("Dataset: target {} of row {} is {}, not a finite number", i % sz(outputs),
             i / sz(outputs), target_values[i]);
    return;
  }
  if (!target_values.empty())
    fail("Dataset: {} target values in a classification set (set outputs for regression)",
         target_values.size());
  if (std::int64_t(labels.size()) != rows)
    fail("Dataset: {} labels for {} rows", labels.size(), rows);
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      fail("Dataset: label {} of row {} is outside [0, {})", labels[i], i, classes);
}

// ---- Batch and DataLoader -----------------------------------------------------

ag::Tensor Batch::inputs(ag::TensorTape& tape) const {
  return tape.constant(ag::Shape{rows, cols}, x);
}

ag::Tensor Batch::targets(ag::TensorTape& tape, Target kind) const {
  check_targets(regression(), classes, "Batch::targets");
  return tape.constant(ag::Shape{rows, 1}, kind == Target::binary ? binary : sign);
}

ag::Tensor Batch::regression_targets(ag::TensorTape& tape) const {
  if (!regression()) fail("Batch::regression_targets: a classification batch has no real targets");
  return tape.constant(ag::Shape{rows, outputs}, target_values);
}

DataLoader::DataLoader(const Dataset& data, std::int64_t batch_size, bool shuffle,
                       std::uint64_t seed, bool drop_last)
    : data_(data),
      rows_(data.rows),
      batch_size_(batch_size),
      shuffle_(shuffle),
      drop_last_(drop_last),
      seed_(seed) {
  data.validate();
  if (batch_size <= 0) fail("DataLoader: batch_size must be positive, not {}", batch_size);
  // A batch never holds more than the data set, however large batch_size is.
  const std::int64_t most = std::min(batch_size, rows_);
  order_.resize(sz(rows_));
  x_.resize(sz(most * data.cols));
  // Only the kind of target the set has gets a buffer (Note [Classification or regression]).
  const std::int64_t label_rows = data.regression() ? 0 : most;
  y_.resize(sz(label_rows)), binary_.resize(sz(label_rows)), sign_.resize(sz(label_rows));
  target_values_.resize(sz(most * data.outputs));
  batch_.cols = data.cols, batch_.classes = data.classes, batch_.outputs = data.outputs;
  batch_.number = size();  // no epoch started: at the end
}

std::int64_t DataLoader::size() const {
  return drop_last_ ? rows_ / batch_size_ : (rows_ + batch_size_ - 1) / batch_size_;
}

DataLoader::Iterator DataLoader::begin() {
  if (data_.rows != rows_ || data_.features.size() != sz(rows_ * data_.cols) ||
      data_.cols != batch_.cols || data_.outputs != batch_.outputs ||
      data_.target_values.size() != sz(rows_ * data_.outputs) ||
      data_.labels.size() != (data_.regression() ? 0 : sz(rows_)))
    fail("DataLoader: the data set changed shape since the loader was made ({} x {}, now {} x {})",
         rows_, batch_.cols, data_.rows, data_.cols);
  epoch_ = next_epoch_++;
  std::iota(order_.begin(), order_.end(), 0);
  if (shuffle_) {
    // Note [DataLoader epochs]: the order depends on (seed, epoch) only.
    ag::Rng rng(seed_ ^ (0x9e3779b97f4a7c15ull * (epoch_ + 1)));
    nn::shuffle(order_, rng);
  }
  if (size() > 0)
    load(0);
  else
    batch_.number = 0;
  return Iterator(this);
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  const std::int64_t next = loader_->batch_.number + 1;
  if (next < loader_->size())
    loader_->load(next);
  else
    loader_->batch_.number = next;
  return *this;
}

void DataLoader::load(std::int64_t number) {
  const std::int64_t cols = data_.cols, outputs = data_.outputs, first = number * batch_size_;
  const std::int64_t n = std::min(batch_size_, rows_ - first);
  for (std::int64_t k = 0; k < n; ++k) {
    const std::int64_t i = order_[sz(first + k)];
    std::copy_n(data_.features.begin() + i * cols, cols, x_.begin() + k * cols);
    if (data_.regression()) {
      std::copy_n(data_.target_values.begin() + i * outputs, outputs,
                  target_values_.begin() + k * outputs);
      continue;
    }
    const std::int32_t label = data_.labels[sz(i)];
    y_[sz(k)] = label;
    binary_[sz(k)] = float(label);
    sign_[sz(k)] = 2.f * float(label) - 1.f;
  }
  const std::int64_t label_rows = data_.regression() ? 0 : n;
  batch_.x = std::span<const float>(x_).first(sz(n * cols));
  batch_.y = std::span<const std::int32_t>(y_).first(sz(label_rows));
  batch_.binary = std::span<const float>(binary_).first(sz(label_rows));
  batch_.sign = std::span<const float>(sign_).first(sz(label_rows));
  batch_.target_values = std::span<const float>(target_values_).first(sz(n * outputs));
  batch_.index = std::span<const std::int64_t>(order_).subspan(sz(first), sz(n));
  batch_.rows = n;
  batch_.number = number;
}

// ---- generators ---------------------------------------------------------------

namespace {

void check_noise(double noise, const char* who) {
  if (!(noise >= 0) || !std::isfinite(noise))
    fail("{}: noise must be a finite number >= 0, not {}", who, noise);
}

// NumPy's linspace(start, stop, n, endpoint)[i].
double linspace(double start, double stop, std::int64_t n, std::int64_t i, bool endpoint = true) {
  const std::int64_t steps = endpoint ? n - 1 : n;
  return steps <= 0 ? start : start + (stop - start) * double(i) / double(steps);
}

}  // namespace

Dataset xor_data() {
  Dataset d = empty_set(4, 2, 2);
  d.features = {0, 0, 0, 1, 1, 0, 1, 1};
  d.labels = {0, 1, 1, 0};
  return d;
}

Dataset moons(std::int64_t n, double noise, std::uint64_t seed) {
  if (n < 2) fail("moons: n must be at least 2, not {}", n);
  check_noise(noise, "moons");
  const std::int64_t n_out = n / 2, n_in = n - n_out;
  Dataset d = empty_set(n, 2, 2);
  ag::Rng rng(seed);
  const double pi = std::numbers::pi;
  for (std::int64_t i = 0; i < n; ++i) {
    const bool outer = i < n_out;
    const double t = outer ? linspace(0, pi, n_out, i) : linspace(0, pi, n_in, i - n_out);
    const double x = outer ? std::cos(t) : 1 - std::cos(t);
    const double y = outer ? std::sin(t) : 1 - std::sin(t) - 0.5;
    d.features[sz(2 * i)] = float(x + noise * rng.normal());
    d.features[sz(2 * i + 1)] = float(y + noise * rng.normal());
    d.labels[sz(i)] = outer ? 0 : 1;
  }
  return d;
}

Dataset circles(std::int64_t n, double noise, double factor, std::uint64_t seed) {
  if (n < 2) fail("circles: n must be at least 2, not {}", n);
  check_noise(noise, "circles");
  if (!(factor >= 0 && factor < 1)) fail("circles: factor must be in [0, 1), not {}", factor);
  const std::int64_t n_out = n / 2, n_in = n - n_out;
  Dataset d = empty_set(n, 2, 2);
  ag::Rng rng(seed);
  const double two_pi = 2 * std::numbers::pi;
  for (std::int64_t i = 0; i < n; ++i) {
    const bool outer = i < n_out;
    const double t =
        outer ? linspace(0, two_pi, n_out, i, false) : linspace(0, two_pi, n_in, i - n_out, false);
    const double r = outer ? 1 : factor;
    d.features[sz(2 * i)] = float(r * std::cos(t) + noise * rng.normal());
    d.features[sz(2 * i + 1)] = float(r * std::sin(t) + noise * rng.normal());
    d.labels[sz(i)] = outer ? 0 : 1;
  }
  return d;
}

Dataset spirals(std::int64_t n_per_class, std::int64_t classes, double noise, std::uint64_t seed) {
  if (n_per_class < 1) fail("spirals: n_per_class must be at least 1, not {}", n_per_class);
  if (classes < 2 || classes > 1000) fail("spirals: classes must be in [2, 1000], not {}", classes);
  check_noise(noise, "spirals");
  Dataset d = empty_set(n_per_class * classes, 2, classes);
  ag::Rng rng(seed);
  for (std::int64_t c = 0; c < classes; ++c)
    for (std::int64_t i = 0; i < n_per_class; ++i) {
      // CS231n: r = linspace(0, 1, N); t = linspace(4c, 4(c+1), N) + randn(N) * 0.2
      const double r = linspace(0, 1, n_per_class, i);
      const double t =
          linspace(4.0 * double(c), 4.0 * double(c + 1), n_per_class, i) + noise * rng.normal();
      const std::int64_t k = c * n_per_class + i;
      d.features[sz(2 * k)] = float(r * std::sin(t));
      d.features[sz(2 * k + 1)] = float(r * std::cos(t));
      d.labels[sz(k)] = std::int32_t(c);
    }
  return d;
}

Dataset blobs(std::int64_t n, std::int64_t centers, double spread, std::uint64_t seed,
              std::int64_t features) {
  if (centers < 1 || centers > 1000) fail("blobs: centers must be in [1, 1000], not {}", centers);
  if (n < centers) fail("blobs: n ({}) must be at least the number of centers ({})", n, centers);
  if (features < 1 || features > 10000)
    fail("blobs: features must be in [1, 10000], not {}", features);
  check_noise(spread, "blobs");
  Dataset d = empty_set(n, features, centers);
  ag::Rng rng(seed);
  std::vector<double> center(sz(centers * features));
  for (double& c : center) c = rng.uniform(-10, 10);  // sklearn's center_box
  std::int64_t k = 0;
  for (std::int64_t c = 0; c < centers; ++c) {
    const std::int64_t count = n / centers + (c < n % centers ? 1 : 0);
    for (std::int64_t i = 0; i < count; ++i, ++k) {
      for (std::int64_t j = 0; j < features; ++j)
        d.features[sz(k * features + j)] =
            float(center[sz(c * features + j)] + spread * rng.normal());
      d.labels[sz(k)] = std::int32_t(c);
    }
  }
  return d;
}

// Note [TensorFlow Playground's data sets]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Playground (tensorflow/playground, src/dataset.ts) draws its sets in [-6, 6]^2 with labels -1
// and 1, from an unseeded Math.random, so no seed reproduces its points; nn's sets are the
// lecture's, and differ from Playground's of the same name in more than scale:
// - gaussian: two_gaussians is Playground's own recipe, the one set made as it makes it.
// - xor: Playground's is uniform in [-5, 5]^2 (pushed 0.3 off the axes) labelled by the sign of
//   x1 x2, its noise shifting the point that decides the label, so noise flips labels near the
//   axes; xor_data is the four unit corners blurred by N(0, noise^2), labels exact.
// - circle: Playground's is a disc of radius 2.5 inside a ring from 3.5 to 5, noise flipping
//   labels again; circles is sklearn's make_circles, two blurred circles.
// - spiral: Playground's has two arms of radius 0 to 5 over 1.75 turns with uniform noise on
//   the coordinates; spirals is CS231n's, any number of arms, noise on the angle, and
//   two_spirals is Playground's own recipe, as two_gaussians is.
// Playground's habit of labelling by a noisy copy of the point is the one it keeps for its sets
// alone; nn keeps each label true to its generator and blurs the point instead.
Dataset two_gaussians(std::int64_t n, double noise, std::uint64_t seed) {
  if (n < 2) fail("gaussian: n must be at least 2, not {}", n);
  check_noise(noise, "gaussian");
  const double spread = std::sqrt(0.5 + 7 * noise);  // Playground: variance 0.5 at 0, 4 at 0.5
  const std::int64_t n_negative = n / 2;
  Dataset d = empty_set(n, 2, 2);
  ag::Rng rng(seed);
  for (std::int64_t i = 0; i < n; ++i) {
    const bool negative = i < n_negative;
    const double center = negative ? -2 : 2;
    d.features[sz(2 * i)] = float(rng.normal(center, spread));
    d.features[sz(2 * i + 1)] = float(rng.normal(center, spread));
    d.labels[sz(i)] = negative ? 0 : 1;
  }
  return d;
}

Dataset two_spirals(std::int64_t n, double noise, std::uint64_t seed) {
  if (n < 2) fail("two-spirals: n must be at least 2, not {}", n);
  check_noise(noise, "two-spirals");
  const std::int64_t n_negative = n / 2;
  Dataset d = empty_set(n, 2, 2);
  ag::Rng rng(seed);
  const double pi = std::numbers::pi;
  for (std::int64_t k = 0; k < n; ++k) {
    const bool negative = k < n_negative;
    const std::int64_t i = negative ? k : k - n_negative;
    const double arm_points = double(negative ? n_negative : n - n_negative);
    const double r = double(i) / arm_points * 5;
    const double t = 1.75 * double(i) / arm_points * 2 * pi + (negative ? pi : 0);
    const double shift1 = rng.uniform(-1, 1) * noise, shift2 = rng.uniform(-1, 1) * noise;
    d.features[sz(2 * k)] = float(r * std::sin(t) + shift1);
    d.features[sz(2 * k + 1)] = float(r * std::cos(t) + shift2);
    d.labels[sz(k)] = negative ? 0 : 1;
  }
  return d;
}

Dataset xor_data(std::int64_t n, double noise, std::uint64_t seed) {
  if (n < 4) fail("xor: n must be at least 4 (one point per corner), not {}", n);
  check_noise(noise, "xor");
  const Dataset corners = xor_data();
  Dataset d = empty_set(n, 2, 2);
  ag::Rng rng(seed);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t corner = i % 4;
    // With no noise the corners stay exact (no draw is added), as xor_data() has them.
    for (std::int64_t j = 0; j < 2; ++j)
      d.features[sz(2 * i + j)] =
          noise == 0 ? corners.features[sz(2 * corner + j)]
                     : float(double(corners.features[sz(2 * corner + j)]) + noise * rng.normal());
    d.labels[sz(i)] = corners.labels[sz(corner)];
  }
  return d;
}

namespace {

// TensorFlow Playground's regression sets share their sampling (data.hpp): the point uniform in
// [-6, 6]^2, the target computed at the point shifted by noise * U(-6, 6) per coordinate.
template <typename TargetAt>
Dataset playground_regression(std::int64_t n, double noise, std::uint64_t seed, const char* who,
                              TargetAt target_at) {
  if (n < 1) fail("{}: n must be at least 1, not {}", who, n);
  check_noise(noise, who);
  constexpr double kRadius = 6;
  Dataset d = empty_set(n, 2, 0);
  d.labels.clear();
  d.outputs = 1;
  d.target_names = {"y"};
  d.target_values.resize(sz(n));
  ag::Rng rng(seed);
  for (std::int64_t i = 0; i < n; ++i) {
    const double x1 = rng.uniform(-kRadius, kRadius), x2 = rng.uniform(-kRadius, kRadius);
    const double shift1 = rng.uniform(-kRadius, kRadius) * noise;
    const double shift2 = rng.uniform(-kRadius, kRadius) * noise;
    d.features[sz(2 * i)] = float(x1);
    d.features[sz(2 * i + 1)] = float(x2);
    d.target_values[sz(i)] = float(target_at(x1 + shift1, x2 + shift2));
  }
  return d;
}

}  // namespace

Dataset plane(std::int64_t n, double noise, std::uint64_t seed) {
  // The playground's linear scale from [-10, 10] to [-1, 1], unclamped.
  return playground_regression(n, noise, seed, "plane",
                               [](double x1, double x2) { return (x1 + x2) / 10; });
}

Dataset multi_gaussian(std::int64_t n, double noise, std::uint64_t seed) {
  struct Bump {
    double x1, x2, sign;
  };
  static constexpr Bump kBumps[] = {{-4, 2.5, 1},   {0, 2.5, -1}, {4, 2.5, 1},
                                    {-4, -2.5, -1}, {0, -2.5, 1}, {4, -2.5, -1}};
  return playground_regression(n, noise, seed, "multi_gaussian", [](double x1, double x2) {
    double target = 0;
    for (const Bump& b : kBumps) {
      // The playground's clamped scale from distance [0, 2] to height [1, 0].
      const double dx = x1 - b.x1, dy = x2 - b.x2;
      const double height = std::clamp(1 - std::sqrt(dx * dx + dy * dy) / 2, 0.0, 1.0);
      if (std::abs(b.sign * height) > std::abs(target)) target = b.sign * height;
    }
    return target;
  });
}

// ---- input features -------------------------------------------------------------

std::string_view input_feature_name(InputFeature f) {
  switch (f) {
    case InputFeature::x1: return "x1";
    case InputFeature::x2: return "x2";
    case InputFeature::x1_squared: return "x1^2";
    case InputFeature::x2_squared: return "x2^2";
    case InputFeature::x1_times_x2: return "x1*x2";
    case InputFeature::sin_x1: return "sin_x1";
    case InputFeature::sin_x2: return "sin_x2";
  }
  return "?";
}

double input_feature_value(InputFeature f, double x1, double x2) {
  switch (f) {
    case InputFeature::x1: return x1;
    case InputFeature::x2: return x2;
    case InputFeature::x1_squared: return x1 * x1;
    case InputFeature::x2_squared: return x2 * x2;
    case InputFeature::x1_times_x2: return x1 * x2;
    case InputFeature::sin_x1: return std::sin(x1);
    case InputFeature::sin_x2: return std::sin(x2);
  }
  return 0;
}

std::string input_features_str(std::span<const InputFeature> features) {
  std::string out;
  for (const InputFeature f : features) {
    if (!out.empty()) out += ',';
    out += input_feature_name(f);
  }
  return out;
}

std::vector<InputFeature> parse_input_features(std::string_view list) {
  std::vector<InputFeature> out;
  const std::string known = input_features_str(kInputFeatures);
  if (list.empty()) fail("no input features: choose from {}", known);
  for (std::size_t at = 0; at <= list.size();) {
    std::size_t end = list.find(',', at);
    if (end == std::string_view::npos) end = list.size();
    const std::string_view name = list.substr(at, end - at);
    const auto* it = std::find_if(std::begin(kInputFeatures), std::end(kInputFeatures),
                                  [&](InputFeature f) { return input_feature_name(f) == name; });
    if (it == std::end(kInputFeatures))
      fail("unknown input feature '{}': the features are {}", name, known);
    if (std::find(out.begin(), out.end(), *it) != out.end())
      fail("input feature '{}' is listed twice", name);
    out.push_back(*it);
    at = end + 1;
  }
  return out;
}

Dataset expand_features(const Dataset& data, std::span<const InputFeature> features) {
  data.validate();
  if (data.cols != 2)
    fail("expand_features: the input features are of two columns (x1, x2), this data has {}",
         data.cols);
  if (features.empty()) fail("expand_features: no input features");
  Dataset d = data;
  d.cols = std::int64_t(features.size());
  d.features.assign(sz(d.rows * d.cols), 0.f);
  d.feature_names.clear();
  for (const InputFeature f : features) d.feature_names.emplace_back(input_feature_name(f));
  for (std::int64_t i = 0; i < d.rows; ++i) {
    const double x1 = data.features[sz(2 * i)], x2 = data.features[sz(2 * i + 1)];
    for (std::int64_t j = 0; j < d.cols; ++j)
      d.features[sz(i * d.cols + j)] = float(input_feature_value(features[sz(j)], x1, x2));
  }
  return d;
}

// ---- CSV ----------------------------------------------------------------------

namespace {

// A class index from a CSV or IDX file is at most this (a confusion matrix
// holds classes^2 counts).
constexpr std::int64_t kMaxClasses = 65536;

// A CSV or IDX file is read whole (Note [Bounded reads]); 1 GiB is twenty times Fashion-MNIST.
constexpr std::size_t kMaxDataFileBytes = std::size_t{1} << 30;

std::string read_file(const std::string& path) {
  try {
    return ag::read_file(path, kMaxDataFileBytes, "data");
  } catch (const ag::ReadError& e) {
    fail("{}: cannot {}: {}", path, e.opened ? "read" : "open", e.reason);
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A field's text with its quotes removed and "" read as ".
std::string unquote(std::string_view field) {
  if (field.size() < 2 || field.front() != '"') return std::string(field);
  std::string out;
  for (std::size_t i = 1; i + 1 < field.size(); ++i) {
    out += field[i];
    if (field[i] == '"') ++i;  // the second quote of ""
  }
  return out;
}

struct CsvReader {
  const std::string& file;  // the name errors give
  const CsvOptions& options;
  std::vector<std::string> names;  // header names, or empty

  // "column 'x2'" or "column 3" (counted from 0).
  std::string column(std::size_t j) const {
    return j < names.size() ? fmt::format("column '{}'", names[j]) : fmt::format("column {}", j);
  }

  // Splits `line` into `fields` (views into it, quotes kept for unquote()).
  void split(std::string_view line, std::int64_t line_no, std::vector<std::string_view>& fields) {
    fields.clear();
    std::size_t i = 0;
    while (true) {
      std::size_t start = i;
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      if (i < line.size() && line[i] == '"') {
        for (++i;; ++i) {
          if (i >= line.size())
            fail("{}:{}: {} has a quote that is not closed (a field cannot span lines)", file,
                 line_no, column(fields.size()));
          if (line[i] == '"') {
            if (i + 1 < line.size() && line[i + 1] == '"')
              ++i;
            else
              break;
          }
        }
        ++i;
      }
      while (i < line.size() && line[i] != options.delimiter) ++i;
      fields.push_back(trim(line.substr(start, i - start)));
      if (i >= line.size()) break;
      ++i;  // the delimiter
    }
  }

  // The cell as a quote-free view (numbers may be quoted: "1.5").
  static std::string_view bare(std::string_view cell) {
    if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"')
      return trim(cell.substr(1, cell.size() - 2));
    return cell;
  }

  float number(std::string_view cell, std::int64_t line_no, std::size_t j) const {
    std::string_view s = bare(cell);
    if (s.empty()) fail("{}:{}, {}: empty cell", file, line_no, column(j));
    std::string_view digits = s.front() == '+' ? s.substr(1) : s;
    float value = 0;
    const auto [end, ec] = ag::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec == std::errc::result_out_of_range)
      fail("{}:{}, {}: '{}' is out of range for a float", file, line_no, column(j), s);
    if (ec != std::errc() || end != digits.data() + digits.size())
      fail("{}:{}, {}: '{}' is not a number", file, line_no, column(j), s);
    if (!std::isfinite(value))
      fail("{}:{}, {}: '{}' is not a finite number", file, line_no, column(j), s);
    return value;
  }

  std::int32_t class_index(std::string_view cell, std::int64_t line_no, std::size_t j) const {
    std::string_view s = bare(cell);
    double value = -1;
    const auto [end, ec] = ag::from_chars(s.data(), s.data() + s.size(), value);
    const bool whole =
        ec == std::errc() && end == s.data() + s.size() && value >= 0 && value == std::floor(value);
    if (!whole)
      fail(
          "{}:{}, {}: '{}' is not a class index (an integer from 0); set "
          "CsvOptions::map_labels to number the distinct labels",
          file, line_no, column(j), s);
    if (value >= double(kMaxClasses))
      fail(
          "{}:{}, {}: class index {} is too large (at most {}); set CsvOptions::map_labels to "
          "number the distinct labels",
          file, line_no, column(j), s, kMaxClasses - 1);
    return std::int32_t(value);
  }
};

bool blank(std::string_view line) { return trim(line).empty(); }

}  // namespace

Dataset load_csv(const std::string& path, const CsvOptions& options) {
  return parse_csv(read_file(path), path, options);
}

Dataset parse_csv(std::string_view text, const std::string& name, const CsvOptions& options) {
  // A UTF-8 byte-order mark (Excel writes one) is not part of the first column's name.
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  CsvReader reader{name, options, {}};
  std::vector<std::string_view> fields;
  std::vector<std::string> label_texts;  // per row, when map_labels
  std::vector<std::int64_t> label_lines;
  Dataset d;
  std::size_t ncols = 0, label = 0;
  bool have_layout = false;
  std::int64_t line_no = 0, header_line = 0;
  // Regression (Note [Classification or regression]): the target columns in the order given,
  // and per column whether it is one.
  const bool regression = !options.target_names.empty() || !options.target_indices.empty();
  std::vector<std::size_t> targets;
  std::vector<bool> is_target;

  // The target columns of a regression set, each named once.
  auto target_layout = [&](std::size_t n) {
    if (!options.target_names.empty() && !options.target_indices.empty())
      fail("{}: the target columns are given both by name and by index; give one list", name);
    for (const std::string& t : options.target_names) {
      if (!options.header)
        fail("{}: the target column is named '{}', but CsvOptions::header is false", name, t);
      auto it = std::find(reader.names.begin(), reader.names.end(), t);
      if (it == reader.names.end())
        fail("{}: no column named '{}' (the columns are {})", name, t,
             fmt::join(reader.names, ", "));
      targets.push_back(std::size_t(it - reader.names.begin()));
    }
    for (const std::int64_t t : options.target_indices) {
      const std::int64_t k = t < 0 ? std::int64_t(n) + t : t;
      if (k < 0 || k >= std::int64_t(n))
        fail("{}: target column {} is out of range for {} columns", name, t, n);
      targets.push_back(std::size_t(k));
    }
    is_target.assign(n, false);
    for (const std::size_t t : targets) {
      if (is_target[t]) fail("{}: {} is a target column twice", name, reader.column(t));
      is_target[t] = true;
    }
    if (targets.size() >= n) fail("{}: no feature columns: every column is a target", name);
    for (std::size_t j = 0; j < reader.names.size(); ++j)
      if (!is_target[j]) d.feature_names.push_back(reader.names[j]);
    for (const std::size_t t : targets)
      d.target_names.push_back(t < reader.names.size() ? reader.names[t]
                                                       : fmt::format("column {}", t));
    d.outputs = std::int64_t(targets.size());
    have_layout = true;
  };

  // Fixes the column count and the label column once the first line is known.
  auto layout = [&](std::size_t n) {
    ncols = n;
    if (regression) return target_layout(n);
    if (!options.label_name.empty()) {
      if (!options.header)
        fail("{}: the label column is named '{}', but CsvOptions::header is false", name,
             options.label_name);
      auto it = std::find(reader.names.begin(), reader.names.end(), options.label_name);
      if (it == reader.names.end())
        fail("{}: no column named '{}' (the columns are {})", name, options.label_name,
             fmt::join(reader.names, ", "));
      label = std::size_t(it - reader.names.begin());
    } else {
      const std::int64_t k =
          options.label_index < 0 ? std::int64_t(n) + options.label_index : options.label_index;
      if (k < 0 || k >= std::int64_t(n))
        fail("{}: label column {} is out of range for {} columns", name, options.label_index, n);
      label = std::size_t(k);
    }
    if (n < 2) fail("{}: no feature columns: the only column is the label", name);
    is_target.assign(n, false);
    is_target[label] = true;
    for (std::size_t j = 0; j < reader.names.size(); ++j)
      if (j != label) d.feature_names.push_back(reader.names[j]);
    have_layout = true;
  };

  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (blank(line)) continue;
    reader.split(line, line_no, fields);
    if (options.header && header_line == 0) {
      header_line = line_no;
      for (std::string_view f : fields) reader.names.push_back(unquote(f));
      layout(fields.size());
      continue;
    }
    if (!have_layout) layout(fields.size());
    if (fields.size() != ncols)
      fail("{}:{}: {} field{}, expected {}", name, line_no, fields.size(),
           fields.size() == 1 ? "" : "s", ncols);
    for (std::size_t j = 0; j < ncols; ++j)
      if (!is_target[j]) d.features.push_back(reader.number(fields[j], line_no, j));
    if (regression) {
      for (const std::size_t t : targets)
        d.target_values.push_back(reader.number(fields[t], line_no, t));
    } else if (options.map_labels) {
      label_texts.push_back(unquote(fields[label]));
      label_lines.push_back(line_no);
    } else {
      d.labels.push_back(reader.class_index(fields[label], line_no, label));
    }
    ++d.rows;
  }
  if (!have_layout) fail("{}: empty file", name);
  if (d.rows == 0) fail("{}: no data rows after the header (line {})", name, header_line);
  d.cols = std::int64_t(ncols) - (regression ? std::int64_t(targets.size()) : 1);

  if (regression) {
    // Real-valued targets: no classes to number.
  } else if (options.map_labels) {
    // Note [Numeric labels]: when every label reads as a finite number the labels are numbers,
    // as pandas reads such a column and torch holds it: 1, 1.0 and 01 are one class, named by
    // the number ("1"), and classes are numbered in numeric order (2 before 10). Otherwise
    // they are texts, numbered in sorted order.
    std::vector<double> values(label_texts.size());
    bool numeric = true;
    for (std::size_t i = 0; i < label_texts.size() && numeric; ++i) {
      std::string_view s = label_texts[i];
      if (s.starts_with('+')) s.remove_prefix(1);
      const auto [e, ec] = ag::from_chars(s.data(), s.data() + s.size(), values[i]);
      numeric = ec == std::errc() && e == s.data() + s.size() && std::isfinite(values[i]);
    }
    std::vector<std::string> distinct;
    if (numeric) {
      std::vector<double> sorted = values;
      std::sort(sorted.begin(), sorted.end());
      sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());  // -0 == 0
      if (std::int64_t(sorted.size()) > kMaxClasses)
        fail("{}: {} distinct labels, more than {} classes", name, sorted.size(), kMaxClasses);
      for (const double v : sorted) distinct.push_back(fmt::format("{}", v == 0 ? 0.0 : v));
      for (const double v : values)
        d.labels.push_back(
            std::int32_t(std::lower_bound(sorted.begin(), sorted.end(), v) - sorted.begin()));
    } else {
      distinct = label_texts;
      std::sort(distinct.begin(), distinct.end());
      distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
      if (std::int64_t(distinct.size()) > kMaxClasses)
        fail("{}: {} distinct labels, more than {} classes", name, distinct.size(), kMaxClasses);
      std::map<std::string, std::int32_t, std::less<>> index;
      for (std::size_t i = 0; i < distinct.size(); ++i) index[distinct[i]] = std::int32_t(i);
      for (const std::string& t : label_texts) d.labels.push_back(index.find(t)->second);
    }
    d.classes = std::int64_t(distinct.size());
    d.class_names = std::move(distinct);
  } else {
    d.classes = 1 + *std::max_element(d.labels.begin(), d.labels.end());
  }
  d.validate();
  return d;
}

// ---- IDX ----------------------------------------------------------------------

namespace {

// An IDX file's bytes read in order, from memory: a plain file as it is, a gzip one (1f 8b)
// inflated by zlib only as far as the caller reads, member after member (a gzip file may be
// several concatenated), so a header that lies costs no more than the data that is there.
class IdxReader {
 public:
  IdxReader(std::span<const std::byte> bytes, const std::string& name)
      : bytes_(bytes), name_(name) {
    gzip_ = bytes.size() >= 2 && bytes[0] == std::byte{0x1f} && bytes[1] == std::byte{0x8b};
#if TAPEGRAD_HAVE_ZLIB
    if (gzip_ && ::inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK)  // 16: a gzip wrapper, not zlib's
      fail("{}: cannot inflate gzip data: out of memory", name);
#else
    if (gzip_)
      fail(
          "{}: gzip-compressed, and this build of tapegrad (WebAssembly, without zlib) reads "
          "only uncompressed IDX files: gunzip it first",
          name_);
#endif
  }
  ~IdxReader() {
#if TAPEGRAD_HAVE_ZLIB
    if (gzip_) ::inflateEnd(&z_);
#endif
  }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;

  bool gzip() const { return gzip_; }
  std::int64_t file_size() const { return std::int64_t(bytes_.size()); }
  std::int64_t offset() const { return offset_; }
  // " of the uncompressed data" for a gzip file: its offsets are not the file's.
  std::string_view where() const { return gzip_ ? " of the uncompressed data" : ""; }

  // Reads up to n bytes; fewer only at the end of the data. Corrupt gzip data throws; a
  // stream that ends early returns short and sets ended_early().
  std::int64_t read(void* buffer, std::int64_t n) {
    auto* out = static_cast<unsigned char*>(buffer);
    std::int64_t got = 0;
    if (!gzip_) {
      got = std::clamp<std::int64_t>(file_size() - offset_, 0, n);
      if (got > 0) std::memcpy(out, bytes_.data() + offset_, sz(got));
      offset_ += got;
      return got;
    }
#if TAPEGRAD_HAVE_ZLIB
    while (got < n && (!member_ended_ || next_member())) {
      if (z_.avail_in == 0) {  // zlib counts in 32 bits: a file beyond 4 GiB goes in pieces
        const std::size_t piece = std::min<std::size_t>(bytes_.size() - fed_, 1u << 30);
        z_.next_in = reinterpret_cast<const Bytef*>(bytes_.data() + fed_);
        z_.avail_in = uInt(piece);
        fed_ += piece;
      }
      const auto room = uInt(std::min<std::int64_t>(n - got, 1 << 30));
      z_.next_out = out + got;
      z_.avail_out = room;
      const int r = ::inflate(&z_, Z_NO_FLUSH);
      got += room - z_.avail_out;
      if (r == Z_STREAM_END) {
        member_ended_ = true;
      } else if (r == Z_BUF_ERROR) {  // no progress: the input ends inside a member
        ended_early_ = true;
        break;
      } else if (r != Z_OK) {
        const char* why = r == Z_MEM_ERROR ? "out of memory" : z_.msg ? z_.msg : ::zError(r);
        fail("{}: corrupt gzip data after byte {}{}: {}", name_, offset_ + got, where(), why);
      }
    }
#endif
    offset_ += got;
    return got;
  }
  bool ended_early() const { return ended_early_; }
  // Where the compressed input has been read to.
#if TAPEGRAD_HAVE_ZLIB
  std::size_t consumed() const { return fed_ - z_.avail_in; }
#else
  std::size_t consumed() const { return fed_; }
#endif

 private:
#if TAPEGRAD_HAVE_ZLIB
  // After a member's end, another member or the end of the file; anything else is an error.
  bool next_member() {
    const std::size_t at = consumed();
    if (at == bytes_.size()) return false;
    if (bytes_.size() - at < 2 || bytes_[at] != std::byte{0x1f} ||
        bytes_[at + 1] != std::byte{0x8b})
      fail("{}: {} unexpected bytes at byte {} of the file, after the end of the gzip data", name_,
           bytes_.size() - at, at);
    ::inflateReset(&z_);
    member_ended_ = false;
    return true;
  }
#endif

  std::span<const std::byte> bytes_;
  const std::string& name_;
#if TAPEGRAD_HAVE_ZLIB
  z_stream z_{};
  bool member_ended_ = false;
#endif
  std::size_t fed_ = 0;  // bytes handed to zlib so far
  bool gzip_ = false, ended_early_ = false;
  std::int64_t offset_ = 0;
};

std::string_view idx_type_name(unsigned char t) {
  switch (t) {
    case 0x09: return "int8";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
  }
}

// Deflate expands at most 1032:1, so a gzip file of c bytes holds at most about
// 1032 c: a header promising more cannot be honest, and is not allocated up front.
constexpr std::int64_t kMaxDeflateRatio = 1032;

}  // namespace

IdxArray load_idx(const std::string& path) {
  const std::string bytes = read_file(path);
  return parse_idx(std::as_bytes(std::span(bytes)), path);
}

IdxArray parse_idx(std::span<const std::byte> bytes, const std::string& name) {
  IdxReader in(bytes, name);
  unsigned char magic[4];
  const std::int64_t got = in.read(magic, 4);
  // A gzip file that inflates to nothing is not empty: it was cut short, or compressed nothing.
  if (got == 0 && in.gzip())
    fail("{}: {} (expected an IDX header)", name,
         in.ended_early() ? "truncated gzip data: the stream ends before its first byte"
                          : "the gzip data inflates to nothing");
  if (got == 0) fail("{}: empty file (expected an IDX header)", name);
  if (got < 4)
    fail("{}: truncated at byte {}{}: an IDX file starts with a 4-byte magic number", name, got,
         in.where());
  if (magic[0] != 0 || magic[1] != 0 || magic[2] == 0 || magic[3] == 0)
    fail(
        "{}: wrong magic number at byte 0{}: found {:02x} {:02x} {:02x} {:02x}, expected 00 00 08 "
        "0N (an IDX file of unsigned bytes with N dimensions)",
        name, in.where(), magic[0], magic[1], magic[2], magic[3]);
  if (magic[2] != 0x08)
    fail(
        "{}: IDX element type 0x{:02x} ({}) at byte 2{} is not supported: only unsigned bytes "
        "(0x08) are",
        name, magic[2], idx_type_name(magic[2]), in.where());
  const int ndim = magic[3];
  if (ndim > ag::kMaxRank)
    fail("{}: byte 3{} declares {} dimensions, more than {}", name, in.where(), ndim, ag::kMaxRank);

  IdxArray out;
  std::int64_t total = 1;
  bool overflow = false;
  for (int k = 0; k < ndim; ++k) {
    unsigned char b[4];
    if (in.read(b, 4) < 4)
      fail("{}: truncated at byte {}{}: the header declares {} dimensions of 4 bytes each", name,
           in.offset(), in.where(), ndim);
    const std::int64_t d = std::int64_t(std::uint32_t(b[0]) << 24 | std::uint32_t(b[1]) << 16 |
                                        std::uint32_t(b[2]) << 8 | b[3]);
    out.dims.push_back(d);
    overflow = overflow || __builtin_mul_overflow(total, d, &total);
  }
  const std::int64_t header = 4 + 4 * std::int64_t(ndim);
  const std::string declared =
      overflow ? fmt::format("{} (more than 2^63 bytes)", ag::shape_str(out.dims))
               : fmt::format("{} = {} bytes of data", ag::shape_str(out.dims), total);

  // Note: nothing below allocates more than the file can hold.
  if (!in.gzip()) {
    const std::int64_t available = in.file_size() - header;
    if (overflow || total > available)
      fail(
          "{}: truncated at byte {}: the header declares {}, the file has {} after the {}-byte "
          "header",
          name, in.file_size(), declared, available, header);
    if (total < available)
      fail("{}: {} unexpected bytes at byte {}: the header declares {}", name, available - total,
           header + total, declared);
    const auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data()) + header;
    out.data.assign(data, data + total);
    return out;
  }
  if (overflow || total / kMaxDeflateRatio > in.file_size())
    fail(
        "{}: the header declares {}, more than a {}-byte gzip file can hold (deflate expands at "
        "most {}:1)",
        name, declared, in.file_size(), kMaxDeflateRatio);
  try {
    // Bounded by the file (above), and only reserved: the vector grows as data arrives, so
    // a header that lies costs no more than twice the data that is there.
    out.data.reserve(sz(total));
    std::int64_t have = 0;
    while (have < total) {
      const std::int64_t chunk = std::min(total - have, std::max<std::int64_t>(have, 1 << 16));
      out.data.resize(sz(have + chunk));
      const std::int64_t r = in.read(out.data.data() + have, chunk);
      have += r;
      if (r < chunk)
        fail("{}: truncated at byte {}{}: the header declares {}, the file has {}{}", name,
             header + have, in.where(), declared, have,
             in.ended_early() ? " (the gzip stream ends early)" : "");
    }
  } catch (const std::bad_alloc&) {
    fail("{}: not enough memory for the {} the header declares", name, declared);
  }
  unsigned char extra;
  if (in.read(&extra, 1) == 1)
    fail("{}: unexpected bytes at byte {}{}: the header declares {}", name, header + total,
         in.where(), declared);
  if (in.ended_early())
    fail(
        "{}: the gzip stream ends early, at byte {} of the file: the checksum after the data is "
        "missing (truncated file)",
        name, in.consumed());
  return out;
}

Dataset load_mnist(const std::string& images_path, const std::string& labels_path,
                   std::int64_t classes) {
  if (classes < 1 || classes > 256)
    fail("load_mnist: classes must be in [1, 256], not {}", classes);
  IdxArray images = load_idx(images_path);
  if (images.dims.size() != 3)
    fail("{}: expected images of 3 dimensions (n, rows, cols), found {}", images_path,
         ag::shape_str(images.dims));
  const IdxArray labels = load_idx(labels_path);
  if (labels.dims.size() != 1)
    fail("{}: expected labels of 1 dimension (n,), found {}", labels_path,
         ag::shape_str(labels.dims));
  if (images.dims[0] != labels.dims[0])
    fail("{} holds {} images but {} holds {} labels", images_path, images.dims[0], labels_path,
         labels.dims[0]);
  Dataset d;
  d.rows = images.dims[0], d.cols = images.dims[1] * images.dims[2], d.classes = classes;
  d.labels.resize(sz(d.rows));
  for (std::int64_t i = 0; i < d.rows; ++i) {
    const std::uint8_t l = labels.data[sz(i)];
    if (l >= classes)
      fail("{}: label {} at byte {} is not below {} classes", labels_path, l, 8 + i, classes);
    d.labels[sz(i)] = l;
  }
  try {
    d.features.resize(images.data.size());
  } catch (const std::bad_alloc&) {
    fail("{}: not enough memory for {} images as floats", images_path, d.rows);
  }
  for (std::size_t k = 0; k < images.data.size(); ++k)
    d.features[k] = float(images.data[k]) / 255.f;
  return d;
}

Dataset load_fashion_mnist(Split split, const std::string& dir) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  auto find = [&](const std::string& name) {
    namespace fs = std::filesystem;
    for (const std::string& candidate : {name + ".gz", name}) {
      const fs::path p = fs::path(dir) / candidate;
      std::error_code ec;
      if (fs::exists(p, ec)) return p.string();
    }
    const std::string missing = (std::filesystem::path(dir) / (name + ".gz")).string();
    if (dir == kFashionMnistDir)
      fail(
          "Fashion-MNIST is not installed: {} is missing; install Debian's package with "
          "`apt-get install dataset-fashion-mnist`, or pass the directory that holds the files",
          missing);
    fail("{}: no Fashion-MNIST file {}.gz (or {})", dir, name, name);
  };
  const std::string images = find(prefix + "-images-idx3-ubyte");
  const std::string labels = find(prefix + "-labels-idx1-ubyte");
  Dataset d = load_mnist(images, labels, 10);
  d.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return d;
}

}  // namespace nn
