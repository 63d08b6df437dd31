// The tapegrad command-line program: `grad`, `step` and `dot` on a small program of scalar
// statements (tools/program.hpp), and `train` and `graph` on an nn MLP (tools/train.hpp). Bad
// input is one message on stderr and exit code 2.

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <tapegrad/autograd.hpp>
#include <tapegrad/file.hpp>
#include <tapegrad/graph.hpp>
#include <tapegrad/page.hpp>

#include "html.hpp"
#include "program.hpp"
#include "train.hpp"

namespace tapegrad {

// Checks that `path` ends in one of `extensions` (any case) and can be written before
// anything is computed or written, so a bad name costs nothing and leaves nothing behind.
void check_output_path(const std::string& path, std::initializer_list<std::string_view> extensions,
                       std::string_view formats) {
  const std::filesystem::path p(path);
  const std::string ext = p.extension().string();
  std::string lower = ext;  // ag::write_graph takes any case: .SVG too
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (std::find(extensions.begin(), extensions.end(), lower) == extensions.end())
    throw ag::Error(fmt::format("cannot write {}: {}; {}", path,
                                ext.empty() ? std::string("it has no extension")
                                            : fmt::format("unknown extension '{}'", ext),
                                formats));
  const std::filesystem::path dir = p.parent_path();
  std::error_code ec;
  if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
    throw ag::Error(fmt::format("cannot write {}: {} is not a directory", path, dir.string()));
  if (std::filesystem::is_directory(p, ec))
    throw ag::Error(fmt::format("cannot write {}: it is a directory", path));
}

void check_graph_path(const std::string& path) {
  check_output_path(path, {".dot", ".svg", ".png"}, "the graph formats are .dot, .svg and .png");
}

}  // namespace tapegrad

