#pragma once

// The data_pipeline's stages, shared by the sample and bench_pipeline.
//
//   chunks of lines -> parse (2 workers) -> filter -> enrich (2 workers)
//                   -> aggregate (2 workers, partial counts) -> merge (sink)
//
// Items are chunks of complete lines (about `chunk_bytes` each), so the cost
// of a message is spread over hundreds of lines; every stage is unordered
// because the report does not depend on the order of lines.

#include "actorbus/pipeline/pipeline.hpp"

#include "access_log.hpp"

#include <memory>
#include <utility>

namespace access_log {

inline actorbus::pipeline::pipeline_plan
make_plan(chunk_reader reader, std::shared_ptr<aggregate> total) {
  namespace pipeline = actorbus::pipeline;
  using pipeline::stage_options;
  auto par = [](std::size_t n) {
    return stage_options{.parallelism = n, .ordered = false};
  };
  return pipeline::from_generator<std::string>(std::move(reader))
      .then(
          // Takes the chunk over (no copy): not retryable, so the default
          // abort policy stays.
          "parse",
          [](std::string& chunk) { return parse_chunk(std::move(chunk)); },
          par(2))
      .then("filter",
            [](parsed_chunk& c) {
              filter_chunk(c);
              return std::move(c);
            })
      .then(
          "enrich",
          [](parsed_chunk& c) {
            enrich_chunk(c);
            return std::move(c);
          },
          par(2))
      .then(
          "aggregate", [](parsed_chunk& c) { return aggregate_chunk(c); },
          par(2))
      .to([total](aggregate a) { total->merge(std::move(a)); });
}

} // namespace access_log
