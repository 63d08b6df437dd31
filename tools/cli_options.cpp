// The command line's shared helpers (tools/cli_options.hpp): output path checks, standard
// output and the validators of integer options.

#include "cli_options.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <tapegrad/error.hpp>
#include <tapegrad/file.hpp>

namespace tapegrad {

void check_output_path(const std::string& path, std::initializer_list<std::string_view> extensions,
                       std::string_view formats, std::string_view what) {
  const std::filesystem::path p(path);
  const std::string ext = p.extension().string();
  std::string lower = ext;  // ag::write_graph takes any case: .SVG too
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (std::find(extensions.begin(), extensions.end(), lower) == extensions.end())
    ag::fail("cannot write {}: {}; {}", path,
             ext.empty() ? std::string("it has no extension")
                         : fmt::format("unknown extension '{}'", ext),
             formats);
  check_parent_directories(path, fmt::format("cannot write {}", path));
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) ag::fail("cannot write {}: it is a directory", path);
  ag::check_replaceable(path, what);  // Note [What a write replaces]
}

void check_parent_directories(const std::string& path, std::string_view prefix) {
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  while (!dir.empty() && !std::filesystem::exists(dir, ec)) dir = dir.parent_path();
  if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
    ag::fail("{}: {} is a file, not a directory", prefix, dir.string());
}

void create_parent_directories(const std::string& path, std::string_view prefix) {
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (dir.empty() || std::filesystem::is_directory(dir, ec)) return;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    ag::fail("{}: cannot create {}: {}", prefix, dir.string(),
             ec ? ec.message() : "a file has that name");
}

void check_graph_path(const std::string& path) {
  check_output_path(path, {".dot", ".svg", ".png"}, "the graph formats are .dot, .svg and .png",
                    "graph");
}

void check_not_input(const std::string& output, std::string_view option,
                     std::initializer_list<std::string_view> inputs) {
  for (std::string_view input : inputs) {
    std::error_code ec;
    if (!input.empty() && input != "-" && std::filesystem::equivalent(output, input, ec))
      ag::fail("{} {}: it is an input of this run ({}); give another file", option, output, input);
  }
}

void check_standard_output() {
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    ag::fail("cannot write to standard output: {}",
             errno != 0 ? std::strerror(errno) : "a write failed");
}

namespace {

// True if all of `text` is one integer of type T (from_chars: digits, '-' for a signed T).
template <class T> bool whole_integer(std::string_view text) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && error == std::errc() && end == text.data() + text.size();
}

}  // namespace

CLI::Validator seed_validator() {
  return CLI::Validator(
      [](const std::string& text) {
        if (text.find_first_not_of("0123456789") != std::string::npos || text.empty())
          return fmt::format("'{}' is not a seed, a non-negative integer", ag::printable(text));
        if (!whole_integer<std::uint64_t>(text))
          return fmt::format(
              "{} is too large for a seed (seeds are below 2^64 = 18446744073709551616)", text);
        return std::string();
      },
      "", "SEED");
}

CLI::Validator integer_validator() {
  return CLI::Validator(
      [](const std::string& text) {
        if (whole_integer<std::int64_t>(text)) return std::string();
        const std::string_view digits =
            std::string_view(text).substr(text.starts_with('-') ? 1 : 0);
        if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos)
          return fmt::format("{} is out of range (beyond \u00b19223372036854775807, 2^63 - 1)",
                             text);
        return fmt::format("'{}' is not an integer (digits only, as in 100)", ag::printable(text));
      },
      "", "N");
}

}  // namespace tapegrad
