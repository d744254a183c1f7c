// The public members of `queue::worker`; the parts of its work are in
// worker_*.cpp (see worker_impl.hpp).

#include "worker_impl.hpp"

namespace actorbus::queue {

worker::worker(runtime::runtime& rt, queue_config cfg)
    : impl_(std::make_shared<impl>(rt, std::move(cfg))) {
  // nop
}

worker::~worker() {
  stop();
}

void worker::handle(std::string name, task_handler fn) {
  impl_->handlers_[std::move(name)] = std::move(fn);
}

void detail::on_fault_point(worker& w, std::function<void(fault_point)> hook) {
  w.impl_->hook_ = std::move(hook);
}

const std::string& worker::consumer() const {
  return impl_->name_;
}

caf::error worker::start() {
  auto& st = *impl_;
  if (st.started_)
    return caf::none;
  if (auto err = st.cfg_.validate())
    return err;
  st.url_ = st.cfg_.url;
  if (st.url_.empty()) {
    auto e = embedded_redis::shared();
    if (!e)
      return std::move(e.error());
    st.embedded_ = *e;
    st.url_ = st.embedded_->url();
  }
  {
    internal::connection probe{st.cfg_, st.url_};
    if (auto err = probe.connect())
      return err;
  }
  if (auto err = st.spawn_pool())
    return err;
  st.started_ = true;
  st.reader_ = std::thread{[ptr = impl_] { ptr->read_loop(); }};
  st.heartbeat_ = std::thread{[ptr = impl_] { ptr->heartbeat_loop(); }};
  return caf::none;
}

void worker::stop(caf::timespan deadline) {
  auto& st = *impl_;
  if (!st.started_)
    return;
  {
    std::lock_guard<std::mutex> guard{st.mtx_};
    st.stopping_ = true;
    st.stop_deadline_ =
        steady_clock::now() +
        std::chrono::duration_cast<steady_clock::duration>(deadline);
  }
  st.cv_.notify_all();
  if (st.reader_.joinable())
    st.reader_.join();
  {
    std::lock_guard<std::mutex> guard{st.lease_mtx_};
    st.heartbeat_stop_ = true;
  }
  st.lease_cv_.notify_all();
  if (st.heartbeat_.joinable())
    st.heartbeat_.join();
  caf::anon_send_exit(st.supervisor_, caf::exit_reason::user_shutdown);
  st.supervisor_ = nullptr;
  st.pool_.clear();
  st.started_ = false;
}

worker_stats worker::stats() const {
  auto& st = *impl_;
  worker_stats out;
  out.succeeded = st.succeeded_.load();
  out.retried = st.retried_.load();
  out.dead_lettered = st.dead_lettered_.load();
  out.reclaimed = st.reclaimed_.load();
  out.reconnects = st.reconnects_.load();
  out.handler_restarts = st.restarts_.load();
  std::lock_guard<std::mutex> guard{st.mtx_};
  out.gave_up = st.gave_up_;
  return out;
}

caf::actor worker::handler_supervisor() const {
  return impl_->supervisor_;
}

} // namespace actorbus::queue
