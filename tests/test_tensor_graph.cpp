// Graphs of tensor tapes: golden DOT files for a 2-layer MLP (lecture style after backward, a
// highlighted step frame, nn modules as clusters), what a tensor edge's gradient means at a fork,
// and determinism.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/graph.hpp>
#include <tapegrad/nn/layers.hpp>
#include <tapegrad/nn/loss.hpp>
#include <vector>

#include "golden.hpp"

using namespace ag;
namespace fs = std::filesystem;

namespace {

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// The line agwrite prints for a lecture-style edge: the value in green over the gradient in red.
std::string edge(const std::string& from, const std::string& to, const std::string& value,
                 const std::string& grad = "") {
  std::string label = R"(<font color="darkgreen">)" + value + "</font>";
  if (!grad.empty()) label += R"(<br/><font color="darkred">)" + grad + "</font>";
  return from + " -> " + to + "\t[label=<" + label + ">]";
}

const std::string kRed = R"(<font color="darkred">)";
const std::string kPng = "\x89PNG\r\n\x1a\n";

std::string node(NodeId id) { return fmt::format("n{}", id); }

// The lecture's 2-layer MLP on a batch of 4 (XOR), written out with the tape's ops:
//   h = relu(linear(x, W1, b1)); p = sigmoid(linear(h, W2, b2))
//   loss = mean(-(y log p + (1 - y) log(1 - p)))   (binary cross-entropy)
// p feeds two edges (log p and 1 - p): a fork.
struct Mlp {
  TensorTape tape;
  Tensor x = detach(tape.input(Shape{4, 2}, {0, 0, 0, 1, 1, 0, 1, 1})).named("x");
  Tensor y = detach(tape.input(Shape{4, 1}, {0, 1, 1, 0})).named("y");
  Tensor W1 = uniform(tape, Shape{5, 2}, -1, 1, 1, {DType::f64, true, "W1"});
  Tensor b1 = uniform(tape, Shape{5}, -1, 1, 2, {DType::f64, true, "b1"});
  Tensor W2 = uniform(tape, Shape{1, 5}, -1, 1, 3, {DType::f64, true, "W2"});
  Tensor b2 = uniform(tape, Shape{1}, -1, 1, 4, {DType::f64, true, "b2"});
  Tensor h = relu(linear(x, W1, b1)).named("h");
  Tensor p = sigmoid(linear(h, W2, b2)).named("p");
  Tensor loss = mean(-(y * log(p) + (1.0 - y) * log(1.0 - p))).named("loss");
};

}  // namespace

TEST_CASE("lecture style: a 2-layer MLP on a batch of 4 after backward") {
  Mlp m;
  m.tape.backward(m.loss);
  const std::string dot = to_dot(m.tape, m.loss.id());
  const NodeId lin1 = m.h.id() - 1, lin2 = m.p.id() - 1;
  // Op nodes: their symbol over their shape; a named one has its name between.
  CHECK(contains(dot, node(lin1) + "\t[label=<linear<br/><font point-size=\"10\" "
                                   "color=\"gray40\">(4, 5)</font>>];"));
  CHECK(contains(dot, node(m.h.id()) + "\t[label=<relu<br/><font point-size=\"11\" "
                                       "color=\"gray25\">h</font><br/>"));
  CHECK(contains(dot, "label=<σ<br/>"));
  CHECK(contains(dot, "label=<mean<br/>"));
  // Leaves are boxes "name (shape)"; data (x, y) is a constant: grey, and never a gradient.
  CHECK(contains(dot, R"*(label="W1 (5, 2)")*"));
  CHECK(contains(dot, R"*(label="x (4, 2)")*"));
  CHECK(contains(dot, edge(node(m.x.id()), node(lin1), "(4, 2)")));
  // W1 has 10 elements: the edge shows its shape over its gradient's norm. b2 has one: values.
  CHECK(contains(dot, edge(node(m.W1.id()), node(lin1), "(5, 2)",
                           fmt::format("|g| {}", format_number(m.tape.grad_norm(m.W1.id()))))));
  CHECK(contains(
      dot, edge(node(m.b2.id()), node(lin2), fmt::format("[{}]", format_number(m.b2.value(0))),
                fmt::format("[{}]", format_number(m.b2.grad_at(0))))));
  // A (4, 1) column is drawn row by row: four lines of values, four of gradient.
  const std::string p_rows = fmt::format("[[{}],<br/>[{}],<br/>", format_number(m.p.value(0)),
                                         format_number(m.p.value(1)));
  CHECK(contains(dot, p_rows));
  // p is a fork: both its edges carry its whole gradient, marked Σ.
  CHECK(golden::count(dot, fmt::format("Σ [[{}],<br/>", format_number(m.p.grad_at(0)))) == 2);
  // The output: loss and d loss / d loss = 1.
  CHECK(contains(dot, edge(node(m.loss.id()), "out", format_number(m.loss.item()), "1")));
  golden::check("tensor_mlp_lecture.dot", dot);
}

