// A Hessian-vector product against a plain gradient on torch_compare's moons MLP (issue 15, item
// 6), with torch.autograd.functional.hvp on the same model in the same run (hvp_compare.py).
// tapegrad runs in this process; PyTorch is a peer process speaking a line protocol on a pipe.

#include <cblas.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn/data.hpp>
#include <tapegrad/nn/layers.hpp>
#include <tapegrad/nn/loss.hpp>
#include <vector>

#include "peer.hpp"

#ifndef TG_BUILD_INFO
#define TG_BUILD_INFO "unknown"
#endif
#ifndef TG_SOURCE_DIR
#define TG_SOURCE_DIR "."
#endif

namespace {

using ag::Shape;
using ag::Tensor;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// torch_compare's moons workload without its optimizer: an MLP 2-16-16-1 with ReLU hidden layers
// on 100 moons points, micrograd's loss mean(relu(1 - y score)) + 1e-4 sum p^2. Every op on the
// way (linear, relu, mul, sub, mean, sum) has its recorded backward, so the product is taken by
// double backward on the same tape. v is one fixed normal vector per parameter.
class TapegradModel {
 public:
  explicit TapegradModel(std::uint64_t seed)
      : mlp_({2, 16, 16, 1}, ag::Op::relu, nn::Activation::none, seed) {
    const nn::Dataset d = nn::moons(100, 0.1, seed + 1);
    x_ = d.features;
    for (std::int32_t label : d.labels) y_.push_back(2.0f * float(label) - 1.0f);
    std::mt19937_64 rng(seed + 2);
    std::normal_distribution<float> normal;
    for (nn::Parameter* p : mlp_.parameters()) {
      v_.emplace_back(std::size_t(p->numel()));
      for (float& e : v_.back()) e = normal(rng);
    }
  }

  // One gradient as a training step takes it: forward, loss, backward into the parameters.
  double gradient() {
    for (nn::Parameter* p : mlp_.parameters()) p->zero_grad();
    const Tensor loss = record_loss();
    tape_.backward(loss);
    return loss.item();
  }

  // The same forward and loss, then H v by double backward; returns v.Hv, a check that the
  // product was computed (and the figure the PyTorch peer prints for its own model).
  double hvp() {
    const Tensor loss = record_loss();
    std::vector<Tensor> v;
    for (std::size_t k = 0; k < leaves_.size(); ++k)
      v.push_back(tape_.constant<float>(leaves_[k].shape(), v_[k]));
    const std::vector<Tensor> hv = ag::hessian_vector_product(loss, leaves_, v);
    double vhv = 0;
    for (std::size_t k = 0; k < hv.size(); ++k) {
      const std::span<const float> h = hv[k].data<float>();
      for (std::size_t i = 0; i < h.size(); ++i) vhv += double(h[i]) * double(v_[k][i]);
    }
    return vhv;
  }

 private:
  Tensor record_loss() {
    tape_.reset();
    leaves_.clear();
    for (nn::Parameter* p : mlp_.parameters()) leaves_.push_back(p->on(tape_));
    Tensor h = tape_.constant<float>(Shape{std::int64_t(y_.size()), 2}, x_);
    Tensor reg;
    for (std::size_t k = 0; k < leaves_.size(); k += 2) {
      h = ag::linear(h, leaves_[k], leaves_[k + 1]);
      if (k + 2 < leaves_.size()) h = ag::relu(h);
    }
    for (const Tensor& w : leaves_) {
      const Tensor s = ag::sum(w * w);
      reg = reg.empty() ? s : reg + s;
    }
    const Tensor y = tape_.constant<float>(Shape{std::int64_t(y_.size()), 1}, y_);
    return nn::hinge_loss(h, y) + 1e-4 * reg;
  }

