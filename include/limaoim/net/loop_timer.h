// Timers that belong to no connection: retry scans, group-commit flushes,
// reconnect backoff. Few of them, each with its own callback, so a binary
// heap of due times with lazy deletion (a cancelled timer's heap entry is
// skipped when it comes up) beats the per-connection wheel's fixed slots.
// Millisecond resolution on CLOCK_MONOTONIC; the loop never sleeps past the
// earliest due timer.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "limaoim/net/id_table.h"

namespace limaoim::net {

// id | serial << 32: a cancelled or finished timer's id can be reused
// without a stale TimerId cancelling its successor.
using TimerId = uint64_t;

class LoopTimers {
public:
    TimerId add(uint64_t due_ms, std::function<void()> callback, uint32_t every_ms);
    void cancel(TimerId id);
    // Runs every timer due at or before now_ms, repeating ones rescheduled
    // from their due time (skipping missed periods, not bunching them).
    void run_due(uint64_t now_ms);
    // The earliest due time, UINT64_MAX when none is pending.
    uint64_t next_due();
    size_t active() const { return active_; }

private:
    struct Entry {
        std::function<void()> callback;
        uint64_t due_ms = 0;
        uint32_t every_ms = 0;
        uint32_t serial = 0;
        bool active = false;
    };
    struct Due {
        uint64_t due_ms;
        uint32_t id;
        uint32_t serial;
        bool operator>(const Due& o) const { return due_ms > o.due_ms; }
    };
    void drop_stale();

    IdTable<Entry> entries_;
    std::priority_queue<Due, std::vector<Due>, std::greater<>> heap_;
    size_t active_ = 0;
};

}  // namespace limaoim::net
