// gather: the seed's asyncio.gather as samples/gather runs it, a gatherer
// actor that asks a fetcher service for every URL at once and answers with
// the results in input order, called from a plain thread with
// runtime::call; 100 URLs per gather, 200 gathers per iteration. The actors
// are the sample's own (samples/gather/gather.hpp). No sleeps: the fetcher
// has no delay and answers at once (the seed sleeps 1 s, the sample waits
// 50 ms on the actor clock). The peer is bench/peers/runtime_gather.py.
// `gather/actorbus_actor_per_url` is the sample's first design, one fetcher
// actor spawned per URL as asyncio starts a task per coroutine: spawning
// and ending an actor costs more than the fetch.

#include "actorbus/runtime/call.hpp"
#include "actorbus/runtime/config.hpp"

#include "gather.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <vector>

namespace {

using actorbus::samples::gather::fetcher;
using actorbus::samples::gather::gatherer;

constexpr int n_urls = 100;
constexpr int n_gathers = 200;

void run_gathers(benchmark::State& state, bool actor_per_url) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  caf::actor pages;
  if (!actor_per_url)
    pages = sys.spawn(fetcher, caf::timespan{0});
  auto g = sys.spawn(gatherer, pages);
  std::vector<std::string> urls;
  for (int i = 0; i < n_urls; ++i)
    urls.push_back("http://example.com/" + std::to_string(i));
  for (auto _ : state) {
    for (int k = 0; k < n_gathers; ++k) {
      auto res = actorbus::runtime::call<std::vector<std::string>>(
          sys, g, std::chrono::seconds(10), urls);
      if (!res || res->back() != "Data from " + urls.back())
        state.SkipWithError("gather failed");
    }
  }
  state.SetItemsProcessed(state.iterations() * n_urls * n_gathers);
  caf::anon_send_exit(g, caf::exit_reason::user_shutdown);
  if (pages)
    caf::anon_send_exit(pages, caf::exit_reason::user_shutdown);
}

void BM_gather_actorbus(benchmark::State& state) {
  run_gathers(state, false);
}

void BM_gather_actor_per_url(benchmark::State& state) {
  run_gathers(state, true);
}

} // namespace

BENCHMARK(BM_gather_actorbus)
    ->Name("gather/actorbus")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_gather_actor_per_url)
    ->Name("gather/actorbus_actor_per_url")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
