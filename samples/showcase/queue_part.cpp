// Showcase part: the Redis task queue. A private redis-server, a worker
// with two handler actors, a batch of tasks, a retry and a dead letter.

#include "actorbus/queue/client.hpp"
#include "actorbus/queue/worker.hpp"

#include "showcase.hpp"

#include <fmt/core.h>

#include <chrono>
#include <cstdint>

namespace {

namespace q = actorbus::queue;
using namespace std::chrono_literals;

int run(actorbus::runtime::runtime& sys) {
  q::queue_config cfg; // no URL: a private redis-server on a Unix socket
  cfg.sweep_interval = 20ms;
  auto producer = q::client::connect(cfg);
  if (!producer) {
    fmt::print("queue: {}\n", q::describe(producer.error()));
    return 1;
  }
  q::worker w{sys, cfg};
  w.handle_typed<int64_t>(
      "cube",
      [](q::task_context& ctx, int64_t x) -> caf::expected<std::string> {
        if (x == 7 && ctx.attempt() == 1)
          return caf::make_error(caf::sec::runtime_error, "transient");
        return q::encode(x * x * x);
      });
  if (auto err = w.start()) {
    fmt::print("queue: {}\n", q::describe(err));
    return 1;
  }
  std::vector<std::string> payloads;
  for (int64_t i = 1; i <= 100; ++i)
    payloads.push_back(q::encode(i));
  q::task_options opts;
  opts.backoff.min = 10ms;
  auto ids = producer->enqueue_many("cube", payloads, opts);
  auto stray = producer->enqueue("thumbnail", {}, std::string{"cat.png"});
  if (!ids || !stray)
    return 1;
  int64_t sum = 0;
  for (auto& id : *ids) {
    auto info = producer->wait(id, 10s);
    if (!info || info->status != q::task_status::succeeded)
      return 1;
    sum += std::get<0>(*q::decode<int64_t>(info->result));
  }
  fmt::print("queue: 100 tasks on 2 handler actors, sum of cubes 1..100 = {}\n",
             sum);
  auto dead = producer->wait(*stray, 10s);
  if (!dead)
    return 1;
  fmt::print("queue: unknown task went to dead letters: {}\n", dead->error);
  w.stop(2s);
  auto st = w.stats();
  fmt::print("queue: worker stopped: {} succeeded, {} retried, {} dead\n",
             st.succeeded, st.retried, st.dead_lettered);
  return 0;
}

const bool registered = showcase::add({50, "queue", &run});

} // namespace
