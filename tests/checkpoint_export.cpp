// For torch_checkpoint_test.py: trains small MLPs a few steps, saves each as a checkpoint in DIR,
// and prints as JSON what PyTorch must reproduce: the architecture, inputs and our outputs.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <exception>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <vector>

namespace {

struct Variant {
  const char* name;
  nn::Activation hidden, output;
};

// A four-point two-class problem, trained with Adam and the MSE loss.
void train(nn::MLP& mlp, nn::Adam& opt, int steps) {
  const std::vector<float> x{0, 0, 0, 1, 1, 0, 1, 1}, y{0, 1, 1, 0};
  ag::TensorTape tape;
  for (int i = 0; i < steps; ++i) {
    tape.reset();
    ag::Tensor p = mlp(tape.constant<float>(ag::Shape{4, 2}, x));
    ag::Tensor l = nn::mse_loss(p, tape.constant<float>(ag::Shape{4, 1}, y));
    opt.zero_grad();
    tape.backward(l);
    opt.step();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: checkpoint_export DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const std::vector<std::int64_t> sizes{2, 16, 16, 1};
  const std::vector<float> inputs{0, 0, 0, 1, 1, 0, 1, 1, -1.5f, 2.25f, 0.3f, -0.7f};
  const Variant variants[] = {
      {"relu_sigmoid", ag::Op::relu, ag::Op::sigmoid},
      {"tanh", ag::Op::tanh, nn::Activation::none},
  };
  try {
    std::vector<std::string> models;
    std::uint64_t seed = 11;
    for (const Variant& v : variants) {
      nn::MLP mlp(sizes, v.hidden, v.output, seed++);
      nn::Adam opt(mlp.parameters(), {.lr = 0.05});
      train(mlp, opt, 20);
      const std::string path = fmt::format("{}/{}.safetensors", dir, v.name);
      // With the optimizer's state too, so the test shows PyTorch loading around it.
      nn::save(mlp, path, {.optimizer = &opt, .metadata = {{"epoch", "20"}}});

      mlp.eval();
      ag::TensorTape tape;
      const std::int64_t n = std::int64_t(inputs.size()) / 2;
      ag::Tensor out = mlp(tape.constant<float>(ag::Shape{n, 2}, inputs));
      models.push_back(fmt::format(
          R"({{"name": "{}", "path": "{}", "sizes": [{}], "hidden": "{}", "output": "{}", )"
          R"("inputs": [{}], "outputs": [{}]}})",
          v.name, path, fmt::join(sizes, ", "), nn::activation_name(v.hidden),
          nn::activation_name(v.output), fmt::join(inputs, ", "), fmt::join(out.values(), ", ")));
    }
    fmt::print("{{\"models\": [{}]}}\n", fmt::join(models, ", "));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint_export: %s\n", e.what());
    return 2;
  }
  return 0;
}
