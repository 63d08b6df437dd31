// The CLI's program language: every construct recorded and differentiated as the ag API
// would do it by hand, every error with its caret, and inputs too deep or large for recursion.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <tapegrad/autograd.hpp>
#include <vector>

#include "program.hpp"

using namespace ag;
using tapegrad::Program;
using tapegrad::ProgramError;

namespace {

// A program recorded and run backward on its own tape.
struct Run {
  std::unique_ptr<Tape> tape = std::make_unique<Tape>();
  std::vector<std::string> inputs;
  Program::Recorded r;

  double value() const { return r.output.value(); }
  std::string label() const { return tape->label(r.output.id()); }
  double grad(std::string_view name) const {
    for (std::size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i] == name) return r.inputs[i].grad();
    FAIL("no input ", std::string(name));
    return 0;
  }
  // The node a statement label names.
  NodeId node(std::string_view label) const {
    for (NodeId id = 0; id < tape->size(); ++id)
      if (tape->name(id) == label) return id;
    FAIL("no node named ", std::string(label));
    return 0;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (NodeId id = 0; id < tape->size(); ++id)
      if (!tape->name(id).empty()) out.emplace_back(tape->name(id));
    return out;
  }
};

Run run(std::string_view source, const std::vector<std::string>& args = {}) {
  Run result;
  const Program program(source);
  result.inputs = program.inputs();
  result.r = program.record(*result.tape, program.input_values(args));
  result.tape->backward(result.r.output);
  return result;
}

double value_of(std::string_view source, const std::vector<std::string>& args = {}) {
  return run(source, args).value();
}

// The error a program raises, or a failed check when it parses.
ProgramError parse_error(std::string_view source) {
  try {
    Program program(source);
  } catch (const ProgramError& e) {
    return e;
  }
  FAIL("no error for: ", std::string(source));
  throw;
}

std::string input_error(std::string_view source, const std::vector<std::string>& args) {
  const Program program(source);
  try {
    (void)program.input_values(args);
  } catch (const ag::Error& e) {
    return e.what();
  }
  FAIL("no error for the arguments of: ", std::string(source));
  return {};
}

}  // namespace

TEST_CASE("CS231n: f = (x + y) z gives the lecture's numbers, as the ag API does") {
  const Run p = run("q = x + y; f = q * z", {"x=-2", "y=5", "z=-4"});
  CHECK(p.value() == -12);
  CHECK(p.grad("x") == -4);  // df/dx = df/dq * dq/dx = z * 1
  CHECK(p.grad("y") == -4);
  CHECK(p.grad("z") == 3);  // df/dz = q
  CHECK(p.label() == "f");
  CHECK(p.inputs == std::vector<std::string>{"x", "y", "z"});
  CHECK(p.names() == std::vector<std::string>{"x", "y", "z", "q", "f"});
  CHECK(p.tape->size() == 5);  // three inputs, two ops: nothing else is recorded
  CHECK(p.tape->grad(p.node("q")) == -4);
}

TEST_CASE("inputs come in order of first appearance, statement names are not inputs") {
  const Run p = run("a = z * x\nb = a + y + x\nb", {"x=1", "y=2", "z=3"});
  CHECK(p.inputs == std::vector<std::string>{"z", "x", "y"});
  CHECK(p.value() == 6);
  CHECK(p.grad("x") == 4);  // z + 1
}

