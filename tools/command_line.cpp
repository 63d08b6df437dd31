// A command's arguments read before CLI11 parses them (tools/command_line.hpp): unknown options
// named with the nearest known one, and a program that starts with '-' made a positional.

#include "command_line.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <tapegrad/error.hpp>
#include <tapegrad/file.hpp>

namespace tapegrad {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  // d[i][j]: the distance between a's first i characters and b's first j, row by row.
  const std::size_t width = b.size() + 1;
  std::vector<std::size_t> d((a.size() + 1) * width);
  for (std::size_t i = 0; i <= a.size(); ++i) d[i * width] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t substitution = a[i - 1] == b[j - 1] ? 0 : 1;
      std::size_t best = std::min({d[(i - 1) * width + j] + 1, d[i * width + j - 1] + 1,
                                   d[(i - 1) * width + j - 1] + substitution});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        best = std::min(best, d[(i - 2) * width + j - 2] + 1);  // two neighbours swapped
      d[i * width + j] = best;
    }
  }
  return d.back();
}

std::optional<std::string> nearest(std::string_view word, std::span<const std::string> names) {
  // --epo: the beginning of one name alone, before any name a few edits away (--opt).
  const auto dashless = [](std::string_view s) {
    const std::size_t start = s.find_first_not_of('-');
    return start == std::string_view::npos ? std::string_view() : s.substr(start);
  };
  if (dashless(word).size() >= 3) {
    std::vector<std::string> begun;
    for (const std::string& name : names)
      if (dashless(name).starts_with(dashless(word))) begun.push_back(name);
    if (begun.size() == 1) return begun.front();
  }
  std::optional<std::string> best;
  std::size_t best_distance = 0;
  for (const std::string& name : names) {
    const std::size_t distance = edit_distance(word, name);
    const std::size_t allowed = word.size() <= 4 ? 1 : 2;
    if (distance <= allowed && 2 * distance < word.size() && (!best || distance < best_distance)) {
      best = name;
      best_distance = distance;
    }
  }
  return best;
}

std::vector<std::string> option_names(const CLI::App& command) {
  std::vector<std::string> names;
  for (const CLI::Option* option : command.get_options()) {
    for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
    for (const std::string& name : option->get_snames()) names.push_back("-" + name);
  }
  return names;
}

namespace {

bool is_number(std::string_view text) {
  double value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size();
}

bool is_name_character(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

// What a word that starts with '-' is: an option known to the command (and whether its value
// is attached, as in --epochs=10 or -fFILE), a program (a character no option name has), or
// an option the command does not have.
enum class DashWord { option, option_with_value, program, unknown };

struct Classified {
  DashWord kind;
  std::string name;  // the option's name as written: "--epochs", "-f"
};

Classified classify(const CLI::App& command, const std::string& word) {
  if (word.starts_with("--")) {
    const std::size_t equals = word.find('=');
    const std::string name = word.substr(0, equals);
    if (!std::all_of(name.begin() + 2, name.end(), is_name_character) || name.size() == 2)
      return {DashWord::program, name};
    if (command.get_option_no_throw(name) == nullptr) return {DashWord::unknown, name};
    return {equals == std::string::npos ? DashWord::option : DashWord::option_with_value, name};
  }
  const std::string name = word.substr(0, 2);
  if (std::isalpha(static_cast<unsigned char>(word[1])) &&
      command.get_option_no_throw(name) != nullptr)
    return {word.size() == 2 ? DashWord::option : DashWord::option_with_value, name};
  if (!std::all_of(word.begin() + 1, word.end(), is_name_character) ||
      !std::isalpha(static_cast<unsigned char>(word[1])))
    return {DashWord::program, name};
  return {DashWord::unknown, word.substr(0, word.find('='))};
}

std::string in_quotes(std::string_view word) {
  return fmt::format("'{}'", ag::printable(std::string(word)));
}

}  // namespace

std::vector<std::string> check_arguments(const CLI::App& command, std::vector<std::string> args,
                                         bool takes_program) {
  const std::string& name = command.get_name();
  std::vector<std::string> options, positionals;
  bool dash_program = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--") {
      positionals.insert(positionals.end(), args.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                         args.end());
      break;
    }
    if (!word.starts_with('-') || word == "-" || is_number(word)) {
      positionals.push_back(word);
      dash_program = dash_program || (takes_program && word != "-" && word.starts_with('-'));
      continue;
    }
    const Classified c = classify(command, word);
    switch (c.kind) {
      case DashWord::option: {
        options.push_back(word);
        const CLI::Option* option = command.get_option_no_throw(c.name);
        if (option->get_expected_min() > 0 && i + 1 < args.size()) options.push_back(args[++i]);
        break;
      }
      case DashWord::option_with_value: options.push_back(word); break;
      case DashWord::program:
        if (takes_program) {
          positionals.push_back(word);
          dash_program = true;
          break;
        }
        [[fallthrough]];
      case DashWord::unknown: {
        const std::vector<std::string> names = option_names(command);
        if (const std::optional<std::string> near = nearest(c.name, names))
          throw ag::Error(
              fmt::format("{}: unknown option {}; did you mean {}?", name, in_quotes(word), *near));
        if (takes_program && !word.starts_with("--"))
          throw ag::Error(
              fmt::format("{}: unknown option {}; a program that starts with '-' goes after '--': "
                          "tapegrad {} -- {} NAME=VALUE...",
                          name, in_quotes(word), name, in_quotes(word)));
        ag::fail("{}: unknown option {}; tapegrad help {} lists the options", name, in_quotes(word),
                 name);
      }
    }
  }
  if (!dash_program) return args;
  options.push_back("--");
  options.insert(options.end(), positionals.begin(), positionals.end());
  return options;
}

}  // namespace tapegrad
