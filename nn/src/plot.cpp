// The gnuplot runner, the data-file writer and decision-boundary maps.

#include "tapegrad/nn/plot.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>

#include "tapegrad/error.hpp"
#include "tapegrad/nn/metrics.hpp"
#include "tapegrad/tensor.hpp"

extern char** environ;

namespace nn::plot {

namespace fs = std::filesystem;

bool gnuplot_available() {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  const std::string dirs = path;
  for (std::size_t at = 0; at <= dirs.size();) {
    std::size_t end = dirs.find(':', at);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = dirs.substr(at, end - at);
    const std::string file = (fs::path(dir.empty() ? "." : dir) / "gnuplot").string();
    if (::access(file.c_str(), X_OK) == 0) return true;
    at = end + 1;
  }
  return false;
}

void gnuplot(const fs::path& dir, const std::string& script) {
  // gnuplot reads the script from a pipe; its messages go to a file quoted on failure.
  const fs::path log = dir / ".gnuplot.log";
  int in[2];
  if (::pipe(in) != 0) ag::fail("pipe: {}", std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_addclose(&actions, in[1]);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  char arg0[] = "gnuplot";
  char* args[] = {arg0, nullptr};
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, "gnuplot", &actions, nullptr, args, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  if (err != 0) {
    ::close(in[1]);
    throw ag::Error(
        fmt::format("cannot run gnuplot ({}): install Debian's gnuplot-nox", std::strerror(err)));
  }
  // If gnuplot dies early, writing would raise SIGPIPE; its exit status says why instead.
  const auto previous = std::signal(SIGPIPE, SIG_IGN);
  const std::string text = fmt::format("cd '{}'\n{}\n", dir.string(), script);
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(in[1], text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(in[1]);
  std::signal(SIGPIPE, previous);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream f(log);
    std::string message((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
      message.pop_back();
    for (char& c : message)
      if (c == '\n') c = ' ';
    ag::fail("gnuplot failed: {}", message);
  }
  std::error_code ec;
  fs::remove(log, ec);
}

fs::path write_columns(const fs::path& path, const std::vector<std::string>& header,
                       const std::vector<std::vector<double>>& columns) {
  std::ofstream f(path);
  if (!f) ag::fail("cannot write {}: {}", path.string(), std::strerror(errno));
  const std::size_t rows = columns.empty() ? 0 : columns[0].size();
  for (const auto& c : columns)
    if (c.size() != rows) throw ag::Error("write_columns: the columns differ in length");
  f << "#";
  for (const auto& h : header) f << ' ' << h;
  f << '\n';
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < columns.size(); ++c)
      f << (c ? " " : "") << fmt::format("{}", columns[c][r]);
    f << '\n';
  }
  if (!f) ag::fail("cannot write {}", path.string());
  return path;
}

std::string png_terminal(const fs::path& path, int width, int height) {
  return fmt::format(
      "set terminal pngcairo size {},{} enhanced font 'DejaVu Sans,11'\n"
      "set output '{}'\n"
      "set grid lc rgb '#dddddd'\n"
      "set key box opaque\n",
      width, height, path.string());
}

// ---- Decision maps ------------------------------------------------------------------------------

double DecisionGrid::x(std::int64_t k) const {
  return nx < 2 ? x_min : x_min + (x_max - x_min) * double(k % nx) / double(nx - 1);
}
double DecisionGrid::y(std::int64_t k) const {
  return ny < 2 ? y_min : y_min + (y_max - y_min) * double(k / nx) / double(ny - 1);
}

DecisionGrid decision_grid(Module& model, const Dataset& data, LossKind loss,
                           std::int64_t resolution, double margin, double aspect) {
  if (data.cols != 2)
    throw ag::Error(
        fmt::format("decision_grid: the data has {} features; a decision map needs 2", data.cols));
  if (data.rows < 1) throw ag::Error("decision_grid: the data has no rows");
  if (resolution < 2 || resolution > 4096)
    ag::fail("decision_grid: resolution {} is not in [2, 4096]", resolution);
  DecisionGrid g;
  g.nx = g.ny = resolution;
  g.x_min = g.y_min = std::numeric_limits<double>::infinity();
  g.x_max = g.y_max = -g.x_min;
  for (std::int64_t r = 0; r < data.rows; ++r) {
    const std::span<const float> p = data.row(r);
    g.x_min = std::min(g.x_min, double(p[0]));
    g.x_max = std::max(g.x_max, double(p[0]));
    g.y_min = std::min(g.y_min, double(p[1]));
    g.y_max = std::max(g.y_max, double(p[1]));
  }
  if (!std::isfinite(g.x_max - g.x_min) || !std::isfinite(g.y_max - g.y_min))
    throw ag::Error("decision_grid: the data has a feature that is not finite");
  // The margin is a fraction of the larger side, so both axes get the same; a single point
  // still gets a square around it.
  const double pad = std::max(margin * std::max(g.x_max - g.x_min, g.y_max - g.y_min), 1e-3);
  g.x_min -= pad, g.x_max += pad, g.y_min -= pad, g.y_max += pad;
  if (aspect > 0) {
    const double width = g.x_max - g.x_min, height = g.y_max - g.y_min;
    const double grow_x = std::max(height / aspect - width, 0.0) / 2;
    const double grow_y = std::max(width * aspect - height, 0.0) / 2;
    g.x_min -= grow_x, g.x_max += grow_x, g.y_min -= grow_y, g.y_max += grow_y;
  }

  const std::int64_t n = g.nx * g.ny;
  std::vector<float> points(static_cast<std::size_t>(2 * n));
  for (std::int64_t k = 0; k < n; ++k) {
    points[std::size_t(2 * k)] = float(g.x(k));
    points[std::size_t(2 * k + 1)] = float(g.y(k));
  }
  ag::TensorTape tape;
  ag::NoGrad no_grad(tape);
  const bool was_training = model.is_training();
  model.eval();
  const ag::Tensor out = model(tape.constant(ag::Shape{n, 2}, std::span<const float>(points)));
  model.train(was_training);

  const std::int64_t cols = out.shape().rank() == 2 ? out.shape()[1] : 1;
  if (loss == LossKind::cross_entropy ? cols < 2 : cols != 1)
    throw ag::Error(
        fmt::format("decision_grid: the model has {} outputs; {} needs {}", cols, loss_name(loss),
                    loss == LossKind::cross_entropy ? "one per class, at least 2" : "1"));
  g.classes = loss == LossKind::cross_entropy ? cols : 2;
  g.hinge = loss == LossKind::hinge;
  g.level = g.hinge ? 0.0 : 0.5;
  g.predicted = predict(out, scores_of(loss));
  g.value.resize(static_cast<std::size_t>(n));
  std::vector<double> row(static_cast<std::size_t>(cols));
  for (std::int64_t k = 0; k < n; ++k) {
    for (std::int64_t c = 0; c < cols; ++c) row[std::size_t(c)] = out.value(k * cols + c);
    double& v = g.value[std::size_t(k)];
    if (loss == LossKind::cross_entropy) {
      // softmax, shifted by the largest logit so exp cannot overflow
      const double top = *std::max_element(row.begin(), row.end());
      double sum = 0;
      for (double z : row) sum += std::exp(z - top);
      const double chosen = cols == 2 ? row[1] : row[std::size_t(g.predicted[std::size_t(k)])];
      v = std::exp(chosen - top) / sum;
    } else if (loss == LossKind::bce_with_logits) {
      v = 1 / (1 + std::exp(-row[0]));
    } else if (g.hinge) {
      v = std::clamp(row[0], -1.0, 1.0);
    } else {
      v = std::clamp(row[0], 0.0, 1.0);
    }
  }
  return g;
}

namespace {

// Tableau's ten colors: the points of class k (k mod 10), and the tints of its region.
constexpr std::array<std::uint32_t, 10> kClassColors = {0xd62728, 0x1f77b4, 0x2ca02c, 0xff7f0e,
                                                        0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f,
                                                        0xbcbd22, 0x17becf};

std::uint32_t class_color(std::int64_t k) { return kClassColors[std::size_t(k % 10)]; }

// `rgb` moved towards white by `t` in [0, 1].
std::uint32_t towards_white(std::uint32_t rgb, double t) {
  std::uint32_t out = 0;
  for (int shift = 16; shift >= 0; shift -= 8) {
    const double c = double((rgb >> shift) & 0xff);
    out |= std::uint32_t(std::lround(c + (255 - c) * t)) << shift;
  }
  return out;
}

std::string hex(std::uint32_t rgb) { return fmt::format("'#{:06x}'", rgb); }

// A gnuplot string literal: single quotes, in which '' is a quote.
std::string gp_string(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(text.data(), std::streamsize(text.size()));
  if (!f) ag::fail("cannot write {}: {}", path.string(), std::strerror(errno));
}

}  // namespace

fs::path decision_boundary(const fs::path& png, Module& model, const Dataset& data, LossKind loss,
                           const BoundaryOptions& o) {
  // The plot's frame at fixed pixel margins (the title above; tics, labels and the key below;
  // a binary map's color box on the right), and a grid of the frame's shape: x and y to scale.
  const bool binary = loss != LossKind::cross_entropy || data.classes <= 2;
  const double left = 75, right = binary ? 125 : 25, top = 45, bottom = 95;
  const double frame_w = o.width - left - right, frame_h = o.height - top - bottom;
  if (frame_w < 50 || frame_h < 50)
    throw ag::Error(
        fmt::format("decision_boundary: {}x{} is too small for a plot", o.width, o.height));
  const DecisionGrid g =
      decision_grid(model, data, loss, o.resolution, o.margin, frame_h / frame_w);
  if (binary != (g.classes == 2))
    ag::fail("decision_boundary: the model has {} outputs for {} classes", g.classes, data.classes);
  const fs::path dir = png.parent_path().empty() ? fs::path(".") : png.parent_path();
  const std::string stem = png.stem().string();
  const std::string grid_file = stem + "_grid.dat", points_file = stem + "_points.dat";

  // The grid, one line of points per y with a blank line after each: gnuplot's grid format,
  // which both `with image` and the contour of the boundary read.
  std::string text = binary ? "# x1 x2 class value\n" : "# x1 x2 class confidence r g b\n";
  for (std::int64_t k = 0; k < g.nx * g.ny; ++k) {
    const std::int32_t c = g.predicted[std::size_t(k)];
    const double v = g.value[std::size_t(k)];
    text += fmt::format("{:.6g} {:.6g} {} {:.6g}", g.x(k), g.y(k), c, v);
    if (!binary) {
      // Paler where the model is less sure: confidence 1/classes (a tie) to 1.
      const double floor = 1.0 / double(g.classes);
      const double sure = std::isfinite(v) ? std::clamp((v - floor) / (1 - floor), 0.0, 1.0) : 0;
      const std::uint32_t rgb = towards_white(class_color(c), 0.9 - 0.3 * sure);
      text += fmt::format(" {} {} {}", rgb >> 16, (rgb >> 8) & 0xff, rgb & 0xff);
    }
    text += (k + 1) % g.nx == 0 ? "\n\n" : "\n";
  }
  write_text(dir / grid_file, text);
  text = "# x1 x2 label\n";
  for (std::int64_t r = 0; r < data.rows; ++r)
    text += fmt::format("{} {} {}\n", data.row(r)[0], data.row(r)[1], data.labels[std::size_t(r)]);
  write_text(dir / points_file, text);

  const std::int64_t classes = std::max(g.classes, data.classes);
  std::vector<std::string> names = o.class_names.empty() ? data.class_names : o.class_names;
  for (std::int64_t k = std::int64_t(names.size()); k < classes; ++k)
    names.push_back(fmt::format("class {}", k));
  const auto feature = [&](std::size_t i) {
    return data.feature_names.size() == 2 ? data.feature_names[i] : fmt::format("x{}", i + 1);
  };

  std::string script = png_terminal(png.filename(), o.width, o.height);
  script += fmt::format(
      "set title {} noenhanced\nset xlabel {} noenhanced\nset ylabel {} noenhanced\n"
      "unset grid\nset xrange [{}:{}] noextend\nset yrange [{}:{}] noextend\n"
      "set lmargin at screen {l}\nset rmargin at screen {r}\n"
      "set tmargin at screen {t}\nset bmargin at screen {b}\n"
      "set key at screen {c}, screen 0.015 center bottom horizontal Left reverse samplen 2\n"
      "set colorbox user origin screen {cb}, screen {b} size screen {cw}, screen {ch}\n",
      gp_string(o.title), gp_string(feature(0)), gp_string(feature(1)), g.x_min, g.x_max, g.y_min,
      g.y_max, fmt::arg("l", left / o.width), fmt::arg("r", 1 - right / o.width),
      fmt::arg("t", 1 - top / o.height), fmt::arg("b", bottom / o.height),
      fmt::arg("c", (left + frame_w / 2) / o.width), fmt::arg("cb", 1 - (right - 15) / o.width),
      fmt::arg("cw", 20.0 / o.width), fmt::arg("ch", frame_h / o.height));
  if (std::none_of(g.value.begin(), g.value.end(), [](double v) { return std::isfinite(v); }))
    script += "set label 'the model''s output is not finite' at graph 0.5, 0.5 center front\n";
  std::string plot;
  if (binary) {
    // The boundary: gnuplot's contour of value at the level, as a table of line segments.
    script += fmt::format(
        "set view map\nunset surface\nset contour base\nset cntrparam levels discrete {}\n"
        "set table $boundary\nsplot {} using 1:2:4 with lines notitle\nunset table\n"
        "unset contour\nset surface\n",
        g.level, gp_string(grid_file));
    const double low = g.hinge ? -1 : 0;
    script += fmt::format(
        "set cbrange [{}:1]\nset palette defined ({} {}, {} '#ffffff', 1 {})\n"
        "set cblabel {} noenhanced\n",
        low, low, hex(towards_white(class_color(0), 0.6)), g.level,
        hex(towards_white(class_color(1), 0.6)),
        gp_string(g.hinge ? "score (clipped to [-1, 1])" : fmt::format("p({})", names[1])));
    plot = fmt::format(
        "{} using 1:2:4 with image notitle, $boundary using 1:2 with lines lw 2 "
        "lc rgb '#303030' title {}",
        gp_string(grid_file), gp_string(g.hinge ? "score = 0" : "p = 0.5"));
  } else {
    script += "unset colorbox\n";
    plot = fmt::format("{} using 1:2:5:6:7 with rgbimage notitle", gp_string(grid_file));
  }
  for (std::int64_t k = 0; k < classes; ++k) {
    const std::string only = fmt::format("1:($3 == {} ? $2 : NaN)", k);
    plot += fmt::format(
        ", {} using {} with points pt 7 ps 0.9 lc rgb {} title {} noenhanced"
        ", '' using {} with points pt 6 ps 0.9 lw 0.5 lc rgb '#202020' notitle",
        gp_string(points_file), only, hex(class_color(k)), gp_string(names[std::size_t(k)]), only);
  }
  script += "plot " + plot + "\nunset output\n";
  gnuplot(dir, script);
  return png;
}

namespace {

// The model's outputs on `x` (rows, cols) in eval mode without gradients, checked to have
// `outputs` columns; the model's training mode is restored.
std::vector<double> predictions(Module& model, std::span<const float> x, std::int64_t rows,
                                std::int64_t cols, std::int64_t outputs, const char* who) {
  const bool was_training = model.is_training();
  model.eval();
  ag::TensorTape tape;
  ag::NoGrad no_grad(tape);
  const ag::Tensor out = model(tape.constant(ag::Shape{rows, cols}, x));
  model.train(was_training);
  if (out.shape() != ag::Shape{rows, outputs})
    ag::fail("{}: the model's output is {}, and the data has {} target{} per row", who, out.shape(),
             outputs, outputs == 1 ? "" : "s");
  return out.values();
}

void check_regression(const Dataset& data, const char* who) {
  data.validate();
  if (!data.regression()) ag::fail("{}: the data set has classes, not real-valued targets", who);
  if (data.rows < 1) ag::fail("{}: the data set has no rows", who);
}

// A target's name for a legend: the CSV column's, else "y1", "y2"...
std::string target_name(const Dataset& data, std::int64_t j) {
  return std::size_t(j) < data.target_names.size() ? data.target_names[std::size_t(j)]
                                                   : fmt::format("y{}", j + 1);
}

}  // namespace

fs::path prediction_plot(const fs::path& png, Module& model, const Dataset& data,
                         const RegressionPlotOptions& o) {
  check_regression(data, "prediction_plot");
  const std::vector<double> p =
      predictions(model, data.features, data.rows, data.cols, data.outputs, "prediction_plot");
  const fs::path dir = png.parent_path().empty() ? fs::path(".") : png.parent_path();
  const std::string file = png.stem().string() + ".dat";
  std::string text = "# target prediction output\n";
  double low = std::numeric_limits<double>::infinity(), high = -low;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double y = data.target_values[i];
    text += fmt::format("{} {} {}\n", y, p[i], i % std::size_t(data.outputs));
    for (const double v : {y, p[i]})
      if (std::isfinite(v)) low = std::min(low, v), high = std::max(high, v);
  }
  write_text(dir / file, text);
  // One square range for both axes, so the diagonal is at 45 degrees; a diverged model's
  // predictions get a fixed one (gnuplot refuses to autoscale nothing).
  if (!(low < high)) {
    low = std::isfinite(low) ? low - 1 : -1;
    high = std::isfinite(high) ? high + 1 : 1;
  }
  const double pad = (high - low) * 0.05;
  std::string script = png_terminal(png.filename(), o.width, o.height);
  script += fmt::format(
      "set title {} noenhanced\nset xlabel 'target'\nset ylabel 'prediction'\n"
      "set size ratio -1\nset xrange [{lo}:{hi}]\nset yrange [{lo}:{hi}]\n"
      "set key top left Left reverse\n",
      gp_string(o.title), fmt::arg("lo", low - pad), fmt::arg("hi", high + pad));
  std::string plot = fmt::format(
      "{lo} + (x - {lo}) with lines dt 2 lw 2 lc rgb '#606060' title 'prediction = target'",
      fmt::arg("lo", low - pad));
  for (std::int64_t j = 0; j < data.outputs; ++j)
    plot += fmt::format(
        ", {} using 1:($3 == {} ? $2 : NaN) with points pt 7 ps 0.6 lc rgb {} "
        "title {} noenhanced",
        gp_string(file), j, hex(class_color(j)), gp_string(target_name(data, j)));
  script += "plot " + plot + "\nunset output\n";
  gnuplot(dir, script);
  return png;
}

fs::path fitted_curve(const fs::path& png, Module& model, const Dataset& data,
                      const RegressionPlotOptions& o, std::int64_t resolution) {
  check_regression(data, "fitted_curve");
  if (data.cols != 1)
    ag::fail("fitted_curve: the curve is of one feature, and the data has {}", data.cols);
  if (resolution < 2 || resolution > 100000)
    ag::fail("fitted_curve: resolution must be in [2, 100000], not {}", resolution);
  const auto [lo, hi] = std::minmax_element(data.features.begin(), data.features.end());
  const double spread = std::max(double(*hi) - double(*lo), 1e-6);
  const double start = *lo - spread / 10, stop = *hi + spread / 10;
  std::vector<float> grid(std::size_t(resolution), 0.f);
  for (std::int64_t k = 0; k < resolution; ++k)
    grid[std::size_t(k)] = float(start + (stop - start) * double(k) / double(resolution - 1));
  const std::vector<double> p =
      predictions(model, grid, resolution, 1, data.outputs, "fitted_curve");

  const fs::path dir = png.parent_path().empty() ? fs::path(".") : png.parent_path();
  const std::string stem = png.stem().string();
  const std::string points_file = stem + "_points.dat", curve_file = stem + "_curve.dat";
  std::string text = "# x target...\n";
  for (std::int64_t r = 0; r < data.rows; ++r) {
    text += fmt::format("{}", data.features[std::size_t(r)]);
    for (std::int64_t j = 0; j < data.outputs; ++j)
      text += fmt::format(" {}", data.target_values[std::size_t(r * data.outputs + j)]);
    text += '\n';
  }
  write_text(dir / points_file, text);
  text = "# x prediction...\n";
  for (std::int64_t k = 0; k < resolution; ++k) {
    text += fmt::format("{}", grid[std::size_t(k)]);
    for (std::int64_t j = 0; j < data.outputs; ++j)
      text += fmt::format(" {}", p[std::size_t(k * data.outputs + j)]);
    text += '\n';
  }
  write_text(dir / curve_file, text);

  const std::string feature = data.feature_names.size() == 1 ? data.feature_names[0] : "x";
  std::string script = png_terminal(png.filename(), o.width, o.height);
  script += fmt::format(
      "set title {} noenhanced\nset xlabel {} noenhanced\nset ylabel 'target'\n"
      "set xrange [{}:{}]\nset key top left Left reverse\n",
      gp_string(o.title), gp_string(feature), start, stop);
  if (std::none_of(p.begin(), p.end(), [](double v) { return std::isfinite(v); }))
    script += "set label 'the model''s output is not finite' at graph 0.5, 0.5 center front\n";
  std::string plot;
  for (std::int64_t j = 0; j < data.outputs; ++j) {
    const std::uint32_t color = class_color(j);
    plot += fmt::format(
        "{}{} using 1:{} with points pt 7 ps 0.5 lc rgb {} title {} noenhanced, "
        "{} using 1:{} with lines lw 2 lc rgb {} title {} noenhanced",
        plot.empty() ? "" : ", ", gp_string(points_file), j + 2, hex(towards_white(color, 0.5)),
        gp_string(target_name(data, j)), gp_string(curve_file), j + 2, hex(color),
        gp_string(fmt::format("the model's {}", target_name(data, j))));
  }
  script += "plot " + plot + "\nunset output\n";
  gnuplot(dir, script);
  return png;
}

}  // namespace nn::plot
