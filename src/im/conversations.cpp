#include "limaoim/im/conversations.h"
#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"

#include <pthread.h>

#include <algorithm>
#include <queue>
#include <chrono>
#include <cstdio>

namespace limaoim::im {

namespace {

using clock::wall_ms;

// The conversation key of `message` for `uid` (§11): the peer for person
// chats (the channel itself when the API sent it without a sender).
std::string_view seen_channel_id(const MessageView& message, std::string_view uid) {
    if (message.channel_type != kPersonChannel || message.from_uid.empty()) return message.channel_id;
    return uid == message.from_uid ? message.channel_id : message.from_uid;
}

std::vector<Conversation> by_timestamp(std::vector<Conversation> items) {
    std::stable_sort(items.begin(), items.end(),
                     [](const Conversation& a, const Conversation& b) { return a.timestamp > b.timestamp; });
    return items;
}

}  // namespace

Conversations::Conversations(store::Store& store, stats::PipelineBlock& stats, const ConversationOptions& options)
    : store_(store), stats_(stats), options_(options) {
    options_.max_per_user = std::max<uint32_t>(options_.max_per_user, 1);
}

Conversations::~Conversations() { stop(); }

std::string Conversations::log_of(std::string_view uid, std::string_view channel_id, uint8_t type) {
    return store::log_name(type, type == kPersonChannel ? fake_channel_id(uid, channel_id) : std::string(channel_id));
}

bool Conversations::load(const Channels& channels, std::string& error) {
    store::Status status = store_.load_conversations([&](store::UserConversations&& user) {
        UserList& list = users_[user.uid];
        list.items = std::move(user.conversations);
    });
    std::unordered_map<std::string, uint32_t> applied;
    if (status)
        status = store_.load_conversation_seqs(
            [&](std::string_view log, uint32_t seq) { applied.emplace(std::string(log), seq); });
    struct Behind {
        std::string log;
        uint32_t done, last;  // the lists include seqs <= done; the log ends at last
    };
    std::vector<Behind> behind;
    if (status)
        status = store_.load_channel_seqs([&](std::string_view log, uint32_t seq) {
            auto it = applied.find(std::string(log));
            const uint32_t done = it == applied.end() ? 0 : it->second;
            if (seq > done) behind.push_back({std::string(log), done, seq});
        });
    if (!status) {
        error = "conversations: " + status.error;
        return false;
    }

    // A store written before conversations existed (no list, no seq at all):
    // its history is not replayed into unread counts nobody had; the lists
    // start now. The empty log name marks the store as keeping
    // conversations, so that after this start a crash before the first
    // flush still replays.
    if (applied.empty() && users_.empty()) {
        if (!behind.empty())
            log::write(log::Level::Info, "conversations",
                       "the store has no conversations yet: they start empty (%zu channel logs not replayed)",
                       behind.size());
        for (const Behind& b : behind) dirty_seqs_[b.log] = b.last;
        behind.clear();
        dirty_seqs_[std::string()] = 0;
    }

    // Replay in commit order across every log (message ids are ascending in
    // commit order): the lists' recency order, and so what the per-user cap
    // drops, come out as they were. A merge over the logs, a page of each at a time.
    struct Cursor {
        const Behind* log;
        uint32_t next_seq;             // the first seq not yet read
        std::vector<std::string> page;  // read, not yet applied
        size_t at = 0;
        bool ended = false;
    };
    constexpr uint32_t kPage = 64;
    std::vector<Cursor> cursors;
    cursors.reserve(behind.size());
    for (const Behind& b : behind) cursors.push_back({&b, b.done + 1, {}, 0, false});
    auto fill = [&](Cursor& c) {
        if (c.at < c.page.size() || c.ended) return store::Status::success();
        c.page.clear();
        c.at = 0;
        store::Status read = store_.read_messages(c.log->log, c.next_seq, 0, {.count = kPage}, c.page);
        if (read && c.page.size() < kPage) c.ended = true;
        if (read && !c.page.empty())
            if (std::optional<MessageView> last = decode(c.page.back())) c.next_seq = last->message_seq + 1;
        return read;
    };
    // (next message id, cursor index), smallest id first.
    std::priority_queue<std::pair<int64_t, size_t>, std::vector<std::pair<int64_t, size_t>>, std::greater<>> next;
    auto push_next = [&](size_t index) {
        Cursor& c = cursors[index];
        for (;;) {
            if (store::Status read = fill(c); !read) return read;
            if (c.at >= c.page.size()) return store::Status::success();  // this log is done
            if (std::optional<MessageView> m = decode(c.page[c.at])) {
                next.emplace(m->message_id, index);
                return store::Status::success();
            }
            ++c.at;  // a corrupt value: skipped
        }
    };
    for (size_t i = 0; i < cursors.size() && status; ++i) status = push_next(i);
    const int64_t now_ms = wall_ms();
    std::vector<std::string> receivers;
    size_t replayed = 0;
    while (status && !next.empty()) {
        const size_t index = next.top().second;
        next.pop();
        Cursor& c = cursors[index];
        const std::optional<MessageView> m = decode(c.page[c.at]);
        receivers.clear();
        if (m->channel_type == kPersonChannel) {
            person_receivers(*m, receivers);
        } else if (auto channel = channels.find(m->channel_type, m->channel_id)) {
            receivers = channel->subscribers;
        }
        apply_locked(*m, receivers, now_ms, true);
        ++replayed;
        ++c.at;
        status = push_next(index);
    }
    if (!status) {
        error = "conversations: replay of a channel log: " + status.error;
        return false;
    }
    for (const Behind& b : behind) dirty_seqs_[b.log] = b.last;
    if (replayed) log::write(log::Level::Info, "conversations", "%zu stored messages replayed", replayed);
    status = flush(true);
    if (!status) {
        error = "conversations: " + status.error;
        return false;
    }
    stats_.conversation_users.set(users_.size());
    return true;
}

void Conversations::start() {
    thread_ = std::thread([this] { run(); });
    pthread_setname_np(thread_.native_handle(), "conversations");
}

void Conversations::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
}

