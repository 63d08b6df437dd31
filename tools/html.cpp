// `tapegrad html --mlp`: a tiny MLP and its loss on one example as a scalar tape (tools/html.hpp).

#include "html.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <string_view>
#include <tapegrad/format.hpp>
#include <tapegrad/nn/layers.hpp>
#include <tapegrad/nn/scalar.hpp>
#include <vector>

#include "cli_options.hpp"

namespace tapegrad {

const char* const kHtmlHelp = R"(The page:
  One HTML file that needs nothing else: no network, and it opens from file:// too. It plays
  the forward pass, the inputs then node by node (values appear on the edges), then the
  backward pass step by step (gradients appear under them), with each step's chain rule beside
  the graph as 'tapegrad step' prints it. Buttons Next, Back, Play/Pause and Reset; keys right
  and left arrow, space (play/pause) and Home (reset); the graph fits the window, and the
  buttons - fit + (keys - 0 +) zoom it. With --mlp it is a small MLP's instead (at most
  64 weights, each its own node), with its loss on one example.
  tapegrad html 'q = x + y; f = q * z' x=-2 y=5 z=-4 -o cs231n.html
  tapegrad html --mlp 2,2,1 --act sigmoid --seed 1 -o mlp.html
  tapegrad html --mlp 2,3,1 --act relu --loss bce --x 0.5,-1 --y 0 -o relu.html)";

void add_mlp_options(CLI::App* html, MlpExample& m) {
  html->add_option("--mlp", m.sizes,
                   "Step through an MLP of these layer sizes (e.g. 2,2,1) instead of a program")
      ->type_name("SIZES");
  html->add_option("--act", m.act,
                   fmt::format("--mlp: the activation after each hidden layer: {} (prelu has no "
                               "scalar form here; default sigmoid)",
                               nn::activation_names()))
      ->type_name("NAME");
  html->add_option("--out", m.out, "--mlp: the activation after the last layer (default sigmoid)")
      ->type_name("NAME");
  html->add_option("--loss", m.loss,
                   "--mlp: mse, (y_hat - y)^2, or bce, binary cross-entropy, which needs --out "
                   "sigmoid (default mse)")
      ->type_name("LOSS");
  html->add_option("--x", m.x, "--mlp: the example's inputs, one per input unit (default 1,0)")
      ->type_name("X1,X2,...");
  html->add_option("--y", m.y, "--mlp: its targets, one per output unit (default 1)")
      ->type_name("Y1,...");
  html->add_option("--seed", m.seed, "--mlp: seeds the weights as tapegrad train does (default 0)")
      ->type_name("S")
      ->check(seed_validator());
}

namespace {

// "1,0" as numbers; ag::Error naming `option` unless `count` finite numbers.
std::vector<double> parse_numbers(const std::string& text, std::string_view option,
                                  std::int64_t count, std::string_view of_what) {
  std::vector<double> values;
  for (std::size_t at = 0; at <= text.size();) {
    std::size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(at, end - at);
    char* stop = nullptr;
    const double v = part.empty() ? NAN : std::strtod(part.c_str(), &stop);
    if (part.empty() || *stop != '\0' || !std::isfinite(v))
      ag::fail("{} {}: '{}' is not a number", option, text, part);
    values.push_back(v);
    at = end + 1;
  }
  if (std::int64_t(values.size()) != count)
    ag::fail("{} {}: {} value{} for an MLP with {} {}", option, text, values.size(),
             values.size() == 1 ? "" : "s", count, of_what);
  return values;
}

std::string numbers(const std::vector<double>& xs) {
  std::vector<std::string> parts;
  for (double x : xs) parts.push_back(ag::format_number(x));
  const std::string list = fmt::format("{}", fmt::join(parts, ", "));
  return xs.size() == 1 ? list : "(" + list + ")";
}

}  // namespace

RecordedMlp record_mlp(ag::Tape& tape, const MlpExample& m) {
  const std::vector<std::int64_t> sizes = parse_layers(m.sizes, "--mlp");
  const nn::Activation hidden = nn::parse_activation(m.act);
  const nn::Activation output = nn::parse_activation(m.out);
  if (m.loss != "mse" && m.loss != "bce")
    ag::fail("--loss {}: the losses of a page are mse and bce", m.loss);
  const bool bce = m.loss == "bce";
  if (bce && output != ag::Op::sigmoid)
    throw ag::Error(
        fmt::format("--loss bce takes probabilities: use --out sigmoid, not {}", m.out));
  const std::vector<double> x = parse_numbers(m.x, "--x", sizes.front(), "inputs");
  const std::vector<double> y = parse_numbers(m.y, "--y", sizes.back(), "outputs");
  if (bce)
    for (double target : y)
      if (target < 0 || target > 1)
        ag::fail("--y {}: a target of bce is a probability, in [0, 1]", m.y);

  std::int64_t weights = 0;  // nn::expand's limit, checked before the MLP is built
  for (std::size_t i = 1; i < sizes.size(); ++i) weights += sizes[i - 1] * sizes[i];
  if (weights > nn::kMaxScalarWeights)
    throw ag::Error(
        fmt::format("--mlp {}: the MLP has {} weights; a scalar graph of more than {} "
                    "is too large to read",
                    m.sizes, weights, nn::kMaxScalarWeights));
  nn::MLP mlp(sizes, hidden, output, m.seed);
  const nn::ScalarNet net =
      nn::expand(mlp, tape, x, bce ? nn::ScalarLoss::bce : nn::ScalarLoss::mse, y);
  return {net.loss, fmt::format("MLP {}, {} hidden, {} out, {} loss; x = {}, y = {}; seed {}",
                                fmt::join(sizes, "-"), m.act, m.out, bce ? "BCE" : "MSE",
                                numbers(x), numbers(y), m.seed)};
}

}  // namespace tapegrad
