// The examples' command line, data files and gnuplot runner.

#include "example.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <stdexcept>
#include <tapegrad/error.hpp>

namespace example {

Options parse(int argc, char** argv, std::string_view about,
              const std::function<void(CLI::App&)>& extra) {
  Options o;
  CLI::App app{std::string(about)};
  app.add_option("--seed", o.seed, "Random seed (data, initial weights, shuffling)")
      ->capture_default_str();
  app.add_option("--out", o.out, "Folder for the data files and pictures")->capture_default_str();
  app.add_flag("--quick", o.quick, "A short run, for the tests: the same outcome, smaller");
  bool no_plots = false;
  app.add_flag("--no-plots", no_plots, "Print the numbers, draw nothing");
  if (extra) extra(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);
  }
  o.plots = !no_plots;
  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  if (ec) {
    fmt::print(stderr, "error: cannot create {}: {}\n", o.out.string(), ec.message());
    std::exit(2);
  }
  // gnuplot runs in o.out and is given paths below it: a relative one would count twice.
  o.out = std::filesystem::absolute(o.out);
  return o;
}

int run(const std::function<int()>& main_body) {
  try {
    return main_body();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 2;
  }
}

void announce(std::span<const std::filesystem::path> files) {
  for (const auto& f : files) fmt::print("wrote {}\n", std::filesystem::absolute(f).string());
}

}  // namespace example
