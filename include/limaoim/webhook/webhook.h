// The webhook sender (SERVER.md §12): what the IM core tells the business
// server (im/events.h), posted to `POST {webhook}?event={event}` by one
// thread of its own driving a libcurl multi handle. Built only when a
// webhook is configured: without one nothing is queued (S18).
//
// Events:
//   user.onlinestatus  JSON array of "uid-device_flag-status" (1 online, 0
//                      offline) in event order; one batch in flight, at most
//                      `online_batch` entries; a failed batch is sent again,
//                      the same entries, after the backoff (entries queued
//                      meanwhile go after it). In memory, at most
//                      `online_queue_max` entries: over it an entry is
//                      dropped and counted (webhook_online_dropped).
//   msg.offline        one call per message, one attempt: MessageResp
//                      (§16.0, message_idstr = the decimal id) plus
//                      "to_uids". In memory, at most `offline_queue_max`
//                      messages (and `offline_queue_bytes_max` bytes) waiting and `offline_concurrency` calls at
//                      once; a dropped or failed call is counted
//                      (webhook_offline_dropped).
//   msg.notify         a JSON array of up to `notify_batch` MessageResp read
//                      from the store's durable queue (store::Store
//                      read_notify), removed from it only after HTTP 200;
//                      otherwise the same batch is sent again after the
//                      backoff. At-least-once: a receiver dedupes on
//                      message_id; every call also carries the header
//                      `X-Limaoim-Event-Id: <first id>-<last id>` (the
//                      batch's message ids, ascending). Between batches the
//                      sender waits `notify_scan_ms` unless the queue is
//                      known to hold more (notify_queued() was called, or a
//                      full batch was read).
//
// Every call: Content-Type: application/json, a timeout (`timeout_ms`), no
// signals; only HTTP 200 is a success; the answer's body is ignored. The
// backoff starts at `backoff_initial_ms` and doubles per failure up to
// `backoff_max_ms`, separately for onlinestatus and notify; a success
// resets it. The queries are appended to the URL as they are, also when it
// already has a '?' (the original does the same, §12.1).
//
// Threads: online_status() (workers), offline_message() (fan-out),
// notify_has_room()/notify_queued() (committer) and healthy() (API pool)
// only take a short mutex or touch atomics, and wake the sender thread
// through curl_multi_wakeup(). The store is read and written on the sender
// thread only. Stats: the webhook_* counters of the PipelineBlock are
// written by the sender thread alone; counts made on other threads are
// atomics here, published by it.
//
// stop(): no new call starts; calls in flight get at most `timeout_ms` to
// finish (a notify batch answered 200 meanwhile is still removed from the
// store); then the thread ends. The durable notify queue stays for the next
// start; onlinestatus and offline entries still in memory are lost (memory
// only, as in the original).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "limaoim/im/events.h"

namespace limaoim::store {
class Store;
}
namespace limaoim::stats {
struct PipelineBlock;
}

namespace limaoim::webhook {

struct Options {
    uint32_t timeout_ms = 10000;           // every call, connect included
    uint32_t notify_batch = 20;            // msg.notify events per call (messageNotifyMaxCount)
    uint32_t notify_scan_ms = 500;         // between msg.notify batches (messageNotifyScanInterval)
    uint64_t queue_max = 1000000;          // events in the durable msg.notify queue
    size_t online_queue_max = 100000;      // user.onlinestatus entries in memory
    size_t online_batch = 1000;            // user.onlinestatus entries per call
    size_t offline_queue_max = 10000;      // msg.offline messages waiting in memory
    size_t offline_queue_bytes_max = 64u << 20;  // ... and their bytes (payloads, receiver uids) at most
    size_t offline_concurrency = 16;       // msg.offline calls at once
    uint32_t backoff_initial_ms = 1000;    // after a failure; doubles per failure
    uint32_t backoff_max_ms = 30000;
    uint32_t drop_health_window_ms = 60000; // healthy() is false this long after a dropped notify event
};

class Sender final : public im::Events {
public:
    // `url`: the configured webhook (non-empty). Reads the notify queue's
    // size from the store (count_notify) and starts the sender thread.
    // `store` and `stats` outlive the Sender.
    Sender(std::string url, const Options& options, store::Store& store, stats::PipelineBlock& stats);
    ~Sender() override;  // stop()
    Sender(const Sender&) = delete;
    Sender& operator=(const Sender&) = delete;

    // im::Events
    void online_status(std::string_view uid, uint8_t device_flag, bool online) override;
    void offline_message(std::string_view message, std::vector<std::string>&& to_uids) override;
    // Check only: true when `n` more events fit under queue_max. A false
    // answer counts the `n` events as dropped (webhook_notify_dropped): the
    // committer does not queue them.
    bool notify_has_room(size_t pending) override;
    void notify_queued(size_t n) override;
    bool healthy(std::string& why) const override;

    // Idempotent; see above. Any thread but the sender's.
    void stop();

