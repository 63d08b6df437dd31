// The program language: a lexer, a shunting-yard parser into postfix instructions, and the
// loop that records them on a tape (Note [No recursion in the parser]).

#include "program.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <tapegrad/chars.hpp>

namespace tapegrad {

namespace {

// ---- error reports ------------------------------------------------------------------------------

struct Location {
  int line;
  int column;
  std::string excerpt;  // the source line (or a window of a long one) and a caret line
};

bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Where `offset` is, and the line with a caret under it. Columns count characters, not
// bytes; a tab in the line stays a tab under it, so the caret lines up in a terminal.
Location locate(std::string_view source, std::size_t offset) {
  offset = std::min(offset, source.size());
  std::size_t start = 0;
  if (offset > 0) {
    const std::size_t newline = source.rfind('\n', offset - 1);
    if (newline != std::string_view::npos) start = newline + 1;
  }
  std::size_t end = source.find('\n', start);
  if (end == std::string_view::npos) end = source.size();
  if (end > start && source[end - 1] == '\r') --end;
  const int line = static_cast<int>(std::count(source.begin(), source.begin() + start, '\n')) + 1;
  int column = 1;
  for (std::size_t i = start; i < offset; ++i) column += !is_continuation(source[i]);

  // A long line (a generated program) is shown as a window around the column.
  constexpr std::size_t kBefore = 60, kAfter = 40;
  std::size_t from = start, to = end;
  if (offset > start + kBefore) {
    from = offset - kBefore;
    while (from < offset && is_continuation(source[from])) ++from;
  }
  if (end > offset + kAfter) {
    to = offset + kAfter;
    while (to > offset && is_continuation(source[to])) --to;
  }
  const std::string_view prefix = from > start ? "..." : "";
  const std::string_view suffix = to < end ? "..." : "";
  std::string caret(prefix.size(), ' ');
  for (std::size_t i = from; i < std::min(offset, end); ++i) {
    if (is_continuation(source[i])) continue;
    // A control character is shown as \xNN (Note [Messages are printable]): four columns.
    const auto byte = static_cast<unsigned char>(source[i]);
    if (source[i] == '\t')
      caret += '\t';
    else
      caret.append(byte < 0x20 || byte == 0x7f ? 4 : 1, ' ');
  }
  caret += '^';
  std::string excerpt =
      fmt::format("  {}{}{}\n  {}", prefix, source.substr(from, to - from), suffix, caret);
  return {line, column, std::move(excerpt)};
}

// Why from_chars refused `number` as out of range: "'1e999' is out of range" when it is too
// large for a double; when too small, that it underflows, rather than the 0 strtod would give
// with only errno to say so: a value silently 0 is one a user would never find.
std::string out_of_range(std::string_view number) {
  const double nearest = std::strtod(std::string(number).c_str(), nullptr);
  if (std::isinf(nearest)) return fmt::format("'{}' is out of range", number);  // tests pin it
  return fmt::format(
      "'{}' underflows: it is nearer 0 than the smallest double (about 4.9e-324); "
      "write 0 if 0 is meant",
      number);
}

std::string report(std::string_view source, std::size_t offset, const std::string& message) {
  const Location at = locate(source, offset);
  return fmt::format("line {}, column {}: {}\n{}", at.line, at.column, message, at.excerpt);
}

// ---- the function table -------------------------------------------------------------------------

// The functions composed of two rows (FunctionInfo::composed): ag::clamp's composition.
constexpr std::array<FunctionInfo, 1> kComposed = {{
    {"clamp", 3, 3, "clamp(x, lo, hi)", ag::Op::clamp_min,
     "clamp_max(clamp_min(x, lo), hi): x limited to [lo, hi]", true, ag::Op::clamp_max},
}};

// Every row of the op table with a signature (Note [The op table]), in table order: the table
// says each function's name, operands, fixed number and whether it may be left out. Then the
// composed functions.
constexpr std::size_t kFunctionCount = [] {
  std::size_t n = std::size(kComposed);
  for (int i = 0; i < ag::kOpCount; ++i)
    n += !ag::op_info(static_cast<ag::Op>(i)).signature.empty();
  return n;
}();

constexpr std::array<FunctionInfo, kFunctionCount> kFunctions = [] {
  std::array<FunctionInfo, kFunctionCount> functions{};
  std::size_t n = 0;
  for (int i = 0; i < ag::kOpCount; ++i) {
    const ag::OpInfo& op = ag::op_info(static_cast<ag::Op>(i));
    if (op.signature.empty()) continue;
    const int params = op.has_param ? 1 : 0;
    functions[n++] = {op.name,
                      op.arity + (op.param_optional ? 0 : params),
                      op.arity + params,
                      op.signature,
                      op.op,
                      op.help};
  }
  for (const FunctionInfo& f : kComposed) functions[n++] = f;
  return functions;
}();

int find_function(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kFunctions); ++i)
    if (kFunctions[i].name == name) return static_cast<int>(i);
  return -1;
}

