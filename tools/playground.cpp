// `tapegrad playground`: the playground page is built by the WebAssembly build (build-wasm/,
// playground/meson.build); this command copies it to where the user asks.

#include "playground.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <tapegrad/error.hpp>
#include <tapegrad/file.hpp>

#include "cli_options.hpp"

namespace tapegrad {

// Note [Where the playground page comes from]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The page needs emscripten, which the native build does not, so it is built in a build
// directory of its own (build-wasm/, configured with playground/emscripten.ini) and the native
// build is told where that puts it: TAPEGRAD_PLAYGROUND_PAGE, set by tools/meson.build to
// build-wasm/playground/tapegrad-playground.html in the source tree, or to the meson option
// -Dplayground_page=PATH. The command copies the page as it is; when it is missing it says how
// to build it rather than writing a page without an engine.

namespace {

constexpr std::size_t kMaxPageBytes = std::size_t{64} << 20;  // the page is about 3 MB

}  // namespace

CLI::App* add_playground_command(CLI::App& app, std::string& output) {
  CLI::App* sub = app.add_subcommand(
      "playground",
      "Write the playground: one HTML page with tapegrad's own engine in WebAssembly, to open in "
      "any browser, from a file, with no network and no install");
  sub->add_option("-o,--output", output, "The page to write (.html)")->type_name("FILE");
  sub->footer(fmt::format(
      "The page is built by the WebAssembly build (README.md, \"The playground\"); this copy of "
      "tapegrad takes it from\n  {}",
      TAPEGRAD_PLAYGROUND_PAGE));
  return sub;
}

int run_playground(const std::string& output) {
  if (output.empty()) throw ag::Error("no page to write: give -o PAGE.html");
  check_output_path(output, {".html", ".htm"}, "a page is written as .html", "page");
  const std::string built = TAPEGRAD_PLAYGROUND_PAGE;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(built, ec))
    ag::fail(
        "the playground page is not built (no {}): `bash tools/setup.sh playground` in the "
        "source tree builds it (with Debian's emscripten; README.md, \"The playground\")",
        ag::printable(built));
  const std::string page = ag::read_file(built, kMaxPageBytes, "the playground page");
  create_parent_directories(output, fmt::format("cannot write {}", output));
  ag::write_file_atomically(output, page, "page");
  fmt::print("page written to {}\n", ag::printable(output));
  return 0;
}

}  // namespace tapegrad
