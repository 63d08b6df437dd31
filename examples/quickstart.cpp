// The README's first program: the CS231n circuit f = (x + y) * z and its gradients.
// tests/install_test.sh builds it against the installed library with pkg-config.
#include <fmt/core.h>

#include <tapegrad/autograd.hpp>
int main() {
  ag::Tape tape;
  ag::Value x = tape.input(-2.0, "x"), y = tape.input(5.0, "y"), z = tape.input(-4.0, "z");
  ag::Value f = (x + y) * z;
  tape.backward(f);
  fmt::print("f={} df/dx={} df/dy={} df/dz={}\n", f.value(), x.grad(), y.grad(), z.grad());
}
