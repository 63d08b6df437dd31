// Gradient clipping (by global norm and by value, alone and in nn::fit), RMSprop, Adagrad, Adam's
// amsgrad, warm-up and reduce-on-plateau, against torch's formulas, with the errors of bad options.

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <tapegrad/nn.hpp>
#include <tapegrad/parallel.hpp>
#include <vector>

using namespace ag;

namespace {

std::vector<float> vec(std::span<const float> s) { return {s.begin(), s.end()}; }

void set(std::span<float> to, std::vector<float> values) {
  std::copy(values.begin(), values.end(), to.begin());
}

}  // namespace

TEST_CASE("clip_grad_norm scales all gradients together and returns the norm before clipping") {
  nn::Parameter a(Shape{2}), b(Shape{1});
  std::vector<nn::Parameter*> params{&a, &b};
  // ||(3, 4, 12)|| = 13
  set(a.grad(), {3, 4});
  set(b.grad(), {12});
  CHECK(nn::clip_grad_norm(params, 26) == 13);  // below max_norm: unchanged
  CHECK(vec(a.grad()) == std::vector<float>{3, 4});
  CHECK(nn::clip_grad_norm(params, 6.5) == 13);
  const double scale = 6.5 / (13 + 1e-6);  // torch's max_norm / (norm + 1e-6)
  CHECK(a.grad()[0] == doctest::Approx(3 * scale).epsilon(1e-7));
  CHECK(a.grad()[1] == doctest::Approx(4 * scale).epsilon(1e-7));
  CHECK(b.grad()[0] == doctest::Approx(12 * scale).epsilon(1e-7));
  // the infinity norm is the largest |g|, the 1-norm the sum of |g|
  set(a.grad(), {3, -4});
  set(b.grad(), {-12});
  CHECK(nn::clip_grad_norm(params, 100, nn::kInfNorm) == 12);
  CHECK(nn::clip_grad_norm(params, 100, 1) == 19);
  CHECK(nn::clip_grad_norm(params, 100, 3) == doctest::Approx(std::cbrt(27 + 64 + 1728.0)));
}

TEST_CASE("clip_grad_value clamps every element; bad arguments and non-finite norms are named") {
  nn::Parameter a(Shape{4});
  std::vector<nn::Parameter*> params{&a};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  set(a.grad(), {-3, 0.5, 2, nan});
  nn::clip_grad_value(params, 1);
  CHECK(a.grad()[0] == -1);
  CHECK(a.grad()[1] == 0.5);
  CHECK(a.grad()[2] == 1);
  CHECK(std::isnan(a.grad()[3]));  // as torch.clamp: a NaN stays NaN
  CHECK(std::isnan(nn::clip_grad_norm(params, 1)));
  CHECK_THROWS_WITH_AS(nn::clip_grad_norm(params, 1, 2, true),
                       "clip_grad_norm: the total 2-norm of the gradients is nan, so they cannot "
                       "be clipped",
                       Error);
  CHECK_THROWS_WITH_AS(nn::clip_grad_norm(params, -1),
                       "clip_grad_norm: max_norm must be 0 or more, not -1", Error);
  CHECK_THROWS_WITH_AS(nn::clip_grad_norm(params, 1, 0),
                       "clip_grad_norm: norm_type must be positive, not 0", Error);
  CHECK_THROWS_WITH_AS(nn::clip_grad_value(params, -0.5),
                       "clip_grad_value: clip_value must be 0 or more, not -0.5", Error);
}

