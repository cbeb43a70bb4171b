// What limaoim-stat prints: a snapshot of the segment summed over workers,
// rendered as a table, JSON or Prometheus text.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "limaoim/stats/layout.h"
#include "reader.h"

namespace limaoim::stat_tool {

struct WorkerLoad {
    uint64_t connections;
    uint64_t authenticated;
};

struct Snapshot {
    std::string instance;
    int32_t pid = 0;
    bool server_alive = false;
    uint16_t port = 0;
    bool mode_test = false;
    uint32_t workers = 0;
    uint64_t capacity = 0;
    uint64_t max_conns = 0;
    uint64_t start_time_unix_ms = 0;
    double uptime_s = 0;
    // Index = close reason code, from the segment's header; empty = unused.
    std::array<std::string, stats::kMaxCloseReasons> close_reason_names;
    stats::WorkerBlock totals;         // every worker's block summed
    stats::PipelineBlock pipeline;     // the committer's and fan-out's figures
    std::vector<WorkerLoad> per_worker;
    size_t top_requested = 0;          // --top N; 0 leaves top out of the output
    std::vector<ConnTraffic> top;      // most traffic first
};

// Fills `out` (not copyable: it holds Counters) from the segment, with
// the `top_n` busiest live connections. `now_unix_ms` dates the uptime.
void take_snapshot(const SegmentReader& reader, size_t top_n, uint64_t now_unix_ms, Snapshot& out);

// The totals that the live view turns into per-second rates.
struct Traffic {
    uint64_t accepted = 0;
    uint64_t closed = 0;
    uint64_t packets_in = 0;
    uint64_t packets_out = 0;
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
    uint64_t sends = 0;
    uint64_t recvs = 0;
    uint64_t recvacks = 0;
};
Traffic traffic_of(const Snapshot& snapshot);

struct Rates {
    double interval_s = 0;
    double accepted = 0;
    double closed = 0;
    double packets_in = 0;
    double packets_out = 0;
    double bytes_in = 0;
    double bytes_out = 0;
    double sends = 0;
    double recvs = 0;
    double recvacks = 0;
};
// Per second over `seconds`; a counter that went backwards (a restarted
// server) counts from zero.
Rates rates_between(const Traffic& before, const Traffic& after, double seconds);

// A power-of-two histogram of the segment: bucket i counts values in
// [2^i, 2^(i+1)).
using Histogram = stats::Counter[stats::kLatencyBuckets];
// What a histogram counts. Microseconds: bucket 0 also takes latencies
// below 1 µs. Counts: whole numbers, so bucket i holds 2^i to 2^(i+1) - 1.
enum class HistogramOf { Microseconds, Counts };

// The value at quantile q (0..1) of a histogram, interpolated linearly
// inside the bucket; empty when nothing was recorded.
std::optional<double> histogram_quantile(const Histogram& buckets, HistogramOf values, double q);

nlohmann::json to_json(const Snapshot& snapshot, const Rates* rates);
std::string render_table(const Snapshot& snapshot, const Rates* rates);
std::string render_prometheus(const Snapshot& snapshot);

}  // namespace limaoim::stat_tool
