// Decision maps (Note [Decision maps]): the class at each grid point is the one the trained
// model predicts under its loss's rule, the shade is that rule's probability or margin, and the
// grid covers the data; drawn, they leave a PNG and its data files.

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <tapegrad/nn.hpp>
#include <vector>

namespace fs = std::filesystem;

namespace {

// Two points, (0, 0) labelled 0 and (1, 2) labelled 1: the grid spans x in [-0.2, 1.2] and
// y in [-0.2, 2.2] with a margin of 0.1 of the larger side (2).
nn::Dataset two_points() {
  nn::Dataset d;
  d.features = {0, 0, 1, 2};
  d.labels = {0, 1};
  d.rows = 2, d.cols = 2, d.classes = 2;
  return d;
}

// score = 2 x1 - 1: positive right of x1 = 0.5.
void set_line(nn::Linear& l) {
  std::vector<float> w{2, 0}, b{-1};
  std::copy(w.begin(), w.end(), l.weight.data().begin());
  std::copy(b.begin(), b.end(), l.bias->data().begin());
}

double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

}  // namespace

TEST_CASE("the grid covers the data with a margin on every side") {
  nn::Linear line(2, 1);
  const nn::plot::DecisionGrid g =
      nn::plot::decision_grid(line, two_points(), nn::LossKind::hinge, 11);
  CHECK(g.nx == 11);
  CHECK(g.ny == 11);
  CHECK(g.x_min == doctest::Approx(-0.2));
  CHECK(g.x_max == doctest::Approx(1.2));
  CHECK(g.y_min == doctest::Approx(-0.2));
  CHECK(g.y_max == doctest::Approx(2.2));
  CHECK(g.x(0) == g.x_min);
  CHECK(g.x(10) == g.x_max);
  CHECK(g.y(120) == g.y_max);
  CHECK(g.predicted.size() == 121);
  CHECK(g.value.size() == 121);
}

TEST_CASE("a binary map's class and shade follow the loss's rule") {
  const nn::Dataset data = two_points();
  nn::Linear line(2, 1);
  set_line(line);
  nn::Sequential with_sigmoid;
  set_line(with_sigmoid.push_back(std::make_unique<nn::Linear>(2, 1)));
  with_sigmoid.push_back(nn::Sigmoid());

  SUBCASE("hinge: the score's sign decides; the shade is the score clipped to the margin") {
    const nn::plot::DecisionGrid g = nn::plot::decision_grid(line, data, nn::LossKind::hinge, 29);
    CHECK(g.hinge);
    CHECK(g.level == 0);
    for (std::int64_t k = 0; k < g.nx * g.ny; ++k) {
      const double score = 2 * float(g.x(k)) - 1;
      INFO("x1 = ", g.x(k));
      if (std::abs(score) > 1e-6) CHECK(g.predicted[k] == (score > 0 ? 1 : 0));
      CHECK(g.value[k] == doctest::Approx(std::clamp(score, -1.0, 1.0)));
    }
  }
  SUBCASE("bce_logits: the sigmoid of the logit, class 1 above 0.5") {
    const nn::plot::DecisionGrid g =
        nn::plot::decision_grid(line, data, nn::LossKind::bce_with_logits, 29);
    CHECK(!g.hinge);
    CHECK(g.level == 0.5);
    for (std::int64_t k = 0; k < g.nx * g.ny; ++k) {
      const double score = 2 * float(g.x(k)) - 1;
      if (std::abs(score) > 1e-6) CHECK(g.predicted[k] == (score > 0 ? 1 : 0));
      CHECK(g.value[k] == doctest::Approx(sigmoid(score)));
    }
  }
  SUBCASE("bce after a sigmoid output: the output is the probability") {
    const nn::plot::DecisionGrid g =
        nn::plot::decision_grid(with_sigmoid, data, nn::LossKind::bce, 29);
    for (std::int64_t k = 0; k < g.nx * g.ny; ++k) {
      const double score = 2 * float(g.x(k)) - 1;
      if (std::abs(score) > 1e-6) CHECK(g.predicted[k] == (score > 0 ? 1 : 0));
      CHECK(g.value[k] == doctest::Approx(sigmoid(score)));
    }
  }
  SUBCASE("an output of 0.3 everywhere is class 0 as a probability, class 1 as a score") {
    nn::Linear constant(2, 1);
    std::fill(constant.weight.data().begin(), constant.weight.data().end(), 0.0f);
    constant.bias->data()[0] = 0.3f;
    for (nn::LossKind loss : {nn::LossKind::bce, nn::LossKind::mse}) {
      const nn::plot::DecisionGrid g = nn::plot::decision_grid(constant, data, loss, 5);
      CHECK(std::all_of(g.predicted.begin(), g.predicted.end(), [](int c) { return c == 0; }));
      CHECK(g.value[0] == doctest::Approx(0.3));
    }
    for (nn::LossKind loss : {nn::LossKind::hinge, nn::LossKind::bce_with_logits}) {
      const nn::plot::DecisionGrid g = nn::plot::decision_grid(constant, data, loss, 5);
      CHECK(std::all_of(g.predicted.begin(), g.predicted.end(), [](int c) { return c == 1; }));
    }
  }
  SUBCASE("mse without an output activation: the value is clipped to [0, 1]") {
    const nn::plot::DecisionGrid g = nn::plot::decision_grid(line, data, nn::LossKind::mse, 29);
    CHECK(*std::min_element(g.value.begin(), g.value.end()) == 0);
    CHECK(*std::max_element(g.value.begin(), g.value.end()) == 1);
    for (std::int64_t k = 0; k < g.nx * g.ny; ++k) {
      const double score = 2 * float(g.x(k)) - 1;
      if (std::abs(score - 0.5) > 1e-6) CHECK(g.predicted[k] == (score > 0.5 ? 1 : 0));
    }
  }
}

