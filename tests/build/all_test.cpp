#include "actorbus/all.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <vector>

// This file includes only actorbus/all.hpp (every public header, and every
// fwd.hpp agreeing with the definitions): that it compiles is half the
// test.

namespace {

namespace pipeline = actorbus::pipeline;
using namespace std::chrono_literals;

class all_test : public ::testing::Test {
protected:
  actorbus::runtime::runtime rt;
};

TEST_F(all_test, one_include_is_enough_for_a_program_using_several_modules) {
  actorbus::bus::event_bus sut{rt.system()};
  pipeline::collector<int64_t> out;
  auto run = pipeline::from_topic<int64_t>(sut, "numbers", {.max_items = 3})
                 .then("square", [](int64_t& x) { return x * x; })
                 .to(out)
                 .run(rt);
  ASSERT_TRUE(run) << actorbus::runtime::describe(run.error());
  for (int64_t i = 1; i <= 3; ++i)
    ASSERT_FALSE(sut.publish("numbers", i));
  auto report = run->wait(caf::timespan{30s});
  ASSERT_TRUE(report) << actorbus::runtime::describe(report.error());
  EXPECT_TRUE(report->ok()) << actorbus::runtime::describe(report->error);
  EXPECT_EQ(out.items(), (std::vector<int64_t>{1, 4, 9}));
}

} // namespace
