// The io_uring backend: one ring per worker, connections as direct
// descriptors in its fixed-file table, receive buffers from a
// provided-buffer ring (io_backend.h).
#include "io_backend.h"

#include "limaoim/log/log.h"

#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace limaoim::net::detail {

static_assert(kCqeBuffer == IORING_CQE_F_BUFFER && kCqeMore == IORING_CQE_F_MORE &&
                  kCqeSockNonEmpty == IORING_CQE_F_SOCK_NONEMPTY && kCqeBufferShift == IORING_CQE_BUFFER_SHIFT,
              "completions carry the kernel's flags unchanged");

namespace {

constexpr uint16_t kBufferGroup = 0;
constexpr unsigned kSqEntries = 1024;
constexpr unsigned kCqEntries = 8192;

// Why io_uring_setup refused, and what allows it. Read here rather than
// guessed: the sysctl says whether it, or else a seccomp filter, is the cause.
std::string ring_setup_error(int err) {
    switch (err) {
    case ENOSYS:
        return "io_uring is not available in this kernel (io_uring_setup: ENOSYS). limaoim's io_uring backend "
               "needs Linux 6.1 or newer built with CONFIG_IO_URING=y; --io-backend epoll (or auto) needs "
               "no io_uring.";
    case EPERM:
    case EACCES: {
        std::string disabled;
        if (FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "r")) {
            int value = 0;
            if (std::fscanf(f, "%d", &value) == 1 && value != 0) disabled = std::to_string(value);
            std::fclose(f);
        }
        std::string cause = disabled.empty()
                                ? "a seccomp profile blocks it (Docker's default since 25, containerd's)"
                                : "sysctl kernel.io_uring_disabled is " + disabled;
        return "io_uring is forbidden here (io_uring_setup: " + std::string(strerror(err)) + "): " + cause +
               ". To allow it: run the container with a seccomp profile that allows io_uring_setup, "
               "io_uring_enter and io_uring_register (docker --security-opt "
               "seccomp=tools/container/seccomp-io_uring.json: Docker's default plus those three; README "
               "\"Containers\"), "
               "and, where it is set, sysctl -w kernel.io_uring_disabled=0 on the host. Or run with "
               "--io-backend epoll (or auto, the "
               "default), which needs no io_uring.";
    }
    case ENOMEM:
        return "io_uring_setup failed: out of memory for the ring (ENOMEM). On kernels before 5.12 "
               "rings count against RLIMIT_MEMLOCK: raise it (ulimit -l) or upgrade the kernel.";
    default:
        return "io_uring_setup failed: " + std::string(strerror(err));
    }
}

class RingBackend final : public IoBackend {
public:
    RingBackend(const WorkerOptions& options, std::vector<Completion>& completions)
        : IoBackend(options, completions) {}
    ~RingBackend() override {
        if (ring_ready_) io_uring_queue_exit(&ring_);
        if (buf_ring_) munmap(buf_ring_, options_.recv_buffers * sizeof(io_uring_buf));
    }

    bool init(std::string& error, int& errno_out);
    IoBackendKind kind() const override { return IoBackendKind::IoUring; }

