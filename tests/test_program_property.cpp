// Property tests of the scalar engine through the CLI's program language: random programs
// differentiated by backward and by central differences. Note [Property cases] (property.hpp).

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <tapegrad/autograd.hpp>
#include <tapegrad/random.hpp>

#include "program.hpp"
#include "property.hpp"

using namespace ag;
using property::PointCheck;
using property::Skip;
using tapegrad::Program;

namespace {

// ---- a random program, as a tree and as text ----------------------------------------------

// One expression of a generated program. Printing it gives the text the parser reads; the
// tree is also evaluated directly on a tape (evaluate() below), to compare with the parser.
struct Expr {
  enum class Kind : std::uint8_t { number, name, neg, plus, binary, call };
  Kind kind;
  std::string text;  // number: spelling; name: the name; call: the function; binary: + - * / ^ **
  double number = 0;
  std::vector<Expr> args;

  char op() const { return text == "**" ? '^' : text[0]; }
};

struct Statement {
  std::string name;  // empty for a last statement that is a bare expression
  Expr expr;
};

struct Generated {
  std::vector<Statement> statements;
  std::string text;
  std::map<std::string, double> inputs;  // by name; the values of the current point
};

Expr number(std::string spelling, double value) {
  return {Expr::Kind::number, std::move(spelling), value, {}};
}
Expr call(std::string f, std::vector<Expr> args) {
  return {Expr::Kind::call, std::move(f), 0, std::move(args)};
}
Expr binary(std::string op, Expr a, Expr b) {
  std::vector<Expr> args;
  args.push_back(std::move(a));
  args.push_back(std::move(b));
  return {Expr::Kind::binary, std::move(op), 0, std::move(args)};
}
Expr unary(Expr::Kind kind, Expr a) {
  std::vector<Expr> args;
  args.push_back(std::move(a));
  return {kind, kind == Expr::Kind::neg ? "-" : "+", 0, std::move(args)};
}

// Python's precedence, as Note [The program language] has it: a negative number is a unary
// minus; names, numbers and calls bind tightest.
int precedence(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::number: return e.number < 0 ? 3 : 5;
    case Expr::Kind::name:
    case Expr::Kind::call: return 5;
    case Expr::Kind::neg:
    case Expr::Kind::plus: return 3;
    case Expr::Kind::binary:
      switch (e.op()) {
        case '+':
        case '-': return 1;
        case '*':
        case '/': return 2;
        default: return 4;
      }
  }
  return 5;
}

// The text of e with the parentheses its tree needs, and now and then one it does not.
void print(const Expr& e, std::string& out, Rng& rng) {
  auto operand = [&](const Expr& c, bool needed) {
    const bool paren = needed || rng.uniform() < 0.05;
    if (paren) out += '(';
    print(c, out, rng);
    if (paren) out += ')';
  };
  switch (e.kind) {
    case Expr::Kind::number:
    case Expr::Kind::name: out += e.text; return;
    case Expr::Kind::neg:
    case Expr::Kind::plus:
      out += e.text;
      operand(e.args[0], precedence(e.args[0]) < 3);
      return;
    case Expr::Kind::call:
      out += e.text + '(';
      for (std::size_t i = 0; i < e.args.size(); ++i) {
        if (i) out += ", ";
        operand(e.args[i], false);
      }
      out += ')';
      return;
    case Expr::Kind::binary: {
      const int p = precedence(e);
      if (e.op() == '^') {
        // Right-associative, and tighter than unary minus on its left only: (-x)^2, x^-2.
        operand(e.args[0], precedence(e.args[0]) < 5);
        out += ' ' + e.text + ' ';
        operand(e.args[1], precedence(e.args[1]) < 3);
      } else {
        // Left-associative; a right operand of the same precedence keeps its parentheses, so
        // a + (b + c) is recorded as written.
        operand(e.args[0], precedence(e.args[0]) < p);
        out += ' ' + e.text + ' ';
        operand(e.args[1], precedence(e.args[1]) <= p);
      }
      return;
    }
  }
}

