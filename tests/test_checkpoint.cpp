// Checkpoints: bit-exact round trips and resumed training, every mismatch and corruption as a
// clear error (every truncation, every single-bit flip), and saves that fail or are killed.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <span>
#include <string>
#include <tapegrad/autograd.hpp>
#include <tapegrad/nn.hpp>
#include <thread>
#include <vector>

using namespace ag;
namespace fs = std::filesystem;

namespace {

// A scratch directory, removed with everything in it.
struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("tapegrad-checkpoint-" + std::to_string(::getpid()));
  TempDir() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  // The files left in the directory, by name.
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::vector<std::vector<float>> snapshot(nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (nn::Parameter* p : m.parameters()) out.emplace_back(p->data().begin(), p->data().end());
  return out;
}

// A few steps of full-batch training on XOR with the MSE loss.
void train(nn::Module& model, nn::Optimizer& opt, int steps) {
  const std::vector<float> x{0, 0, 0, 1, 1, 0, 1, 1}, y{0, 1, 1, 0};
  TensorTape tape;
  for (int i = 0; i < steps; ++i) {
    tape.reset();
    Tensor p = model(tape.constant<float>(Shape{4, 2}, x));
    Tensor l = nn::mse_loss(p, tape.constant<float>(Shape{4, 1}, y));
    opt.zero_grad();
    tape.backward(l);
    opt.step();
  }
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), std::streamsize(bytes.size()));
}

