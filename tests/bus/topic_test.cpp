#include "actorbus/bus/topic.hpp"

#include "../../bus/src/topic_index.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace {

using namespace actorbus::bus;

struct row {
  const char* pattern;
  const char* topic;
  bool expected;
};

// The pattern-matching table: what users rely on when they pick a pattern.
const row table[] = {
    {"orders.created", "orders.created", true},
    {"orders.created", "orders.updated", false},
    {"orders.created", "orders", false},
    {"orders.created", "orders.created.eu", false},
    {"orders.*", "orders.created", true},
    {"orders.*", "orders", false},
    {"orders.*", "orders.eu.created", false},
    {"*.created", "orders.created", true},
    {"*.created", "orders.updated", false},
    {"orders.*.created", "orders.eu.created", true},
    {"orders.*.created", "orders.created", false},
    {"orders.#", "orders", true},
    {"orders.#", "orders.created", true},
    {"orders.#", "orders.eu.created", true},
    {"orders.#", "ordersx.created", false},
    {"#", "orders", true},
    {"#", "a.b.c.d", true},
    {"*", "orders", true},
    {"*", "orders.created", false},
    {"*.#", "orders", true},
    {"#", "$dead-letters", false},
    {"*", "$dead-letters", false},
    {"$dead-letters", "$dead-letters", true},
    {"$dead-letters.#", "$dead-letters", true},
};

class topic_test : public ::testing::Test {
protected:
  actorbus::bus::detail::topic_index sut;
};

TEST_F(topic_test, the_reference_matcher_follows_the_pattern_table) {
  for (auto& r : table)
    EXPECT_EQ(matches(r.pattern, r.topic), r.expected)
        << r.pattern << " vs " << r.topic;
}

TEST_F(topic_test, the_index_agrees_with_the_pattern_table) {
  // One subscription per table pattern; every topic must find exactly the
  // patterns the reference matcher accepts.
  std::vector<std::string> patterns;
  for (auto& r : table)
    if (std::find(patterns.begin(), patterns.end(), r.pattern) ==
        patterns.end())
      patterns.emplace_back(r.pattern);
  // The index stores opaque subscription pointers: use the pattern strings'
  // addresses as stand-ins.
  auto id = [&](size_t i) {
    return reinterpret_cast<detail::subscriber_state*>(&patterns[i]);
  };
  for (size_t i = 0; i < patterns.size(); ++i)
    sut.insert(patterns[i], id(i));
  for (auto& r : table) {
    std::vector<detail::subscriber_state*> found;
    sut.match(r.topic, found);
    for (size_t i = 0; i < patterns.size(); ++i) {
      auto hit = std::count(found.begin(), found.end(), id(i));
      EXPECT_EQ(hit, matches(patterns[i], r.topic) ? 1 : 0)
          << patterns[i] << " vs " << r.topic;
    }
  }
}

TEST_F(topic_test, an_erased_subscription_is_no_longer_matched) {
  int a = 0;
  int b = 0;
  auto* pa = reinterpret_cast<detail::subscriber_state*>(&a);
  auto* pb = reinterpret_cast<detail::subscriber_state*>(&b);
  sut.insert("orders.*", pa);
  sut.insert("orders.*", pb);
  EXPECT_TRUE(sut.erase("orders.*", pa));
  EXPECT_FALSE(sut.erase("orders.*", pa));
  EXPECT_FALSE(sut.erase("orders.#", pb));
  std::vector<detail::subscriber_state*> found;
  sut.match("orders.created", found);
  EXPECT_EQ(found, std::vector<detail::subscriber_state*>{pb});
  EXPECT_TRUE(sut.erase("orders.*", pb));
  EXPECT_EQ(sut.size(), 0u);
  found.clear();
  sut.match("orders.created", found);
  EXPECT_TRUE(found.empty());
}

TEST_F(topic_test, malformed_topics_and_patterns_are_rejected) {
  for (auto* bad : {"", ".", "a.", ".a", "a..b", "a b", "a.*", "a.#", "#"})
    EXPECT_FALSE(is_valid_topic(bad)) << bad;
  for (auto* bad : {"", ".", "a.", "a..b", "a.#.b", "#.a", "a.b*", "a#"})
    EXPECT_FALSE(is_valid_pattern(bad)) << bad;
  for (auto* good : {"a", "orders.created", "$dead-letters", "a-b_c.d9"})
    EXPECT_TRUE(is_valid_topic(good)) << good;
  for (auto* good : {"a", "a.*", "a.#", "#", "*.*", "*.b.#"})
    EXPECT_TRUE(is_valid_pattern(good)) << good;
}

TEST_F(topic_test, matching_stays_indexed_with_ten_thousand_subscriptions) {
  std::vector<std::string> patterns;
  for (int i = 0; i < 10000; ++i)
    patterns.push_back("sensor." + std::to_string(i) + ".temp");
  for (auto& p : patterns)
    sut.insert(p, reinterpret_cast<detail::subscriber_state*>(&p));
  std::vector<detail::subscriber_state*> found;
  sut.match("sensor.4242.temp", found);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0],
            reinterpret_cast<detail::subscriber_state*>(&patterns[4242]));
}

} // namespace
