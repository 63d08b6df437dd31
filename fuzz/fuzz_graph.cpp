// Fuzzes graph export of parsed programs, as `tapegrad dot` runs it: parse, record, backward,
// the graph model in both styles and its DOT text, and a layout when the drawing is small.

#include <cstddef>
#include <cstdint>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/graph.hpp>
#include <vector>

#include "program.hpp"
#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::expect_clear_errors([&] {
    const tapegrad::Program program(fuzz::text(data, size));
    std::vector<std::string> assignments;
    for (const std::string& input : program.inputs()) assignments.push_back(input + "=0.5");
    ag::Tape tape;
    const auto r = program.record(tape, program.input_values(assignments));
    const ag::NodeId out = r.output.id();
    // Past the drawing budget every export is the one ag::Error (Note [The drawing budget]).
    ag::check_drawing_budget(tape, out);
    // The frame of the first backward step, then the whole graph after backward, as
    // `step --frames` draws them.
    ag::Stepper stepper = tape.stepper(r.output);
    if (stepper.next()) {
      const ag::GraphOptions frame{.style = ag::GraphStyle::lecture, .step = &stepper.step()};
      (void)ag::graph_model(tape, out, frame);
    }
    tape.backward(r.output);
    std::size_t text = 0;
    for (const ag::GraphStyle style : {ag::GraphStyle::lecture, ag::GraphStyle::values}) {
      const ag::GraphModel model = ag::graph_model(tape, out, {.style = style, .ids = true});
      text += ag::to_dot(model).size();
      // A layout costs up to a second at the budget: only small drawings, which still have
      // every kind of node, label and copy (Note [Long edges] starts past 64 edges).
      if (model.edges.size() <= 80) text += ag::render_graph(model, "svg").size();
    }
    volatile std::size_t sink = text;  // keeps the export from being optimized away
    (void)sink;
  });
  return 0;
}
