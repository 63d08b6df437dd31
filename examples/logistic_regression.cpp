// The notes' logistic regression, vectorised: y^ = sigmoid(X w + b) with b broadcast over the
// batch, the cross-entropy cost J as the mean of L, and gradient descent w := w - a dw by hand.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/random.hpp>
#include <vector>

#include "example.hpp"

namespace {

// Two Gaussian clouds whose centres are 5.8 standard deviations apart: a straight line
// separates all but a handful of points, which is what logistic regression can draw.
struct Points {
  std::vector<double> x;  // (m, 2), row-major
  std::vector<double> y;  // (m, 1), 0 or 1
};
Points two_clouds(std::int64_t m, std::uint64_t seed) {
  ag::Rng rng(seed);
  Points p;
  for (std::int64_t i = 0; i < m; ++i) {
    const double label = i < m / 2 ? 0.0 : 1.0;
    const double side = label == 1 ? 1.0 : -1.0;
    p.x.push_back(side * 1.2 + 0.5 * rng.normal());
    p.x.push_back(side * 0.8 + 0.5 * rng.normal());
    p.y.push_back(label);
  }
  return p;
}

// " + 0.1234" or " - 0.1234": a term of the printed line equation. And 0 for a sum whose
// terms cancel to rounding error (db at w = 0 on balanced classes), which would print as -0.
std::string term(double v) { return fmt::format(" {} {:.4f}", v < 0 ? '-' : '+', std::abs(v)); }
double clean(double v) { return std::abs(v) < 1e-12 ? 0.0 : v; }

}  // namespace

