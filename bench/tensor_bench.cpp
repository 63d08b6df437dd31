// The tensor engine's speed: matmul GFLOP/s through the tape against bare cblas_sgemm, elementwise
// GB/s against memcpy and a hand loop, and the cost per tiny (4x5) op recorded and differentiated.

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <tapegrad/autograd.hpp>
#include <type_traits>
#include <vector>

#ifndef TG_BUILD_INFO
#define TG_BUILD_INFO "unknown"
#endif

namespace {

using Clock = std::chrono::steady_clock;
namespace rules = ag::rules;
using ag::Shape;
using ag::Tensor;
using ag::TensorTape;

double ns_since(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::nano>(t1 - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Keeps a plain result alive: the compiler must compute what is stored here.
volatile float g_sink = 0;

int g_rounds = 21;

// Times the functions in turn, `reps` calls each per block, ABC ABC ... for g_rounds rounds, so
// that the machine's drift hits all of them alike. Returns, per function, ns per call per round.
std::vector<std::vector<double>> alternate(int reps,
                                           const std::vector<std::function<void()>>& fns) {
  for (const auto& f : fns) f();  // warm: arena blocks and peer buffers touched, caches primed
  std::vector<std::vector<double>> ns(fns.size());
  for (int r = 0; r < g_rounds; ++r)
    for (std::size_t i = 0; i < fns.size(); ++i) {
      const auto t0 = Clock::now();
      for (int k = 0; k < reps; ++k) fns[i]();
      ns[i].push_back(ns_since(t0, Clock::now()) / reps);
    }
  return ns;
}

// Calls per block so that a block lasts about 10 ms: long enough for the timer, short enough
// that drift stays within a round.
int reps_for(const std::function<void()>& f) {
  f();
  const auto t0 = Clock::now();
  f();
  const double ns = std::max(1.0, ns_since(t0, Clock::now()));
  return static_cast<int>(std::clamp(1e7 / ns, 1.0, 100000.0));
}

// The median of the per-round ratios a[r] / b[r]: drift cancels best in it.
double ratio_of_rounds(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) r[i] = a[i] / b[i];
  return median(r);
}

std::vector<float> random_floats(std::size_t n, std::uint64_t seed, double low = -1,
                                 double high = 1) {
  ag::Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.uniform(low, high));
  return v;
}

void fail(const char* what) {
  std::fprintf(stderr, "sanity check failed: %s\n", what);
  std::exit(1);
}

// ---- (1) matmul: the tape against bare cblas_sgemm ---------------------------------------

struct MatmulCase {
  std::int64_t m, k, n;
  std::vector<float> a, b, ga, gb, c, up;  // up: the peer's upstream gradient dC
  std::vector<double> seed;                // the same dC for the tape (its seed is double)
  MatmulCase(std::int64_t m_, std::int64_t k_, std::int64_t n_)
      : m(m_),
        k(k_),
        n(n_),
        a(random_floats(std::size_t(m * k), 1)),
        b(random_floats(std::size_t(k * n), 2)),
        ga(a.size()),
        gb(b.size()),
        c(std::size_t(m * n)),
        up(random_floats(c.size(), 3)),
        seed(up.begin(), up.end()) {}
  double flop() const { return 2.0 * double(m) * double(n) * double(k); }
};

// Parameters: the tape points at a, b and their gradients, nothing is copied in.
[[gnu::noinline]] Tensor tape_matmul(TensorTape& tape, MatmulCase& c) {
  tape.reset();
  const Tensor a = tape.parameter(Shape{c.m, c.k}, c.a.data(), c.ga.data());
  const Tensor b = tape.parameter(Shape{c.k, c.n}, c.b.data(), c.gb.data());
  return ag::matmul(a, b);
}

void tape_matmul_backward(TensorTape& tape, MatmulCase& c) {
  tape.backward(tape_matmul(tape, c), c.seed);
}

// The same GEMMs as the engine issues: C = A B; dA += dC B^T; dB += A^T dC.
void blas_forward(MatmulCase& c) {
  const int m = int(c.m), k = int(c.k), n = int(c.n);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, c.a.data(), k, c.b.data(),
              n, 0.0f, c.c.data(), n);
}
void blas_forward_backward(MatmulCase& c) {
  const int m = int(c.m), k = int(c.k), n = int(c.n);
  blas_forward(c);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0f, c.up.data(), n, c.b.data(), n,
              1.0f, c.ga.data(), k);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, m, 1.0f, c.a.data(), k, c.up.data(), n,
              1.0f, c.gb.data(), n);
}

