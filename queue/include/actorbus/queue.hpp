#pragma once

// Every public header of the queue module: the distributed task queue on
// Redis.

#include "actorbus/queue/client.hpp"
#include "actorbus/queue/codec.hpp"
#include "actorbus/queue/config.hpp"
#include "actorbus/queue/embedded_redis.hpp"
#include "actorbus/queue/error.hpp"
#include "actorbus/queue/fwd.hpp"
#include "actorbus/queue/worker.hpp"
