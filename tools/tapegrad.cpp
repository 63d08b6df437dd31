// The tapegrad command-line program: `grad`, `step` and `dot` on a small program of scalar
// statements (tools/program.hpp), `train` and `graph` on an nn MLP (tools/train.hpp), and
// `playground` (tools/playground.hpp). Bad input is one message on stderr and exit code 2.

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <new>
#include <optional>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/file.hpp>
#include <tapegrad/graph.hpp>
#include <tapegrad/page.hpp>
#include <vector>

#include "cli_options.hpp"
#include "command_line.hpp"
#include "html.hpp"
#include "playground.hpp"
#include "program.hpp"
#include "train.hpp"

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
  A program may start with '-' (tapegrad grad '-x^2' x=3); after '--' no word is an option.
  Functions (a fixed number such as alpha must be written as a number):)";

constexpr const char* kLanguageExamples = R"(

Example (CS231n's circuit):
  tapegrad grad 'q = x + y; f = q * z' x=-2 y=5 z=-4
  tapegrad step 'q = x + y; f = q * z' x=-2 y=5 z=-4 -o cs231n.svg
  tapegrad dot -f circuit.txt x=-2 y=5 z=-4 -o circuit.png

Exit status: 0 on success, 2 on bad input (with one message on stderr; no file is written).)";

// `tapegrad --help`: what each command is for, by example.
constexpr const char* kCommandsHelp = R"(Examples:
  tapegrad step 'q = x + y; f = q * z' x=-2 y=5 z=-4     forward and backward, step by step
  tapegrad html 'q = x + y; f = q * z' x=-2 y=5 z=-4 -o cs231n.html   the same as a page
  tapegrad train --data moons --seed 1                    train an MLP

tapegrad help COMMAND (or tapegrad COMMAND --help) shows a command's options and examples.
Exit status: 0 on success, 2 on bad input (with one message on stderr; no file is written).)";

// `tapegrad train --help` and `tapegrad graph --help`: their own examples, each cheap to run.
constexpr const char* kTrainHelp = R"(Examples:
  tapegrad train --data moons
  tapegrad train --data xor --hidden 8 --out sigmoid --lr 0.1 --epochs 300
  tapegrad train --data spirals --hidden 32,32 --act tanh --epochs 200 --plot plots
  tapegrad train --data moons --seed 1 --save moons.safetensors
  tapegrad train --resume moons.safetensors --epochs 150

Each epoch's line shows its mean loss and its "train acc": the fraction of its batches' rows
the model got right, each batch measured before the step it paid for. The final line's train
and test accuracy are the trained model's, after the last step, on every row of each set.
Exit status: 0 on success, 2 on bad input (with one message on stderr; no file is written).)";

constexpr const char* kGraphHelp = R"(Examples:
  tapegrad train --data moons --seed 1 --save moons.safetensors
  tapegrad graph moons.safetensors -o moons.svg
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
  int order = 1;          // grad --order: 2 also prints the second partials
  bool backward = false;  // dot --backward: draw the graph of the backward pass
  std::string frames;
  std::string output;
  std::string style = "lecture";
  bool check_finite = false;
};

