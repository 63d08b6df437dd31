// tapegrad's core in one include: the tapes, scalar Values and Tensors with their ops, the
// step-through backward, lecture-style text, anomaly mode and the graph model. No Graphviz.

#pragma once

#include "tapegrad/anomaly.hpp"
#include "tapegrad/error.hpp"
#include "tapegrad/format.hpp"
#include "tapegrad/graph_model.hpp"
#include "tapegrad/ops.hpp"
#include "tapegrad/parallel.hpp"
#include "tapegrad/random.hpp"
#include "tapegrad/step_plan.hpp"
#include "tapegrad/tape.hpp"
#include "tapegrad/tensor.hpp"
#include "tapegrad/value.hpp"
