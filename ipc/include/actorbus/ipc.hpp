#pragma once

// Every public header of the ipc module: shared-memory channels, buffers and
// arrays, processes, process pools, actors across processes, the bus bridge.

#include "actorbus/ipc/bridge.hpp"
#include "actorbus/ipc/channel.hpp"
#include "actorbus/ipc/error.hpp"
#include "actorbus/ipc/frame.hpp"
#include "actorbus/ipc/fwd.hpp"
#include "actorbus/ipc/process.hpp"
#include "actorbus/ipc/process_pool.hpp"
#include "actorbus/ipc/remote.hpp"
#include "actorbus/ipc/shared_array.hpp"
#include "actorbus/ipc/shared_buffer.hpp"
