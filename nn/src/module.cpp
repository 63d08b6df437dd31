// Parameters and the module tree: registration, dotted names, train/eval.

#include "tapegrad/nn/module.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace nn {

Parameter::Parameter(ag::Shape shape)
    : shape_(shape),
      data_(static_cast<std::size_t>(shape.numel())),
      grad_(static_cast<std::size_t>(shape.numel())) {}

ag::Tensor Parameter::on(ag::TensorTape& tape, std::string_view name) {
  return tape.parameter(shape_, data_.data(), grad_.data(), name);
}

void Parameter::zero_grad() { std::fill(grad_.begin(), grad_.end(), 0.0f); }

double Parameter::grad_norm() const {
  double s = 0;
  for (float g : grad_) s += double(g) * double(g);
  return std::sqrt(s);
}

Parameter& Module::register_parameter(std::string name, ag::Shape shape) {
  for (const auto& [n, p] : params_)
    if (n == name) throw ag::Error(fmt::format("parameter '{}' is registered twice", name));
  params_.emplace_back(std::move(name), std::make_unique<Parameter>(shape));
  return *params_.back().second;
}

void Module::adopt(std::string name, std::unique_ptr<Module> module) {
  for (const auto& [n, m] : children_)
    if (n == name) throw ag::Error(fmt::format("module '{}' is registered twice", name));
  module->set_path(path_.empty() ? name : path_ + "." + name);
  children_.emplace_back(std::move(name), module.get());
  owned_.push_back(std::move(module));
}

void Module::set_path(const std::string& path) {
  path_ = path;
  for (auto& [name, child] : children_) child->set_path(path + "." + name);
}

std::string Module::label(std::string_view name) const {
  return path_.empty() ? std::string(name) : fmt::format("{}.{}", path_, name);
}

void Module::collect(const std::string& prefix,
                     std::vector<std::pair<std::string, Parameter*>>& out) {
  for (auto& [name, p] : params_) out.emplace_back(prefix + name, p.get());
  for (auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Parameter*>> Module::named_parameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  collect("", out);
  return out;
}

void Module::collect(std::vector<Parameter*>& out) {
  for (auto& [name, p] : params_) out.push_back(p.get());
  for (auto& [name, child] : children_) child->collect(out);
}

// The same walk as named_parameters() without building the names: a training loop may ask
// for the parameters every step (micrograd's L2 term does), and names cost a string each.
std::vector<Parameter*> Module::parameters() {
  std::vector<Parameter*> out;
  collect(out);
  return out;
}

std::int64_t Module::parameter_count() {
  std::int64_t n = 0;
  for (Parameter* p : parameters()) n += p->numel();
  return n;
}

void Module::zero_grad() {
  for (Parameter* p : parameters()) p->zero_grad();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

}  // namespace nn
