// process_pipe: the seed's "Process Communication" as samples/process_pipe
// runs it, a parent and a forked worker process joined by an actorbus
// shared-memory channel: the parent sends 20,000 numbers one at a time as
// decimal strings and reads each square, then sends "STOP" and reaps the
// worker. Every iteration creates its channel and forks its worker, as the
// peer starts a Process on a Pipe: bench/peers/ipc_process_pipe.py. Nothing
// sleeps; waits are the channel's own. Both ends are the sample's own code
// (samples/process_pipe/process_pipe.hpp).

#include "actorbus/ipc/channel.hpp"

#include "process_pipe.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace ipc = actorbus::ipc;
namespace pp = actorbus::samples::process_pipe;

constexpr int64_t n_items = 20'000;

void BM_process_pipe_actorbus(benchmark::State& state) {
  auto name = "actorbus-bench-process-pipe-" + std::to_string(::getpid());
  for (auto _ : state) {
    auto parent_conn = ipc::channel::create(name);
    if (!parent_conn) {
      state.SkipWithError(ipc::describe(parent_conn.error()).c_str());
      break;
    }
    auto pid = pp::start_worker(name);
    auto total =
        pp::send_items(*parent_conn, n_items, [](const std::string&) {});
    if (!total)
      state.SkipWithError(ipc::describe(total.error()).c_str());
    int status = pp::stop_worker(*parent_conn, pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      state.SkipWithError("worker failed");
    if (total && *total != n_items * (n_items + 1) * (2 * n_items + 1) / 6)
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
