// The graph model (core, no Graphviz): the lecture circuit's nodes and edges in creation order,
// its labels, the highlighted step, stable ids, and nn-style scopes as nested clusters.

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <tapegrad/graph_model.hpp>
#include <tapegrad/tensor.hpp>
#include <tapegrad/value.hpp>
#include <vector>

using namespace ag;

namespace {

// The CS231n circuit f = (x + y) z at x = -2, y = 5, z = -4, with q = x + y named.
struct Cs231n {
  Tape tape;
  Value x = tape.input(-2.0, "x");
  Value y = tape.input(5.0, "y");
  Value z = tape.input(-4.0, "z");
  Value q = (x + y).named("q");
  Value f = (q * z).named("f");
};

// The value of attribute `name` in `attributes`, or "(none)".
std::string attribute(const GraphAttributes& attributes, const std::string& name) {
  const auto found = std::find_if(attributes.begin(), attributes.end(),
                                  [&](const GraphAttribute& a) { return a.name == name; });
  return found == attributes.end() ? "(none)" : found->value;
}

const GraphNode& node(const GraphModel& model, const std::string& name) {
  const auto found = std::find_if(model.nodes.begin(), model.nodes.end(),
                                  [&](const GraphNode& n) { return n.name == name; });
  REQUIRE(found != model.nodes.end());
  return *found;
}

std::vector<std::string> node_names(const GraphModel& model) {
  std::vector<std::string> names;
  for (const GraphNode& n : model.nodes) names.push_back(n.name);
  return names;
}

std::vector<std::string> edge_ends(const GraphModel& model) {
  std::vector<std::string> ends;
  for (const GraphEdge& e : model.edges) ends.push_back(e.tail + "->" + e.head);
  return ends;
}

}  // namespace

TEST_CASE(
    "the lecture circuit's model: nodes by tape index, edges in input order, the output box") {
  Cs231n c;
  c.tape.backward(c.f);
  const GraphModel model = graph_model(c.tape, c.f.id());

  CHECK(node_names(model) == std::vector<std::string>{"n0", "n1", "n2", "n3", "n4", "out"});
  CHECK(edge_ends(model) ==
        std::vector<std::string>{"n0->n3", "n1->n3", "n3->n4", "n2->n4", "n4->out"});
  CHECK(model.subgraphs.empty());
  CHECK(attribute(model.graph_attributes, "rankdir") == "LR");
  CHECK(attribute(model.node_attributes, "shape") == "circle");

  // Inputs are named boxes; q = x + y is a circle with its symbol over its name.
  CHECK(attribute(node(model, "n0").attributes, "shape") == "box");
  CHECK(attribute(node(model, "n0").attributes, "label") == "x");
  CHECK(attribute(node(model, "n3").attributes, "shape") == "(none)");  // the default circle
  CHECK(attribute(node(model, "n3").attributes, "label").starts_with("+<br/>"));

  // The edge z -> f carries z = -4 over df/dz = q = 3, as an HTML-like label.
  const GraphEdge& z_to_f = model.edges[3];
  REQUIRE(z_to_f.attributes.size() == 1);
  CHECK(z_to_f.attributes[0].html);
  CHECK(z_to_f.attributes[0].value ==
        R"(<font color="darkgreen">-4</font><br/><font color="darkred">3</font>)");
  // The output's box says f; its edge carries f = -12 and df/df = 1.
  CHECK(attribute(node(model, "out").attributes, "label") == "f");
  CHECK(attribute(model.edges[4].attributes, "label") ==
        R"(<font color="darkgreen">-12</font><br/><font color="darkred">1</font>)");
}

TEST_CASE("a step's node and the edges it writes are highlighted; ids name nodes and edges") {
  Cs231n c;
  Stepper stepper = c.tape.stepper(c.f);
  REQUIRE(stepper.next());  // f = q * z: q and z receive their gradients
  const GraphModel model =
      graph_model(c.tape, c.f.id(), {GraphStyle::lecture, &stepper.step(), true});

  CHECK(attribute(node(model, "n4").attributes, "color") == "orangered");
  CHECK(attribute(node(model, "n3").attributes, "color") == "(none)");
  CHECK(attribute(model.edges[2].attributes, "color") == "orangered");  // q -> f
  CHECK(attribute(model.edges[0].attributes, "color") == "(none)");     // x -> q, not yet
  // Not yet processed: x -> q shows the value alone.
  CHECK(attribute(model.edges[0].attributes, "label") == R"(<font color="darkgreen">-2</font>)");

  CHECK(attribute(node(model, "n2").attributes, "id") == "n2");
  CHECK(attribute(node(model, "out").attributes, "id") == "n_out");
  CHECK(attribute(model.edges[3].attributes, "id") == "e4_1");
  CHECK(attribute(model.edges[4].attributes, "id") == "e_out");
}

