// The other nodes, over Redis (im/cluster.h on hiredis; docs/REDIS.md "Nodes").
//
// - Registry: `lim:node:{ID}` holds this node's boot token with a TTL,
//   refreshed every refresh_ms by the sending thread, and `lim:nodes:live`
//   lists the live ids. A second node with the same id finds it held and
//   refuses to start; a node that died stops counting once its entry expires.
// - Events: each node reads its own stream `lim:bus:{ID}` (XREAD, from the
//   last entry it read); an event is XADDed to the stream of every other
//   live node (the registry, read at each refresh), trimmed to about
//   bus_max_events. A node whose connection broke reads on where it left
//   off, so it misses nothing unless more than bus_max_events were sent to
//   it meanwhile (counted in cluster_events_missed; caches then read
//   again, messages left to sync). Messages carry the stored bytes; the
//   receiving node encrypts each RECV with its own session's key, and
//   RECVACK and retries stay there.
// - Trust: whoever can XADD on the Redis could speak for a node, so each
//   event is sealed: the sending run's random boot id, its sequence number
//   in that run, the time it was sent and an HMAC-SHA256 with the cluster
//   secret follow it. Events with a bad MAC, sealed more than
//   max_event_age_ms before or after Redis added them to the stream (its
//   entry id), or seen already (detail::ReplayGuard)
//   are dropped and counted. A token change says only "(uid, device)
//   changed": the receiving node reads the token from the store, never
//   from the event.
// - Presence: HASH `lim:pres:{UID}`, field = device flag byte, value = node
//   id: written at login, removed at logout only while it still names this
//   node. Entries of nodes no longer registered are ignored and removed by
//   the readers (/user/onlinestatus, msg.offline).
//
// Threads: one sends (a queue, pipelined XADD/HSET, the registry), one
// receives (a blocking XREAD of at most 200 ms at a time, hands events to
// the ClusterListener), and callers of online_elsewhere() lease a client
// from a redis::Pool.
// No worker thread ever talks to Redis: the workers only queue events.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "limaoim/im/cluster.h"
#include "limaoim/redis/client.h"
#include "limaoim/redis/pool.h"
#include "limaoim/stats/layout.h"

namespace limaoim::cluster {

struct Options {
    redis::Url url;
    uint32_t node_id = 1;
    uint32_t timeout_ms = 2000;    // Redis connect and command timeout
    uint32_t refresh_ms = 1000;    // registry refresh and live-node list
    uint32_t node_ttl_ms = 5000;   // a registration lives this long unrefreshed
    size_t max_queued_bytes = 64u << 20;  // events waiting to be sent; past it they are dropped
    std::string secret;                // the HMAC key every node shares (config cluster_secret)
    uint32_t max_event_age_ms = 30000; // events sealed this long before (or after) Redis added them are dropped
    uint32_t bus_max_events = 100000;  // each node's stream is trimmed to about this many events
    // The master's appendfsync is checked at start and after each
    // reconnection (durability group or sync promises it).
    bool check_fsync = false;
};

namespace detail {

// Who sealed an event: the sending run (a random id) and the event's number in it.
struct Origin {
    uint64_t boot = 0;
    uint64_t seq = 0;
    uint64_t sealed_ms = 0;  // the unix time it was sealed
};

// The events of each sending node seen so far, so a copy published again
// within the age window (by whoever can PUBLISH and captured one) is
// dropped. Per node: its current run, the highest sequence number and a
// window of the 64 below it (a node's events may arrive a little out of
// order: it seals on more than one thread). A new run is taken when its
// event was sealed after the current run's newest (a node whose clock stepped
// back across a restart is heard again once its clock passes that, within
// the age window since the newest was accepted). A node not heard from yet
// is taken only with an event sealed after this one began listening (less
// kSkewMs): a node that just started has no memory of what it saw before,
// and copies recorded then would pass. One thread; a few dozen bytes per
// node id that sent an authentic event.
class ReplayGuard {
public:
    static constexpr uint64_t kSkewMs = 5000;  // how far behind a node's clock may be
    // Called when this node starts reading its stream.
    void listening_since(uint64_t unix_ms) { not_before_ms_ = unix_ms > kSkewMs ? unix_ms - kSkewMs : 0; }
    // True the first time (node, origin) is seen; origin is unsealed, in the age window.
    bool fresh(uint16_t node, const Origin& origin);

private:
    struct Sender {
        uint64_t boot = 0;
        uint64_t highest = 0;
        uint64_t window = 0;     // bit i: highest - i was seen
        uint64_t newest_ms = 0;  // the latest seal time of this run
    };
    std::unordered_map<uint16_t, Sender> senders_;
    uint64_t not_before_ms_ = 0;
};
}  // namespace detail

class RedisCluster final : public im::Cluster {
public:
    RedisCluster(const Options& options, im::ClusterListener& listener, stats::PipelineBlock& stats);
    ~RedisCluster() override;  // stop()
    RedisCluster(const RedisCluster&) = delete;
    RedisCluster& operator=(const RedisCluster&) = delete;

