// Checkpoints: a module's parameters (and optionally its optimizer's state) as a safetensors
// file with PyTorch's names, written atomically and validated completely before loading.

#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tapegrad/nn/module.hpp"
#include "tapegrad/nn/optim.hpp"

namespace nn {

// Note [Checkpoint format]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// A checkpoint is a safetensors file: an 8-byte little-endian header length N, N bytes of JSON
// (padded with spaces so the data starts at a multiple of 8), then the tensors' raw
// little-endian bytes, tightly packed in the order they are listed. The JSON maps each name to
// {"dtype", "shape", "data_offsets"} and "__metadata__" to a string map.
//
// - Parameters are F32 tensors named as named_parameters() names them ("layers.0.weight"), and
//   buffers (Note [Buffers], module.hpp) F32 or I64 tensors named as named_buffers() names them
//   ("layers.1.running_mean", "layers.1.num_batches_tracked"), so they load into the equivalent
//   torch.nn module with load_state_dict(strict=True).
// - An optimizer's buffers (Optimizer::state(), in its order) are 1-d F32 tensors
//   "optimizer.state.0", "optimizer.state.1", ...; PyTorch users drop the "optimizer." keys
//   before load_state_dict (or pass strict=False). Metadata "tapegrad.optimizer" (SGD, Adam,
//   AdamW, RMSprop, Adagrad), "tapegrad.optimizer.steps" and "tapegrad.optimizer.lr" (round-trip
//   decimal) go with them.
// - "format" is "pt", as PyTorch's safetensors files say. "tapegrad.crc32" is the CRC-32 of the
//   JSON header written without that key, followed by the data section: safetensors has no
//   checksum of its own, and without one a flipped bit in a weight would load silently. Files
//   without it (written by other tools) load unchecked (SafetensorsFile::checksummed is false),
//   unless they have "tapegrad.*" metadata: tapegrad wrote them, so a missing checksum is
//   damage, and they are refused.
// - The optimizer's metadata is validated, not trusted: a learning rate must be a finite
//   number >= 0 and a step count at most 2^53.
// - The caller's metadata (epoch, RNG seed, loss history, ...) is stored as given; the keys
//   "format" and "tapegrad.*" are reserved.

// What a checkpoint carries besides the parameters. save() writes the optimizer's state and
// the metadata; load() restores the optimizer's state (if `optimizer` is set) and fills
// `metadata` with the caller's keys from the file.
struct CheckpointExtras {
  Optimizer* optimizer = nullptr;  // borrowed
  std::map<std::string, std::string> metadata = {};
};

// Writes `module`'s parameters to `path` through a temporary file in the same directory that
// is renamed over `path` once complete and flushed: a failed or interrupted save leaves the
// previous file intact. Throws ag::Error naming the file and the system's reason.
void save(Module& module, const std::string& path, const CheckpointExtras& extras = {});
// The bytes save() would write, in memory (the playground has no file system: its page downloads
// them). `file_name` stands for the file in the messages.
std::string safetensors_bytes(Module& module, const CheckpointExtras& extras = {},
                              const std::string& file_name = "model.safetensors");

// Loads `path` into `module` (and extras->optimizer), all or nothing: every check runs before
// the first parameter is written. The file must hold every parameter and buffer of the module,
// with the same shape and dtype, and nothing else but optimizer state; a mismatch throws one
// ag::Error naming each one: "m.safetensors: layers.0.weight has shape (5, 2) in the file,
// (16, 2) in the model; layers.4.bias is missing from the file".
void load(Module& module, const std::string& path, CheckpointExtras* extras = nullptr);

// ---- The safetensors layer, for tools ----------------------------------------------------------

struct StoredTensor {
  std::string dtype;  // safetensors' name: "F32", "F64", "BF16", "I64", "U8", "BOOL", ...
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;  // little-endian, numel * dtype_size(dtype) bytes
  std::uint64_t offset = 0;     // where the data began in the file's data section

  std::int64_t numel() const;
  std::vector<float> floats() const;  // an F32 tensor's values; throws for another dtype
};

struct SafetensorsFile {
  std::map<std::string, StoredTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__", all keys
  // The file had a "tapegrad.crc32" that matched; a file without one (from another tool) is
  // read unchecked, and tools say so.
  bool checksummed = false;
};

// load() from a file already read and checked by read_safetensors, which `path` names: a tool
// reads the file before it builds a model that must fit it.
void load(Module& module, const SafetensorsFile& file, const std::string& path,
          CheckpointExtras* extras = nullptr);

// Reads and validates a whole file: header length against the file size, JSON syntax, every
// entry's dtype, shape and offsets (inside the data section, not overlapping, covering it), and
// the checksum if there is one. Throws ag::Error naming the file, the problem and, where one
// exists, the byte offset: "m.safetensors: the JSON header is not valid at byte 57: ...".
SafetensorsFile read_safetensors(const std::string& path);
// The same checks on a file's bytes in memory; `file_name` stands for the file in the messages.
SafetensorsFile parse_safetensors(std::span<const std::byte> bytes, const std::string& file_name);

// Writes `file` atomically (as save() does) in name order, adding "tapegrad.crc32".
void write_safetensors(const std::string& path, const SafetensorsFile& file);

// Bytes per element of a safetensors dtype ("F32" -> 4); 0 if the name is not one.
std::size_t dtype_size(std::string_view dtype);

// "(16, 2)", "(5,)", "()": a stored shape as ag::Shape::str() prints one.
std::string shape_str(const std::vector<std::int64_t>& shape);

}  // namespace nn
