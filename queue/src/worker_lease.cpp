// Lease heartbeat: a thread of its own renews the leases of the tasks this
// worker holds, so that a long handler is never reclaimed while its
// process lives.

#include "worker_impl.hpp"

namespace actorbus::queue {

void worker::impl::update_leases() {
  std::vector<std::pair<int, std::string>> xs;
  xs.reserve(inflight_.size() + to_run_.size());
  for (auto& [entry, j] : inflight_)
    xs.emplace_back(j->stream, entry);
  for (auto& j : to_run_)
    xs.emplace_back(j->stream, j->entry);
  std::lock_guard<std::mutex> guard{lease_mtx_};
  leased_.swap(xs);
}

void worker::impl::heartbeat_loop() {
  internal::connection conn{cfg_, url_};
  // Connected up front: connecting loads the scripts (several round
  // trips), which must not eat into the first lease.
  static_cast<void>(conn.connect());
  for (;;) {
    std::vector<std::pair<int, std::string>> xs;
    {
      std::unique_lock<std::mutex> guard{lease_mtx_};
      if (lease_cv_.wait_for(guard, cfg_.heartbeat_interval,
                             [&] { return heartbeat_stop_; }))
        return;
      xs = leased_;
    }
    if (xs.empty())
      continue;
    if (conn.connect())
      continue;
    for (int s = 0; s < 3; ++s) {
      std::vector<std::string> cmd{"XCLAIM", k_.streams[s],
                                   internal::group_name, name_, "0"};
      for (auto& [stream, entry] : xs)
        if (stream == s)
          cmd.push_back(entry);
      if (cmd.size() == 5)
        continue;
      cmd.emplace_back("JUSTID");
      if (!conn.run(cmd))
        break;
    }
  }
}

} // namespace actorbus::queue
