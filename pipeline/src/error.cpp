#include "actorbus/pipeline/error.hpp"

#include "actorbus/runtime/error.hpp"

#include "run_state.hpp"

#include <caf/message.hpp>

#include <exception>
#include <stdexcept>
#include <utility>

namespace actorbus::pipeline {

namespace {

// Registered at static initialisation, before any runtime_config exists.
const bool registered = runtime::register_error_category(
    error_category, "pipeline", [](std::uint8_t code) noexcept {
      return to_string(static_cast<errc>(code));
    });

} // namespace

const char* to_string(errc x) noexcept {
  switch (x) {
  case errc::cancelled:
    return "cancelled";
  case errc::deadline_exceeded:
    return "deadline_exceeded";
  case errc::item_failed:
    return "item_failed";
  case errc::source_failed:
    return "source_failed";
  case errc::sink_failed:
    return "sink_failed";
  case errc::actor_failed:
    return "actor_failed";
  }
  return "unknown";
}

caf::error make_error(errc x) {
  (void)registered;
  return caf::error{static_cast<std::uint8_t>(x), error_category};
}

caf::error make_error(errc x, std::string context) {
  (void)registered;
  return caf::error{static_cast<std::uint8_t>(x), error_category,
                    caf::make_message(std::move(context))};
}

std::string internal::exception_text(std::exception_ptr ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

caf::error detail::error_from_exception(std::exception_ptr ep) {
  return make_error(errc::item_failed, internal::exception_text(ep));
}

} // namespace actorbus::pipeline
