// Atomic file writes: temporary file, fsync, rename, fsync of the directory.

#include "tapegrad/file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
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

}  // namespace

void write_file_atomically(const std::string& path,
                           std::span<const std::span<const std::byte>> pieces,
                           std::string_view what) {
  auto fail = [&](int err) {
    return Error(fmt::format("cannot write {} \"{}\": {}", what, path, errno_text(err)));
  };
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

void write_file_atomically(const std::string& path, std::string_view bytes,
                           std::string_view what) {
  const std::span<const std::byte> piece = std::as_bytes(std::span(bytes.data(), bytes.size()));
  write_file_atomically(path, std::span(&piece, 1), what);
}

}  // namespace ag
