// The server's log: one line per event on stderr, each written with one
// write(2) so lines from several threads never interleave:
//
//   2026-11-28T13:40:00.123Z warn  committer: store commit failed: ...
//
// Levels: error (the server cannot do something it was asked to), warn
// (it goes on, degraded), info (start, stop, configuration), debug (per
// connection). --log-level chooses the least severe level written.
//
// What is never logged: tokens, session keys, the HTTP secret, message
// payloads. Uids and channel ids are (they name what an event is about).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace limaoim::log {

enum class Level : uint8_t { Error, Warn, Info, Debug };

void set_level(Level level);
bool enabled(Level level);
const char* to_string(Level level);
std::optional<Level> parse_level(std::string_view name);

// `component` names the part of the server ("store", "webhook", "worker 1").
[[gnu::format(printf, 3, 4)]] void write(Level level, const char* component, const char* format, ...);

}  // namespace limaoim::log
