// Atomic file writes (temporary file, fsync, rename, fsync of the directory) and bounded reads.

#include "tapegrad/file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <string_view>
#include <system_error>

#include "tapegrad/error.hpp"

namespace ag {

namespace {

std::string errno_text(int err) { return std::generic_category().message(err); }

// A new file next to `path` (so rename() stays within one file system), created exclusively
// with the usual 0666 & ~umask permissions (mkstemp would make it 0600).
int create_temporary(const std::string& path, std::string& temporary) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    temporary = fmt::format("{}.tmp-{}-{}", path, ::getpid(), attempt);
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

int write_all(int fd, std::span<const std::byte> bytes) {
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n >= 0)
      done += static_cast<std::size_t>(n);
    else if (errno != EINTR)
      return errno;
  }
  return 0;
}

// The directory part of `path`, "." for a bare name.
std::string directory_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

// The process id in the name of a temporary file of `path`, "NAME.tmp-PID-N"; 0 if `entry`
// is not one.
pid_t temporary_owner(std::string_view entry, std::string_view name) {
  if (!entry.starts_with(name) || !entry.substr(name.size()).starts_with(".tmp-")) return 0;
  entry.remove_prefix(name.size() + 5);
  const std::size_t dash = entry.find('-');
  if (dash == std::string_view::npos || dash + 1 == entry.size() ||
      entry.find_first_not_of("0123456789", dash + 1) != std::string_view::npos)
    return 0;
  pid_t pid = 0;
  const auto [end, ec] = std::from_chars(entry.data(), entry.data() + dash, pid);
  return ec == std::errc() && end == entry.data() + dash ? pid : 0;
}

// Removes what interrupted writes of `path` left behind: its temporary files whose process no
// longer exists (a killed process cannot clean up). A live writer's file, this process's own
// and anything that cannot be checked are left alone; nothing here is an error.
void remove_stale_temporaries(const std::string& path) {
  const std::string dir = directory_of(path);
  const std::size_t slash = path.find_last_of('/');
  const std::string_view name = slash == std::string::npos
                                    ? std::string_view(path)
                                    : std::string_view(path).substr(slash + 1);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d)) {
    const pid_t owner = temporary_owner(e->d_name, name);
    if (owner <= 0 || owner == ::getpid()) continue;
    if (::kill(owner, 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to know
    ::unlinkat(::dirfd(d), e->d_name, 0);
  }
  ::closedir(d);
}

// Makes the rename itself durable; a failure here cannot lose the file, so it is not an error.
void sync_directory(const std::string& path) {
  const int fd = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// What a file that is not regular is, for messages.
std::string_view file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// "16777216-byte (16 MiB)": a limit as bytes and in the largest binary unit that divides it.
std::string limit_text(std::size_t limit) {
  constexpr std::string_view kUnits[] = {"KiB", "MiB", "GiB"};
  std::string unit;
  std::size_t scaled = limit;
  for (std::string_view u : kUnits) {
    if (scaled == 0 || scaled % 1024 != 0) break;
    scaled /= 1024;
    unit = fmt::format(" ({} {})", scaled, u);
  }
  return fmt::format("{}-byte{}", limit, unit);
}

}  // namespace

ReadError::ReadError(std::string file, std::string why, bool could_open, std::string_view what)
    : Error(what.empty() ? fmt::format("cannot read {}: {}", file, why)
                         : fmt::format("cannot read {} \"{}\": {}", what, file, why)),
      path(std::move(file)),
      reason(std::move(why)),
      opened(could_open) {}

std::string read_file(const std::string& path, std::size_t limit, std::string_view what) {
  const bool standard_input = path == "-";
  auto fail = [&](std::string reason, bool opened = true) {
    return ReadError(standard_input ? "standard input" : path, std::move(reason), opened, what);
  };
  auto too_large = [&] {
    return fail(fmt::format("it is larger than the {} limit", limit_text(limit)));
  };
  // O_NONBLOCK: opening a FIFO does not wait for a writer; it is refused just below.
  const int fd = standard_input
                     ? STDIN_FILENO
                     : ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) throw fail(errno_text(errno), false);
  struct Closer {
    int fd;
    bool owned;
    ~Closer() {
      if (owned) ::close(fd);
    }
  } closer{fd, !standard_input};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw fail(errno_text(errno));
  if (!standard_input) {
    if (S_ISDIR(st.st_mode)) throw fail(errno_text(EISDIR));
    if (!S_ISREG(st.st_mode))
      throw fail(fmt::format("it is {}, not a regular file", file_kind(st.st_mode)));
    if (static_cast<std::uint64_t>(st.st_size) > limit) throw too_large();
  }
  // A regular file's size is known (one byte more sees a file that grew); a stream grows.
  const bool sized = S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) <= limit;
  std::string bytes(sized ? static_cast<std::size_t>(st.st_size) + 1
                          : std::min<std::size_t>(limit + 1, std::size_t{1} << 16),
                    '\0');
  std::size_t done = 0;
  for (;;) {
    if (done == bytes.size()) {
      if (done > limit) throw too_large();
      bytes.resize(std::min(limit + 1, 2 * bytes.size()));
    }
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n > 0)
      done += static_cast<std::size_t>(n);
    else if (n == 0)
      break;
    else if (errno != EINTR)
      throw fail(errno_text(errno));
  }
  if (done > limit) throw too_large();
  bytes.resize(done);
  return bytes;
}

void check_replaceable(const std::string& path, std::string_view what) {
  auto fail = [&](std::string_view why) {
    return Error(fmt::format("cannot write {} \"{}\": {}", what, path, why));
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;  // absent (or unreachable: the write will say)
  if (S_ISDIR(st.st_mode)) throw fail(errno_text(EISDIR));  // what rename() would say
  if (!S_ISREG(st.st_mode))
    throw fail(fmt::format("it is {}, and only a regular file is replaced", file_kind(st.st_mode)));
  if ((st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0 || ::access(path.c_str(), W_OK) != 0)
    throw fail("it is write-protected");
}

void write_file_atomically(const std::string& path,
                           std::span<const std::span<const std::byte>> pieces,
                           std::string_view what) {
  auto fail = [&](int err) {
    return Error(fmt::format("cannot write {} \"{}\": {}", what, path, errno_text(err)));
  };
  check_replaceable(path, what);
  remove_stale_temporaries(path);
  std::string temporary;
  const int fd = create_temporary(path, temporary);
  if (fd < 0) throw fail(errno);
  int err = 0;
  for (std::size_t i = 0; i < pieces.size() && err == 0; ++i) err = write_all(fd, pieces[i]);
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(temporary.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(temporary.c_str());
    throw fail(err);
  }
  sync_directory(path);
}

void write_file_atomically(const std::string& path, std::string_view bytes, std::string_view what) {
  const std::span<const std::byte> piece = std::as_bytes(std::span(bytes.data(), bytes.size()));
  write_file_atomically(path, std::span(&piece, 1), what);
}

}  // namespace ag
