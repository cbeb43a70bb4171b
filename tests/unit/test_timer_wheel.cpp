#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "limaoim/net/timer_wheel.h"

using namespace limaoim::net;

namespace {
struct Node {
    int payload = 0;
    TimerLink link;
};

struct Fixture {
    std::vector<Node> nodes = std::vector<Node>(64);
    TimerWheel wheel{reinterpret_cast<std::byte*>(&nodes[0].link), sizeof(Node), 16, 100};
    std::vector<uint32_t> fired;

    void advance(uint32_t tick) {
        wheel.advance(tick, [&](uint32_t id) { fired.push_back(id); });
    }
};
}  // namespace

TEST_CASE("TimerWheel: fires at the due tick, not before") {
    Fixture f;
    f.wheel.schedule(3, 105);
    f.advance(104);
    CHECK(f.fired.empty());
    CHECK(f.wheel.scheduled(3));
    f.advance(105);
    CHECK(f.fired == std::vector<uint32_t>{3});
    CHECK_FALSE(f.wheel.scheduled(3));
    CHECK(f.wheel.pending() == 0);
}

TEST_CASE("TimerWheel: deadlines beyond one lap wait for their own tick") {
    Fixture f;
    f.wheel.schedule(1, 100 + 16 * 3 + 2);  // three laps of a 16-bucket wheel
    f.advance(100 + 16 * 3 + 1);
    CHECK(f.fired.empty());
    f.advance(100 + 16 * 3 + 2);
    CHECK(f.fired == std::vector<uint32_t>{1});
}

TEST_CASE("TimerWheel: cancel and reschedule") {
    Fixture f;
    f.wheel.schedule(1, 102);
    f.wheel.schedule(2, 102);
    f.wheel.schedule(3, 102);
    f.wheel.cancel(2);
    f.wheel.schedule(3, 110);  // moved later
    f.advance(105);
    CHECK(f.fired == std::vector<uint32_t>{1});
    f.advance(110);
    CHECK(f.fired == std::vector<uint32_t>{1, 3});
    f.wheel.cancel(3);  // cancelling an idle timer is harmless
    CHECK(f.wheel.pending() == 0);
}

TEST_CASE("TimerWheel: a past deadline fires on the next tick") {
    Fixture f;
    f.wheel.schedule(7, 50);
    f.advance(100);
    CHECK(f.fired.empty());
    f.advance(101);
    CHECK(f.fired == std::vector<uint32_t>{7});
}

TEST_CASE("TimerWheel: a callback may cancel another due timer of the same tick") {
    Fixture f;
    f.wheel.schedule(1, 101);
    f.wheel.schedule(2, 101);
    std::vector<uint32_t> fired;
    f.wheel.advance(101, [&](uint32_t id) {
        fired.push_back(id);
        f.wheel.cancel(id == 1 ? 2 : 1);
    });
    CHECK(fired.size() == 1);
}

TEST_CASE("TimerWheel: a callback may reschedule its own timer") {
    Fixture f;
    f.wheel.schedule(4, 101);
    int count = 0;
    f.wheel.advance(130, [&](uint32_t id) {
        if (++count < 3) f.wheel.schedule(id, f.wheel.current_tick() + 10);
    });
    CHECK(count == 3);  // at 101, 111, 121
}

TEST_CASE("TimerWheel: random schedules fire exactly once at their tick") {
    Fixture f;
    std::mt19937 rng(7);
    std::vector<uint32_t> due(64);
    for (uint32_t id = 0; id < 64; ++id) {
        due[id] = 101 + rng() % 100;
        f.wheel.schedule(id, due[id]);
    }
    for (uint32_t id = 0; id < 64; id += 5) f.wheel.cancel(id);
    for (uint32_t tick = 101; tick <= 200; ++tick) {
        f.fired.clear();
        f.advance(tick);
        for (uint32_t id : f.fired) CHECK(due[id] == tick);
        for (uint32_t id = 0; id < 64; ++id) {
            bool expect = due[id] == tick && id % 5 != 0;
            CHECK(expect == (std::find(f.fired.begin(), f.fired.end(), id) != f.fired.end()));
        }
    }
    CHECK(f.wheel.pending() == 0);
}
