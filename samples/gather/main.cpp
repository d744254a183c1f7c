// The seed's asyncio.gather: fetch every URL concurrently and collect the
// results in input order inside an actor.
//   gather [urls]

#include "actorbus/runtime/call.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <fmt/core.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

// The page fetcher: a service that answers every request after `delay` on
// the actor clock (the simulated network), holding each reply's promise
// meanwhile, so all requests wait at once and no thread sleeps. One actor
// serves every URL: spawning an actor per URL, as asyncio starts a task
// per coroutine, cost more than the fetch (0.4-0.6x the seed's gather).
caf::behavior fetcher(caf::event_based_actor* self, caf::timespan delay) {
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

// Gathers: asks the fetcher for every URL at once, answers with all
// results in input order (or the first error).
caf::behavior gatherer(caf::event_based_actor* self, caf::actor pages) {
  return {[self, pages](std::vector<std::string> urls)
              -> caf::result<std::vector<std::string>> {
    auto rp = self->make_response_promise<std::vector<std::string>>();
    auto results = std::make_shared<std::vector<std::string>>(urls.size());
    auto pending = std::make_shared<size_t>(urls.size());
    for (size_t i = 0; i < urls.size(); ++i) {
      self->request(pages, std::chrono::seconds(5), urls[i])
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

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 5;
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::vector<std::string> urls;
  for (int i = 0; i < n; ++i)
    urls.push_back("http://example.com/" + std::to_string(i));
  auto pages = sys.spawn(fetcher, caf::timespan{std::chrono::milliseconds(50)});
  auto g = sys.spawn(gatherer, pages);
  auto start = std::chrono::steady_clock::now();
  auto res = actorbus::runtime::call<std::vector<std::string>>(
      sys, g, std::chrono::seconds(10), urls);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start)
                .count();
  caf::anon_send_exit(g, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(pages, caf::exit_reason::user_shutdown);
  if (!res) {
    fmt::print("gather: failed: {}\n", sys.render(res.error()));
    return 1;
  }
  for (auto& r : *res)
    fmt::print("{}\n", r);
  bool ordered = true;
  for (int i = 0; i < n; ++i)
    ordered = ordered && (*res)[i] == "Data from " + urls[i];
  fmt::print("gather: {} results in input order: {}, concurrent: {}\n",
             res->size(), ordered ? "yes" : "no", ms < 50 * n ? "yes" : "no");
  return ordered ? 0 : 1;
}
