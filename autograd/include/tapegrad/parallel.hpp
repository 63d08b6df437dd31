// The engine's threads: one small persistent pool that large products and Adam's update split
// their work over, its size (ag::set_num_threads, TAPEGRAD_NUM_THREADS) and its size thresholds.

#pragma once

#include <cstdint>
#include <type_traits>

namespace ag {

// Note [Parallel work]
// ~~~~~~~~~~~~~~~~~~~~
// Work is split into chunks whose boundaries depend on the shape alone, never on the thread
// count, and each chunk is computed exactly as the single-threaded loop computes that range. So
// a result does not depend on how many threads ran it, nor on which thread took which chunk:
// splitting an elementwise loop or the rows/columns of a product moves no bit (no reduction is
// ever split). Chunks are claimed one at a time from a shared counter by the caller and the
// pool's threads alike: on a machine shared with other jobs a descheduled worker costs nothing
// but its one chunk in flight, where a fixed half-and-half split would wait for it. The caller
// always works, so one thread is "no pool" and a pool of n has n - 1 workers. Workers sleep on a
// condition variable (they never spin: spinning workers take the core another process, or
// OpenBLAS's own pool, needs) and run each job under the caller's floating-point control word
// (MXCSR: flush-to-zero, denormals-are-zero), so a chunk computes the same bits on any thread.
// Small work must not pay for any of this: below the thresholds nothing touches the pool.
// One job runs at a time: a call made while the pool is busy (another thread's tape, or a
// chunk that itself calls parallel_for) runs its chunks alone, in order.

// The threads the engine's kernels use, the caller's included: at least 1. The default is
// TAPEGRAD_NUM_THREADS if set, else std::thread::hardware_concurrency(). WebAssembly builds
// without threads always have 1.
int num_threads();
// Resizes the pool (n >= 1; ag::Error otherwise). Not to be called while a kernel runs.
void set_num_threads(int n);

// From what size work is split (Note [Parallel work]). A chunk hand-off costs a few
// microseconds (a wake-up, a lock), so only work of hundreds of microseconds is split.
struct ParallelThresholds {
  // Multiply-adds of one product: 2^21 keeps a 256x64 by 64x64 product (2^20) on one thread
  // and splits Fashion-MNIST's 128x784 by 784x256 (2^24.6) and 128x256 by 256x128 (2^22).
  std::int64_t product = std::int64_t(1) << 21;
  // Elements of an optimizer's per-parameter loop: 784x256 weights are split, 64x64 are not.
  std::int64_t elementwise = std::int64_t(1) << 15;
};
ParallelThresholds parallel_thresholds();
// Tests lower them to run the threaded paths on small shapes.
void set_parallel_thresholds(ParallelThresholds thresholds);

namespace detail {
using ChunkFunction = void (*)(void* context, std::int64_t chunk);
void run_chunks(std::int64_t chunks, void* context, ChunkFunction run);
}  // namespace detail

// Calls body(c) once for every chunk c in [0, chunks), spread over the pool (Note [Parallel
// work]); returns when all have run. The caller decides the chunks and whether splitting pays.
template <class Body> void parallel_for(std::int64_t chunks, Body&& body) {
  detail::run_chunks(chunks, &body, [](void* context, std::int64_t chunk) {
    (*static_cast<std::remove_reference_t<Body>*>(context))(chunk);
  });
}

}  // namespace ag
