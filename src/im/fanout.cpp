#include "limaoim/im/fanout.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "limaoim/log/log.h"
#include "limaoim/net/worker.h"

namespace limaoim::im {

Fanout::Fanout(const Channels& channels, const Directory& directory, Conversations& conversations,
               stats::PipelineBlock& stats, size_t max_queued, std::chrono::milliseconds worker_stuck_limit)
    : channels_(channels), directory_(directory), conversations_(conversations), stats_(stats),
      max_queued_(max_queued), worker_stuck_limit_(worker_stuck_limit) {}

Fanout::~Fanout() { stop(); }

void Fanout::set_workers(std::span<net::Worker* const> workers, uint16_t deliver_kind) {
    workers_.assign(workers.begin(), workers.end());
    batches_.resize(workers_.size());
    stuck_.assign(workers_.size(), false);
    deliver_kind_ = deliver_kind;
}

void Fanout::start() {
    thread_ = std::thread([this] { run(); });
    pthread_setname_np(thread_.native_handle(), "fanout");
}

void Fanout::push(std::vector<FanoutItem>& items) {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [this] { return stopping_ || queued_.size() < max_queued_; });
    const bool was_empty = queued_.empty();
    for (FanoutItem& item : items) queued_.push_back(std::move(item));
    items.clear();
    stats_.fanout_queue.set(queued_.size());
    lock.unlock();
    if (was_empty) wake_.notify_one();
}

void Fanout::push_remote(FanoutItem&& item) {
    item.remote = true;
    std::vector<FanoutItem> one;
    one.push_back(std::move(item));
    push(one);
}

void Fanout::set_cluster(Cluster* cluster) {
    cluster_ = cluster;
    if (cluster_) order_.emplace(ChannelOrder::Limits{});
}

void Fanout::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    room_.notify_all();
    if (thread_.joinable()) thread_.join();
}

namespace {
int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
}  // namespace

void Fanout::run() {
    std::deque<FanoutItem> work;
    for (;;) {
        bool stopping = false;
        {
            std::unique_lock lock(mutex_);
            // Held messages (a cluster's) are released by time too.
            const auto expiry = std::chrono::steady_clock::time_point(std::chrono::milliseconds(
                order_ ? std::min(order_->next_expiry_ms(), steady_ms() + 3600000) : steady_ms() + 3600000));
            wake_.wait_until(lock, expiry, [this] { return stopping_ || !queued_.empty(); });
            stopping = stopping_;
            work.swap(queued_);
            stats_.fanout_queue.set(0);
        }
        room_.notify_all();
        for (FanoutItem& item : work) {
            take(item);
            // A big group's envelopes go out as they are made, not all at
            // the end: workers start encoding while this thread goes on.
            bool big = false;
            for (const auto& batch : batches_) big |= batch.size() >= 1024;
            if (big) flush();
        }
        work.clear();
        if (order_) {
            // At stop, what is held waits no more: delivered with its gaps.
            ready_.clear();
            order_->expire(stopping ? std::numeric_limits<int64_t>::max() : steady_ms(), ready_);
            for (FanoutItem& item : ready_) deliver(item);
            stats_.fanout_held.set(order_->counts().held);
            stats_.fanout_hold_expired.set(order_->counts().expired);
        }
        flush();
        if (stopping) {
            std::lock_guard lock(mutex_);
            if (queued_.empty()) return;  // else those too, then stop
        }
    }
}

void Fanout::take(FanoutItem& item) {
    if (!order_) return deliver(item);
    const std::optional<MessageView> decoded = decode(item.message.bytes());
    if (!decoded) return deliver(item);  // (logged there)
    // The other nodes hear of it before it can wait here for order: they
    // need not wait for this node's earlier gaps.
    if (!item.remote) tell_other_nodes(item, *decoded);
    if (!decoded->persisted() || decoded->message_seq == 0) return deliver(item);  // no seq to keep in order
    ready_.clear();
    order_->admit(std::move(item), *decoded, steady_ms(), ready_);
    for (FanoutItem& ready : ready_) deliver(ready);
}

void Fanout::tell_other_nodes(FanoutItem& item, const MessageView& m) {
    // The other nodes must find the receivers too. A stored channel is in
    // every node's memory (loaded whole, kept by the cluster's channel
    // events): the event stays small even for a group of 100,000. A
    // datasource's channel is cached only by the node that asked, a
    // temporary one only by the node whose API made it: the event carries
    // their subscribers (shared with the channel, not copied), so a node
    // that never asked still delivers. A message whose channel this node
    // does not know goes on too: one of them may know it.
    if (!item.receivers && m.channel_type != kPersonChannel)
        if (std::shared_ptr<const Channel> channel = channels_.find(m.channel_type, m.channel_id);
            channel && (channel->temporary || channel->fetched_ms != 0))
            item.receivers = std::shared_ptr<const std::vector<std::string>>(channel, &channel->subscribers);
    cluster_->message_stored(item);
}

