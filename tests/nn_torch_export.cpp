// For torch_nn_test.py: nn's losses with each of their options, evaluated with gradients in
// float64 on seeded inputs; gradient clipping; five steps of each optimizer and its options; the
// warm-up and plateau schedules; Dropout, LayerNorm and BatchNorm1d in training and evaluation,
// and a checkpoint of a model with all three, saved in DIR; printed as JSON (inputs included)
// for PyTorch to redo. Usage: nn_torch_export DIR

#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <tapegrad/random.hpp>
#include <vector>

namespace {

using nlohmann::json;

// `count` numbers uniform in [low, high), from a seeded generator: the same on every machine.
std::vector<double> uniform(std::size_t count, double low, double high, std::uint64_t seed) {
  ag::Rng rng(seed);
  std::vector<double> out;
  for (std::size_t i = 0; i < count; ++i) out.push_back(rng.uniform(low, high));
  return out;
}

json dims(const ag::Shape& shape) {
  return std::vector<std::int64_t>(shape.dims().begin(), shape.dims().end());
}

// Rows of `classes` positive numbers summing to 1: probability targets.
std::vector<double> probability_rows(std::int64_t rows, std::int64_t classes, std::uint64_t seed) {
  std::vector<double> p = uniform(std::size_t(rows * classes), 0.1, 1.0, seed);
  for (std::int64_t r = 0; r < rows; ++r) {
    double total = 0;
    for (std::int64_t c = 0; c < classes; ++c) total += p[std::size_t(r * classes + c)];
    for (std::int64_t c = 0; c < classes; ++c) p[std::size_t(r * classes + c)] /= total;
  }
  return p;
}

// One loss evaluation: the input gets a gradient, the target (if any) is a constant.
struct LossCase {
  std::string fn;  // torch_nn_test.py's name for the torch function
  json kwargs;     // its keyword arguments, reduction included
  ag::Shape shape;
  std::vector<double> input, target;
  std::vector<std::int32_t> labels;
  std::function<ag::Tensor(ag::Tensor input, ag::Tensor target)> loss;
};

const char* reduction_name(nn::Reduction r) {
  switch (r) {
    case nn::Reduction::mean: return "mean";
    case nn::Reduction::sum: return "sum";
    case nn::Reduction::none: return "none";
  }
  return "?";
}

// The loss's value and the input's gradient, backward seeded with weights 1, 1.25, 1.5, 1.75,
// ... so that an unreduced loss's every element counts differently.
json run(const LossCase& c) {
  ag::TensorTape tape;
  ag::Tensor x = tape.input<double>(c.shape, std::span<const double>(c.input), "x");
  ag::Tensor t;
  if (!c.target.empty()) t = tape.constant<double>(c.shape, std::span<const double>(c.target));
  ag::Tensor y = c.loss(x, t);
  std::vector<double> seed;
  for (std::int64_t i = 0; i < y.numel(); ++i) seed.push_back(1 + 0.25 * double(i % 4));
  tape.backward(y, seed);
  return {{"fn", c.fn},       {"kwargs", c.kwargs},  {"shape", dims(c.shape)},
          {"input", c.input}, {"target", c.target},  {"labels", c.labels},
          {"seed", seed},     {"value", y.values()}, {"value_shape", dims(y.shape())},
          {"grad", x.grads()}};
}

json losses() {
  json out = json::array();
  const ag::Shape shape{4, 3};
  const std::vector<double> x = uniform(12, -2.5, 2.5, 1), target = uniform(12, -1, 1, 2);
  // A prediction equal to its target: |d|'s kink, where torch's gradient is sign(0) = 0.
  std::vector<double> x_tied = x;
  x_tied[0] = target[0];
  const std::vector<double> p = uniform(12, 0.05, 0.95, 3), soft = uniform(12, 0, 1, 4);
  std::vector<double> hard;
  for (double s : soft) hard.push_back(s < 0.5 ? 0 : 1);
  const std::vector<std::int32_t> labels{2, 0, 1, 2};
  const std::vector<double> weight{0.5, 2.0, 1.25}, probabilities = probability_rows(4, 3, 5);

  using nn::Reduction;
  for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none}) {
    const json red = {{"reduction", reduction_name(r)}};
    const auto with = [&](json extra) {
      extra.update(red);
      return extra;
    };
    out.push_back(run(
        {"mse", red, shape, x, target, {}, [=](auto a, auto b) { return nn::mse_loss(a, b, r); }}));
    out.push_back(run({"l1", red, shape, x_tied, target, {}, [=](auto a, auto b) {
                         return nn::l1_loss(a, b, r);
                       }}));
    for (double delta : {1.0, 0.5})
      out.push_back(
          run({"huber", with({{"delta", delta}}), shape, x_tied, target, {}, [=](auto a, auto b) {
                 return nn::huber_loss(a, b, r, delta);
               }}));
    // At d = 0 with beta = 0 torch 1.13's smooth_l1 gradient is -1, its L1's 0; ours is 0 for
    // both (nn/loss.hpp), so that point is left out of beta = 0.
    for (double beta : {1.0, 0.3, 0.0})
      out.push_back(run({"smooth_l1",
                         with({{"beta", beta}}),
                         shape,
                         beta == 0 ? x : x_tied,
                         target,
                         {},
                         [=](auto a, auto b) { return nn::smooth_l1_loss(a, b, r, beta); }}));
    for (const auto& y : {hard, soft})
      out.push_back(run(
          {"bce", red, shape, p, y, {}, [=](auto a, auto b) { return nn::bce_loss(a, b, r); }}));
    for (const std::vector<double>& pos_weight :
         {std::vector<double>{}, std::vector<double>{3.0}, std::vector<double>{0.5, 2.0, 4.0}})
      out.push_back(run({"bce_logits",
                         with({{"pos_weight", pos_weight}}),
                         shape,
                         x,
                         soft,
                         {},
                         [=](auto a, auto b) {
                           return nn::bce_with_logits(a, b, {r, pos_weight});
                         }}));
    for (const std::vector<double>& w : {std::vector<double>{}, weight})
      for (double smoothing : {0.0, 0.1, 1.0}) {
        const json kwargs = with({{"weight", w}, {"label_smoothing", smoothing}});
        out.push_back(run({"ce", kwargs, shape, x, {}, labels, [=](auto a, auto) {
                             return nn::cross_entropy(a, labels, {r, w, smoothing});
                           }}));
        out.push_back(
            run({"ce_probabilities", kwargs, shape, x, probabilities, {}, [=](auto a, auto b) {
                   return nn::cross_entropy(a, b, {r, w, smoothing});
                 }}));
      }
    for (const std::vector<double>& w : {std::vector<double>{}, weight})
      out.push_back(run({"nll",
                         with({{"weight", w}}),
                         shape,
                         uniform(12, -4, 0, 6),
                         {},
                         labels,
                         [=](auto a, auto) {
                           return nn::nll_loss(a, labels, {r, w});
                         }}));
  }
  return out;
}