// The tape must issue the very same calls: bit-identical C, dA and dB.
void check_matmul(TensorTape& tape, MatmulCase& c) {
  std::fill(c.ga.begin(), c.ga.end(), 0.f);
  std::fill(c.gb.begin(), c.gb.end(), 0.f);
  tape_matmul_backward(tape, c);
  const std::vector<float> ga = c.ga, gb = c.gb;
  const Tensor out = tape.handle(static_cast<ag::NodeId>(tape.size() - 1));
  const std::vector<float> tc(out.data<float>().begin(), out.data<float>().end());
  std::fill(c.ga.begin(), c.ga.end(), 0.f);
  std::fill(c.gb.begin(), c.gb.end(), 0.f);
  blas_forward_backward(c);
  if (tc != c.c || ga != c.ga || gb != c.gb) fail("matmul: tape and cblas_sgemm differ");
}

void bench_matmul(int threads) {
  openblas_set_num_threads(threads);
  std::printf("\n(1) matmul, float32, OpenBLAS threads = %d (openblas_get_num_threads() = %d)\n",
              threads, openblas_get_num_threads());
  std::printf("%-22s %-8s %10s %10s %9s %9s\n", "shape (m x k) (k x n)", "pass", "tape", "sgemm",
              "ratio", "ratio*");
  std::printf("%-22s %-8s %10s %10s %9s %9s\n", "", "", "GFLOP/s", "GFLOP/s", "medians", "rounds");
  struct Dims {
    std::int64_t m, k, n;
  };
  for (const Dims d : {Dims{64, 64, 64}, Dims{128, 128, 128}, Dims{256, 256, 256},
                       Dims{512, 512, 512}, Dims{1024, 1024, 1024}, Dims{128, 784, 256}}) {
    MatmulCase c(d.m, d.k, d.n);
    TensorTape tape;
    check_matmul(tape, c);
    const std::string label = std::to_string(d.m) + "x" + std::to_string(d.k) + " " +
                              std::to_string(d.k) + "x" + std::to_string(d.n);
    for (const bool backward : {false, true}) {
      std::function<void()> on_tape = [&] { tape_matmul(tape, c); };
      std::function<void()> bare = [&] { blas_forward(c); };
      if (backward) {
        on_tape = [&] { tape_matmul_backward(tape, c); };
        bare = [&] { blas_forward_backward(c); };
      }
      const auto ns = alternate(reps_for(bare), {on_tape, bare});
      const double flop = c.flop() * (backward ? 3 : 1);  // forward + backward: 3 GEMMs
      std::printf("%-22s %-8s %10.1f %10.1f %9.3f %9.3f\n", label.c_str(),
                  backward ? "fwd+bwd" : "fwd", flop / median(ns[0]), flop / median(ns[1]),
                  median(ns[0]) / median(ns[1]), ratio_of_rounds(ns[0], ns[1]));
    }
  }
}

// ---- (2) elementwise: the tape against memcpy and a hand loop ----------------------------

enum class Elem { add, relu, sigmoid, mul_row };

struct ElemCase {
  Elem op;
  std::int64_t rows, cols;
  std::vector<float> a, b, ga, gb;     // b: (rows, cols) for add, (cols,) for mul_row
  std::vector<float> y, up, pga, pgb;  // the hand loop's output, upstream gradient, gradients
  std::vector<double> seed;            // the tape's upstream gradient (the same numbers)
  ElemCase(Elem op_, std::int64_t rows_, std::int64_t cols_)
      : op(op_),
        rows(rows_),
        cols(cols_),
        a(random_floats(std::size_t(rows * cols), 4, -4, 4)),
        b(random_floats(op == Elem::add ? a.size() : std::size_t(cols), 5)),
        ga(a.size()),
        gb(b.size()),
        y(a.size()),
        up(random_floats(a.size(), 6)),
        pga(a.size()),
        pgb(b.size()),
        seed(up.begin(), up.end()) {}
  std::size_t numel() const { return a.size(); }
};

