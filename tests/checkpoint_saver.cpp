// A test helper for test_checkpoint: saves a 1 MB checkpoint over PATH again and again until it
// is killed, version k (every parameter k, metadata "version" k) in its k-th save, and prints
// each version on stdout once its save has returned. Usage: checkpoint_saver PATH FIRST_VERSION

#include <cstdio>
#include <cstdlib>
#include <string>
#include <tapegrad/nn.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: checkpoint_saver PATH FIRST_VERSION\n");
    return 2;
  }
  const std::string path = argv[1];
  nn::MLP model({2, 512, 512, 1}, ag::Op::relu);
  try {
    for (long k = std::atol(argv[2]);; ++k) {
      for (nn::Parameter* p : model.parameters())
        std::fill(p->data().begin(), p->data().end(), float(k));
      nn::save(model, path, {.metadata = {{"version", std::to_string(k)}}});
      std::printf("%ld\n", k);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint_saver: %s\n", e.what());
    return 1;
  }
}
