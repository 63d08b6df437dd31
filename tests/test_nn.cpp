// nn modules: shapes, parameter counts and PyTorch's names, the forward of each
// layer against hand-computed values, initializers, and gradients reaching parameters.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

using namespace ag;

namespace {
std::vector<std::string> names(nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [name, p] : m.named_parameters()) out.push_back(name);
  return out;
}
}  // namespace

TEST_CASE("micrograd's 2-16-16-1 MLP has 337 parameters, named as torch.nn.Sequential's") {
  nn::MLP mlp({2, 16, 16, 1}, ag::Op::relu);
  CHECK(mlp.parameter_count() == 337);  // (2*16+16) + (16*16+16) + (16+1)
  CHECK(names(mlp) == std::vector<std::string>{"layers.0.weight", "layers.0.bias",
                                               "layers.2.weight", "layers.2.bias",
                                               "layers.4.weight", "layers.4.bias"});
  CHECK(mlp.linears().size() == 3);
  CHECK(mlp.linears()[1]->weight.shape() == Shape{16, 16});
  CHECK(mlp.linears()[2]->weight.shape() == Shape{1, 16});
  CHECK(mlp.linears()[0]->path() == "layers.0");
  nn::MLP with_out({2, 5, 1}, ag::Op::sigmoid, ag::Op::sigmoid);
  CHECK(with_out.layers.size() == 4);  // Linear, Sigmoid, Linear, Sigmoid
  CHECK(with_out.describe().find("(3): Sigmoid()") != std::string::npos);
}

TEST_CASE("Linear computes x W^T + b, and gradients reach its parameters") {
  nn::Linear lin(2, 3);
  std::vector<float> w{1, 2, 3, 4, 5, 6}, b{0.5f, -1, 0};
  std::copy(w.begin(), w.end(), lin.weight.data().begin());
  std::copy(b.begin(), b.end(), lin.bias->data().begin());
  TensorTape tape;
  Tensor x = tape.input(Shape{1, 2}, {1, -1}, "x", DType::f32);
  Tensor y = lin(x);
  CHECK(y.values() == std::vector<double>{-0.5, -2, -1});  // [1-2, 3-4, 5-6] + b
  CHECK(tape.label(y.id() - 1) == "bias");                 // the root module has no path
  tape.backward(sum(y));
  CHECK(std::vector<float>(lin.weight.grad().begin(), lin.weight.grad().end()) ==
        std::vector<float>{1, -1, 1, -1, 1, -1});
  CHECK(std::vector<float>(lin.bias->grad().begin(), lin.bias->grad().end()) ==
        std::vector<float>{1, 1, 1});
  lin.zero_grad();
  CHECK(lin.weight.grad_norm() == 0);
  nn::Linear no_bias(nn::LinearOptions(2, 3).bias(false));
  CHECK(no_bias.parameter_count() == 6);
  CHECK_THROWS_WITH_AS(lin(tape.input(Shape{1, 3}, {1, 2, 3}, "", DType::f32)),
                       "linear: input (1, 3) has 3 features but weight (3, 2) expects 2", Error);
}

TEST_CASE("Linear's default initialisation is PyTorch's U(-1/sqrt(in), 1/sqrt(in)), seeded") {
  nn::Linear a(nn::LinearOptions(100, 50).seed(7)), b(nn::LinearOptions(100, 50).seed(7)),
      c(nn::LinearOptions(100, 50).seed(8));
  auto wa = a.weight.data(), wb = b.weight.data(), wc = c.weight.data();
  CHECK(std::equal(wa.begin(), wa.end(), wb.begin()));
  CHECK(!std::equal(wa.begin(), wa.end(), wc.begin()));
  const auto [lo, hi] = std::minmax_element(wa.begin(), wa.end());
  CHECK(*lo >= -0.1f);
  CHECK(*hi <= 0.1f);
  CHECK(*hi > 0.09f);  // the range is used
}

