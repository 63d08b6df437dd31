// Element indices for anomaly reports (internal): the helpers the tensor op entries use to say
// which elements an output element reads, and which an input gradient element came from.

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tapegrad/anomaly.hpp"

namespace ag::anomaly_index {

std::vector<std::int64_t> unravel(const Shape& s, std::int64_t flat);
std::int64_t ravel(const Shape& s, const std::vector<std::int64_t>& index);

// The element of an input of shape `in` that output element `out` reads (Note [Broadcasting],
// broadcast.hpp): axes aligned on the right, an axis of length 1 repeats.
std::vector<std::int64_t> broadcast_index(const std::vector<std::int64_t>& out, const Shape& in);

// The index with a whole axis (-1) at `axis`: replacing it if the rank is the input's, or
// inserted if the output lost it (a reduction without keepdims).
std::vector<std::int64_t> with_axis(std::vector<std::int64_t> index, int rank, int axis);

// The reduced output's element for an input element: the axis dropped, or 0 with keepdims.
std::vector<std::int64_t> without_axis(std::vector<std::int64_t> index, int out_rank, int axis);

// Node id's elements (or gradient) at `index` (-1: the whole axis), the first kAnomalyShown.
AnomalyOperand tensor_operand(const TensorTape& tape, std::string role, NodeId id,
                              std::vector<std::int64_t> index, bool grad = false);

// An op's fixed parameter as an operand: "exponent = -1", "alpha = 0.01".
AnomalyOperand param_operand(Op op, NodeId id, double param);

}  // namespace ag::anomaly_index
