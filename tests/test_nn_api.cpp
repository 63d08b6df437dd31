// The nn API as PyTorch's C++ frontend reads: net(x), LinearOptions and Sequential::push_back.

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>

using namespace ag;

// The mistaken calls that compiled silently before LinearOptions: Linear(2, 16, 42) was
// bias = true (42 converted to bool) and seed 0.
static_assert(std::is_constructible_v<nn::Linear, int, int>);
static_assert(!std::is_constructible_v<nn::Linear, int, int, int>);
static_assert(!std::is_constructible_v<nn::Linear, int, int, bool>);
static_assert(!std::is_constructible_v<nn::Linear, int, int, bool, int>);
static_assert(!std::is_convertible_v<nn::LinearOptions, nn::Linear>);  // explicit, as torch's
// A module lvalue is not copied into a Sequential: it must be moved, or given as a unique_ptr.
template <class M>
concept PushBackable = requires(nn::Sequential& s, M&& m) { s.push_back(std::forward<M>(m)); };
static_assert(!PushBackable<nn::Linear&>);
static_assert(PushBackable<nn::Linear>);
static_assert(PushBackable<std::unique_ptr<nn::Module>>);

namespace {

std::vector<std::string> names(nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [name, p] : m.named_parameters()) out.push_back(name);
  return out;
}

std::vector<float> values_of(const nn::Parameter& p) { return {p.data().begin(), p.data().end()}; }

// A module written as one writes a torch::nn::Module: children called as fc1(x).
class TwoLayer : public nn::Module {
 public:
  TwoLayer()
      : fc1(register_module("fc1", std::make_unique<nn::Linear>(2, 3))),
        act(register_module("act", std::make_unique<nn::ReLU>())),
        fc2(register_module("fc2", std::make_unique<nn::Linear>(3, 1))) {}
  Tensor forward(Tensor x) override { return fc2(act(fc1(x))); }
  std::string describe() const override { return "TwoLayer()"; }
  nn::Linear& fc1;
  nn::ReLU& act;
  nn::Linear& fc2;
};

}  // namespace

TEST_CASE("net(x): a module records on its input's tape, each child in its own scope") {
  TwoLayer net;
  TensorTape tape;
  Tensor x = tape.input(Shape{1, 2}, {1, -1}, "x", DType::f32);
  Tensor y = net(x);
  CHECK(y.shape() == Shape{1, 1});
  CHECK(names(net) ==
        std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"});
  // fc1's weight, bias and linear node; act's relu; fc2's three.
  std::vector<std::string> scopes;
  for (NodeId id = x.id() + 1; id < tape.size(); ++id)
    scopes.emplace_back(tape.scope_name(tape.scope(id)));
  CHECK(scopes ==
        std::vector<std::string>{"fc1", "fc1", "fc1", "act", "fc2", "fc2", "fc2"});
  CHECK(tape.label(y.id() - 1) == "fc2.bias");
  tape.backward(sum(y));
  CHECK(net.fc2.bias->grad()[0] == 1);
  // A handle with no tape names the problem instead of recording anywhere.
  CHECK_THROWS_AS(net(Tensor{}), Error);
}

TEST_CASE("LinearOptions: bias and seed as named options, defaults as torch's") {
  const nn::LinearOptions defaults(2, 3);
  CHECK(defaults.in_features() == 2);
  CHECK(defaults.out_features() == 3);
  CHECK(defaults.bias());
  CHECK(defaults.seed() == 0);

  nn::Linear plain(2, 3), same(nn::LinearOptions(2, 3));
  CHECK(values_of(plain.weight) == values_of(same.weight));
  CHECK(values_of(*plain.bias) == values_of(*same.bias));

  nn::Linear no_bias(nn::LinearOptions(2, 3).bias(false));
  CHECK(no_bias.bias == nullptr);
  CHECK(names(no_bias) == std::vector<std::string>{"weight"});
  CHECK(no_bias.describe() == "Linear(in=2, out=3, bias=false)");

  // The options chain in any order; the seed changes the weights, not the bias flag.
  nn::Linear seeded(nn::LinearOptions(2, 3).seed(7).bias(true));
  nn::Linear seeded_again(nn::LinearOptions(2, 3).seed(7));
  CHECK(seeded.bias != nullptr);
  CHECK(values_of(seeded.weight) == values_of(seeded_again.weight));
  CHECK(values_of(seeded.weight) != values_of(plain.weight));
  CHECK_THROWS_WITH_AS(nn::Linear(nn::LinearOptions(0, 3)),
                       "Linear(0, 3): sizes must be positive", Error);
}

TEST_CASE("Sequential::push_back takes a module by value or by unique_ptr, named 0, 1, ...") {
  nn::Sequential seq;
  nn::Linear& first = seq.push_back(nn::Linear(2, 3));
  seq.push_back(nn::LeakyReLU(0.1));
  nn::Linear& last = seq.push_back(std::make_unique<nn::Linear>(3, 1));
  std::unique_ptr<nn::Module> any = std::make_unique<nn::Sigmoid>();
  seq.push_back(std::move(any));
  nn::Linear moved(nn::LinearOptions(1, 1).bias(false));
  nn::Parameter* moved_weight = &moved.weight;
  nn::Linear& kept = seq.push_back(std::move(moved));

  CHECK(seq.size() == 5);
  CHECK(names(seq) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias",
                                               "4.weight"});
  CHECK(seq.describe() ==
        "Sequential(\n"
        "  (0): Linear(in=2, out=3, bias=true)\n"
        "  (1): LeakyReLU(alpha=0.1)\n"
        "  (2): Linear(in=3, out=1, bias=true)\n"
        "  (3): Sigmoid()\n"
        "  (4): Linear(in=1, out=1, bias=false)\n"
        ")");
  // The references push_back returns are the stored modules; a moved module keeps its
  // Parameter (by address: tapes and optimizers hold it).
  CHECK(&seq[0] == &first);
  CHECK(&seq[2] == &last);
  CHECK(&kept.weight == moved_weight);
  CHECK(seq.parameters().back() == moved_weight);
  CHECK(kept.path() == "4");

  // The Sequential computes the modules in order.
  std::fill(first.weight.data().begin(), first.weight.data().end(), 1.0f);
  std::fill(first.bias->data().begin(), first.bias->data().end(), 0.0f);
  std::fill(last.weight.data().begin(), last.weight.data().end(), 1.0f);
  last.bias->data()[0] = 0;
  kept.weight.data()[0] = 2;
  TensorTape tape;
  Tensor y = seq(tape.input(Shape{1, 2}, {-1, -2}, "x", DType::f32));
  // z = -3 per unit; leaky: -0.3 each; sum: -0.9; sigmoid; times 2.
  CHECK(y.item() == doctest::Approx(2 / (1 + std::exp(0.9))).epsilon(1e-6));
  CHECK(tape.scope_name(tape.scope(y.id())) == "4");

  CHECK_THROWS_WITH_AS(seq.push_back(std::unique_ptr<nn::Module>()),
                       "Sequential::push_back: a null module", Error);
}
