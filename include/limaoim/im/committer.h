// The committer: the one thread that makes messages durable (SERVER.md §5
// steps 5-8, §17).
//
// Workers (SENDs) and API threads (/message/send, syncack) queue requests;
// the committer takes every request queued so far (group commit: under the
// `group` policy it first waits up to the commit window for more), and for
// the whole batch, in queue order:
//   - answers a client's resend of (uid, client_msg_no) seen within the
//     dedupe window with the first message's id and seq, storing nothing;
//   - gives each message its id and, when persisted, the next seq of its
//     channel log (person messages: the fake channel); SyncOnce messages get
//     a copy in every subscriber's queue with that user's next queue seq;
//   - writes all of it in one store batch, fsync'd by the durability policy.
// Only then does each requester get its answer (a worker an envelope, an API
// thread its waiter), and the messages go to the fan-out thread in the same
// order. One thread hands out every seq and writes in seq order, so seqs are
// gapless per channel and the stored order is the seq order, however many
// workers send to one channel. Seqs are read from the store the first time a
// log is used, so they continue across restarts; a batch the store refuses
// hands its seqs out again (nothing of it was written).
//
// Several nodes on one shared store (Redis) each run a committer: a batch
// states the counters it read, and the store refuses it whole when another
// node moved one (or stored one of its SENDs, resent here): the committer
// reads the counters again, learns the other node's dedupe records and
// prepares the batch again (store.h). Seqs stay gapless and in stored order
// per channel across nodes.
//
// A networked store may lose a commit's reply (Status::unknown): the batch
// may be written. The committer then asks the store for the outcome
// (commit_outcome, with backoff, up to outcome_wait_ms; its SENDs wait
// meanwhile): written, it is answered and fanned out as any other; not
// written (and fenced, so a late copy never lands), it is prepared again.
// Still unknown after the wait, its SENDs get reason 0, but the batch is
// kept, seqs, dedupe keys and fan-out included: every later batch first
// asks for its outcome again and fails with reason 0 until the store
// answers. So a resend of one of its SENDs is either a dedupe hit of the
// stored message (which is fanned out once, when its outcome is learned)
// or, if it was not written, stored then: never stored twice, never stored
// and not delivered.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "limaoim/im/channels.h"
#include "limaoim/im/events.h"
#include "limaoim/im/ids.h"
#include "limaoim/im/message.h"
#include "limaoim/net/conn_id.h"
#include "limaoim/net/envelope.h"
#include "limaoim/stats/layout.h"
#include "limaoim/store/store.h"
#include "limaoim/util/lru_map.h"
#include "limaoim/util/work_queue.h"

namespace limaoim::im {

enum class Durability : uint8_t {
    Group,  // one fsync per batch; a batch gathers for up to the commit window
    Sync,   // one fsync per batch, written as soon as the committer is free
    None,   // no fsync: a crash loses what the OS had not written (benchmarks)
};
const char* to_string(Durability durability);

struct CommitterOptions {
    Durability durability = Durability::Group;
    uint32_t commit_window_us = 1000;   // Group: how long a batch may wait for company
    uint32_t max_batch = 4096;          // messages per store batch
    uint32_t max_queued = 1u << 18;     // requests waiting before submit() refuses
    uint32_t dedupe_window_ms = 300000; // a resend within this is answered, not stored again
    uint32_t dedupe_max = 1000000;      // remembered (uid, client_msg_no) at most
    uint32_t outcome_wait_ms = 3000;    // a lost commit reply: how long to ask the store for its outcome
    // Seq counters and cursors kept in memory, per kind, at most (about
    // 120 B each): past it the least recently used are dropped, read again
    // from the store when next needed, so a sender to ever new uids cannot
    // grow them, and busy logs stay cached.
    uint32_t max_cached_counters = 1u << 18;
};

// How the committer answers a worker: an envelope of the worker's family.
struct SendResultRoute {
    net::EnvelopeSink* worker = nullptr;
    uint16_t kind = 0;
};

// An API thread waits on this for its request's outcome.
struct CommitWaiter {
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;
    bool ok = false;
    std::string error;
    uint32_t value = 0;       // syncack: the cursor after the update; a message: its seq
    int64_t message_id = 0;   // a message: the id it was stored under

    // The committer waits at most outcome_wait_ms for a lost reply's outcome,
    // a full worker inbox or fan-out queue a little: far below this.
    static constexpr std::chrono::seconds kWaitLimit{60};

