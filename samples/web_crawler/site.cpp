#include "site.hpp"

#include <atomic>
#include <chrono>
#include <httplib.h>
#include <string_view>
#include <thread>
#include <vector>

namespace web_crawler {

namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

constexpr std::size_t random_links = 5;
constexpr std::string_view words[] = {
    "actor", "message", "mailbox", "crawler",  "frontier", "fetch", "parse",
    "link",  "page",    "host",    "retry",    "backoff",  "queue", "limit",
    "depth", "status",  "timeout", "redirect", "anchor",   "base",  "site"};

bool has_base(std::size_t i) {
  return i % 9 == 4;
}

bool has_broken_link(std::size_t i) {
  return i % 13 == 5;
}

std::string page_path(std::size_t j) {
  return "/p/" + std::to_string(j) + ".html";
}

// Link text for page `j` in one of six forms, written for a page whose
// relative links resolve against /p/ (or /p/sub/ under its <base>).
std::string href(std::size_t j, unsigned form, bool base, std::size_t from,
                 const std::string& host) {
  auto n = std::to_string(j) + ".html";
  std::string up = base ? "../" : "";
  switch (form) {
  case 0:
    return up + n;
  case 1:
    return "./" + up + n;
  case 2:
    return up + "../p/" + n;
  case 3:
    return "/p/" + n + "#s" + std::to_string(from);
  case 4:
    return "http://" + host + "/p/" + n;
  default:
    return up + n + "#top";
  }
}

struct link {
  std::string href;
  std::string text;
};

void append_filler(std::string& out, std::uint64_t r, std::size_t bytes) {
  out += "<p>";
  auto start = out.size();
  while (out.size() - start < bytes) {
    r = splitmix64(r);
    out += words[r % std::size(words)];
    out += (r >> 40) % 11 == 0 ? ". " : " ";
  }
  out += "</p>\n";
}

std::string render(const std::string& title, bool base,
                   const std::vector<link>& links, std::uint64_t r) {
  std::string out;
  out.reserve(3000);
  out += "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>";
  out += title;
  out += "</title>";
  if (base)
    out += "<base href=\"/p/sub/\">";
  out += "</head>\n<body><h1>";
  out += title;
  out += "</h1>\n";
  append_filler(out, r, 700);
  out += "<ul>\n";
  for (const auto& l : links) {
    out += "<li><a href=\"";
    out += l.href;
    out += "\">";
    out += l.text;
    out += "</a></li>\n";
  }
  out += "</ul>\n";
  append_filler(out, r + 1, 900);
  out += "</body></html>\n";
  return out;
}

std::vector<link> links_of(const site_options& o, std::size_t i,
                           const std::string& host) {
  std::vector<link> links;
  bool base = has_base(i);
  auto next = (i + 1) % o.pages;
  links.push_back({href(next, i % 4, base, i, host), "next"});
  auto r = splitmix64(o.seed * 0x100000001B3ull + i);
  for (std::size_t k = 0; k < random_links; ++k) {
    r = splitmix64(r);
    auto j = r % o.pages;
    links.push_back(
        {href(j, (r >> 32) % 6, base, i, host), "page " + std::to_string(j)});
  }
  // The first random link once more, with a fragment: the same page.
  auto again = links[1].href;
  if (auto hash = again.find('#'); hash != std::string::npos)
    again.resize(hash);
  links.push_back({again + "#again", "again"});
  if (has_broken_link(i))
    links.push_back({"/missing/" + std::to_string(i) + ".html", "gone"});
  switch (i) {
  case 1:
    links.push_back({"/old/a", "moved"});
    break;
  case 2:
    links.push_back({"/loop", "loop"});
    break;
  case 3:
    links.push_back({base ? "../flaky.html" : "flaky.html", "flaky"});
    break;
  case 4:
    links.push_back({"/p/slow.html", "slow"});
    break;
  case 5:
    links.push_back({"/files/data.json", "data"});
    break;
  case 6:
    if (o.hang_ms > 0)
      links.push_back({"/p/hang.html", "hang"});
    break;
  case 7:
    links.push_back({base ? "../big.html" : "big.html", "big"});
    break;
  default:
    break;
  }
  return links;
}

std::string home(const std::string& host) {
  std::vector<link> links{
      {"p/0.html", "start"},
      {"/p/1.html#intro", "second"},
      {"http://" + host + "/p/2.html", "third"},
      {"mailto:team@example.com", "mail"},
      {"javascript:void(0)", "script"},
      {"http://offsite.invalid/", "elsewhere"},
      {"p/0.html", "start again"},
  };
  return render("Demo site", false, links, 0);
}

} // namespace

