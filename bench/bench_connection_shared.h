// Counters shared between the worker processes and the parent that reports
// them: one MAP_SHARED anonymous mapping made before fork(). Each worker
// writes only its own cache-line-aligned block, so every counter has a single
// writer; the parent reads them once a second.
#pragma once

#include <algorithm>
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
    BadUpgrade,     // -ws: no valid 101 answer to the upgrade, or a WebSocket protocol error before the CONNACK
    Other,
};
inline constexpr size_t kFailReasonCount = 8;

inline const char* to_string(FailReason reason) {
    static constexpr const char* kNames[kFailReasonCount] = {
        "refused", "timeout", "reset", "bad_connack", "auth_fail", "eaddrnotavail", "bad_upgrade", "other",
    };
    return kNames[static_cast<size_t>(reason)];
}

// Latencies in microseconds, in buckets of about 1/8 of a power of two:
// values below 16 each have their own bucket, above that bucket 16 + 8 (e - 4)
// + s holds [ (8 + s) 2^(e-3), (9 + s) 2^(e-3) ) for 2^e <= value < 2^(e+1).
// One writer (a worker); the reader diffs two snapshots for a second's share.
struct LatencyHistogram {
    static constexpr size_t kBuckets = 16 + 8 * 32;  // up to 2^36 us (19 hours)

    std::atomic<uint64_t> buckets[kBuckets] = {};

    static size_t bucket_of(uint64_t us) {
        if (us < 16) return static_cast<size_t>(us);
        const int exponent = 63 - __builtin_clzll(us);
        const size_t bucket = 16 + 8 * static_cast<size_t>(exponent - 4) + ((us >> (exponent - 3)) & 7);
        return bucket < kBuckets ? bucket : kBuckets - 1;
    }
    // The largest value of a bucket: percentiles are reported as this upper
    // bound, at most 12.5 % above the true value.
    static uint64_t upper_bound(size_t bucket) {
        if (bucket < 16) return bucket;
        const size_t exponent = 4 + (bucket - 16) / 8, step = (bucket - 16) % 8;
        return ((8 + step + 1) << (exponent - 3)) - 1;
    }
    void record(uint64_t us) {
        std::atomic<uint64_t>& bucket = buckets[bucket_of(us)];
        bucket.store(bucket.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
};

// A reader's copy of histograms (summed over workers, or a difference of two
// such sums).
struct LatencySnapshot {
    uint64_t buckets[LatencyHistogram::kBuckets] = {};

    void add(const LatencyHistogram& histogram) {
        for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) buckets[i] += histogram.buckets[i].load(std::memory_order_relaxed);
    }
    LatencySnapshot minus(const LatencySnapshot& earlier) const {
        LatencySnapshot difference;
        for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) difference.buckets[i] = buckets[i] - earlier.buckets[i];
        return difference;
    }
    uint64_t count() const {
        uint64_t total = 0;
        for (const uint64_t n : buckets) total += n;
        return total;
    }
    // The upper bound of the bucket holding the given fraction; -1 when empty.
    int64_t percentile(double fraction) const {
        const uint64_t total = count();
        if (total == 0) return -1;
        const auto rank = static_cast<uint64_t>(fraction * static_cast<double>(total - 1)) + 1;
        uint64_t seen = 0;
        for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
            seen += buckets[i];
            if (seen >= rank) return static_cast<int64_t>(LatencyHistogram::upper_bound(i));
        }
        return static_cast<int64_t>(LatencyHistogram::upper_bound(LatencyHistogram::kBuckets - 1));
    }
};

// Monotonic totals of one worker. "online" and "connecting" are derived by the
// reader: a client that came online leaves only by being closed by the peer
// or dropped, and one that never came online is connecting until it gives up.
// Counters named est_* count the -cids ("established") clients only; the
// others count every client, -storm-cids included.
struct alignas(64) WorkerCounters {
    std::atomic<uint64_t> came_online{0};
    // Per failed connect attempt (retried or not), by reason.
    std::atomic<uint64_t> failed[kFailReasonCount] = {};
    std::atomic<uint64_t> gave_up{0};  // clients that failed and were not retried: they end never online
    std::atomic<uint64_t> offered{0};  // connect() calls: first attempts and retries
    std::atomic<uint64_t> retries{0};  // of those, retries
    std::atomic<uint64_t> storm_launched{0};  // -storm-cids clients offered (first attempts)
    std::atomic<uint64_t> tcp_connected{0};   // TCP connects completed (CONNECT sent right after)
    std::atomic<uint64_t> est_came_online{0};
    std::atomic<uint64_t> est_gave_up{0};
    std::atomic<uint64_t> est_closed_by_peer{0};
    std::atomic<uint64_t> est_dropped{0};
    std::atomic<uint64_t> in_flight{0};       // gauge: attempts between connect() and CONNACK (or failure)
    std::atomic<uint64_t> retry_waiting{0};   // gauge: clients waiting for their retry
    std::atomic<uint64_t> closed_by_peer{0};
    std::atomic<uint64_t> dropped{0};
    std::atomic<uint64_t> pongs_missing{0};  // heartbeats that found the previous PING unanswered
    std::atomic<uint64_t> pings_sent{0};
    std::atomic<uint64_t> pongs_received{0};
    std::atomic<int64_t> last_online_ns{0};  // CLOCK_MONOTONIC when a client last came online
    std::atomic<int64_t> est_last_online_ns{0};  // the same for the -cids clients
    LatencyHistogram connect_to_connack;  // CONNECT sent -> CONNACK received
    LatencyHistogram login;               // connect() called -> CONNACK received (SYN retries and backlog included)
    LatencyHistogram pong;                // PING sent -> PONG received

