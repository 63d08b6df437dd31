// tapegrad's autograd library in one include: the core (core.hpp: the tape, scalar Values and
// their ops, the step-through backward and its lecture-style formatting), graphs and the page.

#pragma once

#include "tapegrad/core.hpp"
#include "tapegrad/graph.hpp"
#include "tapegrad/page.hpp"
