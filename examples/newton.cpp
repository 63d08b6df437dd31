// Newton's method against gradient descent, with the second derivatives taken by the engine
// (gradients of gradients): iterations to converge on a 1-D function and on Rosenbrock's valley.

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <string>
#include <tapegrad/autograd.hpp>
#include <vector>

#include "example.hpp"

namespace {

constexpr double kTolerance = 1e-8;  // converged once |f'(x)| (the gradient's norm) is below it

// f(x) = e^x - 2x: convex, its minimum at x = ln 2, where f'' = 2.
ag::Value bowl(ag::Value x) { return ag::exp(x) - 2.0 * x; }

// Rosenbrock's valley f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, its minimum 0 at (1, 1).
ag::Value rosenbrock(ag::Value x, ag::Value y) {
  return ag::pow(1.0 - x, 2.0) + 100.0 * ag::pow(y - x * x, 2.0);
}

struct Trace {
  std::vector<double> x, y, grad_norm;  // y unused in 1-D
  std::size_t iterations() const { return grad_norm.size() - 1; }
};

// 1-D: Newton's step x -= f'/f'', f' recorded with create_graph and differentiated again; gradient
// descent x -= lr f'. One tape, reset every iteration: warm, an iteration allocates nothing.
Trace minimise_1d(double x0, bool newton, double lr, std::size_t cap) {
  ag::Tape tape;
  Trace t;
  double x = x0;
  for (std::size_t k = 0;; ++k) {
    tape.reset();
    const ag::Value xv = tape.input(x, "x");
    const ag::Value dx = tape.grad(bowl(xv), {xv}, {.create_graph = true})[0];  // f'(x), a node
    t.x.push_back(x);
    t.grad_norm.push_back(std::abs(dx.value()));
    if (t.grad_norm.back() < kTolerance || k == cap) break;
    if (newton) {
      const double second = tape.grad(dx, {xv})[0].value();  // f''(x) = d(f')/dx
      x -= dx.value() / second;
    } else {
      x -= lr * dx.value();
    }
  }
  return t;
}

// 2-D: Newton's step solves H d = -g with the Hessian from Tape::hessian (2x2, by Cramer's rule).
Trace minimise_2d(std::array<double, 2> p, bool newton, double lr, std::size_t cap) {
  ag::Tape tape;
  Trace t;
  for (std::size_t k = 0;; ++k) {
    tape.reset();
    const std::array<ag::Value, 2> v{tape.input(p[0], "x"), tape.input(p[1], "y")};
    std::array<double, 4> h{};
    std::array<double, 2> g{};
    tape.hessian(rosenbrock(v[0], v[1]), v, h, g);
    t.x.push_back(p[0]);
    t.y.push_back(p[1]);
    t.grad_norm.push_back(std::hypot(g[0], g[1]));
    if (t.grad_norm.back() < kTolerance || k == cap) break;
    if (newton) {
      const double det = h[0] * h[3] - h[1] * h[2];
      p[0] -= (h[3] * g[0] - h[1] * g[1]) / det;
      p[1] -= (h[0] * g[1] - h[2] * g[0]) / det;
    } else {
      p[0] -= lr * g[0];
      p[1] -= lr * g[1];
    }
  }
  return t;
}

std::string converged(const Trace& t, std::size_t cap) {
  return t.iterations() < cap ? fmt::format("{}", t.iterations()) : fmt::format("not in {}", cap);
}

}  // namespace

