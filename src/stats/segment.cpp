#include "limaoim/stats/segment.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

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

struct Owner {
    int32_t pid = 0;
    uint64_t start_time_unix_ms = 0;
};

// Who wrote an existing segment; pid 0 when the file holds no complete header
// (a crash before the magic was written, or another program's file).
Owner segment_owner(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    struct stat st;
    Owner owner;
    if (fstat(fd, &st) == 0 && size_t(st.st_size) >= sizeof(Header)) {
        void* map = mmap(nullptr, sizeof(Header), PROT_READ, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            const auto* header = static_cast<const Header*>(map);
            if (__atomic_load_n(&header->magic, __ATOMIC_ACQUIRE) == kMagic)
                owner = {header->pid, header->start_time_unix_ms};
            munmap(map, sizeof(Header));
        }
    }
    close(fd);
    return owner;
}

uint64_t unix_now_ms() {
    using namespace std::chrono;
    return uint64_t(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

// When the process started, from its /proc/PID/stat line (field 22, clock
// ticks since boot) and the boot time in /proc/stat (whole seconds); 0 if
// unknown.
uint64_t process_start_unix_ms(const std::string& stat_line) {
    const size_t name_end = stat_line.rfind(')');
    if (name_end == std::string::npos) return 0;
    // Fields after the name start with field 3 (state); starttime is field 22.
    std::istringstream fields(stat_line.substr(name_end + 2));
    std::string field;
    for (int i = 3; i < 22 && fields >> field;) ++i;
    uint64_t start_ticks = 0;
    if (!(fields >> start_ticks)) return 0;
    std::ifstream proc_stat("/proc/stat");
    std::string key;
    uint64_t boot_s = 0;
    while (proc_stat >> key)
        if (key == "btime" && proc_stat >> boot_s) break;
    const long ticks_per_s = sysconf(_SC_CLK_TCK);
    if (boot_s == 0 || ticks_per_s <= 0) return 0;
    return boot_s * 1000 + start_ticks * 1000 / uint64_t(ticks_per_s);
}

}  // namespace

std::string segment_path(const std::string& instance) {
    return std::string(kSegmentDir) + "/" + kSegmentPrefix + instance;
}

bool process_alive(int32_t pid, uint64_t started_by_unix_ms) {
    if (pid <= 0) return false;
    // EPERM means another user's process, or a sandbox that forbids kill()
    // outright; /proc tells those apart.
    if (kill(pid, 0) != 0 && errno != EPERM) return false;
    // A killed server stays a zombie until its parent reaps it: kill() still
    // succeeds, but it will never write again.
    std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
    std::string stat_line;
    if (!std::getline(stat_file, stat_line)) return false;
    const size_t name_end = stat_line.rfind(')');  // the command name may hold ')' and spaces
    if (name_end == std::string::npos || name_end + 2 >= stat_line.size()) return false;
    const char state = stat_line[name_end + 2];
    if (state == 'Z' || state == 'X') return false;
    // A process that started after the segment was written got the dead
    // server's pid by reuse (a restarted container's PID 1 is the usual
    // case). The boot time has whole seconds, hence the slack.
    constexpr uint64_t kSlackMs = 2000;
    const uint64_t started = process_start_unix_ms(stat_line);
    return started == 0 || started <= started_by_unix_ms + kSlackMs;
}

Segment::~Segment() {
    if (base_) munmap(base_, size_);
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
    const std::string path = segment_path(info.instance);

    // O_EXCL so two servers never share a segment; a leftover of a dead
    // server is removed and the create tried again. Bounded: another process
    // racing us for the same name could recreate it each time.
    int fd = -1;
    for (int attempt = 0; attempt < 3 && fd < 0; ++attempt) {
        fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) break;
        if (errno != EEXIST) {
            error = errno_text("cannot create stats segment", path);
            return false;
        }
        const Owner owner = segment_owner(path);
        if (process_alive(owner.pid, owner.start_time_unix_ms)) {
            error = "stats segment " + path + " is in use by running server pid " + std::to_string(owner.pid) +
                    " (another limaoim with the same --instance/port?)";
            return false;
        }
        if (unlink(path.c_str()) != 0 && errno != ENOENT) {
            error = errno_text("cannot remove stale stats segment", path);
            return false;
        }
    }
    if (fd < 0) {
        error = "cannot create stats segment " + path + ": another process keeps recreating it";
        return false;
    }

    // ftruncate leaves the file sparse: tmpfs allocates a page only when a
    // counter on it is first written.
    const size_t size = segment_size(info.workers, info.slots_per_worker);
    void* map = MAP_FAILED;
    if (ftruncate(fd, off_t(size)) == 0) map = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        error = errno_text("cannot size or map stats segment", path);
        close(fd);
        unlink(path.c_str());
        return false;
    }
    close(fd);
    base_ = static_cast<uint8_t*>(map);
    size_ = size;
    path_ = path;

    Header& h = header();
    h.layout_version = kLayoutVersion;
    h.header_size = sizeof(Header);
    h.total_size = size;
    h.pid = int32_t(getpid());
    h.workers = info.workers;
    h.start_time_unix_ms = unix_now_ms();
    h.max_conns = info.max_conns;
    h.capacity = uint64_t(info.workers) * info.slots_per_worker;
    h.slots_per_worker = info.slots_per_worker;
    h.worker_block_size = sizeof(WorkerBlock);
    h.workers_offset = workers_offset();
    h.conns_offset = conns_offset();
    h.port = info.port;
    h.mode_test = info.mode_test ? 1 : 0;
    std::memcpy(h.instance, info.instance.c_str(), info.instance.size() + 1);
    // Last, so a reader that sees the magic sees every field above.
    std::atomic_ref<uint64_t>(h.magic).store(kMagic, std::memory_order_release);
    return true;
}

void Segment::remove() {
    if (!base_) return;
    unlink(path_.c_str());
    munmap(base_, size_);
    base_ = nullptr;
    size_ = 0;
}

}  // namespace limaoim::stats
