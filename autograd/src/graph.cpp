// Graph export: the part of a tape an output depends on, built as a Graphviz cgraph graph, written
// as DOT, rendered to SVG or PNG in-process with gvc, and written to files atomically.

#include "tapegrad/graph.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "tapegrad/format.hpp"

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
Agdisc_t string_disc = {&AgMemDisc, &AgIdDisc, &string_io};

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

// Text inside an HTML-like label.
std::string escape_html(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// ---- The look -----------------------------------------------------------------------------------
// The colours of the CS231n slides: forward values in green above the edge, gradients in red
// below it; the step being taken in a colour of its own, with a thicker pen.

constexpr const char* kFont = "Helvetica";
constexpr const char* kValueColour = "darkgreen";
constexpr const char* kGradColour = "darkred";
constexpr const char* kConstantColour = "gray40";
constexpr const char* kNameColour = "gray25";
constexpr const char* kStepColour = "orangered";
constexpr const char* kStepPen = "2.5";
constexpr const char* kStepFill = "mistyrose";  // thick table borders would split the cells

// ---- Building the graph -------------------------------------------------------------------------

// Note [What a graph shows]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Nodes: every node the output depends on, found by one walk down the tape from the output (an
// input always has a lower id, Note [The tape invariant]), created in increasing id order and
// named n<id>, so the DOT text depends on the tape alone.
// Gradients: an edge dst <- src (input k of dst) carries d(out)/d(dst) * d(dst)/d(src), the
// contribution the stepper added to src when it processed dst. It is shown once dst has been
// processed by the latest pass: dst was reached, and, when drawing during a Step, dst is at or
// above that step's node (the stepper goes down the tape). Constants, and nodes computed from
// constants only, never get one (Note [Gradient semantics]).
class GraphBuilder {
 public:
  GraphBuilder(const Tape& tape, NodeId output, const GraphOptions& options)
      : tape_(tape), output_(output), options_(options) {
    if (output >= tape.size())
      throw Error(
          fmt::format("graph: node {} does not exist: the tape has {} nodes", output, tape.size()));
    if (const Step* step = options.step) {
      if (step->tape != &tape) throw Error("graph: the step belongs to another tape");
      if (step->output != output)
        throw Error(fmt::format("graph: the step is from a backward pass from node {}, not {}",
                                step->output, output));
    }
    drawn_.assign(output + 1, false);
    drawn_[output] = true;
    for (NodeId id = output + 1; id-- > 0;) {
      if (!drawn_[id]) continue;
      for (int k = 0; k < tape.arity(id); ++k) drawn_[tape.input_of(id, k)] = true;
    }
  }

  GraphPtr build() {
    GraphPtr graph(agopen(mutable_str("tapegrad"), Agdirected, &string_disc));
    if (!graph) throw Error("graph: Graphviz could not create a graph");
    g_ = graph.get();
    if (options_.style == GraphStyle::lecture)
      build_lecture();
    else
      build_values();
    return graph;
  }

 private:
  // A step has been taken (a Step before the first next() has arity 0).
  bool stepping() const { return options_.step != nullptr && options_.step->arity > 0; }
  bool highlighted(NodeId id) const { return stepping() && options_.step->node == id; }

  // Whether the pass has passed this node's gradient on to its inputs (Note [What a graph shows]).
  bool processed(NodeId id) const {
    if (!tape_.reached(id) || is_leaf(tape_.op(id))) return false;
    if (options_.step == nullptr) return true;
    return stepping() && id >= options_.step->node;
  }

  std::optional<double> edge_grad(NodeId dst, int k) const {
    if (!processed(dst) || !tape_.needs_grad(tape_.input_of(dst, k))) return std::nullopt;
    return tape_.grad(dst) * tape_.local_grad(dst, k);
  }

  Agnode_t* node(const std::string& name) { return agnode(g_, mutable_str(name), 1); }
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
  static std::string edge_label(double value, std::optional<double> grad) {
    std::string label =
        fmt::format(R"(<font color="{}">{}</font>)", kValueColour, format_number(value));
    if (grad)
      label += fmt::format(R"(<br/><font color="{}">{}</font>)", kGradColour, format_number(*grad));
    return label;
  }

  void build_lecture() {
    declare_common();
    declare(g_, AGRAPH, "nodesep", "0.4");
    declare(g_, AGRAPH, "ranksep", "0.6");
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

    std::vector<Agnode_t*> nodes(output_ + 1, nullptr);
    for (NodeId id = 0; id <= output_; ++id) {
      if (!drawn_[id]) continue;
      Agnode_t* n = nodes[id] = node(fmt::format("n{}", id));
      const Op op = tape_.op(id);
      if (op == Op::input) {
        set(n, "shape", "box");
        set(n, "label", escape_plain(tape_.label(id)));
      } else if (op == Op::constant) {
        set(n, "shape", "box");
        set(n, "label", format_number(tape_.value(id)));
        set(n, "fontsize", "10");
        set(n, "fontcolor", kConstantColour);
        set(n, "color", kConstantColour);
        set(n, "width", "0.3");
        set(n, "height", "0.3");
      } else {
        // A named intermediate carries its name under the symbol (the output's is on its box):
        // inside the circle, where an xlabel would drift next to some other edge.
        const std::string symbol = escape_html(op_info(op).symbol);
        if (!tape_.name(id).empty() && id != output_)
          set_html(g_, n, "label",
                   fmt::format(R"({}<br/><font point-size="11" color="{}">{}</font>)", symbol,
                               kNameColour, escape_html(tape_.name(id))));
        else
          set(n, "label", std::string(op_info(op).symbol));
        if (highlighted(id)) highlight(n);
      }
      for (int k = 0; k < tape_.arity(id); ++k) {
        const NodeId src = tape_.input_of(id, k);
        Agedge_t* e = edge(nodes[src], n);
        set_html(g_, e, "label", edge_label(tape_.value(src), edge_grad(id, k)));
        if (highlighted(id)) highlight(e);
      }
    }

    // The output's own value and gradient (1 once backward has started) on an edge to a box
    // named after it, as the slides end with "f".
    Agnode_t* out = node("out");
    set(out, "shape", "box");
    set(out, "label", escape_plain(tape_.label(output_)));
    Agedge_t* e = edge(nodes[output_], out);
    std::optional<double> grad;
    if (tape_.reached(output_)) grad = tape_.grad(output_);
    set_html(g_, e, "label", edge_label(tape_.value(output_), grad));
  }

  // micrograd's record "name | data | grad", drawn as an HTML-like table: Graphviz 2.42 leaks
  // the field text of shape=record labels at every layout.
  static std::string value_table(std::string_view name, double value, std::optional<double> grad,
                                 bool highlighted) {
    const std::string look =
        highlighted ? fmt::format(R"( color="{}" bgcolor="{}")", kStepColour, kStepFill) : "";
    return fmt::format(R"(<table border="0" cellborder="1" cellspacing="0" cellpadding="4"{}><tr>)"
                       R"(<td>{}</td><td>data {}</td><td>grad {}</td></tr></table>)",
                       look, escape_html(name), format_number(value),
                       grad ? format_number(*grad) : "");
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

    std::vector<Agnode_t*> nodes(output_ + 1, nullptr);
    for (NodeId id = 0; id <= output_; ++id) {
      if (!drawn_[id]) continue;
      const Op op = tape_.op(id);
      Agnode_t* record = nodes[id] = node(fmt::format("n{}", id));
      // A node's gradient as the engine holds it now: complete once all its consumers have been
      // processed, the sum so far during a step. Nodes the pass has not reached show none.
      std::optional<double> grad;
      if (tape_.reached(id)) grad = tape_.grad(id);
      set_html(g_, record, "label",
               value_table(tape_.label(id), tape_.value(id), grad, highlighted(id)));
      if (is_leaf(op)) continue;

      Agnode_t* op_node = node(fmt::format("n{}_op", id));
      set(op_node, "shape", "circle");
      set(op_node, "label", std::string(op_info(op).symbol));
      for (int k = 0; k < tape_.arity(id); ++k) {
        Agedge_t* e = edge(nodes[tape_.input_of(id, k)], op_node);
        if (highlighted(id)) highlight(e);
      }
      edge(op_node, record);
      if (highlighted(id)) highlight(op_node);
    }
  }

  const Tape& tape_;
  NodeId output_;
  const GraphOptions& options_;
  std::vector<bool> drawn_;
  Agraph_t* g_ = nullptr;
};

std::string write_dot(Agraph_t* g) {
  std::string text;
  if (agwrite(g, &text) != 0) throw Error("graph: Graphviz could not write DOT");
  return text;
}

// ---- Files --------------------------------------------------------------------------------------

std::string errno_text(int err) { return std::generic_category().message(err); }

// The extension of the last path component, lower-cased, without the dot; "" if none.
std::string extension_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  const std::size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return {};
  std::string ext = path.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

// A new file next to `path` (so rename() stays within one file system), created exclusively with
// the usual 0666 & ~umask permissions (mkstemp would make it 0600).
int create_temporary(const std::string& path, std::string& temporary) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    temporary = fmt::format("{}.tmp-{}-{}", path, ::getpid(), attempt);
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

void write_atomically(const std::string& path, const std::string& bytes) {
  auto fail = [&](int err) {
    return Error(fmt::format("cannot write graph \"{}\": {}", path, errno_text(err)));
  };
  std::string temporary;
  const int fd = create_temporary(path, temporary);
  if (fd < 0) throw fail(errno);

  int err = 0;
  for (std::size_t done = 0; done < bytes.size() && err == 0;) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n >= 0)
      done += static_cast<std::size_t>(n);
    else if (errno != EINTR)
      err = errno;
  }
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(temporary.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(temporary.c_str());
    throw fail(err);
  }
}

}  // namespace

std::string to_dot(const Tape& tape, NodeId output, const GraphOptions& options) {
  const std::lock_guard lock(graphviz_mutex);
  GraphPtr graph = GraphBuilder(tape, output, options).build();
  return write_dot(graph.get());
}

std::string render_graph(const Tape& tape, NodeId output, std::string_view format,
                         const GraphOptions& options) {
  if (format == "dot") return to_dot(tape, output, options);
  if (format != "svg" && format != "png")
    throw Error(fmt::format("unknown graph format \"{}\": use dot, svg or png", format));
  const std::lock_guard lock(graphviz_mutex);
  GraphPtr graph = GraphBuilder(tape, output, options).build();
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

void write_graph(const Tape& tape, NodeId output, const std::string& path,
                 const GraphOptions& options) {
  const std::string ext = extension_of(path);
  if (ext.empty())
    throw Error(fmt::format("graph file \"{}\" has no extension: use .dot, .svg or .png", path));
  if (ext != "dot" && ext != "svg" && ext != "png")
    throw Error(fmt::format("unknown graph format \".{}\": use .dot, .svg or .png", ext));
  write_atomically(path, render_graph(tape, output, ext, options));
}

}  // namespace ag
