// Fuzzes the IDX loader (nn::parse_idx) on bytes, plain or gzip-compressed, and checks that
// what it returns is what the header declared.

#include <cstddef>
#include <cstdint>
#include <tapegrad/nn.hpp>

#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::expect_clear_errors([&] {
    const nn::IdxArray a = nn::parse_idx(fuzz::bytes(data, size), "fuzz.idx");
    std::size_t numel = 1;
    for (std::int64_t d : a.dims) numel *= std::size_t(d);
    if (a.dims.empty() || numel != a.data.size()) __builtin_trap();
  });
  return 0;
}
