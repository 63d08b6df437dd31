// A warm DataLoader epoch (of classes or of regression targets), and a warm training step
// through the norm and dropout layers, allocate nothing: operator new is counted (as in
// test_alloc.cpp, which is why this is an executable of its own) over batches.

#include <doctest/doctest.h>

#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>

#include "count_allocations.hpp"

using count_allocations::allocations;
using count_allocations::counting;

TEST_CASE("a warm epoch of batches, their tensors and accuracy allocate nothing") {
  const nn::Dataset data = nn::spirals(100, 3, 0.2, 0);
  nn::DataLoader loader(data, 32, true, 7);
  ag::TensorTape tape;
  double seen = 0;
  for (int epoch = 0; epoch < 3; ++epoch) {
    if (epoch == 1) {
      allocations = 0;
      counting = true;
    }
    for (const nn::Batch& b : loader) {
      tape.reset();
      ag::Tensor x = b.inputs(tape);
      ag::Tensor logits = ag::matmul(x, ag::ones(tape, ag::Shape{2, 3}));
      seen += nn::accuracy(logits, b.y, nn::Scores::logits) * double(b.rows);
    }
  }
  counting = false;
  CHECK(allocations == 0);
  CHECK(seen >= 0);
}

TEST_CASE("a warm training step of an MLP, plain or with norms and dropout, allocates nothing") {
  const nn::Dataset data = nn::moons(96, 0.1, 0);
  for (const auto norm :
       {nn::MLPExtras::Norm::none, nn::MLPExtras::Norm::batch, nn::MLPExtras::Norm::layer}) {
    nn::MLP mlp({2, 16, 16, 1}, ag::Op::relu, nn::Activation::none, 1,
                {.norm = norm, .dropout = norm == nn::MLPExtras::Norm::none ? 0.0 : 0.2});
    nn::Adam adam(mlp.parameters());
    nn::DataLoader loader(data, 32, true, 3);
    ag::TensorTape tape;
    for (int epoch = 0; epoch < 3; ++epoch) {
      if (epoch == 2) {
        allocations = 0;
        counting = true;
      }
      for (const nn::Batch& b : loader) {
        tape.reset();
        ag::Tensor loss =
            nn::bce_with_logits(mlp(b.inputs(tape)), b.targets(tape, nn::Target::binary));
        adam.zero_grad();
        tape.backward(loss);
        nn::clip_grad_norm(adam.params(), 1.0);
        adam.step();
      }
    }
    counting = false;
    CHECK(allocations == 0);
  }
}

TEST_CASE("a warm regression epoch, its targets, loss and R² allocate nothing") {
  const nn::Dataset data = nn::multi_gaussian(100, 0.1, 0);
  nn::MLP mlp({2, 8, 1}, ag::Op::relu, nn::Activation::none, 1);
  nn::Adam adam(mlp.parameters());
  nn::DataLoader loader(data, 32, true, 7);
  nn::RegressionMetrics metrics(1);
  ag::TensorTape tape;
  for (int epoch = 0; epoch < 3; ++epoch) {
    if (epoch == 2) {
      allocations = 0;
      counting = true;
    }
    metrics.reset();
    for (const nn::Batch& b : loader) {
      tape.reset();
      ag::Tensor out = mlp(b.inputs(tape));
      ag::Tensor target = b.regression_targets(tape);
      ag::Tensor loss = nn::mse_loss(out, target);
      adam.zero_grad();
      tape.backward(loss);
      adam.step();
      metrics.add(out, target);
    }
  }
  counting = false;
  CHECK(allocations == 0);
  CHECK(metrics.rows() == 100);
}
