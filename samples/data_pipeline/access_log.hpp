#pragma once

// Common Log Format access logs: generating, parsing, filtering, enriching
// and aggregating them into a report. Shared by the data_pipeline sample
// (which runs the steps as pipeline stages), its single-threaded reference,
// and the benchmark. bench/peers/pipeline_data_report.py implements the same
// report in Python; both must print the same text for the same input.
//
// A line is accepted when it matches, as a whole,
//   (\S+) (\S+) (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+|-)
// (host ident user [time] "method path protocol" status bytes); any other
// line is malformed. Health probes (path "/healthz", query ignored) are
// filtered out. The route of a path drops the query and replaces every
// all-digit segment by ":id".

#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace access_log {

/// One parsed request.
struct request {
  std::string host;
  std::string path; // the route after `enrich`
  int status = 0;
  int64_t bytes = 0;
};

namespace detail {

inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/// Reads a run of non-space characters ending right before a ' '.
inline std::optional<std::string_view> token(std::string_view& s) {
  std::size_t i = 0;
  while (i < s.size() && !is_space(s[i]))
    ++i;
  if (i == 0 || i == s.size() || s[i] != ' ')
    return std::nullopt;
  auto out = s.substr(0, i);
  s.remove_prefix(i + 1);
  return out;
}

} // namespace detail

/// Parses one line; nothing for a malformed one.
inline std::optional<request> parse(std::string_view s) {
  using namespace detail;
  auto host = token(s);
  if (!host || !token(s) || !token(s))
    return std::nullopt;
  // [time]
  if (s.empty() || s[0] != '[')
    return std::nullopt;
  auto close = s.find(']');
  if (close == std::string_view::npos || close == 1)
    return std::nullopt;
  s.remove_prefix(close + 1);
  if (s.substr(0, 2) != " \"")
    return std::nullopt;
  s.remove_prefix(2);
  // "method path protocol"
  if (!token(s))
    return std::nullopt;
  auto path = token(s);
  if (!path)
    return std::nullopt;
  auto proto = token(s);
  if (!proto || proto->size() < 2 || proto->back() != '"')
    return std::nullopt;
  // status: exactly three digits
  if (s.size() < 5 || !is_digit(s[0]) || !is_digit(s[1]) || !is_digit(s[2]) ||
      s[3] != ' ')
    return std::nullopt;
  request r;
  r.status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
  s.remove_prefix(4);
  if (s == "-") {
    r.bytes = 0;
  } else {
    // Up to 18 digits: larger counts are treated as malformed (the Python
    // peer does the same).
    if (s.empty() || s.size() > 18)
      return std::nullopt;
    for (auto c : s) {
      if (!is_digit(c))
        return std::nullopt;
      r.bytes = r.bytes * 10 + (c - '0');
    }
  }
  r.host.assign(host->data(), host->size());
  r.path.assign(path->data(), path->size());
  return r;
}

/// Whether a request is kept (health probes are not).
inline bool keep(const request& r) {
  auto p = std::string_view{r.path};
  return p.substr(0, p.find('?')) != "/healthz";
}

/// Replaces the path by its route.
inline void enrich(request& r) {
  std::string_view p = r.path;
  p = p.substr(0, p.find('?'));
  std::string route;
  route.reserve(p.size());
  std::size_t start = 0;
  for (;;) {
    auto end = p.find('/', start);
    auto seg =
        p.substr(start, end == std::string_view::npos ? std::string_view::npos
                                                      : end - start);
    if (!seg.empty() && std::all_of(seg.begin(), seg.end(), detail::is_digit))
      route += ":id";
    else
      route.append(seg.data(), seg.size());
    if (end == std::string_view::npos)
      break;
    route += '/';
    start = end + 1;
  }
  r.path = std::move(route);
}

/// Counts requests; renders the report.
class aggregate {
public:
  void add(const request& r) {
    ++requests_;
    ++by_status_[r.status];
    ++by_route_[r.path];
    ++by_host_[r.host];
    bytes_.push_back(r.bytes);
    total_bytes_ += r.bytes;
  }

  void set_dropped(uint64_t malformed, uint64_t filtered) {
    malformed_ = malformed;
    filtered_ = filtered;
  }

  void add_dropped(uint64_t malformed, uint64_t filtered) {
    malformed_ += malformed;
    filtered_ += filtered;
  }

