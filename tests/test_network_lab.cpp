// The playground's network lab: a config is train's options with train's messages, a session
// trained in slices is `tapegrad train`'s run, its snapshot has the protocol's shapes, and a
// diverging session stops and says why; a point's pass on the scalar tape is the tensor tape's.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tapegrad/core.hpp>
#include <tapegrad/nn/checkpoint.hpp>
#include <tapegrad/nn/loss.hpp>
#include <vector>

#include "network_lab.hpp"

using tapegrad::Json;
using tapegrad::NetworkLab;
using tapegrad::options_from_config;

namespace {

std::vector<float> weights_of(NetworkLab& lab) {
  std::vector<float> all;
  for (nn::Parameter* p : lab.model().parameters())
    all.insert(all.end(), p->data().begin(), p->data().end());
  return all;
}

constexpr const char* kMoons =
    R"({"data": "moons", "hidden": [8, 8], "act": "relu", "lr": 0.03, "epochs": 6, "batch": 10,
        "seed": 1, "noise": 0.1})";

}  // namespace

TEST_CASE("a config is train's options, given: defaults fill the rest as train's do") {
  const tapegrad::NnOptions o = options_from_config(kMoons);
  CHECK(o.data == "moons");
  CHECK(o.hidden == "8,8");
  CHECK(o.lr == 0.03);
  CHECK(o.batch == 10);
  CHECK(o.was_given("--lr"));
  CHECK(!o.was_given("--opt"));
  CHECK(options_from_config(R"({"hidden": [], "features": ["x1", "x1*x2"]})").hidden == "none");
  CHECK(options_from_config(R"({"features": ["x1", "x1*x2"]})").features == "x1,x1*x2");
  NetworkLab lab(options_from_config(R"({"data": "circles"})"));
  CHECK(lab.options().lr == 0.01);  // Note [Defaults per data set]
  CHECK(lab.options().hidden == "16,16");
  CHECK(lab.options().loss == "ce");
}

TEST_CASE("a bad config gets the command line's own message, or one naming its key") {
  CHECK_THROWS_WITH(NetworkLab(options_from_config(R"({"data": "moons", "lr": -1})")),
                    "--lr -1: the learning rate must be a positive number");
  CHECK_THROWS_WITH(NetworkLab(options_from_config(R"({"data": "moons", "act": "swish"})")),
                    doctest::Contains("swish"));
  CHECK_THROWS_WITH(NetworkLab(options_from_config(R"({"data": "rings"})")),
                    doctest::Contains("unknown data set 'rings'; the known data sets are"));
  CHECK_THROWS_WITH(NetworkLab(options_from_config(R"({"data": "moons", "n": 1})")),
                    "--n 1: moons needs from 2 to 10000000 rows");
  CHECK_THROWS_WITH(options_from_config(R"({"data": "moons", "rate": 1})"),
                    doctest::Contains("config: unknown key \"rate\"; the keys are data, hidden"));
  CHECK_THROWS_WITH(options_from_config(R"({"lr": "fast"})"),
                    "config: \"lr\" must be a number, not \"fast\"");
  CHECK_THROWS_WITH(options_from_config(R"({"hidden": [8, "x"]})"),
                    doctest::Contains("config: \"hidden\" must be an array of layer sizes"));
  CHECK_THROWS_WITH(options_from_config(R"({"opt": "rmsprop"})"),
                    "--opt rmsprop: not one of sgd, adam");
  CHECK_THROWS_WITH(options_from_config("[1, 2]"), doctest::Contains("config: not a JSON object"));
  CHECK_THROWS_WITH(options_from_config("{"), doctest::Contains("config: not JSON"));
  CHECK_THROWS_WITH(NetworkLab(options_from_config(R"({"data": "fashion-mnist"})")),
                    doctest::Contains("the network lab draws the synthetic sets"));
}

TEST_CASE("epochs trained in slices are train's run: the weights of one fit over all of them") {
  NetworkLab whole(options_from_config(kMoons));
  const Json summary = whole.summary();
  NetworkLab sliced(options_from_config(kMoons));
  sliced.train(1);
  sliced.train(2);
  const Json last = sliced.train(3);
  CHECK(last["epoch"] == 6);
  CHECK(weights_of(sliced) == weights_of(whole));
  CHECK(last["train_accuracy"].get<double>() == summary["train_accuracy"].get<double>());
  CHECK(last["test_accuracy"].get<double>() == summary["test_accuracy"].get<double>());
  CHECK(summary["epochs"] == 6);
  CHECK(last["dead_fraction"] == summary["dead_fraction"]);
}

