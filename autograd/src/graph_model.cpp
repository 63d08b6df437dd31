// The graph model of a tape (scalar or tensor): which nodes a drawing shows, the texts on them
// and on their edges, and how each looks, as data a renderer transcribes (graph_model.hpp).

#include "tapegrad/graph_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "json_text.hpp"
#include "look.hpp"
#include "markup.hpp"
#include "tapegrad/error.hpp"
#include "tapegrad/format.hpp"
#include "tensor_ops.hpp"

namespace ag {
namespace {

// ---- Label text ---------------------------------------------------------------------------------

// A user's name in a plain label: Graphviz reads backslash escapes (\n, \N...) there.
std::string escape_plain(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// Text inside an HTML-like label: escape_html, markup.hpp.

// Text of several lines inside an HTML-like label.
std::string html_lines(std::string_view s) {
  std::string out;
  for (std::size_t start = 0;;) {
    const std::size_t end = s.find('\n', start);
    out += escape_html(s.substr(start, end - start));
    if (end == std::string_view::npos) return out;
    out += "<br/>";
    start = end + 1;
  }
}

// ---- The look: look.hpp ------------------------------------------------------------------------

using namespace look;

// ---- What a graph shows -------------------------------------------------------------------------

// Note [What a graph shows]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Nodes: every node the output depends on, found by one walk down the tape from the output (an
// input always has a lower id, Note [The tape invariant]), created in increasing id order and
// named n<id>, so the DOT text depends on the tape alone.
// Gradients: an edge dst <- src (input k of dst) carries what the stepper passed back along it
// when it processed dst. It is shown once dst has been processed by the latest pass: dst was
// reached, and, when drawing during a Step, dst is at or above that step's node (the stepper
// goes down the tape). Constants, and nodes computed from constants only, never get one (Note
// [Gradient semantics]). On a scalar tape that is the contribution d(out)/d(dst) * d(dst)/d(src);
// on a tensor tape see Note [Tensor edge gradients].
//
// Note [One builder for both tapes]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// GraphBuilder draws a GraphText: the drawn nodes with their texts already written (a box's
// label, an op's symbol, name and shape, the value and gradient on each edge). A scalar tape and
// a tensor tape each fill one (scalar_text, TensorText): what differs between them is how
// numbers become text and what an edge's gradient is; everything Graphviz sees is decided once,
// in the builder, which writes it down as the GraphModel (Note [The graph model]).

enum class NodeKind { input, constant, op };

struct EdgeText {
  NodeId from = 0;
  std::string value;                // the source's forward value: "3", "[1, 2]", "(4, 5)"
  std::optional<std::string> grad;  // what flowed back along it, once the pass has been there
};

struct NodeText {
  NodeId id = 0;
  NodeKind kind = NodeKind::op;
  std::string box;     // leaves: the text in the lecture's box
  std::string symbol;  // ops: as the lecture draws it
  std::string name;    // ops: written under the symbol ("" for none, and for the output)
  std::string shape;   // tensor ops: written under the name; "" on a scalar tape
  // The values style's record "label | data value | grad grad"; grad is the node's gradient as
  // the engine holds it now (complete once all its consumers are processed, the sum so far
  // during a step), none where the pass has not been.
  std::string label;
  std::string value;
  std::optional<std::string> grad;
  std::vector<EdgeText> inputs;
  bool highlighted = false;  // the node of the step being drawn
  // Note [Drawing the backward pass]: a forward node, drawn muted, or a node backward recorded,
  // with the rule it came from.
  bool muted = false;
  std::string rule;
  std::uint16_t scope = 0;  // Note [Scopes]; 0 outside any module
};

struct ScopeText {
  std::string name;
  std::uint16_t parent;
};

struct GraphText {
  GraphStyle style = GraphStyle::lecture;
  std::vector<NodeText> nodes;    // the drawn nodes, by increasing id
  std::string output_box;         // the output's name, in the box the graph ends with
  EdgeText output;                // the output's value and gradient, on the edge into that box
  std::vector<ScopeText> scopes;  // the modules style: the tape's scopes, [0] outside any
  bool ids = false;               // GraphOptions::ids
  // Note [Drawing the backward pass]: each gradient's box "∂L/∂x" and the edge into it.
  bool backward = false;
  std::vector<std::pair<std::string, EdgeText>> gradient_outputs;
};

// The walk both tapes share: which nodes are drawn, by id, once the drawing is known to be
// within the budget (Note [The drawing budget], graph_model.hpp). Counting costs one pass down
// the tape, so a refusal never builds any text.
// `more_roots` are drawn too, with what they depend on (the gradients of Note [Drawing the
// backward pass]).
template <class TapeT>
std::vector<bool> nodes_within_budget(const TapeT& tape, NodeId output,
                                      std::span<const NodeId> more_roots = {}) {
  if (output >= tape.size())
    throw Error(
        fmt::format("graph: node {} does not exist: the tape has {} nodes", output, tape.size()));
  NodeId top = output;
  for (const NodeId root : more_roots) top = std::max(top, root);
  if (top >= tape.size())
    throw Error(
        fmt::format("graph: node {} does not exist: the tape has {} nodes", top, tape.size()));
  std::vector<bool> drawn(top + 1, false);
  drawn[output] = true;
  for (const NodeId root : more_roots) drawn[root] = true;
  std::size_t nodes = 0, edges = 0;
  for (NodeId id = top + 1; id-- > 0;) {
    if (!drawn[id]) continue;
    ++nodes;
    edges += static_cast<std::size_t>(tape.arity(id));
    for (int k = 0; k < tape.arity(id); ++k) drawn[tape.input_of(id, k)] = true;
  }
  if (nodes > kMaxDrawnNodes || edges > kMaxDrawnEdges)
    fail(
        "graph: {} nodes and {} edges are past the drawing budget of {} nodes and {} edges "
        "(Graphviz would take too long to lay them out, and nobody could read them): draw a "
        "smaller program",
        nodes, edges, kMaxDrawnNodes, kMaxDrawnEdges);
  return drawn;
}

// The checks and the walk both tapes share.
template <class TapeT, class StepT>
std::vector<bool> nodes_to_draw(const TapeT& tape, NodeId output, const StepT* step) {
  if (output >= tape.size())
    throw Error(
        fmt::format("graph: node {} does not exist: the tape has {} nodes", output, tape.size()));
  if (step != nullptr) {
    if (step->tape != &tape) throw Error("graph: the step belongs to another tape");
    if (step->output != output)
      fail("graph: the step is from a backward pass from node {}, not {}", step->output, output);
  }
  return nodes_within_budget(tape, output);
}

// How far the pass drawn has gone (Note [What a graph shows]).
template <class StepT> struct Progress {
  const StepT* step;
  // A step has been taken (a Step before the first next() has arity 0).
  bool stepping() const { return step != nullptr && step->arity > 0; }
  bool highlighted(NodeId id) const { return stepping() && step->node == id; }
  // Whether the pass has passed the gradient of `id`, an op node it reached, to its inputs.
  bool processed(NodeId id, bool reached) const {
    if (!reached) return false;
    if (step == nullptr) return true;
    return stepping() && id >= step->node;
  }
};

GraphText scalar_text(const Tape& tape, NodeId output, const GraphOptions& options) {
  const bool backward = !options.gradients.empty() || !options.wrt.empty();
  std::vector<NodeId> gradient_ids;
  if (backward) {
    if (options.style != GraphStyle::lecture)
      throw Error("graph: the backward pass is drawn in the lecture style only");
    if (options.step != nullptr)
      throw Error("graph: the backward pass is drawn whole, not during a step");
    if (options.gradients.size() != options.wrt.size())
      fail("graph: {} gradients for {} inputs: give one gradient per input",
           options.gradients.size(), options.wrt.size());
    for (const Value& g : options.gradients) {
      tape.check(g, "graph");
      gradient_ids.push_back(g.id());
    }
    for (const Value& x : options.wrt) tape.check(x, "graph");
  }
  if (options.style == GraphStyle::modules)
    throw Error(
        "graph: the modules style draws the nn modules of a tensor tape; a scalar tape has "
        "none: use the lecture or values style");
  const std::vector<bool> drawn = backward ? nodes_within_budget(tape, output, gradient_ids)
                                           : nodes_to_draw(tape, output, options.step);
  const std::vector<std::string> rules =
      backward ? backward_rules(tape, output) : std::vector<std::string>{};
  const Progress<Step> progress{options.step};
  GraphText model;
  model.style = options.style;
  model.ids = options.ids && !backward;
  model.backward = backward;
  for (NodeId id = 0; id < drawn.size(); ++id) {
    if (!drawn[id]) continue;
    NodeText& node = model.nodes.emplace_back();
    const Op op = tape.op(id);
    node.id = id;
    node.kind = op == Op::input      ? NodeKind::input
                : op == Op::constant ? NodeKind::constant
                                     : NodeKind::op;
    node.box = op == Op::constant ? format_number(tape.value(id)) : tape.label(id);
    node.symbol = op_info(op).symbol;
    if (id != output) node.name = tape.name(id);
    node.label = tape.label(id);
    node.value = format_number(tape.value(id));
    if (tape.reached(id)) node.grad = format_number(tape.grad(id));
    node.highlighted = progress.highlighted(id);
    node.muted = backward && id <= output;
    if (backward && id > output) node.rule = rules[id];
    const bool processed = !backward && !is_leaf(op) && progress.processed(id, tape.reached(id));
    for (int k = 0; k < tape.arity(id); ++k) {
      const NodeId src = tape.input_of(id, k);
      EdgeText& edge = node.inputs.emplace_back();
      edge.from = src;
      edge.value = format_number(tape.value(src));
      if (processed && tape.needs_grad(src))
        edge.grad = format_number(tape.grad(id) * tape.local_grad(id, k));
    }
  }
  model.output_box = tape.label(output);
  model.output.from = output;
  model.output.value = format_number(tape.value(output));
  if (tape.reached(output) && !backward) model.output.grad = format_number(tape.grad(output));
  for (std::size_t k = 0; k < gradient_ids.size(); ++k) {
    EdgeText edge;
    edge.from = gradient_ids[k];
    edge.value = format_number(tape.value(gradient_ids[k]));
    model.gradient_outputs.emplace_back(
        fmt::format("∂{}/∂{}", model.output_box, tape.label(options.wrt[k].id())), std::move(edge));
  }
  return model;
}

// Note [Tensor edge gradients]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A scalar edge's gradient is one product, recomputed from what the tape keeps. A tensor edge's
// contribution is a vector-Jacobian product that backward adds straight into the source's
// gradient and does not keep; recomputing it would mean running the op's backward again into a
// scratch buffer, which the tensor tape does not offer. So a tensor edge shows the source's
// gradient as the tape holds it, which is honest as long as it says which it is:
//  - a source that feeds one edge of the graph gets everything from that edge: its gradient IS
//    the edge's contribution (intermediate gradients restart from zero each pass);
//  - a source that feeds several edges (a fork, or x * x) holds the sum of the contributions of
//    the edges processed so far: each processed edge shows it marked "Σ", which is the full
//    gradient once the pass has gone past every edge out of the source;
//  - a leaf's gradient accumulates across passes (Note [Gradient semantics]): it equals this
//    pass's contribution when it was zeroed before, as a training step does.
// The lecture's point, that at a fork the gradients add, reads from the Σ: the test "a fork on a
// tensor tape shows the total, marked" checks it equals the sum of what the branches pass back.

class TensorText {
 public:
  TensorText(const TensorTape& tape, NodeId output, const TensorGraphOptions& options)
      : tape_(tape),
        // The modules style is the overview: shapes and norms, and a value only where it is
        // one number (the loss).
        max_values_(options.style == GraphStyle::modules ? std::min(options.max_values, 1)
                                                         : std::max(options.max_values, 0)) {
    const std::vector<bool> drawn = nodes_to_draw(tape, output, options.step);
    const Progress<TensorStep> progress{options.step};
    // Edges out of each node: more than one makes a fork (Note [Tensor edge gradients]).
    std::vector<int> uses(output + 1, 0);
    for (NodeId id = 0; id <= output; ++id)
      if (drawn[id])
        for (int k = 0; k < tape.arity(id); ++k) ++uses[tape.input_of(id, k)];

    model_.style = options.style;
    for (NodeId id = 0; id <= output; ++id) {
      if (!drawn[id]) continue;
      NodeText& node = model_.nodes.emplace_back();
      const TOp op = tape.op(id);
      const std::string shape = tape.shape(id).str();
      node.id = id;
      node.kind = op == TOp::constant ? NodeKind::constant
                  : is_leaf(op)       ? NodeKind::input
                                      : NodeKind::op;
      // Leaves: "x (4, 2)", "layers.0.weight (5, 2)"; an unnamed constant by its values.
      std::string values = format_values(tape, id, max_values_);
      if (op == TOp::constant && tape.name(id).empty() && !values.empty())
        node.box = values;
      else
        node.box = fmt::format("{} {}", tape.label(id), shape);
      node.symbol = std::string(node_symbol(tape, id));
      if (id != output) node.name = tape.name(id);
      node.shape = shape;
      node.label = tape.label(id);
      node.value = value_text(id);
      if (tape.reached(id)) node.grad = grad_text(id);
      node.highlighted = progress.highlighted(id);
      node.scope = tape.scope(id);
      const bool processed = !is_leaf(op) && progress.processed(id, tape.reached(id));
      for (int k = 0; k < tape.arity(id); ++k) {
        const NodeId src = tape.input_of(id, k);
        EdgeText& edge = node.inputs.emplace_back();
        edge.from = src;
        edge.value = value_text(src);
        if (processed && tape.needs_grad(src))
          edge.grad = uses[src] > 1 ? "Σ " + grad_text(src) : grad_text(src);
      }
    }
    model_.output_box = tape.label(output);
    model_.output.from = output;
    model_.output.value = value_text(output);
    if (tape.reached(output)) model_.output.grad = grad_text(output);
    if (options.style == GraphStyle::modules)
      for (std::size_t s = 0; s < tape.scope_count(); ++s) {
        const auto scope = static_cast<std::uint16_t>(s);
        model_.scopes.push_back({std::string(tape.scope_name(scope)), tape.scope_parent(scope)});
      }
  }

  GraphText take() { return std::move(model_); }

 private:
  bool small(NodeId id) const { return tape_.shape(id).numel() <= max_values_; }

  // The values when small, else the shape.
  std::string value_text(NodeId id) const {
    return small(id) ? rows_on_lines(format_values(tape_, id, max_values_)) : tape_.shape(id).str();
  }
  // The gradient's values when small, else its norm.
  std::string grad_text(NodeId id) const {
    if (small(id))
      return rows_on_lines(
          format_nested(tape_.shape(id), [&](std::int64_t i) { return tape_.grad(id, i); }));
    return "|g| " + format_number(tape_.grad_norm(id));
  }
  // A matrix row by row, as NumPy prints it, so that a batch of 4 makes a label 4 lines tall
  // instead of one line as wide as four: in the left-to-right layout an edge label's width is
  // what stretches the graph.
  static std::string rows_on_lines(std::string text) {
    for (std::size_t at = text.find("], "); at != std::string::npos; at = text.find("], ", at))
      text.replace(at, 3, "],\n");
    return text;
  }

  const TensorTape& tape_;
  std::int64_t max_values_;
  GraphText model_;
};

// ---- Long edges ---------------------------------------------------------------------------------

// Note [Long edges]
// ~~~~~~~~~~~~~~~~~
// dot puts nodes in ranks (columns, with rankdir=LR) and routes an edge that spans several ranks
// through a chain of invisible nodes, one per rank it crosses, and its label is one more (dot
// doubles the ranks of a graph with edge labels). A value used all along a computation, x in
// x + x + ... + x, has an edge into every rank, so the invisible nodes grow with the square of
// the program and crossing minimisation among them faster still: 70 terms took 22 s to lay
// out, 3,000 crashed Graphviz. So an edge that would span more than kLongestEdge ranks starts
// instead at a copy of its source, drawn dashed right before its destination, which then has
// a neighbour to rank beside. Ranks are estimated as dot's first ranking does, by the longest
// path from a source (a source next to its nearest use); dot then minimises the edges' total
// length, which this ranking bounds by kLongestEdge per edge, so the invisible nodes grow
// linearly with the edges. Measured at the drawing budget, edges of 3 ranks each already take
// 2.3 s to lay out, and of 6 ranks 19 s, hence 2. A drawing of at most kPlainDrawingEdges edges
// is small enough to lay out as it is (x + x + ... + x with 32 terms, its worst, in under a
// second), and is drawn unchanged: every lecture example, every golden file. A copy has no id
// (GraphOptions::ids): the edge keeps its own, the source its node.
constexpr int kLongestEdge = 2;
constexpr std::size_t kPlainDrawingEdges = 64;

void copy_sources_of_long_edges(GraphModel& graph) {
  if (graph.edges.size() <= kPlainDrawingEdges) return;
  const std::size_t n = graph.nodes.size();
  std::unordered_map<std::string_view, std::size_t> index;
  for (std::size_t i = 0; i < n; ++i) index.emplace(graph.nodes[i].name, i);
  struct Ends {
    std::size_t tail, head;
  };
  std::vector<Ends> ends;
  std::vector<std::vector<std::size_t>> out_edges(n);
  std::vector<std::size_t> in_degree(n, 0);
  for (const GraphEdge& e : graph.edges) {
    const auto tail = index.find(e.tail), head = index.find(e.head);
    // The renderer reports an edge to a node that does not exist; here it has no rank.
    const Ends end{tail == index.end() ? n : tail->second, head == index.end() ? n : head->second};
    if (end.tail < n && end.head < n) {
      out_edges[end.tail].push_back(ends.size());
      ++in_degree[end.head];
    }
    ends.push_back(end);
  }
  const std::vector<std::size_t> sources_in_degree = in_degree;
  // Longest path from a source, in topological order (Kahn's).
  std::vector<int> rank(n, 0);
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < n; ++i)
    if (in_degree[i] == 0) ready.push_back(i);
  while (!ready.empty()) {
    const std::size_t i = ready.back();
    ready.pop_back();
    for (std::size_t e : out_edges[i]) {
      const std::size_t head = ends[e].head;
      rank[head] = std::max(rank[head], rank[i] + 1);
      if (--in_degree[head] == 0) ready.push_back(head);
    }
  }
  // A source (an input, a constant) has no path to it: dot ranks it next to its nearest use,
  // where ranking it first would copy it for every use and leave it alone in the first rank.
  for (std::size_t i = 0; i < n; ++i) {
    if (sources_in_degree[i] != 0 || out_edges[i].empty()) continue;
    int nearest = rank[ends[out_edges[i].front()].head];
    for (std::size_t e : out_edges[i]) nearest = std::min(nearest, rank[ends[e].head]);
    rank[i] = nearest - 1;
  }
  std::vector<int> copies(n, 0);
  for (std::size_t e = 0; e < ends.size(); ++e) {
    const auto [tail, head] = ends[e];
    if (tail >= n || head >= n || rank[head] - rank[tail] <= kLongestEdge) continue;
    GraphNode copy;
    copy.name = fmt::format("{}_copy{}", graph.nodes[tail].name, ++copies[tail]);
    copy.subgraph = graph.nodes[head].subgraph;
    for (const GraphAttribute& a : graph.nodes[tail].attributes)
      if (a.name != "id" && a.name != "style") copy.attributes.push_back(a);
    copy.attributes.push_back({"style", "dashed", false});
    graph.edges[e].tail = copy.name;
    graph.nodes.push_back(std::move(copy));  // the index, views of names, is not used again
  }
}

// ---- Drawing ------------------------------------------------------------------------------------

class GraphBuilder {
 public:
  explicit GraphBuilder(const GraphText& text) : text_(text) {}

