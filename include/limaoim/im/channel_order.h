// Puts one channel's messages back in seq order on a node of a cluster.
//
// In embedded mode the fan-out gets each channel's messages in seq order
// from the committer. With several nodes on one store, each node fans out
// what it stored at once, while the other nodes' messages arrive later
// through Redis: without this a session could get seq 3 before seq 2 (and
// clients take a seq gap as a reason to sync). So on a node of a cluster,
// the fan-out passes every persisted message through a ChannelOrder: a
// message whose channel is at the seq before it is released at once (with
// any held ones that follow it); a later one is held back until the gap is
// filled, or for `hold_limit` at most (a message that never comes: its
// node died between storing and telling, or its event was trimmed), then
// released anyway and the gap is left to sync.
//
// What it knows of a channel is the last seq it released. A channel it
// has not seen (or forgot: more than max_channels idle ones) takes its
// first message as is. Held messages are bounded by max_held: past it the
// oldest hold ends at once. One thread (the fan-out's); the items it holds
// own their bytes (net::Payload), so nothing else needs to live as long.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "limaoim/im/committer.h"
#include "limaoim/im/message.h"

namespace limaoim::im {

class ChannelOrder {
public:
    struct Limits {
        std::chrono::milliseconds hold_limit{1000};
        size_t max_held = 16384;        // messages held back, all channels together
        size_t max_channels = 1u << 16;  // channels remembered; past it the idle ones are forgotten
    };
    struct Counts {
        uint64_t held = 0;     // messages held back for an earlier seq
        uint64_t expired = 0;  // holds ended with the gap unfilled (by time or by max_held)
    };

    explicit ChannelOrder(Limits limits) : limits_(limits) {}

    // `item`, whose decoded message is `m` (persisted, seq > 0), arrives:
    // appends to `ready`, in order, what may be delivered now.
    void admit(FanoutItem&& item, const MessageView& m, int64_t now_ms, std::vector<FanoutItem>& ready);
    // Ends the holds older than hold_limit: appends their channels' held
    // messages up to them, and any that then follow in order.
    void expire(int64_t now_ms, std::vector<FanoutItem>& ready);
    // When expire() has something to do next; INT64_MAX when nothing is held.
    int64_t next_expiry_ms() const;
    size_t held() const { return held_count_; }
    size_t channels() const { return channels_.size(); }
    const Counts& counts() const { return counts_; }

private:
    struct Channel {
        uint32_t released = 0;                // the last seq delivered
        std::map<uint32_t, FanoutItem> held;  // by seq, all > released + 1
    };
    struct Hold {
        int64_t since_ms;
        std::string key;
        uint32_t seq;
    };
    // Releases `channel`'s held messages up to `seq`, then those that follow in order.
    void release_through(Channel& channel, uint32_t seq, std::vector<FanoutItem>& ready);
    void release_in_order(Channel& channel, std::vector<FanoutItem>& ready);
    void end_oldest_hold(std::vector<FanoutItem>& ready);
    bool still_held(const Hold& hold) const;
    // Pops the holds at the front whose messages went already, so that
    // next_expiry_ms() names a real one.
    void drop_released_holds();

    Limits limits_;
    std::unordered_map<std::string, Channel> channels_;  // by log id and channel type
    std::deque<Hold> holds_;  // in the order they began; entries whose message went already are skipped
    size_t held_count_ = 0;
    Counts counts_;
    std::string key_;  // reused for lookups
};

}  // namespace limaoim::im