TEST_CASE("created and snapshot: the protocol's keys and shapes") {
  NetworkLab lab(options_from_config(
      R"({"data": "circles", "hidden": [4, 3], "act": "tanh", "features": ["x1", "x2", "x1^2"],
          "loss": "bce_logits", "n": 100, "test_fraction": 0.2, "seed": 2, "lr": 0.1})"));
  const Json c = lab.created();
  CHECK(c["layers"] == std::vector<std::int64_t>{3, 4, 3, 1});
  CHECK(c["inputs"] == std::vector<std::string>{"x1", "x2", "x1^2"});
  CHECK(c["classes"] == 2);
  CHECK(c["train"].size() == 80);
  CHECK(c["test"].size() == 20);
  CHECK(c["train"][0].size() == 3);  // x1, x2 (before --features), label
  const double lo = c["domain"]["x1"][0], hi = c["domain"]["x1"][1];
  for (const char* set : {"train", "test"})
    for (const Json& point : c[set]) {
      CHECK(point[0].get<double>() > lo);
      CHECK(point[1].get<double>() < hi);
    }
  CHECK(c["command"] ==
        "tapegrad train --data circles --hidden 4,3 --act tanh --out none --loss bce_logits "
        "--opt adam --lr 0.1 --epochs 100 --batch 32 --seed 2 --n 100 --noise 0.1 --features "
        "'x1,x2,x1^2' --test-fraction 0.2");
  CHECK(c["epoch"] == 0);
  CHECK(c["map_size"] == NetworkLab::kMapSize);
  CHECK(c["output_map"].size() == 50 * 50);
  CHECK(c["neuron_maps"].size() == 2);
  CHECK(c["neuron_maps"][0].size() == 4);
  CHECK(c["neuron_maps"][1].size() == 3);
  CHECK(c["neuron_maps"][1][2].size() == 16 * 16);
  for (const Json& cell : c["neuron_maps"][0][1]) {  // tanh
    CHECK(cell.get<double>() >= -1);
    CHECK(cell.get<double>() <= 1);
  }
  CHECK(c["weights"].size() == 3);
  CHECK(c["weights"][0].size() == 4);     // rows: the layer's outputs
  CHECK(c["weights"][0][0].size() == 3);  // columns: its inputs
  CHECK(c["biases"][2].size() == 1);
  CHECK(c["grad_norms"] == std::vector<double>{0, 0, 0});  // no step yet
  CHECK(c["diverged"] == false);

  const Json s = lab.train(30);
  CHECK(s["epoch"] == 30);
  CHECK(s["test_accuracy"].get<double>() >= 0.9);
  for (const Json& g : s["grad_norms"]) CHECK(g.get<double>() > 0);
  CHECK(s["dead_fraction"].size() == 0);  // tanh has no dead units (nn::DeadUnits)
  // The map reads the model: where the class-1 points (the inner circle) are, the map says 1.
  std::size_t agree = 0, inner = 0;
  for (const Json& point : c["train"]) {
    if (point[2] != 1) continue;
    const double step = (hi - lo) / 50;
    const auto col = static_cast<std::size_t>((point[0].get<double>() - lo) / step);
    const auto row = static_cast<std::size_t>((hi - point[1].get<double>()) / step);
    agree += s["output_map"][row * 50 + col].get<double>() > 0.5;
    ++inner;
  }
  CHECK(agree >= inner * 9 / 10);
  CHECK(s["command"].get<std::string>().find("--epochs 30 ") != std::string::npos);
}

TEST_CASE("a diverging session stops, says why, and trains no more") {
  NetworkLab lab(options_from_config(
      R"({"data": "moons", "hidden": [8], "opt": "sgd", "lr": 1e30, "loss": "mse", "out": "none"})"));
  const Json s = lab.train(5);
  CHECK(s["diverged"] == true);
  CHECK(s["message"].get<std::string>().find("Lower the learning rate (this run's is 1e+30)") !=
        std::string::npos);
  const std::int64_t stopped = s["epoch"];
  CHECK(stopped <= 5);
  CHECK(lab.train(3)["epoch"] == stopped);
  CHECK_THROWS_WITH(lab.train(0), "net_train 0: the epochs must be from 1 to 100000");
}

