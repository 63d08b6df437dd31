// The training loop: it learns, reports what it did, shows progress as asked, a run resumed
// from its checkpoint ends exactly where an uninterrupted one does, and check_finite stops a
// diverging run.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <tapegrad/nn.hpp>
#include <utility>
#include <vector>

using namespace ag;

namespace {

std::string read_all(std::FILE* f) {
  std::rewind(f);
  std::string s;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) s.append(buf, n);
  return s;
}

std::filesystem::path scratch(const char* name) {
  auto dir =
      std::filesystem::temp_directory_path() / ("tapegrad-fit-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

}  // namespace

TEST_CASE("fit trains micrograd's moons model to high accuracy and reports every epoch") {
  nn::Dataset data = nn::moons(100, 0.1, 1);
  nn::MLP mlp({2, 16, 16, 1}, ag::Op::relu, nn::Activation::none, 1);
  nn::SGD sgd(mlp.parameters(), {.lr = 0.1, .momentum = 0.9});
  std::FILE* log = std::tmpfile();
  nn::FitOptions options;
  options.epochs = 60;
  options.batch_size = 100;
  options.loss = nn::LossKind::hinge;
  options.l2 = 1e-4;
  options.progress = nn::FitOptions::Progress::lines;
  options.out = log;
  options.diagnostics = true;
  std::size_t callbacks = 0;
  options.on_epoch = [&](const nn::EpochStats&) { ++callbacks; };
  nn::History h = nn::fit(mlp, sgd, data, options);
  REQUIRE(h.epochs.size() == 60);
  CHECK(callbacks == 60);
  CHECK(h.epochs.back().train_accuracy >= 0.95);
  CHECK(h.epochs.back().loss < h.epochs.front().loss);
  CHECK(h.epochs.back().grad_norms.size() == 3);
  CHECK(h.epochs.back().dead_fraction.size() == 2);
  CHECK(nn::evaluate(mlp, data, nn::LossKind::hinge).accuracy >= 0.95);
  const std::string text = read_all(log);
  CHECK(text.find("epoch 1/60  loss ") == 0);
  CHECK(text.find("epoch 60/60") != std::string::npos);
  CHECK(text.find('\r') == std::string::npos);  // lines, not a bar
  std::fclose(log);
}

TEST_CASE("quiet prints nothing; a test set gets its accuracy; a schedule sets the rate") {
  nn::TrainTest split = nn::blobs(200, 3, 1.0, 4).split(0.25, 4);
  nn::MLP mlp({2, 16, 3}, ag::Op::relu, nn::Activation::none, 2);
  nn::Adam adam(mlp.parameters(), {.lr = 0.01});
  std::FILE* log = std::tmpfile();
  nn::FitOptions options;
  options.epochs = 10;
  options.batch_size = 16;
  options.loss = nn::LossKind::cross_entropy;
  options.test = &split.test;
  options.schedule = nn::schedule::step(5, 0.1);
  options.progress = nn::FitOptions::Progress::quiet;
  options.out = log;
  nn::History h = nn::fit(mlp, adam, split.train, options);
  CHECK(read_all(log).empty());
  CHECK(h.epochs.back().test_accuracy >= 0.9);
  CHECK(h.epochs[4].lr == doctest::Approx(0.01));
  CHECK(h.epochs[5].lr == doctest::Approx(0.001));
  std::fclose(log);
}

TEST_CASE("a run resumed from its checkpoint ends bit for bit where an uninterrupted one does") {
  const nn::Dataset data = nn::spirals(40, 3, 0.2, 9);
  auto options = [&](const std::filesystem::path& ckpt, std::size_t epochs, bool resume) {
    nn::FitOptions o;
    o.epochs = epochs;
    o.batch_size = 16;
    o.seed = 5;
    o.loss = nn::LossKind::cross_entropy;
    o.progress = nn::FitOptions::Progress::quiet;
    o.checkpoint = ckpt.string();
    o.resume = resume;
    o.schedule = nn::schedule::cosine(6, 0.001);
    return o;
  };
  const auto a = scratch("a.safetensors"), b = scratch("b.safetensors");
  std::filesystem::remove(a);
  std::filesystem::remove(b);

  nn::MLP straight({2, 12, 3}, ag::Op::tanh, nn::Activation::none, 7);
  nn::Adam adam_a(straight.parameters(), {.lr = 0.02});
  nn::History whole = nn::fit(straight, adam_a, data, options(a, 6, false));

  {
    nn::MLP first({2, 12, 3}, ag::Op::tanh, nn::Activation::none, 7);
    nn::Adam adam_b(first.parameters(), {.lr = 0.02});
    nn::fit(first, adam_b, data, options(b, 3, false));  // "interrupted" after epoch 3
  }
  nn::MLP again({2, 12, 3}, ag::Op::tanh, nn::Activation::none, 99);  // other weights
  nn::Adam adam_c(again.parameters(), {.lr = 0.02});
  nn::History resumed = nn::fit(again, adam_c, data, options(b, 6, true));

  CHECK(resumed.resumed_from == 3);
  REQUIRE(resumed.epochs.size() == 6);
  for (std::size_t e = 0; e < 6; ++e) {
    CHECK(resumed.epochs[e].loss == whole.epochs[e].loss);
    CHECK(resumed.epochs[e].lr == whole.epochs[e].lr);
  }
  const auto pa = straight.parameters(), pc = again.parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    auto x = pa[i]->data(), y = pc[i]->data();
    CHECK(std::equal(x.begin(), x.end(), y.begin()));
  }
  std::filesystem::remove_all(a.parent_path());
}

