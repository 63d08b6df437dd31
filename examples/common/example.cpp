// The examples' command line, data files and gnuplot runner.

#include "example.hpp"

#include <fmt/format.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <tapegrad/error.hpp>

extern char** environ;

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

std::filesystem::path write_columns(const std::filesystem::path& path,
                                    const std::vector<std::string>& header,
                                    const std::vector<std::vector<double>>& columns) {
  std::ofstream f(path);
  if (!f) throw ag::Error(fmt::format("cannot write {}: {}", path.string(), std::strerror(errno)));
  const std::size_t rows = columns.empty() ? 0 : columns[0].size();
  for (const auto& c : columns)
    if (c.size() != rows) throw ag::Error("write_columns: the columns differ in length");
  f << "#";
  for (const auto& h : header) f << ' ' << h;
  f << '\n';
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < columns.size(); ++c)
      f << (c ? " " : "") << fmt::format("{}", columns[c][r]);
    f << '\n';
  }
  if (!f) throw ag::Error(fmt::format("cannot write {}", path.string()));
  return path;
}

void gnuplot(const std::filesystem::path& dir, const std::string& script) {
  // gnuplot reads the script from a pipe; its messages go to a file we quote on failure.
  const std::filesystem::path log = dir / ".gnuplot.log";
  int in[2];
  if (::pipe(in) != 0) throw ag::Error(fmt::format("pipe: {}", std::strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_addclose(&actions, in[1]);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  const std::string cd = fmt::format("cd '{}'\n", dir.string());
  char arg0[] = "gnuplot";
  char* args[] = {arg0, nullptr};
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, "gnuplot", &actions, nullptr, args, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  if (err != 0) {
    ::close(in[1]);
    throw ag::Error(fmt::format("cannot run gnuplot ({}): install Debian's gnuplot-nox, or pass "
                                "--no-plots",
                                std::strerror(err)));
  }
  const std::string text = cd + script + "\n";
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(in[1], text.data() + done, text.size() - done);
    if (n <= 0) break;  // gnuplot died; its status says why
    done += std::size_t(n);
  }
  ::close(in[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream f(log);
    std::string message((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    throw ag::Error(fmt::format("gnuplot failed: {}", message));
  }
  std::filesystem::remove(log);
}

std::string png_terminal(const std::filesystem::path& path, int width, int height) {
  return fmt::format(
      "set terminal pngcairo size {},{} enhanced font 'DejaVu Sans,11'\n"
      "set output '{}'\n"
      "set grid lc rgb '#dddddd'\n"
      "set key box opaque\n",
      width, height, path.string());
}

void announce(std::span<const std::filesystem::path> files) {
  for (const auto& f : files) fmt::print("wrote {}\n", std::filesystem::absolute(f).string());
}

}  // namespace example
