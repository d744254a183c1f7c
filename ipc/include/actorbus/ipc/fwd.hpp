#pragma once

// Forward declarations of the ipc module's types.

#include <cstdint>

namespace actorbus::ipc {

class channel;
struct channel_options;
class shared_buffer;
struct buffer_handle;
class array_segment;
class bus_bridge;
struct bridge_options;
struct bridge_stats;
struct frame_view;
struct process_spec;
struct started_process;
struct process_pool_options;
struct remote_options;
enum class errc : std::uint8_t;
enum class frame_kind : std::uint8_t;

template <class T>
class shared_array;

template <class Arg, class Result>
class process_pool;

} // namespace actorbus::ipc
