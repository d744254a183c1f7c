#include "actorbus/actors/supervisor.hpp"

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/log.hpp"
#include "actorbus/runtime/runtime.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <utility>

namespace actorbus::actors {

void add_supervisor_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<child_counts>("actorbus::actors::child_counts");
}

namespace {

using restart_atom = caf::atom_constant<caf::atom("abRestart")>;
inline constexpr restart_atom restart_v{};
using kill_late_atom = caf::atom_constant<caf::atom("abKillLat")>;
inline constexpr kill_late_atom kill_late_v{};

enum class child_status { stopped, running, restarting, stopping };

const char* status_name(child_status x) {
  switch (x) {
  case child_status::running:
    return "running";
  case child_status::restarting:
  case child_status::stopping:
    return "restarting";
  default:
    return "stopped";
  }
}

struct child {
  child_spec spec;
  caf::actor handle;
  child_status status = child_status::stopped;
  std::size_t consecutive = 0;
  caf::actor_clock::time_point started;
  uint64_t gen = 0;
  bool removed = false; // temporary or finished transient child
};

/// One supervisor's state and logic; lives in the actor's behavior.
class supervisor_impl : public std::enable_shared_from_this<supervisor_impl> {
public:
  supervisor_impl(caf::event_based_actor* self, supervisor_config cfg)
      : self_(self)
      , cfg_(std::move(cfg)) {
    if (cfg_.strategy == restart_strategy::simple_one_for_one) {
      template_ = cfg_.children.front();
    } else {
      for (auto& spec : cfg_.children) {
        children_.push_back(child{});
        children_.back().spec = spec;
      }
    }
  }

  caf::behavior make_behavior() {
    auto me = shared_from_this();
    self_->set_down_handler([me](caf::down_msg& dm) { me->on_down(dm); });
    self_->set_exit_handler([me](caf::exit_msg& em) {
      // A parent (or anyone) asks us to stop: ordered shutdown first.
      if (em.reason == caf::exit_reason::kill) {
        me->self_->quit(em.reason);
        return;
      }
      me->shutdown([me, reason = em.reason] { me->self_->quit(reason); });
    });
    // However the supervisor ends (killed included), no child outlives it.
    // Runs in the supervisor's own cleanup, after its last handler.
    self_->attach_functor([me] {
      for (auto& c : me->children_)
        if (c.handle)
          caf::anon_send_exit(c.handle, caf::exit_reason::kill);
    });
    for (std::size_t i = 0; i < children_.size(); ++i)
      if (!start(i))
        break;
    return {
        [me](count_children_atom) {
          child_counts out;
          out.total_restarts = me->total_restarts_;
          for (auto& c : me->children_) {
            if (c.removed)
              continue;
            ++out.specs;
            if (c.status == child_status::running)
              ++out.active;
            else if (c.status != child_status::stopped)
              ++out.restarting;
          }
          return out;
        },
        [me](which_children_atom) {
          std::vector<std::string> out;
          for (auto& c : me->children_)
            if (!c.removed)
              out.push_back(c.spec.id + ":" + status_name(c.status));
          return out;
        },
        [me](caf::get_atom, const std::string& id) {
          for (auto& c : me->children_)
            if (!c.removed && c.spec.id == id &&
                c.status == child_status::running)
              return c.handle;
          return caf::actor{};
        },
        [me](start_child_atom) -> caf::result<caf::actor> {
          return me->start_dynamic();
        },
        [me](stop_atom) -> caf::result<caf::ok_atom> {
          auto rp = me->self_->make_response_promise<caf::ok_atom>();
          me->shutdown([me, rp]() mutable {
            rp.deliver(caf::ok_atom::value);
            me->self_->quit();
          });
          return rp;
        },
        [me](restart_atom, uint64_t i, uint64_t gen) {
          me->on_restart_timer(i, gen);
        },
        [me](kill_late_atom, uint64_t i, uint64_t gen) {
          auto& c = me->children_[i];
          if (c.gen == gen && c.status == child_status::stopping)
            caf::anon_send_exit(c.handle, caf::exit_reason::kill);
        },
    };
  }

private:
  // -- starting --------------------------------------------------------------

  /// Starts child `i`; on failure handles it as a crash. Returns false when
  /// the supervisor escalated.
  bool start(std::size_t i) {
    auto& c = children_[i];
    ++c.gen;
    auto res = run_start(c.spec);
    if (!res) {
      c.status = child_status::stopped;
      c.started = time_point{}; // a failed start is never stable
      return on_failure(i, res.error());
    }
    c.handle = std::move(*res);
    c.status = child_status::running;
    c.started = self_->clock().now();
    self_->monitor(c.handle);
    return true;
  }

