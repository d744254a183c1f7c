// A program that keeps its process pools in static objects, as programs
// that set a pool up once often do: one at namespace scope (built before
// main) and one function-local (built on first use). Both are destroyed by
// exit, after main returned and after the main thread's thread_locals.
// Prints "results <a> <b>" and "workers <pid>..." and exits 0 if all went
// well; process_pool_test runs it and checks its exit.

#include "actorbus/ipc/process_pool.hpp"

#include <cstdio>

namespace {

namespace ipc = actorbus::ipc;

int64_t square(int64_t x) {
  return x * x;
}

ipc::process_pool_options with_workers(size_t n) {
  ipc::process_pool_options opts;
  opts.workers = n;
  return opts;
}

ipc::process_pool<int64_t, int64_t> early_pool{square, with_workers(1)};

ipc::process_pool<int64_t, int64_t>& lazy_pool() {
  static ipc::process_pool<int64_t, int64_t> pool{square, with_workers(2)};
  return pool;
}

} // namespace

int main() {
  auto a = early_pool.map({1, 2, 3});
  auto b = lazy_pool().map({4, 5, 6});
  if (!a || !b)
    return 1;
  std::printf("results %lld %lld\nworkers", static_cast<long long>(a->back()),
              static_cast<long long>(b->back()));
  for (auto* pool : {&early_pool, &lazy_pool()})
    for (auto pid : pool->worker_pids())
      std::printf(" %d", static_cast<int>(pid));
  std::printf("\n");
  std::fflush(stdout);
  return 0;
}
