#include "actorbus/runtime/config.hpp"

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/log.hpp"

#include <caf/config_value.hpp>
#include <caf/settings.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace actorbus::runtime {

namespace {

constexpr auto default_shutdown_timeout = std::chrono::seconds(5);

} // namespace

runtime_config::runtime_config() {
  auto cores = std::max(2u, std::thread::hardware_concurrency());
  set("scheduler.max-threads", static_cast<size_t>(cores));
  use(scheduler_profile::responsive);
  add_error_renderers(*this);
  opt_group{custom_options_, "actorbus"}
      .add<caf::timespan>("shutdown-timeout",
                          "deadline for actors to exit on shutdown")
      .add<std::string>("log-level",
                        "trace, debug, info, warning, error or off");
  set("actorbus.shutdown-timeout", caf::timespan{default_shutdown_timeout});
  set("actorbus.log-level", std::string{"info"});
}

runtime_config& runtime_config::use(scheduler_profile profile) {
  using std::chrono::microseconds;
  using std::chrono::milliseconds;
  // Both profiles spin briefly for work. `responsive` then goes straight to
  // the relaxed phase, where a worker blocks on a condition variable that
  // external_enqueue() signals. CAF's moderate phase (stock: 500 attempts)
  // instead sleeps in 50 µs steps that no enqueue can interrupt, which is
  // what made a request from a non-actor thread cost ~80 µs on 2 cores.
  size_t moderate_attempts = profile == scheduler_profile::responsive ? 0 : 500;
  set("work-stealing.aggressive-poll-attempts", size_t{100});
  set("work-stealing.aggressive-steal-interval", size_t{10});
  set("work-stealing.moderate-poll-attempts", moderate_attempts);
  set("work-stealing.moderate-steal-interval", size_t{5});
  set("work-stealing.moderate-sleep-duration", caf::timespan{microseconds(50)});
  set("work-stealing.relaxed-steal-interval", size_t{1});
  set("work-stealing.relaxed-sleep-duration", caf::timespan{milliseconds(10)});
  return *this;
}

caf::error runtime_config::load(int argc, char** argv, const char* ini_path) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i)
    args.emplace_back(argv[i]);
  std::ifstream file;
  if (ini_path != nullptr)
    file.open(ini_path);
  if (file.is_open())
    return load(std::move(args), file);
  std::istringstream empty;
  return load(std::move(args), empty);
}

caf::error runtime_config::load(std::vector<std::string> args,
                                std::istream& ini) {
  // CAF applies the INI content first and the command line on top of it; both
  // override values set in code.
  if (auto err = parse(std::move(args), ini))
    return err;
  if (!remainder.empty())
    return caf::make_error(caf::sec::invalid_argument,
                           "unknown argument: " + remainder.front());
  logger::instance().level(min_log_level());
  return caf::none;
}

caf::timespan runtime_config::shutdown_timeout() const {
  return caf::get_or(content, "actorbus.shutdown-timeout",
                     caf::timespan{default_shutdown_timeout});
}

log_level runtime_config::min_log_level() const {
  auto text = caf::get_or(content, "actorbus.log-level", std::string{"info"});
  return parse_log_level(text, log_level::info);
}

} // namespace actorbus::runtime
