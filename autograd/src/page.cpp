// The step-through page: the pass's steps as JSON, the graph's SVG, and the page's own small
// stylesheet and script (page_assets.hpp), in one HTML file (Note [The step-through page]).

#include "tapegrad/page.hpp"

#include <fmt/format.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "look.hpp"
#include "markup.hpp"
#include "page_assets.hpp"
#include "tapegrad/format.hpp"
#include "tapegrad/graph.hpp"
#include "tapegrad/step_plan.hpp"

namespace ag {
namespace {

// The template with each "{{name}}" in it replaced by its value, in one pass: a value is never
// searched, so text from a user cannot name a placeholder. An unknown name is a bug: it throws.
std::string fill(std::string_view text,
                 const std::map<std::string_view, std::string_view>& values) {
  std::string out;
  std::size_t at = 0;
  for (std::size_t open; (open = text.find("{{", at)) != std::string_view::npos;) {
    const std::size_t close = text.find("}}", open);
    out += text.substr(at, open - at);
    out += values.at(text.substr(open + 2, close - open - 2));
    at = close + 2;
  }
  return out += text.substr(at);
}

}  // namespace

std::string step_page(Tape& tape, Value output, const PageOptions& options) {
  tape.check(output, "step_page");
  const NodeId out = output.id();
  const std::string json = step_plan_json(tape, output);

  GraphOptions graph;
  graph.ids = true;
  std::string svg = render_graph(tape, out, "svg", graph);
  svg.erase(0, svg.find("<svg"));  // the XML prolog and doctype have no place inside HTML

  const std::string title = escape_html(options.title.empty() ? "tapegrad" : options.title);
  return fill(kPageHtml, {
                             {"title", title},
                             {"value", look::kValueColour},
                             {"grad", look::kGradColour},
                             {"step", look::kStepColour},
                             {"step_fill", look::kStepFill},
                             {"step_pen", look::kStepPen},
                             {"style", kPageStyle},
                             {"svg", svg},
                             {"data", json},
                             {"script", kPageScript},
                         });
}

}  // namespace ag