  GraphModel build() && {
    if (text_.style == GraphStyle::values)
      build_values();
    else
      build_lecture();
    copy_sources_of_long_edges(graph_);
    return std::move(graph_);
  }

 private:
  // Attributes are added with their name, in the order Graphviz should see them.
  static void set(GraphAttributes& attributes, const char* name, std::string value) {
    attributes.push_back({name, std::move(value), false});
  }
  static void set_html(GraphAttributes& attributes, const char* name, std::string html) {
    attributes.push_back({name, std::move(html), true});
  }

  GraphNode& node(std::string name, int subgraph = -1) {
    return graph_.nodes.emplace_back(GraphNode{std::move(name), {}, subgraph});
  }
  GraphEdge& edge(std::string tail, std::string head) {
    return graph_.edges.emplace_back(GraphEdge{std::move(tail), std::move(head), {}});
  }

  static void highlight(GraphAttributes& attributes) {
    set(attributes, "color", kStepColour);
    set(attributes, "penwidth", kStepPen);
  }

  void declare_common() {
    set(graph_.graph_attributes, "rankdir", "LR");
    set(graph_.node_attributes, "fontname", kFont);
    set(graph_.edge_attributes, "fontname", kFont);
    set(graph_.edge_attributes, "arrowsize", "0.7");
  }

