// Parameters, buffers and the module tree: registration, dotted names, train/eval.

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

Buffer::Buffer(ag::Shape shape, Kind kind) : shape_(shape), kind_(kind) {
  const auto n = static_cast<std::size_t>(shape.numel());
  if (kind == Kind::f32)
    floats_.resize(n);
  else
    integers_.resize(n);
}

std::span<const std::byte> Buffer::bytes() const {
  return kind_ == Kind::f32 ? std::as_bytes(data()) : std::as_bytes(integers());
}

std::span<std::byte> Buffer::writable_bytes() {
  return kind_ == Kind::f32 ? std::as_writable_bytes(data()) : std::as_writable_bytes(integers());
}

Buffer& Module::register_buffer(std::string name, ag::Shape shape, Buffer::Kind kind) {
  // One namespace for both, as in torch: a state_dict key names one tensor.
  for (const auto& [n, p] : params_)
    if (n == name) ag::fail("buffer '{}' has the name of a parameter", name);
  for (const auto& [n, b] : buffers_)
    if (n == name) ag::fail("buffer '{}' is registered twice", name);
  buffers_.emplace_back(std::move(name), std::make_unique<Buffer>(shape, kind));
  return *buffers_.back().second;
}

void Module::collect_buffers(const std::string& prefix,
                             std::vector<std::pair<std::string, Buffer*>>& out) {
  for (auto& [name, b] : buffers_) out.emplace_back(prefix + name, b.get());
  for (auto& [name, child] : children_) child->collect_buffers(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Buffer*>> Module::named_buffers() {
  std::vector<std::pair<std::string, Buffer*>> out;
  collect_buffers("", out);
  return out;
}

Parameter& Module::register_parameter(std::string name, ag::Shape shape) {
  for (const auto& [n, p] : params_)
    if (n == name) ag::fail("parameter '{}' is registered twice", name);
  params_.emplace_back(std::move(name), std::make_unique<Parameter>(shape));
  return *params_.back().second;
}

void Module::adopt(std::string name, std::unique_ptr<Module> module) {
  for (const auto& [n, m] : children_)
    if (n == name) ag::fail("module '{}' is registered twice", name);
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
