#pragma once

// The gather sample's actors, shared by the sample and bench_runtime_gather,
// which measures them: a page fetcher service and a gatherer that asks it
// for every URL at once and answers with the results in input order.

#include <caf/actor.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace actorbus::samples::gather {

// The page fetcher: a service that answers every request after `delay` on
// the actor clock (the simulated network), holding each reply's promise
// meanwhile, so all requests wait at once and no thread sleeps; a zero
// delay answers at once. One actor serves every URL: spawning an actor per
// URL, as asyncio starts a task per coroutine, cost more than the fetch
// (0.4-0.6x the seed's gather).
inline caf::behavior fetcher(caf::event_based_actor* self,
                             caf::timespan delay) {
  using promise = caf::typed_response_promise<std::string>;
  auto waiting = std::make_shared<std::unordered_map<uint64_t, promise>>();
  auto next = std::make_shared<uint64_t>(0);
  return {
      [=](const std::string& url) -> caf::result<std::string> {
        if (delay.count() == 0)
          return "Data from " + url;
        auto rp = self->make_response_promise<std::string>();
        auto id = ++*next;
        waiting->emplace(id, rp);
        self->delayed_send(self, delay, url, id);
        return rp;
      },
      [=](const std::string& url, uint64_t id) {
        if (auto i = waiting->find(id); i != waiting->end()) {
          i->second.deliver("Data from " + url);
          waiting->erase(i);
        }
      },
  };
}

// The first design's fetcher, one actor per URL: answers one fetch (at
// once), then ends.
inline caf::behavior one_fetch(caf::event_based_actor* self) {
  return {[self](const std::string& url) {
    self->quit();
    return "Data from " + url;
  }};
}

// Gathers: asks for every URL at once, from `pages` or (without it) from
// one new `one_fetch` actor per URL; answers with all results in input
// order (or the first error).
inline caf::behavior gatherer(caf::event_based_actor* self, caf::actor pages) {
  return {[self, pages](const std::vector<std::string>& urls)
              -> caf::result<std::vector<std::string>> {
    auto rp = self->make_response_promise<std::vector<std::string>>();
    auto results = std::make_shared<std::vector<std::string>>(urls.size());
    auto pending = std::make_shared<size_t>(urls.size());
    for (size_t i = 0; i < urls.size(); ++i) {
      auto dest = pages ? pages : self->spawn(one_fetch);
      self->request(dest, std::chrono::seconds(5), urls[i])
          .then(
              [=](std::string& data) mutable {
                (*results)[i] = std::move(data);
                if (--*pending == 0)
                  rp.deliver(std::move(*results));
              },
              [=](caf::error& err) mutable { rp.deliver(err); });
    }
    return rp;
  }};
}

} // namespace actorbus::samples::gather
