#include "options.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

namespace actorbus::queue::internal {

std::string encode_options(const task_options& opts) {
  return fmt::format("{} {} {} {} {} {}", opts.max_attempts,
                     to_ms(opts.backoff.min), to_ms(opts.backoff.max),
                     to_ms(opts.timeout), opts.backoff.multiplier,
                     opts.backoff.jitter);
}

bool decode_options(const std::string& text, task_options& out) {
  long long m = 0;
  long long b = 0;
  long long bm = 0;
  long long t = 0;
  double mult = 2.0;
  double jitter = 0.0;
  auto n = std::sscanf(text.c_str(), "%lld %lld %lld %lld %lf %lf", &m, &b, &bm,
                       &t, &mult, &jitter);
  if (n < 4 || m < 1 || b < 0 || bm < 0 || t < 0)
    return false;
  if (n < 6 || !(mult >= 1.0) || !(jitter >= 0.0 && jitter <= 1.0)) {
    mult = 2.0;
    jitter = 0.0;
  }
  out.max_attempts = static_cast<uint32_t>(m);
  // Older producers allowed a first pause above the cap: the cap wins.
  out.backoff.min = std::chrono::milliseconds{std::min(b, bm)};
  out.backoff.max = std::chrono::milliseconds{bm};
  out.backoff.multiplier = mult;
  out.backoff.jitter = jitter;
  out.timeout = std::chrono::milliseconds{t};
  return true;
}

caf::error prefixed(const caf::error& err, const std::string& prefix) {
  std::string context;
  if (err.context().match_elements<std::string>())
    context = err.context().get_as<std::string>(0);
  return caf::error{err.code(), err.category(),
                    caf::make_message(prefix + context)};
}

caf::error check_options(const task_options& opts) {
  if (opts.max_attempts == 0)
    return caf::make_error(caf::sec::invalid_argument,
                           "task_options.max_attempts: must be at least 1");
  auto prio = static_cast<int>(opts.level);
  if (prio < 0 || prio > 2)
    return caf::make_error(caf::sec::invalid_argument,
                           "task_options.level: unknown priority");
  if (opts.timeout.count() < 0)
    return caf::make_error(caf::sec::invalid_argument,
                           "task_options.timeout: must not be negative");
  if (auto err = opts.backoff.validate())
    return prefixed(err, "task_options.");
  return caf::none;
}

} // namespace actorbus::queue::internal
