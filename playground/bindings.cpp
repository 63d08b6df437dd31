// The playground's WebAssembly module: the program language, the core and nn's network lab
// behind a few embind functions that take text and return JSON, which the page's worker
// (worker.js) calls.

#include <emscripten/bind.h>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <tapegrad/core.hpp>
#include <vector>

#include "json_text.hpp"
#include "network_lab.hpp"
#include "program.hpp"

namespace {

// Note [The playground's JSON]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Every function returns one JSON object, {"error": "error: ..."} when the input is bad: the
// message the CLI prints on stderr for the same input, caret and all. Numbers are written as
// the CLI's JSON writes them (Note [The command line's JSON], tools/cli_options.hpp): the
// shortest text that reads back as the same double, NaN and infinities as null. JavaScript's
// JSON.parse gives back the very double the engine computed, so the page and `tapegrad grad
// --json` agree to the last digit.

std::string json_number(double x) { return std::isfinite(x) ? fmt::format("{}", x) : "null"; }

// Strings as the step plan and the graph model write them (autograd/src/json_text.hpp).
using ag::json_string;
using ag::json_strings;

std::string error_json(std::string_view message) {
  return "{\"error\": " + json_string(fmt::format("error: {}", message)) + "}";
}

// Runs `body`, turning what the CLI reports as bad input into error_json.
template <class Body> std::string reporting(Body body) {
  try {
    return body();
  } catch (const ag::Error& e) {
    return error_json(e.what());
  } catch (const tapegrad::Json::exception& e) {  // a bug of ours rather than bad input: say it
    return error_json(fmt::format("internal JSON error: {}", e.what()));
  } catch (const std::bad_alloc&) {
    return error_json("out of memory");
  }
}

// NAME=VALUE lines, as the command line takes them one an argument.
std::vector<std::string> split_assignments(const std::string& text) {
  std::vector<std::string> items;
  for (std::size_t at = 0; at < text.size();) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (end > at) items.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return items;
}

// The `grad --json` object of a recorded program after backward, its inputs called `names`.
std::string grad_object(std::span<const std::string> names, const tapegrad::Program::Recorded& r) {
  std::string grads;
  for (std::size_t i = 0; i < r.inputs.size(); ++i)
    grads += fmt::format("{}{}: {}", i ? ", " : "", json_string(names[i]),
                         json_number(r.inputs[i].grad()));
  return fmt::format("{{\"value\": {}, \"grad\": {{{}}}}}", json_number(r.output.value()), grads);
}

// {"inputs": [NAME...]}: the inputs a program reads, in order of first appearance. Every function
// takes the assignments, so that the worker calls each alike; this one has no use for them.
std::string inputs(const std::string& source, const std::string& /*assignments*/) {
  return reporting([&] {
    const tapegrad::Program program(source);
    return "{\"inputs\": " + json_strings(program.inputs()) + "}";
  });
}

// `tapegrad grad --json PROGRAM NAME=VALUE...`'s object.
std::string grad(const std::string& source, const std::string& assignments) {
  return reporting([&] {
    const tapegrad::Program program(source);
    const std::vector<double> values = program.input_values(split_assignments(assignments));
    ag::Tape tape;
    const auto r = program.record(tape, values);
    tape.backward(r.output);
    return grad_object(program.inputs(), r);
  });
}

// {"lines": [...]}: what `tapegrad step PROGRAM NAME=VALUE...` prints.
std::string step(const std::string& source, const std::string& assignments) {
  return reporting([&] {
    const tapegrad::Program program(source);
    const std::vector<double> values = program.input_values(split_assignments(assignments));
    ag::Tape tape;
    const auto r = program.record(tape, values);
    return "{\"lines\": " + json_strings(tapegrad::step_transcript(tape, r)) + "}";
  });
}

// What the graph lab shows is recorded again with other values for its inputs (central
// differences, anomaly mode, the transcript): a program, or a network lab point (net_point).
using Recorder =
    std::function<tapegrad::Program::Recorded(ag::Tape& tape, std::span<const double> values)>;

// The message of `tapegrad grad --check-finite` (Note [Anomaly mode]) when the program's value or
// a gradient is NaN or infinite, naming the op where it first appears; "" when all are finite.
std::string non_finite_message(const Recorder& record, std::span<const double> values) {
  ag::Tape tape;
  const auto r = record(tape, values);
  try {
    tape.check_forward();
    tape.set_check_finite(true);
    tape.backward(r.output);
  } catch (const ag::Error& e) {
    return e.what();
  }
  return "";
}

// Note [Central differences in the playground]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The toggle beside each gradient shows (f(x + h) - f(x - h)) / 2h, the program run twice more
// per input, in double precision with h = 1e-6 max(1, |x|): its error is O(h^2) from the curve
// and O(eps / h) from rounding, both near 1e-10 relative for smooth programs. At a kink (relu at
// 0, abs at 0) it is the average of the two sides, which may differ from the gradient the op
// table's kink policy chooses: the page shows both, which is the point of the toggle.
std::vector<double> central_differences(const Recorder& record, std::vector<double> values) {
  std::vector<double> differences;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double x = values[i];
    const double h = 1e-6 * std::max(1.0, std::abs(x));
    auto output_at = [&](double xi) {
      values[i] = xi;
      ag::Tape tape;
      return record(tape, values).output.value();
    };
    differences.push_back((output_at(x + h) - output_at(x - h)) / (2 * h));
    values[i] = x;
  }
  return differences;
}

