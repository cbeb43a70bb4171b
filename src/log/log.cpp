#include "limaoim/log/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace limaoim::log {

namespace {

std::atomic<Level> threshold{Level::Info};

constexpr const char* kNames[] = {"error", "warn", "info", "debug"};

// The length of the valid UTF-8 sequence (RFC 3629: no overlongs, no
// surrogates, at most U+10FFFF) at the start of `bytes`, or 0.
size_t utf8_sequence(std::string_view bytes) {
    const auto byte = [&](size_t i) { return uint8_t(bytes[i]); };
    const uint8_t lead = byte(0);
    size_t length;
    uint8_t low = 0x80, high = 0xbf;  // the range of the second byte
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0) low = 0xa0;
        if (lead == 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0) low = 0x90;
        if (lead == 0xf4) high = 0x8f;
    } else {
        return 0;
    }
    if (bytes.size() < length || byte(1) < low || byte(1) > high) return 0;
    for (size_t i = 2; i < length; ++i)
        if (byte(i) < 0x80 || byte(i) > 0xbf) return 0;
    return length;
}

// Appends printable(bytes) to [out, end); returns the new end of the text.
char* append_printable(std::string_view bytes, char* out, char* end) {
    static constexpr char kHex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < bytes.size() && out < end) {
        const uint8_t c = uint8_t(bytes[i]);
        // A backslash is escaped too: a uid holding the text "\x0a" must not
        // read as an escaped newline.
        size_t run = c >= 0x20 && c < 0x7f && c != '\\' ? 1 : c >= 0x80 ? utf8_sequence(bytes.substr(i)) : 0;
        if (run > 0) {
            if (size_t(end - out) < run) break;
            for (size_t k = 0; k < run; ++k) *out++ = bytes[i + k];
            i += run;
            continue;
        }
        if (end - out < 4) break;
        *out++ = '\\';
        *out++ = 'x';
        *out++ = kHex[c >> 4];
        *out++ = kHex[c & 15];
        ++i;
    }
    return out;
}

}  // namespace

void set_level(Level level) { threshold.store(level, std::memory_order_relaxed); }

bool enabled(Level level) { return level <= threshold.load(std::memory_order_relaxed); }

const char* to_string(Level level) { return kNames[uint8_t(level)]; }

std::optional<Level> parse_level(std::string_view name) {
    for (uint8_t i = 0; i < 4; ++i)
        if (name == kNames[i]) return Level(i);
    return std::nullopt;
}

std::string printable(std::string_view bytes) {
    std::string out(bytes.size() * 4, '\0');
    out.resize(size_t(append_printable(bytes, out.data(), out.data() + out.size()) - out.data()));
    return out;
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
    char text[sizeof(line)];
    int length = std::vsnprintf(text, sizeof(text), format, args);
    va_end(args);
    length = length < 0 ? 0 : std::min(length, int(sizeof(text)) - 1);
    if (length > 0 && text[length - 1] == '\n') --length;
    // Room for the newline; a cut line ends with "...".
    char* const end = line + sizeof(line) - 1;
    char* out = append_printable({text, size_t(length)}, line + n, end);
    if (out > end - 4 || length == int(sizeof(text)) - 1) {
        out = std::max(out, line + n + 3);
        out[-3] = out[-2] = out[-1] = '.';
    }
    n = int(out - line);
    // One line, one write: the kernel keeps lines of concurrent writers apart.
    line[n++] = '\n';
    ssize_t ignored = ::write(STDERR_FILENO, line, size_t(n));
    (void)ignored;
}

void invariant_failed(const char* condition, const char* file, int line) {
    write(Level::Error, "invariant", "%s:%d: %s does not hold", file, line, condition);
    std::abort();
}

}  // namespace limaoim::log