TEST_CASE("precedence and associativity follow Python") {
  CHECK(value_of("2 + 3 * 4") == 14);
  CHECK(value_of("(2 + 3) * 4") == 20);
  CHECK(value_of("10 - 4 - 3") == 3);  // left-associative
  CHECK(value_of("24 / 4 / 2") == 3);
  CHECK(value_of("8 / 2 * 4") == 16);
  CHECK(value_of("2 ^ 3 ^ 2") == 512);  // right-associative: 2^(3^2)
  CHECK(value_of("2 ** 3 ** 2") == 512);
  CHECK(value_of("(2 ^ 3) ^ 2") == 64);
  CHECK(value_of("-x^2", {"x=3"}) == -9);  // -(x^2): ^ binds tighter than unary minus
  CHECK(value_of("-x**2", {"x=3"}) == -9);
  CHECK(value_of("(-x)^2", {"x=3"}) == 9);
  CHECK(value_of("2 ^ -1") == 0.5);               // a unary minus in the exponent
  CHECK(value_of("2 ^ -x ^ 2", {"x=1"}) == 0.5);  // 2^(-(x^2))
  CHECK(value_of("-x * y", {"x=3", "y=2"}) == -6);
  CHECK(value_of("x - -y", {"x=3", "y=2"}) == 5);
  CHECK(value_of("--x", {"x=3"}) == 3);
  CHECK(value_of("+x + +2", {"x=3"}) == 5);
  CHECK(value_of("1 - 2 * 3 ^ 2 / 6 + 4") == 2);
  CHECK(value_of("-2^2") == -4);
  CHECK(value_of("2 * -3") == -6);
}

TEST_CASE("numbers: integers, decimals, a leading dot, exponents, negative literals") {
  CHECK(value_of("2") == 2);
  CHECK(value_of("-0.5") == -0.5);
  CHECK(value_of("1e-3") == 0.001);
  CHECK(value_of(".5") == 0.5);
  CHECK(value_of("1.") == 1);
  CHECK(value_of("1E+2") == 100);
  CHECK(value_of("2.5e1") == 25);
  CHECK(value_of("0.1 + 0.2") == 0.1 + 0.2);
  // -0.5 is one constant, not neg(0.5): the graph shows the number.
  const Run p = run("f = x * -0.5", {"x=4"});
  CHECK(p.tape->size() == 3);
  CHECK(p.tape->value(1) == -0.5);
  CHECK(p.grad("x") == -0.5);
}

TEST_CASE("statements: semicolons, newlines, comments, blank lines, parentheses across lines") {
  const char* source =
      "# the CS231n circuit\n"
      "\n"
      "q = x + y   # the sum gate\n"
      ";;\n"
      "f = (q\n"
      "     * z)  # a newline inside parentheses continues the statement\n"
      "\r\n";
  const Run p = run(source, {"x=-2", "y=5", "z=-4"});
  CHECK(p.value() == -12);
  CHECK(p.grad("z") == 3);
  CHECK(value_of("a = x; b = a * 2;", {"x=1"}) == 2);  // a trailing ';'
}

TEST_CASE("rebinding a name: later versions are x', x'', and read the latest") {
  SUBCASE("the input is the first version") {
    const Run p = run("x = x * 2\nx = x + 1\nf = x * x", {"x=3"});
    CHECK(p.names() == std::vector<std::string>{"x", "x'", "x''", "f"});
    CHECK(p.value() == 49);           // (2*3 + 1)^2
    CHECK(p.grad("x") == 2 * 7 * 2);  // df/dx = 2 (2x + 1) * 2
    CHECK(p.inputs == std::vector<std::string>{"x"});
  }
  SUBCASE("from the fourth version on, a number: labels stay short however many there are") {
    std::string source;
    constexpr int n = 100000;  // about 1 MB of `x = x * 1 + 1`
    for (int i = 0; i < n; ++i) source += "x = x * 1 + 1\n";
    const Run p = run(source, {"x=0"});
    CHECK(p.value() == n);
    CHECK(p.grad("x") == 1);
    CHECK(p.label() == fmt::format("x'{}", n));
    const std::vector<std::string> names = p.names();
    CHECK(std::vector<std::string>(names.begin(), names.begin() + 6) ==
          std::vector<std::string>{"x", "x'", "x''", "x'''", "x'4", "x'5"});
  }
  SUBCASE("a statement is the first version") {
    const Run p = run("a = x + 1; a = a * a; f = a", {"x=2"});
    CHECK(p.names() == std::vector<std::string>{"x", "a", "a'"});
    CHECK(p.label() == "a'");  // `f = a` is another name for a' (an alias)
    CHECK(p.value() == 9);
    CHECK(p.grad("x") == 6);
  }
}

