// The playground's network lab (tools/network_lab.hpp): a config read as train's options, a
// session trained in slices through nn::fit, and its snapshots (maps, weights, diagnostics).

#include "network_lab.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <tapegrad/graph_model.hpp>
#include <tapegrad/nn/checkpoint.hpp>
#include <tapegrad/nn/diagnostics.hpp>
#include <tapegrad/nn/loss.hpp>
#include <tapegrad/nn/scalar.hpp>
#include <tapegrad/value.hpp>
#include <utility>

namespace tapegrad {

namespace {

// Note [The maps' precision]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// A snapshot's maps are for drawing: the page colours a value in 201 steps from -1 to 1. They
// are written to four decimals, so that the 6,600 numbers of an 8-8 network's maps are about 7
// characters each instead of 19: their text, written and parsed at every frame of training, was
// most of a snapshot's cost in the playground (playground/README.md). The weights, losses and
// accuracies keep every digit.
double drawn(double value) {
  return std::abs(value) < 1e12 ? std::round(value * 1e4) / 1e4 : value;  // no overflow to inf
}

// Each key, the option it stands for and the JSON it takes.
enum class Kind { text, number, count, seed, sizes, names };
struct ConfigKey {
  std::string_view key;
  std::string_view option;
  Kind kind;
};
// clang-format off
constexpr ConfigKey kConfigKeys[] = {
    {"data", "--data", Kind::text},      {"hidden", "--hidden", Kind::sizes},
    {"act", "--act", Kind::text},        {"out", "--out", Kind::text},
    {"loss", "--loss", Kind::text},      {"lr", "--lr", Kind::number},
    {"epochs", "--epochs", Kind::count}, {"batch", "--batch", Kind::count},
    {"seed", "--seed", Kind::seed},      {"noise", "--noise", Kind::number},
    {"n", "--n", Kind::count},           {"features", "--features", Kind::names},
    {"opt", "--opt", Kind::text},        {"l1", "--l1", Kind::number},
    {"l2", "--l2", Kind::number},        {"test_fraction", "--test-fraction", Kind::number},
    {"init", "--init", Kind::text},      {"task", "--task", Kind::text},
    {"noise_percent", "--noise-percent", Kind::number}};
// clang-format on

std::string_view kind_text(Kind kind) {
  switch (kind) {
    case Kind::text: return "a string";
    case Kind::number: return "a number";
    case Kind::count: return "an integer";
    case Kind::seed: return "an integer from 0";
    case Kind::sizes: return "an array of layer sizes, as [8, 8] ([] for none)";
    case Kind::names: return "an array of input feature names, as [\"x1\", \"x2\"]";
  }
  return "";
}

// The value of `key` as the text its option would have on the command line.
std::string option_text(const ConfigKey& key, const Json& value) {
  const auto wrong = [&] {
    return ag::Error(fmt::format("config: \"{}\" must be {}, not {}", key.key, kind_text(key.kind),
                                 value.dump()));
  };
  switch (key.kind) {
    case Kind::text:
      if (!value.is_string()) throw wrong();
      return value.get<std::string>();
    case Kind::number:
      if (!value.is_number()) throw wrong();
      return fmt::format("{}", value.get<double>());
    case Kind::count:
      if (!value.is_number_integer()) throw wrong();
      return value.dump();
    case Kind::seed:
      if (!value.is_number_unsigned()) throw wrong();
      return value.dump();
    case Kind::sizes:
    case Kind::names: {
      if (!value.is_array()) throw wrong();
      if (value.empty()) return "none";
      std::string text;
      for (const Json& item : value) {
        if (key.kind == Kind::names ? !item.is_string() : !item.is_number_integer()) throw wrong();
        if (!text.empty()) text += ',';
        text += item.is_string() ? item.get<std::string>() : item.dump();
      }
      return text;
    }
  }
  return "";
}

// The checks CLI11 makes of --opt and --init (IsMember), in train's words.
void check_member(const NnOptions& o, std::string_view option, const std::string& value,
                  std::initializer_list<std::string_view> members) {
  if (!o.was_given(option)) return;
  if (std::find(members.begin(), members.end(), value) != members.end()) return;
  ag::fail("{} {}: not one of {}", option, ag::printable(value), fmt::join(members, ", "));
}

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// Each point as [x1, x2, its class] or, for a regression set, [x1, x2, its target].
Json points_json(const nn::Dataset& d) {
  Json rows = Json::array();
  for (std::int64_t i = 0; i < d.rows; ++i) {
    const auto at = static_cast<std::size_t>(i);
    if (d.regression())
      rows.push_back({d.row(i)[0], d.row(i)[1], d.target_values[at]});
    else
      rows.push_back({d.row(i)[0], d.row(i)[1], d.labels[at]});
  }
  return rows;
}

// The session's loss of one point on the scalar tape, as nn's loss of a batch of that one point
// computes it (nn/src/loss.cpp): the same formula, so the same gradients.
ag::Value point_loss(nn::LossKind kind, std::span<const ag::Value> outputs, std::int32_t label) {
  const double y = label;
  switch (kind) {
    case nn::LossKind::bce: return ag::bce(outputs[0], y);
    case nn::LossKind::bce_with_logits:  // stable for any logit z
      return ag::softplus(outputs[0]) - y * outputs[0];
    case nn::LossKind::cross_entropy: {  // -log softmax(z)[y] = log sum_k exp z_k - z_y
      ag::Value sum = ag::exp(outputs[0]);
      for (std::size_t k = 1; k < outputs.size(); ++k) sum = sum + ag::exp(outputs[k]);
      return ag::log(sum) - outputs[static_cast<std::size_t>(label)];
    }
    case nn::LossKind::mse: return ag::pow(outputs[0] - y, 2.0);
    case nn::LossKind::hinge: return ag::relu(1.0 - (2 * y - 1) * outputs[0]);  // y in -1, +1
    case nn::LossKind::l1:
    case nn::LossKind::huber: break;  // regression: refused by NetworkLab::point
  }
  ag::fail("net_point: the {} loss is a regression's; a point's pass is drawn for classification",
           nn::loss_name(kind));
}

// RFC 4648's base64, with padding: what JavaScript's atob() reads.
std::string base64(std::string_view bytes) {
  constexpr std::string_view kDigits =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string text;
  text.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t at = 0; at < bytes.size(); at += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - at);
    std::uint32_t group = 0;  // three bytes, big-endian, zero-filled
    for (std::size_t k = 0; k < 3; ++k)
      group = group << 8 | (k < n ? std::uint8_t(bytes[at + k]) : 0u);
    for (std::size_t k = 0; k < 4; ++k) text += k <= n ? kDigits[group >> (18 - 6 * k) & 63] : '=';
  }
  return text;
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

NnOptions options_from_config(const std::string& config_json) {
  Json config;
  try {
    config = Json::parse(config_json);
  } catch (const Json::exception& e) {
    ag::fail("config: not JSON: {}", e.what());
  }
  if (!config.is_object()) ag::fail("config: not a JSON object: {}", config_json.substr(0, 80));
  NnOptions o;
  for (const auto& [name, value] : config.items()) {
    const ConfigKey* key = nullptr;
    for (const ConfigKey& k : kConfigKeys)
      if (k.key == name) key = &k;
    if (!key) {
      std::vector<std::string_view> keys;
      for (const ConfigKey& k : kConfigKeys) keys.push_back(k.key);
      ag::fail("config: unknown key \"{}\"; the keys are {}", ag::printable(name),
               fmt::join(keys, ", "));
    }
    const std::string text = option_text(*key, value);
    o.given.insert(std::string(key->option));
    if (key->key == "data") o.data = text;
    if (key->key == "hidden") o.hidden = text;
    if (key->key == "act") o.act = text;
    if (key->key == "out") o.out = text;
    if (key->key == "loss") o.loss = text;
    if (key->key == "opt") o.opt = text;
    if (key->key == "init") o.init = text;
    if (key->key == "task") o.task = text;
    if (key->key == "features") o.features = text;
    if (key->kind == Kind::number) {
      const double number = value.get<double>();
      if (key->key == "lr") o.lr = number;
      if (key->key == "noise") o.noise = number;
      if (key->key == "noise_percent") o.noise_percent = number;
      if (key->key == "l1") o.l1 = number;
      if (key->key == "l2") o.l2 = number;
      if (key->key == "test_fraction") o.test_fraction = number;
    }
    if (key->key == "epochs") o.epochs = value.get<std::int64_t>();
    if (key->key == "batch") o.batch = value.get<std::int64_t>();
    if (key->key == "n") o.rows = value.get<std::int64_t>();
    if (key->key == "seed") o.seed = value.get<std::uint64_t>();
  }
  check_member(o, "--opt", o.opt, {"sgd", "adam"});
  check_member(o, "--init", o.init, {"xavier", "he", "zeros", "uniform"});
  return o;
}

std::string command_line(const NnOptions& o, std::int64_t epochs) {
  std::string line =
      fmt::format("tapegrad train --data {} --hidden {} --act {} --out {} --loss {}", o.data,
                  o.hidden.empty() ? "none" : o.hidden, o.act, o.out, o.loss);
  line += fmt::format(" --opt {} --lr {} --epochs {} --batch {} --seed {}", o.opt, o.lr, epochs,
                      o.batch, o.seed);
  if (is_synthetic(o.data)) line += fmt::format(" --n {} --noise {}", o.rows, o.noise);
  // Quoted: x1*x2 is a glob to every shell, and x1^2 one to zsh's extended globs.
  if (!o.features.empty() && o.features != "none") line += " --features '" + o.features + "'";
  if (o.was_given("--test-fraction")) line += fmt::format(" --test-fraction {}", o.test_fraction);
  if (o.l1 > 0) line += fmt::format(" --l1 {}", o.l1);
  if (o.l2 > 0) line += fmt::format(" --l2 {}", o.l2);
  if (!o.init.empty()) line += " --init " + o.init;
  return line;
}

NetworkLab::NetworkLab(NnOptions options) : o_(std::move(options)) {
  // run_train's steps in run_train's order (Note [The network lab's session]).
  check_given_options(o_);
  resolve_defaults(o_);
  const nn::Activation hidden = nn::parse_activation(o_.act);
  const nn::Activation output = nn::parse_activation(o_.out);
  loss_ = nn::parse_loss(o_.loss);
  const nn::MLPExtras extras = model_extras(o_);
  if (!is_synthetic(o_.data))
    ag::fail("--data {}: the network lab draws the synthetic sets of two columns, not files",
             ag::printable(o_.data));
  data_ = load_data(o_);
  NnOptions plain = o_;
  plain.features.clear();
  plain.given.erase("--features");
  points_ = load_data(plain);
  sizes_ = model_sizes(o_, data_, loss_);
  mlp_ = std::make_unique<nn::MLP>(sizes_, hidden, output, o_.seed, extras);
  initialize(*mlp_, o_.init, o_.seed);
  optimizer_ = make_optimizer(*mlp_, o_);
  regression_ = is_regression(o_);
  fit_ = fit_options(o_, data_, loss_, std::nullopt, std::nullopt);
  fit_.progress = nn::FitOptions::Progress::quiet;

  // The maps' square: every point, and a tenth of the span around them.
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const nn::Dataset* d : {&points_.train, &points_.test})
    for (const float x : d->features) lo = std::min(lo, double(x)), hi = std::max(hi, double(x));
  const double pad = hi > lo ? 0.1 * (hi - lo) : 1.0;
  lo_ = lo - pad;
  hi_ = hi + pad;
}