    // Single writer: a plain load + store avoids a locked read-modify-write.
    // Release, so a reader that sees a client's exit (closed_by_peer, dropped)
    // also sees its earlier came_online.
    static void bump(std::atomic<uint64_t>& counter) {
        counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    static void set(std::atomic<uint64_t>& gauge, uint64_t value) { gauge.store(value, std::memory_order_relaxed); }
};

// Start: each worker prepares (e.g. makes its -client-keys key pairs), counts
// itself in `ready` and waits for the parent to publish `start_ns`, so that
// the preparation is not part of the measured run.
struct alignas(64) SharedControl {
    std::atomic<uint32_t> stop{0};       // set by the parent: close everything and exit
    std::atomic<uint32_t> ready{0};      // workers that finished preparing
    std::atomic<int64_t> start_ns{0};    // CLOCK_MONOTONIC at the start of the run; 0 until then
    std::atomic<int64_t> storm_start_ns{0};  // CLOCK_MONOTONIC when the storm begins; 0 until the parent decides
};

// Sums of all workers' counters at one instant, plus the derived gauges.
struct Totals {
    uint64_t came_online = 0;
    uint64_t failed_by[kFailReasonCount] = {};
    uint64_t failed = 0;  // failed attempts
    uint64_t gave_up = 0;
    uint64_t offered = 0;
    uint64_t retries = 0;
    uint64_t storm_launched = 0;
    uint64_t tcp_connected = 0;
    uint64_t est_came_online = 0;
    uint64_t est_gave_up = 0;
    uint64_t est_closed_by_peer = 0;
    uint64_t est_dropped = 0;
    uint64_t in_flight = 0;
    uint64_t retry_waiting = 0;
    uint64_t closed_by_peer = 0;
    uint64_t dropped = 0;
    uint64_t pongs_missing = 0;
    uint64_t pings_sent = 0;
    uint64_t pongs_received = 0;
    int64_t last_online_ns = 0;
    int64_t est_last_online_ns = 0;

    uint64_t online() const { return came_online - closed_by_peer - dropped; }
    uint64_t connecting(uint64_t clients) const { return clients - came_online - gave_up; }
    uint64_t est_online() const { return est_came_online - est_closed_by_peer - est_dropped; }
    // Connects the server reset or refused before their CONNACK.
    uint64_t reset_before_connack() const {
        return failed_by[static_cast<size_t>(FailReason::Reset)] + failed_by[static_cast<size_t>(FailReason::Refused)];
    }
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
        totals.est_closed_by_peer += w.est_closed_by_peer.load(acquire);
        totals.est_dropped += w.est_dropped.load(acquire);
        totals.gave_up += w.gave_up.load(acquire);
        totals.est_gave_up += w.est_gave_up.load(acquire);
        totals.came_online += w.came_online.load(acquire);
        totals.est_came_online += w.est_came_online.load(acquire);
        totals.offered += w.offered.load(relaxed);
        totals.retries += w.retries.load(relaxed);
        totals.storm_launched += w.storm_launched.load(relaxed);
        totals.tcp_connected += w.tcp_connected.load(relaxed);
        totals.in_flight += w.in_flight.load(relaxed);
        totals.retry_waiting += w.retry_waiting.load(relaxed);
        for (size_t r = 0; r < kFailReasonCount; ++r) {
            totals.failed_by[r] += w.failed[r].load(relaxed);
            totals.failed += w.failed[r].load(relaxed);
        }
        totals.pongs_missing += w.pongs_missing.load(relaxed);
        totals.pings_sent += w.pings_sent.load(relaxed);
        totals.pongs_received += w.pongs_received.load(relaxed);
        totals.last_online_ns = std::max(totals.last_online_ns, w.last_online_ns.load(relaxed));
        totals.est_last_online_ns = std::max(totals.est_last_online_ns, w.est_last_online_ns.load(relaxed));
    }
    return totals;
}

}  // namespace limaoim::bench