// Three parameters with seeded float32 gradients, clipped by norm (of several types, with
// max_norm above and below the norm) and by value.
json clipping() {
  json out = json::array();
  const std::vector<ag::Shape> shapes{ag::Shape{3, 2}, ag::Shape{4}, ag::Shape{1}};
  const auto clip_case = [&](const char* kind, double bound, double norm_type) {
    std::vector<std::unique_ptr<nn::Parameter>> owned;
    std::vector<nn::Parameter*> params;
    json grads = json::array(), clipped = json::array(), shapes_json = json::array();
    std::uint64_t seed = 20;
    for (const ag::Shape& shape : shapes) {
      owned.push_back(std::make_unique<nn::Parameter>(shape));
      params.push_back(owned.back().get());
      const std::vector<double> g = uniform(std::size_t(shape.numel()), -3, 3, seed++);
      std::copy(g.begin(), g.end(), params.back()->grad().begin());
      grads.push_back(
          std::vector<float>(params.back()->grad().begin(), params.back()->grad().end()));
      shapes_json.push_back(dims(shape));
    }
    double total = 0;
    if (std::string_view(kind) == "norm")
      total = nn::clip_grad_norm(params, bound, norm_type);
    else
      nn::clip_grad_value(params, bound);
    for (nn::Parameter* p : params)
      clipped.push_back(std::vector<float>(p->grad().begin(), p->grad().end()));
    return json{{"kind", kind},          {"bound", bound}, {"norm_type", norm_type},
                {"shapes", shapes_json}, {"grads", grads}, {"total", total},
                {"clipped", clipped}};
  };
  for (double norm_type : {2.0, 1.0, 3.0, nn::kInfNorm})
    for (double max_norm : {0.5, 100.0}) {
      json c = clip_case("norm", max_norm, norm_type);
      if (std::isinf(norm_type)) c["norm_type"] = "inf";  // JSON has no infinity
      out.push_back(c);
    }
  for (double value : {0.25, 2.0}) out.push_back(clip_case("value", value, 0));
  return out;
}

