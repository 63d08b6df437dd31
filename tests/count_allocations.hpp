// Counts operator new calls: include it in exactly one file of a test
// executable, which then replaces the global allocator with a counted malloc.

#pragma once

#include <cstdlib>
#include <new>

namespace count_allocations {
inline long allocations = 0;
inline bool counting = false;

// Counts from zero until stop(); returns nothing, read `allocations`.
inline void start() {
  allocations = 0;
  counting = true;
}
inline long stop() {
  counting = false;
  return allocations;
}
}  // namespace count_allocations

// This executable's global allocator: plain malloc, counted while counting.
void* operator new(std::size_t size) {
  if (count_allocations::counting) ++count_allocations::allocations;
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
