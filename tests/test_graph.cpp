// Graph export: golden DOT files for the lecture circuits, highlighted step frames, SVG and PNG
// rendering, and files that appear whole or not at all.

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/graph.hpp>
#include <vector>

#include "golden.hpp"

using namespace ag;
namespace fs = std::filesystem;

namespace {

// A fresh empty directory, removed with everything in it at the end of the test.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "tapegrad-graph-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::permissions(path, fs::perms::owner_all, ignored);
    fs::remove_all(path, ignored);
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path)) names.push_back(entry.path().filename());
    return names;
  }
};

// The CS231n circuit f = (x + y) z at x = -2, y = 5, z = -4, with q = x + y named.
struct Cs231n {
  Tape tape;
  Value x = tape.input(-2.0, "x");
  Value y = tape.input(5.0, "y");
  Value z = tape.input(-4.0, "z");
  Value q = (x + y).named("q");
  Value f = (q * z).named("f");
};

// The line agwrite prints for a lecture-style edge: the value in green over the gradient in red.
std::string edge(const std::string& from, const std::string& to, const std::string& value,
                 const std::string& grad = "") {
  std::string label = R"(<font color="darkgreen">)" + value + "</font>";
  if (!grad.empty()) label += R"(<br/><font color="darkred">)" + grad + "</font>";
  return from + " -> " + to + "\t[label=<" + label + ">]";
}

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

const std::string kGreen = R"(<font color="darkgreen">)";
const std::string kRed = R"(<font color="darkred">)";
const std::string kPng = "\x89PNG\r\n\x1a\n";

}  // namespace

TEST_CASE("lecture style: the CS231n circuit after backward") {
  Cs231n c;
  c.tape.backward(c.f);
  const std::string dot = to_dot(c.tape, c.f.id());
  // df/dx = df/dq * dq/dx = -4 * 1: the edge x -> (+) carries x = -2 and the gradient -4.
  CHECK(contains(dot, edge("n0", "n3", "-2", "-4")));
  // df/dz = q = 3 on the edge z -> (*); the output box f gets f = -12 and df/df = 1.
  CHECK(contains(dot, edge("n2", "n4", "-4", "3")));
  CHECK(contains(dot, edge("n4", "out", "-12", "1")));
  CHECK(dot.find("rankdir=LR") != std::string::npos);
  golden::check("cs231n_lecture.dot", dot);
}

// Note [Drawing the backward pass]: what grad with create_graph recorded, drawn with the rule
// each node came from.
TEST_CASE("backward drawn: the CS231n circuit's backward pass, forward muted") {
  Cs231n c;
  const std::vector<Value> wrt = {c.x, c.y, c.z};
  const std::vector<Value> grads = c.tape.grad(c.f, wrt, {.create_graph = true});
  const std::string dot = to_dot(c.tape, c.f.id(), {.wrt = wrt, .gradients = grads});
  // df/dq = z * upstream, df/dz = q * upstream: two products, from the rule of f = q * z.
  CHECK(golden::count(dot, "∂f/∂q · upstream") == 1);
  CHECK(golden::count(dot, "∂f/∂z · upstream") == 1);
  CHECK(golden::count(dot, "∂f/∂f") == 1);  // the seed 1
  // add passes its upstream on unchanged: dL/dx and dL/dy are the one node df/dq = -4.
  CHECK(contains(dot, "n6 -> grad0"));
  CHECK(contains(dot, "n6 -> grad1"));
  CHECK(contains(dot, "n7 -> grad2"));
  CHECK(contains(dot, "label=\"∂f/∂x\""));
  // Every forward node is muted, with its edges: x, y, z, q, f, the output box and 4 edges.
  CHECK(golden::count(dot, "fontcolor=gray70") == 6);
  CHECK(golden::count(dot, kRed) == 0);  // no gradient flowed along the drawn edges
  golden::check("cs231n_backward.dot", dot);
}

