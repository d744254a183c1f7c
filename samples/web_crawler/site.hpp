#pragma once

// The demo site: a generated web site served from this process with
// cpp-httplib, so the crawler (and its Python peer) run with no network.
//
// `pages` pages /p/<i>.html with a deterministic link graph (seeded): every
// page links to the next one, so all are reachable from "/", and to a few
// seeded others in every relative form (`j.html`, `./j.html`, `../p/j.html`,
// root-relative, absolute, with fragments, repeated, and under a `<base>` on
// every ninth page). Some pages carry a broken link (/missing/<i>.html, 404),
// and a few fixed pages exercise the crawler: a redirect chain (/old/a ->
// /old/b -> a page), a redirect loop (/loop), a page failing with 503 once
// (/p/flaky.html), a slow page, an optional page slower than any sane
// timeout (/p/hang.html), a non-HTML file and a large page. Because the site
// is generated, `expected_crawl` knows what a correct crawl finds.

#include "outcome.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace web_crawler {

struct site_options {
  /// Number of regular pages (at least 8).
  std::size_t pages = 200;
  /// Seed of the link graph.
  std::uint64_t seed = 1;
  /// Delay of /p/slow.html.
  int slow_ms = 200;
  /// Delay of /p/hang.html; 0 leaves the page (and the link to it) out.
  int hang_ms = 0;
  /// Size of /p/big.html.
  std::size_t big_bytes = 256 * 1024;
  /// Server threads: each keep-alive connection holds one, so give at least
  /// the crawler's concurrency plus a margin.
  std::size_t threads = 64;
};

/// What a correct crawl finds for one URL of the site.
struct expected_fetch {
  outcome kind = outcome::ok;
  int status = 200;
  /// Page linking to a broken URL (its only referrer); empty otherwise.
  std::string referrer;
  /// Tries needed (2 for the page failing once; retries + 1 for a timeout).
  int attempts = 1;
};

/// The crawl limits that change what a full crawl finds.
struct crawl_limits {
  int timeout_ms = 10000;
  int retries = 2;
  std::size_t max_body = 8u << 20;
};

/// Every URL path a crawl from "/" must fetch, same host, with no page or
/// depth limit, and how each one ends.
std::map<std::string, expected_fetch>
expected_crawl(const site_options& site, const crawl_limits& limits);

/// Links a full crawl drops: not http(s) (`mailto:`, `javascript:`), and
/// distinct URLs on other hosts.
struct expected_skips {
  std::size_t dropped = 2;
  std::size_t offsite = 1;
};

/// The site served on 127.0.0.1 from background threads. Stops (and joins
/// its threads, cutting short a hanging page) when destroyed.
class demo_site {
public:
  explicit demo_site(site_options opts);
  ~demo_site();
  demo_site(const demo_site&) = delete;
  demo_site& operator=(const demo_site&) = delete;

  /// Binds 127.0.0.1:`port` (0: any free port) and starts serving. Returns
  /// an error text on failure.
  std::optional<std::string> start(int port);

  /// The bound port (after `start`).
  int port() const;

  /// "http://127.0.0.1:<port>".
  std::string origin() const;

  /// Stops serving; idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace web_crawler