TEST_CASE("fit names what does not fit") {
  nn::MLP three({2, 4, 3}, ag::Op::relu);
  nn::SGD sgd(three.parameters());
  nn::FitOptions options;
  options.loss = nn::LossKind::bce;
  options.progress = nn::FitOptions::Progress::quiet;
  CHECK_THROWS_WITH_AS(nn::fit(three, sgd, nn::xor_data(), options),
                       "bce loss: the model has 3 outputs; a binary loss needs 1 (use ce for 3 "
                       "classes)",
                       Error);
  // l1 and huber are regression losses now (LossKind); a name no loss has is still unknown.
  CHECK_THROWS_WITH_AS(nn::parse_loss("kl"),
                       "unknown loss 'kl': use one of bce, bce_logits, ce, mse, hinge, l1, huber",
                       Error);
  CHECK(nn::parse_loss("l1") == nn::LossKind::l1);
  CHECK(nn::parse_loss("huber") == nn::LossKind::huber);
  nn::MLP wide({3, 4, 1}, ag::Op::relu);
  nn::SGD sgd2(wide.parameters());
  CHECK_THROWS_WITH_AS(nn::fit(wide, sgd2, nn::xor_data(), options),
                       doctest::Contains("linear: input (4, 2) has 2 features but weight (4, 3) "
                                         "expects 3"),
                       Error);
}

TEST_CASE("check_finite stops a diverging run at the op, before a checkpoint is written") {
  const nn::Dataset data = nn::moons(100, 0.1, 1);
  auto run = [&](double lr, bool check, const std::string& checkpoint) {
    nn::MLP mlp({2, 16, 16, 1}, ag::Op::relu, nn::Activation::none, 1);
    nn::SGD sgd(mlp.parameters(), {.lr = lr});
    nn::FitOptions options;
    options.epochs = 5;
    options.batch_size = 20;
    options.loss = nn::LossKind::bce_with_logits;
    options.progress = nn::FitOptions::Progress::quiet;
    options.check_finite = check;
    options.checkpoint = checkpoint;
    return nn::fit(mlp, sgd, data, options);
  };
  // Off, as before: the loss turns to NaN and training goes on.
  CHECK(std::isnan(run(1e30, false, "").epochs.back().loss));

  // On: the first op that overflows, in the third layer; the checkpoint there is untouched.
  const auto ckpt = scratch("diverged.safetensors");
  {
    std::FILE* f = std::fopen(ckpt.c_str(), "wb");
    std::fputs("an earlier checkpoint", f);
    std::fclose(f);
  }
  try {
    run(1e30, true, ckpt.string());
    FAIL("no anomaly");
  } catch (const AnomalyError& e) {
    CHECK(e.anomaly().kind == AnomalyKind::forward);
    CHECK(e.anomaly().op == "linear");
    CHECK(e.anomaly().scope == "layers.2");
    CHECK(e.anomaly().value == std::numeric_limits<double>::infinity());
  }
  std::FILE* f = std::fopen(ckpt.c_str(), "rb");
  CHECK(read_all(f) == "an earlier checkpoint");
  std::fclose(f);

  // A rate that is itself infinite in float32 poisons the weights in the update, which is
  // caught there, not at the next forward.
  CHECK_THROWS_WITH_AS(run(1e39, true, ""),
                       doctest::Contains("anomaly: an optimizer step made parameter "
                                         "layers.0.weight inf at [0, 0] of (16, 2) (gradient "
                                         "there "),
                       AnomalyError);
  std::filesystem::remove_all(ckpt.parent_path());
}

