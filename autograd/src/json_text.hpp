// JSON strings safe inside an HTML <script> element, shared by the step plan (step_plan.cpp) and
// the graph model's JSON (graph_model.cpp), which pages embed.

#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <vector>

namespace ag {

// A JSON string that is also safe inside a <script> element: '<', '>' and '&' are written as
// \u escapes, so no "</script>" or "<!--" can end or confuse the element.
inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || c == '<' || c == '>' || c == '&') {
      out += fmt::format("\\u{:04x}", byte);
    } else {
      out += c;
    }
  }
  return out + '"';
}

inline std::string json_strings(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + json_string(items[i]);
  return out + "]";
}

}  // namespace ag