  caf::result<caf::actor> start_dynamic() {
    if (cfg_.strategy != restart_strategy::simple_one_for_one)
      return make_error(errc::not_dynamic,
                        "start_child: the supervisor has static children");
    child c;
    c.spec = template_;
    c.spec.id = template_.id + "-" + std::to_string(++dynamic_count_);
    children_.push_back(std::move(c));
    auto i = children_.size() - 1;
    auto res = run_start(children_[i].spec);
    if (!res) {
      children_[i].removed = true;
      return std::move(res.error());
    }
    auto& ch = children_[i];
    ch.handle = *res;
    ch.status = child_status::running;
    ch.started = self_->clock().now();
    ++ch.gen;
    self_->monitor(ch.handle);
    return ch.handle;
  }

  /// Runs the start function of `spec`: its actor, its error, or the error
  /// for an exception it threw or an invalid handle it returned.
  caf::expected<caf::actor> run_start(const child_spec& spec) {
    auto prefix = "start of child \"" + spec.id + "\"";
    try {
      auto res = spec.start(self_->system());
      if (res && !*res)
        return caf::make_error(caf::sec::invalid_argument,
                               prefix + ": returned an invalid actor");
      return res;
    } catch (...) {
      auto err = error_from_exception(std::current_exception(), prefix);
      runtime::log(self_, runtime::log_level::error, "{}",
                   runtime::describe(err));
      return err;
    }
  }

  // -- failures --------------------------------------------------------------

  void on_down(const caf::down_msg& dm) {
    auto i = find(dm.source);
    if (i == npos)
      return;
    auto& c = children_[i];
    c.handle = nullptr;
    if (c.status == child_status::stopping) {
      c.status = child_status::stopped;
      continue_stop();
      return;
    }
    c.status = child_status::stopped;
    if (shutting_down_)
      return;
    bool normal = dm.reason == caf::exit_reason::normal ||
                  dm.reason == caf::exit_reason::user_shutdown || !dm.reason;
    if (c.spec.restart == restart_type::temporary ||
        (c.spec.restart == restart_type::transient && normal)) {
      c.removed = true;
      return;
    }
    on_failure(i, dm.reason);
  }

  /// Child `i` died or failed to start (`why`): restart it (and its group)
  /// after a backoff, or escalate. Returns false when escalating.
  bool on_failure(std::size_t i, const caf::error& why) {
    auto now = self_->clock().now();
    restarts_.push_back(now);
    while (!restarts_.empty() && now - restarts_.front() > cfg_.period)
      restarts_.pop_front();
    if (restarts_.size() > cfg_.max_restarts) {
      auto me = shared_from_this();
      auto err = make_error(
          errc::intensity_exceeded,
          "child \"" + children_[i].spec.id + "\": " +
              (why ? runtime::describe(why) : std::string{"exited normally"}));
      shutdown([me, err] { me->self_->quit(err); });
      return false;
    }
    ++total_restarts_;
    auto& c = children_[i];
    if (c.status != child_status::restarting && c.started != time_point{} &&
        cfg_.backoff.resets_after(now - c.started))
      c.consecutive = 0;
    auto pause = cfg_.backoff.random_delay(c.consecutive++);
    c.status = child_status::restarting;
    // The group that restarts with `i`, in start order.
    std::vector<std::size_t> group;
    if (cfg_.strategy == restart_strategy::one_for_all) {
      for (std::size_t k = 0; k < children_.size(); ++k)
        group.push_back(k);
    } else if (cfg_.strategy == restart_strategy::rest_for_one) {
      for (std::size_t k = i; k < children_.size(); ++k)
        group.push_back(k);
    } else {
      group.push_back(i);
    }
    std::vector<std::size_t> running;
    for (auto k : group)
      if (k != i && !children_[k].removed &&
          children_[k].status == child_status::running)
        running.push_back(k);
    std::reverse(running.begin(), running.end());
    auto gen = ++children_[i].gen;
    groups_[i] = group;
    auto me = shared_from_this();
    stop_in_order(running, [me, i, gen, pause] {
      if (pause.count() == 0)
        me->self_->send(me->self_, restart_v, uint64_t{i}, gen);
      else
        me->self_->delayed_send(me->self_, pause, restart_v, uint64_t{i}, gen);
    });
    return true;
  }

