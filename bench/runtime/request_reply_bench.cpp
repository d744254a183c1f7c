// Request/reply round trip from a non-actor thread: actorbus's tuned
// scheduler against CAF 0.17's stock settings, in the same run.

#include "actorbus/runtime/call.hpp"
#include "actorbus/runtime/config.hpp"

#include "latency.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include <benchmark/benchmark.h>

#include <chrono>

namespace {

using namespace actorbus;

caf::behavior echo() {
  return {[](int x) { return x; }};
}

void round_trip(benchmark::State& state, runtime::scheduler_profile profile) {
  runtime::runtime_config cfg;
  cfg.set("scheduler.max-threads", size_t{2});
  cfg.use(profile);
  caf::actor_system sys{cfg};
  auto server = sys.spawn(echo);
  runtime::caller client{sys};
  bench::latency_samples samples;
  int x = 0;
  for (auto _ : state) {
    samples.measure([&] {
      auto res = client.call<int>(server, std::chrono::seconds(5), ++x);
      if (!res || *res != x)
        state.SkipWithError("bad reply");
    });
  }
  samples.report(state);
  state.SetItemsProcessed(state.iterations());
}

void BM_request_reply_actorbus(benchmark::State& state) {
  round_trip(state, runtime::scheduler_profile::responsive);
}

void BM_request_reply_caf_stock(benchmark::State& state) {
  round_trip(state, runtime::scheduler_profile::stock);
}

} // namespace

// Group "request_reply": ours first, then the peer.
BENCHMARK(BM_request_reply_actorbus)
    ->Name("request_reply/actorbus")
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(BM_request_reply_caf_stock)
    ->Name("request_reply/caf_stock")
    ->Iterations(20000)
    ->UseRealTime();

BENCHMARK_MAIN();
