#include "actorbus/bus/error.hpp"

#include "actorbus/runtime/error.hpp"

#include <caf/message.hpp>

#include <utility>

namespace actorbus::bus {

namespace {

// Every program that can make a bus error links this file, so the
// category is registered before main (and before any runtime_config).
const bool registered = runtime::register_error_category(
    error_category, "bus", [](std::uint8_t code) noexcept {
      return to_string(static_cast<errc>(code));
    });

} // namespace

const char* to_string(errc x) noexcept {
  switch (x) {
  case errc::invalid_topic:
    return "invalid_topic";
  case errc::invalid_pattern:
    return "invalid_pattern";
  case errc::queue_full:
    return "queue_full";
  case errc::publish_timeout:
    return "publish_timeout";
  case errc::closed:
    return "closed";
  case errc::invalid_argument:
    return "invalid_argument";
  }
  return "unknown";
}

caf::error make_error(errc x) {
  (void)registered;
  return caf::error{static_cast<std::uint8_t>(x), error_category};
}

caf::error make_error(errc x, std::string context) {
  return caf::error{static_cast<std::uint8_t>(x), error_category,
                    caf::make_message(std::move(context))};
}

} // namespace actorbus::bus
