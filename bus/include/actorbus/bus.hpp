#pragma once

// Every public header of the bus module: the event bus and its topics.

#include "actorbus/bus/error.hpp"
#include "actorbus/bus/event_bus.hpp"
#include "actorbus/bus/fwd.hpp"
#include "actorbus/bus/topic.hpp"
