#include "actorbus/actors/retry.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace actorbus::actors {

caf::error retry_policy::validate() const {
  auto bad = [](const char* why) {
    return caf::make_error(caf::sec::invalid_argument, why);
  };
  if (attempts < 1)
    return bad("retry_policy: attempts must be at least 1");
  if (first_delay.count() < 0 || max_delay.count() < 0)
    return bad("retry_policy: delays must not be negative");
  if (!(multiplier >= 1.0) || !std::isfinite(multiplier))
    return bad("retry_policy: multiplier must be a finite number >= 1");
  if (!(jitter >= 0.0 && jitter <= 1.0))
    return bad("retry_policy: jitter must lie in [0, 1]");
  if (deadline.count() < 0)
    return bad("retry_policy: deadline must not be negative");
  return caf::error{};
}

caf::timespan retry_policy::nominal_delay(std::size_t k) const {
  auto cap = static_cast<double>(max_delay.count());
  auto d = static_cast<double>(first_delay.count());
  for (std::size_t i = 0; i < k && d < cap; ++i)
    d *= multiplier;
  return caf::timespan{static_cast<caf::timespan::rep>(std::min(d, cap))};
}

caf::timespan retry_policy::delay(std::size_t k, double u) const {
  auto base = static_cast<double>(nominal_delay(k).count());
  u = std::clamp(u, 0.0, 1.0);
  auto lo = base * (1.0 - jitter);
  auto hi = base * (1.0 + jitter);
  auto d = std::min(lo + (hi - lo) * u, static_cast<double>(max_delay.count()));
  return caf::timespan{static_cast<caf::timespan::rep>(d)};
}

caf::timespan retry_policy::random_delay(std::size_t k) const {
  if (jitter == 0.0)
    return nominal_delay(k);
  thread_local std::mt19937_64 gen{std::random_device{}()};
  std::uniform_real_distribution<double> dist{0.0, 1.0};
  return delay(k, dist(gen));
}

std::optional<caf::timespan> retry_policy::next(std::size_t made,
                                                const caf::error& err,
                                                caf::timespan elapsed) const {
  if (made >= attempts || !is_retryable(err))
    return std::nullopt;
  auto pause = random_delay(made - 1);
  if (deadline.count() > 0 && elapsed + pause >= deadline)
    return std::nullopt;
  return pause;
}

} // namespace actorbus::actors