// Builds random programs over every operator and function of the language, with rebound names
// (inputs too), names read several times (forks), named constants and aliases. Every operand
// of log and sqrt, every base of a pow with a non-integer or tape exponent and every divisor is
// positive (a divisor: or negative) by construction: softplus(...) + 0.1, exp(...), sigmoid(...)
// + 0.1, or a name bound to such an expression.
class ProgramGenerator {
 public:
  struct Options {
    std::string suffix;         // appended to every name a statement binds
    std::string output;         // the last statement's name; empty: f, or a bare expression
    bool rebind_inputs = true;  // whether a statement may bind an input's name again
    bool prelu = true;          // whether to call prelu (on tensors, its alpha is () or (F,))
  };

  ProgramGenerator(Rng& rng, Options options) : rng_(rng), options_(std::move(options)) {}

  Generated generate() {
    static constexpr const char* kInputs[] = {"x", "y", "z", "w", "u", "v"};
    std::vector<std::string> pool(std::begin(kInputs), std::end(kInputs));
    for (int i = 0, n = 1 + int(rng_.below(4)); i < n; ++i) {
      const std::size_t k = rng_.below(pool.size());
      names_[pool[k]] = Name{true, false, false};
      pool.erase(pool.begin() + std::ptrdiff_t(k));
    }
    Generated g;
    for (int s = 0, statements = int(rng_.below(5)); s < statements; ++s) {
      const bool pos = chance() < 0.3;
      Expr e = pos ? positive(1 + int(rng_.below(3))) : any(1 + int(rng_.below(3)));
      const std::string n = target();
      names_[n] = Name{false, true, pos};
      g.statements.push_back({n, std::move(e)});
    }
    g.statements.push_back(last());
    for (const std::string& n : read_inputs_) g.inputs[n] = 0;
    g.text = text(g.statements);
    return g;
  }

  // New values in [-2, 2] for the inputs the program reads.
  void sample(Generated& g) {
    for (auto& [n, value] : g.inputs) value = rng_.uniform(-2, 2);
  }

 private:
  struct Name {
    bool is_input;  // an input's name that no statement has bound yet
    bool unread;    // bound by a statement and not read since (the parser rejects that)
    bool positive;  // bound to an expression built positive
  };

  double chance() { return rng_.uniform(); }
  template <class T, std::size_t N>
  const T& pick(const T (&from)[N]) {
    return from[rng_.below(N)];
  }
  template <class T>
  const T& pick(const std::vector<T>& from) {
    return from[rng_.below(from.size())];
  }

  Expr literal(bool positive_only = false) {
    static const std::pair<const char*, double> kNumbers[] = {
        {"0.5", 0.5}, {".5", 0.5},   {"5e-1", 0.5}, {"2", 2},       {"2.0", 2},    {"3", 3},
        {"0.1", 0.1}, {"1e-1", 0.1}, {"1.5", 1.5},  {"0.25", 0.25}, {"2.5E0", 2.5}};
    const auto& [spelling, value] = pick(kNumbers);
    if (!positive_only && chance() < 0.3) return number(std::string("-") + spelling, -value);
    return number(spelling, value);
  }

  Expr read(const std::string& n) {
    Name& info = names_.at(n);
    info.unread = false;
    if (info.is_input) read_inputs_.insert(n);
    return {Expr::Kind::name, n, 0, {}};
  }

  // A name to read: an input or a name bound earlier, preferring one not read yet.
  Expr name() {
    std::vector<std::string> unread, all;
    for (const auto& [n, info] : names_) {
      all.push_back(n);
      if (info.unread) unread.push_back(n);
    }
    return read(!unread.empty() && chance() < 0.7 ? pick(unread) : pick(all));
  }

  Expr leaf() { return chance() < 0.8 ? name() : literal(); }

