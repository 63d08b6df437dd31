// `tapegrad train` and `tapegrad graph`: an MLP trained with nn::fit on a synthetic set, a CSV
// file or Fashion-MNIST, and a checkpointed MLP drawn at module level (tools/train.hpp). The run
// the options make (data, defaults, model, fit's options) is train_setup.cpp's, which the
// playground shares; resuming, checkpoints, plots and printing are here.

#include "train.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
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
#include <map>
#include <memory>
#include <optional>
#include <set>
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
#include <tuple>
#include <vector>

#include "cli_options.hpp"

namespace tapegrad {

namespace {

namespace fs = std::filesystem;

// Note [What a checkpoint says of its model]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// train stores its model's description in every checkpoint's metadata (string values, as
// safetensors requires; PyTorch's loaders ignore them): "model.layers" ("2,16,16,1"),
// "model.act", "model.out", "model.loss", "model.norm", "model.dropout", "model.task"
// (classification or regression, Note [Regression tasks]), "data.name" (the --data
// text), "data.features" (the number of input columns), "data.input_features" (--features, or
// none), and for a synthetic set "data.rows" and "data.noise" (Note [Synthetic data options]),
// and what an exact resume needs besides: "train.seed", "train.batch", "train.lr" (the rate the
// schedule starts from), "train.schedule", "data.test_fraction", "train.l1" and "train.l2" (a
// file without them was trained with 0.25, 0 and 0), "train.val" and "train.early_stop" (--val
// and --early-stop: the rows held out, and when the run stops). --resume and graph read them,
// so they need no --layers or --act; an option given that disagrees is refused, naming both. A
// file without them (written before, or by another tool) needs --layers (graph reads the sizes
// from its weights' shapes).
constexpr std::string_view kLayersKey = "model.layers";

const std::string* stored(const nn::SafetensorsFile& file, const std::string& key) {
  const auto it = file.metadata.find(key);
  return it == file.metadata.end() ? nullptr : &it->second;
}

[[noreturn]] void mismatch(std::string_view option, std::string_view given,
                           std::string_view stored_value, const std::string& file,
                           std::string_view remedy) {
  ag::fail("{} {}: {} was trained with {} {}; {}", option, ag::printable(given),
           ag::printable(file), option, ag::printable(stored_value), remedy);
}

// CSV files are the same data set if they have the same name and label column: a checkpoint
// may be resumed from another directory.
bool same_data(std::string_view a, std::string_view b) {
  if (a == b) return true;
  if (!a.starts_with("csv:") || !b.starts_with("csv:")) return false;
  const auto last_part = [](std::string_view spec) {
    return fs::path(std::string(spec.substr(4))).filename().string();
  };
  return last_part(a) == last_part(b);
}

// Takes the model's description from a checkpoint's metadata into `o` (Note [What a checkpoint
// says of its model]); throws if an option given disagrees. `remedy` ends the message.
void adopt_model(NnOptions& o, const nn::SafetensorsFile& file, const std::string& path,
                 std::string_view remedy) {
  const std::string* layers = stored(file, std::string(kLayersKey));
  if (!layers) {
    if (o.layers.empty())
      ag::fail(
          "{}: the checkpoint does not say its model (it was written before tapegrad stored "
          "it, or by another tool): give --layers, and --act and --out if not relu and none",
          ag::printable(path));
    return;
  }
  const std::vector<std::int64_t> sizes = parse_layers(*layers, path + ": metadata model.layers");
  if (!o.layers.empty() && parse_layers(o.layers, "--layers") != sizes)
    mismatch("--layers", o.layers, *layers, path, remedy);
  if (!o.hidden.empty() &&
      parse_hidden(o.hidden) != std::vector<std::int64_t>(sizes.begin() + 1, sizes.end() - 1))
    mismatch(
        "--hidden", o.hidden,
        sizes.size() == 2 ? std::string("none") : layers_str({sizes.begin() + 1, sizes.end() - 1}),
        path, remedy);
  o.layers = *layers;
  o.hidden.clear();
  for (const auto& [option, key] : {std::pair<std::string_view, std::string>{"--act", "model.act"},
                                    {"--out", "model.out"},
                                    {"--loss", "model.loss"}}) {
    const std::string* value = stored(file, key);
    if (!value) continue;
    std::string& field = option == "--act" ? o.act : option == "--out" ? o.out : o.loss;
    if (!field.empty() && field != *value) mismatch(option, field, *value, path, remedy);
    field = *value;
  }
  if (const std::string* norm = stored(file, "model.norm")) {
    if (!o.norm.empty() && o.norm != *norm) mismatch("--norm", o.norm, *norm, path, remedy);
    o.norm = *norm;
  }
  if (const std::string* task = stored(file, "model.task")) {
    if (!o.task.empty() && o.task != *task) mismatch("--task", o.task, *task, path, remedy);
    o.task = *task;
  }
  if (const std::string* dropout = stored(file, "model.dropout")) {
    if (o.was_given("--dropout") && fmt::format("{}", o.dropout) != *dropout)
      mismatch("--dropout", fmt::format("{}", o.dropout), *dropout, path, remedy);
    char* end = nullptr;
    o.dropout = std::strtod(dropout->c_str(), &end);
    if (dropout->empty() || *end != '\0')
      ag::fail("{}: metadata model.dropout is \"{}\", not a probability", ag::printable(path),
               ag::printable(*dropout));
  }
}

// The MLP's sizes from its weights' shapes, for a checkpoint that does not say them: the
// Linear layers' "layers.K.weight" are the 2-d ones, (out, in), in the order of K.
std::vector<std::int64_t> sizes_from_shapes(const nn::SafetensorsFile& file,
                                            const std::string& path) {
  std::map<std::int64_t, std::vector<std::int64_t>> weights;
  for (const auto& [name, tensor] : file.tensors) {
    if (!name.starts_with("layers.") || !name.ends_with(".weight") || tensor.shape.size() != 2)
      continue;
    const std::string index = name.substr(7, name.size() - 7 - 7);
    if (index.empty() || index.size() > 9 ||
        index.find_first_not_of("0123456789") != std::string::npos)
      continue;
    weights[std::stoll(index)] = tensor.shape;
  }
  std::vector<std::int64_t> sizes;
  for (const auto& [index, shape] : weights) {
    if (sizes.empty()) sizes.push_back(shape[1]);
    if (shape[1] != sizes.back())
      ag::fail(
          "{}: layers.{}.weight has {} inputs, and the layer before has {} outputs: give --layers",
          ag::printable(path), index, shape[1], sizes.back());
    sizes.push_back(shape[0]);
  }
  if (sizes.size() < 2)
    ag::fail("{}: no layers.K.weight of an MLP in the file: give --layers", ag::printable(path));
  return sizes;
}

// Throws unless `path` can be written: its missing directories can be created (Note [Missing
// parent directories]) and it is not a directory, nor anything else a checkpoint may not
// replace (Note [What a write replaces]).
void check_writable(const std::string& path, std::string_view option) {
  const fs::path p(path);
  std::error_code ec;
  check_parent_directories(path, fmt::format("{} {}", option, path));
  if (fs::is_directory(p, ec)) ag::fail("{} {}: it is a directory", option, path);
  ag::check_replaceable(path, "checkpoint");
}

// ---- --plot: the history as a data file and two PNGs drawn by gnuplot ----

// Checks --plot DIR before training: it is not a file, nor is its nearest existing ancestor
// (it is created after training: Note [Missing parent directories]), gnuplot is there.
void check_plot_dir(const std::string& dir) {
  std::error_code ec;
  const fs::path p(dir);
  if (fs::exists(p, ec) && !fs::is_directory(p, ec))
    ag::fail("--plot {}: a file has that name", dir);
  check_parent_directories(dir, fmt::format("--plot {}", dir));
  if (!nn::plot::gnuplot_available())
    throw ag::Error("--plot needs gnuplot, which is not on PATH: apt-get install gnuplot-nox");
}

// history.dat (epoch, loss, train and test accuracy), loss.png and accuracy.png in `dir`; for a
// regression (Note [Regression tasks]) the columns are train and test R², drawn in r2.png.
std::vector<fs::path> plot_history(const std::string& dir, const nn::History& history,
                                   bool has_test, bool regression) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    ag::fail("--plot {}: cannot create it: {}", dir, ec ? ec.message() : "a file has that name");
  const fs::path data = fs::path(dir) / "history.dat";
  {
    std::ofstream f(data);
    f << (regression ? "# epoch loss train_r2 test_r2\n"
                     : "# epoch loss train_accuracy test_accuracy\n");
    for (const nn::EpochStats& e : history.epochs) {
      const bool tested = regression ? e.test_rmse >= 0 : e.test_accuracy >= 0;
      f << fmt::format("{} {} {} {}\n", e.epoch, e.loss, regression ? e.train_r2 : e.train_accuracy,
                       !tested ? std::string("NaN")
                               : fmt::format("{}", regression ? e.test_r2 : e.test_accuracy));
    }
    if (!f) ag::fail("cannot write {}", data.string());
  }
  const std::string score = regression ? "r2" : "accuracy";
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
                       "title 'loss'\n" +
                       fmt::format("set output '{}.png'\nunset label\nset ylabel '{}'\n", score,
                                   regression ? "R²" : "accuracy") +
                       // R² has no lower bound: a poor fit's is negative, so only its top is set.
                       (regression ? "set yrange [*:1.02]\nset title 'R² (1 is a perfect fit)'\n"
                                   : "set yrange [0:1.02]\nset title 'accuracy'\n") +
                       "set key bottom right\n"
                       "plot 'history.dat' using 1:3 with lines lw 2 lc rgb '#1f77b4' "
                       "title 'train'";
  if (has_test) script += ", '' using 1:4 with lines lw 2 lc rgb '#d62728' title 'test'";
  script += "\nunset output\n";
  nn::plot::gnuplot(fs::path(dir), script);
  return {data, fs::path(dir) / "loss.png", fs::path(dir) / (score + ".png")};
}

// A count in a checkpoint's metadata: written by us and checksummed, and yet checked.
template <class T>
T stored_count(const std::string& text, std::string_view key, const std::string& path, T least) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value < least)
    ag::fail("{}: metadata {} is \"{}\", not an integer of at least {}", ag::printable(path), key,
             ag::printable(text), least);
  return value;
}

