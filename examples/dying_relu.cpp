// Dying ReLU: a too large learning rate or negative biases push ReLU units to inputs <= 0 for
// every example, where relu' = 0 and they never learn again; Leaky ReLU and ELU keep learning.

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <tapegrad/nn.hpp>
#include <vector>

#include "example.hpp"

namespace {

const std::vector<std::int64_t> kSizes{2, 64, 64, 64, 3};  // three hidden rectifier layers
constexpr std::size_t kHidden = 3;

struct Setup {
  std::string label;       // for the tables and the plot
  std::string key;         // for the data file's header
  std::string activation;  // nn::parse_activation's name
  double lr;
  double bias;  // every hidden bias starts here; 0 keeps PyTorch's initialisation
};

struct Run {
  Setup setup;
  std::vector<std::vector<double>> dead;  // per epoch, per hidden layer (nn::DeadUnits)
  std::vector<double> accuracy;           // per epoch, training accuracy
  std::vector<double> no_grad;            // per hidden layer, before training: see silent_units
};

// The fraction of each hidden layer's units whose weights get exactly zero gradient from the
// whole data set: the units that cannot learn at all. For ReLU they are the dead units; Leaky
// ReLU and ELU pass a gradient through the negative side, so theirs are never silent.
std::vector<double> silent_units(nn::MLP& net, const nn::Dataset& data) {
  ag::TensorTape tape;
  net.zero_grad();
  tape.backward(nn::cross_entropy(net(data.inputs(tape)), data.labels));
  std::vector<double> out;
  const auto linears = net.linears();
  for (std::size_t l = 0; l < kHidden; ++l) {
    const nn::Linear& lin = *linears[l];
    const auto g = lin.weight.grad();
    std::int64_t silent = 0;
    for (std::int64_t j = 0; j < lin.out_features; ++j) {
      const auto row = g.subspan(std::size_t(j * lin.in_features), std::size_t(lin.in_features));
      const bool zero = std::all_of(row.begin(), row.end(), [](float v) { return v == 0.0f; });
      silent += zero && lin.bias->grad()[std::size_t(j)] == 0.0f;
    }
    out.push_back(double(silent) / double(lin.out_features));
  }
  net.zero_grad();
  return out;
}

Run train(const Setup& s, const nn::Dataset& data, std::size_t epochs, std::uint64_t seed) {
  nn::MLP net(kSizes, nn::parse_activation(s.activation), nn::Activation::none, seed);
  if (s.bias != 0)
    for (std::size_t l = 0; l < kHidden; ++l) nn::init::constant(*net.linears()[l]->bias, s.bias);
  Run r{s, {}, {}, silent_units(net, data)};
  nn::SGD sgd(net.parameters(), {.lr = s.lr, .momentum = 0.9});
  nn::FitOptions fo;
  fo.epochs = epochs;
  fo.batch_size = 32;
  fo.seed = seed;
  fo.progress = nn::FitOptions::Progress::quiet;
  fo.diagnostics = true;  // fills EpochStats::dead_fraction from nn::DeadUnits
  for (const nn::EpochStats& e : nn::fit(net, sgd, data, fo).epochs) {
    r.dead.push_back(e.dead_fraction);
    r.accuracy.push_back(e.train_accuracy);
  }
  return r;
}

std::string fractions(const std::vector<double>& v) {
  std::string s;
  for (double f : v) s += fmt::format("{:>4.0f}%", f * 100);
  return s;
}

// The runs' dead fractions per epoch as one data file: epoch, then per run its layers and accuracy.
void print_and_write(const std::vector<Run>& runs, const std::vector<std::size_t>& shown,
                     const std::filesystem::path& path) {
  fmt::print("{:<30}", "");
  for (std::size_t e : shown) fmt::print("{:<17}", fmt::format("epoch {}", e));
  fmt::print("{:>9}\n", "accuracy");
  std::vector<std::string> header{"epoch"};
  std::vector<std::vector<double>> cols(1);
  for (std::size_t e = 1; e <= runs[0].dead.size(); ++e) cols[0].push_back(double(e));
  for (const Run& r : runs) {
    fmt::print("{:<30}", r.setup.label);
    for (std::size_t e : shown) fmt::print("{:<17}", fractions(r.dead[e - 1]));
    fmt::print("{:>9.3f}\n", r.accuracy.back());
    for (std::size_t l = 0; l < kHidden; ++l) {
      header.push_back(fmt::format("{}_layer{}", r.setup.key, l + 1));
      cols.emplace_back();
      for (const auto& d : r.dead) cols.back().push_back(d[l]);
    }
    header.push_back(r.setup.key + "_accuracy");
    cols.push_back(r.accuracy);
  }
  example::write_columns(path, header, cols);
}

std::filesystem::path plot(const std::filesystem::path& dir, const std::vector<Run>& lr_runs,
                           const std::vector<Run>& bias_runs) {
  const std::filesystem::path png = dir / "dying_relu.png";
  std::string s = example::png_terminal(png, 1200, 640) + "set termoption noenhanced\n";
  s += "set multiplot layout 2,3 title 'dead units per hidden layer: input <= 0 for every "
       "example of the epoch'\n"
       "set yrange [-0.03:1.05]\nset xlabel 'epoch'\nset ylabel 'fraction'\nunset key\n";
  const auto panel = [&](const std::string& file, std::size_t run, const std::string& title) {
    s += fmt::format("set title '{}'\nplot ", title);
    const std::size_t first = 2 + run * (kHidden + 1);
    for (std::size_t l = 0; l < kHidden; ++l)
      s += fmt::format("{}'{}' using 1:{} with lines lw 2 notitle", l ? ", " : "", file, first + l);
    s += fmt::format(", '' using 1:{} with lines lw 2 dt 2 lc rgb '#000000' notitle\n",
                     first + kHidden);
  };
  for (std::size_t i = 0; i < lr_runs.size(); ++i)
    panel("dying_relu_lr.dat", i, lr_runs[i].setup.label);
  // The empty slot of the top row holds the one legend the five panels share.
  s += "set title ''\nunset border\nunset tics\nunset xlabel\nunset ylabel\nunset grid\n"
       "set key center center box font ',12'\nset yrange [0:1]\n"
       "plot NaN with lines lw 2 title 'dead units, layer 1', NaN with lines lw 2 title 'dead "
       "units, layer 2', NaN with lines lw 2 title 'dead units, layer 3', NaN with lines lw 2 "
       "dt 2 lc rgb '#000000' title 'training accuracy'\n"
       "set border\nset tics\nset xlabel 'epoch'\nset ylabel 'fraction'\nset grid\nunset key\n"
       "set yrange [-0.03:1.05]\n";
  for (std::size_t i = 0; i < bias_runs.size(); ++i)
    panel("dying_relu_bias.dat", i, bias_runs[i].setup.label);
  s += "unset multiplot\n";
  example::gnuplot(dir, s);
  return png;
}

}  // namespace