namespace {

namespace fs = std::filesystem;
using tapegrad::check_graph_path;

constexpr int kBadInput = 2;  // DESIGN.md: every error a user can cause exits with 2

constexpr const char* kLanguageIntro = R"(The program:
  Statements separated by ';' or newlines; '#' starts a comment. 'name = expr' binds a name;
  binding it again is allowed (the graph calls later versions x', x'', x''', x'4, ...). The
  last statement is the output; it may be a bare expression, then named 'out'. 'y = x' makes
  y another name for x's node. Every other name is an input and needs NAME=VALUE.
  Numbers: 2, -0.5, .5, 1e-3. Operators, loosest first: + -, * /, unary -, then ^ (or **),
  right-associative and tighter than unary minus as in Python (-x^2 is -(x^2)).
  A program starting with '-' goes after '--': tapegrad grad -- '-x^2' x=3
  Functions (a fixed number such as alpha must be written as a number):)";

constexpr const char* kLanguageExamples = R"(

Example (CS231n's circuit):
  tapegrad grad 'q = x + y; f = q * z' x=-2 y=5 z=-4
  tapegrad step 'q = x + y; f = q * z' x=-2 y=5 z=-4 -o cs231n.svg
  tapegrad dot -f circuit.txt x=-2 y=5 z=-4 -o circuit.png

Exit status: 0 on success, 2 on bad input (with one message on stderr; no file is written).)";

// The language help, its list of functions read from the op table: one line per function.
std::string language_help() {
  std::string help = kLanguageIntro;
  for (const tapegrad::FunctionInfo& f : tapegrad::functions())
    help += fmt::format("\n    {:<24}{}", f.signature, f.help);
  return help + kLanguageExamples;
}

struct Options {
  std::vector<std::string> args;  // PROGRAM NAME=VALUE..., or only NAME=VALUE... with -f
  std::string file;
  bool json = false;
  std::string frames;
  std::string output;
  std::string style = "lecture";
  bool check_finite = false;
};

std::string read_source(const std::string& file) {
  std::ostringstream text;
  if (file == "-") {
    text << std::cin.rdbuf();
    if (std::cin.bad()) throw ag::Error("cannot read the program from standard input");
    return text.str();
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ag::Error(fmt::format("cannot read {}: {}", file, std::strerror(errno)));
  text << in.rdbuf();
  if (in.bad()) throw ag::Error(fmt::format("cannot read {}", file));
  return text.str();
}

struct Loaded {
  tapegrad::Program program;
  std::vector<double> values;
};

Loaded load(const Options& o) {
  std::string source;
  std::span<const std::string> assignments(o.args);
  if (o.file.empty()) {
    if (o.args.empty())
      throw ag::Error("no program: give it as the first argument, or in a file with -f FILE");
    source = o.args.front();
    assignments = assignments.subspan(1);
  } else {
    source = read_source(o.file);
  }
  tapegrad::Program program(source);
  std::vector<double> values = program.input_values(assignments);
  return {std::move(program), std::move(values)};
}

// --check-finite: records the program and runs backward in anomaly mode (Note [Anomaly mode]) on
// a tape of its own before anything is printed or written, so that a NaN or an infinity is
// one message naming its op, exit code 2, and no partial output. The forward check runs after
// recording, when the program has named its nodes, so the message has their names.
void check_finite(const Loaded& in) {
  ag::Tape tape;
  const auto r = in.program.record(tape, in.values);
  tape.check_forward();
  tape.set_check_finite(true);
  tape.backward(r.output);
}

ag::GraphOptions graph_options(const Options& o) {
  return {.style = o.style == "values" ? ag::GraphStyle::values : ag::GraphStyle::lecture};
}

// JSON has no NaN or infinity: they become null. fmt's {} is the shortest text that reads
// back as the same double.
std::string json_number(double x) { return std::isfinite(x) ? fmt::format("{}", x) : "null"; }

void print_gradients(const ag::Tape& tape, const tapegrad::Program::Recorded& r,
                     std::string_view indent) {
  for (const ag::Value& input : r.inputs)
    fmt::print("{}{}\n", indent, ag::gradient_line(tape, r.output.id(), input.id()));
}

int run_grad(const Options& o) {
  const Loaded in = load(o);
  if (o.check_finite) check_finite(in);
  ag::Tape tape;
  const auto r = in.program.record(tape, in.values);
  tape.backward(r.output);
  if (o.json) {
    std::string grads;
    for (std::size_t i = 0; i < r.inputs.size(); ++i)
      fmt::format_to(std::back_inserter(grads), "{}\"{}\": {}", i == 0 ? "" : ", ",
                     in.program.inputs()[i], json_number(r.inputs[i].grad()));
    fmt::print("{{\"value\": {}, \"grad\": {{{}}}}}\n", json_number(r.output.value()), grads);
    return 0;
  }
  fmt::print("{} = {}\n", tape.label(r.output.id()), r.output.value());
  print_gradients(tape, r, "");
  return 0;
}

int run_step(const Options& o) {
  const Loaded in = load(o);
  if (o.check_finite) check_finite(in);
  if (!o.output.empty()) check_graph_path(o.output);
  if (!o.frames.empty()) {
    std::error_code ec;
    fs::create_directories(o.frames, ec);
    if (ec || !fs::is_directory(o.frames))
      throw ag::Error(fmt::format("cannot create the frames directory {}: {}", o.frames,
                                  ec ? ec.message() : "a file has that name"));
  }
  ag::Tape tape;
  const auto r = in.program.record(tape, in.values);
  const ag::NodeId out = r.output.id();

  fmt::print("forward\n");
  for (ag::NodeId id = 0; id < tape.size(); ++id)
    if (const std::string line = ag::forward_line(tape, id); !line.empty())
      fmt::print("  {}\n", line);

  // Frames are numbered with enough digits for every step, so they sort by name.
  const int width = std::max(3, static_cast<int>(fmt::format("{}", tape.size()).size()));
  auto frame = [&](std::size_t i) {
    return (fs::path(o.frames) / fmt::format("step-{:0{}}.svg", i, width)).string();
  };
  ag::GraphOptions options = graph_options(o);
  if (!o.frames.empty()) ag::write_graph(tape, out, frame(0), options);

  fmt::print("backward\n");
  ag::Stepper stepper = tape.stepper(r.output);
  std::size_t steps = 0;
  while (stepper.next()) {
    ++steps;
    const ag::Step& step = stepper.step();
    fmt::print("  {}\n", ag::step_heading(step));
    std::string lines = fmt::format("{}", step);
    for (std::size_t at = 0; at < lines.size();) {
      std::size_t end = lines.find('\n', at);
      if (end == std::string::npos) end = lines.size();
      fmt::print("    {}\n", std::string_view(lines).substr(at, end - at));
      at = end + 1;
    }
    if (!o.frames.empty()) {
      options.step = &step;
      ag::write_graph(tape, out, frame(steps), options);
    }
  }
  if (steps == 0) fmt::print("  (no steps: the output depends on no input)\n");

  fmt::print("gradients\n");
  print_gradients(tape, r, "  ");
  if (!o.frames.empty())
    fmt::print("{} frames written to {}\n", steps + 1, fs::path(o.frames).string());
  if (!o.output.empty()) {
    ag::write_graph(tape, out, o.output, graph_options(o));
    fmt::print("graph written to {}\n", o.output);
  }
  return 0;
}

int run_dot(const Options& o) {
  const Loaded in = load(o);
  if (o.check_finite) check_finite(in);
  if (!o.output.empty()) check_graph_path(o.output);
  ag::Tape tape;
  const auto r = in.program.record(tape, in.values);
  tape.backward(r.output);
  if (o.output.empty()) {
    fmt::print("{}", ag::to_dot(tape, r.output.id(), graph_options(o)));
    return 0;
  }
  ag::write_graph(tape, r.output.id(), o.output, graph_options(o));
  fmt::print("graph written to {}\n", o.output);
  return 0;
}

// The page's title: the program on one line, cut short when long, and its inputs.
std::string page_title(const Options& o) {
  std::string program;
  std::span<const std::string> inputs(o.args);
  if (o.file.empty()) {
    bool space = false, line_break = false;  // line breaks become "; ", other spaces one ' '
    for (const char c : o.args.front()) {
      if (c == '\n') {
        line_break = true;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        space = true;
      } else {
        if (line_break && !program.empty() && program.back() != ';') program += ';';
        if ((space || line_break) && !program.empty()) program += ' ';
        program += c;
        space = line_break = false;
      }
    }
    inputs = inputs.subspan(1);
  } else {
    program = o.file == "-" ? "standard input" : o.file;
  }
  constexpr std::size_t kLongest = 100;
  if (program.size() > kLongest) {
    std::size_t cut = kLongest;  // not inside a UTF-8 character
    while (cut > 0 && (static_cast<unsigned char>(program[cut]) & 0xC0) == 0x80) --cut;
    program = program.substr(0, cut) + "\u2026";
  }
  return inputs.empty() ? program : fmt::format("{} \u00b7 {}", program, fmt::join(inputs, " "));
}

// The step-through page of the program, or of --mlp's net, written to -o.
int run_html(const Options& o, const tapegrad::MlpExample& mlp) {
  if (o.output.empty()) throw ag::Error("no page to write: give -o PAGE.html");
  tapegrad::check_output_path(o.output, {".html", ".htm"}, "a page is written as .html");
  ag::Tape tape;
  ag::Value output;
  std::string title;
  if (!mlp.sizes.empty()) {
    if (!o.args.empty() || !o.file.empty())
      throw ag::Error("--mlp steps through an MLP: give no program with it");
    const tapegrad::RecordedMlp r = tapegrad::record_mlp(tape, mlp);
    output = r.loss;
    title = r.title;
  } else {
    const Loaded in = load(o);
    output = in.program.record(tape, in.values).output;
    title = page_title(o);
  }
  ag::write_file_atomically(o.output, ag::step_page(tape, output, {.title = title}), "page");
  fmt::print("page written to {}\n", o.output);
  return 0;
}

// The options every subcommand shares: the program and its inputs.
CLI::App* add_command(CLI::App& app, const char* name, const char* description, Options& o) {
  CLI::App* sub = app.add_subcommand(name, description);
  sub->add_option("PROGRAM", o.args,
                  "The program, then NAME=VALUE for each input (only NAME=VALUE with -f)")
      ->type_name("NAME=VALUE");
  sub->add_option("-f,--file", o.file, "Read the program from FILE ('-': standard input)")
      ->type_name("FILE");
  sub->add_flag("--check-finite", o.check_finite,
                "Anomaly mode: stop at the first op whose value or gradient is NaN or infinite, "
                "naming it, its inputs' values and the input its gradient went to (exit code 2, "
                "nothing printed or written)");
  sub->footer(language_help());
  return sub;
}

void add_graph_options(CLI::App* sub, Options& o, const char* output_help) {
  sub->add_option("-o,--output", o.output, output_help)->type_name("FILE");
  sub->add_option("--style", o.style,
                  "Graph style: lecture (edges labelled with value and gradient, the default) "
                  "or values (micrograd's name | data | grad boxes)")
      ->type_name("STYLE")
      ->check(CLI::IsMember({"lecture", "values"}));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tapegrad: reverse-mode automatic differentiation of a small program of scalar statements,\n"
      "shown the way the lecture draws backprop; and training an MLP (train) and drawing it (graph)."};
  app.require_subcommand(1);
  app.footer(language_help());
  Options o;
  CLI::App* grad = add_command(app, "grad", "Print the output's value and its gradients", o);
  grad->add_flag("--json", o.json,
                 "Print one JSON object {\"value\": V, \"grad\": {\"x\": G, ...}} (inputs in order "
                 "of first appearance; NaN and infinities are written as null)");
  CLI::App* step = add_command(
      app, "step",
      "Print the forward values, every backward step as the chain rule, and the gradients", o);
  step->add_option("--frames", o.frames,
                   "Also write one SVG per step into DIR (created if needed): step-000.svg is "
                   "the forward pass, step-001.svg the first step highlighted, ...")
      ->type_name("DIR");
  add_graph_options(step, o, "Write the graph after backward to FILE (.dot, .svg or .png)");
  CLI::App* dot = add_command(
      app, "dot", "Run forward and backward, then print the graph as DOT (or render it)", o);
  add_graph_options(dot, o, "Render to FILE instead, by its extension: .dot, .svg or .png");
  CLI::App* html = add_command(
      app, "html", "Write one HTML page that steps through forward and backward as a lecture does",
      o);
  html->add_option("-o,--output", o.output, "The page to write (.html)")->type_name("FILE");
  tapegrad::MlpExample mlp;
  tapegrad::add_mlp_options(html, mlp);
  html->footer(language_help() + "\n\n" + tapegrad::kHtmlHelp);
  const tapegrad::NnCommands nn_commands = tapegrad::add_nn_commands(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // train and graph say what is wrong in one line, as for every other error they report.
    if (e.get_exit_code() != 0 &&
        (nn_commands.train->parsed() || nn_commands.graph->parsed() || html->parsed())) {
      fmt::print(stderr, "error: {}\n", e.what());
      return kBadInput;
    }
    return app.exit(e) == 0 ? 0 : kBadInput;  // --help is a success; a usage error is not
  }

  try {
    if (grad->parsed()) return run_grad(o);
    if (step->parsed()) return run_step(o);
    if (html->parsed()) return run_html(o, mlp);
    if (nn_commands.train->parsed() || nn_commands.graph->parsed())
      return tapegrad::run_nn_command(nn_commands);
    return run_dot(o);
  } catch (const ag::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return kBadInput;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