// Fills in what the command line left out: from the --resume checkpoint, then the data set's
// defaults (Note [Defaults per data set]); checks what was given.
void resolve_options(NnOptions& o, const nn::SafetensorsFile* resumed) {
  check_given_options(o);
  if (resumed) {
    const std::string remedy = "leave it out to resume this model, or train a new one";
    adopt_model(o, *resumed, o.resume, remedy);
    if (const std::string* data = stored(*resumed, "data.name")) {
      if (o.data.empty()) o.data = *data;
      if (!same_data(o.data, *data)) mismatch("--data", o.data, *data, o.resume, remedy);
    }
    // The rows, their noise and their inputs make the data: others would train another model.
    if (const std::string* inputs = stored(*resumed, "data.input_features")) {
      const std::string given = features_text(o.features);
      if (o.was_given("--features") && given != *inputs)
        mismatch("--features", o.features, *inputs, o.resume, remedy);
      o.features = *inputs;
      input_features(o.features);  // checked as if given
    }
    if (const std::string* rows = stored(*resumed, "data.rows")) {
      if (o.was_given("--n") && fmt::format("{}", o.rows) != *rows)
        mismatch("--n", fmt::format("{}", o.rows), *rows, o.resume, remedy);
      o.rows = stored_count<std::int64_t>(*rows, "data.rows", o.resume, 1);
    }
    if (const std::string* noise = stored(*resumed, "data.noise")) {
      if (o.was_given("--noise") && fmt::format("{}", o.noise) != *noise)
        mismatch("--noise", fmt::format("{}", o.noise), *noise, o.resume, remedy);
      char* end = nullptr;
      o.noise = std::strtod(noise->c_str(), &end);
      if (noise->empty() || *end != '\0' || !std::isfinite(o.noise) || o.noise < 0)
        ag::fail("{}: metadata data.noise is \"{}\", not a noise level", ag::printable(o.resume),
                 ag::printable(*noise));
    }
    // The rows held out and the penalties make another run if changed.
    for (const auto& [option, key, field] :
         {std::tuple{"--test-fraction", "data.test_fraction", &o.test_fraction},
          std::tuple{"--l1", "train.l1", &o.l1}, std::tuple{"--l2", "train.l2", &o.l2}}) {
      const std::string* value = stored(*resumed, key);
      if (!value) continue;
      if (o.was_given(option) && fmt::format("{}", *field) != *value)
        mismatch(option, fmt::format("{}", *field), *value, o.resume, remedy);
      char* end = nullptr;
      *field = std::strtod(value->c_str(), &end);
      if (value->empty() || *end != '\0' || !std::isfinite(*field) || *field < 0)
        ag::fail("{}: metadata {} is \"{}\", not a number >= 0", ag::printable(o.resume), key,
                 ag::printable(*value));
    }
    // The seed splits synthetic data into training and test rows: another would test on rows
    // the model trained on.
    if (const std::string* seed = stored(*resumed, "train.seed")) {
      if (o.was_given("--seed") && fmt::format("{}", o.seed) != *seed)
        mismatch("--seed", fmt::format("{}", o.seed), *seed, o.resume, remedy);
      o.seed = stored_count<std::uint64_t>(*seed, "train.seed", o.resume, 0);
    }
    if (const std::string* batch = stored(*resumed, "train.batch");
        batch && !o.was_given("--batch"))
      o.batch = stored_count<std::int64_t>(*batch, "train.batch", o.resume, 1);
    if (const std::string* schedule = stored(*resumed, "train.schedule")) {
      if (!o.schedule.empty() && o.schedule != *schedule)
        mismatch("--schedule", o.schedule, *schedule, o.resume, remedy);
      o.schedule = *schedule;
    }
    if (const std::string* val = stored(*resumed, "train.val")) {
      if (o.was_given("--val") && fmt::format("{}", o.val) != *val)
        mismatch("--val", fmt::format("{}", o.val), *val, o.resume, remedy);
      char* end = nullptr;
      o.val = std::strtod(val->c_str(), &end);
      if (val->empty() || *end != '\0' || !(o.val >= 0 && o.val < 1))
        ag::fail("{}: metadata train.val is \"{}\", not a fraction", ag::printable(o.resume),
                 ag::printable(*val));
    }
    if (const std::string* early = stored(*resumed, "train.early_stop")) {
      if (o.was_given("--early-stop") && fmt::format("{}", o.early_stop) != *early)
        mismatch("--early-stop", fmt::format("{}", o.early_stop), *early, o.resume, remedy);
      o.early_stop = stored_count<std::int64_t>(*early, "train.early_stop", o.resume, 0);
    }
    if (const std::string* opt = stored(*resumed, "tapegrad.optimizer");
        opt && !o.was_given("--opt") && (*opt == "SGD" || *opt == "Adam"))
      o.opt = *opt == "SGD" ? "sgd" : "adam";
  }
  resolve_defaults(o);
}