TEST_CASE("the last statement is the output; a bare expression is named out") {
  const Run p = run("q = x * y\nq + 1", {"x=2", "y=3"});
  CHECK(p.label() == "out");
  CHECK(p.value() == 7);
  CHECK(run("out * 2", {"out=2"}).label() == "out'");  // an input named out is version one
  CHECK(run("q = x * y; q", {"x=2", "y=3"}).label() == "q");
  CHECK(run("x", {"x=2"}).grad("x") == 1);  // the output may be the input itself
  // y = x adds no node; the graph keeps calling it x.
  const Run alias = run("y = x; f = y * y", {"x=3"});
  CHECK(alias.names() == std::vector<std::string>{"x", "f"});
  CHECK(alias.grad("x") == 6);
}

TEST_CASE("a statement bound to a number is a named constant: it gets no gradient") {
  const Run p = run("c = 2\nf = c * x", {"x=5"});
  CHECK(p.tape->op(p.node("c")) == Op::constant);
  CHECK(p.tape->value(p.node("c")) == 2);
  CHECK(p.grad("x") == 2);
  CHECK(value_of("f = 3") == 3);
}

TEST_CASE("every function records its op and matches the ag API") {
  struct Case {
    const char* source;
    Value (*by_hand)(Value x, Value y);
  };
  const Case cases[] = {
      {"exp(x)", [](Value x, Value) { return exp(x); }},
      {"log(x)", [](Value x, Value) { return log(x); }},
      {"sqrt(x)", [](Value x, Value) { return sqrt(x); }},
      {"abs(x)", [](Value x, Value) { return abs(x); }},
      {"sigmoid(x)", [](Value x, Value) { return sigmoid(x); }},
      {"tanh(x)", [](Value x, Value) { return tanh(x); }},
      {"relu(x)", [](Value x, Value) { return relu(x); }},
      {"softplus(x)", [](Value x, Value) { return softplus(x); }},
      {"leaky_relu(x)", [](Value x, Value) { return leaky_relu(x); }},
      {"leaky_relu(x, 0.2)", [](Value x, Value) { return leaky_relu(x, 0.2); }},
      {"leaky_relu(x, -0.2)", [](Value x, Value) { return leaky_relu(x, -0.2); }},
      {"elu(x)", [](Value x, Value) { return elu(x); }},
      {"elu(x, 0.5)", [](Value x, Value) { return elu(x, 0.5); }},
      {"prelu(x, y)", [](Value x, Value y) { return prelu(x, y); }},
      {"max(x, y)", [](Value x, Value y) { return max(x, y); }},
      {"gelu(x)", [](Value x, Value) { return gelu(x); }},
      {"gelu_tanh(x)", [](Value x, Value) { return gelu_tanh(x); }},
      {"silu(x)", [](Value x, Value) { return silu(x); }},
      {"min(x, y)", [](Value x, Value y) { return min(x, y); }},
      {"clamp_min(x, 0.5)", [](Value x, Value) { return clamp_min(x, 0.5); }},
      {"clamp_max(x, -1)", [](Value x, Value) { return clamp_max(x, -1.0); }},
      {"clamp(x, -1, 1)", [](Value x, Value) { return clamp(x, -1.0, 1.0); }},
      {"clamp(x, 0.5, -0.5)", [](Value x, Value) { return clamp(x, 0.5, -0.5); }},
      {"clamp(x * y, -(1), 2)", [](Value x, Value y) { return clamp(x * y, -1.0, 2.0); }},
      {"pow(x, y)", [](Value x, Value y) { return pow(x, y); }},
      {"pow(x, 3)", [](Value x, Value) { return pow(x, 3.0); }},
      {"x ^ y", [](Value x, Value y) { return pow(x, y); }},
      {"x ** 3", [](Value x, Value) { return pow(x, 3.0); }},
      {"x / y", [](Value x, Value y) { return x / y; }},
      {"x - y", [](Value x, Value y) { return x - y; }},
      {"2 * x", [](Value x, Value) { return 2.0 * x; }},
      {"-x", [](Value x, Value) { return -x; }},
  };
  for (const Case& c : cases) {
    for (const auto& args :
         {std::pair{"x=0.7", "y=0.3"}, std::pair{"x=-1.5", "y=2.5"}, std::pair{"x=2", "y=-0.25"}}) {
      // Not a structured binding: CAPTURE takes it into a lambda, which clang 14 cannot do.
      const char *xs = args.first, *ys = args.second;
      const std::string source = fmt::format("f = {} + y * 0", c.source);
      CAPTURE(source);
      CAPTURE(xs);
      const Run p = run(source, {xs, ys});
      Tape tape;
      Value x = tape.input(std::stod(std::string(xs).substr(2)), "x");
      Value y = tape.input(std::stod(std::string(ys).substr(2)), "y");
      // One statement at a time: the operands of + are evaluated in an unspecified order.
      Value g = c.by_hand(x, y);
      Value zero = y * 0.0;
      Value f = g + zero;
      tape.backward(f);
      // NaN where both are NaN (log of a negative number): the same function either way.
      auto same = [](double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; };
      CHECK(same(p.value(), f.value()));
      CHECK(same(p.grad("x"), x.grad()));
      CHECK(same(p.grad("y"), y.grad()));
      CHECK(p.tape->size() == tape.size());  // the same nodes, not merely the same numbers
      for (NodeId id = 0; id < tape.size(); ++id) CHECK(p.tape->op(id) == tape.op(id));
    }
  }
}

