// The plain counters and gauges of the segment, one table per block, so
// that each is named once for every rendering: GET /metrics and
// limaoim-stat --prometheus (stats/prometheus.cpp), limaoim-stat's table
// and its JSON (tools/limaoim-stat/report.cpp). A row's place in its table
// is its place in each rendering. What is not a single value (the arrays
// by reason, type or device flag, the histograms, the per-worker figures)
// each renderer writes where it belongs, around the rows.
#pragma once

#include <cstdint>

#include "limaoim/stats/layout.h"

namespace limaoim::stats {

enum class FieldKind : uint8_t { Counter, Gauge };

// Bytes: limaoim-stat's table also shows the value in KiB, MiB, ..., on a
// row after the block's other rows.
enum class FieldUnit : uint8_t { Count, Bytes };

template <typename Block>
struct Field {
    const char* name;   // the JSON key; Prometheus: limaoim_ PREFIX name, "_total" after a counter's
    FieldKind kind;
    const char* label;  // limaoim-stat's table
    const char* help;   // Prometheus's HELP line
    Counter Block::*value;
    FieldUnit unit = FieldUnit::Count;

    uint64_t of(const Block& block) const { return (block.*value).get(); }
};

using WorkerField = Field<WorkerBlock>;
using PipelineField = Field<PipelineBlock>;

inline constexpr FieldKind kCounter = FieldKind::Counter, kGauge = FieldKind::Gauge;
inline constexpr FieldUnit kBytes = FieldUnit::Bytes;

// The workers' gauges. After "authenticated" the renderers show it by device flag.
inline constexpr WorkerField kWorkerGauges[] = {
    {"connections", kGauge, "connections", "Accepted connections not yet closed.", &WorkerBlock::connections},
    {"authenticated", kGauge, "authenticated", "Sessions with a successful CONNACK.", &WorkerBlock::authenticated},
    {"pending_handshakes", kGauge, "pending handshakes", "Connections that have not sent CONNECT yet.",
     &WorkerBlock::pending_handshakes},
    {"send_queue_bytes", kGauge, "send queue bytes", "Output queued and not yet sent.", &WorkerBlock::send_queue_bytes,
     kBytes},
    {"reassembly_bytes", kGauge, "reassembly bytes", "Held bytes of the reassembly budget: split packets and paused input, the loop's and WebSocket's.",
     &WorkerBlock::reassembly_bytes, kBytes},
};

// The workers' connection counters. Prometheus puts the closes and packets
// by type after "slot_reuses", the decode errors after "auth_failures".
inline constexpr WorkerField kConnectionCounters[] = {
    {"accepted", kCounter, "accepted", "Connections accepted.", &WorkerBlock::accepted},
    {"rejected_capacity", kCounter, "rejected (capacity)", "Connections refused for capacity.",
     &WorkerBlock::rejected_capacity},
    {"accept_errors", kCounter, "accept errors", "Failed accepts.", &WorkerBlock::accept_errors},
    {"slot_reuses", kCounter, "slot reuses", "Connection slots used again after a close.", &WorkerBlock::slot_reuses},
    {"bytes_in", kCounter, "bytes in", "Bytes received.", &WorkerBlock::bytes_in, kBytes},
    {"bytes_out", kCounter, "bytes out", "Bytes handed to the kernel.", &WorkerBlock::bytes_out, kBytes},
    {"auth_ok", kCounter, "auth ok", "Successful CONNACKs.", &WorkerBlock::auth_ok},
    {"auth_failures", kCounter, "auth failures", "CONNACKs with a failure reason.", &WorkerBlock::auth_failures},
    {"kicks", kCounter, "kicks", "Sessions replaced by a newer login.", &WorkerBlock::kicks},
    {"slow_consumer_kicks", kCounter, "slow-consumer kicks", "Sessions closed for unsent output.",
     &WorkerBlock::slow_consumer_kicks},
    {"recv_rearms", kCounter, "recv re-arms", "Multishot receives re-armed.", &WorkerBlock::recv_rearms},
    {"buffer_ring_empty", kCounter, "buffer ring empty", "Receives that found no buffer.",
     &WorkerBlock::buffer_ring_empty},
    {"kicks_lost", kCounter, "kicks lost", "Kicks refused by another worker's full inbox.", &WorkerBlock::kicks_lost},
    {"accept_pauses", kCounter, "accept pauses", "Times a worker stopped accepting at its pending limit.",
     &WorkerBlock::accept_pauses},
    {"handshakes_deferred", kCounter, "handshakes deferred", "CONNECTs put off to a later loop iteration.",
     &WorkerBlock::handshakes_deferred},
    {"input_pauses", kCounter, "input pauses", "Connections whose input was paused.", &WorkerBlock::input_pauses},
    {"envelopes_in", kCounter, "envelopes in", "Envelopes handled by the workers.", &WorkerBlock::envelopes_in},
    {"envelopes_out", kCounter, "envelopes out", "Envelopes queued for workers.", &WorkerBlock::envelopes_out},
    {"envelopes_refused", kCounter, "envelopes refused", "Envelopes refused by a full inbox.",
     &WorkerBlock::envelopes_refused},
};

// The workers' messaging figures. Prometheus puts the SENDACKs by reason
// after "sends"; the SEND latency follows "user_rate_limit_waits".
inline constexpr WorkerField kMessageFields[] = {
    {"sends", kCounter, "sends", "SENDs handled; each gets one SENDACK.", &WorkerBlock::sends},
    {"sends_in_flight", kGauge, "sends in flight", "SENDs handed to the committer whose SENDACK is not written yet.",
     &WorkerBlock::sends_in_flight},
    {"send_pauses", kCounter, "send pauses", "Times a session's input paused at its in-flight SEND cap.",
     &WorkerBlock::send_pauses},
    {"rate_limit_waits", kCounter, "rate-limit waits", "Times a session's input paused by --max-messages-per-second.",
     &WorkerBlock::rate_limit_waits},
    {"user_rate_limit_waits", kCounter, "user rate-limit waits",
     "Times a session's input paused by its sender's --max-messages-per-user (SENDs weighted by receivers).",
     &WorkerBlock::user_rate_limit_waits},
    {"recvs", kCounter, "RECVs", "RECVs written, first deliveries.", &WorkerBlock::recvs},
    {"recv_retransmits", kCounter, "RECV retransmits", "RECVs written again after --msg-timeout without a RECVACK.",
     &WorkerBlock::recv_retransmits},
    {"recvacks", kCounter, "RECVACKs", "RECVACKs that matched a RECV in flight.", &WorkerBlock::recvacks},
    {"recvacks_unknown", kCounter, "unknown RECVACKs", "RECVACKs for nothing in flight (late, duplicate or forged).",
     &WorkerBlock::recvacks_unknown},
    {"inflight", kGauge, "RECVs in flight", "RECVs waiting for their RECVACK.", &WorkerBlock::inflight},
    {"inflight_expired", kCounter, "in-flight expired", "In-flight RECVs dropped after --max-deliveries, left to sync.",
     &WorkerBlock::inflight_expired},
    {"inflight_evicted", kCounter, "in-flight evicted",
     "In-flight RECVs dropped at --max-inflight per session, left to sync.", &WorkerBlock::inflight_evicted},
    {"deliveries_stale", kCounter, "stale deliveries", "Deliveries for a session that had closed meanwhile.",
     &WorkerBlock::deliveries_stale},
    {"deliveries_expired", kCounter, "expired deliveries",
     "Deliveries and retransmits not written: the message was past its expire.", &WorkerBlock::deliveries_expired},
};

// The workers' WebSocket figures; Prometheus names them with the prefix "ws_".
inline constexpr const char* kWebSocketPrefix = "ws_";
inline constexpr WorkerField kWebSocketFields[] = {
    {"sessions", kGauge, "sessions", "Upgraded WebSocket connections open.", &WorkerBlock::ws_sessions},
    {"upgrades", kCounter, "upgrades", "WebSocket upgrade requests answered 101.", &WorkerBlock::ws_upgrades},
    {"upgrades_refused", kCounter, "upgrades refused",
     "WebSocket upgrade requests refused (4xx) or cut by the upgrade timeout.", &WorkerBlock::ws_upgrades_refused},
    {"frames_in", kCounter, "data frames in", "WebSocket data frames received.", &WorkerBlock::ws_frames_in},
    {"frames_out", kCounter, "frames out", "WebSocket frames sent (data, pong, close).", &WorkerBlock::ws_frames_out},
    {"control_frames_in", kCounter, "control frames in", "WebSocket ping, pong and close frames received.",
     &WorkerBlock::ws_control_in},
    {"held_bytes", kGauge, "held bytes", "Bytes held for WebSocket sessions' split packets and paused input (part of reassembly bytes).",
     &WorkerBlock::ws_held_bytes},
};

// The committer's figures; its two histograms follow.
inline constexpr PipelineField kCommitFields[] = {
    {"commits", kCounter, "commits", "Store batches written.", &PipelineBlock::commits},
    {"commit_failures", kCounter, "commit failures", "Store batches the store refused; their SENDs got reason 0.",
     &PipelineBlock::commit_failures},
    {"messages_stored", kCounter, "messages stored", "Channel-log messages written.", &PipelineBlock::messages_stored},
    {"queue_copies_stored", kCounter, "queue copies stored", "SyncOnce copies written to users' queues.",
     &PipelineBlock::queue_copies_stored},
    {"dedupe_hits", kCounter, "dedupe hits", "Resent SENDs answered with the first message's id and seq.",
     &PipelineBlock::dedupe_hits},
    {"dedupe_entries", kGauge, "dedupe entries", "Remembered (uid, client_msg_no) pairs.",
     &PipelineBlock::dedupe_entries},
    {"dedupe_evicted", kCounter, "dedupe evicted", "Dedupe entries forgotten before their window ended (--dedupe-max).",
     &PipelineBlock::dedupe_evicted},
    {"commit_queue", kGauge, "commit queue", "Requests waiting for the committer.", &PipelineBlock::commit_queue},
    {"commit_refused", kCounter, "commits refused", "Requests refused by the committer's full queue.",
     &PipelineBlock::commit_refused},
    {"cursor_advances", kCounter, "cursor advances",
     "SyncOnce cursor advances the committer took (RECVACKs coalesced per session and loop iteration).",
     &PipelineBlock::cursor_advances},
    {"commit_conflicts", kCounter, "commit conflicts",
     "Batches prepared again: another node on the shared store moved a counter.", &PipelineBlock::commit_conflicts},
};

inline constexpr PipelineField kFanoutFields[] = {
    {"fanout_messages", kCounter, "messages fanned out", "Messages fanned out.", &PipelineBlock::fanout_messages},
    {"deliveries", kCounter, "deliveries", "Delivery envelopes handed to workers.", &PipelineBlock::deliveries},
    {"deliveries_refused", kCounter, "deliveries refused",
     "Deliveries dropped after a worker took nothing from its full inbox for 10 s (a stuck worker); its sessions sync.",
     &PipelineBlock::deliveries_refused},
    {"offline_receivers", kCounter, "offline receivers",
     "Receivers of messages stored here with no session on this node (in a cluster they may have one on another "
     "node).",
     &PipelineBlock::offline_receivers},
    {"fanout_no_receivers", kCounter, "no receivers known",
     "Messages delivered to nobody on this node: they named no receivers and their channel was not in memory here "
     "(see the log).",
     &PipelineBlock::fanout_no_receivers},
    {"fanout_queue", kGauge, "fan-out queue", "Messages waiting for fan-out.", &PipelineBlock::fanout_queue},
    {"fanout_held", kCounter, "held for seq order",
     "Cluster: messages held back until an earlier seq of their channel, stored by another node, arrived.",
     &PipelineBlock::fanout_held},
    {"fanout_hold_expired", kCounter, "holds expired",
     "Cluster: holds ended after 1 s with the earlier seq still missing (receivers sync the gap).",
     &PipelineBlock::fanout_hold_expired},
};

inline constexpr PipelineField kConversationFields[] = {
    {"conversation_updates", kCounter, "conversation updates", "(user, conversation) updates made by stored messages.",
     &PipelineBlock::conversation_updates},
    {"conversation_flushes", kCounter, "flushes", "Store batches of changed conversations.",
     &PipelineBlock::conversation_flushes},
    {"conversation_flush_failures", kCounter, "flush failures",
     "Conversation batches the store refused (kept, retried).", &PipelineBlock::conversation_flush_failures},
    {"conversation_users", kGauge, "users in memory",
     "Users with conversations in memory (at most --conversation-users-max plus those changed since the last flush).",
     &PipelineBlock::conversation_users},
    {"conversation_evictions", kCounter, "users evicted",
     "Users dropped from memory past --conversation-users-max (read back from the store when asked for).",
     &PipelineBlock::conversation_evictions},
};

inline constexpr PipelineField kWebhookFields[] = {
    {"webhook_calls", kCounter, "calls", "Webhook HTTP requests completed, any status.", &PipelineBlock::webhook_calls},
    {"webhook_failures", kCounter, "failures", "Webhook calls answered other than 200, timed out or not connected.",
     &PipelineBlock::webhook_failures},
    {"webhook_online_queue", kGauge, "online-status queue", "user.onlinestatus entries waiting to be sent.",
     &PipelineBlock::webhook_online_queue},
    {"webhook_online_dropped", kCounter, "online-status dropped", "user.onlinestatus entries dropped at a full queue.",
     &PipelineBlock::webhook_online_dropped},
    {"webhook_offline_dropped", kCounter, "msg.offline dropped",
     "msg.offline calls dropped: queue full or the one attempt failed.", &PipelineBlock::webhook_offline_dropped},
    {"webhook_notify_queue", kGauge, "msg.notify queue", "msg.notify events in the durable queue.",
     &PipelineBlock::webhook_notify_queue},
    {"webhook_notify_sent", kCounter, "msg.notify sent", "msg.notify events the webhook took (HTTP 200).",
     &PipelineBlock::webhook_notify_sent},
    {"webhook_notify_dropped", kCounter, "msg.notify dropped",
     "Messages whose msg.notify event was not queued: the queue was full.", &PipelineBlock::webhook_notify_dropped},
};

inline constexpr PipelineField kDatasourceFields[] = {
    {"datasource_calls", kCounter, "calls", "Datasource requests made.", &PipelineBlock::datasource_calls},
    {"datasource_failures", kCounter, "failures", "Datasource requests that timed out, failed or were malformed.",
     &PipelineBlock::datasource_failures},
};

inline constexpr PipelineField kClusterFields[] = {
    {"cluster_nodes", kGauge, "nodes", "Live nodes registered in Redis, this one included (0: not clustered).",
     &PipelineBlock::cluster_nodes},
    {"cluster_connected", kGauge, "connected", "1 while this node hears the other nodes through Redis.",
     &PipelineBlock::cluster_connected},
    {"cluster_events_out", kCounter, "events out", "Events sent to the other nodes (messages, logins, changes).",
     &PipelineBlock::cluster_events_out},
    {"cluster_events_in", kCounter, "events in", "Events the other nodes sent here.", &PipelineBlock::cluster_events_in},
    {"cluster_events_dropped", kCounter, "events dropped", "Events not sent: Redis down or the send queue full.",
     &PipelineBlock::cluster_events_dropped},
    {"cluster_redis_errors", kCounter, "redis errors", "Redis connections or commands of the cluster that failed.",
     &PipelineBlock::cluster_redis_errors},
    {"cluster_resyncs", kCounter, "resyncs", "Reconnections after which the cached tokens and channels were read again.",
     &PipelineBlock::cluster_resyncs},
    {"cluster_events_rejected", kCounter, "events rejected",
     "Events dropped unheard: a bad MAC (not sealed with the cluster secret) or sealed too long ago (a replay).",
     &PipelineBlock::cluster_events_rejected},
    {"cluster_events_missed", kCounter, "events missed",
     "Events trimmed from this node's stream (--redis-bus-max) before it read them.",
     &PipelineBlock::cluster_events_missed},
};

}  // namespace limaoim::stats
