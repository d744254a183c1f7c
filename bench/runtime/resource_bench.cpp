// resource: the seed's async context manager as samples/resource does it,
// a resource that a user actor acquires when it starts and that is cleaned
// up by RAII when the actor ends, also when it fails. 10,000 users per
// iteration, each spawned and sent one value; the last one fails instead
// of using its resource. The iteration ends when every resource was
// cleaned up (a latch in the destructor). Nothing waits or sleeps inside.
// The peer is bench/peers/runtime_resource.py.

#include "actorbus/runtime/config.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <latch>
#include <memory>
#include <utility>

namespace {

constexpr int n_users = 10'000;

struct tally {
  explicit tally(std::ptrdiff_t users)
      : cleaned(users) {}
  std::atomic<int> opened{0};
  std::atomic<int64_t> used{0};
  std::latch cleaned;
};

// initialize() in the constructor, cleanup() in the destructor.
class resource {
public:
  explicit resource(std::shared_ptr<tally> t)
      : tally_(std::move(t)) {
    ++tally_->opened;
  }
  ~resource() {
    tally_->cleaned.count_down();
  }
  resource(const resource&) = delete;
  resource& operator=(const resource&) = delete;
  int64_t use(int x) {
    return int64_t{x} * 10;
  }

private:
  // Shared, so the latch outlives the count_down that releases the waiter.
  std::shared_ptr<tally> tally_;
};

// Owns its resource for its whole life; fails on a negative value.
caf::behavior user(caf::event_based_actor* self, std::shared_ptr<tally> t) {
  auto res = std::make_shared<resource>(t);
  return {[self, res, t](int x) -> caf::result<int64_t> {
    if (x < 0) {
      self->quit(caf::make_error(caf::sec::runtime_error, "user failed"));
      return caf::make_error(caf::sec::runtime_error, "user failed");
    }
    auto y = res->use(x);
    t->used += y;
    self->quit();
    return y;
  }};
}

void BM_resource_actorbus(benchmark::State& state) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  for (auto _ : state) {
    auto t = std::make_shared<tally>(n_users);
    for (int i = 0; i < n_users; ++i)
      caf::anon_send(sys.spawn(user, t), i == n_users - 1 ? -1 : i);
    t->cleaned.wait();
    if (t->opened != n_users ||
        t->used != int64_t{10} * (n_users - 1) * (n_users - 2) / 2)
      state.SkipWithError("a resource was not used or cleaned up");
  }
  state.SetItemsProcessed(state.iterations() * n_users);
}

} // namespace

BENCHMARK(BM_resource_actorbus)
    ->Name("resource/actorbus")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
