// Showcase part: a supervised pool. A worker pool whose crashed worker is
// replaced and its task retried, and a supervisor restarting a crashed
// child while it keeps answering queries.

#include "actorbus/actors/supervisor.hpp"
#include "actorbus/actors/worker_pool.hpp"
#include "actorbus/runtime/call.hpp"

#include "showcase.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace {

using namespace actorbus::actors;

caf::behavior doubler(caf::event_based_actor* self, int factor) {
  return {[self, factor](int x) -> caf::result<int> {
    if (x < 0) {
      self->quit(caf::make_error(caf::sec::runtime_error, "negative"));
      return caf::make_error(caf::sec::runtime_error, "negative");
    }
    return factor * x;
  }};
}

int run(actorbus::runtime::runtime& rt) {
  auto& sys = rt.system();
  auto wait = caf::timespan{std::chrono::seconds(5)};
  long sum = 0;
  pool_stats st;
  {
    worker_pool pool{rt, {.workers = 4, .on_crash = crash_policy::retry}};
    std::atomic<bool> crashed{false};
    std::vector<task_future<int>> fs;
    for (int i = 0; i < 100; ++i)
      fs.push_back(pool.submit([i, &crashed] {
        if (i == 42 && !crashed.exchange(true))
          throw std::runtime_error("worker crash");
        return i;
      }));
    for (auto& f : fs) {
      auto r = f.get(wait);
      if (!r)
        return 1;
      sum += *r;
    }
    pool.wait_for_workers(4, wait);
    st = pool.stats();
  }
  fmt::print("actors: supervised pool ran 100 tasks, sum {}, {} worker crash "
             "replaced, {} retried, {} workers\n",
             sum, st.crashes, st.retried, st.workers);
  supervisor_config cfg;
  cfg.children.push_back({.id = "doubler", .start = [](caf::actor_system& s) {
                            return caf::expected<caf::actor>{
                                s.spawn(doubler, 2)};
                          }});
  auto sup = spawn_supervisor(sys, std::move(cfg));
  if (!sup)
    return 1;
  auto child = actorbus::runtime::call<caf::actor>(
      sys, *sup, wait, caf::get_atom::value, std::string{"doubler"});
  if (!child || !*child)
    return 1;
  caf::anon_send(*child, -1);
  // Ask until the supervisor reports the restart (bounded).
  child_counts counts;
  for (int i = 0; i < 1000; ++i) {
    auto c = actorbus::runtime::call<child_counts>(sys, *sup, wait,
                                                   count_children_v);
    if (!c)
      return 1;
    counts = *c;
    if (counts.total_restarts == 1 && counts.active == 1)
      break;
  }
  auto again = actorbus::runtime::call<caf::actor>(
      sys, *sup, wait, caf::get_atom::value, std::string{"doubler"});
  auto answer = actorbus::runtime::call<int>(sys, *again, wait, 21);
  fmt::print("actors: supervisor restarted its crashed child {} time(s); the "
             "new one answered {}\n",
             counts.total_restarts, answer ? *answer : -1);
  caf::anon_send_exit(*sup, caf::exit_reason::user_shutdown);
  return answer && *answer == 42 ? 0 : 1;
}

const bool registered = showcase::add({20, "actors", &run});

} // namespace
