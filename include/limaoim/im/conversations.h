// Users' recent chats with unread counts (SERVER.md §11, §16.4).
//
// Kept in memory per user, most recently used first, at most `max_per_user`
// each (the least recently used, read or updated, is dropped). The fan-out
// thread applies every stored message to each of its subscribers' lists
// (the sender's too); API threads read and edit them.
//
// Durability without a store write per message per subscriber: a flusher
// thread writes the changed users' lists in batches (every `flush_ms`, or
// once `flush_users` users changed), and with them, per channel log, the
// last seq those lists include. The messages themselves are already durable
// (the committer wrote them before fan-out saw them), so at start load()
// replays every log from its conversation seq to its channel seq: a restart
// shows every update a client could have seen, unread counts included. An
// API edit (clear/set unread, delete) is flushed, fsync'd, before it
// answers, together with every update before it, so a replay never counts
// a message again after an edit that saw it.
//
// Not covered by replay (documented): messages of temporary channels, which
// are never stored, and API messages sent to an explicit receiver list,
// replayed to the channel's subscribers instead; both are durable at the
// next flush.
//
// Bounded memory (--conversation-users-max): the store holds every list;
// memory holds at most `users_max` users plus those changed since the last
// flush (dirty ones are never evicted: they are written at the next flush,
// so they are bounded by the users one flush interval changes, or, while
// flushes fail, by the messages that still reach fan-out: the committer
// stores every message but a temporary channel's before fan-out sees it).
// Past the bound the least recently used clean user goes; it is read back
// from the store when next asked for.
//
// A user in memory is *complete* (the stored list plus every change since)
// or *partial*: apply() for a user not in memory makes one holding only the
// changes since (unread increments, newer last messages), because the
// fan-out thread, which every SEND waits on, never waits for the store. The
// flusher merges a partial user with its stored list before writing it, an
// API call before reading or editing it (merged(): unread added, the last
// message of the larger seq, the changed conversations first).
// Why the merge is exact: a user leaves memory only when clean, that is
// when the store holds what memory held; a partial user made after that
// holds every change since, and only those. Every read of a stored list for
// a merge holds flush_mutex_, as every list write of this node does, so the
// list read is the one the merged list replaces: no flush can write the
// user (and an eviction drop it) between the read and the merge. A flush
// takes each list with the per-log seqs in one step, so a replay after a
// crash never counts a message a written list already holds.
//
// Cluster: apply() with `persist` false (another node stored the message
// and writes these lists) changes only users complete in memory here; it
// makes no partial user, whose merge with the list the other node writes
// would count the message twice. A user this node does not hold is read
// from the store, which is then up to the other node's flush interval behind.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "limaoim/im/channels.h"
#include "limaoim/im/message.h"
#include "limaoim/stats/layout.h"
#include "limaoim/store/store.h"

namespace limaoim::im {

struct ConversationOptions {
    uint32_t max_per_user = 100;  // --conversation-max
    uint32_t flush_ms = 1000;     // --conversation-flush-ms
    uint32_t flush_users = 100;   // --conversation-flush-users
    uint32_t users_max = 10000;   // --conversation-users-max: clean users kept in memory
};

using Conversation = store::ConversationRecord;

class Conversations {
public:
    Conversations(store::Store& store, stats::PipelineBlock& stats, const ConversationOptions& options);
    ~Conversations();  // stop()
    Conversations(const Conversations&) = delete;
    Conversations& operator=(const Conversations&) = delete;

    // At start, before the fan-out thread runs: the stored lists, then the
    // replay of what the stored lists miss (the channels give the receivers).
    bool load(const Channels& channels, std::string& error);
    void start();
    // Joins the flusher, which flushes what changed on its way out (a
    // Conversations never started writes only through its API edits).
    void stop();

    // The fan-out thread: a persisted or temporary-channel message reached
    // `receivers` (every subscriber, the sender included). `persist` false:
    // another node stored the message and writes these lists (this node
    // keeps them in memory for its API reads; see im/cluster.h).
    // (A big group's receivers come a slice at a time: see im/fanout.h.)
    void apply(const MessageView& message, std::span<const std::string> receivers, bool persist = true);

