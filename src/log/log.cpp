#include "limaoim/log/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace limaoim::log {

namespace {

std::atomic<Level> threshold{Level::Info};

constexpr const char* kNames[] = {"error", "warn", "info", "debug"};

}  // namespace

void set_level(Level level) { threshold.store(level, std::memory_order_relaxed); }

bool enabled(Level level) { return level <= threshold.load(std::memory_order_relaxed); }

const char* to_string(Level level) { return kNames[uint8_t(level)]; }

std::optional<Level> parse_level(std::string_view name) {
    for (uint8_t i = 0; i < 4; ++i)
        if (name == kNames[i]) return Level(i);
    return std::nullopt;
}

void write(Level level, const char* component, const char* format, ...) {
    if (!enabled(level)) return;
    using namespace std::chrono;
    const auto now = system_clock::now();
    const time_t seconds = system_clock::to_time_t(now);
    const int millis = int(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
    tm utc;
    gmtime_r(&seconds, &utc);
    // A line longer than the buffer is cut (and ends with "..."): a log line, not a dump.
    char line[2048];
    int n = std::snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: ", utc.tm_year + 1900,
                          utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis, to_string(level),
                          component);
    va_list args;
    va_start(args, format);
    const int body = std::vsnprintf(line + n, sizeof(line) - size_t(n), format, args);
    va_end(args);
    n = body < 0 ? n : n + body;
    if (size_t(n) >= sizeof(line) - 1) {
        n = int(sizeof(line)) - 1;
        line[n - 4] = line[n - 3] = line[n - 2] = '.';
    }
    // One line, one write: the kernel keeps lines of concurrent writers apart.
    if (n > 0 && line[n - 1] == '\n') --n;
    line[n++] = '\n';
    ssize_t ignored = ::write(STDERR_FILENO, line, size_t(n));
    (void)ignored;
}

}  // namespace limaoim::log
