#include "actorbus/runtime/backoff.hpp"

#include "actorbus/runtime/error.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace {

using namespace std::chrono_literals;
using actorbus::runtime::backoff;

class backoff_test : public ::testing::Test {
protected:
  backoff sut{.min = 10ms, .max = 100ms, .multiplier = 2.0};
};

TEST_F(backoff_test, pauses_grow_by_the_multiplier_up_to_the_cap) {
  EXPECT_EQ(sut.nominal_delay(0), caf::timespan{10ms});
  EXPECT_EQ(sut.nominal_delay(1), caf::timespan{20ms});
  EXPECT_EQ(sut.nominal_delay(3), caf::timespan{80ms});
  EXPECT_EQ(sut.nominal_delay(4), caf::timespan{100ms});
  EXPECT_EQ(sut.nominal_delay(1000), caf::timespan{100ms});
}

TEST_F(backoff_test, jitter_spreads_a_pause_without_exceeding_the_cap) {
  sut.jitter = 0.5;
  EXPECT_EQ(sut.delay(1, 0.0), caf::timespan{10ms});
  EXPECT_EQ(sut.delay(1, 1.0), caf::timespan{30ms});
  EXPECT_EQ(sut.delay(4, 1.0), caf::timespan{100ms});
  for (int i = 0; i < 1000; ++i) {
    auto d = sut.random_delay(2);
    EXPECT_GE(d, caf::timespan{20ms});
    EXPECT_LE(d, caf::timespan{60ms});
  }
}

TEST_F(backoff_test, only_a_long_enough_run_resets_the_count) {
  EXPECT_FALSE(sut.resets_after(1h)) << "zero means never";
  sut.reset_after = 1s;
  EXPECT_FALSE(sut.resets_after(999ms));
  EXPECT_TRUE(sut.resets_after(1s));
}

TEST_F(backoff_test, out_of_range_fields_are_refused_by_name) {
  EXPECT_FALSE(sut.validate());
  auto bad = sut;
  bad.jitter = 1.5;
  EXPECT_NE(actorbus::runtime::describe(bad.validate()).find("backoff.jitter"),
            std::string::npos);
  bad = sut;
  bad.multiplier = 0.5;
  EXPECT_TRUE(bad.validate());
  bad = sut;
  bad.max = 1ms;
  EXPECT_TRUE(bad.validate());
  bad = sut;
  bad.min = -1ms;
  EXPECT_TRUE(bad.validate());
}

} // namespace
