#include <doctest/doctest.h>

#include <vector>

#include "limaoim/net/loop_timer.h"

using namespace limaoim::net;

TEST_CASE("LoopTimers: due order, repeat from the due time, cancel, ids reused safely") {
    LoopTimers timers;
    std::vector<int> fired;
    timers.add(30, [&] { fired.push_back(30); }, 0);
    timers.add(10, [&] { fired.push_back(10); }, 0);
    const TimerId every = timers.add(20, [&] { fired.push_back(20); }, 20);
    CHECK(timers.next_due() == 10);
    timers.run_due(9);
    CHECK(fired.empty());
    timers.run_due(25);
    CHECK(fired == std::vector<int>{10, 20});
    CHECK(timers.next_due() == 30);
    timers.run_due(45);
    CHECK(fired == std::vector<int>{10, 20, 30, 20});  // the repeat at 40, its own period
    CHECK(timers.next_due() == 60);
    // Missed periods are skipped, not bunched: next at now + period.
    fired.clear();
    timers.run_due(200);
    CHECK(fired == std::vector<int>{20});
    CHECK(timers.next_due() == 220);
    timers.cancel(every);
    CHECK(timers.next_due() == UINT64_MAX);
    CHECK(timers.active() == 0);
    // A stale id (its timer finished, the slot reused) cancels nothing.
    const TimerId reused = timers.add(300, [&] { fired.push_back(300); }, 0);
    CHECK(uint32_t(reused) == uint32_t(every));
    timers.cancel(every);
    timers.run_due(300);
    CHECK(fired.back() == 300);
}

TEST_CASE("LoopTimers: a callback may cancel itself and add timers") {
    LoopTimers timers;
    int runs = 0;
    TimerId self = 0;
    self = timers.add(10, [&] {
        ++runs;
        timers.cancel(self);
        timers.add(15, [&] { runs += 100; }, 0);
    }, 10);
    timers.run_due(10);
    CHECK(runs == 1);
    timers.run_due(50);
    CHECK(runs == 101);
    CHECK(timers.active() == 0);
}
