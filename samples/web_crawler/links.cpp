#include "links.hpp"

#include <algorithm>
#include <cctype>
#include <curl/curl.h>
#include <gumbo.h>
#include <memory>
#include <unordered_set>

namespace web_crawler {

namespace {

struct url_deleter {
  void operator()(CURLU* h) const noexcept {
    curl_url_cleanup(h);
  }
};
using url_handle = std::unique_ptr<CURLU, url_deleter>;

struct curl_string {
  char* ptr = nullptr;
  ~curl_string() {
    curl_free(ptr);
  }
};

std::string_view trim(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
  };
  while (!s.empty() && space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && space(s.back()))
    s.remove_suffix(1);
  return s;
}

// Puts `h` (holding a URL) in normal form and returns it as text.
std::optional<std::string> finish(CURLU* h) {
  curl_string scheme;
  if (curl_url_get(h, CURLUPART_SCHEME, &scheme.ptr, 0) != CURLUE_OK)
    return std::nullopt;
  std::string_view s{scheme.ptr};
  if (s != "http" && s != "https")
    return std::nullopt;
  curl_string host;
  if (curl_url_get(h, CURLUPART_HOST, &host.ptr, 0) != CURLUE_OK)
    return std::nullopt;
  std::string lower{host.ptr};
  if (std::any_of(lower.begin(), lower.end(),
                  [](unsigned char c) { return std::isupper(c); })) {
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (curl_url_set(h, CURLUPART_HOST, lower.c_str(), 0) != CURLUE_OK)
      return std::nullopt;
  }
  curl_url_set(h, CURLUPART_FRAGMENT, nullptr, 0);
  curl_string out;
  if (curl_url_get(h, CURLUPART_URL, &out.ptr, CURLU_NO_DEFAULT_PORT) !=
      CURLUE_OK)
    return std::nullopt;
  return std::string{out.ptr};
}

url_handle parse_absolute(std::string_view url) {
  url_handle h{curl_url()};
  std::string text{trim(url)};
  if (!h || curl_url_set(h.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK)
    return nullptr;
  return h;
}

// `href` resolved against the parsed absolute URL `base`.
std::optional<std::string> resolve_with(CURLU* base, std::string_view href) {
  href = trim(href);
  url_handle h{curl_url_dup(base)};
  // A bare fragment (or nothing) names the page itself; curl 7.88 would drop
  // the page's file name and query.
  if (h && (href.empty() || href.front() == '#'))
    return finish(h.get());
  std::string text{href};
  if (!h || curl_url_set(h.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK)
    return std::nullopt;
  return finish(h.get());
}

} // namespace

std::optional<std::string> normalize_url(std::string_view url) {
  auto h = parse_absolute(url);
  if (!h)
    return std::nullopt;
  return finish(h.get());
}

std::optional<std::string> resolve_url(std::string_view base,
                                       std::string_view href) {
  auto h = parse_absolute(base);
  if (!h)
    return std::nullopt;
  return resolve_with(h.get(), href);
}

std::string host_of(std::string_view url) {
  auto start = url.find("://");
  if (start == std::string_view::npos)
    return {};
  start += 3;
  auto end = url.find_first_of("/?#", start);
  auto authority =
      url.substr(start, end == std::string_view::npos ? std::string_view::npos
                                                      : end - start);
  if (auto at = authority.rfind('@'); at != std::string_view::npos)
    authority.remove_prefix(at + 1);
  return std::string{authority};
}

page_links extract_links(std::string_view html, std::string_view page_url) {
  page_links result;
  std::unique_ptr<GumboOutput, void (*)(GumboOutput*)> doc{
      gumbo_parse_with_options(&kGumboDefaultOptions, html.data(), html.size()),
      [](GumboOutput* out) {
        gumbo_destroy_output(&kGumboDefaultOptions, out);
      }};
  std::vector<std::string_view> hrefs;
  std::optional<std::string_view> base_href;
  std::vector<const GumboNode*> todo{doc->root};
  while (!todo.empty()) {
    auto* node = todo.back();
    todo.pop_back();
    if (node->type != GUMBO_NODE_ELEMENT)
      continue;
    const auto& el = node->v.element;
    if (el.tag == GUMBO_TAG_A || (el.tag == GUMBO_TAG_BASE && !base_href)) {
      if (auto* attr = gumbo_get_attribute(&el.attributes, "href")) {
        if (el.tag == GUMBO_TAG_A)
          hrefs.emplace_back(attr->value);
        else
          base_href = attr->value;
      }
    }
    // Children pushed in reverse so that links come out in document order.
    for (auto i = el.children.length; i > 0; --i)
      todo.push_back(static_cast<const GumboNode*>(el.children.data[i - 1]));
  }
  auto page = parse_absolute(page_url);
  if (!page) {
    result.dropped = hrefs.size();
    return result;
  }
  if (base_href) {
    // A <base> that does not resolve is ignored, as browsers do.
    if (auto base = resolve_with(page.get(), *base_href))
      if (auto parsed = parse_absolute(*base))
        page = std::move(parsed);
  }
  std::unordered_set<std::string> unique;
  for (auto href : hrefs) {
    auto url = resolve_with(page.get(), href);
    if (!url)
      ++result.dropped;
    else if (!unique.insert(*url).second)
      ++result.repeated;
    else
      result.urls.push_back(std::move(*url));
  }
  return result;
}

} // namespace web_crawler