TEST_CASE("a tensor edge shows its source's gradient, marked Σ at a fork") {
  // f = sum(exp(x) + x * 2): x feeds two edges, so df/dx = exp(x) + 2 is their sum.
  TensorTape tape;
  Tensor x = tape.input(Shape{2}, {0.0, 1.0}, "x");
  Tensor u = exp(x).named("u");
  Tensor two = full(tape, Shape{}, 2.0, {DType::f64});
  Tensor v = (x * two).named("v");
  Tensor f = sum(u + v).named("f");
  TensorStepper stepper = tape.stepper(f);
  std::vector<std::string> frames;
  while (stepper.next())
    frames.push_back(to_dot(tape, f.id(), {GraphStyle::lecture, &stepper.step()}));
  REQUIRE(frames.size() == 4);  // sum, +, *, exp
  const std::string done = to_dot(tape, f.id());
  const std::string total =
      fmt::format("Σ [{}, {}]", format_number(std::exp(0.0) + 2), format_number(std::exp(1.0) + 2));
  CHECK(x.grad<double>()[1] == doctest::Approx(std::exp(1.0) + 2));
  CHECK(contains(done, edge("n0", "n1", "[0, 1]", total)));
  CHECK(contains(done, edge("n0", "n3", "[0, 1]", total)));
  // A source with one edge gets exactly that edge's contribution: d f / d u = 1.
  CHECK(contains(done,
                 edge("n1", "n4", fmt::format("[1, {}]", format_number(std::exp(1.0))), "[1, 1]")));
  // The constant 2 gets none.
  CHECK(contains(done, edge("n2", "n3", "2")));
  // Mid-pass (after x * 2 has been processed, before exp): x holds only that branch's 2, and
  // the exp edge has no gradient yet.
  CHECK(contains(frames[2], "n0 -> n3\t[color=orangered,"));  // the step's own edge
  CHECK(contains(frames[2], R"(<font color="darkred">Σ [2, 2]</font>)"));
  CHECK(contains(frames[2], edge("n0", "n1", "[0, 1]")));
  CHECK(frames[3] != done);  // the last frame still highlights exp's step
  CHECK(golden::count(frames[3], kRed) == golden::count(done, kRed));
}

TEST_CASE("a highlighted TensorStepper frame") {
  Mlp m;
  TensorStepper stepper = m.tape.stepper(m.loss);
  const std::string before = to_dot(m.tape, m.loss.id(), {GraphStyle::lecture, &stepper.step()});
  CHECK(golden::count(before, kRed) == 1);  // only the seed d loss / d loss = 1
  CHECK(golden::count(before, "orangered") == 0);
  // Step down to the second linear layer, p's input: every later node has been processed.
  const NodeId lin2 = m.p.id() - 1;
  while (stepper.next() && stepper.step().node != lin2) {
  }
  REQUIRE(stepper.step().node == lin2);
  const std::string frame = to_dot(m.tape, m.loss.id(), {GraphStyle::lecture, &stepper.step()});
  // The node and its three input edges (h, W2, b2) are highlighted.
  CHECK(golden::count(frame, "color=orangered") == 4);
  CHECK(contains(frame, node(m.W2.id()) + " -> " + node(lin2) + "\t[color=orangered,"));
  // h's gradient has just arrived; W1's has not (the first linear layer comes later).
  CHECK(contains(frame, fmt::format("|g| {}", format_number(m.tape.grad_norm(m.h.id())))));
  CHECK(contains(frame, edge(node(m.W1.id()), node(m.h.id() - 1), "(5, 2)")));
  golden::check("tensor_mlp_step.dot", frame);

  Mlp other;
  CHECK_THROWS_WITH_AS(to_dot(other.tape, other.loss.id(), {GraphStyle::lecture, &stepper.step()}),
                       doctest::Contains("another tape"), Error);
  CHECK_THROWS_WITH_AS(to_dot(m.tape, m.p.id(), {GraphStyle::lecture, &stepper.step()}),
                       doctest::Contains("backward pass from node"), Error);
  CHECK_THROWS_WITH_AS(to_dot(m.tape, 999), doctest::Contains("node 999 does not exist"), Error);
}

