// The seed's asyncio.gather: fetch every URL concurrently and collect the
// results in input order inside an actor.
//   gather [urls]

#include "actorbus/runtime/call.hpp"

#include "gather.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <fmt/core.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

using actorbus::samples::gather::fetcher;
using actorbus::samples::gather::gatherer;

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
