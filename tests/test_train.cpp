// Losses and optimizers: every loss against hand-computed values and finite
// differences, every optimizer step against torch.optim's update formulas.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <tapegrad/autograd.hpp>
#include <tapegrad/gradcheck.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

using namespace ag;

namespace {
std::vector<float> vec(std::span<const float> s) { return {s.begin(), s.end()}; }
}  // namespace

TEST_CASE("MSE, BCE, BCE with logits, cross-entropy and hinge against hand-computed values") {
  TensorTape tape;
  Tensor p = tape.input(Shape{2}, {0.8, 0.3}, "p");
  Tensor y = tape.input(Shape{2}, {1, 0}, "y");
  CHECK(nn::mse_loss(p, y).item() == doctest::Approx((0.04 + 0.09) / 2));
  CHECK(nn::mse_loss(p, y, nn::Reduction::sum).item() == doctest::Approx(0.13));
  // the notes' L = -(y log y_hat + (1 - y) log(1 - y_hat)), averaged: J
  CHECK(nn::bce_loss(p, y).item() == doctest::Approx(-(std::log(0.8) + std::log(0.7)) / 2));
  Tensor z = tape.input(Shape{2}, {1.3862943611198906, -0.8472978603872037}, "z");  // logit(p)
  CHECK(nn::bce_with_logits(z, y).item() == doctest::Approx(nn::bce_loss(p, y).item()));
  Tensor logits = tape.input(Shape{2, 3}, {1, 2, 3, 0, 0, 0}, "logits");
  const std::vector<std::int32_t> labels{2, 1};
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  CHECK(nn::cross_entropy(logits, labels).item() ==
        doctest::Approx(((lse - 3) + std::log(3.0)) / 2));
  Tensor score = tape.input(Shape{3}, {2, 0.5, -1}, "score");
  Tensor sign = tape.input(Shape{3}, {1, 1, 1}, "sign");
  CHECK(nn::hinge_loss(score, sign).item() == doctest::Approx((0 + 0.5 + 2) / 3));
  CHECK_THROWS_WITH_AS(nn::mse_loss(p, score),
                       "mse_loss: prediction (2,) and target (3,) must have the same shape", Error);
}

TEST_CASE("a NaN score makes the hinge loss NaN, as PyTorch's, in float32 and float64") {
  // relu(1 - y s) swallowed the NaN (relu(NaN) was 0): a diverged model reported a finite loss.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  TensorTape tape;
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor score = tape.input(Shape{3}, {2.0, nan, -1.0}, "score", dtype);
    Tensor sign = tape.input(Shape{3}, {1, -1, 1}, "sign", dtype);
    Tensor loss = nn::hinge_loss(score, sign);
    CHECK(std::isnan(loss.item()));
    tape.backward(loss);
    // PyTorch's gradients: relu'(NaN) = 1, so d/ds = -y/3 at the NaN score as everywhere else
    // above the margin (torch gives [-0, 1/3, -1/3])
    CHECK(score.grad_at(0) == 0.0);
    CHECK(score.grad_at(1) == doctest::Approx(1.0 / 3));
    CHECK(score.grad_at(2) == doctest::Approx(-1.0 / 3));
  }
}

TEST_CASE("BCE is clamped at log = -100 like PyTorch's, and BCE with logits never overflows") {
  TensorTape tape;
  Tensor p = tape.input(Shape{2}, {0.0, 1.0}, "p");
  Tensor y = tape.input(Shape{2}, {1, 0}, "y");
  Tensor l_p = nn::bce_loss(p, y);
  CHECK(l_p.item() == doctest::Approx(100.0));
  // and its gradient is finite, as PyTorch's: (p - y) / max(p (1 - p), 1e-12) / 2
  tape.backward(l_p);
  CHECK(p.grads() == std::vector<double>{-0.5e12, 0.5e12});
  Tensor z = tape.input(Shape{2}, {-1000, 1000}, "z");
  Tensor l = nn::bce_with_logits(z, y);
  CHECK(l.item() == doctest::Approx(1000.0));
  tape.backward(l);
  CHECK(z.grads() == std::vector<double>{-0.5, 0.5});  // (sigmoid(z) - y) / 2
}

