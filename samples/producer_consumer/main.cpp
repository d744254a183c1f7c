// The seed's "Async Queues": one producer, three consumers, a queue between
// them. Here the producer and consumers are actors, the queue is bounded (a
// full queue holds the producer back) and end of work is `close()`, not a
// `None` put once per consumer.
//
// usage: producer_consumer [items=10] [consumers=3] [pace_ms=1]

#include "actorbus/actors/async_queue.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"
#include "producer_consumer.hpp"

#include <caf/event_based_actor.hpp>

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using actorbus::actors::async_queue;
using actorbus::samples::producer_consumer::producer;

namespace {

struct tally {
  std::atomic<int> items{0};
  std::atomic<long> sum{0};
};

// Takes items until the queue is closed and drained.
void consume(caf::event_based_actor* self, async_queue<std::string>* queue,
             int id, tally* total, std::shared_ptr<std::promise<int>> done,
             int handled = 0) {
  queue->async_get(self, caf::timespan{30s},
                   [=](caf::expected<std::string> item) mutable {
                     if (!item) {
                       // closed: the end of the work, no sentinel needed.
                       done->set_value(handled);
                       self->quit();
                       return;
                     }
                     // process_item: take the number out of "item_<n>".
                     total->sum += std::stol(item->substr(5));
                     ++total->items;
                     (void)queue->task_done();
                     consume(self, queue, id, total, done, handled + 1);
                   });
}

} // namespace

int main(int argc, char** argv) {
  int n = 10;
  int consumers = 3;
  int pace_ms = 1;
  CLI::App app{"One producer and several consumer actors around a bounded "
               "queue.",
               "producer_consumer"};
  app.add_option("items", n, "items to produce")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("consumers", consumers, "consumer actors")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  app.add_option("pace_ms", pace_ms, "milliseconds between two items")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  actorbus::runtime::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  actorbus::runtime::runtime rt{std::move(cfg)};
  async_queue<std::string> queue{4};
  tally total;
  std::promise<int> produced;
  auto produced_f = produced.get_future();
  std::vector<std::future<int>> handled;
  for (int i = 0; i < consumers; ++i) {
    auto done = std::make_shared<std::promise<int>>();
    handled.push_back(done->get_future());
    if (!rt.spawn(
            [&, done](caf::event_based_actor* self, int id) {
              consume(self, &queue, id, &total, done);
            },
            i))
      return 1;
  }
  auto report = [&rt](const caf::error& err,
                      const std::optional<std::string>& back) {
    fmt::print("producer: could not put {}: {}\n", back.value_or("?"),
               rt.system().render(err));
  };
  if (!rt.spawn(producer, &queue, n,
                caf::timespan{std::chrono::milliseconds(pace_ms)}, &produced,
                report))
    return 1;
  // await producer_task
  if (produced_f.wait_for(60s) != std::future_status::ready ||
      produced_f.get() != n) {
    fmt::print("producer did not finish\n");
    return 1;
  }
  fmt::print("produced {} items\n", n);
  // Every item processed (task_done) before we close.
  if (auto err = queue.join(caf::timespan{60s})) {
    fmt::print("join failed: {}\n", rt.system().render(err));
    return 1;
  }
  queue.close();
  for (int i = 0; i < consumers; ++i) {
    if (handled[i].wait_for(10s) != std::future_status::ready) {
      fmt::print("consumer_{} did not stop\n", i);
      return 1;
    }
    fmt::print("consumer_{} handled {} items\n", i, handled[i].get());
  }
  fmt::print("consumed {} items by {} consumers, sum of item numbers {}\n",
             total.items.load(), consumers, total.sum.load());
  fmt::print("queue closed, every consumer stopped\n");
  return total.items.load() == n ? 0 : 1;
}
