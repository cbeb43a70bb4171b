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
//
// Uids, channel ids, device ids come from clients and may be any bytes: a
// line's text is escaped as it is written (see printable), so a client
// cannot start a forged line or send escape sequences to a terminal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace limaoim::log {

enum class Level : uint8_t { Error, Warn, Info, Debug };

void set_level(Level level);
bool enabled(Level level);
const char* to_string(Level level);
std::optional<Level> parse_level(std::string_view name);

// `bytes` as one line of text: control characters (< 0x20), DEL, the backslash and bytes
// that are not valid UTF-8 become \xNN; printable ASCII and valid UTF-8
// (a uid may be Chinese) stay as they are. write() applies it to every
// line; use it where client bytes go into an error text that may travel
// elsewhere (a store's Status, an HTTP answer).
std::string printable(std::string_view bytes);

// `component` names the part of the server ("store", "webhook", "worker 1").
[[gnu::format(printf, 3, 4)]] void write(Level level, const char* component, const char* format, ...);

// An invariant broken: logged with where, then abort() (a core dump beats
// carrying on with state that is already wrong). Use through LIMAOIM_ASSERT.
[[noreturn]] void invariant_failed(const char* condition, const char* file, int line);

}  // namespace limaoim::log

// Checked in every build, unlike assert(): for what must hold whatever a
// peer sends, where a failure means a bug in this server.
#define LIMAOIM_ASSERT(condition) \
    ((condition) ? void(0) : ::limaoim::log::invariant_failed(#condition, __FILE__, __LINE__))
