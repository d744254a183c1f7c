#pragma once

// The event bus: typed publish/subscribe on dot-separated topics.
//
// Publishing copies nothing per subscriber: the event is wrapped once in a
// caf::message and shared. Each subscription owns a bounded queue drained by
// its own actor (a "courier"), in batches, so a slow subscriber never stalls
// the publisher or the other subscribers; what happens when its queue is
// full is the subscription's `overload_policy`.
//
// Thread-safety: every member function of `event_bus` and `subscription` is
// thread-safe. `publish` may be called from any thread and from inside
// actors; it never sends a request and never waits for a subscriber, except
// under `overload_policy::block` (then for at most `block_timeout`). Do not
// call `gather` from inside an actor's handler: it blocks until its
// deadline.
//
// Ordering: events from one publisher (one thread, or one actor) reach each
// subscriber in publish order. There is no order across publishers.
//
// Callbacks run inside the subscription's courier actor, one at a time,
// never on the publisher's thread. A callback that throws does not stop
// delivery: the event goes to the dead-letter topic with the reason.
//
// Actor subscribers receive each event as a message
// `(std::string topic, caf::actor_addr publisher, T value)`, sent as a
// request: at most `max_in_flight` events are outstanding per subscriber,
// which keeps its mailbox bounded. A handler may return a value; for
// `gather` that value is the reply; for every event, the reply is the
// acknowledgement that `subscription::cancel` waits for. An actor that dies
// is unsubscribed and reported.
//
// Lifetime: a bus made on a `runtime::runtime` is tracked by it: the
// runtime's shutdown stops the couriers and closes the bus, so the bus may
// outlive the runtime (then closed). A bus made on a plain actor system
// must be destroyed before that system. The destructor cancels every
// subscription (waiting for running callbacks and for events in flight to
// actors, at most the longest `cancel_timeout`) and stops the couriers;
// subscription handles may outlive it (they are then inactive). Callbacks
// must not outlive what they capture: cancel, or destroy the bus, first.
//
// Errors are `bus::errc` (error.hpp); they print as "bus.<code>: ...".
//
// Clocks: `block_timeout` and the `gather` deadline are real time (they
// bound waits of non-actor threads); nothing in the bus uses actor timers.

#include "actorbus/bus/error.hpp"
#include "actorbus/bus/fwd.hpp"
#include "actorbus/bus/topic.hpp"
#include "actorbus/runtime/fwd.hpp"
#include "actorbus/runtime/overload.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/local_actor.hpp>
#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace actorbus::bus {

// -- options ------------------------------------------------------------------

/// What a subscription does when its queue is full: the one overload
/// vocabulary of actorbus, `runtime::overload_policy`. For a subscription,
/// `block` makes the publisher wait for room up to `block_timeout`, then
/// drops the event and `publish` returns `errc::publish_timeout` (do not use
/// it for subscriptions that actors publish to on a busy system: a waiting
/// publisher occupies a scheduler thread); `fail` drops the new event and
/// `publish` returns `errc::queue_full`; `drop_newest` drops the new event
/// and `drop_oldest` the oldest queued one, and `publish` succeeds. Every
/// dropped event is a dead letter.
using overload_policy = runtime::overload_policy;

/// Per-subscription settings.
struct subscription_options {
  /// Events that may wait for the subscriber (at least 1).
  std::size_t capacity = 1024;
  /// What a full queue does with a new event.
  runtime::overload_policy policy = runtime::overload_policy::block;
  /// Longest wait of a publisher under `overload_policy::block`.
  caf::timespan block_timeout = std::chrono::seconds(1);
  /// Actor subscribers only: events sent but not yet handled (at least 1).
  std::size_t max_in_flight = 64;
  /// Longest wait of `subscription::cancel` for a running callback, or for
  /// the events in flight to an actor to be handled.
  caf::timespan cancel_timeout = std::chrono::seconds(5);
};

/// Per-publish settings.
struct publish_options {
  /// Keep this event as the topic's last value: subscriptions made later
  /// whose pattern matches the topic receive it first.
  bool retain = false;
};

/// Bus-wide settings.
struct bus_config {
  /// Default options for subscriptions that pass none.
  subscription_options defaults;
  /// Events a courier handles before yielding its scheduler thread.
  std::size_t batch_size = 256;
  /// Empty passes a callback courier makes over its queue before going
  /// idle. While it lingers, publishers do not have to wake it, which
  /// roughly doubles throughput for bursts; an idle bus costs nothing.
  std::size_t linger = 16;
};

// -- dead letters -------------------------------------------------------------

/// The topic on which the bus publishes `dead_letter` events.
inline constexpr std::string_view dead_letter_topic = "$dead-letters";

