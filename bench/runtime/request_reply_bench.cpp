// Request/reply round trip from a non-actor thread: actorbus (tuned
// scheduler, runtime::caller) against CAF 0.17 as it comes (stock settings,
// scoped_actor request/receive), in the same run.

#include "actorbus/runtime/call.hpp"
#include "actorbus/runtime/config.hpp"

#include "latency.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <benchmark/benchmark.h>

#include <chrono>

namespace {

using namespace actorbus;

caf::behavior echo() {
  return {[](int x) { return x; }};
}

// Ours: the runtime's defaults and a reusable runtime::caller.
void BM_request_reply_actorbus(benchmark::State& state) {
  runtime::runtime_config cfg;
  cfg.set("scheduler.max-threads", size_t{2});
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

// The peer: what a CAF 0.17 user writes with stock settings, a scoped actor
// doing request(...).receive(...).
void BM_request_reply_caf_stock(benchmark::State& state) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", size_t{2});
  caf::actor_system sys{cfg};
  auto server = sys.spawn(echo);
  caf::scoped_actor self{sys};
  bench::latency_samples samples;
  int x = 0;
  for (auto _ : state) {
    samples.measure([&] {
      ++x;
      self->request(server, std::chrono::seconds(5), x)
          .receive(
              [&](int y) {
                if (y != x)
                  state.SkipWithError("bad reply");
              },
              [&](caf::error&) { state.SkipWithError("error reply"); });
    });
  }
  samples.report(state);
  state.SetItemsProcessed(state.iterations());
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
