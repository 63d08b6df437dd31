// A peer process spoken to over two pipes, one command per line and one reply per line: the
// LibTorch and PyTorch peers of torch_compare and hvp_compare (bench/README.md).

#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bench {

class Peer {
 public:
  // Starts argv[0] with argv's arguments; `name` prefixes every error about it.
  Peer(std::string name, std::vector<std::string> argv) : name_(std::move(name)) {
    int to[2], from[2];
    if (pipe(to) != 0 || pipe(from) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      dup2(to[0], STDIN_FILENO);
      dup2(from[1], STDOUT_FILENO);
      close(to[0]), close(to[1]), close(from[0]), close(from[1]);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      std::fprintf(stderr, "%s: cannot run %s: %s\n", name_.c_str(), args[0], std::strerror(errno));
      _exit(127);
    }
    close(to[0]), close(from[1]);
    out_ = fdopen(to[1], "w");
    in_ = fdopen(from[0], "r");
  }
  ~Peer() {
    std::fprintf(out_, "quit\n");
    std::fclose(out_);
    std::fclose(in_);
    waitpid(pid_, nullptr, 0);
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  // Sends one command and returns its reply line; throws on "error ..." or a peer that exited.
  std::string ask(const std::string& command) {
    std::fprintf(out_, "%s\n", command.c_str());
    std::fflush(out_);
    char* line = nullptr;
    std::size_t cap = 0;
    const ssize_t n = getline(&line, &cap, in_);
    std::string reply = n > 0 ? std::string(line, std::size_t(n)) : std::string();
    std::free(line);
    while (!reply.empty() && (reply.back() == '\n' || reply.back() == '\r')) reply.pop_back();
    if (n <= 0) throw std::runtime_error(name_ + ": the peer exited (command: " + command + ")");
    if (reply.rfind("error", 0) == 0)
      throw std::runtime_error(name_ + ": " + reply + " (command: " + command + ")");
    return reply;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  FILE* in_ = nullptr;
};

}  // namespace bench
