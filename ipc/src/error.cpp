#include "actorbus/ipc/error.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace actorbus::ipc {

namespace {

const bool registered = runtime::register_error_category(
    error_category, "ipc", [](std::uint8_t code) noexcept {
      return to_string(static_cast<errc>(code));
    });

} // namespace

const char* to_string(errc x) noexcept {
  switch (x) {
  case errc::timeout:
    return "timeout";
  case errc::peer_dead:
    return "peer_dead";
  case errc::peer_closed:
    return "peer_closed";
  case errc::frame_too_large:
    return "frame_too_large";
  case errc::corrupt_frame:
    return "corrupt_frame";
  case errc::already_exists:
    return "already_exists";
  case errc::not_found:
    return "not_found";
  case errc::permission_denied:
    return "permission_denied";
  case errc::incompatible:
    return "incompatible";
  case errc::busy:
    return "busy";
  case errc::invalid_argument:
    return "invalid_argument";
  case errc::system_error:
    return "system_error";
  case errc::task_crashed:
    return "task_crashed";
  }
  return "unknown";
}

caf::error make_error(errc x) {
  // Refers to the registration, so that a static link keeps it.
  (void)registered;
  return caf::error{static_cast<uint8_t>(x), error_category};
}

caf::error make_error(errc x, std::string what) {
  return caf::error{static_cast<uint8_t>(x), error_category,
                    caf::make_message(std::move(what))};
}

} // namespace actorbus::ipc
