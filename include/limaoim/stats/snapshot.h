// A snapshot of a stats segment: every worker's block summed, the pipeline's
// block copied, per-worker load and loop liveness. Taken from any mapped
// segment (SegmentView): the server's own (GET /metrics) or limaoim-stat's
// read-only mapping (stats/reader.h), so both print the same figures from
// the same code (stats/prometheus.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "limaoim/stats/layout.h"

namespace limaoim::stats {

// A mapped segment whose header is complete and checked.
class SegmentView {
public:
    explicit SegmentView(const uint8_t* base) : base_(base) {}
    const Header& header() const { return *reinterpret_cast<const Header*>(base_); }
    const WorkerBlock& worker(uint32_t index) const {
        return reinterpret_cast<const WorkerBlock*>(base_ + header().workers_offset)[index];
    }
    const PipelineBlock& pipeline() const {
        return *reinterpret_cast<const PipelineBlock*>(base_ + header().pipeline_offset);
    }

private:
    const uint8_t* base_;
};

// CLOCK_MONOTONIC in milliseconds: the clock of WorkerBlock::loop_heartbeat_ms.
uint64_t monotonic_ms();

// One live connection's traffic, as seen in its ConnCounters.
struct ConnTraffic {
    uint32_t worker;
    uint32_t slot;
    uint32_t packets_in;
    uint32_t packets_out;
    uint32_t kib_in;
};

struct WorkerLoad {
    uint64_t connections = 0;
    uint64_t authenticated = 0;
    // Milliseconds since the worker's loop last went round; empty when it
    // has not started (or the segment is another machine's clock's).
    std::optional<uint64_t> loop_age_ms;
};

struct Snapshot {
    std::string instance;
    int32_t pid = 0;
    bool server_alive = false;
    uint16_t port = 0;
    bool mode_test = false;
    uint8_t io_backend = 0;  // index into kIoBackendNames
    uint32_t workers = 0;
    uint64_t capacity = 0;
    uint64_t max_conns = 0;
    uint64_t start_time_unix_ms = 0;
    double uptime_s = 0;
    // Index = close reason code, from the segment's header; empty = unused.
    std::array<std::string, kMaxCloseReasons> close_reason_names;
    WorkerBlock totals;         // every worker's block summed (loop_heartbeat_ms means nothing there)
    PipelineBlock pipeline;     // the committer's, fan-out's, conversations', webhook's, datasource's figures
    std::vector<WorkerLoad> per_worker;
    size_t top_requested = 0;   // limaoim-stat --top N; 0 leaves top out of the output
    std::vector<ConnTraffic> top;  // most traffic first (limaoim-stat fills it)
};

// Fills `out` (not copyable: it holds Counters) from the segment; leaves
// `top` empty. `now_unix_ms` dates the uptime; loop ages are measured
// against monotonic_ms() now.
void take_snapshot(const SegmentView& segment, bool server_alive, uint64_t now_unix_ms, Snapshot& out);

// A power-of-two histogram of the segment: bucket i counts values in
// [2^i, 2^(i+1)).
using Histogram = Counter[kLatencyBuckets];
// What a histogram counts. Microseconds: bucket 0 also takes latencies
// below 1 µs. Counts: whole numbers, so bucket i holds 2^i to 2^(i+1) - 1.
enum class HistogramOf { Microseconds, Counts };

// The least and the greatest value of bucket i; a latency bucket's greatest
// is the bound its latencies stay below.
double bucket_least(int i, HistogramOf values);
double bucket_greatest(int i, HistogramOf values);
uint64_t histogram_count(const Histogram& buckets);

// The value at quantile q (0..1) of a histogram, interpolated linearly
// inside the bucket; empty when nothing was recorded.
std::optional<double> histogram_quantile(const Histogram& buckets, HistogramOf values, double q);

// ---- names shared by every rendering ----

const char* mode_name(const Snapshot& snapshot);  // "test" or "release"
const char* io_backend_name(const Snapshot& snapshot);  // "io_uring", "epoll" or "unknown"
// Types 1-9 are the protocol's packets; the others only show when counted.
bool named_packet_type(int type);
// SENDACK reason codes, PROTOCOL.md §6: codes 0-11 have names and always
// show; the others ("reason12" ...) only when counted.
inline constexpr size_t kNamedReasonCodes = 12;
const char* sendack_reason_name(size_t code);
bool sendack_reason_shown(const WorkerBlock& totals, size_t code);

}  // namespace limaoim::stats
