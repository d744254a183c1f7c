#include "crawler.hpp"

#include "actorbus/actors/retry.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "links.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <curl/curl.h>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>

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

struct progress {
  std::size_t queued = 0;
  std::size_t in_flight = 0;
};

} // namespace web_crawler::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::detail::fetch_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::detail::progress)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::fetch_record)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::crawl_report)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::page_links)

namespace web_crawler {

using detail::fetch_result;
using namespace std::chrono_literals;

namespace {

using fetch_atom = caf::atom_constant<caf::atom("wcFetch")>;
using fetched_atom = caf::atom_constant<caf::atom("wcFetched")>;
using parse_atom = caf::atom_constant<caf::atom("wcParse")>;
using start_atom = caf::atom_constant<caf::atom("wcStart")>;
using stop_atom = caf::atom_constant<caf::atom("wcStop")>;
using record_atom = caf::atom_constant<caf::atom("wcRecord")>;
using done_atom = caf::atom_constant<caf::atom("wcDone")>;
using tick_atom = caf::atom_constant<caf::atom("wcTick")>;

constexpr caf::atom_value crawl_category = caf::atom("crawl");

/// The one error code of the crawl category: a failure worth retrying. Its
/// context holds the fetch_result, so the last one survives the retries.
constexpr std::uint8_t retryable_code = 1;

bool worth_retry(const fetch_result& r) {
  return r.kind == outcome::server_error || r.kind == outcome::timeout ||
         r.kind == outcome::connect;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - t0)
      .count();
}

// -- transport: libcurl multi on one I/O thread ------------------------------

class transport {
public:
  explicit transport(const crawl_options& opts)
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

