#pragma once

// Pipelines and the event bus: a source reading a topic pattern and a sink
// publishing on a topic.
//
//   namespace pipeline = actorbus::pipeline;
//   auto plan =
//       pipeline::from_topic<order>(bus, "orders.*", {.max_items = 1000})
//           .then("price", [](order& o) { return o.total(); })
//           .to(pipeline::to_topic<double>(bus, "orders.priced"));
//
// Source: `run` subscribes the pipeline's source actor to the pattern (as
// an actor subscriber) before it returns, so nothing published afterwards
// misses the pipeline. Each event is acknowledged to the bus only once it
// went downstream, so a stalled pipeline holds at most the subscription's
// `max_in_flight` events in its source, and the subscription at most
// `capacity` events in all (those included); then the subscription's
// overload policy applies (block the publisher, drop and count, fail the
// publish). Nothing is lost silently: events of another type, and events the
// source held when the run stopped (cancel, deadline, abort), go to the bus's
// dead letters. Events of one publisher keep their order. A topic has no end of
// its own: the stream ends after `max_items` items, at the first item for which
// `end_when` returns true (that item is not passed on), or after `idle_timeout`
// without an event (measured on the actor clock, so the end comes between one
// and two timeouts after the last event); otherwise it runs until cancelled or
// its deadline.
//
// Sink: publishes from its actor, one item at a time, in arrival order, so
// each subscriber sees the items in that order. A publish the bus refuses
// (invalid topic, closed bus, a subscriber with the `fail` policy full, a
// `block` subscriber timing out) stops the whole run with `sink_failed`,
// whose context names the bus's error ("publish on 'x' refused:
// bus.<code>: ...").
//
// Item types must be CAF message types (built-in or registered). The bus
// must outlive the run.

#include "actorbus/bus/event_bus.hpp"
#include "actorbus/bus/topic.hpp"
#include "actorbus/pipeline/pipeline.hpp"
#include "actorbus/runtime/error.hpp"

#include <caf/actor_addr.hpp>
#include <caf/message.hpp>

#include <algorithm>
#include <functional>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

namespace actorbus::pipeline {

/// Options of a topic source.
template <class T>
struct topic_source_options {
  /// The bus subscription: `capacity` and `policy` say what happens to
  /// publishers while the pipeline is stalled; `max_in_flight` is how many
  /// events the source holds at most.
  bus::subscription_options subscription{};
  /// Ends the stream after this many items (0: no limit).
  std::size_t max_items = 0;
  /// Ends the stream at the first item for which it returns true; that item
  /// is not passed on. May be empty.
  std::function<bool(const T&)> end_when = nullptr;
  /// Ends the stream after this long without an event (0: never).
  caf::timespan idle_timeout{0};
};

/// A source of the events of type `T` published on topics matching
/// `pattern` (see the file comment).
template <class T>
flow<T> from_topic(bus::event_bus& bus, std::string pattern,
                   topic_source_options<T> opts = {}) {
  detail::plan_spec spec;
  spec.source.name = "topic " + pattern;
  if (!bus::is_valid_pattern(pattern))
    spec.source.error = make_error(errc::source_failed,
                                   "invalid topic pattern '" + pattern + "'");
  spec.source.make_batch = &detail::make_batch<T>;
  detail::push_spec push;
  push.attach =
      [&bus, pattern, sub_opts = opts.subscription](
          const caf::actor& self) -> caf::expected<std::shared_ptr<void>> {
    auto sub = bus.subscribe(pattern, self, sub_opts);
    if (!sub)
      return std::move(sub.error());
    return std::shared_ptr<void>{
        std::make_shared<bus::subscription>(std::move(*sub))};
  };
  push.take = [end_when = std::move(opts.end_when)](
                  caf::message& msg, std::any& batch) -> detail::push_result {
    if (!msg.match_elements<std::string, caf::actor_addr, T>())
      return detail::push_result::rejected;
    auto& x = msg.get_mutable_as<T>(2);
    if (end_when && end_when(std::as_const(x)))
      return detail::push_result::end;
    detail::items<T>(batch).push_back(std::move(x));
    return detail::push_result::item;
  };
  push.take_front = [](std::any& batch, std::size_t n) {
    auto& xs = detail::items<T>(batch);
    n = std::min(n, xs.size());
    std::vector<T> front(std::make_move_iterator(xs.begin()),
                         std::make_move_iterator(xs.begin() + n));
    xs.erase(xs.begin(), xs.begin() + n);
    return std::any{std::move(front)};
  };
  push.max_items = opts.max_items;
  push.idle_timeout = opts.idle_timeout;
  spec.source.push = std::move(push);
  return flow<T>{std::move(spec)};
}

/// A sink callable for `flow<T>::to` publishing each item on `topic`.
template <class T>
auto to_topic(bus::event_bus& bus, std::string topic) {
  return [&bus, topic = std::move(topic)](T&& x) {
    if (auto err = bus.publish(topic, std::move(x)))
      throw std::runtime_error("publish on '" + topic +
                               "' refused: " + runtime::describe(err));
  };
}

} // namespace actorbus::pipeline
