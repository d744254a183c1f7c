#include "actorbus/runtime/log.hpp"

#include <fmt/chrono.h>

#include <chrono>
#include <cstdio>
#include <mutex>

namespace actorbus::runtime {

namespace {

std::mutex sink_mtx;
logger::sink current_sink; // guarded by sink_mtx

} // namespace

log_level parse_log_level(std::string_view text, log_level fallback) {
  if (text == "trace")
    return log_level::trace;
  if (text == "debug")
    return log_level::debug;
  if (text == "info")
    return log_level::info;
  if (text == "warning" || text == "warn")
    return log_level::warning;
  if (text == "error")
    return log_level::error;
  if (text == "off")
    return log_level::off;
  return fallback;
}

std::string_view to_string(log_level level) {
  switch (level) {
  case log_level::trace:
    return "TRACE";
  case log_level::debug:
    return "DEBUG";
  case log_level::info:
    return "INFO";
  case log_level::warning:
    return "WARN";
  case log_level::error:
    return "ERROR";
  case log_level::off:
    break;
  }
  return "OFF";
}

logger& logger::instance() {
  static logger global;
  return global;
}

logger::sink logger::set_sink(sink f) {
  std::lock_guard guard{sink_mtx};
  std::swap(current_sink, f);
  return f;
}

void logger::write(log_level lvl, std::string_view who, std::string_view text) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                now.time_since_epoch())
                .count() %
            1000;
  auto line =
      fmt::format("{:%H:%M:%S}.{:03} {:<5} [{}] {}\n",
                  fmt::localtime(std::chrono::system_clock::to_time_t(now)), ms,
                  to_string(lvl), who, text);
  std::lock_guard guard{sink_mtx};
  if (current_sink) {
    current_sink(lvl, line);
    return;
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
}

std::string actor_label(const caf::local_actor* self) {
  if (self == nullptr)
    return "main";
  return fmt::format("{}#{}", self->name(), self->id());
}

} // namespace actorbus::runtime
