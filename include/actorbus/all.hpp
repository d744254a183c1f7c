#pragma once

// Every public header of actorbus: one include for a program that uses the
// whole library. Each module has its own umbrella header too
// (`actorbus/runtime.hpp`, `actorbus/bus.hpp`, ...).

#include "actorbus/actors.hpp"
#include "actorbus/bus.hpp"
#include "actorbus/ipc.hpp"
#include "actorbus/pipeline.hpp"
#include "actorbus/queue.hpp"
#include "actorbus/runtime.hpp"