  // The forward value in green over the gradient in red, as on the slides; the value alone until
  // the gradient is known.
  static std::string edge_label(const EdgeText& e, bool muted = false) {
    std::string label = fmt::format(R"(<font color="{}">{}</font>)",
                                    muted ? kMutedColour : kValueColour, html_lines(e.value));
    if (e.grad)
      label += fmt::format(R"(<br/><font color="{}">{}</font>)", kGradColour, html_lines(*e.grad));
    return label;
  }

  // The subgraph a node of `scope` goes in: none (-1, the graph itself), or its module's cluster
  // inside its parent's (the modules style). Clusters are made when their first node is, so a
  // module none of whose nodes are drawn has none; their order is the tape's (Note [Subgraph
  // order], graph.cpp).
  int subgraph_of(std::uint16_t scope) {
    if (scope == 0 || scope >= text_.scopes.size()) return -1;
    if (clusters_.empty()) clusters_.assign(text_.scopes.size(), -1);
    if (clusters_[scope] >= 0) return clusters_[scope];
    const ScopeText& s = text_.scopes[scope];
    const int parent = subgraph_of(s.parent < scope ? s.parent : std::uint16_t{0});
    GraphSubgraph& cluster = graph_.subgraphs.emplace_back();
    cluster.name = fmt::format("cluster_{}", scope);
    cluster.parent = parent;
    set(cluster.attributes, "label", escape_plain(s.name));
    set(cluster.attributes, "style", "rounded,dashed");
    set(cluster.attributes, "color", kClusterColour);
    set(cluster.attributes, "fontcolor", kNameColour);
    return clusters_[scope] = int(graph_.subgraphs.size()) - 1;
  }