namespace {

// The tensor tape's gradients of every weight and bias for a batch of the one point (x1, x2)
// with `label`, its features made by expand_features as training makes them, and its loss.
struct TensorPoint {
  std::vector<float> features;
  std::vector<float> grads;  // named_parameters() order
  double loss = 0;
};
TensorPoint tensor_point(NetworkLab& lab, double x1, double x2, std::int32_t label) {
  nn::Dataset one;
  one.rows = 1;
  one.cols = 2;
  one.classes = 3;
  one.features = {float(x1), float(x2)};
  one.labels = {label};
  const std::vector<nn::InputFeature> features = tapegrad::input_features(lab.options().features);
  if (!features.empty()) one = nn::expand_features(one, features);
  ag::TensorTape tape;
  const ag::Tensor out = lab.model()(one.inputs(tape));
  const ag::Tensor y = tape.input(ag::Shape{1, 1}, {double(label)}, "y", ag::DType::f32);
  ag::Tensor loss;
  switch (nn::parse_loss(lab.options().loss)) {
    case nn::LossKind::bce: loss = nn::bce_loss(out, y); break;
    case nn::LossKind::bce_with_logits: loss = nn::bce_with_logits(out, y); break;
    case nn::LossKind::cross_entropy: loss = nn::cross_entropy(out, one.labels); break;
    case nn::LossKind::mse: loss = nn::mse_loss(out, y); break;
    case nn::LossKind::hinge:
      loss =
          nn::hinge_loss(out, tape.input(ag::Shape{1, 1}, {2.0 * label - 1}, "t", ag::DType::f32));
      break;
    case nn::LossKind::l1:
    case nn::LossKind::huber: FAIL("a regression loss"); break;
  }
  lab.model().zero_grad();
  tape.backward(loss);
  TensorPoint t{.features = one.features, .grads = {}, .loss = loss.item()};
  for (nn::Parameter* p : lab.model().parameters())
    t.grads.insert(t.grads.end(), p->grad().begin(), p->grad().end());
  return t;
}

}  // namespace

TEST_CASE("a point's pass on the scalar tape has the tensor tape's gradient of every weight") {
  // Each of the session's losses, with the page's features; trained a little, so that the
  // weights are not the initial ones and some ReLUs are off.
  const char* configs[] = {
      R"({"data": "moons", "hidden": [8, 8], "act": "relu", "loss": "bce_logits", "seed": 3,
          "features": ["x1", "x2", "x1*x2", "sin_x1", "x2^2"]})",
      R"({"data": "spirals", "hidden": [6], "act": "tanh", "seed": 4})",  // ce, three classes
      R"({"data": "circles", "hidden": [5, 3], "act": "elu", "out": "sigmoid", "loss": "bce"})",
      R"({"data": "xor", "hidden": [4], "act": "leaky_relu", "loss": "hinge"})",
      R"({"data": "gaussian", "hidden": [4], "act": "sigmoid", "out": "sigmoid", "loss": "mse"})",
  };
  for (const char* config : configs) {
    INFO(config);
    NetworkLab lab(options_from_config(config));
    const Json created = lab.created();
    lab.train(3);
    const Json& row = created["train"][1];  // xor has four points
    // A data point takes its own label; a place off the data, the class the network predicts.
    for (const bool on_data : {true, false}) {
      const double x1 = on_data ? row[0].get<double>() : 0.3;
      const double x2 = on_data ? row[1].get<double>() : -0.2;
      const NetworkLab::Point p = lab.point(x1, x2);
      CHECK(p.label_from == (on_data ? "train" : "prediction"));
      if (on_data) CHECK(p.label == row[2].get<std::int32_t>());

      ag::Tape tape;
      const NetworkLab::RecordedPoint r = lab.record_point(tape, p, p.values);
      tape.backward(r.loss);
      const TensorPoint t = tensor_point(lab, x1, x2, p.label);
      REQUIRE(r.leaves.size() == t.features.size() + t.grads.size());
      CHECK(r.loss.value() == doctest::Approx(t.loss).epsilon(1e-6));
      for (std::size_t i = 0; i < t.features.size(); ++i) {
        CHECK(p.values[i] == double(t.features[i]));  // computed as training computes them
        CHECK(r.leaves[i].name() == p.names[i]);
      }
      float largest = 0;
      for (const float g : t.grads) largest = std::max(largest, std::abs(g));
      for (std::size_t i = 0; i < t.grads.size(); ++i) {
        const ag::Value leaf = r.leaves[t.features.size() + i];
        INFO(leaf.name());
        // Float's rounding, relative to the largest gradient: a gradient near 0 is a
        // difference of larger terms.
        CHECK(std::abs(leaf.grad() - double(t.grads[i])) <= 1e-6 * largest);
      }
    }
  }
}