TEST_CASE("fit clips before each step: SGD with lr 1 moves the weights by at most max_norm") {
  nn::Dataset data = nn::moons(64, 0.1, 3);
  for (const bool by_value : {false, true}) {
    nn::MLP mlp({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 5);
    std::vector<float> before;
    for (nn::Parameter* p : mlp.parameters())
      before.insert(before.end(), p->data().begin(), p->data().end());
    nn::SGD sgd(mlp.parameters(), {.lr = 1});
    nn::FitOptions options;
    options.epochs = 1;
    options.batch_size = 64;  // one step
    options.loss = nn::LossKind::bce_with_logits;
    options.progress = nn::FitOptions::Progress::quiet;
    if (by_value)
      options.clip_grad_value = 1e-3;
    else
      options.clip_grad_norm = 1e-3;
    nn::fit(mlp, sgd, data, options);
    double squares = 0, largest = 0;
    std::size_t i = 0;
    for (nn::Parameter* p : mlp.parameters())
      for (float x : p->data()) {
        const double step = double(x) - double(before[i++]);
        squares += step * step;
        largest = std::max(largest, std::abs(step));
      }
    INFO("by value: ", by_value);
    if (by_value) {
      CHECK(largest <= 1e-3 * (1 + 1e-4));  // float weights near 1 resolve 6e-8
      CHECK(largest >= 0.9e-3);             // a gradient this size is clipped
    } else {
      CHECK(std::sqrt(squares) == doctest::Approx(1e-3).epsilon(1e-3));
    }
  }
}

TEST_CASE("RMSprop, plain, with momentum and centered, by torch.optim.RMSprop's formula") {
  nn::Parameter p(Shape{1});
  p.data()[0] = 1;
  nn::RMSprop plain({&p}, {.lr = 0.1});
  p.grad()[0] = 2;
  plain.step();
  // s = 0.01 * 4; p -= lr g / (sqrt(s) + eps)
  CHECK(p.data()[0] == doctest::Approx(1 - 0.1 * 2 / (0.2 + 1e-8)).epsilon(1e-6));

  nn::Parameter q(Shape{1});
  q.data()[0] = 1;
  nn::RMSprop centered({&q}, {.lr = 0.1, .alpha = 0.5, .momentum = 0.9, .centered = true});
  q.grad()[0] = 2;
  centered.step();
  // s = 0.5 * 4 = 2, a = 0.5 * 2 = 1: d = sqrt(2 - 1) = 1; b = g / d = 2; p -= 0.1 b
  CHECK(q.data()[0] == doctest::Approx(0.8).epsilon(1e-6));
  q.grad()[0] = 0;
  centered.step();
  // s = 1, a = 0.5: d = sqrt(0.75); b = 0.9 * 2 + 0 = 1.8; p -= 0.18
  CHECK(q.data()[0] == doctest::Approx(0.62).epsilon(1e-6));
  CHECK(centered.state().size() == 3);  // s, b, a
  CHECK_THROWS_WITH_AS(nn::RMSprop({&q}, {.alpha = -0.5}),
                       "RMSprop: alpha must be 0 or more, not -0.5", Error);
}

TEST_CASE("Adagrad's rate shrinks with the squared gradients seen, and with lr_decay") {
  nn::Parameter p(Shape{1});
  p.data()[0] = 0;
  nn::Adagrad adagrad({&p}, {.lr = 1, .lr_decay = 1, .initial_accumulator_value = 5});
  p.grad()[0] = 2;
  adagrad.step();  // s = 5 + 4 = 9: p -= 1 * 2 / 3
  CHECK(p.data()[0] == doctest::Approx(-2.0 / 3).epsilon(1e-6));
  adagrad.step();  // s = 13, rate 1 / (1 + 1 * 1): p -= 0.5 * 2 / sqrt(13)
  CHECK(p.data()[0] == doctest::Approx(-2.0 / 3 - 1 / std::sqrt(13.0)).epsilon(1e-6));
  CHECK_THROWS_WITH_AS(nn::Adagrad({&p}, {.lr_decay = -1}),
                       "Adagrad: lr_decay must be 0 or more, not -1", Error);
}

TEST_CASE("amsgrad divides by the largest second moment seen, so steps never grow back") {
  nn::Parameter p(Shape{5}), q(Shape{5});  // five: past the four-wide loop of plain Adam
  nn::Adam ams({&p}, {.lr = 0.1, .amsgrad = true});
  nn::Adam adam({&q}, {.lr = 0.1});
  CHECK(ams.state().size() == 3);  // m, v, v_max
  for (const float g : {10.0f, 0.01f}) {
    for (int i = 0; i < 5; ++i) p.grad()[i] = q.grad()[i] = g;
    ams.step();
    adam.step();
  }
  // the small second gradient meets the first's v_max: a much smaller step than Adam's
  const double m = 0.9 * 1 + 0.1 * 0.01, v = 0.999 * 0.1 + 0.001 * 1e-4, v_max = 0.1;
  const double c1 = 1 - 0.81, c2 = std::sqrt(1 - 0.998001);
  CHECK(p.data()[4] ==
        doctest::Approx(-0.1 - 0.1 / c1 * m / (std::sqrt(v_max) / c2 + 1e-8)).epsilon(1e-5));
  CHECK(q.data()[4] ==
        doctest::Approx(-0.1 - 0.1 / c1 * m / (std::sqrt(v) / c2 + 1e-8)).epsilon(1e-5));
}

TEST_CASE("warm-up rises linearly to the base rate, then hands over to the next schedule") {
  const nn::LrSchedule s = nn::schedule::warmup(4, 0.2, nn::schedule::step(2, 0.5));
  const std::vector<double> expected{0.2, 0.4, 0.6, 0.8, 1, 1, 0.5, 0.5, 0.25};
  for (std::size_t epoch = 0; epoch < expected.size(); ++epoch)
    CHECK(s(epoch, 1.0) == doctest::Approx(expected[epoch]));
  CHECK(nn::schedule::warmup(3)(0, 0.3) == doctest::Approx(0.1));  // torch's 1/3 start
  CHECK_THROWS_WITH_AS(nn::schedule::warmup(0), "schedule::warmup: warmup_epochs must be positive",
                       Error);
  CHECK_THROWS_WITH_AS(nn::schedule::warmup(2, 0),
                       "schedule::warmup: start_factor must be in (0, 1], not 0", Error);
}

TEST_CASE("reduce-on-plateau cuts the rate after patience epochs without improvement") {
  nn::Parameter p(Shape{1});
  nn::SGD sgd({&p}, {.lr = 1});
  nn::ReduceLROnPlateau plateau(sgd, {.factor = 0.5, .patience = 2, .min_lr = 0.3});
  CHECK(!plateau.step(1.0));
  CHECK(!plateau.step(0.99995));  // within the relative threshold 1e-4: not an improvement
  CHECK(!plateau.step(1.2));
  CHECK(plateau.bad_epochs() == 2);
  CHECK(plateau.step(1.1));  // the third bad epoch: lr 1 -> 0.5
  CHECK(sgd.lr() == 0.5);
  CHECK(!plateau.step(0.5));  // an improvement resets the count
  for (int i = 0; i < 3; ++i) plateau.step(0.6);
  CHECK(sgd.lr() == 0.3);  // 0.25 is below min_lr
  for (int i = 0; i < 3; ++i) CHECK(!plateau.step(0.6));
  CHECK(sgd.lr() == 0.3);
  CHECK_THROWS_WITH_AS(nn::ReduceLROnPlateau(sgd, {.factor = 1}),
                       "ReduceLROnPlateau: factor must be in [0, 1), not 1", Error);
}

TEST_CASE("RMSprop and Adagrad state resumes from a checkpoint, and is named there") {
  const auto path = std::filesystem::temp_directory_path() /
                    ("tapegrad-optim-" + std::to_string(::getpid()) + ".safetensors");
  nn::Linear a(nn::LinearOptions(2, 1).seed(1)), b(nn::LinearOptions(2, 1).seed(1));
  nn::RMSprop first(a.parameters(), {.momentum = 0.9, .centered = true});
  nn::RMSprop second(b.parameters(), {.momentum = 0.9, .centered = true});
  const auto train = [](nn::Linear& l, nn::Optimizer& o, int steps) {
    for (int i = 0; i < steps; ++i) {
      for (nn::Parameter* p : l.parameters())
        for (std::size_t k = 0; k < p->data().size(); ++k)
          p->grad()[k] = p->data()[k] + 0.5f * float(k + 1);
      o.step();
    }
  };
  train(a, first, 2);
  nn::save(a, path.string(), {.optimizer = &first});
  nn::CheckpointExtras extras{&second, {}};
  nn::load(b, path.string(), &extras);
  train(a, first, 3);
  train(b, second, 3);
  CHECK(vec(a.weight.data()) == vec(b.weight.data()));
  CHECK(second.steps() == 5);
  nn::Adagrad other(b.parameters());
  nn::CheckpointExtras wrong{&other, {}};
  CHECK_THROWS_WITH_AS(nn::load(b, path.string(), &wrong),
                       (path.string() + ": the file holds RMSprop state, not Adagrad").c_str(),
                       Error);
  std::filesystem::remove(path);
}

TEST_CASE("Adam, AdamW and amsgrad split over threads give the one-thread bits") {
  // 1,003 weights in chunks of 32 (a threshold of 64): the last chunk ragged, the vector loop
  // and its scalar tail both cut by chunk edges (Note [Parallel work]).
  auto train = [](int threads, int variant) {
    const int threads_before = ag::num_threads();
    const ag::ParallelThresholds before = ag::parallel_thresholds();
    ag::set_num_threads(threads);
    ag::set_parallel_thresholds({.product = before.product, .elementwise = 64});
    nn::Parameter w(Shape{1003});
    for (std::int64_t i = 0; i < 1003; ++i) w.data()[std::size_t(i)] = float(std::sin(0.3 * i));
    std::unique_ptr<nn::Optimizer> opt;
    if (variant == 0)
      opt = std::make_unique<nn::Adam>(std::vector{&w}, nn::AdamOptions{.weight_decay = 0.01});
    if (variant == 1) opt = std::make_unique<nn::AdamW>(std::vector{&w});
    if (variant == 2)
      opt = std::make_unique<nn::Adam>(std::vector{&w}, nn::AdamOptions{.amsgrad = true});
    for (int step = 0; step < 5; ++step) {
      for (std::int64_t i = 0; i < 1003; ++i)
        w.grad()[std::size_t(i)] = float(std::cos(0.7 * double(i * (step + 1))));
      opt->step();
    }
    ag::set_num_threads(threads_before);
    ag::set_parallel_thresholds(before);
    return vec(w.data());
  };
  for (int variant : {0, 1, 2}) {
    INFO("variant ", variant);
    const std::vector<float> one = train(1, variant);
    CHECK(one[1] != float(std::sin(0.3)));  // it trained
    CHECK(train(2, variant) == one);
    CHECK(train(3, variant) == one);
  }
}
