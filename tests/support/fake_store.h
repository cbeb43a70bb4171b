// An in-memory store::Store for unit tests of the IM core, with switches
// that make its calls fail.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <iterator>
#include <vector>

#include "limaoim/store/store.h"

namespace limaoim::testing {

// An in-memory store: channel logs, users' queues, the counters, cursors and
// the dedupe window in maps; commit() applies a whole batch or nothing.
class FakeStore : public store::Store {
public:
    struct Stored {
        uint32_t seq;
        std::vector<uint8_t> bytes;
    };

    // Switches (any thread).
    std::atomic<bool> fail_commit{false};
    std::atomic<bool> fail_channel_seq{false};
    std::atomic<bool> fail_queue_seq{false};
    std::atomic<bool> fail_load_dedupe{false};
    // As a shared store (Redis) behaves: commit() checks each counter's
    // `previous` and each dedupe record's absence, and conflicts otherwise.
    std::atomic<bool> shared_mode{false};
    size_t conflicts = 0;
    // A lost reply (as the Redis engine reports one): the next this many
    // commits answer `unknown`, after writing the batch or without.
    std::atomic<int> lose_reply_after_write{0};
    std::atomic<int> lose_reply_unwritten{0};
    // The next this many commits are written without the replicas asked for.
    std::atomic<int> unreplicated_commits{0};
    // The next this many commit_outcome() calls fail (the store still unreachable).
    std::atomic<int> fail_outcome{0};
    // commit_outcome() finds a written batch without the replicas asked for
    // (as the Redis engine with wait_replicas does: its WAIT cannot tell).
    std::atomic<bool> outcome_unreplicated{false};
    // confirm_dedupe() fails: what this node read is on the master alone.
    std::atomic<bool> reads_unreplicated{false};
    size_t confirm_dedupe_calls = 0;
    std::set<uint64_t> written_ids, fenced_ids;  // WriteBatch ids
    size_t outcome_calls = 0;

    mutable std::mutex mutex;
    std::map<std::string, std::vector<Stored>> logs;    // in append order
    std::map<std::string, std::vector<Stored>> queues;  // in append order
    std::map<std::string, uint32_t> channel_seqs, queue_seqs, cursors;
    std::vector<store::DedupeRecord> dedupe;
    std::map<int64_t, std::vector<uint8_t>> notify;
    std::map<std::string, std::vector<store::ConversationRecord>> conversations;
    std::map<std::string, uint32_t> conversation_seqs;
    int64_t max_id = 0;
    std::vector<int64_t> batch_max_ids;  // per successful commit
    std::vector<size_t> batch_messages;  // channel-log messages per successful commit
    size_t commits = 0, failed_commits = 0, expire_calls = 0;
    std::vector<bool> sync_flags;

    const char* engine() const override { return "fake"; }
    bool shared() const override { return shared_mode; }
    store::Status put_token(const store::TokenRecord&) override { return {}; }
    store::Status load_tokens(const std::function<void(store::TokenRecord&&)>&) override { return {}; }
    store::Status put_channel(const store::ChannelRecord&) override { return {}; }
    store::Status delete_channel(uint8_t, std::string_view) override { return {}; }
    store::Status load_channels(const std::function<void(store::ChannelRecord&&)>&) override { return {}; }
    store::Status get_channel(uint8_t, std::string_view, store::ChannelRecord&, bool& found) override {
        found = false;
        return {};
    }
    store::Status put_system_uids(const std::vector<std::string>&) override { return {}; }
    store::Status load_system_uids(std::vector<std::string>&) override { return {}; }

