#pragma once

// Forward declarations of the bus module's types.

#include <cstdint>

namespace actorbus::bus {

class event_bus;
class subscription;
struct subscription_options;
struct publish_options;
struct dead_letter;
struct topic_stats;
enum class errc : std::uint8_t;
enum class dead_letter_reason : std::uint8_t;

template <class T>
class event;

template <class R>
struct gather_result;

namespace detail {

class bus_core;
class subscriber_state;
struct delivery;
class gather_sink;

} // namespace detail

} // namespace actorbus::bus