TEST_CASE("every loss agrees with central differences") {
  const std::vector<std::int32_t> labels{0, 2, 1};
  auto check = [](auto f, std::vector<TensorArg> args, const char* what) {
    GradcheckResult r = gradcheck(f, std::span<const TensorArg>(args));
    INFO(what, ": ", r.message);
    CHECK(r.ok);
  };
  const TensorArg pred{Shape{3, 1}, {0.2, 0.7, 0.55}}, target{Shape{3, 1}, {0, 1, 1}};
  check([](TensorTape&, std::span<const Tensor> x) { return nn::mse_loss(x[0], x[1]); },
        {pred, target}, "mse");
  check([](TensorTape&, std::span<const Tensor> x) { return nn::bce_loss(x[0], x[1]); },
        {pred, target}, "bce");
  check([](TensorTape&, std::span<const Tensor> x) { return nn::bce_with_logits(x[0], x[1]); },
        {TensorArg{Shape{3, 1}, {-2, 0.3, 4}}, target}, "bce with logits");
  check([&](TensorTape&, std::span<const Tensor> x) { return nn::cross_entropy(x[0], labels); },
        {TensorArg{Shape{3, 3}, {1, 2, 0.5, -1, 0, 3, 0.2, 0.1, 0.4}}}, "cross-entropy");
  check([](TensorTape&, std::span<const Tensor> x) { return nn::hinge_loss(x[0], x[1]); },
        {TensorArg{Shape{3}, {2, 0.5, -1}}, TensorArg{Shape{3}, {1, -1, 1}}}, "hinge");
}

