// The gnuplot runner and data-file writer.

#include "tapegrad/nn/plot.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "tapegrad/error.hpp"

extern char** environ;

namespace nn::plot {

namespace fs = std::filesystem;

bool gnuplot_available() {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  const std::string dirs = path;
  for (std::size_t at = 0; at <= dirs.size();) {
    std::size_t end = dirs.find(':', at);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = dirs.substr(at, end - at);
    const std::string file = (fs::path(dir.empty() ? "." : dir) / "gnuplot").string();
    if (::access(file.c_str(), X_OK) == 0) return true;
    at = end + 1;
  }
  return false;
}

void gnuplot(const fs::path& dir, const std::string& script) {
  // gnuplot reads the script from a pipe; its messages go to a file quoted on failure.
  const fs::path log = dir / ".gnuplot.log";
  int in[2];
  if (::pipe(in) != 0) throw ag::Error(fmt::format("pipe: {}", std::strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_addclose(&actions, in[1]);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  char arg0[] = "gnuplot";
  char* args[] = {arg0, nullptr};
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, "gnuplot", &actions, nullptr, args, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  if (err != 0) {
    ::close(in[1]);
    throw ag::Error(fmt::format("cannot run gnuplot ({}): install Debian's gnuplot-nox",
                                std::strerror(err)));
  }
  // If gnuplot dies early, writing would raise SIGPIPE; its exit status says why instead.
  const auto previous = std::signal(SIGPIPE, SIG_IGN);
  const std::string text = fmt::format("cd '{}'\n{}\n", dir.string(), script);
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(in[1], text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(in[1]);
  std::signal(SIGPIPE, previous);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream f(log);
    std::string message((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
      message.pop_back();
    for (char& c : message)
      if (c == '\n') c = ' ';
    throw ag::Error(fmt::format("gnuplot failed: {}", message));
  }
  std::error_code ec;
  fs::remove(log, ec);
}

fs::path write_columns(const fs::path& path, const std::vector<std::string>& header,
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

std::string png_terminal(const fs::path& path, int width, int height) {
  return fmt::format(
      "set terminal pngcairo size {},{} enhanced font 'DejaVu Sans,11'\n"
      "set output '{}'\n"
      "set grid lc rgb '#dddddd'\n"
      "set key box opaque\n",
      width, height, path.string());
}

}  // namespace nn::plot