    void accept_multishot(uint32_t listener, int fd) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_multishot_accept_direct(sqe, fd, nullptr, nullptr, 0);
        io_uring_sqe_set_data64(sqe, pack(Op::Accept, listener, 0));
    }
    void accept_once(uint32_t listener, int fd) override {
        io_uring_sqe* sqe = get_sqe();
        // liburing 2.3 stores file_index + 1 (0 means "not direct"): ALLOC - 1
        // asks the kernel to pick a free slot, as its multishot helper does.
        io_uring_prep_accept_direct(sqe, fd, nullptr, nullptr, 0, IORING_FILE_INDEX_ALLOC - 1);
        io_uring_sqe_set_data64(sqe, pack(Op::Accept, listener, 0));
    }
    void cancel_accepts(uint32_t listener) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_cancel64(sqe, pack(Op::Accept, listener, 0), IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, pack(Op::Cancel, listener, 0));
    }
    void poll_conn(uint32_t slot, uint64_t user_data) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_poll_multishot(sqe, int(slot), POLLIN);
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, user_data);
    }
    void recv_multishot(uint32_t slot, uint64_t user_data) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_recv_multishot(sqe, int(slot), nullptr, 0, 0);
        sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
        sqe->buf_group = kBufferGroup;
        io_uring_sqe_set_data64(sqe, user_data);
    }
    void recv_once(uint32_t slot, uint64_t user_data) override {
        io_uring_sqe* sqe = get_sqe();
        // MSG_DONTWAIT: when the data was already taken by the previous recv the
        // kernel answers -EAGAIN instead of parking this recv (and its memory)
        // until the next byte arrives.
        io_uring_prep_recv(sqe, int(slot), nullptr, buffer_size_, MSG_DONTWAIT);
        sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
        sqe->buf_group = kBufferGroup;
        io_uring_sqe_set_data64(sqe, user_data);
    }
    void send(uint32_t slot, const uint8_t* data, uint32_t len, uint64_t user_data) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_send(sqe, int(slot), data, len, MSG_NOSIGNAL);
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, user_data);
    }
    void cancel(uint64_t user_data) override {
        // By exact user_data: a hash lookup in the kernel; cancelling by
        // descriptor scans every pending request (closing n connections O(n^2)).
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_cancel64(sqe, user_data, 0);
        io_uring_sqe_set_data64(sqe, pack(Op::Cancel, index_of(user_data), 0));
    }
    void close_slot(uint32_t slot) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_close_direct(sqe, slot);
        io_uring_sqe_set_data64(sqe, pack(Op::Close, slot, 0));
    }
    void poll_fd(int fd, uint32_t events, uint64_t user_data) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_poll_multishot(sqe, fd, events);
        io_uring_sqe_set_data64(sqe, user_data);
    }

    void wait(uint64_t timeout_ms) override {
        __kernel_timespec timeout{};
        timeout.tv_sec = int64_t(timeout_ms / 1000);
        timeout.tv_nsec = int64_t(timeout_ms % 1000) * 1000000;
        io_uring_cqe* first = nullptr;
        // With DEFER_TASKRUN completions are only produced inside this call.
        // Always wait_nr 1, if need be with a zero timeout: only a wait
        // (IORING_ENTER_GETEVENTS) runs DEFER_TASKRUN's task work.
        int rc = io_uring_submit_and_wait_timeout(&ring_, &first, 1, &timeout, nullptr);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            fatal("io_uring_submit_and_wait_timeout", -rc);
        reap();
    }

    void recycle_buffer(uint16_t bid) override {
        io_uring_buf_ring_add(buf_ring_, buffer(bid), buffer_size_, bid, io_uring_buf_ring_mask(options_.recv_buffers),
                              buffers_to_advance_);
        ++buffers_to_advance_;
    }
    void publish_buffers() override {
        if (!buffers_to_advance_) return;
        io_uring_buf_ring_advance(buf_ring_, buffers_to_advance_);
        buffers_to_advance_ = 0;
    }

private:
    io_uring_sqe* get_sqe();
    void reap();

    io_uring ring_{};
    bool ring_ready_ = false;
    io_uring_buf_ring* buf_ring_ = nullptr;
    uint16_t buffers_to_advance_ = 0;
};

