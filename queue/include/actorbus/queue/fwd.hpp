#pragma once

// Forward declarations of the queue module's types.

namespace actorbus::queue {

struct queue_config;
struct task_options;
struct task_info;
struct dead_letter;
class embedded_redis;
class client;
class task_context;
class worker;

} // namespace actorbus::queue