    store::Status commit(const store::WriteBatch& batch, bool sync) override {
        std::lock_guard lock(mutex);
        if (fail_commit) {
            ++failed_commits;
            return store::Status::failure("disk on fire");
        }
        if (fenced_ids.count(batch.id)) return store::Status::failure("fenced");
        if (lose_reply_unwritten > 0) {
            --lose_reply_unwritten;
            return store::Status::outcome_unknown("reply lost before the write");
        }
        if (shared_mode) {
            auto stored = [](const std::map<std::string, uint32_t>& m, const std::string& k) {
                auto it = m.find(k);
                return it == m.end() ? 0u : it->second;
            };
            bool moved = false;
            for (const auto& c : batch.channel_seqs) moved |= stored(channel_seqs, c.log) != c.previous;
            for (const auto& c : batch.queue_seqs) moved |= stored(queue_seqs, c.log) != c.previous;
            for (const auto& d : batch.dedupe)
                for (const auto& have : dedupe) moved |= have.uid == d.uid && have.client_msg_no == d.client_msg_no;
            if (moved) {
                ++conflicts;
                return store::Status::conflicted("a counter moved");
            }
        }
        ++commits;
        sync_flags.push_back(sync);
        for (const auto& a : batch.messages) logs[a.log].push_back({a.seq, a.bytes});
        for (const auto& a : batch.queue_messages) queues[a.log].push_back({a.seq, a.bytes});
        for (const auto& c : batch.channel_seqs) channel_seqs[c.log] = c.value;
        for (const auto& c : batch.queue_seqs) queue_seqs[c.log] = c.value;
        for (const auto& c : batch.cursors) cursors[c.log] = shared_mode ? std::max(cursors[c.log], c.value) : c.value;
        for (const auto& d : batch.dedupe) dedupe.push_back(d);
        for (const auto& n : batch.notify) notify[n.id] = n.bytes;
        for (const auto& u : batch.conversations) {
            if (u.conversations.empty())
                conversations.erase(u.uid);
            else
                conversations[u.uid] = u.conversations;
        }
        for (const auto& c : batch.conversation_seqs) conversation_seqs[c.log] = c.value;
        if (batch.max_message_id) max_id = batch.max_message_id;
        batch_max_ids.push_back(batch.max_message_id);
        batch_messages.push_back(batch.messages.size());
        written_ids.insert(batch.id);
        if (lose_reply_after_write > 0) {
            --lose_reply_after_write;
            return store::Status::outcome_unknown("reply lost after the write");
        }
        if (unreplicated_commits > 0) {
            --unreplicated_commits;
            return store::Status::written_unreplicated("acknowledged by only 0 of 1 replicas");
        }
        return {};
    }
    store::Status commit_outcome(const store::WriteBatch& batch, bool& written) override {
        std::lock_guard lock(mutex);
        ++outcome_calls;
        if (fail_outcome > 0) {
            --fail_outcome;
            return store::Status::failure("still unreachable");
        }
        written = written_ids.count(batch.id) > 0;
        if (!written) fenced_ids.insert(batch.id);
        if (written && outcome_unreplicated) return store::Status::written_unreplicated("replicas unknown");
        return {};
    }
    size_t channel_seq_reads = 0;
    store::Status channel_seq(std::string_view log, uint32_t& seq) override {
        if (fail_channel_seq) return store::Status::failure("channel_seq failed");
        std::lock_guard lock(mutex);
        ++channel_seq_reads;
        auto it = channel_seqs.find(std::string(log));
        seq = it == channel_seqs.end() ? 0 : it->second;
        return {};
    }
    store::Status queue_seq(std::string_view uid, uint32_t& seq) override {
        if (fail_queue_seq) return store::Status::failure("queue_seq failed");
        std::lock_guard lock(mutex);
        auto it = queue_seqs.find(std::string(uid));
        seq = it == queue_seqs.end() ? 0 : it->second;
        return {};
    }
    store::Status cursor(std::string_view uid, uint32_t& seq) override {
        std::lock_guard lock(mutex);
        auto it = cursors.find(std::string(uid));
        seq = it == cursors.end() ? 0 : it->second;
        return {};
    }
    store::Status max_message_id(int64_t& id) override {
        std::lock_guard lock(mutex);
        id = max_id;
        return {};
    }
    store::Status read_messages(std::string_view log, uint32_t from_seq, uint32_t to_seq, const store::ReadLimit& limit,
                                std::vector<std::string>& out) override {
        std::lock_guard lock(mutex);
        auto it = logs.find(std::string(log));
        if (it == logs.end()) return {};
        read_range(it->second, uint64_t(from_seq), to_seq == 0 ? uint64_t(1) << 32 : to_seq, limit, out);
        return {};
    }
    store::Status read_queue(std::string_view uid, uint32_t after_seq, const store::ReadLimit& limit,
                             std::vector<std::string>& out) override {
        std::lock_guard lock(mutex);
        auto it = queues.find(std::string(uid));
        if (it == queues.end()) return {};
        read_range(it->second, uint64_t(after_seq) + 1, uint64_t(1) << 32, limit, out);
        return {};
    }
    store::Status load_channel_seqs(const std::function<void(std::string_view, uint32_t)>& each) override {
        std::lock_guard lock(mutex);
        for (const auto& [log, seq] : channel_seqs) each(log, seq);
        return {};
    }
    store::Status load_conversations(const std::function<void(store::UserConversations&&)>& each) override {
        std::lock_guard lock(mutex);
        for (const auto& [uid, list] : conversations) each(store::UserConversations{uid, list});
        return {};
    }
    size_t conversation_reads = 0;  // get_conversations() calls
    // Called by get_conversations() after it read, before it returns, on the caller's thread.
    std::function<void()> on_conversation_read;
    store::Status get_conversations(std::span<const std::string> uids,
                                    std::vector<std::vector<store::ConversationRecord>>& out) override {
        {
            std::lock_guard lock(mutex);
            ++conversation_reads;
            out.clear();
            for (const std::string& uid : uids) {
                auto it = conversations.find(uid);
                out.push_back(it == conversations.end() ? std::vector<store::ConversationRecord>{} : it->second);
            }
        }
        if (on_conversation_read) on_conversation_read();
        return {};
    }
    store::Status load_conversation_seqs(const std::function<void(std::string_view, uint32_t)>& each) override {
        std::lock_guard lock(mutex);
        for (const auto& [log, seq] : conversation_seqs) each(log, seq);
        return {};
    }
    store::Status read_notify(int64_t after_id, uint32_t limit, std::vector<store::NotifyEvent>& out) override {
        std::lock_guard lock(mutex);
        for (auto it = notify.upper_bound(after_id); it != notify.end() && limit > 0; ++it, --limit)
            out.push_back({it->first, it->second});
        return {};
    }
    store::Status delete_notify(int64_t first_id, int64_t last_id) override {
        std::lock_guard lock(mutex);
        notify.erase(notify.lower_bound(first_id), notify.upper_bound(last_id));
        return {};
    }
    store::Status count_notify(uint64_t& count) override {
        std::lock_guard lock(mutex);
        count = notify.size();
        return {};
    }
    bool writable(std::string&) override { return true; }
    store::Status load_dedupe(int64_t since_ms, const std::function<void(store::DedupeRecord&&)>& each) override {
        if (fail_load_dedupe) return store::Status::failure("load_dedupe failed");
        std::vector<store::DedupeRecord> copy;
        {
            std::lock_guard lock(mutex);
            for (const auto& d : dedupe)
                if (d.time_ms >= since_ms) copy.push_back(d);
        }
        std::stable_sort(copy.begin(), copy.end(), [](auto& a, auto& b) { return a.time_ms < b.time_ms; });
        for (auto& d : copy) each(std::move(d));
        return {};
    }
    store::Status expire_dedupe(int64_t before_ms) override {
        std::lock_guard lock(mutex);
        ++expire_calls;
        std::erase_if(dedupe, [&](const store::DedupeRecord& d) { return d.time_ms < before_ms; });
        return {};
    }