std::string function_list() {
  std::string list;
  for (const FunctionInfo& f : kFunctions) {
    if (!list.empty()) list += ", ";
    list += f.signature;
  }
  return list;
}

// ---- the lexer ----------------------------------------------------------------------------------

enum class Tok : std::uint8_t {
  number,
  name,
  plus,
  minus,
  star,
  slash,
  caret,  // `^` or `**`
  lparen,
  rparen,
  comma,
  assign,
  semicolon,
  newline,
  end,
};

struct Token {
  Tok kind;
  std::uint32_t offset;
  std::uint32_t length;
  double number;
};

constexpr std::size_t kMaxNameLength = 200;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

std::vector<Token> lex(std::string_view src) {
  static_assert(kMaxProgramBytes < std::numeric_limits<std::uint32_t>::max(),
                "token offsets are 32-bit");
  if (src.size() > kMaxProgramBytes)  // Note [Program limits]
    throw ProgramError(src, kMaxProgramBytes,
                       fmt::format("the program is {} bytes, more than the {} (16 MiB) a program "
                                   "may have: it passes the limit here",
                                   src.size(), kMaxProgramBytes));
  std::vector<Token> tokens;
  tokens.reserve(src.size() / 2 + 1);
  auto push = [&](Tok kind, std::size_t at, std::size_t length, double number = 0) {
    tokens.push_back(
        {kind, static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(length), number});
  };
  std::size_t i = 0;
  while (i < src.size()) {
    const char c = src[i];
    if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
    } else if (c == '#') {
      while (i < src.size() && src[i] != '\n') ++i;
    } else if (is_digit(c) || (c == '.' && i + 1 < src.size() && is_digit(src[i + 1]))) {
      // digits [. digits] [e [+-] digits], or . digits [...]
      std::size_t j = i;
      while (j < src.size() && is_digit(src[j])) ++j;
      if (j < src.size() && src[j] == '.') {
        ++j;
        while (j < src.size() && is_digit(src[j])) ++j;
      }
      if (j < src.size() && (src[j] == 'e' || src[j] == 'E')) {
        std::size_t k = j + 1;
        if (k < src.size() && (src[k] == '+' || src[k] == '-')) ++k;
        if (k >= src.size() || !is_digit(src[k])) {
          while (k < src.size() && is_name_char(src[k])) ++k;
          throw ProgramError(src, i,
                             fmt::format("malformed number '{}': an exponent needs digits, as in "
                                         "1e-3",
                                         src.substr(i, k - i)));
        }
        while (k < src.size() && is_digit(src[k])) ++k;
        j = k;
      }
      double value = 0;
      const auto [end, error] = ag::from_chars(src.data() + i, src.data() + j, value);
      if (error == std::errc::result_out_of_range)
        throw ProgramError(src, i,
                           fmt::format("the number {}", out_of_range(src.substr(i, j - i))));
      if (error != std::errc() || end != src.data() + j)
        throw ProgramError(src, i, fmt::format("malformed number '{}'", src.substr(i, j - i)));
      push(Tok::number, i, j - i, value);
      i = j;
    } else if (is_name_start(c)) {
      std::size_t j = i;
      while (j < src.size() && is_name_char(src[j])) ++j;
      if (j - i > kMaxNameLength)
        throw ProgramError(
            src, i,
            fmt::format("a name of {} characters is too long (at most {})", j - i, kMaxNameLength));
      push(Tok::name, i, j - i);
      i = j;
    } else {
      Tok kind;
      std::size_t length = 1;
      switch (c) {
        case '+': kind = Tok::plus; break;
        case '-': kind = Tok::minus; break;
        case '*':
          kind = Tok::star;
          if (i + 1 < src.size() && src[i + 1] == '*') kind = Tok::caret, length = 2;
          break;
        case '/': kind = Tok::slash; break;
        case '^': kind = Tok::caret; break;
        case '(': kind = Tok::lparen; break;
        case ')': kind = Tok::rparen; break;
        case ',': kind = Tok::comma; break;
        case '=': kind = Tok::assign; break;
        case ';': kind = Tok::semicolon; break;
        case '\n': kind = Tok::newline; break;
        default: {
          std::size_t j = i + 1;
          while (j < src.size() && is_continuation(src[j])) ++j;
          throw ProgramError(src, i,
                             fmt::format("unexpected character '{}'", src.substr(i, j - i)));
        }
      }
      push(kind, i, length);
      i += length;
    }
  }
  push(Tok::end, src.size(), 0);
  return tokens;
}

}  // namespace

