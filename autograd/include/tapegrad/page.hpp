// The step-through page: one self-contained HTML file that plays a forward and a backward pass
// on the lecture-style graph, one node at a time, with the chain rule of each step beside it.

#pragma once

#include <cstddef>
#include <string>

#include "tapegrad/step_plan.hpp"  // kMaxPageNodes
#include "tapegrad/tape.hpp"

namespace ag {

// Note [The step-through page]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The graph is laid out once, after the whole pass, so it carries every label it will ever show
// and nothing moves from one step to the next. Its SVG, rendered by Graphviz, goes into the page
// as it is, with a stable id on every node and edge (GraphOptions::ids). The steps go in as JSON:
// for each, the nodes to highlight (every leaf at once in the first forward step, as a lecture
// writes the given values down before it computes; then one node a step), the edges it writes
// (highlighted too) and the edges whose value (forward) or gradient (backward) appears from that
// step on, and its text. The page's small script only moves classes: what is shown at step i is the
// same whichever way i was reached (Note [The step plan], step_plan.hpp, which the playground
// plays too). The text is what `tapegrad step` prints, from the same
// formatters: forward_line for a forward step, step_heading and step_lines for a backward one (Note
// [The Stepper is backward]: the page shows the steps the engine took). Nothing is fetched: no
// network is needed to open it, from a file:// address too.

struct PageOptions {
  std::string title;  // the heading and the window's title; plain text ("" gives "tapegrad")
};

// Steps through forward and backward from `output` and returns the page (UTF-8 HTML). The
// forward steps are the leaves `output` depends on, as one step, then its other nodes in tape
// order; unnamed constants have no step: their values are on their edges from the start; the
// backward steps are a Stepper's. Call it on a tape without an earlier backward: input gradients
// accumulate (Note [Gradient semantics]). Afterwards the tape holds the gradients of the pass, as
// after tape.backward(output). Throws ag::Error for a Value of another tape, or a graph of more
// than kMaxPageNodes nodes.
std::string step_page(Tape& tape, Value output, const PageOptions& options = {});

}  // namespace ag
