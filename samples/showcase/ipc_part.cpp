// Showcase part: a second process. A forked worker sums the numbers it gets
// over a shared-memory channel; then it is killed with SIGKILL and the
// showcase sees the death as an error, without hanging.

#include "actorbus/ipc/channel.hpp"

#include "showcase.hpp"

#include <fmt/core.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace ipc = actorbus::ipc;
using namespace std::chrono_literals;

// The worker: replies to every frame of int64 values with their sum.
[[noreturn]] void worker(const std::string& name) {
  auto ch = ipc::channel::open(name, 2s);
  if (!ch)
    ::_exit(1);
  std::vector<std::byte> in;
  for (;;) {
    if (ch->receive(in, 2s))
      ::_exit(0);
    int64_t sum = 0;
    for (size_t i = 0; i + sizeof(int64_t) <= in.size(); i += sizeof(int64_t)) {
      int64_t x = 0;
      std::memcpy(&x, in.data() + i, sizeof(x));
      sum += x;
    }
    if (ch->send(std::as_bytes(std::span{&sum, 1}), 2s))
      ::_exit(0);
  }
}

int run(actorbus::runtime::runtime&) {
  auto name = "actorbus-showcase-" + std::to_string(::getpid());
  auto ch = ipc::channel::create(name);
  if (!ch) {
    fmt::print("ipc: {}\n", ipc::describe(ch.error()));
    return 1;
  }
  auto pid = ::fork();
  if (pid < 0)
    return 1;
  if (pid == 0)
    worker(name);
  std::vector<int64_t> numbers{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  std::vector<std::byte> reply;
  auto err = ch->send(std::as_bytes(std::span{numbers}), 2s);
  if (!err)
    err = ch->receive(reply, 2s);
  int64_t sum = 0;
  if (!err && reply.size() == sizeof(sum))
    std::memcpy(&sum, reply.data(), sizeof(sum));
  fmt::print("ipc: worker process {} answered over shared memory: {}\n", pid,
             err ? ipc::describe(err) : std::to_string(sum));
  ::kill(pid, SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  auto after = ch->receive(reply, 2s);
  auto ms = std::chrono::duration<double, std::milli>(
                std::chrono::steady_clock::now() - t0)
                .count();
  fmt::print("ipc: killed worker noticed as {} after {:.0f} ms\n",
             after ? ipc::to_string(static_cast<ipc::errc>(after.code()))
                   : "nothing",
             ms);
  ::waitpid(pid, nullptr, 0);
  return err || sum != 55 || after != ipc::errc::peer_dead ? 1 : 0;
}

const bool registered = showcase::add({40, "ipc", &run});

} // namespace
