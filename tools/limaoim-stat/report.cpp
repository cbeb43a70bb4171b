#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <span>

#include "limaoim/stats/text.h"

namespace limaoim::stat_tool {

namespace {

using stats::Counter;
using stats::PipelineBlock;
using stats::WorkerBlock;

uint64_t traffic_rank(const ConnTraffic& c) { return uint64_t(c.packets_in) + c.packets_out; }

bool busier(const ConnTraffic& a, const ConnTraffic& b) {
    if (traffic_rank(a) != traffic_rank(b)) return traffic_rank(a) > traffic_rank(b);
    return a.kib_in > b.kib_in;
}

// Keeps the n busiest in a min-heap, so a server with a million slots costs
// n entries, not a million.
void pick_top(const SegmentReader& reader, size_t n, std::vector<ConnTraffic>& top) {
    top.clear();
    if (n == 0) return;
    top.reserve(n);
    reader.for_each_live_conn([&](const ConnTraffic& c) {
        if (top.size() < n) {
            top.push_back(c);
            std::push_heap(top.begin(), top.end(), busier);
        } else if (busier(c, top.front())) {
            std::pop_heap(top.begin(), top.end(), busier);
            top.back() = c;
            std::push_heap(top.begin(), top.end(), busier);
        }
    });
    std::sort(top.begin(), top.end(), busier);
}

// The name of counter i of an array, or nullptr to leave it out.
using NameOf = std::function<const char*(size_t)>;

template <size_t N>
NameOf names_from(const char* const (&names)[N], size_t first = 0) {
    return [&names, first](size_t i) { return i >= first ? names[i] : nullptr; };
}

// The server names its close reasons in the segment; a code without a name
// is not used.
NameOf close_reasons_of(const Snapshot& s) {
    return [&s](size_t i) { return s.close_reason_names[i].empty() ? nullptr : s.close_reason_names[i].c_str(); };
}

NameOf sendack_reasons_of(const WorkerBlock& t) {
    return [&t](size_t code) { return stats::sendack_reason_shown(t, code) ? stats::sendack_reason_name(code) : nullptr; };
}

template <size_t N>
uint64_t sum_of(const Counter (&counters)[N]) {
    uint64_t total = 0;
    for (const Counter& c : counters) total += c.get();
    return total;
}

using stats::bucket_greatest;
using stats::bucket_least;
using stats::mode_name;
using stats::named_packet_type;
using stats::appendf;
using stats::ull;

// ---- text helpers ----


std::string human_bytes(double bytes) {
    static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int unit = 0;
    while (bytes >= 1024 && unit < 4) {
        bytes /= 1024;
        ++unit;
    }
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[unit]);
    return buffer;
}

std::string duration_text(double seconds) {
    const uint64_t s = uint64_t(seconds);
    char buffer[48];
    std::snprintf(buffer, sizeof buffer, "%llud %02llu:%02llu:%02llu", ull(s / 86400), ull(s / 3600 % 24),
                  ull(s / 60 % 60), ull(s % 60));
    return buffer;
}

std::string quantile_text(const std::optional<double>& us) {
    if (!us) return "-";
    char buffer[32];
    if (*us < 1000)
        std::snprintf(buffer, sizeof buffer, "%.0f us", *us);
    else
        std::snprintf(buffer, sizeof buffer, "%.2f ms", *us / 1000);
    return buffer;
}

std::string number_text(const std::optional<double>& value) {
    if (!value) return "-";
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.1f", *value);
    return buffer;
}

void append_row(std::string& out, const char* label, uint64_t value) {
    appendf(out, "  %-26s %14llu\n", label, ull(value));
}

void append_latency_row(std::string& out, const char* label, const Histogram& buckets_us) {
    appendf(out, "  %-26s p50 %s  p99 %s  (n=%llu)\n", label,
            quantile_text(histogram_quantile(buckets_us, HistogramOf::Microseconds, 0.50)).c_str(),
            quantile_text(histogram_quantile(buckets_us, HistogramOf::Microseconds, 0.99)).c_str(),
            ull(sum_of(buckets_us)));
}

// name/value pairs, two to a line; the names take at least 22 columns.
void append_pairs(std::string& out, const NameOf& name_of, std::span<const Counter> values) {
    int name_width = 22;
    for (size_t i = 0; i < values.size(); ++i)
        if (const char* name = name_of(i)) name_width = std::max(name_width, int(std::strlen(name)));
    size_t column = 0;
    for (size_t i = 0; i < values.size(); ++i) {
        const char* name = name_of(i);
        if (!name) continue;
        appendf(out, "  %-*s %12llu", name_width, name, ull(values[i].get()));
        if (++column % 2 == 0) out += '\n';
    }
    if (column % 2) out += '\n';
}

void append_header(std::string& out, const Snapshot& s) {
    appendf(out, "limaoim instance %s  pid %d (%s)  port %u  mode %s\n", s.instance.c_str(), s.pid,
            s.server_alive ? "running" : "NOT RUNNING", unsigned(s.port), mode_name(s));
    appendf(out, "uptime %s  workers %u  capacity %llu  max_conns %llu\n\n", duration_text(s.uptime_s).c_str(),
            s.workers, ull(s.capacity), ull(s.max_conns));
}

void append_gauges(std::string& out, const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    out += "gauges\n";
    append_row(out, "connections", t.connections.get());
    appendf(out, "  %-26s %14llu   ", "authenticated", ull(t.authenticated.get()));
    for (int i = 0; i < stats::kDeviceFlagBuckets; ++i)
        appendf(out, " %s %llu", stats::kDeviceFlagNames[i], ull(t.by_device_flag[i].get()));
    out += '\n';
    append_row(out, "pending handshakes", t.pending_handshakes.get());
    appendf(out, "  %-26s %14llu    (%s)\n", "send queue bytes", ull(t.send_queue_bytes.get()),
            human_bytes(double(t.send_queue_bytes.get())).c_str());
    appendf(out, "  %-26s %14llu    (%s)\n", "reassembly bytes", ull(t.reassembly_bytes.get()),
            human_bytes(double(t.reassembly_bytes.get())).c_str());
    appendf(out, "  %-26s", "per worker conns/auth");
    for (size_t w = 0; w < s.per_worker.size(); ++w)
        appendf(out, " w%zu %llu/%llu", w, ull(s.per_worker[w].connections), ull(s.per_worker[w].authenticated));
    out += '\n';
    appendf(out, "  %-26s", "per worker loop age");
    for (size_t w = 0; w < s.per_worker.size(); ++w) {
        if (s.per_worker[w].loop_age_ms)
            appendf(out, " w%zu %llu ms", w, ull(*s.per_worker[w].loop_age_ms));
        else
            appendf(out, " w%zu -", w);
    }
    out += "\n\n";
}

void append_counters(std::string& out, const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    out += "counters (all workers)\n";
    append_row(out, "accepted", t.accepted.get());
    append_row(out, "rejected (capacity)", t.rejected_capacity.get());
    append_row(out, "accept errors", t.accept_errors.get());
    append_row(out, "slot reuses", t.slot_reuses.get());
    append_row(out, "auth ok", t.auth_ok.get());
    append_row(out, "auth failures", t.auth_failures.get());
    append_row(out, "kicks", t.kicks.get());
    append_row(out, "slow-consumer kicks", t.slow_consumer_kicks.get());
    append_row(out, "recv re-arms", t.recv_rearms.get());
    append_row(out, "buffer ring empty", t.buffer_ring_empty.get());
    append_row(out, "kicks lost", t.kicks_lost.get());
    append_row(out, "accept pauses", t.accept_pauses.get());
    append_row(out, "handshakes deferred", t.handshakes_deferred.get());
    append_row(out, "input pauses", t.input_pauses.get());
    append_row(out, "envelopes in", t.envelopes_in.get());
    append_row(out, "envelopes out", t.envelopes_out.get());
    append_row(out, "envelopes refused", t.envelopes_refused.get());
    appendf(out, "  %-26s %14llu    (%s)\n", "bytes in", ull(t.bytes_in.get()), human_bytes(double(t.bytes_in.get())).c_str());
    appendf(out, "  %-26s %14llu    (%s)\n", "bytes out", ull(t.bytes_out.get()),
            human_bytes(double(t.bytes_out.get())).c_str());
    out += "\nclosed by reason\n";
    append_pairs(out, close_reasons_of(s), t.closed);
    out += "\ndecode errors\n";
    append_pairs(out, names_from(stats::kDecodeErrorNames, 1), t.decode_errors);  // 0 is "none"
    appendf(out, "\n  %-14s %14s %14s\n", "packets", "in", "out");
    for (int type = 0; type < stats::kPacketTypes; ++type) {
        const uint64_t in = t.packets_in[type].get(), sent = t.packets_out[type].get();
        if (named_packet_type(type) || in || sent)
            appendf(out, "  %-14s %14llu %14llu\n", stats::kPacketTypeNames[type], ull(in), ull(sent));
    }
    out += '\n';
}

void append_latency(std::string& out, const Snapshot& s) {
    const auto& buckets = s.totals.handshake_latency_us;
    appendf(out, "handshake latency (n=%llu)  p50 %s  p90 %s  p99 %s\n", ull(sum_of(buckets)),
            quantile_text(histogram_quantile(buckets, HistogramOf::Microseconds, 0.50)).c_str(),
            quantile_text(histogram_quantile(buckets, HistogramOf::Microseconds, 0.90)).c_str(),
            quantile_text(histogram_quantile(buckets, HistogramOf::Microseconds, 0.99)).c_str());
    uint64_t largest = 0;
    for (const Counter& b : buckets) largest = std::max(largest, b.get());
    for (int i = 0; i < stats::kLatencyBuckets; ++i) {
        const uint64_t n = buckets[i].get();
        if (n == 0) continue;
        const int bar = int(std::lround(40.0 * double(n) / double(largest)));
        appendf(out, "  [%8.0f, %8.0f) us %12llu %s\n", bucket_least(i, HistogramOf::Microseconds),
                bucket_greatest(i, HistogramOf::Microseconds), ull(n),
                std::string(size_t(std::max(bar, 1)), '#').c_str());
    }
}

void append_messages(std::string& out, const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    out += "\nmessages\n";
    append_row(out, "sends", t.sends.get());
    append_row(out, "sends in flight", t.sends_in_flight.get());
    append_row(out, "send pauses", t.send_pauses.get());
    append_row(out, "rate-limit waits", t.rate_limit_waits.get());
    append_row(out, "user rate-limit waits", t.user_rate_limit_waits.get());
    append_latency_row(out, "SEND->SENDACK latency", t.send_latency_us);
    append_row(out, "RECVs", t.recvs.get());
    append_row(out, "RECV retransmits", t.recv_retransmits.get());
    append_row(out, "RECVACKs", t.recvacks.get());
    append_row(out, "unknown RECVACKs", t.recvacks_unknown.get());
    append_row(out, "RECVs in flight", t.inflight.get());
    append_row(out, "in-flight expired", t.inflight_expired.get());
    append_row(out, "in-flight evicted", t.inflight_evicted.get());
    append_row(out, "stale deliveries", t.deliveries_stale.get());
    out += "\nSENDACKs by reason\n";
    append_pairs(out, sendack_reasons_of(t), t.sendacks);
}

void append_websocket(std::string& out, const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    out += "\nwebsocket\n";
    append_row(out, "sessions", t.ws_sessions.get());
    append_row(out, "upgrades", t.ws_upgrades.get());
    append_row(out, "upgrades refused", t.ws_upgrades_refused.get());
    append_row(out, "data frames in", t.ws_frames_in.get());
    append_row(out, "frames out", t.ws_frames_out.get());
    append_row(out, "control frames in", t.ws_control_in.get());
    append_row(out, "held bytes", t.ws_held_bytes.get());
}

void append_pipeline(std::string& out, const Snapshot& s) {
    const PipelineBlock& p = s.pipeline;
    out += "\nstore commits\n";
    append_row(out, "commits", p.commits.get());
    append_row(out, "commit failures", p.commit_failures.get());
    append_row(out, "messages stored", p.messages_stored.get());
    append_row(out, "queue copies stored", p.queue_copies_stored.get());
    append_row(out, "dedupe hits", p.dedupe_hits.get());
    append_row(out, "dedupe entries", p.dedupe_entries.get());
    append_row(out, "dedupe evicted", p.dedupe_evicted.get());
    append_row(out, "commit queue", p.commit_queue.get());
    append_row(out, "commits refused", p.commit_refused.get());
    append_row(out, "cursor advances", p.cursor_advances.get());
    append_row(out, "commit conflicts", p.commit_conflicts.get());
    append_latency_row(out, "commit latency", p.commit_latency_us);
    appendf(out, "  %-26s %14s\n", "messages per commit p50",
            number_text(histogram_quantile(p.commit_batch_messages, HistogramOf::Counts, 0.50)).c_str());
    out += "\nfan-out\n";
    append_row(out, "messages fanned out", p.fanout_messages.get());
    append_row(out, "deliveries", p.deliveries.get());
    append_row(out, "deliveries refused", p.deliveries_refused.get());
    append_row(out, "offline receivers", p.offline_receivers.get());
    append_row(out, "no receivers known", p.fanout_no_receivers.get());
    append_row(out, "fan-out queue", p.fanout_queue.get());
    append_row(out, "held for seq order", p.fanout_held.get());
    append_row(out, "holds expired", p.fanout_hold_expired.get());
    out += "\nconversations\n";
    append_row(out, "conversation updates", p.conversation_updates.get());
    append_row(out, "flushes", p.conversation_flushes.get());
    append_row(out, "flush failures", p.conversation_flush_failures.get());
    append_row(out, "users in memory", p.conversation_users.get());
    out += "\nwebhook\n";
    append_row(out, "calls", p.webhook_calls.get());
    append_row(out, "failures", p.webhook_failures.get());
    append_row(out, "online-status queue", p.webhook_online_queue.get());
    append_row(out, "online-status dropped", p.webhook_online_dropped.get());
    append_row(out, "msg.offline dropped", p.webhook_offline_dropped.get());
    append_row(out, "msg.notify queue", p.webhook_notify_queue.get());
    append_row(out, "msg.notify sent", p.webhook_notify_sent.get());
    append_row(out, "msg.notify dropped", p.webhook_notify_dropped.get());
    out += "\ndatasource\n";
    append_row(out, "calls", p.datasource_calls.get());
    append_row(out, "failures", p.datasource_failures.get());
    if (p.cluster_nodes.get() == 0) return;  // not clustered
    out += "\ncluster\n";
    append_row(out, "nodes", p.cluster_nodes.get());
    append_row(out, "connected", p.cluster_connected.get());
    append_row(out, "events out", p.cluster_events_out.get());
    append_row(out, "events in", p.cluster_events_in.get());
    append_row(out, "events dropped", p.cluster_events_dropped.get());
    append_row(out, "redis errors", p.cluster_redis_errors.get());
    append_row(out, "resyncs", p.cluster_resyncs.get());
    append_row(out, "events rejected", p.cluster_events_rejected.get());
    append_row(out, "events missed", p.cluster_events_missed.get());
}

void append_rates(std::string& out, const Rates& r) {
    appendf(out, "\nrates over %.1f s\n", r.interval_s);
    appendf(out, "  accepted/s %10.1f   closed/s %10.1f\n", r.accepted, r.closed);
    appendf(out, "  packets in/s %8.1f   packets out/s %8.1f\n", r.packets_in, r.packets_out);
    appendf(out, "  bytes in/s %12s/s   bytes out/s %10s/s\n", human_bytes(r.bytes_in).c_str(),
            human_bytes(r.bytes_out).c_str());
    appendf(out, "  sends/s %13.1f   RECVs/s %11.1f   RECVACKs/s %8.1f\n", r.sends, r.recvs, r.recvacks);
}

void append_top(std::string& out, const Snapshot& s) {
    appendf(out, "\nbusiest live connections (top %zu by packets in + out)\n", s.top_requested);
    appendf(out, "  %6s %8s %12s %12s %10s\n", "worker", "slot", "packets in", "packets out", "KiB in");
    for (const ConnTraffic& c : s.top)
        appendf(out, "  %6u %8u %12u %12u %10u\n", c.worker, c.slot, c.packets_in, c.packets_out, c.kib_in);
}

// ---- JSON helpers ----

nlohmann::json named_counters(const NameOf& name_of, std::span<const Counter> values) {
    nlohmann::json object = nlohmann::json::object();
    for (size_t i = 0; i < values.size(); ++i)
        if (const char* name = name_of(i)) object[name] = values[i].get();
    return object;
}

nlohmann::json quantile_json(const std::optional<double>& us) { return us ? nlohmann::json(*us) : nlohmann::json(); }

nlohmann::json gauges_json(const WorkerBlock& t) {
    nlohmann::json device_flags = nlohmann::json::object();
    for (int i = 0; i < stats::kDeviceFlagBuckets; ++i) device_flags[stats::kDeviceFlagNames[i]] = t.by_device_flag[i].get();
    return {{"connections", t.connections.get()},
            {"authenticated", t.authenticated.get()},
            {"pending_handshakes", t.pending_handshakes.get()},
            {"send_queue_bytes", t.send_queue_bytes.get()},
            {"reassembly_bytes", t.reassembly_bytes.get()},
            {"device_flags", device_flags}};
}

nlohmann::json counters_json(const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    return {{"accepted", t.accepted.get()},
            {"rejected_capacity", t.rejected_capacity.get()},
            {"accept_errors", t.accept_errors.get()},
            {"slot_reuses", t.slot_reuses.get()},
            {"closed", named_counters(close_reasons_of(s), t.closed)},
            {"packets_in", named_counters(names_from(stats::kPacketTypeNames), t.packets_in)},
            {"packets_out", named_counters(names_from(stats::kPacketTypeNames), t.packets_out)},
            {"bytes_in", t.bytes_in.get()},
            {"bytes_out", t.bytes_out.get()},
            {"auth_ok", t.auth_ok.get()},
            {"auth_failures", t.auth_failures.get()},
            {"decode_errors", named_counters(names_from(stats::kDecodeErrorNames, 1), t.decode_errors)},
            {"kicks", t.kicks.get()},
            {"slow_consumer_kicks", t.slow_consumer_kicks.get()},
            {"recv_rearms", t.recv_rearms.get()},
            {"buffer_ring_empty", t.buffer_ring_empty.get()},
            {"kicks_lost", t.kicks_lost.get()},
            {"accept_pauses", t.accept_pauses.get()},
            {"handshakes_deferred", t.handshakes_deferred.get()},
            {"input_pauses", t.input_pauses.get()},
            {"envelopes_in", t.envelopes_in.get()},
            {"envelopes_out", t.envelopes_out.get()},
            {"envelopes_refused", t.envelopes_refused.get()}};
}

nlohmann::json histogram_json(const Histogram& histogram, HistogramOf values) {
    nlohmann::json buckets = nlohmann::json::array();
    for (const Counter& b : histogram) buckets.push_back(b.get());
    return {{"buckets", buckets},
            {"count", sum_of(histogram)},
            {"p50", quantile_json(histogram_quantile(histogram, values, 0.50))},
            {"p90", quantile_json(histogram_quantile(histogram, values, 0.90))},
            {"p99", quantile_json(histogram_quantile(histogram, values, 0.99))}};
}

nlohmann::json messages_json(const WorkerBlock& t) {
    return {{"sends", t.sends.get()},
            {"sendacks", named_counters(sendack_reasons_of(t), t.sendacks)},
            {"sends_in_flight", t.sends_in_flight.get()},
            {"send_pauses", t.send_pauses.get()},
            {"rate_limit_waits", t.rate_limit_waits.get()},
            {"user_rate_limit_waits", t.user_rate_limit_waits.get()},
            {"send_latency_us", histogram_json(t.send_latency_us, HistogramOf::Microseconds)},
            {"recvs", t.recvs.get()},
            {"recv_retransmits", t.recv_retransmits.get()},
            {"recvacks", t.recvacks.get()},
            {"recvacks_unknown", t.recvacks_unknown.get()},
            {"inflight", t.inflight.get()},
            {"inflight_expired", t.inflight_expired.get()},
            {"inflight_evicted", t.inflight_evicted.get()},
            {"deliveries_stale", t.deliveries_stale.get()}};
}

nlohmann::json websocket_json(const WorkerBlock& t) {
    return {{"sessions", t.ws_sessions.get()},
            {"upgrades", t.ws_upgrades.get()},
            {"upgrades_refused", t.ws_upgrades_refused.get()},
            {"frames_in", t.ws_frames_in.get()},
            {"frames_out", t.ws_frames_out.get()},
            {"control_frames_in", t.ws_control_in.get()},
            {"held_bytes", t.ws_held_bytes.get()}};
}

nlohmann::json pipeline_json(const PipelineBlock& p) {
    return {{"commits", p.commits.get()},
            {"commit_failures", p.commit_failures.get()},
            {"messages_stored", p.messages_stored.get()},
            {"queue_copies_stored", p.queue_copies_stored.get()},
            {"dedupe_hits", p.dedupe_hits.get()},
            {"dedupe_entries", p.dedupe_entries.get()},
            {"dedupe_evicted", p.dedupe_evicted.get()},
            {"commit_queue", p.commit_queue.get()},
            {"commit_refused", p.commit_refused.get()},
            {"cursor_advances", p.cursor_advances.get()},
            {"commit_conflicts", p.commit_conflicts.get()},
            {"commit_latency_us", histogram_json(p.commit_latency_us, HistogramOf::Microseconds)},
            {"commit_batch_messages", histogram_json(p.commit_batch_messages, HistogramOf::Counts)},
            {"fanout_messages", p.fanout_messages.get()},
            {"deliveries", p.deliveries.get()},
            {"deliveries_refused", p.deliveries_refused.get()},
            {"offline_receivers", p.offline_receivers.get()},
            {"fanout_no_receivers", p.fanout_no_receivers.get()},
            {"fanout_queue", p.fanout_queue.get()},
            {"fanout_held", p.fanout_held.get()},
            {"fanout_hold_expired", p.fanout_hold_expired.get()},
            {"conversation_updates", p.conversation_updates.get()},
            {"conversation_flushes", p.conversation_flushes.get()},
            {"conversation_flush_failures", p.conversation_flush_failures.get()},
            {"conversation_users", p.conversation_users.get()},
            {"webhook_calls", p.webhook_calls.get()},
            {"webhook_failures", p.webhook_failures.get()},
            {"webhook_online_queue", p.webhook_online_queue.get()},
            {"webhook_online_dropped", p.webhook_online_dropped.get()},
            {"webhook_offline_dropped", p.webhook_offline_dropped.get()},
            {"webhook_notify_queue", p.webhook_notify_queue.get()},
            {"webhook_notify_sent", p.webhook_notify_sent.get()},
            {"webhook_notify_dropped", p.webhook_notify_dropped.get()},
            {"datasource_calls", p.datasource_calls.get()},
            {"datasource_failures", p.datasource_failures.get()},
            {"cluster_nodes", p.cluster_nodes.get()},
            {"cluster_connected", p.cluster_connected.get()},
            {"cluster_events_out", p.cluster_events_out.get()},
            {"cluster_events_in", p.cluster_events_in.get()},
            {"cluster_events_dropped", p.cluster_events_dropped.get()},
            {"cluster_redis_errors", p.cluster_redis_errors.get()},
            {"cluster_resyncs", p.cluster_resyncs.get()},
            {"cluster_events_rejected", p.cluster_events_rejected.get()},
            {"cluster_events_missed", p.cluster_events_missed.get()}};
}

}  // namespace

