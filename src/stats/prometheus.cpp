#include "limaoim/stats/prometheus.h"
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

void counter(std::string& out, const char* name, const char* help, const Counter& value) {
    metric(out, name, "counter", help, value.get());
}

void gauge(std::string& out, const char* name, const char* help, const Counter& value) {
    metric(out, name, "gauge", help, value.get());
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
    appendf(out, "limaoim_info{stats_instance=\"%s\",pid=\"%d\",port=\"%u\",mode=\"%s\"} 1\n",
            label_value(s.instance).c_str(), s.pid, unsigned(s.port), mode_name(s));
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
    gauge(out, "connections", "Accepted connections not yet closed.", t.connections);
    gauge(out, "authenticated", "Sessions with a successful CONNACK.", t.authenticated);
    family(out, "authenticated_by_device_flag", "gauge", "Authenticated sessions per device flag.");
    for (int i = 0; i < kDeviceFlagBuckets; ++i)
        appendf(out, "limaoim_authenticated_by_device_flag{device_flag=\"%s\"} %llu\n", kDeviceFlagNames[i],
                ull(t.by_device_flag[i].get()));
    gauge(out, "pending_handshakes", "Connections that have not sent CONNECT yet.", t.pending_handshakes);
    gauge(out, "send_queue_bytes", "Output queued and not yet sent.", t.send_queue_bytes);
    gauge(out, "reassembly_bytes", "Reassembly buffers held for split packets and paused input.", t.reassembly_bytes);
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
    counter(out, "accepted_total", "Connections accepted.", t.accepted);
    counter(out, "rejected_capacity_total", "Connections refused for capacity.", t.rejected_capacity);
    counter(out, "accept_errors_total", "Failed accepts.", t.accept_errors);
    counter(out, "slot_reuses_total", "Connection slots used again after a close.", t.slot_reuses);
    labelled(out, "closed_total", "Connections closed, by reason.", "reason", close_reasons_of(s), t.closed);
    const auto counted_type = [](const Counter (&values)[kPacketTypes]) -> NameOf {
        return [&values](size_t type) {
            return named_packet_type(int(type)) || values[type].get() != 0 ? kPacketTypeNames[type] : nullptr;
        };
    };
    labelled(out, "packets_in_total", "Packets received, by type.", "type", counted_type(t.packets_in), t.packets_in);
    labelled(out, "packets_out_total", "Packets sent, by type.", "type", counted_type(t.packets_out), t.packets_out);
    counter(out, "bytes_in_total", "Bytes received.", t.bytes_in);
    counter(out, "bytes_out_total", "Bytes handed to the kernel.", t.bytes_out);
    counter(out, "auth_ok_total", "Successful CONNACKs.", t.auth_ok);
    counter(out, "auth_failures_total", "CONNACKs with a failure reason.", t.auth_failures);
    labelled(out, "decode_errors_total", "Undecodable packets, by kind.", "kind",
             [](size_t i) { return i >= 1 ? kDecodeErrorNames[i] : nullptr; }, t.decode_errors);  // 0 is "none"
    counter(out, "kicks_total", "Sessions replaced by a newer login.", t.kicks);
    counter(out, "slow_consumer_kicks_total", "Sessions closed for unsent output.", t.slow_consumer_kicks);
    counter(out, "recv_rearms_total", "Multishot receives re-armed.", t.recv_rearms);
    counter(out, "buffer_ring_empty_total", "Receives that found no buffer.", t.buffer_ring_empty);
    counter(out, "kicks_lost_total", "Kicks refused by another worker's full inbox.", t.kicks_lost);
    counter(out, "accept_pauses_total", "Times a worker stopped accepting at its pending limit.", t.accept_pauses);
    counter(out, "handshakes_deferred_total", "CONNECTs put off to a later loop iteration.", t.handshakes_deferred);
    counter(out, "input_pauses_total", "Connections whose input was paused.", t.input_pauses);
    counter(out, "envelopes_in_total", "Envelopes handled by the workers.", t.envelopes_in);
    counter(out, "envelopes_out_total", "Envelopes queued for workers.", t.envelopes_out);
    counter(out, "envelopes_refused_total", "Envelopes refused by a full inbox.", t.envelopes_refused);
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
    counter(out, "sends_total", "SENDs handled; each gets one SENDACK.", t.sends);
    labelled(out, "sendacks_total", "SENDACKs written, by reason code.", "reason",
             [&t](size_t code) { return sendack_reason_shown(t, code) ? sendack_reason_name(code) : nullptr; },
             t.sendacks);
    gauge(out, "sends_in_flight", "SENDs handed to the committer whose SENDACK is not written yet.", t.sends_in_flight);
    counter(out, "send_pauses_total", "Times a session's input paused at its in-flight SEND cap.", t.send_pauses);
    counter(out, "rate_limit_waits_total", "Times a session's input paused by --max-messages-per-second.",
            t.rate_limit_waits);
    counter(out, "user_rate_limit_waits_total",
            "Times a session's input paused by its sender's --max-messages-per-user (SENDs weighted by receivers).",
            t.user_rate_limit_waits);
    histogram(out, "send_latency_seconds", "SEND decoded to successful SENDACK queued (sum estimated from bucket midpoints).",
              t.send_latency_us, HistogramOf::Microseconds);
    counter(out, "recvs_total", "RECVs written, first deliveries.", t.recvs);
    counter(out, "recv_retransmits_total", "RECVs written again after --msg-timeout without a RECVACK.",
            t.recv_retransmits);
    counter(out, "recvacks_total", "RECVACKs that matched a RECV in flight.", t.recvacks);
    counter(out, "recvacks_unknown_total", "RECVACKs for nothing in flight (late, duplicate or forged).",
            t.recvacks_unknown);
    gauge(out, "inflight", "RECVs waiting for their RECVACK.", t.inflight);
    counter(out, "inflight_expired_total", "In-flight RECVs dropped after --max-deliveries, left to sync.",
            t.inflight_expired);
    counter(out, "inflight_evicted_total", "In-flight RECVs dropped at --max-inflight per session, left to sync.",
            t.inflight_evicted);
    counter(out, "deliveries_stale_total", "Deliveries for a session that had closed meanwhile.", t.deliveries_stale);
}