// The program in a file, or on standard input for "-", within the program's size limit.
std::string read_source(const std::string& file) {
  return ag::read_file(file, tapegrad::kMaxProgramBytes, "");
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

void print_gradients(const ag::Tape& tape, const tapegrad::Program::Recorded& r,
                     std::string_view indent) {
  for (const ag::Value& input : r.inputs)
    fmt::print("{}{}\n", indent, ag::gradient_line(tape, r.output.id(), input.id()));
}

// grad --order 2: d²f/dx_i dx_j for every pair of inputs, row by row, from the gradient recorded
// on the tape and differentiated again (Note [Gradients on the tape]). Under --check-finite the
// recorded second pass runs in anomaly mode too, so a NaN there names its op.
std::vector<double> second_partials(ag::Tape& tape, const tapegrad::Program::Recorded& r,
                                    bool check_finite) {
  std::vector<double> hessian(r.inputs.size() * r.inputs.size());
  tape.set_check_finite(check_finite);
  tape.hessian(r.output, r.inputs, hessian);
  return hessian;
}

int run_grad(const Options& o) {
  const Loaded in = load(o);
  if (o.check_finite) check_finite(in);
  ag::Tape tape;
  const auto r = in.program.record(tape, in.values);
  tape.backward(r.output);
  const std::size_t n = r.inputs.size();
  const std::vector<double> hessian =
      o.order == 2 ? second_partials(tape, r, o.check_finite) : std::vector<double>{};
  if (o.json) {
    // Inputs in program order (Note [The command line's JSON]).
    tapegrad::Json grads = tapegrad::Json::object();
    for (std::size_t i = 0; i < n; ++i) grads[in.program.inputs()[i]] = r.inputs[i].grad();
    tapegrad::Json doc = {{"value", r.output.value()}, {"grad", std::move(grads)}};
    if (o.order == 2) {
      tapegrad::Json rows = tapegrad::Json::object();
      for (std::size_t i = 0; i < n; ++i) {
        tapegrad::Json row = tapegrad::Json::object();
        for (std::size_t j = 0; j < n; ++j) row[in.program.inputs()[j]] = hessian[i * n + j];
        rows[in.program.inputs()[i]] = std::move(row);
      }
      doc["hessian"] = std::move(rows);
    }
    fmt::print("{}\n", tapegrad::json_text(doc));
    return 0;
  }
  fmt::print("{} = {}\n", tape.label(r.output.id()), ag::format_number(r.output.value()));
  print_gradients(tape, r, "");
  if (o.order == 2)
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        fmt::print("{} = {}\n", tapegrad::second_partial_name(tape, r, i, j),
                   ag::format_number(hessian[i * n + j]));  // Note [Digits shown]
  return 0;
}

// Note [Frames are written whole]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// `step --frames DIR` writes its frames into a new directory beside DIR and renames it to DIR
// once the last frame is written, so DIR holds one run's frames or none: a failed run leaves
// nothing, and a shorter run cannot leave an older run's frames beside its own. DIR must be
// absent or empty (rename replaces only an empty directory, and we never delete what we did not
// create); missing parents are created, and removed again if the run fails.
class FramesDirectory {
 public:
  explicit FramesDirectory(const std::string& dir) : target_(without_trailing_slashes(dir)) {
    auto fail = [&](std::string_view why) {
      return ag::Error(fmt::format("--frames {}: {}", dir, why));
    };
    std::error_code ec;
    if (fs::exists(target_, ec)) {
      if (!fs::is_directory(target_, ec)) throw fail("a file has that name");
      if (!fs::is_empty(target_, ec))
        throw fail("the directory is not empty; frames go into a new or empty directory");
    }
    // The first missing ancestor is ours to remove if the run fails.
    for (fs::path p = target_.parent_path(); !p.empty() && !fs::exists(p, ec); p = p.parent_path())
      first_created_ = p;
    temporary_ = fs::path(fmt::format("{}.tmp-{}", target_.string(), ::getpid()));
    if (!fs::create_directories(temporary_, ec) || ec)
      throw fail(fmt::format("cannot create {}: {}", temporary_.string(),
                             ec ? ec.message() : "it exists"));
  }
  FramesDirectory(const FramesDirectory&) = delete;
  FramesDirectory& operator=(const FramesDirectory&) = delete;
  ~FramesDirectory() {
    if (committed_) return;
    std::error_code ec;
    fs::remove_all(first_created_.empty() ? temporary_ : first_created_, ec);
  }

  // Where the frames are written until commit().
  const fs::path& path() const { return temporary_; }

  void commit() {
    if (::rename(temporary_.c_str(), target_.c_str()) != 0)
      ag::fail("--frames {}: cannot rename {} to it: {}", target_.string(), temporary_.string(),
               std::strerror(errno));
    committed_ = true;
  }

 private:
  static fs::path without_trailing_slashes(std::string dir) {
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    return dir;
  }

  fs::path target_, temporary_, first_created_;
  bool committed_ = false;
};

int run_step(const Options& o) {
  const Loaded in = load(o);
  if (o.check_finite) check_finite(in);
  if (o.order == 2) {
    // Note [Stepping through the second backward] (program.cpp); its steps are text only.
    if (!o.output.empty() || !o.frames.empty())
      throw ag::Error(
          "step --order 2 prints the second backward as text: -o and --frames draw the first "
          "(tapegrad dot --backward draws the graph it records)");
    ag::Tape tape;
    const auto r = in.program.record(tape, in.values);
    for (const std::string& line : tapegrad::second_order_transcript(tape, r))
      fmt::print("{}\n", line);
    return 0;
  }
  if (!o.output.empty()) {
    check_graph_path(o.output);
    tapegrad::check_not_input(o.output, "-o", {o.file});
  }
  std::optional<FramesDirectory> frames_dir;
  if (!o.frames.empty()) frames_dir.emplace(o.frames);
  ag::Tape tape;
  const auto r = in.program.record(tape, in.values);
  const ag::NodeId out = r.output.id();
  // A graph past the budget is refused before the steps are printed, not after.
  if (!o.output.empty() || frames_dir) ag::check_drawing_budget(tape, out);

  // Frames are numbered with enough digits for every step, so they sort by name.
  const int width = std::max(3, static_cast<int>(fmt::format("{}", tape.size()).size()));
  ag::GraphOptions options = graph_options(o);
  std::size_t frames = 0;
  auto write_frame = [&](const ag::Step* step) {
    if (!frames_dir) return;
    options.step = step;
    const std::string name = fmt::format("step-{:0{}}.svg", frames++, width);
    ag::write_graph(tape, out, (frames_dir->path() / name).string(), options);
  };
  for (const std::string& line : tapegrad::step_transcript(tape, r, write_frame))
    fmt::print("{}\n", line);
  const std::size_t steps = frames == 0 ? 0 : frames - 1;
  if (!o.output.empty()) {
    tapegrad::create_parent_directories(o.output, fmt::format("cannot write {}", o.output));
    ag::write_graph(tape, out, o.output, graph_options(o));
  }
  if (frames_dir) {
    frames_dir->commit();
    fmt::print("{} frames written to {}\n", steps + 1, ag::printable(o.frames));
  }
  if (!o.output.empty()) fmt::print("graph written to {}\n", ag::printable(o.output));
  return 0;
}

int run_dot(const Options& o) {
  const Loaded in = load(o);
  if (o.check_finite) check_finite(in);
  if (!o.output.empty()) {
    check_graph_path(o.output);
    tapegrad::check_not_input(o.output, "-o", {o.file});
  }
  ag::Tape tape;
  const auto r = in.program.record(tape, in.values);
  ag::GraphOptions options = graph_options(o);
  std::vector<ag::Value> gradients;
  if (o.backward) {
    // Note [Drawing the backward pass]: backward recorded on the tape, then drawn whole.
    gradients = tape.grad(r.output, r.inputs, {.create_graph = true});
    options.wrt = r.inputs;
    options.gradients = gradients;
  } else {
    tape.backward(r.output);
  }
  if (o.output.empty()) {
    fmt::print("{}", ag::to_dot(tape, r.output.id(), options));
    return 0;
  }
  tapegrad::create_parent_directories(o.output, fmt::format("cannot write {}", o.output));
  ag::write_graph(tape, r.output.id(), o.output, options);
  fmt::print("graph written to {}\n", ag::printable(o.output));
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
  tapegrad::check_output_path(o.output, {".html", ".htm"}, "a page is written as .html", "page");
  tapegrad::check_not_input(o.output, "-o", {o.file});
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
  tapegrad::create_parent_directories(o.output, fmt::format("cannot write {}", o.output));
  ag::write_file_atomically(o.output, ag::step_page(tape, output, {.title = title}), "page");
  fmt::print("page written to {}\n", ag::printable(o.output));
  return 0;
}

// The command line as CLI11 is to read it: `help [COMMAND]` becomes `[COMMAND] --help`, and a
// command's arguments are checked and perhaps reordered (Note [Arguments before CLI11]). Throws
// ag::Error for no command, an unknown command or option, each named with the nearest known.
std::vector<std::string> prepare_arguments(const CLI::App& app,
                                           const std::vector<std::string>& commands,
                                           std::vector<std::string> args) {
  const std::string list = fmt::format("the commands are {}", fmt::join(commands, ", "));
  if (args.size() < 2) ag::fail("no command: {} (tapegrad help)", list);
  const auto check_command = [&](const std::string& word) {
    if (std::find(commands.begin(), commands.end(), word) != commands.end()) return;
    const std::optional<std::string> near = tapegrad::nearest(word, commands);
    ag::fail("unknown command '{}'{}; {} (tapegrad --help)", ag::printable(word),
             near ? fmt::format(" (did you mean {}?)", *near) : "", list);
  };
  if (args[1] == "help") {
    if (args.size() > 3) throw ag::Error("help takes one command at most: tapegrad help train");
    if (args.size() == 2 || args[2] == "help") return {args[0], "--help"};
    check_command(args[2]);
    return {args[0], args[2], "--help"};
  }
  if (args[1].starts_with('-')) {  // --help, --version: options of tapegrad itself
    if (app.get_option_no_throw(args[1]) != nullptr) return args;
    const std::optional<std::string> near = tapegrad::nearest(args[1], tapegrad::option_names(app));
    throw ag::Error(
        fmt::format("unknown option '{}'{}; tapegrad's own options are --help and "
                    "--version, and a command's own come after its name",
                    ag::printable(args[1]), near ? fmt::format(" (did you mean {}?)", *near) : ""));
  }
  check_command(args[1]);
  const CLI::App& command = *app.get_subcommand(args[1]);
  const bool takes_program = command.get_option_no_throw("PROGRAM") != nullptr;
  std::vector<std::string> rest = tapegrad::check_arguments(
      command, std::vector<std::string>(args.begin() + 2, args.end()), takes_program);
  rest.insert(rest.begin(), args.begin(), args.begin() + 2);
  return rest;
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
  // Past `ulimit -f` a write fails with EFBIG, and is reported and cleaned up like any other
  // failed write, instead of SIGXFSZ killing the process with a temporary file left behind.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{
      "tapegrad: reverse-mode automatic differentiation of a small program of scalar statements,\n"
      "shown the way the lecture draws backprop; and training an MLP (train) and drawing it "
      "(graph).",
      "tapegrad"};  // the usage line says "tapegrad", not the path it was run by
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("tapegrad ") + TAPEGRAD_VERSION,
                       "Print tapegrad's version and exit");
  app.footer(kCommandsHelp);
  Options o;
  CLI::App* grad = add_command(app, "grad", "Print the output's value and its gradients", o);
  grad->add_flag("--json", o.json,
                 "Print one JSON object {\"value\": V, \"grad\": {\"x\": G, ...}} (inputs in order "
                 "of first appearance; NaN and infinities are written as null)");
  grad->add_option("--order", o.order,
                   "1 prints the gradient; 2 also prints every second partial d²f/dx dy (the "
                   "gradient recorded on the tape and differentiated again), and --json adds "
                   "\"hessian\": {\"x\": {\"x\": H, \"y\": H, ...}, ...}")
      ->check(CLI::Range(1, 2))
      ->default_val(1);
  CLI::App* step = add_command(
      app, "step",
      "Print the forward values, every backward step as the chain rule, and the gradients", o);
  step->add_option("--frames", o.frames,
                   "Also write one SVG per step into DIR (created if needed): step-000.svg is "
                   "the forward pass, step-001.svg the first step highlighted, ...")
      ->type_name("DIR");
  add_graph_options(step, o, "Write the graph after backward to FILE (.dot, .svg or .png)");
  step->add_option("--order", o.order,
                   "1 steps through backward; 2 also shows the nodes that backward records with "
                   "create_graph, evaluated forward, then steps through the second backward from "
                   "each gradient and prints its row of second partials d²f/dx dy")
      ->check(CLI::Range(1, 2))
      ->default_val(1);
  CLI::App* dot = add_command(
      app, "dot", "Run forward and backward, then print the graph as DOT (or render it)", o);
  add_graph_options(dot, o, "Render to FILE instead, by its extension: .dot, .svg or .png");
  dot->add_flag("--backward", o.backward,
                "Draw the graph backward records with create_graph: the forward nodes grey, each "
                "node of the backward pass labelled with the rule it came from (lecture style)");
  CLI::App* html = add_command(
      app, "html", "Write one HTML page that steps through forward and backward as a lecture does",
      o);
  html->add_option("-o,--output", o.output, "The page to write (.html)")->type_name("FILE");
  tapegrad::MlpExample mlp;
  tapegrad::add_mlp_options(html, mlp);
  html->footer(language_help() + "\n\n" + tapegrad::kHtmlHelp);
  const tapegrad::NnCommands nn_commands = tapegrad::add_nn_commands(app);
  // After train's own table of its defaults per data set.
  nn_commands.train->footer(nn_commands.train->get_footer() + "\n" + kTrainHelp);
  nn_commands.graph->footer(kGraphHelp);
  std::string playground_output;
  CLI::App* playground = tapegrad::add_playground_command(app, playground_output);

  std::vector<std::string> commands;  // in the order of --help
  for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    commands.push_back(sub->get_name());
  std::vector<std::string> args(argv, argv + argc);
  try {
    args = prepare_arguments(app, commands, std::move(args));
  } catch (const ag::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return kBadInput;
  }
  std::vector<const char*> words;
  for (const std::string& arg : args) words.push_back(arg.c_str());

  try {
    app.parse(static_cast<int>(words.size()), words.data());
  } catch (const CLI::ParseError& e) {
    // train and graph say what is wrong in one line, as for every other error they report.
    if (e.get_exit_code() != 0 && (nn_commands.train->parsed() || nn_commands.graph->parsed() ||
                                   html->parsed() || playground->parsed())) {
      fmt::print(stderr, "error: {}\n", ag::printable(e.what()));
      return kBadInput;
    }
    return app.exit(e) == 0 ? 0 : kBadInput;  // --help is a success; a usage error is not
  }

  try {
    int status = 0;
    if (grad->parsed())
      status = run_grad(o);
    else if (step->parsed())
      status = run_step(o);
    else if (html->parsed())
      status = run_html(o, mlp);
    else if (playground->parsed())
      status = tapegrad::run_playground(playground_output);
    else if (nn_commands.train->parsed() || nn_commands.graph->parsed())
      status = tapegrad::run_nn_command(nn_commands);
    else
      status = run_dot(o);
    tapegrad::check_standard_output();
    return status;
  } catch (const ag::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return kBadInput;
  } catch (const std::bad_alloc&) {
    // Sizes are checked before anything large is built; what still runs out is an input too big
    // for this machine's memory, which is the user's to change.
    std::fflush(stdout);
    fmt::print(stderr, "error: out of memory\n");
    return kBadInput;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", ag::printable(e.what()));
    return 1;
  }
}