  void build_lecture() {
    declare_common();
    GraphAttributes& graph = graph_.graph_attributes;
    GraphAttributes& nodes = graph_.node_attributes;
    GraphAttributes& edges = graph_.edge_attributes;
    set(graph, "nodesep", "0.4");
    set(graph, "ranksep", "0.6");
    if (!text_.scopes.empty()) {
      // The modules' clusters: a dashed frame with the module's path at its top left.
      set(graph, "label", "");
      set(graph, "labeljust", "l");
      set(graph, "fontname", kFont);
      set(graph, "fontsize", "11");
      set(graph, "fontcolor", "black");
      set(graph, "style", "");
      set(graph, "color", "black");
    }
    set(nodes, "shape", "circle");
    set(nodes, "label", "\\N");
    set(nodes, "fontsize", "14");
    set(nodes, "fontcolor", "black");
    set(nodes, "color", "black");
    set(nodes, "penwidth", "1");
    set(nodes, "width", "0.5");
    set(nodes, "height", "0.5");
    set(edges, "label", "");
    set(edges, "fontsize", "12");
    set(edges, "color", "black");
    set(edges, "penwidth", "1");
    if (text_.ids) {
      set(nodes, "id", "");
      set(edges, "id", "");
    }

    for (const NodeText& m : text_.nodes) {
      const std::string name = fmt::format("n{}", m.id);
      const int subgraph = subgraph_of(m.scope);
      GraphAttributes& n = node(name, subgraph).attributes;
      if (text_.ids) set(n, "id", name);
      // Note [Drawing the backward pass]: the rule a backward node came from, on its own line.
      const std::string rule_line =
          m.rule.empty() ? ""
                         : fmt::format(R"(<br/><font point-size="10" color="{}">{}</font>)",
                                       kGradColour, escape_html(m.rule));
      if (m.kind == NodeKind::input) {
        set(n, "shape", "box");
        set(n, "label", escape_plain(m.box));
      } else if (m.kind == NodeKind::constant) {
        set(n, "shape", "box");
        if (m.rule.empty())
          set(n, "label", escape_plain(m.box));
        else
          set_html(n, "label", escape_html(m.box) + rule_line);
        set(n, "fontsize", "10");
        set(n, "fontcolor", m.muted ? kMutedColour : kConstantColour);
        set(n, "color", m.muted ? kMutedColour : kConstantColour);
        set(n, "width", "0.3");
        set(n, "height", "0.3");
      } else {
        // A named intermediate carries its name under the symbol (the output's is on its box):
        // inside the node, where an xlabel would drift next to some other edge. A tensor's
        // shape goes under both.
        if (m.name.empty() && m.shape.empty() && m.rule.empty()) {
          set(n, "label", m.symbol);
        } else {
          std::string label = escape_html(m.symbol);
          if (!m.name.empty())
            label += fmt::format(R"(<br/><font point-size="11" color="{}">{}</font>)", kNameColour,
                                 escape_html(m.name));
          label += rule_line;
          if (!m.shape.empty())
            label += fmt::format(R"(<br/><font point-size="10" color="{}">{}</font>)",
                                 kConstantColour, escape_html(m.shape));
          set_html(n, "label", label);
        }
        if (m.highlighted) highlight(n);
        if (text_.backward && !m.muted) set(n, "color", kGradColour);
      }
      if (m.muted && m.kind != NodeKind::constant) {
        set(n, "color", kMutedColour);
        set(n, "fontcolor", kMutedColour);
      }
      for (std::size_t k = 0; k < m.inputs.size(); ++k) {
        GraphAttributes& e = edge(fmt::format("n{}", m.inputs[k].from), name).attributes;
        set_html(e, "label", edge_label(m.inputs[k], m.muted));
        if (m.muted) set(e, "color", kMutedColour);
        if (text_.backward && !m.muted) set(e, "color", kGradColour);
        if (m.highlighted) highlight(e);
        if (text_.ids) set(e, "id", fmt::format("e{}_{}", m.id, k));
      }
    }

    // The output's own value and gradient (1 once backward has started) on an edge to a box
    // named after it, as the slides end with "f".
    GraphAttributes& out = node("out").attributes;
    set(out, "shape", "box");
    set(out, "label", escape_plain(text_.output_box));
    GraphAttributes& e = edge(fmt::format("n{}", text_.output.from), "out").attributes;
    set_html(e, "label", edge_label(text_.output, text_.backward));
    if (text_.backward) {
      set(out, "color", kMutedColour);
      set(out, "fontcolor", kMutedColour);
      set(e, "color", kMutedColour);
    }
    if (text_.ids) {
      set(out, "id", "n_out");
      set(e, "id", "e_out");
    }
    // Note [Drawing the backward pass]: each gradient returned, in a box "∂L/∂x".
    for (std::size_t k = 0; k < text_.gradient_outputs.size(); ++k) {
      const auto& [box, into] = text_.gradient_outputs[k];
      const std::string box_name = fmt::format("grad{}", k);
      GraphAttributes& g = node(box_name).attributes;
      set(g, "shape", "box");
      set(g, "label", escape_plain(box));
      set(g, "color", kGradColour);
      GraphAttributes& ge = edge(fmt::format("n{}", into.from), box_name).attributes;
      set_html(ge, "label", edge_label(into));
      set(ge, "color", kGradColour);
    }
  }

