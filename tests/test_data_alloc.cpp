// A warm DataLoader epoch allocates nothing: operator new is counted (as in
// test_alloc.cpp, which is why this is an executable of its own) over batches.

#include <doctest/doctest.h>

#include <cstdlib>
#include <new>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>

namespace {
long allocations = 0;
bool counting = false;
}  // namespace

// This executable's global allocator: plain malloc, counted while `counting`.
void* operator new(std::size_t size) {
  if (counting) ++allocations;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
// GCC cannot see that the operator new above is malloc, and warns that free is
// the wrong deallocator; here it is the right one.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

TEST_CASE("a warm epoch of batches, their tensors and accuracy allocate nothing") {
  const nn::Dataset data = nn::spirals(100, 3, 0.2, 0);
  nn::DataLoader loader(data, 32, true, 7);
  ag::TensorTape tape;
  double seen = 0;
  for (int epoch = 0; epoch < 3; ++epoch) {
    if (epoch == 1) {
      allocations = 0;
      counting = true;
    }
    for (const nn::Batch& b : loader) {
      tape.reset();
      ag::Tensor x = b.inputs(tape);
      ag::Tensor logits = ag::matmul(x, ag::ones(tape, ag::Shape{2, 3}));
      seen += nn::accuracy(logits, b.y, nn::Scores::logits) * double(b.rows);
    }
  }
  counting = false;
  CHECK(allocations == 0);
  CHECK(seen >= 0);
}
