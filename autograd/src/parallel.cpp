// The engine's thread pool (Note [Parallel work]): persistent sleeping workers, chunks claimed
// from a shared counter, the caller working alongside.

#include "tapegrad/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "tapegrad/error.hpp"

// WebAssembly without -pthread (the playground) has no threads to start, and em++ 3.1.6's
// libc++ has no std::jthread: there the pool is the caller alone.
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
#define TAPEGRAD_POOL 0
#else
#define TAPEGRAD_POOL 1
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>
#endif

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace ag {
namespace {

std::atomic<std::int64_t> product_threshold{ParallelThresholds{}.product};
std::atomic<std::int64_t> elementwise_threshold{ParallelThresholds{}.elementwise};

// A job as the workers see it: everything they read lives in the caller's frame, which outlives
// every worker's part in it (the caller waits for `active_` to drop to 0 before returning).
struct Job {
  void* context = nullptr;
  detail::ChunkFunction run = nullptr;
  std::int64_t chunks = 0;
  std::atomic<std::int64_t>* next = nullptr;
  unsigned control_word = 0;  // the caller's MXCSR
};

#if TAPEGRAD_POOL
unsigned control_word() {
#if defined(__SSE__)
  return _mm_getcsr();
#else
  return 0;
#endif
}

void set_control_word([[maybe_unused]] unsigned word) {
#if defined(__SSE__)
  _mm_setcsr(word);
#endif
}
#endif

void claim_chunks(const Job& job) {
  if (job.next == nullptr) {  // the caller alone
    for (std::int64_t c = 0; c < job.chunks; ++c) job.run(job.context, c);
    return;
  }
  for (std::int64_t c = job.next->fetch_add(1); c < job.chunks; c = job.next->fetch_add(1))
    job.run(job.context, c);
}

#if TAPEGRAD_POOL
thread_local bool on_worker = false;  // a chunk that calls parallel_for runs it alone

class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }
  ~Pool() { stop(); }

  int threads() const { return int(workers_.size()) + 1; }

  void resize(int threads) {
    stop();
    stopping_ = false;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  void run(std::int64_t chunks, void* context, detail::ChunkFunction run) {
    std::atomic<std::int64_t> next{0};
    Job job{context, run, chunks, &next, control_word()};
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (workers_.empty() || chunks < 2 || on_worker || !busy.owns_lock()) {
      claim_chunks(job);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      open_ = true;
      ++generation_;
    }
    wake_.notify_all();
    claim_chunks(job);
    std::unique_lock<std::mutex> lock(mutex_);
    open_ = false;  // a worker waking from now on sees nothing to join
    idle_.wait(lock, [&] { return active_ == 0; });
  }

 private:
  void work() {
    on_worker = true;
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || (open_ && generation_ != seen); });
      if (stopping_) return;
      seen = generation_;
      const Job job = job_;
      ++active_;
      lock.unlock();
      const unsigned own = control_word();
      set_control_word(job.control_word);
      claim_chunks(job);
      set_control_word(own);
      lock.lock();
      if (--active_ == 0) idle_.notify_all();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    workers_.clear();  // std::jthread joins
  }

  std::mutex busy_;  // held by the one caller whose job the pool serves
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  Job job_;
  bool open_ = false, stopping_ = false;
  std::uint64_t generation_ = 0;
  int active_ = 0;
  std::vector<std::jthread> workers_;
};
#else
class Pool {
 public:
  explicit Pool(int) {}
  int threads() const { return 1; }
  void resize(int) {}
  void run(std::int64_t chunks, void* context, detail::ChunkFunction run) {
    claim_chunks(Job{context, run, chunks, nullptr, 0});
  }
};
#endif

int default_threads() {
#if TAPEGRAD_POOL
  if (const char* text = std::getenv("TAPEGRAD_NUM_THREADS"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    const long n = std::strtol(text, &end, 10);
    if (*end != '\0' || n < 1 || n > 1024)
      fail("TAPEGRAD_NUM_THREADS must be a whole number from 1 to 1024, not '{}'", printable(text));
    return int(n);
  }
  return std::max(1, int(std::thread::hardware_concurrency()));
#else
  return 1;
#endif
}

// Started on first use, so a program that never splits work never starts a thread.
Pool& pool() {
  static Pool instance(default_threads());
  return instance;
}

}  // namespace

int num_threads() { return pool().threads(); }

void set_num_threads(int n) {
  if (n < 1) fail("set_num_threads: the thread count must be at least 1, not {}", n);
  pool().resize(n);
}

ParallelThresholds parallel_thresholds() {
  return {.product = product_threshold.load(std::memory_order_relaxed),
          .elementwise = elementwise_threshold.load(std::memory_order_relaxed)};
}

void set_parallel_thresholds(ParallelThresholds thresholds) {
  product_threshold.store(thresholds.product, std::memory_order_relaxed);
  elementwise_threshold.store(thresholds.elementwise, std::memory_order_relaxed);
}

namespace detail {
// A chunk must not throw: on a worker an exception would end the program (std::terminate), and
// the products and Adam's loops, the only callers, cannot.
void run_chunks(std::int64_t chunks, void* context, ChunkFunction run) {
  pool().run(chunks, context, run);
}
}  // namespace detail

}  // namespace ag