TEST_CASE("a cross-entropy map is the argmax of the logits, shaded by its softmax") {
  nn::Dataset data = two_points();
  data.classes = 3;
  // Logits (x1, -x1, x2 - 1): class 0 on the right, 1 on the left, 2 at the top.
  nn::Linear three(2, 3);
  const std::vector<float> w{1, 0, -1, 0, 0, 1}, b{0, 0, -1};
  std::copy(w.begin(), w.end(), three.weight.data().begin());
  std::copy(b.begin(), b.end(), three.bias->data().begin());
  const nn::plot::DecisionGrid g =
      nn::plot::decision_grid(three, data, nn::LossKind::cross_entropy, 31);
  CHECK(g.classes == 3);
  std::vector<int> seen(3);
  for (std::int64_t k = 0; k < g.nx * g.ny; ++k) {
    const double x = float(g.x(k)), y = float(g.y(k));
    const std::vector<double> z{x, -x, y - 1};
    const auto top = std::max_element(z.begin(), z.end());
    const int expected = int(top - z.begin());
    double sum = 0;
    for (double v : z) sum += std::exp(v);
    INFO("at (", x, ", ", y, ")");
    if (std::count_if(z.begin(), z.end(), [&](double v) { return std::abs(v - *top) < 1e-6; }) == 1)
      CHECK(g.predicted[k] == expected);
    CHECK(g.value[k] == doctest::Approx(std::exp(*top) / sum));
    ++seen[std::size_t(g.predicted[k])];
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n > 0; }));

  // Two logits draw as a binary map: the shade is the softmax of class 1.
  nn::Linear two(2, 2);
  const std::vector<float> w2{0, 0, 2, 0}, b2{0, -1};
  std::copy(w2.begin(), w2.end(), two.weight.data().begin());
  std::copy(b2.begin(), b2.end(), two.bias->data().begin());
  const nn::plot::DecisionGrid g2 =
      nn::plot::decision_grid(two, two_points(), nn::LossKind::cross_entropy, 9);
  CHECK(g2.classes == 2);
  CHECK(g2.level == 0.5);
  for (std::int64_t k = 0; k < g2.nx * g2.ny; ++k)
    CHECK(g2.value[k] == doctest::Approx(sigmoid(2 * float(g2.x(k)) - 1)));
}

TEST_CASE("a decision map needs two features and an output that fits the loss") {
  nn::Dataset three = two_points();
  three.features = {0, 0, 0, 1, 2, 3};
  three.cols = 3;
  nn::Linear l3(3, 1);
  CHECK_THROWS_WITH_AS(nn::plot::decision_grid(l3, three, nn::LossKind::hinge),
                       "decision_grid: the data has 3 features; a decision map needs 2", ag::Error);
  nn::Linear wide(2, 3);
  CHECK_THROWS_WITH_AS(nn::plot::decision_grid(wide, two_points(), nn::LossKind::bce),
                       "decision_grid: the model has 3 outputs; bce needs 1", ag::Error);
}

TEST_CASE("decision_boundary draws a PNG with its grid and points files") {
  if (!nn::plot::gnuplot_available()) {
    MESSAGE("gnuplot is not installed: skipped");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("tapegrad-plot-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const nn::Dataset data = nn::blobs(60, 3, 1.0, 2);
  nn::MLP mlp({2, 8, 3}, ag::Op::relu);
  const fs::path png =
      nn::plot::decision_boundary(dir / "map.png", mlp, data, nn::LossKind::cross_entropy,
                                  {.width = 400, .height = 300, .resolution = 20});
  CHECK(png == dir / "map.png");
  std::ifstream f(png, std::ios::binary);
  std::string magic(8, '\0');
  f.read(magic.data(), 8);
  CHECK(magic == "\x89PNG\r\n\x1a\n");
  std::ifstream grid(dir / "map_grid.dat");
  int rows = 0;
  for (std::string line; std::getline(grid, line);) rows += !line.empty() && line[0] != '#';
  CHECK(rows == 400);
  CHECK(fs::exists(dir / "map_points.dat"));
  CHECK(!fs::exists(dir / ".gnuplot.log"));
  fs::remove_all(dir);
}
