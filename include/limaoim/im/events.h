// What the IM core tells the business server (SERVER.md §12): the webhook
// sender (webhook/webhook.h) implements it. Without a configured webhook
// the core has no Events and queues nothing (S18, compatible rule).
//
// Every call is made on a thread that must not wait (a worker ring, the
// fan-out thread, the committer): each only queues, in memory bounded by
// the implementation, or in the store by the committer's own batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace limaoim::im {

class Events {
public:
    virtual ~Events() = default;

    // user.onlinestatus (§12.2): a session of (uid, device_flag) came online
    // or went away. Any worker thread; over the bound the entry is dropped
    // and counted.
    virtual void online_status(std::string_view uid, uint8_t device_flag, bool online) = 0;

    // msg.offline (§12.3): `message` (im/message.h encoding, id and seq
    // set) reached none of `to_uids`' sessions on this node (in a cluster
    // the implementation asks which have one elsewhere, off the fan-out
    // thread). The fan-out thread; one attempt; over the bound dropped and
    // counted.
    virtual void offline_message(std::string_view message, std::vector<std::string>&& to_uids) = 0;

    // msg.notify (§12.4) is a durable queue the committer fills in its own
    // store batches (store::WriteBatch::notify, event id = message id).
    // The committer asks before it adds one event, with `pending` events of
    // its batch not yet committed: false when the queue would pass its
    // bound (the message goes on, its event is dropped, counted, and
    // healthy() turns false).
    virtual bool notify_has_room(size_t pending) = 0;
    // The committer, after a batch that added `n` events is durable.
    virtual void notify_queued(size_t n) = 0;

    // For GET /health: false with `why` when the notify queue is at its
    // bound or events have been dropped recently.
    virtual bool healthy(std::string& why) const = 0;
};

}  // namespace limaoim::im
