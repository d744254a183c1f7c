// The showcase: every actorbus capability working together in one program.
// `./dev demo` runs it. Each capability adds a <capability>_part.cpp here.

#include "actorbus/runtime/log.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"
#include "showcase.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>

namespace rt = actorbus::runtime;

int main(int argc, char** argv) {
  CLI::App app{"Every actorbus capability working together in one program.",
               "showcase"};
  rt::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  rt::runtime sys{std::move(cfg)};
  auto parts = showcase::parts();
  std::sort(parts.begin(), parts.end(),
            [](auto& x, auto& y) { return x.order < y.order; });
  for (auto& p : parts) {
    fmt::print("--- {} ---\n", p.name);
    if (auto rc = p.run(sys)) {
      fmt::print("showcase: part '{}' failed ({})\n", p.name, rc);
      return rc;
    }
  }
  auto report = sys.shutdown();
  fmt::print("shutdown: graceful in {:.1f} ms (exited {}, killed {}, "
             "abandoned {})\n",
             std::chrono::duration<double, std::milli>(report.elapsed).count(),
             report.exited, report.killed, report.abandoned);
  return report.abandoned == 0 ? 0 : 1;
}
