#include "actorbus/runtime/error.hpp"

#include "actorbus/runtime/config.hpp"

#include <caf/actor_system.hpp>
#include <caf/sec.hpp>

#include <gtest/gtest.h>

namespace {

namespace rt = actorbus::runtime;

enum class sample_errc : std::uint8_t { first = 1, second };

const char* sample_name(std::uint8_t code) noexcept {
  return code == 1 ? "first" : code == 2 ? "second" : "unknown";
}

constexpr auto sample_category = caf::atom("abSample");

class error_test : public ::testing::Test {};

TEST_F(error_test, a_runtime_error_prints_its_module_code_and_context) {
  auto err = rt::make_error(rt::errc::invalid_config,
                            "scheduler.max-threads: must be at least 1");
  EXPECT_EQ(rt::describe(err), "runtime.invalid_config: scheduler.max-threads: "
                               "must be at least 1");
  EXPECT_EQ(rt::describe(rt::make_error(rt::errc::timeout)), "runtime.timeout");
}

TEST_F(error_test, caf_system_errors_print_as_words) {
  auto err = caf::make_error(caf::sec::request_timeout, "no reply in 1s");
  EXPECT_EQ(rt::describe(err), "caf.request_timeout: no reply in 1s");
  EXPECT_EQ(rt::describe(caf::error{}), "none");
}

TEST_F(error_test, a_registered_category_prints_through_describe_and_render) {
  rt::register_error_category(sample_category, "sample", sample_name);
  caf::error err{static_cast<std::uint8_t>(sample_errc::second),
                 sample_category, caf::make_message(std::string{"why"})};
  EXPECT_EQ(rt::describe(err), "sample.second: why");
  rt::runtime_config cfg;
  caf::actor_system sys{cfg};
  EXPECT_EQ(sys.render(err), "sample.second: why");
  EXPECT_EQ(sys.render(rt::make_error(rt::errc::shutting_down, "bye")),
            "runtime.shutting_down: bye");
}

TEST_F(error_test, a_non_string_context_is_still_shown) {
  caf::error err{static_cast<std::uint8_t>(rt::errc::process_failed),
                 rt::error_category, caf::make_message(3, 4)};
  auto text = rt::describe(err);
  EXPECT_EQ(text.rfind("runtime.process_failed: ", 0), 0u) << text;
  EXPECT_NE(text.find('3'), std::string::npos) << text;
}

} // namespace
