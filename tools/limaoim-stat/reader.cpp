#include "reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "limaoim/stats/segment.h"

namespace limaoim::stat_tool {

SegmentReader::~SegmentReader() { close_mapping(); }

void SegmentReader::close_mapping() {
    if (base_) munmap(const_cast<uint8_t*>(base_), size_);
    if (fd_ >= 0) close(fd_);
    base_ = nullptr;
    size_ = 0;
    fd_ = -1;
}

bool SegmentReader::open(const std::string& instance, std::string& error) {
    close_mapping();
    instance_ = instance;
    path_ = stats::segment_path(instance);
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
        if (errno == ENOENT)
            error = "no limaoim server is running with instance " + instance + " (no " + path_ + ")";
        else
            error = "cannot open " + path_ + ": " + std::strerror(errno);
        return false;
    }
    struct stat st;
    if (fstat(fd_, &st) != 0 || size_t(st.st_size) < sizeof(stats::Header)) {
        error = path_ + " is not a limaoim stats segment (shorter than its header)";
        close_mapping();
        return false;
    }
    void* map = mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED, fd_, 0);
    if (map == MAP_FAILED) {
        error = "cannot map " + path_ + ": " + std::strerror(errno);
        close_mapping();
        return false;
    }
    base_ = static_cast<const uint8_t*>(map);
    size_ = size_t(st.st_size);
    device_ = st.st_dev;
    inode_ = st.st_ino;
    if (!check_header(size_, error)) {
        close_mapping();
        return false;
    }
    return true;
}

bool SegmentReader::check_header(size_t file_size, std::string& error) const {
    const stats::Header& h = header();
    if (__atomic_load_n(&h.magic, __ATOMIC_ACQUIRE) != stats::kMagic) {
        error = path_ + " is not a limaoim stats segment (bad magic)";
        return false;
    }
    if (h.layout_version != stats::kLayoutVersion) {
        error = "stats layout version " + std::to_string(h.layout_version) + ", this limaoim-stat reads version " +
                std::to_string(stats::kLayoutVersion) + ": use the limaoim-stat built with that server";
        return false;
    }
    const char* inconsistency = nullptr;
    if (h.header_size != sizeof(stats::Header) || h.worker_block_size != sizeof(stats::WorkerBlock))
        inconsistency = "structure sizes";
    else if (h.workers == 0 || h.workers > stats::kMaxWorkers)
        inconsistency = "worker count";
    else if (h.workers_offset != stats::workers_offset() || h.conns_offset != stats::conns_offset())
        inconsistency = "offsets";
    else if (h.capacity != uint64_t(h.workers) * h.slots_per_worker)
        inconsistency = "capacity";
    else if (h.total_size > file_size ||
             h.conns_offset + h.capacity * sizeof(stats::ConnCounters) > file_size)
        inconsistency = "file shorter than its header says";
    if (inconsistency) {
        error = path_ + " is not a limaoim stats segment (inconsistent header: " + inconsistency + ")";
        return false;
    }
    return true;
}

const stats::WorkerBlock& SegmentReader::worker(uint32_t index) const {
    return reinterpret_cast<const stats::WorkerBlock*>(base_ + header().workers_offset)[index];
}

bool SegmentReader::server_alive() const {
    return stats::process_alive(header().pid, header().start_time_unix_ms);
}

bool SegmentReader::replaced() const {
    struct stat st;
    return stat(path_.c_str(), &st) != 0 || st.st_dev != device_ || st.st_ino != inode_;
}

off_t SegmentReader::next_data(off_t from) const {
    const off_t at = lseek(fd_, from, SEEK_DATA);
    if (at >= 0) return at;
    // ENXIO: no data after `from`. Any other error: a file system without
    // hole reporting, so everything counts as data.
    return errno == ENXIO ? off_t(size_) : from;
}

off_t SegmentReader::next_hole(off_t from) const {
    const off_t at = lseek(fd_, from, SEEK_HOLE);
    return at >= 0 ? at : off_t(size_);
}

}  // namespace limaoim::stat_tool