    void finish(bool success, std::string message = {}, uint32_t result = 0);
    // Until finished, or `limit` passed (then it is a failure: an API call
    // never hangs on a stuck committer).
    void wait(std::chrono::milliseconds limit = kWaitLimit);
};

struct CommitRequest {
    enum class Kind : uint8_t { Send, CursorAdvance };
    Kind kind = Kind::Send;
    uint8_t sender_device = 0;  // fan-out skips this session of the sender (§8 step 2)
    uint32_t client_seq = 0;    // echoed in the SENDACK
    net::ConnId origin;         // the sending session; empty for the API
    SendResultRoute route;      // where the SENDACK result goes (workers only)
    // Send: the encoded message (im/message.h), no id and no seq yet; the
    // committer fills them in place (it is the only holder until it commits).
    net::Payload message;
    // API messages with an explicit receiver list (§16.2 `subscribers`).
    std::shared_ptr<const std::vector<std::string>> receivers;
    std::shared_ptr<CommitWaiter> waiter;  // API requests
    // A message to a temporary channel through the API: delivered, not
    // stored, no seq (§7.3; the original consumes a seq for it, leaving a gap).
    bool transient = false;
    // The sender's permission could not be judged on the worker (the
    // channel is not cached from the datasource yet): submit() parks it with
    // the ChannelResolver, which hands it back `judged` (its SENDACK reason;
    // only 1 is stored). Its result envelope carries kResolvedResult.
    bool resolve = false;
    static constexpr uint8_t kNotJudged = 0xff;
    uint8_t judged = kNotJudged;
    // CursorAdvance.
    std::string uid;
    uint32_t cursor = 0;        // as asked
    uint32_t cursor_after = 0;  // as advanced: the answer
    bool failed = false;        // answered with an error already (a retried batch skips it)
};

// What the fan-out thread gets for each stored (or NoPersist) message.
struct FanoutItem {
    net::Payload message;  // id and seq filled in
    uint8_t sender_device = 0;
    std::shared_ptr<const std::vector<std::string>> receivers;  // null: the channel's subscribers
    // SyncOnce: each subscriber's queue seq, carried in its RECV (§8 step 3).
    std::vector<std::pair<std::string, uint32_t>> queue_seqs;
    // Stored by another node (im/cluster.h): this node delivers it to its own
    // sessions and keeps conversations; the storing node tells the others
    // and the business server.
    bool remote = false;
};

class Fanout;

// Where a request marked `resolve` waits while its channel is loaded from
// the datasource (im/resolver.h), off the committer thread.
class ChannelResolver {
public:
    virtual ~ChannelResolver() = default;
    // Takes the request, never waits; it comes back through submit() with
    // `judged` set. False: refused now (the caller answers it reason 0).
    virtual bool park(CommitRequest&& request) = 0;
};

// In a SEND result envelope's flags, above the reason byte: the SEND waited
// for the datasource, so its result comes out of submission order.
inline constexpr uint16_t kResolvedResult = 0x100;

class Committer {
public:
    // The SENDACK result envelope: flags = reason code, arg = origin ConnId,
    // arg32 = client_seq, payload = the message (its id and seq, or for a
    // dedupe hit the first message's).
    Committer(store::Store& store, const Channels& channels, IdGenerator& ids, Fanout& fanout,
              stats::PipelineBlock& stats, const CommitterOptions& options);
    ~Committer();  // stop()
    Committer(const Committer&) = delete;
    Committer& operator=(const Committer&) = delete;

    // Before start(): where msg.notify events go (null: no webhook, none queued).
    void set_events(Events* events) { events_ = events; }
    // Before start(): who judges requests marked `resolve` (the datasource mode).
    void set_resolver(ChannelResolver* resolver) { resolver_ = resolver; }
    // stop() has begun: submit() refuses from now on.
    bool stopping();
    // Loads the dedupe window from the store; starts the thread.
    bool start(std::string& error);
    // Any thread. False when the queue is full or the committer stopped:
    // the caller answers with an error at once (never dropped silently).
    bool submit(CommitRequest&& request);
    // Commits what is queued, then joins the thread.
    void stop();

private:
    struct DedupeEntry {
        int64_t time_ms;
        int64_t message_id;
        uint32_t message_seq;
    };
    // (uid, client_msg_no) as 128 bits of two keyed SipHashes: a fixed-size
    // key, no string per entry. Two different pairs share one only with
    // probability ~n²/2^129 (n = --dedupe-max): never, in practice.
    struct DedupeKey {
        uint64_t a, b;
        bool operator==(const DedupeKey&) const = default;
    };
    struct DedupeKeyHash {
        size_t operator()(const DedupeKey& k) const { return size_t(k.a); }
    };
    DedupeKey dedupe_key(std::string_view uid, std::string_view client_msg_no) const;