ProgramError::ProgramError(std::string_view source, std::size_t offset, const std::string& message)
    : ag::Error(report(source, offset, message)), message_(message) {
  const Location at = locate(source, offset);
  line_ = at.line;
  column_ = at.column;
}

std::span<const FunctionInfo> functions() { return kFunctions; }

// ---- the parser ---------------------------------------------------------------------------------

// Turns tokens into the Program's postfix instructions and slots, one statement at a time.
// Shunting-yard: operands go straight to the output (the instruction list), operators wait
// on an explicit stack until one of looser precedence, a closing parenthesis or the end of
// the statement pops them (Note [No recursion in the parser]).
class Parser {
 public:
  Parser(std::string_view source, Program& program)
      : src_(source), tokens_(lex(source)), program_(program) {}

  void parse();

 private:
  // What an operand on the compile-time stack is; decides pow's overload, leaky_relu's
  // literal alpha, and whether `y = x` names a new node or aliases one.
  enum class Kind : std::uint8_t { literal, reference, computed };
  struct Operand {
    Kind kind;
    std::uint32_t offset;  // where it starts in the source, for error carets
  };
  struct Pending {
    enum class Kind : std::uint8_t { binary, neg, plus, paren, call } kind;
    Program::Code code;  // the binary operator
    std::uint8_t function;
    std::uint32_t args;    // arguments seen so far, for a call
    std::uint32_t offset;  // of the operator, parenthesis or function name
  };
  struct Name {
    std::uint32_t slot;
    std::uint32_t versions;  // bindings so far, an input counting as one
  };

  [[noreturn]] void fail(std::size_t offset, const std::string& message) const {
    throw ProgramError(src_, offset, message);
  }
  std::string_view text(const Token& t) const { return src_.substr(t.offset, t.length); }
  std::string describe(const Token& t) const;

  Kind parse_expression();  // from pos_ to the end of the statement
  void read_name(const Token& t);
  // Loosest first: + - (1), * / (2), unary - + (3), ^ (4); 0 for '(' and calls.
  static int precedence(const Pending& op);
  void apply(const Pending& op);
  void close_call(const Pending& call);
  void close_composed_call(const Pending& call);  // FunctionInfo::composed
  void pop_until_open();
  void open(const Token& t);  // a '(' or a call opens, within Note [Program limits]
  std::uint32_t bind(std::string_view name, std::size_t offset, bool alias);
  void emit(Program::Code code, std::uint32_t arg = 0, double number = 0) {
    program_.code_.push_back({code, false, 0, arg, number});
  }

