#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>

#include "limaoim/log/clock.h"
#include "limaoim/stats/layout.h"

using namespace limaoim;  // clock:: below is limaoim::clock (a name before :: is never the C function)

TEST_CASE("clock: the units of one clock agree, and the wall clock is the system clock") {
    using namespace std::chrono;
    const int64_t ns = clock::steady_ns();
    const uint64_t us = clock::steady_us();
    const int64_t ms = clock::steady_ms();
    const int64_t chrono_ms = duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
    CHECK(int64_t(us) >= ns / 1000);
    CHECK(ms >= ns / 1'000'000);
    CHECK(ms - ns / 1'000'000 < 1000);  // read within a second of each other
    CHECK(std::llabs(chrono_ms - ms) < 1000);  // CLOCK_MONOTONIC is steady_clock's clock

    const int64_t wall_ms = clock::wall_ms();
    const int64_t system_ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
    CHECK(std::llabs(system_ms - wall_ms) < 1000);
    CHECK(std::llabs(clock::wall_seconds() - wall_ms / 1000) <= 1);
}

TEST_CASE("histogram_bucket: bucket i holds [2^i, 2^(i+1)); 0 goes in the first, the rest in the last") {
    using limaoim::stats::histogram_bucket;
    using limaoim::stats::kLatencyBuckets;
    CHECK(histogram_bucket(0) == 0);
    CHECK(histogram_bucket(1) == 0);
    CHECK(histogram_bucket(2) == 1);
    CHECK(histogram_bucket(3) == 1);
    CHECK(histogram_bucket(4) == 2);
    CHECK(histogram_bucket(1023) == 9);
    CHECK(histogram_bucket(1024) == 10);
    CHECK(histogram_bucket(uint64_t(1) << (kLatencyBuckets - 1)) == kLatencyBuckets - 1);
    CHECK(histogram_bucket(~uint64_t(0)) == kLatencyBuckets - 1);
}