  void on_restart_timer(uint64_t i, uint64_t gen) {
    if (shutting_down_ || i >= children_.size() || children_[i].gen != gen)
      return;
    auto group = groups_[i];
    for (auto k : group) {
      auto& c = children_[k];
      if (c.removed || c.status == child_status::running)
        continue;
      if (k != i)
        ++total_restarts_;
      if (!start(k))
        return;
      if (children_[k].status != child_status::running)
        return; // failed start: handled (rescheduled) by on_failure
    }
  }

  // -- ordered stop ----------------------------------------------------------

  /// Stops `order` one after the other (user_shutdown, then kill after the
  /// child's timeout), then calls `then`.
  void stop_in_order(std::vector<std::size_t> order,
                     std::function<void()> then) {
    stop_queue_.push_back({std::move(order), 0, std::move(then)});
    if (stop_queue_.size() == 1)
      continue_stop();
  }

  void continue_stop() {
    while (!stop_queue_.empty()) {
      auto& job = stop_queue_.front();
      while (job.pos < job.order.size()) {
        auto k = job.order[job.pos];
        auto& c = children_[k];
        if (c.status == child_status::stopping)
          return; // its down message continues the job
        if (c.status == child_status::running && c.handle) {
          c.status = child_status::stopping;
          ++c.gen;
          self_->send_exit(c.handle, caf::exit_reason::user_shutdown);
          self_->delayed_send(self_, c.spec.shutdown_timeout, kill_late_v,
                              uint64_t{k}, c.gen);
          return;
        }
        ++job.pos;
      }
      auto then = std::move(job.then);
      stop_queue_.pop_front();
      if (then)
        then();
    }
  }

  void shutdown(std::function<void()> then) {
    if (shutting_down_)
      return;
    shutting_down_ = true;
    std::vector<std::size_t> order;
    for (std::size_t k = children_.size(); k > 0; --k)
      order.push_back(k - 1);
    // Pending stop jobs are superseded: the shutdown order covers all.
    stop_queue_.clear();
    stop_in_order(std::move(order), std::move(then));
  }

  std::size_t find(const caf::actor_addr& who) const {
    for (std::size_t k = 0; k < children_.size(); ++k)
      if (children_[k].handle && children_[k].handle.address() == who)
        return k;
    return npos;
  }

  using time_point = caf::actor_clock::time_point;
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  struct stop_job {
    std::vector<std::size_t> order;
    std::size_t pos;
    std::function<void()> then;
  };

  caf::event_based_actor* self_;
  supervisor_config cfg_;
  child_spec template_;
  std::vector<child> children_;
  std::map<std::size_t, std::vector<std::size_t>> groups_;
  std::deque<time_point> restarts_;
  std::deque<stop_job> stop_queue_;
  uint64_t total_restarts_ = 0;
  std::size_t dynamic_count_ = 0;
  bool shutting_down_ = false;
};

caf::error validate(const supervisor_config& cfg) {
  auto bad = [](std::string why) {
    return caf::make_error(caf::sec::invalid_argument,
                           "supervisor." + std::move(why));
  };
  std::set<std::string> ids;
  for (auto& c : cfg.children) {
    if (!c.start)
      return bad("children: child \"" + c.id + "\" has no start function");
    if (!ids.insert(c.id).second)
      return bad("children: duplicate id \"" + c.id + "\"");
  }
  if (cfg.strategy == restart_strategy::simple_one_for_one &&
      cfg.children.size() != 1)
    return bad("children: simple_one_for_one needs exactly one child spec");
  if (auto err = cfg.backoff.validate()) {
    auto what = err.context().match_elements<std::string>()
                    ? err.context().get_as<std::string>(0)
                    : std::string{"backoff: invalid"};
    return bad(what);
  }
  return caf::error{};
}

caf::behavior supervisor_actor(caf::event_based_actor* self,
                               supervisor_config cfg) {
  auto impl = std::make_shared<supervisor_impl>(self, std::move(cfg));
  return impl->make_behavior();
}

} // namespace

caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys,
                                           supervisor_config cfg) {
  if (auto err = validate(cfg))
    return err;
  // The configuration is a spawn argument: CAF 0.17 trips UBSan on
  // function actors spawned without any.
  return sys.spawn(supervisor_actor, std::move(cfg));
}

caf::expected<caf::actor> spawn_supervisor(runtime::runtime& rt,
                                           supervisor_config cfg) {
  if (auto err = validate(cfg))
    return err;
  return rt.spawn(supervisor_actor, std::move(cfg));
}

} // namespace actorbus::actors
