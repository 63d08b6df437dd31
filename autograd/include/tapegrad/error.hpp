// ag::Error: the one exception type of the autograd library. Its message names
// the problem precisely (the op, the shapes, the position) for the user.

#pragma once

#include <stdexcept>
#include <string>

namespace ag {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace ag