    // In a cluster: removes from `uids` those with a session on another
    // node (msg.offline is for users with none anywhere). Called on the
    // sender thread before each msg.offline, so its Redis round trip holds
    // up no fan-out (it should give up fast when Redis is away: the sender's
    // other calls wait meanwhile). Set before messages flow, once; it must
    // stay callable until stop() returns.
    using PresenceFilter = std::function<void(std::vector<std::string>& uids)>;
    void set_presence_filter(PresenceFilter filter);

    // Figures so far, any thread (the stats segment has them too, as
    // published by the sender thread).
    uint64_t notify_queue_size() const { return notify_count_.load(std::memory_order_relaxed); }
    uint64_t online_dropped() const { return online_dropped_.load(std::memory_order_relaxed); }
    // Refused for a full queue only (failed calls count in webhook_offline_dropped too).
    uint64_t offline_dropped() const { return offline_dropped_.load(std::memory_order_relaxed); }
    uint64_t notify_dropped() const { return notify_dropped_.load(std::memory_order_relaxed); }
    uint64_t store_failures() const { return store_failures_.load(std::memory_order_relaxed); }

private:
    enum class Kind : uint8_t { Online, Offline, Notify };
    struct Call;
    struct Offline {
        std::string message;  // im/message.h encoding
        std::vector<std::string> to_uids;
        size_t bytes = 0;  // counted against offline_queue_bytes_max
    };

    void wake();
    // The sender thread.
    void run();
    void start_online(int64_t now);
    void start_offline();
    void start_notify(int64_t now);
    bool notify_delete(int64_t now);
    bool start_call(Kind kind, std::string body, std::string event_id);
    void finish(Call* call, const std::string& failure, int64_t now);
    void finish_failed_start(Kind kind, const char* why);
    void log_failure(Kind kind, const std::string& what);
    void store_failed(const std::string& what, int64_t now);
    void store_ok();
    void notify_count_sub(uint64_t n);
    int next_wait_ms(int64_t now) const;
    void publish();

    const std::string url_;
    const Options options_;
    store::Store& store_;
    stats::PipelineBlock& stats_;
    void* multi_ = nullptr;  // CURLM*, created in the constructor, freed in the destructor

    // Producers' side (any thread).
    mutable std::mutex mutex_;                // the two queues
    std::deque<std::string> online_queue_;    // "uid-flag-status"
    std::deque<Offline> offline_queue_;
    size_t offline_queue_bytes_ = 0;  // what offline_queue_ holds, by Offline::bytes
    PresenceFilter presence_filter_;  // set before traffic; empty: a single node
    std::atomic<size_t> online_queued_{0};    // online_queue_.size(), for the gauge
    std::atomic<bool> wake_pending_{false};   // a curl_multi_wakeup the sender has not seen yet
    std::atomic<bool> stopping_{false};
    std::atomic<uint64_t> online_dropped_{0};
    std::atomic<uint64_t> offline_dropped_{0};  // queue full (failed calls: offline_failed_)
    std::atomic<uint64_t> notify_dropped_{0};
    std::atomic<uint64_t> notify_count_{0};     // events in the durable queue, as far as known
    std::atomic<bool> notify_more_{false};      // notify_queued() since the last read
    std::atomic<int64_t> last_notify_drop_ms_{-1};
    std::atomic<bool> store_failing_{false};    // the last store read or delete failed
    std::atomic<uint64_t> store_failures_{0};
    std::mutex stop_mutex_;

    // The sender thread only.
    std::unordered_map<Call*, std::unique_ptr<Call>> calls_;  // in flight
    std::vector<std::string> online_batch_;  // in flight or waiting for its retry
    bool online_in_flight_ = false;
    int64_t online_retry_at_ = 0;
    uint32_t online_backoff_ms_ = 0;
    size_t offline_in_flight_ = 0;
    uint64_t offline_failed_ = 0;            // calls that failed (one attempt each)
    // The msg.notify batch in flight or waiting for its retry: events
    // notify_first_..notify_last_ of the store's queue.
    size_t notify_events_ = 0;
    // Ids ascend in commit order and a batch leaves the store whole, so the
    // next read starts after the last deleted id (not over the range tombstones).
    int64_t notify_read_after_ = std::numeric_limits<int64_t>::min();
    int64_t notify_first_ = 0;
    int64_t notify_last_ = 0;
    std::string notify_body_;
    bool notify_in_flight_ = false;
    bool notify_delete_pending_ = false;     // answered 200, delete_notify failed: retried first
    bool notify_full_read_ = false;          // the last read filled a batch: more may wait
    int64_t notify_next_at_ = 0;             // the next read (scan interval) or retry (backoff)
    uint32_t notify_backoff_ms_ = 0;
    bool count_known_ = false;               // count_notify succeeded once
    uint64_t notify_sent_ = 0;
    uint64_t failures_unlogged_[3] = {};     // per Kind, since the last log line
    int64_t last_log_ms_[3] = {};
    struct Published {
        uint64_t online_dropped = 0, offline_dropped = 0, notify_sent = 0, notify_dropped = 0;
    } published_;

    std::thread thread_;
};

}  // namespace limaoim::webhook
