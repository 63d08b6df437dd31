// Computation graphs of a tape as Graphviz DOT, built with cgraph, and rendered
// to SVG or PNG in-process with gvc.

#pragma once

#include <string>
#include <string_view>

#include "tapegrad/tape.hpp"

namespace ag {

enum class GraphStyle {
  lecture,  // op nodes as circles with their symbol, inputs as named boxes, constants as small
            // grey boxes; each edge labelled with its forward value (green) over the gradient
            // flowing back along it (red); the output ends in a box named after it
  values,   // micrograd's look: records "name | data | grad" joined by op nodes
};

struct GraphOptions {
  GraphStyle style = GraphStyle::lecture;
  // When set, draws the state during this step of a Stepper on the same output: gradients only
  // where the pass has already been (edges into nodes processed up to and including this step),
  // and the step's node with the edges it writes (its input edges) highlighted. Pass
  // &stepper.step() after each stepper.next() to get the frames of a backward pass.
  const Step* step = nullptr;
};

// The graph of every node `output` depends on, as DOT text. Deterministic: the same tape gives
// byte-identical text (nodes are named n<tape index>, inputs keep their order). Gradients are
// shown where the latest backward reached (Tape::reached); in the lecture style an edge carries
// the contribution d(out)/d(node) * d(node)/d(input) it passed back, so at a fork each edge shows
// its own share and the input's gradient is their sum. Throws ag::Error for a node that does not
// exist or a step from another tape or output. Graphviz is not thread-safe: calls are serialized.
std::string to_dot(const Tape& tape, NodeId output, const GraphOptions& options = {});

// Renders the graph in-process with Graphviz's dot layout; format is "svg", "png" (150 dpi) or
// "dot". Returns the bytes. Throws ag::Error naming an unknown format or quoting Graphviz's
// message when it fails.
std::string render_graph(const Tape& tape, NodeId output, std::string_view format,
                         const GraphOptions& options = {});

// Writes the graph to `path`, in the format its extension names (.dot, .svg, .png; any case).
// An unknown or missing extension is an ag::Error and nothing is written. The file appears whole
// or not at all: it is written to a temporary in the same directory, then renamed; on failure the
// temporary is removed and the ag::Error names the path and the system's reason.
void write_graph(const Tape& tape, NodeId output, const std::string& path,
                 const GraphOptions& options = {});

}  // namespace ag