TEST_CASE(
    "a number exponent records pow(Value, double); an expression exponent pow(Value, Value)") {
  auto op_of = [](const char* source, std::vector<std::string> args = {"x=2"}) {
    const Run p = run(source, args);
    return p.tape->op(p.node("f"));
  };
  const Run p = run("f = x ^ 2", {"x=3"});
  CHECK(p.tape->op(p.node("f")) == Op::pow_scalar);
  CHECK(p.tape->param(p.node("f")) == 2.0);
  CHECK(p.tape->size() == 2);  // no constant node for the exponent
  CHECK(p.grad("x") == 6);
  CHECK(op_of("f = x ^ -1") == Op::pow_scalar);
  CHECK(op_of("f = x ** (2)") == Op::pow_scalar);
  CHECK(op_of("f = pow(x, 2)") == Op::pow_scalar);
  CHECK(op_of("f = x ^ y", {"x=2", "y=3"}) == Op::pow);
  CHECK(op_of("f = x ^ (y + 1)", {"x=2", "y=3"}) == Op::pow);
  const Run q = run("f = pow(2, x)", {"x=3"});
  CHECK(q.tape->op(q.node("f")) == Op::pow);  // a number base becomes a constant node
  CHECK(q.grad("x") == doctest::Approx(8 * std::log(2.0)));
  const Run r = run("f = x ^ y", {"x=2", "y=3"});
  CHECK(r.grad("x") == 12);                                  // y x^(y-1)
  CHECK(r.grad("y") == doctest::Approx(8 * std::log(2.0)));  // x^y log x
  const Run s = run("f = x ^ -1", {"x=4"});
  CHECK(s.value() == 0.25);
  CHECK(s.tape->param(s.node("f")) == -1);
}

TEST_CASE("leaky_relu and elu take a number alpha; prelu learns its slope") {
  const Run lr = run("f = leaky_relu(x, 0.2)", {"x=-3"});
  CHECK(lr.value() == doctest::Approx(-0.6));
  CHECK(lr.grad("x") == doctest::Approx(0.2));
  CHECK(lr.tape->param(lr.node("f")) == 0.2);
  CHECK(run("f = leaky_relu(x)", {"x=-3"}).grad("x") == doctest::Approx(0.01));
  CHECK(run("f = elu(x)", {"x=0"}).grad("x") == 1);  // elu'(0) = alpha (kink policy)
  const Run pr = run("f = prelu(x, a)", {"x=-3", "a=0.25"});
  CHECK(pr.value() == -0.75);
  CHECK(pr.grad("x") == 0.25);
  CHECK(pr.grad("a") == -3);  // d/da (a x) = x
  const Run mx = run("f = max(x, y)", {"x=2", "y=2"});
  CHECK(mx.grad("x") == 0.5);  // a tie splits the gradient
  CHECK(mx.grad("y") == 0.5);
}