std::map<std::string, expected_fetch>
expected_crawl(const site_options& site, const crawl_limits& limits) {
  std::map<std::string, expected_fetch> out;
  out["/"] = {};
  for (std::size_t i = 0; i < site.pages; ++i) {
    out[page_path(i)] = {};
    if (has_broken_link(i))
      out["/missing/" + std::to_string(i) + ".html"] = {outcome::broken, 404,
                                                        page_path(i), 1};
  }
  out["/old/a"] = {};
  out["/loop"] = {outcome::too_many_redirects, 0, {}, 1};
  out["/p/flaky.html"] = {outcome::ok, 200, {}, 2};
  out["/p/slow.html"] = {};
  out["/files/data.json"] = {outcome::non_html, 200, {}, 1};
  if (site.hang_ms > 0) {
    if (site.hang_ms > limits.timeout_ms)
      out["/p/hang.html"] = {outcome::timeout, 0, {}, limits.retries + 1};
    else
      out["/p/hang.html"] = {};
  }
  if (site.big_bytes > limits.max_body)
    out["/p/big.html"] = {outcome::too_large, 200, {}, 1};
  else
    out["/p/big.html"] = {};
  return out;
}

struct demo_site::impl {
  site_options opts;
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<int> flaky_hits{0};

  void pause(int ms) {
    auto until =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!stopping.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  static void html(httplib::Response& res, std::string body) {
    res.set_content(std::move(body), "text/html; charset=utf-8");
  }

  void routes() {
    using req_t = const httplib::Request&;
    using res_t = httplib::Response&;
    server.Get("/", [](req_t req, res_t res) {
      html(res, home(req.get_header_value("Host")));
    });
    server.Get("/old/a",
               [](req_t, res_t res) { res.set_redirect("/old/b", 301); });
    server.Get("/old/b", [this](req_t, res_t res) {
      res.set_redirect(page_path(opts.pages / 2), 302);
    });
    server.Get("/loop",
               [](req_t, res_t res) { res.set_redirect("/loop", 302); });
    server.Get("/files/data.json", [](req_t, res_t res) {
      res.set_content("{\"pages\": \"generated\"}", "application/json");
    });
    server.Get("/p/flaky.html", [this](req_t, res_t res) {
      if (flaky_hits.fetch_add(1) == 0) {
        res.status = 503;
        res.set_content("try again", "text/plain");
        return;
      }
      html(res, render("Flaky", false, {{"0.html", "home"}}, 3));
    });
    server.Get("/p/slow.html", [this](req_t, res_t res) {
      pause(opts.slow_ms);
      html(res, render("Slow", false, {{"1.html", "next"}}, 4));
    });
    if (opts.hang_ms > 0)
      server.Get("/p/hang.html", [this](req_t, res_t res) {
        pause(opts.hang_ms);
        html(res, render("Hang", false, {{"2.html", "next"}}, 5));
      });
    server.Get("/p/big.html", [this](req_t, res_t res) {
      std::string body = "<!DOCTYPE html>\n<html><body>";
      append_filler(body, 6, opts.big_bytes);
      body += "</body></html>\n";
      html(res, std::move(body));
    });
    server.Get(R"(/p/(\d{1,9})\.html)", [this](req_t req, res_t res) {
      auto i = std::stoull(req.matches[1].str());
      if (i >= opts.pages) {
        res.status = 404;
        return;
      }
      html(res, render("Page " + std::to_string(i), has_base(i),
                       links_of(opts, i, req.get_header_value("Host")),
                       opts.seed + i));
    });
  }
};

demo_site::demo_site(site_options opts)
    : impl_(std::make_unique<impl>()) {
  if (opts.pages < 8)
    opts.pages = 8;
  impl_->opts = opts;
  auto threads = opts.threads;
  impl_->server.new_task_queue = [threads] {
    return new httplib::ThreadPool(threads);
  };
  // Headers and body go out in separate writes: without TCP_NODELAY every
  // response would wait for the client's delayed ACK (40 ms).
  impl_->server.set_tcp_nodelay(true);
  impl_->server.set_keep_alive_max_count(100000);
  impl_->server.set_keep_alive_timeout(10);
  impl_->routes();
}

demo_site::~demo_site() {
  stop();
}

std::optional<std::string> demo_site::start(int port) {
  auto& s = impl_->server;
  if (port == 0) {
    impl_->port = s.bind_to_any_port("127.0.0.1");
  } else {
    impl_->port = s.bind_to_port("127.0.0.1", port) ? port : -1;
  }
  if (impl_->port <= 0)
    return "cannot bind 127.0.0.1:" + std::to_string(port);
  // The socket listens from the bind on: early connections wait in its
  // backlog until the accept loop runs.
  impl_->thread = std::thread{[this] { impl_->server.listen_after_bind(); }};
  return std::nullopt;
}

int demo_site::port() const {
  return impl_->port;
}

std::string demo_site::origin() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port);
}

void demo_site::stop() {
  impl_->stopping = true;
  impl_->server.stop();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

} // namespace web_crawler
