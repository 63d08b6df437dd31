// ag::gradcheck: compares the gradients backward computes with central finite
// differences, in double precision, for any function of scalar Values.

#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "tapegrad/random.hpp"
#include "tapegrad/tape.hpp"
#include "tapegrad/tensor.hpp"

namespace ag {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double atol = 1e-6;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
};

struct GradcheckResult {
  bool ok = true;
  std::vector<double> analytic;  // d f / d x_i from backward
  std::vector<double> numeric;   // (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)
  double max_error = 0;          // the largest |analytic - numeric|
  std::string message;           // names the first input that disagrees
};

// `f(tape, inputs)` records a function of the inputs on the tape and returns
// its output. It is called once for backward and twice per input for the
// finite differences, each time on a fresh recording.
template <class F>
GradcheckResult gradcheck(F&& f, std::span<const double> point, const GradcheckOptions& opt = {}) {
  GradcheckResult result;
  Tape tape;
  std::vector<Value> inputs;
  auto evaluate = [&](std::span<const double> x) {
    tape.reset();
    inputs.clear();
    for (std::size_t i = 0; i < x.size(); ++i) inputs.push_back(tape.input(x[i]));
    return f(tape, std::span<const Value>(inputs));
  };

  Value out = evaluate(point);
  tape.backward(out);
  for (const Value& x : inputs) result.analytic.push_back(x.grad());

  std::vector<double> x(point.begin(), point.end());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i];
    x[i] = xi + opt.eps;
    const double up = evaluate(x).value();
    x[i] = xi - opt.eps;
    const double down = evaluate(x).value();
    x[i] = xi;
    const double numeric = (up - down) / (2 * opt.eps);
    result.numeric.push_back(numeric);
    const double error = std::abs(result.analytic[i] - numeric);
    const bool both_nan = std::isnan(numeric) && std::isnan(result.analytic[i]);
    if (!both_nan) result.max_error = std::max(result.max_error, error);
    if (result.ok && !both_nan && !(error <= opt.atol + opt.rtol * std::abs(numeric))) {
      result.ok = false;
      result.message =
          fmt::format("input {} at {}: backward gives {}, central difference gives {} (error {})",
                      i, xi, result.analytic[i], numeric, error);
    }
  }
  return result;
}

// One float64 input of a tensor gradient check.
struct TensorArg {
  Shape shape;
  std::vector<double> values;
};

// The tensor version: `f(tape, inputs)` may return any shape. The check
// differentiates L = sum_i w_i y_i with fixed pseudo-random weights w (the seed
// gradient of backward), so every output element and every input element is
// compared. The numeric side differences each y_i before weighting and summing,
// which keeps the rounding of a large sum out of the finite difference.
// analytic/numeric list the inputs' elements one input after another.
template <class F>
GradcheckResult gradcheck(F&& f, std::span<const TensorArg> args,
                          const GradcheckOptions& opt = {}) {
  GradcheckResult result;
  TensorTape tape;
  std::vector<Tensor> inputs;
  auto evaluate = [&](std::span<const TensorArg> a) {
    tape.reset();
    inputs.clear();
    for (const TensorArg& arg : a)
      inputs.push_back(tape.input<double>(arg.shape, std::span<const double>(arg.values)));
    return f(tape, std::span<const Tensor>(inputs));
  };

  Tensor y = evaluate(args);
  std::vector<double> weights;
  Rng rng(1234);
  for (std::int64_t i = 0; i < y.numel(); ++i) weights.push_back(rng.uniform(0.5, 1.5));
  tape.backward(y, weights);
  for (const Tensor& x : inputs)
    for (double g : x.grads()) result.analytic.push_back(g);

  std::vector<TensorArg> x(args.begin(), args.end());
  std::size_t flat = 0;
  for (std::size_t a = 0; a < x.size(); ++a) {
    for (std::size_t i = 0; i < x[a].values.size(); ++i, ++flat) {
      const double xi = x[a].values[i];
      x[a].values[i] = xi + opt.eps;
      const std::vector<double> up = evaluate(x).values();
      x[a].values[i] = xi - opt.eps;
      const std::vector<double> down = evaluate(x).values();
      x[a].values[i] = xi;
      double numeric = 0;
      for (std::size_t j = 0; j < weights.size(); ++j) numeric += weights[j] * (up[j] - down[j]);
      numeric /= 2 * opt.eps;
      result.numeric.push_back(numeric);
      const double error = std::abs(result.analytic[flat] - numeric);
      result.max_error = std::max(result.max_error, error);
      if (result.ok && !(error <= opt.atol + opt.rtol * std::abs(numeric))) {
        result.ok = false;
        result.message = fmt::format(
            "input {} {} element {}: backward gives {}, central difference gives {} (error {})", a,
            x[a].shape, i, result.analytic[flat], numeric, error);
      }
    }
  }
  return result;
}

}  // namespace ag