TEST_CASE("a point's pass is named as the lecture names it, and the graph lab can step it") {
  NetworkLab lab(options_from_config(R"({"data": "moons", "hidden": [8, 8], "act": "relu",
      "loss": "bce_logits", "features": ["x1", "x2", "x1^2"]})"));
  const NetworkLab::Point p = lab.point(0.5, 0.25);
  CHECK(p.names.size() == 3 + (3 * 8 + 8) + (8 * 8 + 8) + (8 + 1));
  CHECK(p.names[0] == "x1");
  CHECK(p.names[2] == "x1^2");
  CHECK(p.values[2] == 0.25);
  CHECK(p.names[3] == "w1_11");
  CHECK(p.names[3 + 3 * 8] == "b1_1");
  CHECK(p.names.back() == "b3_1");
  ag::Tape tape;
  const NetworkLab::RecordedPoint r = lab.record_point(tape, p, p.values);
  CHECK(r.loss.name() == "L");
  CHECK(tape.size() == p.nodes);
  // Within the page's budget for stepping (Note [The step plan]): the plan is made, not refused.
  CHECK(p.nodes <= ag::kMaxPageNodes);
  CHECK(ag::step_plan_json(tape, r.loss).find("\"steps\"") != std::string::npos);
}

TEST_CASE("a point's pass recorded with one leaf moved: its central difference is the gradient") {
  NetworkLab lab(options_from_config(
      R"({"data": "circles", "hidden": [4, 4], "act": "tanh", "loss": "bce_logits", "seed": 5})"));
  lab.train(2);
  const NetworkLab::Point p = lab.point(0.4, -0.7);
  ag::Tape tape;
  const NetworkLab::RecordedPoint r = lab.record_point(tape, p, p.values);
  tape.backward(r.loss);
  for (std::size_t i = 0; i < p.values.size(); ++i) {
    INFO(p.names[i]);
    const double h = 1e-6;
    std::vector<double> moved = p.values;
    const auto loss_at = [&](double v) {
      moved[i] = v;
      ag::Tape t;
      return lab.record_point(t, p, moved).loss.value();
    };
    const double difference = (loss_at(p.values[i] + h) - loss_at(p.values[i] - h)) / (2 * h);
    CHECK(r.leaves[i].grad() == doctest::Approx(difference).epsilon(1e-6).scale(1));
  }
}

TEST_CASE("a point's pass past the drawing budget is refused, saying how large it is") {
  NetworkLab lab(options_from_config(
      R"({"data": "moons", "hidden": [8, 8, 8, 8, 8, 8], "loss": "bce_logits"})"));
  CHECK_THROWS_WITH(lab.point(0, 0),
                    doctest::Contains("net_point: one point's pass through this 2,8,8,8,8,8,8,1 "
                                      "network has"));
  CHECK_THROWS_WITH(lab.point(0, 0), doctest::Contains("past the graph lab's drawing budget"));
  // A regression session has no class to take as the target: refused by name, as the page says.
  NetworkLab plane(
      options_from_config(R"({"data": "plane", "hidden": [4], "task": "regression"})"));
  CHECK_THROWS_WITH(plane.point(0, 0),
                    "net_point: a point's pass is drawn for classification; "
                    "this is a regression run");
}

namespace {

// RFC 4648's base64 read back, as atob() reads it: four digits make three bytes, '=' pads.
std::string from_base64(std::string_view text) {
  constexpr std::string_view kDigits =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  REQUIRE(text.size() % 4 == 0);
  std::string bytes;
  for (std::size_t at = 0; at < text.size(); at += 4) {
    std::uint32_t group = 0;
    std::size_t pad = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const char c = text[at + k];
      pad += c == '=';
      const std::size_t digit = c == '=' ? 0 : kDigits.find(c);
      REQUIRE(digit != std::string_view::npos);
      group = group << 6 | std::uint32_t(digit);
    }
    for (std::size_t k = 0; k < 3 - pad; ++k) bytes += char(group >> (16 - 8 * k) & 255);
  }
  return bytes;
}

}  // namespace

