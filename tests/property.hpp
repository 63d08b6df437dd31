// The property tests' shared parts: which cases to run (TAPEGRAD_PROPERTY_CASES and _SEED), the
// check that a point is safe for central differences, their tolerance, and the tally of cases.

#pragma once

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <tapegrad/ops.hpp>
#include <tapegrad/shape.hpp>
#include <vector>

namespace property {

// Note [Property cases]
// ~~~~~~~~~~~~~~~~~~~~~
// Case k of a property is generated from an ag::Rng seeded with k alone, so it is the same on
// every machine and in every run. TAPEGRAD_PROPERTY_CASES=N runs N cases of every property
// instead of its CI count; TAPEGRAD_PROPERTY_SEED=K runs case K only, as a failure's report
// says (with the doctest filter -tc that names its test).
//
// A generated case is checked only where central differences can be trusted: inside each
// op's domain (the generators build it that way: log of softplus(...) + 0.1, pow of a positive
// base), with every kink argument (relu, abs, leaky_relu, elu, prelu, max and amax ties) at
// least kKinkMargin from its kink or exactly at it at every point (max(x, x)), no kink crossed
// between the central differences' points, and no value beyond kLargest. A point that fails is
// drawn again a few times; a case that never finds one is skipped and counted by reason, and
// each property checks that nearly all of its cases ran (Tally).

struct Range {
  std::uint64_t first;
  std::uint64_t count;
};

inline Range cases(std::uint64_t ci_count) {
  if (const char* seed = std::getenv("TAPEGRAD_PROPERTY_SEED"))
    return {std::strtoull(seed, nullptr, 10), 1};
  if (const char* n = std::getenv("TAPEGRAD_PROPERTY_CASES"))
    return {0, std::strtoull(n, nullptr, 10)};
  return {0, ci_count};
}

// The command that runs case `seed` of the doctest test case `test` again.
inline std::string rerun(std::string_view executable, std::string_view test, std::uint64_t seed) {
  return fmt::format("TAPEGRAD_PROPERTY_SEED={} build/tests/{} -tc='{}'", seed, executable, test);
}

enum class Skip { none, kink, crossing, domain, range };
inline constexpr std::string_view kSkipNames[] = {"none", "kink", "crossing", "domain", "range"};

inline constexpr double kKinkMargin = 1e-4;         // |argument - kink| at the base point
inline constexpr double kDomainMargin = 1e-3;       // log, sqrt, a pow base, a divisor: |x| >= this
inline constexpr double kLargest = 1e6;             // any value beyond: the case is out of range
inline constexpr double kProbabilityMargin = 1e-2;  // bce's p: in [this, 1 - this]

// The flat index into `in` of the element that element `flat` of `out` is computed from when
// `in` is broadcast to `out` (Note [Broadcasting] in autograd/src/broadcast.hpp).
inline std::int64_t source(const ag::Shape& out, const ag::Shape& in, std::int64_t flat) {
  std::int64_t index[ag::kMaxRank] = {};
  for (int j = out.rank() - 1; j >= 0; --j) {
    index[j] = flat % out[j];
    flat /= out[j];
  }
  std::int64_t result = 0;
  for (int j = 0; j < in.rank(); ++j) {
    const std::int64_t i = index[out.rank() - in.rank() + j];
    result = result * in[j] + (in[j] == 1 ? 0 : i);
  }
  return result;
}

// Whether central differences can be trusted at one evaluation of a case: fed every op node's
// operands, element by element. `sides` records which side of each kink every argument is on,
// to compare with the other points the central differences evaluate.
struct PointCheck {
  Skip skip = Skip::none;
  std::vector<double> sides;

  void fail(Skip why) {
    if (skip == Skip::none) skip = why;
  }
  void value(double v) {
    if (!std::isfinite(v) || std::abs(v) > kLargest) fail(Skip::range);
  }
  // A kink argument exactly at its kink is no reason to skip if it stays there at every point
  // (relu(x - x), max(x, x): the function is smooth along it), which `sides` checks.
  void kink(double distance, double side) {
    if (distance != 0 && !(std::abs(distance) >= kKinkMargin)) fail(Skip::kink);
    sides.push_back(side);
  }
  void sign(double x) { kink(x, x > 0 ? 1 : x < 0 ? -1 : 0); }
  void away_from_zero(double x) {
    if (!(std::abs(x) >= kDomainMargin)) fail(Skip::domain);
  }

