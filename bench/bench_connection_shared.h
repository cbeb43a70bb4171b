// Counters shared between the worker processes and the parent that reports
// them: one MAP_SHARED anonymous mapping made before fork(). Each worker
// writes only its own cache-line-aligned block, so every counter has a single
// writer; the parent reads them once a second.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace limaoim::bench {

enum class FailReason : uint8_t {
    Refused,        // ECONNREFUSED
    Timeout,        // no CONNACK within -connect-timeout, or ETIMEDOUT
    Reset,          // reset or closed by the server before its CONNACK
    BadConnack,     // not a CONNACK, undecodable, or an unusable server key / salt
    AuthFail,       // CONNACK reason code != 1
    AddrNotAvail,   // EADDRNOTAVAIL: no free local port for the source address
    Other,
};
inline constexpr size_t kFailReasonCount = 7;

inline const char* to_string(FailReason reason) {
    static constexpr const char* kNames[kFailReasonCount] = {
        "refused", "timeout", "reset", "bad_connack", "auth_fail", "eaddrnotavail", "other",
    };
    return kNames[static_cast<size_t>(reason)];
}

// Monotonic totals of one worker. "online" and "connecting" are derived by the
// reader: a client that came online leaves only by being closed by the peer
// or dropped, and one that never came online is connecting until it fails.
struct alignas(64) WorkerCounters {
    std::atomic<uint64_t> came_online{0};
    std::atomic<uint64_t> failed[kFailReasonCount] = {};
    std::atomic<uint64_t> closed_by_peer{0};
    std::atomic<uint64_t> dropped{0};
    std::atomic<uint64_t> pongs_missing{0};  // heartbeats that found the previous PING unanswered
    std::atomic<uint64_t> pings_sent{0};
    std::atomic<uint64_t> pongs_received{0};
    std::atomic<int64_t> last_online_ns{0};  // CLOCK_MONOTONIC when a client last came online

    // Single writer: a plain load + store avoids a locked read-modify-write.
    // Release, so a reader that sees a client's exit (closed_by_peer, dropped)
    // also sees its earlier came_online.
    static void bump(std::atomic<uint64_t>& counter) {
        counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
};

// Start: each worker prepares (e.g. makes its -client-keys key pairs), counts
// itself in `ready` and waits for the parent to publish `start_ns`, so that
// the preparation is not part of the measured run.
struct alignas(64) SharedControl {
    std::atomic<uint32_t> stop{0};       // set by the parent: close everything and exit
    std::atomic<uint32_t> ready{0};      // workers that finished preparing
    std::atomic<int64_t> start_ns{0};    // CLOCK_MONOTONIC at the start of the run; 0 until then
};

// Sums of all workers' counters at one instant, plus the derived gauges.
struct Totals {
    uint64_t came_online = 0;
    uint64_t failed_by[kFailReasonCount] = {};
    uint64_t failed = 0;
    uint64_t closed_by_peer = 0;
    uint64_t dropped = 0;
    uint64_t pongs_missing = 0;
    uint64_t pings_sent = 0;
    uint64_t pongs_received = 0;
    int64_t last_online_ns = 0;

    uint64_t online() const { return came_online - closed_by_peer - dropped; }
    uint64_t connecting(uint64_t clients) const { return clients - came_online - failed; }
};

inline Totals sum_counters(const WorkerCounters* workers, size_t count) {
    Totals totals;
    constexpr auto relaxed = std::memory_order_relaxed;
    constexpr auto acquire = std::memory_order_acquire;
    for (size_t i = 0; i < count; ++i) {
        const WorkerCounters& w = workers[i];
        // Exits before arrivals, so online() never goes below zero.
        totals.closed_by_peer += w.closed_by_peer.load(acquire);
        totals.dropped += w.dropped.load(acquire);
        totals.came_online += w.came_online.load(acquire);
        for (size_t r = 0; r < kFailReasonCount; ++r) {
            totals.failed_by[r] += w.failed[r].load(relaxed);
            totals.failed += w.failed[r].load(relaxed);
        }
        totals.pongs_missing += w.pongs_missing.load(relaxed);
        totals.pings_sent += w.pings_sent.load(relaxed);
        totals.pongs_received += w.pongs_received.load(relaxed);
        if (w.last_online_ns.load(relaxed) > totals.last_online_ns) totals.last_online_ns = w.last_online_ns.load(relaxed);
    }
    return totals;
}

}  // namespace limaoim::bench
