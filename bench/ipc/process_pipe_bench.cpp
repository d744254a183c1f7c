// process_pipe: the seed's "Process Communication" as samples/process_pipe
// runs it, a parent and a forked worker process joined by an actorbus
// shared-memory channel: the parent sends 20,000 numbers one at a time as
// decimal strings and reads each square, then sends "STOP" and reaps the
// worker. Every iteration creates its channel and forks its worker, as the
// peer starts a Process on a Pipe: bench/peers/ipc_process_pipe.py. Nothing
// sleeps; waits are the channel's own.

#include "actorbus/ipc/channel.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

namespace ipc = actorbus::ipc;
using namespace std::chrono_literals;

constexpr int64_t n_items = 20'000;

std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span{s.data(), s.size()});
}

std::string as_string(const std::vector<std::byte>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

// The seed's process_message: squares the number it is given.
std::string process_message(const std::string& msg) {
  auto n = std::stoll(msg);
  return std::to_string(n * n);
}

// The worker process: answers until "STOP".
int worker(const std::string& name) {
  auto conn = ipc::channel::open(name, 5s);
  if (!conn)
    return 1;
  std::vector<std::byte> msg;
  for (;;) {
    if (auto err = conn->receive(msg, 10s))
      return 1;
    if (as_string(msg) == "STOP")
      return 0;
    if (auto err = conn->send(as_bytes(process_message(as_string(msg))), 5s))
      return 1;
  }
}

void BM_process_pipe_actorbus(benchmark::State& state) {
  auto name = "actorbus-bench-process-pipe-" + std::to_string(::getpid());
  std::vector<std::byte> reply;
  for (auto _ : state) {
    auto parent_conn = ipc::channel::create(name);
    if (!parent_conn) {
      state.SkipWithError(ipc::describe(parent_conn.error()).c_str());
      break;
    }
    auto pid = ::fork();
    if (pid == 0)
      ::_exit(worker(name));
    int64_t total = 0;
    for (int64_t item = 1; item <= n_items; ++item) {
      auto err = parent_conn->send(as_bytes(std::to_string(item)), 5s);
      if (!err)
        err = parent_conn->receive(reply, 5s);
      if (err) {
        state.SkipWithError(ipc::describe(err).c_str());
        break;
      }
      total += std::stoll(as_string(reply));
    }
    (void)parent_conn->send(as_bytes("STOP"), 5s);
    int status = 0;
    ::waitpid(pid, &status, 0);
    parent_conn->close();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      state.SkipWithError("worker failed");
    if (total != n_items * (n_items + 1) * (2 * n_items + 1) / 6)
      state.SkipWithError("wrong sum of squares");
  }
  state.SetItemsProcessed(state.iterations() * n_items);
}

} // namespace

BENCHMARK(BM_process_pipe_actorbus)
    ->Name("process_pipe/actorbus")
    ->Iterations(30)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
