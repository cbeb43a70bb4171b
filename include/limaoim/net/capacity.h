// How many connections the server can hold, and with how many rings.
//
// Each ring's fixed-file table is bounded by RLIMIT_NOFILE (the kernel
// refuses a larger one with EMFILE), so capacity = workers x table size.
// SO_REUSEPORT spreads connections by a hash, not evenly, so the plan keeps
// a margin above --max-conns.
#pragma once

#include <cstdint>
#include <string>

namespace limaoim::net {

struct CapacityPlan {
    uint32_t workers = 0;
    uint32_t slots_per_worker = 0;
    uint64_t capacity = 0;       // workers * slots_per_worker
    bool reaches_max_conns = false;
    std::string summary;         // one line for the start-up log
    std::string problem;         // why max_conns cannot be reached, and the fix; empty when it can
};

inline constexpr uint32_t kMaxWorkers = 64;
inline constexpr uint32_t kKernelMaxFixedFiles = 1u << 20;
inline constexpr uint32_t kMinSlots = 64;
// Headroom for the uneven SO_REUSEPORT hash: 10 %.
inline constexpr uint64_t kBalanceMarginPercent = 10;

// `requested_workers` 0 = automatic: at least one per CPU, and enough tables
// for max_conns. `nofile_limit` is the (raised) soft RLIMIT_NOFILE.
CapacityPlan plan_capacity(uint64_t max_conns, uint32_t requested_workers, uint64_t nofile_limit, unsigned cpus);

// Raises the soft open-files limit to the hard one; returns the new soft limit.
uint64_t raise_nofile_limit();

}  // namespace limaoim::net