  ~transport() {
    shutdown();
    curl_multi_cleanup(multi_);
  }

  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

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
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &transport::on_data);
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

// -- fetcher ------------------------------------------------------------------

struct fetcher_state {
  std::shared_ptr<transport> io;
  std::uint64_t next_id = 0;
  std::unordered_map<std::uint64_t, caf::typed_response_promise<fetch_result>>
      pending;
  // Attempts per URL; a URL is fetched by one fetcher, all its retries too.
  std::unordered_map<std::string, int> tries;
};

caf::behavior fetcher(caf::stateful_actor<fetcher_state>* self,
                      std::shared_ptr<transport> io) {
  self->state.io = std::move(io);
  return {
      [self](fetch_atom, std::string& url) -> caf::result<fetch_result> {
        auto& st = self->state;
        auto id = ++st.next_id;
        auto rp = self->make_response_promise<fetch_result>();
        st.pending.emplace(id, rp);
        st.io->submit(id, std::move(url), caf::actor_cast<caf::actor>(self));
        return rp;
      },
      [self](fetched_atom, std::uint64_t id, fetch_result& r) {
        auto& st = self->state;
        auto it = st.pending.find(id);
        if (it == st.pending.end())
          return;
        auto rp = std::move(it->second);
        st.pending.erase(it);
        r.attempt = ++st.tries[r.url];
        if (worth_retry(r)) {
          rp.deliver(caf::error{retryable_code, crawl_category,
                                caf::make_message(std::move(r))});
        } else {
          st.tries.erase(r.url);
          rp.deliver(std::move(r));
        }
      },
  };
}

// -- parser
// ---------------------------------------------------------------------

caf::behavior parser(caf::event_based_actor*, std::size_t /* index */) {
  return {
      [](parse_atom, const std::string& url, const std::string& body) {
        return extract_links(body, url);
      },
  };
}

// -- reporter
// ---------------------------------------------------------------------

struct reporter_state {
  crawl_report report;
  bool quiet = false;
  bool tty = false;
  bool drawn = false;
  std::chrono::steady_clock::time_point t0;
  detail::progress last;
  std::size_t ok = 0;
  std::size_t broken = 0;
  std::size_t errors = 0;
  std::size_t bytes = 0;
  std::shared_ptr<std::promise<crawl_report>> done;
  std::function<void()> on_done;
};

std::string human_bytes(std::size_t n) {
  if (n >= (1u << 20))
    return fmt::format("{:.1f} MB", double(n) / (1 << 20));
  if (n >= 1024)
    return fmt::format("{:.1f} KB", double(n) / 1024);
  return fmt::format("{} B", n);
}

void clear_progress(reporter_state& st) {
  if (st.drawn) {
    std::fputs("\r\033[K", stderr);
    st.drawn = false;
  }
}

void draw_progress(reporter_state& st) {
  auto secs = ms_since(st.t0) / 1000;
  auto fetched = st.report.fetches.size();
  std::fprintf(stderr,
               "\r\033[K[crawl] %zu fetched (%zu ok, %zu broken, %zu errors), "
               "%zu queued, %zu in flight, %.1f pages/s, %s",
               fetched, st.ok, st.broken, st.errors, st.last.queued,
               st.last.in_flight, secs > 0 ? double(fetched) / secs : 0.0,
               human_bytes(st.bytes).c_str());
  std::fflush(stderr);
  st.drawn = true;
}

void print_record(const fetch_record& r) {
  std::string line =
      fmt::format("{:>4} {:<18} {:>8.1f} ms {:>9}  d{:<2} ", r.status,
                  to_string(r.kind), r.ms, human_bytes(r.bytes), r.depth);
  line += r.url;
  if (r.kind == outcome::ok && (r.links > 0 || r.final_url.empty()))
    line += fmt::format("  ({} links)", r.links);
  if (!r.final_url.empty())
    line += " -> " + r.final_url;
  if (r.kind == outcome::broken)
    line += "  <- " + r.referrer;
  if (r.attempts > 1)
    line += fmt::format("  [{} attempts]", r.attempts);
  if (!r.detail.empty())
    line += "  (" + r.detail + ")";
  line += '\n';
  std::fputs(line.c_str(), stdout);
}

caf::behavior reporter(caf::stateful_actor<reporter_state>* self, bool quiet,
                       std::shared_ptr<std::promise<crawl_report>> done,
                       std::function<void()> on_done) {
  auto& st = self->state;
  st.quiet = quiet;
  st.tty = ::isatty(STDERR_FILENO) == 1;
  st.t0 = std::chrono::steady_clock::now();
  st.done = std::move(done);
  st.on_done = std::move(on_done);
  if (st.tty)
    self->delayed_send(self, 100ms, tick_atom::value);
  return {
      [self](record_atom, fetch_record& r, detail::progress p) {
        auto& st = self->state;
        st.last = p;
        st.bytes += r.bytes;
        if (r.kind == outcome::ok || r.kind == outcome::non_html)
          ++st.ok;
        else if (r.kind == outcome::broken)
          ++st.broken;
        else
          ++st.errors;
        if (!st.quiet) {
          clear_progress(st);
          print_record(r);
          std::fflush(stdout);
          // The progress line stays under the streamed lines.
          if (st.tty)
            draw_progress(st);
        }
        st.report.fetches.push_back(std::move(r));
      },
      [self](tick_atom) {
        auto& st = self->state;
        if (!st.done)
          return;
        draw_progress(st);
        self->delayed_send(self, 100ms, tick_atom::value);
      },
      [self](done_atom, crawl_report& summary) {
        auto& st = self->state;
        if (!st.done)
          return;
        clear_progress(st);
        std::fflush(stdout);
        summary.fetches = std::move(st.report.fetches);
        summary.seconds = ms_since(st.t0) / 1000;
        // on_done first: once the value is set, the waiting thread may
        // destroy whatever on_done refers to.
        if (st.on_done)
          st.on_done();
        st.done->set_value(std::move(summary));
        st.done = nullptr;
      },
  };
}

// -- frontier
// ----------------------------------------------------------------------

struct pending_url {
  std::string url;
  std::string referrer;
  int depth = 0;
};

struct frontier_state {
  crawl_options opts;
  std::string start_host;
  actorbus::actors::retry_policy policy;
  caf::timespan per_try{0};
  std::vector<caf::actor> fetchers;
  std::vector<caf::actor> parsers;
  std::size_t next_fetcher = 0;
  std::size_t next_parser = 0;
  caf::actor reporter;
  std::unordered_set<std::string> seen;
  std::unordered_set<std::string> offsite_seen;
  // Per-host FIFO queues; a host with an empty queue is erased.
  std::map<std::string, std::deque<pending_url>> queues;
  std::unordered_map<std::string, std::size_t> host_in_flight;
  std::size_t queued = 0;
  std::size_t in_flight = 0;
  std::size_t parsing = 0;
  std::size_t dispatched = 0;
  // No new fetches (page limit reached or stopped).
  bool closed = false;
  bool finished = false;
  crawl_report summary;
};

using frontier_actor = caf::stateful_actor<frontier_state>;

void dispatch(frontier_actor* self);

void close(frontier_actor* self, const char* reason) {
  auto& st = self->state;
  if (st.closed)
    return;
  st.closed = true;
  st.summary.stop_reason = reason;
  st.summary.not_fetched += st.queued;
  st.queues.clear();
  st.queued = 0;
}

void maybe_finish(frontier_actor* self) {
  auto& st = self->state;
  if (st.finished || st.in_flight > 0 || st.parsing > 0 || st.queued > 0)
    return;
  st.finished = true;
  if (st.summary.stop_reason.empty())
    st.summary.stop_reason = "done";
  self->send(st.reporter, done_atom::value, std::move(st.summary));
}

void report(frontier_actor* self, fetch_record rec) {
  auto& st = self->state;
  self->send(st.reporter, record_atom::value, std::move(rec),
             detail::progress{st.queued, st.in_flight});
}

void add_links(frontier_actor* self, const std::string& page, int depth,
               page_links& links) {
  auto& st = self->state;
  st.summary.dropped += links.dropped;
  st.summary.duplicates += links.repeated;
  for (auto& url : links.urls) {
    if (st.opts.same_host && host_of(url) != st.start_host) {
      if (st.offsite_seen.insert(url).second)
        ++st.summary.offsite;
      continue;
    }
    if (st.opts.max_depth >= 0 && depth > st.opts.max_depth) {
      ++st.summary.beyond_depth;
      continue;
    }
    if (!st.seen.insert(url).second) {
      ++st.summary.duplicates;
      continue;
    }
    if (st.closed) {
      ++st.summary.not_fetched;
      continue;
    }
    auto host = host_of(url);
    st.queues[host].push_back({std::move(url), page, depth});
    ++st.queued;
  }
}

void parse_page(frontier_actor* self, fetch_record rec, std::string body) {
  auto& st = self->state;
  ++st.parsing;
  auto page = rec.final_url.empty() ? rec.url : rec.final_url;
  auto parser = st.parsers[st.next_parser++ % st.parsers.size()];
  self->request(parser, std::chrono::seconds(30), parse_atom::value, page,
                std::move(body))
      .then(
          [self, rec, page](page_links& links) mutable {
            --self->state.parsing;
            rec.links = links.urls.size();
            add_links(self, page, rec.depth + 1, links);
            report(self, std::move(rec));
            dispatch(self);
          },
          [self, rec](caf::error& err) mutable {
            --self->state.parsing;
            rec.kind = outcome::other;
            rec.detail = "parser: " + self->system().render(err);
            report(self, std::move(rec));
            dispatch(self);
          });
}

void on_fetched(frontier_actor* self, const pending_url& entry,
                const std::string& host, caf::expected<fetch_result> res) {
  auto& st = self->state;
  --st.in_flight;
  if (--st.host_in_flight[host] == 0)
    st.host_in_flight.erase(host);
  fetch_result r;
  if (res) {
    r = std::move(*res);
  } else if (res.error().category() == crawl_category &&
             res.error().context().match_elements<fetch_result>()) {
    r = res.error().context().get_as<fetch_result>(0);
  } else {
    r.kind = outcome::other;
    r.detail = self->system().render(res.error());
  }
  fetch_record rec;
  rec.url = entry.url;
  rec.referrer = entry.referrer;
  rec.depth = entry.depth;
  rec.kind = r.kind;
  rec.status = r.status;
  rec.attempts = std::max(1, r.attempt);
  rec.redirects = r.redirects;
  rec.bytes = r.bytes;
  rec.ms = r.ms;
  rec.detail = std::move(r.detail);
  bool parse = rec.kind == outcome::ok && !st.closed;
  if (!r.final_url.empty()) {
    auto final_url = normalize_url(r.final_url);
    rec.final_url = final_url ? *final_url : r.final_url;
    // The page a redirect ends on is fetched (and parsed) once.
    if (rec.final_url != rec.url && !st.seen.insert(rec.final_url).second) {
      ++st.summary.redirect_to_known;
      parse = false;
    }
  }
  if (parse)
    parse_page(self, std::move(rec), std::move(r.body));
  else
    report(self, std::move(rec));
  dispatch(self);
}

void launch(frontier_actor* self, pending_url entry, const std::string& host) {
  auto& st = self->state;
  ++st.in_flight;
  ++st.host_in_flight[host];
  ++st.dispatched;
  auto fetcher = st.fetchers[st.next_fetcher++ % st.fetchers.size()];
  auto url = entry.url;
  actorbus::actors::retry_request<fetch_result>(
      self, fetcher, st.policy, st.per_try,
      [self, entry = std::move(entry), host](caf::expected<fetch_result> r) {
        on_fetched(self, entry, host, std::move(r));
      },
      fetch_atom::value, std::move(url));
}

void dispatch(frontier_actor* self) {
  auto& st = self->state;
  while (!st.closed && st.queued > 0 && st.in_flight < st.opts.concurrency) {
    if (st.opts.max_pages > 0 && st.dispatched >= st.opts.max_pages) {
      close(self, "page limit");
      break;
    }
    auto it = std::find_if(st.queues.begin(), st.queues.end(), [&](auto& kv) {
      auto busy = st.host_in_flight.find(kv.first);
      return busy == st.host_in_flight.end() || busy->second < st.opts.per_host;
    });
    if (it == st.queues.end())
      break;
    auto host = it->first;
    auto entry = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty())
      st.queues.erase(it);
    --st.queued;
    launch(self, std::move(entry), host);
  }
  // The page limit also holds for links found later.
  if (!st.closed && st.opts.max_pages > 0 &&
      st.dispatched >= st.opts.max_pages && st.in_flight == 0 &&
      st.parsing == 0)
    close(self, "page limit");
  maybe_finish(self);
}