  std::string_view src_;
  std::vector<Token> tokens_;
  std::size_t pos_ = 0;
  Program& program_;
  std::vector<Operand> operands_;
  std::vector<Pending> ops_;
  std::size_t open_ = 0;  // parentheses and calls open on ops_
  std::unordered_map<std::string, Name> names_;
};

std::string Parser::describe(const Token& t) const {
  switch (t.kind) {
    case Tok::newline: return "the end of the line";
    case Tok::end: return "the end of the program";
    default: return fmt::format("'{}'", text(t));
  }
}

void Parser::parse() {
  bool last_was_bare = false;
  std::size_t bare_offset = 0;
  bool any = false;
  std::uint32_t last_slot = 0;
  while (true) {
    while (tokens_[pos_].kind == Tok::semicolon || tokens_[pos_].kind == Tok::newline) ++pos_;
    const Token& first = tokens_[pos_];
    if (first.kind == Tok::end) break;
    if (last_was_bare)
      fail(bare_offset,
           "this expression's value is never used: bind it to a name (q = ...) or make it the "
           "last statement");
    std::string_view target;
    if (first.kind == Tok::name && tokens_[pos_ + 1].kind == Tok::assign) {
      target = text(first);
      if (find_function(target) >= 0)
        fail(first.offset, fmt::format("'{}' is a function; it cannot be assigned", target));
      pos_ += 2;
    }
    const std::uint32_t start = tokens_[pos_].offset;
    const Kind kind = parse_expression();
    const bool alias = kind == Kind::reference;
    if (target.empty()) {
      last_was_bare = true;
      bare_offset = start;
      last_slot = bind("out", start, alias);
    } else {
      last_slot = bind(target, first.offset, alias);
      program_.bound_.try_emplace(std::string(target), first.offset);
    }
    any = true;
  }
  if (!any) fail(0, "the program is empty: write at least one statement, as in f = x * y");
  program_.output_slot_ = last_slot;
  program_.slots_[last_slot].used = true;
  for (const Program::Slot& slot : program_.slots_) {
    if (slot.used) continue;
    std::string_view name = slot.label;
    name = name.substr(0, name.find('\''));
    fail(slot.offset, fmt::format("{} is assigned but never used", name));
  }
}

// The label of version v of a name (0 for the first): x, x', x'', x''', then x'4, x'5, ...,
// so that a name bound again thousands of times keeps a short label.
std::string version_label(std::string_view name, std::uint32_t v) {
  if (v <= 3) return std::string(name) + std::string(v, '\'');
  return fmt::format("{}'{}", name, v);
}

std::uint32_t Parser::bind(std::string_view name, std::size_t offset, bool alias) {
  auto [it, fresh] = names_.try_emplace(std::string(name), Name{0, 0});
  Name& n = it->second;
  const auto slot = static_cast<std::uint32_t>(program_.slots_.size());
  program_.slots_.push_back({version_label(name, n.versions), offset, false});
  n.slot = slot;
  ++n.versions;
  emit(Program::Code::store, slot);
  program_.code_.back().alias = alias;
  return slot;
}

void Parser::read_name(const Token& t) {
  const std::string_view name = text(t);
  if (find_function(name) >= 0)
    fail(t.offset, fmt::format("'{}' is a function: call it, as in {}", name,
                               kFunctions[find_function(name)].signature));
  auto [it, fresh] = names_.try_emplace(std::string(name), Name{0, 0});
  if (fresh) {  // read before any statement bound it: an input
    const auto slot = static_cast<std::uint32_t>(program_.slots_.size());
    program_.slots_.push_back({std::string(name), t.offset, true, true});
    program_.input_slots_.push_back(slot);
    program_.inputs_.emplace_back(name);
    it->second = Name{slot, 1};
  }
  program_.slots_[it->second.slot].used = true;
  emit(Program::Code::load, it->second.slot);
  operands_.push_back({Kind::reference, t.offset});
}