    // ---- API threads (they may wait for the store: a user not in memory is read from it) ----
    // The user's conversations, timestamp descending, into `out`. (Reading
    // a whole list leaves its recency order as it is: every item was read alike.)
    store::Status list(std::string_view uid, std::vector<Conversation>& out);
    // Those with version > `version` (all when version <= 0), timestamp descending.
    store::Status changed_since(std::string_view uid, int64_t version, std::vector<Conversation>& out);
    // unread := `unread`; false when the user has no such conversation
    // (nothing to change) or the store could not be read (`status`).
    // `persist`: flushed and synced before it returns, the result in
    // `status`; false: another node made the edit and stored it, and this
    // node writes its list with its next background flush (so a copy it was
    // writing meanwhile cannot outlive the edit); a user not in memory here
    // is left to the store.
    bool set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t unread,
                    store::Status& status, bool persist = true);
    // Removes the conversation from each user's list; `persist` as above.
    store::Status remove(const std::vector<std::string>& uids, std::string_view channel_id, uint8_t type,
                         bool persist = true);

    // The log a user's conversation reads its messages from.
    static std::string log_of(std::string_view uid, std::string_view channel_id, uint8_t type);

    // A user's list from the stored one and the changes a partial user
    // holds (see the top): the changed conversations first, each with the
    // stored one's unread added and the last message of the larger seq
    // (seq 0, a temporary channel's, is the change's), then the stored ones
    // not changed, at most `max` in all.
    static std::vector<Conversation> merged(std::vector<Conversation> stored, const std::vector<Conversation>& changes,
                                            uint32_t max);

private:
    struct UserList {
        std::vector<Conversation> items;  // most recently used first
        bool dirty = false;
        bool complete = true;  // false: partial (see the top)
        // The users that may be evicted (clean and complete), most recently
        // used first: a list through the map's nodes, which never move.
        bool evictable = false;
        UserList* newer = nullptr;
        UserList* older = nullptr;
        const std::string* uid = nullptr;  // the map's key of this node
    };
    using Users = std::unordered_map<std::string, UserList, StringHash, std::equal_to<>>;

    void apply_locked(const MessageView& message, std::span<const std::string> receivers, int64_t now_ms,
                      bool persist);
    UserList& add_user(std::string_view uid);
    void mark_dirty(const std::string& uid, UserList& list);
    void make_evictable(UserList& list);  // the most recently used
    void unlink(UserList& list);
    void touch(UserList& list);
    void erase_user(Users::iterator it);
    // Evicts the least recently used evictable users past the bound, `keep` never.
    void evict(const UserList* keep = nullptr);
    // API threads, `lock` held on mutex_ (released while the store is read):
    // the user's complete list, read from the store and merged when the user
    // is partial or not in memory (then only with `load_missing`); nullptr
    // when the user has no list or the store failed (`status`).
    UserList* complete_user(std::string_view uid, bool load_missing, std::unique_lock<std::mutex>& lock,
                            store::Status& status);
    // Writes every change so far; `sync` when an API edit waits for it.
    store::Status flush(bool sync);
    void run();

    store::Store& store_;
    stats::PipelineBlock& stats_;
    ConversationOptions options_;

    std::mutex mutex_;  // the lists and what is dirty
    std::condition_variable wake_;
    Users users_;
    UserList* newest_evictable_ = nullptr;
    UserList* oldest_evictable_ = nullptr;
    std::vector<std::string> dirty_users_;
    std::unordered_map<std::string, uint32_t> dirty_seqs_;  // per log: last seq applied since the last flush
    bool stopping_ = false;

    // One flush at a time: the flusher's or an API edit's. Every list write
    // of this node holds it, so a store read under it sees no write between
    // the read and the merge of what it read.
    std::mutex flush_mutex_;
    // A flush without sync wrote something since the last synced one (under
    // flush_mutex_): an API edit the flusher wrote first still needs a sync.
    bool unsynced_ = false;
    std::thread thread_;
};

}  // namespace limaoim::im
