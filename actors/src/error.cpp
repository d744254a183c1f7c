#include "actorbus/actors/error.hpp"

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/log.hpp"

#include <caf/message.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/sec.hpp>

#include <utility>

namespace actorbus::actors {

namespace {

const bool category_registered = runtime::register_error_category(
    error_category, "actors", [](std::uint8_t code) noexcept {
      return to_string(static_cast<errc>(code));
    });

} // namespace

const char* to_string(errc x) noexcept {
  switch (x) {
  case errc::intensity_exceeded:
    return "intensity_exceeded";
  case errc::not_dynamic:
    return "not_dynamic";
  case errc::closed:
    return "closed";
  case errc::timeout:
    return "timeout";
  case errc::no_unfinished_task:
    return "no_unfinished_task";
  case errc::full:
    return "full";
  }
  return "unknown";
}

caf::error make_error(errc x) {
  // Referencing the registration keeps it in every program that makes an
  // actors error, even when the linker drops unreferenced objects.
  (void)category_registered;
  return caf::error{static_cast<std::uint8_t>(x), error_category};
}

caf::error make_error(errc x, std::string context) {
  (void)category_registered;
  return caf::error{static_cast<std::uint8_t>(x), error_category,
                    caf::make_message(std::move(context))};
}

caf::error error_from_exception(const std::exception_ptr& ex,
                                const std::string& prefix) {
  std::string what = "unknown exception";
  try {
    if (ex)
      std::rethrow_exception(ex);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    // keep "unknown exception"
  }
  if (!prefix.empty())
    what = prefix + ": " + what;
  return caf::make_error(caf::sec::runtime_error, std::move(what));
}

void report_exceptions(caf::scheduled_actor* self) {
  self->set_exception_handler(
      [](caf::scheduled_actor* me, std::exception_ptr& ex) {
        auto err = error_from_exception(ex);
        runtime::log(me, runtime::log_level::error, "exception: {}",
                     runtime::describe(err));
        return err;
      });
}

} // namespace actorbus::actors