    // Registers the node id, waiting up to node_ttl_ms + refresh_ms for the
    // registration of a node that died with this id to expire; false with
    // `error` when another live node holds it or Redis cannot be reached.
    // Then starts the threads.
    bool start(std::string& error);
    // Stops hearing the others (before the core stops: nothing more is
    // handed to it).
    void stop_receiving();
    // stop_receiving(), then sends what is queued (bounded by the timeout),
    // deregisters, joins. After the core's last messages.
    void stop();

    // True while this node hears the others: subscribed, the sending
    // thread's last Redis call worked, and the live-node list was read after
    // the subscription (so a node that registered meanwhile is in it, or its
    // announcement was heard). The handshake's tokens_current.
    const std::atomic<bool>& connected() const { return connected_; }
    // "HOST:PORT" of the Redis master at registration, for the start-up log.
    const std::string& master_address() const { return master_address_; }
    // The master's appendonly/appendfsync as last checked (check_fsync:
    // at start and after each reconnection; Always otherwise), and what was found.
    redis::Fsync fsync(std::string& detail) const;

    // im::Cluster
    void message_stored(const im::FanoutItem& item) override;
    void session_online(std::string_view uid, uint8_t device_flag, bool online, uint64_t login_ms) override;
    void token_changed(std::string_view uid, uint8_t device_flag, const std::array<uint8_t, 32>& digest) override;
    void channel_changed(uint8_t type, std::string_view id) override;
    void system_uids_changed() override;
    void conversation_unread_set(std::string_view uid, std::string_view channel_id, uint8_t type,
                                 uint32_t unread) override;
    void conversation_removed(const std::vector<std::string>& uids, std::string_view channel_id,
                              uint8_t type) override;
    bool online_elsewhere(const std::vector<std::string>& uids, std::vector<std::string>& out) override;

private:
    // One queued item: an event for the other nodes, and/or a presence write.
    struct Outgoing {
        std::string event;       // empty: no event
        std::string presence_uid;
        uint8_t device_flag = 0;
        bool presence_online = false;
        bool has_presence = false;
    };

    void queue(Outgoing&& item);
    void send_loop();
    void receive_loop();
    bool refresh_registry(redis::Client& client, std::string& error);
    bool send_batch(redis::Client& client, std::deque<Outgoing>& batch, std::string& error);
    void check_fsync(redis::Client& client, bool say);
    // Where a node's stream stands (XINFO STREAM), and, for this node's
    // own, how far this run has read it.
    struct BusPosition {
        bool exists = false;
        bool counted = false;        // entries-added known (Redis 7.0 and later)
        std::string last_id;         // the last entry read (own stream) or added (XINFO)
        uint64_t entries_added = 0;  // ever, as Redis counts them
        uint64_t length = 0;
        uint64_t entries_read = 0;   // own stream: entries up to last_id, as counted in entries_added
    };
    bool read_position(redis::Client& client, BusPosition& out, std::string& error);
    void check_missed(const BusPosition& now);
    void resync();  // the caches read again (the receiving thread); retried each second until it works
    // Pipelines an XADD of `sealed_event` to the stream of each node in
    // `nodes` but this one; `appended` counts the replies to read.
    bool append_event(redis::Client& client, const std::vector<uint32_t>& nodes, std::string_view sealed_event,
                      size_t& appended, std::string& error);
    // Reads `count` pipelined replies; error replies are counted and logged.
    bool read_replies(redis::Client& client, size_t count, std::string& error);
    // Tells every other live node that this one joined or left.
    bool announce(redis::Client& client, char kind, std::string& error);
    // `added_ms`: when Redis added it to the stream (its entry id).
    void receive(std::string_view sealed_event, uint64_t added_ms);
    // `event` sealed with this run's boot id and its next sequence number.
    std::string sealed(std::string_view event);
    void dispatch(std::string_view event);
    void reload_token(std::string_view uid, uint8_t device_flag);
    std::vector<uint32_t> live_nodes() const;
    void update_connected();

