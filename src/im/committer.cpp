#include "limaoim/im/committer.h"
#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>

#include <sys/random.h>

#include "limaoim/im/directory.h"
#include "limaoim/im/fanout.h"

namespace limaoim::im {

namespace {

// SENDACK reason codes the committer gives (PROTOCOL.md §6).
constexpr uint8_t kReasonError = 0;
constexpr uint8_t kReasonSuccess = 1;

using clock::steady_us;
using clock::wall_ms;
using stats::histogram_bucket;

}  // namespace

const char* to_string(Durability durability) {
    switch (durability) {
    case Durability::Group: return "group";
    case Durability::Sync: return "sync";
    case Durability::None: return "none";
    }
    return "?";
}

void CommitWaiter::finish(bool success, std::string message, uint32_t result) {
    std::lock_guard lock(mutex);
    // Given up by wait() already: its caller reads ok and error unlocked from now on.
    if (done) return;
    ok = success;
    error = std::move(message);
    value = result;
    done = true;
    done_cv.notify_all();
}

void CommitWaiter::wait(std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex);
    if (done_cv.wait_for(lock, limit, [this] { return done; })) return;
    ok = false;
    error = "the committer did not answer within " + std::to_string(limit.count()) + " ms";
    done = true;
}

Committer::Committer(store::Store& store, const Channels& channels, IdGenerator& ids, Fanout& fanout,
                     stats::PipelineBlock& stats, const CommitterOptions& options)
    : store_(store), channels_(channels), ids_(ids), fanout_(fanout), stats_(stats), options_(options),
      queue_(options.max_queued) {
    // Keyed so that chosen client_msg_nos cannot collide on purpose.
    if (getrandom(dedupe_hash_keys_, sizeof(dedupe_hash_keys_), 0) != ssize_t(sizeof(dedupe_hash_keys_)))
        dedupe_hash_keys_[1][0] = uint64_t(steady_us()) | 1;  // keys differ at least
    // Batch ids from a random start: a restarted node never reuses a live one.
    if (getrandom(&next_batch_id_, sizeof(next_batch_id_), 0) != ssize_t(sizeof(next_batch_id_)))
        next_batch_id_ = steady_us() ^ (uint64_t(wall_ms()) << 20);
}

Committer::DedupeKey Committer::dedupe_key(std::string_view uid, std::string_view client_msg_no) const {
    // uid's length first: ("ab", "c") and ("a", "bc") are different pairs.
    thread_local std::string joined;
    joined.clear();
    const uint16_t n = uint16_t(uid.size());
    joined.append(reinterpret_cast<const char*>(&n), 2).append(uid).append(client_msg_no);
    return {detail::siphash(dedupe_hash_keys_[0], joined), detail::siphash(dedupe_hash_keys_[1], joined)};
}

Committer::~Committer() { stop(); }

bool Committer::start(std::string& error) {
    int64_t max_id = 0;
    if (store::Status s = store_.max_message_id(max_id); !s) {
        error = "reading the last message id: " + s.error;
        return false;
    }
    ids_.start_above(max_id);
    const int64_t since = wall_ms() - options_.dedupe_window_ms;
    // A shared store's window is every node's: looked up after a conflict
    // (learn_remote_dedupe), not loaded whole.
    store::Status s = store_.shared() ? store::Status::success() : store_.load_dedupe(since, [this](store::DedupeRecord&& r) {
        const DedupeKey key = dedupe_key(r.uid, r.client_msg_no);
        dedupe_order_.emplace_back(r.time_ms, key);
        dedupe_[key] = {r.time_ms, r.message_id, r.message_seq};
    });
    if (!s) {
        error = "loading the dedupe window: " + s.error;
        return false;
    }
    stats_.dedupe_entries.set(dedupe_.size());
    queue_.start("committer", [this] { run(); });
    return true;
}

bool Committer::submit(CommitRequest&& request) {
    if (request.resolve && request.judged == CommitRequest::kNotJudged)
        return resolver_ && resolver_->park(std::move(request));
    // A RECVACK's cursor advance may be dropped (the next one moves the
    // cursor as far): it never takes the second half of the queue from SENDs.
    const bool cursor_advance = request.kind == CommitRequest::Kind::CursorAdvance;
    const bool droppable = cursor_advance && !request.waiter;
    if (!queue_.try_push(std::move(request), droppable ? options_.max_queued / 2 : options_.max_queued)) {
        stats_.commit_refused.add();  // approximate: several submitters may race on it
        return false;
    }
    if (cursor_advance) stats_.cursor_advances.add();
    return true;
}

