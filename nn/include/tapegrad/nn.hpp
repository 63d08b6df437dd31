// tapegrad's nn library in one include: parameters and modules, layers and
// activations, initializers.

#pragma once

#include "tapegrad/nn/diagnostics.hpp"
#include "tapegrad/nn/init.hpp"
#include "tapegrad/nn/layers.hpp"
#include "tapegrad/nn/loss.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/nn/optim.hpp"
#include "tapegrad/nn/scalar.hpp"