// Everything the graph lab shows for one edit: the grad object, the inputs, the graph model
// (lecture style, with ids, after the whole pass), the step plan (Note [The step plan]) or, for
// a graph too large to step through, `tapegrad step`'s lines, the central differences and, for
// a NaN or an infinity, anomaly mode's message. Of a program (analyse) or a network lab point
// (net_point): `record` records it with `values` for its inputs, called `names`; `more` is JSON
// members to add ("key": value, ...).
std::string analysis(const Recorder& record, const std::vector<std::string>& names,
                     const std::vector<double>& values, std::string_view more) {
  ag::Tape tape;
  const auto r = record(tape, values);
  // Refused before any work past the recording: the page keeps its last graph.
  ag::check_drawing_budget(tape, r.output.id());
  // The plan runs the backward pass. A graph too large to follow step by step (it refuses
  // before the pass) is still drawn and its gradients shown, whole.
  std::string plan;
  bool whole = false;
  try {
    plan = ag::step_plan_json(tape, r.output);
  } catch (const ag::Error&) {
    if (tape.size() <= ag::kMaxPageNodes) throw;  // not the size: a bug to report
    tape.backward(r.output);
    whole = true;
    plan = fmt::format(
        R"({{"colours": [], "known": [], "gradients": [], "steps": [], "refused": {}}})",
        json_string(fmt::format("Stepping is for graphs of at most {} nodes; this one is shown "
                                "whole, with every value and gradient.",
                                ag::kMaxPageNodes)));
  }

  // The log shows the plan's lines; `tapegrad step`'s own only when there is no plan. Text is
  // what costs here: with -fexceptions every call that may unwind goes through JavaScript.
  std::vector<std::string> lines;
  if (whole) {
    ag::Tape stepped;
    lines = tapegrad::step_transcript(stepped, record(stepped, values));
  }

  ag::GraphOptions options;
  options.ids = true;
  const std::string graph = ag::graph_model_json(ag::graph_model(tape, r.output.id(), options));

  std::string differences;
  const std::vector<double> fd = central_differences(record, values);
  for (std::size_t i = 0; i < fd.size(); ++i)
    differences +=
        fmt::format("{}{}: {}", i ? ", " : "", json_string(names[i]), json_number(fd[i]));
  bool finite = std::isfinite(r.output.value());
  for (const ag::Value& input : r.inputs) finite = finite && std::isfinite(input.grad());
  const std::string warning = finite ? "" : non_finite_message(record, values);
  return fmt::format(
      "{{\"result\": {}, \"inputs\": {}, \"label\": {}, \"lines\": {}, \"fd\": {{{}}}, "
      "\"warning\": {}, \"nodes\": {}, {}\"plan\": {}, \"graph\": {}}}",
      grad_object(names, r), json_strings(names), json_string(tape.label(r.output.id())),
      json_strings(lines), differences, json_string(warning), tape.size(), more, plan, graph);
}

