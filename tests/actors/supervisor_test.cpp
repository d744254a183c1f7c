#include "actorbus/actors/supervisor.hpp"

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "deterministic_fixture.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace actorbus::actors;
using namespace std::chrono_literals;

namespace {

/// What the children did, in order: "start:a", "stop:a", "ignore:b".
using journal = std::shared_ptr<std::vector<std::string>>;

/// A child that answers ints, exits with an error on -1, throws "disk full"
/// on -2 and exits normally on 0; a stubborn one ignores exit requests (only
/// a kill ends it).
caf::behavior child_actor(caf::event_based_actor* self, std::string id,
                          journal log, journal exited, bool stubborn) {
  report_exceptions(self);
  self->attach_functor([exited, id] { exited->push_back(id); });
  self->set_exit_handler([=](caf::exit_msg& em) {
    if (stubborn) {
      log->push_back("ignore:" + id);
      return;
    }
    log->push_back("stop:" + id);
    self->quit(em.reason);
  });
  return {[=](int x) -> caf::result<int> {
    if (x == -1)
      self->quit(caf::make_error(caf::sec::runtime_error));
    else if (x == -2)
      throw std::runtime_error("disk full");
    else if (x == 0)
      self->quit();
    return x;
  }};
}

class supervisor_test : public actorbus::test::deterministic_fixture {
protected:
  ~supervisor_test() override {
    // Stop the tree and let pending timers fire, so that the actor system
    // can finish.
    if (sut)
      caf::anon_send_exit(sut, caf::exit_reason::user_shutdown);
    run();
    for (int i = 0; i < 5; ++i)
      run_after(1s);
  }

  child_spec spec(std::string id, restart_type rt = restart_type::permanent,
                  bool stubborn = false) {
    child_spec s;
    s.id = id;
    s.restart = rt;
    s.shutdown_timeout = 1s;
    s.start = [this, id, stubborn](caf::actor_system& sys) {
      log->push_back("start:" + id);
      ++starts[id];
      return caf::expected<caf::actor>{
          sys.spawn(child_actor, id, log, exited, stubborn)};
    };
    return s;
  }

  void start(supervisor_config cfg) {
    auto res = spawn_supervisor(sys, std::move(cfg));
    ASSERT_TRUE(res) << sys.render(res.error());
    sut = *res;
    auto reason = down_reason;
    auto done = stopped;
    observer = sys.spawn(
        [reason, done](caf::event_based_actor* self, caf::actor who) {
          self->monitor(who);
          self->set_down_handler([=](caf::down_msg& dm) {
            *reason = dm.reason;
            *done = true;
          });
          return caf::behavior{[](int) {}};
        },
        sut);
    run();
  }

  template <class T, class... Ts>
  std::optional<T> ask(Ts... xs) {
    auto out = std::make_shared<std::optional<T>>();
    auto client = sys.spawn(
        [out, xs...](caf::event_based_actor* self, caf::actor dest) {
          self->request(dest, caf::infinite, xs...).then([out](T& x) {
            *out = std::move(x);
          });
        },
        sut);
    run();
    return *out;
  }

  caf::actor child(const std::string& id) {
    return ask<caf::actor>(caf::get_atom::value, id).value_or(caf::actor{});
  }

  void crash(const std::string& id) {
    auto c = child(id);
    ASSERT_TRUE(c) << id << " is not running";
    caf::anon_send(c, -1);
    run();
  }

  child_counts counts() {
    return ask<child_counts>(count_children_v).value_or(child_counts{});
  }