TEST_CASE("the model as base64 safetensors loads with the checkpoint loader, equal to the lab's") {
  NetworkLab lab(options_from_config(R"({"data": "moons", "hidden": [8, 8], "act": "tanh",
      "loss": "bce_logits", "features": ["x1", "x2", "sin_x1"], "seed": 7})"));
  lab.train(4);
  const std::string bytes = from_base64(lab.safetensors_base64());
  const nn::SafetensorsFile file =
      nn::parse_safetensors(std::as_bytes(std::span(bytes.data(), bytes.size())), "download");
  CHECK(file.checksummed);
  CHECK(file.metadata.at("data.name") == "moons");
  CHECK(file.metadata.at("model.layers") == "3,8,8,1");
  CHECK(file.metadata.at("data.input_features") == "x1,x2,sin_x1");
  CHECK(file.tensors.at("layers.0.weight").shape == std::vector<std::int64_t>{8, 3});
  CHECK(file.tensors.at("layers.4.bias").shape == std::vector<std::int64_t>{1});
  CHECK(file.tensors.size() == 6);  // weights and biases; no optimizer state

  nn::MLP loaded({3, 8, 8, 1}, ag::Op::tanh);
  nn::load(loaded, file, "download");
  std::vector<float> weights;
  for (nn::Parameter* p : loaded.parameters())
    weights.insert(weights.end(), p->data().begin(), p->data().end());
  CHECK(weights == weights_of(lab));
}

TEST_CASE("a regression session: TF Playground's plane, MSE, a linear output, R² and RMSE") {
  constexpr const char* kPlane =
      R"({"data": "plane", "hidden": [4], "act": "tanh", "opt": "sgd", "lr": 0.03, "epochs": 30,
          "batch": 10, "seed": 1, "task": "regression"})";
  NetworkLab lab(options_from_config(kPlane));
  CHECK(lab.options().loss == "mse");
  CHECK(lab.options().out == "none");  // TF's linear output for regression
  const Json c = lab.created();
  CHECK(c["task"] == "regression");
  CHECK(c["layers"] == std::vector<std::int64_t>{2, 4, 1});
  CHECK(c["train"].size() == 300);
  // Each point carries its target, (x1 + x2) / 10 without noise.
  for (const Json& point : c["train"])
    CHECK(point[2].get<double>() ==
          doctest::Approx((point[0].get<double>() + point[1].get<double>()) / 10).epsilon(1e-5));
  CHECK(std::isnan(c["test_accuracy"].get<double>()));  // null in the JSON text

  // Trained in slices, it is the summary's run; the snapshot has the summary's R² and RMSE.
  NetworkLab whole(options_from_config(kPlane));
  const Json summary = whole.summary();
  CHECK(summary.contains("r2"));
  CHECK(!summary.contains("test_accuracy"));
  lab.train(10);
  const Json s = lab.train(20);
  CHECK(weights_of(lab) == weights_of(whole));
  CHECK(s["test_r2"].get<double>() == summary["r2"].get<double>());
  CHECK(s["test_rmse"].get<double>() == summary["rmse"].get<double>());
  CHECK(s["train_r2"].get<double>() == summary["train_r2"].get<double>());
  CHECK(s["test_r2"].get<double>() > 0.9);
  // RMSE is the square root of the test loss, MSE.
  CHECK(s["test_rmse"].get<double>() ==
        doctest::Approx(std::sqrt(s["test_loss"].get<double>())).epsilon(1e-4));

  // The output map is the predicted value itself: near the plane (x1 + x2) / 10 at each cell.
  const double lo = c["domain"]["x1"][0], hi = c["domain"]["x1"][1];
  const double step = (hi - lo) / 50;
  double error = 0;
  for (std::size_t row = 0; row < 50; ++row)
    for (std::size_t col = 0; col < 50; ++col) {
      const double x1 = lo + (double(col) + 0.5) * step, x2 = hi - (double(row) + 0.5) * step;
      error += std::abs(s["output_map"][row * 50 + col].get<double>() - (x1 + x2) / 10);
    }
  MESSAGE("mean |map - plane| ", error / 2500);
  CHECK(error / 2500 < 0.1);

  CHECK_THROWS_WITH(NetworkLab(options_from_config(R"({"data": "moons", "task": "regression"})")),
                    doctest::Contains("--task regression: moons has classes"));
  CHECK_THROWS_WITH(
      NetworkLab(options_from_config(R"({"data": "plane", "task": "classification"})")),
      "--task classification: plane is a regression set (real-valued targets)");
}