TEST_CASE("backward drawn: the sigmoid neuron's local derivative is σ(1 - σ)") {
  Tape tape;
  const std::vector<Value> wrt = {tape.input(2, "w0"), tape.input(-1, "x0"), tape.input(-3, "w1"),
                                  tape.input(-2, "x1"), tape.input(-3, "w2")};
  const Value f = sigmoid(wrt[0] * wrt[1] + wrt[2] * wrt[3] + wrt[4]).named("f");
  const std::vector<Value> grads = tape.grad(f, wrt, {.create_graph = true});
  // The lecture's numbers: df/dw0 = -0.2, df/dx0 = 0.39 (to its two digits).
  CHECK(grads[0].value() == doctest::Approx(-0.196612).epsilon(1e-5));
  CHECK(grads[1].value() == doctest::Approx(0.393224).epsilon(1e-5));
  const std::string dot = to_dot(tape, f.id(), {.wrt = wrt, .gradients = grads});
  CHECK(golden::count(dot, "∂f/∂t8<") == 1);                // σ's local σ(1 - σ), a product
  CHECK(golden::count(dot, "∂f/∂t8 · upstream") == 1);      // times the seed
  CHECK(golden::count(dot, "in ∂f<") == 2);                 // the 1 and the 1 - σ inside it
  CHECK(golden::count(dot, "· upstream") == 5);             // σ's, and one per weight and input
  CHECK(golden::count(dot, "shape=box") == 5 + 1 + 5 + 2);  // inputs, f, gradients, constants
  golden::check("sigmoid_neuron_backward.dot", dot);
}

TEST_CASE("backward drawn: a fork's sum is labelled, and misuse is an error") {
  Tape tape;
  const Value x = tape.input(3, "x");
  const Value f = (x * x).named("f");
  const std::vector<Value> wrt = {x};
  const std::vector<Value> grads = tape.grad(f, wrt, {.create_graph = true});
  CHECK(grads[0].value() == 6);
  const std::string dot = to_dot(tape, f.id(), {.wrt = wrt, .gradients = grads});
  CHECK(golden::count(dot, "Σ ∂f/∂x") == 1);  // x * x: both contributions added
  CHECK_THROWS_WITH_AS(
      to_dot(tape, f.id(), {.style = GraphStyle::values, .wrt = wrt, .gradients = grads}),
      "graph: the backward pass is drawn in the lecture style only", Error);
  CHECK_THROWS_WITH_AS(to_dot(tape, f.id(), {.wrt = wrt}),
                       "graph: 0 gradients for 1 inputs: give one gradient per input", Error);
}

TEST_CASE("lecture style before backward shows values only") {
  Cs231n c;
  const std::string dot = to_dot(c.tape, c.f.id());
  CHECK(golden::count(dot, kGreen) == 5);  // x, y, z, q and the output edge
  CHECK(golden::count(dot, kRed) == 0);
}

TEST_CASE("values style: micrograd's records name | data | grad") {
  Cs231n c;
  c.tape.backward(c.f);
  const std::string dot = to_dot(c.tape, c.f.id(), {GraphStyle::values});
  CHECK(dot.find("<td>q</td><td>data 3</td><td>grad -4</td>") != std::string::npos);
  CHECK(dot.find("<td>f</td><td>data -12</td><td>grad 1</td>") != std::string::npos);
  CHECK(dot.find("n3_op -> n3;") != std::string::npos);  // op node -> its value
  golden::check("cs231n_values.dot", dot);
}

TEST_CASE("a fork shows each edge's contribution; a constant gets none") {
  Tape tape;
  Value x = tape.input(3.0, "x");
  Value two = tape.constant(2.0);
  Value sq = (x * x).named("sq");  // a fork: both inputs are x
  Value lin = two * x;
  Value g = (sq + lin).named("g");
  tape.backward(g);
  REQUIRE(x.grad() == 8);  // dg/dx = 2x + 2 = 3 + 3 + 2: the three edges out of x
  const std::string dot = to_dot(tape, g.id());
  CHECK(golden::count(dot, edge("n0", "n2", "3", "3")) == 2);  // d(x*x)/dx: x from each side
  CHECK(contains(dot, edge("n0", "n3", "3", "2")));            // d(2x)/dx = 2
  CHECK(contains(dot, edge("n1", "n3", "2")));  // the constant 2: a value, no gradient
  golden::check("fork_constant.dot", dot);
}

