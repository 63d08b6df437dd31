// Lecture-style text for tensor tapes: forward lines with shapes (and values
// when small), and backward steps with shapes and gradient norms.

#include <fmt/format.h>

#include <cmath>

#include "tapegrad/format.hpp"
#include "tensor_ops.hpp"

namespace ag {

std::string expression(const TensorTape& tape, NodeId id) {
  return dispatch(tape.op(id), [&](auto entry) { return decltype(entry)::expression(tape, id); });
}

std::string format_nested(const Shape& shape, const std::function<double(std::int64_t)>& element) {
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
  if (!is_leaf(op)) line += " = " + expression(tape, id);
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
                   tape.shape(s.id), s.accumulated ? "+=" : "=", out, node, tape.shape(step.node),
                   node, in);
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
