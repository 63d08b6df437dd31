// Dropout, LayerNorm and BatchNorm1d: their training and evaluation behaviour, central
// differences through the normalizations, running statistics, buffers and their checkpoints.

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/gradcheck.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

using namespace ag;

namespace {

std::vector<float> vec(std::span<const float> s) { return {s.begin(), s.end()}; }

std::vector<double> ramp(std::int64_t n, double start, double step) {
  std::vector<double> out;
  for (std::int64_t i = 0; i < n; ++i) out.push_back(start + step * double(i * i % 7) + 0.1 * i);
  return out;
}

std::vector<std::string> names_of(nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [name, p] : m.named_parameters()) out.push_back(name);
  return out;
}

void check_gradient(auto f, std::vector<TensorArg> args, const char* what) {
  const GradcheckResult r = gradcheck(f, std::span<const TensorArg>(args));
  INFO(what, ": ", r.message);
  CHECK(r.ok);
}

}  // namespace

TEST_CASE(
    "Dropout zeroes a fraction p in training, scales the rest by 1 / (1 - p), and is the "
    "identity in eval") {
  TensorTape tape;
  const std::vector<float> ones(10000, 1.0f);
  Tensor x = tape.input<float>(Shape{100, 100}, std::span<const float>(ones), "x");
  nn::Dropout dropout(0.25, 7);
  Tensor y = dropout(x);
  std::int64_t dropped = 0, scaled = 0;
  for (double v : y.values()) {
    dropped += v == 0;
    scaled += v == double(float(4.0 / 3));
  }
  CHECK(dropped + scaled == 10000);
  // binomial(10000, 0.25): standard deviation 43, so 4.6 of them either side
  CHECK(dropped > 2300);
  CHECK(dropped < 2700);
  // the gradient goes through the same mask
  tape.backward(sum(y));
  CHECK(x.grads() == y.values());
  // a new mask every forward, the same masks from the same seed
  nn::Dropout again(0.25, 7);
  CHECK(again(x).values() == y.values());
  CHECK(again(x).values() != y.values());
  dropout.eval();
  CHECK(dropout(x).id() == x.id());
  CHECK(nn::Dropout(0)(x).id() == x.id());
  const std::vector<double> all_dropped = nn::Dropout(1)(x).values();
  CHECK(all_dropped == std::vector<double>(10000, 0.0));
  CHECK_THROWS_WITH_AS(nn::Dropout(1.5), "Dropout: p must be in [0, 1], not 1.5", Error);
  CHECK(nn::Dropout(0.1).describe() == "Dropout(p=0.1)");
}

TEST_CASE("LayerNorm gives each row mean 0 and variance 1, then its weight and bias") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 4}, {1, 2, 3, 6, -1, -1, 5, 1}, "x", DType::f32);
  nn::LayerNorm norm(4);
  CHECK(norm.weight->data()[0] == 1);
  CHECK(norm.bias->data()[0] == 0);
  Tensor y = norm(x);
  for (std::int64_t row = 0; row < 2; ++row) {
    double mean = 0, square = 0;
    for (std::int64_t f = 0; f < 4; ++f) mean += y.value(row * 4 + f) / 4;
    for (std::int64_t f = 0; f < 4; ++f) square += std::pow(y.value(row * 4 + f) - mean, 2) / 4;
    CHECK(mean == doctest::Approx(0).epsilon(1e-6));
    CHECK(square == doctest::Approx(1).epsilon(1e-4));  // var / (var + eps)
  }
  // row 0: mean 3, variance 3.5: (1 - 3) / sqrt(3.5 + 1e-5)
  CHECK(y.value(0) == doctest::Approx(-2 / std::sqrt(3.5 + 1e-5)).epsilon(1e-6));
  norm.weight->data()[0] = 2;
  norm.bias->data()[0] = 0.5;
  CHECK(norm(x).value(0) == doctest::Approx(0.5 - 4 / std::sqrt(3.5 + 1e-5)).epsilon(1e-6));
  tape.backward(sum(norm(x)));
  CHECK(norm.bias->grad()[0] == 2);  // one per row
  CHECK(names_of(norm) == std::vector<std::string>{"weight", "bias"});
  CHECK(nn::LayerNorm(4, 1e-5, false).parameters().empty());
  CHECK(norm.describe() == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)");
  CHECK_THROWS_WITH_AS(norm(tape.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "", DType::f32)),
                       "LayerNorm(4): input (2, 3) must have 4 features in its last axis", Error);
}

TEST_CASE("LayerNorm and BatchNorm1d in training agree with central differences") {
  const TensorArg x{Shape{3, 4}, ramp(12, -1, 0.4)};
  check_gradient(
      [](TensorTape&, std::span<const Tensor> in) { return nn::LayerNorm(4, 1e-5, false)(in[0]); },
      {x}, "layer norm");
  check_gradient(
      [](TensorTape&, std::span<const Tensor> in) {
        return nn::BatchNorm1d(4, {.affine = false})(in[0]);
      },
      {x}, "batch norm, training");
  check_gradient(
      [](TensorTape&, std::span<const Tensor> in) {
        nn::BatchNorm1d norm(4, {.affine = false});
        norm.eval();
        return norm(in[0]);
      },
      {x}, "batch norm, evaluation");
}

