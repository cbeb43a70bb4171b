#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <string>

#include "limaoim/net/capacity.h"
#include "limaoim/net/slab.h"

using namespace limaoim::net;

namespace {
struct Obj {
    uint64_t a;
    uint64_t b;
};

size_t rss_kib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
    return 0;
}
}  // namespace

TEST_CASE("SlotArray: slots start zeroed and pages are resident only while a slot is live") {
    SlotArray<Obj> slots(100000);
    CHECK(slots.resident_pages() == 0);
    Obj& o = slots.activate(5);
    CHECK(o.a == 0);
    o.a = 42;
    CHECK(slots.resident_pages() == 1);
    slots.activate(6).a = 7;            // same page
    CHECK(slots.resident_pages() == 1);
    slots.activate(99999).b = 1;        // last page
    CHECK(slots.resident_pages() == 2);
    slots.deactivate(5);
    CHECK(slots.resident_pages() == 2);
    CHECK(slots[6].a == 7);             // the page is still there
    slots.deactivate(6);
    CHECK(slots.resident_pages() == 1);
    CHECK(slots[5].a == 0);             // returned page reads as zeros
    CHECK(slots[6].a == 0);
    slots.deactivate(99999);
    CHECK(slots.resident_pages() == 0);
}

TEST_CASE("SlotArray: releasing every slot gives the memory back to the kernel") {
    constexpr size_t kCount = 1 << 16;  // 1 MiB of 16-byte objects
    SlotArray<Obj> slots(kCount);
    size_t before = rss_kib();
    for (size_t i = 0; i < kCount; ++i) slots.activate(i).a = i;
    size_t full = rss_kib();
    CHECK(full >= before + 900);
    for (size_t i = 0; i < kCount; ++i) slots.deactivate(i);
    CHECK(rss_kib() <= before + 100);
}

TEST_CASE("ChunkPool: chunks are reused and the cache is bounded") {
    ChunkPool pool(2);
    SendChunk* a = pool.get();
    a->end = 100;
    a->begin = 10;
    SendChunk* b = pool.get();
    SendChunk* c = pool.get();
    CHECK(pool.in_use() == 3);
    pool.put(a);
    pool.put(b);
    pool.put(c);  // beyond the cache of 2: freed
    CHECK(pool.in_use() == 0);
    SendChunk* again = pool.get();
    CHECK((again == a || again == b));
    CHECK(again->begin == 0);
    CHECK(again->end == 0);
    CHECK(again->next == nullptr);
    CHECK(again->room() == SendChunk::kCapacity);
    pool.put(again);
}

TEST_CASE("plan_capacity: workers x table size, bounded by the open-files limit") {
    SUBCASE("the default 200k on this machine's 20000 limit needs 11 rings") {
        CapacityPlan p = plan_capacity(200000, 0, 20000, 2);
        CHECK(p.workers == 11);
        CHECK(p.slots_per_worker == 20000);
        CHECK(p.capacity == 220000);
        CHECK(p.reaches_max_conns);
        CHECK(p.problem.empty());
    }
    SUBCASE("small max_conns: one ring per CPU, small tables") {
        CapacityPlan p = plan_capacity(1000, 0, 20000, 2);
        CHECK(p.workers == 2);
        CHECK(p.slots_per_worker == 550);
        CHECK(p.reaches_max_conns);
    }
    SUBCASE("too few workers requested: the plan says so and how to fix it") {
        CapacityPlan p = plan_capacity(125000, 2, 20000, 2);
        CHECK(p.capacity == 40000);
        CHECK_FALSE(p.reaches_max_conns);
        CHECK(p.problem.find("--max-conns 125000 cannot be reached") != std::string::npos);
        CHECK(p.problem.find("--workers 7") != std::string::npos);
    }
    SUBCASE("a high limit needs one ring per CPU only") {
        CapacityPlan p = plan_capacity(200000, 0, 1048576, 4);
        CHECK(p.workers == 4);
        CHECK(p.slots_per_worker == 55000);
    }
}
