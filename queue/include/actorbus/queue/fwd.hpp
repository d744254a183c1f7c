#pragma once

// Forward declarations of the queue module's types.

#include <cstdint>

namespace actorbus::queue {

struct queue_config;
struct task_options;
struct task_info;
struct dead_task;
class embedded_redis;
class client;
class task_context;
class worker;
enum class errc : std::uint8_t;

} // namespace actorbus::queue