  // One element of an op-table row: a and b its operands, p its fixed parameter.
  void elementwise(ag::Op op, double a, double b, double p) {
    using ag::Op;
    switch (op) {
      case Op::log:
      case Op::sqrt:
      case Op::pow:
        if (!(a >= kDomainMargin)) fail(Skip::domain);
        break;
      case Op::pow_scalar:
        if (p < 0 || p != std::floor(p)) {
          if (p == std::floor(p))
            away_from_zero(a);  // x^-1: a pole at 0, either sign works
          else if (!(a >= kDomainMargin))
            fail(Skip::domain);
        }
        break;
      case Op::div: away_from_zero(b); break;
      case Op::bce:  // its third derivative grows as 1 / (p (1 - p))^3
        if (!(a >= kProbabilityMargin && a <= 1 - kProbabilityMargin)) fail(Skip::domain);
        break;
      case Op::relu:
      case Op::abs:
      case Op::leaky_relu:
      case Op::elu:
      case Op::prelu: sign(a); break;
      case Op::max: sign(a - b); break;
      default: break;
    }
  }
};

// Central differences in double precision with a step of h = 1e-6 (times |x| when larger):
// their truncation error is about h^2 f''' / 6, far below rtol for the functions generated; their
// rounding error is about 1e-16 S / h with S the largest value the computation holds, well below
// atol = 1e-8 (1 + S). A wrong local derivative is off by a factor, not by 1e-6.
inline constexpr double kStep = 1e-6;
inline constexpr double kRtol = 1e-6;
inline constexpr double kAtol = 1e-8;

inline double step_at(double x) { return kStep * std::max(1.0, std::abs(x)); }

// |analytic - numeric| as a fraction of what is tolerated: above 1 is a failure.
inline double error_ratio(double analytic, double numeric, double scale) {
  const double error = std::abs(analytic - numeric);
  const double tolerance =
      kAtol * (1 + scale) + kRtol * std::max(std::abs(analytic), std::abs(numeric));
  if (std::isnan(error)) return std::isnan(analytic) && std::isnan(numeric) ? 0 : INFINITY;
  return error / tolerance;
}

// Counts one property's cases: how many ran, how many were skipped and why, and the worst
// error ratio seen, printed at the end as one line.
class Tally {
 public:
  explicit Tally(std::string what) : what_(std::move(what)) {}

  void ran(std::size_t compared = 0) {
    ++ran_;
    compared_ += compared;
  }
  void skipped(Skip why) { ++skipped_[static_cast<int>(why)]; }
  void error(double ratio) {
    worst_ = std::max(worst_, ratio);
    measured_ = true;
  }

  // Prints the line and checks that at least `min_fraction` of the cases ran.
  void finish(double min_fraction = 0.95) const {
    std::uint64_t skipped = 0;
    std::string reasons;
    for (int i = 1; i < 5; ++i) {
      skipped += skipped_[i];
      if (skipped_[i])
        reasons += fmt::format("{}{} {}", reasons.empty() ? "" : ", ", kSkipNames[i], skipped_[i]);
    }
    const std::uint64_t total = ran_ + skipped;
    std::string line = fmt::format("{}: {} cases, {} ran", what_, total, ran_);
    if (measured_)
      line += fmt::format(" ({} gradients compared, the worst error {:.3g} of the tolerance)",
                          compared_, worst_);
    else if (compared_)
      line += fmt::format(" ({} gradients compared)", compared_);
    if (skipped) line += fmt::format(", {} skipped ({})", skipped, reasons);
    fmt::print("{}\n", line);
    CHECK_MESSAGE(double(ran_) >= min_fraction * double(total), line);
  }

 private:
  std::string what_;
  std::uint64_t ran_ = 0;
  std::uint64_t compared_ = 0;
  std::uint64_t skipped_[5] = {};
  double worst_ = 0;
  bool measured_ = false;
};

// What one case of a property found.
struct Outcome {
  Skip skipped = Skip::none;  // why it was not checked, if it was not
  std::size_t compared = 0;   // how many values it compared
  std::string failure;        // what did not hold, with what reproduces it; empty if all did
};

inline constexpr int kReports = 5;  // failures reported in full; the others are only counted

// Runs the cases of the property `what` (Note [Property cases]): `check(seed, tally)` generates
// case `seed` and checks it. The first failures are reported with the command that reruns them
// (`test`: the doctest filter naming the test case); the tally's line ends the run.
template <class F>
void run(std::string what, std::string_view executable, std::string_view test,
         std::uint64_t ci_count, F&& check) {
  Tally tally(std::move(what));
  const Range range = cases(ci_count);
  int failures = 0;
  for (std::uint64_t seed = range.first; seed < range.first + range.count; ++seed) {
    const Outcome o = check(seed, tally);
    if (o.skipped != Skip::none) {
      tally.skipped(o.skipped);
      continue;
    }
    tally.ran(o.compared);
    if (!o.failure.empty() && ++failures <= kReports)
      FAIL_CHECK("case ", seed, ": ", o.failure, "\n  rerun: ", rerun(executable, test, seed));
  }
  CHECK_MESSAGE(failures == 0, failures, " cases failed");
  tally.finish();
}

}  // namespace property
