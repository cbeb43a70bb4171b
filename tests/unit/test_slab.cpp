#include <doctest/doctest.h>
#include <sys/mman.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/net/capacity.h"
#include "limaoim/net/slab.h"
#include "support/temp_dir.h"

using namespace limaoim::net;

namespace {
struct Obj {
    uint64_t a;
    uint64_t b;
};

constexpr size_t kPage = 4096;

// Pages of [base, base + bytes) that are resident, asked of the kernel
// (mincore) rather than read from the process RSS, which a sanitizer's own
// memory moves by megabytes. A page only read since it was dropped maps the
// shared zero page and counts as resident: check before reading.
size_t mincore_resident(const void* base, size_t bytes) {
    std::vector<unsigned char> residency(bytes / kPage);
    REQUIRE(mincore(const_cast<void*>(base), bytes, residency.data()) == 0);
    size_t resident = 0;
    for (unsigned char page : residency) resident += page & 1;
    return resident;
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
    constexpr size_t kCount = 1 << 16;  // 1 MiB of 16-byte objects: 256 pages
    constexpr size_t kBytes = kCount * sizeof(Obj);
    constexpr size_t kPerPage = kPage / sizeof(Obj);
    SlotArray<Obj> slots(kCount);
    const void* base = &slots[0];  // taking the address touches nothing
    // A transparent huge page would make 2 MiB resident at the first touch:
    // keep this range on 4 KiB pages whatever the system's THP setting.
    madvise(const_cast<void*>(base), kBytes, MADV_NOHUGEPAGE);
    CHECK(mincore_resident(base, kBytes) == 0);

    // One slot on each of three pages.
    slots.activate(0).a = 1;
    slots.activate(kPerPage * 7 + 3).a = 2;
    slots.activate(kCount - 1).a = 3;
    CHECK(mincore_resident(base, kBytes) == 3);
    CHECK(slots.resident_pages() == 3);

    for (size_t i = 0; i < kCount; ++i) {
        if (i == 0 || i == kPerPage * 7 + 3 || i == kCount - 1) continue;
        slots.activate(i).a = i;
    }
    CHECK(mincore_resident(base, kBytes) == kCount / kPerPage);
    CHECK(slots.resident_pages() == kCount / kPerPage);

    for (size_t i = 0; i < kCount; ++i) slots.deactivate(i);
    CHECK(mincore_resident(base, kBytes) == 0);
    CHECK(slots.resident_pages() == 0);
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
        CapacityPlan p = plan_capacity(200000, 0, 20000, 2, 512);
        CHECK(p.workers == 11);
        CHECK(p.slots_per_worker == 20000);
        CHECK(p.capacity == 220000);
        CHECK(p.reaches_max_conns);
        CHECK(p.problem.empty());
    }
    SUBCASE("small max_conns: one ring per CPU, small tables") {
        CapacityPlan p = plan_capacity(1000, 0, 20000, 2, 512);
        CHECK(p.workers == 2);
        CHECK(p.slots_per_worker == 550);
        CHECK(p.reaches_max_conns);
    }
    SUBCASE("too few workers requested: the plan says so and how to fix it") {
        CapacityPlan p = plan_capacity(125000, 2, 20000, 2, 512);
        CHECK(p.capacity == 40000);
        CHECK_FALSE(p.reaches_max_conns);
        CHECK(p.problem.find("--max-conns 125000 cannot be reached") != std::string::npos);
        CHECK(p.problem.find("--workers 7") != std::string::npos);
    }
    SUBCASE("a high limit needs one ring per CPU only") {
        CapacityPlan p = plan_capacity(200000, 0, 1048576, 4, 512);
        CHECK(p.workers == 4);
        CHECK(p.slots_per_worker == 55000);
        CHECK(p.recv_buffers_per_worker == 512);  // one ring per CPU: as configured
    }
    SUBCASE("two million at a 20000 limit on 2 CPUs: 110 rings, far above the old cap of 64") {
        CapacityPlan p = plan_capacity(2'000'000, 0, 20000, 2, 512);
        CHECK(p.workers == 110);
        CHECK(p.slots_per_worker == 20000);
        CHECK(p.capacity == 2'200'000);
        CHECK(p.reaches_max_conns);
        CHECK(p.problem.empty());
        CHECK(p.summary.rfind("110 workers x 20000 slots = capacity 2200000 connections", 0) == 0);
        // 512 x 2 CPUs over 110 rings is 9 each: the floor of 64 holds.
        CHECK(p.recv_buffers_per_worker == 64);
        CHECK(p.summary.find("64 receive buffers per worker") != std::string::npos);
    }
    SUBCASE("the automatic plan stops at kMaxWorkers and says what would be needed") {
        CapacityPlan p = plan_capacity(100'000'000, 0, 20000, 2, 512);
        CHECK(p.workers == kMaxWorkers);
        CHECK_FALSE(p.reaches_max_conns);
        CHECK(p.problem.find("--workers 5500 or more (above the maximum of 4096") != std::string::npos);
    }
}

