// The two clocks the server reads, in the units its parts count in. One
// copy for every layer (log/ is the one all may include; header only, so
// no layer links anything for it).
//
// steady_*: CLOCK_MONOTONIC, what std::chrono::steady_clock reads on Linux:
// durations, deadlines, timers, latencies; meaningless across machines or
// restarts. Not CLOCK_MONOTONIC_COARSE: loop timers (group-commit windows)
// want milliseconds, and the coarse clock moves in jiffies (4 ms at HZ=250).
// wall_*: CLOCK_REALTIME since the Unix epoch: what is stored or compared
// across nodes (message timestamps, ids, dedupe times, login times, seals).
#pragma once

#include <time.h>

#include <cstdint>

namespace limaoim::clock {

namespace detail {
inline int64_t read_ns(clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace detail

inline int64_t steady_ns() { return detail::read_ns(CLOCK_MONOTONIC); }
// Unsigned: the latency stamps the stats histograms take.
inline uint64_t steady_us() { return uint64_t(steady_ns() / 1000); }
inline int64_t steady_ms() { return steady_ns() / 1'000'000; }

inline int64_t wall_ms() { return detail::read_ns(CLOCK_REALTIME) / 1'000'000; }
inline int64_t wall_seconds() { return detail::read_ns(CLOCK_REALTIME) / 1'000'000'000; }

}  // namespace limaoim::clock
