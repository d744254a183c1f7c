// libFuzzer target: the frame decoder and the checked CAF message decoder
// on arbitrary bytes. Must never crash, hang, leak or allocate more than the
// input justifies (run with -rss_limit_mb and -malloc_limit_mb).

#include "actorbus/ipc/frame.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/message.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace {

struct sample {
  std::string name;
  std::vector<int32_t> values;
  std::u16string wide;
  double weight = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sample& x) {
  return f(caf::meta::type_name("sample"), x.name, x.values, x.wide, x.weight);
}

// Deliberately leaked: destroying an actor system during exit() crashes
// CAF 0.17 (its globals may already be gone), which is no finding of ours.
caf::actor_system& fuzz_system() {
  static auto* sys = [] {
    auto* cfg = new caf::actor_system_config;
    cfg->add_message_type<sample>("sample");
    cfg->add_message_type<std::vector<int32_t>>("std::vector<int32_t>");
    cfg->add_message_type<std::vector<std::string>>("std::vector<std::string>");
    cfg->set("scheduler.max-threads", size_t{1});
    return new caf::actor_system{*cfg};
  }();
  return *sys;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& sys = fuzz_system();
  auto bytes = std::span{reinterpret_cast<const std::byte*>(data), size};
  if (auto frame = actorbus::ipc::decode_frame(bytes, size_t{1} << 20))
    (void)actorbus::ipc::decode_message(sys, frame->payload);
  // The message decoder also sees the raw input directly.
  (void)actorbus::ipc::decode_message(sys, bytes);
  return 0;
}
