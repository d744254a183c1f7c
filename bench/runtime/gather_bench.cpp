// gather: the seed's asyncio.gather as samples/gather runs it, a gatherer
// actor that asks a fetcher service for every URL at once and answers with
// the results in input order, called from a plain thread with
// runtime::call; 100 URLs per gather, 200 gathers per iteration. No sleeps:
// the fetcher answers at once (the seed sleeps 1 s, the sample waits 50 ms
// on the actor clock). The peer is bench/peers/runtime_gather.py.
// `gather/actorbus_actor_per_url` is the sample's first design, one fetcher
// actor spawned per URL as asyncio starts a task per coroutine: spawning
// and ending an actor costs more than the fetch.

#include "actorbus/runtime/call.hpp"
#include "actorbus/runtime/config.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr int n_urls = 100;
constexpr int n_gathers = 200;

// The fetcher service: answers every fetch (at once here).
caf::behavior fetcher(caf::event_based_actor*) {
  return {[](const std::string& url) { return "Data from " + url; }};
}

// Answers one fetch, then ends.
caf::behavior one_fetch(caf::event_based_actor* self) {
  return {[self](const std::string& url) {
    self->quit();
    return "Data from " + url;
  }};
}

// Asks for every URL at once, from `pages` or (without it) from one new
// fetcher actor per URL; answers with all results in input order (or the
// first error).
caf::behavior gatherer(caf::event_based_actor* self, caf::actor pages) {
  return {[self, pages](const std::vector<std::string>& urls)
              -> caf::result<std::vector<std::string>> {
    auto rp = self->make_response_promise<std::vector<std::string>>();
    auto results = std::make_shared<std::vector<std::string>>(urls.size());
    auto pending = std::make_shared<size_t>(urls.size());
    for (size_t i = 0; i < urls.size(); ++i) {
      auto dest = pages ? pages : self->spawn(one_fetch);
      self->request(dest, std::chrono::seconds(5), urls[i])
          .then(
              [=](std::string& data) mutable {
                (*results)[i] = std::move(data);
                if (--*pending == 0)
                  rp.deliver(std::move(*results));
              },
              [=](caf::error& err) mutable { rp.deliver(err); });
    }
    return rp;
  }};
}

void run_gathers(benchmark::State& state, bool actor_per_url) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  caf::actor pages;
  if (!actor_per_url)
    pages = sys.spawn(fetcher);
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
