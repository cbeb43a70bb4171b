// The server's side of the stats segment: creates, maps and removes
// /dev/shm/limaoim-<instance>. Layout in layout.h.
#pragma once

#include <cstdint>
#include <string>

#include "limaoim/stats/layout.h"

namespace limaoim::stats {

struct SegmentInfo {
    std::string instance;
    uint32_t workers = 1;
    uint32_t slots_per_worker = 0;
    uint64_t max_conns = 0;
    uint16_t port = 0;
    bool mode_test = false;
};

class Segment {
public:
    Segment() = default;
    ~Segment();  // unmaps; does not unlink (remove() does, on clean exit)
    Segment(const Segment&) = delete;
    Segment& operator=(const Segment&) = delete;

    // Creates the segment. A leftover file whose pid is no longer alive (a
    // killed server) is replaced; one whose pid is alive is an error.
    bool create(const SegmentInfo& info, std::string& error);
    void remove();  // unlink and unmap

    Header& header() { return *reinterpret_cast<Header*>(base_); }
    WorkerBlock& worker(uint32_t index) {
        return reinterpret_cast<WorkerBlock*>(base_ + workers_offset())[index];
    }
    ConnCounters* conns(uint32_t worker_index) {
        return reinterpret_cast<ConnCounters*>(base_ + conns_offset()) +
               size_t(worker_index) * header().slots_per_worker;
    }
    const std::string& path() const { return path_; }

private:
    uint8_t* base_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

std::string segment_path(const std::string& instance);

// True while the process `pid` exists (also one of another user) and had
// started by `started_by_unix_ms`: the server that wrote a segment, not a
// later process that was given the same pid.
bool process_alive(int32_t pid, uint64_t started_by_unix_ms);

}  // namespace limaoim::stats