Json NetworkLab::created() {
  std::vector<std::string> inputs;
  for (const nn::InputFeature f : input_features(o_.features))
    inputs.emplace_back(nn::input_feature_name(f));
  if (inputs.empty()) inputs = {"x1", "x2"};
  Json object = {{"layers", sizes_},
                 {"inputs", inputs},
                 {"command", command_line(o_, o_.epochs)},
                 {"task", o_.task},
                 {"noise", o_.noise},
                 {"classes", data_.train.classes},
                 {"domain", {{"x1", {lo_, hi_}}, {"x2", {lo_, hi_}}}},
                 {"train", points_json(points_.train)},
                 {"test", points_json(points_.test)}};
  Json state = snapshot();
  for (auto it = state.begin(); it != state.end(); ++it) object[it.key()] = std::move(it.value());
  return object;
}

void NetworkLab::check_finite() {
  if (!std::isfinite(last_.loss)) {
    diverged_ = true;
  } else {
    for (nn::Parameter* p : mlp_->parameters())
      for (const float w : p->data()) diverged_ = diverged_ || !std::isfinite(w);
  }
  if (diverged_)
    message_ = fmt::format(
        "Training diverged at epoch {}: the loss or a weight is no longer a finite number. Lower "
        "the learning rate (this run's is {}) and press Reset.",
        epoch_, o_.lr);
}