  // An expression that is positive by construction, most forms at least 0.1.
  Expr positive(int depth) {
    const int d = depth > 0 ? depth - 1 : 0;
    const double c = chance();
    if (depth == 0 || c < 0.15) {
      std::vector<std::string> positives;
      for (const auto& [n, info] : names_)
        if (info.positive) positives.push_back(n);
      if (!positives.empty() && chance() < 0.7) return read(pick(positives));
      return binary("+", call("softplus", {name()}), literal(true));
    }
    if (c < 0.3) return binary("+", call("softplus", {any(d)}), literal(true));
    if (c < 0.4) return call("exp", {any(d)});
    if (c < 0.5) return binary("+", call("sigmoid", {any(d)}), number("0.1", 0.1));
    if (c < 0.6) {
      static const char* kSquare[] = {"^", "**"};
      Expr square = chance() < 0.3 ? call("pow", {any(d), number("2", 2)})
                                   : binary(pick(kSquare), any(d), number("2", 2));
      return binary("+", std::move(square), literal(true));
    }
    if (c < 0.7) return call("sqrt", {positive(d)});
    if (c < 0.8) {
      static const char* kOps[] = {"+", "*", "/"};
      Expr a = positive(d);
      return binary(pick(kOps), std::move(a), positive(d));
    }
    if (c < 0.9) return binary("+", call(chance() < 0.5 ? "abs" : "relu", {any(d)}), literal(true));
    Expr a = positive(d);
    return call("max", {std::move(a), positive(d)});
  }

  // Any expression with at most `depth` levels of operators.
  Expr any(int depth) {
    if (depth == 0 || chance() < 0.1) return leaf();
    const int d = depth - 1;
    const double c = chance();
    if (c < 0.3) {
      static const char* kOps[] = {"+", "-", "*", "+", "-", "*", "/"};
      const std::string op = pick(kOps);
      Expr a = any(d);
      if (op != "/") return binary(op, std::move(a), any(d));
      Expr divisor = positive(d);
      if (chance() < 0.3) divisor = unary(Expr::Kind::neg, std::move(divisor));
      return binary(op, std::move(a), std::move(divisor));
    }
    if (c < 0.36) {
      Expr a = any(d);
      if (a.kind == Expr::Kind::number) return a;  // -2 is a number, not neg(2)
      return unary(chance() < 0.85 ? Expr::Kind::neg : Expr::Kind::plus, std::move(a));
    }
    if (c < 0.6) {
      static const char* kSmooth[] = {"exp", "sigmoid", "tanh", "softplus", "log", "sqrt"};
      const std::string f = pick(kSmooth);
      return call(f, {f == "log" || f == "sqrt" ? positive(d) : any(d)});
    }
    if (c < 0.85) {
      static const char* kKinked[] = {"abs", "relu", "leaky_relu", "elu", "prelu", "max"};
      std::string f = pick(kKinked);
      if (f == "prelu" && !options_.prelu) f = "max";
      if (f == "prelu" || f == "max") {
        Expr a = any(d);
        return call(f, {std::move(a), any(d)});
      }
      if ((f == "leaky_relu" || f == "elu") && chance() < 0.5) {
        static const std::pair<const char*, double> kAlpha[] = {
            {"0.2", 0.2}, {"-0.2", -0.2}, {"1.5", 1.5}, {"0.01", 0.01}, {"2", 2}};
        const auto& [spelling, alpha] = pick(kAlpha);
        return call(f, {any(d), number(spelling, alpha)});
      }
      return call(f, {any(d)});
    }
    // pow in its three spellings, with a number exponent (pow_scalar) or one on the tape.
    static const char* kPow[] = {"^", "**", "pow"};
    const std::string spelling = pick(kPow);
    auto pow_of = [&](Expr base, Expr exponent) {
      if (spelling == "pow") return call("pow", {std::move(base), std::move(exponent)});
      return binary(spelling, std::move(base), std::move(exponent));
    };
    const double p = chance();
    if (p < 0.3) return pow_of(any(d), chance() < 0.5 ? number("2", 2) : number("3", 3));
    if (p < 0.55) {
      static const std::pair<const char*, double> kExponents[] = {
          {"0.5", 0.5}, {"-1", -1}, {"1.5", 1.5}, {"-0.5", -0.5}, {"-2", -2}};
      const auto& [spelling, value] = pick(kExponents);
      return pow_of(positive(d), number(spelling, value));
    }
    if (p < 0.65) return pow_of(literal(true), any(d));  // 2 ^ x: a constant base on the tape
    Expr base = positive(d);
    return pow_of(std::move(base), any(d));
  }

