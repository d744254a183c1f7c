#include "actorbus/queue/error.hpp"

#include "actorbus/runtime/runtime.hpp"

#include <gtest/gtest.h>

using namespace actorbus;
using namespace actorbus::queue;

namespace {

struct error_test : ::testing::Test {
  caf::error sut = make_error(errc::unknown_task, "no handler for 'resize'");
};

} // namespace

TEST_F(error_test, describe_prints_the_module_the_code_and_the_context) {
  EXPECT_EQ(describe(sut), "queue.unknown_task: no handler for 'resize'");
  EXPECT_EQ(describe(make_error(errc::unreachable)), "queue.unreachable");
}

TEST_F(error_test, the_actor_system_renders_queue_errors_in_the_same_words) {
  runtime::runtime rt;
  EXPECT_EQ(rt.system().render(sut), describe(sut));
}

TEST_F(error_test, every_code_has_a_name) {
  for (auto x : {errc::unreachable, errc::redis_error, errc::not_found,
                 errc::malformed_entry, errc::malformed_payload,
                 errc::unknown_task, errc::handler_failed, errc::stopped})
    EXPECT_STRNE(to_string(x), "unknown");
  EXPECT_EQ(sut, errc::unknown_task);
}
