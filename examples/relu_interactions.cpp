// Why ReLU works (note 003): one node relu(2A + 3B) makes A's effect depend on B, a bias moves the
// kink, and a sum of shifted kinks fits a curve, piecewise linearly.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

#include "example.hpp"

namespace {

// f = act(2A + 3B) and df/dA, df/dB on the scalar tape.
struct NodeOut {
  double f, dfdA, dfdB;
};
NodeOut node(double a, double b, double leak) {
  ag::Tape tape;
  ag::Value A = tape.input(a, "A"), B = tape.input(b, "B");
  ag::Value z = 2.0 * A + 3.0 * B;
  ag::Value f = leak > 0 ? ag::leaky_relu(z, leak) : ag::relu(z);
  tape.backward(f);
  return {f.value(), A.grad(), B.grad()};
}

double target(double x) { return std::sin(1.5 * x) + 0.3 * x; }

}  // namespace

int main(int argc, char** argv) {
  std::int64_t units = 8;
  const example::Options opt = example::parse(
      argc, argv, "One ReLU node's interaction, the bias moving the kink, a fit by a sum of kinks",
      [&](CLI::App& app) {
        app.add_option("--units", units, "ReLU units of the fit")->capture_default_str();
      });
  return example::run([&] {
    std::vector<std::filesystem::path> pictures;
    // ---- 1. the interaction: does A matter? It depends on B ----
    fmt::print("One node f = relu(2A + 3B), A going from 1 to 2 (df/dA from backward):\n\n");
    fmt::print("{:<28} {:>8} {:>8} {:>8} {:>8}\n", "", "f(A=1)", "f(A=2)", "change", "df/dA");
    std::vector<double> bs, f1s, f2s, grads, leaky_f1s, leaky_f2s, leaky_grads;
    for (double b : {1.0, -100.0}) {
      const NodeOut lo = node(1, b, 0), hi = node(2, b, 0);
      const NodeOut llo = node(1, b, 0.3), lhi = node(2, b, 0.3);
      fmt::print("{:<28} {:>8g} {:>8g} {:>8g} {:>8g}\n", fmt::format("relu, B = {}", b), lo.f, hi.f,
                 hi.f - lo.f, lo.dfdA);
      fmt::print("{:<28} {:>8g} {:>8g} {:>8g} {:>8g}\n", fmt::format("leaky relu 0.3, B = {}", b),
                 llo.f, lhi.f, lhi.f - llo.f, llo.dfdA);
      bs.push_back(b);
      f1s.push_back(lo.f);
      f2s.push_back(hi.f);
      grads.push_back(lo.dfdA);
      leaky_f1s.push_back(llo.f);
      leaky_f2s.push_back(lhi.f);
      leaky_grads.push_back(llo.dfdA);
    }
    example::write_columns(
        opt.out / "relu_interactions_node.dat",
        {"B", "relu_A1", "relu_A2", "relu_dfdA", "leaky_A1", "leaky_A2", "leaky_dfdA"},
        {bs, f1s, f2s, grads, leaky_f1s, leaky_f2s, leaky_grads});
    fmt::print(
        "\nWith B = 1, raising A raises f; with B = -100, f stays 0 whatever A does: the "
        "effect of A\ndepends on B, an interaction. Leaky ReLU (alpha 0.3) lets A always "
        "matter, at 0.3 times the slope.\n");

    // The bias moves the kink: relu(A + b) bends at A = -b.
    fmt::print(
        "\nThe bias moves the kink: f = relu(A + b) has slope 0 below A = -b and 1 above:\n");
    for (double b : {7.0, 0.0, -3.0}) {
      ag::Tape tape;
      const auto slope = [&](double a) {
        tape.reset();
        ag::Value A = tape.input(a, "A");
        tape.backward(ag::relu(A + b));
        return A.grad();
      };
      fmt::print("  b = {:>2}: df/dA = {} at A = {}, {} at A = {}\n", b, slope(-b - 1), -b - 1,
                 slope(-b + 1), -b + 1);
    }

    // Curves for the picture: f against A for several B, and relu(A + b) for several b.
    std::vector<double> as, b_curves[4], bias_curves[3];
    const double b_values[4] = {1, 0, -1, -2}, bias_values[3] = {7, 0, -3};
    for (int i = 0; i <= 300; ++i) {
      const double a = -10 + i * 0.05;
      as.push_back(a);
      for (int k = 0; k < 4; ++k) b_curves[k].push_back(node(a, b_values[k], 0).f);
      for (int k = 0; k < 3; ++k) bias_curves[k].push_back(std::max(0.0, a + bias_values[k]));
    }
    example::write_columns(opt.out / "relu_interactions_curves.dat",
                           {"A", "B=1", "B=0", "B=-1", "B=-2", "b=7", "b=0", "b=-3"},
                           {as, b_curves[0], b_curves[1], b_curves[2], b_curves[3], bias_curves[0],
                            bias_curves[1], bias_curves[2]});
    if (opt.plots) {
      const std::filesystem::path png = opt.out / "relu_interactions_node.png";
      std::string s = example::png_terminal(png, 1100, 460) + "set termoption noenhanced\n";
      s += "set multiplot layout 1,2\nset xlabel 'A'\nset ylabel 'f'\nset key top left\n"
           "set title 'f = relu(2A + 3B): whether A matters depends on B'\n"
           "set xrange [-5:5]\nset yrange [-0.5:13]\n"
           "plot 'relu_interactions_curves.dat' using 1:2 with lines lw 2 title 'B = 1', "
           "'' using 1:3 with lines lw 2 title 'B = 0', '' using 1:4 with lines lw 2 "
           "title 'B = -1', '' using 1:5 with lines lw 2 title 'B = -2'\n"
           "set title 'f = relu(A + b): the bias b moves the kink to A = -b'\n"
           "set xrange [-10:5]\n"
           "plot 'relu_interactions_curves.dat' using 1:6 with lines lw 2 title 'b = 7', "
           "'' using 1:7 with lines lw 2 title 'b = 0', '' using 1:8 with lines lw 2 "
           "title 'b = -3'\n"
           "unset multiplot\n";
      example::gnuplot(opt.out, s);
      pictures.push_back(png);
    }

    // ---- 2. a 1-D regression fitted by a sum of ReLU units ----
    // y = sum_k v_k relu(w_k x + b_k) + c: one hidden layer of `units` ReLUs, trained by nn::fit
    // on a regression set, one full batch per epoch (so an epoch is a step).
    ag::Rng rng(opt.seed);
    const std::int64_t n = 80;
    nn::Dataset points;
    points.rows = n, points.cols = 1, points.outputs = 1;
    for (std::int64_t i = 0; i < n; ++i) {
      const double x = -3 + 6 * double(i) / double(n - 1);
      points.features.push_back(float(x));
      points.target_values.push_back(float(target(x) + 0.1 * rng.normal()));
    }
    const std::vector<float>& xs = points.features;
    const std::vector<float>& ys = points.target_values;
    nn::MLP net({1, units, 1}, ag::Op::relu, nn::Activation::none, opt.seed);
    nn::Adam adam(net.parameters(), {.lr = 0.02});
    nn::FitOptions training;
    training.epochs = opt.quick ? 1500 : 3000;
    training.batch_size = n;
    training.shuffle = false;
    training.loss = nn::LossKind::mse;
    training.progress = nn::FitOptions::Progress::quiet;
    const nn::EpochStats last = nn::fit(net, adam, points, training).epochs.back();
    const std::size_t steps = training.epochs;
    const double loss = last.loss;
    ag::TensorTape tape;

    // Each unit's contribution from the learned weights, and where it bends: x = -b_k / w_k.
    const nn::Linear& hidden = *net.linears()[0];
    const nn::Linear& out = *net.linears()[1];
    const auto w = hidden.weight.data(), b = hidden.bias->data(), v = out.weight.data();
    const double c = out.bias->data()[0];
    std::vector<double> grid, fit, truth;
    std::vector<std::vector<double>> contrib(static_cast<std::size_t>(units));
    for (int i = 0; i <= 600; ++i) {
      const double x = -3 + 0.01 * i;
      grid.push_back(x);
      truth.push_back(target(x));
      double y = c;
      for (std::size_t k = 0; k < std::size_t(units); ++k) {
        contrib[k].push_back(v[k] * std::max(0.0, double(w[k]) * x + double(b[k])));
        y += contrib[k].back();
      }
      fit.push_back(y);
    }
    // The network's own forward pass on the grid must agree with the sum of the units.
    {
      ag::NoGrad no_grad(tape);
      tape.reset();
      std::vector<float> gx(grid.begin(), grid.end());
      const std::vector<double> net_fit =
          net(tape.constant<float>(ag::Shape{std::int64_t(gx.size()), 1}, gx)).values();
      double worst = 0;
      for (std::size_t i = 0; i < grid.size(); ++i)
        worst = std::max(worst, std::abs(net_fit[i] - fit[i]));
      if (worst > 1e-4) ag::fail("the units' sum differs from the net by {}", worst);
    }
    std::vector<double> kinks, kink_y, kink_unit;
    for (std::size_t k = 0; k < std::size_t(units); ++k) {
      if (w[k] == 0) continue;
      const double at = -double(b[k]) / double(w[k]);
      if (at < -3 || at > 3) continue;  // bends outside the data: a straight piece here
      kinks.push_back(at);
      kink_unit.push_back(double(k + 1));
      double y = c;
      for (std::size_t j = 0; j < std::size_t(units); ++j)
        y += v[j] * std::max(0.0, double(w[j]) * at + double(b[j]));
      kink_y.push_back(y);
    }
    double sq = 0;
    for (std::size_t i = 0; i < grid.size(); ++i) sq += (fit[i] - truth[i]) * (fit[i] - truth[i]);
    const double rmse = std::sqrt(sq / double(grid.size()));

    std::vector<std::string> header{"x", "fit", "truth"};
    std::vector<std::vector<double>> cols{grid, fit, truth};
    for (std::size_t k = 0; k < std::size_t(units); ++k) {
      header.push_back(fmt::format("unit{}", k + 1));
      cols.push_back(contrib[k]);
    }
    example::write_columns(opt.out / "relu_fit_curve.dat", header, cols);
    example::write_columns(
        opt.out / "relu_fit_points.dat", {"x", "y"},
        {std::vector<double>(xs.begin(), xs.end()), std::vector<double>(ys.begin(), ys.end())});
    example::write_columns(opt.out / "relu_fit_kinks.dat", {"x", "fit", "unit"},
                           {kinks, kink_y, kink_unit});

    fmt::print(
        "\nA fit of y = sin(1.5x) + 0.3x (+ noise 0.1, {} points) by {} ReLU units, Adam, "
        "{} steps:\n",
        n, units, steps);
    fmt::print("  training MSE {:.4f} (R² {:.3f}); RMSE against the true curve {:.3f}\n", loss,
               last.train_r2, rmse);
    fmt::print("  kinks inside [-3, 3] at x =");
    std::vector<double> sorted = kinks;
    std::sort(sorted.begin(), sorted.end());
    for (double k : sorted) fmt::print(" {:.2f}", k);
    fmt::print(
        "\n  each unit is v relu(w x + b), bending at x = -b/w (its bias moves the kink); "
        "their sum\n  is a straight line between kinks, and {} kinks bend it into the "
        "curve.\n",
        kinks.size());

    if (opt.plots) {
      const std::filesystem::path png = opt.out / "relu_interactions_fit.png";
      std::string s = example::png_terminal(png, 900, 760) + "set termoption noenhanced\n";
      // Fixed margins: both panels share the x axis, so the kink lines line up.
      s += "set multiplot layout 2,1\nset xrange [-3:3]\nset key top left\n"
           "set lmargin at screen 0.08\nset rmargin at screen 0.84\n";
      for (double k : kinks)
        s += fmt::format("set arrow from {0},graph 0 to {0},graph 1 nohead dt 3 lc rgb '#888888'\n",
                         k);
      s += fmt::format(
          "set title \"a sum of {} ReLU units fits a curve; dotted lines: each unit's kink\"\n"
          "set ylabel 'y'\n"
          "plot 'relu_fit_points.dat' using 1:2 with points pt 7 ps 0.6 lc rgb '#999999' "
          "title 'data', 'relu_fit_curve.dat' using 1:3 with lines lw 2 dt 2 lc rgb '#2ca02c' "
          "title 'true curve', '' using 1:2 with lines lw 3 lc rgb '#1f77b4' title 'ReLU fit', "
          "'relu_fit_kinks.dat' using 1:2 with points pt 5 ps 1.2 lc rgb '#d62728' title "
          "'kinks'\n",
          units);
      s += "set title 'the units: v_k relu(w_k x + b_k), each zero on one side of its kink'\n"
           "set xlabel 'x'\nset ylabel 'contribution'\nset key outside right font ',9'\n";
      s += fmt::format(
          "plot for [k=4:{}] 'relu_fit_curve.dat' using 1:k with lines lw 2 "
          "title sprintf('unit %d', k-3)\n",
          3 + units);
      s += "unset multiplot\n";
      example::gnuplot(opt.out, s);
      pictures.push_back(png);
    }
    example::announce(pictures);
    return 0;
  });
}