  // micrograd's record "name | data | grad", drawn as an HTML-like table: Graphviz 2.42 leaks
  // the field text of shape=record labels at every layout.
  static std::string value_table(const NodeText& m) {
    const std::string look =
        m.highlighted ? fmt::format(R"( color="{}" bgcolor="{}")", kStepColour, kStepFill) : "";
    return fmt::format(R"(<table border="0" cellborder="1" cellspacing="0" cellpadding="4"{}><tr>)"
                       R"(<td>{}</td><td>data {}</td><td>grad {}</td></tr></table>)",
                       look, escape_html(m.label), html_lines(m.value),
                       m.grad ? html_lines(*m.grad) : "");
  }

  void build_values() {
    declare_common();
    GraphAttributes& nodes = graph_.node_attributes;
    GraphAttributes& edges = graph_.edge_attributes;
    set(nodes, "shape", "plain");
    set(nodes, "label", "\\N");
    set(nodes, "fontsize", "12");
    set(nodes, "width", "0.4");
    set(nodes, "height", "0.4");
    set(nodes, "color", "black");
    set(nodes, "penwidth", "1");
    set(edges, "color", "black");
    set(edges, "penwidth", "1");

    for (const NodeText& m : text_.nodes) {
      const std::string record = fmt::format("n{}", m.id);
      set_html(node(record).attributes, "label", value_table(m));
      if (m.kind != NodeKind::op) continue;

      const std::string op_name = fmt::format("n{}_op", m.id);
      GraphAttributes& op_node = node(op_name).attributes;
      set(op_node, "shape", "circle");
      set(op_node, "label", m.symbol);
      for (const EdgeText& in : m.inputs) {
        GraphAttributes& e = edge(fmt::format("n{}", in.from), op_name).attributes;
        if (m.highlighted) highlight(e);
      }
      edge(op_name, record);
      if (m.highlighted) highlight(op_node);
    }
  }