// Five steps of `optimizer` on f(p) = sum(0.5 a p^2 + b p) over two parameters, whose gradient
// a p + b (float32, computed here and by the test alike) changes with every step. Records the
// parameters after each step.
json optimizer_run(
    const char* name, json kwargs,
    const std::function<std::unique_ptr<nn::Optimizer>(std::vector<nn::Parameter*>)>& make) {
  nn::Parameter w(ag::Shape{2, 3}), v(ag::Shape{5});
  std::vector<nn::Parameter*> params{&w, &v};
  json initial = json::array(), a_json = json::array(), b_json = json::array(),
       shapes = json::array();
  std::vector<std::vector<float>> a, b;
  std::uint64_t seed = 40;
  for (nn::Parameter* p : params) {
    const std::vector<double> start = uniform(std::size_t(p->numel()), -1, 1, seed++);
    std::copy(start.begin(), start.end(), p->data().begin());
    const std::vector<double> curvature = uniform(std::size_t(p->numel()), 0.2, 3, seed++);
    const std::vector<double> slope = uniform(std::size_t(p->numel()), -1, 1, seed++);
    a.emplace_back(curvature.begin(), curvature.end());
    b.emplace_back(slope.begin(), slope.end());
    initial.push_back(std::vector<float>(p->data().begin(), p->data().end()));
    a_json.push_back(a.back());
    b_json.push_back(b.back());
    shapes.push_back(dims(p->shape()));
  }
  std::unique_ptr<nn::Optimizer> optimizer = make(params);
  json steps = json::array();
  for (int step = 0; step < 5; ++step) {
    for (std::size_t k = 0; k < params.size(); ++k) {
      const std::span<float> p = params[k]->data(), g = params[k]->grad();
      for (std::size_t i = 0; i < p.size(); ++i) {
        const float curved = a[k][i] * p[i];  // two roundings, as torch's a * p + b
        g[i] = curved + b[k][i];
      }
    }
    optimizer->step();
    json after = json::array();
    for (nn::Parameter* p : params)
      after.push_back(std::vector<float>(p->data().begin(), p->data().end()));
    steps.push_back(after);
  }
  return {{"optimizer", name}, {"kwargs", kwargs}, {"shapes", shapes}, {"initial", initial},
          {"a", a_json},       {"b", b_json},      {"steps", steps}};
}

json optimizers() {
  json out = json::array();
  using Params = std::vector<nn::Parameter*>;
  const auto add = [&](const char* name, json kwargs, auto make) {
    out.push_back(optimizer_run(name, kwargs, [&](Params p) -> std::unique_ptr<nn::Optimizer> {
      return make(std::move(p));
    }));
  };
  add("RMSprop", {{"lr", 0.01}}, [](Params p) { return std::make_unique<nn::RMSprop>(p); });
  add("RMSprop", {{"lr", 0.02}, {"momentum", 0.9}}, [](Params p) {
    return std::make_unique<nn::RMSprop>(p, nn::RMSpropOptions{.lr = 0.02, .momentum = 0.9});
  });
  add("RMSprop", {{"lr", 0.01}, {"alpha", 0.9}, {"centered", true}}, [](Params p) {
    return std::make_unique<nn::RMSprop>(
        p, nn::RMSpropOptions{.lr = 0.01, .alpha = 0.9, .centered = true});
  });
  add("RMSprop",
      {{"lr", 0.01}, {"momentum", 0.5}, {"centered", true}, {"weight_decay", 0.1}, {"eps", 1e-3}},
      [](Params p) {
        return std::make_unique<nn::RMSprop>(
            p,
            nn::RMSpropOptions{
                .lr = 0.01, .eps = 1e-3, .weight_decay = 0.1, .momentum = 0.5, .centered = true});
      });
  add("Adagrad", {{"lr", 0.1}},
      [](Params p) { return std::make_unique<nn::Adagrad>(p, nn::AdagradOptions{.lr = 0.1}); });
  add("Adagrad",
      {{"lr", 0.1}, {"lr_decay", 0.2}, {"weight_decay", 0.05}, {"initial_accumulator_value", 0.3}},
      [](Params p) {
        return std::make_unique<nn::Adagrad>(p,
                                             nn::AdagradOptions{.lr = 0.1,
                                                                .lr_decay = 0.2,
                                                                .weight_decay = 0.05,
                                                                .initial_accumulator_value = 0.3});
      });
  add("Adam", {{"lr", 0.1}, {"amsgrad", true}}, [](Params p) {
    return std::make_unique<nn::Adam>(p, nn::AdamOptions{.lr = 0.1, .amsgrad = true});
  });
  add("AdamW", {{"lr", 0.1}, {"amsgrad", true}, {"weight_decay", 0.1}}, [](Params p) {
    return std::make_unique<nn::AdamW>(
        p, nn::AdamOptions{.lr = 0.1, .weight_decay = 0.1, .amsgrad = true});
  });
  add("Adam", {{"lr", 0.1}},
      [](Params p) { return std::make_unique<nn::Adam>(p, nn::AdamOptions{.lr = 0.1}); });
  return out;
}