bool Committer::stopping() { return queue_.stopping(); }

void Committer::stop() { queue_.stop(); }

void Committer::run() {
    std::vector<CommitRequest> work;
    for (;;) {
        const size_t queued = queue_.wait(1);
        if (queued == 0) return;  // stopping, and everything is committed
        if (options_.durability == Durability::Group && options_.commit_window_us && queued < options_.max_batch) {
            // Group commit: let the batch gather for one window, so one
            // fsync covers every message that arrives meanwhile.
            queue_.wait_until(options_.max_batch,
                              std::chrono::steady_clock::now() + std::chrono::microseconds(options_.commit_window_us));
        }
        stats_.commit_queue.set(queue_.take(work, options_.max_batch));
        process(work);
        work.clear();
    }
}

void Committer::process(std::vector<CommitRequest>& batch) {
    LIMAOIM_ASSERT(queue_.on_own_thread());  // the batch state below is this thread's alone
    const int64_t now_ms = wall_ms();
    expire_dedupe(now_ms);
    store::Status written;
    if (unresolved_ && !settle_unresolved()) {
        // Until the store says whether that batch was written, nothing else
        // is: a resend of one of its SENDs would be stored twice.
        written = store::Status::failure("the outcome of an earlier batch is still unknown (the store is unreachable)");
        clear_batch();
        reasons_.assign(batch.size(), kReasonError);
        fanout_items_.clear();
    } else {
        written = commit_with_retries(batch, now_ms);
    }
    if (written) {
        count_stored(batch_);
        if (written.unreplicated) {
            // Stored and read by every node, so delivered; but the SENDACK
            // promises the replicas asked for: its SENDs get reason 0, and a
            // resend is a dedupe hit (or, after a failover lost it, stored again).
            log::write(log::Level::Warn, "committer", "%s (its SENDs get reason 0, its messages are delivered)",
                       written.error.c_str());
            stats_.commit_failures.add();
            for (size_t i = 0; i < batch.size(); ++i)
                if (batch[i].kind == CommitRequest::Kind::Send && reasons_[i] == kReasonSuccess) reasons_[i] = kReasonError;
            // A failover to a replica without the batch would lose it: a
            // resend must reach the store (its dedupe record, or a new write
            // on the new master), not be answered success from memory. The
            // counters are read again too.
            forget_batch();
        }
    } else {
        stats_.commit_failures.add();
        if (written.unknown) {
            log::write(log::Level::Error, "committer",
                       "store commit outcome unknown after %u ms (its SENDs get reason 0; the batch is kept until the store answers): %s",
                       options_.outcome_wait_ms, written.error.c_str());
            keep_unresolved();
        } else {
            log::write(log::Level::Error, "committer", "store commit failed (its SENDs get reason 0): %s", written.error.c_str());
        }
        for (uint8_t& reason : reasons_) reason = kReasonError;
        fanout_items_.clear();
    }
    stats_.dedupe_entries.set(dedupe_.size());
    clear_batch();
    trim_counters();

    answer(batch, reasons_, written && !written.unreplicated ? std::string() : "store: " + written.error);
    if (!fanout_items_.empty()) fanout_.push(fanout_items_);
}

store::Status Committer::commit_with_retries(std::vector<CommitRequest>& batch, int64_t now_ms) {
    // A shared store refuses a batch another node raced (a counter moved, or
    // a SEND it holds was resent here): the batch is prepared again on the
    // store's values, a bounded number of times. So is a batch whose reply
    // was lost and that the store says it did not write.
    for (uint32_t attempt = 0;; ++attempt) {
        store::Status written = prepare_and_commit(batch, now_ms);
        if (written.unknown) {
            bool stored = false;
            const store::Status asked = await_outcome(stored);
            if (!asked) {
                written.error += "; asking for its outcome: " + asked.error;
                return written;  // still unknown: the caller keeps the batch
            }
            if (stored) return asked;  // success, or written without the replicas asked for
            log::write(log::Level::Warn, "committer", "a commit's reply was lost and the batch not written: prepared again (%s)",
                       written.error.c_str());
            written = store::Status::failure("the reply was lost, the batch not written: " + written.error);
        } else if (written || !written.conflict) {
            if (!written) forget_batch();
            return written;
        } else {
            stats_.commit_conflicts.add();
        }
        forget_batch();
        if (attempt + 1 == kMaxConflictRetries) {
            written.error = std::string(written.conflict ? "still conflicting" : "still not written") + " after " +
                            std::to_string(kMaxConflictRetries) + " tries: " + written.error;
            return written;
        }
        if (!written.conflict) continue;
        if (store::Status learned = learn_remote_dedupe(batch, now_ms); !learned) {
            // Retrying cannot help until the replicas catch up: the batch
            // fails now (reason 0) and its SENDs are resent later.
            learned.error = "a resend's record in the store is not confirmed: " + learned.error;
            return learned;
        }
    }
}

