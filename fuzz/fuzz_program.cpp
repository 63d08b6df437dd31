// Fuzzes the program language end to end, as `tapegrad step` runs it: parse, NAME=VALUE
// inputs, record on a tape, the forward lines, every backward step and its chain-rule text.

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <tapegrad/autograd.hpp>
#include <vector>

#include "program.hpp"
#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::expect_clear_errors([&] {
    const tapegrad::Program program(fuzz::text(data, size));
    // Values with the edge cases of log, sqrt, pow and division among them, given as the
    // command line gives them.
    constexpr const char* kValues[] = {"0.5", "-2", "0", "3", "1e-300", "-0.25", "1e300"};
    std::vector<std::string> assignments;
    for (std::size_t i = 0; i < program.inputs().size(); ++i)
      assignments.push_back(program.inputs()[i] + "=" + kValues[i % std::size(kValues)]);

    ag::Tape tape;
    const auto r = program.record(tape, program.input_values(assignments));
    std::size_t text = 0;
    for (ag::NodeId id = 0; id < tape.size(); ++id) text += ag::forward_line(tape, id).size();
    ag::Stepper stepper = tape.stepper(r.output);
    while (stepper.next()) {
      const ag::Step& step = stepper.step();
      text += ag::expression(tape, step.node).size() + fmt::format("{}", step).size();
    }
    tape.backward(r.output);  // the whole pass again: gradients accumulate into the inputs
    for (const ag::Value& input : r.inputs) text += ag::format_number(input.grad()).size();
    volatile std::size_t sink = text;  // keeps the formatting from being optimized away
    (void)sink;
  });
  return 0;
}
