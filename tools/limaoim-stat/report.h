// What limaoim-stat prints: a snapshot of the segment summed over workers
// (stats/snapshot.h, the same code as the server's GET /metrics), rendered as
// a table, JSON or Prometheus text (stats/prometheus.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "limaoim/stats/layout.h"
#include "limaoim/stats/prometheus.h"
#include "limaoim/stats/reader.h"
#include "limaoim/stats/snapshot.h"

namespace limaoim::stat_tool {

using stats::ConnTraffic;
using stats::Histogram;
using stats::HistogramOf;
using stats::histogram_quantile;
using stats::render_prometheus;
using stats::SegmentReader;
using stats::Snapshot;
using stats::WorkerLoad;

// stats::take_snapshot of the reader's segment, with the `top_n` busiest
// live connections. `now_unix_ms` dates the uptime.
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

nlohmann::json to_json(const Snapshot& snapshot, const Rates* rates);
std::string render_table(const Snapshot& snapshot, const Rates* rates);

}  // namespace limaoim::stat_tool
