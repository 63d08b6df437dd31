// The lecture style's look, shared by the graph model (graph_model.cpp) and the step-through page
// (page.cpp), whose stylesheet highlights and reveals parts of such a graph's SVG.

#pragma once

namespace ag::look {

// The colours of the CS231n slides: forward values in green above the edge, gradients in red
// below it; the step being taken in a colour of its own, with a thicker pen. Graphviz writes
// these names into SVG as they are (fill="darkgreen"), and they are CSS colour names too.
inline constexpr const char* kFont = "Helvetica";
inline constexpr const char* kValueColour = "darkgreen";
inline constexpr const char* kGradColour = "darkred";
inline constexpr const char* kConstantColour = "gray40";
inline constexpr const char* kNameColour = "gray25";
inline constexpr const char* kClusterColour = "gray50";
// Note [Drawing the backward pass] (graph_model.hpp): the forward nodes muted, the nodes backward
// recorded in the gradient's colour.
inline constexpr const char* kMutedColour = "gray70";
inline constexpr const char* kStepColour = "orangered";
inline constexpr const char* kStepPen = "2.5";
inline constexpr const char* kStepFill = "mistyrose";  // thick table borders would split the cells

}  // namespace ag::look
