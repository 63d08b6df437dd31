// Data sets in memory, a DataLoader that batches them without allocating, the
// lecture's synthetic sets (XOR, moons, circles, spirals, blobs), TensorFlow Playground's
// regression sets (plane, multi-gaussian), CSV and IDX loaders.

#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tapegrad/tensor.hpp"

namespace nn {

// How a binary label becomes a float target: 0/1 for MSE and binary
// cross-entropy, -1/+1 for micrograd's hinge loss. Both have shape (rows, 1).
enum class Target { binary, sign };

// Per-column statistics of a training set, to standardize a test set the same way.
struct Standardization {
  std::vector<float> mean, stddev;
};

struct TrainTest;

// Note [Classification or regression]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A Dataset is one or the other, never both, and validate() refuses a mixture:
// - classification: one class index in [0, classes) per row in `labels`; `outputs` is 0 and
//   `target_values` empty.
// - regression: `outputs` >= 1 real-valued targets per row in `target_values`, row-major
//   (rows, outputs), every one finite; `labels` is empty and `classes` 0.
// The classification members (labels, targets(), class_counts()) are what they always were;
// regression adds members beside them instead of reinterpreting them, so code written for
// classes never meets a real-valued target by accident: the class accessors refuse a regression
// set by name.

// A table in memory: `rows` examples of `cols` float features, row after row, and per row
// either a class index or real-valued targets (Note [Classification or regression]). The
// loaders and generators below fill it; validate() checks that the sizes agree.
struct Dataset {
  std::vector<float> features;       // row-major (rows, cols)
  std::vector<std::int32_t> labels;  // class index per row (classification)
  std::int64_t rows = 0, cols = 0, classes = 0;
  std::vector<std::string> feature_names;  // a CSV header; else empty
  std::vector<std::string> class_names;    // when known ("T-shirt/top", a CSV's label texts)
  std::vector<float> target_values;        // regression: row-major (rows, outputs)
  std::int64_t outputs = 0;                // regression: targets per row; 0 for classification
  std::vector<std::string> target_names;   // regression: a CSV's target columns, "y" or "y1"...

  bool regression() const { return outputs > 0; }
  std::span<const float> row(std::int64_t i) const;
  // The whole table as a (rows, cols) float32 constant of `tape`.
  ag::Tensor inputs(ag::TensorTape& tape) const;
  // The labels as (rows, 1) float32 targets; the set must have at most 2 classes.
  ag::Tensor targets(ag::TensorTape& tape, Target kind) const;
  // A regression set's targets as a (rows, outputs) float32 constant of `tape`.
  ag::Tensor regression_targets(ag::TensorTape& tape) const;
  std::vector<std::int64_t> class_counts() const;

  // The given rows, in that order (a copy).
  Dataset subset(std::span<const std::int64_t> indices) const;
  // A seeded shuffle, then the first round(test_fraction * rows) rows are the test set.
  TrainTest split(double test_fraction, std::uint64_t seed) const;

  // Each column to mean 0 and standard deviation 1 (a constant column keeps
  // its spread of 1); returns the statistics, to apply to a test set with standardize(s).
  Standardization standardize();
  void standardize(const Standardization& s);
  void scale(float factor);  // every feature times factor (pixels / 255)

  // Throws ag::Error if the sizes disagree, a label is outside [0, classes), a target is not
  // finite, or the set mixes classification and regression (Note [Classification or regression]).
  void validate() const;
};

struct TrainTest {
  Dataset train, test;
};

// One batch of a DataLoader: views into the loader's buffers, valid until the
// next batch. `index` holds the dataset rows the batch was copied from.
// A regression batch (Note [Classification or regression]) has empty y, binary and sign, and its
// targets in target_values.
struct Batch {
  std::span<const float> x;              // (rows, cols), row-major
  std::span<const std::int32_t> y;       // class per row: cross_entropy's labels
  std::span<const float> binary;         // y as float, (rows, 1)
  std::span<const float> sign;           // 2 y - 1, (rows, 1)
  std::span<const float> target_values;  // regression: (rows, outputs), row-major
  std::span<const std::int64_t> index;
  std::int64_t rows = 0, cols = 0, classes = 0, outputs = 0;
  std::int64_t number = 0;  // the batch's position in its epoch

  bool regression() const { return outputs > 0; }
  ag::Tensor inputs(ag::TensorTape& tape) const;                // x as a (rows, cols) constant
  ag::Tensor targets(ag::TensorTape& tape, Target kind) const;  // (rows, 1)
  ag::Tensor regression_targets(ag::TensorTape& tape) const;    // (rows, outputs)
};

// Note [DataLoader epochs]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// Each range-for over a DataLoader is one epoch, as iterating a PyTorch
// DataLoader is: begin() starts the next epoch. With shuffle, epoch e visits
// the rows in a Fisher-Yates permutation drawn from an ag::Rng seeded by
// (seed, e) alone, so a run resumed at epoch e (set_epoch) sees the same
// batches as one that never stopped, and every seed and epoch differ. The
// last batch is partial when batch_size does not divide the rows, unless
// drop_last. Batches are copied into buffers sized once, here: iterating
// allocates nothing.
class DataLoader {
 public:
  // Borrows `data`, which must outlive the loader (a temporary is refused).
  DataLoader(const Dataset& data, std::int64_t batch_size, bool shuffle = true,
             std::uint64_t seed = 0, bool drop_last = false);
  DataLoader(Dataset&&, std::int64_t, bool = true, std::uint64_t = 0, bool = false) = delete;