  // The name a statement binds: a new one, one whose binding has been read, or an input's.
  std::string target() {
    static constexpr const char* kNames[] = {"q", "h", "t", "s", "g", "k", "m", "p"};
    std::vector<std::string> rebindable;
    for (const auto& [n, info] : names_) {
      if (info.unread) continue;
      if (info.is_input && !(options_.rebind_inputs && read_inputs_.contains(n))) continue;
      rebindable.push_back(n);
    }
    if (!rebindable.empty() && chance() < 0.35) return pick(rebindable);
    std::string n = pick(kNames) + options_.suffix;
    while (names_.contains(n) && (names_.at(n).unread || names_.at(n).is_input)) n += "n";
    return n;
  }

  // The output: an expression that reads every binding not read yet, and an input if none was.
  Statement last() {
    Expr e = any(1 + int(rng_.below(3)));
    std::vector<std::string> unread;
    for (const auto& [n, info] : names_)
      if (info.unread) unread.push_back(n);
    for (const std::string& n : unread) {
      static const char* kOps[] = {"+", "-", "*"};
      Expr other = chance() < 0.5 ? read(n) : call("tanh", {read(n)});
      e = binary(pick(kOps), std::move(e), std::move(other));
    }
    if (read_inputs_.empty()) {
      std::string input;
      for (const auto& [n, info] : names_)
        if (info.is_input) input = n;
      e = binary("+", std::move(e), read(input));
    }
    const bool named = !options_.output.empty() || chance() < 0.7;
    return {named ? (options_.output.empty() ? std::string("f") : options_.output) : std::string(),
            std::move(e)};
  }

  std::string text(const std::vector<Statement>& statements) {
    std::string out;
    for (std::size_t i = 0; i < statements.size(); ++i) {
      if (i) {
        const double c = chance();
        out += c < 0.5 ? "; " : c < 0.8 ? "\n" : fmt::format("  # statement {}\n\n", i);
      }
      if (!statements[i].name.empty()) out += statements[i].name + " = ";
      print(statements[i].expr, out, rng_);
    }
    return out;
  }

  Rng& rng_;
  Options options_;
  std::map<std::string, Name> names_;
  std::set<std::string> read_inputs_;
};

// The values of a program's inputs, in the order Program::inputs() gives them.
std::vector<double> values_of(const Generated& g, const Program& program) {
  std::vector<double> x;
  for (const std::string& n : program.inputs()) x.push_back(g.inputs.at(n));
  return x;
}