TEST_CASE("modules style: each nn module of an MLP is a cluster, nested as the modules nest") {
  nn::MLP mlp({2, 5, 1}, ag::Op::relu, ag::Op::sigmoid, 7);
  TensorTape tape;
  Tensor x = detach(tape.input(Shape{4, 2}, {0, 0, 0, 1, 1, 0, 1, 1}, {}, DType::f32)).named("x");
  Tensor p = mlp(x).named("p");
  const std::string dot = to_dot(tape, p.id(), {GraphStyle::modules});
  // "layers" (the Sequential) holds layers.0 (Linear), layers.1 (ReLU), layers.2 (Linear) and
  // layers.3 (Sigmoid); x is outside every module.
  CHECK(golden::count(dot, "subgraph cluster_") == 5);
  for (const char* path : {"label=layers,", R"(label="layers.0")", R"(label="layers.1")",
                           R"(label="layers.2")", R"(label="layers.3")"})
    CHECK(contains(dot, path));
  const std::size_t outer = dot.find("subgraph cluster_1 {");
  REQUIRE(outer != std::string::npos);
  CHECK(dot.find("\t\tsubgraph cluster_2 {", outer) != std::string::npos);  // one tab deeper
  CHECK(contains(dot, R"*(label="layers.0.weight (5, 2)")*"));
  CHECK(contains(dot, R"*(label="layers.2.bias (1,)")*"));
  // Before backward an edge shows the shape (a 1-element tensor its value), no gradient.
  CHECK(golden::count(dot, kRed) == 0);
  CHECK(contains(dot, "(4, 5)</font>>]"));
  golden::check("tensor_mlp_modules.dot", dot);

  // After backward: gradient norms on the edges, values only where a tensor is one number.
  Tensor target = detach(tape.input(Shape{4, 1}, {0, 1, 1, 0}, {}, DType::f32));
  Tensor loss = nn::bce_loss(p, target).named("loss");
  tape.backward(loss);
  const std::string trained = to_dot(tape, loss.id(), {GraphStyle::modules});
  CHECK(contains(trained, fmt::format("|g| {}", format_number(tape.grad_norm(p.id())))));
  CHECK(!contains(trained, "[["));
  CHECK(contains(trained, format_number(loss.item()) + "</font><br/>"));
  CHECK(render_graph(tape, loss.id(), "png", {GraphStyle::modules}).rfind(kPng, 0) == 0);
}

TEST_CASE("tensor graphs are deterministic") {
  auto draw = [](GraphStyle style) {
    Mlp m;
    m.tape.backward(m.loss);
    return to_dot(m.tape, m.loss.id(), {style});
  };
  auto draw_modules = [] {
    nn::MLP mlp({2, 3, 3, 1}, ag::Op::tanh, nn::Activation::none, 3);
    TensorTape tape;
    Tensor x = tape.input(Shape{4, 2}, {0, 0, 0, 1, 1, 0, 1, 1}, "x", DType::f32);
    Tensor loss = mean(mlp(x)).named("loss");
    tape.backward(loss);
    return to_dot(tape, loss.id(), {GraphStyle::modules});
  };
  const std::string modules = draw_modules();
  std::vector<std::string> churn(100, std::string(64, 'x'));  // move malloc's free lists about
  CHECK(draw(GraphStyle::lecture) == draw(GraphStyle::lecture));
  CHECK(draw(GraphStyle::values) == draw(GraphStyle::values));
  CHECK(draw_modules() == modules);
  // Clusters come out in the order of the tape (Note [Subgraph order] in graph.cpp).
  std::vector<std::size_t> at;
  for (int s = 1; s <= 6; ++s) at.push_back(modules.find(fmt::format("subgraph cluster_{} ", s)));
  CHECK(std::is_sorted(at.begin(), at.end()));
  CHECK(at.back() != std::string::npos);
}

TEST_CASE("tensor graphs: max_values, the values style, rendering and files") {
  Mlp m;
  m.tape.backward(m.loss);
  // max_values = 0: shapes and norms everywhere, even for one element.
  const std::string shapes = to_dot(m.tape, m.loss.id(), {GraphStyle::lecture, nullptr, 0});
  CHECK(!contains(shapes, "[["));
  CHECK(contains(shapes, edge(node(m.loss.id()), "out", "()", "|g| 1")));
  const std::string values = to_dot(m.tape, m.loss.id(), {GraphStyle::values});
  CHECK(contains(values, fmt::format("<td>W1</td><td>data (5, 2)</td><td>grad |g| {}</td>",
                                     format_number(m.tape.grad_norm(m.W1.id())))));
  CHECK(render_graph(m.tape, m.loss.id(), "svg").find("<svg") != std::string::npos);
  CHECK(render_graph(m.tape, m.loss.id(), "png").rfind(kPng, 0) == 0);
  CHECK(render_graph(m.tape, m.loss.id(), "dot") == to_dot(m.tape, m.loss.id()));
  CHECK_THROWS_WITH_AS(render_graph(m.tape, m.loss.id(), "gif"),
                       doctest::Contains("unknown graph format \"gif\""), Error);

  std::string pattern = (fs::temp_directory_path() / "tapegrad-tgraph-XXXXXX").string();
  REQUIRE(::mkdtemp(pattern.data()) != nullptr);
  const fs::path dir = pattern;
  write_graph(m.tape, m.loss.id(), (dir / "mlp.dot").string());
  write_graph(m.tape, m.loss.id(), (dir / "mlp.PNG").string(), {GraphStyle::modules});
  CHECK(golden::read_file(dir / "mlp.dot") == to_dot(m.tape, m.loss.id()));
  CHECK(golden::read_file(dir / "mlp.PNG").rfind(kPng, 0) == 0);
  CHECK_THROWS_WITH_AS(write_graph(m.tape, m.loss.id(), (dir / "mlp.txt").string()),
                       doctest::Contains("unknown graph format \".txt\""), Error);
  fs::remove_all(dir);
}