  nn::MLP mlp_;
  ag::TensorTape tape_;
  std::vector<Tensor> leaves_;
  std::vector<float> x_, y_;
  std::vector<std::vector<float>> v_;
};

// The PyTorch peer: /usr/bin/python3 hvp_compare.py, one command per line, one reply per line.
class PythonPeer : public bench::Peer {
 public:
  PythonPeer(const std::string& python, const std::string& script)
      : bench::Peer("PyTorch peer", {python, "-u", script}) {}
  // "grad N", "hvp N" or "vhp N": the seconds the N calls took, timed inside the peer.
  double time(const std::string& what, long n) {
    return std::stod(ask(what + " " + std::to_string(n)));
  }
};

// n calls of one kind, out of line so that callgrind counts them by name (--callgrind).
[[gnu::noinline]] void counted_calls(TapegradModel& model, const std::string& kind, int n) {
  for (int i = 0; i < n; ++i) kind == "hvp" ? model.hvp() : model.gradient();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Calls per block so that a block takes about block_ms, from a short first measurement.
long calls_per_block(const std::function<double(long)>& time, double block_ms) {
  time(10);
  const double per_call = time(20) / 20;
  return std::clamp(long(block_ms * 1e-3 / per_call), 1L, 1000000L);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 21;
  double block_ms = 50;
  std::uint64_t seed = 1;
  std::string python = "/usr/bin/python3";
  std::string script = std::string(TG_SOURCE_DIR) + "/hvp_compare.py";
  CLI::App app(
      "A Hessian-vector product against a plain gradient on the moons MLP, tapegrad and "
      "torch.autograd.functional.hvp side by side (bench/README.md)");
  app.add_option("--rounds", rounds, "Rounds of timed blocks")->check(CLI::Range(1, 1000));
  app.add_option("--block-ms", block_ms, "Milliseconds per timed block")
      ->check(CLI::Range(1.0, 10000.0));
  app.add_option("--seed", seed, "Seed of the models, the data and v");
  app.add_option("--python", python, "Python with torch (Debian's python3-torch)");
  app.add_option("--script", script, "The PyTorch peer");
  std::string callgrind;
  app.add_option("--callgrind", callgrind,
                 "Only tapegrad: 20 warm calls of 'gradient' or 'hvp', then 10 for "
                 "valgrind --toggle-collect='*counted_calls*' to count (no timing, no peer)")
      ->check(CLI::IsMember({"gradient", "hvp"}));
  CLI11_PARSE(app, argc, argv);

  try {
    // One thread everywhere: the tensors are far below any size where a second thread helps
    // (bench/README.md, torch_compare's threads). tapegrad has only OpenBLAS's pool.
    openblas_set_num_threads(1);
    TapegradModel tapegrad(seed);
    if (!callgrind.empty()) {
      for (int i = 0; i < 20; ++i)  // warm: the tape's arena at its full size
        callgrind == "hvp" ? tapegrad.hvp() : tapegrad.gradient();
      counted_calls(tapegrad, callgrind, 10);
      return 0;
    }
    PythonPeer torch(python, script);
    torch.ask(fmt::format("setup 1 1 {}", seed));
    fmt::print("hvp_compare ({}): moons MLP 2-16-16-1 ReLU, 100 points, hinge + 1e-4 L2\n",
               TG_BUILD_INFO);
    fmt::print("threads: tapegrad blas 1; PyTorch omp 1 (torch.set_num_threads), blas 1\n");
    fmt::print("v.Hv (a check; each peer has its own init): tapegrad {:.6g}, PyTorch {}\n",
               tapegrad.hvp(), torch.ask("check"));

    // The four measurements, each a function from a number of calls to the seconds they took.
    const std::string names[] = {"tapegrad gradient", "tapegrad hvp", "torch gradient", "torch hvp",
                                 "torch vhp"};
    std::vector<std::function<double(long)>> timers = {
        [&](long n) {
          const auto t0 = Clock::now();
          for (long i = 0; i < n; ++i) tapegrad.gradient();
          return seconds_since(t0);
        },
        [&](long n) {
          const auto t0 = Clock::now();
          for (long i = 0; i < n; ++i) tapegrad.hvp();
          return seconds_since(t0);
        },
        [&](long n) { return torch.time("grad", n); },
        [&](long n) { return torch.time("hvp", n); },
        [&](long n) { return torch.time("vhp", n); },
    };
    const std::size_t kinds = timers.size();
    std::vector<long> calls;
    for (auto& t : timers) calls.push_back(calls_per_block(t, block_ms));

    // Rounds: every measurement once per round, the order rotating, so the machine's drift hits
    // all of them alike; the ratios are taken within a round.
    std::vector<std::vector<double>> us(kinds);
    for (int r = 0; r < rounds; ++r)
      for (std::size_t j = 0; j < kinds; ++j) {
        const std::size_t k = (j + std::size_t(r)) % kinds;
        us[k].push_back(timers[k](calls[k]) / double(calls[k]) * 1e6);
      }
    fmt::print("{} rounds, blocks of about {} ms\n\n", rounds, block_ms);
    fmt::print("{:<20}{:>12}{:>10}\n", "", "median us", "calls");
    for (std::size_t k = 0; k < kinds; ++k)
      fmt::print("{:<20}{:>12.1f}{:>10}\n", names[k], median(us[k]), calls[k]);

    auto ratio = [&](std::size_t a, std::size_t b) {
      std::vector<double> r;
      for (int i = 0; i < rounds; ++i) r.push_back(us[a][std::size_t(i)] / us[b][std::size_t(i)]);
      return median(r);
    };
    fmt::print("\nratios (median of the per-round ratios)\n");
    fmt::print("tapegrad hvp / tapegrad gradient   {:6.2f}   (goal <= 4)\n", ratio(1, 0));
    fmt::print("torch hvp / torch gradient         {:6.2f}\n", ratio(3, 2));
    fmt::print("torch vhp / torch gradient         {:6.2f}\n", ratio(4, 2));
    fmt::print("torch hvp / tapegrad hvp           {:6.2f}\n", ratio(3, 1));
    fmt::print("torch gradient / tapegrad gradient {:6.2f}\n", ratio(2, 0));
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "hvp_compare: {}\n", e.what());
    return 2;
  }
}