caf::behavior frontier(frontier_actor* self, crawl_options opts,
                       std::vector<caf::actor> fetchers,
                       std::vector<caf::actor> parsers, caf::actor reporter) {
  auto& st = self->state;
  st.start_host = host_of(opts.start_url);
  st.policy.attempts = static_cast<std::size_t>(std::max(0, opts.retries)) + 1;
  st.policy.backoff.max = std::chrono::seconds(5);
  st.policy.backoff.min = std::min<caf::timespan>(
      std::chrono::milliseconds(opts.retry_delay_ms), st.policy.backoff.max);
  st.policy.backoff.multiplier = 2.0;
  st.policy.backoff.jitter = 0.2;
  st.policy.retry_if = [](const caf::error& err) {
    return err.category() == crawl_category && err.code() == retryable_code;
  };
  // The transfer's own timeout ends every attempt; this only guards
  // against a lost reply.
  st.per_try = std::chrono::milliseconds(opts.timeout_ms) + 5s;
  st.opts = std::move(opts);
  st.fetchers = std::move(fetchers);
  st.parsers = std::move(parsers);
  st.reporter = std::move(reporter);
  st.summary.start_url = st.opts.start_url;
  return {
      [self](start_atom) {
        auto& st = self->state;
        st.seen.insert(st.opts.start_url);
        st.queues[host_of(st.opts.start_url)].push_back(
            {st.opts.start_url, {}, 0});
        st.queued = 1;
        dispatch(self);
      },
      [self](stop_atom) {
        close(self, "interrupted");
        maybe_finish(self);
      },
  };
}

} // namespace

