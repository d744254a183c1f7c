#include "actorbus/actors/retry.hpp"

#include <caf/message.hpp>

#include <string>

namespace actorbus::actors {

caf::error retry_policy::validate() const {
  auto bad = [](std::string why) {
    return caf::make_error(caf::sec::invalid_argument,
                           "retry_policy." + std::move(why));
  };
  if (attempts < 1)
    return bad("attempts: must be at least 1");
  if (auto err = backoff.validate())
    return bad(err.context().match_elements<std::string>()
                   ? err.context().get_as<std::string>(0)
                   : std::string{"backoff: invalid"});
  if (deadline.count() < 0)
    return bad("deadline: must not be negative");
  return caf::error{};
}

std::optional<caf::timespan> retry_policy::next(std::size_t made,
                                                const caf::error& err,
                                                caf::timespan elapsed) const {
  if (made >= attempts || !is_retryable(err))
    return std::nullopt;
  auto pause = backoff.random_delay(made - 1);
  if (deadline.count() > 0 && elapsed + pause >= deadline)
    return std::nullopt;
  return pause;
}

} // namespace actorbus::actors