/// Why an event became a dead letter.
enum class dead_letter_reason : std::uint8_t {
  /// Nobody subscribed to the topic.
  no_subscriber,
  /// Dropped by `overload_policy::drop_newest`.
  dropped_newest,
  /// Evicted by `overload_policy::drop_oldest`.
  dropped_oldest,
  /// Refused by `overload_policy::fail`.
  rejected,
  /// Dropped after `overload_policy::block` timed out.
  timed_out,
  /// The callback threw, or the actor answered with an error.
  handler_failed,
  /// The subscriber expects another type than the event's.
  type_mismatch,
  /// The subscribed actor is dead, or the subscription was cancelled with
  /// the event still queued.
  subscriber_down,
  /// The event arrived in a form that could not be decoded, e.g. a corrupt
  /// or truncated frame from another process over an `ipc::bus_bridge`
  /// (`event` then holds the raw bytes, `detail` says why).
  undecodable,
};

std::string to_string(dead_letter_reason x);

/// An event that was not delivered, published on `dead_letter_topic`.
/// Dead letters are never dead-lettered themselves (only counted).
struct dead_letter {
  /// The topic the event was published on.
  std::string topic;
  dead_letter_reason reason = dead_letter_reason::no_subscriber;
  /// The pattern of the subscription concerned (empty for no_subscriber).
  std::string pattern;
  /// Details: the exception text, the error, ...
  std::string detail;
  caf::actor_addr publisher;
  /// The event itself.
  caf::message event;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dead_letter& x) {
  return f(caf::meta::type_name("actorbus.bus.dead_letter"), x.topic, x.reason,
           x.pattern, x.detail, x.publisher, x.event);
}

// -- introspection ------------------------------------------------------------

/// Counters of one topic (monotonic, except `subscribers`).
struct topic_stats {
  /// Publish calls on the topic.
  std::uint64_t published = 0;
  /// Deliveries: handled by a callback, or handed to an actor.
  std::uint64_t delivered = 0;
  /// Events lost to a full queue, by any policy.
  std::uint64_t dropped = 0;
  /// Dead letters made from events of this topic (any reason).
  std::uint64_t dead_lettered = 0;
  /// Subscriptions whose pattern matches the topic now.
  std::size_t subscribers = 0;
};

// -- events -------------------------------------------------------------------

/// What a subscriber receives: the value, its topic and its publisher.
/// A view: valid during the callback only; copy what you keep.
template <class T>
class event {
public:
  event(const std::string& topic, const caf::actor_addr& publisher,
        const T& value) noexcept
      : topic_(&topic)
      , publisher_(&publisher)
      , value_(&value) {
    // nop
  }

  const std::string& topic() const noexcept {
    return *topic_;
  }

  /// The publishing actor, or an invalid address for a non-actor thread.
  const caf::actor_addr& publisher() const noexcept {
    return *publisher_;
  }

  const T& value() const noexcept {
    return *value_;
  }

private:
  const std::string* topic_;
  const caf::actor_addr* publisher_;
  const T* value_;
};

/// What `gather` collected before its deadline.
template <class R>
struct gather_result {
  /// Replies in arrival order.
  std::vector<R> replies;
  /// Subscriptions the query went to.
  std::size_t asked = 0;
  /// Subscriptions that failed (threw, answered an error or a wrong type,
  /// died, or whose queue refused the query).
  std::size_t failed = 0;

  /// Subscriptions that had not answered by the deadline.
  std::size_t missing() const noexcept {
    return asked - replies.size() - failed;
  }
};

// -- subscription -------------------------------------------------------------

/// A subscription handle; unsubscribes when destroyed (or on `cancel`).
/// Movable, not copyable.
class subscription {
public:
  subscription() noexcept = default;
  explicit subscription(std::shared_ptr<detail::subscriber_state> state);
  subscription(subscription&&) noexcept = default;
  subscription& operator=(subscription&& other) noexcept;
  subscription(const subscription&) = delete;
  subscription& operator=(const subscription&) = delete;
  ~subscription();

  /// Unsubscribes, and returns whether the unsubscribe is acknowledged:
  /// when it returns true, no callback of this subscription runs any more
  /// and its actor handles no further event of it. Events still queued go
  /// to the dead-letter topic as `subscriber_down`.
  ///
  /// Callback subscriptions wait for a running callback (unless called
  /// from inside it). Actor subscriptions wait until the actor has handled
  /// (replied to) every event already sent to its mailbox, at most
  /// `max_in_flight` of them; a dead actor needs no wait. Both waits end
  /// at `cancel_timeout`; cancel then returns false, and up to
  /// `max_in_flight` events may still reach the actor.
  ///
  /// Called from inside the subscribed actor itself, cancel cannot wait for
  /// that actor's own mailbox: it returns false if events are still in it,
  /// and they are handled after the current message (nothing new is sent).
  /// Idempotent; a later call returns whether the acknowledgement came.
  bool cancel();

  /// Whether the subscription still receives events (false after cancel,
  /// after its actor died, or after the bus closed).
  bool active() const noexcept;

  /// The pattern subscribed to (empty for a default-constructed handle).
  const std::string& pattern() const noexcept;

