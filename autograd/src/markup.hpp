// Escaping text for markup, shared by the graph model (HTML-like Graphviz labels,
// graph_model.cpp) and the step-through page (page.cpp).

#pragma once

#include <string>
#include <string_view>

namespace ag {

// Text inside an HTML-like Graphviz label, or HTML text and attribute values.
inline std::string escape_html(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace ag
