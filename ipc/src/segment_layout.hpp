#pragma once

// Memory layout of a channel segment. Private to the ipc module (tests
// include it to plant corrupt frames and stale headers).
//
//   [segment_header][ring 0 bytes][ring 1 bytes]
//
// Ring 0 carries owner -> peer, ring 1 peer -> owner. A frame is a 32-bit
// length followed by the payload, padded to 8 bytes; the capacity is a power
// of two and a multiple of 8, so a length word never straddles the wrap.

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace actorbus::ipc::internal {

inline constexpr uint64_t channel_magic = 0x31484341'42524f41; // "AORBACH1"
inline constexpr uint32_t channel_version = 1;
inline constexpr size_t frame_header_size = 4;
inline constexpr size_t frame_alignment = 8;

/// Bytes a frame of `len` payload bytes occupies in a ring.
constexpr uint64_t frame_footprint(uint64_t len) {
  return (frame_header_size + len + frame_alignment - 1) &
         ~uint64_t{frame_alignment - 1};
}

/// Control words of one direction. Producer and consumer words live on
/// separate cache lines.
struct ring_control {
  alignas(64) std::atomic<uint64_t> head;     // next write position (producer)
  alignas(64) std::atomic<uint64_t> tail;     // next read position (consumer)
  alignas(64) std::atomic<uint32_t> data_seq; // futex: bumped on new data
  std::atomic<uint32_t> reader_waiting;
  alignas(64) std::atomic<uint32_t> space_seq; // futex: bumped on free space
  std::atomic<uint32_t> writer_waiting;
};

struct segment_header {
  /// Written last by the creator (release): a valid magic means a complete
  /// header.
  std::atomic<uint64_t> magic;
  uint32_t version;
  uint32_t header_size;
  uint64_t generation;
  uint64_t capacity;
  uint64_t max_frame;
  uint64_t liveness_interval_ms;
  /// Identity words (see liveness.hpp) of owner and peer; 0 = none.
  std::atomic<uint64_t> owner;
  std::atomic<uint64_t> peer;
  std::atomic<uint32_t> owner_closed;
  std::atomic<uint32_t> peer_closed;
  /// Monotonic milliseconds of each side's last wakeup, for diagnostics.
  std::atomic<uint64_t> owner_heartbeat;
  std::atomic<uint64_t> peer_heartbeat;
  ring_control rings[2];
};

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

/// Total segment size for a given per-direction capacity.
constexpr uint64_t segment_size(uint64_t capacity) {
  return sizeof(segment_header) + 2 * capacity;
}

} // namespace actorbus::ipc::internal
