// The engine's thread pool (Note [Parallel work]): every chunk runs once, at any thread count, in
// the caller's floating-point mode; split products give the one-thread bits and gradients.

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <set>
#include <tapegrad/core.hpp>
#include <tapegrad/gradcheck.hpp>
#include <type_traits>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

using namespace ag;

namespace {

// Forces `threads` threads and splits from tiny sizes on, for one test; restores both after.
class ForcedThreads {
 public:
  explicit ForcedThreads(int threads)
      : threads_(num_threads()), thresholds_(parallel_thresholds()) {
    set_num_threads(threads);
    set_parallel_thresholds({.product = 64, .elementwise = 8});
  }
  ~ForcedThreads() {
    set_num_threads(threads_);
    set_parallel_thresholds(thresholds_);
  }
  ForcedThreads(const ForcedThreads&) = delete;
  ForcedThreads& operator=(const ForcedThreads&) = delete;

 private:
  int threads_;
  ParallelThresholds thresholds_;
};

// Distinct values of no pattern a product could hide a wrong index behind.
template <class T> std::vector<T> values(std::int64_t n, double seed) {
  std::vector<T> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = T(std::sin(seed + 0.731 * double(i)) + 0.01 * double(i % 13));
  return v;
}

// C = op(A) op(B), then the gradients of sum(C * G): the forward and both backward products.
template <class T> struct Product { std::vector<T> c, da, db; };

template <class T>
Product<T> product(std::int64_t m, std::int64_t n, std::int64_t k, bool ta, bool tb) {
  TensorTape tape;
  Tensor a = tape.input<T>(ta ? Shape{k, m} : Shape{m, k}, values<T>(m * k, 0.3), "A");
  Tensor b = tape.input<T>(tb ? Shape{n, k} : Shape{k, n}, values<T>(k * n, 1.7), "B");
  Tensor c = matmul(ta ? transpose(a) : a, tb ? transpose(b) : b);
  tape.backward(sum(c * tape.constant<T>(Shape{m, n}, values<T>(m * n, 2.9))));
  auto copy = [](auto s) { return std::vector<T>(s.begin(), s.end()); };
  return {copy(c.data<T>()), copy(a.grad<T>()), copy(b.grad<T>())};
}

// Relative to the largest magnitude in `b`.
template <class T> double largest_difference(const std::vector<T>& a, const std::vector<T>& b) {
  double difference = 0, scale = 1e-30;
  for (std::size_t i = 0; i < a.size(); ++i) {
    difference = std::max(difference, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return a.size() == b.size() ? difference / scale : 1e30;
}

template <class T> void check_split_products() {
  // (m, n, k): split by rows (m >= n) and by columns; sides not a multiple of the 16-wide slab
  // edge; one side narrower than a slab; and long products where BLAS blocks k.
  const std::vector<std::array<std::int64_t, 3>> shapes = {
      {70, 33, 20}, {33, 70, 20}, {129, 130, 9}, {5, 90, 40}, {64, 64, 400}};
  for (const auto& [m, n, k] : shapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        INFO(m, "x", k, " by ", k, "x", n, " ta ", ta, " tb ", tb);
        const Product<T> one = [&] {
          ForcedThreads alone(1);
          return product<T>(m, n, k, ta, tb);
        }();
        // Against one BLAS call (the default thresholds split none of these): to rounding.
        const Product<T> whole = product<T>(m, n, k, ta, tb);
        const double tolerance = std::is_same_v<T, float> ? 1e-4 : 1e-12;
        CHECK(largest_difference(one.c, whole.c) < tolerance);
        CHECK(largest_difference(one.da, whole.da) < tolerance);
        CHECK(largest_difference(one.db, whole.db) < tolerance);
        for (int threads : {2, 3}) {
          ForcedThreads forced(threads);
          const Product<T> split = product<T>(m, n, k, ta, tb);
          CHECK(split.c == one.c);  // bit for bit, whoever ran which slab (Note [Split products])
          CHECK(split.da == one.da);
          CHECK(split.db == one.db);
        }
      }
}

}  // namespace

// First, before any test resizes the pool: the `parallel_env` test runs this file with
// TAPEGRAD_NUM_THREADS=3.
TEST_CASE("the pool starts with TAPEGRAD_NUM_THREADS threads, else one per hardware thread") {
  if (const char* text = std::getenv("TAPEGRAD_NUM_THREADS"))
    CHECK(num_threads() == std::atoi(text));
  else
    CHECK(num_threads() >= 1);
}

TEST_CASE("set_num_threads resizes the pool, and refuses fewer than one thread") {
  const int before = num_threads();
  set_num_threads(3);
  CHECK(num_threads() == 3);
  set_num_threads(1);
  CHECK(num_threads() == 1);
  CHECK_THROWS_WITH_AS(set_num_threads(0),
                       "set_num_threads: the thread count must be at least 1, not 0", Error);
  set_num_threads(before);
}

TEST_CASE("parallel_for runs every chunk exactly once, on the caller and the workers") {
  for (int threads : {1, 2, 4}) {
    ForcedThreads forced(threads);
    for (int round = 0; round < 50; ++round) {
      std::vector<std::atomic<int>> runs(37);
      parallel_for(37, [&](std::int64_t c) { runs[std::size_t(c)].fetch_add(1); });
      for (const auto& r : runs) CHECK(r.load() == 1);
    }
    parallel_for(0, [](std::int64_t) { FAIL("no chunk to run"); });
  }
}

TEST_CASE("a chunk that splits work of its own runs it alone, without deadlock") {
  ForcedThreads forced(2);
  std::atomic<int> inner{0};
  parallel_for(4, [&](std::int64_t) { parallel_for(5, [&](std::int64_t) { ++inner; }); });
  CHECK(inner.load() == 20);
}

#if defined(__SSE__)
TEST_CASE("chunks run in the caller's floating-point mode (flush-to-zero, denormals-are-zero)") {
  ForcedThreads forced(2);
  const unsigned saved = _mm_getcsr();
  const unsigned flushing = saved | 0x8040;
  _mm_setcsr(flushing);
  std::mutex mutex;
  std::set<unsigned> seen;
  for (int round = 0; round < 20; ++round)
    parallel_for(16, [&](std::int64_t) {
      const unsigned word = _mm_getcsr();
      std::lock_guard<std::mutex> lock(mutex);
      seen.insert(word);
    });
  _mm_setcsr(saved);
  CHECK(seen == std::set<unsigned>{flushing});
}
#endif

TEST_CASE("split products give the one-thread bits: every layout, forward and backward") {
  SUBCASE("float32") { check_split_products<float>(); }
  SUBCASE("float64") { check_split_products<double>(); }
}

TEST_CASE("matmul and linear gradient-check through split products") {
  ForcedThreads forced(2);
  auto values_of = [](const Shape& s, double offset) {
    return TensorArg{s, values<double>(s.numel(), offset)};
  };
  const std::vector<TensorArg> ab = {values_of(Shape{40, 33}, 0.1), values_of(Shape{33, 30}, 0.4)};
  GradcheckResult r =
      gradcheck([](TensorTape&, std::span<const Tensor> x) { return matmul(x[0], x[1]); },
                std::span<const TensorArg>(ab));
  INFO(r.message);
  CHECK(r.ok);
  const std::vector<TensorArg> xwb = {values_of(Shape{40, 30}, 0.2), values_of(Shape{35, 30}, 0.5),
                                      values_of(Shape{35}, 0.6)};
  GradcheckResult q =
      gradcheck([](TensorTape&, std::span<const Tensor> x) { return linear(x[0], x[1], x[2]); },
                std::span<const TensorArg>(xwb));
  INFO(q.message);
  CHECK(q.ok);
}