store::Status Committer::await_outcome(bool& written) {
    using namespace std::chrono;
    const auto deadline = steady_clock::now() + milliseconds(options_.outcome_wait_ms);
    milliseconds pause(10);
    for (;;) {
        store::Status asked = store_.commit_outcome(batch_, written);
        if (asked || steady_clock::now() + pause > deadline) return asked;
        // The SENDs of this batch wait meanwhile (a wrong answer would be
        // worse); so do new ones, queued behind it. Stopping cuts it short.
        if (queue_.sleep_unless_stopped(pause)) return asked;
        pause = std::min(pause * 2, milliseconds(1000));
    }
}

void Committer::keep_unresolved() {
    unresolved_.emplace();
    unresolved_->batch = std::move(batch_);
    unresolved_->fanout_items = std::move(fanout_items_);
    unresolved_->channel_seqs = std::move(batch_channel_seqs_);
    unresolved_->queue_seqs = std::move(batch_queue_seqs_);
    unresolved_->cursors = std::move(batch_cursors_);
    unresolved_->dedupe_keys = std::move(batch_dedupe_keys_);
    clear_batch();
    fanout_items_.clear();
}

bool Committer::settle_unresolved() {
    bool written = false;
    const store::Status asked = store_.commit_outcome(unresolved_->batch, written);
    if (!asked) return false;
    if (written) {
        log::write(log::Level::Warn, "committer", "a batch whose reply was lost was written: its messages go out now");
        count_stored(unresolved_->batch);
        fanout_.push(unresolved_->fanout_items);
    }
    if (!written || asked.unreplicated) {
        // Not written, or not known to be on the replicas: a failover may
        // lose it, so a resend must not be answered from memory (see process()).
        log::write(log::Level::Warn, "committer",
                   written ? "that batch is not known to be on the replicas: its resends go to the store again"
                           : "a batch whose reply was lost was not written: its seqs go back");
        batch_channel_seqs_ = std::move(unresolved_->channel_seqs);
        batch_queue_seqs_ = std::move(unresolved_->queue_seqs);
        batch_cursors_ = std::move(unresolved_->cursors);
        batch_dedupe_keys_ = std::move(unresolved_->dedupe_keys);
        forget_batch();
        clear_batch();
    }
    unresolved_.reset();
    return true;
}

void Committer::count_stored(const store::WriteBatch& written) {
    if (events_ && !written.notify.empty()) events_->notify_queued(written.notify.size());
    stats_.messages_stored.add(written.messages.size());
    stats_.queue_copies_stored.add(written.queue_messages.size());
}