const char* elem_name(Elem op) {
  switch (op) {
    case Elem::add: return "a + b";
    case Elem::relu: return "relu(a)";
    case Elem::sigmoid: return "sigmoid(a)";
    case Elem::mul_row: return "a * row";
  }
  return "?";
}

// Bytes each element must move at the least: forward reads its inputs and writes its output;
// backward reads the upstream gradient, what the local derivative needs (a, or y for sigmoid),
// and reads and writes each input gradient. A broadcast row stays in cache and is not counted.
double bytes_per_element(Elem op, bool backward) {
  const double forward = op == Elem::add ? 12 : 8;
  const double back = op == Elem::add ? 20 : 16;  // add: up, ga, gb in, ga, gb out
  return forward + (backward ? back : 0);
}

[[gnu::noinline]] Tensor tape_elem(TensorTape& tape, ElemCase& c) {
  tape.reset();
  const Tensor a = tape.parameter(Shape{c.rows, c.cols}, c.a.data(), c.ga.data());
  switch (c.op) {
    case Elem::add: return a + tape.parameter(Shape{c.rows, c.cols}, c.b.data(), c.gb.data());
    case Elem::relu: return relu(a);
    case Elem::sigmoid: return sigmoid(a);
    case Elem::mul_row: return a * tape.parameter(Shape{c.cols}, c.b.data(), c.gb.data());
  }
  return a;
}

// The same arithmetic on raw arrays, through the op table's own rules (the same formulas).
[[gnu::noinline]] void hand_forward(ElemCase& c) {
  const float* a = c.a.data();
  const float* b = c.b.data();
  float* y = c.y.data();
  const std::size_t n = c.numel(), cols = std::size_t(c.cols);
  switch (c.op) {
    case Elem::add:
      for (std::size_t i = 0; i < n; ++i) y[i] = rules::Add::forward(a[i], b[i], 0.f);
      return;
    case Elem::relu:
      for (std::size_t i = 0; i < n; ++i) y[i] = rules::Relu::forward(a[i], 0.f, 0.f);
      return;
    case Elem::sigmoid:
      for (std::size_t i = 0; i < n; ++i) y[i] = rules::Sigmoid::forward(a[i], 0.f, 0.f);
      return;
    case Elem::mul_row:
      for (std::size_t r = 0; r < n; r += cols)
        for (std::size_t j = 0; j < cols; ++j) y[r + j] = rules::Mul::forward(a[r + j], b[j], 0.f);
      return;
  }
}

[[gnu::noinline]] void hand_forward_backward(ElemCase& c) {
  hand_forward(c);
  const float* a = c.a.data();
  const float* b = c.b.data();
  const float* y = c.y.data();
  const float* up = c.up.data();
  float* ga = c.pga.data();
  float* gb = c.pgb.data();
  const std::size_t n = c.numel(), cols = std::size_t(c.cols);
  switch (c.op) {
    case Elem::add:
      for (std::size_t i = 0; i < n; ++i) ga[i] += up[i], gb[i] += up[i];
      return;
    case Elem::relu:
      for (std::size_t i = 0; i < n; ++i)
        ga[i] += up[i] * rules::Relu::local(a[i], 0.f, y[i], 0.f).da;
      return;
    case Elem::sigmoid:
      for (std::size_t i = 0; i < n; ++i)
        ga[i] += up[i] * rules::Sigmoid::local(a[i], 0.f, y[i], 0.f).da;
      return;
    case Elem::mul_row:
      for (std::size_t r = 0; r < n; r += cols)
        for (std::size_t j = 0; j < cols; ++j) {
          ga[r + j] += up[r + j] * b[j];
          gb[j] += up[r + j] * a[r + j];
        }
      return;
  }
}

