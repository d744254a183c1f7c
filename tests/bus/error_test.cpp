#include "actorbus/bus/error.hpp"

#include "actorbus/runtime/config.hpp"
#include "actorbus/runtime/error.hpp"

#include <caf/actor_system.hpp>

#include <gtest/gtest.h>

#include <string>

// Bus errors print as words with no set-up: registered with the runtime's
// error table when the program starts.

namespace {

using namespace actorbus::bus;
namespace rt = actorbus::runtime;

class error_test : public ::testing::Test {};

TEST_F(error_test, a_bus_error_describes_itself_as_module_code_and_context) {
  EXPECT_EQ(rt::describe(make_error(errc::queue_full, "sensor.*")),
            "bus.queue_full: sensor.*");
  EXPECT_EQ(rt::describe(make_error(errc::closed)), "bus.closed");
}

TEST_F(error_test, every_runtime_config_renders_bus_errors_the_same_way) {
  rt::runtime_config cfg; // no bus-specific set-up
  caf::actor_system sys{cfg};
  auto err = make_error(errc::publish_timeout, "orders.#");
  EXPECT_EQ(sys.render(err), "bus.publish_timeout: orders.#");
  EXPECT_EQ(sys.render(err), rt::describe(err));
}

TEST_F(error_test, an_error_compares_equal_to_its_code) {
  auto err = make_error(errc::invalid_topic, "a..b");
  EXPECT_EQ(err, errc::invalid_topic);
  EXPECT_NE(err, errc::invalid_pattern);
  EXPECT_EQ(err.category(), error_category);
}

TEST_F(error_test, every_code_has_a_name) {
  for (auto x : {errc::invalid_topic, errc::invalid_pattern, errc::queue_full,
                 errc::publish_timeout, errc::closed, errc::invalid_argument})
    EXPECT_NE(std::string{to_string(x)}, "unknown");
  EXPECT_EQ(std::string{to_string(errc::invalid_argument)}, "invalid_argument");
}

} // namespace
