// The server's side of the stats segment: creates, maps and removes
// /dev/shm/limaoim-<instance>. Layout in layout.h.
//
// The segment file is also the instance lock: the server holds an exclusive
// flock(2) on it for its whole life. A segment whose lock is free was left
// by a server that is gone, whatever pid its header names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "limaoim/stats/layout.h"
#include "limaoim/stats/snapshot.h"

namespace limaoim::stats {

struct SegmentInfo {
    std::string instance;
    uint32_t workers = 1;
    uint32_t slots_per_worker = 0;
    uint64_t max_conns = 0;
    uint16_t port = 0;
    bool mode_test = false;
    uint8_t io_backend = 0;  // index into kIoBackendNames
    // Index = close reason code, as counted in WorkerBlock::closed; empty =
    // code not used. At most kMaxCloseReasons names of at most
    // kCloseReasonNameSize - 1 characters.
    std::vector<std::string> close_reason_names;
};

class Segment {
public:
    Segment() = default;
    ~Segment();  // unmaps and releases the lock; does not unlink (remove() does, on clean exit)
    Segment(const Segment&) = delete;
    Segment& operator=(const Segment&) = delete;

    // Creates the segment and takes its lock. A leftover file whose lock is
    // free (a killed server's) is replaced; a locked one is another running
    // server and an error, as is anything at the path that is not a regular
    // file of this user (a FIFO, a symbolic link, another user's file).
    bool create(const SegmentInfo& info, std::string& error);
    void remove();  // unlink, unmap, release the lock

    Header& header() { return *reinterpret_cast<Header*>(base_); }
    WorkerBlock& worker(uint32_t index) {
        return reinterpret_cast<WorkerBlock*>(base_ + workers_offset())[index];
    }
    PipelineBlock& pipeline() { return *reinterpret_cast<PipelineBlock*>(base_ + header().pipeline_offset); }
    ConnCounters* conns(uint32_t worker_index) {
        return reinterpret_cast<ConnCounters*>(base_ + header().conns_offset) +
               size_t(worker_index) * header().slots_per_worker;
    }
    const std::string& path() const { return path_; }
    // The segment as a snapshot reads it (GET /metrics, GET /health).
    SegmentView view() const { return SegmentView(base_); }

private:
    uint8_t* base_ = nullptr;
    size_t size_ = 0;
    int lock_fd_ = -1;  // the segment file, flock(LOCK_EX) held while open
    std::string path_;
};

std::string segment_path(const std::string& instance);

// Opens an existing segment file read-only without following a symbolic
// link or blocking on a FIFO, and checks that it is a regular file owned by
// this user. Returns the descriptor; -1 with `error` set when the file
// cannot be used, -1 with `error` empty when there is no file (the caller
// says so in its own words).
int open_existing_segment(const std::string& path, std::string& error);

}  // namespace limaoim::stats
