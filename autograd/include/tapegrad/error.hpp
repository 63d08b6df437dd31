// ag::Error: the one exception type of the autograd library, and ag::fail, the one way to format
// and throw it. Its message names the problem precisely (the op, the shapes, the position).

#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace ag {

// Note [Messages are printable]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Messages quote what the user gave: names, file names, program excerpts, CSV fields. A control
// character among them would reach the terminal raw (a tensor named "\x1b[2J" clears the
// screen), and a NUL would cut the message short wherever it is read as a C string (what()).
// So every byte below 0x20 except newline and tab, and DEL, is written as \xNN: once, here,
// when an Error is made. Newlines stay (a program error shows its line under the message) and
// tabs stay (they keep the caret under a program excerpt aligned).

// `text` with every control character but '\n' and '\t' written as \xNN (Note [Messages are
// printable]); also for names echoed on standard output.
inline std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\n' && c != '\t') || byte == 0x7f)
      out += fmt::format("\\x{:02x}", byte);
    else
      out += c;
  }
  return out;
}

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(printable(what)) {}
};

// Formats a message and throws it as an ag::Error: fail("{}: empty file", name).
template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace ag
