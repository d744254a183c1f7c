#pragma once

// What the bus keeps per topic, and one queued event.

#include "actorbus/bus/fwd.hpp"

#include "line_allocator.hpp"

#include <caf/actor_addr.hpp>
#include <caf/message.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace actorbus::bus::detail {

/// The subscriptions whose pattern matches one topic.
using subscriber_list =
    std::vector<std::shared_ptr<subscriber_state>,
                line_allocator<std::shared_ptr<subscriber_state>>>;

/// Counters and cached subscriber list of one topic. Entries live as long
/// as the bus core, so queued items point at them.
struct topic_entry {
  explicit topic_entry(std::string_view topic)
      : name_(topic) {
    // nop
  }

  const std::string name_;
  std::atomic<std::uint64_t> published_{0};
  // Written by the couriers: kept off the publishers' cache line.
  alignas(cache_line) std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> dead_lettered_{0};
  // Guarded by bus_core::mtx_: written under the exclusive lock only.
  std::uint64_t generation_ = 0;
  std::shared_ptr<const subscriber_list> subs_;
  // Guarded by bus_core::retained_mtx_.
  bool has_retained_ = false;
  caf::message retained_;
  caf::actor_addr retained_publisher_;
};

/// One queued event: a value, like `delivery`. An empty item (null topic)
/// fills a free slot.
struct item {
  topic_entry* topic = nullptr;
  caf::message event;
  caf::actor_addr publisher;
  /// The `gather` that waits for the reply, if any.
  std::shared_ptr<gather_sink> sink;
};

} // namespace actorbus::bus::detail
