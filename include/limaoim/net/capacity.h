// How many connections the server can hold, and with how many rings.
//
// Each ring's fixed-file table is bounded by RLIMIT_NOFILE (the kernel
// refuses a larger one with EMFILE), so capacity = workers x table size.
// SO_REUSEPORT spreads connections by a hash, not evenly, so the plan keeps
// a margin above --max-conns.
//
// On epoll every connection is a descriptor of the process: the open-files
// limit bounds the server as a whole, less what the server keeps for itself
// (kReservedDescriptors), and more workers add no capacity.
#pragma once

#include <cstdint>
#include <string>

#include "limaoim/net/io_backend.h"

namespace limaoim::net {

struct CapacityPlan {
    uint32_t workers = 0;
    uint32_t slots_per_worker = 0;
    uint64_t capacity = 0;       // workers * slots_per_worker
    uint32_t recv_buffers_per_worker = 0;  // provided receive buffers of each ring
    IoBackendKind io_backend = IoBackendKind::IoUring;  // the one planned for
    bool reaches_max_conns = false;
    std::string summary;         // one line for the start-up log
    std::string problem;         // why max_conns cannot be reached, and the fix; empty when it can
};

// stats::kMaxWorkers (stats/layout.h) has the same value; capacity.cpp checks.
inline constexpr uint32_t kMaxWorkers = 4096;
inline constexpr uint32_t kKernelMaxFixedFiles = 1u << 20;
inline constexpr uint32_t kMinSlots = 64;
// Headroom for the uneven SO_REUSEPORT hash: 10 %.
inline constexpr uint64_t kBalanceMarginPercent = 10;
// Fewest provided receive buffers a ring is shrunk to.
inline constexpr uint32_t kMinRecvBuffersPerWorker = 64;
// On epoll: descriptors left for the server's own (store, log, HTTP clients,
// Redis), plus per worker its epoll, eventfd, spare and listener sockets.
inline constexpr uint64_t kReservedDescriptors = 128;
inline constexpr uint64_t kReservedDescriptorsPerWorker = 8;

// `requested_workers` 0 = automatic: at least one per CPU, and enough tables
// for max_conns. `nofile_limit` is the (raised) soft RLIMIT_NOFILE.
// `recv_buffers` is the configured count of provided receive buffers per
// worker. Every buffer is populated at start, so with more workers than CPUs
// (needed only for the tables) each ring gets its share of
// recv_buffers x cpus instead: a power of two, at least
// kMinRecvBuffersPerWorker (or recv_buffers when that is fewer).
// `backend` is the one that will run (resolve_io_backend: not Auto).
CapacityPlan plan_capacity(uint64_t max_conns, uint32_t requested_workers, uint64_t nofile_limit, unsigned cpus,
                           uint32_t recv_buffers, IoBackendKind backend = IoBackendKind::IoUring);

// CPUs this process may use: those of its affinity mask, fewer when a
// cgroup CPU quota allows less (a container's --cpus, a service's
// CPUQuota=): cgroup v2's cpu.max from this process's cgroup up to the root
// of `cgroup_root`, or v1's cpu.cfs_quota_us / cpu.cfs_period_us; rounded
// up, at least 1. std::thread::hardware_concurrency() counts the host's.
// `proc_self_cgroup_path` names /proc/self/cgroup (tests pass a file of their own).
unsigned usable_cpus(const std::string& cgroup_root = "/sys/fs/cgroup",
                     const std::string& proc_self_cgroup_path = "/proc/self/cgroup");

// Raises the soft open-files limit to the hard one; returns the new soft limit.
uint64_t raise_nofile_limit();

}  // namespace limaoim::net