store::Status Committer::prepare_and_commit(std::vector<CommitRequest>& batch, int64_t now_ms) {
    clear_batch();
    reasons_.assign(batch.size(), kReasonSuccess);
    fanout_items_.clear();
    bool counters_read = true;  // false: the store failed to give a counter
    for (size_t i = 0; i < batch.size(); ++i) {
        CommitRequest& request = batch[i];
        if (request.kind == CommitRequest::Kind::CursorAdvance) {
            prepare_cursor(request);
            continue;
        }
        if (request.resolve) {
            // Judged by the resolver: a refusal is this SEND's answer alone.
            reasons_[i] = request.judged;
            if (reasons_[i] != kReasonSuccess) continue;
        }
        FanoutItem item;
        bool duplicate = false;
        reasons_[i] = prepare_send(request, now_ms, item, duplicate);
        if (reasons_[i] != kReasonSuccess) counters_read = false;
        if (reasons_[i] == kReasonSuccess && !duplicate) fanout_items_.push_back(std::move(item));
    }

    for (auto& [log, change] : batch_channel_seqs_) batch_.channel_seqs.push_back({log, change.value, change.previous});
    for (auto& [uid, change] : batch_queue_seqs_) batch_.queue_seqs.push_back({uid, change.value, change.previous});
    for (auto& [uid, cursor] : batch_cursors_) batch_.cursors.push_back({uid, cursor});
    // Part of a message may be in the batch already: none of it is written.
    if (!counters_read) return store::Status::failure("reading a seq counter failed");
    if (batch_.empty()) return store::Status::success();
    batch_.id = next_batch_id_++;
    const uint64_t started = steady_us();
    store::Status written = store_.commit(batch_, options_.durability != Durability::None);
    stats_.commit_latency_us[histogram_bucket(steady_us() - started)].add();
    stats_.commit_batch_messages[histogram_bucket(batch_.messages.size() + batch_.queue_messages.size())].add();
    stats_.commits.add();
    return written;
}

void Committer::forget_batch() {
    // Nothing of the batch is stored: its seqs go back (read again from the
    // store when next needed) and its dedupe entries are forgotten.
    for (auto& [log, change] : batch_channel_seqs_) channel_seqs_.values.erase(log);
    for (auto& [uid, change] : batch_queue_seqs_) queue_seqs_.values.erase(uid);
    for (auto& [uid, cursor] : batch_cursors_) cursors_.values.erase(uid);
    for (const DedupeKey& key : batch_dedupe_keys_) dedupe_.erase(key);
    // This batch's pairs are the newest in the order: they go too (those
    // the window expired meanwhile are gone already).
    for (auto key = batch_dedupe_keys_.rbegin(); key != batch_dedupe_keys_.rend(); ++key)
        if (!dedupe_order_.empty() && dedupe_order_.back().second == *key) dedupe_order_.pop_back();
}

void Committer::trim_counters() {
    // Not while a batch of unknown outcome is kept: its counters are ahead
    // of the store's, and reading those again would hand out a seq twice.
    // (Nor during a batch, being called after one: a counter of the batch
    // dropped then could not be kept with it.)
    if (unresolved_) return;
    for (CounterCache* counters : {&channel_seqs_, &queue_seqs_, &cursors_})
        counters->values.trim(options_.max_cached_counters);
}

void Committer::clear_batch() {
    batch_.clear();
    batch_channel_seqs_.clear();
    batch_queue_seqs_.clear();
    batch_cursors_.clear();
    batch_dedupe_keys_.clear();
}

store::Status Committer::learn_remote_dedupe(const std::vector<CommitRequest>& batch, int64_t now_ms) {
    // Another node may hold one of these SENDs (the client resent it here
    // after losing that node, or this node answered its batch reason 0): its
    // record makes this one a dedupe hit. The shared store's record expires
    // with the window itself (its clock, not this node's): whatever it still
    // holds counts, learned as of now, once the records are confirmed: on
    // the master every node writes to and on the replicas a SENDACK promises
    // (one confirmation for all of them).
    const int64_t since = std::numeric_limits<int64_t>::min();
    std::vector<DedupeKey> keys;
    std::vector<store::DedupeRecord> found_records;
    for (const CommitRequest& request : batch) {
        if (request.kind != CommitRequest::Kind::Send || options_.dedupe_window_ms == 0) continue;
        const MessageView m = decode_checked(request.message.bytes());
        if (m.client_msg_no.empty()) continue;
        store::DedupeRecord record;
        bool found = false;
        if (store::Status s = store_.find_dedupe(m.from_uid, m.client_msg_no, since, record, found); !s) {
            log::write(log::Level::Warn, "committer", "looking up a resend: %s", s.error.c_str());
            continue;
        }
        if (!found) continue;
        keys.push_back(dedupe_key(m.from_uid, m.client_msg_no));
        found_records.push_back(std::move(record));
    }
    if (found_records.empty()) return store::Status::success();
    if (store::Status confirmed = store_.confirm_dedupe(found_records); !confirmed) return confirmed;
    for (size_t i = 0; i < keys.size(); ++i) {
        dedupe_[keys[i]] = {now_ms, found_records[i].message_id, found_records[i].message_seq};
        dedupe_order_.emplace_back(now_ms, keys[i]);
    }
    return store::Status::success();
}

