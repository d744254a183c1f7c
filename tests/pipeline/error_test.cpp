#include "actorbus/pipeline/error.hpp"

#include "actorbus/runtime/config.hpp"
#include "actorbus/runtime/error.hpp"

#include <caf/actor_system.hpp>

#include <gtest/gtest.h>

#include <string>

namespace {

namespace pl = actorbus::pipeline;
namespace rt = actorbus::runtime;

class pipeline_error_test : public ::testing::Test {
protected:
  caf::error sut =
      pl::make_error(pl::errc::source_failed, "cannot open 'access.log'");
};

TEST_F(pipeline_error_test,
       a_pipeline_error_prints_its_module_code_and_context) {
  EXPECT_EQ(rt::describe(sut),
            "pipeline.source_failed: cannot open 'access.log'");
  EXPECT_EQ(rt::describe(pl::make_error(pl::errc::cancelled)),
            "pipeline.cancelled");
}

TEST_F(pipeline_error_test, the_actor_system_renders_it_in_the_same_words) {
  rt::runtime_config cfg;
  caf::actor_system sys{cfg};
  EXPECT_EQ(sys.render(sut), rt::describe(sut));
}

TEST_F(pipeline_error_test, it_compares_equal_to_its_code_only) {
  EXPECT_EQ(sut, pl::errc::source_failed);
  EXPECT_NE(sut, pl::errc::sink_failed);
  EXPECT_EQ(sut.category(), pl::error_category);
}

TEST_F(pipeline_error_test, every_code_has_a_name) {
  for (auto code = std::uint8_t{1};
       code <= static_cast<std::uint8_t>(pl::errc::actor_failed); ++code)
    EXPECT_NE(std::string{pl::to_string(static_cast<pl::errc>(code))},
              "unknown")
        << int{code};
}

} // namespace
