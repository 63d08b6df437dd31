// Writing a file whole or not at all, for every file tapegrad writes (graphs, checkpoints), and
// reading one within a size limit, for every file tapegrad reads (programs, data, checkpoints).

#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "tapegrad/error.hpp"

namespace ag {

// Note [Bounded reads]
// ~~~~~~~~~~~~~~~~~~~~
// Every file tapegrad reads goes through read_file, which refuses what cannot be a file's
// contents before reading a byte: a directory, a device (/dev/zero never ends), a FIFO (it would
// block until a writer comes) or a socket. A regular file larger than the limit is refused from
// its size; anything else (standard input, a file that grows) is read up to the limit plus one
// byte, and that byte makes it an error. So memory is bounded by the limit whatever the input.

// Why read_file failed. Its message is "cannot read <what> "<path>": <reason>" ("cannot read
// <path>: <reason>" with no `what`); callers with an established message of their own build it
// from `path`, `reason` and `opened` (false: the file could not be opened at all).
class ReadError : public Error {
 public:
  ReadError(std::string file, std::string why, bool could_open, std::string_view what);
  std::string path, reason;
  bool opened;
};

// The whole contents of `path` ("-": standard input), at most `limit` bytes. Throws ReadError
// (Note [Bounded reads]) for what is not a regular file, a file larger than `limit` ("it is
// larger than the 16777216-byte (16 MiB) limit") and any error of the system.
std::string read_file(const std::string& path, std::size_t limit, std::string_view what);

// Writes the pieces, in order, to a temporary file next to `path`, flushes it
// to the disk, renames it over `path` and flushes the directory. On failure
// the temporary file is removed and ag::Error says "cannot write <what>
// "<path>": <reason>". A killed process cannot remove it: "path.tmp-PID-N"
// stays behind (and `path` is intact) until the next write of `path`, which
// first removes every such file whose process no longer exists.
// Only a regular file that can be written is replaced (Note [What a write replaces]).
// Note [What a write replaces]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// rename() replaces whatever has the name, and root may replace anything: a device node
// (--save /dev/null would put a file in its place), a read-only file. Like cp and git, we never
// destroy what we did not create: the target must be absent or a regular file that its
// permission bits let someone write and access(W_OK) lets us write. The bits are checked
// because access() says yes to root for any file.
// Throws ag::Error "cannot write <what> "<path>": <reason>" unless `path` may be replaced.
void check_replaceable(const std::string& path, std::string_view what);

void write_file_atomically(const std::string& path,
                           std::span<const std::span<const std::byte>> pieces,
                           std::string_view what);
void write_file_atomically(const std::string& path, std::string_view bytes, std::string_view what);

}  // namespace ag
