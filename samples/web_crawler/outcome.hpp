#pragma once

// How the fetch of one URL ended: shared by the crawler's report and the
// demo site's expectations, so `--verify` compares like with like.

#include <cstdint>
#include <string_view>

namespace web_crawler {

enum class outcome : std::uint8_t {
  /// 2xx HTML page, links extracted.
  ok,
  /// 2xx with a content type other than HTML: not parsed.
  non_html,
  /// 4xx: a broken link (reported with its referrer).
  broken,
  /// 5xx still failing after the last retry.
  server_error,
  /// No complete answer within `--timeout`, after the last retry.
  timeout,
  /// More than the redirect limit (or a loop).
  too_many_redirects,
  /// Body larger than `--max-body`.
  too_large,
  /// Connection refused or reset, after the last retry.
  connect,
  /// Host name did not resolve.
  dns,
  /// Stopped by Ctrl-C before it finished.
  cancelled,
  /// Any other transfer error.
  other,
};

constexpr std::string_view to_string(outcome x) {
  switch (x) {
  case outcome::ok:
    return "ok";
  case outcome::non_html:
    return "non_html";
  case outcome::broken:
    return "broken";
  case outcome::server_error:
    return "server_error";
  case outcome::timeout:
    return "timeout";
  case outcome::too_many_redirects:
    return "too_many_redirects";
  case outcome::too_large:
    return "too_large";
  case outcome::connect:
    return "connect";
  case outcome::dns:
    return "dns";
  case outcome::cancelled:
    return "cancelled";
  case outcome::other:
    return "other";
  }
  return "?";
}

/// Errors are outcomes that are neither a fetched page nor a broken link.
constexpr bool is_error(outcome x) {
  return x != outcome::ok && x != outcome::non_html && x != outcome::broken;
}

} // namespace web_crawler