TEST_CASE("CS231n's sigmoid neuron as a program") {
  const Run p =
      run("f = 1 / (1 + exp(-(w0*x0 + w1*x1 + w2)))", {"w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3"});
  CHECK(p.value() == doctest::Approx(0.7311).epsilon(1e-3));
  CHECK(p.grad("w0") == doctest::Approx(-0.1966).epsilon(1e-3));
  CHECK(p.grad("x0") == doctest::Approx(0.3932).epsilon(1e-3));
  CHECK(p.grad("w2") == doctest::Approx(0.1966).epsilon(1e-3));
}

TEST_CASE("a syntax error shows the line, a caret under the column, and what was expected") {
  const ProgramError e = parse_error("q = x * ");
  CHECK(e.line() == 1);
  CHECK(e.column() == 9);
  CHECK(e.message() == "expected an expression after '*'");
  CHECK(std::string(e.what()) ==
        "line 1, column 9: expected an expression after '*'\n"
        "  q = x * \n"
        "          ^");
  const ProgramError second = parse_error("q = x + y\nf = q * \nz");
  CHECK(second.line() == 2);
  CHECK(second.column() == 9);
  CHECK(std::string(second.what()).ends_with("\n  f = q * \n          ^"));
  // A tab before the column stays a tab under it; columns count characters, not bytes.
  const ProgramError tab = parse_error("\tf = x +");
  CHECK(tab.column() == 9);
  CHECK(std::string(tab.what()).ends_with("\n  \tf = x +\n  \t       ^"));
  const ProgramError utf8 = parse_error("f = x # σ\ng = f σ");
  CHECK(utf8.line() == 2);
  CHECK(utf8.column() == 7);
  CHECK(utf8.message() == "unexpected character 'σ'");
}

