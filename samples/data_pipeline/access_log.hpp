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
#include <array>
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
  // Python's bytes \s: space, \t, \n, \v, \f, \r.
  static constexpr auto table = [] {
    std::array<bool, 256> t{};
    for (unsigned char x : {' ', '\t', '\n', '\v', '\f', '\r'})
      t[x] = true;
    return t;
  }();
  return table[static_cast<unsigned char>(c)];
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

/// The fields of a line, viewing into it.
struct fields {
  std::string_view host;
  std::string_view path;
  int status = 0;
  int64_t bytes = 0;
};

/// Parses one line; nothing for a malformed one.
inline std::optional<fields> parse_fields(std::string_view s) {
  using namespace detail;
  fields f;
  auto host = token(s);
  if (!host || !token(s) || !token(s))
    return std::nullopt;
  f.host = *host;
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
  f.path = *path;
  auto proto = token(s);
  if (!proto || proto->size() < 2 || proto->back() != '"')
    return std::nullopt;
  // status: exactly three digits
  if (s.size() < 5 || !is_digit(s[0]) || !is_digit(s[1]) || !is_digit(s[2]) ||
      s[3] != ' ')
    return std::nullopt;
  f.status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
  s.remove_prefix(4);
  if (s != "-") {
    // Up to 18 digits: larger counts are treated as malformed (the Python
    // peer does the same).
    if (s.empty() || s.size() > 18)
      return std::nullopt;
    for (auto c : s) {
      if (!is_digit(c))
        return std::nullopt;
      f.bytes = f.bytes * 10 + (c - '0');
    }
  }
  return f;
}

/// Parses one line into owned strings; nothing for a malformed one.
inline std::optional<request> parse(std::string_view line) {
  auto f = parse_fields(line);
  if (!f)
    return std::nullopt;
  return request{std::string{f->host}, std::string{f->path}, f->status,
                 f->bytes};
}

/// Whether a request for `path` is kept (health probes are not).
inline bool keep_path(std::string_view p) {
  return p.substr(0, p.find('?')) != "/healthz";
}

inline bool keep(const request& r) {
  return keep_path(r.path);
}

/// Appends the route of `path` to `out`.
inline void append_route(std::string_view p, std::string& out) {
  p = p.substr(0, p.find('?'));
  std::size_t start = 0;
  for (;;) {
    auto end = p.find('/', start);
    auto seg =
        p.substr(start, end == std::string_view::npos ? std::string_view::npos
                                                      : end - start);
    if (!seg.empty() && std::all_of(seg.begin(), seg.end(), detail::is_digit))
      out += ":id";
    else
      out.append(seg.data(), seg.size());
    if (end == std::string_view::npos)
      break;
    out += '/';
    start = end + 1;
  }
}

/// Replaces the path by its route.
inline void enrich(request& r) {
  std::string route;
  append_route(r.path, route);
  r.path = std::move(route);
}

namespace detail {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

using counts =
    std::unordered_map<std::string, uint64_t, string_hash, std::equal_to<>>;

inline void bump(counts& xs, std::string_view key, uint64_t n = 1) {
  if (auto i = xs.find(key); i != xs.end())
    i->second += n;
  else
    xs.emplace(std::string{key}, n);
}

} // namespace detail

/// Counts requests; renders the report.
class aggregate {
public:
  void add(const request& r) {
    add(r.host, r.path, r.status, r.bytes);
  }

