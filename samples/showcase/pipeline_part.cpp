// Showcase part: a pipeline of actor stages (one with 2 ordered workers and
// a skip policy), a pipeline fed by a bus topic, and an async queue between
// a thread and an actor.

#include "actorbus/actors/async_queue.hpp"
#include "actorbus/bus/event_bus.hpp"
#include "actorbus/pipeline/pipeline.hpp"
#include "actorbus/pipeline/pipeline_bus.hpp"

#include "showcase.hpp"

#include <caf/event_based_actor.hpp>

#include <fmt/core.h>

#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>

namespace {

using namespace actorbus::actors;
namespace pipeline = actorbus::pipeline;
using namespace std::chrono_literals;

int run_pipeline(actorbus::runtime::runtime& rt) {
  int64_t sum = 0;
  int64_t count = 0;
  int64_t last = 0;
  bool ordered = true;
  auto plan = pipeline::from_iota(1, 100'001)
                  .then("square",
                        [](int64_t& x) -> int64_t {
                          if (x == 50'000)
                            throw std::runtime_error("item 50000 rejected");
                          return x * x;
                        },
                        {.parallelism = 2,
                         .ordered = true,
                         .on_error = pipeline::error_policy::skip()})
                  .then("pass", [](int64_t& x) { return x; })
                  .to([&](int64_t x) {
                    ordered = ordered && x > last;
                    last = x;
                    sum += x;
                    ++count;
                  });
  auto run = std::move(plan).run(rt, {.batch = 128});
  if (!run)
    return 1;
  auto report = run->wait(caf::timespan{30s});
  if (!report || !report->ok())
    return 1;
  fmt::print("pipeline: {} items through 2 stages, sum of squares {}, "
             "{} skipped, {}\n",
             count, sum, report->stages[1].errors,
             ordered ? "in input order" : "OUT OF ORDER");
  fmt::print("pipeline: peak queue depth of 'square' {} (bounded by credit)\n",
             report->stages[1].peak_queue_depth);
  return ordered ? 0 : 1;
}

int run_topic_source(actorbus::runtime::runtime& rt) {
  actorbus::bus::event_bus events{rt.system()};
  int64_t hot = 0;
  int64_t sum = 0;
  auto plan =
      pipeline::from_topic<int64_t>(events, "sensors.*", {.max_items = 1000})
          .filter("hot", [](const int64_t& celsius) { return celsius >= 30; })
          .to([&](int64_t celsius) {
            ++hot;
            sum += celsius;
          });
  auto run = std::move(plan).run(rt);
  if (!run)
    return 1;
  for (int64_t i = 0; i < 1000; ++i) // readings of 0..49 degrees
    if (events.publish(i % 2 == 0 ? "sensors.roof" : "sensors.cellar", i % 50))
      return 1;
  auto report = run->wait(caf::timespan{30s});
  if (!report || !report->ok())
    return 1;
  fmt::print("pipeline: 1000 events from topic 'sensors.*', {} hot readings "
             "(sum {}), stream ended after max_items\n",
             hot, sum);
  return 0;
}

int run_queue(actorbus::runtime::runtime& rt) {
  auto queue = std::make_unique<async_queue<int>>(8);
  std::promise<long> total;
  auto got = total.get_future();
  struct consumer {
    async_queue<int>* q;
    std::promise<long>* done;
    long sum = 0;
    void next(caf::event_based_actor* self, std::shared_ptr<consumer> me) {
      q->async_get(self, caf::timespan{10s}, [=](caf::expected<int> x) {
        if (!x) { // closed: the end, no sentinel
          me->done->set_value(me->sum);
          self->quit();
          return;
        }
        me->sum += *x;
        (void)me->q->task_done();
        me->next(self, me);
      });
    }
  };
  auto c = std::make_shared<consumer>(consumer{queue.get(), &total});
  if (!rt.spawn([](caf::event_based_actor* self,
                   std::shared_ptr<consumer> me) { me->next(self, me); },
                c))
    return 1;
  for (int i = 0; i < 1000; ++i)
    if (queue->put(i, caf::timespan{10s}))
      return 1;
  if (queue->join(caf::timespan{10s}))
    return 1;
  queue->close();
  if (got.wait_for(10s) != std::future_status::ready)
    return 1;
  fmt::print("async_queue: 1000 items from a thread to an actor, sum {}, "
             "joined and closed\n",
             got.get());
  return 0;
}

int run(actorbus::runtime::runtime& rt) {
  if (auto rc = run_pipeline(rt))
    return rc;
  if (auto rc = run_topic_source(rt))
    return rc;
  return run_queue(rt);
}

const bool registered = showcase::add({30, "pipeline", &run});

} // namespace