TEST_CASE("only the nodes the output depends on are drawn") {
  Tape tape;
  Value x = tape.input(1.0, "x"), y = tape.input(2.0, "y");
  Value unused = exp(y).named("unused");
  Value f = (x * 3.0).named("f");
  const std::string dot = to_dot(tape, f.id());
  CHECK(dot.find("unused") == std::string::npos);
  CHECK(dot.find("n1") == std::string::npos);
  CHECK(dot.find("label=exp") == std::string::npos);
  CHECK(unused.valid());
  CHECK_THROWS_WITH_AS(to_dot(tape, 99), doctest::Contains("node 99 does not exist"), Error);
}

TEST_CASE("step frames: gradients appear as the backward pass goes down the tape") {
  Cs231n c;
  Stepper stepper = c.tape.stepper(c.f);
  std::vector<std::string> frames;
  frames.push_back(to_dot(c.tape, c.f.id(), {GraphStyle::lecture, &stepper.step()}));
  while (stepper.next())
    frames.push_back(to_dot(c.tape, c.f.id(), {GraphStyle::lecture, &stepper.step()}));
  REQUIRE(frames.size() == 3);
  // Before the first step only the seed df/df = 1 is known; each step adds its input edges.
  CHECK(golden::count(frames[0], kRed) == 1);
  CHECK(golden::count(frames[1], kRed) == 3);
  CHECK(golden::count(frames[2], kRed) == 5);
  CHECK(golden::count(frames[0], "orangered") == 0);
  // Step 1 processes f = q * z: its node and the two edges it writes are highlighted.
  CHECK(golden::count(frames[1], "color=orangered") == 3);
  CHECK(frames[1].find(R"(n3 -> n4	[color=orangered,)") != std::string::npos);
  golden::check("cs231n_step1.dot", frames[1]);
  // The last frame is the finished pass with q's step still highlighted.
  Cs231n done;
  done.tape.backward(done.f);
  CHECK(frames[2] != to_dot(done.tape, done.f.id()));
  CHECK(golden::count(frames[2], kRed) == golden::count(to_dot(done.tape, done.f.id()), kRed));

  Cs231n other;
  CHECK_THROWS_WITH_AS(to_dot(other.tape, other.f.id(), {GraphStyle::lecture, &stepper.step()}),
                       doctest::Contains("another tape"), Error);
  CHECK_THROWS_WITH_AS(to_dot(c.tape, c.q.id(), {GraphStyle::lecture, &stepper.step()}),
                       doctest::Contains("backward pass from node 4, not 3"), Error);
}

TEST_CASE("values style during a step shows the gradients the engine holds so far") {
  Cs231n c;
  Stepper stepper = c.tape.stepper(c.f);
  REQUIRE(stepper.next());  // f = q * z: q and z receive their gradients
  const std::string dot = to_dot(c.tape, c.f.id(), {GraphStyle::values, &stepper.step()});
  CHECK(dot.find("<td>q</td><td>data 3</td><td>grad -4</td>") != std::string::npos);
  CHECK(dot.find("<td>x</td><td>data -2</td><td>grad </td>") != std::string::npos);
  CHECK(golden::count(dot, "orangered") == 4);  // f's record, its op node and the two edges into it
}

TEST_CASE("the modules style needs a tensor tape") {
  Cs231n c;
  CHECK_THROWS_WITH_AS(to_dot(c.tape, c.f.id(), {GraphStyle::modules}),
                       doctest::Contains("a scalar tape has none"), Error);
  CHECK_THROWS_WITH_AS(render_graph(c.tape, c.f.id(), "svg", {GraphStyle::modules}),
                       doctest::Contains("use the lecture or values style"), Error);
}

