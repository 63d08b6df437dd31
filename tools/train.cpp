// `tapegrad train` and `tapegrad graph`: an MLP trained with nn::fit on a synthetic set, a CSV
// file or Fashion-MNIST, and a checkpointed MLP drawn at module level (tools/train.hpp).

#include "train.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tapegrad/file.hpp>
#include <tapegrad/graph.hpp>
#include <tapegrad/nn/checkpoint.hpp>
#include <tapegrad/nn/data.hpp>
#include <tapegrad/nn/diagnostics.hpp>
#include <tapegrad/nn/init.hpp>
#include <tapegrad/nn/layers.hpp>
#include <tapegrad/nn/optim.hpp>
#include <tapegrad/nn/plot.hpp>
#include <tapegrad/nn/trainer.hpp>
#include <tapegrad/tensor.hpp>
#include <vector>

#include "cli_options.hpp"

namespace tapegrad {

struct NnOptions {
  // train
  std::string data;
  std::string layers;
  std::string act = "relu";
  std::string out = "none";
  std::string loss = "ce";
  std::string opt = "adam";
  double lr = 0.01;
  std::int64_t epochs = 100;
  std::int64_t batch = 32;
  std::uint64_t seed = 0;
  std::string init;
  std::string save;
  std::string resume;
  bool json = false;
  std::string plot;
  bool check_finite = false;
  std::string norm = "none";  // train and graph: the MLP's layers (nn::MLPExtras)
  double dropout = 0;
  double clip_grad_norm = 0;  // each used when given on the command line
  double clip_grad_value = 0;
  // graph
  std::string checkpoint;
  std::string output;
  bool lr_given = false;  // --lr on the command line, not its default
  bool clip_grad_norm_given = false, clip_grad_value_given = false;
};

namespace {

namespace fs = std::filesystem;

constexpr const char* kDataSets =
    "xor, moons, circles, spirals, blobs, fashion-mnist, csv:FILE[:LABEL_COLUMN]";

std::string layers_str(const std::vector<std::int64_t>& sizes) {
  return fmt::format("{}", fmt::join(sizes, ","));
}

struct Data {
  std::string name;
  std::string file;  // the CSV file read, if any: an input no output may replace
  nn::Dataset train, test;
  bool has_test = false;
};

Data load_data(const std::string& spec, std::uint64_t seed) {
  constexpr double kTest = 0.25;
  Data d;
  d.name = spec;
  nn::Dataset all;
  if (spec == "xor") {
    d.train = nn::xor_data();  // four points: nothing to hold out
    return d;
  }
  if (spec == "fashion-mnist") {
    d.train = nn::load_fashion_mnist(nn::Split::train);
    d.test = nn::load_fashion_mnist(nn::Split::test);
    d.has_test = true;
    return d;
  }
  bool csv = false;
  if (spec == "moons") {
    all = nn::moons(400, 0.1, seed);
  } else if (spec == "circles") {
    all = nn::circles(400, 0.1, 0.5, seed);
  } else if (spec == "spirals") {
    all = nn::spirals(100, 3, 0.2, seed);
  } else if (spec == "blobs") {
    all = nn::blobs(400, 3, 1.0, seed);
  } else if (spec.starts_with("csv:")) {
    std::string file = spec.substr(4);
    nn::CsvOptions co;
    co.map_labels = true;
    if (const std::size_t colon = file.rfind(':'); colon != std::string::npos) {
      const std::string column = file.substr(colon + 1);
      file = file.substr(0, colon);
      if (column.empty())
        throw ag::Error(fmt::format("--data {}: the label column is empty", spec));
      const bool index = column.find_first_not_of("-0123456789") == std::string::npos &&
                         column != "-" && column.size() < 10;
      if (index) {
        co.label_index = std::stoll(column);
      } else {
        co.label_name = column;
      }
    }
    if (file.empty()) throw ag::Error(fmt::format("--data {}: no file name after csv:", spec));
    all = nn::load_csv(file, co);
    d.name = d.file = file;
    csv = true;
  } else {
    throw ag::Error(
        fmt::format("unknown data set '{}'; the known data sets are {}", spec, kDataSets));
  }
  if (all.rows < 2)
    throw ag::Error(fmt::format("{}: too few rows to split ({})", d.name, all.rows));
  nn::TrainTest split = all.split(kTest, seed);
  d.train = std::move(split.train);
  d.test = std::move(split.test);
  d.has_test = d.test.rows > 0;
  if (csv) {  // standardize with the training set's statistics
    const nn::Standardization s = d.train.standardize();
    if (d.has_test) d.test.standardize(s);
  }
  return d;
}

// The last layer's size each loss needs, and the classes it can take.
void check_shapes(const std::vector<std::int64_t>& sizes, const Data& d, nn::LossKind loss) {
  if (sizes.front() != d.train.cols)
    throw ag::Error(
        fmt::format("--layers {}: the first size must be {}, the number of features of {}",
                    layers_str(sizes), d.train.cols, d.name));
  const std::string_view name = nn::loss_name(loss);
  if (loss == nn::LossKind::cross_entropy) {
    if (sizes.back() != d.train.classes)
      throw ag::Error(fmt::format(
          "--layers {}: the last size must be {} for --loss ce, one logit per class of {}",
          layers_str(sizes), d.train.classes, d.name));
    return;
  }
  if (d.train.classes > 2)
    throw ag::Error(
        fmt::format("--loss {} is for two classes, and {} has {}: use --loss ce with {} outputs",
                    name, d.name, d.train.classes, d.train.classes));
  if (sizes.back() != 1)
    throw ag::Error(
        fmt::format("--layers {}: the last size must be 1 for --loss {}, one score "
                    "per row",
                    layers_str(sizes), name));
}

void initialize(nn::MLP& mlp, const std::string& how, std::uint64_t seed) {
  if (how.empty()) return;  // PyTorch's default, seeded by the MLP's constructor
  std::uint64_t s = seed * 1000003 + 17;
  for (nn::Linear* l : mlp.linears()) {
    if (how == "xavier") {
      nn::init::xavier_uniform(l->weight, ++s);
      if (l->bias) nn::init::zeros(*l->bias);
    } else if (how == "he") {
      nn::init::kaiming_uniform(l->weight, ++s);
      if (l->bias) nn::init::zeros(*l->bias);
    } else if (how == "zeros") {
      nn::init::zeros(l->weight);
      if (l->bias) nn::init::zeros(*l->bias);
    } else {  // uniform: micrograd's U(-1, 1) for weights and biases
      nn::init::uniform(l->weight, -1, 1, ++s);
      if (l->bias) nn::init::uniform(*l->bias, -1, 1, ++s);
    }
  }
}

// Throws unless `path` can be written: its directory exists and it is not a directory, nor
// anything else a checkpoint may not replace (Note [What a write replaces]).
void check_writable(const std::string& path, std::string_view option) {
  const fs::path p(path);
  std::error_code ec;
  const fs::path dir = p.parent_path();
  if (!dir.empty() && !fs::is_directory(dir, ec))
    throw ag::Error(fmt::format("{} {}: {} is not a directory", option, path, dir.string()));
  if (fs::is_directory(p, ec))
    throw ag::Error(fmt::format("{} {}: it is a directory", option, path));
  ag::check_replaceable(path, "checkpoint");
}

// ---- --plot: the history as a data file and two PNGs drawn by gnuplot ----

// Checks --plot DIR before training: its parent exists, it is not a file, gnuplot is there.
void check_plot_dir(const std::string& dir) {
  std::error_code ec;
  const fs::path p(dir);
  if (fs::exists(p, ec) && !fs::is_directory(p, ec))
    throw ag::Error(fmt::format("--plot {}: a file has that name", dir));
  const fs::path parent = p.parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    throw ag::Error(fmt::format("--plot {}: {} is not a directory", dir, parent.string()));
  if (!nn::plot::gnuplot_available())
    throw ag::Error("--plot needs gnuplot, which is not on PATH: apt-get install gnuplot-nox");
}

// history.dat (epoch, loss, train and test accuracy), loss.png and accuracy.png in `dir`.
std::vector<fs::path> plot_history(const std::string& dir, const nn::History& history,
                                   bool has_test) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw ag::Error(fmt::format("--plot {}: cannot create it: {}", dir,
                                ec ? ec.message() : "a file has that name"));
  const fs::path data = fs::path(dir) / "history.dat";
  {
    std::ofstream f(data);
    f << "# epoch loss train_accuracy test_accuracy\n";
    for (const nn::EpochStats& e : history.epochs)
      f << fmt::format(
          "{} {} {} {}\n", e.epoch, e.loss, e.train_accuracy,
          e.test_accuracy < 0 ? std::string("NaN") : fmt::format("{}", e.test_accuracy));
    if (!f) throw ag::Error(fmt::format("cannot write {}", data.string()));
  }
  const std::string terminal =
      "set terminal pngcairo size 800,500 enhanced font 'DejaVu Sans,11'\n"
      "set grid lc rgb '#dddddd'\nset key box opaque\nset xlabel 'epoch'\n";
  // gnuplot refuses to autoscale a plot with no finite point: a diverged run gets a fixed range.
  const bool finite = std::any_of(history.epochs.begin(), history.epochs.end(),
                                  [](const nn::EpochStats& e) { return std::isfinite(e.loss); });
  std::string script = terminal +
                       (finite ? ""
                               : "set yrange [0:1]\nset label 'the loss is not finite' "
                                 "at graph 0.5, 0.5 center\n") +
                       "set output 'loss.png'\nset ylabel 'loss'\nset title 'training loss'\n"
                       "plot 'history.dat' using 1:2 with lines lw 2 lc rgb '#1f77b4' "
                       "title 'loss'\n"
                       "set output 'accuracy.png'\nunset label\nset ylabel 'accuracy'\n"
                       "set yrange [0:1.02]\n"
                       "set title 'accuracy'\nset key bottom right\n"
                       "plot 'history.dat' using 1:3 with lines lw 2 lc rgb '#1f77b4' "
                       "title 'train'";
  if (has_test) script += ", '' using 1:4 with lines lw 2 lc rgb '#d62728' title 'test'";
  script += "\nunset output\n";
  nn::plot::gnuplot(fs::path(dir), script);
  return {data, fs::path(dir) / "loss.png", fs::path(dir) / "accuracy.png"};
}

std::unique_ptr<nn::Optimizer> make_optimizer(nn::MLP& mlp, const NnOptions& o) {
  if (o.opt == "sgd")
    return std::make_unique<nn::SGD>(mlp.parameters(), nn::SGDOptions{.lr = o.lr});
  return std::make_unique<nn::Adam>(mlp.parameters(), nn::AdamOptions{.lr = o.lr});
}

// --norm and --dropout, which train and graph must agree on: they decide the checkpoint's names.
nn::MLPExtras model_extras(const NnOptions& o) {
  if (!(o.dropout >= 0 && o.dropout < 1))
    throw ag::Error(fmt::format("--dropout {}: the probability must be in [0, 1)", o.dropout));
  return {.norm = nn::parse_norm(o.norm), .dropout = o.dropout};
}

// A --clip-grad-* bound, when given: a positive number.
std::optional<double> clip_bound(bool given, double bound, std::string_view option) {
  if (!given) return std::nullopt;
  if (!std::isfinite(bound) || bound <= 0)
    throw ag::Error(fmt::format("{} {}: the bound must be a positive number", option, bound));
  return bound;
}

int run_train(const NnOptions& o) {
  if (!std::isfinite(o.lr) || o.lr <= 0)
    throw ag::Error(fmt::format("--lr {}: the learning rate must be a positive number", o.lr));
  if (o.epochs < 1) throw ag::Error(fmt::format("--epochs {}: must be at least 1", o.epochs));
  if (o.batch < 1) throw ag::Error(fmt::format("--batch {}: must be at least 1", o.batch));
  const std::vector<std::int64_t> sizes = parse_layers(o.layers, "--layers");
  const nn::Activation hidden = nn::parse_activation(o.act);
  const nn::Activation output = nn::parse_activation(o.out);
  const nn::LossKind loss = nn::parse_loss(o.loss);
  const nn::MLPExtras extras = model_extras(o);
  const std::optional<double> clip_norm =
      clip_bound(o.clip_grad_norm_given, o.clip_grad_norm, "--clip-grad-norm");
  const std::optional<double> clip_value =
      clip_bound(o.clip_grad_value_given, o.clip_grad_value, "--clip-grad-value");
  if (!o.save.empty()) check_writable(o.save, "--save");
  if (!o.plot.empty()) check_plot_dir(o.plot);
  if (!o.resume.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(o.resume, ec))
      throw ag::Error(fmt::format("--resume {}: no such checkpoint file", o.resume));
  }