void websocket(std::string& out, const Snapshot& s) {
    const WorkerBlock& t = s.totals;
    gauge(out, "ws_sessions", "Upgraded WebSocket connections open.", t.ws_sessions);
    counter(out, "ws_upgrades_total", "WebSocket upgrade requests answered 101.", t.ws_upgrades);
    counter(out, "ws_upgrades_refused_total", "WebSocket upgrade requests refused (4xx) or cut by the upgrade timeout.",
            t.ws_upgrades_refused);
    counter(out, "ws_frames_in_total", "WebSocket data frames received.", t.ws_frames_in);
    counter(out, "ws_frames_out_total", "WebSocket frames sent (data, pong, close).", t.ws_frames_out);
    counter(out, "ws_control_frames_in_total", "WebSocket ping, pong and close frames received.", t.ws_control_in);
    gauge(out, "ws_held_bytes", "Bytes held for WebSocket sessions' split packets and paused input.", t.ws_held_bytes);
}

void pipeline(std::string& out, const Snapshot& s) {
    const PipelineBlock& p = s.pipeline;
    counter(out, "commits_total", "Store batches written.", p.commits);
    counter(out, "commit_failures_total", "Store batches the store refused; their SENDs got reason 0.",
            p.commit_failures);
    counter(out, "messages_stored_total", "Channel-log messages written.", p.messages_stored);
    counter(out, "queue_copies_stored_total", "SyncOnce copies written to users' queues.", p.queue_copies_stored);
    counter(out, "dedupe_hits_total", "Resent SENDs answered with the first message's id and seq.", p.dedupe_hits);
    gauge(out, "dedupe_entries", "Remembered (uid, client_msg_no) pairs.", p.dedupe_entries);
    counter(out, "dedupe_evicted_total", "Dedupe entries forgotten before their window ended (--dedupe-max).",
            p.dedupe_evicted);
    gauge(out, "commit_queue", "Requests waiting for the committer.", p.commit_queue);
    counter(out, "commit_refused_total", "Requests refused by the committer's full queue.", p.commit_refused);
    counter(out, "cursor_advances_total",
            "SyncOnce cursor advances the committer took (RECVACKs coalesced per session and loop iteration).",
            p.cursor_advances);
    counter(out, "commit_conflicts_total", "Batches prepared again: another node on the shared store moved a counter.",
            p.commit_conflicts);
    histogram(out, "commit_latency_seconds",
              "One store commit, write and fsync by policy (sum estimated from bucket midpoints).",
              p.commit_latency_us, HistogramOf::Microseconds);
    histogram(out, "commit_batch_messages", "Messages per store commit (sum estimated from bucket midpoints).",
              p.commit_batch_messages, HistogramOf::Counts);
    counter(out, "fanout_messages_total", "Messages fanned out.", p.fanout_messages);
    counter(out, "deliveries_total", "Delivery envelopes handed to workers.", p.deliveries);
    counter(out, "deliveries_refused_total", "Deliveries dropped after a worker took nothing from its full inbox for 10 s (a stuck worker); its sessions sync.",
            p.deliveries_refused);
    counter(out, "offline_receivers_total", "Receivers of messages stored here with no session on this node (in a cluster they may have one on another node).", p.offline_receivers);
    counter(out, "fanout_no_receivers_total", "Messages delivered to nobody on this node: they named no receivers and their channel was not in memory here (see the log).", p.fanout_no_receivers);
    gauge(out, "fanout_queue", "Messages waiting for fan-out.", p.fanout_queue);
    counter(out, "fanout_held_total",
            "Cluster: messages held back until an earlier seq of their channel, stored by another node, arrived.",
            p.fanout_held);
    counter(out, "fanout_hold_expired_total",
            "Cluster: holds ended after 1 s with the earlier seq still missing (receivers sync the gap).",
            p.fanout_hold_expired);
}

