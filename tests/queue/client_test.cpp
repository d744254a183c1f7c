#include "actorbus/queue/client.hpp"

#include "actorbus/queue/embedded_redis.hpp"
#include "actorbus/runtime/runtime.hpp"

#include <caf/sec.hpp>

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>

using namespace actorbus::queue;
using namespace std::chrono_literals;

namespace {

class client_test : public ::testing::Test {
protected:
  void SetUp() override {
    auto c = client::connect(); // no URL: the shared embedded redis-server
    ASSERT_TRUE(c) << to_string(c.error());
    sut.emplace(std::move(*c));
  }

  std::optional<client> sut;
};

TEST_F(client_test,
       without_a_url_it_talks_to_a_private_redis_on_a_unix_socket) {
  ASSERT_EQ(sut->url().rfind("unix://", 0), 0u) << sut->url();
  EXPECT_TRUE(std::filesystem::exists(sut->url().substr(7)));
  EXPECT_EQ(sut->command({"CONFIG", "GET", "port"}), std::string{"port\n0"});
}

TEST_F(client_test, the_embedded_server_stops_when_its_owner_goes_away) {
  auto srv = embedded_redis::start();
  ASSERT_TRUE(srv);
  auto socket = (*srv)->url().substr(7);
  auto pid = (*srv)->pid();
  EXPECT_TRUE(std::filesystem::exists(socket));
  srv->reset();
  EXPECT_FALSE(std::filesystem::exists(socket));
  EXPECT_NE(kill(pid, 0), 0);
}

TEST_F(client_test, bad_requests_get_clear_errors_and_change_nothing) {
  auto before = sut->backlog();
  ASSERT_TRUE(before);
  auto empty = sut->enqueue_payload("", "x");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), caf::sec::invalid_argument);
  task_options zero;
  zero.max_attempts = 0;
  auto no_attempts = sut->enqueue_payload("t", "x", zero);
  ASSERT_FALSE(no_attempts);
  EXPECT_EQ(no_attempts.error(), caf::sec::invalid_argument);
  EXPECT_EQ(sut->backlog(), *before);
  auto missing = sut->requeue("0-1");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), errc::not_found);
  EXPECT_EQ(describe(missing.error()), "queue.not_found: no dead task 0-1");
  EXPECT_FALSE(sut->command({}));
}

TEST_F(client_test, bad_options_are_refused_naming_the_field) {
  task_options opts;
  opts.backoff.jitter = 2.0;
  auto res = sut->enqueue_payload("t", "x", opts);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), caf::sec::invalid_argument);
  EXPECT_EQ(describe(res.error()),
            "caf.invalid_argument: task_options.backoff.jitter: must lie in "
            "[0, 1]");
  queue_config cfg;
  cfg.reconnect_backoff.multiplier = 0.5;
  auto c = client::connect(cfg);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), caf::sec::invalid_argument);
  EXPECT_NE(describe(c.error()).find("queue_config.reconnect_backoff."),
            std::string::npos)
      << describe(c.error());
}

TEST_F(client_test, wait_takes_the_runtime_shutdown_timeout_as_it_is) {
  actorbus::runtime::runtime rt;
  auto id = sut->enqueue_payload("nobody_runs_this", "x");
  ASSERT_TRUE(id) << describe(id.error());
  ASSERT_EQ(sut->cancel(*id), true);
  auto info = sut->wait(*id, rt.config().shutdown_timeout());
  ASSERT_TRUE(info) << describe(info.error());
  EXPECT_EQ(info->status, task_status::cancelled);
}

TEST_F(client_test, malformed_or_unreachable_urls_are_errors) {
  queue_config cfg;
  cfg.url = "http://example.com";
  EXPECT_FALSE(client::connect(cfg));
  cfg.url = "unix:///nonexistent/redis.sock";
  cfg.io_timeout = 100ms;
  EXPECT_FALSE(client::connect(cfg));
}

TEST_F(client_test, unknown_ids_have_status_unknown) {
  auto info = sut->status("no-such-id");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->status, task_status::unknown);
  EXPECT_EQ(sut->cancel("no-such-id"), false);
}

} // namespace