// An epoch's JSON line with its validation loss, under --val.
Json with_val_loss(Json line, const nn::EpochStats& e) {
  if (e.val_loss >= 0 || std::isnan(e.val_loss)) line["val_loss"] = e.val_loss;
  return line;
}

// The hint printed once when the loss is no longer a number.
void hint_if_diverged(const nn::EpochStats& e, const NnOptions& o, bool& hinted) {
  if (hinted || std::isfinite(e.loss)) return;
  hinted = true;
  fmt::print(
      "the loss is {} at epoch {}: training diverged. Try a smaller --lr (this run's is {}); "
      "--check-finite stops at the first op that makes a NaN or infinity and names it\n",
      e.loss, e.epoch, o.lr);
}

int run_train(NnOptions o) {
  if (!o.save.empty()) check_writable(o.save, "--save");
  if (!o.save_best.empty()) check_writable(o.save_best, "--save-best");
  if (!o.save_best.empty() && (o.save_best == o.save || o.save_best == o.resume))
    ag::fail(
        "--save-best {}: the best epoch's checkpoint needs a file of its own, not the one "
        "every epoch writes",
        ag::printable(o.save_best));
  if (!o.plot.empty()) check_plot_dir(o.plot);
  std::optional<nn::SafetensorsFile> resumed;
  if (!o.resume.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(o.resume, ec))
      ag::fail("--resume {}: no such checkpoint file", o.resume);
    resumed = nn::read_safetensors(o.resume);
  }
  resolve_options(o, resumed ? &*resumed : nullptr);
  for (const auto& [option, used] : {std::pair{"--early-stop", o.early_stop > 0},
                                     std::pair{"--save-best", !o.save_best.empty()}})
    if (used && o.val == 0)
      ag::fail("{} watches the validation loss: give --val FRACTION too", option);
  const nn::Activation hidden = nn::parse_activation(o.act);
  const nn::Activation output = nn::parse_activation(o.out);
  const nn::LossKind loss = nn::parse_loss(o.loss);
  const nn::MLPExtras extras = model_extras(o);
  const std::optional<double> clip_norm = clip_bound(o, o.clip_grad_norm, "--clip-grad-norm");
  const std::optional<double> clip_value = clip_bound(o, o.clip_grad_value, "--clip-grad-value");

  const Data d = load_data(o);
  if (!o.save.empty()) check_not_input(o.save, "--save", {d.file});
  if (!o.save_best.empty()) check_not_input(o.save_best, "--save-best", {d.file});
  if (!o.resume.empty() && o.save.empty()) check_not_input(o.resume, "--resume", {d.file});
  if (resumed)
    if (const std::string* features = stored(*resumed, "data.features");
        features && *features != fmt::format("{}", d.train.cols))
      ag::fail("--data {}: it has {} features, and {} was trained on {}", ag::printable(o.data),
               d.train.cols, ag::printable(o.resume), ag::printable(*features));
  const std::vector<std::int64_t> sizes = model_sizes(o, d, loss);

  nn::MLP mlp(sizes, hidden, output, o.seed, extras);
  initialize(mlp, o.init, o.seed);
  std::unique_ptr<nn::Optimizer> optimizer = make_optimizer(mlp, o);

  nn::FitOptions fo = fit_options(o, d, loss, clip_norm, clip_value);
  fo.out = stdout;
  if (o.json) fo.progress = nn::FitOptions::Progress::quiet;

  double resumed_lr = 0;
  if (resumed) {
    // All checks before anything is written: a checkpoint that does not fit --layers (or
    // --opt) is nn::load's error, and the model is reloaded from it by fit.
    nn::CheckpointExtras state{optimizer.get(), {}};
    nn::load(mlp, *resumed, o.resume, &state);
    const std::size_t trained =
        nn::decode_history(state.metadata["fit.history"], o.resume).size();  // checked too
    // The checkpoint's learning rate wins, as the rest of its state does (the run continues as
    // if never interrupted); a different --lr is refused rather than silently ignored. With a
    // schedule, that is the rate it starts from, which fit needs as the optimizer's.
    resumed_lr = optimizer->lr();
    if (const std::string* base = stored(*resumed, "train.lr")) {
      char* end = nullptr;
      resumed_lr = std::strtod(base->c_str(), &end);
      if (base->empty() || *end != '\0' || !std::isfinite(resumed_lr) || resumed_lr <= 0)
        ag::fail("{}: metadata train.lr is \"{}\", not a learning rate", ag::printable(o.resume),
                 ag::printable(*base));
      optimizer->set_lr(resumed_lr);
    }
    if (o.was_given("--lr") && o.lr != resumed_lr)
      ag::fail(
          "--lr {}: {} resumes with its own learning rate {}; leave out --lr, or give that one",
          o.lr, o.resume, resumed_lr);
    o.lr = resumed_lr;
    if (trained >= fo.epochs) {  // nothing to train, and nothing is written
      fmt::print(o.json ? stderr : stdout,
                 "{} has trained {} epochs already, and --epochs {} asks for {} in all: nothing "
                 "to train, the file is left as it is (give --epochs above {} to train on)\n",
                 ag::printable(o.resume), trained, o.epochs, o.epochs, trained);
      check_standard_output();
      return 0;
    }
    // fit reads --resume and writes --save (or --resume again): nothing is written before the
    // old checkpoint has loaded whole, and its errors name it.
    fo.resume = true;
    fo.resume_from = o.resume;
    fo.checkpoint = o.save.empty() ? o.resume : o.save;
  } else if (!o.save.empty()) {
    fo.checkpoint = o.save;
  }
  fo.checkpoint_metadata = checkpoint_metadata(o, sizes, d);  // Note [What a checkpoint says ...]

  bool hinted = false;  // the hint about a loss that is not a number, once
  const bool regression = is_regression(o);
  if (o.json && regression) {
    fo.on_epoch = [](const nn::EpochStats& e) {
      // Note [Regression tasks]: R² and RMSE where a classifier has accuracies.
      const Json test_r2 = e.test_rmse < 0 ? Json() : Json(e.test_r2);
      const Json test_rmse = e.test_rmse < 0 ? Json() : Json(e.test_rmse);
      const Json line = {{"epoch", e.epoch},
                         {"loss", e.loss},
                         {"train_r2", e.train_r2},
                         {"train_rmse", e.train_rmse},
                         {"test_r2", test_r2},
                         {"test_rmse", test_rmse},
                         {"lr", e.lr},
                         {"seconds", e.seconds},
                         {"grad_norms", e.grad_norms},
                         {"dead_fraction", e.dead_fraction}};
      fmt::print("{}\n", json_text(with_val_loss(line, e)));
      check_standard_output();
    };
  } else if (o.json) {
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
      fmt::print("{}\n", json_text(with_val_loss(line, e)));
      check_standard_output();  // output that is lost stops the run
    };
  } else {
    fo.on_epoch = [&](const nn::EpochStats& e) { hint_if_diverged(e, o, hinted); };
    fmt::print("{}: {} training rows{}, {} features, {}; MLP {} ({} parameters)\n",
               ag::printable(d.name), d.train.rows,
               d.has_test ? fmt::format(", {} test rows", d.test.rows) : "", d.train.cols,
               regression ? fmt::format("{} target{} (regression)", d.train.outputs,
                                        d.train.outputs == 1 ? "" : "s")
                          : fmt::format("{} classes", d.train.classes),
               layers_str(sizes), [&] {
                 std::int64_t n = 0;
                 for (nn::Parameter* p : mlp.parameters()) n += p->numel();
                 return n;
               }());
    fmt::print("{} hidden, out {}, loss {}; {} lr {}{}, batch {}, {} epochs\n", o.act, o.out,
               o.loss, o.opt == "sgd" ? "SGD" : "Adam", o.lr,
               o.schedule == "cosine" ? " with cosine decay" : "", o.batch, o.epochs);
    if (!o.resume.empty())
      fmt::print("resuming from {} with learning rate {} (the checkpoint's)\n",
                 ag::printable(o.resume), resumed_lr);
    check_standard_output();  // before training: output that is lost stops the run
  }

  if (!fo.checkpoint.empty())  // checked above; created only now that training starts
    create_parent_directories(fo.checkpoint, fmt::format("--save {}", fo.checkpoint));
  if (!fo.save_best.empty())
    create_parent_directories(fo.save_best, fmt::format("--save-best {}", fo.save_best));
  const auto t0 = std::chrono::steady_clock::now();
  const nn::History history = nn::fit(mlp, *optimizer, d.train, fo);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const nn::EpochStats& last = history.epochs.back();
  const nn::Evaluation on_train = nn::evaluate(mlp, d.train, loss);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const nn::Evaluation on_test =
      d.has_test ? nn::evaluate(mlp, d.test, loss) : nn::Evaluation{nan, nan, nan, nan};
  const double train_accuracy = on_train.accuracy, test_accuracy = on_test.accuracy;
  std::vector<fs::path> plots;
  if (!o.plot.empty()) {
    plots = plot_history(o.plot, history, d.has_test, regression);
    if (regression) {
      // Note [Regression tasks]: the test rows when there are any, the model's own otherwise.
      const nn::Dataset& shown = d.has_test ? d.test : d.train;
      const std::string rows = d.has_test ? "test" : "training";
      plots.push_back(nn::plot::prediction_plot(
          fs::path(o.plot) / "prediction.png", mlp, shown,
          {.title = fmt::format("{}: prediction against target on the {} rows (R² {:.4f})", d.name,
                                rows, d.has_test ? on_test.r2 : on_train.r2)}));
      if (d.train.cols == 1)
        plots.push_back(
            nn::plot::fitted_curve(fs::path(o.plot) / "fit.png", mlp, d.train,
                                   {.title = fmt::format("{}: MLP {} ({}) over the training rows",
                                                         d.name, layers_str(sizes), o.act)}));
    } else if (d.train.cols == 2) {  // a map of the plane; other data have no plane to draw
      plots.push_back(nn::plot::decision_boundary(
          fs::path(o.plot) / "boundary.png", mlp, d.train, loss,
          {.title = fmt::format("{}: MLP {} ({}, out {}, loss {}) after {} epochs", d.name,
                                layers_str(sizes), o.act, o.out, o.loss, history.epochs.size())}));
    }
  }
  if (o.json && regression) {
    fmt::print("{}\n", json_text(summary_json({.regression = true,
                                               .train_r2 = on_train.r2,
                                               .train_rmse = on_train.rmse,
                                               .r2 = on_test.r2,
                                               .rmse = on_test.rmse,
                                               .loss = last.loss,
                                               .seconds = seconds,
                                               .epochs = history.epochs.size(),
                                               .grad_norms = last.grad_norms,
                                               .dead_fraction = last.dead_fraction,
                                               .validated = o.val > 0,
                                               .best_epoch = history.best_epoch,
                                               .stopped_early = history.stopped_early})));
    return 0;
  }
  if (o.json) {
    fmt::print("{}\n", json_text(summary_json({.train_accuracy = train_accuracy,
                                               .test_accuracy = test_accuracy,
                                               .loss = last.loss,
                                               .seconds = seconds,
                                               .epochs = history.epochs.size(),
                                               .grad_norms = last.grad_norms,
                                               .dead_fraction = last.dead_fraction,
                                               .validated = o.val > 0,
                                               .best_epoch = history.best_epoch,
                                               .stopped_early = history.stopped_early})));
    return 0;
  }
  // An epoch's "train acc" averages its batches, each measured before the step it paid for, so
  // it differs from the trained model's: the line says which this is.
  if (regression) {
    fmt::print("train R² {:.4f}, RMSE {:.4g}", on_train.r2, on_train.rmse);
    if (d.has_test) fmt::print("; test R² {:.4f}, RMSE {:.4g}", on_test.r2, on_test.rmse);
    fmt::print(
        " of the trained model on every row (an epoch's train r2 is of its batches, each "
        "before its step)\nloss {:.6g} (last epoch), {:.2f} s\n",
        last.loss, seconds);
  } else {
    fmt::print("train accuracy {:.4f}", train_accuracy);
    if (d.has_test) fmt::print(", test accuracy {:.4f}", test_accuracy);
    fmt::print(
        " of the trained model on every row (an epoch's train acc averages its batches, each "
        "before its step)\nloss {:.6g} (last epoch), {:.2f} s\n",
        last.loss, seconds);
  }
  if (!last.grad_norms.empty())
    fmt::print("mean |dL/dW| per layer (last epoch): {:.4g}\n", fmt::join(last.grad_norms, ", "));
  if (!last.dead_fraction.empty())
    fmt::print("dead units per layer (last epoch): {:.3f}\n", fmt::join(last.dead_fraction, ", "));
  if (o.val > 0 && history.best_epoch == 0)
    fmt::print("no validation loss was a finite number: no best epoch\n");
  else if (o.val > 0)
    fmt::print("lowest validation loss {:.6g} at epoch {}{}\n",
               history.epochs[history.best_epoch - 1].val_loss, history.best_epoch,
               fo.save_best.empty()
                   ? ""
                   : fmt::format(", its checkpoint in {}", ag::printable(fo.save_best)));
  if (!fo.checkpoint.empty() && history.epochs.size() > history.resumed_from)
    fmt::print("checkpoint written to {}\n", ag::printable(fo.checkpoint));
  for (const fs::path& p : plots) fmt::print("wrote {}\n", ag::printable(p.string()));
  return 0;
}

