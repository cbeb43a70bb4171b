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

    // ---- API threads ----
    // The user's conversations, timestamp descending. (Reading a whole list
    // leaves its recency order as it is: every item was read alike.)
    std::vector<Conversation> list(std::string_view uid);
    // Those with version > `version` (all when version <= 0), timestamp descending.
    std::vector<Conversation> changed_since(std::string_view uid, int64_t version);
    // unread := `unread`; false when the user has no such conversation
    // (nothing to change). `persist`: flushed and synced before it returns,
    // the result in `status`; false: another node made the edit and stored
    // it, and this node writes its list with its next background flush (so
    // a copy it was writing meanwhile cannot outlive the edit).
    bool set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t unread,
                    store::Status& status, bool persist = true);
    // Removes the conversation from each user's list; `persist` as above.
    store::Status remove(const std::vector<std::string>& uids, std::string_view channel_id, uint8_t type,
                         bool persist = true);

    // The log a user's conversation reads its messages from.
    static std::string log_of(std::string_view uid, std::string_view channel_id, uint8_t type);

private:
    struct UserList {
        std::vector<Conversation> items;  // most recently used first
        bool dirty = false;
    };

    void apply_locked(const MessageView& message, std::span<const std::string> receivers, int64_t now_ms,
                      bool persist);
    void mark_dirty(const std::string& uid, UserList& list);
    // Writes every change so far; `sync` when an API edit waits for it.
    store::Status flush(bool sync);
    void run();

    store::Store& store_;
    stats::PipelineBlock& stats_;
    ConversationOptions options_;

    std::mutex mutex_;  // the lists and what is dirty
    std::condition_variable wake_;
    std::unordered_map<std::string, UserList, StringHash, std::equal_to<>> users_;
    std::vector<std::string> dirty_users_;
    std::unordered_map<std::string, uint32_t> dirty_seqs_;  // per log: last seq applied since the last flush
    bool stopping_ = false;

    std::mutex flush_mutex_;  // one flush at a time: the flusher's or an API edit's
    // A flush without sync wrote something since the last synced one (under
    // flush_mutex_): an API edit the flusher wrote first still needs a sync.
    bool unsynced_ = false;
    std::thread thread_;
};

}  // namespace limaoim::im