int Parser::precedence(const Pending& op) {
  switch (op.kind) {
    case Pending::Kind::neg:
    case Pending::Kind::plus: return 3;
    case Pending::Kind::binary:
      switch (op.code) {
        case Program::Code::add:
        case Program::Code::sub: return 1;
        case Program::Code::mul:
        case Program::Code::div: return 2;
        default: return 4;  // pow
      }
    default: return 0;  // parentheses and calls are popped only by ')' and ','
  }
}

void Parser::apply(const Pending& op) {
  Operand& a = operands_[operands_.size() - (op.kind == Pending::Kind::binary ? 2 : 1)];
  switch (op.kind) {
    case Pending::Kind::neg:
      // -2 is the number -2, not neg(2): a literal stays a literal (x ^ -1 is pow(x, -1.0)).
      if (a.kind == Kind::literal)
        program_.code_.back().number = -program_.code_.back().number;
      else
        emit(Program::Code::neg), a.kind = Kind::computed;
      a.offset = op.offset;
      break;
    case Pending::Kind::plus: a.offset = op.offset; break;
    case Pending::Kind::binary:
      emit(op.code);
      operands_.pop_back();
      a.kind = Kind::computed;
      break;
    default: break;
  }
}

void Parser::close_call(const Pending& call) {
  const FunctionInfo& f = kFunctions[call.function];
  const auto args = static_cast<int>(call.args);
  if (args < f.min_args || args > f.max_args) {
    const std::string expected =
        f.min_args == f.max_args
            ? fmt::format("{} argument{}", f.min_args, f.min_args == 1 ? "" : "s")
            : fmt::format("{} or {} arguments", f.min_args, f.max_args);
    fail(call.offset,
         fmt::format("{} takes {}, as in {}; got {}", f.name, expected, f.signature, args));
  }
  if (f.composed) {
    close_composed_call(call);
    return;
  }
  const ag::OpInfo& op = ag::op_info(f.op);
  if (op.has_param && args > op.arity && operands_.back().kind != Kind::literal)
    fail(operands_.back().offset,
         fmt::format(
             "{}'s {} must be a number, as in {}(x, 0.1){}", f.name, op.param_name, f.name,
             op.param_name == "alpha" ? "; for a slope that is learned, use prelu(x, a)" : ""));
  operands_.resize(operands_.size() - call.args);
  operands_.push_back({Kind::computed, call.offset});
  program_.code_.push_back({Program::Code::call, false, call.function, call.args, 0});
}

// clamp(x, lo, hi) becomes clamp_min(x, lo), then clamp_max(that, hi): the literal hi, the
// last instruction, moves after the first call.
void Parser::close_composed_call(const Pending& call) {
  const FunctionInfo& f = kFunctions[call.function];
  for (std::size_t i = operands_.size() - 2; i < operands_.size(); ++i)
    if (operands_[i].kind != Kind::literal)
      fail(operands_[i].offset,
           fmt::format("{}'s bounds must be numbers, as in {}(x, -1, 1)", f.name, f.name));
  const Program::Instruction hi = program_.code_.back();
  program_.code_.pop_back();
  const auto row = [](ag::Op op) {
    return static_cast<std::uint8_t>(find_function(ag::op_info(op).name));
  };
  program_.code_.push_back({Program::Code::call, false, row(f.op), 2, 0});
  program_.code_.push_back(hi);
  program_.code_.push_back({Program::Code::call, false, row(f.then), 2, 0});
  operands_.resize(operands_.size() - call.args);
  operands_.push_back({Kind::computed, call.offset});
}

void Parser::pop_until_open() {
  while (!ops_.empty() && ops_.back().kind != Pending::Kind::paren &&
         ops_.back().kind != Pending::Kind::call) {
    apply(ops_.back());
    ops_.pop_back();
  }
}

