// The lecture's deep XOR net (W1 2x5, W2..W10 5x5, W11 5x1): with sigmoid everywhere accuracy
// stays 0.5 because the gradient vanishes on its way back; with ReLU hidden layers it reaches 1.

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <tapegrad/nn.hpp>
#include <vector>

#include "example.hpp"

namespace {

struct Run {
  nn::History history;  // one epoch = one gradient-descent step on all 4 points
  double accuracy;
};

// The lecture's TensorFlow code: W = tf.random_uniform(-1, 1), b = tf.zeros, sigmoid output,
// BCE, GradientDescentOptimizer(0.1). nn::fit over the 4 points in one batch is that loop.
Run train(nn::Activation hidden, std::uint64_t seed, std::size_t steps) {
  const nn::Dataset xor4 = nn::xor_data();
  nn::MLP mlp({2, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 1}, hidden, ag::Op::sigmoid);
  std::uint64_t layer_seed = seed * 1000;
  for (nn::Linear* l : mlp.linears()) {
    nn::init::uniform(l->weight, -1.0, 1.0, ++layer_seed);
    nn::init::zeros(*l->bias);
  }
  nn::SGD sgd(mlp.parameters(), {.lr = 0.1});
  nn::FitOptions o;
  o.epochs = steps;
  o.batch_size = 4;
  o.shuffle = false;
  o.loss = nn::LossKind::bce;
  o.progress = nn::FitOptions::Progress::quiet;
  o.diagnostics = true;  // ||dL/dW|| per layer and dead ReLU units, every step
  nn::History h = nn::fit(mlp, sgd, xor4, o);
  return {std::move(h), nn::evaluate(mlp, xor4, nn::LossKind::bce).accuracy};
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t steps = 10000, seeds = 5;
  const example::Options opt = example::parse(
      argc, argv, "Deep XOR: 9 hidden layers, sigmoid vs ReLU, and the vanishing gradient",
      [&](CLI::App& app) {
        app.add_option("--steps", steps, "Gradient-descent steps")
            ->check(CLI::Range(1, 1000000))
            ->capture_default_str();
        app.add_option("--seeds", seeds, "Seeds tried per net, from --seed on")
            ->check(CLI::Range(1, 1000000))
            ->capture_default_str();
      });
  return example::run([&] {
    if (opt.quick) seeds = std::min<std::size_t>(seeds, 3);
    const nn::Activation acts[] = {ag::Op::sigmoid, ag::Op::relu};
    fmt::print(
        "The lecture's deep XOR net: 11 Linear layers (W1 2x5, W2..W10 5x5, W11 5x1), weights\n"
        "U(-1, 1), biases 0, a sigmoid output, binary cross-entropy, gradient descent with\n"
        "lr 0.1 on the 4 XOR points for {} steps; seeds {} to {}.\n\n",
        steps, opt.seed, opt.seed + seeds - 1);
    fmt::print("{:<9} {}\n", "hidden", "accuracy per seed");
    std::vector<std::vector<Run>> runs(2);
    std::string dead_text, solved_text[2];
    for (int a = 0; a < 2; ++a) {
      std::string accs;
      int solved = 0;
      for (std::size_t s = 0; s < seeds; ++s) {
        const Run& r = runs[a].emplace_back(train(acts[a], opt.seed + s, steps));
        accs += fmt::format("{:<6.2f}", r.accuracy);
        solved += r.accuracy == 1.0;
        // A ReLU layer whose units are all <= 0 on every point passes no gradient back.
        const auto& dead = r.history.epochs.back().dead_fraction;
        if (r.accuracy < 1.0 && std::find(dead.begin(), dead.end(), 1.0) != dead.end())
          dead_text += fmt::format("{}{}", dead_text.empty() ? "" : ", ", opt.seed + s);
      }
      solved_text[a] = fmt::format("{} of {} solved", solved, seeds);
      fmt::print("{:<9} {:<{}} {}\n", nn::activation_name(acts[a]), accs, 6 * seeds,
                 solved_text[a]);
    }
    fmt::print("\nThe lecture: accuracy 0.5 with sigmoid, 1.0 with ReLU.\n");
    // ln 2 is the loss of answering 0.5 for every point: what a net that learned nothing says.
    double sig_lo = 1e300, sig_hi = 0;
    bool off_half = false;
    for (const Run& r : runs[0]) {
      sig_lo = std::min(sig_lo, r.history.epochs.back().loss);
      sig_hi = std::max(sig_hi, r.history.epochs.back().loss);
      off_half |= r.accuracy != 0.5;
    }
    const std::string lo_text = fmt::format("{:.4f}", sig_lo),
                      hi_text = fmt::format("{:.4f}", sig_hi);
    fmt::print(
        "sigmoid's final loss is {}, and ln 2 = 0.6931: it answers about 0.5\n"
        "for every point{}.\n",
        lo_text == hi_text ? lo_text + " in every seed" : lo_text + " to " + hi_text,
        off_half ? "; 0.25 and 0.75 are such answers landing either side of 0.5" : "");
    if (!dead_text.empty())
      fmt::print(
          "ReLU's misses are dying ReLUs: in seeds {} a hidden layer's 5 units all went to 0 on\n"
          "every point during training, and no gradient passes back through a dead layer.\n",
          dead_text);

    // The first step's gradients: the sizes the notes explain accuracy 0.5 with.
    const auto& sig = runs[0][0].history.epochs[0].grad_norms;
    const auto& relu = runs[1][0].history.epochs[0].grad_norms;
    fmt::print("\n||dL/dW|| of each layer at the first step (seed {}):\n", opt.seed);
    fmt::print("{:<6} {:>10} {:>10}\n", "layer", "sigmoid", "relu");
    for (std::size_t l = 0; l < sig.size(); ++l)
      fmt::print("W{:<5} {:>10.2e} {:>10.2e}\n", l + 1, sig[l], relu[l]);
    fmt::print("\n||dL/dW1|| / ||dL/dW11|| per seed:\n");
    double lo[2] = {1e300, 1e300}, hi[2] = {0, 0};
    for (int a = 0; a < 2; ++a) {
      fmt::print("{:<9}", nn::activation_name(acts[a]));
      for (const Run& r : runs[a]) {
        const auto& g = r.history.epochs[0].grad_norms;
        const double ratio = g.front() / g.back();
        lo[a] = std::min(lo[a], ratio), hi[a] = std::max(hi[a], ratio);
        fmt::print(" {:.1e}", ratio);
      }
      fmt::print("\n");
    }
    fmt::print(
        "Going back, each sigmoid layer multiplies the gradient by s(1 - s) <= 0.25: ten of them\n"
        "leave W1 {:.0e} to {:.0e} of W11's gradient, so the first layers barely move and the\n"
        "net never separates the points. ReLU's derivative is 1 wherever a unit is on, and the\n"
        "same ratio is {:.0e} to {:.0e}.\n",
        lo[0], hi[0], lo[1], hi[1]);
    if (!opt.plots) return 0;

    // Data files for gnuplot: the loss every `stride` steps, and the first step's norms.
    const std::size_t stride = std::max<std::size_t>(1, steps / 1000);
    std::vector<std::string> head{"step"};
    std::vector<std::vector<double>> loss(1), grad(1);
    for (std::size_t t = 0; t < steps; t += stride) loss[0].push_back(double(t + 1));
    for (std::size_t l = 0; l < sig.size(); ++l) grad[0].push_back(double(l + 1));
    for (int a = 0; a < 2; ++a)
      for (std::size_t s = 0; s < seeds; ++s) {
        head.push_back(fmt::format("{}_seed{}", nn::activation_name(acts[a]), opt.seed + s));
        const auto& epochs = runs[a][s].history.epochs;
        loss.emplace_back();
        for (std::size_t t = 0; t < steps; t += stride) loss.back().push_back(epochs[t].loss);
        grad.push_back(epochs[0].grad_norms);
      }
    example::write_columns(opt.out / "deep_xor_loss.dat", head, loss);
    head[0] = "layer";
    example::write_columns(opt.out / "deep_xor_grad.dat", head, grad);

    // Columns 2..seeds+1 hold sigmoid's seeds, the next `seeds` relu's.
    const std::string colors[] = {"#d62728", "#1f77b4"};
    auto series = [&](const char* file, int a, const char* style, const std::string& title) {
      const std::size_t first = 2 + std::size_t(a) * seeds;
      return fmt::format(
          "for [i={}:{}] '{}' using 1:i with {} lw 2 lc rgb '{}' title (i == {} ? "
          "'{}' : '')",
          first, first + seeds - 1, file, style, colors[a], first, title);
    };
    const std::string seed_range = fmt::format("seeds {} to {}", opt.seed, opt.seed + seeds - 1);

    // The losses side by side on one scale: the failed ReLU seeds sit at ln 2, where every
    // sigmoid seed does (the loss of answering 0.5 for every point).
    const auto loss_png = opt.out / "deep_xor_loss.png";
    double lowest = 1;
    for (std::size_t c = 1; c < loss.size(); ++c)
      for (double v : loss[c]) lowest = std::min(lowest, v);
    std::string script = example::png_terminal(loss_png.filename(), 1000, 450);
    script += fmt::format(
        "set multiplot layout 1,2 title 'Deep XOR, 11 layers: training loss, {}'\n", seed_range);
    script +=
        fmt::format("set logscale y\nset yrange [{}:2]\nset format y '10^{{%L}}'\n", lowest / 3);
    script += "set xlabel 'gradient-descent step'\nset xtics 2500\nset key bottom left\n";
    for (int a = 0; a < 2; ++a)
      script += fmt::format(
          "set title '{} hidden layers: {}'\nset ylabel '{}'\nplot {}, log(2) with lines dt 2 "
          "lc rgb '#555555' title 'ln 2: output 0.5 for every point'\n",
          a == 0 ? "sigmoid" : "ReLU", solved_text[a], a == 0 ? "BCE loss (log scale)" : "",
          series("deep_xor_loss.dat", a, "lines", "one line per seed"));
    example::gnuplot(opt.out, script + "unset multiplot\n");

    const auto grad_png = opt.out / "deep_xor_grad.png";
    std::string xtics;
    for (std::size_t l = 0; l < sig.size(); ++l)
      xtics += fmt::format("{}'W{}' {}", l ? ", " : "", l + 1, l + 1);
    script = example::png_terminal(grad_png.filename());
    script += fmt::format("set title 'Deep XOR: ||dL/dW|| of each layer at the first step, {}'\n",
                          seed_range);
    script +=
        "set xlabel 'layer (W1 at the input, W11 at the output)'\nset xtics (" + xtics + ")\n";
    script += "set ylabel 'gradient norm (log scale)'\nset logscale y\nset format y '10^{%L}'\n";
    script += "set key bottom right\nplot " +
              series("deep_xor_grad.dat", 0, "linespoints pt 7", "sigmoid") + ", " +
              series("deep_xor_grad.dat", 1, "linespoints pt 7", "ReLU") + "\n";
    example::gnuplot(opt.out, script);
    const std::filesystem::path pngs[] = {loss_png, grad_png};
    example::announce(pngs);
    return 0;
  });
}
