// Seeded parameter initializers (Xavier/Glorot, He/Kaiming, uniform, normal).

#include "tapegrad/nn/init.hpp"

#include <cmath>

#include "tapegrad/random.hpp"

namespace nn::init {

std::pair<std::int64_t, std::int64_t> fans(const Parameter& p) {
  const ag::Shape& s = p.shape();
  if (s.rank() < 2) return {p.numel(), p.numel()};
  std::int64_t receptive = 1;
  for (int i = 2; i < s.rank(); ++i) receptive *= s[i];
  return {s[1] * receptive, s[0] * receptive};
}

void zeros(Parameter& p) { constant(p, 0.0); }

void constant(Parameter& p, double value) {
  for (float& x : p.data()) x = float(value);
}

void uniform(Parameter& p, double low, double high, std::uint64_t seed) {
  ag::Rng rng(seed);
  for (float& x : p.data()) x = float(rng.uniform(low, high));
}

void normal(Parameter& p, double mean, double stddev, std::uint64_t seed) {
  ag::Rng rng(seed);
  for (float& x : p.data()) x = float(rng.normal(mean, stddev));
}

void xavier_uniform(Parameter& p, std::uint64_t seed, double gain) {
  const auto [in, out] = fans(p);
  const double a = gain * std::sqrt(6.0 / double(in + out));
  uniform(p, -a, a, seed);
}

void xavier_normal(Parameter& p, std::uint64_t seed, double gain) {
  const auto [in, out] = fans(p);
  normal(p, 0.0, gain * std::sqrt(2.0 / double(in + out)), seed);
}

void kaiming_uniform(Parameter& p, std::uint64_t seed) {
  const double b = std::sqrt(6.0 / double(fans(p).first));
  uniform(p, -b, b, seed);
}

void kaiming_normal(Parameter& p, std::uint64_t seed) {
  normal(p, 0.0, std::sqrt(2.0 / double(fans(p).first)), seed);
}

}  // namespace nn::init
