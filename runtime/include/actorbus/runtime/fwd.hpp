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

} // namespace actorbus::runtime