int main(int argc, char** argv) {
  const example::Options opt = example::parse(
      argc, argv,
      "Dying ReLU: dead units per layer over training, ReLU against Leaky ReLU and ELU");
  return example::run([&] {
    const nn::Dataset data = nn::spirals(100, 3, 0.2, opt.seed);
    fmt::print(
        "Spirals (300 points, 3 classes), MLP 2-64-64-64-3, SGD with momentum 0.9, the "
        "same initial weights\nin every run. Dead: a unit whose input was <= 0 for every "
        "example of the epoch (per hidden layer).\n\n");

    // 1. One learning rate that is too large: a few big steps push units to the negative side
    // for every example; relu' = 0 there, so nothing ever brings them back.
    const std::size_t lr_epochs = opt.quick ? 30 : 60;
    std::vector<Run> lr_runs;
    for (double lr : {0.05, 0.5})
      lr_runs.push_back(
          train({fmt::format("ReLU, lr {}", lr), fmt::format("lr{}", lr), "relu", lr, 0}, data,
                lr_epochs, opt.seed));
    fmt::print("1. A large learning rate kills ReLU units for good:\n");
    print_and_write(lr_runs, {1, 5, lr_epochs / 2, lr_epochs}, opt.out / "dying_relu_lr.dat");

    // 2. Negative biases: the same dead start for all three; only ReLU stays dead.
    const std::size_t bias_epochs = opt.quick ? 300 : 400;
    std::vector<Run> bias_runs;
    for (auto [label, act] : {std::pair{"ReLU", "relu"}, std::pair{"Leaky ReLU 0.01", "leaky_relu"},
                              std::pair{"ELU", "elu"}})
      bias_runs.push_back(train({fmt::format("{}, biases -0.1", label), act, act, 0.05, -0.1}, data,
                                bias_epochs, opt.seed));
    fmt::print(
        "\n2. Hidden biases start at -0.1 (lr 0.05): the same units start on the negative "
        "side in every net;\n   ReLU's stay dead, Leaky ReLU's and ELU's come back:\n");
    print_and_write(bias_runs, {1, 10, bias_epochs / 2, bias_epochs},
                    opt.out / "dying_relu_bias.dat");
    fmt::print(
        "\nUnits whose weights get exactly zero gradient at the start (per hidden layer; "
        "ReLU's fully\ndead layer 3 passes nothing down, so the layers below it learn "
        "nothing either):\n");
    for (const Run& r : bias_runs) fmt::print("{:<30}{}\n", r.setup.label, fractions(r.no_grad));
    fmt::print(
        "relu' = 0 on the negative side, so a dead ReLU unit gets no gradient and cannot "
        "recover;\nLeaky ReLU (slope 0.01) and ELU (slope alpha e^x) still pass one, so "
        "their units keep learning.\n");

    if (opt.plots) {
      std::vector<std::filesystem::path> pictures{plot(opt.out, lr_runs, bias_runs)};
      example::announce(pictures);
    }
    return 0;
  });
}