  /// Adds the counts of `other` (a partial aggregate of other lines).
  void merge(aggregate&& other) {
    requests_ += other.requests_;
    malformed_ += other.malformed_;
    filtered_ += other.filtered_;
    for (auto& [k, n] : other.by_status_)
      by_status_[k] += n;
    for (auto& [k, n] : other.by_route_)
      by_route_[k] += n;
    for (auto& [k, n] : other.by_host_)
      by_host_[k] += n;
    bytes_.insert(bytes_.end(), other.bytes_.begin(), other.bytes_.end());
    total_bytes_ += other.total_bytes_;
  }

  uint64_t requests() const {
    return requests_;
  }

  std::string report() {
    std::string out = fmt::format("requests: {} (malformed {}, filtered {})\n",
                                  requests_, malformed_, filtered_);
    out += "status:\n";
    std::vector<std::pair<int, uint64_t>> st(by_status_.begin(),
                                             by_status_.end());
    std::sort(st.begin(), st.end());
    for (auto& [code, n] : st)
      out += fmt::format("  {} {}\n", code, n);
    out += "top paths:\n";
    for (auto& [route, n] : top(by_route_, 10))
      out += fmt::format("  {} {}\n", route, n);
    std::sort(bytes_.begin(), bytes_.end());
    out += fmt::format("bytes: total {} p50 {} p90 {} p99 {} max {}\n",
                       total_bytes_, rank(50), rank(90), rank(99),
                       bytes_.empty() ? 0 : bytes_.back());
    out += "top clients:\n";
    for (auto& [host, n] : top(by_host_, 5))
      out += fmt::format("  {} {}\n", host, n);
    return out;
  }

private:
  // Nearest rank on the sorted sizes.
  int64_t rank(uint64_t p) const {
    if (bytes_.empty())
      return 0;
    auto k = (p * bytes_.size() + 99) / 100;
    return bytes_[k == 0 ? 0 : k - 1];
  }

  static std::vector<std::pair<std::string, uint64_t>>
  top(const std::unordered_map<std::string, uint64_t>& xs, std::size_t k) {
    std::vector<std::pair<std::string, uint64_t>> v(xs.begin(), xs.end());
    auto by_count = [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    };
    auto n = std::min(k, v.size());
    std::partial_sort(v.begin(), v.begin() + n, v.end(), by_count);
    v.resize(n);
    return v;
  }

  uint64_t requests_ = 0;
  uint64_t malformed_ = 0;
  uint64_t filtered_ = 0;
  std::unordered_map<int, uint64_t> by_status_;
  std::unordered_map<std::string, uint64_t> by_route_;
  std::unordered_map<std::string, uint64_t> by_host_;
  std::vector<int64_t> bytes_;
  int64_t total_bytes_ = 0;
};

/// The requests of a chunk of lines, and what was dropped from it.
struct parsed_chunk {
  std::vector<request> requests;
  uint64_t malformed = 0;
  uint64_t filtered = 0;
};

/// Parses every line of `chunk` (complete lines, '\n'-separated; a final
/// line may lack its '\n').
inline parsed_chunk parse_chunk(std::string_view chunk) {
  parsed_chunk out;
  out.requests.reserve(chunk.size() / 96);
  while (!chunk.empty()) {
    auto nl = chunk.find('\n');
    auto line = chunk.substr(0, nl);
    chunk.remove_prefix(nl == std::string_view::npos ? chunk.size() : nl + 1);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (auto r = parse(line))
      out.requests.push_back(std::move(*r));
    else
      ++out.malformed;
  }
  return out;
}

/// Drops the requests `keep` rejects.
inline void filter_chunk(parsed_chunk& c) {
  auto kept = std::stable_partition(c.requests.begin(), c.requests.end(),
                                    [](const request& r) { return keep(r); });
  c.filtered += static_cast<uint64_t>(c.requests.end() - kept);
  c.requests.erase(kept, c.requests.end());
}

inline void enrich_chunk(parsed_chunk& c) {
  for (auto& r : c.requests)
    enrich(r);
}

inline aggregate aggregate_chunk(const parsed_chunk& c) {
  aggregate a;
  for (auto& r : c.requests)
    a.add(r);
  a.add_dropped(c.malformed, c.filtered);
  return a;
}

/// Reads a file in chunks of complete lines of about `size` bytes.
class chunk_reader {
public:
  chunk_reader(const std::string& path, std::size_t size)
      : in_(std::make_shared<std::ifstream>(path, std::ios::binary))
      , size_(size) {
    // nop
  }

  bool good() const {
    return static_cast<bool>(*in_);
  }

