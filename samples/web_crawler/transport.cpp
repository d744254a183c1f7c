#include "transport.hpp"

#include <caf/send.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <curl/curl.h>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace web_crawler {

namespace detail {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - t0)
      .count();
}

class transport::impl {
public:
  explicit impl(const crawl_options& opts)
      : opts_(opts) {
    multi_ = curl_multi_init();
    curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      static_cast<long>(opts.concurrency));
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS,
                      static_cast<long>(opts.per_host));
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS,
                      static_cast<long>(opts.concurrency));
    thread_ = std::thread{[this] { run(); }};
  }

  ~impl() {
    shutdown();
    curl_multi_cleanup(multi_);
  }

  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  /// Starts fetching `url`; `reply_to` gets (fetched, id, fetch_result).
  void submit(std::uint64_t id, std::string url, caf::actor reply_to) {
    auto t = std::make_unique<transfer>();
    t->id = id;
    t->url = std::move(url);
    t->reply_to = std::move(reply_to);
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!stopped_ && !cancelled_) {
        incoming_.push_back(std::move(t));
        t = nullptr;
      }
    }
    if (t)
      reply(*t, outcome::cancelled, "crawl stopped");
    else
      curl_multi_wakeup(multi_);
  }

  /// Cancels every transfer in flight and every later one.
  void cancel_all() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      cancelled_ = true;
    }
    curl_multi_wakeup(multi_);
  }

  /// Cancels everything and joins the I/O thread. Idempotent.
  void shutdown() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stopped_ = true;
    }
    curl_multi_wakeup(multi_);
    if (thread_.joinable())
      thread_.join();
  }

private:
  struct transfer {
    CURL* easy = nullptr;
    std::uint64_t id = 0;
    std::string url;
    caf::actor reply_to;
    std::string body;
    std::size_t bytes = 0;
    bool type_checked = false;
    bool non_html = false;
    bool too_large = false;
    std::chrono::steady_clock::time_point start;
    char error[CURL_ERROR_SIZE] = {};
    const crawl_options* opts = nullptr;
  };

  static bool is_html(const char* content_type) {
    if (content_type == nullptr)
      return false;
    std::string ct{content_type};
    std::transform(ct.begin(), ct.end(), ct.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    return ct.rfind("text/html", 0) == 0 ||
           ct.rfind("application/xhtml+xml", 0) == 0;
  }

  static std::size_t on_data(char* data, std::size_t size, std::size_t n,
                             void* user) {
    auto* t = static_cast<transfer*>(user);
    auto len = size * n;
    if (!t->type_checked) {
      t->type_checked = true;
      char* ct = nullptr;
      curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct);
      t->non_html = !is_html(ct);
    }
    t->bytes += len;
    // Bodies that are not parsed are not downloaded either.
    if (t->non_html)
      return 0;
    if (t->bytes > t->opts->max_body) {
      t->too_large = true;
      return 0;
    }
    t->body.append(data, len);
    return len;
  }

  void reply(transfer& t, outcome kind, std::string detail) {
    fetch_result r;
    r.url = std::move(t.url);
    r.kind = kind;
    r.detail = std::move(detail);
    caf::anon_send(t.reply_to, fetched_atom::value, t.id, std::move(r));
  }

  CURL* easy_handle() {
    if (free_.empty())
      return curl_easy_init();
    auto* e = free_.back();
    free_.pop_back();
    curl_easy_reset(e);
    return e;
  }

  void add(std::unique_ptr<transfer> t) {
    auto* e = easy_handle();
    t->easy = e;
    t->opts = &opts_;
    t->start = std::chrono::steady_clock::now();
    curl_easy_setopt(e, CURLOPT_URL, t->url.c_str());
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &impl::on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS,
                     static_cast<long>(opts_.max_redirects));
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(opts_.timeout_ms));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(opts_.timeout_ms));
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                     static_cast<curl_off_t>(opts_.max_body));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "actorbus-web-crawler/1.0");
    curl_multi_add_handle(multi_, e);
    active_.emplace(e, std::move(t));
  }

  // Classifies a finished transfer and hands it back.
  void finish(CURL* e, CURLcode code) {
    curl_multi_remove_handle(multi_, e);
    auto it = active_.find(e);
    if (it == active_.end())
      return;
    auto t = std::move(it->second);
    active_.erase(it);
    fetch_result r;
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    long redirects = 0;
    curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &redirects);
    char* final_url = nullptr;
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &final_url);
    r.status = static_cast<int>(status);
    r.redirects = static_cast<int>(redirects);
    if (redirects > 0 && final_url != nullptr)
      r.final_url = final_url;
    bool answered = code == CURLE_OK || (code == CURLE_WRITE_ERROR &&
                                         (t->non_html || t->too_large));
    if (answered) {
      if (status >= 500)
        r.kind = outcome::server_error;
      else if (status >= 400)
        r.kind = outcome::broken;
      else if (t->too_large)
        r.kind = outcome::too_large;
      else if (status < 200 || status >= 300) {
        r.kind = outcome::other;
        r.detail = fmt::format("HTTP {}", status);
      } else if (t->non_html)
        r.kind = outcome::non_html;
      else
        r.kind = outcome::ok;
    } else {
      switch (code) {
      case CURLE_OPERATION_TIMEDOUT:
        r.kind = outcome::timeout;
        break;
      case CURLE_TOO_MANY_REDIRECTS:
        r.kind = outcome::too_many_redirects;
        break;
      case CURLE_FILESIZE_EXCEEDED:
        r.kind = outcome::too_large;
        break;
      case CURLE_COULDNT_CONNECT:
      case CURLE_GOT_NOTHING:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
        r.kind = outcome::connect;
        break;
      case CURLE_COULDNT_RESOLVE_HOST:
        r.kind = outcome::dns;
        break;
      default:
        r.kind = outcome::other;
        break;
      }
      r.detail = t->error[0] != '\0' ? t->error : curl_easy_strerror(code);
    }
    r.url = std::move(t->url);
    r.bytes = t->bytes;
    if (r.kind == outcome::ok)
      r.body = std::move(t->body);
    r.ms = ms_since(t->start);
    free_.push_back(e);
    caf::anon_send(t->reply_to, fetched_atom::value, t->id, std::move(r));
  }

  void cancel_active() {
    for (auto& [e, t] : active_) {
      curl_multi_remove_handle(multi_, e);
      free_.push_back(e);
      reply(*t, outcome::cancelled, "crawl stopped");
    }
    active_.clear();
  }

  void run() {
    for (;;) {
      std::vector<std::unique_ptr<transfer>> fresh;
      bool stopped = false;
      bool cancelled = false;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        fresh.swap(incoming_);
        stopped = stopped_;
        cancelled = cancelled_;
      }
      if (stopped || cancelled) {
        cancel_active();
        for (auto& t : fresh)
          reply(*t, outcome::cancelled, "crawl stopped");
        if (stopped)
          break;
      } else {
        for (auto& t : fresh)
          add(std::move(t));
      }
      int running = 0;
      curl_multi_perform(multi_, &running);
      int left = 0;
      while (auto* msg = curl_multi_info_read(multi_, &left))
        if (msg->msg == CURLMSG_DONE)
          finish(msg->easy_handle, msg->data.result);
      curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
    for (auto* e : free_)
      curl_easy_cleanup(e);
    free_.clear();
  }

  crawl_options opts_;
  CURLM* multi_ = nullptr;
  std::mutex mtx_;
  std::vector<std::unique_ptr<transfer>> incoming_;
  bool stopped_ = false;
  bool cancelled_ = false;
  // Owned by the I/O thread.
  std::unordered_map<CURL*, std::unique_ptr<transfer>> active_;
  std::vector<CURL*> free_;
  std::thread thread_;
};

