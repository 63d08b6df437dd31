// Initialising every weight to zero makes the hidden units identical: they compute the same
// function and get the same gradient, so after training they are still one unit, copied.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tapegrad/nn.hpp>
#include <vector>

#include "example.hpp"

namespace {

constexpr std::int64_t kUnits = 4;

// The target: a bowl that needs at least two sigmoid units (one sigmoid is monotone). Its
// mean and its slope are not 0, so the zero-initialised net gets a gradient at all.
double target(double x) { return x * x + 0.5 * x; }

struct Unit {
  double w, b, v;  // h = sigmoid(w x + b); the output adds v h
};

struct Fit {
  std::vector<Unit> units;
  double bias;  // the output layer's
  double mse;
};

// 1 -> 4 sigmoid units -> 1 linear output, MSE, full-batch gradient descent: the lecture's loop
// written out (forward, loss, backward, step).
Fit train(nn::MLP& mlp, const std::vector<float>& xs, std::size_t steps) {
  std::vector<float> ys;
  for (float x : xs) ys.push_back(float(target(x)));
  const std::int64_t n = std::int64_t(xs.size());
  nn::SGD sgd(mlp.parameters(), {.lr = 0.5});
  ag::TensorTape tape;
  double mse = 0;
  for (std::size_t step = 0; step <= steps; ++step) {
    tape.reset();
    ag::Tensor x = tape.constant<float>({n, 1}, xs), y = tape.constant<float>({n, 1}, ys);
    ag::Tensor loss = nn::mse_loss(mlp(x), y);
    mse = loss.item();
    if (step == steps) break;  // the last pass only measures
    sgd.zero_grad();
    tape.backward(loss);
    sgd.step();
  }
  const nn::Linear& hidden = *mlp.linears()[0];
  const nn::Linear& out = *mlp.linears()[1];
  Fit fit{{}, out.bias->data()[0], mse};
  for (std::int64_t j = 0; j < kUnits; ++j)
    fit.units.push_back({hidden.weight.data()[std::size_t(j)], hidden.bias->data()[std::size_t(j)],
                         out.weight.data()[std::size_t(j)]});
  return fit;
}

// The largest difference between two units' (w, b, v).
double spread(const Fit& f) {
  double d = 0;
  for (const Unit& a : f.units)
    for (const Unit& c : f.units)
      d = std::max({d, std::abs(a.w - c.w), std::abs(a.b - c.b), std::abs(a.v - c.v)});
  return d;
}

double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

}  // namespace

