// The step plan of a scalar tape: what a page shows at each forward and backward step (the nodes
// and edges it highlights or reveals, and its text), as JSON. Part of the core.

#pragma once

#include <cstddef>
#include <string>

#include "tapegrad/tape.hpp"

namespace ag {

// The graphs a page can follow step by step: beyond this many nodes a plan is refused.
inline constexpr std::size_t kMaxPageNodes = 400;

// Note [The step plan]
// ~~~~~~~~~~~~~~~~~~~~
// The pages that play a pass (the step-through page, page.hpp, and the playground) lay the
// lecture graph out once, after the whole pass, with GraphOptions::ids, and then only move
// classes on it; the plan says which. It is one JSON object:
//   {"colours": [VALUE, GRAD], "known": [EDGE...], "gradients": [LINE...], "steps": [STEP...]}
// "known" lists the edges of unnamed constants, whose values show from the start; "gradients"
// the lines `tapegrad step` ends with. Each step is
//   {"phase": "forward" | "backward", "nodes": [...], "edges": [...], "shows": [...],
//    "heading": "...", "lines": [...]}
// with the nodes to highlight (every leaf at once in the first forward step, as a lecture writes
// the given values down before it computes; then one node a step), the edges it writes
// (highlighted too) and the edges whose value (forward) or gradient (backward) appears from that
// step on. The text is what `tapegrad step` prints, from the same formatters: forward_line for a
// forward step, step_heading and step_lines for a backward one (Note [The Stepper is backward]).
// Strings are escaped so that the JSON can sit inside a <script> element as it is.

// Plans forward and backward from `output`. The forward steps are the leaves `output` depends on,
// as one step, then its other nodes in tape order; unnamed constants have no step; the backward
// steps are a Stepper's. Call it on a tape without an earlier backward: input gradients
// accumulate (Note [Gradient semantics]). Afterwards the tape holds the gradients of the pass, as
// after tape.backward(output). Throws ag::Error for a Value of another tape, or a graph of more
// than kMaxPageNodes nodes.
std::string step_plan_json(Tape& tape, Value output);

}  // namespace ag
