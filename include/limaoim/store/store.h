// What the IM core keeps durably (SERVER.md §17), whatever engine keeps it.
//
// The embedded engine (RocksDB, store/rocksdb_store.cpp) is the default; the
// Redis engine of a later milestone implements the same interface. No
// engine's types appear here, and the IM core sees only this header.
//
// Threads: every call may block on disk or network, so none is ever made on
// a worker ring. The IM core calls commit() and the seq/cursor reads from its
// one committer thread, the rest from the API's pool threads and at start.
// Implementations are thread-safe.
//
// Shared stores (shared() true: the Redis engine, store/redis_store.cpp)
// are written by several nodes at once. There a committer's counters may be
// stale: commit() checks each channel and queue counter's `previous` and
// each dedupe record's (uid, client_msg_no) before writing anything, and
// fails with `conflict` set when another node got there first (the caller
// reloads the counters, asks find_dedupe and redoes its batch). The embedded
// engine has one writer and never conflicts.
//
// Keys: a message log is named by log_name(channel_type, channel_id) (person
// messages under the fake channel id, SERVER.md §7.1); a user's SyncOnce
// queue by the uid. Seqs start at 1.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace limaoim::store {

struct [[nodiscard]] Status {
    bool ok = true;
    std::string error;  // what failed, for logs and the API's 500 answer
    bool conflict = false;  // shared stores: commit() found a counter or dedupe record moved; nothing written
    // commit() on a networked store: the request may have been carried out
    // (a reply lost, a timeout after sending): ask commit_outcome(). Without
    // it a failed commit wrote nothing.
    bool unknown = false;
    // commit() succeeded (readers see the batch) without the durability
    // asked for: fewer replicas than RedisOptions::wait_replicas have it.
    bool unreplicated = false;

    static Status success() { return {}; }
    static Status written_unreplicated(std::string message) { return {true, std::move(message), false, false, true}; }
    static Status failure(std::string message) { return {false, std::move(message)}; }
    static Status conflicted(std::string message) { return {false, std::move(message), true}; }
    static Status outcome_unknown(std::string message) { return {false, std::move(message), false, true}; }
    explicit operator bool() const { return ok; }
};

// A message log's name: the channel type byte, then the channel id.
inline std::string log_name(uint8_t channel_type, std::string_view channel_id) {
    std::string name(1, char(channel_type));
    name.append(channel_id);
    return name;
}

struct TokenRecord {
    std::string uid;
    uint8_t device_flag = 0;
    std::array<uint8_t, 32> digest{};  // SHA-256 of the token (im/token_cache.h)
    uint8_t device_level = 0;
};

// A channel's durable state (SERVER.md §7.2-7.5). Person channels (type 1,
// id = the uid) exist for their lists; fake channels are never stored here.
struct ChannelRecord {
    std::string id;
    uint8_t type = 0;
    std::string parent;  // the API's `bind`: everyone counts as a subscriber when set
    std::vector<std::string> subscribers;
    std::vector<std::string> allowlist;
    std::vector<std::string> denylist;
};

// A SEND the dedupe window remembers (im/committer.h): a client's resend of
// (uid, client_msg_no) gets the first one's id and seq.
struct DedupeRecord {
    int64_t time_ms = 0;  // when it was first stored (wall clock)
    std::string uid;
    std::string client_msg_no;
    int64_t message_id = 0;
    uint32_t message_seq = 0;
};

// One of a user's recent chats (SERVER.md §11), as the user sees it.
struct ConversationRecord {
    std::string channel_id;  // the peer uid for person chats
    uint8_t channel_type = 0;
    uint32_t unread = 0;
    int64_t timestamp = 0;   // of the last message, seconds
    uint32_t last_msg_seq = 0;
    std::string last_client_msg_no;
    int64_t last_msg_id = 0;
    int64_t version = 0;     // ms when last changed
    bool operator==(const ConversationRecord&) const = default;
};

// A user's whole list, most recently used first; empty deletes it.
struct UserConversations {
    std::string uid;
    std::vector<ConversationRecord> conversations;
};

// A msg.notify event (SERVER.md §12.4): the message, keyed by its id.
struct NotifyEvent {
    int64_t id = 0;  // the message id: ascending in commit order, unique
    std::vector<uint8_t> bytes;
};

