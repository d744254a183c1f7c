// The showcase: every actorbus capability working together in one program.
// `./dev demo` runs it. Each capability adds its part here as it lands.

#include "actorbus/runtime/call.hpp"
#include "actorbus/runtime/log.hpp"
#include "actorbus/runtime/runtime.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/settings.hpp>

#include <fmt/core.h>

#include <chrono>
#include <string>

using namespace std::chrono_literals;
namespace rt = actorbus::runtime;

namespace {

caf::behavior greeter() {
  return {[](const std::string& who) { return "hello, " + who; }};
}

int run_runtime_part(rt::runtime& sys) {
  auto threads =
      caf::get_or(sys.config().content, "scheduler.max-threads", size_t{0});
  fmt::print("runtime: started with {} scheduler threads\n", threads);
  auto hello = sys.spawn(greeter);
  if (!hello || sys.names().put("greeter", *hello))
    return 1;
  auto reply = rt::call<std::string>(sys.system(), sys.names().get("greeter"),
                                     1s, std::string{"actorbus"});
  if (!reply) {
    fmt::print("registry: request failed: {}\n",
               sys.system().render(reply.error()));
    return 1;
  }
  fmt::print("registry: 'greeter' answered: {}\n", *reply);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  rt::runtime_config cfg;
  if (auto err = cfg.load(argc, argv)) {
    fmt::print(stderr, "showcase: bad configuration: {}\n",
               caf::to_string(err));
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  rt::runtime sys{std::move(cfg)};
  if (auto rc = run_runtime_part(sys))
    return rc;
  auto report = sys.shutdown();
  fmt::print("shutdown: graceful in {:.1f} ms (exited {}, killed {}, "
             "abandoned {})\n",
             std::chrono::duration<double, std::milli>(report.elapsed).count(),
             report.exited, report.killed, report.abandoned);
  return report.abandoned == 0 ? 0 : 1;
}
