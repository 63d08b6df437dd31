// Computation graphs of a tape (scalar or tensor) as Graphviz DOT, built with cgraph, and
// rendered to SVG or PNG in-process with gvc.

#pragma once

#include <string>
#include <string_view>

#include "tapegrad/tape.hpp"
#include "tapegrad/tensor.hpp"

namespace ag {

enum class GraphStyle {
  lecture,  // op nodes as circles with their symbol, inputs as named boxes, constants as small
            // grey boxes; each edge labelled with its forward value (green) over the gradient
            // flowing back along it (red); the output ends in a box named after it
  values,   // micrograd's look: records "name | data | grad" joined by op nodes
  modules,  // tensor tapes only: the lecture look with each nn module a cluster labelled with
            // its path ("layers.0"), nested as the modules nest (Note [Scopes], tensor.hpp).
            // A scalar tape has no modules: asking for this style there is an ag::Error
};

struct GraphOptions {
  GraphStyle style = GraphStyle::lecture;
  // When set, draws the state during this step of a Stepper on the same output: gradients only
  // where the pass has already been (edges into nodes processed up to and including this step),
  // and the step's node with the edges it writes (its input edges) highlighted. Pass
  // &stepper.step() after each stepper.next() to get the frames of a backward pass.
  const Step* step = nullptr;
  // Lecture style: gives every node and edge an id that SVG output keeps (Graphviz's `id`), so
  // a script or stylesheet can find them: node i is "n<i>", the edge into input k of node i is
  // "e<i>_<k>", the output's box is "n_out" and the edge into it "e_out". The step-through
  // page (page.hpp) relies on these names.
  bool ids = false;
};

// The graph of every node `output` depends on, as DOT text. Deterministic: the same tape gives
// byte-identical text (nodes are named n<tape index>, inputs keep their order). Gradients are
// shown where the latest backward reached (Tape::reached); in the lecture style an edge carries
// the contribution d(out)/d(node) * d(node)/d(input) it passed back, so at a fork each edge shows
// its own share and the input's gradient is their sum. Throws ag::Error for a node that does not
// exist, a step from another tape or output, or the modules style. Graphviz is not thread-safe:
// calls are serialized.
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

// ---- tensor tapes -------------------------------------------------------------------------------
// The same drawing with tensors on it. Op nodes show their symbol (an elementwise op: the op
// table's; else @, linear, Σ, mean, max, ᵀ, reshape, pick, softmax, log_softmax) over their
// shape; inputs, parameters and named constants are boxes "name (shape)", an unnamed constant
// its values. An edge carries the source's values when it has at most `max_values` elements
// ("[[1, 2], [3, 4]]"), else its shape ("(4, 5)"); under it, once the pass has processed the
// edge's destination, the gradient: its values when small, else its norm ("|g| 0.1234").
//
// Unlike the scalar drawing, a tensor edge shows the source's gradient, not the edge's own
// contribution (which the tape does not keep). The two are equal when the source feeds a single
// edge. At a fork, every edge out of the source shows the source's gradient marked "Σ": the sum
// of the contributions of its edges processed so far, which is the whole gradient once the pass
// has gone past all of them. A leaf's gradient is what it holds, so it includes earlier passes
// unless they were zeroed (Note [Gradient semantics]). Note [Tensor edge gradients], graph.cpp.
struct TensorGraphOptions {
  GraphStyle style = GraphStyle::lecture;
  // As GraphOptions::step: &stepper.step() after each TensorStepper::next() draws the frames of
  // a backward pass.
  const TensorStep* step = nullptr;
  // A tensor of at most this many elements is shown by its values, a larger one by its shape
  // (edges) or its gradient's norm. The modules style, an overview, shows the values of
  // single-element tensors only (the loss), whatever this says.
  int max_values = 6;
};

std::string to_dot(const TensorTape& tape, NodeId output, const TensorGraphOptions& options = {});
std::string render_graph(const TensorTape& tape, NodeId output, std::string_view format,
                         const TensorGraphOptions& options = {});
void write_graph(const TensorTape& tape, NodeId output, const std::string& path,
                 const TensorGraphOptions& options = {});

}  // namespace ag
