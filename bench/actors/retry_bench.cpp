// retry: the seed's retry_async as samples/retry uses it: retry_call from a
// plain thread to a page server actor that fails twice and then answers,
// with 3 attempts per fetch; 20,000 fetches per iteration. No sleeps: the
// pause between attempts is 0 s (the seed waits 1 s, the sample 10 ms), and
// retry_invoke does not sleep for a zero pause. The peer,
// bench/peers/actors_retry.py, runs the seed's decorator the same way.
//
// Two more impls split the cost. retry/actorbus_caller makes the same
// three round trips per fetch through one runtime::caller kept for the
// whole run (retry_call makes a new one, an actor spawned and destroyed,
// per fetch). retry/actorbus_invoke retries the fetch as a plain function
// through retry_invoke, with no actor in between, like the peer's
// coroutine: what is left is the retry logic alone.

#include "actorbus/actors/retry.hpp"
#include "actorbus/runtime/config.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace {

using namespace actorbus::actors;

constexpr int n_fetches = 20'000;
constexpr int64_t failures = 2;

retry_policy three_attempts() {
  retry_policy policy;
  policy.attempts = 3;
  policy.backoff.min = caf::timespan{0};
  policy.backoff.multiplier = 1.0;
  return policy;
}

// Fails the first `failures` tries of every fetch, then answers.
caf::expected<std::string> fetch_page(int64_t& tries, const std::string& url) {
  if (++tries % (failures + 1) != 0)
    return caf::make_error(caf::sec::runtime_error, "503 from " + url);
  return "<html>" + url + "</html>";
}

caf::behavior flaky_server(caf::event_based_actor*) {
  auto tries = std::make_shared<int64_t>(0);
  return {[tries](const std::string& url) -> caf::result<std::string> {
    auto page = fetch_page(*tries, url);
    if (!page)
      return std::move(page.error());
    return std::move(*page);
  }};
}

const std::string url = "example.com";
const std::string expected_page = "<html>example.com</html>";

void BM_retry_actorbus(benchmark::State& state) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  auto server = sys.spawn(flaky_server);
  auto policy = three_attempts();
  auto per_try = caf::timespan{std::chrono::seconds(5)};
  for (auto _ : state) {
    for (int i = 0; i < n_fetches; ++i) {
      auto page = retry_call<std::string>(sys, server, policy, per_try, url);
      if (!page || *page != expected_page)
        state.SkipWithError("fetch failed");
    }
  }
  state.SetItemsProcessed(state.iterations() * n_fetches);
  caf::anon_send_exit(server, caf::exit_reason::user_shutdown);
}

void BM_retry_actorbus_caller(benchmark::State& state) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  auto server = sys.spawn(flaky_server);
  auto policy = three_attempts();
  auto per_try = caf::timespan{std::chrono::seconds(5)};
  actorbus::runtime::caller caller{sys};
  for (auto _ : state) {
    for (int i = 0; i < n_fetches; ++i) {
      auto page = retry_invoke(policy, [&] {
        return caller.call<std::string>(server, per_try, url);
      });
      if (!page || *page != expected_page)
        state.SkipWithError("fetch failed");
    }
  }
  state.SetItemsProcessed(state.iterations() * n_fetches);
  caf::anon_send_exit(server, caf::exit_reason::user_shutdown);
}

void BM_retry_actorbus_invoke(benchmark::State& state) {
  auto policy = three_attempts();
  int64_t tries = 0;
  for (auto _ : state) {
    for (int i = 0; i < n_fetches; ++i) {
      auto page = retry_invoke(policy, [&] { return fetch_page(tries, url); });
      if (!page || *page != expected_page)
        state.SkipWithError("fetch failed");
    }
  }
  state.SetItemsProcessed(state.iterations() * n_fetches);
}

} // namespace

BENCHMARK(BM_retry_actorbus)
    ->Name("retry/actorbus")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_retry_actorbus_caller)
    ->Name("retry/actorbus_caller")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_retry_actorbus_invoke)
    ->Name("retry/actorbus_invoke")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