bool RingBackend::init(std::string& error, int& errno_out) {
    io_uring_params params{};
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.cq_entries = kCqEntries;
    int rc = io_uring_queue_init_params(kSqEntries, &ring_, &params);
    if (rc == -EINVAL) {
        // SINGLE_ISSUER/DEFER_TASKRUN arrived in 6.0/6.1; plain rings still work.
        params = {};
        params.flags = IORING_SETUP_CQSIZE;
        params.cq_entries = kCqEntries;
        rc = io_uring_queue_init_params(kSqEntries, &ring_, &params);
    }
    if (rc < 0) {
        errno_out = -rc;
        error = ring_setup_error(-rc);
        return false;
    }
    ring_ready_ = true;

    // The fixed-file table holds every connection of this worker. The kernel
    // refuses a table larger than RLIMIT_NOFILE (EMFILE), which is why
    // capacity is workers x slots (capacity.h).
    rc = io_uring_register_files_sparse(&ring_, options_.slots);
    if (rc < 0) {
        rlimit lim{};
        getrlimit(RLIMIT_NOFILE, &lim);
        error = "cannot register a fixed-file table of " + std::to_string(options_.slots) + " slots: " +
                strerror(-rc) + " (open-files limit: soft " + std::to_string(lim.rlim_cur) + ", hard " +
                std::to_string(lim.rlim_max) + "). Each ring's table is bounded by the open-files limit: use more --workers.";
        return false;
    }
    rc = io_uring_register_file_alloc_range(&ring_, 0, options_.slots);
    if (rc < 0) {
        error = "io_uring_register_file_alloc_range: " + std::string(strerror(-rc)) +
                " (multishot accept into direct descriptors needs Linux 6.0+)";
        return false;
    }

    // Provided-buffer ring: the kernel picks a buffer per completed recv.
    size_t ring_bytes = options_.recv_buffers * sizeof(io_uring_buf);
    void* ring_mem = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring_mem == MAP_FAILED) {
        error = std::string("cannot map the buffer ring: ") + strerror(errno);
        return false;
    }
    buf_ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
    if (!map_buffers(error)) return false;
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(buf_ring_);
    reg.ring_entries = options_.recv_buffers;
    reg.bgid = kBufferGroup;
    rc = io_uring_register_buf_ring(&ring_, &reg, 0);
    if (rc < 0) {
        error = "io_uring_register_buf_ring: " + std::string(strerror(-rc)) + " (provided-buffer rings need Linux 5.19+)";
        return false;
    }
    io_uring_buf_ring_init(buf_ring_);
    for (uint32_t bid = 0; bid < options_.recv_buffers; ++bid) {
        io_uring_buf_ring_add(buf_ring_, buffer(uint16_t(bid)), buffer_size_, uint16_t(bid),
                              io_uring_buf_ring_mask(options_.recv_buffers), int(bid));
    }
    io_uring_buf_ring_advance(buf_ring_, int(options_.recv_buffers));
    return true;
}

io_uring_sqe* RingBackend::get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (!sqe) {
        // SQ full (a handler queued more than kSqEntries requests in one
        // batch): hand them to the kernel now, with the buffers recycled so
        // far visible to the receives among them.
        publish_buffers();
        int rc = io_uring_submit(&ring_);
        if (rc == -EBUSY) {
            // Completions overflowed the CQ and the kernel cannot post them
            // until it has room: take them out; the worker handles them in order.
            reap();
        } else if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
            fatal("io_uring_submit", -rc);
        }
        sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
}

void RingBackend::reap() {
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
        completions_.push_back(Completion{cqe->user_data, cqe->res, cqe->flags});
        ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
}

}  // namespace

int probe_ring() {
    io_uring ring{};
    const int rc = io_uring_queue_init(2, &ring, 0);
    if (rc < 0) return -rc;
    io_uring_queue_exit(&ring);
    return 0;
}

std::string ring_unavailable(int err) { return ring_setup_error(err); }

std::unique_ptr<IoBackend> make_ring_backend(const WorkerOptions& options, std::vector<Completion>& completions,
                                             std::string& error, int& errno_out) {
    auto ring = std::make_unique<RingBackend>(options, completions);
    errno_out = 0;
    if (!ring->init(error, errno_out)) return nullptr;
    return ring;
}

}  // namespace limaoim::net::detail