TEST_CASE("BatchNorm1d normalizes by the batch in training and by its running statistics in eval") {
  TensorTape tape;
  // feature 0: 1, 3 (mean 2, biased variance 1, unbiased 2); feature 1: 4, 4 (variance 0)
  Tensor x = tape.input(Shape{2, 2}, {1, 4, 3, 4}, "x", DType::f32);
  nn::BatchNorm1d norm(2);
  CHECK(vec(norm.running_var->data()) == std::vector<float>{1, 1});
  Tensor y = norm(x);
  CHECK(y.value(0) == doctest::Approx(-1 / std::sqrt(1 + 1e-5)).epsilon(1e-6));
  CHECK(y.value(1) == 0);
  // r = 0.9 r + 0.1 batch, with the unbiased variance
  CHECK(norm.running_mean->data()[0] == doctest::Approx(0.2));
  CHECK(norm.running_mean->data()[1] == doctest::Approx(0.4));
  CHECK(norm.running_var->data()[0] == doctest::Approx(0.9 + 0.2));
  CHECK(norm.running_var->data()[1] == doctest::Approx(0.9));
  CHECK(norm.num_batches_tracked->integers()[0] == 1);
  // evaluation: one row alone, by the running statistics, which stay as they are
  norm.eval();
  Tensor row = tape.input(Shape{1, 2}, {1.2, 0.4}, "row", DType::f32);
  CHECK(norm(row).value(0) == doctest::Approx(1 / std::sqrt(1.1 + 1e-5)).epsilon(1e-5));
  CHECK(norm(row).value(1) == doctest::Approx(0));
  CHECK(norm.num_batches_tracked->integers()[0] == 1);
  norm.train();
  CHECK_THROWS_WITH_AS(norm(row),
                       "BatchNorm1d(2): a training batch needs more than 1 row to have a "
                       "variance, not input (1, 2)",
                       Error);
  // momentum unset: the running mean is the average of the batch means
  nn::BatchNorm1d cumulative(2, {.momentum = std::nullopt});
  cumulative(x);
  cumulative(tape.input(Shape{2, 2}, {5, 0, 7, 2}, "x2", DType::f32));
  CHECK(vec(cumulative.running_mean->data()) == std::vector<float>{4, 2.5});
  CHECK(cumulative.num_batches_tracked->integers()[0] == 2);
  nn::BatchNorm1d untracked(2, {.track_running_stats = false});
  CHECK(untracked.named_buffers().empty());
  untracked.eval();
  CHECK(untracked(x).value(0) == doctest::Approx(y.value(0)));  // batch statistics in eval too
  CHECK(norm.describe() ==
        "BatchNorm1d(2, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  CHECK_THROWS_WITH_AS(norm(tape.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "", DType::f32)),
                       "BatchNorm1d(2): input (2, 3) must be (rows, 2)", Error);
}

TEST_CASE("buffers are named as torch's state_dict names them and round-trip through checkpoints") {
  nn::Sequential model;
  model.push_back(nn::Linear(nn::LinearOptions(3, 4).seed(2)));
  model.push_back(nn::BatchNorm1d(4));
  model.push_back(nn::ReLU());
  model.push_back(nn::Dropout(0.2));
  model.push_back(nn::Linear(nn::LinearOptions(4, 2).seed(3)));
  model.push_back(nn::LayerNorm(2));
  std::vector<std::string> buffers;
  for (auto& [name, b] : model.named_buffers()) buffers.push_back(name);
  CHECK(buffers ==
        std::vector<std::string>{"1.running_mean", "1.running_var", "1.num_batches_tracked"});
  CHECK(model.parameters().size() == 8);  // 2 Linear, BatchNorm and LayerNorm: weight and bias

  TensorTape tape;
  for (int step = 0; step < 3; ++step) {
    tape.reset();
    model(tape.input(Shape{5, 3}, {1, 2, 3, 0, 1, -1, 2, 2, 2, -1, 0, 4, 3, 1, step * 1.0}, "x",
                     DType::f32));
  }
  const auto path = std::filesystem::temp_directory_path() /
                    ("tapegrad-norm-" + std::to_string(::getpid()) + ".safetensors");
  nn::save(model, path.string());
  const nn::SafetensorsFile file = nn::read_safetensors(path.string());
  CHECK(file.tensors.at("1.num_batches_tracked").dtype == "I64");
  CHECK(file.tensors.at("1.num_batches_tracked").shape.empty());
  CHECK(file.tensors.at("1.running_var").dtype == "F32");

  nn::Sequential copy;
  copy.push_back(nn::Linear(3, 4));
  auto& norm = copy.push_back(nn::BatchNorm1d(4));
  copy.push_back(nn::ReLU());
  copy.push_back(nn::Dropout(0.2));
  copy.push_back(nn::Linear(4, 2));
  copy.push_back(nn::LayerNorm(2));
  nn::load(copy, path.string());
  CHECK(norm.num_batches_tracked->integers()[0] == 3);
  CHECK(vec(norm.running_mean->data()) ==
        vec(dynamic_cast<nn::BatchNorm1d&>(model[1]).running_mean->data()));

  // a model without the buffers refuses the file, naming them
  nn::Sequential plain;
  plain.push_back(nn::Linear(3, 4));
  plain.push_back(nn::LayerNorm(4));
  plain.push_back(nn::ReLU());
  plain.push_back(nn::Dropout(0.2));
  plain.push_back(nn::Linear(4, 2));
  plain.push_back(nn::LayerNorm(2));
  CHECK_THROWS_WITH_AS(nn::load(plain, path.string()),
                       (path.string() + ": 1.num_batches_tracked is in the file but not in the "
                                        "model; 1.running_mean is in the file but not in the "
                                        "model; 1.running_var is in the file but not in the model")
                           .c_str(),
                       Error);
  std::filesystem::remove(path);
}