int main(int argc, char** argv) {
  double lr_1d = 0.1, lr_2d = 0.001;
  std::size_t cap = 100000;
  const example::Options opt = example::parse(
      argc, argv, "Newton's method against gradient descent, second derivatives by the engine",
      [&](CLI::App& app) {
        app.add_option("--lr-1d", lr_1d, "Gradient descent's step on e^x - 2x")
            ->capture_default_str();
        app.add_option("--lr-2d", lr_2d, "Gradient descent's step on Rosenbrock")
            ->capture_default_str();
        app.add_option("--max-iterations", cap, "Where gradient descent gives up")
            ->check(CLI::Range(1, 10000000))
            ->capture_default_str();
      });
  return example::run([&] {
    const double x0 = 3.0;
    const std::array<double, 2> p0{-1.2, 1.0};
    const Trace newton_1d = minimise_1d(x0, true, 0, cap),
                gd_1d = minimise_1d(x0, false, lr_1d, cap);
    const Trace newton_2d = minimise_2d(p0, true, 0, cap),
                gd_2d = minimise_2d(p0, false, lr_2d, cap);

    fmt::print(
        "Iterations until |gradient| < {:g}, Newton's step x -= f'(x) / f''(x) (the 2-D step "
        "solves\n"
        "H d = -g) against gradient descent x -= lr f'(x). f'' and H come from the engine: the\n"
        "gradient recorded with create_graph, differentiated again.\n\n",
        kTolerance);
    fmt::print("{:<44}{:>10}{:>22}\n", "function, start", "Newton", "gradient descent");
    fmt::print("{:<44}{:>10}{:>22}\n", fmt::format("f(x) = e^x - 2x, x0 = {:g}", x0),
               converged(newton_1d, cap),
               fmt::format("{} (lr {:g})", converged(gd_1d, cap), lr_1d));
    fmt::print(
        "{:<44}{:>10}{:>22}\n", fmt::format("Rosenbrock, (x0, y0) = ({:g}, {:g})", p0[0], p0[1]),
        converged(newton_2d, cap), fmt::format("{} (lr {:g})", converged(gd_2d, cap), lr_2d));
    fmt::print("\nNewton on e^x - 2x, the minimum at ln 2 = {:.6f}:\n", std::log(2.0));
    fmt::print("{:>4}{:>22}{:>12}\n", "k", "x", "|f'(x)|");
    for (std::size_t k = 0; k < newton_1d.x.size(); ++k)
      fmt::print("{:>4}{:>22.15f}{:>12.1e}\n", k, newton_1d.x[k], newton_1d.grad_norm[k]);
    fmt::print(
        "\nNewton on Rosenbrock's valley (1 - x)^2 + 100 (y - x^2)^2, the minimum at (1, 1):\n");
    fmt::print("{:>4}{:>12}{:>12}{:>12}\n", "k", "x", "y", "|grad|");
    for (std::size_t k = 0; k < newton_2d.x.size(); ++k)
      fmt::print("{:>4}{:>12.6f}{:>12.6f}{:>12.1e}\n", k, newton_2d.x[k], newton_2d.y[k],
                 newton_2d.grad_norm[k]);
    fmt::print(
        "\nNear the minimum Newton's error squares each step (quadratic convergence); gradient\n"
        "descent shrinks it by a constant factor, 1 - lr f'' = {:g} per step on e^x - 2x, and on\n"
        "Rosenbrock by 1 - lr lambda_min for the valley's flat direction, while lr must stay\n"
        "below 2 / lambda_max for the steep one: the curvature Newton divides by.\n",
        1 - lr_1d * 2);
    if (!opt.plots) return 0;

    auto iterations = [](const Trace& t) {
      std::vector<double> k;
      for (std::size_t i = 0; i < t.grad_norm.size(); ++i) k.push_back(double(i));
      return k;
    };
    example::write_columns(opt.out / "newton_1d_newton.dat", {"k", "grad"},
                           {iterations(newton_1d), newton_1d.grad_norm});
    example::write_columns(opt.out / "newton_1d_gd.dat", {"k", "grad"},
                           {iterations(gd_1d), gd_1d.grad_norm});
    example::write_columns(opt.out / "newton_2d_newton.dat", {"k", "grad", "x", "y"},
                           {iterations(newton_2d), newton_2d.grad_norm, newton_2d.x, newton_2d.y});
    example::write_columns(opt.out / "newton_2d_gd.dat", {"k", "grad", "x", "y"},
                           {iterations(gd_2d), gd_2d.grad_norm, gd_2d.x, gd_2d.y});
    const auto png = opt.out / "newton.png";
    const std::string script =
        example::png_terminal(png.filename(), 1500, 450) +
        "set multiplot layout 1,3\nset logscale y\nset format y '1e%T'\nset key top right\n"
        "set xlabel 'iteration'\nset ylabel '|gradient|'\n"
        "set title \"e^x - 2x from x = 3\"\n"
        "plot 'newton_1d_newton.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '#d62728' "
        "title 'Newton', 'newton_1d_gd.dat' using 1:2 with lines lw 2 lc rgb '#1f77b4' "
        "title 'gradient descent'\n"
        "set logscale x\nset xrange [1:*]\n"
        "set title \"Rosenbrock from (-1.2, 1) (log iterations, from 1)\"\n"
        "plot 'newton_2d_newton.dat' using ($1+1):2 with linespoints lw 2 pt 7 lc rgb '#d62728' "
        "title 'Newton', 'newton_2d_gd.dat' using ($1+1):2 with lines lw 2 lc rgb '#1f77b4' "
        "title 'gradient descent'\n"
        "unset logscale\nset format y '%g'\nset xrange [-1.5:1.5]\nset yrange [-3.5:1.7]\n"
        "set xlabel 'x'\nset ylabel 'y'\nset key bottom right\n"
        "set title \"the paths through Rosenbrock's valley (y = x^2 dashed)\"\n"
        "plot x**2 with lines dt 2 lc rgb '#888888' title 'y = x^2', "
        "'newton_2d_gd.dat' using 3:4 with lines lw 2 lc rgb '#1f77b4' title 'gradient descent', "
        "'newton_2d_newton.dat' using 3:4 with linespoints lw 2 pt 7 lc rgb '#d62728' "
        "title 'Newton', '+' using (1):(1) with points pt 3 ps 2 lc rgb 'black' "
        "title 'minimum (1, 1)'\n"
        "unset multiplot\n";
    example::gnuplot(opt.out, script);
    const std::filesystem::path pngs[] = {png};
    example::announce(pngs);
    return 0;
  });
}