  const Data d = load_data(o.data, o.seed);
  if (!o.save.empty()) check_not_input(o.save, "--save", {d.file});
  if (!o.resume.empty() && o.save.empty()) check_not_input(o.resume, "--resume", {d.file});
  check_shapes(sizes, d, loss);

  nn::MLP mlp(sizes, hidden, output, o.seed, extras);
  initialize(mlp, o.init, o.seed);
  std::unique_ptr<nn::Optimizer> optimizer = make_optimizer(mlp, o);

  nn::FitOptions fo;
  fo.epochs = static_cast<std::size_t>(o.epochs);
  fo.batch_size = o.batch;
  fo.seed = o.seed;
  fo.loss = loss;
  fo.test = d.has_test ? &d.test : nullptr;
  fo.diagnostics = true;
  fo.check_finite = o.check_finite;
  fo.clip_grad_norm = clip_norm;
  fo.clip_grad_value = clip_value;
  fo.out = stdout;
  if (o.json) fo.progress = nn::FitOptions::Progress::quiet;

  double resumed_lr = 0;
  if (!o.resume.empty()) {
    // All checks before anything is written: a checkpoint that does not fit --layers (or
    // --opt) is nn::load's error, and the model is reloaded from it by fit.
    nn::CheckpointExtras extras{optimizer.get(), {}};
    nn::load(mlp, o.resume, &extras);
    nn::decode_history(extras.metadata["fit.history"], o.resume);  // checked before output too
    // The checkpoint's learning rate wins, as the rest of its state does (the run continues as
    // if never interrupted); a different --lr is refused rather than silently ignored.
    resumed_lr = optimizer->lr();
    if (o.lr_given && o.lr != resumed_lr)
      throw ag::Error(fmt::format(
          "--lr {}: {} resumes with its own learning rate {}; leave out --lr, or give that one",
          o.lr, o.resume, resumed_lr));
    // fit reads --resume and writes --save (or --resume again): nothing is written before the
    // old checkpoint has loaded whole, and its errors name it.
    fo.resume = true;
    fo.resume_from = o.resume;
    fo.checkpoint = o.save.empty() ? o.resume : o.save;
  } else if (!o.save.empty()) {
    fo.checkpoint = o.save;
  }