// One forward and backward from zero gradients on each side: the outputs must be
// bit-identical, and so must a's gradient (b's row gradient is summed in the same order too).
void check_elem(TensorTape& tape, ElemCase& c) {
  std::fill(c.ga.begin(), c.ga.end(), 0.f);
  std::fill(c.gb.begin(), c.gb.end(), 0.f);
  const Tensor y = tape_elem(tape, c);
  tape.backward(y, c.seed);
  hand_forward_backward(c);
  const auto ty = y.data<float>();
  if (!std::equal(ty.begin(), ty.end(), c.y.begin())) fail("elementwise: forward differs");
  if (c.ga != c.pga || c.gb != c.pgb) fail("elementwise: gradients differ");
}

void bench_elementwise() {
  std::printf("\n(2) elementwise, float32 (no BLAS: plain loops, one thread)\n");
  std::printf("%-11s %9s %-8s %5s %9s %9s %9s %9s %9s %9s\n", "op", "elements", "pass", "B/el",
              "tape", "hand", "memcpy", "tape/", "tape/", "ratio*");
  std::printf("%-11s %9s %-8s %5s %9s %9s %9s %9s %9s %9s\n", "", "", "", "", "GB/s", "GB/s",
              "GB/s", "hand", "memcpy", "hand");
  // memcpy moves as many bytes as the op: it copies half of them (read) into the other half.
  const std::size_t max_bytes = std::size_t(4096) * 4096 * 36;
  std::vector<char> from(max_bytes / 2, 1), to(max_bytes / 2, 2);
  for (const std::int64_t side : {1024, 4096}) {
    for (const Elem op : {Elem::add, Elem::relu, Elem::sigmoid, Elem::mul_row}) {
      ElemCase c(op, side, side);
      TensorTape tape;
      check_elem(tape, c);
      for (const bool backward : {false, true}) {
        const double bytes = bytes_per_element(op, backward) * double(c.numel());
        std::function<void()> on_tape = [&] { tape_elem(tape, c); };
        std::function<void()> hand = [&] { hand_forward(c); };
        if (backward) {
          on_tape = [&] { tape.backward(tape_elem(tape, c), c.seed); };
          hand = [&] { hand_forward_backward(c); };
        }
        const std::function<void()> copy = [&] {
          std::memcpy(to.data(), from.data(), std::size_t(bytes) / 2);
          g_sink = static_cast<float>(to[std::size_t(bytes) / 4]);
        };
        const auto ns = alternate(reps_for(hand), {on_tape, hand, copy});
        std::printf("%-11s %9zu %-8s %5.0f %9.1f %9.1f %9.1f %9.2f %9.2f %9.2f\n", elem_name(op),
                    c.numel(), backward ? "fwd+bwd" : "fwd", bytes_per_element(op, backward),
                    bytes / median(ns[0]), bytes / median(ns[1]), bytes / median(ns[2]),
                    median(ns[0]) / median(ns[1]), median(ns[0]) / median(ns[2]),
                    ratio_of_rounds(ns[0], ns[1]));
      }
    }
  }
}

// ---- (3) tiny ops: the cost of recording ---------------------------------------------------

// A chain of kChain ops on a (4, 5) float tensor: x = x + b, relu(x), x W (W 5x5), or
// linear(x, W, bias). W is a cyclic permutation, so a thousand products neither blow up nor
// vanish; b and the bias are small.
constexpr int kChain = 1000;
constexpr int kRows = 4, kCols = 5, kEl = kRows * kCols;

enum class Tiny { add, relu, matmul, linear };

const char* tiny_name(Tiny op) {
  switch (op) {
    case Tiny::add: return "a + b";
    case Tiny::relu: return "relu(a)";
    case Tiny::matmul: return "matmul 4x5 5x5";
    case Tiny::linear: return "linear 4x5 5x5";
  }
  return "?";
}

