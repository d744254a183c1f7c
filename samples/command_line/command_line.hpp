#pragma once

// How every sample reads its command line. CLI11 parses the sample's own
// options and positional arguments and answers `--help`; whatever it does
// not know is handed to `runtime_config::load`, which reads
// `caf-application.ini` and then those arguments: actorbus's and CAF's own
// options in `--key=value` form (`--scheduler.max-threads=2`,
// `--actorbus.log-level=debug`). An argument neither knows is an error.
//
//   CLI::App app{"What the sample shows.", "name"};
//   app.add_option("items", items, "how many items")->capture_default_str();
//   actorbus::runtime::runtime_config cfg;
//   if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
//     return *rc;
//   actorbus::runtime::runtime rt{std::move(cfg)};

#include "actorbus/runtime/config.hpp"
#include "actorbus/runtime/error.hpp"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

namespace actorbus::samples {

/// Exit code of a sample whose command line is wrong.
inline constexpr int bad_usage = 2;

/// Parses `argv` with `app` alone; an argument `app` does not know is an
/// error. For samples that start no actor system. Returns the code `main`
/// returns now (0 after `--help`, `bad_usage` after an error, which is
/// printed), or nothing to go on.
inline std::optional<int> parse_command_line(CLI::App& app, int argc,
                                             char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : bad_usage;
  }
  return std::nullopt;
}

namespace detail {

inline void allow_extras(CLI::App& app) {
  app.allow_extras();
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; }))
    allow_extras(*sub);
}

} // namespace detail

/// Parses `argv` with `app`, then loads `cfg` from `caf-application.ini`
/// and the arguments `app` did not know. Returns the code `main` returns
/// now (0 after `--help`, `bad_usage` after an error, which is printed), or
/// nothing to go on.
inline std::optional<int> parse_command_line(CLI::App& app,
                                             runtime::runtime_config& cfg,
                                             int argc, char** argv) {
  detail::allow_extras(app);
  app.footer("Runtime options, in --key=value form, go to "
             "actorbus::runtime::runtime_config\n(after caf-application.ini): "
             "--scheduler.max-threads=N, --actorbus.log-level=LEVEL,\n"
             "--actorbus.shutdown-timeout=DURATION and CAF's own.");
  if (auto rc = parse_command_line(app, argc, argv))
    return rc;
  std::vector<std::string> rest = app.remaining(true);
  std::vector<char*> args{argv[0]};
  for (auto& arg : rest)
    args.push_back(arg.data());
  args.push_back(nullptr);
  if (auto err = cfg.load(static_cast<int>(rest.size()) + 1, args.data())) {
    fmt::print(stderr, "{}: {}\nRun with --help for more information.\n",
               app.get_name(), runtime::describe(err));
    return bad_usage;
  }
  return std::nullopt;
}

} // namespace actorbus::samples