  if (o.json) {
    fo.on_epoch = [](const nn::EpochStats& e) {
      // Note [The command line's JSON]: NaN is null, doubles read back exact.
      const Json test_accuracy = e.test_accuracy < 0 ? Json() : Json(e.test_accuracy);
      const Json line = {{"epoch", e.epoch},
                         {"loss", e.loss},
                         {"train_accuracy", e.train_accuracy},
                         {"test_accuracy", test_accuracy},
                         {"lr", e.lr},
                         {"seconds", e.seconds},
                         {"grad_norms", e.grad_norms},
                         {"dead_fraction", e.dead_fraction}};
      fmt::print("{}\n", json_text(line));
      check_standard_output();  // output that is lost stops the run
    };
  } else {
    fmt::print("{}: {} training rows{}, {} features, {} classes; MLP {} ({} parameters)\n",
               ag::printable(d.name), d.train.rows,
               d.has_test ? fmt::format(", {} test rows", d.test.rows) : "", d.train.cols,
               d.train.classes, layers_str(sizes), [&] {
                 std::int64_t n = 0;
                 for (nn::Parameter* p : mlp.parameters()) n += p->numel();
                 return n;
               }());
    if (!o.resume.empty())
      fmt::print("resuming from {} with learning rate {} (the checkpoint's)\n",
                 ag::printable(o.resume), resumed_lr);
    check_standard_output();  // before training: output that is lost stops the run
  }