TEST_CASE("noise_percent is TF Playground's control, made --noise per data set in one table") {
  const auto noise_of = [](const char* config) {
    return NetworkLab(options_from_config(config)).options().noise;
  };
  // Playground's own recipes take percent / 100 (Note [The noise in percent]).
  CHECK(noise_of(R"({"data": "gaussian", "noise_percent": 20})") == 0.2);
  CHECK(noise_of(R"({"data": "two-spirals", "noise_percent": 50})") == 0.5);
  CHECK(noise_of(R"({"data": "plane", "noise_percent": 10})") == 0.1);
  // Gaussian blur in a unit radius: the sigma of Playground's uniform shift, f / sqrt(3).
  CHECK(noise_of(R"({"data": "moons", "noise_percent": 50})") ==
        doctest::Approx(0.5 / std::sqrt(3.0)));
  CHECK(noise_of(R"({"data": "circles", "noise_percent": 0})") == 0);
  CHECK(noise_of(R"({"data": "spirals", "noise_percent": 20})") == doctest::Approx(0.2));
  // The rows are those of the --noise it makes.
  NetworkLab percent(options_from_config(R"({"data": "gaussian", "noise_percent": 30})"));
  NetworkLab sigma(options_from_config(R"({"data": "gaussian", "noise": 0.3})"));
  CHECK(percent.created()["train"] == sigma.created()["train"]);
  CHECK(percent.created()["noise"] == 0.3);
  CHECK_THROWS_WITH(
      NetworkLab(options_from_config(R"({"data": "moons", "noise": 0.1, "noise_percent": 10})")),
      "--noise-percent 10: give it or --noise 0.1, not both");
  CHECK_THROWS_WITH(NetworkLab(options_from_config(R"({"data": "moons", "noise_percent": -5})")),
                    "--noise-percent -5: the noise must be a finite percentage >= 0");
}

TEST_CASE("set_rates changes lr, l1 and l2 in place: the weights stay and training goes on") {
  constexpr const char* kSgd =
      R"({"data": "moons", "hidden": [8], "act": "tanh", "opt": "sgd", "lr": 0.03, "epochs": 4,
          "batch": 10, "seed": 1, "noise": 0.1})";
  // Changed before the first epoch, the rates are those of a run that had them from the start:
  // the optimizer and fit read them afresh at each step.
  NetworkLab changed(options_from_config(kSgd));
  const Json reply = changed.set_rates(R"({"lr": 0.3, "l2": 0.01})");
  CHECK(reply["lr"] == 0.3);
  CHECK(reply["command"].get<std::string>().find("--lr 0.3 ") != std::string::npos);
  CHECK(reply["command"].get<std::string>().find("--l2 0.01") != std::string::npos);
  changed.train(4);
  NetworkLab fresh(options_from_config(
      R"({"data": "moons", "hidden": [8], "act": "tanh", "opt": "sgd", "lr": 0.3, "epochs": 4,
          "batch": 10, "seed": 1, "noise": 0.1, "l2": 0.01})"));
  fresh.train(4);
  CHECK(weights_of(changed) == weights_of(fresh));

  // Midway, nothing is reset: the epoch and the weights are kept, and the next epoch uses the
  // new rate (unlike a session that kept the old one).
  NetworkLab midway(options_from_config(kSgd)), kept(options_from_config(kSgd));
  midway.train(2);
  kept.train(2);
  const std::vector<float> before = weights_of(midway);
  midway.set_rates(R"({"lr": 0.3})");
  CHECK(weights_of(midway) == before);
  CHECK(midway.snapshot()["epoch"] == 2);
  CHECK(midway.train(1)["epoch"] == 3);
  kept.train(1);
  CHECK(weights_of(midway) != weights_of(kept));

  // Bad rates: the command line's messages, and the session keeps its rates.
  CHECK_THROWS_WITH(midway.set_rates(R"({"lr": -1})"),
                    "--lr -1: the learning rate must be a positive number");
  CHECK_THROWS_WITH(midway.set_rates(R"({"l1": -0.5})"),
                    "--l1 -0.5: the regularization rate must be a finite number >= 0");
  CHECK_THROWS_WITH(midway.set_rates(R"({"momentum": 0.9})"),
                    "net_set_rates: unknown key \"momentum\"; the rates are lr, l1 and l2");
  CHECK_THROWS_WITH(midway.set_rates(R"({"lr": "fast"})"),
                    "net_set_rates: \"lr\" must be a number, not \"fast\"");
  CHECK(midway.options().lr == 0.3);
}
