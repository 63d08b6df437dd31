// The tapegrad program language: `q = x + y; f = q * z`, parsed once into a flat list of
// instructions, then recorded on an ag::Tape with values for its inputs.

#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <tapegrad/core.hpp>
#include <unordered_map>
#include <vector>

namespace tapegrad {

// Note [The program language]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A program is statements separated by `;` or newlines; `#` starts a comment.
// `name = expr` binds a name; the last statement is the output, and may be a bare
// expression, which is then named `out`. Names no statement has bound when they
// are read are the inputs, in order of first appearance, valued by NAME=VALUE.
// Binding a name again is allowed: later versions are labelled with primes
// (`x`, `x'`, `x''`, `x'''`, then `x'4`, `x'5`, ...), counting an input of the same
// name as the first version.
// `y = x` makes y another name for x's node (the graph keeps calling it x).
//
// Precedence, loosest first, as in Python: `+ -`, `* /`, unary `- +`, then `^`
// (also spelled `**`), which is right-associative and binds tighter than unary
// minus: `-x^2` is `-(x^2)`, `2^-1` is 0.5. A number literal as exponent records
// pow(Value, double); any other exponent pow(Value, Value), which gets a gradient.
// Newlines inside parentheses do not end a statement.
//
// Note [No recursion in the parser]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Expressions are parsed by shunting-yard with explicit stacks into postfix
// instructions, and run by a loop over them with a value stack: no tree, no
// recursion. So 100000 nested parentheses or a 1 MB program cost memory
// proportional to their size and never the call stack.

// Note [Program limits]
// ~~~~~~~~~~~~~~~~~~~~~
// A program is user input, so its size and its nesting are bounded, far beyond anything
// written by hand or generated (a 1 MB program and 100000 nested parentheses are tested):
// exceeding either is a ProgramError at the place the limit is passed, naming the limit.
// Memory stays proportional to the program either way (Note [No recursion in the parser]).
inline constexpr std::size_t kMaxProgramBytes = std::size_t{16} << 20;  // 16 MiB
inline constexpr std::size_t kMaxNesting = 1'000'000;  // parentheses and calls open at once

// A syntax or naming error at a place in the program. what() holds the whole
// report: "line L, column C: message", the source line, and a caret under column C.
class ProgramError : public ag::Error {
 public:
  ProgramError(std::string_view source, std::size_t offset, const std::string& message);

  int line() const { return line_; }      // 1-based
  int column() const { return column_; }  // 1-based, in characters
  const std::string& message() const { return message_; }

 private:
  int line_;
  int column_;
  std::string message_;
};

// The functions a program can call, with how they are written: the op table's rows that have a
// signature, in table order.
struct FunctionInfo {
  std::string_view name;
  int min_args;
  int max_args;
  std::string_view signature;  // "leaky_relu(x[, alpha])"
  ag::Op op;                   // the op table's row (Note [The op table])
  std::string_view help;       // "x for x > 0, else 0"
  // A function composed of two rows, recorded as op(x, a) then then(·, b): clamp(x, lo, hi) is
  // clamp_max(clamp_min(x, lo), hi), as ag::clamp composes it (value.hpp). Its two fixed
  // numbers must be literals, like any row's.
  bool composed = false;
  ag::Op then = ag::Op::add;
};
std::span<const FunctionInfo> functions();

class Program {
 public:
  // Parses and checks a whole program; throws ProgramError.
  explicit Program(std::string_view source);

  // The inputs, in order of first appearance.
  const std::vector<std::string>& inputs() const { return inputs_; }
  // Turns NAME=VALUE arguments into one value per input (in inputs() order).
  // Throws ag::Error naming a malformed argument, a name that is not an input,
  // a name given twice, a value that is not a number, or a missing input.
  std::vector<double> input_values(std::span<const std::string> assignments) const;

  struct Recorded {
    ag::Value output;
    std::vector<ag::Value> inputs;  // in inputs() order
  };
  // Records the program on `tape` (inputs first, then one node per operation).
  Recorded record(ag::Tape& tape, std::span<const double> input_values) const;

  enum class Code : std::uint8_t {
    literal,  // push `number`
    load,     // push the Value of slot `arg`
    neg,
    add,
    sub,
    mul,
    div,
    pow,
    call,   // function `function`, `arg` arguments
    store,  // pop into slot `arg`, naming the node unless `alias`
  };
  struct Instruction {
    Code code;
    bool alias = false;
    std::uint8_t function = 0;  // index into functions()
    std::uint32_t arg = 0;
    double number = 0;
  };

 private:
  friend class Parser;

  // A name's storage: an input or one binding of a statement.
  struct Slot {
    std::string label;   // "x", or "x'" for a second version
    std::size_t offset;  // where it is bound or, for an input, first read
    bool is_input;
    bool used = false;
  };

  std::vector<Instruction> code_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> input_slots_;  // slots_ index of each input
  std::vector<std::string> inputs_;
  std::unordered_map<std::string, std::size_t> bound_;  // names bound by a statement: where first
  std::uint32_t output_slot_ = 0;
};

// The lines `tapegrad step` prints for a recorded program, without line ends: "forward" and a
// forward_line per node, "backward" and each step's heading and chain rule, "gradients" and a
// gradient_line per input, indented as printed. The CLI and the playground both print these, so
// their steps are the same text. Runs the backward pass on `tape`. `on_step`, when set, is called
// before the first step with nullptr (the forward pass's state), then after each step with it
// (`tapegrad step --frames` draws a frame at each).
std::vector<std::string> step_transcript(
    ag::Tape& tape, const Program::Recorded& recorded,
    const std::function<void(const ag::Step*)>& on_step = nullptr);

// "d²f/dx²", "d²f/dx dy": the lecture's name for the second partial of the output with respect
// to inputs i and j.
std::string second_partial_name(const ag::Tape& tape, const Program::Recorded& recorded,
                                std::size_t i, std::size_t j);

// The lines of `tapegrad step --order 2` (Note [Stepping through the second backward],
// program.cpp): the forward lines, the nodes the first backward recorded with create_graph
// evaluated forward, the gradients, then per input the second backward from its gradient, step
// by step, and the row of second partials it gives.
std::vector<std::string> second_order_transcript(ag::Tape& tape, const Program::Recorded& recorded);

}  // namespace tapegrad
