#include "limaoim/net/capacity.h"

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <fstream>
#include <thread>

#include "limaoim/stats/layout.h"

namespace limaoim::net {

static_assert(kMaxWorkers == stats::kMaxWorkers, "the stats segment holds one block per worker");

namespace {

// Rings beyond one per CPU exist for their fixed-file tables, not for
// throughput: together they share the buffers that one ring per CPU would
// have, rounded down to a power of two (the buffer ring's size must be one).
uint32_t recv_buffers_per_worker(uint32_t configured, uint32_t workers, unsigned cpus) {
    if (workers <= cpus) return configured;
    const uint64_t share = uint64_t(configured) * cpus / workers;
    const uint64_t least = std::min(configured, kMinRecvBuffersPerWorker);
    return uint32_t(std::max<uint64_t>(std::bit_floor(share), least));
}

// ceil(quota / period) from "QUOTA PERIOD" (v2 cpu.max: "max" = none) or
// from v1's two files; 0 when there is no quota.
unsigned quota_cpus(int64_t quota, int64_t period) {
    if (quota <= 0 || period <= 0) return 0;
    return unsigned(std::max<int64_t>(1, (quota + period - 1) / period));
}

unsigned v2_quota_cpus(const std::string& file) {
    std::ifstream in(file);
    std::string quota;
    int64_t period = 0;
    if (!(in >> quota >> period) || quota == "max") return 0;
    try {
        return quota_cpus(std::stoll(quota), period);
    } catch (const std::exception&) {
        return 0;
    }
}

int64_t read_number(const std::string& file) {
    std::ifstream in(file);
    int64_t value = 0;
    return in >> value ? value : 0;
}

}  // namespace

unsigned usable_cpus(const std::string& cgroup_root, const std::string& proc_self_cgroup_path) {
    unsigned cpus = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = unsigned(CPU_COUNT(&set));
    if (cpus == 0) cpus = std::max(1u, std::thread::hardware_concurrency());

    auto take = [&](unsigned quota) {
        if (quota) cpus = std::min(cpus, quota);
    };
    // cgroup v2: "0::/PATH"; each level's cpu.max limits what is below it.
    std::ifstream self(proc_self_cgroup_path);
    for (std::string line; std::getline(self, line);) {
        if (!line.starts_with("0::")) continue;
        std::string path = line.substr(3);
        for (;;) {
            take(v2_quota_cpus(cgroup_root + path + (path.ends_with('/') ? "" : "/") + "cpu.max"));
            if (path.empty() || path == "/") break;
            path = path.substr(0, path.rfind('/'));
        }
    }
    // cgroup v1 (a container sees its own cgroup as the root).
    for (const char* dir : {"/cpu/", "/cpu,cpuacct/"})
        take(quota_cpus(read_number(cgroup_root + dir + "cpu.cfs_quota_us"),
                        read_number(cgroup_root + dir + "cpu.cfs_period_us")));
    return std::max(cpus, 1u);
}

uint64_t raise_nofile_limit() {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
    if (lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
        getrlimit(RLIMIT_NOFILE, &lim);
    }
    return lim.rlim_cur;
}

namespace {

// Every connection a descriptor of the process, whichever worker holds it.
CapacityPlan plan_epoll(uint64_t max_conns, uint32_t requested_workers, uint64_t nofile_limit, unsigned cpus,
                        uint32_t recv_buffers) {
    CapacityPlan plan;
    plan.io_backend = IoBackendKind::Epoll;
    const uint64_t wanted = max_conns + (max_conns * kBalanceMarginPercent + 99) / 100;
    plan.workers = requested_workers ? requested_workers : std::min(cpus, kMaxWorkers);
    const uint64_t reserved = kReservedDescriptors + kReservedDescriptorsPerWorker * plan.workers;
    const uint64_t descriptors = nofile_limit > reserved ? nofile_limit - reserved : 0;
    const uint64_t total = std::min(wanted, descriptors);
    plan.slots_per_worker = uint32_t(
        std::clamp<uint64_t>((total + plan.workers - 1) / plan.workers, kMinSlots, kKernelMaxFixedFiles));
    plan.capacity = std::min(uint64_t(plan.workers) * plan.slots_per_worker, descriptors);
    plan.reaches_max_conns = plan.capacity >= max_conns;
    plan.recv_buffers_per_worker = recv_buffers;
    plan.summary = "epoll: " + std::to_string(plan.workers) + " workers x " + std::to_string(plan.slots_per_worker) +
                   " slots, capacity " + std::to_string(plan.capacity) +
                   " connections, each a descriptor of the process (--max-conns " + std::to_string(max_conns) +
                   ", open-files limit " + std::to_string(nofile_limit) + " less " + std::to_string(reserved) +
                   " kept for the server's own)";
    if (!plan.reaches_max_conns)
        plan.problem = "--max-conns " + std::to_string(max_conns) + " cannot be reached on epoll: capacity " +
                       std::to_string(plan.capacity) +
                       ", bounded by the open-files limit server-wide (more workers do not help). Raise the hard "
                       "nofile limit, lower --max-conns, or allow io_uring (--io-backend).";
    return plan;
}

}  // namespace

CapacityPlan plan_capacity(uint64_t max_conns, uint32_t requested_workers, uint64_t nofile_limit, unsigned cpus,
                           uint32_t recv_buffers, IoBackendKind backend) {
    cpus = std::max(cpus, 1u);  // a caller that could not tell says 0
    if (backend == IoBackendKind::Epoll)
        return plan_epoll(max_conns, requested_workers, nofile_limit, cpus, recv_buffers);
    CapacityPlan plan;
    // A few descriptors of the process table stay ours (listeners, eventfds,
    // rings, log); the table itself may use the whole limit.
    const uint64_t table_limit = std::min<uint64_t>(nofile_limit, kKernelMaxFixedFiles);
    const uint64_t wanted = max_conns + (max_conns * kBalanceMarginPercent + 99) / 100;

    uint32_t workers = requested_workers;
    if (workers == 0) {
        uint64_t needed = (wanted + table_limit - 1) / table_limit;
        workers = uint32_t(std::clamp<uint64_t>(std::max<uint64_t>(needed, cpus), 1, kMaxWorkers));
    }
    uint64_t per_worker = (wanted + workers - 1) / workers;
    plan.workers = workers;
    plan.slots_per_worker = uint32_t(std::clamp<uint64_t>(per_worker, kMinSlots, table_limit));
    plan.capacity = uint64_t(plan.workers) * plan.slots_per_worker;
    plan.reaches_max_conns = plan.capacity >= max_conns;
    plan.recv_buffers_per_worker = recv_buffers_per_worker(recv_buffers, plan.workers, cpus);

    plan.summary = std::to_string(plan.workers) + " workers x " + std::to_string(plan.slots_per_worker) +
                   " slots = capacity " + std::to_string(plan.capacity) + " connections (--max-conns " +
                   std::to_string(max_conns) + ", open-files limit " + std::to_string(nofile_limit) + ")";
    if (plan.recv_buffers_per_worker != recv_buffers)
        plan.summary += ", " + std::to_string(plan.recv_buffers_per_worker) + " receive buffers per worker (" +
                        std::to_string(recv_buffers) + " configured, shrunk: " + std::to_string(plan.workers) +
                        " workers on " + std::to_string(cpus) + " CPUs)";
    if (!plan.reaches_max_conns) {
        uint64_t workers_needed = (wanted + table_limit - 1) / table_limit;
        plan.problem = "--max-conns " + std::to_string(max_conns) + " cannot be reached: " +
                       std::to_string(plan.workers) + " workers x " + std::to_string(plan.slots_per_worker) +
                       " slots = " + std::to_string(plan.capacity) +
                       ". One ring's fixed-file table is bounded by the open-files limit (" +
                       std::to_string(nofile_limit) + "): use --workers " + std::to_string(workers_needed) +
                       " or more" +
                       (workers_needed > kMaxWorkers
                            ? " (above the maximum of " + std::to_string(kMaxWorkers) + ": raise the hard nofile limit)"
                            : "") +
                       ", raise the hard nofile limit, or lower --max-conns.";
    }
    return plan;
}

}  // namespace limaoim::net
