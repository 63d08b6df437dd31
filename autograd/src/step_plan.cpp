// The step plan of a scalar tape (Note [The step plan]): the forward and backward steps a page
// plays on the lecture graph, as JSON, for the step-through page and the playground.

#include "tapegrad/step_plan.hpp"

#include <fmt/format.h>

#include <string>
#include <vector>

#include "json_text.hpp"
#include "look.hpp"
#include "tapegrad/error.hpp"
#include "tapegrad/format.hpp"

namespace ag {
namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  for (std::size_t at = 0; at <= text.size();) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return lines;
}

// The ids GraphOptions::ids gives.
std::string node_id(NodeId id) { return fmt::format("n{}", id); }
std::string edge_id(NodeId node, int k) { return fmt::format("e{}_{}", node, k); }

struct PageStep {
  bool forward = true;
  std::vector<std::string> nodes;  // the nodes to highlight: one, or every leaf at once
  std::vector<std::string> edges;  // the edges it writes: highlighted
  std::vector<std::string> shows;  // the edges whose value (forward) or gradient appears
  std::string heading;             // a backward step's "step 1: f = q * z"
  std::vector<std::string> lines;

  std::string json() const {
    return fmt::format(
        R"({{"phase": "{}", "nodes": {}, "edges": {}, "shows": {}, "heading": {}, "lines": {}}})",
        forward ? "forward" : "backward", json_strings(nodes), json_strings(edges),
        json_strings(shows), json_string(heading), json_strings(lines));
  }
};

}  // namespace

std::string step_plan_json(Tape& tape, Value output) {
  tape.check(output, "step_plan_json");
  const NodeId out = output.id();

  // The nodes the graph draws, found as it finds them (Note [The tape invariant]), and the edges
  // out of each: they carry its value.
  std::vector<bool> drawn(out + 1, false);
  drawn[out] = true;
  std::size_t count = 0;
  std::vector<std::vector<std::string>> edges_out(out + 1);
  edges_out[out].push_back("e_out");
  for (NodeId id = out + 1; id-- > 0;) {
    if (!drawn[id]) continue;
    ++count;
    for (int k = 0; k < tape.arity(id); ++k) {
      drawn[tape.input_of(id, k)] = true;
      edges_out[tape.input_of(id, k)].push_back(edge_id(id, k));
    }
  }
  if (count > kMaxPageNodes)
    throw Error(
        fmt::format("page: the graph has {} nodes; one of more than {} is too large to "
                    "follow step by step",
                    count, kMaxPageNodes));

  // The forward pass: every leaf (input or named constant) in one first step, as a lecture
  // writes the given values down before it computes, then one step per op.
  std::vector<PageStep> steps(1);
  steps[0].heading = "the inputs";
  std::vector<std::string> known;  // edges of unnamed constants: their values show from the start
  for (NodeId id = 0; id <= out; ++id) {
    if (!drawn[id]) continue;
    const std::string line = forward_line(tape, id);
    if (line.empty()) {
      known.insert(known.end(), edges_out[id].begin(), edges_out[id].end());
      continue;
    }
    PageStep& s = is_leaf(tape.op(id)) ? steps[0] : steps.emplace_back();
    s.nodes.push_back(node_id(id));
    s.edges.insert(s.edges.end(), edges_out[id].begin(), edges_out[id].end());
    s.lines.push_back(line);
  }
  for (PageStep& s : steps) s.shows = s.edges;
  if (steps[0].nodes.empty()) steps.erase(steps.begin());  // a program of constants alone

  for (Stepper stepper = tape.stepper(output); stepper.next();) {
    const Step& step = stepper.step();
    PageStep& s = steps.emplace_back();
    s.forward = false;
    s.nodes = {node_id(step.node)};
    if (step.index == 0) s.shows.push_back("e_out");  // d(out)/d(out) = 1, where the pass starts
    for (int k = 0; k < step.arity; ++k) {
      s.edges.push_back(edge_id(step.node, k));
      if (step.inputs[k].needs_grad) s.shows.push_back(edge_id(step.node, k));
    }
    s.heading = step_heading(step);
    s.lines = split_lines(step_lines(step));
  }

  std::vector<std::string> gradients;
  for (NodeId id = 0; id < out; ++id)
    if (drawn[id] && tape.op(id) == Op::input) gradients.push_back(gradient_line(tape, out, id));

  std::string json = "{\"colours\": " + json_strings({look::kValueColour, look::kGradColour}) +
                     ", \"known\": " + json_strings(known) +
                     ", \"gradients\": " + json_strings(gradients) + ", \"steps\": [";
  for (std::size_t i = 0; i < steps.size(); ++i) json += (i ? ",\n" : "\n") + steps[i].json();
  return json += "\n]}";
}

}  // namespace ag