TEST_CASE("a long run estimates its length at the start; the bar's eta counts every epoch") {
  CHECK(nn::duration_text(0.4) == "0 s");
  CHECK(nn::duration_text(45) == "45 s");
  CHECK(nn::duration_text(347) == "5 min 47 s");  // the Fashion-MNIST run
  CHECK(nn::duration_text(3900) == "1 h 05 min");
  CHECK(nn::duration_text(std::numeric_limits<double>::quiet_NaN()) == "a very long time");

  const nn::Dataset data = nn::moons(64, 0.1, 2);
  auto run = [&](double announce_over, nn::FitOptions::Progress progress) {
    nn::MLP mlp({2, 4, 1}, ag::Op::relu, nn::Activation::none, 3);
    nn::Adam adam(mlp.parameters(), {.lr = 0.01});
    std::FILE* log = std::tmpfile();
    nn::FitOptions options;
    options.epochs = 3;
    options.batch_size = 16;
    options.loss = nn::LossKind::bce_with_logits;
    options.progress = progress;
    options.out = log;
    options.announce_over_seconds = announce_over;
    nn::fit(mlp, adam, data, options);
    std::string text = read_all(log);
    std::fclose(log);
    return text;
  };
  // Every run takes longer than 0 s: it says so once, before the first epoch's line.
  const std::string announced = run(0, nn::FitOptions::Progress::lines);
  CHECK(announced.find("3 epochs to go: about ") == 0);
  CHECK(announced.find("to go", announced.find('\n')) == std::string::npos);  // once
  CHECK(announced.find("epoch 1/3") != std::string::npos);
  // A run of a few seconds says nothing; quiet says nothing at all.
  CHECK(run(5, nn::FitOptions::Progress::lines).find("to go") == std::string::npos);
  CHECK(run(0, nn::FitOptions::Progress::quiet).empty());
  // The bar: the estimate clears the bar's line first; every update shows the eta.
  const std::string bar = run(0, nn::FitOptions::Progress::bar);
  CHECK(bar.find("\r\033[K3 epochs to go: about ") != std::string::npos);
  CHECK(bar.find("] loss ") != std::string::npos);
  CHECK(bar.find(" eta 0 s ") != std::string::npos);
}

TEST_CASE("a checkpoint holds the caller's metadata beside fit's history") {
  const auto path = scratch("meta.safetensors");
  std::filesystem::remove(path);
  const nn::Dataset data = nn::moons(32, 0.1, 4);
  nn::MLP mlp({2, 4, 1}, ag::Op::relu, nn::Activation::none, 1);
  nn::Adam adam(mlp.parameters(), {.lr = 0.01});
  nn::FitOptions options;
  options.epochs = 2;
  options.loss = nn::LossKind::bce_with_logits;
  options.progress = nn::FitOptions::Progress::quiet;
  options.checkpoint = path.string();
  options.checkpoint_metadata = {{"model.layers", "2,4,1"}, {"data.name", "moons"}};
  nn::fit(mlp, adam, data, options);
  nn::CheckpointExtras extras;
  nn::load(mlp, path.string(), &extras);
  CHECK(extras.metadata["model.layers"] == "2,4,1");
  CHECK(extras.metadata["data.name"] == "moons");
  CHECK(nn::decode_history(extras.metadata["fit.history"], path.string()).size() == 2);
  std::filesystem::remove_all(path.parent_path());
}

