// The graph model: what a drawing of a tape (scalar or tensor) shows, as plain data (nodes,
// edges, their Graphviz attributes, module clusters), built without Graphviz. Part of the core.

#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

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
  // Draws the backward pass as a graph (Note [Drawing the backward pass]): `gradients` are what
  // tape.grad(output, wrt, {.create_graph = true}) just returned, one per node of `wrt`. Lecture
  // style only, without a step.
  std::span<const Value> wrt = {};
  std::span<const Value> gradients = {};
};

// Note [Drawing the backward pass]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// With create_graph, backward is itself a computation recorded on the tape after the output
// (Note [Gradients on the tape], tape.hpp), and drawn as one: the forward nodes muted in grey,
// the nodes backward recorded in the gradient colour, each labelled with the rule it came from
// (Tape::gradient_steps): for the step at f with input x, "∂f/∂x" for the local derivative,
// "∂f/∂x · upstream" for the contribution, "Σ ∂L/∂x" where a fork adds contributions, "∂L/∂L"
// for the seed 1. Each gradient returned ends in a box "∂L/∂x". A local derivative the rule
// takes from the forward graph (mul's is its other input) is drawn where it is, muted, with an
// edge into the contribution; add passes its upstream on with no node. Edges carry values only:
// the backward graph's own gradients would need a further pass.

// How a tensor tape is drawn: graph.hpp's "tensor tapes" section says what the nodes and edges
// show.
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

// Note [The graph model]
// ~~~~~~~~~~~~~~~~~~~~~~
// A GraphModel is a directed Graphviz graph written down as data: every decision about what is
// drawn and how it looks (labels, shapes, colours, the highlighted step, the module clusters) is
// taken when it is built from a tape, so a renderer only transcribes it. It maps one to one onto
// the JSON graph that @viz-js/viz (Graphviz in WebAssembly, for the browser) renders:
//   graph_attributes, node_attributes, edge_attributes -> graphAttributes, nodeAttributes,
//                                                          edgeAttributes (the defaults)
//   nodes -> nodes: [{name, attributes}]      edges -> edges: [{tail, head, attributes}]
//   subgraphs -> subgraphs: [{name, graphAttributes, nodes, subgraphs}], nested by `parent`,
//                each holding the names of the nodes whose `subgraph` is its index
//   an attribute with html set -> {html: "..."}, an HTML-like label; else a plain string
// The native renderer (graph.hpp) makes the same graph through cgraph. Order is part of the
// model, because Graphviz's layout and DOT text follow creation order: nodes and edges are
// listed as they are created, subgraphs in order of first use with parents first (Note
// [Subgraph order], graph.cpp), so the same tape gives the same model, the same DOT and the same
// picture on both renderers.
struct GraphAttribute {
  std::string name;
  std::string value;
  bool html = false;  // an HTML-like label (`<...>` in DOT): markup, not text
};
using GraphAttributes = std::vector<GraphAttribute>;

struct GraphNode {
  std::string name;  // "n<tape index>"; "n<i>_op" (values style); "out" (the output's box)
  GraphAttributes attributes;
  int subgraph = -1;  // the index of the subgraph (cluster) it is drawn in; -1: the graph itself
};

struct GraphEdge {
  std::string tail, head;  // node names
  GraphAttributes attributes;
};

struct GraphSubgraph {
  std::string name;  // "cluster_<scope>": Graphviz frames a subgraph whose name starts so
  GraphAttributes attributes;
  int parent = -1;  // an earlier subgraph it nests in; -1: the graph itself
};

struct GraphModel {
  GraphAttributes graph_attributes;  // the graph's own, and the defaults of its subgraphs
  GraphAttributes node_attributes;   // every node's defaults
  GraphAttributes edge_attributes;   // every edge's defaults
  std::vector<GraphNode> nodes;
  std::vector<GraphEdge> edges;
  std::vector<GraphSubgraph> subgraphs;
};

// Note [The drawing budget]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Graphviz's dot layout is not linear in the size of a graph, and a drawing nobody can read is
// no use in a lecture, so a graph is drawn only within a budget: at most kMaxDrawnNodes nodes
// of the tape and kMaxDrawnEdges edges between them (the output's box and its edge, and the
// copies of Note [Long edges], graph_model.cpp, are not counted). Past it, graph_model throws
// an ag::Error saying so, after one walk down the tape and before any text is made: a refusal
// costs time and memory in proportion to the tape, never to a drawing. Every front end (DOT
// text, SVG and PNG files, step frames, the step page, the playground) builds its graph here
// and gets the same budget. At the budget the slowest layouts measured (a chain with a
// constant at every link; sums of products of distinct inputs) take about 1 s.
inline constexpr std::size_t kMaxDrawnNodes = 1000;
inline constexpr std::size_t kMaxDrawnEdges = 1000;

// Throws the ag::Error of Note [The drawing budget] when the graph of `output` is past it, or
// `output` does not exist; does nothing else. For front ends that must refuse before they
// print or write anything.
void check_drawing_budget(const Tape& tape, NodeId output);
void check_drawing_budget(const TensorTape& tape, NodeId output);

// The graph of every node `output` depends on. Deterministic: the same tape gives the same model
// (nodes are named n<tape index>, inputs keep their order). Gradients are shown where the latest
// backward reached (Tape::reached); graph.hpp says what each style shows. Throws ag::Error for a
// node that does not exist, a step from another tape or output, the modules style, or a graph
// past the drawing budget (Note [The drawing budget]).
GraphModel graph_model(const Tape& tape, NodeId output, const GraphOptions& options = {});
GraphModel graph_model(const TensorTape& tape, NodeId output,
                       const TensorGraphOptions& options = {});

// The rule each node recorded by the latest grad with create_graph came from, by node id ("" for
// the others): "∂f/∂x", "∂f/∂x · upstream", "Σ ∂L/∂x", "∂L/∂L" (Note [Drawing the backward
// pass]). The drawing labels its nodes with them, and `tapegrad step --order 2` its lines.
std::vector<std::string> backward_rules(const Tape& tape, NodeId output);

// The model as the JSON graph object @viz-js/viz renders (Note [The graph model] gives the
// mapping), {"directed": true, ...}: the playground's renderer, fed the model the native one
// draws. Safe inside a <script> element as it is.
std::string graph_model_json(const GraphModel& model);

}  // namespace ag
