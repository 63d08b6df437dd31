// Data sets, the DataLoader, the generators, the CSV and IDX loaders on files
// written here (good and malformed, each with its exact error), and the metrics.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <type_traits>
#include <vector>

using namespace ag;
using Bytes = std::vector<std::uint8_t>;

namespace {

// A directory of its own for each run: the normal and sanitizer builds run at once.
struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tapegrad-data-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};
const TempDir& temp() {
  static TempDir dir;
  return dir;
}

std::string write(const std::string& name, const std::string& text) {
  const std::string path = temp().path + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}
std::string write(const std::string& name, const Bytes& bytes) {
  return write(name, std::string(bytes.begin(), bytes.end()));
}

// The message of the ag::Error that f throws, or a note that it threw none.
template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// An IDX file: magic 00 00 type ndim, big-endian dimensions, the data.
Bytes idx(std::vector<std::uint32_t> dims, const Bytes& data, std::uint8_t type = 0x08) {
  Bytes out{0, 0, type, std::uint8_t(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(std::uint8_t(d >> shift));
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// gzip by hand (RFC 1952 around deflate's stored blocks), so the loader is
// checked against the format rather than against the zlib it reads with.
std::uint32_t crc32(const Bytes& data) {
  std::uint32_t c = 0xffffffffu;
  for (std::uint8_t b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}
Bytes gzip(const Bytes& data) {
  Bytes out{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255};
  auto le = [&](std::uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(std::uint8_t(v >> (8 * i)));
  };
  std::size_t pos = 0;
  do {
    const std::size_t n = std::min<std::size_t>(data.size() - pos, 65535);
    out.push_back(pos + n == data.size() ? 1 : 0);  // BFINAL, BTYPE 00 (stored)
    le(std::uint32_t(n), 2);
    le(std::uint32_t(~n & 0xffff), 2);
    out.insert(out.end(), data.begin() + std::ptrdiff_t(pos),
               data.begin() + std::ptrdiff_t(pos + n));
    pos += n;
  } while (pos < data.size());
  le(crc32(data), 4);
  le(std::uint32_t(data.size()), 4);
  return out;
}

Bytes iota_bytes(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = std::uint8_t(i * 7);
  return b;
}

std::vector<float> vec(std::span<const float> s) { return {s.begin(), s.end()}; }

}  // namespace

// ---- generators -----------------------------------------------------------------

TEST_CASE("xor_data is the four XOR points") {
  const nn::Dataset d = nn::xor_data();
  CHECK(d.rows == 4);
  CHECK(d.cols == 2);
  CHECK(d.classes == 2);
  CHECK(d.features == std::vector<float>{0, 0, 0, 1, 1, 0, 1, 1});
  CHECK(d.labels == std::vector<std::int32_t>{0, 1, 1, 0});
  CHECK(d.feature_names == std::vector<std::string>{"x1", "x2"});
}

TEST_CASE("moons: two balanced classes, seeded, interleaved (not linearly separable), symmetric") {
  const nn::Dataset d = nn::moons(101, 0.1, 7);
  CHECK(d.rows == 101);
  CHECK(d.cols == 2);
  CHECK(d.class_counts() == std::vector<std::int64_t>{50, 51});
  CHECK(nn::moons(101, 0.1, 7).features == d.features);
  CHECK(nn::moons(101, 0.1, 8).features != d.features);

  // Without noise: the lower moon's first point (0, 0.5) lies inside the
  // triangle of three upper-moon points, so no line separates the classes.
  const nn::Dataset m = nn::moons(100, 0.0, 1);
  auto point = [&](std::int64_t i) { return std::pair{m.row(i)[0], m.row(i)[1]}; };
  auto [ax, ay] = point(0);   // (1, 0)
  auto [bx, by] = point(49);  // (-1, 0)
  std::int64_t top = 0;
  for (std::int64_t i = 0; i < 50; ++i)
    if (m.row(i)[1] > m.row(top)[1]) top = i;
  auto [cx, cy] = point(top);  // near (0, 1)
  auto [px, py] = point(50);   // the lower moon's (0, 0.5)
  CHECK(px == doctest::Approx(0));
  CHECK(py == doctest::Approx(0.5));
  auto side = [](float x1, float y1, float x2, float y2, float x, float y) {
    return (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1);
  };
  const float s1 = side(ax, ay, bx, by, px, py), s2 = side(bx, by, cx, cy, px, py),
              s3 = side(cx, cy, ax, ay, px, py);
  CHECK(((s1 > 0 && s2 > 0 && s3 > 0) || (s1 < 0 && s2 < 0 && s3 < 0)));

  // Each moon is the other turned half a circle about (0.5, 0.25): the class
  // means add up to (1, 0.5).
  double mean[2][2] = {};
  for (std::int64_t i = 0; i < m.rows; ++i)
    for (int j = 0; j < 2; ++j)
      mean[m.labels[std::size_t(i)]][j] += m.row(i)[std::size_t(j)] / 50.0;
  CHECK(mean[0][0] + mean[1][0] == doctest::Approx(1).epsilon(1e-5));
  CHECK(mean[0][1] + mean[1][1] == doctest::Approx(0.5).epsilon(1e-5));
  CHECK(mean[0][1] == doctest::Approx(2 / M_PI).epsilon(0.02));  // the mean height of sin
}

TEST_CASE("circles: radius 1 and factor, two balanced classes") {
  const nn::Dataset d = nn::circles(40, 0.0, 0.3, 3);
  CHECK(d.class_counts() == std::vector<std::int64_t>{20, 20});
  for (std::int64_t i = 0; i < d.rows; ++i)
    CHECK(std::hypot(d.row(i)[0], d.row(i)[1]) ==
          doctest::Approx(d.labels[std::size_t(i)] == 0 ? 1.0 : 0.3).epsilon(1e-5));
  CHECK(nn::circles(40, 0.05, 0.3, 3).features == nn::circles(40, 0.05, 0.3, 3).features);
  CHECK(error_of([] { nn::circles(40, 0.1, 1.5, 0); }) ==
        "circles: factor must be in [0, 1), not 1.5");
}

TEST_CASE("spirals: CS231n's arms, n_per_class each, radius from 0 to 1") {
  const nn::Dataset d = nn::spirals(100, 3, 0.2, 0);
  CHECK(d.rows == 300);
  CHECK(d.classes == 3);
  CHECK(d.class_counts() == std::vector<std::int64_t>{100, 100, 100});
  for (std::int64_t c = 0; c < 3; ++c) {
    CHECK(std::hypot(d.row(c * 100)[0], d.row(c * 100)[1]) == doctest::Approx(0));
    CHECK(std::hypot(d.row(c * 100 + 99)[0], d.row(c * 100 + 99)[1]) == doctest::Approx(1));
  }
  CHECK(nn::spirals(100, 3, 0.2, 0).features == d.features);
  CHECK(nn::spirals(100, 3, 0.2, 1).features != d.features);
  CHECK(error_of([] { nn::spirals(10, 1, 0.2, 0); }) ==
        "spirals: classes must be in [2, 1000], not 1");
  CHECK(error_of([] { nn::moons(10, -1, 0); }) ==
        "moons: noise must be a finite number >= 0, not -1");
}

TEST_CASE("two_gaussians: Playground's two clusters at -2 and 2, variance 0.5 + 7 noise") {
  for (const double noise : {0.0, 0.5}) {
    const nn::Dataset d = nn::two_gaussians(4001, noise, 3);
    CHECK(d.cols == 2);
    CHECK(d.classes == 2);
    CHECK(d.class_counts() == std::vector<std::int64_t>{2000, 2001});  // class 0: n / 2 down
    CHECK(nn::two_gaussians(4001, noise, 3).features == d.features);   // seeded
    CHECK(nn::two_gaussians(4001, noise, 4).features != d.features);
    // Each class's coordinates: mean +-2, variance 0.5 + 7 noise (0.5 and 4, Playground's ends),
    // to a few standard errors of 2000 draws.
    for (std::int32_t label : {0, 1}) {
      for (std::size_t j = 0; j < 2; ++j) {
        double sum = 0, squares = 0, count = 0;
        for (std::int64_t i = 0; i < d.rows; ++i) {
          if (d.labels[std::size_t(i)] != label) continue;
          sum += d.row(i)[j];
          squares += double(d.row(i)[j]) * d.row(i)[j];
          ++count;
        }
        const double mean = sum / count, variance = squares / count - mean * mean;
        const double expected_variance = 0.5 + 7 * noise;
        CHECK(std::abs(mean - (label == 1 ? 2 : -2)) < 0.15);  // 3 standard errors at noise 0.5
        CHECK(variance == doctest::Approx(expected_variance).epsilon(0.1));
      }
    }
  }
  CHECK_THROWS_WITH(nn::two_gaussians(1, 0, 0), "gaussian: n must be at least 2, not 1");
}

TEST_CASE("two_spirals: Playground's two arms, each the other turned by pi") {
  const nn::Dataset d = nn::two_spirals(400, 0, 5);
  CHECK(d.cols == 2);
  CHECK(d.classes == 2);
  CHECK(d.class_counts() == std::vector<std::int64_t>{200, 200});
  const double pi = std::numbers::pi;
  for (std::int64_t i = 0; i < 200; ++i) {
    // Class 1's arm: r = 5 i / m, angle 1.75 turns * i / m (Playground's label +1 arm).
    const double r = 5.0 * double(i) / 200, t = 1.75 * double(i) / 200 * 2 * pi;
    CHECK(d.row(200 + i)[0] == float(r * std::sin(t)));
    CHECK(d.row(200 + i)[1] == float(r * std::cos(t)));
    // Class 0's arm is class 1's turned by pi: the same point through the origin.
    CHECK(d.row(i)[0] == doctest::Approx(-d.row(200 + i)[0]).epsilon(1e-5));
    CHECK(d.row(i)[1] == doctest::Approx(-d.row(200 + i)[1]).epsilon(1e-5));
  }
  // The noise moves each coordinate by at most `noise`, uniformly: seeded, and it does move.
  const nn::Dataset noisy = nn::two_spirals(400, 0.5, 5);
  double largest = 0;
  for (std::size_t k = 0; k < noisy.features.size(); ++k)
    largest = std::max(largest, std::abs(double(noisy.features[k]) - d.features[k]));
  CHECK(largest <= 0.5 + 1e-5);
  CHECK(largest > 0.45);
  CHECK(nn::two_spirals(400, 0.5, 5).features == noisy.features);
  CHECK(nn::two_spirals(400, 0.5, 6).features != noisy.features);
  CHECK(nn::two_spirals(5, 0, 0).class_counts() == std::vector<std::int64_t>{2, 3});
  CHECK_THROWS_WITH(nn::two_spirals(1, 0, 0), "two-spirals: n must be at least 2, not 1");
}

TEST_CASE("blobs: n split evenly, each cluster around its own center") {
  const nn::Dataset d = nn::blobs(100, 3, 0.5, 11, 4);
  CHECK(d.cols == 4);
  CHECK(d.class_counts() == std::vector<std::int64_t>{34, 33, 33});
  CHECK(nn::blobs(100, 3, 0.5, 11, 4).features == d.features);
  // Every point is nearer its own class mean than another's (spread 0.5 in a box of 20).
  std::vector<double> mean(12);
  const std::vector<std::int64_t> counts = d.class_counts();
  for (std::int64_t i = 0; i < d.rows; ++i)
    for (std::size_t j = 0; j < 4; ++j)
      mean[std::size_t(d.labels[std::size_t(i)]) * 4 + j] +=
          d.row(i)[j] / double(counts[std::size_t(d.labels[std::size_t(i)])]);
  int nearest_own = 0;
  for (std::int64_t i = 0; i < d.rows; ++i) {
    double best = 1e300;
    int arg = -1;
    for (int c = 0; c < 3; ++c) {
      double dist = 0;
      for (std::size_t j = 0; j < 4; ++j)
        dist += std::pow(d.row(i)[j] - mean[std::size_t(c) * 4 + j], 2);
      if (dist < best) best = dist, arg = c;
    }
    nearest_own += arg == d.labels[std::size_t(i)];
  }
  CHECK(nearest_own == 100);
  CHECK(error_of([] { nn::blobs(2, 3, 1, 0); }) ==
        "blobs: n (2) must be at least the number of centers (3)");
}

namespace {

// The mean and population standard deviation of `noisy - clean`, element by element: the noise
// a generator added to its noise-free points (the same seed draws the same centers first).
std::pair<double, double> added_noise(const nn::Dataset& noisy, const nn::Dataset& clean) {
  REQUIRE(noisy.features.size() == clean.features.size());
  double sum = 0, sq = 0;
  const auto n = double(noisy.features.size());
  for (std::size_t k = 0; k < noisy.features.size(); ++k)
    sum += double(noisy.features[k]) - clean.features[k];
  const double mean = sum / n;
  for (std::size_t k = 0; k < noisy.features.size(); ++k)
    sq += std::pow(double(noisy.features[k]) - clean.features[k] - mean, 2);
  return {mean, std::sqrt(sq / n)};
}

}  // namespace

TEST_CASE("xor_data(n, noise, seed): the corners in turn, with their labels, plus the noise") {
  CHECK(nn::xor_data(4, 0, 9).features == nn::xor_data().features);
  CHECK(nn::xor_data(4, 0, 9).labels == nn::xor_data().labels);
  const nn::Dataset clean = nn::xor_data(4000, 0, 3);
  CHECK(clean.class_counts() == std::vector<std::int64_t>{2000, 2000});
  for (std::int64_t i = 0; i < clean.rows; ++i) {
    CHECK(vec(clean.row(i)) == vec(nn::xor_data().row(i % 4)));
    CHECK(clean.labels[std::size_t(i)] == nn::xor_data().labels[std::size_t(i % 4)]);
  }
  const nn::Dataset noisy = nn::xor_data(4000, 0.3, 3);
  CHECK(noisy.labels == clean.labels);
  CHECK(nn::xor_data(4000, 0.3, 3).features == noisy.features);
  CHECK(nn::xor_data(4000, 0.3, 4).features != noisy.features);
  // 8000 draws of N(0, 0.09): the mean within 5 standard errors of 0, the spread within 5%.
  const auto [mean, spread] = added_noise(noisy, clean);
  CHECK(std::abs(mean) < 5 * 0.3 / std::sqrt(8000.0));
  CHECK(spread == doctest::Approx(0.3).epsilon(0.05));
  CHECK(error_of([] { nn::xor_data(3, 0, 0); }) ==
        "xor: n must be at least 4 (one point per corner), not 3");
  CHECK(error_of([] { nn::xor_data(8, -1, 0); }) ==
        "xor: noise must be a finite number >= 0, not -1");
}

TEST_CASE("moons, circles and blobs add N(0, noise^2) to each coordinate; spirals to each angle") {
  for (const double sigma : {0.05, 0.2, 1.0}) {
    CAPTURE(sigma);
    for (const auto& [noisy, clean] :
         {std::pair{nn::moons(2000, sigma, 5), nn::moons(2000, 0, 5)},
          std::pair{nn::circles(2000, sigma, 0.5, 5), nn::circles(2000, 0, 0.5, 5)},
          std::pair{nn::blobs(2000, 3, sigma, 5), nn::blobs(2000, 3, 0, 5)}}) {
      CHECK(noisy.labels == clean.labels);
      const auto [mean, spread] = added_noise(noisy, clean);
      CHECK(std::abs(mean) < 5 * sigma / std::sqrt(4000.0));
      CHECK(spread == doctest::Approx(sigma).epsilon(0.05));
    }
  }
  // The spiral's noise turns a point about the origin: its radius stays linspace(0, 1, n).
  const nn::Dataset clean = nn::spirals(500, 3, 0, 5), noisy = nn::spirals(500, 3, 0.5, 5);
  int moved = 0;
  for (std::int64_t i = 0; i < noisy.rows; ++i) {
    const auto radius = [&](const nn::Dataset& d) { return std::hypot(d.row(i)[0], d.row(i)[1]); };
    CHECK(radius(noisy) == doctest::Approx(radius(clean)).epsilon(1e-5));
    moved += vec(noisy.row(i)) != vec(clean.row(i));
  }
  CHECK(moved > 1400);  // every point but the three at the origin
}

TEST_CASE("input features: the playground's columns, named, in the order asked") {
  nn::Dataset d = nn::xor_data();
  d.features = {0.5f, -2.f, 3.f, 0.25f};
  d.labels = {1, 0};
  d.rows = 2;
  const std::vector<nn::InputFeature> all(std::begin(nn::kInputFeatures),
                                          std::end(nn::kInputFeatures));
  CHECK(nn::input_features_str(all) == "x1,x2,x1^2,x2^2,x1*x2,sin_x1,sin_x2");
  CHECK(nn::parse_input_features("x1,x2,x1^2,x2^2,x1*x2,sin_x1,sin_x2") == all);
  const nn::Dataset e = nn::expand_features(d, all);
  CHECK(e.rows == 2);
  CHECK(e.cols == 7);
  CHECK(e.labels == d.labels);
  CHECK(e.feature_names ==
        std::vector<std::string>{"x1", "x2", "x1^2", "x2^2", "x1*x2", "sin_x1", "sin_x2"});
  CHECK(vec(e.row(0)) == std::vector<float>{0.5f, -2.f, 0.25f, 4.f, -1.f, float(std::sin(0.5)),
                                            float(std::sin(-2.0))});
  CHECK(vec(e.row(1)) == std::vector<float>{3.f, 0.25f, 9.f, 0.0625f, 0.75f, float(std::sin(3.0)),
                                            float(std::sin(0.25))});
  // A choice keeps its order; x1,x2 alone is the data as it was.
  const nn::Dataset some = nn::expand_features(d, nn::parse_input_features("x1*x2,x1"));
  CHECK(some.features == std::vector<float>{-1.f, 0.5f, 0.75f, 3.f});
  CHECK(nn::expand_features(d, nn::parse_input_features("x1,x2")).features == d.features);

  CHECK(error_of([] { nn::parse_input_features("x1,cos_x1"); }) ==
        "unknown input feature 'cos_x1': the features are x1,x2,x1^2,x2^2,x1*x2,sin_x1,sin_x2");
  CHECK(error_of([] { nn::parse_input_features("x1,"); }) ==
        "unknown input feature '': the features are x1,x2,x1^2,x2^2,x1*x2,sin_x1,sin_x2");
  CHECK(error_of([] { nn::parse_input_features("x2,x1,x2"); }) ==
        "input feature 'x2' is listed twice");
  CHECK(error_of([] { nn::parse_input_features(""); }) ==
        "no input features: choose from x1,x2,x1^2,x2^2,x1*x2,sin_x1,sin_x2");
  CHECK(error_of([] { nn::expand_features(nn::blobs(9, 3, 1, 0, 3), nn::kInputFeatures); }) ==
        "expand_features: the input features are of two columns (x1, x2), this data has 3");
}

// ---- Dataset --------------------------------------------------------------------

TEST_CASE("Dataset: tensors, float targets, subset, split and standardize") {
  nn::Dataset d = nn::xor_data();
  TensorTape tape;
  Tensor x = d.inputs(tape);
  CHECK(x.shape() == Shape{4, 2});
  CHECK(!x.requires_grad());
  CHECK(vec(x.data<float>()) == d.features);
  CHECK(vec(d.targets(tape, nn::Target::binary).data<float>()) == std::vector<float>{0, 1, 1, 0});
  Tensor sign = d.targets(tape, nn::Target::sign);
  CHECK(sign.shape() == Shape{4, 1});
  CHECK(vec(sign.data<float>()) == std::vector<float>{-1, 1, 1, -1});
  CHECK(error_of([&] { nn::spirals(5, 3, 0, 0).targets(tape, nn::Target::binary); }) ==
        "Dataset::targets: float targets need a binary data set, this one has 3 classes");

  const std::vector<std::int64_t> pick{3, 0};
  const nn::Dataset s = d.subset(pick);
  CHECK(s.features == std::vector<float>{1, 1, 0, 0});
  CHECK(s.labels == std::vector<std::int32_t>{0, 0});
  const std::vector<std::int64_t> bad{4};
  CHECK(error_of([&] { d.subset(bad); }) == "Dataset::subset: row 4 is outside [0, 4)");

  const nn::Dataset big = nn::moons(200, 0.1, 0);
  const nn::TrainTest tt = big.split(0.25, 5);
  CHECK(tt.train.rows == 150);
  CHECK(tt.test.rows == 50);
  // Together they hold every row once: compare the sorted rows.
  auto rows_of = [](const nn::Dataset& ds) {
    std::multiset<std::vector<float>> out;
    for (std::int64_t i = 0; i < ds.rows; ++i) out.insert(vec(ds.row(i)));
    return out;
  };
  std::multiset<std::vector<float>> joined = rows_of(tt.train), test_rows = rows_of(tt.test);
  joined.insert(test_rows.begin(), test_rows.end());
  CHECK(joined == rows_of(big));
  CHECK(big.split(0.25, 5).test.features == tt.test.features);
  CHECK(big.split(0.25, 6).test.features != tt.test.features);
  CHECK(error_of([&] { big.split(1.5, 0); }) ==
        "Dataset::split: test_fraction must be in [0, 1], not 1.5");

  nn::Dataset train = tt.train, test = tt.test;
  const nn::Standardization st = train.standardize();
  for (std::size_t j = 0; j < 2; ++j) {
    double m = 0, v = 0;
    for (std::int64_t i = 0; i < train.rows; ++i) m += train.row(i)[j] / double(train.rows);
    for (std::int64_t i = 0; i < train.rows; ++i)
      v += std::pow(train.row(i)[j] - m, 2) / double(train.rows);
    CHECK(m == doctest::Approx(0).epsilon(1e-5).scale(1));
    CHECK(v == doctest::Approx(1).epsilon(1e-4));
  }
  const float before = test.features[0];
  test.standardize(st);
  CHECK(test.features[0] == doctest::Approx((before - st.mean[0]) / st.stddev[0]));
  nn::Dataset constant = nn::xor_data();
  constant.features = {1, 0, 1, 1, 1, 2, 1, 3};
  constant.standardize();
  CHECK(constant.features[0] == 0.f);  // a constant column is centred, not divided by 0
  constant.scale(2);
  CHECK(constant.features[0] == 0.f);

  nn::Dataset broken = nn::xor_data();
  broken.labels[2] = 5;
  CHECK(error_of([&] { broken.validate(); }) == "Dataset: label 5 of row 2 is outside [0, 2)");
  broken.features.pop_back();
  CHECK(error_of([&] { broken.validate(); }) ==
        "Dataset: 7 features for 4 rows of 2 columns (expected 8)");
}

// ---- DataLoader -----------------------------------------------------------------

namespace {
nn::Dataset numbered(std::int64_t rows) {
  // Row i holds (i, -i) and label i % 2, so a batch shows where it came from.
  nn::Dataset d;
  d.rows = rows, d.cols = 2, d.classes = 2;
  for (std::int64_t i = 0; i < rows; ++i) {
    d.features.push_back(float(i));
    d.features.push_back(-float(i));
    d.labels.push_back(std::int32_t(i % 2));
  }
  return d;
}
std::vector<std::int64_t> epoch_order(nn::DataLoader& loader,
                                      std::vector<std::int64_t>* sizes = nullptr) {
  std::vector<std::int64_t> seen;
  for (const nn::Batch& b : loader) {
    if (sizes) sizes->push_back(b.rows);
    for (std::int64_t k = 0; k < b.rows; ++k) seen.push_back(std::int64_t(b.x[std::size_t(2 * k)]));
  }
  return seen;
}
}  // namespace

TEST_CASE("DataLoader: batch sizes, the last partial batch, and drop_last") {
  const nn::Dataset d = numbered(10);
  nn::DataLoader loader(d, 4, false);
  CHECK(loader.size() == 3);
  std::vector<std::int64_t> sizes;
  CHECK(epoch_order(loader, &sizes) == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(sizes == std::vector<std::int64_t>{4, 4, 2});

  nn::DataLoader dropping(d, 4, false, 0, true);
  CHECK(dropping.size() == 2);
  sizes.clear();
  CHECK(epoch_order(dropping, &sizes).size() == 8);
  CHECK(sizes == std::vector<std::int64_t>{4, 4});

  nn::DataLoader whole(d, 100, false);  // larger than the data: one batch of every row
  sizes.clear();
  epoch_order(whole, &sizes);
  CHECK(sizes == std::vector<std::int64_t>{10});
  nn::DataLoader none(d, 100, false, 0, true);
  CHECK(epoch_order(none).empty());
  const nn::Dataset empty = numbered(0);
  nn::DataLoader on_empty(empty, 3);
  CHECK(on_empty.size() == 0);
  CHECK(epoch_order(on_empty).empty());
  CHECK(error_of([&] { nn::DataLoader(d, 0); }) ==
        "DataLoader: batch_size must be positive, not 0");
  // A temporary data set would dangle: the loader refuses one at compile time.
  static_assert(!std::is_constructible_v<nn::DataLoader, nn::Dataset&&, std::int64_t>);
}

TEST_CASE("DataLoader: a batch holds the rows it names, with labels and float targets") {
  const nn::Dataset d = numbered(7);
  nn::DataLoader loader(d, 3, true, 42);
  TensorTape tape;
  std::int64_t batches = 0;
  for (const nn::Batch& b : loader) {
    CHECK(b.number == batches++);
    CHECK(b.cols == 2);
    REQUIRE(b.index.size() == std::size_t(b.rows));
    for (std::int64_t k = 0; k < b.rows; ++k) {
      const std::int64_t i = b.index[std::size_t(k)];
      CHECK(b.x[std::size_t(2 * k)] == float(i));
      CHECK(b.x[std::size_t(2 * k + 1)] == -float(i));
      CHECK(b.y[std::size_t(k)] == i % 2);
      CHECK(b.binary[std::size_t(k)] == float(i % 2));
      CHECK(b.sign[std::size_t(k)] == (i % 2 ? 1.f : -1.f));
    }
    Tensor x = b.inputs(tape), t = b.targets(tape, nn::Target::sign);
    CHECK(x.shape() == Shape{b.rows, 2});
    CHECK(t.shape() == Shape{b.rows, 1});
    CHECK(vec(t.data<float>()) == vec(b.sign));
  }
  CHECK(batches == 3);
}

TEST_CASE("DataLoader: every row once per epoch, reshuffled each epoch, the same for a seed") {
  const nn::Dataset d = numbered(50);
  nn::DataLoader a(d, 8, true, 1), b(d, 8, true, 1), c(d, 8, true, 2);
  std::vector<std::vector<std::int64_t>> epochs;
  for (int e = 0; e < 3; ++e) {
    std::vector<std::int64_t> order = epoch_order(a);
    CHECK(a.epoch() == std::uint64_t(e));
    std::vector<std::int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::int64_t> all(50);
    std::iota(all.begin(), all.end(), 0);
    CHECK(sorted == all);
    CHECK(epoch_order(b) == order);  // same seed, same epoch: same order
    CHECK(epoch_order(c) != order);  // another seed
    epochs.push_back(order);
  }
  CHECK(epochs[0] != epochs[1]);
  CHECK(epochs[1] != epochs[2]);
  // Resuming at epoch 2 gives epoch 2's order (Note [DataLoader epochs]).
  nn::DataLoader resumed(d, 8, true, 1);
  resumed.set_epoch(2);
  CHECK(epoch_order(resumed) == epochs[2]);
  CHECK(resumed.epoch() == 2);
}

// ---- CSV ------------------------------------------------------------------------

TEST_CASE("load_csv: header, label column by name or index, mapped labels, quotes, CRLF") {
  const std::string p = write("table.csv", "x1,x2,label\n1.5,2,0\n-3,4e1,1\n\n5, +6 ,2.0\r\n");
  const nn::Dataset d = nn::load_csv(p);
  CHECK(d.rows == 3);
  CHECK(d.cols == 2);
  CHECK(d.classes == 3);
  CHECK(d.features == std::vector<float>{1.5f, 2, -3, 40, 5, 6});
  CHECK(d.labels == std::vector<std::int32_t>{0, 1, 2});
  CHECK(d.feature_names == std::vector<std::string>{"x1", "x2"});

  const std::string first = write("first.csv", "label,a,b\n1,0.5,0.25\n0,1,2\n");
  const nn::Dataset by_name = nn::load_csv(first, {.label_name = "label"});
  const nn::Dataset by_index = nn::load_csv(first, {.label_index = 0});
  for (const nn::Dataset* ds : {&by_name, &by_index}) {
    CHECK(ds->features == std::vector<float>{0.5f, 0.25f, 1, 2});
    CHECK(ds->labels == std::vector<std::int32_t>{1, 0});
    CHECK(ds->feature_names == std::vector<std::string>{"a", "b"});
  }
  CHECK(nn::load_csv(first, {.label_index = -3}).labels == by_name.labels);

  const std::string iris =
      write("iris.csv",
            "sl,sw,species\n5.1,3.5,setosa\n7.0,3.2,versicolor\n6.3,3.3,virginica\n4.9,3,setosa\n");
  const nn::Dataset mapped = nn::load_csv(iris, {.map_labels = true});
  CHECK(mapped.labels == std::vector<std::int32_t>{0, 1, 2, 0});
  CHECK(mapped.class_names == std::vector<std::string>{"setosa", "versicolor", "virginica"});
  const std::string numbers = write("numbers.csv", "x,y\n1,10\n2,-1\n3,2\n4,10\n");
  const nn::Dataset by_value = nn::load_csv(numbers, {.map_labels = true});
  CHECK(by_value.class_names == std::vector<std::string>{"-1", "2", "10"});  // as numbers
  CHECK(by_value.labels == std::vector<std::int32_t>{2, 0, 1, 2});

  const std::string bare = write("bare.tsv", "1\t2\t0\n3\t4\t1\n");
  const nn::Dataset tsv = nn::load_csv(bare, {.header = false, .delimiter = '\t'});
  CHECK(tsv.features == std::vector<float>{1, 2, 3, 4});
  CHECK(tsv.feature_names.empty());

  const std::string quoted = write("quoted.csv", "\"a\",\"b,\"\"c\"\"\",label\n\"1.5\",2,1\n");
  const nn::Dataset q = nn::load_csv(quoted);
  CHECK(q.feature_names == std::vector<std::string>{"a", "b,\"c\""});
  CHECK(q.features == std::vector<float>{1.5f, 2});
  CHECK(q.classes == 2);
}

TEST_CASE("load_csv: each malformed file names the file, the line, the column and the problem") {
  auto error = [](const std::string& name, const std::string& text, nn::CsvOptions o = {}) {
    const std::string p = write(name, text);
    return std::pair{p, error_of([&] { nn::load_csv(p, o); })};
  };
  auto [ragged, e1] = error("ragged.csv", "x1,x2,label\n1,2,0\n1,2\n");
  CHECK(e1 == ragged + ":3: 2 fields, expected 3");
  auto [long_row, e1b] = error("long.csv", "x1,x2,label\n1,2,0,\n");
  CHECK(e1b == long_row + ":2: 4 fields, expected 3");
  auto [text, e2] = error("text.csv", "x1,x2,label\n1,abc,0\n");
  CHECK(e2 == text + ":2, column 'x2': 'abc' is not a number");
  auto [hole, e3] = error("hole.csv", "x1,x2,label\n1,,0\n");
  CHECK(e3 == hole + ":2, column 'x2': empty cell");
  auto [nan, e4] = error("nan.csv", "x1,x2,label\n1,2,0\nnan,1,1\n");
  CHECK(e4 == nan + ":3, column 'x1': 'nan' is not a finite number");
  auto [huge, e4b] = error("huge.csv", "x1,label\n1e39,0\n");
  CHECK(e4b == huge + ":2, column 'x1': '1e39' is out of range for a float");
  auto [headerless, e5] = error("nohead.csv", "1,2,0\n1,x,0\n", {.header = false});
  CHECK(e5 == headerless + ":2, column 1: 'x' is not a number");
  auto [empty, e6] = error("empty.csv", "");
  CHECK(e6 == empty + ": empty file");
  auto [blank, e7] = error("blank.csv", "\n  \n");
  CHECK(e7 == blank + ": empty file");
  auto [only_header, e8] = error("header.csv", "x1,x2,label\n");
  CHECK(e8 == only_header + ": no data rows after the header (line 1)");
  auto [no_y, e9] = error("noy.csv", "x1,x2,label\n1,2,0\n", {.label_name = "y"});
  CHECK(e9 == no_y + ": no column named 'y' (the columns are x1, x2, label)");
  auto [far, e10] = error("far.csv", "x1,x2,label\n1,2,0\n", {.label_index = 5});
  CHECK(e10 == far + ": label column 5 is out of range for 3 columns");
  auto [species, e11] = error("species.csv", "x,label\n1,0\n2,setosa\n");
  CHECK(e11 == species +
                   ":3, column 'label': 'setosa' is not a class index (an integer from 0); "
                   "set CsvOptions::map_labels to number the distinct labels");
  auto [negative, e12] = error("negative.csv", "x,label\n1,-1\n");
  CHECK(e12 == negative +
                   ":2, column 'label': '-1' is not a class index (an integer from 0); "
                   "set CsvOptions::map_labels to number the distinct labels");
  auto [quote, e13] = error("quote.csv", "x,label\n\"1,0\n");
  CHECK(e13 == quote + ":2: column 'x' has a quote that is not closed (a field cannot span lines)");
  auto [alone, e14] = error("alone.csv", "label\n0\n");
  CHECK(e14 == alone + ": no feature columns: the only column is the label");
  const std::string missing = temp().path + "/missing.csv";
  CHECK(error_of([&] { nn::load_csv(missing); }) ==
        missing + ": cannot open: No such file or directory");
  // Note [Bounded reads]: /dev/zero once filled the memory; a file over 1 GiB is refused by
  // its size (a sparse one, taking no disk space), before a byte is read.
  CHECK(error_of([] { nn::load_csv("/dev/zero"); }) ==
        "/dev/zero: cannot read: it is a character device, not a regular file");
  const std::string big = temp().path + "/big.csv";
  std::ofstream{big}.close();
  std::filesystem::resize_file(big, (std::uintmax_t{1} << 30) + 1);
  CHECK(error_of([&] { nn::load_csv(big); }) ==
        big + ": cannot read: it is larger than the 1073741824-byte (1 GiB) limit");
  std::filesystem::remove(big);
}

// ---- IDX ------------------------------------------------------------------------

TEST_CASE("load_idx reads plain and gzip IDX files, and load_mnist makes a Dataset of them") {
  const Bytes pixels = iota_bytes(3 * 2 * 2);
  const std::string images = write("images-idx3-ubyte", idx({3, 2, 2}, pixels));
  const std::string images_gz = write("images-idx3-ubyte.gz", gzip(idx({3, 2, 2}, pixels)));
  for (const std::string& p : {images, images_gz}) {
    const nn::IdxArray a = nn::load_idx(p);
    CHECK(a.dims == std::vector<std::int64_t>{3, 2, 2});
    CHECK(a.data == pixels);
  }
  // Larger than one stored block, and than one read chunk of zlib's buffer.
  const Bytes many = iota_bytes(300000);
  const nn::IdxArray big = nn::load_idx(write("big.gz", gzip(idx({300000}, many))));
  CHECK(big.data == many);

  const std::string labels = write("labels-idx1-ubyte.gz", gzip(idx({3}, {2, 0, 9})));
  const nn::Dataset d = nn::load_mnist(images_gz, labels);
  CHECK(d.rows == 3);
  CHECK(d.cols == 4);
  CHECK(d.classes == 10);
  CHECK(d.labels == std::vector<std::int32_t>{2, 0, 9});
  for (std::size_t k = 0; k < pixels.size(); ++k) CHECK(d.features[k] == float(pixels[k]) / 255.f);

  // A directory laid out as Debian's dataset-fashion-mnist, some files not gzipped.
  const std::string dir = temp().path + "/fashion";
  std::filesystem::create_directories(dir);
  write("fashion/t10k-images-idx3-ubyte", idx({2, 28, 28}, iota_bytes(2 * 784)));
  write("fashion/t10k-labels-idx1-ubyte.gz", gzip(idx({2}, {9, 0})));
  const nn::Dataset f = nn::load_fashion_mnist(nn::Split::test, dir);
  CHECK(f.rows == 2);
  CHECK(f.cols == 784);
  CHECK(f.class_names[9] == "Ankle boot");
  CHECK(error_of([&] { nn::load_fashion_mnist(nn::Split::train, dir); }) ==
        dir + ": no Fashion-MNIST file train-images-idx3-ubyte.gz (or train-images-idx3-ubyte)");
}

TEST_CASE("load_idx: wrong magic, truncation and lying headers, each at its byte offset") {
  auto error = [](const std::string& name, const Bytes& bytes) {
    const std::string p = write(name, bytes);
    return std::pair{p, error_of([&] { nn::load_idx(p); })};
  };
  auto [zip, e1] = error("zip.idx", {0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0});
  CHECK(e1 == zip +
                  ": wrong magic number at byte 0: found 50 4b 03 04, expected 00 00 08 0N "
                  "(an IDX file of unsigned bytes with N dimensions)");
  auto [zip_gz, e1g] = error("zip.idx.gz", gzip({0x50, 0x4b, 0x03, 0x04}));
  CHECK(e1g == zip_gz +
                   ": wrong magic number at byte 0 of the uncompressed data: found 50 4b 03 "
                   "04, expected 00 00 08 0N (an IDX file of unsigned bytes with N dimensions)");
  auto [floats, e2] = error("floats.idx", idx({1}, {0, 0, 0, 0}, 0x0D));
  CHECK(e2 == floats +
                  ": IDX element type 0x0d (float32) at byte 2 is not supported: only "
                  "unsigned bytes (0x08) are");
  auto [empty, e3] = error("empty.idx", {});
  CHECK(e3 == empty + ": empty file (expected an IDX header)");
  auto [short_magic, e4] = error("short.idx", {0, 0, 8});
  CHECK(e4 == short_magic + ": truncated at byte 3: an IDX file starts with a 4-byte magic number");
  auto [short_dims, e5] = error("dims.idx", {0, 0, 8, 3, 0, 0, 0, 2, 0, 0});
  CHECK(e5 ==
        short_dims + ": truncated at byte 10: the header declares 3 dimensions of 4 bytes each");

  Bytes data = idx({10, 2, 2}, iota_bytes(40));
  data.resize(30);
  auto [cut, e6] = error("cut-idx3-ubyte", data);
  CHECK(e6 == cut +
                  ": truncated at byte 30: the header declares (10, 2, 2) = 40 bytes of data, "
                  "the file has 14 after the 16-byte header");
  auto [cut_gz, e7] = error("cut-idx3-ubyte.gz", gzip(data));
  CHECK(e7 == cut_gz +
                  ": truncated at byte 30 of the uncompressed data: the header declares "
                  "(10, 2, 2) = 40 bytes of data, the file has 14");
  // The compressed stream itself cut short, in the middle of the data.
  Bytes stream = gzip(idx({10, 2, 2}, iota_bytes(40)));
  stream.resize(stream.size() - 20);
  auto [cut_stream, e8] = error("stream.gz", stream);
  CHECK(e8 == cut_stream +
                  ": truncated at byte 44 of the uncompressed data: the header declares "
                  "(10, 2, 2) = 40 bytes of data, the file has 28 (the gzip stream ends "
                  "early)");
  // A 12-byte header claiming 10^12 items is refused before anything is allocated.
  const Bytes liar = idx({1000000, 1000000}, {});
  auto [lie, e9] = error("lie.idx", liar);
  CHECK(e9 == lie +
                  ": truncated at byte 12: the header declares (1000000, 1000000) = "
                  "1000000000000 bytes of data, the file has 0 after the 12-byte header");
  const Bytes liar_gz = gzip(liar);
  auto [lie_gz, e10] = error("lie.idx.gz", liar_gz);
  CHECK(e10 == lie_gz + fmt::format(": the header declares (1000000, 1000000) = 1000000000000 "
                                    "bytes of data, more than a {}-byte gzip file can hold "
                                    "(deflate expands at most 1032:1)",
                                    liar_gz.size()));
  auto [overflow, e11] =
      error("overflow.idx", idx({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {}));
  CHECK(e11 == overflow +
                   ": truncated at byte 20: the header declares (4294967295, 4294967295, "
                   "4294967295, 4294967295) (more than 2^63 bytes), the file has 0 after "
                   "the 20-byte header");
  auto [extra, e12] = error("extra.idx", idx({2}, {1, 2, 3}));
  CHECK(e12 ==
        extra + ": 1 unexpected bytes at byte 10: the header declares (2,) = 2 bytes of data");
  auto [extra_gz, e13] = error("extra.idx.gz", gzip(idx({2}, {1, 2, 3})));
  CHECK(e13 == extra_gz +
                   ": unexpected bytes at byte 10 of the uncompressed data: the header "
                   "declares (2,) = 2 bytes of data");
  Bytes bad_crc = gzip(idx({4}, {1, 2, 3, 4}));
  bad_crc[bad_crc.size() - 8] ^= 0xff;
  // The checksum follows the data: it is checked once all 12 bytes are read.
  auto [crc, e14] = error("crc.gz", bad_crc);
  CHECK(e14 ==
        crc + ": corrupt gzip data after byte 12 of the uncompressed data: incorrect data check");
  Bytes bad_block = gzip(idx({4}, {1, 2, 3, 4}));
  bad_block[13] ^= 0xff;  // the stored block's NLEN no longer complements LEN
  auto [block, e15] = error("block.gz", bad_block);
  CHECK(e15 == block +
                   ": corrupt gzip data after byte 0 of the uncompressed data: invalid stored "
                   "block lengths");
  // All the data, then the gzip trailer (checksum and length) cut short or followed by junk.
  Bytes no_trailer = gzip(idx({4}, {1, 2, 3, 4}));
  no_trailer.resize(no_trailer.size() - 3);
  auto [trailer, e16] = error("trailer.gz", no_trailer);
  CHECK(e16 == trailer + fmt::format(": the gzip stream ends early, at byte {} of the file: the "
                                     "checksum after the data is missing (truncated file)",
                                     no_trailer.size()));
  Bytes junk = gzip(idx({4}, {1, 2, 3, 4}));
  const std::size_t gzip_end = junk.size();
  junk.insert(junk.end(), {'j', 'u', 'n', 'k'});
  auto [junk_path, e17] = error("junk.gz", junk);
  CHECK(e17 == junk_path + fmt::format(": 4 unexpected bytes at byte {} of the file, after the end "
                                       "of the gzip data",
                                       gzip_end));
  const std::string missing = temp().path + "/missing-idx1-ubyte";
  CHECK(error_of([&] { nn::load_idx(missing); }) ==
        missing + ": cannot open: No such file or directory");
  CHECK(error_of([&] { nn::load_idx(temp().path); }) ==
        temp().path + ": cannot read: Is a directory");
  // Note [Bounded reads]: /dev/zero never ends; it once filled the memory.
  CHECK(error_of([] { nn::load_idx("/dev/zero"); }) ==
        "/dev/zero: cannot read: it is a character device, not a regular file");
}

TEST_CASE("parse_csv and parse_idx read bytes in memory, named in their errors as given") {
  const nn::Dataset d = nn::parse_csv("x,label\n1.5,0\n2,1\n", "upload.csv");
  CHECK(d.features == std::vector<float>{1.5f, 2});
  CHECK(d.labels == std::vector<std::int32_t>{0, 1});
  CHECK(error_of([] { nn::parse_csv("x,label\n1,2\n3\n", "upload.csv"); }) ==
        "upload.csv:3: 1 field, expected 2");

  auto parse = [](const Bytes& b) { return nn::parse_idx(std::as_bytes(std::span(b)), "upload"); };
  CHECK(parse(idx({2}, {7, 9})).data == Bytes{7, 9});
  // gzip allows concatenated members: the data may be split across them.
  const Bytes whole = idx({4}, {1, 2, 3, 4});
  Bytes two = gzip(Bytes(whole.begin(), whole.begin() + 10));
  const Bytes rest = gzip(Bytes(whole.begin() + 10, whole.end()));
  two.insert(two.end(), rest.begin(), rest.end());
  CHECK(parse(two).data == Bytes{1, 2, 3, 4});
  // A 12-byte header claiming 10^12 items is refused before anything is allocated.
  CHECK(error_of([&] {
          parse(idx({1000000, 1000000}, {}));
        }) ==
        "upload: truncated at byte 12: the header declares (1000000, 1000000) = 1000000000000 "
        "bytes of data, the file has 0 after the 12-byte header");
  CHECK(error_of([&] { parse({}); }) == "upload: empty file (expected an IDX header)");
}

TEST_CASE("load_mnist: the images and labels must agree, and labels name a class") {
  const std::string images = write("m-images", idx({2, 1, 1}, {0, 255}));
  const std::string flat = write("m-flat", idx({2}, {0, 255}));
  const std::string three = write("m-three", idx({3}, {0, 1, 2}));
  const std::string wrong = write("m-wrong", idx({2}, {1, 10}));
  CHECK(error_of([&] { nn::load_mnist(flat, three); }) ==
        flat + ": expected images of 3 dimensions (n, rows, cols), found (2,)");
  CHECK(error_of([&] { nn::load_mnist(images, images); }) ==
        images + ": expected labels of 1 dimension (n,), found (2, 1, 1)");
  CHECK(error_of([&] { nn::load_mnist(images, three); }) ==
        images + " holds 2 images but " + three + " holds 3 labels");
  CHECK(error_of([&] { nn::load_mnist(images, wrong); }) ==
        wrong + ": label 10 at byte 9 is not below 10 classes");
  const nn::Dataset d = nn::load_mnist(images, write("m-two", idx({2}, {7, 1})));
  CHECK(d.features == std::vector<float>{0, 1});
  CHECK(d.labels == std::vector<std::int32_t>{7, 1});
}

// ---- metrics --------------------------------------------------------------------

TEST_CASE("accuracy and predict: binary probabilities or logits, and multi-class argmax") {
  TensorTape tape;
  const std::vector<std::int32_t> labels{1, 0, 1, 0};
  Tensor p = tape.input(Shape{4, 1}, {0.9, 0.2, 0.4, 0.6});
  CHECK(nn::predict(p, nn::Scores::probabilities) == std::vector<std::int32_t>{1, 0, 0, 1});
  CHECK(nn::accuracy(p, labels, nn::Scores::probabilities) == 0.5);
  CHECK(nn::accuracy(p, labels, nn::Scores::logits) == 0.5);  // all above 0: all class 1
  Tensor z = tape.input(Shape{4}, {2.0, -1.0, 0.5, -0.1});
  CHECK(nn::accuracy(z, labels, nn::Scores::logits) == 1.0);
  Tensor logits = tape.input(Shape{3, 3}, {1, 3, 2, 0, 0, 5, 4, 4, 1});
  CHECK(nn::predict(logits, nn::Scores::logits) ==
        std::vector<std::int32_t>{1, 2, 0});  // ties: first
  const std::vector<std::int32_t> three{1, 2, 1};
  CHECK(nn::accuracy(logits, three, nn::Scores::logits) == doctest::Approx(2.0 / 3));
  const std::vector<std::int32_t> predicted{1, 1, 1};
  CHECK(nn::accuracy(predicted, three) == doctest::Approx(2.0 / 3));
  CHECK(error_of([&] { nn::accuracy(logits, labels, nn::Scores::logits); }) ==
        "accuracy: 4 labels for 3 rows of scores");
  const std::vector<std::int32_t> out_of_range{1, 3, 0};
  CHECK(error_of([&] { nn::accuracy(logits, out_of_range, nn::Scores::logits); }) ==
        "accuracy: label 3 of row 1 is not one of the 3 classes");
  CHECK(error_of([&] {
          nn::predict(tape.input(Shape{1, 2, 2}, {1, 2, 3, 4}), nn::Scores::logits);
        }) == "predict: scores must have shape (n, classes) or (n,), not (1, 2, 2)");
}

TEST_CASE("confusion matrix: counts, recall, precision, and its table") {
  TensorTape tape;
  Tensor logits = tape.input(Shape{5, 3}, {5, 0, 0, 0, 5, 0, 0, 5, 0, 0, 0, 5, 5, 0, 0});
  const std::vector<std::int32_t> labels{0, 1, 2, 2, 0};
  nn::ConfusionMatrix m =
      nn::confusion_matrix(logits, labels, nn::Scores::logits, 0, {"cat", "dog", "bird"});
  CHECK(m.classes() == 3);
  CHECK(m.total() == 5);
  CHECK(m.count(0, 0) == 2);
  CHECK(m.count(2, 1) == 1);
  CHECK(m.count(2, 2) == 1);
  CHECK(m.accuracy() == doctest::Approx(0.8));
  CHECK(m.recall(2) == 0.5);
  CHECK(m.precision(1) == 0.5);
  CHECK(fmt::format("{}", m) ==
        "true \\ predicted    cat    dog   bird  recall\n"
        "             cat      2      0      0   1.000\n"
        "             dog      0      1      0   1.000\n"
        "            bird      0      1      1   0.500\n"
        "       precision  1.000  0.500  1.000\n"
        "accuracy 0.800 (4 of 5)\n");
  m.add(logits, labels, nn::Scores::logits);  // accumulates over batches
  CHECK(m.total() == 10);
  m.reset();
  CHECK(m.total() == 0);
  CHECK(m.table().find("accuracy - (0 of 0)") != std::string::npos);

  Tensor probs = tape.input(Shape{4, 1}, {0.9, 0.2, 0.4, 0.6});
  const std::vector<std::int32_t> binary{1, 0, 1, 0};
  const nn::ConfusionMatrix b = nn::confusion_matrix(probs, binary, nn::Scores::probabilities);
  CHECK(b.classes() == 2);
  CHECK(b.count(1, 1) == 1);
  CHECK(b.count(1, 0) == 1);
  CHECK(b.count(0, 1) == 1);
  CHECK(error_of([&] { nn::ConfusionMatrix(2, {"a"}); }) ==
        "ConfusionMatrix: 1 class names for 2 classes");
  CHECK(error_of([&] { m.add(probs, binary, nn::Scores::logits); }) ==
        "ConfusionMatrix::add: one binary score per row for 3 classes");
}

TEST_CASE("load_csv: a byte-order mark is not part of the first column's name") {
  // Excel's "CSV UTF-8" starts with EF BB BF; the label column is then found by its name.
  const std::string p = write("bom.csv", "\xEF\xBB\xBFlabel,a\n1,0.5\n0,2\n");
  const nn::Dataset d = nn::load_csv(p, {.label_name = "label"});
  CHECK(d.labels == std::vector<std::int32_t>{1, 0});
  CHECK(d.feature_names == std::vector<std::string>{"a"});
  const nn::Dataset first_feature = nn::load_csv(p, {.label_index = 0});
  CHECK(nn::load_csv(write("bom2.csv", "\xEF\xBB\xBFx,label\n1,0\n"), {}).feature_names ==
        std::vector<std::string>{"x"});
  CHECK(first_feature.labels == d.labels);
}

TEST_CASE("load_csv: numeric labels compare as numbers, as pandas reads them") {
  // 1, 1.0 and 01 are one number: one class, named "1"; -0 and 0 are one class too.
  const std::string p = write("spellings.csv", "x,y\n1,1\n2,1.0\n3,01\n4,2\n5,+2\n6,-0\n7,0\n");
  const nn::Dataset d = nn::load_csv(p, {.map_labels = true});
  CHECK(d.classes == 3);
  CHECK(d.class_names == std::vector<std::string>{"0", "1", "2"});
  CHECK(d.labels == std::vector<std::int32_t>{1, 1, 1, 2, 2, 0, 0});
  // A label that is not a number makes them all texts: "1" and "1.0" differ as texts.
  const std::string mixed = write("mixed.csv", "x,y\n1,1\n2,1.0\n3,a\n");
  const nn::Dataset m = nn::load_csv(mixed, {.map_labels = true});
  CHECK(m.class_names == std::vector<std::string>{"1", "1.0", "a"});
  // NaN is no number to compare: such labels are texts.
  CHECK(nn::load_csv(write("nan.csv", "x,y\n1,nan\n2,1\n"), {.map_labels = true}).class_names ==
        std::vector<std::string>{"1", "nan"});
}

TEST_CASE("load_idx: a gzip file cut inside its header is truncated, not empty") {
  const Bytes whole = gzip(idx({3}, {1, 2, 3}));
  const std::string cut = write("cut10.idx.gz", Bytes(whole.begin(), whole.begin() + 10));
  CHECK(error_of([&] { nn::load_idx(cut); }) ==
        cut +
            ": truncated gzip data: the stream ends before its first byte (expected an IDX "
            "header)");
  const std::string nothing = write("nothing.idx.gz", gzip({}));
  CHECK(error_of([&] { nn::load_idx(nothing); }) ==
        nothing + ": the gzip data inflates to nothing (expected an IDX header)");
  const std::string empty = write("empty.idx", Bytes{});
  CHECK(error_of([&] { nn::load_idx(empty); }) == empty + ": empty file (expected an IDX header)");
}
