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
// Lifetime: the event_bus must be destroyed before its actor system. Its
// destructor cancels every subscription (waiting for running callbacks and
// for events in flight to actors, at most the longest `cancel_timeout`) and
// stops the couriers; subscription handles may outlive it (they are then
// inactive). Callbacks must not outlive what they capture: cancel, or
// destroy the bus, first.
//
// Clocks: `block_timeout` and the `gather` deadline are real time (they
// bound waits of non-actor threads); nothing in the bus uses actor timers.

#include "actorbus/bus/fwd.hpp"
#include "actorbus/bus/topic.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace actorbus::bus {

// -- errors -------------------------------------------------------------------

/// Errors of the bus, in CAF's error category `bus`.
enum class errc : std::uint8_t {
  /// The topic name is empty or malformed.
  invalid_topic = 1,
  /// The subscription pattern is empty or malformed.
  invalid_pattern,
  /// A subscription with `overload_policy::fail` had a full queue.
  queue_full,
  /// A subscription with `overload_policy::block` stayed full until its
  /// `block_timeout`.
  publish_timeout,
  /// The bus is closed (being destroyed).
  closed,
  /// An argument other than a topic or pattern is invalid.
  invalid_argument,
};

std::string to_string(errc x);

/// Converts an errc to a caf::error (also used implicitly: `err ==
/// errc::queue_full` works).
caf::error make_error(errc x);

/// Same, with a context text that `caf::actor_system::render` shows.
caf::error make_error(errc x, std::string context);

/// Registers the renderer for the `bus` error category on `cfg`, so that
/// `sys.render(err)` prints "bus::queue_full(...)" instead of a number.
void add_bus_types(caf::actor_system_config& cfg);

// -- options ------------------------------------------------------------------

/// What a subscription does when its queue is full.
enum class overload_policy : std::uint8_t {
  /// The publisher waits until there is room, for at most `block_timeout`;
  /// then the event is dropped and `publish` returns `publish_timeout`. Do
  /// not use it for subscriptions that actors publish to on a busy system:
  /// a waiting publisher occupies a scheduler thread.
  block,
  /// The new event is dropped; `publish` still succeeds.
  drop_newest,
  /// The oldest queued event is dropped to make room; `publish` succeeds.
  drop_oldest,
  /// The new event is dropped and `publish` returns `queue_full`.
  fail,
};

std::string to_string(overload_policy x);

/// Per-subscription settings.
struct subscription_options {
  /// Events that may wait for the subscriber (at least 1).
  std::size_t capacity = 1024;
  overload_policy policy = overload_policy::block;
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

// -- implementation details used by templates ---------------------------------

namespace detail {

/// One event as a courier hands it to a callback.
struct delivery {
  const std::string* topic;
  const caf::actor_addr* publisher;
  const caf::message* event;
};

/// Type-erased callback: returns the reply (empty for void callbacks),
/// `errc::invalid_argument` for an event of the wrong type; may throw.
using handler_fn = std::function<caf::expected<caf::message>(const delivery&)>;

/// Where the replies to one `gather` go.
class gather_sink {
public:
  virtual ~gather_sink();
  /// A callback's reply.
  virtual void offer(caf::message& reply) = 0;
  /// A failure of one subscriber.
  virtual void fail() = 0;
  /// Asks an actor subscriber; calls `done` when it answered or failed.
  virtual void ask(caf::event_based_actor* self, const caf::actor& target,
                   caf::message query, std::function<void()> done) = 0;
};

template <class R>
class typed_gather_sink
    : public gather_sink,
      public std::enable_shared_from_this<typed_gather_sink<R>> {
public:
  void offer(caf::message& reply) override {
    std::unique_lock guard{mtx_};
    if (reply.match_elements<R>())
      result_.replies.emplace_back(std::move(reply.get_mutable_as<R>(0)));
    else
      ++result_.failed;
    cv_.notify_all();
  }

  void fail() override {
    std::unique_lock guard{mtx_};
    ++result_.failed;
    cv_.notify_all();
  }

  void ask(caf::event_based_actor* self, const caf::actor& target,
           caf::message query, std::function<void()> done) override {
    auto me = this->shared_from_this();
    self->request(target, caf::infinite, std::move(query))
        .then(
            [me, done](R& x) {
              {
                std::unique_lock guard{me->mtx_};
                me->result_.replies.emplace_back(std::move(x));
                me->cv_.notify_all();
              }
              done();
            },
            [me, done](caf::error&) {
              me->fail();
              done();
            });
  }

  void expect(std::size_t n) {
    std::unique_lock guard{mtx_};
    result_.asked = n;
  }

  /// Waits until every subscriber answered or the deadline passed.
  gather_result<R> wait(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock guard{mtx_};
    cv_.wait_until(guard, deadline, [this] {
      return result_.replies.size() + result_.failed >= result_.asked;
    });
    gather_result<R> out;
    out.asked = result_.asked;
    out.failed = result_.failed;
    out.replies = result_.replies;
    return out;
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  gather_result<R> result_;
};

template <class T, class F>
handler_fn make_handler(F f) {
  return [f = std::move(f)](
             const delivery& d) mutable -> caf::expected<caf::message> {
    const T* value;
    if constexpr (std::is_same_v<T, caf::message>) {
      value = d.event;
    } else {
      if (!d.event->template match_elements<T>())
        return caf::error{static_cast<std::uint8_t>(errc::invalid_argument),
                          caf::atom("bus")};
      value = &d.event->template get_as<T>(0);
    }
    event<T> ev{*d.topic, *d.publisher, *value};
    if constexpr (std::is_invocable_v<F&, const event<T>&>) {
      using result = std::invoke_result_t<F&, const event<T>&>;
      if constexpr (std::is_void_v<result>) {
        f(ev);
        return caf::message{};
      } else {
        return caf::make_message(f(ev));
      }
    } else {
      static_assert(std::is_invocable_v<F&, const T&>,
                    "a handler takes const event<T>& or const T&");
      using result = std::invoke_result_t<F&, const T&>;
      if constexpr (std::is_void_v<result>) {
        f(*value);
        return caf::message{};
      } else {
        return caf::make_message(f(*value));
      }
    }
  };
}

} // namespace detail

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

class event_bus {
public:
  /// Creates a bus whose couriers run on `sys`.
  explicit event_bus(caf::actor_system& sys, bus_config cfg = {});

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
                     publish_options opts = {}) {
    return publish_message(topic, caf::make_message(std::forward<T>(value)),
                           caf::actor_addr{}, opts);
  }