  void add(std::string_view host, std::string_view route, int status,
           int64_t bytes) {
    ++requests_;
    ++by_status_[status];
    detail::bump(by_route_, route);
    detail::bump(by_host_, host);
    bytes_.push_back(bytes);
    total_bytes_ += bytes;
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
      detail::bump(by_route_, k, n);
    for (auto& [k, n] : other.by_host_)
      detail::bump(by_host_, k, n);
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
    auto p50 = rank(50);
    auto p90 = rank(90);
    auto p99 = rank(99);
    auto max =
        bytes_.empty() ? 0 : *std::max_element(bytes_.begin(), bytes_.end());
    out += fmt::format("bytes: total {} p50 {} p90 {} p99 {} max {}\n",
                       total_bytes_, p50, p90, p99, max);
    out += "top clients:\n";
    for (auto& [host, n] : top(by_host_, 5))
      out += fmt::format("  {} {}\n", host, n);
    return out;
  }

private:
  // Nearest rank: the k-th smallest size, k = ceil(p * n / 100).
  int64_t rank(uint64_t p) {
    if (bytes_.empty())
      return 0;
    auto k = (p * bytes_.size() + 99) / 100;
    auto nth = bytes_.begin() + static_cast<std::ptrdiff_t>(k == 0 ? 0 : k - 1);
    std::nth_element(bytes_.begin(), nth, bytes_.end());
    return *nth;
  }

  static std::vector<std::pair<std::string, uint64_t>>
  top(const detail::counts& xs, std::size_t k) {
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
  detail::counts by_route_;
  detail::counts by_host_;
  std::vector<int64_t> bytes_;
  int64_t total_bytes_ = 0;
};

/// A request of a chunk: offsets into the chunk's text (host, path) or,
/// once enriched, into its routes.
struct chunk_request {
  uint32_t host_off;
  uint32_t host_len;
  uint32_t path_off;
  uint32_t path_len;
  int status;
  int64_t bytes;
};

/// The requests of a chunk of lines, and what was dropped from it. Owns the
/// text it refers to (offsets, so copies stay valid).
struct parsed_chunk {
  std::string text;
  std::string routes;
  bool enriched = false;
  std::vector<chunk_request> requests;
  uint64_t malformed = 0;
  uint64_t filtered = 0;

  std::string_view host(const chunk_request& r) const {
    return std::string_view{text}.substr(r.host_off, r.host_len);
  }

  std::string_view path(const chunk_request& r) const {
    return std::string_view{enriched ? routes : text}.substr(r.path_off,
                                                             r.path_len);
  }
};

/// Parses every line of `chunk` (complete lines, '\n'-separated; a final
/// line may lack its '\n'), taking the text over.
inline parsed_chunk parse_chunk(std::string chunk) {
  parsed_chunk out;
  out.text = std::move(chunk);
  std::string_view all = out.text;
  out.requests.reserve(all.size() / 96);
  std::size_t pos = 0;
  while (pos < all.size()) {
    auto nl = all.find('\n', pos);
    if (nl == std::string_view::npos)
      nl = all.size();
    auto line = all.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (auto f = parse_fields(line)) {
      auto off = [&](std::string_view x) {
        return static_cast<uint32_t>(x.data() - all.data());
      };
      out.requests.push_back(
          {off(f->host), static_cast<uint32_t>(f->host.size()), off(f->path),
           static_cast<uint32_t>(f->path.size()), f->status, f->bytes});
    } else {
      ++out.malformed;
    }
    pos = nl + 1;
  }
  return out;
}

/// Drops the requests `keep` rejects.
inline void filter_chunk(parsed_chunk& c) {
  auto kept = std::stable_partition(
      c.requests.begin(), c.requests.end(),
      [&c](const chunk_request& r) { return keep_path(c.path(r)); });
  c.filtered += static_cast<uint64_t>(c.requests.end() - kept);
  c.requests.erase(kept, c.requests.end());
}

/// Replaces every path by its route.
inline void enrich_chunk(parsed_chunk& c) {
  c.routes.clear();
  c.routes.reserve(c.requests.size() * 16);
  for (auto& r : c.requests) {
    auto start = c.routes.size();
    append_route(c.path(r), c.routes);
    r.path_off = static_cast<uint32_t>(start);
    r.path_len = static_cast<uint32_t>(c.routes.size() - start);
  }
  c.enriched = true;
}

inline aggregate aggregate_chunk(const parsed_chunk& c) {
  aggregate a;
  for (auto& r : c.requests)
    a.add(c.host(r), c.path(r), r.status, r.bytes);
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
