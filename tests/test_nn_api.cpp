// The nn API as PyTorch's C++ frontend reads: net(x), LinearOptions, Sequential::push_back, and
// the activations, one per row of the op table, in modules, by name and in the scalar expansion.

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/gradcheck.hpp>
#include <tapegrad/nn.hpp>
#include <type_traits>
#include <vector>

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
concept PushBackable = requires(nn::Sequential& s, M&& m) {
  s.push_back(std::forward<M>(m));
};
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

// Every activation row of the op table but prelu (whose slope is a Parameter: PReLU).
std::vector<Op> elementwise_activation_rows() {
  std::vector<Op> rows;
  for (int row = 0; row < kOpCount; ++row)
    if (nn::is_activation(Op(row)) && Op(row) != Op::prelu) rows.push_back(Op(row));
  return rows;
}

// The row's own gradient-check points: inside its domain, on both sides of every kink.
std::vector<double> test_points(Op op) {
  return dispatch(op, [](auto rule) {
    using Rule = decltype(rule);
    if constexpr (requires { Rule::test_points; })
      return std::vector<double>(std::begin(Rule::test_points), std::end(Rule::test_points));
    else
      return std::vector<double>{};
  });
}

// The row's forward rule at x, with the row's default parameter.
double forward_of(Op op, double x) {
  return dispatch(op, [&](auto rule) -> double {
    using Rule = decltype(rule);
    if constexpr (Rule::info.arity == 1)
      return Rule::forward(x, 0.0, Rule::info.default_param);
    else
      throw Error("forward_of: a one-operand row only");
  });
}

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
  CHECK(names(net) == std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"});
  // fc1's weight, bias and linear node; act's relu; fc2's three.
  std::vector<std::string> scopes;
  for (NodeId id = x.id() + 1; id < tape.size(); ++id)
    scopes.emplace_back(tape.scope_name(tape.scope(id)));
  CHECK(scopes == std::vector<std::string>{"fc1", "fc1", "fc1", "act", "fc2", "fc2", "fc2"});
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
  CHECK_THROWS_WITH_AS(nn::Linear(nn::LinearOptions(0, 3)), "Linear(0, 3): sizes must be positive",
                       Error);
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
  CHECK(names(seq) ==
        std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "4.weight"});
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

TEST_CASE("the activations are the op table's rows marked as such, prelu among them") {
  const std::vector<Op> rows = elementwise_activation_rows();
  // The lecture's five are among them; binary rows and leaves are not.
  for (Op op : {Op::sigmoid, Op::tanh, Op::relu, Op::leaky_relu, Op::elu, Op::softplus})
    CHECK(std::find(rows.begin(), rows.end(), op) != rows.end());
  CHECK(nn::is_activation(Op::prelu));
  for (Op op : {Op::input, Op::constant, Op::add, Op::mul, Op::max, Op::bce, Op::pow, Op::neg,
                Op::exp, Op::log, Op::sqrt, Op::abs, Op::pow_scalar, Op::clamp_min})
    CHECK(!nn::is_activation(op));
  for (Op op : {Op::gelu, Op::gelu_tanh, Op::silu})
    CHECK(std::find(rows.begin(), rows.end(), op) != rows.end());

  const std::string known = nn::activation_names();
  CHECK(known.starts_with("none, "));
  CHECK(nn::parse_activation("none") == nn::Activation::none);
  CHECK(nn::activation_name(nn::Activation::none) == "none");
  for (int row = 0; row < kOpCount; ++row) {
    const Op op = Op(row);
    const std::string name(op_info(op).name);
    INFO(name);
    if (nn::is_activation(op)) {
      CHECK(nn::parse_activation(name) == op);
      CHECK(nn::activation_name(op) == name);
      CHECK(known.find(", " + name) != std::string::npos);
    } else {
      const std::string unknown = "unknown activation '" + name + "'";
      CHECK_THROWS_WITH_AS(nn::parse_activation(name), doctest::Contains(unknown.c_str()), Error);
      CHECK_THROWS_AS(nn::make_activation(op, 2), Error);
    }
  }
  CHECK_THROWS_WITH_AS(nn::Elementwise(Op::max),
                       "Elementwise(max): an elementwise module applies a row of the op table "
                       "with one operand, not 2",
                       Error);
}