    // A batch retried this often on conflicts (shared stores) fails.
    static constexpr uint32_t kMaxConflictRetries = 8;
    // A counter this batch changed: what it was before, what it is now.
    struct CounterChange {
        uint32_t previous;
        uint32_t value;
    };
    using CounterChanges = std::unordered_map<std::string, CounterChange>;
    // One kind of counter (a log's last seq, a user's last queue seq, a
    // user's cursor): the committer's copies, the least recently used
    // dropped past max_cached_counters, and how the store reads one.
    struct CounterCache {
        util::LruMap<std::string, uint32_t> values;
        store::Status (store::Store::*read)(std::string_view key, uint32_t& value);
        const char* what;  // for the log
    };

    void run();
    void process(std::vector<CommitRequest>& batch);
    store::Status commit_with_retries(std::vector<CommitRequest>& batch, int64_t now_ms);
    store::Status prepare_and_commit(std::vector<CommitRequest>& batch, int64_t now_ms);
    // After a lost reply: asks the store whether batch_ was written, with
    // backoff, until it answers or outcome_wait_ms passed.
    store::Status await_outcome(bool& written);
    void keep_unresolved();
    // Asks once for the kept batch's outcome; false while it is unknown.
    bool settle_unresolved();
    void count_stored(const store::WriteBatch& written);
    void forget_batch();
    void clear_batch();
    // Past max_cached_counters, drops the least recently used counters.
    void trim_counters();
    // Learns the store's records of the batch's SENDs; a failure when they
    // are not known to be on the replicas a SENDACK promises.
    store::Status learn_remote_dedupe(const std::vector<CommitRequest>& batch, int64_t now_ms);
    uint8_t prepare_send(CommitRequest& request, int64_t now_ms, FanoutItem& item, bool& duplicate);
    void prepare_cursor(CommitRequest& request);
    // The committer's copy of a counter, read from the store on first use;
    // null when the store fails. Valid until trim_counters() or forget_batch().
    uint32_t* counter(CounterCache& counters, const std::string& key);
    // The next seq of `key`'s log or queue, noted in this batch's `changes`.
    bool next_seq(CounterCache& counters, CounterChanges& changes, const std::string& key, uint32_t& seq);
    void expire_dedupe(int64_t now_ms);
    // `error`: why the SENDs with reason 0 failed, for API waiters.
    void answer(std::vector<CommitRequest>& batch, const std::vector<uint8_t>& reasons, const std::string& error);
    std::vector<std::string> subscribers_of(const MessageView& message, const CommitRequest& request) const;

    store::Store& store_;
    const Channels& channels_;
    IdGenerator& ids_;
    Fanout& fanout_;
    stats::PipelineBlock& stats_;
    CommitterOptions options_;
    Events* events_ = nullptr;
    ChannelResolver* resolver_ = nullptr;

    // Up to max_queued requests, taken max_batch at a time by the committer's thread.
    util::WorkQueue<CommitRequest> queue_;

    // The committer thread's own state.
    store::WriteBatch batch_;
    CounterCache channel_seqs_{{}, &store::Store::channel_seq, "a channel seq"};  // last seq handed out, per log
    CounterCache queue_seqs_{{}, &store::Store::queue_seq, "a queue seq"};        // per uid
    CounterCache cursors_{{}, &store::Store::cursor, "a sync cursor"};            // per uid
    // What this batch changed, written as its counters (and forgotten if it fails).
    CounterChanges batch_channel_seqs_;
    CounterChanges batch_queue_seqs_;
    std::unordered_map<std::string, uint32_t> batch_cursors_;
    std::array<uint64_t, 2> dedupe_hash_keys_[2];  // per process, from getrandom()
    std::vector<DedupeKey> batch_dedupe_keys_;  // added by this batch, forgotten if it fails
    uint64_t next_batch_id_ = 0;  // WriteBatch::id, from a random start: unique per node
    // A batch whose commit outcome is still unknown: what it changed, kept
    // until the store says whether it was written.
    struct Unresolved {
        store::WriteBatch batch;
        std::vector<FanoutItem> fanout_items;
        CounterChanges channel_seqs, queue_seqs;
        std::unordered_map<std::string, uint32_t> cursors;
        std::vector<DedupeKey> dedupe_keys;
    };
    std::optional<Unresolved> unresolved_;
    std::unordered_map<DedupeKey, DedupeEntry, DedupeKeyHash> dedupe_;
    std::deque<std::pair<int64_t, DedupeKey>> dedupe_order_;  // oldest first
    int64_t last_dedupe_expiry_ms_ = 0;
    std::vector<uint8_t> reasons_;
    std::vector<FanoutItem> fanout_items_;
    std::unordered_map<net::EnvelopeSink*, std::vector<net::Envelope>> results_;  // SENDACK results per worker
};

}  // namespace limaoim::im
