// The fan-out thread (SERVER.md §8): for each stored message, in commit
// order, every live session of every subscriber except the sending one gets
// a delivery envelope on the worker that holds it. That worker encrypts the
// RECV with the session's own key and tracks its RECVACK (gateway/inflight.h).
//
// One thread takes the messages in the committer's order and a worker's
// inbox is FIFO, so a session receives one channel's messages in seq order,
// whichever workers sent them. The sending worker does none of this work: a
// message to a large group costs it nothing but the SENDACK. Envelopes are
// batched per worker (one lock and at most one doorbell per batch).
//
// A worker's full inbox is waited out, never a reason to drop a delivery
// (not every message is stored: NoPersist ones and the API's to temporary
// channels are not). The wait holds this thread's queue, then the
// committer, then the senders back. Only a worker that takes no envelope at
// all for kWorkerStuckLimit has its deliveries dropped, counted
// (deliveries_refused) and logged: that worker is stuck, not slow. A slow
// receiver is the worker's business: its session's send limits close it.
//
// In a cluster, every message stored here goes on to the other nodes
// (im/cluster.h), with its receivers when they cannot know them (a channel
// cached from the datasource or a temporary one: see tell_other_nodes()),
// as it is queued here. Messages of one channel then come from
// several nodes: a ChannelOrder holds a later seq back until the earlier
// ones arrived (1 s at most), so a session still gets them in seq order. A message
// whose receivers are found nowhere (no explicit list, its channel not in
// memory) reaches nobody here: counted (fanout_no_receivers) and logged.
//
// Delivery envelope: kind = the gateway's deliver kind, arg = the receiving
// session's ConnId, arg32 = the seq to put in the RECV (a SyncOnce copy's
// queue seq; 0: the message's), flags = kRewriteChannel when the receiver is
// the person message's recipient (its RECV names the sender as the channel).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "limaoim/im/channel_order.h"
#include "limaoim/im/channels.h"
#include "limaoim/im/cluster.h"
#include "limaoim/im/committer.h"
#include "limaoim/im/conversations.h"
#include "limaoim/im/directory.h"
#include "limaoim/im/events.h"
#include "limaoim/net/envelope.h"
#include "limaoim/stats/layout.h"
#include "limaoim/util/work_queue.h"

namespace limaoim::im {

class Fanout {
public:
    static constexpr uint16_t kRewriteChannel = 1;
    static constexpr std::chrono::seconds kWorkerStuckLimit{10};
    // Receivers handled at a time: a message to a bigger group goes out in
    // slices, with other channels' messages between them.
    static constexpr size_t kSlice = 1024;

    // Every persisted message also updates its receivers' `conversations`.
    // `worker_stuck_limit`: kWorkerStuckLimit but in tests.
    Fanout(const Channels& channels, const Directory& directory, Conversations& conversations,
           stats::PipelineBlock& stats, size_t max_queued = 1u << 16,
           std::chrono::milliseconds worker_stuck_limit = kWorkerStuckLimit);
    ~Fanout();  // stop()
    Fanout(const Fanout&) = delete;
    Fanout& operator=(const Fanout&) = delete;

    // Before start(): the workers by index and the envelope kind they handle deliveries as.
    void set_workers(std::span<net::EnvelopeSink* const> workers, uint16_t deliver_kind);
    // Before start(): who hears of receivers that were offline (msg.offline); null: nobody.
    void set_events(Events* events) { events_ = events; }
    // Before start(): the other nodes, told of every message stored here
    // (null: this node is alone). Then messages are delivered in each
    // channel's seq order, whichever node stored them (im/channel_order.h).
    void set_cluster(Cluster* cluster);
    void start();
    // The committer's thread: queues the items in order (in a cluster,
    // telling the other nodes first); waits while the queue is full
    // (back-pressure on the committer, never a drop).
    void push(std::vector<FanoutItem>& items);
    // The cluster's receiving thread: a message another node stored. Waits
    // while the queue is full, as push() does.
    void push_remote(FanoutItem&& item);
    // Delivers what is queued, then joins.
    void stop();

private:
    // A message kept behind its channel's big job, with its seq (0: none).
    struct Later {
        uint32_t seq = 0;
        FanoutItem item;
    };
    // A message being delivered, a slice of receivers at a time.
    struct Job {
        FanoutItem item;
        uint64_t channel_key = 0;
        std::shared_ptr<const Channel> channel;  // its subscribers are the receivers (kept alive)
        // A person chat's two users (Fanout::person_: its job never outlives
        // start(), two receivers being less than a slice).
        const std::vector<std::string>* person = nullptr;
        size_t next = 0;                         // receivers()[next..] still to do
        std::vector<std::string> offline;        // for msg.offline
        std::vector<Later> later;                // its channel's next messages, kept behind it, by seq
        const std::vector<std::string>& receivers() const {
            static const std::vector<std::string> kNobody;
            return item.receivers ? *item.receivers : channel ? channel->subscribers : person ? *person : kNobody;
        }
    };

    void run();
    // New messages (up to kSlice receivers' worth), then a slice of each big one.
    void turn();
    // An item from the queue: started now, or, in a cluster, passed through order_.
    void take(FanoutItem&& item);
    // push() (the committer's thread), a cluster's message stored here:
    // fills in `item.receivers` when the other nodes cannot know them.
    void tell_other_nodes(FanoutItem& item, const MessageView& m);
    // Delivers a message whose receivers fit in one slice, or makes it a big
    // job (returned), or keeps it behind its channel's big job.
    Job* start(FanoutItem&& item);
    // `m`: the item's message, decoded already (views into its bytes).
    Job* start(FanoutItem&& item, const MessageView& m);
    // `m`: the job's message, decoded (views into job.item's bytes).
    void deliver_slice(Job& job, const MessageView& m);
    void finish(Job& job);
    void count_no_receivers(const MessageView& m, bool remote);
    void flush_if_big();
    void flush();

    const Channels& channels_;
    const Directory& directory_;
    Conversations& conversations_;
    Events* events_ = nullptr;
    Cluster* cluster_ = nullptr;
    stats::PipelineBlock& stats_;
    std::chrono::milliseconds worker_stuck_limit_;
    std::vector<net::EnvelopeSink*> workers_;
    uint16_t deliver_kind_ = 0;

    // push() waits while max_queued messages are queued; the fan-out's
    // thread takes them all into work_.
    util::WorkQueue<FanoutItem> queue_;

    // The fan-out thread's own.
    std::vector<std::vector<net::Envelope>> batches_;  // per worker
    // Per worker: it took nothing for worker_stuck_limit_. Its deliveries are
    // then dropped at once (what fits its inbox still goes) until it takes
    // again, so one stuck worker does not hold every other worker's behind it.
    std::vector<bool> stuck_;
    std::vector<DirectoryEntry> sessions_;
    std::vector<std::string> person_;    // a person message's receivers (Job::person)
    std::deque<FanoutItem> work_;        // taken from queue_, not started yet
    std::vector<Job> big_;               // messages with more than kSlice receivers, going out in turn
    size_t handled_ = 0;                 // receivers handled so far (turn()'s budget)
    std::optional<ChannelOrder> order_;  // a cluster's
    std::vector<FanoutItem> ready_;      // what order_ released, to deliver
    int64_t last_no_receivers_log_ms_ = 0;
};

}  // namespace limaoim::im
