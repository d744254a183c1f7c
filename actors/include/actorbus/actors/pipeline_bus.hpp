#pragma once

// A pipeline sink that publishes every item on an event-bus topic.
//
//   auto plan = pipeline::from_iota(0, 100)
//                   .then("double", [](int64_t& x) { return 2 * x; })
//                   .to(pipeline::to_topic<int64_t>(bus, "numbers.doubled"));
//
// The sink publishes from its actor, one item at a time, in arrival order,
// so each subscriber sees the items in that order. A publish the bus refuses
// (invalid topic, closed bus, a subscriber with the `fail` policy full, a
// `block` subscriber timing out) stops the whole run with `sink_failed`,
// naming the bus's error. Item types must be CAF message types (built-in or
// registered). The bus must outlive the run.

#include "actorbus/actors/pipeline.hpp"
#include "actorbus/bus/event_bus.hpp"

#include <stdexcept>
#include <string>
#include <utility>

namespace actorbus::actors::pipeline {

/// A sink callable for `flow<T>::to` publishing each item on `topic`.
template <class T>
auto to_topic(bus::event_bus& bus, std::string topic) {
  return [&bus, topic = std::move(topic)](T&& x) {
    if (auto err = bus.publish(topic, std::move(x)))
      throw std::runtime_error("publish on '" + topic +
                               "' refused: " + caf::to_string(err));
  };
}

} // namespace actorbus::actors::pipeline
