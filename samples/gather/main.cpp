// The seed's asyncio.gather: fetch every URL concurrently and collect the
// results in input order inside an actor.
//   gather [urls]

#include "actorbus/runtime/call.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"
#include "gather.hpp"

#include <fmt/core.h>

#include <chrono>
#include <string>
#include <vector>

using actorbus::samples::gather::fetcher;
using actorbus::samples::gather::gatherer;

int main(int argc, char** argv) {
  int n = 5;
  CLI::App app{"An actor fetches every URL at once and answers with the "
               "results in input order.",
               "gather"};
  app.add_option("urls", n, "URLs to fetch")
      ->capture_default_str()
      ->check(CLI::Range(0, 1'000'000));
  actorbus::runtime::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  actorbus::runtime::runtime rt{std::move(cfg)};
  auto& sys = rt.system();
  std::vector<std::string> urls;
  for (int i = 0; i < n; ++i)
    urls.push_back("http://example.com/" + std::to_string(i));
  auto pages = *rt.spawn(fetcher, caf::timespan{std::chrono::milliseconds(50)});
  auto g = *rt.spawn(gatherer, pages);
  auto start = std::chrono::steady_clock::now();
  auto res = actorbus::runtime::call<std::vector<std::string>>(
      sys, g, std::chrono::seconds(10), urls);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start)
                .count();
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
