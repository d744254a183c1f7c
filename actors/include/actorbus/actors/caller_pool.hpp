#pragma once

// Reusable runtime::caller objects for blocking calls from many threads.
// A caller is not thread-safe and costs an actor spawn to create; a pool
// hands one caller to one thread at a time and keeps it for the next call.

#include "actorbus/runtime/call.hpp"

#include <caf/actor_system.hpp>

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace actorbus::actors {

/// A set of callers shared by threads. Thread-safe.
class caller_pool {
public:
  explicit caller_pool(caf::actor_system& sys)
      : sys_(sys) {}

  caller_pool(const caller_pool&) = delete;
  caller_pool& operator=(const caller_pool&) = delete;

  /// Runs `fn(runtime::caller&)` with a caller nobody else uses meanwhile.
  template <class F>
  auto with(F fn) {
    std::unique_ptr<runtime::caller> c;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!free_.empty()) {
        c = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!c)
      c = std::make_unique<runtime::caller>(sys_);
    struct give_back {
      caller_pool* pool;
      std::unique_ptr<runtime::caller>& c;
      ~give_back() {
        std::lock_guard<std::mutex> guard{pool->mtx_};
        pool->free_.push_back(std::move(c));
      }
    } back{this, c};
    return fn(*c);
  }

private:
  caf::actor_system& sys_;
  std::mutex mtx_;
  std::vector<std::unique_ptr<runtime::caller>> free_;
};

} // namespace actorbus::actors
