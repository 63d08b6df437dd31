// The vanishing gradient, measured: ||dL/dW|| of every layer, for sigmoid, tanh and ReLU nets
// 2 to 10 layers deep, and through training as one heat map (layer x step) per activation.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tapegrad/nn.hpp>
#include <vector>

#include "example.hpp"

namespace {

constexpr std::int64_t kWidth = 10;
constexpr nn::Activation kActs[] = {ag::Op::sigmoid, ag::Op::tanh, ag::Op::relu};

// ||dL/dW|| of layer 1 .. depth at every gradient-descent step (steps x depth).
using Norms = std::vector<std::vector<double>>;

// `depth` Linear layers of width 10, BCE, full-batch gradient descent with lr 0.1 as in the
// lecture. Every net starts from Xavier weights and zero biases, so what differs between them
// is the activation's derivative alone. The output's sigmoid sits inside bce_with_logits: the
// same gradient, p - y, but finite when a probability rounds to exactly 0 or 1 in float32
// (bce_loss's gradient is NaN there).
Norms train(const nn::Dataset& data, nn::Activation act, int depth, std::size_t steps,
            std::uint64_t seed) {
  std::vector<std::int64_t> sizes(std::size_t(depth), kWidth);
  sizes.front() = data.cols;
  sizes.push_back(1);
  nn::MLP mlp(sizes, act);
  std::uint64_t layer_seed = seed * 1000;
  for (nn::Linear* l : mlp.linears()) {
    nn::init::xavier_uniform(l->weight, ++layer_seed);
    nn::init::zeros(*l->bias);
  }
  nn::SGD sgd(mlp.parameters(), {.lr = 0.1});
  nn::FitOptions o;
  o.epochs = steps;
  o.batch_size = data.rows;  // one epoch = one step
  o.shuffle = false;
  o.loss = nn::LossKind::bce_with_logits;
  o.progress = nn::FitOptions::Progress::quiet;
  o.diagnostics = true;
  Norms norms;
  o.on_epoch = [&](const nn::EpochStats& e) { norms.push_back(e.grad_norms); };
  nn::fit(mlp, sgd, data, o);
  return norms;
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(v.size() / 2), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t steps = 1000, seeds = 5;
  const example::Options opt = example::parse(
      argc, argv, "The vanishing gradient: per-layer gradient norms for sigmoid, tanh and ReLU",
      [&](CLI::App& app) {
        app.add_option("--steps", steps, "Training steps of the 10-layer nets")
            ->check(CLI::Range(1, 1000000))
            ->capture_default_str();
        app.add_option("--seeds", seeds, "Seeds averaged in the depth table")
            ->check(CLI::Range(1, 1000000))
            ->capture_default_str();
      });
  return example::run([&] {
    if (opt.quick)
      steps = std::min<std::size_t>(steps, 200), seeds = std::min<std::size_t>(seeds, 2);
    const nn::Dataset moons = nn::moons(200, 0.1, opt.seed);
    const int deepest = 10;
    fmt::print(
        "Nets of 2 to 10 Linear layers, width {}, Xavier weights, a sigmoid output, on 200\n"
        "moons points; BCE, full-batch gradient descent with lr 0.1.\n\n",
        kWidth);

    // How much smaller the first layer's gradient is than the last one's, at the first step.
    fmt::print(
        "||dL/dW1|| / ||dL/dW_last|| at the first step (geometric mean of seeds {} to {}):\n",
        opt.seed, opt.seed + seeds - 1);
    fmt::print("{:<8}", "layers");
    for (int d = 2; d <= deepest; ++d) fmt::print("{:>8}", d);
    std::vector<std::vector<double>> ratios(1);
    for (int d = 2; d <= deepest; ++d) ratios[0].push_back(d);
    for (nn::Activation act : kActs) {
      fmt::print("\n{:<8}", nn::activation_name(act));
      ratios.emplace_back();
      for (int d = 2; d <= deepest; ++d) {
        double log_sum = 0;
        for (std::size_t s = 0; s < seeds; ++s) {
          const auto first = train(moons, act, d, 1, opt.seed + s)[0];
          log_sum += std::log10(first.front() / first.back());
        }
        ratios.back().push_back(std::pow(10.0, log_sum / double(seeds)));
        fmt::print("{:>8.0e}", ratios.back().back());
      }
    }

    // Through training, the 10-layer nets: what the first and last layers get, step by step.
    fmt::print("\n\nThe {}-layer nets over {} steps (seed {}), median ||dL/dW|| over the steps:\n",
               deepest, steps, opt.seed);
    fmt::print("{:<8} {:>9} {:>9}\n", "", "W1", fmt::format("W{}", deepest));
    std::vector<Norms> runs;
    for (nn::Activation act : kActs) {
      const Norms& n = runs.emplace_back(train(moons, act, deepest, steps, opt.seed));
      std::vector<double> first, last;
      for (const auto& step : n) first.push_back(step.front()), last.push_back(step.back());
      fmt::print("{:<8} {:>9.1e} {:>9.1e}\n", nn::activation_name(act), median(first),
                 median(last));
    }
    double r_lo = 1e300, r_hi = 0;  // tanh's and ReLU's ratios, at every depth
    for (int a = 1; a < 3; ++a)
      for (double r : ratios[std::size_t(a) + 1])
        r_lo = std::min(r_lo, r), r_hi = std::max(r_hi, r);
    fmt::print(
        "\nBackward through a sigmoid multiplies the gradient by s' = s(1 - s) <= 1/4, once per\n"
        "layer: W1 gets {:.0e} of W_last's gradient with 2 layers, {:.0e} with {}. tanh (slope 1\n"
        "at 0) and ReLU (slope 1 wherever a unit is on) keep the ratio between {:.1f} and {:.1f}.\n"
        "Through training the deep sigmoid net stalls: the same factors squeeze the points\n"
        "together on the way forward, the output learns only the class mean, and then every\n"
        "layer's gradient is tiny (the heat map). tanh and ReLU keep training all layers.\n",
        ratios[1].front(), ratios[1].back(), deepest, r_lo, r_hi);
    if (!opt.plots) return 0;

    const auto depth_png = opt.out / "vanishing_gradient_depth.png";
    const auto heat_png = opt.out / "vanishing_gradient_heatmap.png";
    example::write_columns(opt.out / "vanishing_gradient_depth.dat",
                           {"layers", "sigmoid", "tanh", "relu"}, ratios);
    const char* colors[] = {"#d62728", "#2ca02c", "#1f77b4"};
    std::string plot = "plot ";
    for (int a = 0; a < 3; ++a)
      plot += fmt::format(
          "{}'vanishing_gradient_depth.dat' using 1:{} with linespoints pt 7 lw 2 "
          "lc rgb '{}' title '{}'",
          a ? ", " : "", a + 2, colors[a], nn::activation_name(kActs[a]));
    example::gnuplot(opt.out,
                     example::png_terminal(depth_png.filename()) +
                         "set title 'First layer vs last layer gradient at the first step'\n"
                         "set xlabel 'number of layers'\nset xtics 1\n"
                         "set ylabel '||dL/dW1|| / ||dL/dW_{last}|| (log scale)'\n"
                         "set logscale y\nset format y '10^{%L}'\nset key bottom left\n" +
                         plot + ", 1 with lines dt 2 lc rgb '#555555' title 'equal'\n");

    // Heat maps on a log-scale step axis, so the first steps show: columns evenly spaced in
    // log10(step), each holding the step it falls on, make a regular grid gnuplot draws as one
    // image. A dead layer's norm of 0 is floored at 1e-12.
    constexpr int kColumns = 300;
    const double span = std::max(1.0, std::log10(double(steps)));
    std::string xtics;
    for (double t = 1; t <= double(steps); t *= 10)
      xtics += fmt::format("{}'{}' {}", xtics.empty() ? "" : ", ", t, std::log10(t));
    double lo = 0, hi = -100;
    for (int a = 0; a < 3; ++a) {
      std::vector<std::vector<double>> cols(4);
      for (int c = 0; c < kColumns; ++c) {
        const double x = span * (c + 0.5) / kColumns;
        const auto t = std::min(steps, std::size_t(std::pow(10.0, x)));
        for (std::size_t l = 0; l < runs[a][t - 1].size(); ++l) {
          const double v = std::log10(std::max(runs[a][t - 1][l], 1e-12));
          cols[0].push_back(x);
          cols[1].push_back(double(l + 1));
          cols[2].push_back(v);
          cols[3].push_back(double(t));
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
      example::write_columns(
          opt.out / fmt::format("vanishing_gradient_{}.dat", nn::activation_name(kActs[a])),
          {"log10_step", "layer", "log10_norm", "step"}, cols);
    }
    std::string script =
        example::png_terminal(heat_png.filename(), 1000, 420) +
        fmt::format(
            "set multiplot layout 1,3 title 'log_{{10}} ||dL/dW|| of each layer of the "
            "{}-layer nets during training (seed {})'\n",
            deepest, opt.seed) +
        "set palette defined (0 '#440154', 1 '#3b528b', 2 '#21908d', 3 '#5dc963', 4 '#fde725')\n"
        "set xlabel 'step (log scale)'\nset ylabel 'layer (1 = input side)'\nset ytics 1\n"
        "unset key\nunset grid\n" +
        fmt::format("set xtics ({})\nset xrange [0:{}]\nset yrange [0.5:{}]\n", xtics, span,
                    deepest + 0.5) +
        fmt::format("set cbrange [{}:{}]\n", std::floor(lo), std::ceil(hi));
    for (nn::Activation act : kActs)
      script += fmt::format(
          "set title '{0}'\nplot 'vanishing_gradient_{0}.dat' using 1:2:3 with "
          "image\n",
          nn::activation_name(act));
    example::gnuplot(opt.out, script + "unset multiplot\n");
    const std::filesystem::path pngs[] = {depth_png, heat_png};
    example::announce(pngs);
    return 0;
  });
}