TEST_CASE("every syntax and naming error, with its position") {
  struct Case {
    const char* source;
    int line;
    int column;
    const char* message;
  };
  const Case cases[] = {
      {"f = ", 1, 5, "expected an expression after '='"},
      {"f = x +\n y", 1, 8, "expected an expression after '+'"},
      {"f = x * ; g = f", 1, 9, "expected an expression after '*'"},
      {"f = (x + )", 1, 10, "expected an expression after '+', found ')'"},
      {"f = ()", 1, 6, "expected an expression after '(', found ')'"},
      {")", 1, 1, "expected an expression, found ')'"},
      {"f = x y", 1, 7, "expected an operator (+ - * / ^) or the end of the statement before 'y'"},
      {"f = 2x", 1, 6, "expected an operator (+ - * / ^) or the end of the statement before 'x'"},
      {"f = (x + 1", 1, 5, "this '(' is never closed: expected ')'"},
      {"f = exp(x", 1, 5, "the call of exp is never closed: expected ')'"},
      {"f = x + 1)", 1, 10, "unmatched ')'"},
      {"f = x, y", 1, 6, "unexpected ',' outside the arguments of a function call"},
      {"1 = x", 1, 3,
       "unexpected '=': a statement is `name = expression`, with one name before '='"},
      {"f = x = 2", 1, 7,
       "unexpected '=': a statement is `name = expression`, with one name before '='"},
      {"f = x $ 2", 1, 7, "unexpected character '$'"},
      {"f = 2e", 1, 5, "malformed number '2e': an exponent needs digits, as in 1e-3"},
      {"f = 1e999", 1, 5, "the number '1e999' is out of range"},
      {"f = 1e-400", 1, 5,
       "the number '1e-400' underflows: it is nearer 0 than the smallest double (about "
       "4.9e-324); write 0 if 0 is meant"},
      {"f = exp", 1, 5, "'exp' is a function: call it, as in exp(x)"},
      {"exp = x", 1, 1, "'exp' is a function; it cannot be assigned"},
      {"f = exp(x, 2)", 1, 5, "exp takes 1 argument, as in exp(x); got 2"},
      {"f = relu()", 1, 5, "relu takes 1 argument, as in relu(x); got 0"},
      {"f = max(x)", 1, 5, "max takes 2 arguments, as in max(a, b); got 1"},
      {"f = prelu(x)", 1, 5, "prelu takes 2 arguments, as in prelu(x, a); got 1"},
      {"f = leaky_relu(x, 1, 2)", 1, 5,
       "leaky_relu takes 1 or 2 arguments, as in leaky_relu(x[, alpha]); got 3"},
      {"f = leaky_relu(x, a)", 1, 19,
       "leaky_relu's alpha must be a number, as in leaky_relu(x, 0.1); for a slope that is "
       "learned, use prelu(x, a)"},
      {"f = elu(x, (a + 1))", 1, 12,
       "elu's alpha must be a number, as in elu(x, 0.1); for a slope that is learned, use "
       "prelu(x, a)"},
      {"f = clamp_min(x)", 1, 5, "clamp_min takes 2 arguments, as in clamp_min(x, lo); got 1"},
      {"f = clamp_max(x, y)", 1, 18, "clamp_max's hi must be a number, as in clamp_max(x, 0.1)"},
      {"f = clamp(x, 0)", 1, 5, "clamp takes 3 arguments, as in clamp(x, lo, hi); got 2"},
      {"f = clamp(x, y, 1)", 1, 14, "clamp's bounds must be numbers, as in clamp(x, -1, 1)"},
      {"f = clamp(x, 0, y + 1)", 1, 17, "clamp's bounds must be numbers, as in clamp(x, -1, 1)"},
      {"q = x * 2\nf = x", 1, 1, "q is assigned but never used"},
      {"a = x\na = 2 * x\nf = a", 1, 1, "a is assigned but never used"},
      {"x * 2\nf = x", 1, 1,
       "this expression's value is never used: bind it to a name (q = ...) or make it the last "
       "statement"},
      {"", 1, 1, "the program is empty: write at least one statement, as in f = x * y"},
      {"# only a comment\n;\n", 1, 1,
       "the program is empty: write at least one statement, as in f = x * y"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.source);
    const ProgramError e = parse_error(c.source);
    CHECK(e.message() == c.message);
    CHECK(e.line() == c.line);
    CHECK(e.column() == c.column);
    CHECK(std::string(e.what()).starts_with(
        fmt::format("line {}, column {}: {}\n", c.line, c.column, c.message)));
  }
  const ProgramError unknown = parse_error("f = sin(x)");
  CHECK(unknown.column() == 5);
  CHECK(unknown.message() ==
        "unknown function 'sin'; the functions are exp(x), log(x), sqrt(x), abs(x), "
        "sigmoid(x), tanh(x), relu(x), softplus(x), leaky_relu(x[, alpha]), elu(x[, alpha]), "
        "prelu(x, a), max(a, b), pow(a, b), gelu(x), gelu_tanh(x), silu(x), min(a, b), "
        "clamp_min(x, lo), clamp_max(x, hi), clamp(x, lo, hi)");
  CHECK(tapegrad::functions().size() == 20);
}

TEST_CASE("NAME=VALUE arguments: each input once, as a number, and nothing else") {
  const char* cs231n = "q = x + y; f = q * z";
  CHECK(input_error(cs231n, {"x=1", "y=2"}) == "no value for the input z: pass z=VALUE");
  CHECK(input_error(cs231n, {"y=2"}) == "no value for the inputs x, z: pass x=VALUE z=VALUE");
  CHECK(input_error(cs231n, {"x=1", "y=2", "z=3", "w=4"}) ==
        "w=4: the program has no input named w; its inputs are x, y, z");
  CHECK(input_error(cs231n, {"q=1", "x=1", "y=2", "z=3"}) ==
        "q=1: q is computed by the program, not an input; its inputs are x, y, z");
  CHECK(input_error("f = 2", {"x=1"}) == "x=1: the program has no input named x; it has no inputs");
  CHECK(input_error(cs231n, {"x=1", "y=abc", "z=3"}) == "y=abc: 'abc' is not a number");
  CHECK(input_error(cs231n, {"x=1", "y=", "z=3"}) == "y=: '' is not a number");
  CHECK(input_error(cs231n, {"x=1", "y=2 ", "z=3"}) == "y=2 : '2 ' is not a number");
  CHECK(input_error(cs231n, {"x=1", "x=2"}) == "x is given twice: x=1 and x=2");
  // Underflow is not "not a number", nor is it silently 0; overflow is out of range.
  CHECK(input_error(cs231n, {"x=1e-999", "y=2", "z=3"}) ==
        "x=1e-999: '1e-999' underflows: it is nearer 0 than the smallest double (about "
        "4.9e-324); write 0 if 0 is meant");
  CHECK(input_error(cs231n, {"x=-1e999", "y=2", "z=3"}) == "x=-1e999: '-1e999' is out of range");
  CHECK(Program(cs231n).input_values(std::vector<std::string>{"x=4.9e-324", "y=0", "z=0"})[0] ==
        std::numeric_limits<double>::denorm_min());  // a subnormal is a number
  CHECK(input_error(cs231n, {"x"}) == "'x' is not NAME=VALUE (an input and its value, as in x=-2)");
  CHECK(input_error(cs231n, {"=3"}) ==
        "'=3' is not NAME=VALUE (an input and its value, as in x=-2)");
  const Program p(cs231n);
  CHECK(p.input_values(std::vector<std::string>{"z=-4", "x=-2e0", "y=.5"}) ==
        std::vector<double>{-2, 0.5, -4});  // in inputs() order, whatever the order given
}