    Options options_;
    im::ClusterListener& listener_;
    stats::PipelineBlock& stats_;
    std::string boot_token_;  // this run's value of its registry key
    uint64_t boot_id_ = 0;    // random per run: its events' sequence numbers start again at 1
    std::atomic<uint64_t> next_seq_{1};
    std::string bus_max_;     // options_.bus_max_events, as XADD's MAXLEN argument
    BusPosition bus_;         // this node's stream: set by start(), then the receiving thread's
    std::string master_address_;

    std::mutex queue_mutex_;
    std::condition_variable queue_wake_;
    std::deque<Outgoing> queued_;
    size_t queued_bytes_ = 0;
    bool stopping_ = false;

    mutable std::mutex nodes_mutex_;
    std::vector<uint32_t> live_nodes_;  // registered ids, this one included

    redis::Client token_reader_;  // the receiving thread's, for token records

    mutable std::mutex fsync_mutex_;
    redis::Fsync fsync_ = redis::Fsync::Always;
    std::string fsync_detail_;

    redis::Pool presence_clients_;  // for online_elsewhere()

    std::atomic<bool> sender_ok_{false};
    std::atomic<bool> receiver_ok_{false};
    // The receiving thread's: an event arrived too late (this node fell
    // behind, or its clock is apart): what it said may be missing here, so
    // the caches are read again once the subscription is caught up.
    bool stale_events_seen_ = false;
    detail::ReplayGuard replay_guard_;  // the receiving thread's
    int64_t last_stale_resync_ms_ = -kStaleResyncIntervalMs;
    static constexpr int64_t kStaleResyncIntervalMs = 10000;
    // Bumped by the receiving thread at each subscription; the sending
    // thread copies it into scanned_ when it reads the live nodes next.
    std::atomic<uint64_t> subscriptions_{0};
    std::atomic<uint64_t> scanned_{0};
    std::mutex connected_mutex_;
    std::atomic<bool> connected_{false};
    std::atomic<bool> receiver_stop_{false};
    // Set by the sending thread when this node's registration had lapsed.
    std::atomic<bool> resync_requested_{false};
    int64_t resync_retry_ms_ = 0;  // the receiving thread's: when to retry a failed resync (0: none)
    std::thread sender_;
    std::thread receiver_;
};

// The event encodings, exposed for the unit test (binary, little-endian).
namespace detail {
std::string encode_message(uint32_t from_node, const im::FanoutItem& item);
bool decode_message(std::string_view event, im::FanoutItem& out);

// An event as published: `event`, then origin.boot, origin.seq and the unix
// time it was sealed (u64 ms each) and HMAC-SHA256(secret, all of those).
std::string seal(std::string_view secret, std::string_view event, uint64_t now_ms, uint64_t boot, uint64_t seq);
enum class Unsealed { Ok, Forged, Stale };
// Forged: too short, or the MAC does not match; Stale: sealed more than
// `max_age_ms` before the earlier of `added_ms` (when Redis added it, its
// entry id) and `now_ms`, or more than `max_age_ms` after `now_ms`.
// `event` and `origin` are set when Ok.
Unsealed unseal(std::string_view secret, std::string_view sealed, uint64_t added_ms, uint64_t now_ms,
                uint32_t max_age_ms, std::string_view& event, Origin& origin);
// Stream entry ids ("MS-SEQ"): the unix ms part, and their order ("" is 0-0).
uint64_t stream_id_ms(std::string_view id);
bool stream_id_less(std::string_view a, std::string_view b);

}  // namespace detail

}  // namespace limaoim::cluster
