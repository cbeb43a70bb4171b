#include "limaoim/stats/segment.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "limaoim/log/clock.h"

namespace limaoim::stats {

namespace {

std::string errno_text(const std::string& what, const std::string& path) {
    return what + " " + path + ": " + std::strerror(errno);
}

bool valid_instance(const std::string& instance, std::string& error) {
    if (instance.empty() || instance.size() >= sizeof(Header::instance) ||
        instance.find('/') != std::string::npos || instance == "." || instance == "..") {
        error = "invalid stats instance name '" + instance + "' (1-63 characters, no '/')";
        return false;
    }
    return true;
}

bool valid_close_reason_names(const std::vector<std::string>& names, std::string& error) {
    if (names.size() > size_t(kMaxCloseReasons)) {
        error = "stats segment: " + std::to_string(names.size()) + " close reason codes, at most " +
                std::to_string(kMaxCloseReasons) + " fit";
        return false;
    }
    for (size_t code = 0; code < names.size(); ++code) {
        if (names[code].size() >= kCloseReasonNameSize || names[code].find('\0') != std::string::npos) {
            error = "stats segment: close reason " + std::to_string(code) + " name '" + names[code] +
                    "' is not a string of at most " + std::to_string(kCloseReasonNameSize - 1) + " characters";
            return false;
        }
    }
    return true;
}

// "uid 65534 (nobody)"
std::string user_text(uid_t uid) {
    std::string text = "uid " + std::to_string(uid);
    passwd entry;
    passwd* found = nullptr;
    char buffer[1024];
    if (getpwuid_r(uid, &entry, buffer, sizeof buffer, &found) == 0 && found)
        text += " (" + std::string(found->pw_name) + ")";
    return text;
}

std::string foreign_owner_text(const std::string& path, uid_t owner) {
    return path + " belongs to " + user_text(owner) + ", not to this user (" + user_text(geteuid()) +
           "): refusing to use it (its owner or root can remove it; or use another --instance)";
}

const char* file_type_text(mode_t mode) {
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "not a regular file";
}

// 0 or the errno of flock(LOCK_EX). limaoim-stat takes a shared lock on a
// segment for an instant to tell whether its server is alive, so a refusal
// is tried again for a moment before it means a running server.
int lock_exclusive(int fd) {
    for (int attempt = 0;; ++attempt) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
        if (errno != EWOULDBLOCK || attempt == 10) return errno;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

// True when `path` still names the file open as `fd`: another server
// starting with the same instance may have replaced it since we opened it.
bool still_at_path(int fd, const std::string& path) {
    struct stat by_fd, by_path;
    return fstat(fd, &by_fd) == 0 && lstat(path.c_str(), &by_path) == 0 && by_fd.st_dev == by_path.st_dev &&
           by_fd.st_ino == by_path.st_ino;
}

// The pid in a segment's header; 0 while the header is not complete.
int32_t header_pid(int fd) {
    Header h;
    if (pread(fd, &h, sizeof h, 0) != ssize_t(sizeof h) || h.magic != kMagic) return 0;
    return h.pid;
}

enum class Claim { Done, Retry, Failed };

// Locks the file create() just made. Retry when another server got it
// first: it locked our file, taking it for a stale one, or replaced it.
Claim lock_created(int fd, const std::string& path, std::string& error) {
    const int lock_errno = lock_exclusive(fd);
    if (lock_errno == 0) return still_at_path(fd, path) ? Claim::Done : Claim::Retry;
    if (lock_errno == EWOULDBLOCK) return Claim::Retry;
    errno = lock_errno;
    error = errno_text("cannot lock stats segment", path);
    return Claim::Failed;
}

// An existing file at the path: Failed with the reason when a server holds
// its lock or it is not ours to replace, else Retry once it is unlinked.
Claim remove_stale(const std::string& path, const std::string& instance, std::string& error) {
    const int fd = open_existing_segment(path, error);
    if (fd < 0) return error.empty() ? Claim::Retry : Claim::Failed;  // gone meanwhile: create again
    const int lock_errno = lock_exclusive(fd);
    if (lock_errno != 0) {
        if (lock_errno == EWOULDBLOCK) {
            const int32_t pid = header_pid(fd);
            error = "another limaoim with instance " + instance + " is running (pid " +
                    (pid > 0 ? std::to_string(pid) : std::string("unknown, still starting")) +
                    "): it holds the lock on " + path;
        } else {
            errno = lock_errno;
            error = errno_text("cannot lock stats segment", path);
        }
        close(fd);
        return Claim::Failed;
    }
    // The lock is free, so no server uses this file, whatever pid its header
    // names. Unlinked rather than reused: a limaoim-stat that still maps it
    // keeps reading the old file and sees it replaced.
    if (still_at_path(fd, path) && unlink(path.c_str()) != 0 && errno != ENOENT) {
        error = errno_text("cannot remove stale stats segment", path);
        close(fd);
        return Claim::Failed;
    }
    close(fd);
    return Claim::Retry;
}

}  // namespace

std::string segment_path(const std::string& instance) {
    return std::string(kSegmentDir) + "/" + kSegmentPrefix + instance;
}

int open_existing_segment(const std::string& path, std::string& error) {
    error.clear();
    // /dev/shm is writable by every user. O_NOFOLLOW: a symbolic link
    // planted there must not aim us at another file. O_NONBLOCK: opening a
    // FIFO would otherwise wait for a writer forever.
    const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        const int open_errno = errno;
        struct stat st;
        if (open_errno == ENOENT) return -1;
        if (open_errno == ELOOP)
            error = path + " is a symbolic link, not a stats segment: refusing to follow it (remove it)";
        else if (open_errno == EACCES && lstat(path.c_str(), &st) == 0 && st.st_uid != geteuid())
            error = foreign_owner_text(path, st.st_uid);
        else
            error = "cannot open " + path + ": " + std::strerror(open_errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0)
        error = errno_text("cannot stat", path);
    else if (!S_ISREG(st.st_mode))
        error = path + " is " + file_type_text(st.st_mode) + ", not a stats segment: refusing to use it (remove it)";
    else if (st.st_uid != geteuid())
        error = foreign_owner_text(path, st.st_uid);
    if (!error.empty()) {
        close(fd);
        return -1;
    }
    return fd;
}

Segment::~Segment() {
    if (base_) munmap(base_, size_);
    if (lock_fd_ >= 0) close(lock_fd_);
}

bool Segment::create(const SegmentInfo& info, std::string& error) {
    if (base_) {
        error = "stats segment " + path_ + " is already created";
        return false;
    }
    if (!valid_instance(info.instance, error)) return false;
    if (info.workers == 0 || info.workers > kMaxWorkers) {
        error = "stats segment: " + std::to_string(info.workers) + " workers, at most " +
                std::to_string(kMaxWorkers) + " fit";
        return false;
    }
    if (!valid_close_reason_names(info.close_reason_names, error)) return false;
    const std::string path = segment_path(info.instance);

    // O_EXCL: a file we create is ours alone; an existing one is replaced
    // only when its lock is free. Bounded: another server starting with the
    // same instance races us for the name.
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
        if (attempt == 3) {
            error = "cannot create stats segment " + path + ": another process keeps recreating it";
            return false;
        }
        fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
        if (fd >= 0) {
            const Claim claim = lock_created(fd, path, error);
            if (claim == Claim::Done) break;
            close(fd);
            fd = -1;
            if (claim == Claim::Failed) return false;
            continue;
        }
        if (errno != EEXIST) {
            error = errno_text("cannot create stats segment", path);
            return false;
        }
        if (remove_stale(path, info.instance, error) == Claim::Failed) return false;
    }

