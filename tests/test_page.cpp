// The step-through page (ag::step_page): its steps are the formatters' lines, its SVG has the ids
// the steps name, and nothing a user names can break out of the HTML or the JSON in it.

#include <doctest/doctest.h>

#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/page.hpp>

using namespace ag;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

}  // namespace

TEST_CASE("the CS231n circuit: the inputs, two ops, two backward steps, tapegrad step's lines") {
  Tape tape;
  Value x = tape.input(-2.0, "x"), y = tape.input(5.0, "y"), z = tape.input(-4.0, "z");
  Value q = (x + y).named("q");
  Value f = (q * z).named("f");
  const std::string page = step_page(tape, f, {.title = "CS231n"});

  CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(contains(page, "<title>CS231n</title>"));
  CHECK(count(page, R"({"phase": "forward")") == 3);
  CHECK(count(page, R"({"phase": "backward")") == 2);
  // The leaves are one step, as a lecture writes the given values down first.
  CHECK(contains(page, R"({"phase": "forward", "nodes": ["n0", "n1", "n2"], "edges": ["e3_0", )"
                       R"("e3_1", "e4_1"], "shows": ["e3_0", "e3_1", "e4_1"], "heading": "the )"
                       R"(inputs", "lines": ["x = -2", "y = 5", "z = -4"]})"));
  CHECK(contains(page, R"("nodes": ["n3"], "edges": ["e4_0"], "shows": ["e4_0"], "heading": "", )"
                       R"("lines": ["q = x + y = 3"]})"));
  CHECK(contains(page, R"("nodes": ["n4"], "edges": ["e4_0", "e4_1"], "shows": ["e_out", "e4_0", )"
                       R"("e4_1"], "heading": "step 1: f = q * z", "lines": ["df/df = 1", )"
                       R"("df/dq = df/df · ∂f/∂q = 1 · -4 = -4", )"
                       R"("df/dz = df/df · ∂f/∂z = 1 · 3 = 3"]})"));
  CHECK(contains(page, R"("gradients": ["df/dx = -4", "df/dy = -4", "df/dz = 3"])"));
  // Every id a step names is in the SVG, which carries every label from the start.
  for (const char* id : {"n0", "n1", "n2", "n3", "n4", "e3_0", "e3_1", "e4_0", "e4_1", "e_out"})
    CHECK_MESSAGE(contains(page, fmt::format(R"(<g id="{}" class=)", id)), id);
  CHECK(contains(page, R"(fill="darkred">&#45;4</text>)"));
  CHECK(!contains(page, "<?xml"));
  // Nothing from elsewhere: no src or href at all (the xmlns are names, not addresses).
  CHECK(!contains(page, "src="));
  CHECK(!contains(page, "href="));
  // The tape is left as after backward.
  CHECK(x.grad() == -4);
  CHECK(z.grad() == 3);
}

TEST_CASE("a fork adds up; an unnamed constant's value shows from the start") {
  Tape tape;
  Value x = tape.input(3.0, "x");
  Value f = (x * x * 2.0).named("f");
  const std::string page = step_page(tape, f);
  CHECK(contains(page, "<title>tapegrad</title>"));
  CHECK(contains(page, R"("known": ["e3_1"])"));      // the 2 feeding f
  CHECK(count(page, R"({"phase": "forward")") == 3);  // x, x * x, f: not the 2
  CHECK(contains(page, R"("shows": ["e1_0", "e1_1"])"));
  CHECK(contains(page, "df/dx += df/dt1 · ∂t1/∂x = 2 · 3 = 6, so df/dx = 12"));
}

TEST_CASE("names cannot end the script or the title, nor fake a placeholder") {
  Tape tape;
  Value x = tape.input(1.0, "</script><b>\"&x");
  Value f = (x * 2.0).named("f");
  const std::string page =
      step_page(tape, f, {.title = "</title><script>alert(1)</script> {{svg}} & \"q\""});
  CHECK(count(page, "</script>") == 2);  // the page's own two
  CHECK(count(page, "<svg") == 1);
  CHECK(contains(page,
                 "<title>&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt; {{svg}} &amp; "
                 "&quot;q&quot;</title>"));
  CHECK(contains(page, R"(\u003c/script\u003e\u003cb\u003e\"\u0026x = 1)"));
}

TEST_CASE("a graph too large to follow is refused") {
  Tape tape;
  Value v = tape.input(1.0, "x");
  for (std::size_t i = 0; i < kMaxPageNodes; ++i) v = v * 1.0;
  CHECK_THROWS_WITH_AS(step_page(tape, v), doctest::Contains("too large to follow step by step"),
                       Error);
}