// A safetensors file from a header and data, laid out by hand.
std::string file_of(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// The message of the ag::Error that loading `bytes` into `model` throws; "" if it loads.
std::string load_error(nn::Module& model, const std::string& path, const std::string& bytes) {
  write_bytes(path, bytes);
  try {
    nn::load(model, path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string read_error(const std::string& path, const std::string& bytes) {
  write_bytes(path, bytes);
  try {
    nn::read_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a checkpoint round trip restores every parameter bit for bit, and the metadata") {
  TempDir tmp;
  const std::string path = tmp.path("model.safetensors");
  nn::MLP saved({2, 16, 16, 1}, ag::Op::relu, ag::Op::sigmoid, 7);
  nn::save(saved, path, {.metadata = {{"epoch", "3"}, {"seed", "42"}, {"losses", "[0.5, 0.25]"}}});

  nn::MLP loaded({2, 16, 16, 1}, ag::Op::relu, ag::Op::sigmoid, 8);
  REQUIRE(snapshot(loaded) != snapshot(saved));
  nn::CheckpointExtras extras{.metadata = {{"stale", "x"}}};
  nn::load(loaded, path, &extras);
  CHECK(snapshot(loaded) == snapshot(saved));
  CHECK(extras.metadata == std::map<std::string, std::string>{
                               {"epoch", "3"}, {"losses", "[0.5, 0.25]"}, {"seed", "42"}});

  // The file itself: PyTorch's names and shapes, F32, packed in the model's order, 8-aligned.
  const nn::SafetensorsFile file = nn::read_safetensors(path);
  CHECK(file.metadata.at("format") == "pt");
  CHECK(file.metadata.at("tapegrad.crc32").size() == 8);
  std::vector<std::string> names;
  std::uint64_t offset = 0;
  for (auto& [name, p] : saved.named_parameters()) {
    names.push_back(name);
    const nn::StoredTensor& t = file.tensors.at(name);
    CHECK(t.dtype == "F32");
    CHECK(t.shape == std::vector<std::int64_t>(p->shape().dims().begin(), p->shape().dims().end()));
    CHECK(t.offset == offset);
    CHECK(t.floats() == std::vector<float>(p->data().begin(), p->data().end()));
    offset += t.data.size();
  }
  CHECK(file.tensors.size() == names.size());
  std::uint64_t header_size = 0;
  const std::string bytes = read_bytes(path);
  std::memcpy(&header_size, bytes.data(), 8);
  CHECK(header_size % 8 == 0);
  CHECK(bytes.size() == 8 + header_size + offset);
  CHECK(bytes.substr(8, 16) == R"({"__metadata__":)");

  // write_safetensors writes what read_safetensors read, and the result still loads.
  nn::write_safetensors(tmp.path("copy.safetensors"), file);
  nn::MLP copy({2, 16, 16, 1}, ag::Op::relu, ag::Op::sigmoid, 9);
  nn::load(copy, tmp.path("copy.safetensors"));
  CHECK(snapshot(copy) == snapshot(saved));
  CHECK(tmp.files() == std::vector<std::string>{"copy.safetensors", "model.safetensors"});
}

TEST_CASE("safetensors_bytes are the bytes save writes, optimizer state and metadata too") {
  TempDir tmp;
  nn::MLP model({2, 4, 1}, ag::Op::tanh, ag::Op::sigmoid, 3);
  nn::Adam adam(model.parameters());
  train(model, adam, 3);
  const nn::CheckpointExtras extras{.optimizer = &adam, .metadata = {{"epoch", "3"}}};
  nn::save(model, tmp.path("model.safetensors"), extras);
  CHECK(nn::safetensors_bytes(model, extras) == read_bytes(tmp.path("model.safetensors")));
  CHECK(nn::safetensors_bytes(model) != nn::safetensors_bytes(model, extras));
  CHECK_THROWS_WITH_AS(
      nn::safetensors_bytes(model, {.optimizer = nullptr, .metadata = {{"format", "x"}}},
                            "download"),
      doctest::Contains("cannot write checkpoint \"download\": the metadata key \"format\""),
      Error);
}

TEST_CASE(
    "resuming from a checkpoint with the optimizer's state trains exactly as without a stop") {
  TempDir tmp;
  const std::string path = tmp.path("resume.safetensors");
  auto run = [&](auto make_optimizer, const char* kind) {
    INFO(kind);
    nn::MLP straight({2, 8, 1}, ag::Op::tanh, ag::Op::sigmoid, 3);
    auto opt = make_optimizer(straight);
    train(straight, *opt, 5);
    opt->set_lr(opt->lr() / 3);  // as a schedule would: the checkpoint keeps the rate
    train(straight, *opt, 5);

    nn::MLP first({2, 8, 1}, ag::Op::tanh, ag::Op::sigmoid, 3);
    auto opt1 = make_optimizer(first);
    train(first, *opt1, 5);
    opt1->set_lr(opt1->lr() / 3);
    nn::save(first, path, {.optimizer = opt1.get(), .metadata = {{"epoch", "5"}}});

    nn::MLP second({2, 8, 1}, ag::Op::tanh, ag::Op::sigmoid, 99);
    auto opt2 = make_optimizer(second);
    opt2->set_lr(123);
    nn::CheckpointExtras extras{.optimizer = opt2.get()};
    nn::load(second, path, &extras);
    CHECK(opt2->steps() == 5);
    CHECK(opt2->lr() == opt->lr());
    CHECK(extras.metadata.at("epoch") == "5");
    train(second, *opt2, 5);
    CHECK(snapshot(second) == snapshot(straight));
    CHECK(opt2->steps() == opt->steps());

    // Without the optimizer's state, the same resume drifts: the test can see a difference.
    nn::MLP forgetful({2, 8, 1}, ag::Op::tanh, ag::Op::sigmoid, 99);
    auto fresh = make_optimizer(forgetful);
    nn::load(forgetful, path);
    train(forgetful, *fresh, 5);
    CHECK(snapshot(forgetful) != snapshot(straight));
  };
  run(
      [](nn::Module& m) {
        return std::make_unique<nn::SGD>(m.parameters(),
                                         nn::SGDOptions{.lr = 0.1, .momentum = 0.9});
      },
      "SGD with momentum");
  run(
      [](nn::Module& m) {
        return std::make_unique<nn::SGD>(
            m.parameters(),
            nn::SGDOptions{.lr = 0.1, .momentum = 0.8, .weight_decay = 1e-3, .nesterov = true});
      },
      "SGD with Nesterov momentum and weight decay");
  run(
      [](nn::Module& m) {
        return std::make_unique<nn::Adam>(m.parameters(), nn::AdamOptions{.lr = 0.05});
      },
      "Adam");
  run([](nn::Module& m) { return std::make_unique<nn::AdamW>(m.parameters()); }, "AdamW");

  // The layout: one 1-d tensor per buffer after the parameters, Adam's m's then v's.
  nn::MLP model({2, 3, 1}, ag::Op::relu);
  nn::Adam adam(model.parameters());
  train(model, adam, 2);
  nn::save(model, path, {.optimizer = &adam});
  const nn::SafetensorsFile file = nn::read_safetensors(path);
  CHECK(file.metadata.at("tapegrad.optimizer") == "Adam");
  CHECK(file.metadata.at("tapegrad.optimizer.steps") == "2");
  CHECK(file.metadata.at("tapegrad.optimizer.lr") == "0.001");
  CHECK(file.tensors.size() == 4 + 8);
  CHECK(file.tensors.at("optimizer.state.0").shape == std::vector<std::int64_t>{6});
  CHECK(file.tensors.at("optimizer.state.7").shape == std::vector<std::int64_t>{1});
  CHECK(file.tensors.at("optimizer.state.4").floats() == *adam.state()[4]);
}

TEST_CASE("a checkpoint that does not fit the model names every mismatch, and changes nothing") {
  TempDir tmp;
  const std::string path = tmp.path("model.safetensors");
  nn::MLP small({2, 5, 1}, ag::Op::relu);
  nn::save(small, path);
  nn::MLP model({2, 16, 1}, ag::Op::relu, nn::Activation::none, 1);
  const auto before = snapshot(model);
  CHECK_THROWS_WITH_AS(
      nn::load(model, path),
      (path + ": layers.0.weight has shape (5, 2) in the file, (16, 2) in the model; "
              "layers.0.bias has shape (5,) in the file, (16,) in the model; "
              "layers.2.weight has shape (1, 5) in the file, (1, 16) in the model")
          .c_str(),
      Error);
  CHECK(snapshot(model) == before);  // layers.2.bias matched, yet was not written

  // Missing, unexpected and wrong dtype, through a file edited with the safetensors layer.
  nn::MLP mlp({2, 3, 1}, ag::Op::relu);
  nn::save(mlp, path);
  nn::SafetensorsFile file = nn::read_safetensors(path);
  file.tensors.erase("layers.2.bias");
  file.tensors["layers.4.weight"] = {"F32", {1, 1}, std::vector<std::byte>(4), 0};
  file.tensors["layers.0.bias"] = {"F64", {3}, std::vector<std::byte>(24), 0};
  nn::write_safetensors(path, file);
  CHECK_THROWS_WITH_AS(nn::load(mlp, path),
                       (path + ": layers.0.bias has dtype F64 in the file, F32 in the model; "
                               "layers.2.bias is missing from the file; "
                               "layers.4.weight is in the file but not in the model")
                           .c_str(),
                       Error);
}

TEST_CASE("optimizer state must match the optimizer it is restored into") {
  TempDir tmp;
  const std::string path = tmp.path("opt.safetensors");
  nn::MLP mlp({2, 3, 1}, ag::Op::relu);
  nn::Adam adam(mlp.parameters());
  nn::save(mlp, path);
  nn::CheckpointExtras extras{.optimizer = &adam};
  CHECK_THROWS_WITH_AS(nn::load(mlp, path, &extras),
                       (path + ": the file holds no optimizer state to restore into Adam").c_str(),
                       Error);
  nn::SGD sgd(mlp.parameters(), {.lr = 0.1, .momentum = 0.9});
  nn::save(mlp, path, {.optimizer = &sgd});
  CHECK_THROWS_WITH_AS(nn::load(mlp, path, &extras),
                       (path + ": the file holds SGD state, not Adam").c_str(), Error);
  nn::AdamW adamw(mlp.parameters());
  extras.optimizer = &adamw;
  nn::save(mlp, path, {.optimizer = &adam});
  CHECK_THROWS_WITH_AS(nn::load(mlp, path, &extras),
                       (path + ": the file holds Adam state, not AdamW").c_str(), Error);

  // A buffer of the wrong size, and one too many.
  nn::SafetensorsFile file = nn::read_safetensors(path);
  file.tensors["optimizer.state.1"] = {"F32", {2}, std::vector<std::byte>(8), 0};
  file.tensors["optimizer.state.8"] = {"F32", {1}, std::vector<std::byte>(4), 0};
  nn::write_safetensors(path, file);
  extras.optimizer = &adam;
  CHECK_THROWS_WITH_AS(
      nn::load(mlp, path, &extras),
      (path + ": optimizer.state.1 has shape (2,) in the file, (3,) in the "
              "optimizer; optimizer.state.8 is in the file but not in the optimizer")
          .c_str(),
      Error);
  nn::load(mlp, path);  // the model alone ignores the optimizer's tensors

  CHECK_THROWS_WITH_AS(nn::save(mlp, path, {.metadata = {{"tapegrad.optimizer", "SGD"}}}),
                       ("cannot write checkpoint \"" + path +
                        "\": the metadata key \"tapegrad.optimizer\" is reserved (\"format\" and "
                        "\"tapegrad.*\" are written by save())")
                           .c_str(),
                       Error);
}

TEST_CASE("missing files, directories and malformed headers are clear errors") {
  TempDir tmp;
  const std::string path = tmp.path("bad.safetensors");
  nn::MLP mlp({2, 3, 1}, ag::Op::relu);
  CHECK_THROWS_WITH_AS(
      nn::load(mlp, path),
      ("cannot read checkpoint \"" + path + "\": No such file or directory").c_str(), Error);
  CHECK_THROWS_WITH_AS(
      nn::load(mlp, tmp.dir.string()),
      ("cannot read checkpoint \"" + tmp.dir.string() + "\": Is a directory").c_str(), Error);

  const std::string f32x2 = std::string(8, '\0');
  auto error = [&](const std::string& header, const std::string& data) {
    return read_error(path, file_of(header, data));
  };
  CHECK(read_error(path, "abc") ==
        path + ": the file is 3 bytes, too short for the 8-byte header length");
  CHECK(error("{}", "").empty());  // an empty file is a valid one
  CHECK(read_error(path, file_of("{}", "").substr(0, 9)) ==
        path +
            ": the header length at byte 0 says 2 bytes, but only 1 follow (truncated or corrupt "
            "file)");
  std::string huge = file_of("{}", "");
  huge[5] = 1;  // 2^40 + 2
  CHECK(read_error(path, huge) == path +
                                      ": the header length at byte 0 says 1099511627778 bytes, "
                                      "but only 2 follow (truncated or corrupt file)");
  CHECK(error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},})", f32x2) ==
        path +
            ": the JSON header (bytes 8..63) is not valid at byte 62: syntax error while parsing "
            "object key - unexpected '}'; expected string literal");
  // Found by fuzz_safetensors: a number too large for a double escaped as nlohmann's
  // out_of_range exception instead of an ag::Error.
  CHECK(error(R"({"a":1e400})", "") ==
        path + ": the JSON header (bytes 8..19) is not valid: number overflow parsing '1e400'");
  CHECK(error(R"({"__metadata__":-1e999})", "") ==
        path + ": the JSON header (bytes 8..31) is not valid: number overflow parsing '-1e999'");
  CHECK(error("[1, 2]", "") == path + ": the JSON header is not an object");
  CHECK(error(R"({"a":1,"a":2})", "") == path + ": the JSON header has the key \"a\" twice");
  CHECK(error(R"({"__metadata__":{"epoch":3}})", "") ==
        path + ": metadata \"epoch\" is a number, not a string");
  CHECK(error(R"({"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}})", f32x2) ==
        path + ": tensor \"a\": dtype \"F99\" is not a safetensors dtype");
  CHECK(error(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x2) ==
        path + ": tensor \"a\": \"shape\" is missing or not a list of non-negative integers");
  CHECK(error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", f32x2) ==
        path + ": tensor \"a\": unknown field \"x\"");
  CHECK(error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", f32x2) ==
        path +
            ": tensor \"a\": \"data_offsets\" is missing or not two non-negative integers [begin, "
            "end]");
  CHECK(error(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32x2) ==
        path + ": tensor \"a\": shape (3,) of F32 needs 12 bytes, but data_offsets [0, 8] hold 8");
  CHECK(error(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
              f32x2) ==
        path + ": tensor \"a\": shape [4294967296,4294967296] is larger than the file");
  CHECK(error(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", f32x2) ==
        path + ": tensor \"a\": data_offsets [8, 0] end before they begin");

  // Offsets out of range, overlapping, or leaving bytes unaccounted for.
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK(error(h, "1234") ==
        fmt::format("{}: tensor \"a\": data_offsets [0, 8] run past the data section, which has 4 "
                    "bytes (file bytes {}..{}; truncated or corrupt file)",
                    path, 8 + h.size(), 12 + h.size()));
  const std::string two = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  CHECK(error(two, std::string(12, 'x')) ==
        fmt::format("{}: tensors \"a\" (file bytes {}..{}) and \"b\" (file bytes {}..{}) overlap",
                    path, 8 + two.size(), 16 + two.size(), 12 + two.size(), 20 + two.size()));
  const std::string gap = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  CHECK(error(gap, std::string(12, 'x')) == fmt::format("{}: file bytes {}..{} belong to no tensor",
                                                        path, 12 + gap.size(), 16 + gap.size()));
  CHECK(error(h, std::string(10, 'x')) ==
        fmt::format("{}: file bytes {}..{} after the last tensor belong to no tensor", path,
                    16 + h.size(), 18 + h.size()));
  CHECK(error(h, f32x2).empty());
}

TEST_CASE("parse_safetensors checks bytes in memory as read_safetensors checks a file") {
  auto parse = [](const std::string& bytes) {
    return nn::parse_safetensors(std::as_bytes(std::span(bytes)), "upload");
  };
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK(parse(file_of(h, std::string(8, '\0'))).tensors.at("a").floats() ==
        std::vector<float>{0, 0});
  // Sizes the file cannot hold are refused before anything is allocated: a JSON length of
  // 2^63, a shape of 2^28 floats, data_offsets past the end.
  std::string huge = file_of("{}", "");
  huge[7] = 0x7f;
  CHECK_THROWS_WITH_AS(parse(huge),
                       "upload: the header length at byte 0 says 9151314442816847874 bytes, but "
                       "only 2 follow (truncated or corrupt file)",
                       Error);
  CHECK_THROWS_WITH_AS(
      parse(file_of(R"({"a":{"dtype":"F32","shape":[268435456],"data_offsets":[0,8]}})",
                    std::string(8, 'x'))),
      "upload: tensor \"a\": shape [268435456] is larger than the file", Error);
  // After a 0 the element count stays 0 whatever follows: a dimension past 2^63 - 1 is refused
  // on its own, not kept as a negative int64 and printed as (0, -9223372036854775808).
  const auto empty_of = [](std::string_view dims) {
    return fmt::format(R"({{"a":{{"dtype":"F32","shape":[{}],"data_offsets":[0,0]}}}})", dims);
  };
  CHECK_THROWS_WITH_AS(
      parse(file_of(empty_of("0,9223372036854775808"), "")),
      "upload: tensor \"a\": shape [0,9223372036854775808]: dimension 9223372036854775808 is "
      "larger than 2^63 - 1",
      Error);
  CHECK(parse(file_of(empty_of("0,9223372036854775807"), "")).tensors.at("a").shape ==
        std::vector<std::int64_t>{0, 9223372036854775807});
  CHECK(nn::shape_str({0, 3}) == "(0, 3)");
  const std::string far = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,1073741824]}})";
  CHECK_THROWS_WITH_AS(parse(file_of(far, std::string(8, 'x'))),
                       fmt::format("upload: tensor \"a\": data_offsets [0, 1073741824] run past "
                                   "the data section, which has 8 bytes (file bytes {}..{}; "
                                   "truncated or corrupt file)",
                                   8 + far.size(), 16 + far.size())
                           .c_str(),
                       Error);
}