// How much one read_messages or read_queue takes: at most `count` messages,
// and none after the one that brings the bytes read (the encoded messages)
// past `bytes`. That one is kept, so a read whose range holds a message
// returns one at least and a reader pages on; a read stopped by `bytes` is
// thus one whose messages hold more than `bytes` (spent()). The engine stops
// reading there: a page's memory is `bytes` plus one message (plus, for a
// networked engine, the rest of the round trip it read last), not `count`
// messages. `newest`: the range is read from its top down, so a read cut
// short keeps the newest of the range (a client paging back) instead of the
// oldest; `out` is ascending either way.
struct ReadLimit {
    uint32_t count = 0;
    size_t bytes = std::numeric_limits<size_t>::max();
    bool newest = false;

    bool spent(size_t bytes_read) const { return bytes_read > bytes; }
};

// One atomic write: everything in it is on disk together or not at all.
// `bytes` are im/message.h encodings; the engine stores them as they are.
struct WriteBatch {
    struct Append {
        std::string log;  // log_name() for a channel log, the uid for a queue
        uint32_t seq = 0;
        std::vector<uint8_t> bytes;
    };
    struct Counter {
        std::string log;  // as above
        uint32_t value = 0;
        // channel_seqs and queue_seqs: the value the committer read before
        // this batch; a shared store writes nothing unless it still holds it.
        // Cursors and conversation_seqs only grow in a shared store (the
        // larger of stored and `value` is kept); `previous` is unused there.
        uint32_t previous = 0;
    };
    std::vector<Append> messages;         // channel logs
    std::vector<Append> queue_messages;   // users' SyncOnce queues
    std::vector<Counter> channel_seqs;    // last seq handed out per channel log
    std::vector<Counter> queue_seqs;      // last seq handed out per user queue
    std::vector<Counter> cursors;         // users' SyncOnce cursors
    std::vector<DedupeRecord> dedupe;
    std::vector<NotifyEvent> notify;      // appended to the msg.notify queue
    int64_t max_message_id = 0;           // 0 = unchanged; ids stay unique across restarts
    // The writer's name for this batch, unique per node for far longer than
    // any outcome stays unknown: commit_outcome() looks it up.
    uint64_t id = 0;
    // Conversations (im/conversations.h): users' lists replaced whole, and
    // per channel log the last seq they include.
    std::vector<UserConversations> conversations;
    std::vector<Counter> conversation_seqs;

    bool empty() const {
        return messages.empty() && queue_messages.empty() && channel_seqs.empty() && queue_seqs.empty() &&
               cursors.empty() && dedupe.empty() && notify.empty() && max_message_id == 0 &&
               conversations.empty() && conversation_seqs.empty();
    }
    void clear() { *this = WriteBatch{}; }
};

class Store {
public:
    virtual ~Store() = default;
    virtual const char* engine() const = 0;
    // Other nodes write to this store too (see the top of this file).
    virtual bool shared() const = 0;

    // ---- tokens (SERVER.md §16.1) ----
    virtual Status put_token(const TokenRecord& token) = 0;
    virtual Status load_tokens(const std::function<void(TokenRecord&&)>& each) = 0;

    // ---- channels ----
    // Replaces the whole record.
    virtual Status put_channel(const ChannelRecord& channel) = 0;
    // Deletes the record and the channel's message log (SERVER.md S5,
    // compatible rule); its seq counter stays, so a re-created channel never
    // hands out a seq twice.
    virtual Status delete_channel(uint8_t type, std::string_view id) = 0;
    virtual Status load_channels(const std::function<void(ChannelRecord&&)>& each) = 0;
    // One channel's record (`found` false when there is none): what a node
    // reads again when another node changed the channel.
    virtual Status get_channel(uint8_t type, std::string_view id, ChannelRecord& out, bool& found) = 0;
    virtual Status put_system_uids(const std::vector<std::string>& uids) = 0;  // the whole set
    virtual Status load_system_uids(std::vector<std::string>& uids) = 0;

    // ---- messages ----
    // `sync`: on disk (fsync of the write-ahead log) before it returns.
    virtual Status commit(const WriteBatch& batch, bool sync) = 0;
    // Every earlier commit on disk, as if each had been made with `sync`.
    virtual Status sync() = 0;
    // After commit() failed with `unknown`: whether `batch` (by its id) was
    // written. When not, it never will be: a copy of the request that
    // arrives later is refused (fenced), so the caller may prepare the
    // batch again. A failure here leaves the outcome unknown (ask again).
    // Engines whose commit() never answers `unknown` keep this default.
    virtual Status commit_outcome(const WriteBatch& batch, bool& written) {
        (void)batch;
        written = false;
        return Status::failure(std::string(engine()) + ": commit outcomes are always known");
    }
    // The last seq handed out (0: none yet).
    virtual Status channel_seq(std::string_view log, uint32_t& seq) = 0;
    virtual Status queue_seq(std::string_view uid, uint32_t& seq) = 0;
    virtual Status cursor(std::string_view uid, uint32_t& seq) = 0;
    virtual Status max_message_id(int64_t& id) = 0;
    // Encoded messages of a channel log with from_seq <= seq < to_seq
    // (to_seq 0: no upper bound), ascending, within `limit`, appended to `out`.
    virtual Status read_messages(std::string_view log, uint32_t from_seq, uint32_t to_seq, const ReadLimit& limit,
                                 std::vector<std::string>& out) = 0;
    // A user's queue messages with seq > after_seq, ascending, within `limit`.
    virtual Status read_queue(std::string_view uid, uint32_t after_seq, const ReadLimit& limit,
                              std::vector<std::string>& out) = 0;

