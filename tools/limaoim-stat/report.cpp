#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <span>
#include <type_traits>

#include "limaoim/stats/fields.h"
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
using stats::io_backend_name;
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

void append_bytes_row(std::string& out, const char* label, uint64_t value) {
    appendf(out, "  %-26s %14llu    (%s)\n", label, ull(value), human_bytes(double(value)).c_str());
}

// A stats/fields.h table: the byte counts after the other rows. `special`
// may write a row itself (it returns true when it did).
template <typename Block, size_t N>
void append_rows(std::string& out, const stats::Field<Block> (&table)[N], const Block& block,
                 const std::type_identity_t<std::function<bool(const stats::Field<Block>&)>>& special = nullptr) {
    for (const stats::Field<Block>& f : table)
        if (f.unit == stats::FieldUnit::Count && !(special && special(f))) append_row(out, f.label, f.of(block));
    for (const stats::Field<Block>& f : table)
        if (f.unit == stats::FieldUnit::Bytes) append_bytes_row(out, f.label, f.of(block));
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
    appendf(out, "limaoim instance %s  pid %d (%s)  port %u  mode %s  io %s\n", s.instance.c_str(), s.pid,
            s.server_alive ? "running" : "NOT RUNNING", unsigned(s.port), mode_name(s), io_backend_name(s));
    appendf(out, "uptime %s  workers %u  capacity %llu  max_conns %llu\n\n", duration_text(s.uptime_s).c_str(),
            s.workers, ull(s.capacity), ull(s.max_conns));
}

void append_gauges(std::string& out, const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    out += "gauges\n";
    append_rows(out, stats::kWorkerGauges, t, [&](const stats::WorkerField& f) {
        if (f.value != &WorkerBlock::authenticated) return false;
        appendf(out, "  %-26s %14llu   ", f.label, ull(f.of(t)));
        for (int i = 0; i < stats::kDeviceFlagBuckets; ++i)
            appendf(out, " %s %llu", stats::kDeviceFlagNames[i], ull(t.by_device_flag[i].get()));
        appendf(out, "\n  %-26s %14s   ", "  by dialect", "");
        for (int i = 0; i < stats::kDialects; ++i)
            appendf(out, " %s %llu", stats::kDialectNames[i], ull(t.by_dialect[i].get()));
        out += '\n';
        return true;
    });
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
    append_rows(out, stats::kConnectionCounters, t);
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
    appendf(out, "  %-14s %14s %14s\n", "by dialect", "in", "out");
    for (int i = 0; i < stats::kDialects; ++i)
        appendf(out, "  %-14s %14llu %14llu\n", stats::kDialectNames[i], ull(t.dialect_packets_in[i].get()),
                ull(t.dialect_packets_out[i].get()));
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
    append_rows(out, stats::kMessageFields, t, [&](const stats::WorkerField& f) {
        if (f.value != &WorkerBlock::user_rate_limit_waits) return false;
        append_row(out, f.label, f.of(t));
        append_latency_row(out, "SEND->SENDACK latency", t.send_latency_us);
        return true;
    });
    out += "\nSENDACKs by reason\n";
    append_pairs(out, sendack_reasons_of(t), t.sendacks);
}

void append_websocket(std::string& out, const Snapshot& s) {
    out += "\nwebsocket\n";
    append_rows(out, stats::kWebSocketFields, s.totals);
}

void append_pipeline(std::string& out, const Snapshot& s) {
    const PipelineBlock& p = s.pipeline;
    out += "\nstore commits\n";
    append_rows(out, stats::kCommitFields, p);
    append_latency_row(out, "commit latency", p.commit_latency_us);
    appendf(out, "  %-26s %14s\n", "messages per commit p50",
            number_text(histogram_quantile(p.commit_batch_messages, HistogramOf::Counts, 0.50)).c_str());
    out += "\nfan-out\n";
    append_rows(out, stats::kFanoutFields, p);
    out += "\nconversations\n";
    append_rows(out, stats::kConversationFields, p);
    out += "\nwebhook\n";
    append_rows(out, stats::kWebhookFields, p);
    out += "\ndatasource\n";
    append_rows(out, stats::kDatasourceFields, p);
    if (p.cluster_nodes.get() == 0) return;  // not clustered
    out += "\ncluster\n";
    append_rows(out, stats::kClusterFields, p);
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

// A stats/fields.h table's values, each under its name.
template <typename Block, size_t N>
void add_fields(nlohmann::json& object, const stats::Field<Block> (&table)[N], const Block& block) {
    for (const stats::Field<Block>& f : table) object[f.name] = f.of(block);
}

nlohmann::json quantile_json(const std::optional<double>& us) { return us ? nlohmann::json(*us) : nlohmann::json(); }

nlohmann::json gauges_json(const WorkerBlock& t) {
    nlohmann::json device_flags = nlohmann::json::object();
    for (int i = 0; i < stats::kDeviceFlagBuckets; ++i) device_flags[stats::kDeviceFlagNames[i]] = t.by_device_flag[i].get();
    nlohmann::json out = {{"device_flags", device_flags},
                          {"dialects", named_counters(names_from(stats::kDialectNames), t.by_dialect)}};
    add_fields(out, stats::kWorkerGauges, t);
    return out;
}

nlohmann::json counters_json(const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    nlohmann::json out = {{"closed", named_counters(close_reasons_of(s), t.closed)},
                          {"packets_in", named_counters(names_from(stats::kPacketTypeNames), t.packets_in)},
                          {"packets_out", named_counters(names_from(stats::kPacketTypeNames), t.packets_out)},
                          {"dialect_packets_in", named_counters(names_from(stats::kDialectNames), t.dialect_packets_in)},
                          {"dialect_packets_out", named_counters(names_from(stats::kDialectNames), t.dialect_packets_out)},
                          {"decode_errors", named_counters(names_from(stats::kDecodeErrorNames, 1), t.decode_errors)}};
    add_fields(out, stats::kConnectionCounters, t);
    return out;
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
    nlohmann::json out = {{"sendacks", named_counters(sendack_reasons_of(t), t.sendacks)},
                          {"send_latency_us", histogram_json(t.send_latency_us, HistogramOf::Microseconds)}};
    add_fields(out, stats::kMessageFields, t);
    return out;
}

nlohmann::json websocket_json(const WorkerBlock& t) {
    nlohmann::json out = nlohmann::json::object();
    add_fields(out, stats::kWebSocketFields, t);
    return out;
}

nlohmann::json pipeline_json(const PipelineBlock& p) {
    nlohmann::json out = {{"commit_latency_us", histogram_json(p.commit_latency_us, HistogramOf::Microseconds)},
                          {"commit_batch_messages", histogram_json(p.commit_batch_messages, HistogramOf::Counts)}};
    add_fields(out, stats::kCommitFields, p);
    add_fields(out, stats::kFanoutFields, p);
    add_fields(out, stats::kConversationFields, p);
    add_fields(out, stats::kWebhookFields, p);
    add_fields(out, stats::kDatasourceFields, p);
    add_fields(out, stats::kClusterFields, p);
    return out;
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
                          {"io_backend", io_backend_name(s)},
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
