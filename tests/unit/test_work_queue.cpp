// util/work_queue.h: the bounded queue the committer and the fan-out drain.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <thread>
#include <vector>

#include "limaoim/util/work_queue.h"

using limaoim::util::WorkQueue;
using namespace std::chrono_literals;

TEST_CASE("work_queue: try_push refuses at its limit and after stop, leaving the item; take keeps the order") {
    WorkQueue<std::vector<int>> queue(3);
    CHECK(queue.try_push({1}));
    CHECK(queue.try_push({2}, 2));
    std::vector<int> refused{3};
    CHECK_FALSE(queue.try_push(std::move(refused), 2));  // a lower limit of the caller's
    CHECK(refused == std::vector<int>{3});                // untouched: the caller answers it
    CHECK(queue.try_push(std::move(refused)));
    CHECK_FALSE(queue.try_push({4}));                     // the capacity
    std::vector<std::vector<int>> taken;
    CHECK(queue.take(taken, 2) == 1);                     // a batch of 2, oldest first
    CHECK(taken == std::vector<std::vector<int>>{{1}, {2}});
    std::deque<std::vector<int>> rest;
    CHECK(queue.take(rest) == 0);
    CHECK(rest.front() == std::vector<int>{3});
    queue.stop();
    CHECK_FALSE(queue.try_push({5}));
}

TEST_CASE("work_queue: push_all waits for room while full, then queues everything") {
    WorkQueue<int> queue(2);
    std::vector<int> first{1, 2};
    queue.push_all(first);
    CHECK(first.empty());
    std::atomic<bool> pushed{false};
    std::thread pusher([&] {
        std::vector<int> more{3, 4, 5};
        queue.push_all(more);
        pushed = true;
    });
    std::this_thread::sleep_for(20ms);
    CHECK_FALSE(pushed);  // full: it waits
    std::vector<int> taken;
    queue.take(taken, 1);
    pusher.join();        // room: all three go in, past the capacity
    CHECK(queue.take(taken) == 0);
    CHECK(taken == std::vector<int>{1, 2, 3, 4, 5});
}

TEST_CASE("work_queue: the thread wakes for what it waits for, and for stop") {
    WorkQueue<int> queue(16);
    std::atomic<size_t> seen{0};
    std::atomic<bool> stopped{false};
    queue.start("test-queue", [&] {
        seen = queue.wait(3);  // a batch of three
        seen = queue.wait(8);  // more than will come: only stop() ends it
        stopped = queue.stopping();
    });
    for (int i = 0; i < 3; ++i) CHECK(queue.try_push(int(i)));
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (seen != 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    CHECK(seen == 3);
    queue.stop();  // joins: the second wait ended
    CHECK(stopped);
    CHECK(queue.sleep_unless_stopped(1h));  // stopping: no sleep
}

TEST_CASE("work_queue: the queue's thread knows itself from its first instruction; the caller is not it") {
    WorkQueue<int> queue(4);
    std::atomic<int> inside{-1};
    CHECK_FALSE(queue.on_own_thread());  // not started
    queue.start("test-owner", [&] { inside = queue.on_own_thread() ? 1 : 0; });
    queue.stop();  // joins
    CHECK(inside.load() == 1);
    CHECK_FALSE(queue.on_own_thread());
}