Json NetworkLab::train(std::int64_t epochs) {
  if (epochs < 1 || epochs > kMaxEpochsPerCall)
    ag::fail("net_train {}: the epochs must be from 1 to {}", epochs, kMaxEpochsPerCall);
  for (std::int64_t i = 0; i < epochs && !diverged_; ++i) {
    fit_.first_epoch = static_cast<std::size_t>(epoch_);
    fit_.epochs = fit_.first_epoch + 1;
    last_ = nn::fit(*mlp_, *optimizer_, data_.train, fit_).epochs.back();
    ++epoch_;
    check_finite();
  }
  return snapshot();
}

Json NetworkLab::set_rates(const std::string& rates_json) {
  Json rates;
  try {
    rates = Json::parse(rates_json);
  } catch (const Json::exception& e) {
    ag::fail("net_set_rates: not JSON: {}", e.what());
  }
  if (!rates.is_object())
    ag::fail("net_set_rates: not a JSON object: {}", rates_json.substr(0, 80));
  NnOptions next = o_;
  for (const auto& [name, value] : rates.items()) {
    if (name != "lr" && name != "l1" && name != "l2")
      ag::fail("net_set_rates: unknown key \"{}\"; the rates are lr, l1 and l2",
               ag::printable(name));
    if (!value.is_number())
      ag::fail("net_set_rates: \"{}\" must be a number, not {}", name, value.dump());
    (name == "lr" ? next.lr : name == "l1" ? next.l1 : next.l2) = value.get<double>();
    next.given.insert("--" + name);
  }
  check_given_options(next);  // the command line's own checks and messages
  if (fit_.schedule)
    ag::fail("net_set_rates: a --schedule {} run sets its learning rate each epoch", o_.schedule);
  // Note [Rates changed in place]
  o_ = std::move(next);
  optimizer_->set_lr(o_.lr);
  fit_.l1 = o_.l1;
  fit_.l2 = o_.l2;
  return {{"lr", o_.lr},
          {"l1", o_.l1},
          {"l2", o_.l2},
          {"command", command_line(o_, epoch_ > 0 ? epoch_ : o_.epochs)}};
}