void Parser::open(const Token& t) {
  if (++open_ > kMaxNesting)
    fail(t.offset, fmt::format("too deeply nested: more than {} parentheses and calls are open "
                               "here, the most a program may nest",
                               kMaxNesting));
}

Parser::Kind Parser::parse_expression() {
  const std::size_t operands_before = operands_.size();
  bool expect_operand = true;
  while (true) {
    const Token& t = tokens_[pos_];
    if (t.kind == Tok::newline && open_ > 0) {  // a statement continues inside parentheses
      ++pos_;
      continue;
    }
    if (expect_operand) {
      switch (t.kind) {
        case Tok::number:
          emit(Program::Code::literal, 0, t.number);
          operands_.push_back({Kind::literal, t.offset});
          expect_operand = false;
          break;
        case Tok::name:
          if (tokens_[pos_ + 1].kind == Tok::lparen) {
            const int f = find_function(text(t));
            if (f < 0)
              fail(t.offset, fmt::format("unknown function '{}'; the functions are {}", text(t),
                                         function_list()));
            ops_.push_back({Pending::Kind::call, {}, static_cast<std::uint8_t>(f), 0, t.offset});
            open(t);
            ++pos_;  // the '('
          } else {
            read_name(t);
            expect_operand = false;
          }
          break;
        case Tok::minus: ops_.push_back({Pending::Kind::neg, {}, 0, 0, t.offset}); break;
        case Tok::plus: ops_.push_back({Pending::Kind::plus, {}, 0, 0, t.offset}); break;
        case Tok::lparen:
          ops_.push_back({Pending::Kind::paren, {}, 0, 0, t.offset});
          open(t);
          break;
        case Tok::rparen:
          // f() with no arguments: the call reports its argument count.
          if (!ops_.empty() && ops_.back().kind == Pending::Kind::call && ops_.back().args == 0 &&
              tokens_[pos_ - 1].kind == Tok::lparen) {
            close_call(ops_.back());
            ops_.pop_back();
            --open_;
            expect_operand = false;
            break;
          }
          [[fallthrough]];
        default: {
          std::string message = "expected an expression";
          if (pos_ > 0 && tokens_[pos_ - 1].kind != Tok::semicolon &&
              tokens_[pos_ - 1].kind != Tok::newline)
            message += fmt::format(" after {}", describe(tokens_[pos_ - 1]));
          if (t.kind != Tok::end && t.kind != Tok::newline && t.kind != Tok::semicolon)
            message += fmt::format(", found {}", describe(t));
          fail(t.offset, message);
        }
      }
      ++pos_;
      continue;
    }
    switch (t.kind) {
      case Tok::plus:
      case Tok::minus:
      case Tok::star:
      case Tok::slash:
      case Tok::caret: {
        using C = Program::Code;
        const C code = t.kind == Tok::plus    ? C::add
                       : t.kind == Tok::minus ? C::sub
                       : t.kind == Tok::star  ? C::mul
                       : t.kind == Tok::slash ? C::div
                                              : C::pow;
        const Pending op{Pending::Kind::binary, code, 0, 0, t.offset};
        const int p = precedence(op);
        const bool right_assoc = code == C::pow;
        while (!ops_.empty()) {
          const int q = precedence(ops_.back());
          if (q == 0 || q < p || (q == p && right_assoc)) break;
          apply(ops_.back());
          ops_.pop_back();
        }
        ops_.push_back(op);
        expect_operand = true;
        break;
      }
      case Tok::comma:
        pop_until_open();
        if (ops_.empty() || ops_.back().kind != Pending::Kind::call)
          fail(t.offset, "unexpected ',' outside the arguments of a function call");
        ++ops_.back().args;
        expect_operand = true;
        break;
      case Tok::rparen: {
        pop_until_open();
        if (ops_.empty()) fail(t.offset, "unmatched ')'");
        const Pending open = ops_.back();
        ops_.pop_back();
        --open_;
        if (open.kind == Pending::Kind::call) {
          Pending call = open;
          ++call.args;
          close_call(call);
        } else {
          operands_.back().offset = open.offset;
        }
        break;
      }
      case Tok::semicolon:
      case Tok::newline:
      case Tok::end: {
        pop_until_open();
        if (!ops_.empty())
          fail(ops_.back().offset, ops_.back().kind == Pending::Kind::call
                                       ? fmt::format("the call of {} is never closed: expected ')'",
                                                     kFunctions[ops_.back().function].name)
                                       : std::string("this '(' is never closed: expected ')'"));
        const Kind kind = operands_.back().kind;
        operands_.resize(operands_before);
        return kind;
      }
      case Tok::assign:
        fail(t.offset,
             "unexpected '=': a statement is `name = expression`, with one name before '='");
      default:
        fail(t.offset, fmt::format("expected an operator (+ - * / ^) or the end of the statement "
                                   "before {}",
                                   describe(t)));
    }
    ++pos_;
  }
}