// The graph lab's object for a program and its inputs' values (NAME=VALUE lines).
std::string analyse(const std::string& source, const std::string& assignments) {
  return reporting([&] {
    const tapegrad::Program program(source);
    const std::vector<double> values = program.input_values(split_assignments(assignments));
    return analysis(
        [&](ag::Tape& tape, std::span<const double> at) { return program.record(tape, at); },
        program.inputs(), values, "");
  });
}

// ---- the network lab (tools/network_lab.hpp; the protocol: playground/README.md) ----

// The one session of the page: net_create replaces it, net_train and net_snapshot read it.
std::unique_ptr<tapegrad::NetworkLab> session;

// net_create(config): the data and the model `tapegrad train` builds from the same options.
std::string net_create(const std::string& config) {
  return reporting([&] {
    auto next = std::make_unique<tapegrad::NetworkLab>(tapegrad::options_from_config(config));
    session = std::move(next);  // a bad config keeps the session there was
    return tapegrad::json_text(session->created());
  });
}

tapegrad::NetworkLab& current_session(std::string_view function) {
  if (!session) ag::fail("{}: no network yet: call net_create(config) first", function);
  return *session;
}

// net_train(epochs): that many more epochs, then a snapshot.
std::string net_train(int epochs) {
  return reporting([&] { return tapegrad::json_text(current_session("net_train").train(epochs)); });
}

std::string net_snapshot() {
  return reporting([&] { return tapegrad::json_text(current_session("net_snapshot").snapshot()); });
}

// net_point(x1, x2): analyse's object for one point's forward and backward pass through the
// current weights (Note [A point's pass in the graph lab], tools/network_lab.hpp), with "point":
// where it is, its target class and whether that is the data point's label or the prediction.
std::string net_point(double x1, double x2) {
  return reporting([&] {
    tapegrad::NetworkLab& lab = current_session("net_point");
    const tapegrad::NetworkLab::Point point = lab.point(x1, x2);
    const auto record = [&](ag::Tape& tape, std::span<const double> values) {
      tapegrad::NetworkLab::RecordedPoint r = lab.record_point(tape, point, values);
      return tapegrad::Program::Recorded{r.loss, std::move(r.leaves)};
    };
    const std::string about = fmt::format(
        "\"point\": {{\"x1\": {}, \"x2\": {}, \"label\": {}, \"label_from\": {}, "
        "\"loss\": {}, \"epoch\": {}}}, ",
        json_number(x1), json_number(x2), point.label, json_string(point.label_from),
        json_string(lab.options().loss), lab.epoch());
    return analysis(record, point.names, point.values, about);
  });
}

// net_safetensors_base64(): the model as `tapegrad train --save` writes it, as base64 text; bad
// input (no session) gets the usual {"error": ...} object, which no base64 text starts like.
std::string net_safetensors_base64() {
  return reporting([] { return current_session("net_safetensors_base64").safetensors_base64(); });
}

// net_set_rates(rates): the learning rate and penalties changed in place, the weights kept (Note
// [Rates changed in place], tools/network_lab.hpp), as TensorFlow Playground's rate control.
std::string net_set_rates(const std::string& rates) {
  return reporting(
      [&] { return tapegrad::json_text(current_session("net_set_rates").set_rates(rates)); });
}

// train(config): the summary `tapegrad train --json` ends with, for a fresh run of the config.
std::string train(const std::string& config) {
  return reporting([&] {
    tapegrad::NetworkLab run(tapegrad::options_from_config(config));
    return tapegrad::json_text(run.summary());
  });
}

}  // namespace

EMSCRIPTEN_BINDINGS(tapegrad) {
  emscripten::function("inputs", &inputs);
  emscripten::function("grad", &grad);
  emscripten::function("step", &step);
  emscripten::function("analyse", &analyse);
  emscripten::function("net_create", &net_create);
  emscripten::function("net_train", &net_train);
  emscripten::function("net_snapshot", &net_snapshot);
  emscripten::function("net_point", &net_point);
  emscripten::function("net_safetensors_base64", &net_safetensors_base64);
  emscripten::function("train", &train);
  emscripten::function("net_set_rates", &net_set_rates);
}