  /// The next chunk; nothing at the end of the file.
  std::optional<std::string> operator()() {
    std::string chunk = std::move(*rest_);
    rest_->clear();
    for (;;) {
      auto old = chunk.size();
      chunk.resize(old + size_);
      in_->read(chunk.data() + old, static_cast<std::streamsize>(size_));
      auto got = static_cast<std::size_t>(in_->gcount());
      chunk.resize(old + got);
      read_->fetch_add(got, std::memory_order_relaxed);
      if (got == 0)
        return chunk.empty() ? std::nullopt
                             : std::optional<std::string>{std::move(chunk)};
      auto nl = chunk.rfind('\n');
      if (nl != std::string::npos) {
        rest_->assign(chunk, nl + 1);
        chunk.resize(nl + 1);
        return chunk;
      }
      // A line longer than a chunk: read on.
    }
  }

  /// Bytes read so far (shared by copies).
  std::shared_ptr<std::atomic<uint64_t>> bytes_read() const {
    return read_;
  }

private:
  std::shared_ptr<std::ifstream> in_;
  std::size_t size_;
  std::shared_ptr<std::string> rest_ = std::make_shared<std::string>();
  std::shared_ptr<std::atomic<uint64_t>> read_ =
      std::make_shared<std::atomic<uint64_t>>(0);
};

/// The plain single-threaded reference: same steps, one loop.
inline std::optional<std::string> reference_report(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return std::nullopt;
  aggregate agg;
  uint64_t malformed = 0;
  uint64_t filtered = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    auto r = parse(line);
    if (!r) {
      ++malformed;
      continue;
    }
    if (!keep(*r)) {
      ++filtered;
      continue;
    }
    enrich(*r);
    agg.add(*r);
  }
  agg.set_dropped(malformed, filtered);
  return agg.report();
}

/// Writes a synthetic log of about `bytes` bytes; returns the line count.
inline uint64_t generate(const std::string& path, uint64_t bytes,
                         uint64_t seed) {
  std::ofstream out{path, std::ios::binary};
  std::mt19937_64 rng{seed};
  auto pick = [&](uint64_t n) { return rng() % n; };
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr",
                                           "May", "Jun", "Jul", "Aug",
                                           "Sep", "Oct", "Nov", "Dec"};
  static constexpr int statuses[] = {200, 200, 200, 200, 200, 200, 200, 304,
                                     301, 404, 404, 500, 503, 201, 204, 403};
  static constexpr const char* users[] = {"-", "-", "-", "alice", "bob"};
  uint64_t written = 0;
  uint64_t lines = 0;
  std::string line;
  while (written < bytes) {
    line.clear();
    if (pick(200) == 0) {
      line = pick(2) == 0 ? "garbage without structure"
                          : "10.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "
                            "\"GET /truncated";
    } else {
      // Skewed clients: a few hosts send most requests.
      auto h = pick(4) == 0 ? pick(8) : pick(400);
      auto host = fmt::format("10.{}.{}.{}", h / 200, (h / 10) % 20, h % 10);
      std::string path;
      switch (pick(10)) {
      case 0:
        path = "/";
        break;
      case 1:
        path = "/index.html";
        break;
      case 2:
      case 3:
        path = fmt::format("/api/users/{}", pick(5000));
        break;
      case 4:
        path =
            fmt::format("/api/orders/{}/items?page={}", pick(100000), pick(5));
        break;
      case 5:
        path = "/static/app.js";
        break;
      case 6:
        path = "/healthz";
        break;
      case 7:
        path = fmt::format("/blog/{}/{}", 2020 + pick(6), pick(300));
        break;
      case 8:
        path = "/login";
        break;
      default:
        path = fmt::format("/search?q=item{}", pick(1000));
      }
      auto status = statuses[pick(std::size(statuses))];
      auto bytes = status == 304 || status == 204
                       ? std::string{"-"}
                       : std::to_string(200 + pick(20000) * pick(8));
      line =
          fmt::format("{} - {} [{:02}/{}/2025:{:02}:{:02}:{:02} +0000] \"{} {} "
                      "HTTP/1.1\" {} {}",
                      host, users[pick(std::size(users))], 1 + pick(28),
                      months[pick(12)], pick(24), pick(60), pick(60),
                      pick(5) == 0 ? "POST" : "GET", path, status, bytes);
    }
    line += '\n';
    out << line;
    written += line.size();
    ++lines;
  }
  return lines;
}

} // namespace access_log