void Conversations::run() {
    for (;;) {
        bool stopping;
        {
            std::unique_lock lock(mutex_);
            wake_.wait_for(lock, std::chrono::milliseconds(options_.flush_ms),
                           [this] { return stopping_ || dirty_users_.size() >= options_.flush_users; });
            stopping = stopping_;
        }
        const store::Status status = flush(stopping);
        if (!status) log::write(log::Level::Error, "conversations", "flush failed (kept, retried): %s", status.error.c_str());
        if (stopping) return;
    }
}

void Conversations::apply(const MessageView& message, std::span<const std::string> receivers, bool persist) {
    const int64_t now_ms = wall_ms();
    bool wake;
    {
        std::lock_guard lock(mutex_);
        apply_locked(message, receivers, now_ms, persist);
        if (persist && message.message_seq) {
            uint32_t& seq = dirty_seqs_[store::log_name(message.channel_type, log_channel_id(message))];
            seq = std::max(seq, message.message_seq);
        }
        wake = dirty_users_.size() >= options_.flush_users;
        stats_.conversation_users.set(users_.size());
    }
    if (wake) wake_.notify_one();
}

void Conversations::apply_locked(const MessageView& m, std::span<const std::string> receivers, int64_t now_ms,
                                 bool persist) {
    for (const std::string& uid : receivers) {
        auto [user_it, created] = users_.try_emplace(uid);
        UserList& list = user_it->second;
        const std::string_view channel_id = seen_channel_id(m, uid);
        auto it = std::find_if(list.items.begin(), list.items.end(), [&](const Conversation& c) {
            return c.channel_type == m.channel_type && c.channel_id == channel_id;
        });
        const bool counts_unread = m.red_dot() && uid != m.from_uid;
        if (it == list.items.end()) {
            if (list.items.size() >= options_.max_per_user) list.items.pop_back();  // least recently used
            Conversation c;
            c.channel_id = channel_id;
            c.channel_type = m.channel_type;
            list.items.insert(list.items.begin(), std::move(c));
            it = list.items.begin();
        } else {
            std::rotate(list.items.begin(), it, it + 1);  // now the most recently used
            it = list.items.begin();
        }
        Conversation& c = *it;
        if (counts_unread) ++c.unread;
        c.version = now_ms;
        // A newer message (by seq; temporary channels have none) moves the conversation on.
        if (c.last_msg_id == 0 || m.message_seq == 0 || m.message_seq > c.last_msg_seq) {
            c.timestamp = m.timestamp;
            c.last_msg_seq = m.message_seq;
            c.last_client_msg_no = m.client_msg_no;
            c.last_msg_id = m.message_id;
        }
        if (persist) mark_dirty(uid, list);
        stats_.conversation_updates.add();
    }
}

