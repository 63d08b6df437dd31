// Anomaly mode: the first op whose forward value or backward gradient is NaN or infinite is
// reported (op, node, name, input values) and stops the computation, as PyTorch's
// torch.autograd.detect_anomaly does, instead of silently poisoning the weights.

#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tapegrad/error.hpp"
#include "tapegrad/shape.hpp"
#include "tapegrad/tape.hpp"
#include "tapegrad/tensor.hpp"

namespace ag {

// Note [Anomaly mode]
// ~~~~~~~~~~~~~~~~~~~
// A tape in anomaly mode (Tape::set_check_finite, TensorTape::set_check_finite, or an
// AnomalyMode guard) checks what it records and every backward step it runs:
//  - forward, right after an op is recorded: its value. A value the computation was given
//    non-finite is reported as given, not blamed on the op that reads it: a scalar tape checks
//    an input as it is created, and the inputs of an op whose value is not finite (so a NaN
//    constant is found there); a tensor tape checks the leaves (inputs, constants, parameters)
//    each op reads, so a NaN that relu would hide is found too.
//  - backward, after each chain-rule step: the gradient of every input of the node, so the
//    report names the op whose local derivative broke, the input that received it, and, for a
//    scalar or an elementwise op, the upstream gradient and local derivative at that element.
// The first non-finite number found throws an AnomalyError. It throws rather than warning and
// going on because every later number depends on it: PyTorch's detect_anomaly raises too, and
// a training loop must stop before an optimizer step writes the poison into the weights (so
// nn::fit also checks the parameters after each step when FitOptions::check_finite is set:
// nn::check_parameter, beside the optimizers).
// Checking allocates nothing, so a warm training step in anomaly mode still allocates nothing
// (tests/test_alloc.cpp); only a report does.
//
// Off, it costs one predictable branch per recorded op, on a flag in the tape (the value check
// and the report are behind it, the report out of line), one per tensor backward step, and one
// per scalar backward pass: Tape::backward runs its loop as before and switches to the checked
// one (Stepper::run_checked, out of line) only when the flag is set. bench/README.md has the
// instruction counts.

enum class AnomalyKind : std::uint8_t {
  given,     // a value the checked ops were given is non-finite: a leaf (input, constant,
             // parameter), or a node recorded while the mode was off
  forward,   // an op's forward value
  backward,  // the gradient an op's backward step passed to one of its inputs
  update,    // an optimizer step made a parameter non-finite (nn::check_parameter, from nn::fit)
};

// One operand of the op at the offending element: an input, the upstream gradient (backward)
// or the op's own output (softmax's backward reads it).
struct AnomalyOperand {
  std::string role;  // "input 0", "input 1", "upstream", "output", "gradient"
  NodeId id = 0;
  std::string label;                // "x", "t3", "layers.0.weight"
  Shape shape;                      // tensors; () for a scalar tape
  std::vector<std::int64_t> index;  // tensors: the element it gave; -1 is a whole axis (a row
                                    // of a matmul), empty for a scalar or a shape () tensor
  std::vector<double> values;       // those elements, the first kAnomalyShown of them
};
inline constexpr std::size_t kAnomalyShown = 6;

// What anomaly mode found, for code to inspect; AnomalyError::what() says it in one line.
struct Anomaly {
  AnomalyKind kind = AnomalyKind::forward;
  bool tensor = false;  // found on a TensorTape: shapes and indices are set
  NodeId node = 0;      // the op (forward, backward); the non-finite node (given)
  std::string op;       // "log", "matmul"; given: "input", "constant", "parameter" or the op
  std::string name;     // the node's name ("h"), if it has one
  std::string scope;    // tensor tapes: the module path the node was recorded in ("layers.2")
  DType dtype = DType::f64;
  double value = std::numeric_limits<double>::quiet_NaN();  // the first non-finite number
  Shape shape;                      // tensors: of the value (forward, given) or gradient
  std::vector<std::int64_t> index;  // tensors: where `value` is; empty for scalars
  // The op's inputs at the element that went wrong (and its fixed parameter, if it has one);
  // for a backward step of a non-elementwise tensor op, the upstream gradient too.
  std::vector<AnomalyOperand> operands;
  // backward: which input's gradient went non-finite (its position, node and label);
  // given: the op that read the value (input stays -1, target_label is that op's name).
  int input = -1;
  NodeId target = 0;
  std::string target_label;
  std::string target_scope;
  // backward on the scalar tape or of an elementwise tensor op: the chain rule at one element,
  // upstream (at upstream_index of the op's output, tensors) times the local derivative.
  std::optional<double> upstream, local;
  std::vector<std::int64_t> upstream_index;
};

// The one line AnomalyError::what() returns:
//   anomaly: forward of log (node 1 'y', input 0 = 0) produced -inf
//   anomaly: backward of log (node 7 'h', input 0 = 0) produced gradient inf for x (node 2):
//     upstream 1 times local gradient inf
//   anomaly: input x (node 0) is nan as given, before any op (used by log, node 1)
std::string describe(const Anomaly& anomaly);

// An ag::Error, so code that catches ag::Error (the CLI: one line, exit code 2) handles it;
// anomaly() carries the fields.
class AnomalyError : public Error {
 public:
  explicit AnomalyError(Anomaly anomaly) : Error(describe(anomaly)), anomaly_(std::move(anomaly)) {}
  const Anomaly& anomaly() const { return anomaly_; }

 private:
  Anomaly anomaly_;
};

// Turns a tape's anomaly mode on (or off) for a block, restoring it after, as NoGrad does for
// gradients.
class AnomalyMode {
 public:
  explicit AnomalyMode(Tape& tape, bool on = true) : scalar_(&tape), was_(tape.check_finite()) {
    tape.set_check_finite(on);
  }
  explicit AnomalyMode(TensorTape& tape, bool on = true)
      : tensor_(&tape), was_(tape.check_finite()) {
    tape.set_check_finite(on);
  }
  ~AnomalyMode() {
    if (scalar_) scalar_->set_check_finite(was_);
    if (tensor_) tensor_->set_check_finite(was_);
  }
  AnomalyMode(const AnomalyMode&) = delete;
  AnomalyMode& operator=(const AnomalyMode&) = delete;

 private:
  Tape* scalar_ = nullptr;
  TensorTape* tensor_ = nullptr;
  bool was_;
};

namespace detail {
// The checks and reports of anomaly mode (Note [Anomaly mode]), free functions that watch a tape
// from outside: the tapes only test their flag and call out to these. Each throws AnomalyError.
// The scalar tape: node id's forward value is non-finite (a leaf's: it was given so; an op's:
// blamed on the op unless one of its inputs already is); the backward step of node id gave an
// input a non-finite gradient; Tape::check_forward's pass over a whole recording.
[[noreturn, gnu::cold]] void scalar_forward_anomaly(const Tape& tape, NodeId id);
[[noreturn, gnu::cold]] void scalar_backward_anomaly(const Tape& tape, NodeId id);
void check_scalar_forward(const Tape& tape);
// The tensor tape: after node `id` is recorded, and after its backward step. The operands a
// report quotes come from the op table's entries (autograd/src/tensor_ops.hpp).
void check_tensor_forward(const TensorTape& tape, NodeId id);
void check_tensor_backward(const TensorTape& tape, NodeId id);
}  // namespace detail

}  // namespace ag
