// Golden files for the graph tests: DOT text compared byte for byte with
// tests/golden/<name> (the folder is TAPEGRAD_GOLDEN_DIR, set by tests/meson.build).

#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace golden {

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Compares `actual` with tests/golden/<name>. To regenerate the goldens after an intended
// change of the drawing, run the tests with TAPEGRAD_UPDATE_GOLDEN=1, e.g.
//   TAPEGRAD_UPDATE_GOLDEN=1 meson test -C build graph tensor_graph
// then read the diff (git diff tests/golden) before committing it.
inline void check(const std::string& name, const std::string& actual) {
  const std::filesystem::path path = std::filesystem::path(TAPEGRAD_GOLDEN_DIR) / name;
  const char* update = std::getenv("TAPEGRAD_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(path, std::ios::binary) << actual;
    MESSAGE("rewrote " << path.string());
    return;
  }
  REQUIRE_MESSAGE(std::filesystem::exists(path), "missing golden file "
                                                     << path.string()
                                                     << " (TAPEGRAD_UPDATE_GOLDEN=1 writes it)");
  CHECK(actual == read_file(path));
}

// How often `what` occurs in `text`.
inline std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace golden
