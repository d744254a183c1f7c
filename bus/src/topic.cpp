// Topic validation, the reference matcher and the pattern index.

#include "actorbus/bus/topic.hpp"

#include "topic_index.hpp"

#include <algorithm>

namespace actorbus::bus {

namespace {

bool valid_segment_char(char c) noexcept {
  return c != '*' && c != '#' && c != ' ' && c != '\t' && c != '\n' &&
         c != '\r' && c != '\0';
}

// Validates `text`; wildcards allowed when `is_pattern`.
bool validate(std::string_view text, bool is_pattern) noexcept {
  if (text.empty())
    return false;
  bool ok = true;
  bool seen_hash = false;
  detail::for_each_segment(text, [&](std::string_view seg) {
    if (!ok)
      return;
    if (seen_hash || seg.empty()) { // '#' must be the last segment
      ok = false;
      return;
    }
    if (is_pattern && seg == "*")
      return;
    if (is_pattern && seg == "#") {
      seen_hash = true;
      return;
    }
    ok = std::all_of(seg.begin(), seg.end(), valid_segment_char);
  });
  return ok;
}

std::vector<std::string_view> split(std::string_view text) {
  std::vector<std::string_view> out;
  detail::for_each_segment(text,
                           [&](std::string_view seg) { out.push_back(seg); });
  return out;
}

} // namespace

bool is_valid_topic(std::string_view topic) noexcept {
  return validate(topic, false);
}

bool is_valid_pattern(std::string_view pattern) noexcept {
  return validate(pattern, true);
}

bool matches(std::string_view pattern, std::string_view topic) noexcept {
  if (!is_valid_pattern(pattern) || !is_valid_topic(topic))
    return false;
  auto ps = split(pattern);
  auto ts = split(topic);
  // Reserved topics are matched only by a pattern naming them.
  if (ts.front().front() == '$' && (ps.front() == "*" || ps.front() == "#"))
    return false;
  size_t i = 0;
  for (; i < ps.size(); ++i) {
    if (ps[i] == "#")
      return true;
    if (i >= ts.size())
      return false;
    if (ps[i] != "*" && ps[i] != ts[i])
      return false;
  }
  return i == ts.size();
}

namespace detail {

topic_index::topic_index() = default;

topic_index::~topic_index() = default;

void topic_index::insert(std::string_view pattern, subscriber_state* sub) {
  node* n = &root_;
  for_each_segment(pattern, [&](std::string_view seg) {
    std::unique_ptr<node>* next;
    if (seg == "*") {
      next = &n->star;
    } else if (seg == "#") {
      next = &n->hash;
    } else {
      auto i = n->children.find(seg);
      if (i == n->children.end())
        i = n->children.emplace(std::string{seg}, nullptr).first;
      next = &i->second;
    }
    if (!*next)
      *next = std::make_unique<node>();
    n = next->get();
  });
  n->subs.push_back(sub);
  ++size_;
}

bool topic_index::erase(std::string_view pattern, subscriber_state* sub) {
  // Walk down remembering the path, then prune empty nodes bottom-up.
  std::vector<std::pair<node*, std::string_view>> path;
  node* n = &root_;
  bool found = true;
  for_each_segment(pattern, [&](std::string_view seg) {
    if (!found)
      return;
    node* next = nullptr;
    if (seg == "*") {
      next = n->star.get();
    } else if (seg == "#") {
      next = n->hash.get();
    } else if (auto i = n->children.find(seg); i != n->children.end()) {
      next = i->second.get();
    }
    if (next == nullptr) {
      found = false;
      return;
    }
    path.emplace_back(n, seg);
    n = next;
  });
  if (!found)
    return false;
  auto i = std::find(n->subs.begin(), n->subs.end(), sub);
  if (i == n->subs.end())
    return false;
  n->subs.erase(i);
  --size_;
  for (auto j = path.rbegin(); j != path.rend(); ++j) {
    auto [parent, seg] = *j;
    std::unique_ptr<node>* slot;
    if (seg == "*")
      slot = &parent->star;
    else if (seg == "#")
      slot = &parent->hash;
    else
      slot = &parent->children.find(seg)->second;
    auto& child = **slot;
    if (!child.subs.empty() || !child.children.empty() || child.star ||
        child.hash)
      break;
    if (seg == "*" || seg == "#")
      slot->reset();
    else
      parent->children.erase(parent->children.find(seg));
  }
  return true;
}

void topic_index::collect(const node& n,
                          const std::vector<std::string_view>& segs, size_t i,
                          std::vector<subscriber_state*>& out) {
  // '#' matches the rest, zero segments included; but a leading wildcard
  // never matches a reserved ('$') topic.
  bool reserved = i == 0 && segs[0].front() == '$';
  if (n.hash && !reserved)
    out.insert(out.end(), n.hash->subs.begin(), n.hash->subs.end());
  if (i == segs.size()) {
    out.insert(out.end(), n.subs.begin(), n.subs.end());
    return;
  }
  if (auto c = n.children.find(segs[i]); c != n.children.end())
    collect(*c->second, segs, i + 1, out);
  if (n.star && !reserved)
    collect(*n.star, segs, i + 1, out);
}

void topic_index::match(std::string_view topic,
                        std::vector<subscriber_state*>& out) const {
  auto segs = split(topic);
  collect(root_, segs, 0, out);
}

} // namespace detail

} // namespace actorbus::bus
