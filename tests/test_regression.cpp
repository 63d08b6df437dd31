// Regression end to end in nn: data sets of real-valued targets (validated, batched, split,
// generated as TensorFlow Playground's, read from CSV), R² and RMSE over batches, and fit.

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <tapegrad/nn.hpp>
#include <vector>

using ag::Error;

namespace {

// Four rows of one feature and two targets: y1 = 2x, y2 = -x.
nn::Dataset two_targets() {
  nn::Dataset d;
  d.rows = 4, d.cols = 1, d.outputs = 2;
  d.features = {0, 1, 2, 3};
  d.target_values = {0, 0, 2, -1, 4, -2, 6, -3};
  return d;
}

std::filesystem::path scratch(const char* name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("tapegrad-regression-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

}  // namespace

TEST_CASE("a data set is for classification or for regression, never both") {
  nn::Dataset d = two_targets();
  CHECK(d.regression());
  CHECK_NOTHROW(d.validate());

  nn::Dataset mixed = d;
  mixed.labels = {0, 1, 0, 1};
  CHECK_THROWS_WITH_AS(mixed.validate(),
                       "Dataset: a regression set (2 outputs) cannot have classes (0) or labels "
                       "(4)",
                       Error);
  mixed = d;
  mixed.classes = 2;
  CHECK_THROWS_AS(mixed.validate(), Error);

  nn::Dataset stray = nn::xor_data();
  stray.target_values = {1, 2, 3, 4};
  CHECK_THROWS_WITH_AS(stray.validate(),
                       "Dataset: 4 target values in a classification set (set outputs for "
                       "regression)",
                       Error);

  nn::Dataset short_targets = d;
  short_targets.target_values.pop_back();
  CHECK_THROWS_WITH_AS(short_targets.validate(),
                       "Dataset: 7 target values for 4 rows of 2 outputs (expected 8)", Error);

  nn::Dataset nan = d;
  nan.target_values[5] = std::nanf("");
  CHECK_THROWS_WITH_AS(nan.validate(), "Dataset: target 1 of row 2 is nan, not a finite number",
                       Error);

  // The class accessors say what a regression set has instead.
  ag::TensorTape tape;
  CHECK_THROWS_WITH_AS(d.targets(tape, nn::Target::binary),
                       "Dataset::targets: a regression set has real-valued targets, not "
                       "classes: use regression_targets",
                       Error);
  CHECK_THROWS_AS(d.class_counts(), Error);
  CHECK_THROWS_WITH_AS(nn::xor_data().regression_targets(tape),
                       "Dataset::regression_targets: a classification set has no real targets",
                       Error);
  const ag::Tensor t = d.regression_targets(tape);
  CHECK(t.shape() == ag::Shape{4, 2});
  CHECK(t.values() == std::vector<double>{0, 0, 2, -1, 4, -2, 6, -3});
}

TEST_CASE("subset and split carry each row's targets with it") {
  const nn::Dataset d = two_targets();
  const std::vector<std::int64_t> rows{3, 1};
  const nn::Dataset s = d.subset(rows);
  CHECK(s.outputs == 2);
  CHECK(s.features == std::vector<float>{3, 1});
  CHECK(s.target_values == std::vector<float>{6, -3, 2, -1});
  CHECK(s.labels.empty());

  const nn::TrainTest tt = d.split(0.5, 7);
  CHECK(tt.train.rows == 2);
  CHECK(tt.test.rows == 2);
  for (const nn::Dataset* part : {&tt.train, &tt.test})
    for (std::int64_t i = 0; i < part->rows; ++i) {
      const float x = part->features[std::size_t(i)];
      CHECK(part->target_values[std::size_t(2 * i)] == 2 * x);
      CHECK(part->target_values[std::size_t(2 * i + 1)] == -x);
    }
}

TEST_CASE("a DataLoader's regression batches hold the targets of the rows they copied") {
  const nn::Dataset d = nn::plane(10, 0.2, 3);
  nn::DataLoader loader(d, 4, true, 11);
  std::int64_t seen = 0;
  for (int epoch = 0; epoch < 2; ++epoch)
    for (const nn::Batch& b : loader) {
      CHECK(b.regression());
      CHECK(b.y.empty());
      CHECK(b.binary.empty());
      REQUIRE(b.target_values.size() == std::size_t(b.rows));
      for (std::int64_t k = 0; k < b.rows; ++k) {
        const std::int64_t i = b.index[std::size_t(k)];
        CHECK(b.target_values[std::size_t(k)] == d.target_values[std::size_t(i)]);
        CHECK(b.x[std::size_t(2 * k)] == d.features[std::size_t(2 * i)]);
      }
      ag::TensorTape tape;
      CHECK(b.regression_targets(tape).shape() == ag::Shape{b.rows, 1});
      CHECK_THROWS_AS(b.targets(tape, nn::Target::binary), Error);
      seen += b.rows;
    }
  CHECK(seen == 20);
}

TEST_CASE("plane and multi_gaussian follow TensorFlow Playground's formulas") {
  const nn::Dataset clean = nn::plane(200, 0, 5);
  CHECK(clean.rows == 200);
  CHECK(clean.cols == 2);
  CHECK(clean.outputs == 1);
  CHECK(clean.classes == 0);
  for (std::int64_t i = 0; i < clean.rows; ++i) {
    const double x1 = clean.features[std::size_t(2 * i)];
    const double x2 = clean.features[std::size_t(2 * i + 1)];
    CHECK(std::abs(x1) <= 6);
    CHECK(std::abs(x2) <= 6);
    // y = (x1 + x2) / 10 at the point itself without noise.
    CHECK(clean.target_values[std::size_t(i)] == doctest::Approx((x1 + x2) / 10).epsilon(1e-6));
  }
  // Noise moves the point the target is computed at, not the point: the same seed draws the
  // same points, with other targets.
  const nn::Dataset noisy = nn::plane(200, 0.3, 5);
  CHECK(noisy.features == clean.features);
  CHECK(noisy.target_values != clean.target_values);
  CHECK(nn::plane(200, 0.3, 5).target_values == noisy.target_values);
  CHECK(nn::plane(200, 0.3, 6).features != noisy.features);

  // Each bump: sign * max(0, 1 - distance / 2), the largest in absolute value wins.
  const nn::Dataset bumps = nn::multi_gaussian(500, 0, 2);
  const double centres[6][3] = {{-4, 2.5, 1},   {0, 2.5, -1}, {4, 2.5, 1},
                                {-4, -2.5, -1}, {0, -2.5, 1}, {4, -2.5, -1}};
  int positive = 0, negative = 0, zero = 0;
  for (std::int64_t i = 0; i < bumps.rows; ++i) {
    const double x1 = bumps.features[std::size_t(2 * i)];
    const double x2 = bumps.features[std::size_t(2 * i + 1)];
    const float y = bumps.target_values[std::size_t(i)];
    CHECK(std::abs(y) <= 1);
    // The nearest centre decides the sign, and within 2 of it the height is 1 - d / 2.
    double nearest = 1e9, sign = 0;
    for (const auto& c : centres) {
      const double d = std::hypot(x1 - c[0], x2 - c[1]);
      if (d < nearest) nearest = d, sign = c[2];
    }
    if (nearest >= 2) {
      CHECK(y == 0);
      ++zero;
    } else {
      CHECK(y == doctest::Approx(sign * (1 - nearest / 2)).epsilon(1e-5));
      (y > 0 ? positive : negative) += 1;
    }
  }
  CHECK(positive > 50);
  CHECK(negative > 50);
  CHECK(zero > 50);
  CHECK(nn::multi_gaussian(500, 0.1, 2).features == bumps.features);

  CHECK_THROWS_WITH_AS(nn::plane(0, 0, 1), "plane: n must be at least 1, not 0", Error);
  CHECK_THROWS_WITH_AS(nn::multi_gaussian(10, -1, 1),
                       "multi_gaussian: noise must be a finite number >= 0, not -1", Error);
  // The playground's input features apply to them as to the classification sets.
  const nn::Dataset squares = nn::expand_features(clean, nn::parse_input_features("x1,x2,x1^2"));
  CHECK(squares.cols == 3);
  CHECK(squares.target_values == clean.target_values);
}

TEST_CASE("a CSV file gives a regression set with one or several target columns") {
  const std::string text =
      "a,b,y,z\n"
      "1,2,3,4\n"
      "5,6,7,8\n";
  nn::CsvOptions by_name;
  by_name.target_names = {"z", "y"};
  const nn::Dataset d = nn::parse_csv(text, "t.csv", by_name);
  CHECK(d.regression());
  CHECK(d.outputs == 2);
  CHECK(d.cols == 2);
  CHECK(d.features == std::vector<float>{1, 2, 5, 6});
  CHECK(d.target_values == std::vector<float>{4, 3, 8, 7});
  CHECK(d.feature_names == std::vector<std::string>{"a", "b"});
  CHECK(d.target_names == std::vector<std::string>{"z", "y"});

  nn::CsvOptions last;
  last.target_indices = {-1};
  const nn::Dataset one = nn::parse_csv(text, "t.csv", last);
  CHECK(one.outputs == 1);
  CHECK(one.cols == 3);
  CHECK(one.features == std::vector<float>{1, 2, 3, 5, 6, 7});
  CHECK(one.target_values == std::vector<float>{4, 8});

  nn::CsvOptions twice;
  twice.target_indices = {2, -2};
  CHECK_THROWS_WITH_AS(nn::parse_csv(text, "t.csv", twice),
                       "t.csv: column 'y' is a target column twice", Error);
  nn::CsvOptions all;
  all.target_indices = {0, 1, 2, 3};
  CHECK_THROWS_WITH_AS(nn::parse_csv(text, "t.csv", all),
                       "t.csv: no feature columns: every column is a target", Error);
  nn::CsvOptions missing;
  missing.target_names = {"w"};
  CHECK_THROWS_WITH_AS(nn::parse_csv(text, "t.csv", missing),
                       "t.csv: no column named 'w' (the columns are a, b, y, z)", Error);
  nn::CsvOptions both;
  both.target_names = {"y"};
  both.target_indices = {0};
  CHECK_THROWS_AS(nn::parse_csv(text, "t.csv", both), Error);
  nn::CsvOptions far;
  far.target_indices = {4};
  CHECK_THROWS_WITH_AS(nn::parse_csv(text, "t.csv", far),
                       "t.csv: target column 4 is out of range for 4 columns", Error);
  // A target is a number like any feature, and a bad one is named by its line and column.
  CHECK_THROWS_WITH_AS(nn::parse_csv("a,y\n1,2\n3,high\n", "t.csv", last),
                       "t.csv:3, column 'y': 'high' is not a number", Error);
}

TEST_CASE("R² and RMSE accumulated over batches equal them over the whole") {
  ag::TensorTape tape;
  std::vector<float> p(30), y(30);
  ag::Rng rng(4);
  for (std::size_t i = 0; i < p.size(); ++i) {
    y[i] = float(100 + rng.normal());  // a large mean, which a sum of squares would cancel
    p[i] = y[i] + float(0.3 * rng.normal());
  }
  const ag::Tensor all_p = tape.constant<float>(ag::Shape{15, 2}, p);
  const ag::Tensor all_y = tape.constant<float>(ag::Shape{15, 2}, y);
  nn::RegressionMetrics m(2);
  for (const auto& [first, rows] :
       {std::pair{0, 4}, std::pair{4, 1}, std::pair{5, 0}, std::pair{5, 10}}) {
    const auto part = [&](const std::vector<float>& v) {
      return tape.constant<float>(
          ag::Shape{rows, 2},
          std::span<const float>(v).subspan(std::size_t(2 * first), std::size_t(2 * rows)));
    };
    m.add(part(p), part(y));
  }
  CHECK(m.rows() == 15);
  CHECK(m.r2() == doctest::Approx(nn::r2_score(all_p, all_y)).epsilon(1e-12));
  CHECK(m.rmse() == doctest::Approx(nn::rmse(all_p, all_y)).epsilon(1e-12));
  m.reset();
  CHECK(m.rows() == 0);
  m.add(all_y, all_y);
  CHECK(m.r2() == 1);
  CHECK(m.rmse() == 0);
  CHECK_THROWS_WITH_AS(m.add(tape.constant<float>(ag::Shape{15, 1}, std::span(p).first(15)),
                             tape.constant<float>(ag::Shape{15, 1}, std::span(y).first(15))),
                       "RegressionMetrics::add: the target (15, 1) has 1 outputs, not 2", Error);
}

TEST_CASE("fit trains a regression: the loss falls, R² rises, the test split is scored") {
  const nn::TrainTest data = nn::plane(200, 0, 1).split(0.25, 1);
  nn::MLP mlp({2, 8, 1}, ag::Op::tanh, nn::Activation::none, 1);
  nn::Adam adam(mlp.parameters(), {.lr = 0.02});
  nn::FitOptions o;
  o.epochs = 30;
  o.batch_size = 16;
  o.loss = nn::LossKind::mse;
  o.test = &data.test;
  std::FILE* log = std::tmpfile();
  o.out = log;
  o.progress = nn::FitOptions::Progress::lines;
  const nn::History h = nn::fit(mlp, adam, data.train, o);
  REQUIRE(h.epochs.size() == 30);
  const nn::EpochStats& first = h.epochs.front();
  const nn::EpochStats& last = h.epochs.back();
  CHECK(last.regression);
  CHECK(last.loss < first.loss / 10);
  CHECK(last.train_r2 > 0.98);
  CHECK(last.test_r2 > 0.98);
  CHECK(last.test_rmse < 0.1);
  CHECK(last.test_accuracy == -1);
  // The reported test figures are the model's on the test split, as evaluate and r2_score say.
  const nn::Evaluation test = nn::evaluate(mlp, data.test, nn::LossKind::mse);
  CHECK(test.r2 == doctest::Approx(last.test_r2));
  CHECK(test.rmse == doctest::Approx(last.test_rmse));
  CHECK(test.rmse * test.rmse == doctest::Approx(test.loss));
  ag::TensorTape tape;
  const ag::Tensor prediction = mlp(data.test.inputs(tape));
  CHECK(nn::r2_score(prediction, data.test.regression_targets(tape)) ==
        doctest::Approx(last.test_r2));

  std::rewind(log);
  char line[256] = {};
  REQUIRE(std::fgets(line, sizeof line, log) != nullptr);
  CHECK(std::string(line).starts_with("epoch 1/30  loss "));
  CHECK(std::string(line).find("train r2 ") != std::string::npos);
  CHECK(std::string(line).find("test r2 ") != std::string::npos);
  std::fclose(log);
}

TEST_CASE("fit fits several targets at once, and refuses what cannot train a regression") {
  const nn::Dataset d = two_targets();
  nn::Linear line(nn::LinearOptions(1, 2).seed(3));
  nn::Adam adam(line.parameters(), {.lr = 0.1});
  nn::FitOptions o;
  o.epochs = 300;
  o.batch_size = 4;
  o.loss = nn::LossKind::mse;
  o.progress = nn::FitOptions::Progress::quiet;
  const nn::History h = nn::fit(line, adam, d, o);
  CHECK(h.epochs.back().train_r2 > 0.999);

  // L1 and Huber train it too, and evaluate's loss is the loss function's on the whole set.
  for (const nn::LossKind kind : {nn::LossKind::l1, nn::LossKind::huber}) {
    CAPTURE(nn::loss_name(kind));
    nn::Linear robust(nn::LinearOptions(1, 2).seed(5));
    nn::Adam adam_robust(robust.parameters(), {.lr = 0.05});
    nn::FitOptions ro = o;
    ro.loss = kind;
    ro.epochs = 400;
    CHECK(nn::fit(robust, adam_robust, d, ro).epochs.back().train_r2 > 0.99);
    ag::TensorTape tape;
    const ag::Tensor p = robust(d.inputs(tape)), y = d.regression_targets(tape);
    const double expected =
        kind == nn::LossKind::l1 ? nn::l1_loss(p, y).item() : nn::huber_loss(p, y).item();
    CHECK(nn::evaluate(robust, d, kind).loss == doctest::Approx(expected));
  }

  o.epochs = 1;
  o.loss = nn::LossKind::cross_entropy;
  CHECK_THROWS_WITH_AS(nn::fit(line, adam, d, o),
                       "ce loss: a classification loss; a regression set (real-valued targets) "
                       "trains with mse, l1 or huber",
                       Error);
  o.loss = nn::LossKind::mse;
  nn::Linear one(nn::LinearOptions(1, 1).seed(3));
  nn::Adam adam1(one.parameters(), {.lr = 0.1});
  CHECK_THROWS_WITH_AS(nn::fit(one, adam1, d, o),
                       "mse loss: the model has 1 outputs for 2 target columns", Error);
  nn::FitOptions classify = o;
  classify.loss = nn::LossKind::huber;
  nn::Linear logit(nn::LinearOptions(2, 1).seed(3));
  nn::Adam adam2(logit.parameters(), {.lr = 0.1});
  CHECK_THROWS_WITH_AS(nn::fit(logit, adam2, nn::xor_data(), classify),
                       "huber loss: a regression loss; a classification set trains with ce, bce, "
                       "bce_logits, mse or hinge",
                       Error);
  const nn::Dataset classes = nn::xor_data();
  o.test = &classes;
  CHECK_THROWS_WITH_AS(nn::fit(line, adam, d, o),
                       "fit: the training set is for regression and the test set for "
                       "classification",
                       Error);
}

TEST_CASE("a regression run resumed from its checkpoint ends as an uninterrupted one") {
  const nn::TrainTest data = nn::multi_gaussian(120, 0.1, 4).split(0.25, 4);
  const auto run = [&](std::size_t epochs, const std::filesystem::path& checkpoint) {
    nn::MLP mlp({2, 8, 1}, ag::Op::relu, nn::Activation::none, 2);
    nn::Adam adam(mlp.parameters(), {.lr = 0.01});
    nn::FitOptions o;
    o.epochs = epochs;
    o.batch_size = 10;
    o.loss = nn::LossKind::mse;
    o.test = &data.test;
    o.progress = nn::FitOptions::Progress::quiet;
    o.checkpoint = checkpoint.string();
    o.resume = true;
    return nn::fit(mlp, adam, data.train, o);
  };
  const auto whole = scratch("whole.safetensors"), parts = scratch("parts.safetensors");
  std::filesystem::remove(whole);
  std::filesystem::remove(parts);
  const nn::History straight = run(6, whole);
  run(3, parts);
  const nn::History resumed = run(6, parts);
  CHECK(resumed.resumed_from == 3);
  REQUIRE(resumed.epochs.size() == 6);
  for (std::size_t e = 0; e < 6; ++e) {
    CHECK(resumed.epochs[e].regression);
    CHECK(resumed.epochs[e].loss == straight.epochs[e].loss);
    CHECK(resumed.epochs[e].train_r2 == straight.epochs[e].train_r2);
    CHECK(resumed.epochs[e].test_rmse == straight.epochs[e].test_rmse);
  }
  std::filesystem::remove_all(whole.parent_path());
}

TEST_CASE("a regression history reads back, and a malformed one is refused") {
  const std::vector<nn::EpochStats> h = nn::decode_history(
      "0.5 0 -1 0.1 0.01 0.8 0.2 0.75 0.25\n0.25 0 -1 0.1 0.01 0.9 0.1 0.85 -1\n", "c.safetensors");
  REQUIRE(h.size() == 2);
  CHECK(h[0].regression);
  CHECK(h[0].train_r2 == 0.8);
  CHECK(h[0].test_rmse == 0.25);
  CHECK(h[1].test_rmse == -1);
  CHECK_THROWS_WITH_AS(nn::decode_history("0.5 0 -1 0.1 0.01 0.8 -0.2 0.75 0.25\n", "c"),
                       "c: the training history in its metadata is malformed (epoch 1)", Error);
  CHECK_THROWS_AS(nn::decode_history("0.5 0 -1 0.1 0.01 0.8 0.2 0.75\n", "c"), Error);
  // A classifier's line is what it always was.
  CHECK_FALSE(nn::decode_history("0.5 0.75 0.5 0.1 0.01\n", "c")[0].regression);
}

TEST_CASE("the regression plots: prediction against target, and a one-feature fit's curve") {
  if (!nn::plot::gnuplot_available()) FAIL("gnuplot is missing: run tools/setup.sh test");
  const auto dir = scratch("plots");
  std::filesystem::create_directories(dir);
  const nn::Dataset d = two_targets();
  nn::Linear line(nn::LinearOptions(1, 2).seed(3));
  const auto png = nn::plot::prediction_plot(dir / "fit.png", line, d);
  CHECK(std::filesystem::file_size(png) > 1000);
  // One line per row and output after the header.
  std::FILE* f = std::fopen((dir / "fit.dat").c_str(), "r");
  REQUIRE(f != nullptr);
  int lines = 0;
  for (int c; (c = std::fgetc(f)) != EOF;) lines += c == '\n';
  std::fclose(f);
  CHECK(lines == 1 + 8);

  CHECK(std::filesystem::file_size(nn::plot::fitted_curve(dir / "curve.png", line, d, {}, 50)) >
        1000);
  CHECK(std::filesystem::exists(dir / "curve_points.dat"));
  CHECK(std::filesystem::exists(dir / "curve_curve.dat"));

  nn::Linear one(nn::LinearOptions(1, 1).seed(3));
  CHECK_THROWS_WITH_AS(nn::plot::prediction_plot(dir / "bad.png", one, d),
                       "prediction_plot: the model's output is (4, 1), and the data has 2 targets "
                       "per row",
                       Error);
  nn::Linear two_in(nn::LinearOptions(2, 1).seed(3));
  CHECK_THROWS_WITH_AS(nn::plot::fitted_curve(dir / "bad.png", two_in, nn::plane(10, 0, 1)),
                       "fitted_curve: the curve is of one feature, and the data has 2", Error);
  CHECK_THROWS_WITH_AS(nn::plot::prediction_plot(dir / "bad.png", two_in, nn::xor_data()),
                       "prediction_plot: the data set has classes, not real-valued targets", Error);
  std::filesystem::remove_all(dir);
}