TEST_CASE("the named activation classes are their rows, printed as torch.nn prints them") {
  CHECK(nn::ReLU().op() == Op::relu);
  CHECK(nn::Sigmoid().op() == Op::sigmoid);
  CHECK(nn::Tanh().op() == Op::tanh);
  CHECK(nn::LeakyReLU().alpha() == op_info(Op::leaky_relu).default_param);
  CHECK(nn::ELU(0.5).alpha() == 0.5);
  CHECK(nn::ReLU().describe() == "ReLU()");
  CHECK(nn::LeakyReLU().describe() == "LeakyReLU(alpha=0.01)");
  CHECK(nn::ELU().describe() == "ELU(alpha=1)");
  CHECK(nn::Sigmoid().describe() == "Sigmoid()");
  CHECK(nn::Elementwise(Op::softplus).describe() == "Softplus()");
  CHECK(nn::make_activation(Op::relu, 4)->describe() == "ReLU()");
  CHECK(nn::make_activation(Op::prelu, 4)->describe() == "PReLU(features=4)");
  CHECK(nn::make_activation(nn::Activation::none, 4) == nullptr);
}

TEST_CASE(
    "every activation row as a module: its op's values, gradients against central "
    "differences") {
  for (Op op : elementwise_activation_rows()) {
    INFO(op_info(op).name);
    const std::vector<double> points = test_points(op);
    REQUIRE(!points.empty());
    std::unique_ptr<nn::Module> module = nn::make_activation(op, 1);
    REQUIRE(module != nullptr);
    // Forward: the row's own rule, point by point.
    TensorTape tape;
    Tensor x = tape.input<double>(Shape{std::int64_t(points.size())}, points);
    const std::vector<double> y = (*module)(x).values();
    for (std::size_t i = 0; i < points.size(); ++i)
      CHECK(y[i] == doctest::Approx(forward_of(op, points[i])));
    const std::vector<TensorArg> args{{Shape{std::int64_t(points.size())}, points}};
    const GradcheckResult r =
        gradcheck([&](TensorTape&, std::span<const Tensor> in) { return (*module)(in[0]); },
                  std::span<const TensorArg>(args));
    CHECK_MESSAGE(r.ok, r.message);
  }
  // A parameter other than the row's default reaches the op: leaky_relu with alpha = 0.1.
  nn::LeakyReLU leaky(0.1);
  const std::vector<TensorArg> args{{Shape{2}, {-1.5, 2}}};
  const GradcheckResult r =
      gradcheck([&](TensorTape&, std::span<const Tensor> in) { return leaky(in[0]); },
                std::span<const TensorArg>(args));
  CHECK_MESSAGE(r.ok, r.message);
  TensorTape tape;
  Tensor x = tape.input<double>(Shape{2}, std::vector<double>{-1.5, 2});
  tape.backward(sum(leaky(x)));
  CHECK(x.grads() == std::vector<double>{0.1, 1});  // alpha below 0, 1 above
}

TEST_CASE("every activation row expands into scalars as the tensor module computes it") {
  for (Op op : elementwise_activation_rows()) {
    for (double point : test_points(op)) {
      INFO(op_info(op).name << " at " << point);
      // x -> Linear(1, 1) with w = 1, b = 0 -> the activation -> Linear(1, 1) with w = 1, b = 0:
      // the net's output is the activation at `point`.
      nn::MLP mlp({1, 1, 1}, op);
      for (nn::Linear* layer : mlp.linears()) {
        layer->weight.data()[0] = 1;
        layer->bias->data()[0] = 0;
      }
      Tape scalar;
      const std::vector<double> x{point};
      nn::ScalarNet net = nn::expand(mlp, scalar, x);
      scalar.backward(net.outputs[0]);
      CHECK(net.units[0][0].name() == "h1_1");

      TensorTape tape;
      Tensor y = mlp(tape.input(Shape{1, 1}, {point}, "x", DType::f32));
      mlp.zero_grad();
      tape.backward(sum(y));
      CHECK(net.outputs[0].value() == doctest::Approx(y.item()).epsilon(1e-5));
      std::vector<double> tensor_grads;
      for (nn::Parameter* param : mlp.parameters())
        for (float g : param->grad()) tensor_grads.push_back(g);
      REQUIRE(net.parameters.size() == tensor_grads.size());
      for (std::size_t i = 0; i < tensor_grads.size(); ++i) {
        INFO(net.parameters[i].name());
        CHECK(net.parameters[i].grad() ==
              doctest::Approx(tensor_grads[i]).epsilon(1e-5).scale(1e-6));
      }
      // And the expansion's gradient is the derivative a central difference gives, in
      // double precision: dy/dx = f'(point) through two unit weights.
      const double eps = 1e-6;
      auto output_at = [&](double at) {
        Tape t;
        const std::vector<double> xs{at};
        return nn::expand(mlp, t, xs).outputs[0].value();
      };
      const double numeric = (output_at(point + eps) - output_at(point - eps)) / (2 * eps);
      CHECK(net.inputs[0].grad() == doctest::Approx(numeric).epsilon(1e-5).scale(1e-6));
    }
  }
}
