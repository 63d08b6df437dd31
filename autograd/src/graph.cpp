// The native graph renderer: a graph model (graph_model.hpp) transcribed into a Graphviz cgraph
// graph, written as DOT, rendered to SVG or PNG in-process with gvc, and written to files
// atomically.

#include "tapegrad/graph.hpp"

#include <fmt/format.h>
#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tapegrad/error.hpp"
#include "tapegrad/file.hpp"

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
void declare(Agraph_t* g, int kind, const std::string& name, const std::string& default_value) {
  agattr(g, kind, mutable_str(name), mutable_str(default_value));
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

Agiddisc_t ordered_ids = {ids_open,  ids_map,   ids_alloc,   ids_free,
                          ids_print, ids_close, ids_register};
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

// ---- Drawing ------------------------------------------------------------------------------------

// Sets an attribute a model gives, declaring it (default "") if the model's defaults did not.
void set_attribute(Agraph_t* root, void* obj, const GraphAttribute& a) {
  if (!a.html) {
    agsafeset(obj, mutable_str(a.name), mutable_str(a.value), mutable_str(""));
    return;
  }
  // An HTML-like label (written <...> in DOT): Graphviz knows it by the string's origin, so it
  // must be interned with agstrdup_html; agsafeset then keeps its own reference.
  char* interned = agstrdup_html(root, mutable_str(a.value));
  agsafeset(obj, mutable_str(a.name), interned, mutable_str(""));
  agstrfree(root, interned);
}

// The model transcribed through cgraph, in its order (Note [The graph model]).
GraphPtr build_graph(const GraphModel& model) {
  GraphPtr graph(agopen(mutable_str("tapegrad"), Agdirected, &string_disc));
  if (!graph) throw Error("graph: Graphviz could not create a graph");
  Agraph_t* g = graph.get();
  for (const GraphAttribute& a : model.graph_attributes) declare(g, AGRAPH, a.name, a.value);
  for (const GraphAttribute& a : model.node_attributes) declare(g, AGNODE, a.name, a.value);
  for (const GraphAttribute& a : model.edge_attributes) declare(g, AGEDGE, a.name, a.value);

  // Subgraphs in the model's order, which is the order of their first use (Note [Subgraph
  // order]): a parent always comes before its children.
  std::vector<Agraph_t*> subgraphs;
  for (const GraphSubgraph& s : model.subgraphs) {
    Agraph_t* parent = s.parent >= 0 && std::size_t(s.parent) < subgraphs.size()
                           ? subgraphs[std::size_t(s.parent)]
                           : g;
    Agraph_t* sub = agsubg(parent, mutable_str(s.name), 1);
    for (const GraphAttribute& a : s.attributes) set_attribute(g, sub, a);
    subgraphs.push_back(sub);
  }

  std::unordered_map<std::string_view, Agnode_t*> nodes;
  for (const GraphNode& m : model.nodes) {
    Agraph_t* in = m.subgraph >= 0 && std::size_t(m.subgraph) < subgraphs.size()
                       ? subgraphs[std::size_t(m.subgraph)]
                       : g;
    Agnode_t* n = agnode(in, mutable_str(m.name), 1);
    for (const GraphAttribute& a : m.attributes) set_attribute(g, n, a);
    nodes[m.name] = n;
  }
  for (const GraphEdge& m : model.edges) {
    const auto tail = nodes.find(m.tail), head = nodes.find(m.head);
    if (tail == nodes.end() || head == nodes.end())
      fail("graph: an edge {} -> {} names a node the graph does not have", m.tail, m.head);
    // Unnamed, so two edges between the same nodes stay two (x * x).
    Agedge_t* e = agedge(g, tail->second, head->second, nullptr, 1);
    for (const GraphAttribute& a : m.attributes) set_attribute(g, e, a);
  }
  return graph;
}

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
  GraphPtr graph = build_graph(model);
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
    fail("unknown graph format \"{}\": use dot, svg or png", format);
}

// The format a path's extension names; throws before anything is drawn or written.
std::string format_of_path(const std::string& path) {
  const std::string ext = extension_of(path);
  if (ext.empty()) fail("graph file \"{}\" has no extension: use .dot, .svg or .png", path);
  if (ext != "dot" && ext != "svg" && ext != "png")
    fail("unknown graph format \".{}\": use .dot, .svg or .png", ext);
  return ext;
}

}  // namespace

std::string to_dot(const GraphModel& model) { return render_model(model, "dot"); }

std::string render_graph(const GraphModel& model, std::string_view format) {
  check_format(format);
  return render_model(model, format);
}

std::string to_dot(const Tape& tape, NodeId output, const GraphOptions& options) {
  return render_model(graph_model(tape, output, options), "dot");
}

std::string render_graph(const Tape& tape, NodeId output, std::string_view format,
                         const GraphOptions& options) {
  check_format(format);
  return render_model(graph_model(tape, output, options), format);
}

void write_graph(const Tape& tape, NodeId output, const std::string& path,
                 const GraphOptions& options) {
  const std::string format = format_of_path(path);
  write_file_atomically(path, render_graph(tape, output, format, options), "graph");
}

std::string to_dot(const TensorTape& tape, NodeId output, const TensorGraphOptions& options) {
  return render_model(graph_model(tape, output, options), "dot");
}

std::string render_graph(const TensorTape& tape, NodeId output, std::string_view format,
                         const TensorGraphOptions& options) {
  check_format(format);
  return render_model(graph_model(tape, output, options), format);
}

void write_graph(const TensorTape& tape, NodeId output, const std::string& path,
                 const TensorGraphOptions& options) {
  const std::string format = format_of_path(path);
  write_file_atomically(path, render_graph(tape, output, format, options), "graph");
}

}  // namespace ag
