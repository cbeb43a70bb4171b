// RECVs waiting for their RECVACK on one worker (SERVER.md §9, compatible
// rule): an entry per (session, message id), retransmitted to the same
// session after the timeout with the same bytes (the same message encoded
// with the same key and IV), up to a number of deliveries, then dropped: the
// message stays available to the sync APIs if it was stored.
//
// Memory: entries live in one pool (a vector reused through a free list),
// found by an open-addressing index on (slot, message id); a session's
// entries are linked together so its close drops them at once, and all
// entries are linked in deadline order (every entry has the same timeout,
// so that is insertion order and expiry is a walk from the front). The
// per-session list heads sit in a SlotArray whose pages are touched only by
// sessions that have entries: an idle session costs nothing here. Adding an
// entry allocates only when the pool or the index grows.
//
// At most `max_per_session` entries per session: the next RECV drops that
// session's oldest entry (counted as evicted; that message is left to sync).
// One worker's thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "limaoim/net/envelope.h"
#include "limaoim/net/handler.h"
#include "limaoim/net/slab.h"

namespace limaoim::gateway {

struct InflightOptions {
    uint32_t timeout_ms = 60000;     // --msg-timeout
    uint32_t max_deliveries = 5;     // first delivery included
    uint32_t max_per_session = 512;  // --max-inflight
};

class InflightTable {
public:
    static constexpr uint32_t kNone = UINT32_MAX;

    struct Entry {
        net::Payload message;  // the stored message, shared with every other receiver
        int64_t message_id;
        uint64_t deadline_ms;
        uint32_t slot;
        uint32_t generation;
        uint32_t seq;         // the seq the RECV carried (a SyncOnce copy's own)
        uint16_t flags;       // the delivery envelope's flags (im/fanout.h)
        uint8_t deliveries;   // RECVs written so far
        uint32_t time_prev, time_next;  // deadline order; time_next links the free list
        uint32_t conn_prev, conn_next;  // the session's entries
    };

    InflightTable(uint32_t slots, const InflightOptions& options);

    // A RECV was written to `conn`. False when that dropped the session's
    // oldest entry to stay within max_per_session.
    bool add(net::ConnRef conn, int64_t message_id, const net::Payload& message, uint32_t seq, uint16_t flags,
             uint64_t now_ms);
    // The RECVACK: false when nothing was in flight under that id.
    bool ack(net::ConnRef conn, int64_t message_id);
    // The session closed: its entries go without a retransmission.
    void drop_session(net::ConnRef conn);

    // For each entry past its deadline: `resend(entry)` when deliveries are
    // left (the entry is re-armed; `resend` returning false releases it
    // instead: its message must not go again, e.g. it expired), else the
    // entry is dropped. Returns the number dropped for running out of
    // deliveries.
    template <class Resend>
    size_t expire(uint64_t now_ms, Resend&& resend) {
        size_t dropped = 0;
        while (time_head_ != kNone && entries_[time_head_].deadline_ms <= now_ms) {
            const uint32_t index = time_head_;
            Entry& e = entries_[index];
            if (e.deliveries >= options_.max_deliveries) {
                release(index);
                ++dropped;
                continue;
            }
            ++e.deliveries;
            e.deadline_ms = now_ms + options_.timeout_ms;
            unlink_time(index);
            link_time_tail(index);
            if (!resend(static_cast<const Entry&>(entries_[index]))) release(index);
        }
        return dropped;
    }

    size_t size() const { return live_; }
    uint64_t next_deadline_ms() const { return time_head_ == kNone ? 0 : entries_[time_head_].deadline_ms; }

private:
    struct SessionList {
        uint32_t oldest;
        uint32_t newest;
        uint32_t count;
        uint32_t generation;
    };
    static_assert(sizeof(SessionList) == 16);

    uint32_t find(uint32_t slot, int64_t message_id) const;  // entry index or kNone
    void index_insert(uint32_t entry);
    void index_erase(uint32_t entry);
    size_t home(uint32_t slot, int64_t message_id) const;
    void grow_index();
    void release(uint32_t index);
    void unlink_time(uint32_t index);
    void link_time_tail(uint32_t index);

    InflightOptions options_;
    std::vector<Entry> entries_;
    uint32_t free_head_ = kNone;
    uint32_t time_head_ = kNone, time_tail_ = kNone;
    size_t live_ = 0;
    std::vector<uint32_t> index_;  // entry index + 1; 0 = empty; linear probing, backward-shift delete
    size_t index_mask_ = 0;
    net::SlotArray<SessionList> sessions_;
};

}  // namespace limaoim::gateway
