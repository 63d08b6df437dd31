// Lecture-style text for the tape: a backward step as the chain rule
// ("df/dx = df/dq * dq/dx = -4 * 1 = -4") and a forward line ("q = x + y = 3").

#pragma once

#include <fmt/format.h>

#include <string>

#include "tapegrad/tape.hpp"

namespace ag {

// A number as the lecture writes it: at most 4 significant digits, no "-0".
std::string format_number(double x);

// "q = x + y = 3" for an op node, "x = -2" for an input; empty for a constant.
std::string forward_line(const Tape& tape, NodeId id);

// One line per input that gets a gradient; a fork shows "+=" and the total.
std::string step_lines(const Step& step);

// How an op node reads as an expression of its inputs' labels: "x + y", "σ(q)".
std::string expression(const Tape& tape, NodeId id);

}  // namespace ag

template <>
struct fmt::formatter<ag::Step> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
  template <class Context>
  auto format(const ag::Step& step, Context& ctx) const {
    return fmt::format_to(ctx.out(), "{}", ag::step_lines(step));
  }
};