TEST_CASE("the activation modules apply their ops; PReLU's slope is a learned parameter") {
  TensorTape tape;
  Tensor x = tape.input(Shape{1, 4}, {-2, -0.5, 0, 3}, "x", DType::f32);
  CHECK(nn::ReLU()(x).values() == std::vector<double>{0, 0, 0, 3});
  CHECK(nn::LeakyReLU(0.1)(x).values() == std::vector<double>{float(-0.2), float(-0.05), 0, 3});
  CHECK(nn::Sigmoid()(x).value(3) == doctest::Approx(1 / (1 + std::exp(-3.0))));
  CHECK(nn::Tanh()(x).value(0) == doctest::Approx(std::tanh(-2.0)));
  CHECK(nn::ELU(1.0)(x).value(0) == doctest::Approx(std::expm1(-2.0)));

  nn::PReLU prelu;  // one shared slope, 0.25
  Tensor y = prelu(x);
  CHECK(y.values() == std::vector<double>{-0.5, -0.125, 0, 3});
  tape.backward(sum(y));
  CHECK(prelu.weight.grad()[0] == doctest::Approx(-2.5));  // sum of the negative inputs
  nn::PReLU per_feature(4);
  CHECK(per_feature.weight.shape() == Shape{4});
  CHECK(per_feature(x).values() == std::vector<double>{-0.5, -0.125, 0, 3});
}

TEST_CASE("Maxout keeps the largest of its pieces per output") {
  nn::Maxout maxout(2, 2, 3);
  CHECK(maxout.linear.weight.shape() == Shape{6, 2});
  CHECK(names(maxout) == std::vector<std::string>{"linear.weight", "linear.bias"});
  auto w = maxout.linear.weight.data();
  // Output 0's pieces: x0, -x0, x1; output 1's: 2 x0, x1, -x1 (biases 0).
  const float rows[6][2] = {{1, 0}, {-1, 0}, {0, 1}, {2, 0}, {0, 1}, {0, -1}};
  for (int r = 0; r < 6; ++r) w[2 * r] = rows[r][0], w[2 * r + 1] = rows[r][1];
  nn::init::zeros(*maxout.linear.bias);
  TensorTape tape;
  Tensor x = tape.input(Shape{2, 2}, {-3, 1, 0.5, 2}, "x", DType::f32);
  Tensor y = maxout(x);
  CHECK(y.shape() == Shape{2, 2});
  CHECK(y.values() == std::vector<double>{3, 1, 2, 2});  // max(-3,3,1), max(-6,1,-1), ...
  tape.backward(sum(y));
  // Only the winning piece's weight row gets a gradient (row 1 for sample 0's output 0).
  CHECK(maxout.linear.weight.grad()[2] == doctest::Approx(-3.0));  // d/dw(1,0) = x0 = -3
}

