// Lecture-style text for the tape: a backward step as the chain rule
// ("df/dx = df/dq * dq/dx = -4 * 1 = -4") and a forward line ("q = x + y = 3").

#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <string>

#include "tapegrad/tape.hpp"
#include "tapegrad/tensor.hpp"

namespace ag {

// Note [Digits shown]
// ~~~~~~~~~~~~~~~~~~~
// Every number a person reads (`tapegrad grad` and `step`, the graphs, the step-through page)
// is written by format_number, by one rule: at most 4 significant digits, in fmt's shortest
// form for that many (`{:.4g}`: 0.3333, -12, 0.1, 1.5e-05), except that from 10^4 to 10^15 a
// number is rounded to a whole number (70000 and 12346, not 7e+04 and 1.235e+04): the digits
// of its whole part are few and 7e+04 reads as another kind of number. No "-0". The lecture
// reads 4 digits at a glance; more would be noise in a chain of products. Output for programs
// (`grad --json`, `train --json`) keeps full precision: the shortest text that reads back as
// the same double.
inline constexpr double kWholeBelow = 1e15;

// A number as the lecture writes it (Note [Digits shown]).
std::string format_number(double x);

// "q = x + y = 3" for an op node, "x = -2" for an input, "c = 3" for a named constant; empty
// for an unnamed one (its number is all there is to say, and the lines that use it show it).
std::string forward_line(const Tape& tape, NodeId id);

// The node a backward step processes, as its forward line without the value, numbered from 1:
// "step 1: f = q * z".
std::string step_heading(const Step& step);

// Note [The seed line]
// ~~~~~~~~~~~~~~~~~~~~
// Backward starts from the output's gradient with respect to itself, df/df = 1. The first
// step's lines say so first ("df/df = 1"), and every line writes the node's local derivative
// with partial signs, "df/dq = df/df · ∂f/∂q = 1 · -4 = -4": without them the first step
// read "df/dq = df/df * df/dq", which looks circular to a student. d is the gradient of the
// output backward has built so far, ∂ the local derivative of one node, the op table's.

// One line per input that gets a gradient, after the seed line on the first step (Note [The
// seed line]); a fork shows "+=" and the total.
std::string step_lines(const Step& step);

// "df/dx = -4": the gradient of `output` the latest backward left on `id`, as the gradients
// after a pass are listed (Note [Digits shown]).
std::string gradient_line(const Tape& tape, NodeId output, NodeId id);

// How an op node reads as an expression of its inputs' labels: "x + y", "sigmoid(q)".
std::string expression(const Tape& tape, NodeId id);
// The same for an op-table row applied to operands labelled a (and b).
std::string op_expression(Op op, std::string_view a, std::string_view b, double param);

// ---- tensor tapes ----
// "h = relu(t4): (4, 5) = [[0, 1.2, ...], ...]"; the values only when small.
std::string forward_line(const TensorTape& tape, NodeId id);
// "x @ W1", "sum(t3, axis=1)".
std::string expression(const TensorTape& tape, NodeId id);
// Elements 0, 1, ... of a tensor of `shape`, given by `element`, as nested lists
// "[[1, 2], [3, 4]]" (a single number for shape ()).
std::string format_nested(const Shape& shape, const std::function<double(std::int64_t)>& element);
// A node's elements as nested lists; "" when there are more than max.
std::string format_values(const TensorTape& tape, NodeId id, std::int64_t max_elements = 12);
// One line per input that gets a gradient, with shapes and gradient norms:
// "dL/dW1 (2, 5) = dL/dt5 (4, 5) · dt5/dW1   |contribution| = 0.1234".
std::string step_lines(const TensorStep& step);

}  // namespace ag

template <> struct fmt::formatter<ag::TensorStep> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
  template <class Context> auto format(const ag::TensorStep& step, Context& ctx) const {
    return fmt::format_to(ctx.out(), "{}", ag::step_lines(step));
  }
};

template <> struct fmt::formatter<ag::Step> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
  template <class Context> auto format(const ag::Step& step, Context& ctx) const {
    return fmt::format_to(ctx.out(), "{}", ag::step_lines(step));
  }
};
