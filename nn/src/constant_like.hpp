// constant_like: a constant of another tensor's tape and dtype, from values computed in double
// (class weights, dropout masks, running statistics), for nn's sources; not installed.

#pragma once

#include <span>
#include <vector>

#include "tapegrad/tensor.hpp"

namespace nn {

inline ag::Tensor constant_like(const ag::Tensor& like, const ag::Shape& shape,
                                std::span<const double> values) {
  ag::TensorTape& tape = like.tape();
  if (like.dtype() == ag::DType::f64) return tape.constant<double>(shape, values);
  const std::vector<float> narrowed(values.begin(), values.end());
  return tape.constant<float>(shape, std::span<const float>(narrowed));
}

}  // namespace nn