int main(int argc, char** argv) {
  std::int64_t m = 200, iterations = 300;
  double a = 0.1;
  const example::Options o = example::parse(
      argc, argv, "Logistic regression by gradient descent, as the notes write it",
      [&](CLI::App& app) {
        app.add_option("--lr", a, "The learning rate a")->capture_default_str();
        app.add_option("--iterations", iterations, "Gradient descent steps")->capture_default_str();
      });
  return example::run([&] {
    if (o.quick) iterations = std::min<std::int64_t>(iterations, 100);
    const Points data = two_clouds(m, o.seed);

    // w and b live outside the tape: each iteration records a fresh forward pass from them.
    // Zeros are a fine start here (one unit, nothing to keep apart: the notes' symmetry
    // problem needs hidden units).
    std::vector<double> w{0.0, 0.0}, b{0.0};
    std::vector<double> cost;
    ag::TensorTape tape;
    fmt::print("logistic regression on {} points in 2-D, a = {}, {} iterations\n", m, a,
               iterations);
    for (std::int64_t it = 0; it <= iterations; ++it) {
      tape.reset();
      ag::Tensor X = tape.constant<double>(ag::Shape{m, 2}, data.x);
      ag::Tensor Y = tape.constant<double>(ag::Shape{m, 1}, data.y);
      ag::Tensor W = tape.input<double>(ag::Shape{2, 1}, w, "w");
      ag::Tensor B = tape.input<double>(ag::Shape{1}, b, "b");
      ag::Tensor z = ag::matmul(X, W) + B;  // (m, 2)(2, 1) + (1,): b broadcast to every row
      ag::Tensor yhat = ag::sigmoid(z);
      ag::Tensor L = -(Y * ag::log(yhat) + (1.0 - Y) * ag::log(1.0 - yhat));
      ag::Tensor J = ag::mean(L);
      cost.push_back(J.item());
      if (it == iterations) break;  // the last pass only measures the final cost
      tape.backward(J);
      const std::vector<double> dw = W.grads(), db = B.grads();
      if (it == 0) {
        fmt::print("z = X w + b: X {} times w {} plus b {} broadcast to {}\n", X.shape().str(),
                   W.shape().str(), B.shape().str(), z.shape().str());
        // The notes' closed form dw = 1/m X^T (y^ - y), db = mean(y^ - y), against backward.
        double f0 = 0, f1 = 0, fb = 0;
        for (std::int64_t i = 0; i < m; ++i) {
          const double dz = yhat.value(i) - data.y[std::size_t(i)];
          f0 += data.x[std::size_t(2 * i)] * dz / double(m);
          f1 += data.x[std::size_t(2 * i + 1)] * dz / double(m);
          fb += dz / double(m);
        }
        fmt::print("backward:          dw = ({:.6f}, {:.6f}) db = {:.6f}\n", dw[0], dw[1],
                   clean(db[0]));
        fmt::print("1/m X^T (y^ - y):  dw = ({:.6f}, {:.6f}) db = {:.6f}\n", f0, f1, clean(fb));
      }
      if (it % std::max<std::int64_t>(iterations / 5, 1) == 0)
        fmt::print("iteration {:4}  J = {:.4f}\n", it, J.item());
      // Gradient descent, the notes' update: w := w - a dw, b := b - a db.
      for (std::size_t k = 0; k < w.size(); ++k) w[k] -= a * dw[k];
      b[0] -= a * db[0];
    }

    std::int64_t correct = 0;
    for (std::int64_t i = 0; i < m; ++i) {
      const std::size_t r = std::size_t(2 * i);
      const double zi = w[0] * data.x[r] + w[1] * data.x[r + 1] + b[0];
      correct += (zi > 0) == (data.y[std::size_t(i)] == 1);
    }
    fmt::print("iteration {:4}  J = {:.4f}\n", iterations, cost.back());
    fmt::print("w = ({:.4f}, {:.4f})  b = {:.4f}\n", w[0], w[1], b[0]);
    fmt::print("decision line (y^ = 0.5, z = 0): {:.4f} x1{} x2{} = 0\n", w[0], term(w[1]),
               term(b[0]));
    fmt::print("cost {:.4f} -> {:.4f}; training accuracy {:.3f} ({} of {})\n", cost.front(),
               cost.back(), double(correct) / double(m), correct, m);

    if (!o.plots) return 0;
    std::vector<double> its(cost.size()), x1, x2, c0x1, c0x2, c1x1, c1x2;
    for (std::size_t i = 0; i < its.size(); ++i) its[i] = double(i);
    for (std::int64_t i = 0; i < m; ++i) {
      const bool one = data.y[std::size_t(i)] == 1;
      (one ? c1x1 : c0x1).push_back(data.x[std::size_t(2 * i)]);
      (one ? c1x2 : c0x2).push_back(data.x[std::size_t(2 * i + 1)]);
    }
    example::write_columns(o.out / "logistic_regression_cost.dat", {"iteration", "J"}, {its, cost});
    example::write_columns(o.out / "logistic_regression_y0.dat", {"x1", "x2"}, {c0x1, c0x2});
    example::write_columns(o.out / "logistic_regression_y1.dat", {"x1", "x2"}, {c1x1, c1x2});
    const auto png = o.out / "logistic_regression.png";
    example::gnuplot(o.out, example::png_terminal(png, 1000, 420) + fmt::format(R"(
set multiplot layout 1,2
set title 'cost J = mean of L, by iteration'
set xlabel 'iteration'
set ylabel 'J'
set key off
plot 'logistic_regression_cost.dat' using 1:2 with lines lw 2 lc rgb '#1f77b4'
set title 'the data and the decision line w.x + b = 0'
set xlabel 'x1'
set ylabel 'x2'
set size ratio -1
set key bottom left
set xrange [-3:3]
set yrange [-3:3]
plot 'logistic_regression_y0.dat' with points pt 7 ps 0.6 lc rgb '#d62728' title 'y = 0', \
     'logistic_regression_y1.dat' with points pt 7 ps 0.6 lc rgb '#1f77b4' title 'y = 1', \
     -({0} * x + {2}) / {1} with lines lw 2 lc rgb 'black' title 'ŷ = 0.5'
unset multiplot
)",
                                                                                w[0], w[1], b[0]));
    example::announce(std::vector{png});
    return 0;
  });
}
