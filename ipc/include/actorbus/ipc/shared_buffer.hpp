#pragma once

// Zero-copy handoff of large buffers between processes. A process allocates
// a buffer in its own shared-memory segment (mode 0600), fills it, and sends
// its small `buffer_handle` through a channel; the receiver maps the same
// pages. Nothing is copied, whatever the size.
//
// Lifetime is counted across processes: every mapping occupies a holder slot
// (pid + start time) in the segment; releasing the last live holder unlinks
// it, and slots of dead processes do not count, so a holder that crashes
// cannot keep a buffer alive. A sender must hold its buffer until the
// receiver has mapped it (e.g. until the receiver replies); if every holder
// dies, `shared_buffer::sweep()` removes the orphan.
// Thread-safety: a shared_buffer object is not synchronized; the bytes are
// shared memory and need the caller's own protocol.

#include "actorbus/ipc/error.hpp"

#include <caf/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace actorbus::ipc {

/// Names a shared buffer; trivially copyable, send it as bytes.
struct buffer_handle {
  char name[56] = {};
  uint64_t generation = 0;
  uint64_t size = 0;

  /// The handle's bytes, to put in a frame.
  std::span<const std::byte> bytes() const noexcept {
    return std::as_bytes(std::span{this, 1});
  }

  /// Reads a handle from a frame; `errc::corrupt_frame` on a wrong size or
  /// a name that is not NUL-terminated.
  static caf::expected<buffer_handle>
  from_bytes(std::span<const std::byte> bytes);
};

/// One process's reference to a shared buffer. Movable, not copyable.
class shared_buffer {
public:
  /// Most processes that may map one buffer at the same time.
  static constexpr size_t max_holders = 32;

  /// Allocates a zeroed buffer of `size` bytes held by this process.
  [[nodiscard]] static caf::expected<shared_buffer> allocate(size_t size);

  /// Maps the buffer named by `handle` and becomes one of its holders.
  /// `errc::not_found` if it is gone, `errc::incompatible` if the name now
  /// refers to another buffer, `errc::busy` if all holder slots are taken.
  [[nodiscard]] static caf::expected<shared_buffer>
  map(const buffer_handle& handle);

  /// Unlinks buffers (made by any process of this user) whose holders are
  /// all dead; returns how many it removed.
  static size_t sweep();

  shared_buffer(shared_buffer&&) noexcept;
  shared_buffer& operator=(shared_buffer&&) noexcept;
  ~shared_buffer();

  /// The handle to send to another process.
  [[nodiscard]] buffer_handle handle() const noexcept;

  /// The buffer's bytes (empty after release).
  [[nodiscard]] std::span<std::byte> bytes() const noexcept;

  /// Number of live holders, this one included.
  [[nodiscard]] size_t holders() const;

  /// Gives up this holder's reference; the last live holder unlinks.
  void release() noexcept;

private:
  struct impl;
  explicit shared_buffer(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace actorbus::ipc