void take_snapshot(const SegmentReader& reader, size_t top_n, uint64_t now_unix_ms, Snapshot& out) {
    stats::take_snapshot(reader.view(), reader.server_alive(), now_unix_ms, out);
    out.top_requested = top_n;
    pick_top(reader, top_n, out.top);
}

Traffic traffic_of(const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    return {t.accepted.get(),  sum_of(t.closed), sum_of(t.packets_in), sum_of(t.packets_out), t.bytes_in.get(),
            t.bytes_out.get(), t.sends.get(),    t.recvs.get(),        t.recvacks.get()};
}

Rates rates_between(const Traffic& before, const Traffic& after, double seconds) {
    const auto per_second = [seconds](uint64_t from, uint64_t to) {
        if (seconds <= 0) return 0.0;
        return double(to >= from ? to - from : to) / seconds;
    };
    return {seconds,
            per_second(before.accepted, after.accepted),
            per_second(before.closed, after.closed),
            per_second(before.packets_in, after.packets_in),
            per_second(before.packets_out, after.packets_out),
            per_second(before.bytes_in, after.bytes_in),
            per_second(before.bytes_out, after.bytes_out),
            per_second(before.sends, after.sends),
            per_second(before.recvs, after.recvs),
            per_second(before.recvacks, after.recvacks)};
}