  const auto t0 = std::chrono::steady_clock::now();
  const nn::History history = nn::fit(mlp, *optimizer, d.train, fo);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const nn::EpochStats& last = history.epochs.back();
  const double train_accuracy = nn::evaluate(mlp, d.train, loss).accuracy;
  const double test_accuracy = d.has_test ? nn::evaluate(mlp, d.test, loss).accuracy
                                          : std::numeric_limits<double>::quiet_NaN();
  std::vector<fs::path> plots;
  if (!o.plot.empty()) {
    plots = plot_history(o.plot, history, d.has_test);
    if (d.train.cols == 2)  // a map of the plane; other data have no plane to draw
      plots.push_back(nn::plot::decision_boundary(
          fs::path(o.plot) / "boundary.png", mlp, d.train, loss,
          {.title = fmt::format("{}: MLP {} ({}, out {}, loss {}) after {} epochs", d.name,
                                layers_str(sizes), o.act, o.out, o.loss, history.epochs.size())}));
  }
  if (o.json) {
    const Json summary = {{"train_accuracy", train_accuracy},
                          {"test_accuracy", test_accuracy},
                          {"loss", last.loss},
                          {"seconds", seconds},
                          {"epochs", history.epochs.size()},
                          {"grad_norms", last.grad_norms},
                          {"dead_fraction", last.dead_fraction}};
    fmt::print("{}\n", json_text(summary));
    return 0;
  }
  fmt::print("train accuracy {:.4f}", train_accuracy);
  if (d.has_test) fmt::print(", test accuracy {:.4f}", test_accuracy);
  fmt::print(", loss {:.6g}, {:.2f} s\n", last.loss, seconds);
  if (!last.grad_norms.empty())
    fmt::print("mean |dL/dW| per layer (last epoch): {:.4g}\n", fmt::join(last.grad_norms, ", "));
  if (!last.dead_fraction.empty())
    fmt::print("dead units per layer (last epoch): {:.3f}\n", fmt::join(last.dead_fraction, ", "));
  if (!fo.checkpoint.empty() && history.epochs.size() > history.resumed_from)
    fmt::print("checkpoint written to {}\n", ag::printable(fo.checkpoint));
  for (const fs::path& p : plots) fmt::print("wrote {}\n", ag::printable(p.string()));
  return 0;
}

