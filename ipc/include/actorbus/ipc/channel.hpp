#pragma once

// A crash-safe, bidirectional message channel between two processes over a
// named shared-memory segment.
//
// One process creates the channel (the owner), one other process opens it
// (the peer). Each direction is a lock-free single-producer/single-consumer
// ring of length-prefixed frames, so no lock exists that a killed process
// could leave held. Blocking calls sleep on a futex in the segment and always
// take a timeout; while waiting they check every `liveness_interval` that the
// other process is still alive (pid plus start time, so a zombie or a reused
// pid counts as dead), so a killed peer is reported as `errc::peer_dead`
// within that interval.
//
// Thread-safety: one thread may send while another receives; two concurrent
// senders (or receivers) on the same channel object are not allowed. Any
// thread may call `close` while a send or receive blocks in another; that
// call returns at once with `errc::invalid_argument`.
// Ownership: the owner unlinks the segment when it is closed or destroyed;
// a segment left by a crashed owner is reclaimed by the next `create` (or
// unlinked by a peer that notices the owner died).

#include "actorbus/ipc/error.hpp"

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace actorbus::ipc {

/// Sizes and timing of a channel, fixed by its owner at creation.
struct channel_options {
  /// Bytes of ring buffer per direction; rounded up to a power of two.
  size_t capacity = size_t{1} << 20;
  /// Largest frame either side may send or accept.
  size_t max_frame = size_t{64} << 10;
  /// How often a blocked call checks that the other process lives.
  caf::timespan liveness_interval = std::chrono::milliseconds(50);
};

/// One end of a shared-memory channel. Movable, not copyable.
class channel {
public:
  using timeout_type = std::chrono::nanoseconds;

  /// Creates the segment `name` (mode 0600, exclusively) and becomes its
  /// owner. A segment with that name whose header is garbage or whose owner
  /// is dead is reclaimed first; one owned by a live process gives
  /// `errc::already_exists`. Names are 1-200 characters without '/'.
  [[nodiscard]] static caf::expected<channel> create(const std::string& name,
                                                     channel_options opts = {});

  /// Opens the segment `name` as the peer, waiting up to `wait` for it to
  /// appear. Refuses segments of another user or with a mode other than 0600
  /// (`errc::permission_denied`), with a bad header (`errc::incompatible`),
  /// whose owner is dead (`errc::peer_dead`) or with a live peer attached
  /// (`errc::busy`).
  [[nodiscard]] static caf::expected<channel>
  open(const std::string& name, timeout_type wait = timeout_type{0});

  channel(channel&&) noexcept;
  channel& operator=(channel&&) noexcept;
  ~channel();

  /// Sends one frame, waiting up to `timeout` for ring space. Frames larger
  /// than `max_frame()` are rejected whole with `errc::frame_too_large`.
  [[nodiscard]] caf::error send(std::span<const std::byte> frame,
                                timeout_type timeout);

  /// Receives one frame into `out` (resized to fit), waiting up to
  /// `timeout`. Frames already in the ring are delivered even after the
  /// other side closed or died; after that comes `errc::peer_closed` or
  /// `errc::peer_dead`.
  [[nodiscard]] caf::error receive(std::vector<std::byte>& out,
                                   timeout_type timeout);

  /// Receives one frame into a new buffer.
  [[nodiscard]] caf::expected<std::vector<std::byte>>
  receive(timeout_type timeout);

  /// Tells the other side that this side is done and, for the owner,
  /// unlinks the segment. Idempotent; the destructor calls it. May run
  /// while another thread blocks in `send` or `receive` (see above); the
  /// mapping stays valid until the object is destroyed.
  void close() noexcept;

  /// Returns whether this end is the owner (the creator).
  [[nodiscard]] bool is_owner() const noexcept;

  /// Returns whether a peer is attached and still alive (owner side), or
  /// whether the owner is still alive (peer side).
  [[nodiscard]] bool other_side_alive() const;

  /// Returns the largest frame this channel carries.
  [[nodiscard]] size_t max_frame() const noexcept;

  /// Returns the segment name.
  [[nodiscard]] const std::string& name() const noexcept;

  /// Returns the segment's generation, a random number fixed at creation.
  [[nodiscard]] uint64_t generation() const noexcept;

private:
  struct impl;
  explicit channel(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace actorbus::ipc
