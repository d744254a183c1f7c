#include "actorbus/ipc/error.hpp"

#include "actorbus/runtime/runtime.hpp"

#include <gtest/gtest.h>

using namespace actorbus;
using namespace actorbus::ipc;

namespace {

struct error_test : ::testing::Test {
  caf::error sut = make_error(errc::peer_dead, "exited with status 3");
};

} // namespace

TEST_F(error_test, describe_prints_the_module_the_code_and_the_context) {
  EXPECT_EQ(describe(sut), "ipc.peer_dead: exited with status 3");
  EXPECT_EQ(describe(make_error(errc::timeout)), "ipc.timeout");
}

TEST_F(error_test, ipc_describe_is_the_runtime_describe) {
  EXPECT_EQ(ipc::describe(sut), runtime::describe(sut));
}

TEST_F(error_test, the_actor_system_renders_ipc_errors_in_the_same_words) {
  runtime::runtime rt;
  EXPECT_EQ(rt.system().render(sut), "ipc.peer_dead: exited with status 3");
}
