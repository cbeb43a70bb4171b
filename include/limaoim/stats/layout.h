// Layout of the shared-memory stats segment, /dev/shm/limaoim-<instance>.
//
// Written by the server (each WorkerBlock by exactly one worker thread, the
// header by the main thread), read by limaoim-stat, which never talks to the
// server. Readers sum the worker blocks. Values are std::atomic with relaxed
// ordering: a reader sees each value whole, not a consistent snapshot.
//
// Any change to this file that moves a field bumps kLayoutVersion, so an old
// limaoim-stat refuses a new segment instead of printing garbage.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace limaoim::stats {

inline constexpr uint64_t kMagic = 0x54415453494d494cULL;  // "LIMISTAT" little-endian
inline constexpr uint32_t kLayoutVersion = 9;
// The same value as net::kMaxWorkers (net/capacity.h, checked there): stats/
// is below net/ and does not include it.
inline constexpr uint32_t kMaxWorkers = 4096;
inline constexpr size_t kCacheLine = 64;

// One writer, many readers: plain load + store, no locked instruction.
struct Counter {
    std::atomic<uint64_t> value{0};
    void add(uint64_t n = 1) { value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    void sub(uint64_t n = 1) { value.store(value.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
    void set(uint64_t n) { value.store(n, std::memory_order_relaxed); }
    // For the few counters several threads write: a locked add.
    void add_shared(uint64_t n = 1) { value.fetch_add(n, std::memory_order_relaxed); }
    uint64_t get() const { return value.load(std::memory_order_relaxed); }
};
static_assert(sizeof(Counter) == 8 && std::atomic<uint64_t>::is_always_lock_free);

// Connections closed, by reason code. The codes and their names belong to
// the server (net/ and gateway/), not to this layout: the server writes the
// names into Header::close_reason_names at start, and limaoim-stat labels the
// counters with them, so a new reason needs no new layout or reader.
inline constexpr int kMaxCloseReasons = 32;
inline constexpr size_t kCloseReasonNameSize = 24;  // NUL included

// Device-flag gauges: APP, WEB, SYSTEM, and every other value together.
inline constexpr int kDeviceFlagBuckets = 4;
inline constexpr const char* kDeviceFlagNames[kDeviceFlagBuckets] = {"app", "web", "system", "other"};
inline constexpr int device_flag_bucket(uint8_t flag) { return flag < 3 ? flag : 3; }

// Protocol dialects, indexed by proto::DialectId (the gateway asserts the count).
inline constexpr int kDialects = 2;
inline constexpr const char* kDialectNames[kDialects] = {"limaoim", "wukongim"};

// Handshake latency (CONNECT fully received → CONNACK queued), bucket i
// counts latencies in [2^i, 2^(i+1)) microseconds; bucket 0 also takes < 1 µs.
inline constexpr int kLatencyBuckets = 24;

// Header::io_backend, as net::IoBackendKind numbers them (1 io_uring, 2 epoll).
inline constexpr int kIoBackends = 3;
inline constexpr const char* kIoBackendNames[kIoBackends] = {"unknown", "io_uring", "epoll"};

// The bucket of a power-of-two histogram (Counter[kLatencyBuckets]) that
// counts `value`: i for [2^i, 2^(i+1)); bucket 0 also takes 0, the last
// everything beyond it.
inline constexpr int histogram_bucket(uint64_t value) {
    int bucket = 0;
    while (value > 1 && bucket < kLatencyBuckets - 1) {
        value >>= 1;
        ++bucket;
    }
    return bucket;
}

// Decode errors by kind; indices match proto::DecodeError (0 = None unused).
inline constexpr int kDecodeErrorKinds = 6;
inline constexpr const char* kDecodeErrorNames[kDecodeErrorKinds] = {
    "none", "reserved_type", "unknown_type", "malformed_length", "too_large", "truncated",
};

inline constexpr int kReasonCodes = 32;  // proto::ReasonCode values (both dialects' 0..25) and room

inline constexpr int kPacketTypes = 16;  // indexed by the raw type nibble
inline constexpr const char* kPacketTypeNames[kPacketTypes] = {
    "type0",   "connect", "connack", "send",       "sendack", "recv",    "recvack", "ping",
    "pong",    "disconnect", "sub",    "suback", "event",   "type13",  "type14",  "type15",
};

// One worker's figures. Single writer: that worker's thread.
struct alignas(kCacheLine) WorkerBlock {
    // Gauges.
    Counter connections;     // accepted and not yet closed
    Counter authenticated;   // sessions with a successful CONNACK
    Counter by_device_flag[kDeviceFlagBuckets];  // authenticated, per bucket
    Counter by_dialect[kDialects];               // authenticated, per protocol dialect
    Counter send_queue_bytes;  // unsent output held in send chunks
    Counter pending_handshakes;  // connected, no CONNECT yet

    // Counters.
    Counter accepted;
    Counter rejected_capacity;   // closed at once: --max-conns, pending limit, or table full (ENFILE)
    Counter accept_errors;
    Counter slot_reuses;         // a direct-descriptor slot used again after a close
    Counter closed[kMaxCloseReasons];  // by reason code, see Header::close_reason_names
    Counter packets_in[kPacketTypes];
    Counter packets_out[kPacketTypes];
    Counter dialect_packets_in[kDialects];   // packets_in, per protocol dialect
    Counter dialect_packets_out[kDialects];
    Counter bytes_in;            // all bytes received
    Counter bytes_out;           // all bytes handed to the kernel
    Counter auth_ok;
    Counter auth_failures;       // CONNACK with a failure reason
    Counter decode_errors[kDecodeErrorKinds];
    Counter kicks;               // sessions replaced by a newer login
    Counter kicks_lost;          // a kick for another worker refused by its full inbox
    Counter slow_consumer_kicks;
    Counter recv_rearms;         // multishot recv re-armed (ENOBUFS or CQ overflow)
    Counter buffer_ring_empty;   // -ENOBUFS completions
    Counter handshake_latency_us[kLatencyBuckets];

    // The loop's services (net/).
    Counter reassembly_bytes;     // gauge: the reassembly budget in use (split packets, paused input; the loop's and WebSocket's)
    Counter accept_pauses;        // accepting stopped at the listener's pending limit
    Counter input_pauses;         // connections whose input was paused
    Counter envelopes_in;         // envelopes handled by this worker
    Counter envelopes_out;        // envelopes this worker queued for workers (itself included)
    Counter envelopes_refused;    // envelopes refused: the target's inbox was full
    Counter handshakes_deferred;  // CONNECTs put off to a later iteration by the handshake budget

    // Messaging (gateway/ + im/ on this worker).
    Counter sends;                 // SENDs from sessions handled (each gets one SENDACK)
    Counter sendacks[kReasonCodes];  // SENDACKs written, by reason code (1 = success)
    Counter sends_in_flight;       // gauge: SENDs handed to the committer, SENDACK not yet written
    Counter send_pauses;           // a session's input paused at its in-flight SEND cap
    Counter send_latency_us[kLatencyBuckets];  // SEND decoded -> SENDACK queued (successes)
    Counter recvs;                 // RECVs written, first deliveries
    Counter recv_retransmits;      // RECVs written again after --msg-timeout without RECVACK
    Counter recvacks;              // RECVACKs that matched an in-flight entry
    Counter recvacks_unknown;      // RECVACKs for nothing in flight (late, duplicate, forged)
    Counter inflight;              // gauge: RECVs waiting for their RECVACK
    Counter inflight_expired;      // entries dropped after --max-deliveries (left to sync)
    Counter inflight_evicted;      // entries dropped at --max-inflight per session (left to sync)
    Counter deliveries_stale;      // a delivery for a session that closed meanwhile
    Counter deliveries_expired;    // a message past its expire (WKProto), not written
    Counter rate_limit_waits;      // a session's input paused by --max-messages-per-second
    Counter user_rate_limit_waits;  // ... by its sender's --max-messages-per-user

    // Liveness: CLOCK_MONOTONIC milliseconds when the worker's loop last went
    // round (written once per iteration; an idle loop still wakes every
    // 100 ms tick); 0 until it starts. GET /health calls a worker unhealthy
    // when it is seconds old. Not a sum: readers show it per worker.
    Counter loop_heartbeat_ms;

    // WebSocket transport (ws/).
    Counter ws_sessions;          // gauge: upgraded WebSocket connections open
    Counter ws_upgrades;          // upgrade requests answered 101
    Counter ws_upgrades_refused;  // answered 4xx, or cut by the upgrade timeout
    Counter ws_frames_in;         // data frames received
    Counter ws_frames_out;        // frames sent (data, pong, close)
    Counter ws_control_in;        // ping, pong and close frames received
    Counter ws_held_bytes;        // gauge: capacity of held LiMaoIM bytes (split packets, paused input), part of reassembly_bytes
};

// The message pipeline's threads (im/committer.h, im/fanout.h). Single
// writer per field group: the committer writes the first, the fan-out
// thread the second.
struct alignas(kCacheLine) PipelineBlock {
    // Committer.
    Counter commits;               // store batches written
    Counter commit_failures;       // batches the store refused (their SENDs got reason 0)
    Counter messages_stored;       // channel-log messages written
    Counter queue_copies_stored;   // SyncOnce copies written to users' queues
    Counter dedupe_hits;           // resends answered with the first message's id and seq
    Counter dedupe_entries;        // gauge: remembered (uid, client_msg_no)
    Counter dedupe_evicted;        // forgotten before the window ended: --dedupe-max reached
    Counter commit_queue;          // gauge: requests waiting for the committer
    Counter commit_refused;        // requests refused: the committer's queue was full
    Counter cursor_advances;       // SyncOnce cursor advances taken (a session's RECVACKs of one loop iteration make one)
    Counter commit_conflicts;      // shared store: batches prepared again (another node moved a counter)
    Counter commit_latency_us[kLatencyBuckets];  // one store commit (write + fsync by policy)
    Counter commit_batch_messages[kLatencyBuckets];  // messages per commit, bucket i: [2^i, 2^(i+1))
    // Fan-out.
    alignas(kCacheLine) Counter fanout_messages;  // messages fanned out
    Counter deliveries;            // delivery envelopes handed to workers
    Counter deliveries_refused;    // dropped after a worker's inbox stayed full for 10 s (the fan-out waits for room until then)
    Counter offline_receivers;     // subscribers with no receiving session on this node (in a cluster: of messages stored here)
    Counter fanout_queue;          // gauge: messages waiting for fan-out
    Counter conversation_updates;  // (user, conversation) updates by stored messages
    Counter fanout_no_receivers;   // messages delivered to nobody here: no receivers named and the channel not in memory
    Counter fanout_held;           // cluster: messages held back until an earlier seq of their channel arrived
    Counter fanout_hold_expired;   // cluster: holds ended with the earlier seq still missing (left to sync)
    // Conversations' flusher (im/conversations.h).
    alignas(kCacheLine) Counter conversation_flushes;        // store batches of changed conversations
    Counter conversation_flush_failures; // batches the store refused (kept dirty, retried)
    Counter conversation_users;          // gauge: users with conversations in memory
    Counter conversation_evictions;      // users evicted past --conversation-users-max (under the lists' mutex)
    // Webhook sender (webhook/webhook.h); counts made on other threads are
    // published by the sender thread.
    alignas(kCacheLine) Counter webhook_calls;  // HTTP requests completed (any status)
    Counter webhook_failures;             // non-200 answers, timeouts, connection errors
    Counter webhook_online_queue;         // gauge: user.onlinestatus entries waiting
    Counter webhook_online_dropped;       // entries dropped: their in-memory queue was full
    Counter webhook_offline_dropped;      // msg.offline calls dropped: queue full or failed (one attempt)
    Counter webhook_notify_queue;         // gauge: msg.notify events in the durable queue
    Counter webhook_notify_sent;          // msg.notify events the receiver took (HTTP 200)
    Counter webhook_notify_dropped;       // messages not queued: the durable queue was at its bound
    // Datasource client (SERVER.md §13), on the committer thread.
    alignas(kCacheLine) Counter datasource_calls;
    Counter datasource_failures;          // timeouts, non-200, malformed answers (the SEND got reason 0)
    // Cluster (cluster/redis_cluster.h): the sending thread writes the
    // first group, the receiving thread the second; `dropped` (any thread
    // that queues, and the sending thread) and `redis_errors` (both
    // threads) are written with add_shared().
    alignas(kCacheLine) Counter cluster_nodes;  // gauge: live nodes registered, this one included
    Counter cluster_events_out;           // events sent to the other nodes (a message, a login, a change)
    Counter cluster_events_dropped;       // not sent: Redis down or the send queue full
    Counter cluster_redis_errors;         // Redis commands or connections that failed (both threads)
    alignas(kCacheLine) Counter cluster_connected;  // gauge: 1 while this node hears the others
    Counter cluster_events_in;            // events other nodes sent here
    Counter cluster_resyncs;              // reconnections after which the caches were read again
    Counter cluster_events_rejected;      // events dropped: bad MAC (forged) or sealed too long ago (replayed)
    Counter cluster_events_missed;        // events trimmed from this node's stream before it read them
};

// Per-connection traffic, indexed [worker * slots_per_worker + slot], where
// slot is the connection's direct-descriptor index. Reset when a slot is
// reused; `generation` tells a reader whether the slot is live (odd) or free.
struct ConnCounters {
    std::atomic<uint32_t> generation;
    std::atomic<uint32_t> packets_in;
    std::atomic<uint32_t> packets_out;
    std::atomic<uint32_t> bytes_in_kib;  // KiB, so a u32 does not wrap in practice
};
static_assert(sizeof(ConnCounters) == 16);

struct Header {
    uint64_t magic;              // kMagic, written last at start-up
    uint32_t layout_version;     // kLayoutVersion
    uint32_t header_size;        // sizeof(Header)
    uint64_t total_size;         // bytes of the whole segment
    int32_t pid;                 // the writing server
    uint32_t workers;            // WorkerBlocks in use
    uint64_t start_time_unix_ms;
    uint64_t max_conns;          // --max-conns
    uint64_t capacity;           // workers * slots_per_worker
    uint32_t slots_per_worker;   // fixed-file table size of each ring
    uint32_t worker_block_size;  // sizeof(WorkerBlock)
    uint64_t workers_offset;     // offset of WorkerBlock[workers]
    uint64_t conns_offset;       // offset of ConnCounters[workers * slots_per_worker]
    uint64_t pipeline_offset;    // offset of the PipelineBlock
    uint16_t port;
    uint8_t mode_test;           // 1 when the token check is off
    uint8_t io_backend;          // kIoBackendNames: the workers' kernel interface (0 from servers before it)
    uint8_t reserved[4];
    char instance[64];           // NUL-terminated instance name
    // Name of close reason code i, NUL-terminated; empty = code not used.
    char close_reason_names[kMaxCloseReasons][kCloseReasonNameSize];
};

inline constexpr size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
inline constexpr size_t workers_offset() { return align_up(sizeof(Header), kCacheLine); }
// The worker blocks take room for header.workers only, so the cap costs
// nothing to a small server.
inline constexpr size_t conns_offset(uint32_t workers) { return workers_offset() + sizeof(WorkerBlock) * workers; }
inline constexpr size_t pipeline_offset(uint32_t workers, uint32_t slots_per_worker) {
    return align_up(conns_offset(workers) + sizeof(ConnCounters) * size_t(workers) * slots_per_worker, kCacheLine);
}
inline constexpr size_t segment_size(uint32_t workers, uint32_t slots_per_worker) {
    return align_up(pipeline_offset(workers, slots_per_worker) + sizeof(PipelineBlock), 4096);
}

// "/dev/shm/limaoim-<instance>"; the server uses the TCP port as the instance
// name unless --instance says otherwise.
inline constexpr const char* kSegmentDir = "/dev/shm";
inline constexpr const char* kSegmentPrefix = "limaoim-";

}  // namespace limaoim::stats
