#include "actorbus/actors/supervisor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <utility>

namespace actorbus::actors {

std::string to_string(supervisor_errc x) {
  switch (x) {
  case supervisor_errc::none:
    return "none";
  case supervisor_errc::intensity_exceeded:
    return "intensity_exceeded";
  case supervisor_errc::not_dynamic:
    return "not_dynamic";
  case supervisor_errc::invalid_config:
    return "invalid_config";
  }
  return "unknown";
}

caf::error make_error(supervisor_errc x, std::string what) {
  return caf::error{static_cast<uint8_t>(x), caf::atom("supervisor"),
                    caf::make_message(std::move(what))};
}

caf::timespan restart_backoff::delay(std::size_t n, double u) const {
  auto cap = static_cast<double>(std::max(max, min).count());
  auto d = static_cast<double>(min.count());
  for (std::size_t i = 0; i < n && d < cap; ++i)
    d *= multiplier;
  d = std::min(d, cap);
  u = std::clamp(u, 0.0, 1.0);
  auto lo = d * (1.0 - jitter);
  auto hi = d * (1.0 + jitter);
  return caf::timespan{
      static_cast<caf::timespan::rep>(std::min(lo + (hi - lo) * u, cap))};
}

namespace {

using restart_atom = caf::atom_constant<caf::atom("abRestart")>;
using kill_late_atom = caf::atom_constant<caf::atom("abKillLat")>;

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
      , cfg_(std::move(cfg))
      , rng_(std::random_device{}()) {
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
    for (std::size_t i = 0; i < children_.size(); ++i)
      if (!start(i))
        break;
    return {
        [me](count_children_atom) {
          std::vector<uint64_t> out{0, 0, 0, me->total_restarts_};
          for (auto& c : me->children_) {
            if (c.removed)
              continue;
            ++out[0];
            if (c.status == child_status::running)
              ++out[1];
            else if (c.status != child_status::stopped)
              ++out[2];
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
    auto res = c.spec.start(self_->system());
    if (!res || !*res) {
      c.status = child_status::stopped;
      c.started = time_point{}; // a failed start is never stable
      return on_failure(i);
    }
    c.handle = std::move(*res);
    c.status = child_status::running;
    c.started = self_->clock().now();
    self_->monitor(c.handle);
    return true;
  }

  caf::result<caf::actor> start_dynamic() {
    if (cfg_.strategy != restart_strategy::simple_one_for_one)
      return make_error(supervisor_errc::not_dynamic,
                        "start_child: supervisor has static children");
    child c;
    c.spec = template_;
    c.spec.id = template_.id + "-" + std::to_string(++dynamic_count_);
    children_.push_back(std::move(c));
    auto i = children_.size() - 1;
    auto res = children_[i].spec.start(self_->system());
    if (!res || !*res) {
      children_[i].removed = true;
      if (!res)
        return std::move(res.error());
      return caf::make_error(caf::sec::invalid_argument,
                             "start_child: start returned no actor");
    }
    auto& ch = children_[i];
    ch.handle = *res;
    ch.status = child_status::running;
    ch.started = self_->clock().now();
    ++ch.gen;
    self_->monitor(ch.handle);
    return ch.handle;
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
    on_failure(i);
  }

  /// Child `i` died or failed to start: restart it (and its group) after a
  /// backoff, or escalate. Returns false when escalating.
  bool on_failure(std::size_t i) {
    auto now = self_->clock().now();
    restarts_.push_back(now);
    while (!restarts_.empty() && now - restarts_.front() > cfg_.period)
      restarts_.pop_front();
    if (restarts_.size() > cfg_.max_restarts) {
      auto me = shared_from_this();
      shutdown([me] {
        me->self_->quit(make_error(supervisor_errc::intensity_exceeded,
                                   "too many restarts within the period"));
      });
      return false;
    }
    ++total_restarts_;
    auto& c = children_[i];
    if (cfg_.backoff.reset_after.count() > 0 &&
        c.status != child_status::restarting && c.started != time_point{} &&
        now - c.started >= cfg_.backoff.reset_after)
      c.consecutive = 0;
    std::uniform_real_distribution<double> dist{0.0, 1.0};
    auto pause = cfg_.backoff.delay(c.consecutive++, dist(rng_));
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
        me->self_->send(me->self_, restart_atom::value, uint64_t{i}, gen);
      else
        me->self_->delayed_send(me->self_, pause, restart_atom::value,
                                uint64_t{i}, gen);
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
          self_->delayed_send(self_, c.spec.shutdown_timeout,
                              kill_late_atom::value, uint64_t{k}, c.gen);
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
  std::mt19937_64 rng_;
};

caf::error validate(const supervisor_config& cfg) {
  auto bad = [](const char* why) {
    return make_error(supervisor_errc::invalid_config, why);
  };
  std::set<std::string> ids;
  for (auto& c : cfg.children) {
    if (!c.start)
      return bad("child_spec without a start function");
    if (!ids.insert(c.id).second)
      return bad("duplicate child id");
  }
  if (cfg.strategy == restart_strategy::simple_one_for_one &&
      cfg.children.size() != 1)
    return bad("simple_one_for_one needs exactly one child spec");
  auto& b = cfg.backoff;
  if (b.min.count() < 0 || b.max.count() < 0 || !(b.multiplier >= 1.0) ||
      !(b.jitter >= 0.0 && b.jitter <= 1.0))
    return bad(
        "backoff: negative delay, multiplier < 1 or jitter not in [0,1]");
  return caf::error{};
}

} // namespace

caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys,
                                           supervisor_config cfg) {
  if (auto err = validate(cfg))
    return err;
  // The configuration is a spawn argument: CAF 0.17 trips UBSan on
  // function actors spawned without any.
  return sys.spawn(
      [](caf::event_based_actor* self, supervisor_config c) {
        auto impl = std::make_shared<supervisor_impl>(self, std::move(c));
        return impl->make_behavior();
      },
      std::move(cfg));
}

} // namespace actorbus::actors