  journal log = std::make_shared<std::vector<std::string>>();
  journal exited = std::make_shared<std::vector<std::string>>();
  std::map<std::string, int> starts;
  caf::actor sut;
  caf::actor observer;
  std::shared_ptr<caf::error> down_reason = std::make_shared<caf::error>();
  std::shared_ptr<bool> stopped = std::make_shared<bool>(false);
};

TEST_F(supervisor_test, children_start_in_order_and_answer_queries) {
  supervisor_config cfg;
  cfg.children = {spec("a"), spec("b"), spec("c")};
  start(std::move(cfg));
  EXPECT_EQ(*log, (std::vector<std::string>{"start:a", "start:b", "start:c"}));
  EXPECT_EQ(counts(), (child_counts{3, 3, 0, 0}));
  EXPECT_EQ(ask<std::vector<std::string>>(which_children_v),
            (std::vector<std::string>{"a:running", "b:running", "c:running"}));
}

TEST_F(supervisor_test, one_for_one_restarts_only_the_failed_child) {
  supervisor_config cfg;
  cfg.children = {spec("a"), spec("b"), spec("c")};
  start(std::move(cfg));
  crash("b");
  EXPECT_EQ(starts["a"], 1);
  EXPECT_EQ(starts["b"], 2);
  EXPECT_EQ(starts["c"], 1);
  EXPECT_EQ(counts(), (child_counts{3, 3, 0, 1}));
}

TEST_F(supervisor_test,
       one_for_all_stops_the_others_in_reverse_order_then_restarts_all) {
  supervisor_config cfg;
  cfg.strategy = restart_strategy::one_for_all;
  cfg.children = {spec("a"), spec("b"), spec("c")};
  start(std::move(cfg));
  log->clear();
  crash("b");
  EXPECT_EQ(*log, (std::vector<std::string>{"stop:c", "stop:a", "start:a",
                                            "start:b", "start:c"}));
}

TEST_F(supervisor_test, rest_for_one_restarts_the_child_and_those_after_it) {
  supervisor_config cfg;
  cfg.strategy = restart_strategy::rest_for_one;
  cfg.children = {spec("a"), spec("b"), spec("c")};
  start(std::move(cfg));
  log->clear();
  crash("b");
  EXPECT_EQ(*log, (std::vector<std::string>{"stop:c", "start:b", "start:c"}));
  EXPECT_EQ(starts["a"], 1);
}

TEST_F(supervisor_test, restart_types_decide_who_comes_back) {
  supervisor_config cfg;
  cfg.children = {spec("perm"), spec("trans", restart_type::transient),
                  spec("temp", restart_type::temporary)};
  start(std::move(cfg));
  caf::anon_send(child("perm"), 0);  // normal exit
  caf::anon_send(child("trans"), 0); // normal exit
  caf::anon_send(child("temp"), -1); // crash
  run();
  EXPECT_EQ(starts["perm"], 2) << "permanent: back even after a normal exit";
  EXPECT_EQ(starts["trans"], 1) << "transient: not after a normal exit";
  EXPECT_EQ(starts["temp"], 1) << "temporary: never";
  EXPECT_EQ(counts().specs, 1u);
}

TEST_F(supervisor_test, a_transient_child_comes_back_after_a_crash) {
  supervisor_config cfg;
  cfg.children = {spec("trans", restart_type::transient)};
  start(std::move(cfg));
  crash("trans");
  EXPECT_EQ(starts["trans"], 2);
}

TEST_F(supervisor_test, the_restart_beyond_the_intensity_escalates) {
  supervisor_config cfg;
  cfg.max_restarts = 3;
  cfg.period = 10s;
  cfg.children = {spec("a"), spec("b")};
  start(std::move(cfg));
  for (int i = 0; i < 3; ++i)
    crash("a");
  EXPECT_FALSE(*stopped) << "exactly 3 restarts are allowed";
  EXPECT_EQ(starts["a"], 4);
  log->clear();
  crash("a");
  EXPECT_TRUE(*stopped);
  EXPECT_TRUE(*down_reason == errc::intensity_exceeded);
  EXPECT_EQ(actorbus::runtime::describe(*down_reason),
            "actors.intensity_exceeded: child \"a\": caf.runtime_error");
  EXPECT_EQ(sys.render(*down_reason), actorbus::runtime::describe(*down_reason))
      << "CAF renders it in the same words";
  EXPECT_EQ(*log, (std::vector<std::string>{"stop:b"}))
      << "children are stopped before escalating";
}

TEST_F(supervisor_test, restarts_older_than_the_period_do_not_count) {
  supervisor_config cfg;
  cfg.max_restarts = 3;
  cfg.period = 10s;
  cfg.children = {spec("a")};
  start(std::move(cfg));
  for (int i = 0; i < 3; ++i)
    crash("a");
  run_after(10s + 1ns);
  for (int i = 0; i < 3; ++i)
    crash("a");
  EXPECT_FALSE(*stopped);
  EXPECT_EQ(starts["a"], 7);
}

TEST_F(supervisor_test,
       backoff_delays_grow_to_their_cap_and_reset_after_stability) {
  supervisor_config cfg;
  cfg.max_restarts = 100;
  cfg.period = 1s;
  cfg.backoff = {
      .min = 100ms, .max = 400ms, .multiplier = 2.0, .reset_after = 5s};
  cfg.children = {spec("a")};
  start(std::move(cfg));
  std::vector<caf::timespan> expected{100ms, 200ms, 400ms, 400ms};
  int n = 1;
  for (auto d : expected) {
    crash("a");
    EXPECT_EQ(starts["a"], n) << "no restart before the backoff";
    run_after(d - 1ns);
    EXPECT_EQ(starts["a"], n) << "restart " << n << " came early";
    EXPECT_EQ(counts().restarting, 1u) << "the child is reported as restarting";
    run_after(1ns);
    EXPECT_EQ(starts["a"], ++n) << "restart after exactly " << d.count();
  }
  run_after(5s); // stable now
  crash("a");
  run_after(100ms);
  EXPECT_EQ(starts["a"], ++n) << "the backoff was reset to its minimum";
}

TEST_F(supervisor_test, jittered_restarts_wait_within_the_backoff_bounds) {
  supervisor_config cfg;
  cfg.max_restarts = 100;
  cfg.backoff = {.min = 100ms, .max = 1s, .jitter = 0.5};
  cfg.children = {spec("a")};
  start(std::move(cfg));
  crash("a");
  run_after(50ms - 1ns);
  EXPECT_EQ(starts["a"], 1) << "no restart before min * (1 - jitter)";
  run_after(100ms + 1ns);
  EXPECT_EQ(starts["a"], 2) << "a restart by min * (1 + jitter)";
}

TEST_F(supervisor_test, an_invalid_backoff_is_refused_naming_the_field) {
  supervisor_config cfg;
  cfg.backoff = {.min = 1s, .max = 10ms};
  cfg.children = {spec("a")};
  auto res = spawn_supervisor(sys, cfg);
  ASSERT_FALSE(res);
  EXPECT_EQ(actorbus::runtime::describe(res.error()),
            "caf.invalid_argument: supervisor.backoff.max: must not be less "
            "than backoff.min");
}

TEST_F(supervisor_test,
       shutdown_goes_in_reverse_start_order_and_kills_after_the_timeout) {
  supervisor_config cfg;
  cfg.children = {spec("a"), spec("b", restart_type::permanent, true),
                  spec("c")};
  start(std::move(cfg));
  log->clear();
  auto replied = std::make_shared<bool>(false);
  sys.spawn(
      [replied](caf::event_based_actor* self, caf::actor dest) {
        self->request(dest, caf::infinite, stop_v)
            .then([replied](caf::ok_atom) { *replied = true; });
      },
      sut);
  run();
  EXPECT_EQ(*log, (std::vector<std::string>{"stop:c", "ignore:b"}));
  run_after(1s - 1ns);
  EXPECT_EQ(log->size(), 2u) << "a waits while b has time left";
  run_after(1ns);
  EXPECT_EQ(*log, (std::vector<std::string>{"stop:c", "ignore:b", "stop:a"}));
  EXPECT_TRUE(*replied);
  EXPECT_TRUE(*stopped);
  EXPECT_FALSE(*down_reason) << "a requested stop is a normal exit";
}

TEST_F(supervisor_test, queries_are_answered_while_a_start_keeps_failing) {
  supervisor_config cfg;
  cfg.max_restarts = 1000;
  cfg.period = 1s;
  cfg.backoff = {.min = 1s, .max = 1s};
  child_spec bad;
  bad.id = "bad";
  auto attempts = std::make_shared<int>(0);
  bad.start = [attempts](caf::actor_system&) -> caf::expected<caf::actor> {
    ++*attempts;
    return caf::make_error(caf::sec::runtime_error, "cannot start");
  };
  cfg.children = {spec("good"), bad};
  start(std::move(cfg));
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(*attempts, i);
    EXPECT_EQ(counts(), (child_counts{2, 1, 1, uint64_t(i)}));
    EXPECT_TRUE(child("good")) << "the healthy child keeps serving";
    run_after(1s);
  }
  EXPECT_FALSE(*stopped);
}

