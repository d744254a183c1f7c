// The seed's ThreadPoolExecutor: map in input order, then submit and
// as_completed with one failing URL reported at its element.
//   thread_pool [urls]

#include "actorbus/actors/worker_pool.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"

#include <fmt/core.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace actorbus::actors;

std::string process_url(const std::string& url) {
  std::this_thread::sleep_for(std::chrono::milliseconds(10)); // the request
  if (url.ends_with("/7"))
    throw std::runtime_error("connection reset");
  return "Processed " + url;
}

int main(int argc, char** argv) {
  int n = 10;
  CLI::App app{"A pool maps a function over URLs in input order, then "
               "reports them as they complete.",
               "thread_pool"};
  app.add_option("urls", n, "URLs to process (the one ending in /7 fails)")
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
  auto wait = caf::timespan{std::chrono::seconds(10)};
  worker_pool pool{sys, {.workers = 3}};
  // Map version: results in input order, the error at its element.
  auto results = pool.map(process_url, urls);
  int in_order = 0;
  for (int i = 0; i < n; ++i) {
    auto r = results[i].get(wait);
    if (r && *r == "Processed " + urls[i])
      ++in_order;
    else if (!r)
      fmt::print("map: {} raised: {}\n", urls[i], sys.render(r.error()));
  }
  fmt::print("thread_pool: map returned {} of {} results in input order\n",
             in_order, n);
  // Submit version with as_completed.
  std::vector<task_future<std::string>> futures;
  for (auto& url : urls)
    futures.push_back(pool.submit(process_url, url));
  auto done = as_completed(futures);
  int ok = 0;
  int failed = 0;
  while (auto x = done.next(wait)) {
    if (x->second) {
      ++ok;
    } else {
      ++failed;
      fmt::print("{} generated an exception: {}\n", urls[x->first],
                 sys.render(x->second.error()));
    }
  }
  fmt::print("thread_pool: as_completed: {} ok, {} failed\n", ok, failed);
  return ok + failed == n ? 0 : 1;
}