TEST_CASE("an MLP with norms and dropout: Linear, norm, activation, Dropout per hidden layer") {
  nn::MLP mlp({2, 8, 8, 1}, ag::Op::relu, nn::Activation::none, 4,
              {.norm = nn::MLPExtras::Norm::batch, .dropout = 0.1});
  CHECK(mlp.layers.size() == 9);  // 2 x (Linear, BatchNorm1d, ReLU, Dropout), Linear
  CHECK(names_of(mlp) == std::vector<std::string>{
                             "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                             "layers.4.weight", "layers.4.bias", "layers.5.weight", "layers.5.bias",
                             "layers.8.weight", "layers.8.bias"});
  CHECK(mlp.named_buffers().front().first == "layers.1.running_mean");
  CHECK(mlp.linears().size() == 3);
  CHECK(dynamic_cast<nn::Dropout*>(&mlp.layers[3]) != nullptr);
  nn::MLP layer_norm({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 4,
                     {.norm = nn::MLPExtras::Norm::layer});
  CHECK(dynamic_cast<nn::LayerNorm*>(&layer_norm.layers[1]) != nullptr);
  CHECK(layer_norm.layers.size() == 4);
  CHECK(nn::parse_norm("layer") == nn::MLPExtras::Norm::layer);
  CHECK_THROWS_WITH_AS(nn::parse_norm("group"),
                       "unknown norm 'group': use one of none, layer, batch", Error);
  CHECK_THROWS_WITH_AS(nn::MLP({2, 1}, ag::Op::relu, nn::Activation::none, 0, {.dropout = -0.1}),
                       "MLP: dropout must be in [0, 1], not -0.1", Error);
  Tape scalar_tape;
  const std::vector<double> x{0.5, -1};
  CHECK_THROWS_WITH_AS(nn::expand(mlp, scalar_tape, x, nn::ScalarLoss::none, {}),
                       "expand: an MLP with dropout or normalization layers has no scalar "
                       "expansion",
                       Error);

  // it trains, and evaluation (running statistics, no dropout) is deterministic
  nn::Dataset data = nn::moons(200, 0.1, 2);
  nn::Adam adam(mlp.parameters(), {.lr = 0.02});
  nn::FitOptions options;
  options.epochs = 30;
  options.batch_size = 50;
  options.loss = nn::LossKind::bce_with_logits;
  options.progress = nn::FitOptions::Progress::quiet;
  nn::fit(mlp, adam, data, options);
  CHECK(nn::evaluate(mlp, data, nn::LossKind::bce_with_logits).accuracy >= 0.85);
  CHECK(nn::evaluate(mlp, data, nn::LossKind::bce_with_logits).loss ==
        nn::evaluate(mlp, data, nn::LossKind::bce_with_logits).loss);
  CHECK(dynamic_cast<nn::BatchNorm1d&>(mlp.layers[1]).num_batches_tracked->integers()[0] == 120);
}

TEST_CASE("fit refuses, before the first step, batches that leave BatchNorm1d one row") {
  nn::Dataset data = nn::moons(101, 0.1, 2);
  nn::MLP mlp({2, 4, 1}, ag::Op::relu, nn::Activation::none, 1,
              {.norm = nn::MLPExtras::Norm::batch});
  const std::vector<float> before = vec(mlp.linears()[0]->weight.data());
  nn::Adam adam(mlp.parameters());
  nn::FitOptions options;
  options.batch_size = 20;
  options.loss = nn::LossKind::bce_with_logits;
  options.progress = nn::FitOptions::Progress::quiet;
  CHECK_THROWS_WITH_AS(nn::fit(mlp, adam, data, options),
                       "101 training rows in batches of 20 leave a last batch of 1 row, which "
                       "BatchNorm1d (layers.1) cannot normalize in training: choose another "
                       "batch size",
                       Error);
  CHECK(vec(mlp.linears()[0]->weight.data()) == before);
  CHECK(adam.steps() == 0);
  options.batch_size = 25;  // 4 of 25 and one of 1 again
  CHECK_THROWS_AS(nn::fit(mlp, adam, data, options), Error);
  options.batch_size = 34;  // 34, 34, 33
  options.epochs = 1;
  CHECK(nn::fit(mlp, adam, data, options).epochs.size() == 1);
}
