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
// With no argument: `demo`. `web_crawler --help` (and `demo --help`, ...)
// lists every option.

#include "actorbus/runtime/config.hpp"
#include "actorbus/runtime/runtime.hpp"
#include "actorbus/runtime/signals.hpp"

#include "command_line.hpp"
#include "crawler.hpp"
#include "links.hpp"
#include "site.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <curl/curl.h>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

using namespace web_crawler;
using namespace std::chrono_literals;

namespace {

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

// CLI11 check: an integer in [lo, hi].
CLI::Validator integer_in(long long lo, long long hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) {
        return parse_int(text, lo, hi)
                   ? std::string{}
                   : fmt::format("must be an integer in [{}, {}]", lo, hi);
      },
      fmt::format("INT in [{}, {}]", lo, hi));
}

template <class T>
CLI::Option* add_integer(CLI::App& app, const std::string& name, T& field,
                         long long lo, long long hi, const std::string& what) {
  return app.add_option(name, field, what)
      ->capture_default_str()
      ->check(integer_in(lo, hi));
}

// Adds the modes (the crawl itself and the subcommands demo, serve, load) and
// their options to `app`; after parsing, `finish` turns them into options.
struct command_line {
  options& o;
  CLI::App* demo = nullptr;
  CLI::App* serve = nullptr;
  CLI::App* load = nullptr;
  CLI::Option* max_pages = nullptr;
  CLI::Option* timeout = nullptr;

  command_line(CLI::App& app, options& out)
      : o(out) {
    app.add_option("start-url", o.crawl.start_url,
                   "crawl the site from this http(s) URL (without it and "
                   "without a subcommand: demo)");
    auto& c = o.crawl;
    const std::string crawl = "crawl options (also after demo and load)";
    max_pages = add_integer(app, "--max-pages", c.max_pages, 0, 100'000'000,
                            "stop after N fetches, 0 = no limit (demo: 0)")
                    ->group(crawl);
    add_integer(app, "--max-depth", c.max_depth, -1, 1'000'000,
                "follow links at most D deep, -1 = no limit")
        ->group(crawl);
    add_integer(app, "--concurrency", c.concurrency, 1, 10'000,
                "fetches at once")
        ->group(crawl);
    add_integer(app, "--per-host", c.per_host, 1, 10'000,
                "fetches at once per host (at most --concurrency)")
        ->group(crawl);
    timeout = add_integer(app, "--timeout", c.timeout_ms, 1, 3'600'000,
                          "milliseconds per fetch (demo: 1000)")
                  ->group(crawl);
    add_integer(app, "--retries", c.retries, 0, 100,
                "retries of a failed fetch")
        ->group(crawl);
    add_integer(app, "--retry-delay", c.retry_delay_ms, 0, 600'000,
                "milliseconds before the first retry")
        ->group(crawl);
    add_integer(app, "--max-redirects", c.max_redirects, 0, 1000,
                "redirects followed per fetch")
        ->group(crawl);
    add_integer(app, "--max-body", c.max_body, 1, 1LL << 40,
                "bytes of a page read at most")
        ->group(crawl);
    add_integer(app, "--parsers", c.parsers, 0, 1024,
                "parser actors, 0 = one per core")
        ->group(crawl);
    app.add_flag("--same-host", c.same_host,
                 "follow links on the start host only")
        ->group(crawl);
    app.add_flag("--quiet", c.quiet, "print the report only, not every page")
        ->group(crawl);

    demo = app.add_subcommand(
        "demo", "serve the demo site in-process on a free port and crawl it");
    demo->fallthrough();
    add_site_options(*demo);
    demo->add_flag("--verify", o.verify,
                   "check the crawl against what the generator says is "
                   "reachable (needs a full crawl)");

    serve = app.add_subcommand("serve", "serve the demo site until Ctrl-C");
    add_site_options(*serve);
    add_integer(*serve, "--port", o.port, 0, 65535, "port, 0 = a free one");
    add_integer(*serve, "--threads", o.site.threads, 1, 4096, "server threads");
    add_integer(*serve, "--slow-ms", o.site.slow_ms, 0, 600'000,
                "delay of the slow pages");
    add_integer(*serve, "--hang-ms", o.site.hang_ms, 0, 600'000,
                "delay of the hanging page");

    load = app.add_subcommand(
        "load", "a load test: request one URL many times (with --concurrency "
                "and --timeout)");
    load->fallthrough();
    load->add_option("url", o.crawl.start_url, "the URL to request")
        ->required();
    add_integer(*load, "--requests", o.requests, 1, 100'000'000,
                "requests in all");
  }

  void add_site_options(CLI::App& cmd) {
    add_integer(cmd, "--pages", o.site.pages, 8, 10'000'000,
                "pages of the demo site");
    add_integer(cmd, "--seed", o.site.seed, 0, 1LL << 62,
                "seed of the demo site");
  }

  // Sets the mode and the demo's defaults, checks what spans options.
  // Prints what is wrong and returns false on bad input.
  bool finish() {
    if (*serve)
      o.what = mode::serve;
    else if (*load)
      o.what = mode::load;
    else if (*demo || o.crawl.start_url.empty())
      o.what = mode::demo;
    else
      o.what = mode::crawl;
    if (o.what == mode::demo) {
      if (!o.crawl.start_url.empty()) {
        fmt::print(stderr,
                   "web_crawler: demo crawls its own site, not "
                   "'{}'\n",
                   o.crawl.start_url);
        return false;
      }
      o.crawl.same_host = true;
      if (max_pages->count() == 0)
        o.crawl.max_pages = 0;
      if (timeout->count() == 0)
        o.crawl.timeout_ms = 1000;
    }
    if (o.crawl.per_host > o.crawl.concurrency)
      o.crawl.per_host = o.crawl.concurrency;
    if (o.verify && (o.crawl.max_pages != 0 || o.crawl.max_depth >= 0)) {
      fmt::print(stderr, "web_crawler: --verify needs a full crawl (no "
                         "--max-pages or --max-depth)\n");
      return false;
    }
    return true;
  }
};

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
  options parsed;
  CLI::App app{"Exercise 3, an async web crawler on actors: fetchers over "
               "libcurl's multi interface,\nparsers (gumbo), a frontier and "
               "a reporter. The demo site lets it run with no network.",
               "web_crawler"};
  command_line cli{app, parsed};
  actorbus::runtime::runtime_config cfg;
  add_crawl_error_category(cfg);
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  if (!cli.finish())
    return actorbus::samples::bad_usage;
  auto opts = &parsed;
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