int run_graph(const NnOptions& o) {
  const std::vector<std::int64_t> sizes = parse_layers(o.layers, "--layers");
  const nn::Activation hidden = nn::parse_activation(o.act);
  const nn::Activation output = nn::parse_activation(o.out);
  if (!o.output.empty()) {
    check_graph_path(o.output);
    check_not_input(o.output, "-o", {o.checkpoint});
  }
  // The file is read and checked before the model is built, which its sizes must fit.
  const nn::MLPExtras extras = model_extras(o);
  const nn::SafetensorsFile file = nn::read_safetensors(o.checkpoint);
  nn::MLP mlp(sizes, hidden, output, 0, extras);
  nn::load(mlp, file, o.checkpoint);
  if (!file.checksummed)
    fmt::print(stderr, "warning: {} has no checksum (not written by tapegrad): loaded unchecked\n",
               ag::printable(o.checkpoint));
  mlp.eval();
  ag::TensorTape tape;
  constexpr std::int64_t kRows = 4;
  const std::vector<float> zeros(static_cast<std::size_t>(kRows * sizes.front()), 0.0f);
  ag::Tensor x = tape.constant(ag::Shape{kRows, sizes.front()}, std::span<const float>(zeros));
  ag::Tensor y = mlp(x);
  const ag::TensorGraphOptions options{.style = ag::GraphStyle::modules};
  if (o.output.empty()) {
    fmt::print("{}", ag::to_dot(tape, y.id(), options));
    return 0;
  }
  ag::write_graph(tape, y.id(), o.output, options);
  fmt::print("graph written to {}\n", ag::printable(o.output));
  return 0;
}

void add_model_options(CLI::App* sub, NnOptions& o) {
  sub->add_option("--layers", o.layers, "The MLP's layer sizes, inputs first: 2,16,16,1")
      ->type_name("SIZES")
      ->required();
  sub->add_option("--act", o.act,
                  fmt::format("The activation after each hidden layer: {} (default relu)",
                              nn::activation_names()))
      ->type_name("NAME");
  sub->add_option("--out", o.out,
                  "The activation after the last layer, e.g. sigmoid for --loss bce (default "
                  "none)")
      ->type_name("NAME");
  sub->add_option("--norm", o.norm,
                  "A normalization after each hidden layer, before its activation: layer "
                  "(LayerNorm), batch (BatchNorm1d) or none (default none)")
      ->type_name("NORM")
      ->check(CLI::IsMember({"none", "layer", "batch"}));
  sub->add_option("--dropout", o.dropout,
                  "Dropout with probability P after each hidden activation, in training only "
                  "(default 0: none)")
      ->type_name("P");
}

}  // namespace