void Fanout::deliver(FanoutItem& item) {
    const std::optional<MessageView> decoded = decode(item.message.bytes());
    if (!decoded) {  // the committer encoded it: a bug, not a client's doing
        log::write(log::Level::Error, "fanout", "a stored message does not decode (%zu bytes): not delivered",
                   item.message.bytes().size());
        return;
    }
    const MessageView& m = *decoded;
    stats_.fanout_messages.add();

    // §8: the explicit receivers, the two users of a person chat, or the channel's subscribers.
    const std::vector<std::string>* receivers = item.receivers.get();
    std::shared_ptr<const Channel> channel;
    if (!receivers) {
        receivers_.clear();
        if (m.channel_type == kPersonChannel) {
            person_receivers(m, receivers_);
            receivers = &receivers_;
        } else if ((channel = channels_.find(m.channel_type, m.channel_id))) {
            receivers = &channel->subscribers;
        }
    }
    static const std::vector<std::string> kNobody;
    if (!receivers) {
        count_no_receivers(m, item.remote);
        receivers = &kNobody;
    }
    // §11: messages that are neither NoPersist nor SyncOnce, temporary ones included.
    // Every node keeps them in memory; the node that stored the message writes them.
    if (m.persisted() && !receivers->empty()) conversations_.apply(m, *receivers, !item.remote);
    offline_.clear();
    // SyncOnce: each receiver's queue seq, looked up by uid (a big group has as many copies as receivers).
    queue_seq_of_.clear();
    for (const auto& [uid, seq] : item.queue_seqs) queue_seq_of_.emplace(uid, seq);
    for (const std::string& uid : *receivers) {
        uint32_t seq = 0;
        if (!queue_seq_of_.empty()) {
            auto it = queue_seq_of_.find(uid);
            if (it != queue_seq_of_.end()) seq = it->second;
        }
        const bool is_sender = uid == m.from_uid;
        // The recipient sees the sender as the channel; a message the API sent
        // without a from_uid keeps the recipient's own channel id.
        const uint16_t flags = m.channel_type == kPersonChannel && uid == m.channel_id && !m.from_uid.empty()
                                   ? kRewriteChannel
                                   : uint16_t(0);
        sessions_.clear();
        directory_.find_all(uid, sessions_);
        size_t receiving = 0;
        for (const DirectoryEntry& session : sessions_) {
            // The sending device does not get its own message; the sender's
            // other devices do (multi-device sync, §8 step 2).
            if (is_sender && session.device_flag == item.sender_device) continue;
            const uint32_t worker = session.conn.worker();
            if (worker >= batches_.size()) continue;
            batches_[worker].push_back(net::Envelope{
                .kind = deliver_kind_, .flags = flags, .arg32 = seq, .arg = session.conn.value, .payload = item.message});
            ++receiving;
        }
        if (!receiving && !is_sender && !item.remote) {
            stats_.offline_receivers.add();
            if (events_) offline_.push_back(uid);
        }
    }
    // (Which of offline_ have a session on another node is asked by the
    // webhook sender, on its own thread: Events::offline_message.)
    if (!offline_.empty()) {
        const std::span<const uint8_t> bytes = item.message.bytes();
        events_->offline_message(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                                 std::move(offline_));
        offline_ = {};
    }
}

void Fanout::count_no_receivers(const MessageView& m, bool remote) {
    stats_.fanout_no_receivers.add();
    // Rate-limited: a deleted group that is still written to would flood the log.
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
    if (last_no_receivers_log_ms_ != 0 && now_ms - last_no_receivers_log_ms_ < 10000) return;
    last_no_receivers_log_ms_ = now_ms;
    log::write(log::Level::Warn, "fanout",
               "message %lld to channel %u/%.*s (%s) not delivered: the channel is not in memory here and the message "
               "names no receivers (counted in fanout_no_receivers; further ones logged at most every 10 s)",
               (long long)m.message_id, unsigned(m.channel_type), int(m.channel_id.size()), m.channel_id.data(),
               remote ? "stored by another node" : "stored here");
}

bool Fanout::stopping() {
    std::lock_guard lock(mutex_);
    return stopping_;
}

void Fanout::flush() {
    using namespace std::chrono;
    for (size_t w = 0; w < batches_.size(); ++w) {
        std::vector<net::Envelope>& batch = batches_[w];
        if (batch.empty()) continue;
        const size_t n = batch.size();
        // Back-pressure: a full inbox is waited out while the worker drains
        // it (its ring keeps running); meanwhile this queue fills and holds
        // the committer, and so the senders, back. Not every message is
        // stored (NoPersist, the API's to temporary channels), so dropping
        // one would lose it for good. Only a worker that takes nothing for
        // worker_stuck_limit_, or is gone (at shutdown), is given up on.
        auto deadline = steady_clock::now() + worker_stuck_limit_;
        size_t left = batch.size();
        // A worker known stuck gets no wait: what fits its inbox, no more.
        const milliseconds step = stuck_[w] ? milliseconds(0) : milliseconds(100);
        while (!workers_[w]->post_waiting(batch, step)) {
            if (stuck_[w] && batch.size() == left) break;
            if (batch.size() < left) {  // it drains, slowly: patience again
                left = batch.size();
                deadline = steady_clock::now() + worker_stuck_limit_;
            }
            if (steady_clock::now() >= deadline || stopping()) break;
        }
        stats_.deliveries.add(n - batch.size());
        if (batch.empty()) {
            if (stuck_[w]) log::write(log::Level::Warn, "fanout", "worker %zu takes envelopes again", w);
            stuck_[w] = false;
        } else {
            stats_.deliveries_refused.add(batch.size());
            if (!stuck_[w])
                log::write(log::Level::Error, "fanout",
                           "worker %zu took no envelope for %lld ms: %zu deliveries dropped, and further ones until it "
                           "takes again",
                           w, (long long)worker_stuck_limit_.count(), batch.size());
            stuck_[w] = true;
            batch.clear();
        }
    }
}

}  // namespace limaoim::im