nlohmann::json to_json(const Snapshot& s, const Rates* rates) {
    nlohmann::json per_worker = nlohmann::json::array();
    for (const WorkerLoad& w : s.per_worker)
        per_worker.push_back({{"connections", w.connections},
                              {"authenticated", w.authenticated},
                              {"loop_age_ms", w.loop_age_ms ? nlohmann::json(*w.loop_age_ms) : nlohmann::json()}});
    nlohmann::json out = {{"instance", s.instance},
                          {"pid", s.pid},
                          {"server_running", s.server_alive},
                          {"port", s.port},
                          {"uptime_s", s.uptime_s},
                          {"start_time_unix_ms", s.start_time_unix_ms},
                          {"workers", s.workers},
                          {"capacity", s.capacity},
                          {"max_conns", s.max_conns},
                          {"mode", mode_name(s)},
                          {"gauges", gauges_json(s.totals)},
                          {"counters", counters_json(s)},
                          {"handshake_latency_us",
                           histogram_json(s.totals.handshake_latency_us, HistogramOf::Microseconds)},
                          {"messages", messages_json(s.totals)},
                          {"websocket", websocket_json(s.totals)},
                          {"pipeline", pipeline_json(s.pipeline)},
                          {"per_worker", per_worker}};
    if (s.top_requested) {
        nlohmann::json top = nlohmann::json::array();
        for (const ConnTraffic& c : s.top)
            top.push_back({{"worker", c.worker}, {"slot", c.slot}, {"packets_in", c.packets_in},
                           {"packets_out", c.packets_out}, {"kib_in", c.kib_in}});
        out["top"] = top;
    }
    if (rates)
        out["rates"] = {{"interval_s", rates->interval_s},       {"accepted_per_s", rates->accepted},
                        {"closed_per_s", rates->closed},         {"packets_in_per_s", rates->packets_in},
                        {"packets_out_per_s", rates->packets_out}, {"bytes_in_per_s", rates->bytes_in},
                        {"bytes_out_per_s", rates->bytes_out},   {"sends_per_s", rates->sends},
                        {"recvs_per_s", rates->recvs},           {"recvacks_per_s", rates->recvacks}};
    return out;
}

std::string render_table(const Snapshot& s, const Rates* rates) {
    std::string out;
    append_header(out, s);
    append_gauges(out, s);
    append_counters(out, s);
    append_latency(out, s);
    append_messages(out, s);
    append_websocket(out, s);
    append_pipeline(out, s);
    if (rates) append_rates(out, *rates);
    if (s.top_requested) append_top(out, s);
    return out;
}

}  // namespace limaoim::stat_tool