// ---- Program ------------------------------------------------------------------------------------

Program::Program(std::string_view source) {
  Parser parser(source, *this);
  parser.parse();
}

std::vector<double> Program::input_values(std::span<const std::string> assignments) const {
  std::unordered_map<std::string_view, std::size_t> index;
  for (std::size_t i = 0; i < inputs_.size(); ++i) index.emplace(inputs_[i], i);
  auto input_list = [&] {
    if (inputs_.empty()) return std::string("it has no inputs");
    return fmt::format("its inputs are {}", fmt::join(inputs_, ", "));
  };

  std::vector<double> values(inputs_.size());
  std::vector<const std::string*> given(inputs_.size(), nullptr);
  for (const std::string& a : assignments) {
    const std::size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ag::Error(
          fmt::format("'{}' is not NAME=VALUE (an input and its value, as in x=-2)", a));
    const std::string_view name = std::string_view(a).substr(0, eq);
    const std::string_view text = std::string_view(a).substr(eq + 1);
    const auto it = index.find(name);
    if (it == index.end()) {
      if (bound_.contains(std::string(name)))
        ag::fail("{}: {} is computed by the program, not an input; {}", a, name, input_list());
      throw ag::Error(
          fmt::format("{}: the program has no input named {}; {}", a, name, input_list()));
    }
    const std::size_t i = it->second;
    if (given[i] != nullptr) ag::fail("{} is given twice: {} and {}", name, *given[i], a);
    given[i] = &a;
    double value = 0;
    const auto [end, error] = ag::from_chars(text.data(), text.data() + text.size(), value);
    if (error == std::errc::result_out_of_range && end == text.data() + text.size())
      ag::fail("{}: {}", a, out_of_range(text));
    if (text.empty() || error != std::errc() || end != text.data() + text.size())
      ag::fail("{}: '{}' is not a number", a, text);
    values[i] = value;
  }
  std::vector<std::string> missing;
  for (std::size_t i = 0; i < inputs_.size(); ++i)
    if (given[i] == nullptr) missing.push_back(inputs_[i]);
  if (!missing.empty()) {
    std::vector<std::string> hints;
    for (const std::string& m : missing) hints.push_back(m + "=VALUE");
    ag::fail("no value for the input{} {}: pass {}", missing.size() == 1 ? "" : "s",
             fmt::join(missing, ", "), fmt::join(hints, " "));
  }
  return values;
}