  class Iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    const Batch& operator*() const { return loader_->batch_; }
    const Batch* operator->() const { return &loader_->batch_; }
    Iterator& operator++();
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const {
      return loader_->batch_.number >= loader_->size();
    }

   private:
    friend class DataLoader;
    explicit Iterator(DataLoader* loader) : loader_(loader) {}
    DataLoader* loader_;
  };
  Iterator begin();  // starts the next epoch (Note [DataLoader epochs])
  std::default_sentinel_t end() const { return {}; }

  std::int64_t size() const;  // batches per epoch
  std::int64_t batch_size() const { return batch_size_; }
  std::uint64_t epoch() const { return epoch_; }                  // the epoch begin() started last
  void set_epoch(std::uint64_t next) { next_epoch_ = next; }      // the one begin() starts next
  std::span<const std::int64_t> order() const { return order_; }  // this epoch's row order
  const Dataset& dataset() const { return data_; }

 private:
  void load(std::int64_t number);
  const Dataset& data_;
  std::int64_t rows_, batch_size_;
  bool shuffle_, drop_last_;
  std::uint64_t seed_, epoch_ = 0, next_epoch_ = 0;
  std::vector<std::int64_t> order_;
  std::vector<float> x_, binary_, sign_, target_values_;
  std::vector<std::int32_t> y_;
  Batch batch_;
};

// ---- synthetic data sets, each from a seeded ag::Rng, rows ordered by class ----
// The four XOR points (0,0) (0,1) (1,0) (1,1) with labels 0 1 1 0.
Dataset xor_data();
// Two interleaving half circles, as sklearn.datasets.make_moons: n / 2 points
// (rounded down) on the upper moon (class 0), the rest on the lower one
// (class 1), plus N(0, noise^2) on each coordinate.
Dataset moons(std::int64_t n, double noise, std::uint64_t seed);
// Two concentric circles, as make_circles: radius 1 (class 0) and `factor` (class 1).
Dataset circles(std::int64_t n, double noise, double factor, std::uint64_t seed);
// CS231n's spiral: `classes` arms of n_per_class points, radius 0 to 1, the
// angle of each point jittered by N(0, noise^2) (CS231n uses 0.2).
Dataset spirals(std::int64_t n_per_class, std::int64_t classes, double noise, std::uint64_t seed);
// Gaussian clusters as make_blobs: centers uniform in [-10, 10]^features,
// points N(center, spread^2); n split as evenly as possible, the first centers
// taking one more.
Dataset blobs(std::int64_t n, std::int64_t centers, double spread, std::uint64_t seed,
              std::int64_t features = 2);

// TensorFlow Playground's two Gaussians (Note [TensorFlow Playground's data sets]): n / 2 points
// (rounded down) around (-2, -2) (class 0), the rest around (2, 2) (class 1), each coordinate of
// variance 0.5 + 7 noise, Playground's map of its noise slider [0, 0.5] to [0.5, 4].
Dataset two_gaussians(std::int64_t n, double noise, std::uint64_t seed);

// TensorFlow Playground's spiral (Note [TensorFlow Playground's data sets]): two arms of radius 0
// to 5 over 1.75 turns, n / 2 points (rounded down) on the arm turned by pi (class 0, Playground's
// label -1), the rest on the other (class 1); point i of an arm of m points at r = 5 i / m, angle
// 3.5 pi i / m, moved by noise * U(-1, 1) on each coordinate (Playground's slider 0 to 0.5).
Dataset two_spirals(std::int64_t n, double noise, std::uint64_t seed);

// A noisy XOR of n points: point i is the corner i mod 4 of the four above,
// with its label, plus N(0, noise^2) on each coordinate; xor_data(4, 0, seed)
// is xor_data().
Dataset xor_data(std::int64_t n, double noise, std::uint64_t seed);

// ---- regression sets, as TensorFlow Playground's (src/dataset.ts) ----
// Both draw n points (x1, x2) uniform in [-6, 6]^2 and compute the point's one target at the
// point moved by noise * U(-6, 6) on each coordinate, the point itself kept as drawn: the noise
// is in the target, as the playground's 0-50 % slider (noise 0 to 0.5) puts it. The draws per
// point are x1, x2 and the two shifts, in that order, from an ag::Rng seeded by `seed`.
// The plane y = (x1 + x2) / 10 (the playground's regressPlane): in [-1.2, 1.2] without noise.
Dataset plane(std::int64_t n, double noise, std::uint64_t seed);
// The playground's regressGaussian: six bumps of radius 2 centred at (-4, 2.5), (0, 2.5),
// (4, 2.5), (-4, -2.5), (0, -2.5), (4, -2.5) with signs + - + - + -; each contributes
// sign * max(0, 1 - distance / 2) and the target is the contribution largest in absolute value
// (the first of equals; 0 away from every bump).
Dataset multi_gaussian(std::int64_t n, double noise, std::uint64_t seed);

