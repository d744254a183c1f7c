#include "actorbus/queue/error.hpp"

#include <caf/message.hpp>

namespace actorbus::queue {

namespace {

const bool registered = runtime::register_error_category(
    error_category, "queue", [](std::uint8_t code) noexcept {
      return to_string(static_cast<errc>(code));
    });

} // namespace

const char* to_string(errc x) noexcept {
  switch (x) {
  case errc::unreachable:
    return "unreachable";
  case errc::redis_error:
    return "redis_error";
  case errc::not_found:
    return "not_found";
  case errc::malformed_entry:
    return "malformed_entry";
  case errc::malformed_payload:
    return "malformed_payload";
  case errc::unknown_task:
    return "unknown_task";
  case errc::handler_failed:
    return "handler_failed";
  case errc::stopped:
    return "stopped";
  }
  return "unknown";
}

caf::error make_error(errc x) {
  // Refers to the registration, so that a static link keeps it.
  static_cast<void>(registered);
  return caf::error{static_cast<std::uint8_t>(x), error_category};
}

caf::error make_error(errc x, std::string context) {
  return caf::error{static_cast<std::uint8_t>(x), error_category,
                    caf::make_message(std::move(context))};
}

} // namespace actorbus::queue
