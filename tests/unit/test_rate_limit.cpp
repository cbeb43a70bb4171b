// im/rate_limit.h: the server-wide SEND rate and the per-user one, weighted
// by receivers; times are given, so nothing here waits.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "limaoim/im/rate_limit.h"

using limaoim::im::SendRateLimit;
using limaoim::im::UserRateLimit;

namespace {
constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kStart = 1000 * kSecond;
}  // namespace

TEST_CASE("rate limit: the server-wide one lets a second's worth through, then owes time") {
    SendRateLimit limit(100);
    for (int i = 0; i < 100; ++i) CHECK(limit.charge(kStart) == 0);
    CHECK(limit.charge(kStart) == 10);  // the 101st is 10 ms early
    CHECK(SendRateLimit(0).charge(kStart) == 0);
}

TEST_CASE("rate limit: per user, a flooder owes time while another user sends at once") {
    UserRateLimit limit(100);
    for (int i = 0; i < 100; ++i) REQUIRE(limit.charge("flooder", 1, kStart) == 0);
    uint32_t owed = 0;
    for (int i = 0; i < 100; ++i) owed = limit.charge("flooder", 1, kStart);
    CHECK(owed == 1000);  // 100 more than a second's worth: one second owed
    CHECK(limit.charge("victim", 1, kStart) == 0);
    // Time paid back: the flooder's next one goes at once again.
    CHECK(limit.charge("flooder", 1, kStart + 2 * kSecond) == 0);
}

TEST_CASE("rate limit: a SEND costs 1 + receivers/100; a big group's message owes at once") {
    CHECK(UserRateLimit::cost(1) == 1);
    CHECK(UserRateLimit::cost(99) == 1);
    CHECK(UserRateLimit::cost(100) == 2);
    CHECK(UserRateLimit::cost(20000) == 201);
    UserRateLimit limit(100);
    CHECK(limit.charge("member", UserRateLimit::cost(20000), kStart) == 1010);  // 201 units at 100/s, less the burst
    CHECK(limit.charge("member", UserRateLimit::cost(1), kStart) == 1020);
    CHECK(UserRateLimit(0).charge("member", 1'000'000, kStart) == 0);  // unlimited
    // A million-member group owes 100 s: paid in waits of at most 5 s, so
    // the session's PINGs are still read between them.
    CHECK(limit.charge("big", UserRateLimit::cost(1'000'000), kStart) == UserRateLimit::kMaxWaitMs);
    CHECK(limit.charge("big", 1, kStart + 5 * kSecond) == UserRateLimit::kMaxWaitMs);
}

TEST_CASE("rate limit: the per-user map keeps only senders still owing time, and at most twice as many") {
    UserRateLimit limit(100);
    for (int i = 0; i < 5000; ++i) limit.charge("u" + std::to_string(i), 1, kStart + i);
    CHECK(limit.tracked() == 5000);  // each owes 10 ms: all kept
    // Two seconds on, 5000 others: the first 5000 owe nothing and are swept
    // when the map reaches twice what the last sweep kept.
    size_t most = 0;
    for (int i = 0; i < 5000; ++i) {
        limit.charge("v" + std::to_string(i), 1, kStart + 2 * kSecond + i);
        most = std::max(most, limit.tracked());
    }
    CHECK(most <= 2 * 4096);
    CHECK(limit.tracked() == 5000);
    CHECK(limit.charge("u0", 1, kStart + 2 * kSecond + 5000) == 0);  // forgotten = owes nothing
}
