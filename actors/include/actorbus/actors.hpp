#pragma once

// Every public header of the actors module: supervisors, retry, worker and
// handler pools, guarded state, cache, async queues.

#include "actorbus/actors/async_queue.hpp"
#include "actorbus/actors/basic_pool.hpp"
#include "actorbus/actors/cache.hpp"
#include "actorbus/actors/caller_pool.hpp"
#include "actorbus/actors/error.hpp"
#include "actorbus/actors/fwd.hpp"
#include "actorbus/actors/guarded.hpp"
#include "actorbus/actors/handler_pool.hpp"
#include "actorbus/actors/retry.hpp"
#include "actorbus/actors/supervisor.hpp"
#include "actorbus/actors/worker_pool.hpp"
