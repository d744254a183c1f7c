// A program outside the actorbus tree, linked against actorbus::actorbus.
#include <caf/event_based_actor.hpp>

#include <actorbus/runtime/call.hpp>
#include <actorbus/runtime/runtime.hpp>
#include <chrono>
#include <cstdio>

int main() {
  actorbus::runtime::runtime rt;
  auto doubler =
      rt.spawn([]() -> caf::behavior { return {[](int x) { return 2 * x; }}; });
  if (!doubler)
    return 1;
  auto res = actorbus::runtime::call<int>(rt.system(), *doubler,
                                          std::chrono::seconds(5), 21);
  if (!res || *res != 42)
    return 1;
  std::printf("consumer: %d\n", *res);
  return 0;
}
