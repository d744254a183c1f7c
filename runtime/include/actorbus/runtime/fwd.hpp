#pragma once

// Forward declarations of the runtime module's types.

namespace actorbus::runtime {

class runtime_config;
class runtime;
class registry;
class logger;
class caller;
class signal_waiter;
struct shutdown_report;
enum class log_level : int;
enum class errc : unsigned char;
enum class overload_policy : unsigned char;
struct backoff;
class child_process;
struct exit_status;
struct process_options;

} // namespace actorbus::runtime
