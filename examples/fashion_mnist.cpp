// A 784-256-128-10 ReLU MLP on Fashion-MNIST with nn::fit: the progress bar, the loss and
// accuracy by epoch, the test set's confusion matrix, and a safetensors checkpoint.

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <numeric>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

#include "example.hpp"

namespace {

// The first `n` rows (the files are already in random order): --quick's subset.
nn::Dataset head(const nn::Dataset& d, std::int64_t n) {
  std::vector<std::int64_t> rows(std::size_t(std::min(n, d.rows)));
  std::iota(rows.begin(), rows.end(), 0);
  return d.subset(rows);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t epochs = 10;
  std::int64_t batch = 128;
  double lr = 2e-3;
  std::string dir = nn::kFashionMnistDir;
  const example::Options o = example::parse(
      argc, argv, "An MLP on Fashion-MNIST: progress, curves, confusion matrix, checkpoint",
      [&](CLI::App& app) {
        app.add_option("--epochs", epochs, "Passes over the training set")->capture_default_str();
        app.add_option("--batch", batch, "Rows per SGD step")->capture_default_str();
        app.add_option("--lr", lr, "Adam's initial learning rate (cosine decay to 0)")
            ->capture_default_str();
        app.add_option("--data", dir, "The folder of the four IDX files")->capture_default_str();
      });
  return example::run([&] {
    nn::Dataset train = nn::load_fashion_mnist(nn::Split::train, dir);
    nn::Dataset test = nn::load_fashion_mnist(nn::Split::test, dir);
    if (o.quick) {  // a sixth of the data, one epoch: enough to be far above chance
      train = head(train, 10000);
      test = head(test, 2000);
      epochs = 1;
    }
    const char* threads = std::getenv("OPENBLAS_NUM_THREADS");
    fmt::print("Fashion-MNIST: {} training and {} test images of 28 x 28, {} classes\n", train.rows,
               test.rows, train.classes);

    nn::MLP model({784, 256, 128, 10}, ag::Op::relu, nn::Activation::none, o.seed);
    nn::Adam adam(model.parameters(), {.lr = lr});
    nn::FitOptions fit;
    fit.epochs = epochs;
    fit.batch_size = batch;
    fit.seed = o.seed;
    fit.loss = nn::LossKind::cross_entropy;
    // Half a cosine from lr to 0: large steps early, small ones to settle at the end.
    fit.schedule = nn::schedule::cosine(epochs);
    fit.test = &test;
    fmt::print("MLP 784-256-128-10, ReLU hidden layers: {} parameters\n", model.parameter_count());
    fmt::print("Adam lr {} with cosine decay, batch {}, {} epoch{}, OPENBLAS_NUM_THREADS={}\n", lr,
               batch, epochs, epochs == 1 ? "" : "s", threads ? threads : "(unset)");
    const auto t0 = std::chrono::steady_clock::now();
    const nn::History history = nn::fit(model, adam, train, fit);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const nn::EpochStats& last = history.epochs.back();
    fmt::print("trained in {:.1f}s: train accuracy {:.4f}, test accuracy {:.4f}\n", seconds,
               last.train_accuracy, last.test_accuracy);

    // The test set's confusion matrix: which clothes the net mistakes for which.
    nn::ConfusionMatrix confusion(test.classes, test.class_names);
    {
      ag::TensorTape tape;
      nn::DataLoader loader(test, 1000, false);
      model.eval();
      for (const nn::Batch& b : loader) {
        tape.reset();
        ag::NoGrad no_grad(tape);
        confusion.add(model(b.inputs(tape)), b.y, nn::Scores::logits);
      }
    }
    fmt::print("\nconfusion matrix of the test set:\n{}\n", confusion);

    // The checkpoint has PyTorch's names (layers.0.weight, ...); loading it into a fresh net
    // must give the same test accuracy.
    const auto checkpoint = o.out / "fashion_mnist.safetensors";
    nn::save(model, checkpoint.string(),
             {.metadata = {{"epochs", std::to_string(epochs)},
                           {"test_accuracy", fmt::format("{}", last.test_accuracy)}}});
    nn::MLP loaded({784, 256, 128, 10}, ag::Op::relu, nn::Activation::none, o.seed + 1);
    nn::load(loaded, checkpoint.string());
    const double reloaded = nn::evaluate(loaded, test, nn::LossKind::cross_entropy).accuracy;
    fmt::print("saved {} ({} bytes); loaded back: test accuracy {:.4f}\n", checkpoint.string(),
               std::filesystem::file_size(checkpoint), reloaded);

    if (!o.plots) return 0;
    std::vector<double> ep, loss, train_acc, test_acc;
    for (const nn::EpochStats& e : history.epochs) {
      ep.push_back(double(e.epoch));
      loss.push_back(e.loss);
      train_acc.push_back(e.train_accuracy);
      test_acc.push_back(e.test_accuracy);
    }
    example::write_columns(o.out / "fashion_mnist_history.dat",
                           {"epoch", "loss", "train_accuracy", "test_accuracy"},
                           {ep, loss, train_acc, test_acc});
    const auto png = o.out / "fashion_mnist.png";
    example::gnuplot(o.out, example::png_terminal(png, 1000, 400) + R"(
set multiplot layout 1,2
set title 'training loss (cross-entropy, mean over the epoch)'
set xlabel 'epoch'
set ylabel 'loss'
set key off
set xtics 1
plot 'fashion_mnist_history.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '#1f77b4'
set title 'accuracy'
set ylabel 'accuracy'
set key bottom right
plot 'fashion_mnist_history.dat' using 1:3 with linespoints lw 2 pt 7 lc rgb '#1f77b4' \
       title 'train', \
     '' using 1:4 with linespoints lw 2 pt 7 lc rgb '#d62728' title 'test', \
     0.89 with lines dt 2 lc rgb '#555555' title '89%'
unset multiplot
)");
    example::announce(std::vector{png});
    return 0;
  });
}
