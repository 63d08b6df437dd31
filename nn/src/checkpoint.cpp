// Checkpoints as safetensors (Note [Checkpoint format]): an atomic writer, a reader that
// validates every byte before anything is used, and save/load of modules and optimizers.

#include "tapegrad/nn/checkpoint.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <system_error>
#include <unordered_set>
#include <utility>

#include "tapegrad/chars.hpp"
#include "tapegrad/file.hpp"

namespace nn {
namespace {

// The header keeps the order entries are written in, so a file reads like the model.
using Json = nlohmann::ordered_json;

// safetensors stores little-endian data and we copy it with memcpy.
static_assert(std::endian::native == std::endian::little,
              "checkpoint.cpp reads and writes little-endian data by memcpy");

constexpr std::uint64_t kMaxHeader = 100'000'000;  // the limit of the safetensors library
constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::string_view kCrcKey = "tapegrad.crc32";
constexpr std::string_view kOptimizerKey = "tapegrad.optimizer";
constexpr std::string_view kStepsKey = "tapegrad.optimizer.steps";
constexpr std::string_view kLrKey = "tapegrad.optimizer.lr";
constexpr std::string_view kStatePrefix = "optimizer.state.";

struct DTypeInfo {
  std::string_view name;
  std::size_t size;
};
// The byte-sized dtypes of the safetensors format (the sub-byte F4/F6 ones are not supported).
constexpr DTypeInfo kDTypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8},
};

// ---- CRC-32 -------------------------------------------------------------------------------------

// CRC-32 as zlib's crc32() and Python's zlib.crc32 compute it (reflected polynomial
// 0xEDB88320), one byte at a time through a table built at compile time.
constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<std::uint32_t, 256> kCrcTable = make_crc_table();

