// Fashion-MNIST from Debian's dataset-fashion-mnist: a test of its own, which
// fails (not skips) when the package is missing, so CI always has the real data.

#include <doctest/doctest.h>

#include <algorithm>
#include <tapegrad/nn.hpp>
#include <vector>

TEST_CASE("Fashion-MNIST loads from dataset-fashion-mnist: 60000 + 10000 images, 10 classes") {
  for (auto [split, rows] :
       {std::pair{nn::Split::train, 60000}, std::pair{nn::Split::test, 10000}}) {
    const nn::Dataset d = nn::load_fashion_mnist(split);  // throws with apt-get advice if missing
    CHECK(d.rows == rows);
    CHECK(d.cols == 784);
    CHECK(d.classes == 10);
    CHECK(d.class_names.size() == 10);
    const auto [lo, hi] = std::minmax_element(d.features.begin(), d.features.end());
    CHECK(*lo == 0.f);
    CHECK(*hi == 1.f);
    // Fashion-MNIST is balanced: a tenth of the images per class.
    CHECK(d.class_counts() == std::vector<std::int64_t>(10, rows / 10));
    CHECK(d.labels[0] == 9);  // both sets open with an ankle boot
  }
}