TEST_CASE("values style: a record per node and an op node per op") {
  Cs231n c;
  const GraphModel model = graph_model(c.tape, c.f.id(), {GraphStyle::values});
  CHECK(node_names(model) ==
        std::vector<std::string>{"n0", "n1", "n2", "n3", "n3_op", "n4", "n4_op"});
  CHECK(edge_ends(model) == std::vector<std::string>{"n0->n3_op", "n1->n3_op", "n3_op->n3",
                                                     "n3->n4_op", "n2->n4_op", "n4_op->n4"});
  CHECK(attribute(node(model, "n4_op").attributes, "label") == "*");
}

TEST_CASE("modules style: scopes become clusters made on first use, parents first") {
  TensorTape tape;
  Tensor x = tape.input({2}, {1.0, -2.0}, "x");
  Tensor out;
  {
    TensorTape::Scope outer(tape, "net");
    Tensor a = relu(x);
    {
      TensorTape::Scope unused(tape, "net.dead");
      Tensor dead = x * x;  // the output does not depend on it: no cluster
      (void)dead;
    }
    TensorTape::Scope inner(tape, "net.inner");
    Tensor b = a * a;
    out = sum(b);
  }
  const GraphModel model = graph_model(tape, out.id(), {GraphStyle::modules});

  REQUIRE(model.subgraphs.size() == 2);
  CHECK(model.subgraphs[0].name == "cluster_1");
  CHECK(model.subgraphs[0].parent == -1);
  CHECK(attribute(model.subgraphs[0].attributes, "label") == "net");
  CHECK(model.subgraphs[1].name == "cluster_3");
  CHECK(model.subgraphs[1].parent == 0);
  CHECK(attribute(model.subgraphs[1].attributes, "label") == "net.inner");
  CHECK(node(model, "n0").subgraph == -1);  // x, outside any module
  CHECK(node(model, "n1").subgraph == 0);   // relu
  CHECK(node(model, "out").subgraph == -1);

  Tape scalar;
  Value v = scalar.input(1.0, "v");
  CHECK_THROWS_AS(graph_model(scalar, v.id(), {GraphStyle::modules}), Error);
}

namespace {

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++count;
  return count;
}

}  // namespace

