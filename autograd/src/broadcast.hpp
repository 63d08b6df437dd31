// NumPy broadcasting (internal): the one walk that forward and backward of binary elementwise
// ops share, so a broadcast gradient is summed back to its input's shape in one place.

#pragma once

#include <cstdint>

#include "tapegrad/shape.hpp"

namespace ag {

// Note [Broadcasting]
// ~~~~~~~~~~~~~~~~~~~
// for_each_broadcast calls f(i, ia, ib) for every element i of the output, with
// the indices of the input elements it is computed from (NumPy's rule: an
// input's axis of length 1, or a missing leading axis, repeats). Backward uses
// the same walk and accumulates into the inputs' gradients at ia and ib, so a
// broadcast gradient is summed back to each input's shape here, in the walk,
// and nowhere else.
template <class F>
void for_each_broadcast(const Shape& out, const Shape& a, const Shape& b, F&& f) {
  const std::int64_t n = out.numel();
  if (a == out && b == out) {
    for (std::int64_t i = 0; i < n; ++i) f(i, i, i);
    return;
  }
  if (a == out && b.numel() == 1) {
    for (std::int64_t i = 0; i < n; ++i) f(i, i, std::int64_t(0));
    return;
  }
  if (b == out && a.numel() == 1) {
    for (std::int64_t i = 0; i < n; ++i) f(i, std::int64_t(0), i);
    return;
  }
  // Strides of a and b aligned to the output's axes; 0 where an input repeats.
  const int rank = out.rank();
  std::int64_t sa[kMaxRank] = {}, sb[kMaxRank] = {};
  std::int64_t stride_a = 1, stride_b = 1;
  for (int axis = rank - 1; axis >= 0; --axis) {
    const int ia = a.rank() - rank + axis, ib = b.rank() - rank + axis;
    if (ia >= 0) {
      sa[axis] = a[ia] == 1 ? 0 : stride_a;
      stride_a *= a[ia];
    }
    if (ib >= 0) {
      sb[axis] = b[ib] == 1 ? 0 : stride_b;
      stride_b *= b[ib];
    }
  }
  const std::int64_t inner = rank ? out[rank - 1] : 1;
  const std::int64_t inner_a = rank ? sa[rank - 1] : 0, inner_b = rank ? sb[rank - 1] : 0;
  std::int64_t counter[kMaxRank] = {};
  std::int64_t base_a = 0, base_b = 0;
  for (std::int64_t i = 0; i < n; i += inner) {
    for (std::int64_t j = 0; j < inner; ++j) f(i + j, base_a + j * inner_a, base_b + j * inner_b);
    // Advance the outer axes like an odometer.
    for (int axis = rank - 2; axis >= 0; --axis) {
      base_a += sa[axis];
      base_b += sb[axis];
      if (++counter[axis] < out[axis]) break;
      base_a -= sa[axis] * out[axis];
      base_b -= sb[axis] * out[axis];
      counter[axis] = 0;
    }
  }
}

// The same walk for three inputs (where's condition and its two branches): f(i, ic, ia, ib).
// One odometer over every axis; Note [Broadcasting] holds for it as for the two-input walk.
template <class F>
void for_each_broadcast3(const Shape& out, const Shape& c, const Shape& a, const Shape& b, F&& f) {
  const std::int64_t n = out.numel();
  if (c == out && a == out && b == out) {
    for (std::int64_t i = 0; i < n; ++i) f(i, i, i, i);
    return;
  }
  const int rank = out.rank();
  const Shape* inputs[3] = {&c, &a, &b};
  std::int64_t strides[3][kMaxRank] = {};  // 0 where an input repeats
  for (int k = 0; k < 3; ++k) {
    std::int64_t stride = 1;
    for (int axis = rank - 1; axis >= 0; --axis) {
      const int ik = inputs[k]->rank() - rank + axis;
      if (ik < 0) continue;
      strides[k][axis] = (*inputs[k])[ik] == 1 ? 0 : stride;
      stride *= (*inputs[k])[ik];
    }
  }
  std::int64_t counter[kMaxRank] = {}, base[3] = {};
  for (std::int64_t i = 0; i < n; ++i) {
    f(i, base[0], base[1], base[2]);
    for (int axis = rank - 1; axis >= 0; --axis) {
      for (int k = 0; k < 3; ++k) base[k] += strides[k][axis];
      if (++counter[axis] < out[axis]) break;
      for (int k = 0; k < 3; ++k) base[k] -= strides[k][axis] * out[axis];
      counter[axis] = 0;
    }
  }
}

}  // namespace ag
