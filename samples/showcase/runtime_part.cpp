// Showcase part: a runtime, a named actor answering a request.

#include "actorbus/runtime/call.hpp"

#include "showcase.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/settings.hpp>

#include <fmt/core.h>

#include <chrono>
#include <string>

namespace {

caf::behavior greeter() {
  return {[](const std::string& who) { return "hello, " + who; }};
}

int run(actorbus::runtime::runtime& sys) {
  auto threads =
      caf::get_or(sys.config().content, "scheduler.max-threads", size_t{0});
  fmt::print("runtime: started with {} scheduler threads\n", threads);
  auto hello = sys.spawn(greeter);
  if (!hello || sys.names().put("greeter", *hello))
    return 1;
  auto reply = actorbus::runtime::call<std::string>(
      sys.system(), sys.names().get("greeter"), std::chrono::seconds(1),
      std::string{"actorbus"});
  if (!reply) {
    fmt::print("registry: request failed: {}\n",
               sys.system().render(reply.error()));
    return 1;
  }
  fmt::print("registry: 'greeter' answered: {}\n", *reply);
  return 0;
}

const bool registered = showcase::add({0, "runtime", &run});

} // namespace
