// The curvature of a small MLP's loss: Hessian-vector products by double backward (checked
// against differences of gradients), the largest eigenvalue by power iteration, and gradient
// descent just under and just over the step 2 / lambda_max where it starts to diverge.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn/data.hpp>
#include <vector>

#include "example.hpp"

namespace {

using ag::Shape;
using ag::Tensor;
using Vectors = std::vector<std::vector<double>>;  // one flat vector per parameter tensor

// An MLP 2-16-16-1 with tanh hidden layers and a linear output, fitted to the moons labels
// y = -1 / +1 by the mean squared error: tanh and MSE are smooth, so the loss has a Hessian
// everywhere, and every op on the way has its recorded backward. Float64 throughout, so the
// finite differences below are meaningful to many digits.
class Moons {
 public:
  Moons(std::int64_t rows, std::uint64_t seed) : rows_(rows) {
    const nn::Dataset d = nn::moons(rows, 0.1, seed);
    x_.assign(d.features.begin(), d.features.end());
    for (std::int32_t label : d.labels) y_.push_back(label == 1 ? 1.0 : -1.0);
  }

  // W1 (16, 2), b1, W2 (16, 16), b2, W3 (1, 16), b3, as PyTorch's Linear initialises them:
  // U(-1/sqrt(in), 1/sqrt(in)).
  Vectors initial(std::uint64_t seed) const {
    std::mt19937_64 rng(seed);
    Vectors p;
    for (const Shape& s : shapes_) {
      const double bound = 1 / std::sqrt(double(s.rank() == 2 ? s[1] : fan_in_of_bias(p.size())));
      std::uniform_real_distribution<double> u(-bound, bound);
      p.emplace_back(std::size_t(s.numel()));
      for (double& e : p.back()) e = u(rng);
    }
    return p;
  }

  double loss(const Vectors& p) {
    tape_.reset();
    return record(leaves(p)).item();
  }

  // The gradient by one plain backward pass.
  Vectors gradient(const Vectors& p, double* loss = nullptr) {
    tape_.reset();
    const std::vector<Tensor> leaf = leaves(p);
    const Tensor l = record(leaf);
    tape_.backward(l);
    if (loss != nullptr) *loss = l.item();
    Vectors g;
    for (const Tensor& t : leaf) g.push_back(t.grads());
    return g;
  }

  // H v by double backward (ag::hessian_vector_product), never by differences.
  Vectors hvp(const Vectors& p, const Vectors& v) {
    tape_.reset();
    const std::vector<Tensor> leaf = leaves(p);
    std::vector<Tensor> vs;
    for (std::size_t k = 0; k < v.size(); ++k)
      vs.push_back(tape_.constant<double>(shapes_[k], v[k]));
    Vectors out;
    for (const Tensor& t : ag::hessian_vector_product(record(leaf), leaf, vs))
      out.push_back(t.values());
    return out;
  }

 private:
  std::int64_t fan_in_of_bias(std::size_t k) const { return shapes_[k - 1][1]; }

  std::vector<Tensor> leaves(const Vectors& p) {
    std::vector<Tensor> t;
    for (std::size_t k = 0; k < p.size(); ++k) t.push_back(tape_.input<double>(shapes_[k], p[k]));
    return t;
  }

  Tensor record(const std::vector<Tensor>& p) {
    Tensor h = tape_.constant<double>(Shape{rows_, 2}, x_);
    h = ag::tanh(ag::linear(h, p[0], p[1]));
    h = ag::tanh(ag::linear(h, p[2], p[3]));
    const Tensor error = ag::linear(h, p[4], p[5]) - tape_.constant<double>(Shape{rows_, 1}, y_);
    return ag::mean(error * error);
  }

