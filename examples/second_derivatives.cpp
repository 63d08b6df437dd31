// The activations' second derivatives taken by the engine (the gradient recorded with
// create_graph, differentiated again) against their closed forms: sigmoid, tanh, softplus, GELU.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numbers>
#include <string>
#include <tapegrad/autograd.hpp>
#include <vector>

#include "example.hpp"

namespace {

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double normal_pdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * std::numbers::pi); }
double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

// An activation, as the engine records it, and its first and second derivatives written out.
struct Activation {
  std::string name, second_formula;
  std::function<ag::Value(ag::Value)> f;
  std::function<double(double)> first, second;
};

std::vector<Activation> activations() {
  return {
      {"sigmoid", "s(1 - s)(1 - 2s)", [](ag::Value x) { return ag::sigmoid(x); },
       [](double x) { return sigmoid(x) * (1 - sigmoid(x)); },
       [](double x) {
         const double s = sigmoid(x);
         return s * (1 - s) * (1 - 2 * s);
       }},
      {"tanh", "-2 t (1 - t^2)", [](ag::Value x) { return ag::tanh(x); },
       [](double x) { return 1 - std::tanh(x) * std::tanh(x); },
       [](double x) {
         const double t = std::tanh(x);
         return -2 * t * (1 - t * t);
       }},
      {"softplus", "s(1 - s)", [](ag::Value x) { return ag::softplus(x); },
       [](double x) { return sigmoid(x); }, [](double x) { return sigmoid(x) * (1 - sigmoid(x)); }},
      {"gelu", "phi(x)(2 - x^2)", [](ag::Value x) { return ag::gelu(x); },
       [](double x) { return normal_cdf(x) + x * normal_pdf(x); },
       [](double x) { return normal_pdf(x) * (2 - x * x); }},
  };
}

struct Curves {
  std::vector<double> f, first, second;
};

// f, f' and f'' at every grid point by the engine: f' = tape.grad(f, x) recorded with
// create_graph, f'' its own gradient. One tape, reset per point.
Curves by_engine(const Activation& a, const std::vector<double>& xs) {
  ag::Tape tape;
  Curves c;
  for (double x : xs) {
    tape.reset();
    const ag::Value xv = tape.input(x, "x");
    const ag::Value y = a.f(xv);
    const ag::Value dy = tape.grad(y, {xv}, {.create_graph = true})[0];
    c.f.push_back(y.value());
    c.first.push_back(dy.value());
    c.second.push_back(tape.grad(dy, {xv})[0].value());
  }
  return c;
}

double max_error(const std::vector<double>& engine, const std::vector<double>& xs,
                 const std::function<double(double)>& closed_form) {
  double worst = 0;
  for (std::size_t i = 0; i < xs.size(); ++i)
    worst = std::max(worst, std::abs(engine[i] - closed_form(xs[i])));
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  int points = 801;
  const example::Options opt = example::parse(
      argc, argv, "The activations' second derivatives by the engine against their closed forms",
      [&](CLI::App& app) {
        app.add_option("--points", points, "Grid points on [-6, 6]")
            ->check(CLI::Range(2, 1000000))
            ->capture_default_str();
      });
  return example::run([&] {
    std::vector<double> xs;
    for (int i = 0; i < points; ++i) xs.push_back(-6 + 12.0 * i / (points - 1));
    const std::vector<Activation> acts = activations();
    std::vector<Curves> curves;
    for (const Activation& a : acts) curves.push_back(by_engine(a, xs));

    fmt::print(
        "f' and f'' of each activation by the engine (f' recorded with create_graph, then its\n"
        "gradient) against the closed forms, in double precision, over {} points on [-6, 6]:\n\n",
        points);
    fmt::print("{:<10}{:<20}{:>16}{:>16}{:>12}{:>12}\n", "", "f'' closed form", "max |f' err|",
               "max |f'' err|", "f''(0)", "max f''");
    for (std::size_t k = 0; k < acts.size(); ++k) {
      const auto peak = std::max_element(curves[k].second.begin(), curves[k].second.end());
      fmt::print("{:<10}{:<20}{:>16.1e}{:>16.1e}{:>12.6f}{:>12.6f}\n", acts[k].name,
                 acts[k].second_formula, max_error(curves[k].first, xs, acts[k].first),
                 max_error(curves[k].second, xs, acts[k].second),
                 curves[k].second[std::size_t(points / 2)], *peak);
    }
    // Where sigmoid's curvature peaks: s'' = 0 where 1 - 6s + 6s^2 = 0, x = ln(2 + sqrt 3)
    const auto peak = std::max_element(curves[0].second.begin(), curves[0].second.end());
    fmt::print(
        "\nsigmoid'' is largest, {:.6f}, at x = {:.3f} on the grid (-ln(2 + sqrt 3) = {:.3f}): "
        "there\nsigmoid' = s(1 - s) rises fastest. GELU'' = phi(x)(2 - x^2) is {:.6f} at 0 = 2 "
        "phi(0),\nso GELU is convex near 0, unlike ReLU, whose second derivative is 0 everywhere "
        "(the kink\nincluded, as PyTorch has it).\n",
        *peak, xs[std::size_t(peak - curves[0].second.begin())], -std::log(2 + std::sqrt(3.0)),
        curves[3].second[std::size_t(points / 2)]);
    if (!opt.plots) return 0;

    std::vector<std::string> head{"x"};
    std::vector<std::vector<double>> cols{xs};
    for (std::size_t k = 0; k < acts.size(); ++k) {
      for (const char* what : {"f", "d1", "d2", "d2_closed"})
        head.push_back(acts[k].name + "_" + what);
      cols.push_back(curves[k].f);
      cols.push_back(curves[k].first);
      cols.push_back(curves[k].second);
      cols.emplace_back();
      for (double x : xs) cols.back().push_back(acts[k].second(x));
    }
    example::write_columns(opt.out / "second_derivatives.dat", head, cols);
    const auto png = opt.out / "second_derivatives.png";
    std::string script = example::png_terminal(png.filename(), 1400, 400) +
                         "set multiplot layout 1,4 title \"f, f' and f'' by the engine (lines) "
                         "and f'' by its closed form (points)\"\nset xrange [-6:6]\n"
                         "set yrange [-1.2:2.2]\nset xlabel 'x'\nset key top left\n";
    for (std::size_t k = 0; k < acts.size(); ++k) {
      const std::size_t col = 2 + 4 * k;
      script += fmt::format(
          "set title \"{0}: f'' = {1}\"\n"
          "plot 'second_derivatives.dat' using 1:{2} with lines lw 2 lc rgb '#1f77b4' "
          "title 'f', '' using 1:{3} with lines lw 2 lc rgb '#2ca02c' title \"f'\", "
          "'' using 1:{4} with lines lw 2 lc rgb '#d62728' title \"f''\", "
          "'' every 40 using 1:{5} with points pt 6 ps 1 lc rgb 'black' "
          "title \"f'' closed form\"\n",
          acts[k].name, acts[k].second_formula, col, col + 1, col + 2, col + 3);
    }
    example::gnuplot(opt.out, script + "unset multiplot\n");
    const std::filesystem::path pngs[] = {png};
    example::announce(pngs);
    return 0;
  });
}
