#pragma once

// The crawler's transport: libcurl's multi interface on one I/O thread (see
// crawler.hpp for why). Fetchers submit URLs; each transfer's result comes
// back to the submitting actor as (fetched_atom, id, fetch_result). Every
// transfer has a timeout, a redirect limit and a body cap.

#include "crawler.hpp"
#include "outcome.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace web_crawler::detail {

/// One transfer's result, from the transport to a fetcher and, through the
/// retry helper, to the frontier.
struct fetch_result {
  std::string url;
  std::string final_url;
  std::string body;
  std::string detail;
  outcome kind = outcome::ok;
  int status = 0;
  int attempt = 0;
  int redirects = 0;
  std::size_t bytes = 0;
  double ms = 0;
};

/// Tags a transfer's result: (fetched_atom, id, fetch_result).
using fetched_atom = caf::atom_constant<caf::atom("wcFetched")>;

/// Milliseconds since `t0`.
double ms_since(std::chrono::steady_clock::time_point t0);

/// Transfers on one curl multi handle, driven by one I/O thread that the
/// constructor starts and `shutdown` (or the destructor) joins. Thread-safe.
class transport {
public:
  explicit transport(const crawl_options& opts);

  /// Shuts down.
  ~transport();

  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  /// Starts fetching `url`; `reply_to` gets (fetched, id, fetch_result).
  void submit(std::uint64_t id, std::string url, caf::actor reply_to);

  /// Cancels every transfer in flight and every later one.
  void cancel_all();

  /// Cancels everything and joins the I/O thread. Idempotent.
  void shutdown();

private:
  class impl;
  std::unique_ptr<impl> impl_;
};

} // namespace web_crawler::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::detail::fetch_result)
