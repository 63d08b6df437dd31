// Shapes and element types of tensors, and NumPy's broadcasting rule.
// A Shape is a small fixed array: creating one never allocates.

#pragma once

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tapegrad/error.hpp"

namespace ag {

enum class DType : std::uint8_t { f32, f64 };

constexpr std::string_view dtype_name(DType t) { return t == DType::f32 ? "float32" : "float64"; }
constexpr std::size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 8; }
template <class T> constexpr DType dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "tensors hold float (float32) or double (float64)");
  return std::is_same_v<T, float> ? DType::f32 : DType::f64;
}

inline constexpr int kMaxRank = 6;

// The one shape printer: "(4, 3)", "(5,)" and "()" as NumPy and PyTorch print them, for a
// Shape and for the dimensions a file declares before they become one (IDX, safetensors).
inline std::string shape_str(std::span<const std::int64_t> dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

class Shape {
 public:
  Shape() = default;  // rank 0: a single element
  Shape(std::initializer_list<std::int64_t> dims) : Shape(std::span(dims.begin(), dims.size())) {}
  explicit Shape(std::span<const std::int64_t> dims) {
    if (dims.size() > kMaxRank)
      throw Error("a tensor has at most " + std::to_string(kMaxRank) + " dimensions, not " +
                  std::to_string(dims.size()));
    for (std::int64_t d : dims)
      if (d < 0)  // -1 is meaningful only to reshape, which takes it from a list (tensor.hpp)
        fail("a dimension cannot be negative ({}){}", d,
             d == -1 ? "; to infer one in reshape, list the dimensions: reshape(x, {-1, 4})" : "");
    rank_ = static_cast<int>(dims.size());
    for (int i = 0; i < rank_; ++i) dims_[i] = dims[i];
  }

  int rank() const { return rank_; }
  std::int64_t operator[](int i) const { return dims_[i]; }
  std::int64_t& operator[](int i) { return dims_[i]; }
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  std::span<const std::int64_t> dims() const { return {dims_.data(), std::size_t(rank_)}; }
  bool operator==(const Shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
      if (dims_[i] != o.dims_[i]) return false;
    return true;
  }

  // "(4, 3)", "(5,)" and "()" as NumPy and PyTorch print them (shape_str).
  std::string str() const;

  // The index (one entry per axis) of the element at row-major position `flat`.
  std::vector<std::int64_t> unravel(std::int64_t flat) const {
    std::vector<std::int64_t> index(std::size_t(rank_), 0);
    for (int i = rank_ - 1; i >= 0; --i) {
      index[std::size_t(i)] = dims_[i] ? flat % dims_[i] : 0;
      flat = dims_[i] ? flat / dims_[i] : 0;
    }
    return index;
  }

  // Resolves a possibly negative axis (-1 is the last); throws naming the op.
  int axis(int a, std::string_view op) const {
    const int r = a < 0 ? a + rank_ : a;
    if (r < 0 || r >= rank_)
      throw Error(std::string(op) + ": axis " + std::to_string(a) + " is out of range for shape " +
                  str());
    return r;
  }

 private:
  std::array<std::int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

inline std::string Shape::str() const { return shape_str(dims()); }

// NumPy broadcasting: align on the right; each pair of dimensions must be equal
// or one of them 1. Throws naming the op and both shapes.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op) {
  const int rank = a.rank() > b.rank() ? a.rank() : b.rank();
  std::array<std::int64_t, kMaxRank> dims{};
  // From the last axis back, so that the error names the rightmost mismatch.
  for (int i = rank - 1; i >= 0; --i) {
    const int ia = a.rank() - rank + i, ib = b.rank() - rank + i;
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1)
      throw Error(std::string(op) + ": shapes " + a.str() + " and " + b.str() +
                  " do not broadcast (axis " + std::to_string(i - rank) + ": " +
                  std::to_string(da) + " vs " + std::to_string(db) + ")");
    dims[i] = da == 1 ? db : da;
  }
  return Shape(std::span<const std::int64_t>(dims.data(), rank));
}

}  // namespace ag

// fmt::format("{}", shape) is shape.str(): "(4, 3)".
template <> struct fmt::formatter<ag::Shape> : fmt::formatter<std::string_view> {
  template <class Context> auto format(const ag::Shape& shape, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(shape.str(), ctx);
  }
};
