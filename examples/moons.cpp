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
    nn::MLP model({2, 16, 16, 1}, ag::Op::relu, nn::Activation::none, o.seed);
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
        fmt::print("step {:3}  lr {:.3f}  hinge loss {:.4f}  accuracy {:.0f}%\n", e.epoch - 1, e.lr,
                   e.loss, 100 * e.train_accuracy);
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
    const auto png = nn::plot::decision_boundary(
        o.out / "moons.png", model, moons, nn::LossKind::hinge,
        {.title = "decision boundary of the 2-16-16-1 net after 100 SGD steps",
         .class_names = {"y = -1", "y = +1"}});
    example::announce(std::vector{png});
    return 0;
  });
}
