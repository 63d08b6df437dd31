// Every activation of the notes with its derivative (taken by backward, not by hand), then the
// same deep MLP trained with each: the notes' "activation functions on CIFAR-10" slide, on spirals.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

#include "example.hpp"

namespace {

// The 1-D Maxout of the plot: max(w1 x + b1, w2 x + b2) with fixed pieces, so it is drawn
// as a curve; in the training below the pieces are learned (nn::Maxout).
constexpr double kMaxoutW1 = 1.0, kMaxoutB1 = 0.0, kMaxoutW2 = -0.5, kMaxoutB2 = 0.0;
constexpr double kPreluAlpha = 0.25;  // PyTorch's initial alpha; training moves it

struct Curve {
  std::string name, title;
  std::function<ag::Tensor(ag::Tensor)> f;
  std::vector<double> y, dy;  // f(x) and f'(x) on the grid
};

// f and f' on the grid from one backward pass: y_i depends on x_i alone, so the gradient of
// sum(y) with respect to x is exactly f'(x_i) at every point.
void evaluate(Curve& c, const std::vector<double>& xs) {
  ag::TensorTape tape;
  ag::Tensor x = tape.input<double>(ag::Shape{std::int64_t(xs.size())}, xs, "x");
  ag::Tensor y = c.f(x);
  tape.backward(ag::sum(y));
  c.y = y.values();
  c.dy = x.grads();
}

std::vector<Curve> activation_curves() {
  return {
      {"sigmoid", "sigmoid", [](ag::Tensor x) { return ag::sigmoid(x); }, {}, {}},
      {"tanh", "tanh", [](ag::Tensor x) { return ag::tanh(x); }, {}, {}},
      {"relu", "relu", [](ag::Tensor x) { return ag::relu(x); }, {}, {}},
      {"leaky_relu",
       "leaky_relu, alpha 0.01",
       [](ag::Tensor x) { return ag::leaky_relu(x, 0.01); },
       {},
       {}},
      {"prelu",
       "prelu, alpha 0.25 (learnable)",
       [](ag::Tensor x) {
         // alpha is a tensor on the tape, as nn::PReLU's weight is: it gets a gradient too.
         ag::Tensor alpha = x.tape().input(ag::Shape{}, {kPreluAlpha}, "alpha");
         return ag::prelu(x, alpha);
       },
       {},
       {}},
      {"elu", "elu, alpha 1", [](ag::Tensor x) { return ag::elu(x, 1.0); }, {}, {}},
      {"maxout",
       "maxout: max(x, -0.5 x)",
       [](ag::Tensor x) { return ag::max(x * kMaxoutW1 + kMaxoutB1, x * kMaxoutW2 + kMaxoutB2); },
       {},
       {}},
  };
}

// ---- training ---------------------------------------------------------------------------------

struct Task {
  std::string name;
  nn::Dataset train, test;
  std::vector<std::int64_t> sizes;  // input, hidden..., classes
  std::size_t epochs;
  std::int64_t batch;
  double lr;
  double converged;  // "converged": the training accuracy of an epoch reaches this
};

struct Result {
  std::string name;
  double test_accuracy = 0;
  long epochs_to_converge = -1;  // -1: did not converge
  std::vector<double> test_curve;
  double seconds = 0;
  std::string note;  // PReLU's learned alphas
};

// The same deep net for every activation; Maxout replaces each Linear + activation by a
// Maxout layer of two pieces (the CIFAR-10 slide's maxout has twice the weights, too).
std::unique_ptr<nn::Module> make_net(const std::string& name, const std::vector<std::int64_t>& s,
                                     std::uint64_t seed) {
  if (name != "maxout")
    return std::make_unique<nn::MLP>(s, nn::parse_activation(name), nn::Activation::none, seed);
  auto net = std::make_unique<nn::Sequential>();
  for (std::size_t i = 0; i + 2 < s.size(); ++i)
    net->push_back(nn::Maxout(s[i], s[i + 1], 2, seed * 1000003ull + i));
  net->push_back(
      nn::Linear(nn::LinearOptions(s[s.size() - 2], s.back()).seed(seed * 1000003ull + s.size())));
  return net;
}

Result train(const Task& task, const std::string& name, std::uint64_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<nn::Module> net = make_net(name, task.sizes, seed);
  // Plain SGD with momentum, the optimizer of the slide's era: Adam would rescale the vanished
  // gradients of the sigmoid net and hide what the slide shows.
  nn::SGD sgd(net->parameters(), {.lr = task.lr, .momentum = 0.9});
  nn::FitOptions fo;
  fo.epochs = task.epochs;
  fo.batch_size = task.batch;
  fo.seed = seed;
  fo.loss = nn::LossKind::cross_entropy;
  fo.test = &task.test;
  fo.progress = nn::FitOptions::Progress::quiet;
  Result r;
  r.name = name;
  fo.on_epoch = [&](const nn::EpochStats& e) {
    r.test_curve.push_back(e.test_accuracy);
    if (r.epochs_to_converge < 0 && e.train_accuracy >= task.converged)
      r.epochs_to_converge = long(e.epoch);
  };
  nn::fit(*net, sgd, task.train, fo);
  r.test_accuracy = r.test_curve.back();
  if (name == "prelu") {
    std::vector<std::string> alphas;
    for (auto& [pname, p] : net->named_parameters()) {
      if (pname.find("weight") == std::string::npos || p->shape().rank() != 1) continue;
      double mean = 0;
      for (float a : p->data()) mean += a;
      alphas.push_back(fmt::format("{:.2f}", mean / double(p->numel())));
    }
    r.note = fmt::format("learned alpha per layer (mean): {}", fmt::join(alphas, " "));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// ---- pictures ---------------------------------------------------------------------------------

// One panel per activation, f solid and f' dashed, and a last panel with the derivatives that
// decide the vanishing gradient side by side.
std::filesystem::path plot_curves(const std::filesystem::path& dir,
                                  const std::vector<Curve>& curves) {
  const std::filesystem::path png = dir / "activations_curves.png";
  std::string s = example::png_terminal(png, 1200, 620) + "set termoption noenhanced\n";
  s += "set multiplot layout 2,4 title \"each activation f (solid) and its derivative f' "
       "(dashed), f' from backward\"\n"
       "set xrange [-4:4]\nset yrange [-1.5:2.5]\nset xtics 2\nset key top left font ',9'\n"
       "set xzeroaxis lt 1 lc rgb '#999999'\nset yzeroaxis lt 1 lc rgb '#999999'\n";
  for (std::size_t i = 0; i < curves.size(); ++i) {
    s += fmt::format("set title '{}'\n", curves[i].title);
    s += fmt::format(
        "plot 'activations_curves.dat' using 1:{} with lines lw 2 lc rgb '#1f77b4' title 'f', "
        "'' using 1:{} with lines lw 2 dt 2 lc rgb '#d62728' title \"f'\"\n",
        2 + 2 * i, 3 + 2 * i);
  }
  s += "set title \"slopes: sigmoid' is at most 0.25\"\nset yrange [-0.1:1.3]\n"
       "plot 'activations_curves.dat' using 1:3 with lines lw 2 title \"sigmoid'\", "
       "'' using 1:5 with lines lw 2 title \"tanh'\", "
       "'' using 1:7 with lines lw 2 dt 2 title \"relu'\"\n"
       "unset multiplot\n";
  example::gnuplot(dir, s);
  return png;
}

// Test accuracy per epoch, one line per activation.
std::filesystem::path plot_training(const std::filesystem::path& dir, const std::string& stem,
                                    const Task& task, const std::vector<Result>& results) {
  const std::filesystem::path png = dir / (stem + ".png");
  std::string s = example::png_terminal(png, 900, 520) + "set termoption noenhanced\n";
  s += fmt::format(
      "set title 'the same {}-layer MLP on {}, one activation at a time'\n"
      "set xlabel 'epoch'\nset ylabel 'test accuracy'\nset yrange [0:1.05]\n"
      "set key at graph 0.97, graph 0.85 right top\n",
      task.sizes.size() - 1, task.name);
  s += fmt::format("plot {} with lines dt 3 lw 2 lc rgb '#888888' title 'chance'",
                   1.0 / double(task.sizes.back()));
  for (std::size_t i = 0; i < results.size(); ++i)
    s += fmt::format(", '{}.dat' using 1:{} with lines lw {} title '{}'", stem, i + 2,
                     results[i].name == "sigmoid" ? 3 : 2, results[i].name);
  s += "\n";
  example::gnuplot(dir, s);
  return png;
}

}  // namespace

int main(int argc, char** argv) {
  bool fashion = false;
  const example::Options opt = example::parse(
      argc, argv, "Every activation and its derivative; the same deep MLP trained with each",
      [&](CLI::App& app) {
        app.add_flag("--fashion", fashion,
                     "Also train on a Fashion-MNIST subset (Debian's dataset-fashion-mnist)");
      });
  return example::run([&] {
    // ---- 1. the activations and their derivatives, from the engine's backward ----
    std::vector<double> xs;
    for (int i = -400; i <= 400; ++i) xs.push_back(i / 100.0);  // exactly 0 at i = 0
    std::vector<Curve> curves = activation_curves();
    std::vector<std::string> header{"x"};
    std::vector<std::vector<double>> columns{xs};
    for (Curve& c : curves) {
      evaluate(c, xs);
      header.push_back(c.name);
      header.push_back("d_" + c.name);
      columns.push_back(c.y);
      columns.push_back(c.dy);
    }
    example::write_columns(opt.out / "activations_curves.dat", header, columns);
    std::vector<std::filesystem::path> pictures;
    if (opt.plots) pictures.push_back(plot_curves(opt.out, curves));

    fmt::print(
        "Every activation f and its derivative f', both from the tape (backward of "
        "sum f(x) gives f'(x) at each x):\n\n");
    fmt::print("{:<11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n", "f", "f(-2)", "f(0)", "f(2)",
               "f'(-2)", "f'(0)", "f'(2)", "max f'");
    const auto at = [&](const std::vector<double>& v, double x) {
      return v[std::size_t(std::lround(x * 100)) + 400];
    };
    for (const Curve& c : curves)
      fmt::print("{:<11} {:>8.4f} {:>8.4f} {:>8.4f} {:>8.4f} {:>8.4f} {:>8.4f} {:>8.4f}\n", c.name,
                 at(c.y, -2), at(c.y, 0), at(c.y, 2), at(c.dy, -2), at(c.dy, 0), at(c.dy, 2),
                 *std::max_element(c.dy.begin(), c.dy.end()));
    fmt::print(
        "(prelu with alpha = {}; maxout = max({} x, {} x), a tie at 0 splits the gradient "
        "1/2, 1/2)\n\n",
        kPreluAlpha, kMaxoutW1, kMaxoutW2);

    // PReLU's alpha is a parameter: the same backward gives d f / d alpha.
    ag::Tape tape;
    ag::Value x = tape.input(-2.0, "x"), alpha = tape.input(kPreluAlpha, "alpha");
    tape.backward(ag::prelu(x, alpha));
    fmt::print(
        "PReLU learns alpha: at x = -2, df/dalpha = {} (= x on the negative side), "
        "df/dx = {} (= alpha).\n",
        alpha.grad(), x.grad());
    fmt::print(
        "sigmoid' = s(1-s) is at most 0.25: each sigmoid layer shrinks the gradient by 4 "
        "or more (vanishing gradient);\nrelu' is 1 for x > 0 and 0 for x <= 0 (relu'(0) "
        "= 0, as the notes take it).\n\n");

    // ---- 2. the same deep net trained with each activation ----
    std::vector<Task> tasks;
    {
      nn::Dataset data = nn::spirals(200, 3, 0.2, opt.seed);
      nn::TrainTest tt = data.split(0.2, opt.seed);
      tasks.push_back({"spirals (3 classes)",
                       std::move(tt.train),
                       std::move(tt.test),
                       {2, 32, 32, 32, 32, 32, 32, 3},
                       opt.quick ? 100u : 150u,
                       32,
                       0.02,
                       0.9});
    }
    if (fashion) {
      // A subset keeps it to seconds: the first 10000 training and 2000 test images.
      nn::Dataset all = nn::load_fashion_mnist(nn::Split::train);
      nn::Dataset test = nn::load_fashion_mnist(nn::Split::test);
      std::vector<std::int64_t> ti(10000), vi(2000);
      for (std::size_t i = 0; i < ti.size(); ++i) ti[i] = std::int64_t(i);
      for (std::size_t i = 0; i < vi.size(); ++i) vi[i] = std::int64_t(i);
      tasks.push_back({"Fashion-MNIST (the first 10000 training and 2000 test images)",
                       all.subset(ti),
                       test.subset(vi),
                       {784, 64, 64, 64, 64, 64, 64, 10},
                       20,
                       64,
                       0.05,
                       0.85});
    }
    const std::vector<std::string> names{"sigmoid", "tanh", "relu",  "leaky_relu",
                                         "prelu",   "elu",  "maxout"};
    for (std::size_t t = 0; t < tasks.size(); ++t) {
      const Task& task = tasks[t];
      fmt::print("{}: a {}-layer MLP (", task.name, task.sizes.size() - 1);
      fmt::print(
          "{}), SGD lr {} momentum 0.9, {} epochs,\nthe same initial weights for every "
          "activation; 'converged' = an epoch's training accuracy reaches {:.0f}%.\n\n",
          fmt::join(task.sizes, "-"), task.lr, task.epochs, task.converged * 100);
      fmt::print("{:<11} {:>14} {:>20} {:>8}\n", "activation", "test accuracy",
                 "epochs to converge", "seconds");
      std::vector<Result> results;
      for (const std::string& name : names) {
        results.push_back(train(task, name, opt.seed));
        const Result& r = results.back();
        fmt::print(
            "{:<11} {:>14.3f} {:>20} {:>8.1f}\n", r.name, r.test_accuracy,
            r.epochs_to_converge < 0 ? std::string("n/c") : std::to_string(r.epochs_to_converge),
            r.seconds);
        std::fflush(stdout);
      }
      for (const Result& r : results)
        if (!r.note.empty()) fmt::print("{}: {}\n", r.name, r.note);
      fmt::print("\n");

      std::vector<std::string> h{"epoch"};
      std::vector<std::vector<double>> cols(1);
      for (std::size_t e = 1; e <= task.epochs; ++e) cols[0].push_back(double(e));
      for (const Result& r : results) {
        h.push_back(r.name);
        cols.push_back(r.test_curve);
      }
      const std::string stem = t == 0 ? "activations_spirals" : "activations_fashion";
      example::write_columns(opt.out / (stem + ".dat"), h, cols);
      if (opt.plots) pictures.push_back(plot_training(opt.out, stem, task, results));
    }
    example::announce(pictures);
    return 0;
  });
}