void Conversations::mark_dirty(const std::string& uid, UserList& list) {
    if (list.dirty) return;
    list.dirty = true;
    dirty_users_.push_back(uid);
}

std::vector<Conversation> Conversations::list(std::string_view uid) {
    std::lock_guard lock(mutex_);
    auto it = users_.find(uid);
    if (it == users_.end()) return {};
    return by_timestamp(it->second.items);
}

std::vector<Conversation> Conversations::changed_since(std::string_view uid, int64_t version) {
    std::vector<Conversation> out;
    std::lock_guard lock(mutex_);
    auto it = users_.find(uid);
    if (it == users_.end()) return out;
    for (const Conversation& c : it->second.items)
        if (version <= 0 || c.version > version) out.push_back(c);
    return by_timestamp(std::move(out));
}

bool Conversations::set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t unread,
                               store::Status& status, bool persist) {
    {
        std::lock_guard lock(mutex_);
        auto user = users_.find(uid);
        if (user == users_.end()) return false;
        auto& items = user->second.items;
        auto it = std::find_if(items.begin(), items.end(),
                               [&](const Conversation& c) { return c.channel_type == type && c.channel_id == channel_id; });
        if (it == items.end()) return false;
        it->unread = unread;
        it->version = wall_ms();
        std::rotate(items.begin(), it, it + 1);
        mark_dirty(user->first, user->second);
    }
    status = persist ? flush(true) : store::Status::success();
    return true;
}

store::Status Conversations::remove(const std::vector<std::string>& uids, std::string_view channel_id, uint8_t type,
                                    bool persist) {
    {
        std::lock_guard lock(mutex_);
        for (const std::string& uid : uids) {
            auto user = users_.find(uid);
            if (user == users_.end()) continue;
            auto& items = user->second.items;
            auto it = std::find_if(items.begin(), items.end(), [&](const Conversation& c) {
                return c.channel_type == type && c.channel_id == channel_id;
            });
            if (it == items.end()) continue;
            items.erase(it);
            mark_dirty(user->first, user->second);
        }
    }
    return persist ? flush(true) : store::Status::success();
}

store::Status Conversations::flush(bool sync) {
    std::lock_guard flushing(flush_mutex_);
    store::WriteBatch batch;
    std::vector<std::string> users;
    {
        std::unique_lock lock(mutex_);
        if (dirty_users_.empty() && dirty_seqs_.empty()) {
            lock.unlock();  // the fan-out's apply() does not wait for a sync
            // The flusher may have written this edit first, without a sync.
            if (!sync || !unsynced_) return store::Status::success();
            store::Status synced = store_.sync();
            if (synced) unsynced_ = false;
            return synced;
        }
        users.swap(dirty_users_);
        for (const std::string& uid : users) {
            auto it = users_.find(uid);
            if (it == users_.end()) continue;
            it->second.dirty = false;
            batch.conversations.push_back({uid, it->second.items});
            if (it->second.items.empty()) users_.erase(it);  // deleted in the store with this batch
        }
        for (const auto& [log, seq] : dirty_seqs_) batch.conversation_seqs.push_back({log, seq});
        dirty_seqs_.clear();
        stats_.conversation_users.set(users_.size());
    }
    store::Status status = store_.commit(batch, sync);
    if (status) {
        unsynced_ = !sync;
        stats_.conversation_flushes.add();
        return status;
    }
    // Nothing of the batch was written: its users and seqs are dirty again
    // (a user's list is rewritten whole, so the current one is what goes next).
    stats_.conversation_flush_failures.add();
    std::lock_guard lock(mutex_);
    for (store::UserConversations& user : batch.conversations) {
        auto [it, created] = users_.try_emplace(user.uid);
        if (created) it->second.items = std::move(user.conversations);
        mark_dirty(it->first, it->second);
    }
    for (const store::WriteBatch::Counter& counter : batch.conversation_seqs) {
        uint32_t& seq = dirty_seqs_[counter.log];
        seq = std::max(seq, counter.value);
    }
    return status;
}

}  // namespace limaoim::im
