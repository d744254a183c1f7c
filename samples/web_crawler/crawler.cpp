#include "crawler.hpp"

#include "actorbus/actors/retry.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "links.hpp"
#include "transport.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>

namespace web_crawler::detail {

struct progress {
  std::size_t queued = 0;
  std::size_t in_flight = 0;
};

} // namespace web_crawler::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::detail::progress)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::fetch_record)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::crawl_report)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(web_crawler::page_links)

namespace web_crawler {

using detail::fetch_result;
using detail::fetched_atom;
using detail::ms_since;
using detail::transport;
using namespace std::chrono_literals;

namespace {

using fetch_atom = caf::atom_constant<caf::atom("wcFetch")>;
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

// -- parser -------------------------------------------------------------------

caf::behavior parser(caf::event_based_actor*, std::size_t /* index */) {
  return {
      [](parse_atom, const std::string& url, const std::string& body) {
        return extract_links(body, url);
      },
  };
}

// -- reporter -----------------------------------------------------------------

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

// -- frontier -----------------------------------------------------------------

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

// -- crawler ------------------------------------------------------------------

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
