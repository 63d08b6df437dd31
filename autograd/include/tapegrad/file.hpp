// Writing a file whole or not at all, for every file tapegrad writes (graphs,
// checkpoints): a reader sees the old file or the new one, never a mixture.

#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace ag {

// Writes the pieces, in order, to a temporary file next to `path`, flushes it
// to the disk, renames it over `path` and flushes the directory. On failure
// the temporary file is removed and ag::Error says "cannot write <what>
// "<path>": <reason>". A killed process cannot remove it: "path.tmp-PID-N"
// stays behind (and `path` is intact) until the next write of `path`, which
// first removes every such file whose process no longer exists.
void write_file_atomically(const std::string& path,
                           std::span<const std::span<const std::byte>> pieces,
                           std::string_view what);
void write_file_atomically(const std::string& path, std::string_view bytes,
                           std::string_view what);

}  // namespace ag
