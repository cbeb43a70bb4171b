// One worker process of bench_connection: an epoll loop driving a contiguous
// block of client ids through connect, CONNECT/CONNACK and PING heartbeats.
// A worker holds at most ~15000 sockets so that it stays under the fd limit;
// the parent forks as many as the client count needs.
#pragma once

#include <cstdint>

#include "bench_connection_options.h"
#include "bench_connection_shared.h"

namespace limaoim::bench {

// Upper bound on the sockets one worker holds (the hard fd limit is 20000).
inline constexpr uint64_t kMaxSocketsPerWorker = 15000;

struct WorkerPlan {
    uint32_t index = 0;
    uint32_t workers = 1;
    uint64_t first_cid = 0;
    uint64_t count = 0;
    // Position of first_cid among all clients: picks the source address and
    // port window, so the spread is the same whatever the worker count.
    uint64_t first_global_index = 0;
    // This worker's share of the -storm-cids clients; their global indices
    // follow all the -cids clients'.
    uint64_t storm_first_cid = 0;
    uint64_t storm_count = 0;
    uint64_t storm_first_global_index = 0;
};

// Prepares (the -client-keys key pairs), counts itself in `control.ready`,
// waits for `control.start_ns`, then runs until every client has ended or
// `control.stop` is set (or SIGTERM arrives), then closes all sockets. Storm
// clients are offered from `control.storm_start_ns` on, once the parent sets it.
// Returns the process exit status.
int run_worker(const Options& options, const WorkerPlan& plan, SharedControl& control, WorkerCounters& counters);

}  // namespace limaoim::bench
