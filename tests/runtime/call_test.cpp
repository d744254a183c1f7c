#include "actorbus/runtime/call.hpp"

#include "actorbus/runtime/runtime.hpp"

#include "timing.hpp"

#include <caf/event_based_actor.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <future>

using namespace actorbus::runtime;
using namespace std::chrono_literals;
// Under ASan+UBSan the first call to the argument-less `calculator` can
// take seconds (timing.hpp): calls that are not about timeouts wait long.
using actorbus::test::patience;

namespace {

caf::behavior calculator() {
  return {
      [](int x, int y) { return x + y; },
      [](const std::string& what) -> caf::result<int> {
        return caf::make_error(caf::sec::invalid_argument, what);
      },
      [](double) {}, // replies with nothing
  };
}

// Holds every request until released: simulates a stuck service.
caf::behavior silent(caf::event_based_actor* self,
                     std::shared_ptr<std::promise<void>> seen) {
  return {[self, seen](int) -> caf::result<int> {
    seen->set_value();
    return self->make_response_promise<int>();
  }};
}

class call_test : public ::testing::Test {
protected:
  runtime rt;
  caller sut{rt.system()};
};

} // namespace

TEST_F(call_test, a_reply_arrives_as_a_value) {
  auto calc = rt.system().spawn(calculator);
  auto res = sut.call<int>(calc, patience, 20, 22);
  ASSERT_TRUE(res) << rt.system().render(res.error());
  EXPECT_EQ(*res, 42);
}

TEST_F(call_test, an_error_reply_arrives_as_that_error) {
  auto calc = rt.system().spawn(calculator);
  auto res = sut.call<int>(calc, patience, std::string{"bad input"});
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), caf::sec::invalid_argument);
}

TEST_F(call_test, an_empty_reply_completes_a_void_call) {
  auto calc = rt.system().spawn(calculator);
  auto res = sut.call<void>(calc, patience, 1.5);
  EXPECT_TRUE(res);
}

TEST_F(call_test, a_receiver_that_never_answers_times_out) {
  auto seen = std::make_shared<std::promise<void>>();
  auto stuck = *rt.spawn(silent, seen);
  auto start = std::chrono::steady_clock::now();
  auto res = sut.call<int>(stuck, 50ms, 1);
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), caf::sec::request_timeout);
  EXPECT_GE(waited, 50ms);
  EXPECT_LT(waited, 5s);
  EXPECT_EQ(seen->get_future().wait_for(0s), std::future_status::ready);
}

TEST_F(call_test, a_caller_is_reusable_after_a_timeout) {
  auto seen = std::make_shared<std::promise<void>>();
  auto stuck = *rt.spawn(silent, seen);
  ASSERT_FALSE(sut.call<int>(stuck, 10ms, 1));
  auto calc = rt.system().spawn(calculator);
  auto res = sut.call<int>(calc, patience, 2, 3);
  ASSERT_TRUE(res);
  EXPECT_EQ(*res, 5);
}

TEST_F(call_test, an_invalid_handle_is_an_error_not_a_hang) {
  auto res = sut.call<int>(caf::actor{}, 1s, 1, 2);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), caf::sec::invalid_argument);
}

TEST_F(call_test, a_reply_of_another_type_is_an_error) {
  auto calc = rt.system().spawn(calculator);
  auto res = sut.call<std::string>(calc, patience, 1, 2);
  EXPECT_FALSE(res);
}

TEST_F(call_test, the_one_shot_form_works_without_a_caller) {
  auto calc = rt.system().spawn(calculator);
  auto res = call<int>(rt.system(), calc, patience, 4, 5);
  ASSERT_TRUE(res);
  EXPECT_EQ(*res, 9);
}
