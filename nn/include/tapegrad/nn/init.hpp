// Parameter initializers, each seeded: the same seed gives the same weights on
// every machine (ag::Rng). Fan-in and fan-out are those of a (out, in) weight.

#pragma once

#include <cstdint>
#include <string_view>

#include "tapegrad/nn/module.hpp"

namespace nn::init {

void zeros(Parameter& p);
void constant(Parameter& p, double value);
void uniform(Parameter& p, double low, double high, std::uint64_t seed);
void normal(Parameter& p, double mean, double stddev, std::uint64_t seed);
// Glorot & Bengio: U(-a, a) with a = gain sqrt(6 / (fan_in + fan_out)), and
// N(0, gain^2 2 / (fan_in + fan_out)).
void xavier_uniform(Parameter& p, std::uint64_t seed, double gain = 1.0);
void xavier_normal(Parameter& p, std::uint64_t seed, double gain = 1.0);
// He et al. for ReLU nets: U(-b, b) with b = sqrt(6 / fan_in), and N(0, 2 / fan_in).
void kaiming_uniform(Parameter& p, std::uint64_t seed);
void kaiming_normal(Parameter& p, std::uint64_t seed);

// (fan_in, fan_out) as PyTorch computes them: a (out, in) weight has
// fan_in = in and fan_out = out; a 1-D parameter has both equal to its length.
std::pair<std::int64_t, std::int64_t> fans(const Parameter& p);

}  // namespace nn::init