std::uint32_t crc32(std::uint32_t crc, std::span<const std::byte> bytes) {
  crc = ~crc;
  for (std::byte b : bytes)
    crc = kCrcTable[(crc ^ std::to_integer<std::uint32_t>(b)) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// ---- Files --------------------------------------------------------------------------------------

// A checkpoint is read whole (Note [Bounded reads]): 2 GiB holds a 500 M-parameter model, or
// the largest MLP --layers allows with Adam's two buffers.
constexpr std::size_t kMaxCheckpointBytes = std::size_t{2} << 30;

// ---- Writing ------------------------------------------------------------------------------------

// A tensor to write, borrowing its bytes.
struct TensorView {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> bytes;
};

std::int64_t numel_of(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

// The file's head: the header's length and the JSON header, padded; the tensors' bytes follow it,
// in their order. `path` names the file in the messages.
std::string file_head(const std::string& path, const std::vector<TensorView>& tensors,
                      std::map<std::string, std::string> metadata) {
  auto fail = [&](const std::string& why) {
    return ag::Error(fmt::format("cannot write checkpoint \"{}\": {}", path, why));
  };
  metadata.erase(std::string(kCrcKey));
  Json header = Json::object();
  header[kMetadataKey] = Json::object();
  for (const auto& [key, value] : metadata) header[kMetadataKey][key] = value;
  std::uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    if (t.name.empty() || t.name == kMetadataKey || header.contains(t.name))
      throw fail(fmt::format("the tensor name \"{}\" is empty, reserved or used twice", t.name));
    const std::size_t size = dtype_size(t.dtype);
    if (size == 0) throw fail(fmt::format("\"{}\" is not a safetensors dtype", t.dtype));
    if (std::any_of(t.shape.begin(), t.shape.end(), [](std::int64_t d) { return d < 0; }) ||
        t.bytes.size() != static_cast<std::uint64_t>(numel_of(t.shape)) * size)
      throw fail(fmt::format("tensor \"{}\" has {} bytes, not what shape {} of {} needs", t.name,
                             t.bytes.size(), shape_str(t.shape), t.dtype));
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }

  std::string text;
  try {
    // The checksum covers the header as written without it, then the data (Note [Checkpoint
    // format]); the reader removes the key and dumps the parsed header again to check.
    std::uint32_t crc = crc32(0, as_bytes(header.dump()));
    for (const TensorView& t : tensors) crc = crc32(crc, t.bytes);
    header[kMetadataKey][kCrcKey] = fmt::format("{:08x}", crc);
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw fail(fmt::format("a name or metadata string is not valid UTF-8 ({})", e.what()));
  }
  // Spaces so the data section starts 8-byte aligned, as the safetensors library writes it.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::array<char, 8> length{};
  const std::uint64_t n = text.size();
  std::memcpy(length.data(), &n, 8);
  return std::string(length.data(), length.size()) + text;
}

void write_tensors(const std::string& path, const std::vector<TensorView>& tensors,
                   std::map<std::string, std::string> metadata) {
  const std::string head = file_head(path, tensors, std::move(metadata));
  std::vector<std::span<const std::byte>> pieces{as_bytes(head)};
  for (const TensorView& t : tensors) pieces.push_back(t.bytes);
  ag::write_file_atomically(path, pieces, "checkpoint");
}

// ---- Reading ------------------------------------------------------------------------------------

// Note [Header limits]
// ~~~~~~~~~~~~~~~~~~~~
// A header is at most kMaxHeader bytes, but bytes are not the cost: nlohmann's ordered_json
// finds a key by a linear search, so building 200,000 entries took minutes, and 100 MB of '['
// builds a hundred million arrays. The header is therefore built by HeaderBuilder, which appends
// without searching (duplicates are found through a hash set per object, so parsing is linear)
// and refuses, before building more, a header nested deeper than a safetensors header is
// (header, entry, shape: 3 levels), with more than kMaxHeaderEntries tensors, or holding more
// than kMaxHeaderValues values in all.
constexpr std::size_t kMaxHeaderDepth = 3;
constexpr std::size_t kMaxHeaderEntries = 100'000;   // an MLP of 16,000 layers, with Adam
constexpr std::size_t kMaxHeaderValues = 2'000'000;  // 100,000 tensors of rank 14

// Builds the header for Json::sax_parse within Note [Header limits]. A duplicated key in any
// object is recorded: JSON parsers disagree on which copy wins, so a file with one is ambiguous.
class HeaderBuilder {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  bool null() { return add(nullptr) != nullptr; }
  bool boolean(bool b) { return add(b) != nullptr; }
  bool number_integer(number_integer_t n) { return add(n) != nullptr; }
  bool number_unsigned(number_unsigned_t n) { return add(n) != nullptr; }
  bool number_float(number_float_t x, const string_t&) { return add(x) != nullptr; }
  bool string(string_t& s) { return add(std::move(s)) != nullptr; }
  bool binary(binary_t&) { return refuse("the JSON header holds binary data"); }
  bool start_object(std::size_t) { return open(Json::object()); }
  bool start_array(std::size_t) { return open(Json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(string_t& k) {
    if (open_.size() == 1 && ++entries_ > kMaxHeaderEntries)
      return refuse(fmt::format("the JSON header has more than {} entries", kMaxHeaderEntries));
    if (!open_.back().keys.insert(k).second && duplicate.empty()) duplicate = k;
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::json::exception& e) {
    error_byte = position;
    error = e.what();
    syntax_error = e.id / 100 == 1;  // 1xx: parse_error; 4xx (a number out of range): no position
    return false;
  }
  bool refuse(std::string why) {
    refusal = std::move(why);
    return false;
  }

  Json root;
  std::string duplicate, refusal, error;
  std::size_t error_byte = 0;
  bool syntax_error = false;

 private:
  struct Open {
    Json* value;
    std::unordered_set<std::string> keys;
  };

  // Appends `v` to the innermost open array or object (under the last key), or makes it the
  // root; nullptr once the header holds too many values.
  Json* add(Json&& v) {
    if (++values_ > kMaxHeaderValues) {
      refuse(fmt::format("the JSON header holds more than {} values", kMaxHeaderValues));
      return nullptr;
    }
    if (open_.empty()) {
      root = std::move(v);
      return &root;
    }
    Json& parent = *open_.back().value;
    if (parent.is_array()) {
      auto& array = parent.get_ref<Json::array_t&>();
      array.push_back(std::move(v));
      return &array.back();
    }
    auto& object = parent.get_ref<Json::object_t&>();
    object.emplace_back(std::move(key_), std::move(v));  // the vector's: no search for the key
    return &object.back().second;
  }
  bool open(Json&& v) {
    if (open_.size() == kMaxHeaderDepth)
      return refuse(
          fmt::format("the JSON header nests deeper than {} levels, the most a "
                      "safetensors header has",
                      kMaxHeaderDepth));
    Json* added = add(std::move(v));
    if (added) open_.push_back({added, {}});
    return added != nullptr;
  }
  bool close() {
    open_.pop_back();
    return true;
  }

  // The open arrays and objects, outermost first. A pointer stays valid while its value is
  // open: only the innermost open value grows.
  std::vector<Open> open_;
  std::string key_;
  std::size_t values_ = 0, entries_ = 0;
};

// nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 9: syntax error
// ..." (or "[json.exception.out_of_range.406] number overflow ...") without the parts our
// message gives in its own words.
std::string parse_reason(std::string_view what) {
  if (what.starts_with("[json.exception.")) what.remove_prefix(what.find("] ") + 2);
  const std::size_t at = what.find("parse error");
  const std::size_t colon = at == std::string_view::npos ? at : what.find(": ", at);
  if (colon != std::string_view::npos) what.remove_prefix(colon + 2);
  // Its "last read: '...'" quotes the file, which may be binary: escape what is not ASCII text.
  std::string out;
  for (char c : what) {
    const auto u = static_cast<unsigned char>(c);
    out += u >= 0x20 && u < 0x7f ? std::string(1, c) : fmt::format("\\x{:02x}", u);
  }
  return out;
}

bool non_negative_integer(const Json& j) { return j.is_number_unsigned(); }

// A metadata key one or two bits away from the checksum's: the checksum's own key damaged,
// which would otherwise switch the check off.
bool near_crc_key(const std::string& key) {
  if (key.size() != kCrcKey.size() || key == kCrcKey) return false;
  int differing = 0;
  for (std::size_t i = 0; i < key.size(); ++i)
    differing += std::popcount(static_cast<unsigned>(static_cast<unsigned char>(key[i]) ^
                                                     static_cast<unsigned char>(kCrcKey[i])));
  return differing <= 2;
}

}  // namespace

std::size_t dtype_size(std::string_view dtype) {
  for (const DTypeInfo& d : kDTypes)
    if (d.name == dtype) return d.size;
  return 0;
}

std::string shape_str(const std::vector<std::int64_t>& shape) { return ag::shape_str(shape); }

std::int64_t StoredTensor::numel() const { return numel_of(shape); }

std::vector<float> StoredTensor::floats() const {
  if (dtype != "F32") ag::fail("a {} tensor read as F32", dtype);
  std::vector<float> out(data.size() / sizeof(float));
  std::memcpy(out.data(), data.data(), out.size() * sizeof(float));
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  const std::string bytes = ag::read_file(path, kMaxCheckpointBytes, "checkpoint");
  return parse_safetensors(std::as_bytes(std::span(bytes.data(), bytes.size())), path);
}

SafetensorsFile parse_safetensors(std::span<const std::byte> bytes, const std::string& file_name) {
  auto fail = [&](const std::string& why) {
    return ag::Error(fmt::format("{}: {}", file_name, why));
  };

  if (bytes.size() < 8)
    throw fail(
        fmt::format("the file is {} bytes, too short for the 8-byte header length", bytes.size()));
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8)
    throw fail(
        fmt::format("the header length at byte 0 says {} bytes, but only {} follow "
                    "(truncated or corrupt file)",
                    n, bytes.size() - 8));
  if (n > kMaxHeader)
    throw fail(
        fmt::format("the header length at byte 0 says {} bytes, more than the {} "
                    "safetensors allows",
                    n, kMaxHeader));
  const std::uint64_t data_start = 8 + n, data_size = bytes.size() - data_start;
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, n);

  // nlohmann-json takes a NUL byte for the end of its input, so a NUL (a flipped padding
  // space, say) would hide what follows it.
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos)
    throw fail(fmt::format("the JSON header (bytes 8..{}) has a NUL byte at byte {}", data_start,
                           8 + nul));
  HeaderBuilder builder;
  const bool parsed = Json::sax_parse(text, &builder);
  if (!builder.refusal.empty()) throw fail(builder.refusal);
  if (!parsed && builder.syntax_error)
    throw fail(fmt::format("the JSON header (bytes 8..{}) is not valid at byte {}: {}", data_start,
                           8 + (builder.error_byte > 0 ? builder.error_byte - 1 : 0),
                           parse_reason(builder.error)));
  if (!parsed)  // a number beyond a double's range (1e400) is reported without a position
    throw fail(fmt::format("the JSON header (bytes 8..{}) is not valid: {}", data_start,
                           parse_reason(builder.error)));
  if (!builder.duplicate.empty())
    throw fail(fmt::format("the JSON header has the key \"{}\" twice", builder.duplicate));
  Json& header = builder.root;
  if (!header.is_object()) throw fail("the JSON header is not an object");

  SafetensorsFile file;
  struct Extent {
    std::uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Extent> extents;
  for (auto& item : header.items()) {
    // Not a structured binding: clang 14 cannot capture one in the lambda below.
    const std::string& name = item.key();
    Json& entry = item.value();
    if (name == kMetadataKey) {
      if (!entry.is_object()) throw fail("\"__metadata__\" is not an object");
      for (auto& [key, value] : entry.items()) {
        if (!value.is_string())
          throw fail(fmt::format("metadata \"{}\" is a {}, not a string", key, value.type_name()));
        file.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& why) {
      return fail(fmt::format("tensor \"{}\": {}", name, why));
    };
    if (!entry.is_object())
      throw bad(fmt::format("the entry is a {}, not an object", entry.type_name()));
    for (auto& [key, value] : entry.items())
      if (key != "dtype" && key != "shape" && key != "data_offsets")
        throw bad(fmt::format("unknown field \"{}\"", key));
    if (!entry.contains("dtype") || !entry["dtype"].is_string())
      throw bad("\"dtype\" is missing or not a string");
    StoredTensor t;
    t.dtype = entry["dtype"].get<std::string>();
    const std::size_t size = dtype_size(t.dtype);
    if (size == 0) throw bad(fmt::format("dtype \"{}\" is not a safetensors dtype", t.dtype));
    if (!entry.contains("shape") || !entry["shape"].is_array() ||
        !std::all_of(entry["shape"].begin(), entry["shape"].end(), non_negative_integer))
      throw bad("\"shape\" is missing or not a list of non-negative integers");
    // The element count, refusing any shape whose byte size would not fit the file.
    std::uint64_t count = 1;
    for (const Json& d : entry["shape"]) {
      const std::uint64_t dim = d.get<std::uint64_t>();
      // Checked apart from the count: after a 0 the count stays 0 whatever follows, and a
      // dimension past 2^63 - 1 would be a negative int64 in the shape ("(0, -9223...)").
      if (dim > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
        throw bad(fmt::format("shape {}: dimension {} is larger than 2^63 - 1",
                              entry["shape"].dump(), dim));
      if (dim != 0 && count > bytes.size() / dim)
        throw bad(fmt::format("shape {} is larger than the file", entry["shape"].dump()));
      count *= dim;
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const Json& offsets = entry.contains("data_offsets") ? entry["data_offsets"] : Json();
    if (!offsets.is_array() || offsets.size() != 2 || !non_negative_integer(offsets[0]) ||
        !non_negative_integer(offsets[1]))
      throw bad("\"data_offsets\" is missing or not two non-negative integers [begin, end]");
    const std::uint64_t begin = offsets[0].get<std::uint64_t>(),
                        end = offsets[1].get<std::uint64_t>();
    if (begin > end)
      throw bad(fmt::format("data_offsets [{}, {}] end before they begin", begin, end));
    if (end > data_size)
      throw bad(
          fmt::format("data_offsets [{}, {}] run past the data section, which has {} bytes "
                      "(file bytes {}..{}; truncated or corrupt file)",
                      begin, end, data_size, data_start, bytes.size()));
    if (count * size != end - begin)
      throw bad(fmt::format("shape {} of {} needs {} bytes, but data_offsets [{}, {}] hold {}",
                            shape_str(t.shape), t.dtype, count * size, begin, end, end - begin));
    t.offset = begin;
    auto it = file.tensors.emplace(name, std::move(t)).first;
    extents.push_back({begin, end, &it->first});
  }

  // Tightly packed: sorted by offset, each tensor starts where the previous one ended and the
  // last ends with the file, so no byte is shared or unaccounted for.
  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < extents.size(); ++i) {
    const Extent& e = extents[i];
    if (e.begin < expected)
      throw fail(fmt::format(
          "tensors \"{}\" (file bytes {}..{}) and \"{}\" (file bytes {}..{}) "
          "overlap",
          *extents[i - 1].name, data_start + extents[i - 1].begin, data_start + extents[i - 1].end,
          *e.name, data_start + e.begin, data_start + e.end));
    if (e.begin > expected)
      throw fail(fmt::format("file bytes {}..{} belong to no tensor", data_start + expected,
                             data_start + e.begin));
    expected = e.end;
  }
  if (expected != data_size)
    throw fail(fmt::format("file bytes {}..{} after the last tensor belong to no tensor",
                           data_start + expected, bytes.size()));

  for (const auto& [key, value] : file.metadata)
    if (near_crc_key(key))
      throw fail(fmt::format("metadata key \"{}\" looks like a damaged \"{}\" (corrupt file)", key,
                             kCrcKey));
  const bool tapegrad_metadata =
      std::any_of(file.metadata.begin(), file.metadata.end(),
                  [](const auto& entry) { return entry.first.starts_with("tapegrad."); });
  if (tapegrad_metadata && !file.metadata.contains(std::string(kCrcKey)))
    throw fail(
        fmt::format("it has tapegrad metadata but no \"{}\" checksum, which tapegrad "
                    "always writes (damaged or edited file)",
                    kCrcKey));
  if (auto it = file.metadata.find(std::string(kCrcKey)); it != file.metadata.end()) {
    header[kMetadataKey].erase(std::string(kCrcKey));
    const std::uint32_t crc =
        crc32(crc32(0, as_bytes(header.dump())), std::span(bytes).subspan(data_start));
    if (it->second != fmt::format("{:08x}", crc))
      throw fail(
          fmt::format("the checksum does not match: \"{}\" says {}, the header and data "
                      "give {:08x} (corrupt file)",
                      kCrcKey, it->second, crc));
    file.checksummed = true;
  }

  for (auto& [name, t] : file.tensors) {
    const auto* from = bytes.data() + data_start + t.offset;
    t.data.assign(from, from + t.numel() * static_cast<std::int64_t>(dtype_size(t.dtype)));
  }
  return file;
}

void write_safetensors(const std::string& path, const SafetensorsFile& file) {
  std::vector<TensorView> views;
  for (const auto& [name, t] : file.tensors) views.push_back({name, t.dtype, t.shape, t.data});
  write_tensors(path, views, file.metadata);
}

// ---- Modules and optimizers ---------------------------------------------------------------------

namespace {

std::string optimizer_kind(Optimizer& opt) {
  if (dynamic_cast<AdamW*>(&opt)) return "AdamW";
  if (dynamic_cast<Adam*>(&opt)) return "Adam";
  if (dynamic_cast<SGD*>(&opt)) return "SGD";
  if (dynamic_cast<RMSprop*>(&opt)) return "RMSprop";
  if (dynamic_cast<Adagrad*>(&opt)) return "Adagrad";
  return "Optimizer";
}

bool reserved_key(const std::string& key) {
  return key == "format" || key.starts_with("tapegrad.");
}

std::vector<std::int64_t> dims_of(const ag::Shape& shape) {
  return {shape.dims().begin(), shape.dims().end()};
}

template <class T> bool parse_number(const std::string& text, T& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = ag::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && !text.empty();
}

// What save() writes of `module` and `extras`: the tensors (views into them) and the metadata.
struct Contents {
  std::vector<TensorView> views;
  std::map<std::string, std::string> metadata;
};
Contents contents_of(Module& module, const std::string& path, const CheckpointExtras& extras) {
  auto fail = [&](const std::string& why) {
    return ag::Error(fmt::format("cannot write checkpoint \"{}\": {}", path, why));
  };
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : extras.metadata) {
    if (reserved_key(key))
      throw fail(
          fmt::format("the metadata key \"{}\" is reserved (\"format\" and "
                      "\"tapegrad.*\" are written by save())",
                      key));
    metadata[key] = value;
  }
  metadata["format"] = "pt";

  std::vector<TensorView> views;
  for (auto& [name, p] : module.named_parameters()) {
    if (name.starts_with("optimizer."))
      throw fail(
          fmt::format("the parameter name \"{}\" clashes with the optimizer's tensors", name));
    views.push_back({name, "F32", dims_of(p->shape()), std::as_bytes(p->data())});
  }
  for (auto& [name, b] : module.named_buffers()) {  // Note [Buffers]
    if (name.starts_with("optimizer."))
      throw fail(fmt::format("the buffer name \"{}\" clashes with the optimizer's tensors", name));
    views.push_back({name, std::string(b->dtype_name()), dims_of(b->shape()), b->bytes()});
  }
  if (Optimizer* opt = extras.optimizer) {
    const std::vector<std::vector<float>*> state = opt->state();
    for (std::size_t i = 0; i < state.size(); ++i)
      views.push_back({fmt::format("{}{}", kStatePrefix, i),
                       "F32",
                       {static_cast<std::int64_t>(state[i]->size())},
                       std::as_bytes(std::span<const float>(*state[i]))});
    metadata[std::string(kOptimizerKey)] = optimizer_kind(*opt);
    metadata[std::string(kStepsKey)] = std::to_string(opt->steps());
    metadata[std::string(kLrKey)] = fmt::format("{}", opt->lr());  // shortest exact decimal
  }
  return {std::move(views), std::move(metadata)};
}

}  // namespace

void save(Module& module, const std::string& path, const CheckpointExtras& extras) {
  Contents c = contents_of(module, path, extras);
  write_tensors(path, c.views, std::move(c.metadata));
}

std::string safetensors_bytes(Module& module, const CheckpointExtras& extras,
                              const std::string& file_name) {
  Contents c = contents_of(module, file_name, extras);
  std::string bytes = file_head(file_name, c.views, std::move(c.metadata));
  for (const TensorView& t : c.views)
    bytes.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return bytes;
}

void load(Module& module, const std::string& path, CheckpointExtras* extras) {
  load(module, read_safetensors(path), path, extras);
}

void load(Module& module, const SafetensorsFile& file, const std::string& path,
          CheckpointExtras* extras) {
  std::vector<std::string> problems;
  auto check = [&](const std::string& name, const std::string& owner, const char* model_dtype,
                   const std::vector<std::int64_t>& shape) -> const StoredTensor* {
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) {
      problems.push_back(fmt::format("{} is missing from the file", name));
      return nullptr;
    }
    const StoredTensor& t = it->second;
    if (t.dtype != model_dtype)
      problems.push_back(fmt::format("{} has dtype {} in the file, {} in the {}", name, t.dtype,
                                     model_dtype, owner));
    else if (t.shape != shape)
      problems.push_back(fmt::format("{} has shape {} in the file, {} in the {}", name,
                                     shape_str(t.shape), shape_str(shape), owner));
    else
      return &t;
    return nullptr;
  };

  // Every check first, collecting every problem; nothing is written until all pass.
  std::vector<std::pair<std::span<std::byte>, const StoredTensor*>> copies;
  std::set<std::string> known;
  for (auto& [name, p] : module.named_parameters()) {
    known.insert(name);
    if (const StoredTensor* t = check(name, "model", "F32", dims_of(p->shape())))
      copies.emplace_back(std::as_writable_bytes(p->data()), t);
  }
  for (auto& [name, b] : module.named_buffers()) {  // Note [Buffers]
    known.insert(name);
    const std::string dtype(b->dtype_name());
    if (const StoredTensor* t = check(name, "model", dtype.c_str(), dims_of(b->shape())))
      copies.emplace_back(b->writable_bytes(), t);
  }
  for (const auto& [name, t] : file.tensors)
    if (!name.starts_with("optimizer.") && !known.contains(name))
      problems.push_back(fmt::format("{} is in the file but not in the model", name));

  Optimizer* opt = extras ? extras->optimizer : nullptr;
  std::uint64_t steps = 0;
  double lr = 0;
  if (opt) {
    const std::string kind = optimizer_kind(*opt);
    auto meta = [&](std::string_view key) {
      auto it = file.metadata.find(std::string(key));
      return it == file.metadata.end() ? std::string() : it->second;
    };
    const std::string file_kind = meta(kOptimizerKey);
    if (file_kind.empty()) {
      problems.push_back(fmt::format("the file holds no optimizer state to restore into {}", kind));
    } else if (file_kind != kind) {
      problems.push_back(fmt::format("the file holds {} state, not {}", file_kind, kind));
    } else {
      // Steps count up from 0 one at a time, and Adam's bias correction raises its betas to
      // steps + 1: a count no run reaches, or one that wraps, would make NaN weights. (A size_t
      // of WebAssembly's 32 bits counts fewer.)
      constexpr std::uint64_t kMaxSteps =
          std::min<std::uint64_t>(std::uint64_t{1} << 53, std::numeric_limits<std::size_t>::max());
      if (!parse_number(meta(kStepsKey), steps) || steps > kMaxSteps)
        problems.push_back(fmt::format("metadata {} is \"{}\", not a step count (at most {})",
                                       kStepsKey, meta(kStepsKey), kMaxSteps));
      if (!parse_number(meta(kLrKey), lr) || !std::isfinite(lr) || !(lr >= 0))
        problems.push_back(
            fmt::format("metadata {} is \"{}\", not a learning rate", kLrKey, meta(kLrKey)));
      const std::vector<std::vector<float>*> state = opt->state();
      std::set<std::string> buffers;
      for (std::size_t i = 0; i < state.size(); ++i) {
        const std::string name = fmt::format("{}{}", kStatePrefix, i);
        buffers.insert(name);
        const std::vector<std::int64_t> shape{static_cast<std::int64_t>(state[i]->size())};
        if (const StoredTensor* t = check(name, "optimizer", "F32", shape))
          copies.emplace_back(std::as_writable_bytes(std::span<float>(*state[i])), t);
      }
      for (const auto& [name, t] : file.tensors)
        if (name.starts_with("optimizer.") && !buffers.contains(name))
          problems.push_back(fmt::format("{} is in the file but not in the optimizer", name));
    }
  }

  if (!problems.empty()) {
    constexpr std::size_t kShown = 10;  // a file of another model would list every tensor
    std::string all;
    for (std::size_t i = 0; i < std::min(problems.size(), kShown); ++i)
      all += (all.empty() ? "" : "; ") + problems[i];
    if (problems.size() > kShown)
      all += fmt::format("; and {} more problems", problems.size() - kShown);
    ag::fail("{}: {}", path, all);
  }

  for (auto& [to, t] : copies) std::memcpy(to.data(), t->data.data(), t->data.size());
  if (opt) {
    opt->set_steps(static_cast<std::size_t>(steps));  // at most kMaxSteps
    opt->set_lr(lr);
  }
  if (extras) {
    extras->metadata.clear();
    for (const auto& [key, value] : file.metadata)
      if (!reserved_key(key)) extras->metadata[key] = value;
  }
}

}  // namespace nn