Program::Recorded Program::record(ag::Tape& tape, std::span<const double> input_values) const {
  if (input_values.size() != inputs_.size())
    ag::fail("the program has {} inputs, but {} values were given", inputs_.size(),
             input_values.size());
  // A literal stays a number until an op needs a node, so `x ^ 2` can record pow(x, 2.0).
  struct Operand {
    ag::Value value;
    double number;
    bool literal;
  };
  auto node = [&](const Operand& o) { return o.literal ? tape.constant(o.number) : o.value; };

  tape.reserve(tape.size() + code_.size());
  Recorded result;
  std::vector<ag::Value> slots(slots_.size());
  for (std::size_t i = 0; i < inputs_.size(); ++i) {
    const std::uint32_t s = input_slots_[i];
    slots[s] = tape.input(input_values[i], slots_[s].label);
    result.inputs.push_back(slots[s]);
  }
  std::vector<Operand> stack;
  for (const Instruction& ins : code_) {
    switch (ins.code) {
      case Code::literal: stack.push_back({{}, ins.number, true}); continue;
      case Code::load: stack.push_back({slots[ins.arg], 0, false}); continue;
      case Code::store: {
        ag::Value v = node(stack.back());
        stack.pop_back();
        if (!ins.alias) v.named(slots_[ins.arg].label);
        slots[ins.arg] = v;
        continue;
      }
      case Code::neg: stack.back() = {-node(stack.back()), 0, false}; continue;
      case Code::call: break;
      default: {  // a binary operator
        const Operand b = stack.back();
        stack.pop_back();
        const ag::Value a = node(stack.back());
        ag::Value r;
        switch (ins.code) {
          case Code::add: r = a + node(b); break;
          case Code::sub: r = a - node(b); break;
          case Code::mul: r = a * node(b); break;
          case Code::div: r = a / node(b); break;
          default: r = b.literal ? ag::pow(a, b.number) : ag::pow(a, b.value); break;
        }
        stack.back() = {r, 0, false};
        continue;
      }
    }
    // A call: its arguments are the top ins.arg operands.
    const Operand* args = stack.data() + stack.size() - ins.arg;
    const ag::Value x = node(args[0]);
    ag::Value r;
    const ag::Op op = kFunctions[ins.function].op;
    if (op == ag::Op::pow && args[1].literal) {
      r = ag::pow(x, args[1].number);  // a number exponent records pow_scalar, as `^` does
    } else {
      r = ag::dispatch(op, [&](auto rule) -> ag::Value {
        using R = decltype(rule);
        if constexpr (R::info.arity == 2) {
          return tape.record<R>(x, node(args[1]));
        } else if constexpr (R::info.has_param) {  // the parser made sure it is a literal
          return ins.arg == 2 ? tape.record<R>(x, {}, args[1].number) : tape.record<R>(x);
        } else if constexpr (R::info.arity == 1) {
          return tape.record<R>(x);
        } else {
          ag::fail("{} is a leaf, not a function", R::info.name);
        }
      });
    }
    stack.resize(stack.size() - ins.arg);
    stack.push_back({r, 0, false});
  }
  result.output = slots[output_slot_];
  return result;
}

std::vector<std::string> step_transcript(ag::Tape& tape, const Program::Recorded& recorded,
                                         const std::function<void(const ag::Step*)>& on_step) {
  std::vector<std::string> lines{"forward"};
  for (ag::NodeId id = 0; id < tape.size(); ++id)
    if (std::string line = ag::forward_line(tape, id); !line.empty())
      lines.push_back("  " + std::move(line));
  if (on_step) on_step(nullptr);

  lines.push_back("backward");
  ag::Stepper stepper = tape.stepper(recorded.output);
  std::size_t steps = 0;
  while (stepper.next()) {
    ++steps;
    const ag::Step& step = stepper.step();
    lines.push_back("  " + ag::step_heading(step));
    const std::string chain_rule = fmt::format("{}", step);
    for (std::size_t at = 0; at < chain_rule.size();) {
      std::size_t end = chain_rule.find('\n', at);
      if (end == std::string::npos) end = chain_rule.size();
      lines.push_back("    " + chain_rule.substr(at, end - at));
      at = end + 1;
    }
    if (on_step) on_step(&step);
  }
  if (steps == 0) lines.push_back("  (no steps: the output depends on no input)");

  lines.push_back("gradients");
  for (const ag::Value& input : recorded.inputs)
    lines.push_back("  " + ag::gradient_line(tape, recorded.output.id(), input.id()));
  return lines;
}

}  // namespace tapegrad
