// ag::gradcheck: compares the gradients backward computes with central finite
// differences, in double precision, for any function of scalar Values.

#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tapegrad/tape.hpp"

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
      result.message = fmt::format(
          "input {} at {}: backward gives {}, central difference gives {} (error {})", i, xi,
          result.analytic[i], numeric, error);
    }
  }
  return result;
}

}  // namespace ag
