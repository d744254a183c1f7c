#include "actorbus/runtime/log.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace actorbus::runtime;

namespace {

class log_test : public ::testing::Test {
protected:
  log_test()
      : sut(logger::instance()) {
    previous_level = sut.level();
    previous_sink = sut.set_sink(
        [this](log_level, std::string_view line) { lines.emplace_back(line); });
  }

  ~log_test() override {
    sut.set_sink(previous_sink);
    sut.level(previous_level);
  }

  logger& sut;
  log_level previous_level;
  logger::sink previous_sink;
  std::vector<std::string> lines;
};

} // namespace

TEST_F(log_test, lines_below_the_level_are_dropped) {
  sut.level(log_level::warning);
  log(log_level::info, "not shown {}", 1);
  log(log_level::error, "shown {}", 2);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("ERROR"), std::string::npos);
  EXPECT_NE(lines[0].find("shown 2"), std::string::npos);
}

TEST_F(log_test, off_silences_everything) {
  sut.level(log_level::off);
  log(log_level::error, "nothing");
  EXPECT_TRUE(lines.empty());
}

TEST_F(log_test, a_line_names_the_actor_that_logged_it) {
  sut.level(log_level::debug);
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  log(self.ptr(), log_level::debug, "hello from {}", "an actor");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find(fmt::format("#{}", self->id())), std::string::npos);
  EXPECT_NE(lines[0].find("hello from an actor"), std::string::npos);
}

TEST_F(log_test, level_names_parse_and_unknown_ones_fall_back) {
  EXPECT_EQ(parse_log_level("warn", log_level::info), log_level::warning);
  EXPECT_EQ(parse_log_level("trace", log_level::info), log_level::trace);
  EXPECT_EQ(parse_log_level("loud", log_level::error), log_level::error);
}