transport::transport(const crawl_options& opts)
    : impl_(std::make_unique<impl>(opts)) {}

transport::~transport() = default;

void transport::submit(std::uint64_t id, std::string url, caf::actor reply_to) {
  impl_->submit(id, std::move(url), std::move(reply_to));
}

void transport::cancel_all() {
  impl_->cancel_all();
}

void transport::shutdown() {
  impl_->shutdown();
}

} // namespace detail

load_result load_test(const std::string& url, std::size_t requests,
                      std::size_t concurrency, int timeout_ms) {
  load_result out;
  auto* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                    static_cast<long>(concurrency));
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
                    static_cast<long>(concurrency));
  auto discard =
      +[](char*, std::size_t size, std::size_t n, void*) { return size * n; };
  auto add = [&](CURL* e) {
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_multi_add_handle(multi, e);
  };
  auto t0 = std::chrono::steady_clock::now();
  std::size_t started = 0;
  for (; started < std::min(requests, concurrency); ++started)
    add(curl_easy_init());
  for (std::size_t done = 0; done < requests;) {
    int running = 0;
    curl_multi_perform(multi, &running);
    int left = 0;
    while (auto* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE)
        continue;
      auto* e = msg->easy_handle;
      long status = 0;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
      (msg->data.result == CURLE_OK && status == 200 ? out.ok : out.failed)++;
      ++done;
      curl_multi_remove_handle(multi, e);
      if (started < requests) {
        ++started;
        add(e);
      } else {
        curl_easy_cleanup(e);
      }
    }
    if (done < requests)
      curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  out.seconds = detail::ms_since(t0) / 1000;
  curl_multi_cleanup(multi);
  return out;
}

} // namespace web_crawler
