#pragma once

// Blocking request/reply from threads that are not actors.
//
// `call` sends a request and blocks the calling thread until the reply, an
// error, or the timeout, whichever comes first; it never blocks forever.
// Never call it from inside an actor's handler: it would block a scheduler
// thread (use `self->request(...).then(...)` there).
//
// A `caller` owns a tiny reply endpoint (a hidden CAF actor companion) and
// reuses it for many calls. It waits for a reply by spinning briefly, then
// blocking on a condition variable, so a round trip costs a few
// microseconds instead of a scoped actor's spawn and two sleeping-thread
// wake-ups. A caller is not thread-safe: use one per thread. A reply that
// arrives after its call timed out is discarded.

#include "actorbus/runtime/fwd.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>
#include <caf/timespan.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace actorbus::runtime {

/// Request/reply from one plain thread with a reusable reply endpoint;
/// every call has a timeout. Not thread-safe: one caller per thread.
class caller {
public:
  explicit caller(caf::actor_system& sys);
  ~caller();

  caller(const caller&) = delete;
  caller& operator=(const caller&) = delete;

  /// Sends `xs...` to `dest` and waits for a reply of type `T` (or for an
  /// empty reply when `T` is void). Errors: the receiver's error,
  /// `caf::sec::request_timeout`, `caf::sec::invalid_argument` for an
  /// invalid handle, `caf::sec::request_receiver_down` for a dead receiver,
  /// `caf::sec::unexpected_response` for a reply of another type.
  template <class T, class Handle, class... Ts>
  caf::expected<T> call(const Handle& dest, caf::timespan timeout, Ts&&... xs);

  /// Untyped form: the reply message, or the error.
  caf::expected<caf::message> call_impl(const caf::strong_actor_ptr& dest,
                                        caf::message request,
                                        caf::timespan timeout);

private:
  struct endpoint;
  std::shared_ptr<endpoint> ep_;
};

/// Converts an untyped reply to `T` (void: an empty reply). A reply of
/// another type is `caf::sec::unexpected_response`.
template <class T>
caf::expected<T> reply_as(caf::expected<caf::message> reply) {
  if (!reply)
    return std::move(reply.error());
  if constexpr (std::is_void_v<T>) {
    if (reply->empty())
      return caf::unit;
  } else {
    if (reply->template match_elements<T>())
      return std::move(reply->template get_mutable_as<T>(0));
  }
  return caf::make_error(caf::sec::unexpected_response,
                         "reply has an unexpected type");
}

template <class T, class Handle, class... Ts>
caf::expected<T> caller::call(const Handle& dest, caf::timespan timeout,
                              Ts&&... xs) {
  return reply_as<T>(call_impl(caf::actor_cast<caf::strong_actor_ptr>(dest),
                               caf::make_message(std::forward<Ts>(xs)...),
                               timeout));
}

/// One-shot form of `caller::call` (creates a caller for this call).
template <class T, class Handle, class... Ts>
caf::expected<T> call(caf::actor_system& sys, const Handle& dest,
                      caf::timespan timeout, Ts&&... xs) {
  caller c{sys};
  return c.call<T>(dest, timeout, std::forward<Ts>(xs)...);
}

} // namespace actorbus::runtime
