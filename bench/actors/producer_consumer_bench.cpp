// producer_consumer: the seed's "Async Queues" as samples/producer_consumer
// runs it, one producer actor putting 100,000 items "item_<i>" on an
// async_queue, 3 consumer actors taking them until the queue is closed and
// drained. The producer is the sample's own (producer_consumer.hpp) with no
// pace, so nothing sleeps: its pause between puts (the seed's sleep(0.1),
// the sample's delayed_send) is a message to itself. Each consumer takes
// the number out of the item and adds it to a sum (checked).
// producer_consumer/actorbus holds 4 items, as the sample's queue does;
// producer_consumer/actorbus_unbounded has no bound, as the seed's Queue().
// The peer, bench/peers/actors_producer_consumer.py, runs the seed's
// unbounded Queue() and one bounded to 4.

#include "actorbus/actors/async_queue.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "producer_consumer.hpp"

#include <caf/event_based_actor.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace {

using actorbus::actors::async_queue;
using actorbus::samples::producer_consumer::producer;
using namespace std::chrono_literals;

constexpr int n_items = 100'000;
constexpr int n_consumers = 3;

// Takes items until the queue is closed and drained.
void consume(caf::event_based_actor* self, async_queue<std::string>* queue,
             std::atomic<int64_t>* sum,
             std::shared_ptr<std::promise<void>> done) {
  queue->async_get(
      self, caf::timespan{30s}, [=](caf::expected<std::string> item) {
        if (!item) {
          done->set_value();
          self->quit();
          return;
        }
        sum->fetch_add(std::stol(item->substr(5)), std::memory_order_relaxed);
        (void)queue->task_done();
        consume(self, queue, sum, done);
      });
}

void run_pattern(benchmark::State& state, size_t capacity) {
  actorbus::runtime::runtime rt;
  for (auto _ : state) {
    async_queue<std::string> queue{capacity};
    std::atomic<int64_t> sum{0};
    std::vector<std::future<void>> stopped;
    for (int i = 0; i < n_consumers; ++i) {
      auto done = std::make_shared<std::promise<void>>();
      stopped.push_back(done->get_future());
      // The id argument, unused, as in the sample: CAF 0.17 trips UBSan on
      // function actors spawned without arguments.
      if (!rt.spawn([&, done](caf::event_based_actor* self,
                              int) { consume(self, &queue, &sum, done); },
                    i))
        state.SkipWithError("spawn failed");
    }
    std::promise<int> produced;
    auto produced_f = produced.get_future();
    if (!rt.spawn(producer, &queue, n_items, caf::timespan{0}, &produced,
                  nullptr))
      state.SkipWithError("spawn failed");
    if (produced_f.wait_for(60s) != std::future_status::ready ||
        produced_f.get() != n_items)
      state.SkipWithError("producer did not finish");
    if (auto err = queue.join(caf::timespan{60s}))
      state.SkipWithError("join failed");
    queue.close();
    for (auto& f : stopped)
      if (f.wait_for(10s) != std::future_status::ready)
        state.SkipWithError("a consumer did not stop");
    if (sum.load() != int64_t{n_items} * (n_items - 1) / 2)
      state.SkipWithError("wrong sum");
  }
  state.SetItemsProcessed(state.iterations() * n_items);
}

void BM_producer_consumer_actorbus(benchmark::State& state) {
  run_pattern(state, 4);
}

void BM_producer_consumer_actorbus_unbounded(benchmark::State& state) {
  run_pattern(state, 0);
}

} // namespace

BENCHMARK(BM_producer_consumer_actorbus)
    ->Name("producer_consumer/actorbus")
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_producer_consumer_actorbus_unbounded)
    ->Name("producer_consumer/actorbus_unbounded")
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
