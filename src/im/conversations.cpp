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
    options_.users_max = std::max<uint32_t>(options_.users_max, 1);
}

Conversations::~Conversations() { stop(); }

std::string Conversations::log_of(std::string_view uid, std::string_view channel_id, uint8_t type) {
    return store::log_name(type, type == kPersonChannel ? fake_channel_id(uid, channel_id) : std::string(channel_id));
}

bool Conversations::load(const Channels& channels, std::string& error) {
    // The first `users_max` lists found warm the memory; the rest stay in the store.
    bool stored_any = false;
    store::Status status = store_.load_conversations([&](store::UserConversations&& user) {
        stored_any = true;
        if (users_.size() >= options_.users_max) return;
        UserList& list = add_user(user.uid);
        list.items = std::move(user.conversations);
        make_evictable(list);
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
    if (applied.empty() && !stored_any) {
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
    // The replay made a partial user of each user it changed that was not
    // loaded: this flush merges them with their stored lists.
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
        evict();
        wake = dirty_users_.size() >= options_.flush_users;
    }
    if (wake) wake_.notify_one();
}

void Conversations::apply_locked(const MessageView& m, std::span<const std::string> receivers, int64_t now_ms,
                                 bool persist) {
    for (const std::string& uid : receivers) {
        UserList* found;
        if (persist) {
            // Not in memory: a partial user, merged with the stored list
            // later, off this thread (see the top of conversations.h).
            auto [user_it, created] = users_.try_emplace(uid);
            found = &user_it->second;
            if (created) {
                found->uid = &user_it->first;
                found->complete = false;
            }
        } else {
            // Another node writes this list: only a complete one here follows it.
            auto user_it = users_.find(uid);
            if (user_it == users_.end() || !user_it->second.complete) continue;
            found = &user_it->second;
            touch(*found);
        }
        UserList& list = *found;
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

Conversations::UserList& Conversations::add_user(std::string_view uid) {
    auto [it, created] = users_.try_emplace(std::string(uid));
    it->second.uid = &it->first;
    return it->second;
}

void Conversations::mark_dirty(const std::string& uid, UserList& list) {
    if (list.dirty) return;
    unlink(list);  // written at the next flush: never evicted before
    list.dirty = true;
    dirty_users_.push_back(uid);
}

void Conversations::make_evictable(UserList& list) {
    if (list.evictable) return;
    list.evictable = true;
    list.older = newest_evictable_;
    list.newer = nullptr;
    (newest_evictable_ ? newest_evictable_->newer : oldest_evictable_) = &list;
    newest_evictable_ = &list;
}

void Conversations::unlink(UserList& list) {
    if (!list.evictable) return;
    list.evictable = false;
    (list.newer ? list.newer->older : newest_evictable_) = list.older;
    (list.older ? list.older->newer : oldest_evictable_) = list.newer;
    list.newer = list.older = nullptr;
}

void Conversations::touch(UserList& list) {
    if (!list.evictable || newest_evictable_ == &list) return;
    unlink(list);
    make_evictable(list);
}

void Conversations::erase_user(Users::iterator it) {
    unlink(it->second);
    users_.erase(it);
}

void Conversations::evict(const UserList* keep) {
    while (users_.size() > options_.users_max && oldest_evictable_ && oldest_evictable_ != keep) {
        erase_user(users_.find(*oldest_evictable_->uid));
        stats_.conversation_evictions.add();
    }
    stats_.conversation_users.set(users_.size());
}

std::vector<Conversation> Conversations::merged(std::vector<Conversation> stored,
                                                const std::vector<Conversation>& changes, uint32_t max) {
    std::vector<Conversation> out;
    out.reserve(std::min<size_t>(max, stored.size() + changes.size()));
    std::vector<bool> taken(stored.size());
    for (const Conversation& change : changes) {
        if (out.size() >= max) break;
        Conversation c = change;
        for (size_t i = 0; i < stored.size(); ++i) {
            const Conversation& s = stored[i];
            if (taken[i] || s.channel_type != c.channel_type || s.channel_id != c.channel_id) continue;
            taken[i] = true;
            c.unread += s.unread;
            c.version = std::max(c.version, s.version);
            if (c.last_msg_seq != 0 && s.last_msg_seq > c.last_msg_seq) {  // the stored one is newer
                c.timestamp = s.timestamp;
                c.last_msg_seq = s.last_msg_seq;
                c.last_client_msg_no = std::move(stored[i].last_client_msg_no);
                c.last_msg_id = s.last_msg_id;
            }
            break;
        }
        out.push_back(std::move(c));
    }
    for (size_t i = 0; i < stored.size() && out.size() < max; ++i)
        if (!taken[i]) out.push_back(std::move(stored[i]));
    return out;
}

Conversations::UserList* Conversations::complete_user(std::string_view uid, bool load_missing,
                                                      std::unique_lock<std::mutex>& lock, store::Status& status) {
    status = store::Status::success();
    auto it = users_.find(uid);
    if (it != users_.end() && it->second.complete) {
        touch(it->second);
        return &it->second;
    }
    if (it == users_.end() && !load_missing) return nullptr;
    lock.unlock();
    // Under flush_mutex_ the stored list cannot change before the merge
    // below. Without it a flush could write this user (merged with what is
    // read here) and the user be evicted meanwhile: the list read here,
    // older, would come back without the flushed changes.
    std::lock_guard flushing(flush_mutex_);
    const std::string key(uid);
    std::vector<std::vector<Conversation>> read;
    status = store_.get_conversations({&key, 1}, read);
    lock.lock();
    if (!status) return nullptr;
    std::vector<Conversation>& stored = read.front();
    it = users_.find(uid);
    if (it == users_.end()) {
        if (stored.empty()) return nullptr;  // no list anywhere: nothing kept
        UserList& list = add_user(uid);
        list.items = std::move(stored);
        make_evictable(list);
        evict(&list);
        return &list;
    }
    UserList& list = it->second;
    // Still partial (the flusher completes users under flush_mutex_ too,
    // so it cannot have merged it meanwhile); dirty, so written next flush.
    if (!list.complete) {
        list.items = merged(std::move(stored), list.items, options_.max_per_user);
        list.complete = true;
    }
    return &list;
}

store::Status Conversations::list(std::string_view uid, std::vector<Conversation>& out) {
    out.clear();
    store::Status status;
    std::unique_lock lock(mutex_);
    if (const UserList* user = complete_user(uid, true, lock, status)) out = by_timestamp(user->items);
    return status;
}

store::Status Conversations::changed_since(std::string_view uid, int64_t version, std::vector<Conversation>& out) {
    out.clear();
    store::Status status;
    std::unique_lock lock(mutex_);
    const UserList* user = complete_user(uid, true, lock, status);
    if (!user) return status;
    for (const Conversation& c : user->items)
        if (version <= 0 || c.version > version) out.push_back(c);
    out = by_timestamp(std::move(out));
    return status;
}

bool Conversations::set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t unread,
                               store::Status& status, bool persist) {
    {
        std::unique_lock lock(mutex_);
        UserList* user = complete_user(uid, persist, lock, status);
        if (!user) return false;
        auto& items = user->items;
        auto it = std::find_if(items.begin(), items.end(),
                               [&](const Conversation& c) { return c.channel_type == type && c.channel_id == channel_id; });
        if (it == items.end()) return false;
        it->unread = unread;
        it->version = wall_ms();
        std::rotate(items.begin(), it, it + 1);
        mark_dirty(*user->uid, *user);
    }
    status = persist ? flush(true) : store::Status::success();
    return true;
}

store::Status Conversations::remove(const std::vector<std::string>& uids, std::string_view channel_id, uint8_t type,
                                    bool persist) {
    {
        std::unique_lock lock(mutex_);
        for (const std::string& uid : uids) {
            store::Status status;
            UserList* user = complete_user(uid, persist, lock, status);
            if (!status) return status;
            if (!user) continue;
            auto& items = user->items;
            auto it = std::find_if(items.begin(), items.end(), [&](const Conversation& c) {
                return c.channel_type == type && c.channel_id == channel_id;
            });
            if (it == items.end()) continue;
            items.erase(it);
            mark_dirty(*user->uid, *user);
        }
    }
    return persist ? flush(true) : store::Status::success();
}

store::Status Conversations::flush(bool sync) {
    std::lock_guard flushing(flush_mutex_);
    store::WriteBatch batch;
    std::vector<size_t> partial;  // in batch.conversations: users holding only their changes
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
        // The lists as they are with these seqs: a list written with later
        // changes than its seqs say would count them again in a replay.
        std::vector<std::string> users;
        users.swap(dirty_users_);
        for (const std::string& uid : users) {
            auto it = users_.find(uid);
            if (it == users_.end()) continue;
            it->second.dirty = false;
            if (!it->second.complete) partial.push_back(batch.conversations.size());
            batch.conversations.push_back({uid, it->second.items});
        }
        for (const auto& [log, seq] : dirty_seqs_) batch.conversation_seqs.push_back({log, seq});
        dirty_seqs_.clear();
    }
    // The partial users' stored lists, read here and not on the fan-out
    // thread. flush_mutex_ keeps every other list write of this node out
    // until this batch is written, so what is read is what the batch replaces.
    store::Status status;
    std::vector<std::vector<Conversation>> stored;
    if (!partial.empty()) {
        std::vector<std::string> uids;
        uids.reserve(partial.size());
        for (size_t index : partial) uids.push_back(batch.conversations[index].uid);
        status = store_.get_conversations(uids, stored);
    }
    if (status && !partial.empty()) {
        std::lock_guard lock(mutex_);
        for (size_t i = 0; i < partial.size(); ++i) {
            store::UserConversations& user = batch.conversations[partial[i]];
            // In memory: the stored list plus every change so far (those of
            // this batch and any made since), complete from now on.
            auto it = users_.find(user.uid);
            if (it != users_.end() && !it->second.complete) {
                it->second.items = merged(stored[i], it->second.items, options_.max_per_user);
                it->second.complete = true;
            }
            user.conversations = merged(std::move(stored[i]), user.conversations, options_.max_per_user);
        }
    }
    if (status) status = store_.commit(batch, sync);
    if (status) {
        unsynced_ = !sync;
        stats_.conversation_flushes.add();
        // Written: the users not changed since may be evicted now, and a
        // user left with nothing (deleted by the batch) goes.
        std::lock_guard lock(mutex_);
        for (const store::UserConversations& user : batch.conversations) {
            auto it = users_.find(user.uid);
            if (it == users_.end() || it->second.dirty || !it->second.complete) continue;
            if (it->second.items.empty())
                erase_user(it);
            else
                make_evictable(it->second);
        }
        evict();
        return status;
    }
    // Nothing of the batch was written: its users and seqs are dirty again
    // (a user's list is rewritten whole, so the current one is what goes
    // next; a user the store could not be read for is still partial).
    stats_.conversation_flush_failures.add();
    std::lock_guard lock(mutex_);
    for (store::UserConversations& user : batch.conversations) {
        auto it = users_.find(user.uid);
        if (it != users_.end()) mark_dirty(it->first, it->second);
    }
    for (const store::WriteBatch::Counter& counter : batch.conversation_seqs) {
        uint32_t& seq = dirty_seqs_[counter.log];
        seq = std::max(seq, counter.value);
    }
    return status;
}

}  // namespace limaoim::im
