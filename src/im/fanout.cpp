#include "limaoim/im/fanout.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"

namespace limaoim::im {

Fanout::Fanout(const Channels& channels, const Directory& directory, Conversations& conversations,
               stats::PipelineBlock& stats, size_t max_queued, std::chrono::milliseconds worker_stuck_limit)
    : channels_(channels), directory_(directory), conversations_(conversations), stats_(stats),
      worker_stuck_limit_(worker_stuck_limit), queue_(max_queued) {}

Fanout::~Fanout() { stop(); }

void Fanout::set_workers(std::span<net::EnvelopeSink* const> workers, uint16_t deliver_kind) {
    workers_.assign(workers.begin(), workers.end());
    batches_.resize(workers_.size());
    stuck_.assign(workers_.size(), false);
    deliver_kind_ = deliver_kind;
}

void Fanout::start() { queue_.start("fanout", [this] { run(); }); }

void Fanout::push(std::vector<FanoutItem>& items) {
    // The other nodes hear of a message stored here at once, not behind
    // this node's fan-out (where it may wait for order, or behind big
    // groups): their own holds for it end sooner.
    if (cluster_)
        for (FanoutItem& item : items)
            if (!item.remote)
                tell_other_nodes(item, decode_checked(item.message.bytes()));
    queue_.push_all(items);
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

void Fanout::stop() { queue_.stop(); }

namespace {
using clock::steady_ms;

// Which channel a message is in, for keeping one channel's messages in
// order: both directions of a person chat are one log (the sum does not
// depend on who sent). Two channels that share a key are merely kept in
// one order.
uint64_t channel_key(const MessageView& m) {
    const std::hash<std::string_view> hash;
    const uint64_t id = m.channel_type == kPersonChannel && !m.from_uid.empty() ? hash(m.from_uid) + hash(m.channel_id)
                                                                               : hash(m.channel_id);
    return id * 31 + m.channel_type;
}
}  // namespace

void Fanout::run() {
    for (;;) {
        if (work_.empty() && big_.empty()) {
            // Held messages (a cluster's) are released by time too.
            const int64_t hour_ms = steady_ms() + 3600000;
            const auto expiry = std::chrono::steady_clock::time_point(
                std::chrono::milliseconds(order_ ? std::min(order_->next_expiry_ms(), hour_ms) : hour_ms));
            queue_.wait_until(1, expiry);
        }
        // Taken in while fewer than the queue's capacity wait here (not
        // started, or behind their channel's big message): a message that
        // arrives behind big ones is then delivered between their slices;
        // past it the queue fills and holds the committer back.
        size_t behind_big = 0;
        for (const Job& job : big_) behind_big += job.later.size();
        const size_t left = work_.size() + behind_big < queue_.capacity() ? queue_.take(work_) : queue_.size();
        stats_.fanout_queue.set(work_.size() + behind_big + left);
        const bool stopping = queue_.stopping();
        turn();
        if (order_) {
            // At stop, what is held waits no more: delivered with its gaps.
            ready_.clear();
            order_->expire(stopping ? std::numeric_limits<int64_t>::max() : steady_ms(), ready_);
            for (FanoutItem& item : ready_) start(std::move(item));
            stats_.fanout_held.set(order_->counts().held);
            stats_.fanout_hold_expired.set(order_->counts().expired);
        }
        flush();
        // Else what was queued meanwhile too, then stop.
        if (stopping && work_.empty() && big_.empty() && queue_.size() == 0) return;
    }
}

void Fanout::turn() {
    LIMAOIM_ASSERT(queue_.on_own_thread());  // the jobs and work_ are this thread's alone
    // New messages first, up to a slice's worth of receivers...
    size_t budget = kSlice;
    while (budget > 0 && !work_.empty()) {
        FanoutItem item = std::move(work_.front());
        work_.pop_front();
        const size_t before = handled_;
        take(std::move(item));
        budget -= std::min(budget, std::max<size_t>(1, handled_ - before));
        flush_if_big();
    }
    // ...then a slice of each big message in turn.
    for (size_t i = 0; i < big_.size();) {
        deliver_slice(big_[i], decode_checked(big_[i].item.message.bytes()));
        flush_if_big();
        if (big_[i].next < big_[i].receivers().size()) {
            ++i;
            continue;
        }
        finish(big_[i]);
        std::vector<Later> later = std::move(big_[i].later);
        big_.erase(big_.begin() + ptrdiff_t(i));
        // Its channel's next messages, kept behind it, go on now (the first
        // big one among them takes the rest behind it in turn).
        for (size_t k = 0; k < later.size(); ++k)
            if (Job* job = start(std::move(later[k].item))) {
                job->later.assign(std::make_move_iterator(later.begin() + ptrdiff_t(k) + 1),
                                  std::make_move_iterator(later.end()));
                break;
            }
    }
}

void Fanout::take(FanoutItem&& item) {
    // (A message stored here was told to the other nodes by push().)
    if (!order_) {  // not in a cluster: the committer's order is the order
        start(std::move(item));
        return;
    }
    const MessageView m = decode_checked(item.message.bytes());
    if (!m.persisted() || m.message_seq == 0) {  // no seq to keep in order
        start(std::move(item), m);
        return;
    }
    // `m` views the payload's bytes, which stay where they are as the
    // item moves: if it goes now, it is not decoded again.
    const uint8_t* const bytes = item.message.bytes().data();
    ready_.clear();
    order_->admit(std::move(item), m, steady_ms(), ready_);
    for (FanoutItem& ready : ready_)
        if (ready.message.bytes().data() == bytes)
            start(std::move(ready), m);
        else
            start(std::move(ready));
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

Fanout::Job* Fanout::start(FanoutItem&& item) {
    const MessageView m = decode_checked(item.message.bytes());
    return start(std::move(item), m);
}

Fanout::Job* Fanout::start(FanoutItem&& item, const MessageView& m) {
    // Behind a big message of its channel still going out: after it. (The
    // key is hashed only while a big message is under way.)
    const uint64_t key = big_.empty() ? 0 : channel_key(m);
    for (Job& job : big_)
        if (job.channel_key == key) {
            // In seq order among those waiting: a cluster's ChannelOrder
            // releases a message late (its hold ended) after later ones.
            auto at = job.later.end();
            if (m.message_seq != 0)
                while (at != job.later.begin() && (at - 1)->seq > m.message_seq) --at;
            job.later.insert(at, Later{m.message_seq, std::move(item)});
            return nullptr;
        }
    stats_.fanout_messages.add();
    Job job{.item = std::move(item), .channel_key = key};
    // §8: the explicit receivers, the two users of a person chat, or the channel's subscribers.
    if (!job.item.receivers) {
        if (m.channel_type == kPersonChannel) {
            person_.clear();
            person_receivers(m, person_);
            job.person = &person_;
        } else if (!(job.channel = channels_.find(m.channel_type, m.channel_id))) {
            count_no_receivers(m, job.item.remote);
        }
    }
    // SyncOnce: each receiver's queue seq, found by uid (a big group has as many copies as receivers).
    std::sort(job.item.queue_seqs.begin(), job.item.queue_seqs.end());
    if (job.receivers().size() <= kSlice) {
        deliver_slice(job, m);
        finish(job);
        return nullptr;
    }
    if (big_.empty()) job.channel_key = channel_key(m);
    big_.push_back(std::move(job));
    return &big_.back();
}

void Fanout::deliver_slice(Job& job, const MessageView& m) {
    const std::vector<std::string>& all = job.receivers();
    const std::span<const std::string> slice(all.data() + job.next, std::min(kSlice, all.size() - job.next));
    job.next += slice.size();
    handled_ += slice.size();
    // §11: messages that are neither NoPersist nor SyncOnce, temporary ones included.
    // Every node keeps them in memory; the node that stored the message writes them.
    if (m.persisted() && !slice.empty()) conversations_.apply(m, slice, !job.item.remote);
    const auto& queue_seqs = job.item.queue_seqs;
    for (const std::string& uid : slice) {
        uint32_t seq = 0;
        if (!queue_seqs.empty()) {
            auto it = std::lower_bound(queue_seqs.begin(), queue_seqs.end(), uid,
                                       [](const auto& entry, const std::string& u) { return entry.first < u; });
            if (it != queue_seqs.end() && it->first == uid) seq = it->second;
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
            if (is_sender && session.device_flag == job.item.sender_device) continue;
            const uint32_t worker = session.conn.worker();
            if (worker >= batches_.size()) continue;
            batches_[worker].push_back(net::Envelope{
                .kind = deliver_kind_, .flags = flags, .arg32 = seq, .arg = session.conn.value, .payload = job.item.message});
            ++receiving;
        }
        if (!receiving && !is_sender && !job.item.remote) {
            stats_.offline_receivers.add();
            if (events_) job.offline.push_back(uid);
        }
    }
}

void Fanout::finish(Job& job) {
    // (Which of the offline ones have a session on another node is asked by
    // the webhook sender, on its own thread: Events::offline_message.)
    if (job.offline.empty()) return;
    const std::span<const uint8_t> bytes = job.item.message.bytes();
    events_->offline_message(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                             std::move(job.offline));
}

void Fanout::flush_if_big() {
    // A big group's envelopes go out as they are made, not all at the end:
    // workers start encoding while this thread goes on.
    for (const auto& batch : batches_)
        if (batch.size() >= 1024) return flush();
}

void Fanout::count_no_receivers(const MessageView& m, bool remote) {
    stats_.fanout_no_receivers.add();
    // Rate-limited: a deleted group that is still written to would flood the log.
    const int64_t now_ms = steady_ms();
    if (last_no_receivers_log_ms_ != 0 && now_ms - last_no_receivers_log_ms_ < 10000) return;
    last_no_receivers_log_ms_ = now_ms;
    log::write(log::Level::Warn, "fanout",
               "message %lld to channel %u/%.*s (%s) not delivered: the channel is not in memory here and the message "
               "names no receivers (counted in fanout_no_receivers; further ones logged at most every 10 s)",
               (long long)m.message_id, unsigned(m.channel_type), int(m.channel_id.size()), m.channel_id.data(),
               remote ? "stored by another node" : "stored here");
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
            if (steady_clock::now() >= deadline || queue_.stopping()) break;
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