NnCommands add_nn_commands(CLI::App& app) {
  NnCommands c;
  c.options = std::make_shared<NnOptions>();
  NnOptions& o = *c.options;

  c.train = app.add_subcommand(
      "train", "Train an MLP with nn::fit and report its accuracy, loss and diagnostics");
  c.train
      ->add_option("--data", o.data,
                   std::string("The data set: ") + kDataSets +
                       " (synthetic sets and CSV files are split 75/25 "
                       "into training and test rows, seeded by --seed)")
      ->type_name("SET")
      ->required();
  add_model_options(c.train, o);
  c.train->add_option("--loss", o.loss, "bce, bce_logits, ce, mse or hinge (default ce)")
      ->type_name("LOSS");
  c.train->add_option("--opt", o.opt, "The optimizer: sgd or adam (default adam)")
      ->type_name("OPT")
      ->check(CLI::IsMember({"sgd", "adam"}));
  c.train->add_option("--lr", o.lr, "The learning rate (default 0.01)")->type_name("RATE");
  c.train->add_option("--epochs", o.epochs, "Epochs in all, resumed ones included (default 100)")
      ->type_name("N")
      ->check(integer_validator());
  c.train->add_option("--batch", o.batch, "Rows per batch (default 32)")
      ->type_name("B")
      ->check(integer_validator());
  c.train
      ->add_option("--seed", o.seed,
                   "Seeds the data, the split, the weights and the "
                   "shuffling (default 0)")
      ->type_name("S")
      ->check(seed_validator());
  c.train
      ->add_option("--init", o.init,
                   "Initialize the weights: xavier, he, zeros or uniform (U(-1, 1)); "
                   "default PyTorch's")
      ->type_name("INIT")
      ->check(CLI::IsMember({"xavier", "he", "zeros", "uniform"}));
  c.train
      ->add_option("--save", o.save,
                   "Save the model and optimizer after every epoch (atomically) to FILE")
      ->type_name("FILE");
  c.train
      ->add_option("--resume", o.resume,
                   "Continue from a checkpoint written by --save, as if never interrupted; "
                   "without --save it is updated in place")
      ->type_name("FILE");
  c.train->add_flag("--json", o.json,
                    "Print one JSON object per epoch and a final summary {\"train_accuracy\", "
                    "\"test_accuracy\", \"loss\", \"seconds\", \"grad_norms\", "
                    "\"dead_fraction\"}, and no progress (NaN and infinities are null)");

  c.train->add_flag("--check-finite", o.check_finite,
                    "Anomaly mode: stop at the first op of a step whose value or gradient is NaN "
                    "or infinite, or a weight an optimizer step made so, naming it and its layer "
                    "(exit code 2); no checkpoint is written from the poisoned weights");
  c.train
      ->add_option("--clip-grad-norm", o.clip_grad_norm,
                   "Scale each step's gradients so that their global 2-norm is at most N, as "
                   "torch.nn.utils.clip_grad_norm_ (default: no clipping)")
      ->type_name("N");
  c.train
      ->add_option("--clip-grad-value", o.clip_grad_value,
                   "Clamp each gradient element to [-V, V] before each step, as "
                   "torch.nn.utils.clip_grad_value_ (default: no clipping)")
      ->type_name("V");
  c.train
      ->add_option("--plot", o.plot,
                   "Write history.dat and the loss and accuracy curves (loss.png, "
                   "accuracy.png, drawn by gnuplot) into DIR, created if needed; for data "
                   "with 2 features also boundary.png, the trained model's decision regions "
                   "with the training points (data with more features get no boundary plot)")
      ->type_name("DIR");

  c.graph = app.add_subcommand(
      "graph", "Draw a checkpointed MLP's forward pass on 4 rows of zeros, one box per module");
  c.graph->add_option("CHECKPOINT", o.checkpoint, "A .safetensors file written by train --save")
      ->type_name("FILE")
      ->required();
  add_model_options(c.graph, o);
  c.graph
      ->add_option("-o,--output", o.output,
                   "Render to FILE by its extension (.dot, .svg or .png); else print DOT")
      ->type_name("FILE");
  return c;
}

int run_nn_command(const NnCommands& c) {
  c.options->lr_given = c.train->count("--lr") > 0;
  c.options->clip_grad_norm_given = c.train->count("--clip-grad-norm") > 0;
  c.options->clip_grad_value_given = c.train->count("--clip-grad-value") > 0;
  if (c.train->parsed()) return run_train(*c.options);
  return run_graph(*c.options);
}

}  // namespace tapegrad
