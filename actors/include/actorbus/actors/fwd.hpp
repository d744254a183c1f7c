#pragma once

// Forward declarations of the actors module's types.

namespace actorbus::actors {

class worker_pool;
class handler_pool;
class caller_pool;
class counter;
struct pool_config;
struct pool_stats;
struct supervisor_config;
struct child_spec;
struct retry_policy;
struct cache_config;
struct cache_stats;

template <class T>
class task_future;

template <class T>
class async_queue;

template <class T>
class guarded;

template <class K, class V, class Hash>
class cache;

} // namespace actorbus::actors
