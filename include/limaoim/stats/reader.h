// A read-only view of a server's stats segment from another process
// (limaoim-stat). It never writes the segment and never talks to the server.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "limaoim/stats/layout.h"
#include "limaoim/stats/snapshot.h"

namespace limaoim::stats {

class SegmentReader {
public:
    SegmentReader() = default;
    ~SegmentReader();
    SegmentReader(const SegmentReader&) = delete;
    SegmentReader& operator=(const SegmentReader&) = delete;

    // A server writes its header's magic an instant after it created the
    // file: open() retries a file whose header is not complete yet this
    // long, every kHeaderRetry, before it gives up.
    static constexpr std::chrono::milliseconds kHeaderWait{2000};
    static constexpr std::chrono::milliseconds kHeaderRetry{50};

    // Maps /dev/shm/limaoim-<instance> read-only and checks its header. On
    // failure `error` holds the message for the user and nothing is mapped.
    bool open(const std::string& instance, std::string& error);

    const std::string& instance() const { return instance_; }
    const std::string& path() const { return path_; }
    const Header& header() const { return view().header(); }
    const WorkerBlock& worker(uint32_t index) const { return view().worker(index); }
    const PipelineBlock& pipeline() const { return view().pipeline(); }
    // What take_snapshot() reads.
    SegmentView view() const { return SegmentView(base_); }
    // True while the server holds its lock on the segment.
    bool server_alive() const;
    // True when the file at path() is gone or is no longer the one mapped
    // (the server exited or was restarted).
    bool replaced() const;

    // Calls visit(const ConnTraffic&) for every live connection (generation
    // odd). Skips the holes of the sparse file, so slots never used cost
    // neither time nor memory.
    template <typename Visit>
    void for_each_live_conn(Visit&& visit) const;

private:
    enum class Opened { Ok, Failed, Incomplete };
    Opened open_once(std::string& error);
    void close_mapping();
    Opened check_header(size_t file_size, std::string& error) const;
    // Offsets where the next data or hole of the file starts, at or after
    // `from`; the file size when there is none.
    off_t next_data(off_t from) const;
    off_t next_hole(off_t from) const;

    int fd_ = -1;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    dev_t device_ = 0;
    ino_t inode_ = 0;
    std::string instance_;
    std::string path_;
};

template <typename Visit>
void SegmentReader::for_each_live_conn(Visit&& visit) const {
    const Header& h = header();
    const auto* conns = reinterpret_cast<const ConnCounters*>(base_ + h.conns_offset);
    const off_t region_begin = off_t(h.conns_offset);
    const off_t region_end = region_begin + off_t(h.capacity * sizeof(ConnCounters));
    for (off_t data = next_data(region_begin); data < region_end; data = next_data(data)) {
        const off_t hole = std::min(next_hole(data), region_end);
        const size_t first = size_t(data - region_begin) / sizeof(ConnCounters);
        const size_t last = size_t(hole - region_begin) / sizeof(ConnCounters);
        for (size_t i = first; i < last; ++i) {
            const ConnCounters& c = conns[i];
            const uint32_t generation = c.generation.load(std::memory_order_acquire);
            if ((generation & 1) == 0) continue;
            ConnTraffic traffic{uint32_t(i / h.slots_per_worker), uint32_t(i % h.slots_per_worker),
                                c.packets_in.load(std::memory_order_relaxed),
                                c.packets_out.load(std::memory_order_relaxed),
                                c.bytes_in_kib.load(std::memory_order_relaxed)};
            // A slot closed and reused while we read it mixes two connections.
            if (c.generation.load(std::memory_order_relaxed) != generation) continue;
            visit(traffic);
        }
        data = hole;
    }
}

}  // namespace limaoim::stats
