// im::ChannelOrder: a cluster node's fan-out delivers each channel's
// messages in seq order, whichever node stored them.
#include <doctest/doctest.h>

#include "limaoim/im/channel_order.h"

using namespace limaoim;
using namespace limaoim::im;

namespace {

FanoutItem item(const std::string& channel, uint32_t seq, uint8_t type = 2, const std::string& from = "u") {
    Message m;
    m.channel_type = type;
    m.channel_id = channel;
    m.from_uid = from;
    m.message_seq = seq;
    m.message_id = seq;
    m.payload.assign(1, 'p');  // (operator=("p") trips a false -Wrestrict in GCC 12)
    FanoutItem out;
    out.message = net::Payload::copy_of(encode(m.view()));
    return out;
}

// Admits `channel`'s `seq` at `now_ms`; the seqs released, in order.
struct Harness {
    ChannelOrder order;
    explicit Harness(ChannelOrder::Limits limits = {}) : order(limits) {}

    std::vector<uint32_t> admit(const std::string& channel, uint32_t seq, int64_t now_ms = 0, uint8_t type = 2,
                                const std::string& from = "u") {
        FanoutItem it = item(channel, seq, type, from);
        const MessageView m = *decode(it.message.bytes());
        std::vector<FanoutItem> ready;
        order.admit(std::move(it), m, now_ms, ready);
        return seqs(ready);
    }
    std::vector<uint32_t> expire(int64_t now_ms) {
        std::vector<FanoutItem> ready;
        order.expire(now_ms, ready);
        return seqs(ready);
    }
    static std::vector<uint32_t> seqs(const std::vector<FanoutItem>& items) {
        std::vector<uint32_t> out;
        for (const FanoutItem& i : items) out.push_back(decode(i.message.bytes())->message_seq);
        return out;
    }
};

using Seqs = std::vector<uint32_t>;

}  // namespace

TEST_CASE("channel order: in order goes at once; a later seq waits for the earlier one, then both go in order") {
    Harness h;
    CHECK(h.admit("g", 5) == Seqs{5});  // a channel not seen yet: its first message is taken as is
    CHECK(h.admit("g", 6) == Seqs{6});
    CHECK(h.admit("g", 8) == Seqs{});   // 7 is on its way from another node
    CHECK(h.admit("g", 9) == Seqs{});
    CHECK(h.order.held() == 2);
    CHECK(h.admit("other", 1) == Seqs{1});  // another channel does not wait
    CHECK(h.admit("g", 7) == Seqs{7, 8, 9});
    CHECK(h.order.held() == 0);
    CHECK(h.order.counts().held == 2);
    CHECK(h.order.counts().expired == 0);
    CHECK(h.order.next_expiry_ms() == std::numeric_limits<int64_t>::max());  // nothing to wake up for
}

TEST_CASE("channel order: a gap never filled is given up after hold_limit; what was held goes in seq order") {
    Harness h({.hold_limit = std::chrono::milliseconds(1000)});
    CHECK(h.admit("g", 1, 0) == Seqs{1});
    CHECK(h.admit("g", 4, 100) == Seqs{});  // 2 and 3 missing
    CHECK(h.admit("g", 3, 200) == Seqs{});  // 3 came, 2 still missing
    CHECK(h.order.next_expiry_ms() == 1100);
    CHECK(h.expire(1099) == Seqs{});
    CHECK(h.expire(1100) == Seqs{3, 4});  // 2 is left to sync
    CHECK(h.order.counts().expired == 1);
    CHECK(h.admit("g", 5, 1200) == Seqs{5});  // the channel goes on from 4
    CHECK(h.admit("g", 2, 1300) == Seqs{2});  // too late to be in order: delivered, not dropped
    CHECK(h.order.held() == 0);
}

TEST_CASE("channel order: past max_held the oldest hold ends at once") {
    Harness h({.hold_limit = std::chrono::milliseconds(1000), .max_held = 2});
    CHECK(h.admit("a", 1) == Seqs{1});
    CHECK(h.admit("b", 1) == Seqs{1});
    CHECK(h.admit("a", 3) == Seqs{});
    CHECK(h.admit("b", 3) == Seqs{});
    CHECK(h.admit("b", 4) == Seqs{3});  // a third held: the oldest hold (a's 3) ends
    CHECK(h.order.held() == 2);
    CHECK(h.order.counts().expired == 1);
    CHECK(h.admit("a", 4) == Seqs{4});  // a goes on from 3
    CHECK(h.admit("b", 2) == Seqs{2, 3, 4});
}

TEST_CASE("channel order: both directions of a person chat are one channel (one log, one seq counter)") {
    Harness h;
    CHECK(h.admit("bob", 1, 0, 1, "alice") == Seqs{1});
    CHECK(h.admit("alice", 3, 0, 1, "bob") == Seqs{});
    CHECK(h.admit("bob", 2, 0, 1, "alice") == Seqs{2, 3});
    CHECK(h.order.channels() == 1);
}

TEST_CASE("channel order: the same seq held twice is delivered, not lost; past max_channels idle channels are "
          "forgotten") {
    Harness h({.hold_limit = std::chrono::milliseconds(1000), .max_held = 100, .max_channels = 2});
    CHECK(h.admit("a", 1) == Seqs{1});
    CHECK(h.admit("a", 3) == Seqs{});
    CHECK(h.admit("a", 3) == Seqs{3});
    CHECK(h.admit("b", 1) == Seqs{1});
    CHECK(h.admit("c", 7) == Seqs{7});   // b forgotten (idle); a holds a message: kept
    CHECK(h.order.channels() == 2);
    CHECK(h.admit("b", 5) == Seqs{5});   // taken as first again
    CHECK(h.admit("a", 2) == Seqs{2, 3});
}
