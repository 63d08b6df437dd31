// Numbers read from text as std::from_chars reads them, in the native build and in the
// playground's WebAssembly one, whose libc++ 14 has no floating-point from_chars.

#pragma once

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <string>
#include <system_error>
#include <type_traits>

namespace ag {

// Note [Floating-point from_chars]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Emscripten's libc++ 14 (the playground) declares no from_chars for float or double. There
// strtod and strtof read the number (in the C locale: nothing calls setlocale), after refusing
// what from_chars refuses (a leading '+' or space, hexadecimal), with their ERANGE as
// result_out_of_range. Integers, and every type natively, go to std::from_chars itself.
template <class T>
std::from_chars_result from_chars(const char* first, const char* last, T& value) {
#if defined(__cpp_lib_to_chars)
  return std::from_chars(first, last, value);
#else
  if constexpr (std::is_integral_v<T>) {
    return std::from_chars(first, last, value);
  } else {
    static_assert(std::is_same_v<T, double> || std::is_same_v<T, float>);
    const std::string text(first, last);
    const char* start = text.c_str();
    const char* digits = start + (*start == '-');
    if (text.empty() || std::isspace(static_cast<unsigned char>(*start)) || *start == '+' ||
        (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')))
      return {first, std::errc::invalid_argument};
    errno = 0;
    char* end = nullptr;
    const T read = std::is_same_v<T, float> ? std::strtof(start, &end) : std::strtod(start, &end);
    if (end == start) return {first, std::errc::invalid_argument};
    if (errno == ERANGE) return {first + (end - start), std::errc::result_out_of_range};
    value = read;
    return {first + (end - start), std::errc()};
  }
#endif
}

}  // namespace ag
