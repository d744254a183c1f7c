// The seed's async context manager: a resource initialised when an actor
// starts and cleaned up when it ends, by RAII, also when the actor fails.
//   resource [users]

#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

std::atomic<int> opened{0};
std::atomic<int> closed{0};

// The resource: initialize() in the constructor, cleanup() in the
// destructor; `done` is fulfilled after cleanup.
class resource {
public:
  explicit resource(std::promise<void> done)
      : done_(std::move(done)) {
    ++opened;
  }
  ~resource() {
    ++closed;
    done_.set_value();
  }
  int use(int x) {
    return x * 10;
  }

private:
  std::promise<void> done_;
};

// A user owns its resource for its whole lifetime; on -1 it fails.
caf::behavior user(caf::event_based_actor* self, std::promise<void> done) {
  auto res = std::make_shared<resource>(std::move(done));
  return {[self, res](int x) -> caf::result<int> {
    if (x < 0) {
      self->quit(caf::make_error(caf::sec::runtime_error, "user failed"));
      return caf::make_error(caf::sec::runtime_error, "user failed");
    }
    auto y = res->use(x);
    self->quit();
    return y;
  }};
}

int main(int argc, char** argv) {
  int n = 3;
  CLI::App app{"Actors own a resource by RAII: it is cleaned up when they "
               "end, also when they fail.",
               "resource"};
  app.add_option("users", n, "actors using a resource; the last one fails")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  actorbus::runtime::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  std::vector<std::future<void>> cleaned;
  {
    actorbus::runtime::runtime rt{std::move(cfg)};
    for (int i = 0; i < n; ++i) {
      std::promise<void> done;
      cleaned.push_back(done.get_future());
      auto u = *rt.spawn(user, std::move(done));
      // The last user fails instead of finishing its work.
      caf::anon_send(u, i == n - 1 ? -1 : i);
    }
    for (auto& f : cleaned)
      if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
        fmt::print("resource: a cleanup did not happen in time\n");
        return 1;
      }
  }
  fmt::print("resource: {} initialized, {} cleaned up (1 user failed)\n",
             opened.load(), closed.load());
  return opened == closed ? 0 : 1;
}