std::string describe(const Generated& g) {
  std::string inputs;
  for (const auto& [n, value] : g.inputs) inputs += fmt::format(" {}={}", n, value);
  std::string text = g.text;
  for (std::size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n', at + 5))
    text.replace(at, 1, "\n    ");
  return fmt::format("  program:\n    {}\n  inputs:{}", text, inputs);
}

// A generated program parses, and its inputs are the names the generator read before binding
// them; otherwise `failure` says what went wrong.
std::optional<Program> parse(const Generated& g, std::string& failure) {
  try {
    Program program(g.text);
    std::vector<std::string> expected;
    for (const auto& [n, value] : g.inputs) expected.push_back(n);
    std::vector<std::string> inputs = program.inputs();
    std::sort(inputs.begin(), inputs.end());
    if (inputs != expected)
      failure = fmt::format(
          "the program's inputs are {}, not the names it reads before binding "
          "them\n{}",
          fmt::join(inputs, ", "), describe(g));
    else
      return program;
  } catch (const ag::Error& e) {
    failure = fmt::format("a generated program does not parse: {}\n{}", e.what(), describe(g));
  }
  return std::nullopt;
}

// A generated program, its text parsed, for one case of a property.
struct Case {
  Rng rng;
  ProgramGenerator generator;
  Generated g;
  std::optional<Program> program;
  std::string failure;

  explicit Case(std::uint64_t seed, ProgramGenerator::Options options = {})
      : rng(seed), generator(rng, std::move(options)), g(generator.generate()) {
    program = parse(g, failure);
  }
};

// ---- central differences ------------------------------------------------------------------

// A recording of a program at one point: its value, the largest |value| of a node that depends
// on an input, and whether central differences can be trusted there (property.hpp).
struct Point {
  double value = 0;
  double scale = 0;
  PointCheck check;
};

Point inspect(const Tape& tape, Value output) {
  Point p{output.value(), 0, {}};
  for (NodeId id = 0; id < tape.size(); ++id) {
    if (!tape.needs_grad(id)) continue;  // constants, and what is computed from them only
    p.check.value(tape.value(id));
    p.scale = std::max(p.scale, std::abs(tape.value(id)));
    const int arity = tape.arity(id);
    if (arity == 0) continue;
    const double a = tape.value(tape.input_of(id, 0));
    const double b = arity == 2 ? tape.value(tape.input_of(id, 1)) : 0.0;
    p.check.elementwise(tape.op(id), a, b, tape.param(id));
  }
  return p;
}

constexpr const char* kExecutable = "test_program_property";

// Backward from the output, and then (the tape now holding a finished pass, Note [Gradient
// semantics]) from a node inside the program, each against central differences of that node's
// value: "backward may start from any node".
property::Outcome central_differences(std::uint64_t seed, property::Tally& tally) {
  Tape tape, at;
  Case c(seed);
  if (!c.program) return property::Outcome{Skip::none, 0, c.failure};
  const Program& program = *c.program;
  Skip why = Skip::none;
  for (int attempt = 0; attempt < 5; ++attempt) {
    c.generator.sample(c.g);
    const std::vector<double> x = values_of(c.g, program);
    tape.reset();
    const Program::Recorded r = program.record(tape, x);
    const Point base = inspect(tape, r.output);
    if (base.check.skip != Skip::none) {
      why = base.check.skip;
      continue;
    }
    std::vector<NodeId> inner;  // op nodes that depend on an input
    for (NodeId id = 0; id < tape.size(); ++id)
      if (tape.needs_grad(id) && !is_leaf(tape.op(id))) inner.push_back(id);
    const NodeId outputs[2] = {r.output.id(),
                               inner.empty() ? r.output.id() : inner[c.rng.below(inner.size())]};
    // Central differences of both nodes' values, input by input.
    std::vector<double> numeric[2];
    bool crossed = false;
    for (std::size_t i = 0; i < x.size() && !crossed; ++i) {
      auto evaluate_at = [&](double xi) {
        std::vector<double> moved = x;
        moved[i] = xi;
        at.reset();
        const Point p = inspect(at, program.record(at, moved).output);
        crossed |= p.check.sides != base.check.sides || p.check.skip == Skip::domain ||
                   p.check.skip == Skip::range;
        return std::array<double, 2>{at.value(outputs[0]), at.value(outputs[1])};
      };
      const double h = property::step_at(x[i]);
      const auto up = evaluate_at(x[i] + h), down = evaluate_at(x[i] - h);
      for (int o = 0; o < 2; ++o)
        numeric[o].push_back((up[o] - down[o]) / ((x[i] + h) - (x[i] - h)));
    }
    if (crossed) {
      why = Skip::crossing;
      continue;
    }
    std::string gradients;
    bool failed = false;
    for (int o = 0; o < 2; ++o) {
      tape.zero_grad();
      tape.backward(tape.handle(outputs[o]));
      gradients += fmt::format("\n  backward from {}:", tape.label(outputs[o]));
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double analytic = r.inputs[i].grad();
        const double ratio = property::error_ratio(analytic, numeric[o][i], base.scale);
        tally.error(ratio);
        failed |= ratio > 1;
        gradients += fmt::format(
            "\n    d/d{}: backward {}, central difference {}{}", program.inputs()[i], analytic,
            numeric[o][i], ratio > 1 ? fmt::format("  <- {:.3g} times the tolerance", ratio) : "");
      }
    }
    return property::Outcome{
        Skip::none, 2 * x.size(),
        failed ? "backward and central differences disagree\n" + describe(c.g) + gradients : ""};
  }
  return property::Outcome{why, 0, {}};
}

}  // namespace

TEST_CASE("random programs: backward agrees with central differences") {
  property::run("random programs, backward against central differences", kExecutable,
                "random programs: backward agrees*", 5000, central_differences);
}