Json NetworkLab::summary() {
  if (epoch_ != 0) ag::fail("summary: the session has trained {} epochs already", epoch_);
  fit_.first_epoch = 0;
  fit_.epochs = static_cast<std::size_t>(o_.epochs);
  const auto t0 = std::chrono::steady_clock::now();
  const nn::History history = nn::fit(*mlp_, *optimizer_, data_.train, fit_);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  epoch_ = o_.epochs;
  last_ = history.epochs.back();
  // run_train's summary, computed as it computes it.
  if (regression_) {
    const nn::Evaluation train = nn::evaluate(*mlp_, data_.train, loss_);
    const nn::Evaluation test = data_.has_test ? nn::evaluate(*mlp_, data_.test, loss_)
                                               : nn::Evaluation{kNaN, kNaN, kNaN, kNaN};
    return summary_json({.regression = true,
                         .train_r2 = train.r2,
                         .train_rmse = train.rmse,
                         .r2 = test.r2,
                         .rmse = test.rmse,
                         .loss = last_.loss,
                         .seconds = seconds,
                         .epochs = history.epochs.size(),
                         .grad_norms = last_.grad_norms,
                         .dead_fraction = last_.dead_fraction});
  }
  return summary_json({.train_accuracy = nn::evaluate(*mlp_, data_.train, loss_).accuracy,
                       .test_accuracy = data_.has_test
                                            ? nn::evaluate(*mlp_, data_.test, loss_).accuracy
                                            : std::numeric_limits<double>::quiet_NaN(),
                       .loss = last_.loss,
                       .seconds = seconds,
                       .epochs = history.epochs.size(),
                       .grad_norms = last_.grad_norms,
                       .dead_fraction = last_.dead_fraction});
}