uint8_t Committer::prepare_send(CommitRequest& request, int64_t now_ms, FanoutItem& item, bool& duplicate) {
    std::span<uint8_t> bytes = request.message.writable_bytes();
    const MessageView m = decode_checked(bytes);

    DedupeKey key{};
    const bool dedupe = !m.client_msg_no.empty() && options_.dedupe_window_ms > 0;
    if (dedupe) {
        key = dedupe_key(m.from_uid, m.client_msg_no);
        if (auto it = dedupe_.find(key); it != dedupe_.end() && now_ms - it->second.time_ms < options_.dedupe_window_ms) {
            // A resend: answered with the first one's id and seq, not stored
            // or delivered again (the first was, or fails with its batch).
            patch_id(bytes, it->second.message_id);
            patch_seq(bytes, it->second.message_seq);
            duplicate = true;
            stats_.dedupe_hits.add();
            return kReasonSuccess;
        }
    }

    const int64_t id = ids_.next(now_ms);
    patch_id(bytes, id);
    batch_.max_message_id = id;
    uint32_t seq = 0;
    if (m.persisted() && !request.transient) {
        std::string log = store::log_name(m.channel_type, log_channel_id(m));
        if (!next_seq(channel_seqs_, batch_channel_seqs_, log, seq)) return kReasonError;
        patch_seq(bytes, seq);
        batch_.messages.push_back({std::move(log), seq, {bytes.begin(), bytes.end()}});
    }
    if (m.sync_once() && !m.no_persist()) {
        // A copy in each subscriber's own queue, with its own seq and the
        // channel as that subscriber sees it (§10.2, S7 compatible rule).
        for (std::string& uid : subscribers_of(m, request)) {
            uint32_t queue_seq = 0;
            if (!next_seq(queue_seqs_, batch_queue_seqs_, uid, queue_seq)) return kReasonError;
            Message copy = Message::from(m);
            copy.message_id = id;
            copy.message_seq = queue_seq;
            // As the RECV names it: the recipient sees the sender as the channel.
            if (m.channel_type == kPersonChannel && uid == m.channel_id) copy.channel_id = std::string(m.from_uid);
            if (uid == m.from_uid) copy.header_flags &= uint8_t(~0x02);  // the sender's copy has no red dot
            batch_.queue_messages.push_back({uid, queue_seq, encode(copy.view())});
            item.queue_seqs.emplace_back(std::move(uid), queue_seq);
        }
    }
    if (dedupe) {
        // Full: the oldest is forgotten before its window ends. An order
        // entry whose pair was stored again later (or never committed) is
        // stale: skipped.
        while (dedupe_.size() >= options_.dedupe_max && !dedupe_order_.empty()) {
            const auto [time_ms, oldest] = dedupe_order_.front();
            dedupe_order_.pop_front();
            if (auto it = dedupe_.find(oldest); it != dedupe_.end() && it->second.time_ms == time_ms) {
                dedupe_.erase(it);
                stats_.dedupe_evicted.add();
            }
        }
        batch_.dedupe.push_back({now_ms, std::string(m.from_uid), std::string(m.client_msg_no), id, seq});
        dedupe_order_.emplace_back(now_ms, key);
        batch_dedupe_keys_.push_back(key);
        dedupe_[key] = {now_ms, id, seq};
    }
    // msg.notify (§12.4): every accepted message, whatever its flags, in
    // the same atomic batch: an event is on disk exactly when its batch is.
    if (events_ && events_->notify_has_room(batch_.notify.size()))
        batch_.notify.push_back({id, {bytes.begin(), bytes.end()}});
    item.message = request.message;
    item.sender_device = request.sender_device;
    item.receivers = request.receivers;
    return kReasonSuccess;
}

void Committer::prepare_cursor(CommitRequest& request) {
    if (request.failed) return;  // answered by an earlier try of this batch
    if (store_.shared()) {
        // Other nodes append to this user's queue and move the cursor: the
        // cached values would hold the cursor back (min with a stale last seq).
        queue_seqs_.values.erase(request.uid);
        cursors_.values.erase(request.uid);
    }
    uint32_t* last = counter(queue_seqs_, request.uid);
    uint32_t* cursor = counter(cursors_, request.uid);
    if (!last || !cursor) {
        request.failed = true;
        if (request.waiter) {
            request.waiter->finish(false, "store: reading the sync queue failed");
            request.waiter.reset();
        }
        return;
    }
    // §10.2 compatible rule: cursor = max(cursor, min(requested, last seq)).
    const uint32_t advanced = std::max(*cursor, std::min(request.cursor, *last));
    if (advanced != *cursor) {
        *cursor = advanced;
        batch_cursors_[request.uid] = advanced;
    }
    request.cursor_after = advanced;
}

