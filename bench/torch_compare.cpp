// tapegrad against LibTorch (C++) and PyTorch (Python) on the project's training workloads, side
// by side in one run. Each peer is a process of its own serving the line protocol of
// torch_compare.hpp: this program with --serve (tapegrad), torch_compare_libtorch (LibTorch) and
// torch_compare.py (PyTorch, under /usr/bin/python3). Without --serve this program is the driver:
// it starts the three, gives each its thread settings, warms each up, and times them in turn,
// round after round (the order rotating), so the machine's drift hits all of them alike.

#include "torch_compare.hpp"

#include <cblas.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn/data.hpp>
#include <tapegrad/nn/layers.hpp>
#include <tapegrad/nn/loss.hpp>
#include <tapegrad/nn/metrics.hpp>
#include <tapegrad/nn/optim.hpp>
#include <tapegrad/parallel.hpp>
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
using ag::TensorTape;
using Clock = std::chrono::steady_clock;

// ---- the tapegrad peer --------------------------------------------------------------------

std::unique_ptr<nn::Optimizer> make_optimizer(const tc::Spec& spec, nn::Module& model) {
  if (spec.optimizer == "sgd")
    return std::make_unique<nn::SGD>(model.parameters(), nn::SGDOptions{.lr = spec.lr});
  return std::make_unique<nn::Adam>(model.parameters(), nn::AdamOptions{.lr = spec.lr});
}

// Workloads 1-3: one fixed batch, a training step as a user writes it.
class TgSteps : public tc::Session {
 public:
  TgSteps(const tc::Spec& spec, std::uint64_t seed)
      : spec_(spec),
        mlp_(spec.sizes, ag::Op::relu, spec.sigmoid_output ? ag::Op::sigmoid : nn::Activation::none,
             seed),
        opt_(make_optimizer(spec, mlp_)) {
    const nn::Dataset d = spec.name == "xor" ? nn::xor_data() : nn::moons(spec.rows, 0.1, seed + 1);
    rows_ = d.rows;
    x_ = d.features;
    for (std::int32_t label : d.labels)
      y_.push_back(spec.loss == "hinge_l2" ? 2.0f * float(label) - 1.0f : float(label));
  }

  double run(long n, double& loss) override {
    const auto t0 = Clock::now();
    Tensor l;
    for (long i = 0; i < n; ++i) l = step();
    const double s = tc::seconds_since(t0);
    loss = l.item();
    return s;
  }

  void warm() override {
    const auto t0 = Clock::now();
    while (tc::seconds_since(t0) < 0.3) step();
  }

  double eval() override {
    ag::NoGrad no_grad(tape_);
    tape_.reset();
    Tensor out = mlp_(tape_.constant<float>(Shape{rows_, 2}, x_));
    std::vector<std::int32_t> labels;
    for (float y : y_) labels.push_back(y > 0 ? 1 : 0);
    return nn::accuracy(out, labels,
                        spec_.sigmoid_output ? nn::Scores::probabilities : nn::Scores::logits);
  }

 private:
  Tensor step() {
    tape_.reset();
    Tensor out = mlp_(tape_.constant<float>(Shape{rows_, 2}, x_));
    Tensor y = tape_.constant<float>(Shape{rows_, 1}, y_);
    Tensor loss;
    if (spec_.loss == "bce") {
      loss = nn::bce_loss(out, y);
    } else if (spec_.loss == "bce_logits") {
      loss = nn::bce_with_logits(out, y);
    } else {  // micrograd's loss: mean hinge plus 1e-4 times the sum of squared parameters
      Tensor reg;
      for (nn::Parameter* p : mlp_.parameters()) {
        Tensor w = p->on(tape_);
        Tensor s = ag::sum(w * w);
        reg = reg.empty() ? s : reg + s;
      }
      loss = nn::hinge_loss(out, y) + 1e-4 * reg;
    }
    opt_->zero_grad();
    tape_.backward(loss);
    opt_->step();
    return loss;
  }

