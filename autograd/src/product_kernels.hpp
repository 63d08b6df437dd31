// The product kernels (internal): tiny plain loops, small packed SSE2/AVX2 kernels chosen at run
// time, and BLAS for large products; plus linear's bias loops. Included by the op entries.

#pragma once

#if TAPEGRAD_HAVE_BLAS  // -Dblas (meson_options.txt); without it, Note [Products without BLAS]
#include <cblas.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tapegrad/parallel.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TAPEGRAD_AVX2 1
#endif

namespace ag::kernels {

#if TAPEGRAD_HAVE_BLAS
// Below this many multiply-adds a plain loop beats a BLAS call's overhead
// (about 80 ns for a 4x5 by 5x5 sgemm on this machine).
constexpr std::int64_t kBlasThreshold = 32 * 32 * 32;
#endif

// Note [Products without BLAS]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The core builds without BLAS (-Dblas=disabled, and the WebAssembly playground, which has
// none): TAPEGRAD_HAVE_BLAS is 0 and products of every size from kPackThreshold up go through
// the packed kernel (Note [Small gemm]), which is correct for any shape; it only loses speed
// against BLAS's cache blocking on wide layers (128x784 by 784x256 floats, measured on a busy
// machine: about 52 GFLOP/s in the AVX2 kernel, 21 in the SSE2 one, 60 to 70 in OpenBLAS). The
// x86-only code (the AVX2 kernel and __builtin_cpu_supports) is compiled on x86-64 alone; other
// targets get the portable vector-extension kernel, which emscripten turns into WebAssembly SIMD.

// Below this many, the plain loops; from here to kBlasThreshold, the packed kernel (Note [Small
// gemm]). A 4x5 by 5x5 product is faster unpacked; 100x16 by 16x16 takes half the instructions
// packed.
constexpr std::int64_t kPackThreshold = 1024;
#if TAPEGRAD_HAVE_BLAS
static_assert(kPackThreshold < kBlasThreshold);  // gemm tests the tiny loops first
#endif

// Note [Small gemm]
// ~~~~~~~~~~~~~~~~~
// From kPackThreshold to kBlasThreshold multiply-adds the product runs here. op(B) is packed
// once per call into a k x np buffer (np: n rounded up to whole blocks of W columns, zero
// padded), so every operand layout (plain or transposed) meets the same kernel: a block of 4
// rows by W columns of C (W = 8 floats or 4 doubles; 4 or 2 when n is that narrow) held in
// eight (or fewer) 16-byte vector registers, updated with a(i, p) times a contiguous row of the
// packed B for each p. The vectors are GCC's vector extension at the baseline's width (SSE2),
// which every x86-64 has: a wider generic vector is emulated through memory on a target without
// it, and runtime dispatch (target_clones) is not worth its complexity at these sizes. Each
// element of C still sums its k products in order p = 0, 1, ..., as the plain loops do.
template <class T> using Vec [[gnu::vector_size(16)]] = T;
template <class T> inline constexpr int kVecLen = int(16 / sizeof(T));

template <class T, int R, int NV, bool TA>
[[gnu::always_inline]] inline void small_block(std::int64_t lda, std::int64_t i0, std::int64_t n,
                                               std::int64_t k, std::int64_t np, const T* A,
                                               const T* pb, T beta, T* C) {
  static_assert((R == 1 || R == 4) && (NV == 1 || NV == 2));
  using V = Vec<T>;
  constexpr int L = kVecLen<T>, W = NV * L;
  auto a = [&](std::int64_t p, int r) { return TA ? A[p * lda + i0 + r] : A[(i0 + r) * lda + p]; };
  for (std::int64_t j0 = 0; j0 < np; j0 += W) {
    // Named accumulators, so that they stay in registers.
    V c00{}, c01{}, c10{}, c11{}, c20{}, c21{}, c30{}, c31{};
    const T* row = pb + j0;
    for (std::int64_t p = 0; p < k; ++p, row += np) {
      V b0, b1{};
      std::memcpy(&b0, row, sizeof b0);
      if constexpr (NV == 2) std::memcpy(&b1, row + L, sizeof b1);
      const T a0 = a(p, 0);
      c00 += a0 * b0;
      if constexpr (NV == 2) c01 += a0 * b1;
      if constexpr (R == 4) {
        const T a1 = a(p, 1), a2 = a(p, 2), a3 = a(p, 3);
        c10 += a1 * b0;
        c20 += a2 * b0;
        c30 += a3 * b0;
        if constexpr (NV == 2) {
          c11 += a1 * b1;
          c21 += a2 * b1;
          c31 += a3 * b1;
        }
      }
    }
    auto store = [&](V v, int r, int q) {
      const std::int64_t j = j0 + q * L, w = std::min<std::int64_t>(L, n - j);
      T* c = C + (i0 + r) * n + j;
      if (w == L) {  // a whole vector: one load and store
        if (beta != T(0)) {
          V old;
          std::memcpy(&old, c, sizeof old);
          v += old;
        }
        std::memcpy(c, &v, sizeof v);
      } else {
        for (std::int64_t e = 0; e < w; ++e) c[e] = beta == T(0) ? v[e] : c[e] + v[e];
      }
    };
    store(c00, 0, 0);
    if constexpr (NV == 2) store(c01, 0, 1);
    if constexpr (R == 4) {
      store(c10, 1, 0), store(c20, 2, 0), store(c30, 3, 0);
      if constexpr (NV == 2) store(c11, 1, 1), store(c21, 2, 1), store(c31, 3, 1);
    }
  }
}

// Note [Beta as a constant]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Each kernel's rows are compiled twice, for beta 0 (C is assigned) and for any other beta (C
// is added to), and the blocks get beta as a constant: a store then tests nothing. The test of
// a runtime beta at each of a block's eight stores was a fifth of the set-up and stores around
// moons' short inner loops (k = 1, 2 and 16 over 25 blocks of 4 rows).
template <class T, int NV, bool TA, bool Add>
[[gnu::always_inline]] inline void small_rows_beta(std::int64_t m, std::int64_t n, std::int64_t k,
                                                   std::int64_t np, const T* A, const T* pb, T* C) {
  constexpr T beta = Add ? T(1) : T(0);
  const std::int64_t lda = TA ? m : k;
  std::int64_t i = 0;
  for (; i + 4 <= m; i += 4) small_block<T, 4, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
  for (; i < m; ++i) small_block<T, 1, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
}

template <class T, int NV, bool TA>
void small_rows(std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t np, const T* A,
                const T* pb, T beta, T* C) {
  if (beta == T(0)) return small_rows_beta<T, NV, TA, false>(m, n, k, np, A, pb, C);
  small_rows_beta<T, NV, TA, true>(m, n, k, np, A, pb, C);
}

#ifdef TAPEGRAD_AVX2
// Note [Wide small gemm]
// ~~~~~~~~~~~~~~~~~~~~~~
// The same blocking as Note [Small gemm] in 32-byte AVX2 registers with fused multiply-adds,
// for CPUs that have both (checked once, at the first product: `__builtin_cpu_supports`). A
// block of 4 rows by 2 vectors (16 floats or 8 doubles) of C lives in eight ymm registers; each
// step over p loads two vectors of the packed B, broadcasts four elements of A and issues eight
// FMAs: 14 instructions for 64 float multiply-adds, against 36 for 32 in the SSE2 kernel. The
// portable kernel stays for other CPUs and when TAPEGRAD_SIMD=sse2 is set in the environment
// (the test suite runs the tensor tests under every kernel: Note [AVX-512 small gemm]). Each
// element of C still sums its products in order p = 0, 1, ..., but every step rounds once (a fused
// multiply-add) instead of twice, so the two kernels agree to rounding, not bit for bit; each is
// deterministic.
template <class T> struct Avx;
template <> struct Avx<float> {
  using V = __m256;
  static constexpr int L = 8;
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V zero() { return _mm256_setzero_ps(); }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V load(const float* p) {
    return _mm256_loadu_ps(p);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static void store(float* p, V v) {
    _mm256_storeu_ps(p, v);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V splat(float a) {
    return _mm256_set1_ps(a);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V add(V a, V b) {
    return _mm256_add_ps(a, b);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V fma(V a, V b, V c) {
    return _mm256_fmadd_ps(a, b, c);
  }
};
template <> struct Avx<double> {
  using V = __m256d;
  static constexpr int L = 4;
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V zero() { return _mm256_setzero_pd(); }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V load(const double* p) {
    return _mm256_loadu_pd(p);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static void store(double* p, V v) {
    _mm256_storeu_pd(p, v);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V splat(double a) {
    return _mm256_set1_pd(a);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V add(V a, V b) {
    return _mm256_add_pd(a, b);
  }
  [[gnu::target("avx2,fma"), gnu::always_inline]] static V fma(V a, V b, V c) {
    return _mm256_fmadd_pd(a, b, c);
  }
};

// Writes the first w lanes of v to c (w <= L), or adds them to c unless beta is 0.
template <class T>
[[gnu::target("avx2,fma"), gnu::always_inline]] inline void wide_store(typename Avx<T>::V v, T* c,
                                                                       std::int64_t w, T beta) {
  using O = Avx<T>;
  if (w == O::L) {  // a whole vector: one load and store
    O::store(c, beta != T(0) ? O::add(v, O::load(c)) : v);
  } else if (w > 0) {
    alignas(32) T lanes[O::L];
    O::store(lanes, v);
    for (std::int64_t e = 0; e < w; ++e) c[e] = beta == T(0) ? lanes[e] : c[e] + lanes[e];
  }
}

template <class T, int R, int NV, bool TA>
[[gnu::target("avx2,fma"), gnu::always_inline]] inline void wide_block(
    std::int64_t lda, std::int64_t i0, std::int64_t n, std::int64_t k, std::int64_t np, const T* A,
    const T* pb, T beta, T* C) {
  static_assert((R == 1 || R == 4) && (NV == 1 || NV == 2));
  using O = Avx<T>;
  using V = typename O::V;
  constexpr int L = O::L, W = NV * L;
  auto a = [&](std::int64_t p, int r) { return TA ? A[p * lda + i0 + r] : A[(i0 + r) * lda + p]; };
  for (std::int64_t j0 = 0; j0 < np; j0 += W) {
    V c00 = O::zero(), c01 = O::zero(), c10 = O::zero(), c11 = O::zero();
    V c20 = O::zero(), c21 = O::zero(), c30 = O::zero(), c31 = O::zero();
    const T* row = pb + j0;
    for (std::int64_t p = 0; p < k; ++p, row += np) {
      const V b0 = O::load(row);
      const V b1 = NV == 2 ? O::load(row + L) : O::zero();
      const V a0 = O::splat(a(p, 0));
      c00 = O::fma(a0, b0, c00);
      if constexpr (NV == 2) c01 = O::fma(a0, b1, c01);
      if constexpr (R == 4) {
        const V a1 = O::splat(a(p, 1)), a2 = O::splat(a(p, 2)), a3 = O::splat(a(p, 3));
        c10 = O::fma(a1, b0, c10);
        c20 = O::fma(a2, b0, c20);
        c30 = O::fma(a3, b0, c30);
        if constexpr (NV == 2) {
          c11 = O::fma(a1, b1, c11);
          c21 = O::fma(a2, b1, c21);
          c31 = O::fma(a3, b1, c31);
        }
      }
    }
    // (No lambda here: a lambda would not inherit the target attribute.)
    const std::int64_t w0 = std::min<std::int64_t>(L, n - j0),
                       w1 = std::min<std::int64_t>(L, n - j0 - L);
    T* c = C + i0 * n + j0;
    wide_store<T>(c00, c, w0, beta);
    if constexpr (NV == 2) wide_store<T>(c01, c + L, w1, beta);
    if constexpr (R == 4) {
      wide_store<T>(c10, c + n, w0, beta);
      wide_store<T>(c20, c + 2 * n, w0, beta);
      wide_store<T>(c30, c + 3 * n, w0, beta);
      if constexpr (NV == 2) {
        wide_store<T>(c11, c + n + L, w1, beta);
        wide_store<T>(c21, c + 2 * n + L, w1, beta);
        wide_store<T>(c31, c + 3 * n + L, w1, beta);
      }
    }
  }
}

// beta as a constant: Note [Beta as a constant]
template <class T, int NV, bool TA, bool Add>
[[gnu::target("avx2,fma"), gnu::always_inline]] inline void wide_rows_beta(
    std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t np, const T* A, const T* pb,
    T* C) {
  constexpr T beta = Add ? T(1) : T(0);
  const std::int64_t lda = TA ? m : k;
  std::int64_t i = 0;
  for (; i + 4 <= m; i += 4) wide_block<T, 4, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
  for (; i < m; ++i) wide_block<T, 1, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
}

template <class T, int NV, bool TA>
[[gnu::target("avx2,fma")]] void wide_rows(std::int64_t m, std::int64_t n, std::int64_t k,
                                           std::int64_t np, const T* A, const T* pb, T beta, T* C) {
  if (beta == T(0)) return wide_rows_beta<T, NV, TA, false>(m, n, k, np, A, pb, C);
  wide_rows_beta<T, NV, TA, true>(m, n, k, np, A, pb, C);
}

// Note [AVX-512 small gemm]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Note [Wide small gemm]'s blocking once more, in 64-byte AVX-512 registers: 4 rows by 2
// vectors (32 floats or 16 doubles) of C in eight zmm registers, 128 float multiply-adds for
// the same 14 instructions per step over p. A ragged last block is stored through a mask
// instead of a lane buffer. It is its own function, not wide_block with another register type:
// a function's target is one attribute for every instantiation, and an AVX2 kernel compiled
// for AVX-512 could use AVX-512 instructions on a CPU without them. Chosen at run time when the
// CPU (and the OS, which must save zmm state) has AVX-512F; TAPEGRAD_SIMD=avx2 or sse2 caps
// the choice, and the test suite runs the tensor tests under all three. Valgrind does not
// emulate AVX-512 and reports a CPU without it, so callgrind counts the AVX2 kernel.
template <class T> struct Avx512;
template <> struct Avx512<float> {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int L = 16;
  [[gnu::target("avx512f"), gnu::always_inline]] static V zero() { return _mm512_setzero_ps(); }
  [[gnu::target("avx512f"), gnu::always_inline]] static V load(const float* p) {
    return _mm512_loadu_ps(p);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static V load(const float* p, Mask m) {
    return _mm512_maskz_loadu_ps(m, p);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static void store(float* p, Mask m, V v) {
    _mm512_mask_storeu_ps(p, m, v);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static V splat(float a) {
    return _mm512_set1_ps(a);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static V add(V a, V b) {
    return _mm512_add_ps(a, b);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static V fma(V a, V b, V c) {
    return _mm512_fmadd_ps(a, b, c);
  }
};
template <> struct Avx512<double> {
  using V = __m512d;
  using Mask = __mmask8;
  static constexpr int L = 8;
  [[gnu::target("avx512f"), gnu::always_inline]] static V zero() { return _mm512_setzero_pd(); }
  [[gnu::target("avx512f"), gnu::always_inline]] static V load(const double* p) {
    return _mm512_loadu_pd(p);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static V load(const double* p, Mask m) {
    return _mm512_maskz_loadu_pd(m, p);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static void store(double* p, Mask m, V v) {
    _mm512_mask_storeu_pd(p, m, v);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static V splat(double a) {
    return _mm512_set1_pd(a);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static V add(V a, V b) {
    return _mm512_add_pd(a, b);
  }
  [[gnu::target("avx512f"), gnu::always_inline]] static V fma(V a, V b, V c) {
    return _mm512_fmadd_pd(a, b, c);
  }
};

// Writes the first w lanes of v to c, or adds them to c unless beta is 0 (w <= 0: nothing).
template <class T>
[[gnu::target("avx512f"), gnu::always_inline]] inline void avx512_store(typename Avx512<T>::V v,
                                                                        T* c, std::int64_t w,
                                                                        T beta) {
  using O = Avx512<T>;
  if (w <= 0) return;
  const auto mask = w >= O::L ? typename O::Mask(~0u) : typename O::Mask((1u << w) - 1);
  O::store(c, mask, beta != T(0) ? O::add(v, O::load(c, mask)) : v);
}

template <class T, int R, int NV, bool TA>
[[gnu::target("avx512f"), gnu::always_inline]] inline void avx512_block(
    std::int64_t lda, std::int64_t i0, std::int64_t n, std::int64_t k, std::int64_t np, const T* A,
    const T* pb, T beta, T* C) {
  static_assert((R == 1 || R == 4) && (NV == 1 || NV == 2));
  using O = Avx512<T>;
  using V = typename O::V;
  constexpr int L = O::L, W = NV * L;
  auto a = [&](std::int64_t p, int r) { return TA ? A[p * lda + i0 + r] : A[(i0 + r) * lda + p]; };
  for (std::int64_t j0 = 0; j0 < np; j0 += W) {
    V c00 = O::zero(), c01 = O::zero(), c10 = O::zero(), c11 = O::zero();
    V c20 = O::zero(), c21 = O::zero(), c30 = O::zero(), c31 = O::zero();
    const T* row = pb + j0;
    for (std::int64_t p = 0; p < k; ++p, row += np) {
      const V b0 = O::load(row);
      const V b1 = NV == 2 ? O::load(row + L) : O::zero();
      const V a0 = O::splat(a(p, 0));
      c00 = O::fma(a0, b0, c00);
      if constexpr (NV == 2) c01 = O::fma(a0, b1, c01);
      if constexpr (R == 4) {
        const V a1 = O::splat(a(p, 1)), a2 = O::splat(a(p, 2)), a3 = O::splat(a(p, 3));
        c10 = O::fma(a1, b0, c10);
        c20 = O::fma(a2, b0, c20);
        c30 = O::fma(a3, b0, c30);
        if constexpr (NV == 2) {
          c11 = O::fma(a1, b1, c11);
          c21 = O::fma(a2, b1, c21);
          c31 = O::fma(a3, b1, c31);
        }
      }
    }
    const std::int64_t w0 = std::min<std::int64_t>(L, n - j0), w1 = n - j0 - L;
    T* c = C + i0 * n + j0;
    avx512_store<T>(c00, c, w0, beta);
    if constexpr (NV == 2) avx512_store<T>(c01, c + L, w1, beta);
    if constexpr (R == 4) {
      avx512_store<T>(c10, c + n, w0, beta);
      avx512_store<T>(c20, c + 2 * n, w0, beta);
      avx512_store<T>(c30, c + 3 * n, w0, beta);
      if constexpr (NV == 2) {
        avx512_store<T>(c11, c + n + L, w1, beta);
        avx512_store<T>(c21, c + 2 * n + L, w1, beta);
        avx512_store<T>(c31, c + 3 * n + L, w1, beta);
      }
    }
  }
}

// beta as a constant: Note [Beta as a constant]
template <class T, int NV, bool TA, bool Add>
[[gnu::target("avx512f"), gnu::always_inline]] inline void avx512_rows_beta(
    std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t np, const T* A, const T* pb,
    T* C) {
  constexpr T beta = Add ? T(1) : T(0);
  const std::int64_t lda = TA ? m : k;
  std::int64_t i = 0;
  for (; i + 4 <= m; i += 4) avx512_block<T, 4, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
  for (; i < m; ++i) avx512_block<T, 1, NV, TA>(lda, i, n, k, np, A, pb, beta, C);
}

template <class T, int NV, bool TA>
[[gnu::target("avx512f")]] void avx512_rows(std::int64_t m, std::int64_t n, std::int64_t k,
                                            std::int64_t np, const T* A, const T* pb, T beta,
                                            T* C) {
  if (beta == T(0)) return avx512_rows_beta<T, NV, TA, false>(m, n, k, np, A, pb, C);
  avx512_rows_beta<T, NV, TA, true>(m, n, k, np, A, pb, C);
}
#endif

// The packed kernel a product runs: Note [Small gemm], [Wide small gemm] or [AVX-512 small gemm].
enum class Simd { sse2, avx2, avx512 };

// The widest kernel the CPU has, capped by TAPEGRAD_SIMD ("sse2" or "avx2"); checked once.
inline Simd simd() {
#ifdef TAPEGRAD_AVX2
  static const Simd level = [] {
    const char* cap = std::getenv("TAPEGRAD_SIMD");
    const std::string_view wanted = cap == nullptr ? "" : cap;
    if (wanted == "sse2" || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
      return Simd::sse2;
    if (wanted == "avx2" || !__builtin_cpu_supports("avx512f")) return Simd::avx2;
    return Simd::avx512;
  }();
  return level;
#else
  return Simd::sse2;
#endif
}

// The elements of T in one register of `kernel`.
template <class T> std::int64_t lanes(Simd kernel) {
  const std::int64_t bytes = kernel == Simd::avx512 ? 64 : kernel == Simd::avx2 ? 32 : 16;
  return bytes / std::int64_t(sizeof(T));
}

// The padded width of op(B)'s rows in the packed buffer: whole blocks of the kernel's width.
template <class T> std::int64_t small_padded(std::int64_t n, Simd kernel) {
  const std::int64_t l = lanes<T>(kernel);
  const std::int64_t w = n <= l ? l : 2 * l;
  return (n + w - 1) / w * w;
}

// Note [Narrow products]
// ~~~~~~~~~~~~~~~~~~~~~~
// A product whose C is a quarter of a register wide or less, over rows that fill one (moons'
// first-layer dW = dY^T X: 16 outputs by 2 inputs, summed over 100 points), would use 2 lanes
// in 8 of every FMA (AVX2), for 4 rows of C at a time. Its transpose C^T = op(B)^T op(A)^T is
// wide instead: n rows by m columns, each step over p one FMA per register of C^T, whose rows
// are op(A)^T: for the transposed A of dW, A itself, read in place (Note [Unpacked B]). The
// packed kernel computes C^T from 0 into a buffer, and C takes it transposed, added to the old
// C unless beta is 0. Each element is the same sum in the same order (a * b + c and fma(a, b,
// c) do not depend on the order of a and b), so the bits are those of the direct product.
template <class T> bool narrow_product(std::int64_t m, std::int64_t n, Simd kernel) {
  return 4 * n <= lanes<T>(kernel) && m >= lanes<T>(kernel);
}

// Whether the packed kernel can read op(B) where it lies (Note [Unpacked B]).
template <class T> bool reads_b_in_place(bool tb, std::int64_t n, Simd kernel) {
  return !tb && small_padded<T>(n, kernel) == n;
}

// Note [Unpacked B]
// ~~~~~~~~~~~~~~~~~
// The packing of Note [Small gemm] gives the kernel rows of op(B) that are contiguous and whole
// blocks of its width. A plain (untransposed) B whose n is already whole blocks (16, 32, 64...
// floats in the AVX2 kernel) has exactly that layout in place: its rows are contiguous with
// stride n = np. The kernel then reads B itself and the copy is skipped; it was a tenth of a
// moons step (the backward products dA = dC W and dW = dC^T X of every 16-wide layer).

// C = op(A) op(B) + beta C through a packed kernel; pb holds at least k * np elements, np as
// small_padded gives it for `kernel`, unless reads_b_in_place (then pb is not touched).
template <class T>
void small_gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* A,
                const T* B, T beta, T* C, T* pb, Simd kernel) {
  const std::int64_t np = small_padded<T>(n, kernel), ldb = tb ? k : n;
  const T* rows_b = B;  // op(B) as k rows of np: B itself or its packed copy
  if (!reads_b_in_place<T>(tb, n, kernel)) {
    rows_b = pb;
    for (std::int64_t p = 0; p < k; ++p) {  // op(B) (k x n) row by row into pb (k x np)
      T* row = pb + p * np;
      if (tb)
        for (std::int64_t j = 0; j < n; ++j) row[j] = B[j * ldb + p];
      else
        std::memcpy(row, B + p * ldb, std::size_t(n) * sizeof(T));
      for (std::int64_t j = n; j < np; ++j) row[j] = T(0);
    }
  }
#ifdef TAPEGRAD_AVX2
  if (kernel == Simd::avx512) {
    const bool two = n > Avx512<T>::L;
    if (ta)
      two ? avx512_rows<T, 2, true>(m, n, k, np, A, rows_b, beta, C)
          : avx512_rows<T, 1, true>(m, n, k, np, A, rows_b, beta, C);
    else
      two ? avx512_rows<T, 2, false>(m, n, k, np, A, rows_b, beta, C)
          : avx512_rows<T, 1, false>(m, n, k, np, A, rows_b, beta, C);
    return;
  }
  if (kernel == Simd::avx2) {
    const bool two = n > Avx<T>::L;
    if (ta)
      two ? wide_rows<T, 2, true>(m, n, k, np, A, rows_b, beta, C)
          : wide_rows<T, 1, true>(m, n, k, np, A, rows_b, beta, C);
    else
      two ? wide_rows<T, 2, false>(m, n, k, np, A, rows_b, beta, C)
          : wide_rows<T, 1, false>(m, n, k, np, A, rows_b, beta, C);
    return;
  }
#endif
  const bool two = n > kVecLen<T>;
  if (ta)
    two ? small_rows<T, 2, true>(m, n, k, np, A, rows_b, beta, C)
        : small_rows<T, 1, true>(m, n, k, np, A, rows_b, beta, C);
  else
    two ? small_rows<T, 2, false>(m, n, k, np, A, rows_b, beta, C)
        : small_rows<T, 1, false>(m, n, k, np, A, rows_b, beta, C);
}

// Note [Matrix-vector products]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A product with one column (n = 1: a 1-wide layer's x w^T, such as moons' output layer) has
// nothing to block over: the packed kernel would pack op(B), pad its one column to a whole
// vector and use one lane in eight. op(B) is then one contiguous vector v (B is k x 1 or 1 x k),
// and C = op(A) v is, for a plain A, m dot products of contiguous rows with v; for a transposed
// A, v[p] times row p of A accumulated into C. Each element sums its products in order p = 0,
// 1, ... from 0 and then adds the old C, with a fused multiply-add per step where the packed
// kernel in use has one (Fused), so the result is bit for bit the packed kernel's: the examples
// quote figures that a different order of summation would change. A transposed A with beta 1
// would need a second buffer for that order, and takes the packed kernel instead.
template <class T, bool Fused> [[gnu::always_inline]] inline T multiply_add(T a, T b, T c) {
  if constexpr (Fused)
    return __builtin_fma(a, b, c);  // one rounding, as the AVX2 and AVX-512 kernels' FMAs
  else
    return a * b + c;  // two roundings, as the SSE2 kernel (the build has no FP contraction)
}
template <>
[[gnu::always_inline]] inline float multiply_add<float, true>(float a, float b, float c) {
  return __builtin_fmaf(a, b, c);
}

template <class T, bool Fused>
[[gnu::always_inline]] inline void matvec_body(bool ta, std::int64_t m, std::int64_t k,
                                               const T* __restrict A, const T* __restrict v, T beta,
                                               T* __restrict C) {
  if (ta) {  // A is k x m: row p of A holds op(A)(i, p) for every i; beta is 0 (matvec_fits)
    std::fill(C, C + m, T(0));
    for (std::int64_t p = 0; p < k; ++p) {
      const T vp = v[p];
      const T* row = A + p * m;
      for (std::int64_t i = 0; i < m; ++i) C[i] = multiply_add<T, Fused>(row[i], vp, C[i]);
    }
    return;
  }
  std::int64_t i = 0;
  for (; i + 4 <= m; i += 4) {  // four rows' sums side by side: each v[p] loaded once
    const T* a = A + i * k;
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (std::int64_t p = 0; p < k; ++p) {
      const T vp = v[p];
      s0 = multiply_add<T, Fused>(a[p], vp, s0);
      s1 = multiply_add<T, Fused>(a[k + p], vp, s1);
      s2 = multiply_add<T, Fused>(a[2 * k + p], vp, s2);
      s3 = multiply_add<T, Fused>(a[3 * k + p], vp, s3);
    }
    C[i] = beta == T(0) ? s0 : C[i] + s0;
    C[i + 1] = beta == T(0) ? s1 : C[i + 1] + s1;
    C[i + 2] = beta == T(0) ? s2 : C[i + 2] + s2;
    C[i + 3] = beta == T(0) ? s3 : C[i + 3] + s3;
  }
  for (; i < m; ++i) {
    const T* a = A + i * k;
    T s = 0;
    for (std::int64_t p = 0; p < k; ++p) s = multiply_add<T, Fused>(a[p], v[p], s);
    C[i] = beta == T(0) ? s : C[i] + s;
  }
}

// Whether the matrix-vector kernel takes the product (Note [Matrix-vector products]).
inline bool matvec_fits(bool ta, std::int64_t n, bool beta_is_zero) {
  return n == 1 && (!ta || beta_is_zero);
}

template <class T>
void matvec(bool ta, std::int64_t m, std::int64_t k, const T* A, const T* v, T beta, T* C) {
  matvec_body<T, false>(ta, m, k, A, v, beta, C);
}

#ifdef TAPEGRAD_AVX2
// The same loops with fused multiply-adds, taken with the AVX2 or AVX-512 kernel (simd()).
template <class T>
[[gnu::target("avx2,fma")]] void matvec_fused(bool ta, std::int64_t m, std::int64_t k, const T* A,
                                              const T* v, T beta, T* C) {
  matvec_body<T, true>(ta, m, k, A, v, beta, C);
}
#endif

#if TAPEGRAD_HAVE_BLAS
// One BLAS call: C (m x n, leading dimension ldc) = op(A) op(B) + beta C.
template <class T>
void blas_gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* A,
               std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  const auto TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, TA, TB, int(m), int(n), int(k), 1.0f, A, int(lda), B, int(ldb), beta,
                C, int(ldc));
  else
    cblas_dgemm(CblasRowMajor, TA, TB, int(m), int(n), int(k), 1.0, A, int(lda), B, int(ldb), beta,
                C, int(ldc));
}

// Note [Split products]
// ~~~~~~~~~~~~~~~~~~~~~
// A product of at least parallel_thresholds().product multiply-adds is cut into up to four
// slabs of C along its longer side (whole rows, or whole columns through BLAS's leading
// dimension), each one BLAS call on the pool (Note [Parallel work]). No slab splits a dot
// product, and every slab keeps about half the threshold's multiply-adds or more (2^20 by default),
// because that is what keeps its bits: OpenBLAS sums k in blocks whose size depends on k alone,
// except below 10^6 multiply-adds, where its SkylakeX small-matrix kernels take the product and
// sum differently (a 64x400 by 400x64 product and its 16-row slabs differ in the last bit; and
// the activations example, whose quoted accuracies come from 100x784 by 784x64 products,
// printed other figures with slabs that small). Above it, a slab computes exactly what the
// whole call computes for its part of C. The cut depends on the shape alone and is made at
// every thread count, one thread included, so the calls BLAS sees, and every bit of C, never
// depend on the thread count (a test checks, bit for bit). Up to four slabs, not one per
// thread: they are claimed one at a time, so a worker that another process keeps off its core
// delays the product by one slab at most. Run this with BLAS's own pool at 1 thread
// (OPENBLAS_NUM_THREADS=1): two pools on the same cores oversubscribe them.
constexpr std::int64_t kProductSlabs = 4;

template <class T>
void blas_gemm_split(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* A,
                     const T* B, T beta, T* C) {
  const std::int64_t lda = ta ? m : k, ldb = tb ? k : n;
  const bool by_rows = m >= n;
  const std::int64_t side = by_rows ? m : n;
  const std::int64_t smallest_slab = std::max<std::int64_t>(1, parallel_thresholds().product / 2);
  const std::int64_t slabs =
      std::clamp<std::int64_t>(m * n * k / smallest_slab, 1, std::min(kProductSlabs, side));
  parallel_for(slabs, [&](std::int64_t s) {
    // Even slabs: the smallest is within one row (column) of the others.
    const std::int64_t begin = side * s / slabs, width = side * (s + 1) / slabs - begin;
    if (by_rows)  // rows [begin, begin + width) of op(A) and of C
      blas_gemm(ta, tb, width, n, k, ta ? A + begin : A + begin * lda, lda, B, ldb, beta,
                C + begin * n, n);
    else  // columns [begin, begin + width) of op(B) and of C
      blas_gemm(ta, tb, m, width, k, A, lda, tb ? B + begin * ldb : B + begin, ldb, beta, C + begin,
                n);
  });
}

// The products BLAS takes, split or whole, out of line. Any change to this branch moves the
// register allocation of gemm's tiny loops: deep XOR's step (33 tiny products) took 0.78% more
// instructions with the split inlined here, 0.71% with this call (bench/README.md, Session 6).
template <class T>
[[gnu::noinline]] void blas_product(bool ta, bool tb, std::int64_t m, std::int64_t n,
                                    std::int64_t k, const T* A, std::int64_t lda, const T* B,
                                    std::int64_t ldb, T beta, T* C) {
  if (m * n * k >= parallel_thresholds().product)  // at any thread count: Note [Split products]
    return blas_gemm_split(ta, tb, m, n, k, A, B, beta, C);
  blas_gemm(ta, tb, m, n, k, A, lda, B, ldb, beta, C, n);
}
#endif

// C (m x n, row-major, leading dimension n) = op(A) op(B) + beta C, where
// op(A) is m x k and op(B) is k x n; ta/tb mean A/B are stored transposed.
template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* A, const T* B,
          T beta, T* C) {
  const std::int64_t lda = ta ? m : k, ldb = tb ? k : n;
  if (m * n * k < kPackThreshold) {
    // Tiny products (the lecture's 4x5 by 5x5): packing would cost as much as the product.
    if (beta == T(0)) std::fill(C, C + m * n, T(0));
    if (!tb) {
      // Row i of C accumulates a[i, p] times row p of B: contiguous, vectorizable.
      for (std::int64_t i = 0; i < m; ++i) {
        T* c = C + i * n;
        for (std::int64_t p = 0; p < k; ++p) {
          const T a = ta ? A[p * lda + i] : A[i * lda + p];
          const T* b = B + p * ldb;
          for (std::int64_t j = 0; j < n; ++j) c[j] += a * b[j];
        }
      }
    } else {
      // B stored transposed: C[i, j] is a dot product of two contiguous rows.
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          T s = 0;
          const T* b = B + j * ldb;
          if (!ta) {
            const T* a = A + i * lda;
            for (std::int64_t p = 0; p < k; ++p) s += a[p] * b[p];
          } else {
            for (std::int64_t p = 0; p < k; ++p) s += A[p * lda + i] * b[p];
          }
          C[i * n + j] += s;
        }
    }
    return;
  }
  // The BLAS test after the tiny loops (kPackThreshold < kBlasThreshold, so the order changes no
  // result): before them, its out-of-line call changed how GCC allocates the tiny loops'
  // registers, and xor's step took 0.77% more instructions (callgrind, 59,699 -> 60,157; now
  // 59,647).
#if TAPEGRAD_HAVE_BLAS
  if (m * n * k >= kBlasThreshold) return blas_product(ta, tb, m, n, k, A, lda, B, ldb, beta, C);
#endif
  if (matvec_fits(ta, n, beta == T(0))) {  // op(B) is the vector B, whatever tb says
#ifdef TAPEGRAD_AVX2
    if (simd() != Simd::sse2) return matvec_fused<T>(ta, m, k, A, B, beta, C);
#endif
    return matvec<T>(ta, m, k, A, B, beta, C);
  }
  // The packed op(B) (Note [Small gemm]): a buffer per thread that only grows, so a warm
  // training step allocates nothing.
  thread_local std::vector<T> packed;
  const Simd kernel = simd();
  if (narrow_product<T>(m, n, kernel)) {
    // C^T = op(B)^T op(A)^T (n x m), then C (+)= its transpose (Note [Narrow products]). The
    // buffer holds op(A)^T's packed rows, if it needs them, and then C^T.
    const std::size_t rows_b =
        reads_b_in_place<T>(!ta, m, kernel) ? 0 : std::size_t(k * small_padded<T>(m, kernel));
    if (packed.size() < rows_b + std::size_t(m * n)) packed.resize(rows_b + std::size_t(m * n));
    T* ct = packed.data() + rows_b;
    small_gemm<T>(!tb, !ta, n, m, k, B, A, T(0), ct, packed.data(), kernel);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        C[i * n + j] = beta == T(0) ? ct[j * m + i] : C[i * n + j] + ct[j * m + i];
    return;
  }
  const std::size_t need =
      reads_b_in_place<T>(tb, n, kernel) ? 0 : std::size_t(k * small_padded<T>(n, kernel));
  if (packed.size() < need) packed.resize(need);
  small_gemm<T>(ta, tb, m, n, k, A, B, beta, C, packed.data(), kernel);
}

// Every row of y (rows x cols) += b (cols): linear's bias. `__restrict` (the two never overlap:
// they are different nodes' buffers) lets GCC vectorize the inner loop without a runtime check.
template <class T>
[[gnu::always_inline]] inline void add_to_rows_body(T* __restrict y, const T* __restrict b,
                                                    std::int64_t rows, std::int64_t cols) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) y[i * cols + j] += b[j];
}

// out (cols) += the sum of the rows of x (rows x cols): the bias's gradient.
template <class T>
[[gnu::always_inline]] inline void add_rows_into_body(T* __restrict out, const T* __restrict x,
                                                      std::int64_t rows, std::int64_t cols) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) out[j] += x[i * cols + j];
}

#ifdef TAPEGRAD_AVX2
// The bias loops compiled for AVX2 as well: a 16-wide row is two ymm additions instead of four
// xmm ones and their loop. Taken with the AVX2 or AVX-512 products (simd()) for rows of at least
// one ymm register (deep XOR's 5-wide layers paid 1.7% more instructions through the AVX2 loop's
// longer set-up); each element is one addition either way, so both give the same bits.
template <class T> bool bias_in_avx2(std::int64_t cols) {
  return cols * std::int64_t(sizeof(T)) >= 32 && simd() != Simd::sse2;
}
template <class T>
[[gnu::target("avx2,fma")]] void add_to_rows_avx2(T* y, const T* b, std::int64_t rows,
                                                  std::int64_t cols) {
  add_to_rows_body<T>(y, b, rows, cols);
}
// The bias gradient sums a column over every row. Compiled from add_rows_into_body, each row
// loaded, added to and stored `out` again, so the next row's addition waited for the store to
// be forwarded: a chain through memory, 100 rows long in moons. Here up to four registers of
// `out` stay in registers over all rows, and are stored once. Each element is still out[j] +
// x[0][j] + x[1][j] + ..., in that order: the same bits.
template <class T>
[[gnu::target("avx2,fma")]] void add_rows_into_avx2(T* out, const T* x, std::int64_t rows,
                                                    std::int64_t cols) {
  using O = Avx<T>;
  using V = typename O::V;
  constexpr int L = O::L;
  std::int64_t j = 0;
  for (; j + 4 * L <= cols; j += 4 * L) {
    V s0 = O::load(out + j), s1 = O::load(out + j + L);
    V s2 = O::load(out + j + 2 * L), s3 = O::load(out + j + 3 * L);
    for (std::int64_t i = 0; i < rows; ++i) {
      const T* row = x + i * cols + j;
      s0 = O::add(s0, O::load(row));
      s1 = O::add(s1, O::load(row + L));
      s2 = O::add(s2, O::load(row + 2 * L));
      s3 = O::add(s3, O::load(row + 3 * L));
    }
    O::store(out + j, s0), O::store(out + j + L, s1);
    O::store(out + j + 2 * L, s2), O::store(out + j + 3 * L, s3);
  }
  for (; j + L <= cols; j += L) {
    V s = O::load(out + j);
    for (std::int64_t i = 0; i < rows; ++i) s = O::add(s, O::load(x + i * cols + j));
    O::store(out + j, s);
  }
  for (; j < cols; ++j)  // the last cols % L columns, one at a time
    for (std::int64_t i = 0; i < rows; ++i) out[j] += x[i * cols + j];
}
#endif

template <class T> void add_to_rows(T* y, const T* b, std::int64_t rows, std::int64_t cols) {
#ifdef TAPEGRAD_AVX2
  if (bias_in_avx2<T>(cols)) return add_to_rows_avx2<T>(y, b, rows, cols);
#endif
  add_to_rows_body<T>(y, b, rows, cols);
}

template <class T> void add_rows_into(T* out, const T* x, std::int64_t rows, std::int64_t cols) {
#ifdef TAPEGRAD_AVX2
  if (bias_in_avx2<T>(cols)) return add_rows_into_avx2<T>(out, x, rows, cols);
#endif
  add_rows_into_body<T>(out, x, rows, cols);
}

}  // namespace ag::kernels