// The warm-up schedule over 12 epochs, and ReduceLROnPlateau's rate after each of a run of
// metrics with plateaus, in both modes and both threshold kinds.
json schedules() {
  json warmups = json::array();
  for (const auto& [start, step_size] : {std::pair{0.25, 3}, std::pair{0.5, 100}}) {
    const nn::LrSchedule s = nn::schedule::warmup(4, start, nn::schedule::step(step_size, 0.5));
    std::vector<double> lrs;
    for (std::size_t epoch = 0; epoch < 12; ++epoch) lrs.push_back(s(epoch, 0.1));
    warmups.push_back({{"warmup", 4},
                       {"start_factor", start},
                       {"step_size", step_size},
                       {"gamma", 0.5},
                       {"lrs", lrs}});
  }
  const std::vector<double> metrics{1.0, 0.9, 0.9,  0.95, 0.9,  0.89999, 0.91, 0.92,
                                    0.5, 0.5, 0.51, 0.49, 0.52, 0.53,    0.54, 0.55};
  json plateaus = json::array();
  for (const bool max_mode : {false, true})
    for (const bool relative : {true, false})
      for (const std::size_t cooldown : {0, 2}) {
        nn::Parameter p(ag::Shape{1});
        nn::SGD sgd({&p}, {.lr = 1.0});
        nn::PlateauOptions o;
        o.mode = max_mode ? nn::PlateauOptions::Mode::max : nn::PlateauOptions::Mode::min;
        o.factor = 0.5;
        o.patience = 2;
        o.threshold = relative ? 0.01 : 0.02;
        o.relative_threshold = relative;
        o.cooldown = cooldown;
        o.min_lr = 0.1;
        nn::ReduceLROnPlateau plateau(sgd, o);
        std::vector<double> lrs;
        for (double m : metrics) {
          plateau.step(m);
          lrs.push_back(sgd.lr());
        }
        plateaus.push_back({{"mode", max_mode ? "max" : "min"},
                            {"factor", o.factor},
                            {"patience", o.patience},
                            {"threshold", o.threshold},
                            {"threshold_mode", relative ? "rel" : "abs"},
                            {"cooldown", cooldown},
                            {"min_lr", o.min_lr},
                            {"metrics", metrics},
                            {"lrs", lrs}});
      }
  return {{"warmup", warmups}, {"plateau", plateaus}};
}

std::vector<float> floats(std::span<const float> s) { return {s.begin(), s.end()}; }

// A float32 input of `shape` with seeded values, and the backward seed 1, 1.25, 1.5, 1.75, ...
ag::Tensor float_input(ag::TensorTape& tape, const ag::Shape& shape, std::uint64_t seed) {
  const std::vector<double> v = uniform(std::size_t(shape.numel()), -2, 2, seed);
  const std::vector<float> f(v.begin(), v.end());
  return tape.input<float>(shape, std::span<const float>(f), "x");
}

std::vector<double> backward_seed(std::int64_t n) {
  std::vector<double> seed;
  for (std::int64_t i = 0; i < n; ++i) seed.push_back(1 + 0.25 * double(i % 4));
  return seed;
}

// One forward and backward of `module` on a seeded input: the input, output and gradients.
json module_pass(nn::Module& module, const ag::Shape& shape, std::uint64_t seed) {
  ag::TensorTape tape;
  module.zero_grad();
  ag::Tensor x = float_input(tape, shape, seed);
  ag::Tensor y = module(x);
  tape.backward(y, backward_seed(y.numel()));
  json grads = json::object();
  for (auto& [name, p] : module.named_parameters()) grads[name] = floats(p->grad());
  json buffers = json::object();
  for (auto& [name, b] : module.named_buffers()) {
    if (b->kind() == nn::Buffer::Kind::f32)
      buffers[name] = floats(b->data());
    else
      buffers[name] = b->integers()[0];
  }
  return {{"training", module.is_training()},
          {"shape", dims(shape)},
          {"x", x.values()},
          {"seed", backward_seed(y.numel())},
          {"y", y.values()},
          {"x_grad", x.grads()},
          {"param_grads", grads},
          {"buffers_after", buffers}};
}