  const tc::Spec& spec_;
  nn::MLP mlp_;
  std::unique_ptr<nn::Optimizer> opt_;
  TensorTape tape_;
  std::int64_t rows_ = 0;
  std::vector<float> x_, y_;
};

const nn::Dataset& fashion(nn::Split split) {
  static const nn::Dataset train = nn::load_fashion_mnist(nn::Split::train);
  static const nn::Dataset test = nn::load_fashion_mnist(nn::Split::test);
  return split == nn::Split::train ? train : test;
}

// Workload 4: epochs of shuffled batches of 128 from nn::DataLoader.
class TgFashion : public tc::Session {
 public:
  TgFashion(const tc::Spec& spec, std::uint64_t seed)
      : mlp_(spec.sizes, ag::Op::relu, nn::Activation::none, seed),
        opt_(mlp_.parameters(), nn::AdamOptions{.lr = spec.lr}),
        loader_(fashion(nn::Split::train), spec.rows, true, seed) {}

  double run(long n, double& loss) override {
    const auto t0 = Clock::now();
    for (long e = 0; e < n; ++e) loss = epoch(-1);
    return tc::seconds_since(t0);
  }
  void warm() override { epoch(20); }

  double eval() override {
    const nn::Dataset& test = fashion(nn::Split::test);
    ag::NoGrad no_grad(tape_);
    tape_.reset();
    Tensor out = mlp_(test.inputs(tape_));
    return nn::accuracy(out, test.labels, nn::Scores::logits);
  }

 private:
  // One epoch, or its first max_batches batches; the mean loss.
  double epoch(long max_batches) {
    double sum = 0;
    long count = 0;
    for (const nn::Batch& b : loader_) {
      tape_.reset();
      Tensor loss = nn::cross_entropy(mlp_(b.inputs(tape_)), b.y);
      opt_.zero_grad();
      tape_.backward(loss);
      opt_.step();
      sum += loss.item();
      if (++count == max_batches) break;
    }
    return count ? sum / double(count) : 0.0;
  }

  nn::MLP mlp_;
  nn::Adam opt_;
  nn::DataLoader loader_;
  TensorTape tape_;
};

int serve_tapegrad() {
  // TC_FLUSH_DENORMAL=1 (bench/README.md): every peer flushes subnormal floats to zero in all
  // its ops (MXCSR FTZ and DAZ; torch.set_flush_denormal for the torch peers). tapegrad's
  // optimizers do so anyway (Note [Subnormal optimizer state]); this is torch's way to the same.
  if (const char* ftz = std::getenv("TC_FLUSH_DENORMAL"); ftz != nullptr && std::string(ftz) == "1")
    _mm_setcsr(_mm_getcsr() | 0x8040);
  return tc::serve(
      [](const tc::Spec& spec, std::uint64_t seed) -> std::unique_ptr<tc::Session> {
        if (spec.epochs) return std::make_unique<TgFashion>(spec, seed);
        return std::make_unique<TgSteps>(spec, seed);
      },
      // tapegrad's own pool (Note [Parallel work]) takes the protocol's OMP count: like torch's
      // intra-op threads, it splits large products and Adam's update; BLAS is OpenBLAS's pool.
      [](int threads, int blas) {
        ag::set_num_threads(threads);
        openblas_set_num_threads(blas);
      });
}

// ---- the driver ---------------------------------------------------------------------------

// A peer process (peer.hpp) that speaks torch_compare.hpp's protocol.
class Peer : public bench::Peer {
 public:
  using bench::Peer::Peer;
  // "run N": seconds and loss.
  std::pair<double, double> run(long n) {
    const std::string r = ask("run " + std::to_string(n));
    double s = 0, loss = 0;
    if (std::sscanf(r.c_str(), "%lf %lf", &s, &loss) != 2)
      throw std::runtime_error(name() + ": bad reply '" + r + "'");
    return {s, loss};
  }
};

// Starts a fresh set of peer processes: tapegrad first, then those that are there.
using PeerStarter = std::function<std::vector<std::unique_ptr<Peer>>()>;

