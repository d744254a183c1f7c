#pragma once

// URLs and links for the crawler: normal form of an absolute http(s) URL,
// resolution of a link against its page (and the page's <base>), and link
// extraction from HTML with gumbo. No actors here: parser actors call these.
// Every function is thread-safe (no shared state).

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace web_crawler {

/// The normal form of an absolute http or https URL: scheme and host in
/// lower case, no default port, dot segments removed, empty path as "/", no
/// fragment. Nothing for another scheme or a malformed URL. Two URLs are the
/// same page for the crawler when their normal forms are equal.
std::optional<std::string> normalize_url(std::string_view url);

/// `href` resolved against the absolute URL `base` (RFC 3986) in normal
/// form; nothing when the result is not http(s) or `href` is malformed
/// (`mailto:`, `javascript:`, ...).
std::optional<std::string> resolve_url(std::string_view base,
                                       std::string_view href);

/// "host:port" of a normal-form URL (the port only when not the default),
/// the key of the per-host limit and of `--same-host`.
std::string host_of(std::string_view url);

/// Links found on one page.
struct page_links {
  /// Absolute http(s) links in normal form, in document order, duplicates
  /// removed.
  std::vector<std::string> urls;
  /// Links dropped because they were not http(s) or were malformed.
  std::size_t dropped = 0;
  /// Links that repeated an earlier one on the same page (fragments aside).
  std::size_t repeated = 0;
};

/// The `<a href>` links of `html`, resolved against the page's first
/// `<base href>` if any (itself resolved against `page_url`), else against
/// `page_url`.
page_links extract_links(std::string_view html, std::string_view page_url);

} // namespace web_crawler
