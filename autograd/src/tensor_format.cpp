// Lecture-style text for tensor tapes: forward lines with shapes (and values
// when small), and backward steps with shapes and gradient norms.

#include <fmt/format.h>

#include <cmath>

#include "tapegrad/format.hpp"

namespace ag {

std::string expression(const TensorTape& tape, NodeId id) {
  const TOp op = tape.op(id);
  auto in = [&](int k) { return tape.label(tape.input_of(id, k)); };
  const std::string axis = fmt::format("axis={}", tape.axis(id));
  switch (op) {
    case TOp::input:
    case TOp::parameter:
    case TOp::constant: return tape.label(id);
    case TOp::elementwise: {
      const Op e = tape.elementwise_op(id);
      return op_expression(e, in(0), op_info(e).arity == 2 ? in(1) : std::string(),
                           tape.param(id));
    }
    case TOp::matmul: return fmt::format("{} @ {}", in(0), in(1));
    case TOp::linear:
      if (tape.arity(id) == 3) return fmt::format("linear({}, {}, {})", in(0), in(1), in(2));
      return fmt::format("linear({}, {})", in(0), in(1));
    case TOp::transpose: return fmt::format("transpose({})", in(0));
    case TOp::reshape: return fmt::format("reshape({}, {})", in(0), tape.shape(id).str());
    case TOp::sum:
    case TOp::mean:
      if (tape.axis(id) == kAllAxes) return fmt::format("{}({})", top_name(op), in(0));
      return fmt::format("{}({}, {})", top_name(op), in(0), axis);
    case TOp::amax:
    case TOp::log_softmax:
    case TOp::softmax: return fmt::format("{}({}, {})", top_name(op), in(0), axis);
    case TOp::pick: return fmt::format("pick({}, labels)", in(0));
  }
  return "?";
}

std::string format_nested(const Shape& shape,
                          const std::function<double(std::int64_t)>& element) {
  if (shape.rank() == 0) return format_number(element(0));
  std::string text;
  std::int64_t flat = 0;
  // One bracket pair per axis; the last axis holds the numbers.
  auto emit = [&](auto&& self, int axis) -> void {
    text += '[';
    for (std::int64_t i = 0; i < shape[axis]; ++i) {
      if (i) text += ", ";
      if (axis + 1 == shape.rank())
        text += format_number(element(flat++));
      else
        self(self, axis + 1);
    }
    text += ']';
  };
  emit(emit, 0);
  return text;
}

std::string format_values(const TensorTape& tape, NodeId id, std::int64_t max_elements) {
  if (tape.shape(id).numel() > max_elements) return {};
  return format_nested(tape.shape(id), [&](std::int64_t i) { return tape.value(id, i); });
}

std::string forward_line(const TensorTape& tape, NodeId id) {
  const TOp op = tape.op(id);
  if (op == TOp::constant && tape.name(id).empty()) return {};
  std::string line = tape.label(id);
  if (op != TOp::input && op != TOp::parameter && op != TOp::constant)
    line += " = " + expression(tape, id);
  line += ": " + tape.shape(id).str();
  if (std::string v = format_values(tape, id); !v.empty()) line += " = " + v;
  return line;
}

std::string step_lines(const TensorStep& step) {
  const TensorTape& tape = *step.tape;
  const std::string out = tape.label(step.output);
  const std::string node = tape.label(step.node);
  std::string text;
  for (int k = 0; k < step.arity; ++k) {
    const TensorInputStep& s = step.inputs[k];
    if (!s.needs_grad) continue;
    const std::string in = tape.label(s.id);
    if (!text.empty()) text += '\n';
    fmt::format_to(std::back_inserter(text), "d{}/d{} {} {} d{}/d{} {} · d{}/d{}", out, in,
                   tape.shape(s.id).str(), s.accumulated ? "+=" : "=", out, node,
                   tape.shape(step.node).str(), node, in);
    if (!std::isnan(s.contribution_norm)) {
      fmt::format_to(std::back_inserter(text), "   |contribution| = {}",
                     format_number(s.contribution_norm));
      if (s.accumulated)
        fmt::format_to(std::back_inserter(text), ", so |d{}/d{}| = {}", out, in,
                       format_number(s.grad_norm));
    }
  }
  return text;
}

}  // namespace ag