TEST_CASE("plan_capacity on epoll: every connection is a descriptor of the process, one limit server-wide") {
    SUBCASE("the default 200k at a 20000 limit: one worker per CPU, capacity the limit less the reserve") {
        CapacityPlan p = plan_capacity(200000, 0, 20000, 2, 512, IoBackendKind::Epoll);
        CHECK(p.io_backend == IoBackendKind::Epoll);
        CHECK(p.workers == 2);  // more rings would add no descriptors
        const uint64_t reserved = kReservedDescriptors + 2 * kReservedDescriptorsPerWorker;
        CHECK(p.capacity == 20000 - reserved);
        CHECK(p.slots_per_worker == (20000 - reserved) / 2);
        CHECK_FALSE(p.reaches_max_conns);
        CHECK(p.problem.find("bounded by the open-files limit server-wide") != std::string::npos);
        CHECK(p.summary.find("each a descriptor of the process") != std::string::npos);
    }
    SUBCASE("within the limit: max_conns and its margin, split between the workers") {
        CapacityPlan p = plan_capacity(1000, 4, 20000, 2, 512, IoBackendKind::Epoll);
        CHECK(p.workers == 4);
        CHECK(p.slots_per_worker == 275);
        CHECK(p.capacity == 1100);
        CHECK(p.reaches_max_conns);
        CHECK(p.problem.empty());
        CHECK(p.recv_buffers_per_worker == 512);
    }
}

TEST_CASE("plan_capacity: receive buffers per worker shrink to a power-of-two share beyond one ring per CPU") {
    const auto buffers = [](uint32_t workers, unsigned cpus, uint32_t configured) {
        return plan_capacity(1000, workers, 1048576, cpus, configured).recv_buffers_per_worker;
    };
    CHECK(buffers(2, 2, 512) == 512);
    CHECK(buffers(1, 4, 512) == 512);
    CHECK(buffers(3, 2, 512) == 256);      // 341 rounded down
    CHECK(buffers(4, 2, 4096) == 2048);
    CHECK(buffers(10, 2, 4096) == 512);    // 819 rounded down
    CHECK(buffers(110, 2, 512) == 64);     // never below 64
    CHECK(buffers(110, 2, 32) == 32);      // nor above what was configured
    CHECK(buffers(4, 0, 512) == 128);      // unknown CPU count: taken as 1
    for (uint32_t workers = 1; workers <= 200; ++workers) {
        const uint32_t n = buffers(workers, 2, 512);
        CHECK((n & (n - 1)) == 0);
        CHECK(n >= 64);
        CHECK(n <= 512);
        if (n > 64) CHECK(uint64_t(n) * workers <= 512u * 2);
    }
}

TEST_CASE("usable_cpus: the affinity mask, lowered by a cgroup quota (v2 up the tree, or v1)") {
    const limaoim::testing::TempDir dir;
    const std::string root = dir.path("cgroup"), self = dir.path("self");
    auto write = [](const std::string& path, const std::string& text) {
        std::filesystem::create_directories(std::filesystem::path(path).parent_path());
        std::ofstream(path) << text;
    };
    const unsigned affinity = limaoim::net::usable_cpus(root, self);  // no cgroup files: the mask
    CHECK(affinity >= 1);
    CHECK(affinity <= std::max(1u, std::thread::hardware_concurrency()));

    write(self, "0::/system.slice/limaoim.service\n");
    write(root + "/system.slice/limaoim.service/cpu.max", "max 100000\n");
    CHECK(limaoim::net::usable_cpus(root, self) == affinity);  // no quota
    write(root + "/system.slice/cpu.max", "50000 100000\n");   // half a CPU on a parent: 1
    CHECK(limaoim::net::usable_cpus(root, self) == 1);

    write(self, "0::/\n");  // a container's own namespace: its cgroup is the root
    write(root + "/cpu.max", "150000 100000\n");
    CHECK(limaoim::net::usable_cpus(root, self) == std::min(affinity, 2u));

    const std::string v1 = dir.path("v1");
    write(v1 + "/cpu/cpu.cfs_quota_us", "100000\n");
    write(v1 + "/cpu/cpu.cfs_period_us", "100000\n");
    CHECK(limaoim::net::usable_cpus(v1, self) == 1);
    write(v1 + "/cpu/cpu.cfs_quota_us", "-1\n");  // v1's "no quota"
    CHECK(limaoim::net::usable_cpus(v1, self) == affinity);
}
