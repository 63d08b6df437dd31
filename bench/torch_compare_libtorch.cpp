// torch_compare's LibTorch peer: the workloads of torch_compare.hpp in LibTorch's C++ frontend
// (torch::nn::Sequential, torch::optim), served over the protocol described there. The data
// sets come from tapegrad's loaders (nn::moons, nn::load_fashion_mnist), so the LibTorch peer
// trains on exactly the numbers the tapegrad peer sees; only loading is shared, never timed.

#include <cblas.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>
#include <tapegrad/nn/data.hpp>

#include "torch_compare.hpp"

namespace {

using Clock = std::chrono::steady_clock;

torch::nn::Sequential make_model(const tc::Spec& spec) {
  torch::nn::Sequential model;
  for (std::size_t i = 0; i + 1 < spec.sizes.size(); ++i) {
    model->push_back(torch::nn::Linear(spec.sizes[i], spec.sizes[i + 1]));
    if (i + 2 < spec.sizes.size()) model->push_back(torch::nn::ReLU());
  }
  if (spec.sigmoid_output) model->push_back(torch::nn::Sigmoid());
  return model;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const tc::Spec& spec,
                                                        torch::nn::Sequential& model) {
  if (spec.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(model->parameters(),
                                               torch::optim::SGDOptions(spec.lr));
  return std::make_unique<torch::optim::Adam>(model->parameters(),
                                              torch::optim::AdamOptions(spec.lr));
}

torch::Tensor features(const nn::Dataset& d) {
  return torch::from_blob(const_cast<float*>(d.features.data()), {d.rows, d.cols}, torch::kFloat32)
      .clone();
}

class LtSteps : public tc::Session {
 public:
  LtSteps(const tc::Spec& spec, std::uint64_t seed) : spec_(spec) {
    torch::manual_seed(seed);
    model_ = make_model(spec);
    opt_ = make_optimizer(spec, model_);
    const nn::Dataset d = spec.name == "xor" ? nn::xor_data() : nn::moons(spec.rows, 0.1, seed + 1);
    x_ = features(d);
    std::vector<float> y;
    for (std::int32_t label : d.labels)
      y.push_back(spec.loss == "hinge_l2" ? 2.0f * float(label) - 1.0f : float(label));
    y_ = torch::from_blob(y.data(), {d.rows, 1}, torch::kFloat32).clone();
  }

  double run(long n, double& loss) override {
    const auto t0 = Clock::now();
    torch::Tensor l;
    for (long i = 0; i < n; ++i) l = step();
    const double s = tc::seconds_since(t0);
    loss = l.item<double>();
    return s;
  }
  void warm() override {
    const auto t0 = Clock::now();
    while (tc::seconds_since(t0) < 0.3) step();
  }
  double eval() override {
    torch::NoGradGuard no_grad;
    const torch::Tensor out = model_->forward(x_);
    const torch::Tensor predicted = spec_.sigmoid_output ? out > 0.5 : out > 0;
    return (predicted == (y_ > 0)).to(torch::kFloat64).mean().item<double>();
  }

 private:
  torch::Tensor step() {
    opt_->zero_grad();
    const torch::Tensor out = model_->forward(x_);
    torch::Tensor loss;
    if (spec_.loss == "bce") {
      loss = torch::binary_cross_entropy(out, y_);
    } else if (spec_.loss == "bce_logits") {
      loss = torch::binary_cross_entropy_with_logits(out, y_);
    } else {
      torch::Tensor reg;
      for (const torch::Tensor& p : model_->parameters()) {
        const torch::Tensor s = (p * p).sum();
        reg = reg.defined() ? reg + s : s;
      }
      loss = torch::relu(1 - y_ * out).mean() + 1e-4 * reg;
    }
    loss.backward();
    opt_->step();
    return loss;
  }

  const tc::Spec& spec_;
  torch::nn::Sequential model_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> opt_;
  torch::Tensor x_, y_;
};

struct Fashion {
  torch::Tensor x, y;
};

const Fashion& fashion(nn::Split split) {
  auto load = [](nn::Split s) {
    const nn::Dataset d = nn::load_fashion_mnist(s);
    std::vector<std::int64_t> labels(d.labels.begin(), d.labels.end());
    return Fashion{features(d), torch::from_blob(labels.data(), {d.rows}, torch::kInt64).clone()};
  };
  static const Fashion train = load(nn::Split::train), test = load(nn::Split::test);
  return split == nn::Split::train ? train : test;
}

// Shuffled batches by torch::randperm and index_select, as the PyTorch peer takes them.
class LtFashion : public tc::Session {
 public:
  LtFashion(const tc::Spec& spec, std::uint64_t seed) : spec_(spec) {
    torch::manual_seed(seed);
    model_ = make_model(spec);
    opt_ = make_optimizer(spec, model_);
  }
  double run(long n, double& loss) override {
    const auto t0 = Clock::now();
    for (long e = 0; e < n; ++e) loss = epoch(-1);
    return tc::seconds_since(t0);
  }
  void warm() override { epoch(20); }
  double eval() override {
    torch::NoGradGuard no_grad;
    const Fashion& test = fashion(nn::Split::test);
    return (model_->forward(test.x).argmax(1) == test.y).to(torch::kFloat64).mean().item<double>();
  }

 private:
  double epoch(long max_batches) {
    const Fashion& train = fashion(nn::Split::train);
    const std::int64_t rows = train.x.size(0);
    const torch::Tensor order = torch::randperm(rows);
    double sum = 0;
    long count = 0;
    for (std::int64_t i = 0; i < rows; i += spec_.rows) {
      const torch::Tensor idx = order.slice(0, i, std::min(i + spec_.rows, rows));
      const torch::Tensor xb = train.x.index_select(0, idx), yb = train.y.index_select(0, idx);
      opt_->zero_grad();
      const torch::Tensor loss = torch::nn::functional::cross_entropy(model_->forward(xb), yb);
      loss.backward();
      opt_->step();
      sum += loss.item<double>();
      if (++count == max_batches) break;
    }
    return count ? sum / double(count) : 0.0;
  }

  const tc::Spec& spec_;
  torch::nn::Sequential model_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> opt_;
};

}  // namespace

int main() {
  // TC_FLUSH_DENORMAL=1: subnormal floats flush to zero (bench/README.md).
  if (const char* ftz = std::getenv("TC_FLUSH_DENORMAL"); ftz != nullptr && std::string(ftz) == "1")
    at::globalContext().setFlushDenormal(true);
  return tc::serve(
      [](const tc::Spec& spec, std::uint64_t seed) -> std::unique_ptr<tc::Session> {
        if (spec.epochs) return std::make_unique<LtFashion>(spec, seed);
        return std::make_unique<LtSteps>(spec, seed);
      },
      [](int omp, int blas) {
        at::set_num_threads(omp);
        openblas_set_num_threads(blas);
      });
}
