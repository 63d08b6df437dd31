// micrograd's demo on tensors: a 2-16-16-1 ReLU net, the hinge loss with L2, 100 steps of
// full-batch SGD with a decaying learning rate, to 100% training accuracy on the moons.

#include <fmt/format.h>

#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

#include "example.hpp"

int main(int argc, char** argv) {
  const example::Options o =
      example::parse(argc, argv, "micrograd's moons demo: MLP 2-16-16-1, hinge loss, SGD");
  return example::run([&] {
    // micrograd: make_moons(n_samples=100, noise=0.1), labels y * 2 - 1 (the hinge loss's sign).
    const nn::Dataset moons = nn::moons(100, 0.1, o.seed);
    nn::MLP model({2, 16, 16, 1}, nn::Activation::relu, nn::Activation::none, o.seed);
    // micrograd's Neuron starts from w ~ U(-1, 1) and b = 0, larger than PyTorch's
    // U(-1/sqrt(in), 1/sqrt(in)); with PyTorch's start, 100 steps are too few for some seeds.
    std::uint64_t layer_seed = o.seed;
    for (nn::Linear* l : model.linears()) {
      nn::init::uniform(l->weight, -1.0, 1.0, layer_seed++);
      nn::init::zeros(*l->bias);
    }
    nn::SGD sgd(model.parameters(), {.lr = 1.0});
    const std::size_t steps = 100;  // --quick keeps all 100: they take milliseconds
    nn::FitOptions fit;
    fit.epochs = steps;
    fit.batch_size = moons.rows;  // full batch, so fit's per-epoch schedule is per step
    fit.shuffle = false;
    fit.loss = nn::LossKind::hinge;
    fit.l2 = 1e-4;  // micrograd's alpha * sum(p * p)
    // steps is a constant: capturing it is needless, and clang++ warns about it.
    fit.schedule = [](std::size_t k, double base) {
      return base * (1.0 - 0.9 * double(k) / double(steps));  // 1.0 - 0.9 k / 100
    };
    fit.progress = nn::FitOptions::Progress::quiet;
    fit.on_epoch = [](const nn::EpochStats& e) {
      // As micrograd prints, but every 10th step; accuracy is of the step's own forward pass.
      if (e.epoch == 1 || e.epoch % 10 == 0)
        fmt::print("step {:3}  lr {:.3f}  hinge loss {:.4f}  accuracy {:.0f}%\n", e.epoch - 1,
                   e.lr, e.loss, 100 * e.train_accuracy);
    };
    fmt::print("MLP 2-16-16-1, ReLU hidden layers: {} parameters\n", model.parameter_count());
    const nn::History history = nn::fit(model, sgd, moons, fit);
    const nn::Evaluation trained = nn::evaluate(model, moons, nn::LossKind::hinge);
    std::size_t first_perfect = 0;
    for (const nn::EpochStats& e : history.epochs)
      if (e.train_accuracy == 1.0) {
        first_perfect = e.epoch - 1;
        break;
      }
    fmt::print("after {} steps: training accuracy {:.0f}% ({} of {} points)\n", steps,
               100 * trained.accuracy, std::int64_t(trained.accuracy * double(moons.rows) + 0.5),
               moons.rows);
    if (first_perfect > 0) fmt::print("first at 100% on step {}\n", first_perfect);

    if (!o.plots) return 0;
    // The score on a grid over the plane: its sign is the class, its zero line the boundary.
    constexpr std::int64_t n = 150;
    const double x0 = -1.6, x1 = 2.6, y0 = -1.3, y1 = 1.7;
    std::vector<float> grid;
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t i = 0; i < n; ++i) {
        grid.push_back(float(x0 + (x1 - x0) * double(i) / double(n - 1)));
        grid.push_back(float(y0 + (y1 - y0) * double(j) / double(n - 1)));
      }
    ag::TensorTape tape;
    ag::NoGrad no_grad(tape);
    model.eval();
    ag::Tensor score = model(tape, tape.constant<float>(ag::Shape{n * n, 2}, grid));
    std::vector<double> gx, gy, gc, px[2], py[2];
    for (std::int64_t k = 0; k < n * n; ++k) {
      gx.push_back(grid[std::size_t(2 * k)]);
      gy.push_back(grid[std::size_t(2 * k + 1)]);
      gc.push_back(score.value(k) > 0 ? 1 : 0);
    }
    for (std::int64_t r = 0; r < moons.rows; ++r) {
      const int c = moons.labels[std::size_t(r)];
      px[c].push_back(moons.row(r)[0]);
      py[c].push_back(moons.row(r)[1]);
    }
    example::write_columns(o.out / "moons_grid.dat", {"x1", "x2", "class"}, {gx, gy, gc});
    example::write_columns(o.out / "moons_y0.dat", {"x1", "x2"}, {px[0], py[0]});
    example::write_columns(o.out / "moons_y1.dat", {"x1", "x2"}, {px[1], py[1]});
    const auto png = o.out / "moons.png";
    example::gnuplot(o.out, example::png_terminal(png, 640, 480) + R"(
set title 'decision boundary of the 2-16-16-1 net after 100 SGD steps'
set xlabel 'x1'
set ylabel 'x2'
set size ratio -1
set xrange [-1.6:2.6]
set yrange [-1.3:1.7]
set cbrange [0:1]
set palette defined (0 '#f6c8c8', 1 '#c8d8f6')
unset colorbox
set key top right Left reverse
plot 'moons_grid.dat' using 1:2:3 with image notitle, \
     'moons_y0.dat' with points pt 7 ps 0.9 lc rgb '#d62728' title 'y = -1', \
     'moons_y1.dat' with points pt 7 ps 0.9 lc rgb '#1f77b4' title 'y = +1'
)");
    example::announce(std::vector{png});
    return 0;
  });
}