TEST_CASE("l1 adds l1 * sign(p) to each parameter's gradient: SGD moves each by -lr * l1 * sign") {
  // Two runs from the same weights on one full batch, with and without the penalty: the data's
  // gradient is the same in both, so the weights differ by the penalty's step alone.
  const nn::Dataset data = nn::moons(20, 0.1, 5);
  constexpr double kLr = 0.1, kL1 = 0.01;
  auto one_step = [&](double l1) {
    auto mlp = std::make_unique<nn::MLP>(std::vector<std::int64_t>{2, 4, 1}, ag::Op::tanh,
                                         nn::Activation::none, 7);
    nn::SGD sgd(mlp->parameters(), {.lr = kLr});
    nn::FitOptions options;
    options.epochs = 1;
    options.batch_size = 20;
    options.loss = nn::LossKind::bce_with_logits;
    options.l1 = l1;
    options.progress = nn::FitOptions::Progress::quiet;
    nn::fit(*mlp, sgd, data, options);
    return mlp;
  };
  nn::MLP initial({2, 4, 1}, ag::Op::tanh, nn::Activation::none, 7);
  const auto plain = one_step(0), penalized = one_step(kL1);
  const auto p0 = initial.parameters(), p1 = plain->parameters(), p2 = penalized->parameters();
  REQUIRE(p0.size() == 4);
  for (std::size_t k = 0; k < p0.size(); ++k)
    for (std::size_t i = 0; i < p0[k]->data().size(); ++i) {
      const double w = p0[k]->data()[i];
      const double sign = w > 0 ? 1 : w < 0 ? -1 : 0;
      CHECK(double(p2[k]->data()[i]) - double(p1[k]->data()[i]) ==
            doctest::Approx(-kLr * kL1 * sign).epsilon(1e-3).scale(1e-6));
    }
}

TEST_CASE("a run trained in slices with first_epoch ends where an uninterrupted one does") {
  // The playground trains a few epochs per message: each slice must shuffle as the epoch it is.
  const nn::TrainTest split = nn::moons(60, 0.2, 3).split(0.25, 3);
  auto run = [&](const std::vector<std::size_t>& slices) {
    nn::MLP mlp({2, 8, 8, 1}, ag::Op::relu, nn::Activation::none, 3);
    nn::Adam adam(mlp.parameters(), {.lr = 0.01});
    nn::FitOptions options;
    options.batch_size = 10;
    options.seed = 3;
    options.loss = nn::LossKind::bce_with_logits;
    options.test = &split.test;
    options.progress = nn::FitOptions::Progress::quiet;
    std::vector<double> losses;
    for (const std::size_t epochs : slices) {
      options.epochs = options.first_epoch + epochs;
      for (const nn::EpochStats& e : nn::fit(mlp, adam, split.train, options).epochs) {
        CHECK(e.epoch == losses.size() + 1);
        losses.push_back(e.loss);
      }
      options.first_epoch = options.epochs;
    }
    std::vector<float> weights;
    for (nn::Parameter* p : mlp.parameters())
      weights.insert(weights.end(), p->data().begin(), p->data().end());
    return std::pair(losses, weights);
  };
  const auto whole = run({7});
  CHECK(run({1, 1, 1, 1, 1, 1, 1}) == whole);
  CHECK(run({3, 4}) == whole);
  nn::MLP mlp({2, 1}, nn::Activation::none, nn::Activation::none, 0);
  nn::SGD sgd(mlp.parameters(), {.lr = 0.1});
  nn::FitOptions options;
  options.epochs = 2;
  options.first_epoch = 2;
  options.loss = nn::LossKind::bce_with_logits;
  CHECK_THROWS_WITH(nn::fit(mlp, sgd, split.train, options),
                    "fit: first_epoch 2 leaves none of 2 epochs to run");
}
