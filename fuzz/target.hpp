// What every fuzz target shares: the input as bytes or text, and ag::Error as a normal outcome
// (the library's clear answer to bad input) while anything else escapes to libFuzzer, a finding.

#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <tapegrad/error.hpp>

namespace fuzz {

inline std::span<const std::byte> bytes(const std::uint8_t* data, std::size_t size) {
  return std::as_bytes(std::span(data, size));
}
inline std::string_view text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs f; an ag::Error ends it normally, any other exception propagates (and aborts the run).
template <class F> void expect_clear_errors(F&& f) {
  try {
    f();
  } catch (const ag::Error&) {
  }
}

}  // namespace fuzz
