// fit's training conveniences (Note [Validation and early stopping]): a seeded validation split,
// early stopping on its loss, the best epoch's checkpoint, and ReduceLROnPlateau on it; a
// resumed run stops, saves and reduces where an uninterrupted one does.

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <tapegrad/nn.hpp>
#include <vector>

using ag::Error;

namespace {

std::filesystem::path scratch(const char* name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("tapegrad-validation-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

nn::FitOptions quiet_options(std::size_t epochs) {
  nn::FitOptions o;
  o.epochs = epochs;
  o.batch_size = 20;
  o.loss = nn::LossKind::mse;
  o.progress = nn::FitOptions::Progress::quiet;
  o.seed = 3;
  return o;
}

// Every parameter's values, in order.
std::vector<float> weights(nn::Module& m) {
  std::vector<float> out;
  for (nn::Parameter* p : m.parameters()) {
    const auto d = p->data();
    out.insert(out.end(), d.begin(), d.end());
  }
  return out;
}

}  // namespace

TEST_CASE("a validation split is held out of training, seeded, and scored every epoch") {
  const nn::Dataset data = nn::plane(100, 0.1, 1);
  const auto run = [&](std::uint64_t seed) {
    nn::MLP mlp({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 1);
    nn::Adam adam(mlp.parameters(), {.lr = 0.01});
    nn::FitOptions o = quiet_options(5);
    o.validation_fraction = 0.2;
    o.seed = seed;
    std::vector<std::int64_t> rows_seen;
    return nn::fit(mlp, adam, data, o);
  };
  const nn::History h = run(3);
  REQUIRE(h.epochs.size() == 5);
  for (const nn::EpochStats& e : h.epochs) {
    CHECK(e.val_loss >= 0);
    CHECK(std::isfinite(e.val_loss));
  }
  CHECK(h.epochs.back().val_loss < h.epochs.front().val_loss);
  CHECK(h.best_epoch >= 1);
  CHECK_FALSE(h.stopped_early);
  // The same seed holds out the same rows and trains the same; another seed other rows.
  CHECK(run(3).epochs.back().val_loss == h.epochs.back().val_loss);
  CHECK(run(4).epochs.back().val_loss != h.epochs.back().val_loss);

  // 80 training rows in batches of 20: four steps an epoch, which a classification set shows
  // the same way.
  nn::MLP mlp({2, 4, 1}, ag::Op::relu, nn::Activation::none, 2);
  nn::SGD sgd(mlp.parameters(), {.lr = 0.1});
  nn::FitOptions o = quiet_options(1);
  o.validation_fraction = 0.2;
  o.loss = nn::LossKind::bce_with_logits;
  const nn::History classes = nn::fit(mlp, sgd, nn::moons(100, 0.1, 1), o);
  CHECK(classes.epochs[0].val_loss > 0);
  CHECK(sgd.steps() == 4);
}

TEST_CASE("early stopping ends the run after patience epochs without an improvement") {
  const nn::Dataset data = nn::plane(100, 0.1, 1);
  // A rate of 0: nothing improves after the first epoch, which improves on infinity.
  nn::MLP still({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 1);
  nn::SGD frozen(still.parameters(), {.lr = 0});
  nn::FitOptions o = quiet_options(20);
  o.validation_fraction = 0.2;
  o.early_stopping = nn::EarlyStopping{.patience = 3};
  const nn::History h = nn::fit(still, frozen, data, o);
  CHECK(h.stopped_early);
  CHECK(h.epochs.size() == 4);  // the best epoch, then three without improvement
  CHECK(h.best_epoch == 1);

  // min_delta: an improvement must beat the best by more than it, as in Keras.
  const auto epochs_run = [&](double min_delta) {
    nn::MLP mlp({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 1);
    nn::SGD slow(mlp.parameters(), {.lr = 0.001});
    nn::FitOptions slow_options = o;
    slow_options.epochs = 8;
    slow_options.early_stopping = nn::EarlyStopping{.patience = 2, .min_delta = min_delta};
    return nn::fit(mlp, slow, data, slow_options).epochs.size();
  };
  CHECK(epochs_run(0) == 8);   // a slow but steady fall improves every epoch
  CHECK(epochs_run(10) == 3);  // no fall beats 10
}

TEST_CASE("save_best keeps the weights of the epoch with the lowest validation loss") {
  const nn::Dataset data = nn::plane(100, 0.1, 1);
  const auto best = scratch("best.safetensors");
  std::filesystem::remove(best);
  nn::MLP mlp({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 1);
  // A rate too large: the loss falls, then jumps about, so the best epoch is not the last.
  nn::SGD wild(mlp.parameters(), {.lr = 0.9, .momentum = 0.9});
  nn::FitOptions o = quiet_options(12);
  o.validation_fraction = 0.25;
  o.save_best = best.string();
  std::vector<std::vector<float>> after_epoch;
  o.on_epoch = [&](const nn::EpochStats&) { after_epoch.push_back(weights(mlp)); };
  const nn::History h = nn::fit(mlp, wild, data, o);
  REQUIRE(h.best_epoch >= 1);
  double lowest = h.epochs[0].val_loss;
  for (const nn::EpochStats& e : h.epochs) lowest = std::min(lowest, e.val_loss);
  CHECK(h.epochs[h.best_epoch - 1].val_loss == lowest);
  CHECK(h.best_epoch < h.epochs.size());  // else this case tests nothing

  nn::MLP loaded({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 99);
  nn::CheckpointExtras extras{nullptr, {}};
  nn::load(loaded, best.string(), &extras);
  CHECK(weights(loaded) == after_epoch[h.best_epoch - 1]);
  CHECK(nn::decode_history(extras.metadata["fit.history"], best.string()).size() == h.best_epoch);
  std::filesystem::remove_all(best.parent_path());
}

TEST_CASE("ReduceLROnPlateau steps on the validation loss from fit") {
  const nn::Dataset data = nn::plane(100, 0.1, 1);
  nn::MLP mlp({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 1);
  // A rate so small that the loss moves by less than the plateau's relative threshold 1e-4.
  nn::SGD sgd(mlp.parameters(), {.lr = 1e-12});
  nn::FitOptions o = quiet_options(6);
  o.validation_fraction = 0.2;
  // eps 0: torch's 1e-8 would take a change of these rates for none.
  o.reduce_on_plateau = nn::PlateauOptions{.factor = 0.5, .patience = 1, .eps = 0};
  const nn::History h = nn::fit(mlp, sgd, data, o);
  std::vector<double> rates;
  for (const nn::EpochStats& e : h.epochs) rates.push_back(e.lr);
  // Epoch 1 sets the best; 2 and 3 do not improve, and more than patience (1) bad epochs
  // halve the rate for epoch 4; 4 and 5 again for epoch 6.
  CHECK(rates == std::vector<double>{1e-12, 1e-12, 1e-12, 5e-13, 5e-13, 2.5e-13});
}

TEST_CASE("a resumed run validates, stops and reduces as an uninterrupted one") {
  const nn::Dataset data = nn::multi_gaussian(120, 0.1, 2);
  const auto run = [&](std::size_t epochs, const std::filesystem::path& checkpoint) {
    nn::MLP mlp({2, 8, 1}, ag::Op::relu, nn::Activation::none, 2);
    nn::Adam adam(mlp.parameters(), {.lr = 0.05});
    nn::FitOptions o = quiet_options(epochs);
    o.validation_fraction = 0.25;
    o.early_stopping = nn::EarlyStopping{.patience = 2, .min_delta = 1e-3};
    o.reduce_on_plateau = nn::PlateauOptions{.factor = 0.5, .patience = 0};
    o.checkpoint = checkpoint.string();
    o.resume = true;
    return nn::fit(mlp, adam, data, o);
  };
  const auto whole = scratch("whole.safetensors"), parts = scratch("parts.safetensors");
  std::filesystem::remove(whole);
  std::filesystem::remove(parts);
  const nn::History straight = run(40, whole);
  REQUIRE(straight.stopped_early);  // else the case tests no resumed stop
  const std::size_t half = straight.epochs.size() / 2;
  REQUIRE(half >= 1);
  run(half, parts);
  const nn::History resumed = run(40, parts);
  CHECK(resumed.resumed_from == half);
  CHECK(resumed.stopped_early);
  CHECK(resumed.best_epoch == straight.best_epoch);
  REQUIRE(resumed.epochs.size() == straight.epochs.size());
  for (std::size_t e = 0; e < straight.epochs.size(); ++e) {
    CAPTURE(e);
    CHECK(resumed.epochs[e].val_loss == straight.epochs[e].val_loss);
    CHECK(resumed.epochs[e].loss == straight.epochs[e].loss);
    CHECK(resumed.epochs[e].lr == straight.epochs[e].lr);
  }
  // Resuming a run that has stopped trains nothing more.
  const nn::History again = run(40, parts);
  CHECK(again.stopped_early);
  CHECK(again.epochs.size() == straight.epochs.size());
  std::filesystem::remove_all(whole.parent_path());
}

TEST_CASE("what cannot be validated is refused by name") {
  const nn::Dataset data = nn::plane(10, 0, 1);
  nn::MLP mlp({2, 4, 1}, ag::Op::relu, nn::Activation::none, 1);
  nn::Adam adam(mlp.parameters());
  nn::FitOptions o = quiet_options(1);
  o.early_stopping = nn::EarlyStopping{};
  CHECK_THROWS_WITH_AS(nn::fit(mlp, adam, data, o),
                       "fit: early_stopping, reduce_on_plateau and save_best watch the "
                       "validation loss: set validation_fraction",
                       Error);
  o.validation_fraction = 1;
  CHECK_THROWS_WITH_AS(nn::fit(mlp, adam, data, o),
                       "fit: validation_fraction must be in [0, 1), not 1", Error);
  o.validation_fraction = 0.01;
  CHECK_THROWS_WITH_AS(nn::fit(mlp, adam, data, o),
                       "fit: validation_fraction 0.01 of 10 rows leaves 0 for validation and 10 "
                       "for training; each needs at least one",
                       Error);
  o.validation_fraction = 0.2;
  o.early_stopping = nn::EarlyStopping{.patience = 0};
  CHECK_THROWS_WITH_AS(nn::fit(mlp, adam, data, o),
                       "fit: early stopping's patience must be at least 1", Error);
  o.early_stopping.reset();
  o.reduce_on_plateau = nn::PlateauOptions{};
  o.schedule = nn::schedule::cosine(1);
  CHECK_THROWS_WITH_AS(nn::fit(mlp, adam, data, o),
                       "fit: a schedule and reduce_on_plateau both set the learning rate; give "
                       "one",
                       Error);
}