    // ftruncate leaves the file sparse: tmpfs allocates a page only when a
    // counter on it is first written.
    const size_t size = segment_size(info.workers, info.slots_per_worker);
    void* map = MAP_FAILED;
    if (ftruncate(fd, off_t(size)) == 0) map = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        error = errno_text("cannot size or map stats segment", path);
        unlink(path.c_str());
        close(fd);
        return false;
    }
    base_ = static_cast<uint8_t*>(map);
    size_ = size;
    lock_fd_ = fd;
    path_ = path;

    Header& h = header();
    h.layout_version = kLayoutVersion;
    h.header_size = sizeof(Header);
    h.total_size = size;
    h.pid = int32_t(getpid());
    h.workers = info.workers;
    h.start_time_unix_ms = uint64_t(clock::wall_ms());
    h.max_conns = info.max_conns;
    h.capacity = uint64_t(info.workers) * info.slots_per_worker;
    h.slots_per_worker = info.slots_per_worker;
    h.worker_block_size = sizeof(WorkerBlock);
    h.workers_offset = workers_offset();
    h.conns_offset = conns_offset(info.workers);
    h.pipeline_offset = pipeline_offset(info.workers, info.slots_per_worker);
    h.port = info.port;
    h.mode_test = info.mode_test ? 1 : 0;
    h.io_backend = info.io_backend;
    std::memcpy(h.instance, info.instance.c_str(), info.instance.size() + 1);
    for (size_t code = 0; code < info.close_reason_names.size(); ++code)
        std::memcpy(h.close_reason_names[code], info.close_reason_names[code].c_str(),
                    info.close_reason_names[code].size() + 1);
    // Last, so a reader that sees the magic sees every field above.
    std::atomic_ref<uint64_t>(h.magic).store(kMagic, std::memory_order_release);
    return true;
}

void Segment::remove() {
    if (!base_) return;
    // Unlinked while the lock is still held, so a server starting now finds
    // either our locked file or none. Only if the path is still ours: a file
    // someone deleted may have been followed by another server's.
    if (still_at_path(lock_fd_, path_)) unlink(path_.c_str());
    munmap(base_, size_);
    close(lock_fd_);
    base_ = nullptr;
    size_ = 0;
    lock_fd_ = -1;
}

}  // namespace limaoim::stats