struct Threads {
  int omp = 1, blas = 1;
};

std::string threads_text(const std::string& peer, Threads t) {
  if (peer == "tapegrad")
    return "threads " + std::to_string(t.omp) + ", blas " + std::to_string(t.blas);
  return "omp " + std::to_string(t.omp) + ", blas " + std::to_string(t.blas);
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Options {
  std::vector<std::string> only;
  int rounds = 21;
  int epochs = 5;
  double block_ms = 100;
  std::vector<int> fmnist_threads = {1, 2};
  // The torch peers' best setting at 2 threads on 2 cores (see bench/README.md); tapegrad's
  // pool splits the products itself, with OpenBLAS at 1 (Note [Split products]).
  Threads tapegrad2{2, 1}, libtorch2{1, 2}, pytorch2{1, 2};
  bool libtorch = true, pytorch = true;
  std::string python = "/usr/bin/python3";
  std::string script = std::string(TG_SOURCE_DIR) + "/torch_compare.py";
  std::uint64_t seed = 1;
};

Threads threads_for(const Options& o, const std::string& peer, int n) {
  if (n == 1) return {1, 1};
  if (peer == "libtorch") return o.libtorch2;
  if (peer == "pytorch") return o.pytorch2;
  return n == 2 ? o.tapegrad2 : Threads{n, 1};
}

void setup(Peer& p, const std::string& workload, Threads t, std::uint64_t seed) {
  p.ask("setup " + workload + " " + std::to_string(t.omp) + " " + std::to_string(t.blas) + " " +
        std::to_string(seed));
}

// Per-round ratios of peer k to peer 0 (tapegrad), and their median.
std::vector<double> ratios(const std::vector<double>& peer, const std::vector<double>& base) {
  std::vector<double> r;
  for (std::size_t i = 0; i < peer.size(); ++i) r.push_back(peer[i] / base[i]);
  return r;
}

std::string list(const std::vector<double>& v, const char* fmt) {
  std::string s;
  char buf[32];
  for (double x : v) {
    std::snprintf(buf, sizeof buf, fmt, x);
    if (!s.empty()) s += ' ';
    s += buf;
  }
  return s;
}

void step_workload(const Options& o, const tc::Spec& spec,
                   std::vector<std::unique_ptr<Peer>>& peers) {
  std::printf("\n== %s: %s\n", std::string(spec.name).c_str(), std::string(spec.title).c_str());
  const Threads one{1, 1};
  std::vector<long> reps;
  for (auto& p : peers) {
    setup(*p, std::string(spec.name), one, o.seed);
    p->run(10);  // calibration: steps per block of about block_ms
    const double s = p->run(20).first / 20;
    reps.push_back(std::clamp(long(o.block_ms * 1e-3 / s), 1L, 1000000L));
  }
  std::vector<std::vector<double>> us(peers.size());
  std::vector<double> loss(peers.size());
  for (int r = 0; r < o.rounds; ++r)
    for (std::size_t j = 0; j < peers.size(); ++j) {
      const std::size_t k = (j + std::size_t(r)) % peers.size();  // rotate the order
      auto [s, l] = peers[k]->run(reps[k]);
      us[k].push_back(s / double(reps[k]) * 1e6);
      loss[k] = l;
    }
  std::printf("%-9s %-15s %7s %12s %10s %10s %7s %9s\n", "peer", "threads", "steps", "us/step",
              "ratio", "ratio*", "loss", "accuracy");
  for (std::size_t k = 0; k < peers.size(); ++k) {
    const std::string acc = peers[k]->ask("eval");
    const double m = median(us[k]);
    std::printf("%-9s %-15s %7ld %12.2f %10.1f %10.1f %7.4f %9s\n", peers[k]->name().c_str(),
                threads_text(peers[k]->name(), one).c_str(), reps[k], m, m / median(us[0]),
                median(ratios(us[k], us[0])), loss[k], acc.c_str());
  }
  for (std::size_t k = 1; k < peers.size(); ++k)
    std::printf("  %s/tapegrad per round: %s\n", peers[k]->name().c_str(),
                list(ratios(us[k], us[0]), "%.3g").c_str());
}

// Note [Thread counts alternate]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Fashion-MNIST is timed at every thread count in one schedule: each (peer, thread count) is a
// process of its own, set up once, and a round is one epoch of each of them, the order rotating
// round by round. So "2 threads against 1" is a ratio within a round, as "peer against
// tapegrad" is, and the machine's drift (other jobs on a shared machine) hits both counts alike;
// run one count after the other and a quiet minute can make either look faster.
void fmnist_workload(const Options& o, const tc::Spec& spec, const PeerStarter& start_peers) {
  std::printf("\n== %s: %s\n", std::string(spec.name).c_str(), std::string(spec.title).c_str());
  struct Run {
    std::unique_ptr<Peer> peer;
    int threads;
    std::vector<double> sec, losses;
  };
  std::vector<Run> runs;  // grouped by thread count, tapegrad first in each group
  for (int n : o.fmnist_threads)
    for (auto& p : start_peers()) {
      setup(*p, "fmnist", threads_for(o, p->name(), n), o.seed);
      runs.push_back(Run{std::move(p), n, {}, {}});
    }
  for (int e = 0; e < o.epochs; ++e)
    for (std::size_t j = 0; j < runs.size(); ++j) {
      Run& r = runs[(j + std::size_t(e)) % runs.size()];
      auto [s, l] = r.peer->run(1);
      r.sec.push_back(s);
      r.losses.push_back(l);
    }
  auto find = [&](const std::string& name, int n) -> const Run* {
    for (const Run& r : runs)
      if (r.peer->name() == name && r.threads == n) return &r;
    return nullptr;
  };
  for (int n : o.fmnist_threads) {
    const Run& base = *find("tapegrad", n);
    std::printf("-- %d thread%s, %d epochs (alternating with the other thread counts)\n", n,
                n == 1 ? "" : "s", o.epochs);
    std::printf("%-9s %-17s %10s %10s %10s %9s %14s\n", "peer", "threads", "s/epoch", "ratio",
                "ratio*", "loss", "test accuracy");
    for (const Run& r : runs) {
      if (r.threads != n) continue;
      const double acc = std::stod(r.peer->ask("eval"));
      const double m = median(r.sec);
      std::printf("%-9s %-17s %10.3f %10.3f %10.3f %9.4f %13.2f%%\n", r.peer->name().c_str(),
                  threads_text(r.peer->name(), threads_for(o, r.peer->name(), n)).c_str(), m,
                  m / median(base.sec), median(ratios(r.sec, base.sec)), r.losses.back(),
                  100 * acc);
    }
    for (const Run& r : runs)
      if (r.threads == n)
        std::printf("  %s s per epoch: %s\n", r.peer->name().c_str(), list(r.sec, "%.3f").c_str());
  }
  // Each peer's speed-up from the first thread count to each other one, within rounds.
  const int first = o.fmnist_threads.front();
  for (const Run& r : runs) {
    if (r.threads == first) continue;
    const Run* one = find(r.peer->name(), first);
    const std::vector<double> speedup = ratios(one->sec, r.sec);
    std::printf("  %s: %d threads against %d, speed-up by rounds %.3f (median of %s)\n",
                r.peer->name().c_str(), r.threads, first, median(speedup),
                list(speedup, "%.3f").c_str());
  }
}

Threads parse_threads(const std::string& s) {
  Threads t;
  if (std::sscanf(s.c_str(), "%d,%d", &t.omp, &t.blas) != 2)
    throw std::runtime_error("threads must be OMP,BLAS, not " + s);
  return t;
}

int usage() {
  std::fprintf(
      stderr,
      "usage: torch_compare [--only xor,moons,adam,fmnist] [--rounds N] [--epochs N]\n"
      "         [--block-ms MS] [--fmnist-threads 1,2] [--tapegrad-threads2 THREADS,BLAS]\n"
      "         [--libtorch-threads2 OMP,BLAS] [--pytorch-threads2 OMP,BLAS]\n"
      "         [--no-libtorch] [--no-pytorch]\n"
      "         [--python PATH] [--script torch_compare.py] [--seed N]\n"
      "       torch_compare --serve   (the tapegrad peer: see torch_compare.hpp)\n");
  return 2;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',')
      out.push_back(cur), cur.clear();
    else
      cur += c;
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string self_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, std::size_t(n));
  return p.substr(0, p.rfind('/'));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--serve") return serve_tapegrad();
  Options o;
  try {
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= args.size()) throw std::runtime_error(a + " needs a value");
        return args[++i];
      };
      if (a == "--only")
        o.only = split(value());
      else if (a == "--rounds")
        o.rounds = std::stoi(value());
      else if (a == "--epochs")
        o.epochs = std::stoi(value());
      else if (a == "--block-ms")
        o.block_ms = std::stod(value());
      else if (a == "--fmnist-threads") {
        o.fmnist_threads.clear();
        for (auto& t : split(value())) o.fmnist_threads.push_back(std::stoi(t));
      } else if (a == "--tapegrad-threads2")
        o.tapegrad2 = parse_threads(value());
      else if (a == "--libtorch-threads2")
        o.libtorch2 = parse_threads(value());
      else if (a == "--pytorch-threads2")
        o.pytorch2 = parse_threads(value());
      else if (a == "--no-libtorch")
        o.libtorch = false;
      else if (a == "--no-pytorch")
        o.pytorch = false;
      else if (a == "--python")
        o.python = value();
      else if (a == "--script")
        o.script = value();
      else if (a == "--seed")
        o.seed = std::stoull(value());
      else
        return usage();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torch_compare: %s\n", e.what());
    return usage();
  }

  std::signal(SIGPIPE, SIG_IGN);
  const std::string dir = self_dir();
  const std::string libtorch_exe = dir + "/torch_compare_libtorch";
  try {
    const PeerStarter start_peers = [&] {
      std::vector<std::unique_ptr<Peer>> peers;
      peers.push_back(std::make_unique<Peer>(
          "tapegrad", std::vector<std::string>{dir + "/torch_compare", "--serve"}));
      if (o.libtorch && access(libtorch_exe.c_str(), X_OK) == 0)
        peers.push_back(std::make_unique<Peer>("libtorch", std::vector<std::string>{libtorch_exe}));
      if (o.pytorch)
        peers.push_back(
            std::make_unique<Peer>("pytorch", std::vector<std::string>{o.python, "-u", o.script}));
      return peers;
    };
    if (o.libtorch && access(libtorch_exe.c_str(), X_OK) != 0)
      std::printf("(no %s: LibTorch peer skipped; install libtorch-dev and reconfigure)\n",
                  libtorch_exe.c_str());

    char host[256] = "?";
    gethostname(host, sizeof host);
    std::printf(
        "torch_compare: %s; %ld cores online; rounds %d (order rotating), blocks of ~%.0f ms;\n"
        "  each peer its own process; times measured inside the peer; ratio = median(peer) /\n"
        "  median(tapegrad); ratio* = median of the per-round ratios (drift cancels best)\n",
        TG_BUILD_INFO, sysconf(_SC_NPROCESSORS_ONLN), o.rounds, o.block_ms);
    auto wanted = [&](std::string_view name) {
      return o.only.empty() || std::find(o.only.begin(), o.only.end(), name) != o.only.end();
    };
    std::vector<std::unique_ptr<Peer>> step_peers;  // started once, for workloads 1-3
    for (const tc::Spec& spec : tc::specs()) {
      if (!wanted(spec.name)) continue;
      if (spec.epochs) {
        fmnist_workload(o, spec, start_peers);
      } else {
        if (step_peers.empty()) step_peers = start_peers();
        step_workload(o, spec, step_peers);
      }
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torch_compare: %s\n", e.what());
    return 1;
  }
  return 0;
}
