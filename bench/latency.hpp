#pragma once

// Per-call latency samples reported as Google Benchmark counters
// (median_us, p99_us), since a mean hides the tail and the sleep effects
// these benchmarks are about.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace actorbus::bench {

class latency_samples {
public:
  template <class F>
  void measure(F&& f) {
    auto start = std::chrono::steady_clock::now();
    f();
    auto stop = std::chrono::steady_clock::now();
    ns_.push_back(
        std::chrono::duration<double, std::nano>(stop - start).count());
  }

  /// Sets median_us and p99_us on the state.
  void report(benchmark::State& state) {
    if (ns_.empty())
      return;
    std::sort(ns_.begin(), ns_.end());
    auto at = [&](double q) {
      return ns_[std::min(
          ns_.size() - 1,
          static_cast<size_t>(q * static_cast<double>(ns_.size())))];
    };
    state.counters["median_us"] = at(0.5) / 1000.0;
    state.counters["p99_us"] = at(0.99) / 1000.0;
  }

private:
  std::vector<double> ns_;
};

} // namespace actorbus::bench