  /// Publishes on behalf of the actor `self` (its address is the
  /// publisher). Call it from inside that actor's handlers.
  template <class T>
  caf::error publish(const caf::local_actor* self, std::string_view topic,
                     T&& value, publish_options opts = {}) {
    return publish_message(
        topic, caf::make_message(std::forward<T>(value)),
        self != nullptr ? self->address() : caf::actor_addr{}, opts);
  }

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
                                        subscription_options opts) {
    return subscribe_impl(pattern, detail::make_handler<T>(std::move(handler)),
                          caf::actor{}, opts);
  }

  /// Same with the bus's default options.
  template <class T, class F>
  caf::expected<subscription> subscribe(std::string_view pattern, F handler) {
    return subscribe<T>(pattern, std::move(handler), defaults());
  }

  /// Subscribes the actor `who` (see the file comment for what it
  /// receives).
  caf::expected<subscription> subscribe(std::string_view pattern,
                                        caf::actor who,
                                        subscription_options opts);

  caf::expected<subscription> subscribe(std::string_view pattern,
                                        caf::actor who) {
    return subscribe(pattern, std::move(who), defaults());
  }

  /// Scatter/gather: publishes `query` on `topic` to the subscriptions that
  /// match it now and collects their replies of type `R` until all answered
  /// or `timeout` passed. Blocks the calling thread; not for use inside an
  /// actor's handler. The query is not retained, and is not dead-lettered
  /// when nobody subscribed (the result then has `asked == 0`).
  template <class R, class Q>
  caf::expected<gather_result<R>> gather(std::string_view topic, Q&& query,
                                         caf::timespan timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto sink = std::make_shared<detail::typed_gather_sink<R>>();
    auto asked =
        scatter(topic, caf::make_message(std::forward<Q>(query)), sink);
    if (!asked)
      return std::move(asked.error());
    sink->expect(*asked);
    return sink->wait(deadline);
  }

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

  const subscription_options& defaults() const noexcept;

  caf::actor_system& system() const noexcept;

private:
  caf::expected<subscription> subscribe_impl(std::string_view pattern,
                                             detail::handler_fn fn,
                                             caf::actor who,
                                             subscription_options opts);

  caf::expected<std::size_t> scatter(std::string_view topic, caf::message query,
                                     std::shared_ptr<detail::gather_sink> sink);

  std::shared_ptr<detail::bus_core> core_;
};

} // namespace actorbus::bus
