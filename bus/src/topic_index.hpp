#pragma once

// The pattern index: a trie keyed by topic segments, with one child for `*`
// and one for `#` per node. Not thread-safe; the bus guards it.

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace actorbus::bus::detail {

class subscriber_state;

/// Calls `f(segment)` for every dot-separated segment of `text`.
template <class F>
void for_each_segment(std::string_view text, F&& f) {
  size_t pos = 0;
  for (;;) {
    auto dot = text.find('.', pos);
    if (dot == std::string_view::npos) {
      f(text.substr(pos));
      return;
    }
    f(text.substr(pos, dot - pos));
    pos = dot + 1;
  }
}

class topic_index {
public:
  topic_index();
  ~topic_index();

  /// Adds `sub` under the valid `pattern`.
  void insert(std::string_view pattern, subscriber_state* sub);

  /// Removes `sub` from under `pattern`; returns whether it was there.
  bool erase(std::string_view pattern, subscriber_state* sub);

  /// Appends every subscription whose pattern matches the valid `topic`.
  void match(std::string_view topic, std::vector<subscriber_state*>& out) const;

  /// Number of subscriptions in the index.
  size_t size() const noexcept {
    return size_;
  }

private:
  struct node;

  struct string_hash {
    using is_transparent = void;
    size_t operator()(std::string_view x) const noexcept {
      return std::hash<std::string_view>{}(x);
    }
  };

  struct node {
    std::unordered_map<std::string, std::unique_ptr<node>, string_hash,
                       std::equal_to<>>
        children;
    std::unique_ptr<node> star;
    std::unique_ptr<node> hash;
    std::vector<subscriber_state*> subs;
  };

  static void collect(const node& n, const std::vector<std::string_view>& segs,
                      size_t i, std::vector<subscriber_state*>& out);

  node root_;
  size_t size_ = 0;
};

} // namespace actorbus::bus::detail
