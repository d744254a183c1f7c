#include "actorbus/actors/cache.hpp"

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace actorbus::actors;
using namespace std::chrono_literals;

namespace {

constexpr auto long_wait = caf::timespan{30s};

class cache_test : public ::testing::Test {
protected:
  void start(cache_config cfg) {
    sut.emplace(sys, cfg);
  }

  std::optional<int> get(const std::string& key) {
    auto r = sut->get(key, long_wait);
    EXPECT_TRUE(r);
    return r ? *r : std::nullopt;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::optional<cache<std::string, int>> sut;
};

TEST_F(cache_test, a_stored_value_is_read_back_and_counted_as_a_hit) {
  start({.capacity = 16, .shards = 2});
  sut->put("a", 1);
  EXPECT_EQ(get("a"), 1);
  EXPECT_EQ(get("missing"), std::nullopt);
  sut->erase("a");
  EXPECT_EQ(get("a"), std::nullopt);
  auto st = sut->stats(long_wait);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->hits, 1u);
  EXPECT_EQ(st->misses, 2u);
  EXPECT_EQ(st->size, 0u);
}

TEST_F(cache_test, the_least_recently_used_entry_is_evicted) {
  start({.capacity = 3, .shards = 1});
  sut->put("a", 1);
  sut->put("b", 2);
  sut->put("c", 3);
  EXPECT_EQ(get("a"), 1); // a is now the most recent
  sut->put("d", 4);       // evicts b
  EXPECT_EQ(get("b"), std::nullopt);
  EXPECT_EQ(get("a"), 1);
  EXPECT_EQ(get("c"), 3);
  EXPECT_EQ(get("d"), 4);
  EXPECT_EQ(sut->stats(long_wait)->evictions, 1u);
  EXPECT_EQ(sut->stats(long_wait)->size, 3u);
}

TEST_F(cache_test, an_entry_expires_after_its_ttl) {
  start({.capacity = 8, .ttl = 20ms, .shards = 1});
  sut->put("a", 1);
  EXPECT_EQ(get("a"), 1);
  // Real time here: the shards run on the threaded scheduler.
  auto until = std::chrono::steady_clock::now() + 5s;
  while (get("a") && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(get("a"), std::nullopt);
  EXPECT_GE(sut->stats(long_wait)->expirations, 1u);
}

TEST_F(cache_test, a_hundred_concurrent_misses_on_one_key_compute_once) {
  start({.capacity = 64, .shards = 4});
  std::atomic<int> computed{0};
  std::promise<void> go;
  auto go_f = go.get_future().share();
  std::promise<void> release;
  auto release_f = release.get_future().share();
  std::vector<std::future<caf::expected<int>>> results;
  for (int i = 0; i < 100; ++i)
    results.push_back(std::async(std::launch::async, [&, go_f, release_f] {
      go_f.wait();
      return sut->get_or_compute(
          "key",
          [&, release_f] {
            ++computed;
            // Hold the computation until the test lets it finish.
            release_f.wait_for(10s);
            return 42;
          },
          long_wait);
    }));
  go.set_value();
  // Wait until the 99 others wait in the shard (one is computing).
  auto until = std::chrono::steady_clock::now() + 20s;
  while (computed.load() == 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
  release.set_value();
  for (auto& r : results) {
    auto v = r.get();
    ASSERT_TRUE(v) << sys.render(v.error());
    EXPECT_EQ(*v, 42);
  }
  EXPECT_EQ(computed.load(), 1);
  EXPECT_EQ(sut->stats(long_wait)->computes, 1u);
}

TEST_F(cache_test,
       a_failed_computation_reaches_every_waiter_and_is_not_cached) {
  start({.capacity = 8, .shards = 1});
  auto r = sut->get_or_compute(
      "k",
      []() -> caf::expected<int> {
        return caf::make_error(caf::sec::runtime_error, "backend down");
      },
      long_wait);
  EXPECT_EQ(r.error(), caf::sec::runtime_error);
  EXPECT_EQ(get("k"), std::nullopt);
  auto again = sut->get_or_compute(
      "k", [] { return 7; }, long_wait);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, 7);
  EXPECT_EQ(get("k"), 7);
}

TEST_F(cache_test, hits_read_without_the_shard_still_refresh_recency) {
  start({.capacity = 3, .shards = 1});
  sut->put("a", 1);
  sut->put("b", 2);
  sut->put("c", 3);
  // A round trip to the shard: the puts are applied, reads take the fast
  // path from here on.
  ASSERT_TRUE(sut->stats(long_wait));
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(get("a"), 1);
  ASSERT_EQ(get("c"), 3);
  sut->put("d", 4); // evicts b: a and c were read after it
  EXPECT_EQ(get("b"), std::nullopt);
  EXPECT_EQ(get("a"), 1);
  EXPECT_EQ(get("c"), 3);
  auto st = sut->stats(long_wait);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->hits, 1003u) << "fast hits are counted";
  EXPECT_EQ(st->evictions, 1u);
}

TEST_F(cache_test, a_get_after_a_put_from_the_same_thread_sees_the_new_value) {
  start({.capacity = 8, .shards = 2});
  sut->put("k", 1);
  ASSERT_TRUE(sut->stats(long_wait));
  for (int i = 2; i < 200; ++i) {
    sut->put("k", i);
    ASSERT_EQ(get("k"), i) << "no stale read of the previous value";
  }
}

TEST_F(cache_test, readers_and_an_evicting_writer_run_concurrently) {
  start({.capacity = 40, .shards = 4});
  std::atomic<bool> stop{false};
  std::vector<std::future<int>> readers;
  for (int t = 0; t < 3; ++t)
    readers.push_back(std::async(std::launch::async, [&] {
      int wrong = 0;
      for (int i = 0; !stop.load(); i = (i + 1) % 200) {
        auto r = sut->get(std::to_string(i), long_wait);
        if (!r || (*r && **r != i * 10))
          ++wrong;
      }
      return wrong;
    }));
  for (int round = 0; round < 10; ++round)
    for (int i = 0; i < 200; ++i)
      sut->put(std::to_string(i), i * 10);
  ASSERT_TRUE(sut->stats(long_wait));
  stop = true;
  for (auto& r : readers)
    EXPECT_EQ(r.get(), 0) << "every read is a miss or the stored value";
  auto st = sut->stats(long_wait);
  ASSERT_TRUE(st);
  EXPECT_LE(st->size, 40u);
  EXPECT_GT(st->evictions, 0u);
}

TEST_F(cache_test, a_throwing_computation_gives_its_text_to_the_caller) {
  start({.capacity = 8, .shards = 1});
  auto r = sut->get_or_compute(
      "k", []() -> int { throw std::runtime_error("disk full"); }, long_wait);
  ASSERT_FALSE(r);
  EXPECT_EQ(actorbus::runtime::describe(r.error()),
            "caf.runtime_error: disk full");
}

TEST_F(cache_test, the_runtime_shutdown_stops_the_shards_of_its_cache) {
  actorbus::runtime::runtime rt;
  cache<std::string, int> tracked{rt, {.capacity = 8, .shards = 3}};
  EXPECT_EQ(rt.tracked(), 3u);
  tracked.put("a", 1);
  auto report = rt.shutdown(5s);
  EXPECT_EQ(report.exited, 3u) << "the cache outlives the runtime's shutdown";
  EXPECT_EQ(report.abandoned, 0u);
  EXPECT_EQ(rt.tracked(), 0u);
  EXPECT_THROW((cache<std::string, int>{rt}), std::runtime_error)
      << "no new cache once the runtime shuts down";
}

} // namespace
