// Exercise 3, "an async web crawler", on actors: a frontier actor, fetcher
// actors over libcurl's multi interface, parser actors (gumbo) and a reporter
// streaming results (see crawler.hpp). A generated demo site (site.hpp) lets
// it run, and be checked, with no network.
//
// usage:
//   web_crawler <start-url> [crawl options]     crawl a site
//   web_crawler demo [--pages N] [--seed S] [--verify] [crawl options]
//                                               serve the demo site in-process
//                                               on a free port and crawl it
//   web_crawler serve [--pages N] [--seed S] [--port P] [--threads T]
//                     [--slow-ms MS] [--hang-ms MS]
//                                               serve the demo site until
//                                               Ctrl-C
// crawl options: --max-pages N (0 = no limit) --max-depth D --concurrency C
//   --per-host H --timeout MS --retries R --retry-delay MS --max-redirects N
//   --max-body BYTES --same-host --quiet
// With no argument: `demo`.

#include "actorbus/runtime/config.hpp"
#include "actorbus/runtime/runtime.hpp"
#include "actorbus/runtime/signals.hpp"

#include "crawler.hpp"
#include "links.hpp"
#include "site.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <curl/curl.h>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

using namespace web_crawler;
using namespace std::chrono_literals;

namespace {

constexpr const char* usage =
    "usage: web_crawler <start-url> [--max-pages N] [--max-depth D] "
    "[--concurrency C]\n"
    "                   [--per-host H] [--timeout MS] [--retries R] "
    "[--retry-delay MS]\n"
    "                   [--max-redirects N] [--max-body BYTES] [--same-host] "
    "[--quiet]\n"
    "       web_crawler demo [--pages N] [--seed S] [--verify] [crawl "
    "options]\n"
    "       web_crawler serve [--pages N] [--seed S] [--port P] [--threads T] "
    "[--slow-ms MS] [--hang-ms MS]\n"
    "       web_crawler load <url> [--requests N] [--concurrency C]\n";

enum class mode { crawl, demo, serve, load };

struct options {
  mode what = mode::demo;
  crawl_options crawl;
  site_options site;
  int port = 0;
  bool verify = false;
  std::size_t requests = 10000;
};

std::optional<long long> parse_int(const std::string& s, long long lo,
                                   long long hi) {
  try {
    std::size_t used = 0;
    auto n = std::stoll(s, &used);
    if (used != s.size() || n < lo || n > hi)
      return std::nullopt;
    return n;
  } catch (...) {
    return std::nullopt;
  }
}

// Parses argv; prints what is wrong and returns nothing on bad input.
std::optional<options> parse_args(int argc, char** argv) {
  options o;
  int i = 1;
  if (argc > 1) {
    std::string first = argv[1];
    if (first == "demo") {
      i = 2;
    } else if (first == "load" && argc > 2) {
      o.what = mode::load;
      o.crawl.start_url = argv[2];
      i = 3;
    } else if (first == "serve") {
      o.what = mode::serve;
      i = 2;
    } else if (first.rfind("--", 0) != 0) {
      o.what = mode::crawl;
      o.crawl.start_url = first;
      i = 2;
    }
  }
  if (o.what == mode::demo) {
    o.crawl.same_host = true;
    o.crawl.max_pages = 0;
    o.crawl.timeout_ms = 1000;
  }
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--same-host") {
      o.crawl.same_host = true;
      continue;
    }
    if (a == "--quiet") {
      o.crawl.quiet = true;
      continue;
    }
    if (a == "--verify") {
      o.verify = true;
      continue;
    }
    // Options with an integer value: name, range, where it goes.
    using setter = std::function<void(long long)>;
    struct numeric {
      std::string_view name;
      long long lo;
      long long hi;
      setter set;
    };
    auto to = [](auto& field) -> setter {
      return [&field](long long n) {
        field = static_cast<std::remove_reference_t<decltype(field)>>(n);
      };
    };
    const numeric table[] = {
        {"--max-pages", 0, 100'000'000, to(o.crawl.max_pages)},
        {"--max-depth", -1, 1'000'000, to(o.crawl.max_depth)},
        {"--concurrency", 1, 10'000, to(o.crawl.concurrency)},
        {"--per-host", 1, 10'000, to(o.crawl.per_host)},
        {"--timeout", 1, 3'600'000, to(o.crawl.timeout_ms)},
        {"--retries", 0, 100, to(o.crawl.retries)},
        {"--retry-delay", 0, 600'000, to(o.crawl.retry_delay_ms)},
        {"--max-redirects", 0, 1000, to(o.crawl.max_redirects)},
        {"--max-body", 1, 1ll << 40, to(o.crawl.max_body)},
        {"--parsers", 0, 1024, to(o.crawl.parsers)},
        {"--pages", 8, 10'000'000, to(o.site.pages)},
        {"--seed", 0, 1ll << 62, to(o.site.seed)},
        {"--port", 0, 65535, to(o.port)},
        {"--threads", 1, 4096, to(o.site.threads)},
        {"--slow-ms", 0, 600'000, to(o.site.slow_ms)},
        {"--hang-ms", 0, 600'000, to(o.site.hang_ms)},
        {"--requests", 1, 100'000'000, to(o.requests)},
    };
    auto opt = std::find_if(std::begin(table), std::end(table),
                            [&](const numeric& x) { return x.name == a; });
    if (opt == std::end(table)) {
      fmt::print(stderr, "web_crawler: unknown option {}\n", a);
      return std::nullopt;
    }
    if (i + 1 >= argc) {
      fmt::print(stderr, "web_crawler: {} needs a value\n", a);
      return std::nullopt;
    }
    auto n = parse_int(argv[++i], opt->lo, opt->hi);
    if (!n) {
      fmt::print(stderr, "web_crawler: {} must be an integer in [{}, {}]\n", a,
                 opt->lo, opt->hi);
      return std::nullopt;
    }
    opt->set(*n);
  }
  if (o.crawl.per_host > o.crawl.concurrency)
    o.crawl.per_host = o.crawl.concurrency;
  if (o.verify && o.what != mode::demo) {
    fmt::print(stderr, "web_crawler: --verify works in demo mode only\n");
    return std::nullopt;
  }
  if (o.verify && (o.crawl.max_pages != 0 || o.crawl.max_depth >= 0)) {
    fmt::print(stderr, "web_crawler: --verify needs a full crawl (no "
                       "--max-pages or --max-depth)\n");
    return std::nullopt;
  }
  return o;
}

int serve(const options& o) {
  demo_site site{o.site};
  if (auto err = site.start(o.port)) {
    fmt::print(stderr, "web_crawler: {}\n", *err);
    return 1;
  }
  auto expected = expected_crawl(o.site, {});
  fmt::print("serving {} pages on {}/ ({} URLs reachable, {} threads); "
             "Ctrl-C stops\n",
             o.site.pages, site.origin(), expected.size(), o.site.threads);
  std::fflush(stdout);
  actorbus::runtime::signal_waiter waiter;
  while (!waiter.wait_for(1h)) {
  }
  return 0;
}

void print_report(const crawl_report& r) {
  std::map<int, std::size_t> by_status;
  std::map<std::string_view, std::size_t> by_outcome;
  std::map<std::string_view, std::size_t> errors;
  std::size_t bytes = 0;
  std::size_t ok = 0;
  std::vector<const fetch_record*> broken;
  std::vector<const fetch_record*> failed;
  std::vector<const fetch_record*> recovered;
  for (const auto& f : r.fetches) {
    ++by_status[f.status];
    ++by_outcome[to_string(f.kind)];
    bytes += f.bytes;
    if (f.kind == outcome::ok || f.kind == outcome::non_html)
      ++ok;
    if (f.kind == outcome::broken)
      broken.push_back(&f);
    if (is_error(f.kind)) {
      failed.push_back(&f);
      ++errors[to_string(f.kind)];
    }
    if (f.attempts > 1 && !is_error(f.kind))
      recovered.push_back(&f);
  }
  auto n = r.fetches.size();
  fmt::print("crawl of {}: {} in {:.3f} s\n", r.start_url, r.stop_reason,
             r.seconds);
  fmt::print("fetched: {} URLs (ok {}, broken {}, errors {}), {:.1f} pages/s, "
             "{:.1f} KB\n",
             n, ok, broken.size(), failed.size(),
             r.seconds > 0 ? double(n) / r.seconds : 0.0, double(bytes) / 1024);
  std::string line = "by status:";
  for (auto [status, count] : by_status)
    line += fmt::format(" {}={}", status == 0 ? "none" : std::to_string(status),
                        count);
  fmt::print("{}\n", line);
  line = "by outcome:";
  for (auto [kind, count] : by_outcome)
    line += fmt::format(" {}={}", kind, count);
  fmt::print("{}\n", line);
  fmt::print("retried and recovered: {}\n", recovered.size());
  for (auto* f : recovered)
    fmt::print("  {} {} after {} attempts\n", f->status, f->url, f->attempts);
  fmt::print("broken links: {}\n", broken.size());
  for (auto* f : broken)
    fmt::print("  {} {} <- {}\n", f->status, f->url, f->referrer);
  line = fmt::format("errors: {}", failed.size());
  for (auto [kind, count] : errors)
    line += fmt::format(" {}={}", kind, count);
  fmt::print("{}\n", line);
  for (auto* f : failed)
    fmt::print("  {} {} after {} attempt(s): {}\n", to_string(f->kind), f->url,
               f->attempts, f->detail);
  fmt::print("links not followed: {} not http(s), {} offsite, {} beyond "
             "depth, {} left unfetched, {} redirects to known pages, {} "
             "duplicates\n",
             r.dropped, r.offsite, r.beyond_depth, r.not_fetched,
             r.redirect_to_known, r.duplicates);
}

// Compares the crawl with what the generated site says a correct one finds.
bool verify(const crawl_report& r, const std::string& origin,
            const site_options& site, const crawl_options& opts) {
  crawl_limits limits{opts.timeout_ms, opts.retries, opts.max_body};
  auto expected = expected_crawl(site, limits);
  std::vector<std::string> problems;
  std::map<std::string, const fetch_record*> got;
  for (const auto& f : r.fetches)
    if (!got.emplace(f.url, &f).second)
      problems.push_back("fetched twice: " + f.url);
  std::set<std::string> matched;
  std::size_t pages = 0;
  std::size_t broken = 0;
  std::size_t errors = 0;
  for (const auto& [path, want] : expected) {
    auto url = origin + path;
    auto it = got.find(url);
    if (it == got.end()) {
      // The page the redirect chain ends on may have been fetched through
      // it (and then not again).
      auto moved = got.find(origin + "/old/a");
      if (moved == got.end() || moved->second->final_url != url)
        problems.push_back("not fetched: " + url);
      else
        pages += 1;
      continue;
    }
    const auto& f = *it->second;
    matched.insert(url);
    if (f.kind != want.kind)
      problems.push_back(fmt::format("{}: {} instead of {}", url,
                                     to_string(f.kind), to_string(want.kind)));
    else if (!is_error(want.kind) && f.status != want.status)
      problems.push_back(fmt::format("{}: status {} instead of {}", url,
                                     f.status, want.status));
    if (want.kind == outcome::broken && f.referrer != origin + want.referrer)
      problems.push_back(fmt::format("{}: referrer {} instead of {}", url,
                                     f.referrer, origin + want.referrer));
    if (want.attempts > 1 && f.attempts != want.attempts)
      problems.push_back(fmt::format("{}: {} attempts instead of {}", url,
                                     f.attempts, want.attempts));
    pages += want.kind == outcome::ok || want.kind == outcome::non_html;
    broken += want.kind == outcome::broken;
    errors += is_error(want.kind);
  }
  for (const auto& [url, f] : got)
    if (matched.count(url) == 0)
      problems.push_back("not expected: " + url);
  expected_skips skips;
  if (r.dropped != skips.dropped)
    problems.push_back(fmt::format("{} non-http(s) links dropped instead of {}",
                                   r.dropped, skips.dropped));
  if (r.offsite != skips.offsite)
    problems.push_back(fmt::format("{} offsite links instead of {}", r.offsite,
                                   skips.offsite));
  if (!problems.empty()) {
    fmt::print("verify: MISMATCH ({} problems)\n", problems.size());
    for (const auto& p : problems)
      fmt::print("  {}\n", p);
    return false;
  }
  fmt::print("verify: OK: exactly the {} expected URLs ({} pages, {} broken "
             "links, {} errors), the 503-once page recovered on its 2nd "
             "attempt\n",
             expected.size(), pages, broken, errors);
  return true;
}

} // namespace

int main(int argc, char** argv) {
  auto opts = parse_args(argc, argv);
  if (!opts) {
    fmt::print(stderr, "{}", usage);
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (opts->what == mode::serve)
    return serve(*opts);
  if (opts->what == mode::load) {
    auto r = load_test(opts->crawl.start_url, opts->requests,
                       opts->crawl.concurrency, opts->crawl.timeout_ms);
    fmt::print("load: {} ok, {} failed in {:.3f} s: {:.0f} requests/s at "
               "concurrency {}\n",
               r.ok, r.failed, r.seconds, double(r.ok) / r.seconds,
               opts->crawl.concurrency);
    return r.failed == 0 ? 0 : 1;
  }
  std::optional<demo_site> site;
  if (opts->what == mode::demo) {
    // The hanging page outlasts every attempt, so its fetch times out.
    opts->site.hang_ms = opts->crawl.timeout_ms + 500;
    opts->site.threads = std::max<std::size_t>(64, 2 * opts->crawl.concurrency);
    site.emplace(opts->site);
    if (auto err = site->start(0)) {
      fmt::print(stderr, "web_crawler: {}\n", *err);
      return 1;
    }
    opts->crawl.start_url = site->origin() + "/";
    fmt::print("demo site: {} pages on {}/ (seed {})\n", opts->site.pages,
               site->origin(), opts->site.seed);
  }
  auto start = normalize_url(opts->crawl.start_url);
  if (!start) {
    fmt::print(stderr, "web_crawler: '{}' is not an absolute http(s) URL\n",
               opts->crawl.start_url);
    return 2;
  }
  opts->crawl.start_url = *start;
  std::fflush(stdout);
  actorbus::runtime::runtime_config cfg;
  add_crawl_error_category(cfg);
  actorbus::runtime::runtime rt{std::move(cfg)};
  actorbus::runtime::signal_waiter waiter;
  crawler job{rt, opts->crawl, [&waiter] { waiter.cancel(); }};
  auto& result = job.report();
  std::optional<std::chrono::steady_clock::time_point> stop_deadline;
  while (result.wait_for(0s) != std::future_status::ready) {
    if (waiter.wait_for(200ms)) {
      if (stop_deadline) {
        fmt::print(stderr, "\nweb_crawler: second interrupt, quitting\n");
        std::_Exit(130);
      }
      fmt::print(stderr, "\nweb_crawler: interrupted, stopping (Ctrl-C again "
                         "to quit at once)\n");
      job.stop();
      stop_deadline = std::chrono::steady_clock::now() + 5s;
    }
    if (stop_deadline && std::chrono::steady_clock::now() > *stop_deadline) {
      fmt::print(stderr, "web_crawler: did not stop within 5 s\n");
      std::_Exit(1);
    }
  }
  auto report = result.get();
  print_report(report);
  int rc = report.stop_reason == "interrupted" ? 130 : 0;
  if (opts->verify && !verify(report, site->origin(), opts->site, opts->crawl))
    rc = 1;
  return rc;
}