// -- crawler
// -------------------------------------------------------------------------

struct crawler::impl {
  std::shared_ptr<transport> io;
  std::future<crawl_report> result;
  caf::actor frontier;
  std::vector<caf::actor> actors;
};

crawler::crawler(actorbus::runtime::runtime& rt, crawl_options opts,
                 std::function<void()> on_done)
    : impl_(std::make_unique<impl>()) {
  auto& sys = rt.system();
  impl_->io = std::make_shared<transport>(opts);
  auto promise = std::make_shared<std::promise<crawl_report>>();
  impl_->result = promise->get_future();
  auto rep = sys.spawn(reporter, opts.quiet, promise, std::move(on_done));
  std::vector<caf::actor> fetchers;
  for (std::size_t i = 0; i < 2; ++i)
    fetchers.push_back(sys.spawn(fetcher, impl_->io));
  auto n = opts.parsers > 0
               ? opts.parsers
               : std::max<std::size_t>(1, std::thread::hardware_concurrency());
  std::vector<caf::actor> parsers;
  for (std::size_t i = 0; i < n; ++i)
    parsers.push_back(sys.spawn(parser, i));
  impl_->actors = fetchers;
  impl_->actors.insert(impl_->actors.end(), parsers.begin(), parsers.end());
  impl_->actors.push_back(rep);
  impl_->frontier = sys.spawn(frontier, std::move(opts), std::move(fetchers),
                              std::move(parsers), rep);
  impl_->actors.push_back(impl_->frontier);
  for (auto& a : impl_->actors)
    rt.track(a);
  caf::anon_send(impl_->frontier, start_atom::value);
}

crawler::~crawler() {
  impl_->io->shutdown();
  for (auto& a : impl_->actors)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

void crawler::stop() {
  caf::anon_send(impl_->frontier, stop_atom::value);
  impl_->io->cancel_all();
}

std::future<crawl_report>& crawler::report() {
  return impl_->result;
}

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
  out.seconds = ms_since(t0) / 1000;
  curl_multi_cleanup(multi);
  return out;
}

void add_crawl_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(crawl_category, [](std::uint8_t, caf::atom_value,
                                            const caf::message& ctx) {
    std::string out = "crawl::retryable";
    if (ctx.match_elements<fetch_result>()) {
      const auto& r = ctx.get_as<fetch_result>(0);
      out += fmt::format("({} {} {})", to_string(r.kind), r.status, r.url);
    }
    return out;
  });
}

} // namespace web_crawler