// ---- amin, argmax, where, batched products: each drawn with its symbol
// ---------------------------------------------

TEST_CASE("amin, amax over all, argmax, where and batched matmul drawn with their symbols") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 2, 3}, {1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1}, "x");
  Tensor w = tape.input(Shape{3, 2}, {1, 0, 0, 1, 1, 1}, "w");
  Tensor p = matmul(x, w).named("p");                   // (2, 2, 2)
  Tensor c = argmax(p, 2, true).named("c");             // (2, 2, 1), a constant
  Tensor s = where(c, p, amin(p, 2, true)).named("s");  // (2, 2, 2)
  Tensor hi = amax(s), lo = amin(s);
  Tensor loss = (hi + lo).named("loss");
  tape.backward(loss);
  const std::string dot = to_dot(tape, loss.id());
  // The symbol, then the name if any, then the shape.
  const auto op_node = [&](const Tensor& t, const std::string& symbol, const std::string& shape) {
    const std::string name =
        t.name().empty()
            ? ""
            : fmt::format("<font point-size=\"11\" color=\"gray25\">{}</font><br/>", t.name());
    return fmt::format("{}\t[label=<{}<br/>{}<font point-size=\"10\" color=\"gray40\">{}</font>>];",
                       node(t.id()), symbol, name, shape);
  };
  CHECK(contains(dot, op_node(p, "@", "(2, 2, 2)")));
  CHECK(contains(dot, op_node(c, "argmax", "(2, 2, 1)")));
  CHECK(contains(dot, op_node(s, "where", "(2, 2, 2)")));
  CHECK(contains(dot, op_node(tape.handle(s.id() - 1), "min", "(2, 2, 1)")));
  CHECK(contains(dot, op_node(hi, "max", "()")));
  CHECK(contains(dot, op_node(lo, "min", "()")));
  // where's three inputs are three edges into it; argmax passes no gradient back to p.
  CHECK(contains(dot, node(c.id()) + " -> " + node(s.id())));
  CHECK(contains(dot, node(p.id()) + " -> " + node(s.id())));
  CHECK(contains(dot, node(s.id() - 1) + " -> " + node(s.id())));
}

TEST_CASE("shape ops are drawn with their symbols, cat with an edge per input however many") {
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, "x");
  Tensor w = tape.input(Shape{1, 3}, {7, 8, 9}, "w");
  // Five inputs, x twice: more than a node record holds (Note [Many inputs]).
  Tensor joined = cat({x, w, x, w, w}, 0).named("joined");
  Tensor stacked = stack({joined, joined}, 0).named("stacked");
  Tensor sliced = slice(stacked, 1, 1, -1, 2).named("sliced");
  const std::vector<std::int64_t> cols{2, 2, 0}, index{0, 2, 1, 1};
  Tensor selected = index_select(sliced, 2, cols).named("selected");
  Tensor swapped = transpose(selected, 0, 2).named("swapped");
  Tensor gathered = gather(swapped, 1, index, Shape{1, 4, 1}).named("gathered");
  Tensor loss = sum(gathered).named("loss");
  tape.backward(loss);
  const std::string dot = to_dot(tape, loss.id());
  for (const auto& [t, symbol] : {std::pair{joined, "cat"},
                                  {stacked, "stack"},
                                  {sliced, "[:]"},
                                  {selected, "index_select"},
                                  {swapped, "ᵀ"},
                                  {gathered, "gather"}}) {
    CAPTURE(symbol);
    CHECK(contains(dot, fmt::format("{}\t[label=<{}<br/>", node(t.id()), symbol)));
  }
  CHECK(golden::count(dot, "-> " + node(joined.id()) + "\t") == 5);
  CHECK(golden::count(dot, node(x.id()) + " -> " + node(joined.id()) + "\t") == 2);
  CHECK(golden::count(dot, "-> " + node(stacked.id()) + "\t") == 2);
}