  /// Events handled by this subscription's callback or sent to its actor.
  std::uint64_t delivered() const noexcept;

  /// Events this subscription lost to its overload policy.
  std::uint64_t dropped() const noexcept;

  /// Events waiting in this subscription's queue now.
  std::size_t queued() const;

private:
  std::shared_ptr<detail::subscriber_state> state_;
};

// -- the bus ------------------------------------------------------------------

/// Typed publish/subscribe on dot-separated topics, with one bounded queue
/// and one courier actor per subscription (see the file comment).
class event_bus {
public:
  /// Creates a bus whose couriers run on `sys`. Destroy it before `sys`.
  explicit event_bus(caf::actor_system& sys, bus_config cfg = {});

  /// Creates a bus whose couriers run on the runtime's system and are
  /// tracked by it: the runtime's shutdown stops them and closes the bus,
  /// which may then be destroyed after the runtime. On a runtime that is
  /// shutting down already, the bus starts closed.
  explicit event_bus(runtime::runtime& rt, bus_config cfg = {});

  /// Closes the bus (see `close`).
  ~event_bus();

  event_bus(const event_bus&) = delete;
  event_bus& operator=(const event_bus&) = delete;

  /// Publishes `value` on `topic` from a non-actor thread (no publisher).
  /// Returns an error when the topic is invalid, the bus is closed, or a
  /// subscription with policy `fail` or `block` refused the event (the
  /// other subscribers still receive it).
  template <class T>
  caf::error publish(std::string_view topic, T&& value,
                     publish_options opts = {});

  /// Publishes on behalf of the actor `self` (its address is the
  /// publisher). Call it from inside that actor's handlers.
  template <class T>
  caf::error publish(const caf::local_actor* self, std::string_view topic,
                     T&& value, publish_options opts = {});

  /// Untyped form of `publish`: the event is the message `event`.
  caf::error publish_message(std::string_view topic, caf::message event,
                             caf::actor_addr publisher,
                             publish_options opts = {});

  /// Subscribes a callback to `pattern`. `F` takes `const event<T>&` or
  /// `const T&`; `T = caf::message` receives events of any type. Events of
  /// another type on a matching topic become `type_mismatch` dead letters.
  /// If `F` returns a value, that value is its reply to `gather`.
  template <class T, class F>
  caf::expected<subscription> subscribe(std::string_view pattern, F handler,
                                        subscription_options opts);

  /// Same with the bus's default options.
  template <class T, class F>
  caf::expected<subscription> subscribe(std::string_view pattern, F handler);

  /// Subscribes the actor `who` (see the file comment for what it
  /// receives).
  caf::expected<subscription> subscribe(std::string_view pattern,
                                        caf::actor who,
                                        subscription_options opts);

  /// Same with the bus's default options.
  caf::expected<subscription> subscribe(std::string_view pattern,
                                        caf::actor who);

  /// Scatter/gather: publishes `query` on `topic` to the subscriptions that
  /// match it now and collects their replies of type `R` until all answered
  /// or `timeout` passed. Blocks the calling thread; not for use inside an
  /// actor's handler. The query is not retained, and is not dead-lettered
  /// when nobody subscribed (the result then has `asked == 0`).
  template <class R, class Q>
  caf::expected<gather_result<R>> gather(std::string_view topic, Q&& query,
                                         caf::timespan timeout);

  /// Counters of `topic` (zeros for a topic never published to).
  topic_stats stats(std::string_view topic) const;

  /// Counters of every topic published to so far, sorted by topic.
  std::vector<std::pair<std::string, topic_stats>> all_stats() const;

  /// Active subscriptions.
  std::size_t subscription_count() const;

  /// The last retained value of `topic`, if any.
  caf::message retained(std::string_view topic) const;

  /// Forgets the retained value of `topic`. Returns whether there was one.
  bool clear_retained(std::string_view topic);

  /// Cancels every subscription (queued events become dead letters that
  /// nobody receives, only counted) and stops the couriers. Publishing then
  /// fails with `errc::closed`. Idempotent.
  void close();

  /// The options of subscriptions that pass none.
  const subscription_options& defaults() const noexcept;

  /// The actor system the couriers run on (for a bus made on a runtime:
  /// while the runtime's system exists, i.e. until its shutdown).
  caf::actor_system& system() const noexcept;

private:
  using handler_fn =
      std::function<caf::expected<caf::message>(const detail::delivery&)>;

  caf::expected<subscription> subscribe_impl(std::string_view pattern,
                                             handler_fn fn, caf::actor who,
                                             subscription_options opts);

  caf::expected<std::size_t> scatter(std::string_view topic, caf::message query,
                                     std::shared_ptr<detail::gather_sink> sink);

  std::shared_ptr<detail::bus_core> core_;
};

} // namespace actorbus::bus

#include "actorbus/bus/detail/event_bus.hpp"