  const GraphText& text_;
  GraphModel graph_;
  std::vector<int> clusters_;  // by scope, the subgraph's index once made; -1 before
};

}  // namespace

void check_drawing_budget(const Tape& tape, NodeId output) { nodes_within_budget(tape, output); }

void check_drawing_budget(const TensorTape& tape, NodeId output) {
  nodes_within_budget(tape, output);
}

GraphModel graph_model(const Tape& tape, NodeId output, const GraphOptions& options) {
  return GraphBuilder(scalar_text(tape, output, options)).build();
}

GraphModel graph_model(const TensorTape& tape, NodeId output, const TensorGraphOptions& options) {
  return GraphBuilder(TensorText(tape, output, options).take()).build();
}

// ---- JSON for @viz-js/viz ----------------------------------------------------------------------

namespace {

std::string attributes_json(const GraphAttributes& attributes) {
  std::string out = "{";
  for (std::size_t i = 0; i < attributes.size(); ++i) {
    const GraphAttribute& a = attributes[i];
    out += (i ? ", " : "") + json_string(a.name) + ": ";
    out += a.html ? "{\"html\": " + json_string(a.value) + "}" : json_string(a.value);
  }
  return out + "}";
}

std::string node_json(const GraphNode& node) {
  return "{\"name\": " + json_string(node.name) +
         ", \"attributes\": " + attributes_json(node.attributes) + "}";
}

// Subgraph `index` with the nodes drawn in it and the subgraphs nested in it, recursively: at
// most as deep as nn's modules nest.
std::string subgraph_json(const GraphModel& model, int index) {
  const GraphSubgraph& subgraph = model.subgraphs[static_cast<std::size_t>(index)];
  std::string nodes, nested;
  for (const GraphNode& node : model.nodes)
    if (node.subgraph == index) nodes += (nodes.empty() ? "" : ", ") + node_json(node);
  for (std::size_t i = 0; i < model.subgraphs.size(); ++i)
    if (model.subgraphs[i].parent == index)
      nested += (nested.empty() ? "" : ", ") + subgraph_json(model, static_cast<int>(i));
  return "{\"name\": " + json_string(subgraph.name) +
         ", \"graphAttributes\": " + attributes_json(subgraph.attributes) + ", \"nodes\": [" +
         nodes + "], \"subgraphs\": [" + nested + "]}";
}

}  // namespace

std::string graph_model_json(const GraphModel& model) {
  // Nodes in a cluster are listed in their subgraph only: a node listed at the top too would be
  // created there first, outside the cluster's order.
  std::string nodes, edges, subgraphs;
  for (const GraphNode& node : model.nodes)
    if (node.subgraph < 0) nodes += (nodes.empty() ? "\n" : ",\n") + node_json(node);
  for (const GraphEdge& edge : model.edges)
    edges += std::string(edges.empty() ? "\n" : ",\n") + "{\"tail\": " + json_string(edge.tail) +
             ", \"head\": " + json_string(edge.head) +
             ", \"attributes\": " + attributes_json(edge.attributes) + "}";
  for (std::size_t i = 0; i < model.subgraphs.size(); ++i)
    if (model.subgraphs[i].parent < 0)
      subgraphs += (subgraphs.empty() ? "\n" : ",\n") + subgraph_json(model, static_cast<int>(i));
  return "{\"directed\": true, \"graphAttributes\": " + attributes_json(model.graph_attributes) +
         ", \"nodeAttributes\": " + attributes_json(model.node_attributes) +
         ", \"edgeAttributes\": " + attributes_json(model.edge_attributes) + ",\n\"nodes\": [" +
         nodes + "],\n\"edges\": [" + edges + "],\n\"subgraphs\": [" + subgraphs + "]}";
}

// Note [Drawing the backward pass]; `tapegrad step --order 2` prints the same rules.
std::vector<std::string> backward_rules(const Tape& tape, NodeId output) {
  std::vector<std::string> rules(tape.size());
  const std::string out = tape.label(output);
  if (tape.needs_grad(output) && output + 1 < tape.size())
    rules[output + 1] = fmt::format("∂{0}/∂{0}", out);
  for (const GradientStep& step : tape.gradient_steps()) {
    const std::string f = tape.label(step.node);
    for (NodeId id = step.first; id < step.end && id < rules.size(); ++id)
      rules[id] = fmt::format("in ∂{}", f);
    for (int k = 0; k < tape.arity(step.node); ++k) {
      const std::string x = tape.label(tape.input_of(step.node, k));
      const auto in_step = [&](NodeId id) { return id >= step.first && id < step.end; };
      if (in_step(step.local[k])) rules[step.local[k]] = fmt::format("∂{}/∂{}", f, x);
      if (in_step(step.contribution[k]) && step.contribution[k] != step.local[k])
        rules[step.contribution[k]] = fmt::format("∂{}/∂{} · upstream", f, x);
      if (in_step(step.sum[k])) rules[step.sum[k]] = fmt::format("Σ ∂{}/∂{}", out, x);
    }
  }
  return rules;
}

}  // namespace ag
