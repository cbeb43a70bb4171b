// gateway/inflight.h: a worker's RECVs waiting for their RECVACK (SERVER.md §9).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "limaoim/gateway/inflight.h"

using namespace limaoim;
using gateway::InflightOptions;
using gateway::InflightTable;
using net::ConnRef;
using net::Payload;

namespace {

Payload payload_of(std::string_view text) {
    return Payload::copy_of({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

std::string text_of(const Payload& p) {
    auto b = p.bytes();
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

InflightOptions options(uint32_t timeout, uint32_t deliveries, uint32_t per_session) {
    InflightOptions o;
    o.timeout_ms = timeout;
    o.max_deliveries = deliveries;
    o.max_per_session = per_session;
    return o;
}

struct Resent {
    int64_t message_id;
    uint32_t slot, generation, seq;
    uint16_t flags;
    uint8_t deliveries;
    uint64_t deadline_ms;
    std::string bytes;
};

template <class Table>
std::pair<size_t, std::vector<Resent>> expire_at(Table& table, uint64_t now) {
    std::vector<Resent> resent;
    const size_t dropped = table.expire(now, [&](const InflightTable::Entry& e) {
        resent.push_back({e.message_id, e.slot, e.generation, e.seq, e.flags, e.deliveries, e.deadline_ms,
                          text_of(e.message)});
        return true;
    });
    return {dropped, resent};
}

}  // namespace

TEST_CASE("inflight: add then ack; a second ack or an unknown id is refused") {
    InflightTable table(1024, options(1000, 5, 16));
    const ConnRef a{7, 1}, b{8, 1};
    const Payload m = payload_of("message-1");
    CHECK(table.size() == 0);
    CHECK(table.add(a, 100, m, 1, 0, 0));
    CHECK(table.add(a, 101, m, 2, 0, 0));
    CHECK(table.add(b, 100, m, 1, 0, 0));  // the same message to another session: its own entry
    CHECK(table.size() == 3);
    CHECK(m.use_count() == 4);  // shared, not copied

    CHECK_FALSE(table.ack(a, 102));
    CHECK_FALSE(table.ack({9, 1}, 100));
    CHECK(table.ack(a, 100));
    CHECK(table.size() == 2);
    CHECK_FALSE(table.ack(a, 100));
    CHECK(table.ack(b, 100));
    CHECK(table.ack(a, 101));
    CHECK(table.size() == 0);
    CHECK(m.use_count() == 1);  // the table let go of every reference
    CHECK(table.next_deadline_ms() == 0);
}

TEST_CASE("inflight: an ack with another generation of the slot is refused") {
    InflightTable table(64, options(1000, 5, 16));
    CHECK(table.add({3, 1}, 55, payload_of("x"), 1, 0, 0));
    CHECK_FALSE(table.ack({3, 2}, 55));
    CHECK_FALSE(table.ack({3, 0}, 55));
    CHECK(table.size() == 1);
    CHECK(table.ack({3, 1}, 55));
    CHECK(table.size() == 0);
}

TEST_CASE("inflight: expire resends after the timeout, re-armed, up to max_deliveries, then drops") {
    InflightTable table(64, options(100, 3, 16));
    const ConnRef c{5, 9};
    CHECK(table.add(c, 42, payload_of("recv-bytes"), 7, 3, 1000));
    CHECK(table.next_deadline_ms() == 1100);

    auto [dropped, resent] = expire_at(table, 1099);
    CHECK(dropped == 0);
    CHECK(resent.empty());

    std::tie(dropped, resent) = expire_at(table, 1150);  // late: re-armed from now, not from the deadline
    CHECK(dropped == 0);
    REQUIRE(resent.size() == 1);
    CHECK(resent[0].message_id == 42);
    CHECK(resent[0].slot == 5);
    CHECK(resent[0].generation == 9);
    CHECK(resent[0].seq == 7);
    CHECK(resent[0].flags == 3);
    CHECK(resent[0].deliveries == 2);
    CHECK(resent[0].deadline_ms == 1250);
    CHECK(resent[0].bytes == "recv-bytes");
    CHECK(table.next_deadline_ms() == 1250);
    CHECK(table.size() == 1);

    std::tie(dropped, resent) = expire_at(table, 1249);
    CHECK(resent.empty());
    std::tie(dropped, resent) = expire_at(table, 1250);
    REQUIRE(resent.size() == 1);
    CHECK(resent[0].deliveries == 3);
    CHECK(resent[0].deadline_ms == 1350);

    // The third delivery was the last: dropped at its deadline, not resent.
    std::tie(dropped, resent) = expire_at(table, 1350);
    CHECK(dropped == 1);
    CHECK(resent.empty());
    CHECK(table.size() == 0);
    CHECK(table.next_deadline_ms() == 0);
    CHECK_FALSE(table.ack(c, 42));
}

TEST_CASE("inflight: expire handles many entries in deadline order and counts the dropped") {
    InflightTable table(256, options(10, 2, 100));
    // Deadlines 10..29 (added at 0..19, one per ms, on 5 sessions).
    for (uint32_t i = 0; i < 20; ++i) CHECK(table.add({i % 5, 1}, 1000 + i, payload_of("m"), i, 0, i));
    CHECK(table.next_deadline_ms() == 10);
    // At 19 the first 10 are resent (re-armed to 29).
    auto [dropped, resent] = expire_at(table, 19);
    CHECK(dropped == 0);
    REQUIRE(resent.size() == 10);
    for (size_t i = 0; i < resent.size(); ++i) {
        CHECK(resent[i].message_id == int64_t(1000 + i));
        CHECK(resent[i].deadline_ms == 29);
    }
    CHECK(table.next_deadline_ms() == 20);
    CHECK(table.ack({0, 1}, 1000));
    CHECK(table.ack({1, 1}, 1001));
    // At 29: the other 10 are resent, the 8 left of the resent ones drop.
    std::tie(dropped, resent) = expire_at(table, 29);
    CHECK(dropped == 8);
    REQUIRE(resent.size() == 10);
    for (size_t i = 0; i < resent.size(); ++i) CHECK(resent[i].message_id == int64_t(1010 + i));
    CHECK(table.size() == 10);
    CHECK(table.next_deadline_ms() == 39);
    std::tie(dropped, resent) = expire_at(table, 39);
    CHECK(dropped == 10);
    CHECK(resent.empty());
    CHECK(table.size() == 0);
}

TEST_CASE("inflight: max_deliveries 1 drops at the first deadline") {
    InflightTable table(16, options(5, 1, 4));
    CHECK(table.add({1, 1}, 1, payload_of("a"), 0, 0, 0));
    CHECK(table.add({2, 1}, 2, payload_of("b"), 0, 0, 0));
    auto [dropped, resent] = expire_at(table, 5);
    CHECK(dropped == 2);
    CHECK(resent.empty());
    CHECK(table.size() == 0);
}

TEST_CASE("inflight: a resend that returns false releases its entry (not counted as dropped), the others stay") {
    InflightTable table(16, options(5, 3, 4));
    CHECK(table.add({1, 1}, 1, payload_of("expired"), 0, 0, 0));
    CHECK(table.add({2, 1}, 2, payload_of("live"), 0, 0, 0));
    std::vector<int64_t> asked;
    const size_t dropped = table.expire(5, [&](const InflightTable::Entry& e) {
        asked.push_back(e.message_id);
        return e.message_id != 1;
    });
    CHECK(dropped == 0);
    CHECK(asked == std::vector<int64_t>{1, 2});
    CHECK(table.size() == 1);
    CHECK_FALSE(table.ack({1, 1}, 1));  // gone
    CHECK(table.ack({2, 1}, 2));
}

TEST_CASE("inflight: the per-session cap evicts the session's oldest entry") {
    InflightTable table(64, options(1000, 5, 3));
    const ConnRef a{1, 1}, b{2, 1};
    CHECK(table.add(a, 1, payload_of("1"), 0, 0, 0));
    CHECK(table.add(a, 2, payload_of("2"), 0, 0, 1));
    CHECK(table.add(a, 3, payload_of("3"), 0, 0, 2));
    CHECK(table.add(b, 1, payload_of("b1"), 0, 0, 3));
    CHECK(table.size() == 4);
    CHECK_FALSE(table.add(a, 4, payload_of("4"), 0, 0, 4));  // evicted 1
    CHECK(table.size() == 4);
    CHECK_FALSE(table.ack(a, 1));
    CHECK(table.ack(b, 1));  // the other session is not touched
    CHECK(table.next_deadline_ms() == 1001);  // entry 1's deadline went with it
    CHECK_FALSE(table.add(a, 5, payload_of("5"), 0, 0, 5));  // evicted 2
    CHECK_FALSE(table.ack(a, 2));
    CHECK(table.ack(a, 3));
    CHECK(table.ack(a, 4));
    CHECK(table.ack(a, 5));
    CHECK(table.size() == 0);
    // Room again after the acks.
    CHECK(table.add(a, 6, payload_of("6"), 0, 0, 6));
}

TEST_CASE("inflight: max_per_session 2 and 1 (the edges of eviction)") {
    SUBCASE("2") {
        InflightTable table(8, options(100, 5, 2));
        const ConnRef c{4, 3};
        CHECK(table.add(c, 10, payload_of("a"), 0, 0, 0));
        CHECK(table.add(c, 11, payload_of("b"), 0, 0, 1));
        CHECK_FALSE(table.add(c, 12, payload_of("c"), 0, 0, 2));
        CHECK(table.size() == 2);
        CHECK_FALSE(table.ack(c, 10));
        CHECK_FALSE(table.add(c, 13, payload_of("d"), 0, 0, 3));
        CHECK_FALSE(table.ack(c, 11));
        CHECK(table.size() == 2);
        // Oldest first, in the order they came.
        auto [dropped, resent] = expire_at(table, 1000);
        REQUIRE(resent.size() == 2);
        CHECK(resent[0].message_id == 12);
        CHECK(resent[1].message_id == 13);
        CHECK(table.ack(c, 12));
        CHECK(table.add(c, 14, payload_of("e"), 0, 0, 1001));  // one left, room for another
        CHECK_FALSE(table.add(c, 15, payload_of("f"), 0, 0, 1002));
        CHECK_FALSE(table.ack(c, 13));
        CHECK(table.ack(c, 14));
        CHECK(table.ack(c, 15));
        CHECK(table.size() == 0);
    }
    SUBCASE("1") {
        InflightTable table(8, options(100, 5, 1));
        const ConnRef c{0, 1};
        CHECK(table.add(c, 1, payload_of("a"), 0, 0, 0));
        for (int64_t id = 2; id < 50; ++id) {
            CHECK_FALSE(table.add(c, id, payload_of("x"), 0, 0, uint64_t(id)));
            CHECK(table.size() == 1);
            CHECK_FALSE(table.ack(c, id - 1));
        }
        CHECK(table.ack(c, 49));
        CHECK(table.size() == 0);
    }
}

TEST_CASE("inflight: the same message twice on one session is one entry, re-armed") {
    InflightTable table(16, options(100, 3, 8));
    const ConnRef c{2, 2};
    CHECK(table.add(c, 9, payload_of("old"), 1, 0, 0));
    CHECK(table.add(c, 10, payload_of("other"), 1, 0, 10));
    auto [dropped, resent] = expire_at(table, 100);  // 9 resent once
    REQUIRE(resent.size() == 1);
    CHECK(table.add(c, 9, payload_of("new"), 2, 1, 150));
    CHECK(table.size() == 2);
    CHECK(table.next_deadline_ms() == 110);  // 10 is now first
    std::tie(dropped, resent) = expire_at(table, 250);
    REQUIRE(resent.size() == 2);
    CHECK(resent[0].message_id == 10);
    CHECK(resent[1].message_id == 9);
    CHECK(resent[1].bytes == "new");
    CHECK(resent[1].seq == 2);
    CHECK(resent[1].flags == 1);
    CHECK(resent[1].deliveries == 2);  // the count started again
    CHECK(table.ack(c, 9));
    CHECK_FALSE(table.ack(c, 9));
}

TEST_CASE("inflight: drop_session removes that session's entries only") {
    InflightTable table(4096, options(100, 5, 1000));
    const ConnRef a{10, 1}, b{11, 1}, c{4000, 7};
    for (int64_t id = 0; id < 300; ++id) {
        CHECK(table.add(a, id, payload_of("a"), 0, 0, 0));
        CHECK(table.add(b, id, payload_of("b"), 0, 0, 0));
        if (id % 3 == 0) CHECK(table.add(c, id, payload_of("c"), 0, 0, 0));
    }
    CHECK(table.size() == 700);
    table.drop_session({10, 2});  // another generation: nothing
    CHECK(table.size() == 700);
    table.drop_session({12, 1});  // no entries: nothing
    CHECK(table.size() == 700);
    table.drop_session(a);
    CHECK(table.size() == 400);
    for (int64_t id = 0; id < 300; ++id) CHECK_FALSE(table.ack(a, id));
    for (int64_t id = 0; id < 300; id += 2) CHECK(table.ack(b, id));
    CHECK(table.size() == 250);
    table.drop_session(c);
    CHECK(table.size() == 150);
    table.drop_session(b);
    CHECK(table.size() == 0);
    CHECK(table.next_deadline_ms() == 0);
    // The slot is usable again (its page was given back).
    CHECK(table.add(a, 1, payload_of("again"), 0, 0, 0));
    CHECK(table.ack(a, 1));
}

TEST_CASE("inflight: a new session in a slot replaces the old one's entries") {
    InflightTable table(16, options(100, 5, 8));
    CHECK(table.add({6, 1}, 1, payload_of("a"), 0, 0, 0));
    CHECK(table.add({6, 1}, 2, payload_of("b"), 0, 0, 0));
    CHECK(table.add({6, 2}, 3, payload_of("c"), 0, 0, 0));
    CHECK(table.size() == 1);
    CHECK_FALSE(table.ack({6, 1}, 1));
    CHECK(table.ack({6, 2}, 3));
}

TEST_CASE("inflight: a new session in a slot gets its own entry for a message the old one still had") {
    // add() drops a previous generation's entries (see above), but the
    // "same message again" path finds the old generation's entry by (slot,
    // id) and re-arms it: the new session's RECVACK then cannot ack it.
    InflightTable table(16, options(100, 5, 8));
    CHECK(table.add({6, 1}, 1, payload_of("a"), 0, 0, 0));
    CHECK(table.add({6, 1}, 2, payload_of("b"), 0, 0, 0));
    CHECK(table.add({6, 2}, 1, payload_of("a"), 0, 0, 10));
    CHECK(table.size() == 1);          // the old session's entry 2 is gone
    CHECK(table.ack({6, 2}, 1));       // the new session's RECVACK
    CHECK_FALSE(table.ack({6, 1}, 2));
    CHECK(table.size() == 0);
}

TEST_CASE("inflight: next_deadline_ms follows the oldest entry") {
    InflightTable table(16, options(100, 5, 8));
    CHECK(table.next_deadline_ms() == 0);
    CHECK(table.add({1, 1}, 1, payload_of("a"), 0, 0, 10));
    CHECK(table.add({2, 1}, 2, payload_of("b"), 0, 0, 20));
    CHECK(table.add({3, 1}, 3, payload_of("c"), 0, 0, 30));
    CHECK(table.next_deadline_ms() == 110);
    CHECK(table.ack({2, 1}, 2));
    CHECK(table.next_deadline_ms() == 110);
    CHECK(table.ack({1, 1}, 1));
    CHECK(table.next_deadline_ms() == 130);
    table.drop_session({3, 1});
    CHECK(table.next_deadline_ms() == 0);
}

TEST_CASE("inflight: 100k random adds, acks, closes against a model") {
    constexpr uint32_t kSlots = 5000, kCap = 16;
    InflightTable table(kSlots, options(1000, 5, kCap));
    struct Session {
        uint32_t generation = 1;
        std::deque<int64_t> ids;  // oldest first
    };
    std::vector<Session> model(kSlots);
    size_t model_size = 0;
    std::mt19937_64 rng(12345);
    const Payload shared = payload_of("shared message");
    size_t evictions = 0, acks_ok = 0, mismatches = 0;

    auto model_erase = [&](Session& s, int64_t id) {
        auto it = std::find(s.ids.begin(), s.ids.end(), id);
        if (it == s.ids.end()) return false;
        s.ids.erase(it);
        --model_size;
        return true;
    };

    for (int op = 0; op < 300000; ++op) {
        const uint32_t slot = uint32_t(rng() % kSlots);
        Session& s = model[slot];
        const ConnRef conn{slot, s.generation};
        const uint64_t r = rng() % 100;
        if (r < 55) {
            // Snowflake-like ids: many sessions get the same message.
            const int64_t id = (int64_t(1700000000000 + rng() % 2000) << 22) | int64_t(rng() % 8);
            const bool present = std::find(s.ids.begin(), s.ids.end(), id) != s.ids.end();
            bool expect = true;
            if (!present) {
                if (s.ids.size() >= kCap) {
                    s.ids.pop_front();
                    --model_size;
                    expect = false;
                    ++evictions;
                }
                s.ids.push_back(id);
                ++model_size;
            }
            if (table.add(conn, id, shared, 0, 0, uint64_t(op)) != expect) ++mismatches;
        } else if (r < 90) {
            // Ack one it has (mostly) or a random id.
            int64_t id = int64_t(rng());
            if (!s.ids.empty() && rng() % 4) id = s.ids[rng() % s.ids.size()];
            const bool expect = model_erase(s, id);
            acks_ok += expect;
            if (table.ack(conn, id) != expect) ++mismatches;
            // A stale generation never acks.
            if (!s.ids.empty() && table.ack({slot, s.generation + 1}, s.ids.front())) ++mismatches;
        } else if (r < 97) {
            table.drop_session({slot, s.generation + 5});  // not this session: nothing
        } else {
            table.drop_session(conn);  // closed; the slot's next session has a new generation
            model_size -= s.ids.size();
            s.ids.clear();
            ++s.generation;
        }
        if (table.size() != model_size) {
            ++mismatches;
            break;
        }
    }
    CHECK(mismatches == 0);
    CHECK(table.size() == model_size);
    CHECK(evictions > 0);
    CHECK(acks_ok > 1000);
    CHECK(model_size > 10000);

    // Everything the model holds is there, exactly once.
    size_t found = 0;
    for (uint32_t slot = 0; slot < kSlots; ++slot)
        for (int64_t id : model[slot].ids) found += table.ack({slot, model[slot].generation}, id);
    CHECK(found == model_size);
    CHECK(table.size() == 0);
    CHECK(shared.use_count() == 1);
}

TEST_CASE("inflight: 100k entries expire in full and the counts add up") {
    constexpr uint32_t kSlots = 10000;
    InflightTable table(kSlots, options(50, 2, 1000));
    std::mt19937 rng(99);
    std::set<std::pair<uint32_t, int64_t>> model;
    uint64_t now = 0;
    for (int i = 0; i < 100000; ++i) {
        const uint32_t slot = rng() % kSlots;
        const int64_t id = int64_t(i);
        CHECK(table.add({slot, 1}, id, Payload(), 0, 0, now));
        model.insert({slot, id});
        if (i % 1000 == 0) ++now;
    }
    REQUIRE(table.size() == model.size());
    // Random acks.
    size_t acked = 0;
    for (auto it = model.begin(); it != model.end();) {
        if (rng() % 3 == 0) {
            CHECK(table.ack({it->first, 1}, it->second));
            it = model.erase(it);
            ++acked;
        } else {
            ++it;
        }
    }
    CHECK(acked > 20000);
    CHECK(table.size() == model.size());
    size_t resent_count = 0;
    auto [dropped, resent] = expire_at(table, 1000);
    resent_count = resent.size();
    CHECK(dropped == 0);
    CHECK(resent_count == model.size());
    std::tie(dropped, resent) = expire_at(table, 1050);
    CHECK(dropped == model.size());
    CHECK(table.size() == 0);
}