NetworkLab::Forward NetworkLab::forward_grid(std::int64_t size) {
  // Cell centres, row 0 at x2's top, as the page draws the map.
  nn::Dataset grid;
  grid.rows = size * size;
  grid.cols = 2;
  grid.classes = 2;
  grid.labels.assign(static_cast<std::size_t>(grid.rows), 0);
  const double step = (hi_ - lo_) / double(size);
  for (std::int64_t r = 0; r < size; ++r)
    for (std::int64_t c = 0; c < size; ++c) {
      grid.features.push_back(float(lo_ + (double(c) + 0.5) * step));
      grid.features.push_back(float(hi_ - (double(r) + 0.5) * step));
    }
  const std::vector<nn::InputFeature> features = input_features(o_.features);
  if (!features.empty()) grid = nn::expand_features(grid, features);

  const bool was_training = mlp_->is_training();
  mlp_->eval();
  ag::TensorTape tape;
  ag::NoGrad no_grad(tape);
  ag::Tensor x = grid.inputs(tape);
  Forward f;
  // A hidden layer's activation is what enters the next Linear layer.
  for (std::size_t i = 0; i < mlp_->layers.size(); ++i) {
    nn::Module& module = mlp_->layers[i];
    if (i > 0 && dynamic_cast<nn::Linear*>(&module)) {
      f.hidden.push_back(x.values());
      f.units.push_back(x.shape()[1]);
    }
    x = module(x);
  }
  mlp_->train(was_training);

  const std::vector<double> out = x.values();
  const auto outputs = static_cast<std::size_t>(x.shape()[1]);
  const bool probabilities = nn::scores_of(loss_) == nn::Scores::probabilities;
  if (regression_) {  // the predicted value itself, which the page colours on the targets' scale
    f.output = out;
    return f;
  }
  for (std::size_t p = 0; p < static_cast<std::size_t>(grid.rows); ++p) {
    if (outputs == 1) {  // a probability, or a score whose sign is the class
      const double y = out[p];
      f.output.push_back(probabilities ? std::clamp(y, 0.0, 1.0) : sigmoid(y));
      continue;
    }
    // One logit per class: softmax's probability of class 1.
    double biggest = -std::numeric_limits<double>::infinity(), sum = 0;
    for (std::size_t k = 0; k < outputs; ++k) biggest = std::max(biggest, out[p * outputs + k]);
    for (std::size_t k = 0; k < outputs; ++k) sum += std::exp(out[p * outputs + k] - biggest);
    f.output.push_back(std::exp(out[p * outputs + 1] - biggest) / sum);
  }
  return f;
}

