#pragma once

// Every public header of the pipeline module: pipelines of actor stages, bus
// topic sources and sinks.

#include "actorbus/pipeline/error.hpp"
#include "actorbus/pipeline/fwd.hpp"
#include "actorbus/pipeline/pipeline.hpp"
#include "actorbus/pipeline/pipeline_bus.hpp"