TEST_CASE("the DOT text is deterministic") {
  auto draw = [](GraphStyle style) {
    Cs231n c;
    c.tape.backward(c.f);
    return to_dot(c.tape, c.f.id(), {style});
  };
  CHECK(draw(GraphStyle::lecture) == draw(GraphStyle::lecture));
  CHECK(draw(GraphStyle::values) == draw(GraphStyle::values));
  Cs231n c;
  c.tape.backward(c.f);
  CHECK(to_dot(c.tape, c.f.id()) == to_dot(c.tape, c.f.id()));
}

TEST_CASE("names are escaped for Graphviz") {
  Tape tape;
  Value a = tape.input(1.0, R"(a<b & "c"\n)");
  Value b = (a * 2.0).named("<q>");
  Value f = (b + 1.0).named("f");
  tape.backward(f);
  const std::string lecture = to_dot(tape, f.id());
  CHECK(lecture.find(R"(label="a<b & \"c\"\\n")") != std::string::npos);
  CHECK(lecture.find("&lt;q&gt;") != std::string::npos);
  const std::string values = to_dot(tape, f.id(), {GraphStyle::values});
  CHECK(values.find("<td>a&lt;b &amp; &quot;c&quot;\\n</td>") != std::string::npos);
  CHECK(contains(render_graph(tape, f.id(), "svg"), "a&lt;b &amp; &quot;c&quot;\\n"));
}

TEST_CASE("render_graph: SVG and PNG in-process, DOT as text") {
  Cs231n c;
  c.tape.backward(c.f);
  const std::string svg = render_graph(c.tape, c.f.id(), "svg");
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(svg.find("<svg") != std::string::npos);
  CHECK(svg.find(">+<") != std::string::npos);
  const std::string png = render_graph(c.tape, c.f.id(), "png");
  CHECK(png.rfind(kPng, 0) == 0);
  CHECK(png.size() > 1000);
  CHECK(render_graph(c.tape, c.f.id(), "dot") == to_dot(c.tape, c.f.id()));
  const std::string values_png = render_graph(c.tape, c.f.id(), "png", {GraphStyle::values});
  CHECK(values_png.rfind(kPng, 0) == 0);
  CHECK_THROWS_WITH_AS(render_graph(c.tape, c.f.id(), "jpg"),
                       doctest::Contains("unknown graph format \"jpg\""), Error);
}

TEST_CASE("the renderer transcribes a graph model, the tape's or one written by hand") {
  Cs231n c;
  c.tape.backward(c.f);
  const GraphModel model = graph_model(c.tape, c.f.id());
  CHECK(to_dot(model) == to_dot(c.tape, c.f.id()));
  CHECK(render_graph(model, "svg") == render_graph(c.tape, c.f.id(), "svg"));

  // As the playground builds one: an attribute the defaults do not declare is declared by use.
  GraphModel by_hand;
  by_hand.nodes = {{"a", {{"shape", "box"}}}, {"b", {{"label", "<i>b</i>", true}}, 0}};
  by_hand.edges = {{"a", "b", {}}, {"a", "b", {{"color", "red"}}}};
  by_hand.subgraphs = {{"cluster_0", {{"label", "module"}}}};
  const std::string dot = to_dot(by_hand);
  CHECK(dot.find("subgraph cluster_0 {") != std::string::npos);
  CHECK(dot.find("label=<<i>b</i>>") != std::string::npos);
  const std::size_t first = dot.find("a -> b");
  REQUIRE(first != std::string::npos);
  CHECK(dot.find("a -> b", first + 1) != std::string::npos);  // two edges, not one
  CHECK(dot.find("color=red") != std::string::npos);
  by_hand.edges.push_back({"a", "c", {}});
  CHECK_THROWS_WITH_AS(to_dot(by_hand), doctest::Contains("a -> c names a node"), Error);
}

TEST_CASE("ids: every node and edge of the SVG has a stable id, both edges of x * x too") {
  Cs231n c;
  c.tape.backward(c.f);
  GraphOptions options;
  options.ids = true;
  const std::string svg = render_graph(c.tape, c.f.id(), "svg", options);
  for (const char* id :
       {"n0", "n1", "n2", "n3", "n4", "n_out", "e3_0", "e3_1", "e4_0", "e4_1", "e_out"})
    CHECK_MESSAGE(contains(svg, fmt::format("<g id=\"{}\" class=", id)), id);
  CHECK(!contains(to_dot(c.tape, c.f.id()), "id="));  // only when asked for

  Tape tape;
  Value x = tape.input(3.0, "x");
  Value f = (x * x).named("f");
  tape.backward(f);
  const std::string square = render_graph(tape, f.id(), "svg", options);
  CHECK(contains(square, R"(<g id="e1_0" class="edge">)"));
  CHECK(contains(square, R"(<g id="e1_1" class="edge">)"));
}

TEST_CASE("write_graph picks the format from the extension") {
  Cs231n c;
  c.tape.backward(c.f);
  ScratchDir dir;
  write_graph(c.tape, c.f.id(), (dir.path / "f.dot").string());
  write_graph(c.tape, c.f.id(), (dir.path / "f.svg").string());
  write_graph(c.tape, c.f.id(), (dir.path / "f.PNG").string());
  CHECK(golden::read_file(dir.path / "f.dot") == to_dot(c.tape, c.f.id()));
  CHECK(golden::read_file(dir.path / "f.svg").find("<svg") != std::string::npos);
  CHECK(golden::read_file(dir.path / "f.PNG").rfind(kPng, 0) == 0);
  // Overwriting replaces the file; no temporary is left next to it.
  write_graph(c.tape, c.f.id(), (dir.path / "f.dot").string(), {GraphStyle::values});
  CHECK(golden::read_file(dir.path / "f.dot") == to_dot(c.tape, c.f.id(), {GraphStyle::values}));
  CHECK(dir.entries().size() == 3);
}

TEST_CASE("write_graph: an unknown extension is an error and nothing is written") {
  Cs231n c;
  ScratchDir dir;
  CHECK_THROWS_WITH_AS(write_graph(c.tape, c.f.id(), (dir.path / "f.jpg").string()),
                       "unknown graph format \".jpg\": use .dot, .svg or .png", Error);
  CHECK_THROWS_WITH_AS(write_graph(c.tape, c.f.id(), (dir.path / "f").string()),
                       doctest::Contains("has no extension"), Error);
  CHECK_THROWS_WITH_AS(write_graph(c.tape, c.f.id(), (dir.path / "dir.d" / "f").string()),
                       doctest::Contains("has no extension"), Error);
  CHECK(dir.entries().empty());
}

TEST_CASE("write_graph: a failure names the path and leaves nothing behind") {
  Cs231n c;
  ScratchDir dir;
  // A directory that cannot hold files: its "parent" is a regular file.
  std::ofstream(dir.path / "file") << "x";
  const std::string under_file = (dir.path / "file" / "f.dot").string();
  CHECK_THROWS_WITH_AS(write_graph(c.tape, c.f.id(), under_file),
                       doctest::Contains((under_file + "\": Not a directory").c_str()), Error);
  // The temporary is written, then the rename fails (the target is a directory): it is removed.
  fs::create_directory(dir.path / "taken.dot");
  std::ofstream(dir.path / "taken.dot" / "keep") << "x";
  CHECK_THROWS_WITH_AS(write_graph(c.tape, c.f.id(), (dir.path / "taken.dot").string()),
                       doctest::Contains("taken.dot\": Is a directory"), Error);
  std::vector<std::string> entries = dir.entries();
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"file", "taken.dot"});
  // A read-only directory (root writes anyway, so only checked for other users).
  if (::geteuid() != 0) {
    fs::create_directory(dir.path / "ro");
    fs::permissions(dir.path / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    CHECK_THROWS_WITH_AS(write_graph(c.tape, c.f.id(), (dir.path / "ro" / "f.svg").string()),
                         doctest::Contains("Permission denied"), Error);
    CHECK(fs::is_empty(dir.path / "ro"));
  }
}