    // Every channel log's last seq handed out, in no particular order.
    virtual Status load_channel_seqs(const std::function<void(std::string_view log, uint32_t seq)>& each) = 0;

    // ---- conversations ----
    virtual Status load_conversations(const std::function<void(UserConversations&&)>& each) = 0;
    // Users' stored lists, out[i] uids[i]'s (empty when it has none): what
    // im/conversations.h reads for users it does not hold in memory (a
    // networked engine reads them in few round trips).
    virtual Status get_conversations(std::span<const std::string> uids,
                                     std::vector<std::vector<ConversationRecord>>& out) = 0;
    // Per channel log, the last seq the stored conversations include.
    virtual Status load_conversation_seqs(const std::function<void(std::string_view log, uint32_t seq)>& each) = 0;

    // ---- msg.notify queue ----
    // Events with id > after_id, ascending, at most `limit`.
    virtual Status read_notify(int64_t after_id, uint32_t limit, std::vector<NotifyEvent>& out) = 0;
    // Removes the events with first_id <= id <= last_id.
    virtual Status delete_notify(int64_t first_id, int64_t last_id) = 0;
    virtual Status count_notify(uint64_t& count) = 0;

    // ---- health ----
    // Whether the store can take writes now: the engine's own state and a
    // file created, written and synced in its directory (a read-only or full
    // disk shows here before a commit fails). False with `why` otherwise.
    virtual bool writable(std::string& why) = 0;

    // ---- dedupe window ----
    // Records with time_ms >= since_ms, oldest first.
    virtual Status load_dedupe(int64_t since_ms, const std::function<void(DedupeRecord&&)>& each) = 0;
    virtual Status expire_dedupe(int64_t before_ms) = 0;
    // The record of (uid, client_msg_no) with time_ms >= since_ms, if one is
    // stored (`found`). The committer asks after a conflict, when another
    // node may have stored the SEND it is about to store. The embedded engine
    // answers by scanning the window (its committer never needs to ask).
    virtual Status find_dedupe(std::string_view uid, std::string_view client_msg_no, int64_t since_ms,
                               DedupeRecord& out, bool& found) = 0;
    // Each of `records` (found above) is still stored as found, and on the
    // replicas the engine waits for after a commit (RedisOptions::
    // wait_replicas); a failure says which is not. A record found may be on
    // the master alone (its batch's WAIT fell short or its reply was lost),
    // or on a master that a failover has just replaced: acking a resend from
    // it would skip the durability asked for. Success at once with no
    // replicas to wait for, and for the embedded engine.
    virtual Status confirm_dedupe(const std::vector<DedupeRecord>& records) = 0;
};

// The embedded engine in `dir` (created when missing). The directory carries
// a format version: another version is refused with a message saying so,
// never rewritten. Nullptr with `error` set on failure.
std::unique_ptr<Store> open_embedded(const std::string& dir, std::string& error);

struct RedisOptions {
    // redis://HOST:PORT[/DB] or redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]
    std::string url;
    std::string password;       // AUTH password when not in the URL (redis_password_file)
    uint32_t node_id = 1;       // the msg.notify queue and max message id are this node's own
    uint32_t timeout_ms = 2000; // connect and command timeout; a call that takes longer fails
    // SENDACK durability (docs/REDIS.md): after each commit, WAIT for this
    // many replicas (0: the master's own appendfsync setting is the durability).
    uint32_t wait_replicas = 0;
    uint32_t wait_timeout_ms = 1000;
    uint32_t log_max = 0;       // messages kept per channel log, oldest trimmed first (0: all)
    uint32_t dedupe_window_ms = 300000;  // a dedupe record's time to live (at least 1)
};

// The Redis engine (redis/client.h parses the URL). Fails (nullptr,
// `error`) when the URL is bad, the first connection cannot be made or the
// server is not a master.
std::unique_ptr<Store> open_redis(const RedisOptions& options, std::string& error);

}  // namespace limaoim::store