struct TinyCase {
  Tiny op;
  std::vector<float> x0 = random_floats(kEl, 7), gx0 = std::vector<float>(kEl);
  std::vector<float> b = random_floats(kEl, 8, -1e-3, 1e-3), gb = std::vector<float>(kEl);
  std::vector<float> w = std::vector<float>(kCols * kCols), gw = std::vector<float>(kCols * kCols);
  std::vector<float> bias = random_floats(kCols, 9, -1e-3, 1e-3), gbias = std::vector<float>(kCols);
  std::vector<double> seed = std::vector<double>(kEl, 1.0);
  // The plain side: every intermediate kept, as the tape keeps them, and its gradients.
  std::vector<float> xs = std::vector<float>((kChain + 1) * kEl);
  std::vector<float> pgx0 = std::vector<float>(kEl);
  std::vector<float> pgb = std::vector<float>(kEl), pgw = std::vector<float>(kCols * kCols);
  std::vector<float> pgbias = std::vector<float>(kCols);
  explicit TinyCase(Tiny op_) : op(op_) {
    for (int i = 0; i < kCols; ++i) w[std::size_t(i * kCols + (i + 1) % kCols)] = 1.f;
  }
};

// noinline: callgrind's inclusive count of it is the recording alone.
[[gnu::noinline]] Tensor record_tiny(TensorTape& tape, TinyCase& c) {
  Tensor x = tape.parameter(Shape{kRows, kCols}, c.x0.data(), c.gx0.data());
  Tensor p;
  if (c.op == Tiny::add) p = tape.parameter(Shape{kRows, kCols}, c.b.data(), c.gb.data());
  if (c.op == Tiny::matmul || c.op == Tiny::linear)
    p = tape.parameter(Shape{kCols, kCols}, c.w.data(), c.gw.data());
  const Tensor bias =
      c.op == Tiny::linear ? tape.parameter(Shape{kCols}, c.bias.data(), c.gbias.data()) : Tensor{};
  for (int i = 0; i < kChain; ++i) {
    switch (c.op) {
      case Tiny::add: x = x + p; break;
      case Tiny::relu: x = relu(x); break;
      case Tiny::matmul: x = matmul(x, p); break;
      case Tiny::linear: x = linear(x, p, bias); break;
    }
  }
  return x;
}

[[gnu::noinline]] void tape_record(TensorTape& tape, TinyCase& c) {
  tape.reset();
  record_tiny(tape, c);
}

// One training step's engine work. noinline: --toggle-collect='*tape_step*' counts exactly it.
[[gnu::noinline]] void tape_step(TensorTape& tape, TinyCase& c) {
  tape.reset();
  tape.backward(record_tiny(tape, c), c.seed);
}