TEST_F(supervisor_test,
       a_child_exception_reaches_its_requester_and_the_escalation) {
  supervisor_config cfg;
  cfg.max_restarts = 0;
  cfg.children = {spec("db")};
  start(std::move(cfg));
  auto reply = std::make_shared<caf::error>();
  sys.spawn(
      [reply](caf::event_based_actor* self, caf::actor db) {
        self->request(db, caf::infinite, -2)
            .then([](int) {}, [reply](caf::error& err) { *reply = err; });
      },
      child("db"));
  run();
  EXPECT_EQ(actorbus::runtime::describe(*reply), "caf.runtime_error: disk full")
      << "the requester gets the exception's text";
  ASSERT_TRUE(*stopped);
  EXPECT_TRUE(*down_reason == errc::intensity_exceeded);
  EXPECT_EQ(actorbus::runtime::describe(*down_reason),
            "actors.intensity_exceeded: child \"db\": caf.runtime_error: disk "
            "full");
}

TEST_F(supervisor_test, an_escalation_says_when_a_permanent_child_just_ended) {
  supervisor_config cfg;
  cfg.max_restarts = 0;
  cfg.children = {spec("a")};
  start(std::move(cfg));
  caf::anon_send(child("a"), 0); // a normal exit, restarted all the same
  run();
  ASSERT_TRUE(*stopped);
  EXPECT_EQ(actorbus::runtime::describe(*down_reason),
            "actors.intensity_exceeded: child \"a\": exited normally");
}

