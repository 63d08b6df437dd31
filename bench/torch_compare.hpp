// torch_compare's workloads and the line protocol its peers serve: shared by the tapegrad peer
// and driver (torch_compare.cpp) and the LibTorch peer (torch_compare_libtorch.cpp). The
// PyTorch peer (torch_compare.py) repeats the table and speaks the same protocol.
//
// Protocol: one command per line on stdin, one reply per line on stdout.
//   setup WORKLOAD OMP BLAS SEED  -> "ok"     sets the threads, loads the data, builds a
//                                             throwaway model and warms it up, then builds
//                                             the model that is timed (seeded)
//   run N                         -> "SECONDS LOSS"  N training steps (fmnist: N epochs), timed
//                                             inside the peer; LOSS is the last step's loss
//                                             (fmnist: the mean over the epoch's batches)
//   eval                          -> "ACCURACY"  fmnist: on the 10,000 test images; else on
//                                             the training batch
//   quit
// A failure answers "error MESSAGE".

#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace tc {

// One workload, as the issue states it. Hidden layers use ReLU everywhere.
struct Spec {
  std::string_view name;
  std::string_view title;
  std::vector<std::int64_t> sizes;
  bool sigmoid_output;         // else the last Linear's output is a score / logits
  std::int64_t rows;           // the batch (fmnist: per batch; the epoch is 60,000 images)
  std::string_view loss;       // bce, hinge_l2, bce_logits, ce
  std::string_view optimizer;  // sgd, adam
  double lr;
  bool epochs;  // timed per epoch (fmnist) rather than per step
};

inline const std::vector<Spec>& specs() {
  static const std::vector<Spec> s = {
      {"xor",
       "deep XOR: 2-(5 x 10)-1, ReLU, sigmoid, BCE, SGD lr 0.1, 4 points",
       {2, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 1},
       true,
       4,
       "bce",
       "sgd",
       0.1,
       false},
      {"moons",
       "moons: 2-16-16-1 ReLU, 100 points, hinge + 1e-4 L2, SGD lr 0.1",
       {2, 16, 16, 1},
       false,
       100,
       "hinge_l2",
       "sgd",
       0.1,
       false},
      {"adam",
       "2-64-64-1 ReLU, batch 256 (moons), BCE with logits, Adam lr 1e-3",
       {2, 64, 64, 1},
       false,
       256,
       "bce_logits",
       "adam",
       1e-3,
       false},
      {"fmnist",
       "Fashion-MNIST: 784-256-128-10 ReLU, cross-entropy, Adam lr 1e-3, batch 128",
       {784, 256, 128, 10},
       false,
       128,
       "ce",
       "adam",
       1e-3,
       true},
  };
  return s;
}

inline const Spec* find_spec(std::string_view name) {
  for (const Spec& s : specs())
    if (s.name == name) return &s;
  return nullptr;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A model, its optimizer and its data, for one workload.
class Session {
 public:
  virtual ~Session() = default;
  // n steps (or n epochs); returns the seconds they took and sets the loss.
  virtual double run(long n, double& loss) = 0;
  virtual void warm() = 0;  // steps for about 0.3 s, or 20 batches of an epoch
  virtual double eval() = 0;
};

using Factory = std::function<std::unique_ptr<Session>(const Spec&, std::uint64_t seed)>;
using SetThreads = std::function<void(int omp, int blas)>;

// The peer's side of the protocol, until "quit" or end of input.
inline int serve(const Factory& make, const SetThreads& set_threads) {
  std::unique_ptr<Session> session;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    try {
      if (cmd == "quit") break;
      if (cmd == "setup") {
        std::string name;
        int omp = 1, blas = 1;
        std::uint64_t seed = 0;
        in >> name >> omp >> blas >> seed;
        const Spec* spec = find_spec(name);
        if (spec == nullptr) throw std::runtime_error("unknown workload " + name);
        session.reset();
        set_threads(omp, blas);
        make(*spec, seed ^ 0x5eedull)->warm();
        session = make(*spec, seed);
        std::printf("ok\n");
      } else if (cmd == "run") {
        long n = 1;
        in >> n;
        if (!session) throw std::runtime_error("run before setup");
        double loss = 0;
        const double s = session->run(n, loss);
        std::printf("%.9g %.9g\n", s, loss);
      } else if (cmd == "eval") {
        if (!session) throw std::runtime_error("eval before setup");
        std::printf("%.9g\n", session->eval());
      } else {
        throw std::runtime_error("unknown command '" + cmd + "'");
      }
    } catch (const std::exception& e) {
      std::string msg = e.what();
      for (char& c : msg)
        if (c == '\n') c = ' ';
      std::printf("error %s\n", msg.c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace tc
