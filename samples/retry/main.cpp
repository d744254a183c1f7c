// The seed's retry_async: a fetch that fails twice, then succeeds, retried
// with a delay; and one that never succeeds, whose last error is raised.
//   retry [failures]

#include "actorbus/actors/retry.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"

#include <caf/event_based_actor.hpp>

#include <fmt/core.h>

#include <chrono>
#include <memory>
#include <string>

using namespace actorbus::actors;

// A page server that fails its first `failures` requests.
caf::behavior flaky_server(caf::event_based_actor*, int failures,
                           std::shared_ptr<int> tries) {
  return {[=](const std::string& url) -> caf::result<std::string> {
    if (++*tries <= failures)
      return caf::make_error(caf::sec::runtime_error, "503 from " + url);
    return "<html>" + url + "</html>";
  }};
}

int main(int argc, char** argv) {
  int failures = 2;
  CLI::App app{"Retries a fetch that fails a few times, and one that never "
               "succeeds.",
               "retry"};
  app.add_option("failures", failures,
                 "how many requests the first server fails")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  actorbus::runtime::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  actorbus::runtime::runtime rt{std::move(cfg)};
  auto& sys = rt.system();
  retry_policy policy; // retries=3, delay=10ms (the seed: 3 and 1 s)
  policy.attempts = 3;
  policy.backoff.min = std::chrono::milliseconds(10);
  policy.backoff.multiplier = 1.0;
  auto per_try = caf::timespan{std::chrono::seconds(1)};
  auto tries = std::make_shared<int>(0);
  auto server = *rt.spawn(flaky_server, failures, tries);
  auto page = retry_call<std::string>(sys, server, policy, per_try,
                                      std::string{"example.com"});
  if (page)
    fmt::print("retry: fetched {} on attempt {}\n", *page, *tries);
  else
    fmt::print("retry: gave up after {} attempts: {}\n", *tries,
               sys.render(page.error()));
  auto down_tries = std::make_shared<int>(0);
  auto down = *rt.spawn(flaky_server, 1000, down_tries);
  auto none = retry_call<std::string>(sys, down, policy, per_try,
                                      std::string{"down.example.com"});
  if (!none)
    fmt::print("retry: gave up after {} attempts: {}\n", *down_tries,
               sys.render(none.error()));
  return none ? 1 : 0; // the runtime stops both servers
}