    store::Status find_dedupe(std::string_view uid, std::string_view client_msg_no, int64_t since_ms,
                              store::DedupeRecord& out, bool& found) override {
        std::lock_guard lock(mutex);
        found = false;
        for (const auto& d : dedupe)
            if (d.uid == uid && d.client_msg_no == client_msg_no && d.time_ms >= since_ms) {
                out = d;
                found = true;
            }
        return {};
    }
    size_t syncs = 0;  // sync() calls
    store::Status sync() override {
        std::lock_guard lock(mutex);
        ++syncs;
        return {};
    }
    store::Status confirm_dedupe(const std::vector<store::DedupeRecord>&) override {
        std::lock_guard lock(mutex);
        ++confirm_dedupe_calls;
        if (reads_unreplicated) return store::Status::failure("fake: confirm_dedupe: on 0 of 1 replicas");
        return {};
    }

    // Test-side readers.
    std::vector<Stored> log(uint8_t type, std::string_view id) const {
        std::lock_guard lock(mutex);
        auto it = logs.find(store::log_name(type, id));
        return it == logs.end() ? std::vector<Stored>{} : it->second;
    }
    std::vector<Stored> queue(const std::string& uid) const {
        std::lock_guard lock(mutex);
        auto it = queues.find(uid);
        return it == queues.end() ? std::vector<Stored>{} : it->second;
    }
    uint32_t counter(const std::map<std::string, uint32_t>& m, const std::string& key) const {
        std::lock_guard lock(mutex);
        auto it = m.find(key);
        return it == m.end() ? 0 : it->second;
    }
    uint32_t channel_counter(uint8_t type, std::string_view id) const {
        return counter(channel_seqs, store::log_name(type, id));
    }
    size_t total_logged() const {
        std::lock_guard lock(mutex);
        size_t n = 0;
        for (auto& [name, v] : logs) n += v.size();
        return n;
    }
    size_t total_queued() const {
        std::lock_guard lock(mutex);
        size_t n = 0;
        for (auto& [name, v] : queues) n += v.size();
        return n;
    }
    int64_t max_id_now() const {
        std::lock_guard lock(mutex);
        return max_id;
    }

private:
    // The stored entries with first <= seq < end within `limit`, as the engines read them.
    static void read_range(const std::vector<Stored>& entries, uint64_t first, uint64_t end,
                           const store::ReadLimit& limit, std::vector<std::string>& out) {
        std::vector<std::string> taken;
        size_t bytes = 0;
        auto take = [&](const Stored& s) {
            if (s.seq < first || s.seq >= end || taken.size() >= limit.count || limit.spent(bytes)) return;
            taken.emplace_back(s.bytes.begin(), s.bytes.end());
            bytes += s.bytes.size();
        };
        if (limit.newest) {
            std::for_each(entries.rbegin(), entries.rend(), take);
            std::reverse(taken.begin(), taken.end());
        } else {
            std::for_each(entries.begin(), entries.end(), take);
        }
        out.insert(out.end(), std::make_move_iterator(taken.begin()), std::make_move_iterator(taken.end()));
    }
};

}  // namespace limaoim::testing
