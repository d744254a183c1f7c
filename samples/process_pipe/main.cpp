// Seed pattern "Process Communication": a parent and a worker process linked
// by a pipe; the parent sends work items and reads each result, then sends
// "STOP". Here the pipe is an actorbus shared-memory channel, which also
// tells the parent if the worker dies instead of hanging.
//
// Usage: process_pipe [items]   (default 10)

#include "actorbus/ipc/channel.hpp"

#include <fmt/core.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace ipc = actorbus::ipc;
using namespace std::chrono_literals;

namespace {

std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span{s.data(), s.size()});
}

std::string as_string(const std::vector<std::byte>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

// The seed's process_message: here, squaring the number it is given.
std::string process_message(const std::string& msg) {
  auto n = std::stoll(msg);
  return std::to_string(n * n);
}

// The worker process: answer until "STOP" (or until the parent is gone).
int worker(const std::string& name) {
  auto conn = ipc::channel::open(name, 5s);
  if (!conn) {
    fmt::print(stderr, "worker: {}\n", ipc::describe(conn.error()));
    return 1;
  }
  std::vector<std::byte> msg;
  for (;;) {
    if (auto err = conn->receive(msg, 10s)) {
      fmt::print(stderr, "worker: {}\n", ipc::describe(err));
      return 1;
    }
    if (as_string(msg) == "STOP")
      return 0;
    if (auto err = conn->send(as_bytes(process_message(as_string(msg))), 5s))
      return 1;
  }
}

} // namespace

int main(int argc, char** argv) {
  int items = argc > 1 ? std::atoi(argv[1]) : 10;
  auto name = "actorbus-process-pipe-" + std::to_string(::getpid());
  auto parent_conn = ipc::channel::create(name);
  if (!parent_conn) {
    fmt::print(stderr, "process_pipe: {}\n",
               ipc::describe(parent_conn.error()));
    return 1;
  }
  auto pid = ::fork();
  if (pid == 0)
    ::_exit(worker(name));
  long long total = 0;
  std::vector<std::byte> reply;
  for (int item = 1; item <= items; ++item) {
    auto err = parent_conn->send(as_bytes(std::to_string(item)), 5s);
    if (!err)
      err = parent_conn->receive(reply, 5s);
    if (err) {
      fmt::print("process_pipe: worker failed: {}\n", ipc::describe(err));
      return 1;
    }
    fmt::print("Got result: {}\n", as_string(reply));
    total += std::stoll(as_string(reply));
  }
  (void)parent_conn->send(as_bytes("STOP"), 5s);
  int status = 0;
  ::waitpid(pid, &status, 0);
  parent_conn->close();
  fmt::print("sum of squares 1..{} = {}\n", items, total);
  fmt::print("worker exited with {}\n", WEXITSTATUS(status));
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
