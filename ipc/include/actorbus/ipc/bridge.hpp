#pragma once

// The bus bridge: topics published in one process reach subscribers in
// another. A bridge attaches a local `bus::event_bus` to one end of a
// channel; events published locally on its export patterns go to the other
// process, whose bridge publishes them on its own bus with the same topic
// and value. Configure export patterns on both sides for both directions.
//
// Publisher: events that arrived from the other process are published with
// `remote_publisher()` as their publisher, an actor standing for the peer.
// A bridge never sends such events back, so two bridges that export
// overlapping patterns make no echo loop.
//
// Types: event values cross as CAF binary serialization behind the checked
// frame layer (frame.hpp); their types must be registered in both actor
// systems (`cfg.add_message_type<T>("name")`) and on the frame layer's
// allow-list (no actor handles, groups or nested messages).
//
// Ordering: events of one publisher matched by one export pattern reach
// each remote subscriber in publish order (one local subscription per
// pattern, one channel, one reader). Events of one publisher that match
// different export patterns travel through different subscriptions and may
// interleave differently: export one pattern ("#", "app.#") when their
// relative order matters. An event matching several patterns crosses once.
//
// Overload and loss: exported events wait in the bridge's local
// subscriptions (`bridge_options::subscription`, the bus's policies apply
// when they fill); a full channel makes the sender wait up to
// `send_timeout`. On the receiving side the bridge publishes like any
// publisher, so the receiving subscriptions' policies apply (a `block`
// subscription slows the reader, which fills the channel, which slows the
// sender: backpressure across processes). An event that cannot be sent
// (serialization failed, timeout, peer gone) becomes a `handler_failed`
// dead letter on the sending bus with the reason; drops on either bus are
// dead-lettered by that bus. A frame from the other process that does not
// decode (corrupt, truncated, not an event, invalid topic) becomes an
// `undecodable` dead letter on the receiving bus: `detail` starts with
// "bus bridge '<channel>': undecodable frame" and gives the cause, `topic`
// is the frame's topic if it had one (else empty), `publisher` is
// `remote_publisher()`, `event` holds the frame's bytes as a
// `std::vector<uint8_t>`; the reader goes on with the next frame.
// `stats()` counts all of it. Nothing is lost silently.
//
// Peer death: when the other process dies or closes its end, `on_down` is
// called once (within the channel's liveness interval) with
// `errc::peer_dead` or `errc::peer_closed`; later exported events become
// dead letters at once. Events handed to the channel in the last liveness
// interval before the peer died are lost with it (as with any buffered
// transport). No call of the bridge waits without a bound.
//
// Lifetime: destroy (or `stop`) the bridge before its bus. The bridge owns
// the channel and one reader thread.

#include "actorbus/bus/event_bus.hpp"
#include "actorbus/ipc/channel.hpp"

#include <caf/actor_addr.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace actorbus::ipc {

/// What a bridge sends, and how.
struct bridge_options {
  /// Topic patterns whose local events go to the other process (bus
  /// pattern syntax, e.g. "orders.#"; reserved '$' topics stay local).
  /// Empty: this side only receives.
  std::vector<std::string> export_patterns;
  /// Options of the local subscriptions that collect exported events.
  bus::subscription_options subscription;
  /// Longest wait for room in the channel before an event is given up.
  caf::timespan send_timeout = std::chrono::seconds(1);
  /// Called once, from the bridge's reader thread, when the other side
  /// dies or closes. It must not stop or destroy the bridge.
  std::function<void(const caf::error&)> on_down;
};

/// Counters of one bridge (monotonic).
struct bridge_stats {
  /// Local events sent to the other process.
  uint64_t sent = 0;
  /// Local events that could not be sent (each also a dead letter).
  uint64_t send_failed = 0;
  /// Events from the other process published on the local bus.
  uint64_t received = 0;
  /// Of those, events that a local subscription with policy `fail` or
  /// `block` refused (the bus dead-lettered them for that subscription).
  uint64_t refused = 0;
  /// Frames from the other process that did not decode, or carried an
  /// invalid topic; each also a dead letter on the local bus.
  uint64_t undecodable = 0;
};

/// Connects a local bus to the bus of the process at the other end of a
/// channel. Movable, not copyable; all member functions are thread-safe.
class bus_bridge {
public:
  /// Starts bridging `bus` over `ch`. Fails with `errc::invalid_argument`
  /// for an invalid export pattern.
  [[nodiscard]] static caf::expected<bus_bridge>
  start(bus::event_bus& bus, channel ch, bridge_options opts = {});

  bus_bridge(bus_bridge&&) noexcept;
  bus_bridge& operator=(bus_bridge&&) noexcept;
  ~bus_bridge();

  /// Cancels the export subscriptions (events still queued in them become
  /// dead letters), stops the reader and closes the channel, which the
  /// other side sees as `errc::peer_closed`. Idempotent; bounded by
  /// `send_timeout` plus the receiving bus's `block_timeout`.
  void stop() noexcept;

  /// Whether the other side is still there (false after `on_down`).
  [[nodiscard]] bool connected() const noexcept;

  /// Why the bridge went down (none while connected).
  [[nodiscard]] caf::error down_reason() const;

  /// The publisher of every event that arrived from the other process.
  [[nodiscard]] caf::actor_addr remote_publisher() const;

  /// Current counters.
  [[nodiscard]] bridge_stats stats() const;

private:
  struct impl;
  explicit bus_bridge(std::shared_ptr<impl> ptr);
  std::shared_ptr<impl> impl_;
};

} // namespace actorbus::ipc