uint32_t* Committer::counter(CounterCache& counters, const std::string& key) {
    if (uint32_t* cached = counters.values.find(key)) return cached;
    uint32_t value = 0;
    if (store::Status s = (store_.*counters.read)(key, value); !s) {
        log::write(log::Level::Error, "committer", "reading %s: %s", counters.what, s.error.c_str());
        return nullptr;
    }
    return &counters.values.put(key, value);
}

bool Committer::next_seq(CounterCache& counters, CounterChanges& changes, const std::string& key, uint32_t& seq) {
    uint32_t* last = counter(counters, key);
    if (!last) return false;
    auto [change, first] = changes.try_emplace(key, CounterChange{*last, 0});
    seq = ++*last;
    change->second.value = seq;
    return true;
}

void Committer::expire_dedupe(int64_t now_ms) {
    const int64_t horizon = now_ms - options_.dedupe_window_ms;
    while (!dedupe_order_.empty() && dedupe_order_.front().first < horizon) {
        auto it = dedupe_.find(dedupe_order_.front().second);
        // A key sent again after its window has a newer entry: keep that one.
        if (it != dedupe_.end() && it->second.time_ms == dedupe_order_.front().first) dedupe_.erase(it);
        dedupe_order_.pop_front();
    }
    // The store's copy of the window is trimmed once a minute (a range delete).
    if (now_ms - last_dedupe_expiry_ms_ >= 60000) {
        last_dedupe_expiry_ms_ = now_ms;
        if (store::Status s = store_.expire_dedupe(horizon); !s)
            log::write(log::Level::Warn, "committer", "expiring the dedupe window: %s", s.error.c_str());
    }
}

std::vector<std::string> Committer::subscribers_of(const MessageView& m, const CommitRequest& request) const {
    if (request.receivers) return *request.receivers;
    if (m.channel_type == kPersonChannel) {
        std::vector<std::string> both;
        person_receivers(m, both);
        return both;
    }
    std::shared_ptr<const Channel> channel = channels_.find(m.channel_type, m.channel_id);
    return channel ? channel->subscribers : std::vector<std::string>{};
}

void Committer::answer(std::vector<CommitRequest>& batch, const std::vector<uint8_t>& reasons, const std::string& error) {
    for (size_t i = 0; i < batch.size(); ++i) {
        CommitRequest& r = batch[i];
        if (r.waiter) {
            if (reasons[i] == kReasonSuccess && r.message) {
                r.waiter->message_id = encoded_id(r.message.bytes());
                r.waiter->finish(true, {}, encoded_seq(r.message.bytes()));
            } else if (reasons[i] == kReasonSuccess)
                r.waiter->finish(true, {}, r.cursor_after);
            else if (!error.empty())
                r.waiter->finish(false, error);
            else  // this request alone was refused (its channel, judged by the resolver)
                r.waiter->finish(false, "refused with SENDACK reason " + std::to_string(reasons[i]));
            continue;
        }
        if (!r.route.worker) continue;
        results_[r.route.worker].push_back(net::Envelope{.kind = r.route.kind,
                                                         .flags = uint16_t(reasons[i] | (r.resolve ? kResolvedResult : 0)),
                                                         .arg32 = r.client_seq,
                                                         .arg = r.origin.value,
                                                         .payload = std::move(r.message)});
    }
    // One lock per worker. A full inbox is waited out (the worker wakes
    // the committer as it drains): a SENDACK is never dropped, and a
    // committer that waits holds its submitters back. Only at shutdown,
    // when the workers no longer drain their inboxes, are the results of
    // sessions that are gone by then let go.
    for (auto& [worker, envelopes] : results_) {
        while (!worker->post_waiting(envelopes, std::chrono::milliseconds(100))) {
            if (stopping()) {
                envelopes.clear();
                break;
            }
        }
    }
}

}  // namespace limaoim::im
