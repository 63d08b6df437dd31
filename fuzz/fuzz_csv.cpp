// Fuzzes the CSV loader (nn::parse_csv) on text, under each way of reading a table: a header
// or none, the label by index or by name, mapped labels, another delimiter.

#include <cstddef>
#include <cstdint>
#include <tapegrad/nn.hpp>

#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const nn::CsvOptions kOptions[] = {
      {},
      {.label_name = "label", .map_labels = true},
      {.header = false, .label_index = 0, .delimiter = '\t'},
      {.header = false, .delimiter = ';', .map_labels = true},
  };
  for (const nn::CsvOptions& options : kOptions)
    fuzz::expect_clear_errors([&] {
      nn::Dataset d = nn::parse_csv(fuzz::text(data, size), "fuzz.csv", options);
      d.validate();
      (void)d.class_counts();
      d.standardize();
    });
  return 0;
}
