#pragma once

// Blocking request/reply from threads that are not actors.
//
// `call` sends a request and blocks the calling thread until the reply, an
// error, or the timeout, whichever comes first; it never blocks forever.
// Never call it from inside an actor's handler: it would block a scheduler
// thread (use `self->request(...).then(...)` there).
//
// A `caller` keeps one CAF scoped actor for many calls from the same thread,
// which saves spawning one per call. A caller is not thread-safe: use one per
// thread.

#include "actorbus/runtime/fwd.hpp"

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>
#include <caf/timespan.hpp>

#include <optional>
#include <utility>

namespace actorbus::runtime {

class caller {
public:
  explicit caller(caf::actor_system& sys)
      : self_(sys) {
    // Nothing else talks to this actor; leftovers from timed-out requests
    // are discarded on the next call.
  }

  /// Sends `xs...` to `dest` and waits for a reply of type `T` (or for an
  /// empty reply when `T` is void). Errors: the receiver's error,
  /// `caf::sec::request_timeout`, `caf::sec::invalid_argument` for an
  /// invalid handle, `caf::sec::unexpected_response` for a reply of another
  /// type.
  template <class T, class Handle, class... Ts>
  caf::expected<T> call(const Handle& dest, caf::timespan timeout, Ts&&... xs) {
    if (!dest)
      return caf::make_error(caf::sec::invalid_argument,
                             "call: invalid receiver handle");
    std::optional<caf::expected<T>> result;
    auto on_error = [&](caf::error& err) { result.emplace(std::move(err)); };
    if constexpr (std::is_void_v<T>) {
      self_->request(dest, timeout, std::forward<Ts>(xs)...)
          .receive([&] { result.emplace(caf::unit); }, on_error);
    } else {
      self_->request(dest, timeout, std::forward<Ts>(xs)...)
          .receive([&](T& x) { result.emplace(std::move(x)); }, on_error);
    }
    if (!result)
      return caf::make_error(caf::sec::unexpected_response);
    return std::move(*result);
  }

  caf::scoped_actor& self() noexcept {
    return self_;
  }

private:
  caf::scoped_actor self_;
};

/// One-shot form of `caller::call`.
template <class T, class Handle, class... Ts>
caf::expected<T> call(caf::actor_system& sys, const Handle& dest,
                      caf::timespan timeout, Ts&&... xs) {
  caller c{sys};
  return c.call<T>(dest, timeout, std::forward<Ts>(xs)...);
}

} // namespace actorbus::runtime
