#pragma once

// The producer_consumer sample's producer actor, shared by the sample and
// bench_actors_producer_consumer, which measures it with no pace (each put
// follows the last at once).

#include "actorbus/actors/async_queue.hpp"

#include <caf/event_based_actor.hpp>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>

namespace actorbus::samples::producer_consumer {

using produce_atom = caf::atom_constant<caf::atom("produce")>;

// Told about a put that failed: the error and the item the queue gave back.
using put_failed =
    std::function<void(const caf::error&, const std::optional<std::string>&)>;

// Puts item_0 .. item_{n-1}, one every `pace` (the seed's sleep(0.1)); with
// a zero pace each put follows the last at once, as a message to itself.
// Sets `done` to n, or to -1 after telling `on_error` (if any) of a failed
// put.
inline caf::behavior producer(caf::event_based_actor* self,
                              actors::async_queue<std::string>* queue, int n,
                              caf::timespan pace, std::promise<int>* done,
                              put_failed on_error) {
  using namespace std::chrono_literals;
  auto next = std::make_shared<int>(0);
  self->send(self, produce_atom::value);
  return {
      [=](produce_atom) {
        if (*next == n) {
          done->set_value(n);
          self->quit();
          return;
        }
        auto item = "item_" + std::to_string((*next)++);
        // Waits (without blocking a thread) while the queue is full.
        queue->async_put(self, std::move(item), caf::timespan{10s},
                         [=](caf::error err, std::optional<std::string> back) {
                           if (err) {
                             if (on_error)
                               on_error(err, back);
                             done->set_value(-1);
                             self->quit();
                             return;
                           }
                           if (pace.count() == 0)
                             self->send(self, produce_atom::value);
                           else
                             self->delayed_send(self, pace,
                                                produce_atom::value);
                         });
      },
  };
}

} // namespace actorbus::samples::producer_consumer