// y = op(x) on raw (4, 5) arrays, with compile-time sizes and op, as hand-written code has.
template <Tiny kOp> void plain_op(const TinyCase& c, const float* x, float* y) {
  if constexpr (kOp == Tiny::add) {
    for (int i = 0; i < kEl; ++i) y[i] = x[i] + c.b[std::size_t(i)];
  } else if constexpr (kOp == Tiny::relu) {
    for (int i = 0; i < kEl; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
  } else {
    constexpr bool lin = kOp == Tiny::linear;  // linear: x W^T + bias
    const float* w = c.w.data();
    for (int r = 0; r < kRows; ++r)
      for (int j = 0; j < kCols; ++j) {
        float s = lin ? c.bias[std::size_t(j)] : 0.f;
        for (int k = 0; k < kCols; ++k)
          s += x[r * kCols + k] * w[lin ? j * kCols + k : k * kCols + j];
        y[r * kCols + j] = s;
      }
  }
}

template <Tiny kOp> void plain_forward_of(TinyCase& c) {
  std::copy(c.x0.begin(), c.x0.end(), c.xs.begin());
  float* xs = c.xs.data();
  for (int i = 0; i < kChain; ++i) plain_op<kOp>(c, xs + i * kEl, xs + (i + 1) * kEl);
  g_sink = c.xs.back();
}

// Backward through the kept intermediates: g = dL/dx_i, from the last op to the first.
template <Tiny kOp> void plain_step_of(TinyCase& c) {
  plain_forward_of<kOp>(c);
  float g[kEl], gx[kEl];
  std::fill(g, g + kEl, 1.f);
  const float* w = c.w.data();
  float* gw = c.pgw.data();
  for (int i = kChain - 1; i >= 0; --i) {
    const float* x = c.xs.data() + i * kEl;
    if constexpr (kOp == Tiny::add) {
      for (int e = 0; e < kEl; ++e) c.pgb[std::size_t(e)] += g[e], gx[e] = g[e];
    } else if constexpr (kOp == Tiny::relu) {
      for (int e = 0; e < kEl; ++e) gx[e] = x[e] > 0.f ? g[e] : 0.f;
    } else {
      // matmul: dx = g W^T, dW += x^T g.  linear: dx = g W, dW += g^T x, dbias += sum_r g.
      constexpr bool lin = kOp == Tiny::linear;
      for (int r = 0; r < kRows; ++r)
        for (int k = 0; k < kCols; ++k) {
          float s = 0;
          for (int j = 0; j < kCols; ++j)
            s += g[r * kCols + j] * w[lin ? j * kCols + k : k * kCols + j];
          gx[r * kCols + k] = s;
        }
      for (int r = 0; r < kRows; ++r)
        for (int j = 0; j < kCols; ++j)
          for (int k = 0; k < kCols; ++k)
            gw[lin ? j * kCols + k : k * kCols + j] += g[r * kCols + j] * x[r * kCols + k];
      if constexpr (lin)
        for (int r = 0; r < kRows; ++r)
          for (int j = 0; j < kCols; ++j) c.pgbias[std::size_t(j)] += g[r * kCols + j];
    }
    std::copy(gx, gx + kEl, g);
  }
  for (int e = 0; e < kEl; ++e) c.pgx0[std::size_t(e)] += g[e];
}

template <class F> void with_tiny(Tiny op, F&& f) {
  switch (op) {
    case Tiny::add: return f(std::integral_constant<Tiny, Tiny::add>{});
    case Tiny::relu: return f(std::integral_constant<Tiny, Tiny::relu>{});
    case Tiny::matmul: return f(std::integral_constant<Tiny, Tiny::matmul>{});
    case Tiny::linear: return f(std::integral_constant<Tiny, Tiny::linear>{});
  }
}

// noinline: callgrind counts plain_step as tape_step (--toggle-collect='*plain_step*').
[[gnu::noinline]] void plain_forward(TinyCase& c) {
  with_tiny(c.op, [&](auto op) { plain_forward_of<decltype(op)::value>(c); });
}
[[gnu::noinline]] void plain_step(TinyCase& c) {
  with_tiny(c.op, [&](auto op) { plain_step_of<decltype(op)::value>(c); });
}

// The tape's forward must equal the plain one bit for bit, and its gradient of x0 too
// (same formulas, same summation order for these sizes).
void check_tiny(TensorTape& tape, TinyCase& c) {
  std::fill(c.gx0.begin(), c.gx0.end(), 0.f);
  tape_step(tape, c);
  const Tensor out = tape.handle(static_cast<ag::NodeId>(tape.size() - 1));
  std::fill(c.pgx0.begin(), c.pgx0.end(), 0.f);
  plain_step(c);
  const auto ty = out.data<float>();
  if (!std::equal(ty.begin(), ty.end(), c.xs.end() - kEl)) fail("tiny: forward differs");
  for (int e = 0; e < kEl; ++e)
    if (std::abs(c.gx0[std::size_t(e)] - c.pgx0[std::size_t(e)]) >
        1e-5f * (1 + std::abs(c.pgx0[std::size_t(e)])))
      fail("tiny: gradient differs");
}

void bench_tiny() {
  std::printf("\n(3) per-op overhead: a chain of %d ops on (4, 5) float32 tensors, warm tape\n",
              kChain);
  std::printf("%-15s %-9s %9s %9s %9s %9s\n", "op", "pass", "tape", "plain", "ratio", "ratio*");
  std::printf("%-15s %-9s %9s %9s %9s %9s\n", "", "", "ns/op", "ns/op", "medians", "rounds");
  for (const Tiny op : {Tiny::add, Tiny::relu, Tiny::matmul, Tiny::linear}) {
    TinyCase c(op);
    TensorTape tape;
    check_tiny(tape, c);
    for (const bool backward : {false, true}) {
      std::function<void()> on_tape = [&] { tape_record(tape, c); };
      std::function<void()> plain = [&] { plain_forward(c); };
      if (backward) {
        on_tape = [&] { tape_step(tape, c); };
        plain = [&] { plain_step(c); };
      }
      const auto ns = alternate(reps_for(on_tape), {on_tape, plain});
      std::printf("%-15s %-9s %9.1f %9.2f %9.1f %9.1f\n", tiny_name(op),
                  backward ? "rec+back" : "record", median(ns[0]) / kChain, median(ns[1]) / kChain,
                  median(ns[0]) / median(ns[1]), ratio_of_rounds(ns[0], ns[1]));
    }
  }
}

// ---- the environment -------------------------------------------------------------------

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

void usage() {
  std::fprintf(stderr,
               "usage: tensor_bench [--rounds N] [--only matmul|elementwise|tiny]\n"
               "       tensor_bench --callgrind tape-OP|plain-OP [--check-finite]   (OP: add relu "
               "matmul linear;\n"
               "       --check-finite: the tape in anomaly mode, Note [Anomaly mode])\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string callgrind, only;
  bool check_finite = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--rounds" && i + 1 < argc)
      g_rounds = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--only" && i + 1 < argc)
      only = argv[++i];
    else if (arg == "--callgrind" && i + 1 < argc)
      callgrind = argv[++i];
    else if (arg == "--check-finite")
      check_finite = true;
    else
      usage();
  }
  if (check_finite && callgrind.empty()) usage();  // the timed sections run with the mode off

  if (!callgrind.empty()) {
    // One warm-up step outside the counted function (the arena and node vector grow to their
    // size), then exactly one call of tape_step or plain_step, which --toggle-collect counts.
    const auto dash = callgrind.find('-');
    if (dash == std::string::npos) usage();
    const std::string kind = callgrind.substr(0, dash), which = callgrind.substr(dash + 1);
    const Tiny op = which == "add"      ? Tiny::add
                    : which == "relu"   ? Tiny::relu
                    : which == "matmul" ? Tiny::matmul
                    : which == "linear" ? Tiny::linear
                                        : (usage(), Tiny::add);
    TinyCase c(op);
    TensorTape tape;
    tape.set_check_finite(check_finite);
    if (kind == "tape") {
      tape.reset();
      tape.backward(record_tiny(tape, c), c.seed);
      tape_step(tape, c);
    } else if (kind == "plain") {
      plain_forward(c);
      plain_step(c);
    } else {
      usage();
    }
    std::printf("%s: %d ops, %zu tape nodes\n", callgrind.c_str(), kChain, tape.size());
    return 0;
  }

  std::printf("tapegrad tensor benchmark: the tape against bare BLAS, memcpy and hand loops\n");
  std::printf("cpu:      %s (%u threads online), load average %s\n", cpu_model().c_str(),
              static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN)), load_average().c_str());
  std::printf("compiler: g++ %s, %s\n", __VERSION__, TG_BUILD_INFO);
  const char* env_threads = std::getenv("OPENBLAS_NUM_THREADS");
  std::printf("openblas: %s; OPENBLAS_NUM_THREADS=%s (each matmul table sets its own count)\n",
              openblas_get_config(), env_threads ? env_threads : "unset");
  std::printf(
      "rounds:   %d, tape and peers alternated (ABC ABC ...), medians over rounds;\n"
      "          ratio* is the median of the per-round ratios, which drift cancels best\n",
      g_rounds);

  if (only.empty() || only == "matmul") {
    bench_matmul(1);
    bench_matmul(2);
  }
  // The rest never reaches BLAS (tiny GEMMs are plain loops below 32^3 multiply-adds).
  openblas_set_num_threads(1);
  if (only.empty() || only == "elementwise") bench_elementwise();
  if (only.empty() || only == "tiny") bench_tiny();
  return 0;
}
