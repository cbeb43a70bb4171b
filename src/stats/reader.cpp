#include "limaoim/stats/reader.h"

#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "limaoim/stats/segment.h"

namespace limaoim::stats {

SegmentReader::~SegmentReader() { close_mapping(); }

void SegmentReader::close_mapping() {
    if (base_) munmap(const_cast<uint8_t*>(base_), size_);
    if (fd_ >= 0) close(fd_);
    base_ = nullptr;
    size_ = 0;
    fd_ = -1;
}

bool SegmentReader::open(const std::string& instance, std::string& error) {
    instance_ = instance;
    path_ = segment_path(instance);
    const auto give_up = std::chrono::steady_clock::now() + kHeaderWait;
    for (;;) {
        const Opened opened = open_once(error);
        if (opened != Opened::Incomplete) return opened == Opened::Ok;
        if (std::chrono::steady_clock::now() >= give_up) return false;
        std::this_thread::sleep_for(kHeaderRetry);
    }
}

SegmentReader::Opened SegmentReader::open_once(std::string& error) {
    close_mapping();
    fd_ = open_existing_segment(path_, error);
    if (fd_ < 0) {
        if (error.empty())
            error = "no limaoim server is running with instance " + instance_ + " (no " + path_ + ")";
        return Opened::Failed;
    }
    struct stat st;
    if (fstat(fd_, &st) != 0) {
        error = "cannot stat " + path_ + ": " + std::strerror(errno);
        close_mapping();
        return Opened::Failed;
    }
    // A server sizes the file right after creating it.
    if (size_t(st.st_size) < sizeof(Header)) {
        error = path_ + " is not a limaoim stats segment (shorter than its header)";
        close_mapping();
        return Opened::Incomplete;
    }
    void* map = mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED, fd_, 0);
    if (map == MAP_FAILED) {
        error = "cannot map " + path_ + ": " + std::strerror(errno);
        close_mapping();
        return Opened::Failed;
    }
    base_ = static_cast<const uint8_t*>(map);
    size_ = size_t(st.st_size);
    device_ = st.st_dev;
    inode_ = st.st_ino;
    const Opened checked = check_header(size_, error);
    if (checked != Opened::Ok) close_mapping();
    return checked;
}

SegmentReader::Opened SegmentReader::check_header(size_t file_size, std::string& error) const {
    const Header& h = header();
    const uint64_t magic = __atomic_load_n(&h.magic, __ATOMIC_ACQUIRE);
    if (magic == 0) {  // written last by the server
        error = path_ + " is not a limaoim stats segment (its header is not complete)";
        return Opened::Incomplete;
    }
    if (magic != kMagic) {
        error = path_ + " is not a limaoim stats segment (bad magic)";
        return Opened::Failed;
    }
    if (h.layout_version != kLayoutVersion) {
        error = "stats layout version " + std::to_string(h.layout_version) + ", this limaoim-stat reads version " +
                std::to_string(kLayoutVersion) + ": use the limaoim-stat built with that server";
        return Opened::Failed;
    }
    const auto named_within_bounds = [&h] {
        for (const char* name : h.close_reason_names)
            if (strnlen(name, kCloseReasonNameSize) == kCloseReasonNameSize) return false;
        return true;
    };
    const char* inconsistency = nullptr;
    if (h.header_size != sizeof(Header) || h.worker_block_size != sizeof(WorkerBlock))
        inconsistency = "structure sizes";
    else if (h.workers == 0 || h.workers > kMaxWorkers)
        inconsistency = "worker count";
    else if (h.workers_offset != workers_offset() || h.conns_offset != conns_offset(h.workers) ||
             h.pipeline_offset != pipeline_offset(h.workers, h.slots_per_worker))
        inconsistency = "offsets";
    else if (h.capacity != uint64_t(h.workers) * h.slots_per_worker)
        inconsistency = "capacity";
    else if (h.total_size > file_size ||
             h.conns_offset + h.capacity * sizeof(ConnCounters) > file_size ||
             h.pipeline_offset + sizeof(PipelineBlock) > file_size)
        inconsistency = "file shorter than its header says";
    else if (!named_within_bounds())
        inconsistency = "close reason names";
    if (inconsistency) {
        error = path_ + " is not a limaoim stats segment (inconsistent header: " + inconsistency + ")";
        return Opened::Failed;
    }
    return Opened::Ok;
}

bool SegmentReader::server_alive() const {
    // The server holds an exclusive lock on its segment for its whole life,
    // so a shared lock we can take means it is gone. Released at once: a
    // server starting meanwhile replaces this stale file and must get its lock.
    if (flock(fd_, LOCK_SH | LOCK_NB) != 0) return true;
    flock(fd_, LOCK_UN);
    return false;
}

bool SegmentReader::replaced() const {
    struct stat st;
    return lstat(path_.c_str(), &st) != 0 || st.st_dev != device_ || st.st_ino != inode_;
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

}  // namespace limaoim::stats
