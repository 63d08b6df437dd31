// tapegrad's nn library in one include: parameters and modules, layers and
// activations, dropout and normalization, initializers, losses, optimizers, data sets and metrics.

#pragma once

#include "tapegrad/nn/checkpoint.hpp"
#include "tapegrad/nn/data.hpp"
#include "tapegrad/nn/diagnostics.hpp"
#include "tapegrad/nn/init.hpp"
#include "tapegrad/nn/layers.hpp"
#include "tapegrad/nn/loss.hpp"
#include "tapegrad/nn/metrics.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/nn/norm.hpp"
#include "tapegrad/nn/optim.hpp"
#include "tapegrad/nn/plot.hpp"
#include "tapegrad/nn/scalar.hpp"
#include "tapegrad/nn/trainer.hpp"
