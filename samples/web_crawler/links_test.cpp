// URL normal form, link resolution and link extraction of the web_crawler
// sample: what decides which pages are "the same" and where a link leads.

#include "links.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace web_crawler;

namespace {

class links_test : public ::testing::Test {
protected:
  // The page the links under test sit on.
  const std::string page = "http://127.0.0.1:8080/p/sub/page.html?x=1#top";

  page_links sut(const std::string& body) {
    return extract_links(body, page);
  }
};

TEST_F(links_test,
       normal_form_lowercases_and_drops_default_port_dots_and_fragment) {
  EXPECT_EQ(normalize_url("HTTP://Example.COM:80/a/../b/./c.html#frag"),
            "http://example.com/b/c.html");
  EXPECT_EQ(normalize_url("https://example.com:443"), "https://example.com/");
  EXPECT_EQ(normalize_url("http://example.com:8080?q=1"),
            "http://example.com:8080/?q=1");
}

TEST_F(links_test, other_schemes_and_malformed_urls_have_no_normal_form) {
  EXPECT_FALSE(normalize_url("ftp://example.com/file"));
  EXPECT_FALSE(normalize_url("mailto:team@example.com"));
  EXPECT_FALSE(normalize_url("just words"));
  EXPECT_FALSE(normalize_url("http://"));
}

TEST_F(links_test, relative_links_resolve_against_the_page) {
  EXPECT_EQ(resolve_url(page, "next.html"),
            "http://127.0.0.1:8080/p/sub/next.html");
  EXPECT_EQ(resolve_url(page, "./next.html#s2"),
            "http://127.0.0.1:8080/p/sub/next.html");
  EXPECT_EQ(resolve_url(page, "../../q/a.html"),
            "http://127.0.0.1:8080/q/a.html");
  EXPECT_EQ(resolve_url(page, "/root.html"), "http://127.0.0.1:8080/root.html");
  EXPECT_EQ(resolve_url(page, "  HTTP://Other.org/x  "), "http://other.org/x");
  EXPECT_EQ(resolve_url(page, "#only-a-fragment"),
            "http://127.0.0.1:8080/p/sub/page.html?x=1");
  EXPECT_EQ(resolve_url(page, ""), "http://127.0.0.1:8080/p/sub/page.html?x=1");
  EXPECT_EQ(resolve_url(page, "?y=2"),
            "http://127.0.0.1:8080/p/sub/page.html?y=2");
  EXPECT_FALSE(resolve_url(page, "javascript:void(0)"));
}

TEST_F(links_test, the_host_key_keeps_a_non_default_port_and_drops_user_info) {
  EXPECT_EQ(host_of("http://user@example.com:81/x"), "example.com:81");
  EXPECT_EQ(host_of("https://example.com/x?y"), "example.com");
}

TEST_F(links_test,
       links_come_in_document_order_without_repeats_or_other_schemes) {
  auto links = sut(R"(<html><body>
    <a href="b.html">b</a> <p><a href="/a.html#x">a</a></p>
    <a href="b.html#again">b again</a> <a href="mailto:x@y.z">mail</a>
    <a>no href</a> <a href="https://other.org/">other</a></body></html>)");
  EXPECT_EQ(links.urls,
            (std::vector<std::string>{"http://127.0.0.1:8080/p/sub/b.html",
                                      "http://127.0.0.1:8080/a.html",
                                      "https://other.org/"}));
  EXPECT_EQ(links.repeated, 1u);
  EXPECT_EQ(links.dropped, 1u);
}

TEST_F(links_test, a_base_element_changes_where_relative_links_lead) {
  auto links = sut(R"(<html><head><base href="/docs/v2/"></head>
    <body><a href="guide.html">g</a><a href="../v1/old.html">o</a></body></html>)");
  EXPECT_EQ(links.urls, (std::vector<std::string>{
                            "http://127.0.0.1:8080/docs/v2/guide.html",
                            "http://127.0.0.1:8080/docs/v1/old.html"}));
}

TEST_F(links_test, a_base_that_does_not_resolve_is_ignored) {
  auto links =
      sut(R"(<head><base href="javascript:x"></head><a href="n.html">)");
  EXPECT_EQ(links.urls,
            (std::vector<std::string>{"http://127.0.0.1:8080/p/sub/n.html"}));
}

TEST_F(links_test, broken_html_still_yields_its_links) {
  auto links = sut("<div><a href='one.html'>one<a href=two.html>two</div");
  EXPECT_EQ(links.urls,
            (std::vector<std::string>{"http://127.0.0.1:8080/p/sub/one.html",
                                      "http://127.0.0.1:8080/p/sub/two.html"}));
}

} // namespace