int main(int argc, char** argv) {
  std::size_t steps = 3000;
  const example::Options opt = example::parse(
      argc, argv, "Zero initialisation: every hidden unit stays the same unit", [&](CLI::App& app) {
        app.add_option("--steps", steps, "Gradient-descent steps")
            ->check(CLI::Range(1, 1000000))
            ->capture_default_str();
      });
  return example::run([&] {
    if (opt.quick) steps = std::min<std::size_t>(steps, 1000);
    std::vector<float> xs;
    for (int i = 0; i <= 40; ++i) xs.push_back(float(-1 + i / 20.0));

    nn::MLP zero({1, kUnits, 1}, ag::Op::sigmoid);
    for (nn::Parameter* p : zero.parameters()) nn::init::zeros(*p);
    nn::MLP random({1, kUnits, 1}, ag::Op::sigmoid, nn::Activation::none, opt.seed);
    const Fit fits[] = {train(zero, xs, steps), train(random, xs, steps)};

    fmt::print(
        "Fitting y = x^2 + x/2 on {} points in [-1, 1] with {} sigmoid hidden units and a linear\n"
        "output, MSE, gradient descent with lr 0.5 for {} steps, from two starts: every weight\n"
        "and bias 0, and PyTorch's random init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (seed {}).\n\n"
        "The hidden units after training: h = sigmoid(w x + b), and v, its weight in the output.\n",
        xs.size(), kUnits, steps, opt.seed);
    fmt::print("{:<6}{:^33}  {:>22}\n", "", "zero init", "random init");  // 3 columns of 11 each
    fmt::print("{:<6}{:>11}{:>11}{:>11}  {:>11}{:>11}{:>11}\n", "unit", "w", "b", "v", "w", "b",
               "v");
    for (std::size_t j = 0; j < std::size_t(kUnits); ++j) {
      const Unit &z = fits[0].units[j], &r = fits[1].units[j];
      fmt::print("{:<6}{:>11.6f}{:>11.6f}{:>11.6f}  {:>11.6f}{:>11.6f}{:>11.6f}\n", j + 1, z.w, z.b,
                 z.v, r.w, r.b, r.v);
    }
    fmt::print("\nlargest difference between two units: {:.1e} (zero init), {:.2f} (random init)\n",
               spread(fits[0]), spread(fits[1]));
    fmt::print("MSE after training: {:.4f} (zero init), {:.4f} (random init)\n\n", fits[0].mse,
               fits[1].mse);
    fmt::print(
        "From all-zero weights every hidden unit gets the same input, computes the same output\n"
        "and receives the same gradient, so after any number of steps they are still equal (the\n"
        "notes' proof by induction): {} units act as one, the net draws a single sigmoid, and it\n"
        "cannot bend to fit the bowl. Random weights break the symmetry.\n"
        "The hidden units are sigmoids, not tanh, to make this visible: tanh(0) = 0 would leave\n"
        "the zero output weights without a gradient and the rows identical at exactly 0, the\n"
        "same point made trivially. sigmoid(0) = 1/2 lets the weights move, in lockstep.\n",
        kUnits);
    if (!opt.plots) return 0;

    // Per panel: the data, the net's output, and each unit's share v h(x) of it.
    std::vector<std::string> head{"x", "target"};
    std::vector<std::vector<double>> cols(2);
    for (int i = 0; i <= 200; ++i) {
      const double x = -1.2 + 2.4 * i / 200.0;
      cols[0].push_back(x);
      cols[1].push_back(target(x));
    }
    for (int f = 0; f < 2; ++f) {
      const char* name = f == 0 ? "zero" : "random";
      head.push_back(fmt::format("{}_output", name));
      std::vector<double> output(cols[0].size(), fits[f].bias);
      std::vector<std::vector<double>> shares;
      for (std::size_t j = 0; j < fits[f].units.size(); ++j) {
        const Unit& u = fits[f].units[j];
        head.push_back(fmt::format("{}_unit{}", name, j + 1));
        shares.emplace_back();
        for (std::size_t i = 0; i < cols[0].size(); ++i) {
          shares.back().push_back(u.v * sigmoid(u.w * cols[0][i] + u.b));
          output[i] += shares.back().back();
        }
      }
      cols.push_back(output);
      for (auto& s : shares) cols.push_back(std::move(s));
    }
    example::write_columns(opt.out / "zero_init.dat", head, cols);
    example::write_columns(opt.out / "zero_init_points.dat", {"x", "y"},
                           {std::vector<double>(xs.begin(), xs.end()), [&] {
                              std::vector<double> ys;
                              for (float x : xs) ys.push_back(target(x));
                              return ys;
                            }()});

    const auto png = opt.out / "zero_init.png";
    std::string script = example::png_terminal(png.filename(), 1000, 450) +
                         "set multiplot layout 1,2 title \"After training: each hidden unit's "
                         "share v h(x) of the output, and the output b + the sum of them\"\n"
                         "set xlabel 'x'\nset key top left\nset xrange [-1.2:1.2]\n"
                         "set yrange [-1:2.7]\n";
    const char* unit_colors[] = {"#d62728", "#2ca02c", "#1f77b4", "#ff7f0e"};
    for (int f = 0; f < 2; ++f) {
      const std::size_t first = 3 + std::size_t(f) * (1 + std::size_t(kUnits));
      script += fmt::format(
          "set title '{} (MSE {:.4f})'\nplot 'zero_init_points.dat' using 1:2 with points pt 7 "
          "ps 0.7 lc rgb '#555555' title 'data: x^2 + x/2', 'zero_init.dat' using 1:{} with "
          "lines lw 3 lc rgb 'black' title 'net output'",
          f == 0 ? "all weights 0: the 4 units are one line" : "random init: 4 distinct units",
          fits[f].mse, first);
      for (std::size_t j = 0; j < std::size_t(kUnits); ++j)
        script += fmt::format(
            ", 'zero_init.dat' using 1:{} with lines lw 2 dt {} lc rgb '{}' "
            "title 'unit {}'",
            first + 1 + j, j + 1, unit_colors[j], j + 1);
      script += "\n";
    }
    example::gnuplot(opt.out, script + "unset multiplot\n");
    const std::filesystem::path pngs[] = {png};
    example::announce(pngs);
    return 0;
  });
}
