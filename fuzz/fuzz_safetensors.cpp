// Fuzzes the safetensors reader (nn::parse_safetensors) on bytes, and checks that every tensor
// it returns holds exactly the bytes its shape and dtype need.

#include <cstddef>
#include <cstdint>
#include <tapegrad/nn.hpp>

#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::expect_clear_errors([&] {
    const nn::SafetensorsFile file =
        nn::parse_safetensors(fuzz::bytes(data, size), "fuzz.safetensors");
    for (const auto& [name, t] : file.tensors) {
      if (std::size_t(t.numel()) * nn::dtype_size(t.dtype) != t.data.size()) __builtin_trap();
      (void)nn::shape_str(t.shape);
      if (t.dtype == "F32" && t.floats().size() != std::size_t(t.numel())) __builtin_trap();
    }
  });
  return 0;
}
