// Property tests of the scalar engine through the CLI's program language: random programs
// differentiated by backward and by central differences, and metamorphic properties (sums of
// programs, the stepper, backward twice, the ag API, broadcast tensors). Note [Property cases].

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
#include <tapegrad/autograd.hpp>
#include <tapegrad/gradcheck.hpp>
#include <tapegrad/random.hpp>
#include <vector>

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

  // New values for the inputs the program reads: in [-2, 2], or for one point in five in
  // [-12, 12], where sigmoid, tanh and softplus are on their tails.
  void sample(Generated& g) {
    const double range = chance() < 0.2 ? 12 : 2;
    for (auto& [n, value] : g.inputs) value = rng_.uniform(-range, range);
  }

 private:
  struct Name {
    bool is_input;  // an input's name that no statement has bound yet
    bool unread;    // bound by a statement and not read since (the parser rejects that)
    bool positive;  // bound to an expression built positive
  };

  double chance() { return rng_.uniform(); }
  template <class T, std::size_t N> const T& pick(const T (&from)[N]) {
    return from[rng_.below(N)];
  }
  template <class T> const T& pick(const std::vector<T>& from) {
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
    if (c < 0.92) return from_table(d);
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

  // Any function of the language, read from the op table, so a row added there is generated
  // here without a line of this file: its operands, and its fixed number when it takes one (or
  // now and then not, where it may be left out). Those with a domain (log, sqrt) and pow keep
  // their own branches above.
  Expr from_table(int d) {
    std::vector<const tapegrad::FunctionInfo*> callable;
    for (const tapegrad::FunctionInfo& f : tapegrad::functions())
      if (f.op != Op::log && f.op != Op::sqrt && f.op != Op::pow &&
          (f.op != Op::prelu || options_.prelu))
        callable.push_back(&f);
    const tapegrad::FunctionInfo& f = *pick(callable);
    const OpInfo& info = op_info(f.op);
    std::vector<Expr> args;
    for (int k = 0; k < info.arity; ++k) args.push_back(any(d));
    // The fixed numbers: a row's parameter, which may be optional, or clamp's two bounds.
    const int fixed = f.max_args - info.arity, required = f.min_args - info.arity;
    const int count = fixed > required && chance() < 0.5 ? required : fixed;
    for (int k = 0; k < count; ++k) {
      static const std::pair<const char*, double> kParams[] = {
          {"0.2", 0.2}, {"-0.2", -0.2}, {"1.5", 1.5}, {"0.01", 0.01}, {"-1", -1}, {"0", 0}};
      const auto& [spelling, param] = pick(kParams);
      args.push_back(number(spelling, param));
    }
    return call(std::string(f.name), std::move(args));
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

// ---- evaluation ---------------------------------------------------------------------------

// Any row of the op table on a Value or a Tensor, by its code.
Value apply_row(Op op, Value a, double param) {
  return dispatch(op, [&](auto rule) -> Value {
    using R = decltype(rule);
    if constexpr (R::info.arity == 1) return a.tape().record<R>(a, {}, param);
    FAIL("not a unary row: ", R::info.name);
    return a;
  });
}
Value apply_row(Op op, Value a, Value b) {
  return dispatch(op, [&](auto rule) -> Value {
    using R = decltype(rule);
    if constexpr (R::info.arity == 2) return a.tape().record<R>(a, b);
    FAIL("not a binary row: ", R::info.name);
    return a;
  });
}
Tensor apply_row(Op op, Tensor a, double param) { return apply(op, a, param); }
Tensor apply_row(Op op, Tensor a, Tensor b) { return apply(op, a, b); }

// Records a generated program's tree directly through the ag API, on a Tape (V = Value) or a
// TensorTape (V = Tensor): the inputs first, in `order`, then the statements, as
// Program::record does from the text. Returns the output; `inputs` receives the inputs.
template <class V, class Input, class Constant>
V evaluate(const Generated& g, const std::vector<std::string>& order, Input&& input,
           Constant&& constant, std::vector<V>& inputs) {
  std::map<std::string, V> env;
  for (const std::string& n : order) {
    inputs.push_back(input(g.inputs.at(n), n));
    env[n] = inputs.back();
  }
  auto eval = [&](auto& self, const Expr& e) -> V {
    auto arg = [&](int k) { return self(self, e.args[std::size_t(k)]); };
    auto pow_of = [&](const Expr& base, const Expr& exponent) {
      V b = self(self, base);
      if (exponent.kind == Expr::Kind::number) return pow(b, exponent.number);
      return pow(b, self(self, exponent));
    };
    switch (e.kind) {
      case Expr::Kind::number: return constant(e.number);
      case Expr::Kind::name: return env.at(e.text);
      case Expr::Kind::neg: return -arg(0);
      case Expr::Kind::plus: return arg(0);
      case Expr::Kind::binary: {
        if (e.op() == '^') return pow_of(e.args[0], e.args[1]);
        V a = arg(0);  // one operand after the other: the order the parser records them in
        V b = arg(1);
        switch (e.op()) {
          case '+': return a + b;
          case '-': return a - b;
          case '*': return a * b;
          default: return a / b;
        }
      }
      case Expr::Kind::call: {
        const std::string& f = e.text;
        if (f == "pow") return pow_of(e.args[0], e.args[1]);
        V a = arg(0);
        if (f == "exp") return exp(a);
        if (f == "log") return log(a);
        if (f == "sqrt") return sqrt(a);
        if (f == "abs") return abs(a);
        if (f == "sigmoid") return sigmoid(a);
        if (f == "tanh") return tanh(a);
        if (f == "relu") return relu(a);
        if (f == "softplus") return softplus(a);
        if (f == "leaky_relu")
          return e.args.size() == 2 ? leaky_relu(a, e.args[1].number) : leaky_relu(a);
        if (f == "elu") return e.args.size() == 2 ? elu(a, e.args[1].number) : elu(a);
        if (f == "prelu" || f == "max") {
          V b = arg(1);
          return f == "prelu" ? prelu(a, b) : max(a, b);
        }
        if (f == "clamp") return clamp(a, e.args[1].number, e.args[2].number);
        // Every other function, by its row of the op table (ProgramGenerator::from_table).
        const std::optional<Op> op = find_op(f);
        REQUIRE(op);
        const OpInfo& info = op_info(*op);
        if (info.arity == 2) return apply_row(*op, a, arg(1));
        return apply_row(*op, a, e.args.size() == 2 ? e.args[1].number : info.default_param);
      }
    }
    FAIL("unknown expression kind");
    return V{};
  };
  V out{};
  for (const Statement& s : g.statements) {
    out = eval(eval, s.expr);
    if (!s.name.empty()) env[s.name] = out;
  }
  return out;
}

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

// The same number, or both NaN: the same function evaluated twice.
bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// Backward one node at a time, as Tape::backward does it: how many contributions each node
// receives and the sum of their sizes, which bounds the rounding of adding them up in another
// order. `problems` receives every step whose contribution is not upstream * local.
struct Contributions {
  std::vector<int> count;
  std::vector<double> magnitude;

  // A bound on the rounding error of a node's sum of contributions, in any order, with `more`
  // of the same size added.
  double rounding(NodeId id, double more = 0) const {
    return 4 * count[id] * std::numeric_limits<double>::epsilon() * (magnitude[id] + more);
  }
};

Contributions step_through(Tape& tape, Value output, std::string& problems) {
  Contributions c{std::vector<int>(tape.size()), std::vector<double>(tape.size())};
  Stepper stepper = tape.stepper(output);
  while (stepper.next()) {
    const Step& s = stepper.step();
    for (int k = 0; k < s.arity; ++k) {
      const InputStep& in = s.inputs[k];
      if (!in.needs_grad) continue;  // a constant: nothing is added to it
      ++c.count[in.id];
      c.magnitude[in.id] += std::abs(in.contribution);
      if (!same(in.contribution, s.upstream * in.local))
        problems += fmt::format("\n  step {}: contribution {} is not {} * {}", s.index,
                                in.contribution, s.upstream, in.local);
    }
  }
  return c;
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

// Note [The program language] against the ag API: the parser and Program::record build the tree
// the text describes (precedence, associativity, unary minus, number exponents, aliases).
property::Outcome text_against_api(std::uint64_t seed, property::Tally&) {
  Case c(seed);
  if (!c.program) return property::Outcome{Skip::none, 0, c.failure};
  const Program& program = *c.program;
  c.generator.sample(c.g);
  Tape parsed, direct;
  const Program::Recorded r = program.record(parsed, values_of(c.g, program));
  parsed.backward(r.output);
  std::vector<Value> inputs;
  const Value out = evaluate<Value>(
      c.g, program.inputs(), [&](double x, std::string_view n) { return direct.input(x, n); },
      [&](double x) { return direct.constant(x); }, inputs);
  direct.backward(out);
  // The same nodes in the same order, but for where constants sit: the parser records a
  // number operand when its operator runs, the tree when it is reached.
  auto ops = [](const Tape& tape) {
    std::vector<Op> ops;
    for (NodeId id = 0; id < tape.size(); ++id)
      if (tape.op(id) != Op::constant) ops.push_back(tape.op(id));
    return ops;
  };
  bool agree = same(r.output.value(), out.value()) && ops(parsed) == ops(direct) &&
               parsed.size() == direct.size();
  std::string gradients;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    agree &= same(r.inputs[i].grad(), inputs[i].grad());
    gradients += fmt::format("\n  d/d{}: program {}, ag API {}", program.inputs()[i],
                             r.inputs[i].grad(), inputs[i].grad());
  }
  return property::Outcome{
      Skip::none, inputs.size(),
      agree ? ""
            : fmt::format("the program and the ag API disagree\n{}\n  value: program {}, ag "
                          "API {}\n  nodes: program {}, ag API {}{}",
                          describe(c.g), r.output.value(), out.value(), parsed.size(),
                          direct.size(), gradients)};
}

// Note [Gradient semantics]: gradients from two subgraphs that share inputs add up.
property::Outcome sum_of_programs(std::uint64_t seed, property::Tally&) {
  // The first may not bind an input's name again: the second must read the same inputs.
  Case one(seed, {"1", "f1", false, true});
  Case two(seed ^ 0x9e3779b97f4a7c15ull, {"2", "f2", true, true});
  one.generator.sample(one.g);
  two.generator.sample(two.g);
  for (auto& [n, value] : two.g.inputs)
    if (one.g.inputs.contains(n)) value = one.g.inputs.at(n);
  Generated sum{{}, one.g.text + "\n" + two.g.text + "\nf = f1 + f2", one.g.inputs};
  sum.inputs.insert(two.g.inputs.begin(), two.g.inputs.end());
  std::string failure = one.failure + two.failure;
  const std::optional<Program> p = parse(sum, failure);
  if (!one.program || !two.program || !p) return property::Outcome{Skip::none, 0, failure};
  struct Run {
    Tape tape;
    Program::Recorded r;
    std::map<std::string, double> grad;
    std::map<std::string, double> rounding;
  };
  std::string problems;
  auto run = [&](const Program& program, const Generated& g, Run& out) {
    out.r = program.record(out.tape, values_of(g, program));
    const Contributions c = step_through(out.tape, out.r.output, problems);
    for (std::size_t i = 0; i < out.r.inputs.size(); ++i) {
      out.grad[program.inputs()[i]] = out.r.inputs[i].grad();
      out.rounding[program.inputs()[i]] = c.rounding(out.r.inputs[i].id());
    }
    return std::isfinite(out.r.output.value());
  };
  Run r1, r2, r;
  if (!run(*one.program, one.g, r1) || !run(*two.program, two.g, r2) || !run(*p, sum, r))
    return property::Outcome{Skip::range, 0, {}};  // exp overflowed: inf - inf has no gradient
  bool agree = problems.empty() && r.r.output.value() == r1.r.output.value() + r2.r.output.value();
  std::string gradients;
  for (const auto& [n, g] : r.grad) {
    const double g1 = r1.grad[n], g2 = r2.grad[n];
    // The two programs' contributions reach an input in another order, so they round
    // differently: by at most what adding them up can round.
    agree &= same(g, g1 + g2) || std::abs(g - (g1 + g2)) <= r.rounding[n];
    gradients += fmt::format("\n  d/d{}: sum {}, separately {} + {}", n, g, g1, g2);
  }
  return property::Outcome{
      Skip::none, r.grad.size(),
      agree ? "" : "d(f1 + f2) is not df1 + df2\n" + describe(sum) + gradients + problems};
}

// Note [The Stepper is backward] and Note [Gradient semantics]: stepping through backward one
// node at a time computes exactly what backward computes; a second backward recomputes every
// intermediate gradient (exactly the same) and adds the inputs' gradients again (2x). An input
// gets each contribution added to what it holds, so after the second pass it holds
// ((g + c1) + c2) + ..., which is exactly 2g for one contribution and 2g within the rounding of
// those additions for several.
property::Outcome stepper_and_twice(std::uint64_t seed, property::Tally&) {
  Case c(seed);
  if (!c.program) return property::Outcome{Skip::none, 0, c.failure};
  c.generator.sample(c.g);
  Tape tape;
  const Program::Recorded r = c.program->record(tape, values_of(c.g, *c.program));
  auto grads = [&] {
    std::vector<double> grads;
    for (NodeId id = 0; id < tape.size(); ++id) grads.push_back(tape.grad(id));
    return grads;
  };
  std::string problems;
  const Contributions contributions = step_through(tape, r.output, problems);
  const std::vector<double> stepped = grads();
  tape.zero_grad();
  tape.backward(r.output);
  const std::vector<double> once = grads();
  tape.backward(r.output);
  const std::vector<double> twice = grads();
  for (NodeId id = 0; id < tape.size(); ++id) {
    if (!same(stepped[id], once[id]))
      problems += fmt::format("\n  {}: {} after stepping, {} after backward", tape.label(id),
                              stepped[id], once[id]);
    const bool input = tape.op(id) == Op::input;
    const double expected = input ? 2 * once[id] : once[id];
    const double tolerance =
        input && contributions.count[id] > 1 ? contributions.rounding(id, std::abs(once[id])) : 0;
    if (!same(twice[id], expected) && !(std::abs(twice[id] - expected) <= tolerance))
      problems += fmt::format("\n  {}: {} after two backward passes, expected {}", tape.label(id),
                              twice[id], expected);
  }
  return property::Outcome{
      Skip::none, tape.size(),
      problems.empty()
          ? ""
          : "the stepper or a second backward went wrong:" + problems + "\n" + describe(c.g)};
}

// Elementwise rules are shared by scalars and tensors (ops.hpp), and a broadcast operand repeats
// its elements (Note [Broadcasting]): a random program recorded on tensors whose shapes
// broadcast against each other, (), (1,) and 1-element ones among them, gives at each element of
// its output the value the scalar tape gives for the inputs' elements there; the gradient of
// sum_i w_i out_i is the w-weighted sum of the scalar gradients over the elements an input
// element is repeated to.
property::Outcome broadcast_tensors(std::uint64_t seed, property::Tally&) {
  ProgramGenerator::Options options;
  options.prelu = false;
  Case c(seed, options);
  if (!c.program) return property::Outcome{Skip::none, 0, c.failure};
  const Program& program = *c.program;
  Rng& rng = c.rng;
  // Shapes from one universe: a suffix of it, some axes 1; 1-element ones a fifth of the
  // time.
  const bool single = rng.uniform() < 0.2;
  const int rank = single ? int(rng.below(2)) : 1 + int(rng.below(3));
  std::int64_t universe[3];
  for (int j = 0; j < rank; ++j) universe[j] = single ? 1 : 1 + std::int64_t(rng.below(3));
  std::map<std::string, TensorArg> args;
  for (const std::string& n : program.inputs()) {
    const int r = int(rng.below(std::uint64_t(rank) + 1));
    std::int64_t dims[3];
    for (int j = 0; j < r; ++j) dims[j] = rng.uniform() < 0.25 ? 1 : universe[rank - r + j];
    TensorArg& a = args[n];
    a.shape = Shape(std::span<const std::int64_t>(dims, std::size_t(r)));
    for (std::int64_t i = 0; i < a.shape.numel(); ++i) a.values.push_back(rng.uniform(-2, 2));
  }
  TensorTape tape;
  std::vector<Tensor> ts;
  const Tensor out = evaluate<Tensor>(
      c.g, program.inputs(),
      [&](double, std::string_view n) {
        const TensorArg& a = args.at(std::string(n));
        return tape.input<double>(a.shape, a.values, n);
      },
      [&](double x) { return tape.constant<double>(Shape{}, std::span<const double>(&x, 1)); }, ts);
  const Shape shape = out.shape();
  // Powers of 2, so that weighting is exact: w (a b) and (w a) b are the same number.
  std::vector<double> weights;
  for (std::int64_t i = 0; i < shape.numel(); ++i)
    weights.push_back(std::ldexp(1.0, int(rng.below(3)) - 1));
  tape.backward(out, weights);

  // The scalar tape at each output element; the gradients summed as broadcasting sums them.
  // For each input element: the sum, how many contributions it adds up, and their sizes.
  std::map<std::string, std::vector<double>> grads, counts, magnitudes;
  for (const auto& [n, a] : args) {
    grads[n].assign(a.values.size(), 0.0);
    counts[n].assign(a.values.size(), 0.0);
    magnitudes[n].assign(a.values.size(), 0.0);
  }
  std::string report;
  double flow = 0;  // the size of every contribution on every scalar tape
  for (std::int64_t i = 0; i < shape.numel(); ++i) {
    for (auto& [n, a] : args)
      c.g.inputs[n] = a.values[std::size_t(property::source(shape, a.shape, i))];
    Tape scalar;
    std::vector<Value> xs;
    const Value y = evaluate<Value>(
        c.g, program.inputs(), [&](double x, std::string_view n) { return scalar.input(x, n); },
        [&](double x) { return scalar.constant(x); }, xs);
    const Contributions contributions = step_through(scalar, y, report);
    for (double m : contributions.magnitude)
      if (std::isfinite(m)) flow += weights[std::size_t(i)] * m;
    if (!same(y.value(), out.value(i)))
      report += fmt::format("\n  element {}: tensor {}, scalar {}", i, out.value(i), y.value());
    for (std::size_t k = 0; k < xs.size(); ++k) {
      const std::string& n = program.inputs()[k];
      const auto j = std::size_t(property::source(shape, args.at(n).shape, i));
      const double w = weights[std::size_t(i)];
      grads[n][j] += w * xs[k].grad();
      counts[n][j] += contributions.count[xs[k].id()] + 1;
      magnitudes[n][j] += w * (contributions.magnitude[xs[k].id()] + std::abs(xs[k].grad()));
    }
  }
  std::size_t compared = 0;
  for (std::size_t k = 0; k < ts.size(); ++k) {
    const std::string& n = program.inputs()[k];
    for (std::size_t j = 0; j < grads[n].size(); ++j, ++compared) {
      const double t = ts[k].grad_at(std::int64_t(j)), s = grads[n][j];
      // The tensor adds the contributions of all elements node by node, the scalar tapes
      // element by element: they round differently, within what adding them up can round,
      // and where a node's contributions cancel, what that rounding leaves to pass on.
      constexpr double kEpsilon = std::numeric_limits<double>::epsilon();
      const double rounding = 4 * kEpsilon * (counts[n][j] * magnitudes[n][j] + 4 * flow);
      if (!same(t, s) && !(std::abs(t - s) <= rounding))
        report += fmt::format("\n  d/d{} element {}: tensor {}, scalar tapes {}", n, j, t, s);
    }
  }
  std::string shapes;
  for (const auto& [n, a] : args) shapes += fmt::format(" {}{}", n, a.shape.str());
  return property::Outcome{Skip::none, compared,
                           report.empty()
                               ? ""
                               : fmt::format("tensors and scalars disagree\n{}\n  shapes:{}{}",
                                             describe(c.g), shapes, report)};
}

}  // namespace

TEST_CASE("random programs: backward agrees with central differences") {
  property::run("random programs, backward against central differences", kExecutable,
                "random programs: backward agrees*", 5000, central_differences);
}

TEST_CASE("random programs: the text and the same tree recorded through the ag API agree") {
  property::run("random programs, text against the ag API", kExecutable,
                "random programs: the text*", 2000, text_against_api);
}

TEST_CASE("random programs: the gradient of a sum of two programs is the sum of their gradients") {
  property::run("random programs, d(f1 + f2) = df1 + df2", kExecutable,
                "random programs: the gradient of a sum*", 1000, sum_of_programs);
}

TEST_CASE(
    "random programs: the stepper is backward; backward twice doubles the inputs' gradients") {
  property::run("random programs, step by step and backward twice", kExecutable,
                "random programs: the stepper is backward*", 1000, stepper_and_twice);
}

TEST_CASE("random programs: on broadcast tensors they agree element by element with scalars") {
  property::run("random programs, broadcast tensors against the scalar tape", kExecutable,
                "random programs: on broadcast tensors*", 2000, broadcast_tensors);
}