  std::int64_t rows_;
  std::vector<double> x_, y_;
  std::vector<Shape> shapes_{Shape{16, 2}, Shape{16},    Shape{16, 16},
                             Shape{16},    Shape{1, 16}, Shape{1}};
  ag::TensorTape tape_;
};

double dot(const Vectors& a, const Vectors& b) {
  double s = 0;
  for (std::size_t k = 0; k < a.size(); ++k)
    for (std::size_t i = 0; i < a[k].size(); ++i) s += a[k][i] * b[k][i];
  return s;
}

// a + t b
Vectors axpy(const Vectors& a, double t, const Vectors& b) {
  Vectors out = a;
  for (std::size_t k = 0; k < a.size(); ++k)
    for (std::size_t i = 0; i < a[k].size(); ++i) out[k][i] += t * b[k][i];
  return out;
}

Vectors scaled(Vectors a, double t) {
  for (auto& v : a)
    for (double& e : v) e *= t;
  return a;
}

std::size_t count(const Vectors& a) {
  std::size_t n = 0;
  for (const auto& v : a) n += v.size();
  return n;
}

// The largest eigenvalue of the Hessian at p by power iteration from q: q <- H q / |H q|, each
// estimate q . H q. Returns the estimates; q ends as the top eigenvector.
std::vector<double> power_iteration(Moons& m, const Vectors& p, Vectors& q, std::size_t n) {
  std::vector<double> lambdas;
  q = scaled(q, 1 / std::sqrt(dot(q, q)));
  for (std::size_t i = 0; i < n; ++i) {
    const Vectors hq = m.hvp(p, q);
    lambdas.push_back(dot(q, hq));
    q = scaled(hq, 1 / std::sqrt(dot(hq, hq)));
  }
  return lambdas;
}

// Gradient descent from p for `steps` steps: before each step (and after the last) the loss and
// the gradient's component along `direction`, which on the quadratic model is lambda times the
// offset from the minimum along it.
struct Run {
  std::vector<double> loss, along;
  Vectors end;  // the parameters after the last step
};
Run descend(Moons& m, Vectors p, double lr, std::size_t steps, const Vectors& direction) {
  Run run;
  for (std::size_t s = 0; s <= steps; ++s) {
    double loss = 0;
    const Vectors g = m.gradient(p, &loss);
    run.loss.push_back(loss);
    run.along.push_back(std::abs(dot(g, direction)));
    if (!std::isfinite(loss)) break;
    if (s < steps) p = axpy(p, -lr, g);
  }
  run.end = p;
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t train_steps = 3000, power_iterations = 100, probe_steps = 60;
  double nudge = 1e-3;
  double train_lr = 0.1;
  const example::Options opt = example::parse(
      argc, argv, "Hessian-vector products, the largest eigenvalue, and the step 2 / lambda",
      [&](CLI::App& app) {
        app.add_option("--train-steps", train_steps, "Gradient-descent steps before measuring")
            ->capture_default_str();
        app.add_option("--train-lr", train_lr, "Their step")->capture_default_str();
        app.add_option("--nudge", nudge, "The offset along the top eigenvector")
            ->capture_default_str();
        app.add_option("--power-iterations", power_iterations, "Power iterations")
            ->check(CLI::Range(1, 100000))
            ->capture_default_str();
      });
  return example::run([&] {
    Moons moons(100, opt.seed);
    Vectors p = moons.initial(opt.seed + 1);
    const double initial = moons.loss(p);
    for (std::size_t s = 0; s < train_steps; ++s) p = axpy(p, -train_lr, moons.gradient(p));
    const double trained = moons.loss(p);
    fmt::print(
        "An MLP 2-16-16-1 with tanh hidden layers ({} parameters), mean squared error against y =\n"
        "-1 / +1 on 100 moons points, float64; {} gradient-descent steps with lr {:g} bring the\n"
        "loss from {:.4f} to {:.4f}. The curvature there:\n\n",
        count(p), train_steps, train_lr, initial, trained);

    // 1. H v by double backward against central differences of plain gradients.
    std::mt19937_64 rng(opt.seed + 2);
    std::normal_distribution<double> normal;
    Vectors v = p;
    for (auto& t : v)
      for (double& e : t) e = normal(rng);
    const Vectors hv = moons.hvp(p, v);
    const double step = 1e-5;
    const Vectors up = moons.gradient(axpy(p, step, v)), down = moons.gradient(axpy(p, -step, v));
    double worst = 0, largest = 0;
    for (std::size_t k = 0; k < hv.size(); ++k)
      for (std::size_t i = 0; i < hv[k].size(); ++i) {
        worst = std::max(worst, std::abs(hv[k][i] - (up[k][i] - down[k][i]) / (2 * step)));
        largest = std::max(largest, std::abs(hv[k][i]));
      }
    fmt::print(
        "H v by double backward against (g(p + h v) - g(p - h v)) / 2h, h = {:g}, v ~ N(0, 1):\n"
        "  largest |difference| {:.1e}, against a largest |H v| element of {:.4f}\n\n",
        step, worst, largest);

    // 2. The largest eigenvalue by power iteration: v <- H v / |H v|, lambda = v . H v.
    Vectors q = v;
    const std::vector<double> lambdas = power_iteration(moons, p, q, power_iterations);
    const double lambda = lambdas.back();
    fmt::print("Power iteration on H v ({} products): lambda_max = {:.4f}", power_iterations,
               lambda);
    fmt::print(" (after 10: {:.4f}, after 30: {:.4f})\n",
               lambdas[std::min<std::size_t>(9, lambdas.size() - 1)],
               lambdas[std::min<std::size_t>(29, lambdas.size() - 1)]);
    const double edge = 2 / lambda;
    fmt::print(
        "Gradient descent on the quadratic model diverges for lr > 2 / lambda_max = {:.4f}\n\n",
        edge);

    // 3. Gradient descent from p nudged along the top eigenvector, just under and just over
    // 2/lambda.
    const Vectors start = axpy(p, nudge, q);
    const double lrs[] = {0.9 * edge, 1.1 * edge};
    std::vector<Run> runs;
    for (double lr : lrs) runs.push_back(descend(moons, start, lr, probe_steps, q));
    fmt::print(
        "From there, nudged by {:g} along the top eigenvector q, {} steps of gradient descent;\n"
        "|q . gradient| (lambda times the offset along q, on the quadratic model) and the loss:\n",
        nudge, probe_steps);
    const std::size_t shown[] = {0, 10, 20, 30, probe_steps};
    fmt::print("{:<26}", "lr");
    for (std::size_t s : shown) fmt::print("{:>11}", fmt::format("step {}", s));
    fmt::print("\n");
    for (std::size_t r = 0; r < 2; ++r) {
      for (int what = 0; what < 2; ++what) {
        const std::vector<double>& column = what == 0 ? runs[r].along : runs[r].loss;
        fmt::print("{:<26}",
                   what == 0 ? fmt::format("{:.4f} ({} x 2/lambda)", lrs[r], r == 0 ? "0.9" : "1.1")
                             : "  loss");
        for (std::size_t s : shown)
          fmt::print("{:>11}", s < column.size() ? fmt::format("{:.2e}", column[s]) : "-");
        fmt::print("\n");
      }
    }
    Vectors q_end = v;
    const double lambda_end = power_iteration(moons, runs[1].end, q_end, power_iterations).back();
    fmt::print(
        "\nAlong q a step multiplies the offset by 1 - lr lambda: 1 - 0.9 x 2 = -0.8 shrinks it,\n"
        "1 - 1.1 x 2 = -1.2 grows it, until the net leaves the quadratic region. After the {}\n"
        "steps at 1.1 x 2/lambda, lambda_max is {:.4f} (2 / lambda_max = {:.4f}): the run has\n"
        "moved where the loss is flatter, {} ({:.4f}).\n",
        probe_steps, lambda_end, 2 / lambda_end,
        lrs[1] < 2 / lambda_end ? "flat enough for its step"
                                : "though not yet flat enough for its step",
        lrs[1]);
    if (!opt.plots) return 0;

    std::vector<double> steps, iterations;
    for (std::size_t s = 0; s <= probe_steps; ++s) steps.push_back(double(s));
    for (std::size_t i = 0; i < lambdas.size(); ++i) iterations.push_back(double(i + 1));
    std::vector<std::vector<double>> columns{steps};
    for (Run& run : runs) {
      run.along.resize(steps.size(), std::nan(""));
      run.loss.resize(steps.size(), std::nan(""));
      columns.push_back(run.along);
      columns.push_back(run.loss);
    }
    example::write_columns(opt.out / "curvature_runs.dat",
                           {"step", "under_along", "under_loss", "over_along", "over_loss"},
                           columns);
    example::write_columns(opt.out / "curvature_power.dat", {"iteration", "lambda"},
                           {iterations, lambdas});
    const auto png = opt.out / "curvature.png";
    const std::string script =
        example::png_terminal(png.filename(), 1200, 450) +
        "set multiplot layout 1,2\nset xlabel 'power iteration'\nset ylabel 'v . H v'\n"
        "set key bottom right\nset title 'the largest eigenvalue of the Hessian, by power "
        "iteration on H v'\n"
        "plot 'curvature_power.dat' using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'lambda'\n"
        "set logscale y\nset format y '1e%T'\nset xlabel 'gradient-descent step'\n"
        "set ylabel '|q . gradient|, loss'\nset key bottom right\n"
        "set title 'gradient descent just under and just over lr = 2 / lambda'\n" +
        fmt::format(
            "plot 'curvature_runs.dat' using 1:2 with linespoints lw 2 pt 7 ps 0.5 lc rgb "
            "'#2ca02c' title '|q . g|, lr = 0.9 x 2/lambda = {:.4f}', '' using 1:4 with "
            "linespoints lw 2 pt 7 ps 0.5 lc rgb '#d62728' title '|q . g|, lr = 1.1 x 2/lambda = "
            "{:.4f}', '' using 1:3 with lines lw 1 dt 2 lc rgb '#2ca02c' title 'loss (0.9)', '' "
            "using 1:5 with lines lw 1 dt 2 lc rgb '#d62728' title 'loss (1.1)'\n",
            lrs[0], lrs[1]) +
        "unset multiplot\n";
    example::gnuplot(opt.out, script);
    const std::filesystem::path pngs[] = {png};
    example::announce(pngs);
    return 0;
  });
}