int run_graph(NnOptions o) {
  if (!o.layers.empty()) parse_layers(o.layers, "--layers");  // the options' errors first
  if (!o.act.empty()) nn::parse_activation(o.act);
  if (!o.out.empty()) nn::parse_activation(o.out);
  if (!o.output.empty()) {
    check_graph_path(o.output);
    check_not_input(o.output, "-o", {o.checkpoint});
  }
  // The file is read and checked before the model is built, which its sizes must fit; it says
  // what the model is (Note [What a checkpoint says of its model]), or its shapes do.
  const nn::SafetensorsFile file = nn::read_safetensors(o.checkpoint);
  if (stored(file, std::string(kLayersKey)))
    adopt_model(o, file, o.checkpoint, "leave it out to draw the model the file holds");
  else if (o.layers.empty())
    o.layers = layers_str(sizes_from_shapes(file, o.checkpoint));
  const std::vector<std::int64_t> sizes = parse_layers(o.layers, "--layers");
  const nn::Activation hidden = nn::parse_activation(o.act.empty() ? "relu" : o.act);
  const nn::Activation output = nn::parse_activation(o.out.empty() ? "none" : o.out);
  nn::MLP mlp(sizes, hidden, output, 0, model_extras(o));
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
  create_parent_directories(o.output, fmt::format("cannot write {}", o.output));
  ag::write_graph(tape, y.id(), o.output, options);
  fmt::print("graph written to {}\n", ag::printable(o.output));
  return 0;
}