// The keys are Note [The network lab's session]'s; a regression's output_map holds the predicted
// value, test_accuracy and train_accuracy are null and train_r2, test_r2, train_rmse, test_rmse
// join them.
Json NetworkLab::snapshot() {
  const nn::Evaluation train = nn::evaluate(*mlp_, data_.train, loss_);
  const nn::Evaluation test = data_.has_test ? nn::evaluate(*mlp_, data_.test, loss_)
                                             : nn::Evaluation{kNaN, kNaN, kNaN, kNaN};
  Json weights = Json::array(), biases = Json::array(), grad_norms = Json::array();
  for (nn::Linear* l : mlp_->linears()) {
    const auto in = static_cast<std::size_t>(l->weight.shape()[1]);
    const std::span<const float> w = l->weight.data();
    Json rows = Json::array();
    for (std::size_t at = 0; at < w.size(); at += in)
      rows.push_back(std::vector<float>(w.begin() + long(at), w.begin() + long(at + in)));
    weights.push_back(std::move(rows));
    const std::span<const float> b =
        l->bias ? std::span<const float>(l->bias->data()) : std::span<const float>();
    biases.push_back(l->bias ? std::vector<float>(b.begin(), b.end())
                             : std::vector<float>(w.size() / in, 0.0f));
    grad_norms.push_back(l->weight.grad_norm());  // the last step's gradient
  }
  Forward map = forward_grid(kMapSize);
  for (double& cell : map.output) cell = drawn(cell);  // Note [The maps' precision]
  Forward neurons = forward_grid(kNeuronMapSize);
  Json neuron_maps = Json::array();
  for (std::size_t layer = 0; layer < neurons.hidden.size(); ++layer) {
    const auto units = static_cast<std::size_t>(neurons.units[layer]);
    Json per_unit = Json::array();
    for (std::size_t u = 0; u < units; ++u) {
      std::vector<double> cells;
      for (std::size_t p = 0; p < neurons.hidden[layer].size() / units; ++p)
        cells.push_back(drawn(neurons.hidden[layer][p * units + u]));
      per_unit.push_back(std::move(cells));
    }
    neuron_maps.push_back(std::move(per_unit));
  }
  Json state = {{"epoch", epoch_},
                {"train_loss", train.loss},
                {"test_loss", test.loss},
                {"train_accuracy", regression_ ? kNaN : train.accuracy},
                {"test_accuracy", regression_ ? kNaN : test.accuracy}};
  if (regression_) {  // Note [Regression tasks]: R² and RMSE where a classifier has accuracy
    state["train_r2"] = train.r2;
    state["test_r2"] = test.r2;
    state["train_rmse"] = train.rmse;
    state["test_rmse"] = test.rmse;
  }
  Json rest = {{"weights", std::move(weights)},
               {"biases", std::move(biases)},
               {"output_map", std::move(map.output)},
               {"neuron_maps", std::move(neuron_maps)},
               {"map_size", kMapSize},
               {"neuron_map_size", kNeuronMapSize},
               {"grad_norms", std::move(grad_norms)},
               {"dead_fraction", last_.dead_fraction},
               {"command", command_line(o_, epoch_ > 0 ? epoch_ : o_.epochs)},
               {"diverged", diverged_},
               {"message", message_}};
  for (auto it = rest.begin(); it != rest.end(); ++it) state[it.key()] = std::move(it.value());
  return state;
}

