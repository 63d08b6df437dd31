// Graph export: the part of a tape (scalar or tensor) an output depends on, built as a Graphviz
// cgraph graph, written as DOT, rendered to SVG or PNG in-process with gvc, and written to files
// atomically.

#include "tapegrad/graph.hpp"

#include <fmt/format.h>
#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tapegrad/file.hpp"
#include "tapegrad/format.hpp"
#include "look.hpp"
#include "markup.hpp"
#include "tensor_ops.hpp"

namespace ag {
namespace {

// ---- Graphviz glue ------------------------------------------------------------------------------
// Graphviz 2.42's C API takes `char*` for strings it only reads (names, attribute names and
// values): the casts live here, once.

char* mutable_str(const char* s) { return const_cast<char*>(s); }
char* mutable_str(const std::string& s) { return const_cast<char*>(s.c_str()); }

// Declares an attribute of graphs, nodes or edges (kind AGRAPH, AGNODE, AGEDGE) with its default.
// Declaring every attribute up front, in a fixed order, makes agwrite's output deterministic and
// puts the shared look in one `node [...]` line instead of on every node.
void declare(Agraph_t* g, int kind, const char* name, const char* default_value) {
  agattr(g, kind, mutable_str(name), mutable_str(default_value));
}

void set(void* obj, const char* name, const std::string& value) {
  agset(obj, mutable_str(name), mutable_str(value));
}

// An HTML-like label (written <...> in DOT): Graphviz knows it by the string's origin, so it must
// be interned with agstrdup_html; agset then keeps its own reference.
void set_html(Agraph_t* g, void* obj, const char* name, const std::string& html) {
  char* interned = agstrdup_html(g, mutable_str(html));
  agset(obj, mutable_str(name), interned);
  agstrfree(g, interned);
}

struct GraphCloser {
  void operator()(Agraph_t* g) const { agclose(g); }
};
using GraphPtr = std::unique_ptr<Agraph_t, GraphCloser>;

// agwrite prints through the graph's I/O discipline: this one appends to the std::string passed
// as the channel, so DOT text never goes through a FILE*.
int read_nothing(void*, char*, int) { return 0; }
int append_to_string(void* chan, const char* s) {
  static_cast<std::string*>(chan)->append(s);
  return 0;
}
int flush_nothing(void*) { return 0; }
Agiodisc_t string_io = {read_nothing, append_to_string, flush_nothing};

// Note [Subgraph order]
// ~~~~~~~~~~~~~~~~~~~~~
// agwrite writes a graph's subgraphs (our module clusters) in the order of their object IDs, and
// Graphviz 2.42's default ID discipline makes a named object's ID the address of its interned
// name: clusters would come out in malloc's order, which can change from one call to the next.
// This discipline numbers names in the order they are first used instead (even IDs; anonymous
// objects, such as edges, get odd ones as in the default), so the text depends on the tape
// alone. Nodes and edges are written in creation order either way.
// Names are interned in the graph's string pool, as the default does: agwrite tells an HTML-like
// string from a plain one by a flag of its pool entry, so a name must have one.
struct NameIds {
  Agraph_t* graph;
  std::unordered_map<std::string, IDTYPE> ids;
  std::vector<char*> names;  // names[i], interned, has ID 2 (i + 1)
  IDTYPE next_anonymous = 1;
};

void* ids_open(Agraph_t* g, Agdisc_t*) { return new NameIds{g, {}, {}, 1}; }

long ids_map(void* state, int, char* name, IDTYPE* id, int create) {
  NameIds& s = *static_cast<NameIds*>(state);
  if (name == nullptr) {
    *id = s.next_anonymous;
    s.next_anonymous += 2;
    return 1;
  }
  if (auto found = s.ids.find(name); found != s.ids.end()) {
    *id = found->second;
    return 1;
  }
  if (!create) return 0;
  s.names.push_back(agstrdup(s.graph, name));
  *id = 2 * s.names.size();
  s.ids.emplace(name, *id);
  return 1;
}

long ids_alloc(void*, int, IDTYPE) { return 0; }  // no caller-chosen IDs
void ids_free(void*, int, IDTYPE) {}              // names are kept until the graph closes
char* ids_print(void* state, int, IDTYPE id) {
  NameIds& s = *static_cast<NameIds*>(state);
  if (id == 0 || id % 2 != 0 || id / 2 > s.names.size()) return nullptr;
  return s.names[id / 2 - 1];
}
void ids_close(void* state) {
  NameIds* s = static_cast<NameIds*>(state);
  for (char* name : s->names) agstrfree(s->graph, name);
  delete s;
}
void ids_register(void*, int, void*) {}

Agiddisc_t ordered_ids = {ids_open, ids_map, ids_alloc, ids_free, ids_print, ids_close, ids_register};
Agdisc_t string_disc = {&AgMemDisc, &ordered_ids, &string_io};

// Note [One Graphviz context]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Graphviz 2.42's pango plugin remembers the last font it measured as a pointer into the font
// table of the context that measured it. Once that context is freed, the next context's first
// text measurement reads freed memory (AddressSanitizer: heap-use-after-free in textspan_size).
// So the process keeps one context, made on first use and freed at exit. Graphviz also keeps
// process-wide state (this context, the error callback below) and is not thread-safe: every use
// of it holds graphviz_mutex.
std::mutex graphviz_mutex;

GVC_t* graphviz_context() {
  static const std::unique_ptr<GVC_t, int (*)(GVC_t*)> context(gvContext(), gvFreeContext);
  if (!context) throw Error("graph: Graphviz could not start");
  return context.get();
}

// Graphviz reports problems through a process-wide callback (stderr by default). While we render,
// its messages are collected here instead, so a failure becomes one ag::Error that quotes them.
std::string graphviz_messages;
int collect_message(char* text) {
  graphviz_messages += text;
  return 0;
}

class MessageCapture {
 public:
  MessageCapture() : previous_(agseterrf(collect_message)) { graphviz_messages.clear(); }
  ~MessageCapture() { agseterrf(previous_); }
  MessageCapture(const MessageCapture&) = delete;
  MessageCapture& operator=(const MessageCapture&) = delete;

