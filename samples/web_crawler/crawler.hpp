#pragma once

// The crawler's actors. Data flow for one page:
//
//   frontier --retry_request(fetch)--> fetcher --submit--> transport
//      ^                                  ^                (curl multi,
//      |                                  |                 one I/O thread)
//      |                                  +------ fetched -------+
//      +--(links)-- parser <--(parse, body)-- frontier
//      +--(record)--> reporter (streams lines, progress, final report)
//
// - frontier: one actor owning the crawl's state: normalized URLs seen,
//   per-host queues, depth and page limits, the overall and per-host
//   concurrency limits. Fetches go through `actors::retry_request`, so 5xx
//   answers, timeouts and refused connections are retried with exponential
//   backoff on the actor clock while the frontier keeps working.
// - fetchers: actors that turn a fetch request into a transfer on the
//   transport and answer when it completes (a retryable failure is an error
//   reply, so the retry policy sees it).
// - transport (transport.hpp): libcurl's multi interface on one I/O thread.
//   Many concurrent transfers then cost one thread and one shared
//   connection cache, not a blocked thread per transfer, and the scheduler's
//   threads stay free for parsing. Every transfer has a timeout, a redirect
//   limit and a body cap.
// - parsers: stateless actors extracting links with gumbo.
// - reporter: prints each result as it comes and a progress line on a
//   terminal, and builds the final report.

#include "actorbus/runtime/fwd.hpp"

#include "outcome.hpp"

#include <caf/fwd.hpp>

#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace web_crawler {

struct crawl_options {
  /// Absolute http(s) URL in normal form.
  std::string start_url;
  /// Fetches at most this many URLs; 0 = no limit.
  std::size_t max_pages = 1000;
  /// Follows links at most this many hops from the start; -1 = no limit.
  int max_depth = -1;
  /// Transfers in flight at once, overall and per host.
  std::size_t concurrency = 16;
  std::size_t per_host = 8;
  /// Whole-transfer timeout (redirects included), per attempt.
  int timeout_ms = 10000;
  /// Retries after a 5xx, a timeout or a refused connection.
  int retries = 2;
  /// Pause before the first retry; it doubles for each next one.
  int retry_delay_ms = 50;
  int max_redirects = 10;
  /// Larger bodies are cut off and reported as `too_large`.
  std::size_t max_body = 8u << 20;
  /// Only follow links to the start URL's host.
  bool same_host = false;
  /// No line per fetched URL, only the final report.
  bool quiet = false;
  /// Parser actors; 0 = one per hardware thread.
  std::size_t parsers = 0;
};

/// How the fetch of one URL ended.
struct fetch_record {
  std::string url;
  /// The page where the URL was first found (empty for the start URL).
  std::string referrer;
  /// Where redirects ended (empty when none).
  std::string final_url;
  int depth = 0;
  outcome kind = outcome::ok;
  /// Last HTTP status (0 when no answer came).
  int status = 0;
  int attempts = 1;
  int redirects = 0;
  std::size_t bytes = 0;
  std::size_t links = 0;
  double ms = 0;
  /// Transfer error text, when there is one.
  std::string detail;
};

struct crawl_report {
  std::string start_url;
  /// "done", "page limit" or "interrupted".
  std::string stop_reason;
  /// Every fetched URL, in completion order.
  std::vector<fetch_record> fetches;
  /// Links not followed: not http(s); distinct URLs on other hosts (with
  /// --same-host); beyond --max-depth; distinct URLs left when a limit or
  /// Ctrl-C stopped the crawl; redirects to pages already fetched.
  std::size_t dropped = 0;
  std::size_t offsite = 0;
  std::size_t beyond_depth = 0;
  std::size_t not_fetched = 0;
  std::size_t redirect_to_known = 0;
  /// Links to already known URLs, and repeats on one page.
  std::size_t duplicates = 0;
  double seconds = 0;
};

/// Lets `cfg`'s actor system render the crawl's retryable errors.
void add_crawl_error_category(caf::actor_system_config& cfg);

/// What `load_test` measured.
struct load_result {
  std::size_t ok = 0;
  std::size_t failed = 0;
  double seconds = 0;
};

/// GETs `url` `requests` times with `concurrency` transfers in flight on one
/// curl multi handle (no actors, no parsing): what a server can answer to
/// a client as light as the crawler's transport.
load_result load_test(const std::string& url, std::size_t requests,
                      std::size_t concurrency, int timeout_ms);

/// A running crawl on `rt`'s actor system.
class crawler {
public:
  /// Spawns the actors and starts crawling at `opts.start_url`. `on_done`
  /// runs (on an actor thread) right before the report is ready.
  crawler(actorbus::runtime::runtime& rt, crawl_options opts,
          std::function<void()> on_done = {});

  /// Stops the actors and the transport (cancelling what is in flight).
  ~crawler();

  crawler(const crawler&) = delete;
  crawler& operator=(const crawler&) = delete;

  /// Ctrl-C: fetches nothing new, cancels the transfers in flight, then
  /// finishes with stop_reason "interrupted". Thread-safe, idempotent.
  void stop();

  /// The final report, ready when the crawl finished or stopped.
  std::future<crawl_report>& report();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace web_crawler