NetworkLab::Point NetworkLab::point(double x1, double x2) {
  if (is_regression(o_))
    ag::fail("net_point: a point's pass is drawn for classification; this is a regression run");
  if (!std::isfinite(x1) || !std::isfinite(x2))
    ag::fail("net_point {}, {}: the point's coordinates must be finite numbers", x1, x2);
  Point p;
  p.x1 = x1;
  p.x2 = x2;
  // The features as expand_features computes them for training: from the float coordinates the
  // data holds, in double, stored as float.
  std::vector<nn::InputFeature> features = input_features(o_.features);
  if (features.empty()) features = {nn::InputFeature::x1, nn::InputFeature::x2};
  for (const nn::InputFeature f : features) {
    p.names.emplace_back(nn::input_feature_name(f));
    p.values.push_back(float(nn::input_feature_value(f, float(x1), float(x2))));
  }
  for (nn::Parameter* parameter : mlp_->parameters())
    for (const float w : parameter->data()) p.values.push_back(w);

  // A data point is known by its coordinates, exactly: the page sends the ones it was given.
  p.label_from = "prediction";
  for (const auto& [set, d] : {std::pair{"train", &points_.train}, {"test", &points_.test}})
    for (std::int64_t i = 0; i < d->rows && p.label_from == "prediction"; ++i)
      if (d->row(i)[0] == float(x1) && d->row(i)[1] == float(x2)) {
        p.label = d->labels[static_cast<std::size_t>(i)];
        p.label_from = set;
      }

  ag::Tape tape;
  if (p.label_from == "prediction") {  // the class the network predicts: nn::predict's rule
    const std::vector<ag::Value> outputs = expand_point(tape, p, p.values).outputs;
    if (outputs.size() == 1) {
      const double threshold = nn::scores_of(loss_) == nn::Scores::probabilities ? 0.5 : 0;
      p.label = outputs[0].value() > threshold;
    } else {
      for (std::size_t k = 1; k < outputs.size(); ++k)
        if (outputs[k].value() > outputs[std::size_t(p.label)].value()) p.label = std::int32_t(k);
    }
    tape.reset();
  }
  const RecordedPoint r = record_point(tape, p, p.values);
  p.names.clear();
  for (const ag::Value& leaf : r.leaves) p.names.emplace_back(leaf.name());
  p.nodes = tape.size();
  try {
    ag::check_drawing_budget(tape, r.loss.id());
  } catch (const ag::Error&) {
    std::size_t edges = 0;
    for (ag::NodeId id = 0; id < tape.size(); ++id) edges += std::size_t(tape.arity(id));
    ag::fail(
        "net_point: one point's pass through this {} network has {} nodes and {} edges, past "
        "the graph lab's drawing budget of {} nodes and {} edges: remove layers or units to see "
        "a point's pass (a 2-8-8-1 network's is about 300 nodes)",
        layers_str(sizes_), tape.size(), edges, ag::kMaxDrawnNodes, ag::kMaxDrawnEdges);
  }
  return p;
}

nn::ScalarNet NetworkLab::expand_point(ag::Tape& tape, const Point& point,
                                       std::span<const double> values) {
  const auto inputs = static_cast<std::size_t>(sizes_.front());
  if (values.size() < inputs || point.names.size() < inputs)
    ag::fail("net_point: {} values and {} names for {} inputs", values.size(), point.names.size(),
             inputs);
  const std::vector<std::string> input_names(point.names.begin(),
                                             point.names.begin() + std::ptrdiff_t(inputs));
  return nn::expand(*mlp_, tape, values.first(inputs),
                    {.max_weights = std::numeric_limits<std::int64_t>::max(),
                     .input_names = input_names,
                     .parameters = values.subspan(inputs)});
}

NetworkLab::RecordedPoint NetworkLab::record_point(ag::Tape& tape, const Point& point,
                                                   std::span<const double> values) {
  nn::ScalarNet net = expand_point(tape, point, values);
  RecordedPoint r{.loss = point_loss(loss_, net.outputs, point.label).named("L"),
                  .leaves = std::move(net.inputs)};
  r.leaves.insert(r.leaves.end(), net.parameters.begin(), net.parameters.end());
  return r;
}

std::string NetworkLab::safetensors_base64() {
  const nn::CheckpointExtras extras{.optimizer = nullptr,
                                    .metadata = checkpoint_metadata(o_, sizes_, data_)};
  return base64(nn::safetensors_bytes(
      *mlp_, extras, fmt::format("tapegrad-{}-epoch-{}.safetensors", o_.data, epoch_)));
}

}  // namespace tapegrad