void conversations(std::string& out, const Snapshot& s) {
    const PipelineBlock& p = s.pipeline;
    counter(out, "conversation_updates_total", "(user, conversation) updates made by stored messages.",
            p.conversation_updates);
    counter(out, "conversation_flushes_total", "Store batches of changed conversations.", p.conversation_flushes);
    counter(out, "conversation_flush_failures_total", "Conversation batches the store refused (kept, retried).",
            p.conversation_flush_failures);
    gauge(out, "conversation_users", "Users with conversations in memory.", p.conversation_users);
}

void webhook(std::string& out, const Snapshot& s) {
    const PipelineBlock& p = s.pipeline;
    counter(out, "webhook_calls_total", "Webhook HTTP requests completed, any status.", p.webhook_calls);
    counter(out, "webhook_failures_total", "Webhook calls answered other than 200, timed out or not connected.",
            p.webhook_failures);
    gauge(out, "webhook_online_queue", "user.onlinestatus entries waiting to be sent.", p.webhook_online_queue);
    counter(out, "webhook_online_dropped_total", "user.onlinestatus entries dropped at a full queue.",
            p.webhook_online_dropped);
    counter(out, "webhook_offline_dropped_total", "msg.offline calls dropped: queue full or the one attempt failed.",
            p.webhook_offline_dropped);
    gauge(out, "webhook_notify_queue", "msg.notify events in the durable queue.", p.webhook_notify_queue);
    counter(out, "webhook_notify_sent_total", "msg.notify events the webhook took (HTTP 200).", p.webhook_notify_sent);
    counter(out, "webhook_notify_dropped_total", "Messages whose msg.notify event was not queued: the queue was full.",
            p.webhook_notify_dropped);
}

void datasource(std::string& out, const Snapshot& s) {
    const PipelineBlock& p = s.pipeline;
    counter(out, "datasource_calls_total", "Datasource requests made.", p.datasource_calls);
    counter(out, "datasource_failures_total", "Datasource requests that timed out, failed or were malformed.",
            p.datasource_failures);
}

void cluster(std::string& out, const Snapshot& s) {
    const PipelineBlock& p = s.pipeline;
    gauge(out, "cluster_nodes", "Live nodes registered in Redis, this one included (0: not clustered).", p.cluster_nodes);
    gauge(out, "cluster_connected", "1 while this node hears the other nodes through Redis.", p.cluster_connected);
    counter(out, "cluster_events_out_total", "Events sent to the other nodes (messages, logins, changes).",
            p.cluster_events_out);
    counter(out, "cluster_events_in_total", "Events the other nodes sent here.", p.cluster_events_in);
    counter(out, "cluster_events_dropped_total", "Events not sent: Redis down or the send queue full.",
            p.cluster_events_dropped);
    counter(out, "cluster_redis_errors_total", "Redis connections or commands of the cluster that failed.",
            p.cluster_redis_errors);
    counter(out, "cluster_resyncs_total", "Reconnections after which the cached tokens and channels were read again.",
            p.cluster_resyncs);
    counter(out, "cluster_events_rejected_total",
            "Events dropped unheard: a bad MAC (not sealed with the cluster secret) or sealed too long ago (a replay).",
            p.cluster_events_rejected);
    counter(out, "cluster_events_missed_total",
            "Events trimmed from this node's stream (--redis-bus-max) before it read them.", p.cluster_events_missed);
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
    websocket(out, s);
    pipeline(out, s);
    conversations(out, s);
    webhook(out, s);
    datasource(out, s);
    cluster(out, s);
    return out;
}

}  // namespace limaoim::stats