TEST_F(supervisor_test, a_throwing_start_counts_as_a_failed_start) {
  supervisor_config cfg;
  cfg.max_restarts = 0;
  child_spec bad;
  bad.id = "db";
  bad.start = [](caf::actor_system&) -> caf::expected<caf::actor> {
    throw std::runtime_error("disk full");
  };
  cfg.children = {bad};
  start(std::move(cfg));
  ASSERT_TRUE(*stopped) << "the supervisor gave up instead of crashing";
  EXPECT_EQ(actorbus::runtime::describe(*down_reason),
            "actors.intensity_exceeded: child \"db\": caf.runtime_error: "
            "start of child \"db\": disk full");
}

TEST_F(supervisor_test, a_dynamic_start_that_throws_answers_with_its_text) {
  supervisor_config cfg;
  cfg.strategy = restart_strategy::simple_one_for_one;
  child_spec bad;
  bad.id = "conn";
  bad.start = [](caf::actor_system&) -> caf::expected<caf::actor> {
    throw std::runtime_error("disk full");
  };
  cfg.children = {bad};
  start(std::move(cfg));
  auto reply = std::make_shared<caf::error>();
  sys.spawn(
      [reply](caf::event_based_actor* self, caf::actor dest) {
        self->request(dest, caf::infinite, start_child_v)
            .then([](caf::actor) {},
                  [reply](caf::error& err) { *reply = err; });
      },
      sut);
  run();
  EXPECT_EQ(actorbus::runtime::describe(*reply),
            "caf.runtime_error: start of child \"conn-1\": disk full");
  EXPECT_FALSE(*stopped);
}

TEST_F(supervisor_test, a_static_supervisor_refuses_start_child_in_words) {
  supervisor_config cfg;
  cfg.children = {spec("a")};
  start(std::move(cfg));
  auto reply = std::make_shared<caf::error>();
  sys.spawn(
      [reply](caf::event_based_actor* self, caf::actor dest) {
        self->request(dest, caf::infinite, start_child_v)
            .then([](caf::actor) {},
                  [reply](caf::error& err) { *reply = err; });
      },
      sut);
  run();
  EXPECT_TRUE(*reply == errc::not_dynamic);
  EXPECT_EQ(sys.render(*reply),
            "actors.not_dynamic: start_child: the supervisor has static "
            "children");
}

