// Plots are drawn by gnuplot (Debian's gnuplot-nox) from data files: the runner, the
// data-file writer, the decision-boundary map and the regression plots that the examples and
// `tapegrad train` share.

#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tapegrad/nn/data.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/nn/trainer.hpp"

namespace nn::plot {

// Whether an executable gnuplot is on PATH (checked before a long run).
bool gnuplot_available();

// Runs gnuplot on `script` (given on its standard input, with the working
// directory set to `dir` so data files can be named relatively). Throws
// ag::Error with gnuplot's own message when it fails or is missing.
void gnuplot(const std::filesystem::path& dir, const std::string& script);

// A whitespace-separated data file for gnuplot: a "# header" line, then one
// row per entry of the columns (all the same length; NaN where a value is
// missing). Returns the path.
std::filesystem::path write_columns(const std::filesystem::path& path,
                                    const std::vector<std::string>& header,
                                    const std::vector<std::vector<double>>& columns);

// The start of a gnuplot script for a PNG of the given size at `path`, in the
// project's look (pngcairo, a readable font, a light grid).
std::string png_terminal(const std::filesystem::path& path, int width = 800, int height = 500);

// ---- Decision boundaries of a model with two inputs ---------------------------------------------

// Note [Decision maps]
// ~~~~~~~~~~~~~~~~~~~~
// A model's decision at every point of a regular grid over the plane of a two-feature data set.
// The class of a point is nn::predict's for the loss the model was trained with, so the map
// agrees with the accuracy fit and evaluate report. `value` shades the map:
// - Two classes: the probability of class 1, with the boundary at the contour value = 0.5: the
//   output itself for bce and mse (clipped to [0, 1]), the sigmoid of a bce_logits logit, the
//   softmax of a two-logit ce output. A hinge score is no probability: its sign decides, and
//   value is the score clipped to the margin [-1, 1], with the boundary at 0.
// - More classes (ce): the softmax probability of the predicted class, its confidence.
struct DecisionGrid {
  std::int64_t nx = 0, ny = 0;  // grid points across and up; point k is (k % nx, k / nx)
  double x_min = 0, x_max = 0, y_min = 0, y_max = 0;
  std::int64_t classes = 2;
  bool hinge = false;  // value is a clipped hinge score, not a probability
  double level = 0.5;  // value on the boundary between two classes
  std::vector<std::int32_t> predicted;
  std::vector<double> value;

  double x(std::int64_t k) const;
  double y(std::int64_t k) const;
};

// Evaluates `model` (inputs 2) on `resolution` x `resolution` points covering the bounding box
// of `data`'s points widened by `margin` times its larger side on every side, and then, if
// `aspect` (height / width) is given, along its shorter side to that shape, so a picture of
// that shape shows x and y to the same scale. Throws ag::Error unless `data` has two features
// and the model's output fits `loss`.
DecisionGrid decision_grid(Module& model, const Dataset& data, LossKind loss,
                           std::int64_t resolution = 200, double margin = 0.1, double aspect = 0);

struct BoundaryOptions {
  std::string title = "decision boundary";
  int width = 720, height = 600;
  std::int64_t resolution = 200;
  double margin = 0.1;
  // The points' legend, one per class; else data.class_names; else "class 0", "class 1", ...
  std::vector<std::string> class_names = {};
};

// Draws `model`'s decision map (Note [Decision maps]) as a PNG at `png`: two classes as a
// diverging shade with the boundary drawn as a line, more as one color per class, paler where
// the model is less sure; `data`'s points on top, colored by label. Its data files go next to
// it: STEM_grid.dat (x1 x2 class value [r g b]) and STEM_points.dat (x1 x2 label). Returns
// `png`.
std::filesystem::path decision_boundary(const std::filesystem::path& png, Module& model,
                                        const Dataset& data, LossKind loss,
                                        const BoundaryOptions& options = {});

// ---- Regression (Note [Classification or regression], data.hpp) ---------------------------------

struct RegressionPlotOptions {
  std::string title = "prediction against target";
  int width = 720, height = 600;
};

// `model`'s prediction for every row of `data` (a regression set, the model in eval mode, no
// gradients) against the row's target, as a PNG at `png`: a perfect model's points lie on the
// dashed line prediction = target; several outputs are drawn in their own colors. Its data
// file goes next to it: STEM.dat (target prediction output). Throws ag::Error unless `data` is
// a regression set and the model has one output per target. Returns `png`.
std::filesystem::path prediction_plot(const std::filesystem::path& png, Module& model,
                                      const Dataset& data,
                                      const RegressionPlotOptions& options = {});

// For a regression set of one feature: its points and `model`'s curve over the feature's range
// (widened by a tenth on each side, `resolution` points), one curve per output, as a PNG at
// `png`, with STEM_points.dat (x target...) and STEM_curve.dat (x prediction...) next to it.
std::filesystem::path fitted_curve(const std::filesystem::path& png, Module& model,
                                   const Dataset& data, const RegressionPlotOptions& options = {},
                                   std::int64_t resolution = 400);

}  // namespace nn::plot