TEST_CASE("initializers: constant, zeros, and the Xavier and He bounds") {
  nn::Parameter p(Shape{200, 100});
  nn::init::constant(p, 0.5);
  CHECK(std::all_of(p.data().begin(), p.data().end(), [](float v) { return v == 0.5f; }));
  CHECK(nn::init::fans(p) == std::pair<std::int64_t, std::int64_t>{100, 200});
  nn::init::xavier_uniform(p, 1);
  const float a = float(std::sqrt(6.0 / 300));
  CHECK(*std::max_element(p.data().begin(), p.data().end()) <= a);
  CHECK(*std::max_element(p.data().begin(), p.data().end()) > 0.95f * a);
  nn::init::kaiming_normal(p, 2);
  double s = 0;
  for (float v : p.data()) s += double(v) * v;
  CHECK(std::sqrt(s / double(p.numel())) == doctest::Approx(std::sqrt(2.0 / 100)).epsilon(0.02));
  nn::init::zeros(p);
  CHECK(std::all_of(p.data().begin(), p.data().end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("train and eval reach every submodule; unknown activations are named") {
  nn::MLP mlp({2, 3, 1}, ag::Op::tanh);
  mlp.eval();
  CHECK(!mlp.is_training());
  CHECK(!mlp.layers[0].is_training());
  mlp.train();
  CHECK(mlp.layers[2].is_training());
  CHECK(nn::parse_activation("leaky_relu") == ag::Op::leaky_relu);
  // The known names come from the op table (test_nn_api.cpp); the notes' are all among them.
  const std::string unknown = "unknown activation 'swish': use one of " + nn::activation_names();
  CHECK_THROWS_WITH_AS(nn::parse_activation("swish"), unknown.c_str(), Error);
  for (const char* name : {"none, ", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu"})
    CHECK(unknown.find(name) != std::string::npos);
  CHECK_THROWS_AS(nn::MLP({2}, ag::Op::relu), Error);
}

TEST_CASE("a module's nodes are recorded in a scope named by its path") {
  nn::MLP mlp({2, 3, 1}, ag::Op::relu);
  TensorTape tape;
  Tensor x = tape.input(Shape{4, 2}, {0, 0, 0, 1, 1, 0, 1, 1}, "x", DType::f32);
  Tensor y = mlp(x);
  CHECK(tape.scope(x.id()) == 0);
  std::vector<std::string> scopes;
  for (NodeId id = 0; id < tape.size(); ++id) scopes.emplace_back(tape.scope_name(tape.scope(id)));
  // x; layers.0's weight, bias, linear; layers.1's relu; layers.2's weight, bias, linear.
  CHECK(scopes == std::vector<std::string>{"", "layers.0", "layers.0", "layers.0", "layers.1",
                                           "layers.2", "layers.2", "layers.2"});
  CHECK(tape.scope_name(tape.scope_parent(tape.scope(y.id()))) == "layers");
  CHECK(tape.label(y.id() - 1) == "layers.2.bias");
}

TEST_CASE("a 2-2-1 MLP expanded into scalars gives the tensor path's output and gradients") {
  for (nn::Activation act : {ag::Op::sigmoid, ag::Op::tanh, ag::Op::relu}) {
    nn::MLP mlp({2, 2, 1}, act, ag::Op::sigmoid, 5);
    Tape scalar;
    const std::vector<double> x{1.0, 0.0}, y{1.0};
    nn::ScalarNet net = nn::expand(mlp, scalar, x, nn::ScalarLoss::bce, y);
    scalar.backward(net.loss);

    TensorTape tape;
    Tensor p = mlp(tape.input(Shape{1, 2}, {1.0, 0.0}, "x", DType::f32));
    Tensor l = nn::bce_loss(p, tape.input(Shape{1, 1}, {1.0}, "y", DType::f32));
    mlp.zero_grad();
    tape.backward(l);
    CHECK(net.outputs[0].value() == doctest::Approx(p.item()).epsilon(1e-6));
    CHECK(net.loss.value() == doctest::Approx(l.item()).epsilon(1e-5));
    std::vector<double> tensor_grads;
    for (nn::Parameter* param : mlp.parameters())
      for (float g : param->grad()) tensor_grads.push_back(g);
    REQUIRE(net.parameters.size() == tensor_grads.size());
    for (std::size_t i = 0; i < tensor_grads.size(); ++i) {
      INFO(net.parameters[i].name());
      CHECK(net.parameters[i].grad() == doctest::Approx(tensor_grads[i]).epsilon(1e-5));
    }
  }
}

TEST_CASE("the scalar expansion names nodes as the lecture does, and refuses large nets") {
  nn::MLP mlp({2, 2, 1}, ag::Op::sigmoid, ag::Op::sigmoid);
  Tape tape;
  const std::vector<double> x{0.0, 1.0};
  nn::ScalarNet net = nn::expand(mlp, tape, x);
  CHECK(net.inputs[1].name() == "x2");
  CHECK(net.parameters[1].name() == "w1_12");  // to unit 1 from input 2
  CHECK(net.parameters[4].name() == "b1_1");
  CHECK(net.units[0][1].name() == "h1_2");
  CHECK(net.outputs[0].name() == "ŷ");  // the prediction; y is the target
  CHECK(net.parameters.size() == 9);
  CHECK(!net.loss.valid());
  nn::MLP big({8, 16, 1}, ag::Op::relu);
  const std::vector<double> x8(8, 0.0);
  CHECK_THROWS_WITH_AS(nn::expand(big, tape, x8),
                       "expand: the MLP has 144 weights; a scalar graph of more than 64 is too "
                       "large to read",
                       Error);
  nn::MLP prelu({2, 2, 1}, ag::Op::prelu);
  CHECK_THROWS_WITH_AS(nn::expand(prelu, tape, x),
                       "expand: PReLU(features=2) has no scalar form here", Error);
}

TEST_CASE("an MLP prints as PyTorch prints nested modules") {
  nn::MLP mlp({2, 3, 1}, ag::Op::relu, ag::Op::sigmoid);
  CHECK(mlp.describe() ==
        "MLP(\n"
        "  (layers): Sequential(\n"
        "    (0): Linear(in=2, out=3, bias=true)\n"
        "    (1): ReLU()\n"
        "    (2): Linear(in=3, out=1, bias=true)\n"
        "    (3): Sigmoid()\n"
        "  )\n"
        ")");
}
