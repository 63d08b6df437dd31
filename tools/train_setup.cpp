// What `tapegrad train` makes of its options, without the command line: the data (synthetic
// sets, CSV files, Fashion-MNIST), the defaults per data set, the loss and output, the MLP, its
// optimizer, fit's options and the --json summary; shared by the CLI and the playground.

#include "train_setup.hpp"

#include <fmt/compile.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <tapegrad/nn/init.hpp>
#include <utility>

namespace tapegrad {

namespace {

// Note [Synthetic data options]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// --n and --noise size and blur a synthetic set; their defaults are the values each set had
// before the options existed, so a run without them trains on the same rows as ever. --noise
// is the generator's own: N(0, noise^2) added to each coordinate (xor, moons, circles), to each
// angle (spirals, CS231n's 0.2), or each cluster's spread (blobs); gaussian's and two-spirals'
// are TensorFlow Playground's slider, 0 to 0.5 (its clusters' variance 0.5 + 7 noise; its
// spiral's uniform shift of each coordinate by up to noise). --features replaces a
// two-column set's columns by TensorFlow Playground's inputs (nn::expand_features, Note [Input
// features]) before the split, so the training and test rows get the same columns. All three
// are in the checkpoint (Note [What a checkpoint says of its model]): a resume rebuilds the
// same rows and inputs, and refuses options that disagree.
//
// Note [The noise in percent]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// TensorFlow Playground's noise control is a percentage, 0 to 50, that its src/dataset.ts reads
// as a fraction f = percent / 100 in each set's own way: its Gaussians' variance 0.5 + 7 f, its
// regression sets' and spiral's shifts by f times U(-6, 6) and U(-1, 1). --noise-percent (the
// network lab's control) is that control, and this is the one place it becomes --noise:
// --noise = f * per_unit, per_unit the row's below. The sets made by Playground's own recipes
// (gaussian, two-spirals, plane, multi-gaussian) take f itself (per_unit 1). The others blur
// their points by N(0, noise^2) in their own unit (a radius of 1: moons, circles, xor's unit
// square); Playground shifts its points (or the copy that decides their label) by up to f times
// its sets' radius, a uniform shift of standard deviation f / sqrt(3) radii, so their per_unit
// is 1 / sqrt(3): 50 % is sigma 0.29, moons' and circles' default 0.1 is 17 %. spirals' noise is
// an angle in radians (per_unit 1: CS231n's 0.2 is 20 %); blobs' centres lie within 10 of 0,
// its radius (per_unit 10 / sqrt(3)).
struct Synthetic {
  std::string_view data;
  std::int64_t rows;
  double noise;
  double per_unit;  // --noise per unit of --noise-percent / 100 (Note [The noise in percent])
};
constexpr double kUniformSigma = 0.5773502691896258;  // 1 / sqrt(3), U(-1, 1)'s sigma
// clang-format off
constexpr Synthetic kSynthetic[] = {{"xor",            4,   0,   kUniformSigma},
                                    {"moons",          400, 0.1, kUniformSigma},
                                    {"circles",        400, 0.1, kUniformSigma},
                                    {"spirals",        300, 0.2, 1},
                                    {"blobs",          400, 1.0, 10 * kUniformSigma},
                                    {"gaussian",       400, 0,   1},
                                    {"two-spirals",    400, 0,   1},
                                    {"plane",          400, 0,   1},
                                    {"multi-gaussian", 400, 0,   1}};
// clang-format on

// The regression sets among them (Note [Regression tasks]).
bool regression_set(std::string_view data) { return data == "plane" || data == "multi-gaussian"; }

const Synthetic* synthetic(std::string_view data) {
  for (const Synthetic& s : kSynthetic)
    if (s.data == data) return &s;
  return nullptr;
}

// At most this many rows from --n: ten million rows of two floats is 80 MB.
constexpr std::int64_t kMaxSyntheticRows = 10'000'000;

// The synthetic set's --n and --noise, filled in from kSynthetic when not given, and checked;
// other data refuse them (Note [Synthetic data options]).
void resolve_synthetic(NnOptions& o) {
  const Synthetic* s = synthetic(o.data);
  if (!s) {
    std::vector<std::string_view> names;  // (emscripten's libc++ 14 has no views::transform)
    for (const Synthetic& set : kSynthetic) names.push_back(set.data);
    for (const std::string_view option : {"--n", "--noise", "--noise-percent"})
      if (o.was_given(option))
        ag::fail("{} {}: only the synthetic data sets ({}) take it, not {}", option,
                 option == "--n"       ? fmt::format("{}", o.rows)
                 : option == "--noise" ? fmt::format("{}", o.noise)
                                       : fmt::format("{}", o.noise_percent),
                 fmt::join(names, ", "), ag::printable(o.data));
    return;
  }
  if (!o.was_given("--n") && o.rows == 0) o.rows = s->rows;
  if (o.was_given("--noise-percent")) {
    if (!std::isfinite(o.noise_percent) || o.noise_percent < 0)
      ag::fail("--noise-percent {}: the noise must be a finite percentage >= 0", o.noise_percent);
    o.noise = o.noise_percent / 100 * s->per_unit;  // Note [The noise in percent]
  }
  if (!o.was_given("--noise") && o.noise == -1) o.noise = s->noise;
  if (!std::isfinite(o.noise) || o.noise < 0)
    ag::fail("--noise {}: the noise must be a finite number >= 0", o.noise);
  const std::int64_t least = o.data == "xor" ? 4 : o.data == "spirals" ? 3 : 2;
  if (o.rows < least || o.rows > kMaxSyntheticRows)
    ag::fail("--n {}: {} needs from {} to {} rows", o.rows, o.data, least, kMaxSyntheticRows);
  if (o.data == "spirals" && o.rows % 3 != 0)
    ag::fail("--n {}: spirals has 3 arms of equal size, so the rows must be a multiple of 3",
             o.rows);
  if (o.data == "blobs" && o.rows < 3)
    ag::fail("--n {}: blobs has 3 clusters and needs a row for each", o.rows);
}

// The last layer's size each loss needs, and the classes it can take.
void check_shapes(const std::vector<std::int64_t>& sizes, const Data& d, nn::LossKind loss) {
  if (sizes.front() != d.train.cols)
    throw ag::Error(
        fmt::format("--layers {}: the first size must be {}, the number of features of {}",
                    layers_str(sizes), d.train.cols, d.name));
  const std::string_view name = nn::loss_name(loss);
  if (d.train.regression()) {  // Note [Regression tasks]
    if (sizes.back() != d.train.outputs)
      ag::fail("--layers {}: the last size must be {}, one output per target of {}",
               layers_str(sizes), d.train.outputs, d.name);
    return;
  }
  if (loss == nn::LossKind::cross_entropy) {
    if (sizes.back() != d.train.classes)
      ag::fail("--layers {}: the last size must be {} for --loss ce, one logit per class of {}",
               layers_str(sizes), d.train.classes, d.name);
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

// Note [Defaults per data set]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// `tapegrad train --data SET` alone trains well: the input and output sizes come from the data
// (--hidden sizes what is between), and the learning rate, epochs, batch and schedule are the
// data set's row here, each measured to reach a good test accuracy in seconds (Fashion-MNIST's
// are examples/fashion_mnist's: Adam at 2e-3 with a cosine decay, batches of 128, 10 epochs).
// Any option given on the command line wins; a resumed checkpoint's own values win over these.
struct DataDefaults {
  std::string_view data;    // the --data name; "csv" stands for every CSV file
  std::string_view hidden;  // hidden layer sizes
  double lr;
  std::int64_t epochs;
  std::int64_t batch;
  std::string_view schedule;
};

// clang-format off
constexpr DataDefaults kDataDefaults[] = {
    // data            hidden      lr     epochs batch schedule
    {"xor",           "8",        0.05,   300,   4,    "constant"},
    {"moons",         "16,16",    0.01,   100,   32,   "constant"},
    {"circles",       "16,16",    0.01,   100,   32,   "constant"},
    {"spirals",       "64,64",    0.01,   300,   32,   "constant"},
    {"blobs",         "16,16",    0.01,   50,    32,   "constant"},
    {"gaussian",      "16,16",    0.01,   100,   32,   "constant"},
    {"two-spirals",   "16,16",    0.01,   300,   32,   "constant"},
    {"plane",         "8",        0.01,   50,    32,   "constant"},
    {"multi-gaussian","32,32",    0.01,   200,   32,   "constant"},
    {"fashion-mnist", "256,128",  0.002,  10,    128,  "cosine"},
    {"csv",           "16,16",    0.01,   100,   32,   "constant"},
};
// clang-format on

const DataDefaults& defaults_for(std::string_view data) {
  const std::string_view key = data.starts_with("csv:") ? "csv" : data;
  for (const DataDefaults& d : kDataDefaults)
    if (d.data == key) return d;
  ag::fail("unknown data set '{}'; the known data sets are {}", ag::printable(std::string(data)),
           kDataSets);
}

// What each loss takes from the last layer, and the output activations that give it: the first
// is --out's default, the others are accepted; any other pair is refused, as html --mlp does
// (bce on a linear output trained silently to 0.60 accuracy).
struct LossOutputs {
  std::string_view takes;
  std::vector<nn::Activation> outputs;
};

LossOutputs outputs_for(nn::LossKind loss) {
  switch (loss) {
    case nn::LossKind::bce: return {"probabilities", {ag::Op::sigmoid}};
    case nn::LossKind::bce_with_logits:
      return {"logits (it applies the sigmoid itself)", {nn::Activation::none}};
    case nn::LossKind::cross_entropy:
      return {"logits (it applies the softmax itself)", {nn::Activation::none}};
    case nn::LossKind::mse:
      return {"scores near the targets 0 and 1", {nn::Activation::none, ag::Op::sigmoid}};
    case nn::LossKind::hinge:
      return {"scores of either sign", {nn::Activation::none, ag::Op::tanh}};
    case nn::LossKind::l1:
    case nn::LossKind::huber: return {"values near the targets", {nn::Activation::none}};
  }
  return {};
}

// --task, checked against the data and the loss (Note [Regression tasks]).
void resolve_task(NnOptions& o) {
  if (o.task.empty()) o.task = regression_set(o.data) ? "regression" : "classification";
  if (o.task != "classification" && o.task != "regression")
    ag::fail("--task {}: use classification or regression", ag::printable(o.task));
  if (regression_set(o.data) && o.task != "regression")
    ag::fail("--task {}: {} is a regression set (real-valued targets)", o.task, o.data);
  const bool regression = o.task == "regression";
  if (regression && !regression_set(o.data) && !o.data.starts_with("csv:"))
    ag::fail(
        "--task regression: {} has classes; regression trains on plane, multi-gaussian "
        "or a CSV file's columns",
        ag::printable(o.data));
  if (o.loss.empty()) {
    if (regression) o.loss = "mse";
    return;
  }
  const nn::LossKind loss = nn::parse_loss(o.loss);
  const bool regression_loss =
      loss == nn::LossKind::mse || loss == nn::LossKind::l1 || loss == nn::LossKind::huber;
  if (regression && !regression_loss)
    ag::fail("--loss {} is for classification; --task regression trains with mse, l1 or huber",
             o.loss);
  if (!regression && loss != nn::LossKind::mse && regression_loss)
    ag::fail(
        "--loss {} is for regression: give --task regression (plane, multi-gaussian and "
        "CSV files), or a classification loss",
        o.loss);
}

// --loss and --out resolved together: the loss from --out or the last size when it is not
// given (sigmoid: bce; one output: bce_logits; else ce, as a PyTorch classifier would), the
// output from the loss when that is not given; a pair that does not fit is an error.
void resolve_loss_and_output(NnOptions& o) {
  if (o.loss.empty()) {
    const bool one_output = !o.layers.empty() && parse_layers(o.layers, "--layers").back() == 1;
    if (!o.out.empty() && nn::parse_activation(o.out) == nn::Activation(ag::Op::sigmoid))
      o.loss = "bce";
    else
      o.loss = one_output ? "bce_logits" : "ce";
  }
  const LossOutputs fits = outputs_for(nn::parse_loss(o.loss));
  if (o.out.empty()) {
    o.out = nn::activation_name(fits.outputs.front());
    return;
  }
  const nn::Activation out = nn::parse_activation(o.out);
  if (std::find(fits.outputs.begin(), fits.outputs.end(), out) != fits.outputs.end()) return;
  std::vector<std::string_view> names;
  for (nn::Activation a : fits.outputs) names.push_back(nn::activation_name(a));
  ag::fail("--loss {} takes {}: use --out {}, not {}", o.loss, fits.takes,
           fmt::join(names, " or --out "), o.out);
}

}  // namespace

bool is_synthetic(std::string_view data) { return synthetic(data) != nullptr; }

bool is_regression(const NnOptions& o) { return o.task == "regression"; }

std::string layers_str(const std::vector<std::int64_t>& sizes) {
  return fmt::format("{}", fmt::join(sizes, ","));
}

// --features as nn's list; "none" (or not given) is the data's own columns.
std::vector<nn::InputFeature> input_features(const std::string& text) {
  if (text.empty() || text == "none") return {};
  try {
    return nn::parse_input_features(text);
  } catch (const ag::Error& e) {
    ag::fail("--features {}: {} (or none)", ag::printable(text), e.what());
  }
}

// --features as the checkpoint says it: the names joined by commas, or none.
std::string features_text(const std::string& text) {
  const std::vector<nn::InputFeature> features = input_features(text);
  return features.empty() ? "none" : nn::input_features_str(features);
}

Data load_data(const NnOptions& o) {
  const std::string& spec = o.data;
  const std::uint64_t seed = o.seed;
  Data d;
  d.name = spec;
  nn::Dataset all;
  const std::vector<nn::InputFeature> features = input_features(o.features);
  // Note [Synthetic data options]: the playground's inputs, made of the two columns there are.
  const auto expand = [&](const nn::Dataset& data) {
    if (features.empty()) return data;
    if (data.cols != 2)
      ag::fail("--features {}: the input features are made of two columns (x1, x2), and {} has {}",
               ag::printable(o.features), ag::printable(d.name), data.cols);
    return nn::expand_features(data, features);
  };
  // Note [Synthetic data options]: xor's four corners and Fashion-MNIST are not split.
  if (o.was_given("--test-fraction") && ((spec == "xor" && o.rows == 4) || spec == "fashion-mnist"))
    ag::fail("--test-fraction {}: {}", o.test_fraction,
             spec == "xor" ? "xor's 4 points are all trained on: give --n above 4 to split them"
                           : "fashion-mnist has its own test set");
  if (spec == "xor" && o.rows == 4) {
    d.train = expand(nn::xor_data(4, o.noise, seed));  // four points: nothing to hold out
    return d;
  }
  if (spec == "fashion-mnist") {
    if (!features.empty())
      ag::fail(
          "--features {}: the input features are made of two columns (x1, x2), and "
          "fashion-mnist has 784",
          ag::printable(o.features));
    d.train = nn::load_fashion_mnist(nn::Split::train);
    d.test = nn::load_fashion_mnist(nn::Split::test);
    d.has_test = true;
    return d;
  }
  bool csv = false;
  if (spec == "xor") {
    all = nn::xor_data(o.rows, o.noise, seed);
  } else if (spec == "moons") {
    all = nn::moons(o.rows, o.noise, seed);
  } else if (spec == "circles") {
    all = nn::circles(o.rows, o.noise, 0.5, seed);
  } else if (spec == "spirals") {
    all = nn::spirals(o.rows / 3, 3, o.noise, seed);
  } else if (spec == "blobs") {
    all = nn::blobs(o.rows, 3, o.noise, seed);
  } else if (spec == "gaussian") {
    all = nn::two_gaussians(o.rows, o.noise, seed);
  } else if (spec == "two-spirals") {
    all = nn::two_spirals(o.rows, o.noise, seed);
  } else if (spec == "plane") {
    all = nn::plane(o.rows, o.noise, seed);
  } else if (spec == "multi-gaussian") {
    all = nn::multi_gaussian(o.rows, o.noise, seed);
  } else if (spec.starts_with("csv:")) {
    std::string file = spec.substr(4);
    nn::CsvOptions co;
    co.map_labels = true;
    const auto is_index = [](const std::string& column) {
      return column.find_first_not_of("-0123456789") == std::string::npos && column != "-" &&
             !column.empty() && column.size() < 10;
    };
    if (const std::size_t colon = file.rfind(':'); colon != std::string::npos) {
      const std::string column = file.substr(colon + 1);
      file = file.substr(0, colon);
      if (column.empty()) ag::fail("--data {}: the label column is empty", spec);
      if (is_regression(o)) {
        // The target columns: all indices, or all names (Note [Regression tasks]).
        std::vector<std::string> columns;
        for (std::size_t at = 0; at <= column.size();) {
          std::size_t end = column.find(',', at);
          if (end == std::string::npos) end = column.size();
          columns.push_back(column.substr(at, end - at));
          if (columns.back().empty()) ag::fail("--data {}: a target column is empty", spec);
          at = end + 1;
        }
        if (std::all_of(columns.begin(), columns.end(), is_index)) {
          for (const std::string& c : columns) co.target_indices.push_back(std::stoll(c));
        } else {
          co.target_names = columns;
        }
      } else if (is_index(column)) {
        co.label_index = std::stoll(column);
      } else {
        co.label_name = column;
      }
    } else if (is_regression(o)) {
      co.target_indices = {-1};  // the last column, as the label's default
    }
    if (file.empty()) ag::fail("--data {}: no file name after csv:", spec);
    all = nn::load_csv(file, co);
    d.name = d.file = file;
    csv = true;
  } else {
    throw ag::Error(
        fmt::format("unknown data set '{}'; the known data sets are {}", spec, kDataSets));
  }
  if (all.rows < 2) ag::fail("{}: too few rows to split ({})", d.name, all.rows);
  all = expand(all);  // before the split and standardization: every row gets the same columns
  nn::TrainTest split = all.split(o.test_fraction, seed);
  d.train = std::move(split.train);
  d.test = std::move(split.test);
  d.has_test = d.test.rows > 0;
  if (csv) {  // standardize with the training set's statistics
    const nn::Standardization s = d.train.standardize();
    if (d.has_test) d.test.standardize(s);
  }
  return d;
}

// The help's table of kDataDefaults.
std::string defaults_help() {
  std::string text = "Defaults per data set (any option given wins):\n";
  for (const DataDefaults& d : kDataDefaults) {
    std::string line =
        fmt::format("  {:<14} --hidden {:<8} --lr {:<6} --epochs {:<4} --batch {:<4}", d.data,
                    d.hidden, d.lr, d.epochs, d.batch);
    if (d.schedule == "cosine") line += " --schedule cosine";
    text += line.substr(0, line.find_last_not_of(' ') + 1) + "\n";
  }
  return text;
}

// "16,16" (or "none", no hidden layer) as hidden layer sizes.
std::vector<std::int64_t> parse_hidden(const std::string& text) {
  std::vector<std::int64_t> sizes;
  if (text == "none") return sizes;
  for (std::size_t at = 0; at <= text.size();) {
    std::size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(at, end - at);
    if (part.empty() || part.size() > 9 ||
        part.find_first_not_of("0123456789") != std::string::npos || std::stoll(part) < 1)
      ag::fail(
          "--hidden {}: not a list of positive sizes like 16,16 (or none, for no hidden layer)",
          ag::printable(text));
    sizes.push_back(std::stoll(part));
    at = end + 1;
  }
  return sizes;
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

std::unique_ptr<nn::Optimizer> make_optimizer(nn::MLP& mlp, const NnOptions& o) {
  if (o.opt == "sgd")
    return std::make_unique<nn::SGD>(mlp.parameters(), nn::SGDOptions{.lr = o.lr});
  return std::make_unique<nn::Adam>(mlp.parameters(), nn::AdamOptions{.lr = o.lr});
}

void check_given_options(const NnOptions& o) {
  if (o.was_given("--lr") && (!std::isfinite(o.lr) || o.lr <= 0))
    ag::fail("--lr {}: the learning rate must be a positive number", o.lr);
  if (o.was_given("--epochs") && o.epochs < 1)
    ag::fail("--epochs {}: must be at least 1", o.epochs);
  if (o.was_given("--batch") && o.batch < 1) ag::fail("--batch {}: must be at least 1", o.batch);
  if (!o.layers.empty()) parse_layers(o.layers, "--layers");  // its errors first
  if (!o.hidden.empty()) parse_hidden(o.hidden);
  if (o.was_given("--val") && !(o.val > 0 && o.val < 1))
    ag::fail("--val {}: the share of the training rows held out must be in (0, 1)", o.val);
  if (o.was_given("--early-stop") && o.early_stop < 1)
    ag::fail("--early-stop {}: the patience must be at least 1 epoch", o.early_stop);
  if (o.was_given("--features") && o.features.empty())
    ag::fail("--features : no input features: choose from {} (or none)",
             nn::input_features_str(nn::kInputFeatures));
  input_features(o.features);
  if (o.was_given("--noise-percent") && o.was_given("--noise"))
    ag::fail("--noise-percent {}: give it or --noise {}, not both", o.noise_percent, o.noise);
  if (o.was_given("--noise-percent") && !o.resume.empty())
    ag::fail("--noise-percent {}: a resumed run keeps its checkpoint's --noise", o.noise_percent);
  if (o.was_given("--test-fraction") && !(o.test_fraction > 0 && o.test_fraction < 1))
    ag::fail("--test-fraction {}: the fraction of rows held out must be between 0 and 1",
             o.test_fraction);
  for (const auto& [option, rate] : {std::pair{"--l1", o.l1}, std::pair{"--l2", o.l2}})
    if (!std::isfinite(rate) || rate < 0)
      ag::fail("{} {}: the regularization rate must be a finite number >= 0", option, rate);
}

void resolve_defaults(NnOptions& o) {
  if (o.data.empty()) ag::fail("train needs --data SET: one of {}", kDataSets);
  const DataDefaults& defaults = defaults_for(o.data);
  resolve_synthetic(o);
  if (!o.was_given("--lr")) o.lr = defaults.lr;
  if (!o.was_given("--epochs")) o.epochs = defaults.epochs;
  if (o.batch == 0) o.batch = defaults.batch;
  if (o.schedule.empty()) o.schedule = defaults.schedule;
  if (o.layers.empty() && o.hidden.empty()) o.hidden = defaults.hidden;
  if (o.act.empty()) o.act = "relu";
  resolve_task(o);
  resolve_loss_and_output(o);
}

// The MLP's sizes: --layers, checked against the data, or the data's around --hidden.
std::vector<std::int64_t> model_sizes(const NnOptions& o, const Data& d, nn::LossKind loss) {
  std::vector<std::int64_t> sizes;
  if (!o.layers.empty()) {
    sizes = parse_layers(o.layers, "--layers");
  } else {
    sizes.push_back(d.train.cols);
    for (std::int64_t h : parse_hidden(o.hidden)) sizes.push_back(h);
    sizes.push_back(d.train.regression()                  ? d.train.outputs
                    : loss == nn::LossKind::cross_entropy ? d.train.classes
                                                          : 1);
    parse_layers(layers_str(sizes), fmt::format("--hidden {}: the MLP", o.hidden));  // its limit
  }
  check_shapes(sizes, d, loss);
  return sizes;
}

// --norm and --dropout, which train and graph must agree on: they decide the checkpoint's names.
nn::MLPExtras model_extras(const NnOptions& o) {
  if (!(o.dropout >= 0 && o.dropout < 1))
    ag::fail("--dropout {}: the probability must be in [0, 1)", o.dropout);
  return {.norm = nn::parse_norm(o.norm.empty() ? "none" : o.norm), .dropout = o.dropout};
}

// A --clip-grad-* bound, when given: a positive number.
std::optional<double> clip_bound(const NnOptions& o, double bound, std::string_view option) {
  if (!o.was_given(option)) return std::nullopt;
  if (!std::isfinite(bound) || bound <= 0)
    ag::fail("{} {}: the bound must be a positive number", option, bound);
  return bound;
}

nn::FitOptions fit_options(const NnOptions& o, const Data& d, nn::LossKind loss,
                           std::optional<double> clip_norm, std::optional<double> clip_value) {
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
  fo.l1 = o.l1;
  fo.l2 = o.l2;
  if (o.schedule == "cosine") fo.schedule = nn::schedule::cosine(fo.epochs);
  fo.validation_fraction = o.val;
  if (o.early_stop > 0)
    fo.early_stopping = nn::EarlyStopping{.patience = static_cast<std::size_t>(o.early_stop)};
  fo.save_best = o.save_best;
  return fo;
}

namespace {

// The summary's keys before --val's.
Json summary_fields(const Summary& s) {
  if (s.regression)
    return {{"r2", s.r2},
            {"rmse", s.rmse},
            {"train_r2", s.train_r2},
            {"train_rmse", s.train_rmse},
            {"loss", s.loss},
            {"seconds", s.seconds},
            {"epochs", s.epochs},
            {"grad_norms", s.grad_norms},
            {"dead_fraction", s.dead_fraction}};
  return {{"train_accuracy", s.train_accuracy},
          {"test_accuracy", s.test_accuracy},
          {"loss", s.loss},
          {"seconds", s.seconds},
          {"epochs", s.epochs},
          {"grad_norms", s.grad_norms},
          {"dead_fraction", s.dead_fraction}};
}

}  // namespace

std::map<std::string, std::string> checkpoint_metadata(const NnOptions& o,
                                                       const std::vector<std::int64_t>& sizes,
                                                       const Data& d) {
  std::map<std::string, std::string> metadata = {
      {"model.layers", layers_str(sizes)},
      {"model.act", o.act},
      {"model.out", o.out},
      {"model.loss", o.loss},
      {"model.norm", o.norm.empty() ? "none" : o.norm},
      {"model.dropout", fmt::format("{}", o.dropout)},
      {"model.task", o.task},
      {"data.name", o.data},
      {"data.features", fmt::format("{}", d.train.cols)},
      {"data.input_features", features_text(o.features)},
      {"train.seed", fmt::format("{}", o.seed)},
      {"train.batch", fmt::format("{}", o.batch)},
      {"train.lr", fmt::format("{}", o.lr)},
      {"train.schedule", o.schedule},
      {"data.test_fraction", fmt::format("{}", o.test_fraction)},
      {"train.l1", fmt::format("{}", o.l1)},
      {"train.l2", fmt::format("{}", o.l2)},
      {"train.val", fmt::format("{}", o.val)},
      {"train.early_stop", fmt::format("{}", o.early_stop)}};
  if (is_synthetic(o.data)) {
    metadata["data.rows"] = fmt::format("{}", o.rows);
    metadata["data.noise"] = fmt::format("{}", o.noise);
  }
  return metadata;
}

Json summary_json(const Summary& s) {
  Json out = summary_fields(s);
  if (s.validated) {
    out["best_epoch"] = s.best_epoch;
    out["stopped_early"] = s.stopped_early;
  }
  return out;
}

std::vector<std::int64_t> parse_layers(const std::string& text, std::string_view option) {
  std::vector<std::int64_t> sizes;
  const auto bad = [&] {
    return ag::Error(fmt::format("{} {}: not a list of at least two positive sizes like 2,16,16,1",
                                 option, text));
  };
  std::size_t at = 0;
  while (at <= text.size()) {
    std::size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(at, end - at);
    if (part.empty() || part.size() > 9 ||
        part.find_first_not_of("0123456789") != std::string::npos)
      throw bad();
    sizes.push_back(std::stoll(part));
    if (sizes.back() < 1) throw bad();
    at = end + 1;
  }
  if (sizes.size() < 2) throw bad();
  // Sizes are checked before anything is built: an MLP too large for memory is a message.
  std::int64_t parameters = 0;
  for (std::size_t i = 1; i < sizes.size() && parameters <= kMaxMlpParameters; ++i)
    parameters += sizes[i - 1] * sizes[i] + sizes[i];  // at most 10^18 + 10^9: no overflow
  if (parameters > kMaxMlpParameters)
    ag::fail("{} {}: more than {} parameters, the most an MLP may have", option, text,
             kMaxMlpParameters);
  return sizes;
}

namespace {

void append_json(std::string& out, const Json& value) {
  if (value.is_object()) {
    out += '{';
    const char* separator = "";
    for (const auto& [key, item] : value.items()) {
      out += separator;
      out += Json(key).dump();
      out += ": ";
      append_json(out, item);
      separator = ", ";
    }
    out += '}';
  } else if (value.is_array()) {
    out += '[';
    for (std::size_t i = 0; i < value.size(); ++i) {
      if (i > 0) out += ", ";
      append_json(out, value[i]);
    }
    out += ']';
  } else if (value.is_number_float()) {
    const double x = value.get<double>();
    // Written in place, through a format compiled once: a snapshot holds thousands of numbers
    // (the playground's maps), and parsing "{}" again for each was a tenth of its time.
    if (std::isfinite(x))
      fmt::format_to(std::back_inserter(out), FMT_COMPILE("{}"), x);
    else
      out += "null";  // Note [The command line's JSON]
  } else {
    out += value.dump();  // strings, integers, booleans and null as nlohmann writes them
  }
}

}  // namespace

std::string json_text(const Json& value) {
  std::string out;
  append_json(out, value);
  return out;
}

}  // namespace tapegrad
