#include "actorbus/runtime/config.hpp"

#include "actorbus/runtime/log.hpp"

#include <caf/settings.hpp>

#include <gtest/gtest.h>

#include <sstream>

using namespace actorbus::runtime;

namespace {

class config_test : public ::testing::Test {
protected:
  size_t max_threads() const {
    return caf::get_or(sut.content, "scheduler.max-threads", size_t{0});
  }

  runtime_config sut;
};

} // namespace

TEST_F(config_test, defaults_fit_a_small_machine) {
  EXPECT_GE(max_threads(), 2u);
  EXPECT_EQ(caf::get_or(sut.content, "work-stealing.moderate-poll-attempts",
                        size_t{99}),
            0u);
  EXPECT_EQ(sut.shutdown_timeout(), std::chrono::seconds(5));
  EXPECT_EQ(sut.min_log_level(), log_level::info);
}

TEST_F(config_test,
       the_file_overrides_code_and_the_command_line_overrides_the_file) {
  sut.set("scheduler.max-threads", size_t{3});
  sut.set("actorbus.log-level", std::string{"error"});
  std::istringstream ini{"[scheduler]\nmax-threads=5\n"
                         "[actorbus]\nlog-level=\"debug\"\n"
                         "shutdown-timeout=250ms\n"};
  ASSERT_FALSE(sut.load({"--scheduler.max-threads=7"}, ini));
  EXPECT_EQ(max_threads(), 7u);                     // command line
  EXPECT_EQ(sut.min_log_level(), log_level::debug); // file over code
  EXPECT_EQ(sut.shutdown_timeout(), std::chrono::milliseconds(250));
}

TEST_F(config_test,
       code_values_survive_when_neither_file_nor_command_line_set_them) {
  sut.set("scheduler.max-threads", size_t{3});
  std::istringstream ini{""};
  ASSERT_FALSE(sut.load({}, ini));
  EXPECT_EQ(max_threads(), 3u);
}

TEST_F(config_test, the_stock_profile_restores_cafs_sleeping_workers) {
  sut.use(scheduler_profile::stock);
  EXPECT_EQ(caf::get_or(sut.content, "work-stealing.moderate-poll-attempts",
                        size_t{0}),
            500u);
}

TEST_F(config_test, an_unknown_argument_is_an_error) {
  std::istringstream ini{""};
  EXPECT_TRUE(sut.load({"--no-such-option=1"}, ini));
}

TEST_F(config_test, a_malformed_value_is_an_error) {
  std::istringstream ini{""};
  EXPECT_TRUE(sut.load({"--scheduler.max-threads=many"}, ini));
}

TEST_F(config_test, a_missing_file_is_not_an_error) {
  char arg0[] = "prog";
  char* argv[] = {arg0, nullptr};
  EXPECT_FALSE(sut.load(1, argv, "/nonexistent/caf-application.ini"));
}

TEST_F(config_test, a_program_adds_its_own_options_without_subclassing) {
  sut.add_option<std::string>("app", "name", "who to greet", "world")
      .add_option<size_t>("app", "repeat", "how often");
  std::istringstream ini{"[app]\nrepeat=2\n"};
  ASSERT_FALSE(sut.load({"--app.name=actors"}, ini));
  EXPECT_EQ(sut.get_or<std::string>("app.name", ""), "actors");
  EXPECT_EQ(sut.get_or<size_t>("app.repeat", 0), 2u);
}

TEST_F(config_test, a_program_option_keeps_its_default_and_rejects_bad_values) {
  sut.add_option<size_t>("app", "repeat", "how often", size_t{3});
  std::istringstream ini{""};
  ASSERT_FALSE(sut.load({}, ini));
  EXPECT_EQ(sut.get_or<size_t>("app.repeat", 0), 3u);
  runtime_config other;
  other.add_option<size_t>("app", "repeat", "how often");
  std::istringstream none{""};
  EXPECT_TRUE(other.load({"--app.repeat=many"}, none));
}