TEST_CASE("deep nesting is parsed without recursion, and a deep error is reported cleanly") {
  constexpr int n = 100000;
  const std::string parens = "f = " + std::string(n, '(') + "x" + std::string(n, ')') + " * 2";
  const Run p = run(parens, {"x=3"});
  CHECK(p.value() == 6);
  CHECK(p.grad("x") == 2);

  std::string negs = "f = ";
  for (int i = 0; i < n; ++i) negs += "-(";
  negs += "x" + std::string(n, ')');
  CHECK(run(negs, {"x=3"}).value() == 3);  // an even number of minus signs

  std::string calls = "f = ";
  for (int i = 0; i < n; ++i) calls += "relu(";
  calls += "x" + std::string(n, ')');
  const Run c = run(calls, {"x=3"});
  CHECK(c.value() == 3);
  CHECK(c.grad("x") == 1);
  CHECK(c.tape->size() == n + 1);

  std::string powers = "f = ";
  for (int i = 0; i < n; ++i) powers += "x ^ ";
  powers += "1";
  const Run pw = run(powers, {"x=1"});
  CHECK(pw.value() == 1);
  CHECK(pw.tape->op(pw.node("f")) == Op::pow);  // the outermost ^: right-associative
  CHECK(pw.tape->size() == n + 1);  // x and n powers: the innermost x ^ 1 has a number exponent

  const ProgramError unclosed = parse_error("f = " + std::string(n, '(') + "x");
  CHECK(unclosed.column() == 4 + n);  // the innermost '(' that is still open
  CHECK(unclosed.message() == "this '(' is never closed: expected ')'");
  // A long line is shown as a window around the column, not whole.
  CHECK(std::string(unclosed.what()).size() < 400);
}

TEST_CASE("the limits on a program's size and nesting: generous, and named where passed") {
  // Note [Program limits]: exactly at the nesting limit is fine, one more is an error at the
  // '(' or call that passes it.
  const std::size_t n = tapegrad::kMaxNesting;
  CHECK(run("f = " + std::string(n, '(') + "x" + std::string(n, ')'), {"x=2"}).value() == 2);
  const ProgramError deep = parse_error("f = " + std::string(n + 1, '(') + "x");
  CHECK(deep.column() == 4 + int(n) + 1);
  CHECK(deep.message() ==
        "too deeply nested: more than 1000000 parentheses and calls are open here, the most a "
        "program may nest");
  std::string calls = "f = ";
  for (std::size_t i = 0; i < n; ++i) calls += i % 2 ? "exp(" : "x + (";
  const ProgramError deep_call = parse_error(calls + "exp(x");
  CHECK(deep_call.column() == int(calls.size()) + 1);  // the call's name
  CHECK(deep_call.message().starts_with("too deeply nested"));

  // A program over the size limit is refused before it is read, at the line and column where
  // it passes the limit.
  std::string big = "f = x\n";
  while (big.size() <= tapegrad::kMaxProgramBytes)
    big += "# a comment line of the generated program\n";
  const ProgramError e = parse_error(big);
  CHECK(e.message() == fmt::format("the program is {} bytes, more than the 16777216 (16 MiB) a "
                                   "program may have: it passes the limit here",
                                   big.size()));
  CHECK(e.line() == 1 + int(std::count(big.begin(), big.begin() + (16 << 20), '\n')));
  CHECK(std::string(e.what()).size() < 400);
}

