#include "actorbus/ipc/frame.hpp"

#include "checked_deserializer.hpp"

#include <caf/actor_system.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/message.hpp>

#include <cctype>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

namespace actorbus::ipc {

namespace {

constexpr uint16_t frame_magic = 0xAB1C;
constexpr uint8_t frame_version = 1;

// Header: magic u16, version u8, kind u8, payload size u32, id u64; host
// byte order (both ends share a machine).
struct raw_header {
  uint16_t magic;
  uint8_t version;
  uint8_t kind;
  uint32_t size;
  uint64_t id;
};

static_assert(sizeof(raw_header) == frame_header_size);

bool valid_kind(uint8_t k) {
  return k >= static_cast<uint8_t>(frame_kind::message) &&
         k <= static_cast<uint8_t>(frame_kind::goodbye);
}

// CAF's built-in types a message from another process may carry. Handles
// (actors, groups, nodes), nested messages, errors and stream messages stay
// out: they need a middleman or can recurse.
bool allowed_builtin(std::string_view name) {
  static constexpr std::string_view allowed[] = {
      "@i8",       "@i16",    "@i32",     "@i64",    "@u8",       "@u16",
      "@u32",      "@u64",    "@str",     "@u16str", "@u32str",   "@atom",
      "@charbuf",  "@strvec", "@strset",  "@strmap", "@timespan", "@timestamp",
      "@duration", "@unit",   "@ldouble", "bool",    "float",     "double"};
  for (auto x : allowed)
    if (x == name)
      return true;
  return false;
}

// Reads the message's type list ("@<>+t1+t2...") before CAF does and checks
// each name: built-ins from the allow-list, or user types (names without
// '@', which CAF then looks up among the registered ones).
caf::error check_type_list(std::span<const std::byte> bytes) {
  auto bad = [](std::string what) {
    return make_error(errc::corrupt_frame, std::move(what));
  };
  if (bytes.size() < 3 || bytes[0] != std::byte{0} || bytes[1] != std::byte{0})
    return bad("message encoding does not start with a type list");
  size_t pos = 2;
  uint32_t len = 0;
  for (int n = 0;; ++n) {
    if (n == 5 || pos >= bytes.size())
      return bad("bad length of the type list");
    auto b = static_cast<uint8_t>(bytes[pos++]);
    len |= static_cast<uint32_t>(b & 0x7F) << (7 * n);
    if ((b & 0x80) == 0)
      break;
  }
  if (len > bytes.size() - pos)
    return bad("type list longer than the message");
  std::string_view names{reinterpret_cast<const char*>(bytes.data() + pos),
                         len};
  if (names == "@<>")
    return caf::none;
  if (names.substr(0, 4) != "@<>+")
    return bad("malformed type list");
  names.remove_prefix(4);
  while (!names.empty()) {
    auto end = names.find('+');
    auto name = names.substr(0, end);
    if (name.empty() || (name[0] == '@' && !allowed_builtin(name)) ||
        (name[0] != '@' && !std::isalpha(static_cast<unsigned char>(name[0]))))
      return bad("type '" + std::string{name} +
                 "' may not cross a process boundary");
    if (end == std::string_view::npos)
      break;
    names.remove_prefix(end + 1);
  }
  return caf::none;
}

} // namespace

void encode_frame(frame_kind kind, uint64_t id,
                  std::span<const std::byte> payload,
                  std::vector<std::byte>& out) {
  raw_header hdr{frame_magic, frame_version, static_cast<uint8_t>(kind),
                 static_cast<uint32_t>(payload.size()), id};
  out.resize(frame_header_size + payload.size());
  std::memcpy(out.data(), &hdr, sizeof(hdr));
  if (!payload.empty())
    std::memcpy(out.data() + frame_header_size, payload.data(), payload.size());
}

caf::expected<frame_view> decode_frame(std::span<const std::byte> bytes,
                                       size_t max_payload) {
  if (bytes.size() < frame_header_size)
    return make_error(errc::corrupt_frame,
                      "frame of " + std::to_string(bytes.size()) +
                          " bytes is shorter than its header");
  raw_header hdr{};
  std::memcpy(&hdr, bytes.data(), sizeof(hdr));
  if (hdr.magic != frame_magic || hdr.version != frame_version)
    return make_error(errc::corrupt_frame, "bad frame magic or version");
  if (!valid_kind(hdr.kind))
    return make_error(errc::corrupt_frame,
                      "unknown frame kind " + std::to_string(hdr.kind));
  if (hdr.size > max_payload)
    return make_error(errc::frame_too_large,
                      "payload of " + std::to_string(hdr.size) +
                          " bytes exceeds the maximum of " +
                          std::to_string(max_payload));
  if (hdr.size != bytes.size() - frame_header_size)
    return make_error(errc::corrupt_frame,
                      "frame declares " + std::to_string(hdr.size) +
                          " payload bytes but carries " +
                          std::to_string(bytes.size() - frame_header_size));
  return frame_view{static_cast<frame_kind>(hdr.kind), hdr.id,
                    bytes.subspan(frame_header_size)};
}

caf::expected<std::vector<std::byte>> encode_message(caf::actor_system& sys,
                                                     const caf::message& msg) {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  if (auto err = msg.save(sink))
    return make_error(errc::invalid_argument,
                      "cannot serialize message: " + sys.render(err));
  std::vector<std::byte> result(buf.size());
  if (!buf.empty())
    std::memcpy(result.data(), buf.data(), buf.size());
  return result;
}

caf::expected<caf::message> decode_message(caf::actor_system& sys,
                                           std::span<const std::byte> bytes) {
  if (auto err = check_type_list(bytes))
    return err;
  internal::checked_deserializer source{
      sys, reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  caf::message result;
  // message::load reports errors that `source(result)` would swallow.
  try {
    if (auto err = result.load(source))
      return make_error(errc::corrupt_frame,
                        "cannot deserialize message: " + sys.render(err));
  } catch (const std::exception& ex) {
    // CAF raises on some invalid inputs (e.g. a bad variant index).
    return make_error(errc::corrupt_frame,
                      std::string{"cannot deserialize message: "} + ex.what());
  }
  if (source.remaining() != 0)
    return make_error(errc::corrupt_frame,
                      std::to_string(source.remaining()) +
                          " trailing bytes after the message");
  return result;
}

} // namespace actorbus::ipc