// The module's parameters set to seeded values (away from their 1 and 0 starts).
json set_parameters(nn::Module& module, std::uint64_t seed) {
  json out = json::object();
  for (auto& [name, p] : module.named_parameters()) {
    const std::vector<double> v = uniform(std::size_t(p->numel()), 0.5, 1.5, seed++);
    std::copy(v.begin(), v.end(), p->data().begin());
    out[name] = floats(p->data());
  }
  return out;
}

json layers() {
  json out = json::array();
  {
    nn::LayerNorm norm(5);
    const json params = set_parameters(norm, 60);
    out.push_back({{"layer", "LayerNorm"},
                   {"kwargs", {{"normalized_shape", 5}}},
                   {"parameters", params},
                   {"passes", {module_pass(norm, ag::Shape{3, 5}, 61)}}});
  }
  for (const std::optional<double> momentum : {std::optional<double>{0.1}, std::optional<double>{}})
    for (const bool affine : {true, false}) {
      nn::BatchNorm1d norm(4, {.momentum = momentum, .affine = affine});
      const json params = set_parameters(norm, 70);
      json passes = json::array();
      for (std::uint64_t batch = 0; batch < 3; ++batch)
        passes.push_back(module_pass(norm, ag::Shape{6, 4}, 71 + batch));
      norm.eval();
      passes.push_back(module_pass(norm, ag::Shape{2, 4}, 80));
      json kwargs = {{"num_features", 4}, {"affine", affine}};
      kwargs["momentum"] = momentum ? json(*momentum) : json(nullptr);
      out.push_back({{"layer", "BatchNorm1d"},
                     {"kwargs", kwargs},
                     {"parameters", params},
                     {"passes", passes}});
    }
  {
    nn::Dropout dropout(0.3, 5);
    json passes = {module_pass(dropout, ag::Shape{20, 10}, 90)};
    dropout.eval();
    passes.push_back(module_pass(dropout, ag::Shape{20, 10}, 91));
    out.push_back({{"layer", "Dropout"},
                   {"kwargs", {{"p", 0.3}}},
                   {"parameters", json::object()},
                   {"passes", passes}});
  }
  return out;
}

// Linear, BatchNorm1d, ReLU, Dropout, Linear, LayerNorm trained five Adam steps, saved in `dir`;
// the test loads it into the same torch.nn.Sequential with load_state_dict(strict=True).
json checkpoint(const std::string& dir) {
  nn::Sequential model;
  model.push_back(nn::Linear(nn::LinearOptions(3, 8).seed(1)));
  model.push_back(nn::BatchNorm1d(8));
  model.push_back(nn::ReLU());
  model.push_back(nn::Dropout(0.3, 2));
  model.push_back(nn::Linear(nn::LinearOptions(8, 4).seed(3)));
  model.push_back(nn::LayerNorm(4));
  nn::Adam adam(model.parameters(), {.lr = 0.05});
  ag::TensorTape tape;
  for (std::uint64_t step = 0; step < 5; ++step) {
    tape.reset();
    ag::Tensor y = model(float_input(tape, ag::Shape{10, 3}, 100 + step));
    ag::Tensor loss = nn::mse_loss(y, ag::zeros(tape, y.shape()) + 0.5);
    adam.zero_grad();
    tape.backward(loss);
    adam.step();
  }
  const std::string path = dir + "/norm_model.safetensors";
  nn::save(model, path);
  model.eval();
  tape.reset();
  ag::Tensor x = float_input(tape, ag::Shape{6, 3}, 110);
  return {{"path", path}, {"x", x.values()}, {"y", model(x).values()}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: nn_torch_export DIR\n");
    return 2;
  }
  try {
    const json out = {{"losses", losses()},         {"clipping", clipping()},
                      {"optimizers", optimizers()}, {"schedules", schedules()},
                      {"layers", layers()},         {"checkpoint", checkpoint(argv[1])}};
    std::puts(out.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nn_torch_export: %s\n", e.what());
    return 2;
  }
  return 0;
}
