// Lecture-style text for forward values and backward steps.

#include "tapegrad/format.hpp"

#include <fmt/format.h>

#include <cmath>

namespace ag {

std::string format_number(double x) {
  if (x == 0) x = 0;  // no "-0"
  // Note [Digits shown]: from 10^4 on, the whole part; 70000 is not 7e+04.
  if (std::abs(x) >= 1e4 && std::abs(x) < kWholeBelow) return fmt::format("{:.0f}", x);
  return fmt::format("{:.4g}", x);
}

std::string op_expression(Op op, std::string_view a, std::string_view b, double param) {
  const OpInfo& info = op_info(op);
  switch (info.notation) {
    case Notation::infix:  // x + y; x ^ 2 for a fixed exponent
      return fmt::format("{} {} {}", a, info.symbol, info.has_param ? format_number(param) : b);
    case Notation::prefix: return fmt::format("{}{}", info.symbol, a);
    case Notation::call:
      // leaky_relu(x, 0.01), clamp_min(x, -1): a row with a fixed number
      if (info.has_param) return fmt::format("{}({}, {})", info.name, a, format_number(param));
      if (info.arity == 2) return fmt::format("{}({}, {})", info.name, a, b);
      return fmt::format("{}({})", info.name, a);
  }
  return {};  // not reached: every notation returns above
}

std::string expression(const Tape& tape, NodeId id) {
  const Op op = tape.op(id);
  if (is_leaf(op)) return tape.label(id);
  const std::string a = tape.label(tape.input_of(id, 0));
  const std::string b = tape.arity(id) == 2 ? tape.label(tape.input_of(id, 1)) : std::string();
  return op_expression(op, a, b, tape.param(id));
}

std::string forward_line(const Tape& tape, NodeId id) {
  const Op op = tape.op(id);
  if (op == Op::constant && tape.name(id).empty()) return {};
  const std::string value = format_number(tape.value(id));
  if (is_leaf(op)) return fmt::format("{} = {}", tape.label(id), value);
  return fmt::format("{} = {} = {}", tape.label(id), expression(tape, id), value);
}

std::string step_heading(const Step& step) {
  return fmt::format("step {}: {} = {}", step.index + 1, step.tape->label(step.node),
                     expression(*step.tape, step.node));
}

std::string step_lines(const Step& step) {
  const Tape& tape = *step.tape;
  const std::string out = tape.label(step.output);
  const std::string node = tape.label(step.node);
  std::string text;
  // Note [The seed line]: the pass starts from d(out)/d(out) = 1, said once before it is used.
  if (step.index == 0 && step.node == step.output)
    text = fmt::format("d{}/d{} = {}", out, out, format_number(step.upstream));
  for (int k = 0; k < step.arity; ++k) {
    const InputStep& s = step.inputs[k];
    if (!s.needs_grad) continue;
    const std::string in = tape.label(s.id);
    if (!text.empty()) text += '\n';
    fmt::format_to(std::back_inserter(text),
                   "d{}/d{} {} d{}/d{} \u00b7 \u2202{}/\u2202{} = {} \u00b7 {} = {}", out, in,
                   s.accumulated ? "+=" : "=", out, node, node, in, format_number(step.upstream),
                   format_number(s.local), format_number(s.contribution));
    if (s.accumulated)
      fmt::format_to(std::back_inserter(text), ", so d{}/d{} = {}", out, in,
                     format_number(s.grad_after));
  }
  return text;
}

std::string gradient_line(const Tape& tape, NodeId output, NodeId id) {
  return fmt::format("d{}/d{} = {}", tape.label(output), tape.label(id),
                     format_number(tape.grad(id)));
}

}  // namespace ag
