#pragma once

// A one-shot gate for tests: workers wait in `pass()` until the test calls
// `open()`. The wait is bounded (30 s), so a broken test fails instead of
// hanging.

#include <chrono>
#include <future>

namespace actorbus::test {

struct gate {
  std::promise<void> p;
  std::shared_future<void> f{p.get_future().share()};

  void open() {
    p.set_value();
  }

  /// Waits for `open()`; false if it did not come within 30 s.
  bool pass() const {
    return f.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  }
};

} // namespace actorbus::test