// ---- input features, as TensorFlow Playground's network lab offers them ----
// Note [Input features]
// ~~~~~~~~~~~~~~~~~~~~~
// A two-feature set's columns (x1, x2) become the chosen columns among x1, x2,
// x1^2, x2^2, x1*x2, sin(x1), sin(x2), in the order chosen, each computed in
// double from the row's two values and rounded once to float (the playground's
// src/state.ts INPUTS). Written here once: the CLI and the WebAssembly
// playground call the same code, so a model trained by one reads the other's inputs.
enum class InputFeature { x1, x2, x1_squared, x2_squared, x1_times_x2, sin_x1, sin_x2 };
inline constexpr InputFeature kInputFeatures[] = {
    InputFeature::x1,         InputFeature::x2,          InputFeature::x1_squared,
    InputFeature::x2_squared, InputFeature::x1_times_x2, InputFeature::sin_x1,
    InputFeature::sin_x2};
// "x1", "x2", "x1^2", "x2^2", "x1*x2", "sin_x1", "sin_x2": the feature's column name.
std::string_view input_feature_name(InputFeature f);
// The value of feature f at the point (x1, x2).
double input_feature_value(InputFeature f, double x1, double x2);
// "x1,x2,x1^2" as features; throws ag::Error naming the unknown or repeated
// name and listing the known ones (an empty list is refused too).
std::vector<InputFeature> parse_input_features(std::string_view list);
// The names joined by commas: parse_input_features's inverse.
std::string input_features_str(std::span<const InputFeature> features);
// `data` (which must have 2 columns) with its columns replaced by `features`,
// named by input_feature_name (Note [Input features]).
Dataset expand_features(const Dataset& data, std::span<const InputFeature> features);

// ---- files ----
// Every loader throws ag::Error naming the file and what is wrong with it:
// for a CSV the line and column, for an IDX file the byte offset. Each reads
// its file whole and hands the bytes to a parse_* function, which takes the
// name to use in its messages: data that is not in a file (a download, a
// fuzzer's input) is checked exactly as a file would be.

struct CsvOptions {
  bool header = true;
  // The label column: by header name when label_name is set, else by index
  // (negative counts from the end: -1 is the last column).
  std::string label_name = {};
  std::int64_t label_index = -1;
  char delimiter = ',';
  // false: labels must be class indices, integers from 0 (classes = the
  // largest + 1). true: the distinct labels are sorted and numbered from 0, and
  // kept in class_names. When every label is a number they compare as numbers,
  // as in pandas and torch: 1, 1.0 and 01 are one class, named "1", and 2 comes
  // before 10 (Note [Numeric labels]); otherwise as texts.
  bool map_labels = false;
  // Regression (Note [Classification or regression]): the real-valued target columns, in the
  // order given, by header name or by index (negative counts from the end), one list or the
  // other. Either makes the set a regression set: every other column is a feature, and the
  // label options above are unused. Both empty: a classification set.
  std::vector<std::string> target_names = {};
  std::vector<std::int64_t> target_indices = {};
};
// Every other column must hold finite numbers. Blank lines are skipped, and so
// is a UTF-8 byte-order mark at the start;
// fields may be quoted with "" (a quoted field cannot span lines). Errors name
// a column by its header name, or without a header by its index from 0.
Dataset load_csv(const std::string& path, const CsvOptions& options = {});
Dataset parse_csv(std::string_view text, const std::string& name, const CsvOptions& options = {});

// An IDX file of unsigned bytes (magic 00 00 08 N, N big-endian u32
// dimensions, then the data), plain or gzip-compressed (detected by 1f 8b).
// Declared sizes are checked against the file before anything is allocated.
struct IdxArray {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> data;
};
IdxArray load_idx(const std::string& path);
IdxArray parse_idx(std::span<const std::byte> bytes, const std::string& name);

// MNIST-format images (n, rows, cols) and labels (n): a Dataset of n rows and
// rows * cols columns scaled to [0, 1], with `classes` classes.
Dataset load_mnist(const std::string& images_path, const std::string& labels_path,
                   std::int64_t classes = 10);

// Where Debian's dataset-fashion-mnist package installs the four IDX files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
enum class Split { train, test };
// Fashion-MNIST (60000 training or 10000 test images of 28 x 28, 10 classes)
// from `dir` (each file gzipped or not); when the files are missing from the
// default directory, the error says to apt-get install dataset-fashion-mnist.
Dataset load_fashion_mnist(Split split, const std::string& dir = kFashionMnistDir);

}  // namespace nn