TEST_CASE("SGD: plain, momentum, Nesterov and weight decay, as torch.optim.SGD") {
  nn::Parameter p(Shape{2});
  p.data()[0] = 1, p.data()[1] = -2;
  auto set_grad = [&](float a, float b) { p.grad()[0] = a, p.grad()[1] = b; };

  nn::SGD plain({&p}, {.lr = 0.1});
  set_grad(0.5, -1);
  plain.step();
  CHECK(vec(p.data()) == std::vector<float>{0.95f, -1.9f});

  // momentum 0.9: b1 = g1; b2 = 0.9 b1 + g2; p -= lr b
  p.data()[0] = 1, p.data()[1] = -2;
  nn::SGD momentum({&p}, {.lr = 0.1, .momentum = 0.9});
  set_grad(1, 1);
  momentum.step();
  set_grad(1, 1);
  momentum.step();
  CHECK(p.data()[0] == doctest::Approx(1 - 0.1 * 1 - 0.1 * 1.9));

  // Nesterov: d = g + mu b
  p.data()[0] = 1;
  nn::SGD nesterov({&p}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  set_grad(1, 1);
  nesterov.step();
  CHECK(p.data()[0] == doctest::Approx(1 - 0.1 * (1 + 0.9 * 1)));

  // weight decay: d = g + wd p
  p.data()[0] = 2;
  nn::SGD decay({&p}, {.lr = 0.1, .weight_decay = 0.5});
  set_grad(0, 0);
  decay.step();
  CHECK(p.data()[0] == doctest::Approx(2 - 0.1 * 0.5 * 2));
  CHECK_THROWS_AS(nn::SGD({&p}, {.lr = 0.1, .nesterov = true}), Error);
}

TEST_CASE("Adam and AdamW, as torch.optim computes them") {
  nn::Parameter p(Shape{1});
  p.data()[0] = 1;
  nn::Adam adam({&p}, {.lr = 0.1});
  // Step 1: m = 0.1 g, v = 0.001 g^2; m_hat / sqrt(v_hat) = sign(g): p moves by lr.
  p.grad()[0] = 3;
  adam.step();
  CHECK(p.data()[0] == doctest::Approx(0.9).epsilon(1e-6));
  // Step 2 by the formula, in double.
  p.grad()[0] = -1;
  adam.step();
  const double m = 0.9 * 0.3 + 0.1 * -1, v = 0.999 * 0.009 + 0.001 * 1;
  const double expected =
      0.9 - 0.1 / (1 - 0.81) * m / (std::sqrt(v) / std::sqrt(1 - 0.998001) + 1e-8);
  CHECK(p.data()[0] == doctest::Approx(expected).epsilon(1e-6));
  CHECK(adam.steps() == 2);

  // AdamW: p *= 1 - lr wd, then the Adam step; Adam's weight decay is added to g instead.
  nn::Parameter q(Shape{1}), r(Shape{1});
  q.data()[0] = r.data()[0] = 2;
  nn::AdamW adamw({&q}, {.lr = 0.1, .weight_decay = 0.5});
  nn::Adam adam_l2({&r}, {.lr = 0.1, .weight_decay = 0.5});
  q.grad()[0] = r.grad()[0] = 1;
  adamw.step();
  adam_l2.step();
  CHECK(q.data()[0] == doctest::Approx(2 * (1 - 0.05) - 0.1).epsilon(1e-6));
  CHECK(r.data()[0] == doctest::Approx(2 - 0.1).epsilon(1e-6));  // g + wd p = 2 > 0: moves by lr
}

TEST_CASE("optimizer state that decays below the normal floats is flushed to zero") {
  // Note [Subnormal optimizer state]: a gradient seen once, then zeros, decays m (and
  // momentum) by 0.9 a step; from 1e-37 it passes below FLT_MIN (1.2e-38) within 30 steps.
  // Nine elements, so both the four-wide loop and its scalar tail run.
  nn::Parameter p(Shape{9}), q(Shape{9});
  nn::Adam adam({&p}, {.lr = 1e-3});
  nn::SGD sgd({&q}, {.lr = 1e-3, .momentum = 0.9});
  for (int i = 0; i < 9; ++i) p.grad()[i] = q.grad()[i] = 1e-36f;
  adam.step();
  sgd.step();
  for (int i = 0; i < 9; ++i) p.grad()[i] = q.grad()[i] = 0;
  for (int t = 0; t < 60; ++t) {
    adam.step();
    sgd.step();
  }
  for (std::vector<float>* state : {adam.state()[0], sgd.state()[0]})
    for (float x : *state) CHECK(std::fpclassify(x) == FP_ZERO);
  // The caller's floating-point mode is restored: subnormals still exist outside the update.
  volatile float tiny = 1e-38f;
  CHECK(std::fpclassify(tiny * 0.5f) == FP_SUBNORMAL);
}

TEST_CASE("learning-rate schedules: step, linear and cosine decay") {
  auto step = nn::schedule::step(10, 0.5);
  CHECK(step(0, 0.1) == doctest::Approx(0.1));
  CHECK(step(10, 0.1) == doctest::Approx(0.05));
  CHECK(step(25, 0.1) == doctest::Approx(0.025));
  auto linear = nn::schedule::linear(10, 0.1);
  CHECK(linear(0, 1.0) == doctest::Approx(1.0));
  CHECK(linear(5, 1.0) == doctest::Approx(0.55));
  CHECK(linear(20, 1.0) == doctest::Approx(0.1));
  auto cosine = nn::schedule::cosine(10, 0.0);
  CHECK(cosine(0, 1.0) == doctest::Approx(1.0));
  CHECK(cosine(5, 1.0) == doctest::Approx(0.5));
  CHECK(cosine(10, 1.0) == doctest::Approx(0.0));
}

TEST_CASE("a few lines train an MLP on XOR") {
  nn::MLP mlp({2, 8, 1}, ag::Op::tanh, ag::Op::sigmoid, 3);
  nn::Adam opt(mlp.parameters(), {.lr = 0.05});
  const std::vector<float> x{0, 0, 0, 1, 1, 0, 1, 1}, y{0, 1, 1, 0};
  TensorTape tape;
  double loss = 0;
  for (int step = 0; step < 300; ++step) {
    tape.reset();
    Tensor p = mlp(tape.constant<float>(Shape{4, 2}, x));
    Tensor l = nn::bce_loss(p, tape.constant<float>(Shape{4, 1}, y));
    opt.zero_grad();
    tape.backward(l);
    opt.step();
    loss = l.item();
  }
  CHECK(loss < 0.05);
}

TEST_CASE("dead units: ReLU units whose input is never positive, per layer") {
  nn::MLP mlp({2, 4, 3, 1}, ag::Op::relu);
  // Layer 0: units 0 and 2 get a large negative bias: dead for inputs in [0, 1].
  for (float& w : mlp.linears()[0]->weight.data()) w = 0.1f;
  auto b = mlp.linears()[0]->bias->data();
  b[0] = -10, b[1] = 1, b[2] = -10, b[3] = 1;
  nn::DeadUnits dead;
  TensorTape tape;
  const std::vector<float> x{0, 0, 0, 1, 1, 0, 1, 1};
  mlp(tape.constant<float>(Shape{4, 2}, x));
  dead.observe(tape);
  auto f = dead.fractions();
  REQUIRE(f.size() == 2);
  CHECK(f[0].first == "layers.1");  // the ReLU module after layers.0
  CHECK(f[0].second == 0.5);
  // A second batch with an input that revives nothing leaves the count as it is.
  tape.reset();
  mlp(tape.constant<float>(Shape{4, 2}, x));
  dead.observe(tape);
  CHECK(dead.fractions()[0].second == 0.5);
  // And backward confirms it: a dead unit's weights get no gradient.
  tape.reset();
  Tensor out = mlp(tape.constant<float>(Shape{4, 2}, x));
  mlp.zero_grad();
  tape.backward(sum(out));
  CHECK(mlp.linears()[0]->weight.grad()[0] == 0.0f);  // unit 0 is dead
  CHECK(nn::layer_grad_norms(mlp).size() == 3);
}
