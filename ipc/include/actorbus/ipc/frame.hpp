#pragma once

// The frame layer between channels and CAF: a fixed 16-byte header (magic,
// version, kind, payload size, correlation id) in front of a payload, and
// CAF binary serialization of messages whose every length is checked
// against the bytes actually present before CAF allocates anything.
//
// CAF 0.17.6's binary deserializer trusts the lengths in its input (a 6-byte
// input can ask for gigabytes), so `decode_message` never hands raw input to
// it: sequence and string lengths are validated first, varbyte lengths longer
// than 5 bytes are rejected, and the payload size is capped by the caller's
// maximum. All functions are thread-safe and never throw on bad input.

#include "actorbus/ipc/error.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace actorbus::ipc {

/// What a frame carries.
enum class frame_kind : uint8_t {
  /// An asynchronous message (payload: a serialized caf::message).
  message = 1,
  /// A request; the reply carries the same id.
  request,
  /// A reply to a request (payload: a serialized caf::message).
  response,
  /// A request failed (payload: a serialized caf::message with the error).
  error_response,
  /// Raw bytes for the user (payload: anything).
  raw,
  /// The sender is going away (no payload).
  goodbye,
};

/// Bytes in front of every payload.
inline constexpr size_t frame_header_size = 16;

/// A decoded frame; `payload` points into the decoded buffer.
struct frame_view {
  frame_kind kind = frame_kind::raw;
  uint64_t id = 0;
  std::span<const std::byte> payload;
};

/// Appends header and payload to `out` (cleared first).
void encode_frame(frame_kind kind, uint64_t id,
                  std::span<const std::byte> payload,
                  std::vector<std::byte>& out);

/// Validates magic, version, kind and that the declared payload size equals
/// the bytes present and is at most `max_payload`; `errc::corrupt_frame`
/// or `errc::frame_too_large` otherwise.
[[nodiscard]] caf::expected<frame_view>
decode_frame(std::span<const std::byte> bytes, size_t max_payload);

/// Serializes `msg` with CAF's binary serializer; its element types must be
/// registered in `sys` (`cfg.add_message_type<T>("name")`).
[[nodiscard]] caf::expected<std::vector<std::byte>>
encode_message(caf::actor_system& sys, const caf::message& msg);

/// Deserializes a message produced by `encode_message`, checking every
/// length first. Trailing bytes are an error.
[[nodiscard]] caf::expected<caf::message>
decode_message(caf::actor_system& sys, std::span<const std::byte> bytes);

} // namespace actorbus::ipc
