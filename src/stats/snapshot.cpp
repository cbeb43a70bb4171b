#include "limaoim/stats/snapshot.h"

#include "limaoim/log/clock.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>

namespace limaoim::stats {

namespace {

// The blocks hold nothing but Counters (their gauges included), so adding or
// copying blocks as arrays of Counters covers every field, also ones added later.
static_assert(sizeof(WorkerBlock) % sizeof(Counter) == 0 && sizeof(PipelineBlock) % sizeof(Counter) == 0);

template <typename Block>
std::span<Counter> counters_of(Block& block) {
    return {reinterpret_cast<Counter*>(&block), sizeof(Block) / sizeof(Counter)};
}
template <typename Block>
std::span<const Counter> counters_of(const Block& block) {
    return {reinterpret_cast<const Counter*>(&block), sizeof(Block) / sizeof(Counter)};
}

void sum_workers(const SegmentView& segment, uint64_t now_ms, Snapshot& out) {
    const std::span<Counter> sum = counters_of(out.totals);
    for (Counter& c : sum) c.set(0);
    out.per_worker.clear();
    out.per_worker.reserve(out.workers);
    for (uint32_t w = 0; w < out.workers; ++w) {
        const WorkerBlock& block = segment.worker(w);
        const std::span<const Counter> values = counters_of(block);
        for (size_t i = 0; i < sum.size(); ++i) sum[i].add(values[i].get());
        WorkerLoad load;
        load.connections = block.connections.get();
        load.authenticated = block.authenticated.get();
        if (const uint64_t beat = block.loop_heartbeat_ms.get(); beat != 0)
            load.loop_age_ms = now_ms > beat ? now_ms - beat : 0;
        out.per_worker.push_back(load);
    }
}

void copy_pipeline(const SegmentView& segment, Snapshot& out) {
    const std::span<const Counter> values = counters_of(segment.pipeline());
    const std::span<Counter> copy = counters_of(out.pipeline);
    for (size_t i = 0; i < copy.size(); ++i) copy[i].set(values[i].get());
}

constexpr const char* kReasonCodeNames[kReasonCodes] = {
    "error",         "success",           "auth_fail",        "subscriber_not_exist",
    "in_blacklist",  "channel_not_exist", "user_not_on_node", "sender_offline",
    "msg_key_error", "payload_decode_error", "forward_send_packet_error", "not_allow_send",
    // WKProto's further codes (docs/WKPROTO.md): only shown when counted.
    "connect_kick",  "not_in_whitelist",  "query_token_error", "system_error",
    "channel_id_error", "node_match_error", "node_not_match",  "ban",
    "not_support_header", "client_key_is_empty", "rate_limit", "not_support_channel_type",
    "disband",       "send_ban",          "reason26",         "reason27",
    "reason28",      "reason29",          "reason30",         "reason31",
};

}  // namespace

uint64_t monotonic_ms() { return uint64_t(clock::steady_ms()); }

void take_snapshot(const SegmentView& segment, bool server_alive, uint64_t now_unix_ms, Snapshot& out) {
    const Header& h = segment.header();
    out.instance.assign(h.instance, strnlen(h.instance, sizeof h.instance));
    out.pid = h.pid;
    out.server_alive = server_alive;
    out.port = h.port;
    out.mode_test = h.mode_test != 0;
    out.io_backend = h.io_backend < kIoBackends ? h.io_backend : 0;
    out.workers = h.workers;
    out.capacity = h.capacity;
    out.max_conns = h.max_conns;
    out.start_time_unix_ms = h.start_time_unix_ms;
    out.uptime_s = now_unix_ms > h.start_time_unix_ms ? double(now_unix_ms - h.start_time_unix_ms) / 1000 : 0;
    for (int i = 0; i < kMaxCloseReasons; ++i)
        out.close_reason_names[i].assign(h.close_reason_names[i], strnlen(h.close_reason_names[i], kCloseReasonNameSize));
    sum_workers(segment, monotonic_ms(), out);
    copy_pipeline(segment, out);
    out.top_requested = 0;
    out.top.clear();
}

double bucket_least(int i, HistogramOf values) {
    return i == 0 && values == HistogramOf::Microseconds ? 0.0 : std::ldexp(1.0, i);
}

double bucket_greatest(int i, HistogramOf values) {
    return values == HistogramOf::Microseconds ? std::ldexp(1.0, i + 1) : std::ldexp(1.0, i + 1) - 1;
}

uint64_t histogram_count(const Histogram& buckets) {
    uint64_t total = 0;
    for (const Counter& c : buckets) total += c.get();
    return total;
}

std::optional<double> histogram_quantile(const Histogram& buckets, HistogramOf values, double q) {
    const uint64_t count = histogram_count(buckets);
    if (count == 0) return std::nullopt;
    const double rank = std::clamp(q, 0.0, 1.0) * double(count);
    uint64_t below = 0;
    for (int i = 0; i < kLatencyBuckets; ++i) {
        const uint64_t n = buckets[i].get();
        if (n != 0 && double(below + n) >= rank) {
            const double fraction = (rank - double(below)) / double(n);
            return bucket_least(i, values) + fraction * (bucket_greatest(i, values) - bucket_least(i, values));
        }
        below += n;
    }
    return bucket_greatest(kLatencyBuckets - 1, values);
}

const char* mode_name(const Snapshot& s) { return s.mode_test ? "test" : "release"; }
const char* io_backend_name(const Snapshot& s) { return kIoBackendNames[s.io_backend]; }

bool named_packet_type(int type) { return type >= 1 && type <= 12; }

const char* sendack_reason_name(size_t code) { return code < size_t(kReasonCodes) ? kReasonCodeNames[code] : nullptr; }

bool sendack_reason_shown(const WorkerBlock& totals, size_t code) {
    return code < kNamedReasonCodes || (code < size_t(kReasonCodes) && totals.sendacks[code].get() != 0);
}

}  // namespace limaoim::stats
