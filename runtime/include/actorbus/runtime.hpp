#pragma once

// Every public header of the runtime module: actor system, configuration,
// errors, backoff, overload words, registry, call/caller, logging, signals.

#include "actorbus/runtime/backoff.hpp"
#include "actorbus/runtime/call.hpp"
#include "actorbus/runtime/config.hpp"
#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/fwd.hpp"
#include "actorbus/runtime/log.hpp"
#include "actorbus/runtime/overload.hpp"
#include "actorbus/runtime/process.hpp"
#include "actorbus/runtime/registry.hpp"
#include "actorbus/runtime/runtime.hpp"
#include "actorbus/runtime/signals.hpp"