TEST_CASE("a 1 MB program of many statements") {
  std::string source = "v0 = x\n";
  double expected = 0.5;
  double slope = 1;
  int lines = 0;
  for (int i = 1; source.size() < (1 << 20); ++i, ++lines) {
    source += fmt::format("v{} = v{} * 0.99 + x / 4 # line {}\n", i, i - 1, i);
    expected = expected * 0.99 + 0.5 / 4;
    slope = slope * 0.99 + 0.25;
  }
  const Run p = run(source, {"x=0.5"});
  CHECK(p.value() == doctest::Approx(expected));
  CHECK(p.grad("x") == doctest::Approx(slope));
  CHECK(p.label() == fmt::format("v{}", lines));

  const ProgramError e = parse_error(source + "g = v0 +\n");
  CHECK(e.line() == lines + 2);
  CHECK(e.column() == 9);
}

TEST_CASE("control characters in a program are shown escaped, and the caret still points") {
  // A NUL used to end what() inside the quotes: "unexpected character '".
  const ProgramError nul = parse_error(std::string_view("f = x \0 2", 9));
  CHECK(nul.message() == std::string("unexpected character '\0'", 24));
  CHECK(std::string(nul.what()) ==
        "line 1, column 7: unexpected character '\\x00'\n"
        "  f = x \\x00 2\n"
        "        ^");
  // An escape sequence would reach the terminal; the caret counts its four columns.
  const ProgramError esc = parse_error("f = \x1b[2J + $");
  CHECK(std::string(esc.what()) ==
        "line 1, column 5: unexpected character '\\x1b'\n"
        "  f = \\x1b[2J + $\n"
        "      ^");
  const ProgramError after = parse_error("g = 1 # \x07\nf = \x7f x $");
  CHECK(std::string(after.what())
            .ends_with("  f = \\x7f x $\n"
                       "      ^"));
}

TEST_CASE("step_transcript: the lines of `tapegrad step`, and a call before and after each step") {
  const tapegrad::Program program("q = x + y; f = q * z");
  ag::Tape tape;
  const auto recorded = program.record(tape, std::vector<double>{-2, 5, -4});
  std::vector<std::string> calls;
  const std::vector<std::string> lines = tapegrad::step_transcript(
      tape, recorded,
      [&](const ag::Step* step) { calls.push_back(step ? tape.label(step->node) : "forward"); });
  CHECK(lines == std::vector<std::string>{
                     "forward",
                     "  x = -2",
                     "  y = 5",
                     "  z = -4",
                     "  q = x + y = 3",
                     "  f = q * z = -12",
                     "backward",
                     "  step 1: f = q * z",
                     "    df/df = 1",
                     "    df/dq = df/df · ∂f/∂q = 1 · -4 = -4",
                     "    df/dz = df/df · ∂f/∂z = 1 · 3 = 3",
                     "  step 2: q = x + y",
                     "    df/dx = df/dq · ∂q/∂x = -4 · 1 = -4",
                     "    df/dy = df/dq · ∂q/∂y = -4 · 1 = -4",
                     "gradients",
                     "  df/dx = -4",
                     "  df/dy = -4",
                     "  df/dz = 3",
                 });
  CHECK(calls == std::vector<std::string>{"forward", "f", "q"});
  CHECK(recorded.inputs[2].grad() == 3);  // the pass ran: the tape holds the gradients

  ag::Tape constant_tape;
  const tapegrad::Program constant("3");
  const auto three = constant.record(constant_tape, {});
  CHECK(tapegrad::step_transcript(constant_tape, three) ==
        std::vector<std::string>{"forward", "  out = 3", "backward",
                                 "  (no steps: the output depends on no input)", "gradients"});
}