TEST_CASE("a hostile header is refused by its depth and size before it is built") {
  // Note [Header limits]: 100 MB of '[' once built arrays until memory ran out, and 200,000
  // entries took minutes in ordered_json's linear key search.
  auto parse = [](const std::string& header) {
    const std::string bytes = file_of(header, "");
    return nn::parse_safetensors(std::as_bytes(std::span(bytes)), "upload");
  };
  CHECK_THROWS_WITH_AS(parse(std::string(10'000'000, '[')),
                       "upload: the JSON header nests deeper than 3 levels, the most a "
                       "safetensors header has",
                       Error);
  CHECK_THROWS_WITH_AS(parse(R"({"a":{"b":{"c":{"d":1}}}})"),
                       "upload: the JSON header nests deeper than 3 levels, the most a "
                       "safetensors header has",
                       Error);
  auto entries = [](int n) {
    std::string header = "{";
    for (int i = 0; i < n; ++i)
      header += fmt::format(R"({}"t{}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})",
                            i ? "," : "", i);
    return header + "}";
  };
  CHECK_THROWS_WITH_AS(parse(entries(100'001)),
                       "upload: the JSON header has more than 100000 entries", Error);
  CHECK(parse(entries(20'000)).tensors.size() == 20'000);  // linear: well under a second
  std::string values = R"({"a":{"dtype":"F32","shape":[)";
  for (int i = 0; i < 2'000'000; ++i) values += "1,";
  values += R"(1],"data_offsets":[0,0]}})";
  CHECK_THROWS_WITH_AS(parse(values), "upload: the JSON header holds more than 2000000 values",
                       Error);
}

TEST_CASE("optimizer metadata is validated, and tapegrad's files must carry their checksum") {
  TempDir tmp;
  const std::string path = tmp.path("m.safetensors");
  nn::MLP mlp({2, 3, 1}, ag::Op::relu);
  auto load_adam = [&](double lr, std::size_t steps) {
    nn::Adam writer(mlp.parameters(), {.lr = 0.01});
    writer.set_lr(lr);
    writer.set_steps(steps);
    nn::save(mlp, path, {&writer, {}});  // a valid checksum over invalid numbers
    nn::Adam reader(mlp.parameters(), {.lr = 0.01});
    nn::CheckpointExtras extras{&reader, {}};
    nn::load(mlp, path, &extras);
    return std::pair(reader.lr(), reader.steps());
  };
  CHECK(load_adam(0.5, 7) == std::pair(0.5, std::size_t{7}));
  CHECK_THROWS_WITH_AS(
      load_adam(std::numeric_limits<double>::infinity(), 7),
      (path + ": metadata tapegrad.optimizer.lr is \"inf\", not a learning rate").c_str(), Error);
  CHECK_THROWS_WITH_AS(
      load_adam(std::nan(""), 7),
      (path + ": metadata tapegrad.optimizer.lr is \"nan\", not a learning rate").c_str(), Error);
  CHECK_THROWS_WITH_AS(
      load_adam(0.5, std::numeric_limits<std::size_t>::max()),
      (path + ": metadata tapegrad.optimizer.steps is \"18446744073709551615\", not a "
              "step count (at most 9007199254740992)")
          .c_str(),
      Error);

  // Without its checksum key, a file with tapegrad metadata is refused; one from another tool
  // (no tapegrad metadata) loads, marked unchecked.
  const std::string h = R"({"__metadata__":{"tapegrad.optimizer":"SGD"}})";
  CHECK(read_error(path, file_of(h, "")) ==
        path +
            ": it has tapegrad metadata but no \"tapegrad.crc32\" checksum, which tapegrad "
            "always writes (damaged or edited file)");
  write_bytes(path, file_of(R"({"__metadata__":{"format":"pt"}})", ""));
  CHECK_FALSE(nn::read_safetensors(path).checksummed);
  nn::save(mlp, path);
  CHECK(nn::read_safetensors(path).checksummed);
}

TEST_CASE("a checkpoint is read within its limit, and only from a regular file") {
  CHECK_THROWS_WITH_AS(nn::read_safetensors("/dev/zero"),
                       "cannot read checkpoint \"/dev/zero\": it is a character device, not a "
                       "regular file",
                       Error);
  TempDir tmp;
  const std::string fifo = tmp.path("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(
      nn::read_safetensors(fifo),  // at once: nobody will ever write to it
      ("cannot read checkpoint \"" + fifo + "\": it is a FIFO, not a regular file").c_str(), Error);
  const std::string sparse = tmp.path("sparse.safetensors");
  std::ofstream{sparse}.close();
  fs::resize_file(sparse, (std::uintmax_t{2} << 30) + 1);  // sparse: no disk space used
  CHECK_THROWS_WITH_AS(nn::read_safetensors(sparse),
                       ("cannot read checkpoint \"" + sparse +
                        "\": it is larger than the 2147483648-byte (2 GiB) limit")
                           .c_str(),
                       Error);
}

TEST_CASE("every truncation and every single flipped bit of a checkpoint is an error") {
  TempDir tmp;
  // The thousands of damaged copies go to a file in memory: rewriting a file on disk that often
  // makes the file system flush each one, which takes seconds.
  const int memory = ::memfd_create("bad.safetensors", MFD_CLOEXEC);
  REQUIRE(memory >= 0);
  const std::string good = tmp.path("good.safetensors"),
                    path = fmt::format("/proc/self/fd/{}", memory);
  nn::MLP mlp({2, 3, 1}, ag::Op::relu);
  nn::SGD sgd(mlp.parameters(), {.lr = 0.1});  // its metadata without buffers: fewer bits to flip
  train(mlp, sgd, 1);
  nn::save(mlp, good, {.optimizer = &sgd, .metadata = {{"epoch", "1"}}});
  const std::string bytes = read_bytes(good);
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  nn::MLP target({2, 3, 1}, ag::Op::relu, nn::Activation::none, 5);
  const auto before = snapshot(target);

  int errors = 0;
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const std::string message = load_error(target, path, bytes.substr(0, n));
    INFO("truncated to ", n, " bytes: ", message);
    CHECK(message.starts_with(path + ": "));
    errors += !message.empty();
  }
  CHECK(errors == int(bytes.size()));
  // Truncated within the data: the file's bytes are named.
  CHECK(load_error(target, path, bytes.substr(0, bytes.size() - 3))
            .find("run past the data section") != std::string::npos);

  // A flip in the header breaks the JSON or its checks; one in the data breaks the checksum.
  errors = 0;
  for (std::size_t bit = 0; bit < 8 * bytes.size(); ++bit) {
    std::string flipped = bytes;
    flipped[bit / 8] = char(flipped[bit / 8] ^ (1 << (bit % 8)));
    const std::string message = load_error(target, path, flipped);
    INFO("bit ", bit % 8, " of byte ", bit / 8, ": ", message);
    CHECK(message.starts_with(path + ": "));
    errors += !message.empty();
  }
  CHECK(errors == int(8 * bytes.size()));
  CHECK(snapshot(target) == before);

  std::string data_flip = bytes;
  data_flip[8 + header_size + 5] ^= 0x10;
  CHECK(load_error(target, path, data_flip).find("the checksum does not match") !=
        std::string::npos);
  nn::load(target, good);
  CHECK(snapshot(target) == snapshot(mlp));
  ::close(memory);
}

TEST_CASE("a failed save leaves the previous checkpoint intact and no temporary file") {
  TempDir tmp;
  const std::string path = tmp.path("model.safetensors");
  nn::MLP old({2, 3, 1}, ag::Op::relu, nn::Activation::none, 1);
  nn::save(old, path);
  nn::MLP big({2, 512, 512, 1}, ag::Op::relu);  // ~1 MB

  // Into a directory that does not exist.
  const std::string nowhere = tmp.path("gone/model.safetensors");
  CHECK_THROWS_WITH_AS(
      nn::save(old, nowhere),
      ("cannot write checkpoint \"" + nowhere + "\": No such file or directory").c_str(), Error);

  // The disk fills up mid-file: a child process whose file-size limit is 64 KiB saves the big
  // model over the checkpoint; write() fails with EFBIG part-way and the save reports it.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{65536, 65536};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    try {
      nn::save(big, path);
    } catch (const Error& e) {
      ::_exit(std::string(e.what()) == "cannot write checkpoint \"" + path + "\": File too large"
                  ? 0
                  : 3);
    } catch (...) {
      ::_exit(5);  // never back into doctest: the child must not run the other tests
    }
    ::_exit(4);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  CHECK(tmp.files() == std::vector<std::string>{"model.safetensors"});
  nn::MLP reloaded({2, 3, 1}, ag::Op::relu, nn::Activation::none, 2);
  nn::load(reloaded, path);
  CHECK(snapshot(reloaded) == snapshot(old));
}

TEST_CASE("a save removes the temporary files of dead writers of the same file, only those") {
  TempDir tmp;
  const std::string path = tmp.path("model.safetensors");
  const pid_t dead = ::fork();  // a process that has exited and been reaped
  REQUIRE(dead >= 0);
  if (dead == 0) ::_exit(0);
  REQUIRE(::waitpid(dead, nullptr, 0) == dead);
  const std::string d = std::to_string(dead), live = std::to_string(::getppid()),
                    self = std::to_string(::getpid());
  const std::vector<std::string> kept{
      "model.safetensors.tmp-" + live + "-0",   // a writer that is still running
      "model.safetensors.tmp-" + self + "-7",   // this process's own (another thread's)
      "other.safetensors.tmp-" + d + "-0",      // another file's
      "model.safetensors.tmp-" + d,             // not a temporary's name
      "model.safetensors.tmp-x" + d + "-0",     // no process id
      "model.safetensors.tmp-" + d + "-0.bak",  // a suffix after the number
  };
  for (const std::string& name : kept) write_bytes(tmp.path(name), "x");
  write_bytes(tmp.path("model.safetensors.tmp-" + d + "-0"), "x");
  write_bytes(tmp.path("model.safetensors.tmp-" + d + "-12"), "x");
  nn::MLP mlp({2, 3, 1}, ag::Op::relu);
  nn::save(mlp, path);
  std::vector<std::string> expected = kept;
  expected.push_back("model.safetensors");
  std::sort(expected.begin(), expected.end());
  CHECK(tmp.files() == expected);
}

// The version a checkpoint written by tests/checkpoint_saver holds: its metadata "version",
// which every parameter must equal, else the file mixes two saves.
long saved_version(const std::string& path) {
  nn::MLP loaded({2, 512, 512, 1}, ag::Op::relu, nn::Activation::none, 5);
  nn::CheckpointExtras extras;
  nn::load(loaded, path, &extras);
  const long version = std::stol(extras.metadata.at("version"));
  for (nn::Parameter* p : loaded.parameters())
    REQUIRE(std::all_of(p->data().begin(), p->data().end(),
                        [&](float v) { return v == float(version); }));
  return version;
}

TEST_CASE("a saving process killed at random moments leaves the last complete checkpoint") {
  // tests/checkpoint_saver saves versions first, first + 1, ... of a 1 MB model over one file
  // and prints each version once saved. It is killed with SIGKILL 50 times, after a random
  // delay covering its start, its writes and its renames. Each time the file must load and hold
  // a whole version: the last one printed, or the next if the kill came between rename and
  // print. The temporary file a kill leaves is removed by the next save, so at most one is ever
  // there, and none after a last save.
  const char* saver = std::getenv("TAPEGRAD_CHECKPOINT_SAVER");
  REQUIRE_MESSAGE(saver, "run through meson test, which sets TAPEGRAD_CHECKPOINT_SAVER");
  TempDir tmp;
  const std::string path = tmp.path("model.safetensors");

  auto temporaries = [&] {
    int n = 0;
    for (const std::string& f : tmp.files()) n += f != "model.safetensors";
    return n;
  };
  // Runs the saver from `first` for `delay` (or until it printed `until` versions, or, with
  // `until` -1, until a temporary file is seen: a kill inside a write), kills it, and returns
  // the versions it printed.
  auto run_saver = [&](long first, std::chrono::microseconds delay, int until) {
    const std::string from = std::to_string(first);  // before fork: the child only execs
    int out[2];
    REQUIRE(::pipe(out) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      ::execl(saver, saver, path.c_str(), from.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);  // never back into doctest
    }
    ::close(out[1]);
    std::string printed;
    const auto deadline = std::chrono::steady_clock::now() + delay;
    // Directory scans, at most: a save that never shows its temporary file ends the wait.
    for (long scans = 0; until < 0 && scans < 1'000'000 && temporaries() == 0; ++scans) {
    }
    while (until > 0 ? std::count(printed.begin(), printed.end(), '\n') < until
                     : until == 0 && std::chrono::steady_clock::now() < deadline) {
      if (until > 0) {  // blocking reads until enough versions are printed
        char buf[256];
        const ssize_t n = ::read(out[0], buf, sizeof buf);
        REQUIRE(n > 0);
        printed.append(buf, std::size_t(n));
      } else {
        std::this_thread::sleep_until(deadline);
      }
    }
    ::kill(child, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE_MESSAGE(WIFSIGNALED(status), "the saver exited by itself: status ", status);
    char buf[4096];
    for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) printed.append(buf, std::size_t(n));
    ::close(out[0]);
    std::vector<long> versions;
    for (std::size_t at = 0, end; (end = printed.find('\n', at)) != std::string::npos; at = end + 1)
      versions.push_back(std::stol(printed.substr(at, end - at)));
    return versions;
  };
  // Version 1 and the time a save takes, from a first run of five saves.
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<long> versions = run_saver(1, {}, 5);
  const auto five = std::chrono::steady_clock::now() - t0;
  REQUIRE(versions.size() >= 5);
  long version = saved_version(path);
  CHECK(version >= versions.back());
  // Delays from 0 to the start-up and about four saves.
  const auto longest = std::chrono::duration_cast<std::chrono::microseconds>(five) * 4 / 5;
  const std::uint64_t seed =
      std::uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  INFO("delays seeded with ", seed, ", from 0 to ", longest.count(), " us");
  ag::Rng rng(seed);

  int left_temporary = 0, new_versions = 0;
  for (int kill = 0; kill < 50; ++kill) {
    const auto delay =
        std::chrono::microseconds(std::int64_t(rng.uniform() * double(longest.count())));
    INFO("kill ", kill, " after ", delay.count(), " us");
    const long before = version;
    versions = run_saver(before + 1, delay, 0);
    version = saved_version(path);
    const long last_printed = versions.empty() ? before : versions.back();
    CHECK((version == last_printed || version == last_printed + 1));
    new_versions += version > before;
    const int stale = temporaries();
    CHECK(stale <= 1);
    left_temporary += stale;
  }
  MESSAGE(left_temporary, " of 50 kills left a temporary file; ", new_versions,
          " ended after at least one save");
  CHECK(new_versions > 0);  // the delays reach past the saves, not only the start-up

  // Kills inside a write, by construction: random delays reach the writes only now and then
  // (under ASan a save spends most of its time building the file in memory, and 50 delays once
  // missed every write), so the saver is also killed as soon as its temporary file appears. A
  // kill can still come just after the rename; of 20, some must leave the temporary file.
  int inside_a_write = 0;
  for (int kill = 0; kill < 20; ++kill) {
    INFO("kill ", kill, " when the temporary file appeared");
    // The last kill's leftover goes first (as the next save would remove it), so that only a
    // temporary file of this run ends the wait.
    for (const std::string& f : tmp.files())
      if (f != "model.safetensors") std::filesystem::remove(tmp.path(f));
    const long before = version;
    versions = run_saver(before + 1, {}, -1);
    version = saved_version(path);
    const long last_printed = versions.empty() ? before : versions.back();
    CHECK((version == last_printed || version == last_printed + 1));
    const int stale = temporaries();
    CHECK(stale <= 1);
    inside_a_write += stale;
  }
  MESSAGE(inside_a_write, " of 20 kills at a temporary file's appearance left it");
  CHECK(inside_a_write > 0);

  // A save by another process (this one) removes the dead saver's temporary file.
  nn::MLP model({2, 3, 1}, ag::Op::relu);
  nn::save(model, path);
  CHECK(tmp.files() == std::vector<std::string>{"model.safetensors"});
}
