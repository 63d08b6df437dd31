// Computation graphs of a tape (scalar or tensor) as Graphviz DOT, built with cgraph, and
// rendered to SVG or PNG in-process with gvc: the native renderer of graph_model.hpp's model.

#pragma once

#include <string>
#include <string_view>

#include "tapegrad/graph_model.hpp"
#include "tapegrad/tape.hpp"
#include "tapegrad/tensor.hpp"

namespace ag {

// A graph model (Note [The graph model]) as DOT text, or rendered as render_graph below says.
// Calls are serialized, as for every function here.
std::string to_dot(const GraphModel& model);
std::string render_graph(const GraphModel& model, std::string_view format);

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
// unless they were zeroed (Note [Gradient semantics]). Note [Tensor edge gradients],
// graph_model.cpp.
std::string to_dot(const TensorTape& tape, NodeId output, const TensorGraphOptions& options = {});
std::string render_graph(const TensorTape& tape, NodeId output, std::string_view format,
                         const TensorGraphOptions& options = {});
void write_graph(const TensorTape& tape, NodeId output, const std::string& path,
                 const TensorGraphOptions& options = {});

}  // namespace ag
