#include "limaoim/stats/prometheus.h"

#include "limaoim/stats/fields.h"
#include "limaoim/stats/text.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <span>

namespace limaoim::stats {

namespace {

// The name of counter i of an array, or nullptr to leave it out.
using NameOf = std::function<const char*(size_t)>;


std::string label_value(const std::string& raw) {
    std::string escaped;
    for (char c : raw) {
        if (c == '\\' || c == '"') escaped += '\\';
        if (c == '\n') {
            escaped += "\\n";
            continue;
        }
        escaped += c;
    }
    return escaped;
}

void family(std::string& out, const char* name, const char* type, const char* help) {
    appendf(out, "# HELP limaoim_%s %s\n# TYPE limaoim_%s %s\n", name, help, name, type);
}

void sample(std::string& out, const char* name, uint64_t value) { appendf(out, "limaoim_%s %llu\n", name, ull(value)); }

void metric(std::string& out, const char* name, const char* type, const char* help, uint64_t value) {
    family(out, name, type, help);
    sample(out, name, value);
}

// One row of a stats/fields.h table; `prefix` goes before its name.
template <typename Block>
void field(std::string& out, const Field<Block>& f, const Block& block, const char* prefix = "") {
    const bool counter = f.kind == FieldKind::Counter;
    const std::string name = std::string(prefix) + f.name + (counter ? "_total" : "");
    metric(out, name.c_str(), counter ? "counter" : "gauge", f.help, f.of(block));
}

template <typename Block, size_t N>
void fields(std::string& out, const Field<Block> (&table)[N], const Block& block, const char* prefix = "") {
    for (const Field<Block>& f : table) field(out, f, block, prefix);
}

void labelled(std::string& out, const char* name, const char* help, const char* label, const NameOf& name_of,
              std::span<const Counter> values) {
    family(out, name, "counter", help);
    for (size_t i = 0; i < values.size(); ++i)
        if (const char* value_name = name_of(i))
            appendf(out, "limaoim_%s{%s=\"%s\"} %llu\n", name, label, label_value(value_name).c_str(),
                    ull(values[i].get()));
}

// The server names its close reasons in the segment; a code without a name
// is not used.
NameOf close_reasons_of(const Snapshot& s) {
    return [&s](size_t i) { return s.close_reason_names[i].empty() ? nullptr : s.close_reason_names[i].c_str(); };
}

void identity(std::string& out, const Snapshot& s) {
    family(out, "info", "gauge", "Server identity; always 1.");
    appendf(out, "limaoim_info{stats_instance=\"%s\",pid=\"%d\",port=\"%u\",mode=\"%s\",io_backend=\"%s\"} 1\n",
            label_value(s.instance).c_str(), s.pid, unsigned(s.port), mode_name(s), io_backend_name(s));
    metric(out, "server_running", "gauge", "1 while the pid that wrote the segment is alive.", s.server_alive ? 1 : 0);
    family(out, "start_time_seconds", "gauge", "Server start, seconds since the Unix epoch.");
    appendf(out, "limaoim_start_time_seconds %.3f\n", double(s.start_time_unix_ms) / 1000);
    metric(out, "uptime_seconds", "gauge", "Seconds since the server started.", uint64_t(s.uptime_s));
    metric(out, "workers", "gauge", "Worker threads.", s.workers);
    metric(out, "capacity", "gauge", "Connection slots over all workers.", s.capacity);
    metric(out, "max_conns", "gauge", "Configured --max-conns.", s.max_conns);
}

void gauges(std::string& out, const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    for (const WorkerField& f : kWorkerGauges) {
        field(out, f, t);
        if (f.value != &WorkerBlock::authenticated) continue;
        family(out, "authenticated_by_device_flag", "gauge", "Authenticated sessions per device flag.");
        for (int i = 0; i < kDeviceFlagBuckets; ++i)
            appendf(out, "limaoim_authenticated_by_device_flag{device_flag=\"%s\"} %llu\n", kDeviceFlagNames[i],
                    ull(t.by_device_flag[i].get()));
        family(out, "authenticated_by_dialect", "gauge", "Authenticated sessions per protocol dialect.");
        for (int i = 0; i < kDialects; ++i)
            appendf(out, "limaoim_authenticated_by_dialect{dialect=\"%s\"} %llu\n", kDialectNames[i],
                    ull(t.by_dialect[i].get()));
    }
    family(out, "worker_connections", "gauge", "Open connections per worker.");
    for (size_t w = 0; w < s.per_worker.size(); ++w)
        appendf(out, "limaoim_worker_connections{worker=\"%zu\"} %llu\n", w, ull(s.per_worker[w].connections));
    family(out, "worker_authenticated", "gauge", "Authenticated sessions per worker.");
    for (size_t w = 0; w < s.per_worker.size(); ++w)
        appendf(out, "limaoim_worker_authenticated{worker=\"%zu\"} %llu\n", w, ull(s.per_worker[w].authenticated));
    family(out, "worker_loop_age_seconds", "gauge",
           "Seconds since the worker's loop last went round (an idle loop wakes every 0.1 s); workers not started "
           "yet have no sample.");
    for (size_t w = 0; w < s.per_worker.size(); ++w)
        if (s.per_worker[w].loop_age_ms)
            appendf(out, "limaoim_worker_loop_age_seconds{worker=\"%zu\"} %.3f\n", w,
                    double(*s.per_worker[w].loop_age_ms) / 1000);
}

void counters(std::string& out, const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    const auto counted_type = [](const Counter (&values)[kPacketTypes]) -> NameOf {
        return [&values](size_t type) {
            return named_packet_type(int(type)) || values[type].get() != 0 ? kPacketTypeNames[type] : nullptr;
        };
    };
    for (const WorkerField& f : kConnectionCounters) {
        field(out, f, t);
        if (f.value == &WorkerBlock::slot_reuses) {
            labelled(out, "closed_total", "Connections closed, by reason.", "reason", close_reasons_of(s), t.closed);
            labelled(out, "packets_in_total", "Packets received, by type.", "type", counted_type(t.packets_in),
                     t.packets_in);
            labelled(out, "packets_out_total", "Packets sent, by type.", "type", counted_type(t.packets_out),
                     t.packets_out);
            const NameOf dialect = [](size_t i) { return kDialectNames[i]; };
            labelled(out, "dialect_packets_in_total", "Packets received, by protocol dialect.", "dialect", dialect,
                     t.dialect_packets_in);
            labelled(out, "dialect_packets_out_total", "Packets sent, by protocol dialect.", "dialect", dialect,
                     t.dialect_packets_out);
        } else if (f.value == &WorkerBlock::auth_failures) {
            labelled(out, "decode_errors_total", "Undecodable packets, by kind.", "kind",
                     [](size_t i) { return i >= 1 ? kDecodeErrorNames[i] : nullptr; }, t.decode_errors);  // 0 is "none"
        }
    }
}

// Latencies are exported in seconds. The segment keeps no sum of the values;
// bucket midpoints stand in for it.
void histogram(std::string& out, const char* name, const char* help, const Histogram& buckets, HistogramOf values) {
    const double scale = values == HistogramOf::Microseconds ? 1e-6 : 1.0;
    family(out, name, "histogram", help);
    uint64_t cumulative = 0;
    double estimated_sum = 0;
    for (int i = 0; i < kLatencyBuckets; ++i) {
        const uint64_t n = buckets[i].get();
        cumulative += n;
        estimated_sum += double(n) * (bucket_least(i, values) + bucket_greatest(i, values)) / 2;
        appendf(out, "limaoim_%s_bucket{le=\"%.9g\"} %llu\n", name, bucket_greatest(i, values) * scale,
                ull(cumulative));
    }
    appendf(out, "limaoim_%s_bucket{le=\"+Inf\"} %llu\n", name, ull(cumulative));
    appendf(out, "limaoim_%s_sum %.9g\n", name, estimated_sum * scale);
    appendf(out, "limaoim_%s_count %llu\n", name, ull(cumulative));
}

void latency(std::string& out, const Snapshot& s) {
    histogram(out, "handshake_latency_seconds", "Complete CONNECT to CONNACK queued (sum estimated from bucket midpoints).",
              s.totals.handshake_latency_us, HistogramOf::Microseconds);
}

void messages(std::string& out, const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    for (const WorkerField& f : kMessageFields) {
        field(out, f, t);
        if (f.value == &WorkerBlock::sends)
            labelled(out, "sendacks_total", "SENDACKs written, by reason code.", "reason",
                     [&t](size_t code) { return sendack_reason_shown(t, code) ? sendack_reason_name(code) : nullptr; },
                     t.sendacks);
        else if (f.value == &WorkerBlock::user_rate_limit_waits)
            histogram(out, "send_latency_seconds",
                      "SEND decoded to successful SENDACK queued (sum estimated from bucket midpoints).",
                      t.send_latency_us, HistogramOf::Microseconds);
    }
}

void pipeline(std::string& out, const Snapshot& s) {
    const PipelineBlock& p = s.pipeline;
    fields(out, kCommitFields, p);
    histogram(out, "commit_latency_seconds",
              "One store commit, write and fsync by policy (sum estimated from bucket midpoints).",
              p.commit_latency_us, HistogramOf::Microseconds);
    histogram(out, "commit_batch_messages", "Messages per store commit (sum estimated from bucket midpoints).",
              p.commit_batch_messages, HistogramOf::Counts);
    fields(out, kFanoutFields, p);
}

}  // namespace

std::string render_prometheus(const Snapshot& s) {
    std::string out;
    out.reserve(24 << 10);
    identity(out, s);
    gauges(out, s);
    counters(out, s);
    latency(out, s);
    messages(out, s);
    fields(out, kWebSocketFields, s.totals, kWebSocketPrefix);
    pipeline(out, s);
    fields(out, kConversationFields, s.pipeline);
    fields(out, kWebhookFields, s.pipeline);
    fields(out, kDatasourceFields, s.pipeline);
    fields(out, kClusterFields, s.pipeline);
    return out;
}

}  // namespace limaoim::stats