TEST_CASE("graph_model_json: the model as @viz-js/viz's graph object, in the model's order") {
  Cs231n c;
  c.tape.backward(c.f);
  const GraphModel model = graph_model(c.tape, c.f.id());
  const std::string json = graph_model_json(model);

  CHECK(json.starts_with(R"({"directed": true, "graphAttributes": {)"));
  CHECK(occurrences(json, R"({"tail": )") == model.edges.size());
  CHECK(occurrences(json, R"({"name": )") == model.nodes.size());  // no clusters
  // Nodes keep the model's order, which Graphviz's layout follows.
  std::size_t previous = 0;
  for (const GraphNode& n : model.nodes) {
    const std::size_t at = json.find(R"({"name": ")" + n.name + R"(")");
    REQUIRE(at != std::string::npos);
    CHECK(at > previous);
    previous = at;
  }
  // An HTML-like label is an {"html": ...} object; markup is escaped for a <script> element.
  CHECK(json.find(R"("label": {"html": "\u003c)") != std::string::npos);
  CHECK(json.find('<') == std::string::npos);
}

TEST_CASE("graph_model_json: a cluster holds its nodes and nested clusters, listed once") {
  TensorTape tape;
  Tensor x = tape.input({2}, {1.0, -2.0}, "x");
  Tensor out;
  {
    TensorTape::Scope outer(tape, "net");
    Tensor a = relu(x);
    TensorTape::Scope inner(tape, "net.inner");
    out = sum(a * a);
  }
  const GraphModel model = graph_model(tape, out.id(), {GraphStyle::modules});
  REQUIRE(model.subgraphs.size() == 2);
  const std::string json = graph_model_json(model);
  CHECK(occurrences(json, R"({"name": ")") == model.nodes.size() + model.subgraphs.size());
  const std::size_t outer_at = json.find(R"({"name": "cluster_1")");
  const std::size_t inner_at = json.find(R"({"name": "cluster_3")");
  const std::size_t relu_at = json.find(R"({"name": "n1")");
  REQUIRE(outer_at != std::string::npos);
  CHECK(outer_at < relu_at);
  CHECK(relu_at < inner_at);                        // relu is in net, before net.inner nested in it
  CHECK(json.find(R"({"name": "n0")") < outer_at);  // x is outside every module
}

namespace {

// x + x + ... + x: x feeds every op of a chain (issue 12, item 2).
Value sum_of_x(Tape& tape, int terms) {
  const Value x = tape.input(1.0, "x");
  Value sum = x;
  for (int i = 1; i < terms; ++i) sum = sum + x;
  return sum;
}

std::size_t count_copies(const GraphModel& model) {
  return static_cast<std::size_t>(
      std::count_if(model.nodes.begin(), model.nodes.end(),
                    [](const GraphNode& n) { return n.name.find("_copy") != std::string::npos; }));
}

}  // namespace

TEST_CASE("a small drawing has no copies, whatever its edges span") {
  // 31 terms draw 60 edges and the output's: within kPlainDrawingEdges (64), so x -> n30
  // spans 30 ranks and stays.
  Tape tape;
  const Value f = sum_of_x(tape, 31);
  const GraphModel model = graph_model(tape, f.id());
  CHECK(model.edges.size() == 61);
  CHECK(count_copies(model) == 0);
  CHECK(model.edges[59].tail == "n0");  // into n30
}

TEST_CASE("past 64 edges, an edge spanning more than 2 ranks starts at a copy of its source") {
  // 70 terms once took over 60 s to lay out: x had an edge into each of 69 ranks.
  Tape tape;
  const Value f = sum_of_x(tape, 70);
  tape.backward(f);
  const GraphModel model = graph_model(tape, f.id(), {.ids = true});
  // n1 = x + x and n2 = n1 + x are next to x; n3 ... n69 get copies n0_copy1 ... n0_copy67.
  CHECK(count_copies(model) == 67);
  CHECK(model.edges[0].tail == "n0");
  CHECK(model.edges[1].tail == "n0");
  CHECK(model.edges[3].tail == "n0");                           // into n2
  CHECK(model.edges[5].tail == "n0_copy1");                     // into n3
  CHECK(attribute(model.edges[5].attributes, "id") == "e3_1");  // the edge keeps its id
  const GraphNode& copy = node(model, "n0_copy67");
  CHECK(attribute(copy.attributes, "label") == "x");
  CHECK(attribute(copy.attributes, "shape") == "box");
  CHECK(attribute(copy.attributes, "style") == "dashed");
  CHECK(attribute(copy.attributes, "id") == "(none)");  // ids stay unique
  CHECK(attribute(node(model, "n0").attributes, "id") == "n0");
  // Every op's edges now come from at most 2 ranks back: n_k from n_{k-1} and a copy.
  for (const GraphEdge& e : model.edges)
    if (e.tail.starts_with("n") && e.tail.find("_copy") == std::string::npos && e.tail != "n0" &&
        e.head != "out")
      CHECK(std::stoi(e.head.substr(1)) - std::stoi(e.tail.substr(1)) == 1);

  // The values style gets copies as well (op nodes double its ranks).
  CHECK(count_copies(graph_model(tape, f.id(), {GraphStyle::values})) > 60);
}

TEST_CASE("the drawing budget: 1000 nodes and 1000 edges, refused before any text is built") {
  Tape within;
  const Value f = sum_of_x(within, 501);  // 501 nodes, 1000 edges
  CHECK_NOTHROW(check_drawing_budget(within, f.id()));
  CHECK(graph_model(within, f.id()).edges.size() == 1001);  // and the output's

  Tape past;
  const Value g = sum_of_x(past, 502);  // 1002 edges
  CHECK_THROWS_WITH_AS(check_drawing_budget(past, g.id()),
                       "graph: 502 nodes and 1002 edges are past the drawing budget of 1000 "
                       "nodes and 1000 edges (Graphviz would take too long to lay them out, and "
                       "nobody could read them): draw a smaller program",
                       Error);
  CHECK_THROWS_AS(graph_model(past, g.id()), Error);
  CHECK_THROWS_AS(graph_model(past, g.id(), {GraphStyle::values}), Error);

  // Distinct inputs count as nodes: 601 summed make 1201 nodes.
  Tape wide;
  Value sum = wide.input(0.0, "x0");
  for (int i = 1; i <= 600; ++i) sum = sum + wide.input(1.0, "x");
  CHECK_THROWS_WITH_AS(check_drawing_budget(wide, sum.id()),
                       doctest::Contains("1201 nodes and 1200 edges are past"), Error);
  // Only what the output depends on counts.
  CHECK_NOTHROW(check_drawing_budget(wide, 10));

  TensorTape tensors;
  Tensor t = tensors.input({1}, {1.0}, "t");
  Tensor total = t;
  for (int i = 1; i < 502; ++i) total = total + t;
  CHECK_THROWS_AS(check_drawing_budget(tensors, total.id()), Error);
  CHECK_THROWS_AS(graph_model(tensors, total.id()), Error);
}