  // What Graphviz said, on one line: ": Error: syntax error in line 1" or "".
  static std::string text() {
    std::string s = graphviz_messages;
    std::replace(s.begin(), s.end(), '\n', ' ');
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s.empty() ? s : ": " + s;
  }

 private:
  agusererrf previous_;
};

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
// GraphBuilder draws a GraphModel: the drawn nodes with their texts already written (a box's
// label, an op's symbol, name and shape, the value and gradient on each edge). A scalar tape and
// a tensor tape each fill one (ScalarModel, TensorModel): what differs between them is how
// numbers become text and what an edge's gradient is; everything Graphviz sees is decided once,
// in the builder.

enum class NodeKind { input, constant, op };

struct EdgeModel {
  NodeId from = 0;
  std::string value;                // the source's forward value: "3", "[1, 2]", "(4, 5)"
  std::optional<std::string> grad;  // what flowed back along it, once the pass has been there
};

struct NodeModel {
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
  std::vector<EdgeModel> inputs;
  bool highlighted = false;  // the node of the step being drawn
  std::uint16_t scope = 0;   // Note [Scopes]; 0 outside any module
};

struct ScopeModel {
  std::string name;
  std::uint16_t parent;
};

struct GraphModel {
  GraphStyle style = GraphStyle::lecture;
  std::vector<NodeModel> nodes;    // the drawn nodes, by increasing id
  std::string output_box;          // the output's name, in the box the graph ends with
  EdgeModel output;                // the output's value and gradient, on the edge into that box
  std::vector<ScopeModel> scopes;  // the modules style: the tape's scopes, [0] outside any
  bool ids = false;                // GraphOptions::ids
};

// The checks and the walk both tapes share.
template <class TapeT, class StepT>
std::vector<bool> nodes_to_draw(const TapeT& tape, NodeId output, const StepT* step) {
  if (output >= tape.size())
    throw Error(
        fmt::format("graph: node {} does not exist: the tape has {} nodes", output, tape.size()));
  if (step != nullptr) {
    if (step->tape != &tape) throw Error("graph: the step belongs to another tape");
    if (step->output != output)
      throw Error(fmt::format("graph: the step is from a backward pass from node {}, not {}",
                              step->output, output));
  }
  std::vector<bool> drawn(output + 1, false);
  drawn[output] = true;
  for (NodeId id = output + 1; id-- > 0;) {
    if (!drawn[id]) continue;
    for (int k = 0; k < tape.arity(id); ++k) drawn[tape.input_of(id, k)] = true;
  }
  return drawn;
}

// How far the pass drawn has gone (Note [What a graph shows]).
template <class StepT>
struct Progress {
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

GraphModel scalar_model(const Tape& tape, NodeId output, const GraphOptions& options) {
  if (options.style == GraphStyle::modules)
    throw Error(
        "graph: the modules style draws the nn modules of a tensor tape; a scalar tape has "
        "none: use the lecture or values style");
  const std::vector<bool> drawn = nodes_to_draw(tape, output, options.step);
  const Progress<Step> progress{options.step};
  GraphModel model;
  model.style = options.style;
  model.ids = options.ids;
  for (NodeId id = 0; id <= output; ++id) {
    if (!drawn[id]) continue;
    NodeModel& node = model.nodes.emplace_back();
    const Op op = tape.op(id);
    node.id = id;
    node.kind = op == Op::input ? NodeKind::input
                : op == Op::constant ? NodeKind::constant
                                     : NodeKind::op;
    node.box = op == Op::constant ? format_number(tape.value(id)) : tape.label(id);
    node.symbol = op_info(op).symbol;
    if (id != output) node.name = tape.name(id);
    node.label = tape.label(id);
    node.value = format_number(tape.value(id));
    if (tape.reached(id)) node.grad = format_number(tape.grad(id));
    node.highlighted = progress.highlighted(id);
    const bool processed = !is_leaf(op) && progress.processed(id, tape.reached(id));
    for (int k = 0; k < tape.arity(id); ++k) {
      const NodeId src = tape.input_of(id, k);
      EdgeModel& edge = node.inputs.emplace_back();
      edge.from = src;
      edge.value = format_number(tape.value(src));
      if (processed && tape.needs_grad(src))
        edge.grad = format_number(tape.grad(id) * tape.local_grad(id, k));
    }
  }
  model.output_box = tape.label(output);
  model.output.from = output;
  model.output.value = format_number(tape.value(output));
  if (tape.reached(output)) model.output.grad = format_number(tape.grad(output));
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

class TensorModel {
 public:
  TensorModel(const TensorTape& tape, NodeId output, const TensorGraphOptions& options)
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
      NodeModel& node = model_.nodes.emplace_back();
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
        EdgeModel& edge = node.inputs.emplace_back();
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

  GraphModel take() { return std::move(model_); }

 private:
  bool small(NodeId id) const { return tape_.shape(id).numel() <= max_values_; }

  // The values when small, else the shape.
  std::string value_text(NodeId id) const {
    return small(id) ? rows_on_lines(format_values(tape_, id, max_values_))
                     : tape_.shape(id).str();
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
  GraphModel model_;
};

// ---- Drawing ------------------------------------------------------------------------------------

class GraphBuilder {
 public:
  explicit GraphBuilder(const GraphModel& model) : model_(model) {}

  GraphPtr build() {
    GraphPtr graph(agopen(mutable_str("tapegrad"), Agdirected, &string_disc));
    if (!graph) throw Error("graph: Graphviz could not create a graph");
    g_ = graph.get();
    if (model_.style == GraphStyle::values)
      build_values();
    else
      build_lecture();
    return graph;
  }

 private:
  Agnode_t* node(Agraph_t* g, const std::string& name) { return agnode(g, mutable_str(name), 1); }
  Agnode_t* node(const std::string& name) { return node(g_, name); }
  Agedge_t* edge(Agnode_t* from, Agnode_t* to) { return agedge(g_, from, to, nullptr, 1); }

  void highlight(void* obj) {
    set(obj, "color", kStepColour);
    set(obj, "penwidth", kStepPen);
  }

  void declare_common() {
    declare(g_, AGRAPH, "rankdir", "LR");
    declare(g_, AGNODE, "fontname", kFont);
    declare(g_, AGEDGE, "fontname", kFont);
    declare(g_, AGEDGE, "arrowsize", "0.7");
  }

  // The forward value in green over the gradient in red, as on the slides; the value alone until
  // the gradient is known.
  static std::string edge_label(const EdgeModel& e) {
    std::string label =
        fmt::format(R"(<font color="{}">{}</font>)", kValueColour, html_lines(e.value));
    if (e.grad)
      label += fmt::format(R"(<br/><font color="{}">{}</font>)", kGradColour, html_lines(*e.grad));
    return label;
  }

  // The graph a node of `scope` goes in: the root, or its module's cluster inside its parent's
  // (the modules style). Clusters are made when their first node is, so a module none of whose
  // nodes are drawn has none; their order is the tape's (Note [Subgraph order]).
  Agraph_t* graph_of(std::uint16_t scope) {
    if (scope == 0 || scope >= model_.scopes.size()) return g_;
    if (clusters_.empty()) clusters_.assign(model_.scopes.size(), nullptr);
    if (Agraph_t* cluster = clusters_[scope]) return cluster;
    const ScopeModel& s = model_.scopes[scope];
    Agraph_t* parent = graph_of(s.parent < scope ? s.parent : std::uint16_t{0});
    Agraph_t* cluster = agsubg(parent, mutable_str(fmt::format("cluster_{}", scope)), 1);
    set(cluster, "label", escape_plain(s.name));
    set(cluster, "style", "rounded,dashed");
    set(cluster, "color", kClusterColour);
    set(cluster, "fontcolor", kNameColour);
    return clusters_[scope] = cluster;
  }

  void build_lecture() {
    declare_common();
    declare(g_, AGRAPH, "nodesep", "0.4");
    declare(g_, AGRAPH, "ranksep", "0.6");
    if (!model_.scopes.empty()) {
      // The modules' clusters: a dashed frame with the module's path at its top left.
      declare(g_, AGRAPH, "label", "");
      declare(g_, AGRAPH, "labeljust", "l");
      declare(g_, AGRAPH, "fontname", kFont);
      declare(g_, AGRAPH, "fontsize", "11");
      declare(g_, AGRAPH, "fontcolor", "black");
      declare(g_, AGRAPH, "style", "");
      declare(g_, AGRAPH, "color", "black");
    }
    declare(g_, AGNODE, "shape", "circle");
    declare(g_, AGNODE, "label", "\\N");
    declare(g_, AGNODE, "fontsize", "14");
    declare(g_, AGNODE, "fontcolor", "black");
    declare(g_, AGNODE, "color", "black");
    declare(g_, AGNODE, "penwidth", "1");
    declare(g_, AGNODE, "width", "0.5");
    declare(g_, AGNODE, "height", "0.5");
    declare(g_, AGEDGE, "label", "");
    declare(g_, AGEDGE, "fontsize", "12");
    declare(g_, AGEDGE, "color", "black");
    declare(g_, AGEDGE, "penwidth", "1");
    if (model_.ids) {
      declare(g_, AGNODE, "id", "");
      declare(g_, AGEDGE, "id", "");
    }

    std::vector<Agnode_t*> nodes(model_.output.from + 1, nullptr);
    for (const NodeModel& m : model_.nodes) {
      Agnode_t* n = nodes[m.id] = node(graph_of(m.scope), fmt::format("n{}", m.id));
      if (model_.ids) set(n, "id", fmt::format("n{}", m.id));
      if (m.kind == NodeKind::input) {
        set(n, "shape", "box");
        set(n, "label", escape_plain(m.box));
      } else if (m.kind == NodeKind::constant) {
        set(n, "shape", "box");
        set(n, "label", escape_plain(m.box));
        set(n, "fontsize", "10");
        set(n, "fontcolor", kConstantColour);
        set(n, "color", kConstantColour);
        set(n, "width", "0.3");
        set(n, "height", "0.3");
      } else {
        // A named intermediate carries its name under the symbol (the output's is on its box):
        // inside the node, where an xlabel would drift next to some other edge. A tensor's
        // shape goes under both.
        if (m.name.empty() && m.shape.empty()) {
          set(n, "label", m.symbol);
        } else {
          std::string label = escape_html(m.symbol);
          if (!m.name.empty())
            label += fmt::format(R"(<br/><font point-size="11" color="{}">{}</font>)",
                                 kNameColour, escape_html(m.name));
          if (!m.shape.empty())
            label += fmt::format(R"(<br/><font point-size="10" color="{}">{}</font>)",
                                 kConstantColour, escape_html(m.shape));
          set_html(g_, n, "label", label);
        }
        if (m.highlighted) highlight(n);
      }
      for (std::size_t k = 0; k < m.inputs.size(); ++k) {
        Agedge_t* e = edge(nodes[m.inputs[k].from], n);
        set_html(g_, e, "label", edge_label(m.inputs[k]));
        if (m.highlighted) highlight(e);
        if (model_.ids) set(e, "id", fmt::format("e{}_{}", m.id, k));
      }
    }

    // The output's own value and gradient (1 once backward has started) on an edge to a box
    // named after it, as the slides end with "f".
    Agnode_t* out = node("out");
    set(out, "shape", "box");
    set(out, "label", escape_plain(model_.output_box));
    Agedge_t* e = edge(nodes[model_.output.from], out);
    set_html(g_, e, "label", edge_label(model_.output));
    if (model_.ids) {
      set(out, "id", "n_out");
      set(e, "id", "e_out");
    }
  }

  // micrograd's record "name | data | grad", drawn as an HTML-like table: Graphviz 2.42 leaks
  // the field text of shape=record labels at every layout.
  static std::string value_table(const NodeModel& m) {
    const std::string look =
        m.highlighted ? fmt::format(R"( color="{}" bgcolor="{}")", kStepColour, kStepFill) : "";
    return fmt::format(R"(<table border="0" cellborder="1" cellspacing="0" cellpadding="4"{}><tr>)"
                       R"(<td>{}</td><td>data {}</td><td>grad {}</td></tr></table>)",
                       look, escape_html(m.label), html_lines(m.value),
                       m.grad ? html_lines(*m.grad) : "");
  }

  void build_values() {
    declare_common();
    declare(g_, AGNODE, "shape", "plain");
    declare(g_, AGNODE, "label", "\\N");
    declare(g_, AGNODE, "fontsize", "12");
    declare(g_, AGNODE, "width", "0.4");
    declare(g_, AGNODE, "height", "0.4");
    declare(g_, AGNODE, "color", "black");
    declare(g_, AGNODE, "penwidth", "1");
    declare(g_, AGEDGE, "color", "black");
    declare(g_, AGEDGE, "penwidth", "1");

    std::vector<Agnode_t*> nodes(model_.output.from + 1, nullptr);
    for (const NodeModel& m : model_.nodes) {
      Agnode_t* record = nodes[m.id] = node(fmt::format("n{}", m.id));
      set_html(g_, record, "label", value_table(m));
      if (m.kind != NodeKind::op) continue;

      Agnode_t* op_node = node(fmt::format("n{}_op", m.id));
      set(op_node, "shape", "circle");
      set(op_node, "label", m.symbol);
      for (const EdgeModel& in : m.inputs) {
        Agedge_t* e = edge(nodes[in.from], op_node);
        if (m.highlighted) highlight(e);
      }
      edge(op_node, record);
      if (m.highlighted) highlight(op_node);
    }
  }

  const GraphModel& model_;
  Agraph_t* g_ = nullptr;
  std::vector<Agraph_t*> clusters_;  // by scope, made on first use
};

std::string write_dot(Agraph_t* g) {
  std::string text;
  if (agwrite(g, &text) != 0) throw Error("graph: Graphviz could not write DOT");
  return text;
}

// ---- Files --------------------------------------------------------------------------------------

// The extension of the last path component, lower-cased, without the dot; "" if none.
std::string extension_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  const std::size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return {};
  std::string ext = path.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

// The graph drawn, laid out and rendered; "dot" is the text alone. Holds the Graphviz lock.
std::string render_model(const GraphModel& model, std::string_view format) {
  const std::lock_guard lock(graphviz_mutex);
  GraphPtr graph = GraphBuilder(model).build();
  if (format == "dot") return write_dot(graph.get());
  // Graphviz's 96 dpi default makes a blurry picture on a slide or a high-density screen. Only
  // the bitmap needs it: SVG scales, and the DOT text stays free of rendering settings.
  if (format == "png") declare(graph.get(), AGRAPH, "dpi", "150");

  MessageCapture messages;
  GVC_t* gvc = graphviz_context();
  if (gvLayout(gvc, graph.get(), "dot") != 0)
    throw Error("graph: Graphviz could not lay out the graph" + MessageCapture::text());
  // From here the layout must be freed before the graph is closed, whatever happens.
  struct LayoutFreer {
    GVC_t* gvc;
    Agraph_t* g;
    ~LayoutFreer() { gvFreeLayout(gvc, g); }
  } layout{gvc, graph.get()};

  const std::string format_name(format);
  char* data = nullptr;
  unsigned int length = 0;
  if (gvRenderData(gvc, graph.get(), format_name.c_str(), &data, &length) != 0 || !data) {
    if (data) gvFreeRenderData(data);
    throw Error(
        fmt::format("graph: Graphviz could not render {}{}", format, MessageCapture::text()));
  }
  std::string bytes(data, length);
  gvFreeRenderData(data);
  return bytes;
}

void check_format(std::string_view format) {
  if (format != "dot" && format != "svg" && format != "png")
    throw Error(fmt::format("unknown graph format \"{}\": use dot, svg or png", format));
}

// The format a path's extension names; throws before anything is drawn or written.
std::string format_of_path(const std::string& path) {
  const std::string ext = extension_of(path);
  if (ext.empty())
    throw Error(fmt::format("graph file \"{}\" has no extension: use .dot, .svg or .png", path));
  if (ext != "dot" && ext != "svg" && ext != "png")
    throw Error(fmt::format("unknown graph format \".{}\": use .dot, .svg or .png", ext));
  return ext;
}

}  // namespace

std::string to_dot(const Tape& tape, NodeId output, const GraphOptions& options) {
  return render_model(scalar_model(tape, output, options), "dot");
}

std::string render_graph(const Tape& tape, NodeId output, std::string_view format,
                         const GraphOptions& options) {
  check_format(format);
  return render_model(scalar_model(tape, output, options), format);
}

void write_graph(const Tape& tape, NodeId output, const std::string& path,
                 const GraphOptions& options) {
  const std::string format = format_of_path(path);
  write_file_atomically(path, render_graph(tape, output, format, options), "graph");
}

std::string to_dot(const TensorTape& tape, NodeId output, const TensorGraphOptions& options) {
  return render_model(TensorModel(tape, output, options).take(), "dot");
}

std::string render_graph(const TensorTape& tape, NodeId output, std::string_view format,
                         const TensorGraphOptions& options) {
  check_format(format);
  return render_model(TensorModel(tape, output, options).take(), format);
}

void write_graph(const TensorTape& tape, NodeId output, const std::string& path,
                 const TensorGraphOptions& options) {
  const std::string format = format_of_path(path);
  write_file_atomically(path, render_graph(tape, output, format, options), "graph");
}

}  // namespace ag
