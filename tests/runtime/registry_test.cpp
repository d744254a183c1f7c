#include "actorbus/runtime/registry.hpp"

#include "deterministic_fixture.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

using actorbus::runtime::registry;

namespace {

caf::behavior echo() {
  return {[](int x) { return x; }};
}

class registry_test : public actorbus::test::deterministic_fixture {
protected:
  registry sut;
};

} // namespace

TEST_F(registry_test, a_registered_actor_is_found_by_any_string_name) {
  auto worker = sys.spawn(echo);
  const std::string long_name = "orders.service.primary-worker-0001";
  ASSERT_FALSE(sut.put(long_name, worker));
  EXPECT_EQ(sut.get(long_name), worker);
  EXPECT_EQ(sut.size(), 1u);
  EXPECT_EQ(sut.names(), std::vector<std::string>{long_name});
}

TEST_F(registry_test, an_unknown_name_yields_an_invalid_handle) {
  EXPECT_FALSE(sut.get("nobody"));
}

TEST_F(registry_test, a_taken_name_is_refused_and_keeps_its_actor) {
  auto first = sys.spawn(echo);
  auto second = sys.spawn(echo);
  ASSERT_FALSE(sut.put("svc", first));
  auto err = sut.put("svc", second);
  EXPECT_EQ(err, caf::sec::runtime_error);
  EXPECT_EQ(sut.get("svc"), first);
}

TEST_F(registry_test, registering_the_same_actor_twice_is_harmless) {
  auto worker = sys.spawn(echo);
  ASSERT_FALSE(sut.put("svc", worker));
  EXPECT_FALSE(sut.put("svc", worker));
  EXPECT_EQ(sut.size(), 1u);
}

TEST_F(registry_test, empty_names_and_invalid_handles_are_refused) {
  EXPECT_EQ(sut.put("", sys.spawn(echo)), caf::sec::invalid_argument);
  EXPECT_EQ(sut.put("x", caf::actor{}), caf::sec::invalid_argument);
  EXPECT_EQ(sut.size(), 0u);
}

TEST_F(registry_test, erase_removes_a_name) {
  auto worker = sys.spawn(echo);
  ASSERT_FALSE(sut.put("svc", worker));
  EXPECT_TRUE(sut.erase("svc"));
  EXPECT_FALSE(sut.erase("svc"));
  EXPECT_FALSE(sut.get("svc"));
}

TEST_F(registry_test, an_actor_that_exits_leaves_the_registry_by_itself) {
  auto worker = sys.spawn(echo);
  ASSERT_FALSE(sut.put("svc", worker));
  caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
  run();
  EXPECT_FALSE(sut.get("svc"));
  EXPECT_EQ(sut.size(), 0u);
}

TEST_F(registry_test, a_name_freed_by_an_exit_can_be_taken_again) {
  auto first = sys.spawn(echo);
  ASSERT_FALSE(sut.put("svc", first));
  caf::anon_send_exit(first, caf::exit_reason::kill);
  run();
  auto second = sys.spawn(echo);
  ASSERT_FALSE(sut.put("svc", second));
  EXPECT_EQ(sut.get("svc"), second);
}

TEST_F(registry_test, the_exit_of_an_old_holder_does_not_remove_a_new_one) {
  auto first = sys.spawn(echo);
  ASSERT_FALSE(sut.put("svc", first));
  ASSERT_TRUE(sut.erase("svc"));
  auto second = sys.spawn(echo);
  ASSERT_FALSE(sut.put("svc", second));
  caf::anon_send_exit(first, caf::exit_reason::kill);
  run();
  EXPECT_EQ(sut.get("svc"), second);
}

TEST_F(registry_test, a_dead_actor_cannot_be_registered) {
  auto worker = sys.spawn(echo);
  caf::anon_send_exit(worker, caf::exit_reason::kill);
  run();
  // The exit hook runs at once for a terminated actor, so nothing stays.
  EXPECT_FALSE(sut.put("svc", worker));
  EXPECT_FALSE(sut.get("svc"));
}
