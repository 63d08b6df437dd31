// Computation graphs of a tape as Graphviz DOT, built with cgraph, and rendered
// to SVG or PNG in-process with gvc.

#pragma once

#include <string>
#include <string_view>

#include "tapegrad/tape.hpp"

namespace ag {

enum class GraphStyle {
  lecture,  // op nodes as circles with their symbol, inputs as named boxes;
            // each edge labelled with its forward value and its gradient
  values,   // micrograd's look: record nodes "name | value | grad" joined by op nodes
};

struct GraphOptions {
  GraphStyle style = GraphStyle::lecture;
  // When set, draws the state during this step of a Stepper: the gradients
  // known so far, the step's node and the edges it writes highlighted.
  const Step* step = nullptr;
};

// The graph of every node `output` depends on, as DOT text. Deterministic: the
// same tape gives byte-identical text (nodes are named by tape index, inputs
// keep their order). Gradients are shown on nodes the latest backward reached.
std::string to_dot(const Tape& tape, NodeId output, const GraphOptions& options = {});

// Renders the graph with Graphviz's dot layout; format is "svg", "png" or
// "dot". Returns the bytes. Throws ag::Error naming an unknown format.
std::string render_graph(const Tape& tape, NodeId output, std::string_view format,
                         const GraphOptions& options = {});

// Writes the graph to `path`, in the format its extension names (.dot, .svg,
// .png). An unknown extension is an ag::Error and nothing is written; the file
// appears whole or not at all (written to a temporary, then renamed).
void write_graph(const Tape& tape, NodeId output, const std::string& path,
                 const GraphOptions& options = {});

}  // namespace ag