void add_model_options(CLI::App* sub, NnOptions& o, std::string_view layers_help) {
  sub->add_option("--layers", o.layers, std::string(layers_help))->type_name("SIZES");
  sub->add_option("--act", o.act,
                  fmt::format("The activation after each hidden layer: {} (default relu, or the "
                              "checkpoint's)",
                              nn::activation_names()))
      ->type_name("NAME");
  sub->add_option("--out", o.out,
                  "The activation after the last layer: none for --loss ce, bce_logits, mse and "
                  "hinge, sigmoid for bce (the default follows --loss; mse also takes sigmoid, "
                  "hinge tanh)")
      ->type_name("NAME");
  sub->add_option("--norm", o.norm,
                  "A normalization after each hidden layer, before its activation: layer "
                  "(LayerNorm), batch (BatchNorm1d) or none (default none, or the checkpoint's)")
      ->type_name("NORM")
      ->check(CLI::IsMember({"none", "layer", "batch"}));
  sub->add_option("--dropout", o.dropout,
                  "Dropout with probability P after each hidden activation, in training only "
                  "(default 0: none, or the checkpoint's)")
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
                       " (synthetic sets and CSV files are split 75/25, or as --test-fraction "
                       "says, into training and test rows, seeded by --seed); with --resume, the "
                       "checkpoint's")
      ->type_name("SET");
  c.train
      ->add_option("--hidden", o.hidden,
                   "The hidden layers' sizes, e.g. 16,16 (none: no hidden layer); the input "
                   "and output sizes come from the data and --loss (default per data set)")
      ->type_name("SIZES");
  add_model_options(c.train, o,
                    "All the layer sizes instead of --hidden, inputs first: 2,16,16,1 (checked "
                    "against the data)");
  c.train
      ->add_option("--loss", o.loss,
                   "bce, bce_logits, ce, mse or hinge (default ce, one output per class; "
                   "bce_logits if --layers ends in 1, bce if --out is sigmoid); with --task "
                   "regression mse (default), l1 or huber")
      ->type_name("LOSS");
  c.train
      ->add_option("--task", o.task,
                   "classification (class labels) or regression (real-valued targets: one "
                   "output per target, R² and RMSE reported); default regression for plane and "
                   "multi-gaussian, classification otherwise, or the checkpoint's")
      ->type_name("TASK")
      ->check(CLI::IsMember({"classification", "regression"}));
  c.train->add_option("--opt", o.opt, "The optimizer: sgd or adam (default adam)")
      ->type_name("OPT")
      ->check(CLI::IsMember({"sgd", "adam"}));
  c.train->add_option("--lr", o.lr, "The learning rate (default per data set)")->type_name("RATE");
  c.train
      ->add_option("--epochs", o.epochs,
                   "Epochs in all, resumed ones included (default per data set)")
      ->type_name("N")
      ->check(integer_validator());
  c.train->add_option("--batch", o.batch, "Rows per batch (default per data set)")
      ->type_name("B")
      ->check(integer_validator());
  c.train
      ->add_option("--schedule", o.schedule,
                   "The learning rate by epoch: constant, or cosine (half a cosine from --lr "
                   "to 0 over --epochs); default per data set")
      ->type_name("NAME")
      ->check(CLI::IsMember({"constant", "cosine"}));
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
                   "Save the model and optimizer after every epoch (atomically) to FILE, with "
                   "the model's sizes, activations, loss and data set in its metadata; missing "
                   "directories are created")
      ->type_name("FILE");
  c.train
      ->add_option("--resume", o.resume,
                   "Continue from a checkpoint written by --save, as if never interrupted: its "
                   "model, data set, seed, batch and learning rate are used, and options that "
                   "disagree are refused; without --save it is updated in place")
      ->type_name("FILE");
  c.train->add_flag("--json", o.json,
                    "Print one JSON object per epoch and a final summary {\"train_accuracy\", "
                    "\"test_accuracy\", \"loss\", \"seconds\", \"grad_norms\", "
                    "\"dead_fraction\"} (for --task regression {\"r2\", \"rmse\"} on the test "
                    "rows and \"train_r2\", \"train_rmse\" instead of the accuracies), and no "
                    "progress (NaN and infinities are null)");

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
                   "with the training points (data with more features get no boundary plot); "
                   "for --task regression r2.png, prediction.png (prediction against target on "
                   "the test rows) and, for one feature, fit.png (the fitted curve over the data)")
      ->type_name("DIR");
  c.train
      ->add_option("--n", o.rows,
                   "Rows of a synthetic set before its 75/25 split (default: xor 4, unsplit; "
                   "moons, circles, blobs, gaussian, two-spirals, plane and multi-gaussian 400; "
                   "spirals 300, a multiple of 3)")
      ->type_name("ROWS")
      ->check(integer_validator());
  c.train
      ->add_option("--noise", o.noise,
                   "A synthetic set's noise: the standard deviation of the N(0, noise^2) added to "
                   "each coordinate (xor, moons, circles), to each angle (spirals) or each "
                   "cluster's spread (blobs); gaussian's is TensorFlow Playground's, 0 to 0.5, its "
                   "clusters' variance 0.5 + 7 noise; two-spirals' too, each coordinate moved by "
                   "noise * U(-1, 1); default xor, gaussian and two-spirals 0, moons and "
                   "circles 0.1, spirals 0.2, blobs 1; for plane and multi-gaussian, as TensorFlow "
                   "Playground's, the target is taken at the point moved by noise * U(-6, 6) per "
                   "coordinate (default 0)")
      ->type_name("SIGMA");
  c.train
      ->add_option("--noise-percent", o.noise_percent,
                   "A synthetic set's noise as TensorFlow Playground's control, 0 to 50 (%), "
                   "made --noise as its data sets scale it: gaussian, two-spirals, plane and "
                   "multi-gaussian take percent / 100, moons, circles and xor a sigma of percent "
                   "/ 100 / sqrt(3), spirals an angle of percent / 100 (the network lab's "
                   "control; instead of --noise)")
      ->type_name("PERCENT");
  c.train
      ->add_option("--features", o.features,
                   "The inputs made of a two-column set's x1 and x2, as TensorFlow Playground's: "
                   "a comma list of x1, x2, x1^2, x2^2, x1*x2, sin_x1, sin_x2, in the order "
                   "given (default none: the data's own columns)")
      ->type_name("LIST");
  c.train
      ->add_option("--test-fraction", o.test_fraction,
                   "The fraction of a synthetic set's or CSV file's rows held out for testing "
                   "(default 0.25); TensorFlow Playground's train/test ratio is 1 minus it")
      ->type_name("F");
  c.train
      ->add_option("--l1", o.l1,
                   "Add RATE * the sum of |p| over every weight and bias to the loss, as "
                   "TensorFlow Playground's L1 regularization (default 0)")
      ->type_name("RATE");
  c.train
      ->add_option("--l2", o.l2,
                   "Add RATE * the sum of p^2 over every weight and bias to the loss (default 0)")
      ->type_name("RATE");
  c.train
      ->add_option("--val", o.val,
                   "Hold this share of the training rows out (seeded by --seed) and report their "
                   "loss after each epoch, the validation loss that --early-stop and --save-best "
                   "watch (default 0: none, or the checkpoint's)")
      ->type_name("FRACTION");
  c.train
      ->add_option("--early-stop", o.early_stop,
                   "Stop when the validation loss has not improved for N epochs in a row, as "
                   "Keras's EarlyStopping (needs --val)")
      ->type_name("N")
      ->check(integer_validator());
  c.train
      ->add_option("--save-best", o.save_best,
                   "Write the checkpoint of each epoch whose validation loss is the lowest so "
                   "far to FILE (atomically), which so ends holding the best epoch's weights "
                   "(needs --val)")
      ->type_name("FILE");
  c.train->get_option("--layers")->excludes(c.train->get_option("--hidden"));
  c.train->footer(defaults_help());

  c.graph = app.add_subcommand(
      "graph", "Draw a checkpointed MLP's forward pass on 4 rows of zeros, one box per module");
  c.graph->add_option("CHECKPOINT", o.checkpoint, "A .safetensors file written by train --save")
      ->type_name("FILE")
      ->required();
  add_model_options(c.graph, o,
                    "The MLP's layer sizes, inputs first: 2,16,16,1 (default: the checkpoint's, "
                    "from its metadata or its weights' shapes)");
  c.graph
      ->add_option("-o,--output", o.output,
                   "Render to FILE by its extension (.dot, .svg or .png); else print DOT")
      ->type_name("FILE");
  return c;
}

int run_nn_command(const NnCommands& c) {
  CLI::App* command = c.train->parsed() ? c.train : c.graph;
  for (const CLI::Option* option : command->get_options())
    if (option->count() > 0) c.options->given.insert(option->get_name());
  if (c.train->parsed()) return run_train(*c.options);
  return run_graph(*c.options);
}

}  // namespace tapegrad
