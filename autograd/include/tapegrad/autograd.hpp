// tapegrad's autograd library in one include: the tape, scalar Values and their
// ops, the step-through backward and its lecture-style formatting.

#pragma once

#include "tapegrad/anomaly.hpp"
#include "tapegrad/error.hpp"
#include "tapegrad/format.hpp"
#include "tapegrad/graph.hpp"
#include "tapegrad/ops.hpp"
#include "tapegrad/page.hpp"
#include "tapegrad/random.hpp"
#include "tapegrad/tape.hpp"
#include "tapegrad/tensor.hpp"
#include "tapegrad/value.hpp"
