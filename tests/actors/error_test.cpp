#include "actorbus/actors/error.hpp"

#include "actorbus/runtime/error.hpp"

#include "deterministic_fixture.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/sec.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

using namespace actorbus::actors;
namespace rt = actorbus::runtime;

namespace {

class error_test : public actorbus::test::deterministic_fixture {
protected:
  /// Sends `x` to `dest` and stores the error it answers with.
  caf::error error_reply(const caf::actor& dest, int x) {
    auto out = std::make_shared<caf::error>();
    sys.spawn(
        [out](caf::event_based_actor* self, caf::actor dest, int x) {
          self->request(dest, caf::infinite, x)
              .then([](int) {}, [out](caf::error& err) { *out = err; });
        },
        dest, x);
    run();
    return *out;
  }
};

TEST_F(error_test, actors_errors_print_as_words_through_describe_and_render) {
  auto sut = make_error(errc::intensity_exceeded, "child \"db\": disk full");
  EXPECT_EQ(rt::describe(sut),
            "actors.intensity_exceeded: child \"db\": disk full");
  EXPECT_EQ(sys.render(sut), rt::describe(sut));
  EXPECT_EQ(rt::describe(make_error(errc::not_dynamic)), "actors.not_dynamic");
  EXPECT_EQ(sut.category(), caf::atom("actors"));
}

TEST_F(error_test, an_error_compares_equal_to_its_code) {
  auto sut = make_error(errc::closed, "async_queue: the queue is closed");
  EXPECT_TRUE(sut == errc::closed);
  EXPECT_FALSE(sut == errc::timeout);
  EXPECT_STREQ(to_string(errc::no_unfinished_task), "no_unfinished_task");
}

TEST_F(error_test, an_exception_becomes_a_runtime_error_with_its_text) {
  auto sut = error_from_exception(
      std::make_exception_ptr(std::runtime_error("disk full")), "start of db");
  EXPECT_EQ(sut, caf::sec::runtime_error);
  EXPECT_EQ(rt::describe(sut), "caf.runtime_error: start of db: disk full");
  EXPECT_EQ(rt::describe(error_from_exception(std::make_exception_ptr(42))),
            "caf.runtime_error: unknown exception");
}

TEST_F(error_test, an_actor_reporting_exceptions_answers_with_their_text) {
  auto dest = sys.spawn([](caf::event_based_actor* self) -> caf::behavior {
    report_exceptions(self);
    return {[](int x) -> int {
      if (x < 0)
        throw std::runtime_error("disk full");
      return x;
    }};
  });
  auto sut = error_reply(dest, -1);
  EXPECT_EQ(rt::describe(sut), "caf.runtime_error: disk full");
}

} // namespace