TEST_F(supervisor_test, no_child_outlives_a_killed_supervisor) {
  supervisor_config cfg;
  cfg.children = {spec("a"), spec("b", restart_type::permanent, true)};
  start(std::move(cfg));
  // Handles held elsewhere keep the children from dying as unreachable.
  auto a = child("a");
  auto b = child("b");
  ASSERT_TRUE(a && b);
  caf::anon_send_exit(sut, caf::exit_reason::kill);
  run();
  ASSERT_TRUE(*stopped);
  auto gone = *exited;
  std::sort(gone.begin(), gone.end());
  EXPECT_EQ(gone, (std::vector<std::string>{"a", "b"}))
      << "even the child that ignores exit requests is gone";
}

TEST_F(supervisor_test, dynamic_children_start_on_request_and_restart_alone) {
  supervisor_config cfg;
  cfg.strategy = restart_strategy::simple_one_for_one;
  cfg.children = {spec("conn")};
  start(std::move(cfg));
  EXPECT_TRUE(log->empty()) << "no child until asked";
  auto c1 = ask<caf::actor>(start_child_v);
  auto c2 = ask<caf::actor>(start_child_v);
  ASSERT_TRUE(c1 && *c1);
  ASSERT_TRUE(c2 && *c2);
  EXPECT_EQ(counts(), (child_counts{2, 2, 0, 0}));
  crash("conn-1");
  EXPECT_EQ(starts["conn"], 3);
  EXPECT_EQ(counts(), (child_counts{2, 2, 0, 1}));
}

TEST_F(supervisor_test, an_invalid_configuration_is_refused) {
  supervisor_config cfg;
  cfg.children = {spec("a"), spec("a")};
  auto res = spawn_supervisor(sys, cfg);
  ASSERT_FALSE(res);
  EXPECT_EQ(actorbus::runtime::describe(res.error()),
            "caf.invalid_argument: supervisor.children: duplicate id \"a\"");
  cfg.strategy = restart_strategy::simple_one_for_one;
  cfg.children = {};
  EXPECT_FALSE(spawn_supervisor(sys, cfg));
}

TEST(supervisor_runtime_test,
     the_runtime_shutdown_stops_the_supervisor_and_all_its_children) {
  actorbus::runtime::runtime rt;
  auto gone = std::make_shared<std::atomic<int>>(0);
  supervisor_config cfg;
  for (std::string id : {"polite", "stubborn"}) {
    child_spec s;
    s.id = id;
    s.shutdown_timeout = 1h;
    s.start = [gone, stubborn = id == "stubborn"](caf::actor_system& sys) {
      return caf::expected<caf::actor>{sys.spawn(
          [gone, stubborn](caf::event_based_actor* self, int) {
            self->attach_functor([gone] { ++*gone; });
            if (stubborn)
              self->set_exit_handler([](caf::exit_msg&) {});
            return caf::behavior{[](int x) { return x; }};
          },
          0)};
    };
    cfg.children.push_back(std::move(s));
  }
  auto sup = spawn_supervisor(rt, std::move(cfg));
  ASSERT_TRUE(sup) << actorbus::runtime::describe(sup.error());
  EXPECT_EQ(rt.tracked(), 1u);
  auto report = rt.shutdown(200ms);
  EXPECT_EQ(report.killed, 1u)
      << "the supervisor waited for its stubborn child until the deadline";
  EXPECT_EQ(report.abandoned, 0u) << "no child kept the actor system alive";
  EXPECT_EQ(gone->load(), 2);
  EXPECT_FALSE(spawn_supervisor(rt, supervisor_config{}))
      << "no new supervisor once the runtime shuts down";
}

TEST(supervisor_types_test, child_counts_can_be_registered_to_travel) {
  caf::actor_system_config cfg;
  add_supervisor_types(cfg);
  caf::actor_system sys{cfg};
  auto value = sys.types().make_value("actorbus::actors::child_counts");
  ASSERT_NE(value, nullptr);
  EXPECT_TRUE(value->matches(0, &typeid(child_counts)));
  EXPECT_EQ(value->stringify(), "child_counts(0, 0, 0, 0)");
}

} // namespace
