#pragma once

// The unit of work of every pool (not for users): what the pool core queues,
// retries and fails.

#include <caf/error.hpp>

#include <cstddef>
#include <memory>

namespace actorbus::actors::detail {

/// A queued item of a pool: a task of a `worker_pool`, a job of a
/// `handler_pool`.
class pool_item {
public:
  virtual ~pool_item() = default;

  /// Gives `err` as the item's result (its future or its requester sees it).
  virtual void fail(caf::error err) = 0;

  /// Runs of this item so far.
  std::size_t runs = 0;
};

using item_ptr = std::shared_ptr<pool_item>;

} // namespace actorbus::actors::detail
