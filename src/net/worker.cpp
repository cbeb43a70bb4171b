#include "limaoim/net/worker.h"

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <future>

namespace limaoim::net {

// What a completion is for, packed with the connection into user_data:
//   bits 63..56 op | 55..32 low 24 bits of the generation | 31..0 slot
enum class Worker::Op : uint8_t { Accept = 1, Recv, Send, Cancel, Close, Wake, Poll };

namespace {

constexpr uint16_t kBufferGroup = 0;
constexpr unsigned kSqEntries = 1024;
constexpr unsigned kCqEntries = 8192;
constexpr uint32_t kMinPartial = 64;

[[noreturn]] void fatal(const char* what, int err) {
    std::fprintf(stderr, "limaoim: %s: %s\n", what, strerror(err));
    std::abort();
}

uint64_t monotonic_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

uint64_t pack(uint8_t op, uint32_t slot, uint32_t generation) {
    return uint64_t(op) << 56 | uint64_t(generation & 0xffffff) << 32 | slot;
}
uint8_t op_of(uint64_t user_data) { return uint8_t(user_data >> 56); }
uint32_t generation_of(uint64_t user_data) { return uint32_t(user_data >> 32) & 0xffffff; }
uint32_t slot_of(uint64_t user_data) { return uint32_t(user_data); }

std::string ring_setup_error(int err) {
    switch (err) {
    case ENOSYS:
        return "io_uring is not available in this kernel (io_uring_setup: ENOSYS). "
               "limaoim needs Linux 6.1 or newer built with CONFIG_IO_URING=y.";
    case EPERM:
    case EACCES:
        return "io_uring is forbidden here (io_uring_setup: " + std::string(strerror(err)) +
               "). Either sysctl kernel.io_uring_disabled is 1 or 2 (fix: sysctl -w "
               "kernel.io_uring_disabled=0), or a container seccomp profile blocks it (fix: run the "
               "container with a profile that allows io_uring_setup/io_uring_enter/io_uring_register, "
               "e.g. docker --security-opt seccomp=unconfined).";
    case ENOMEM:
        return "io_uring_setup failed: out of memory for the ring (ENOMEM). On kernels before 5.12 "
               "rings count against RLIMIT_MEMLOCK: raise it (ulimit -l) or upgrade the kernel.";
    default:
        return "io_uring_setup failed: " + std::string(strerror(err));
    }
}

// A TCP socket bound to addr:port, or -1 with `error` set. SO_REUSEADDR
// always, so connections of an earlier run still in TIME_WAIT do not hold
// the port; SO_REUSEPORT when the port is to be shared by our workers.
int bind_tcp(const std::string& addr, uint16_t port, bool share_port, std::string& error) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) {
        error = "--addr '" + addr + "' is not an IPv4 address";
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = std::string("socket: ") + strerror(errno);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (share_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) {
        error = "cannot listen on " + addr + ":" + std::to_string(port) + ": " + strerror(errno);
        if (errno == EADDRINUSE) error += " (another program, or another limaoim, listens there: choose --port)";
        ::close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

std::string probe_listen_port(const std::string& addr, uint16_t port) {
    std::string problem;
    int fd = bind_tcp(addr, port, false, problem);
    if (fd >= 0) ::close(fd);
    return problem;
}

Worker::Worker(const WorkerOptions& options, SharedLimits& limits, stats::WorkerBlock& stats,
               stats::ConnCounters* conn_stats)
    : options_(options), limits_(limits), stats_(stats), conn_stats_(conn_stats),
      ring_(std::make_unique<io_uring>()), conns_(options.slots),
      wheel_(reinterpret_cast<std::byte*>(&conns_[0]) + offsetof(Connection, timer), sizeof(Connection),
             1024, uint32_t(monotonic_ms() / kTickMs)) {
    completions_.reserve(kCqEntries);
}

Worker::~Worker() {
    if (ring_ready_) io_uring_queue_exit(ring_.get());
    if (buf_ring_) munmap(buf_ring_, options_.recv_buffers * sizeof(io_uring_buf));
    if (buffers_) munmap(buffers_, buffers_bytes_);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

bool Worker::start(std::string& error) {
    std::promise<std::string> ready;
    std::future<std::string> result = ready.get_future();
    thread_ = std::thread([this, &ready] {
        std::string init_error;
        bool ok = init(init_error);
        ready.set_value(init_error);
        if (ok) run();
    });
    error = result.get();
    if (error.empty()) return true;
    thread_.join();
    return false;
}

void Worker::join() {
    if (thread_.joinable()) thread_.join();
}

bool Worker::init(std::string& error) {
    const std::string who = "worker " + std::to_string(options_.index) + ": ";

    io_uring_params params{};
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.cq_entries = kCqEntries;
    int rc = io_uring_queue_init_params(kSqEntries, ring_.get(), &params);
    if (rc == -EINVAL) {
        // SINGLE_ISSUER/DEFER_TASKRUN arrived in 6.0/6.1; plain rings still work.
        params = {};
        params.flags = IORING_SETUP_CQSIZE;
        params.cq_entries = kCqEntries;
        rc = io_uring_queue_init_params(kSqEntries, ring_.get(), &params);
    }
    if (rc < 0) {
        error = who + ring_setup_error(-rc);
        return false;
    }
    ring_ready_ = true;

    // The fixed-file table holds every connection of this worker. The kernel
    // refuses a table larger than RLIMIT_NOFILE (EMFILE), which is why
    // capacity is workers x slots (capacity.h).
    rc = io_uring_register_files_sparse(ring_.get(), options_.slots);
    if (rc < 0) {
        rlimit lim{};
        getrlimit(RLIMIT_NOFILE, &lim);
        error = who + "cannot register a fixed-file table of " + std::to_string(options_.slots) +
                " slots: " + strerror(-rc) + " (open-files limit: soft " + std::to_string(lim.rlim_cur) +
                ", hard " + std::to_string(lim.rlim_max) +
                "). Each ring's table is bounded by the open-files limit: use more --workers.";
        return false;
    }
    rc = io_uring_register_file_alloc_range(ring_.get(), 0, options_.slots);
    if (rc < 0) {
        error = who + "io_uring_register_file_alloc_range: " + strerror(-rc) +
                " (multishot accept into direct descriptors needs Linux 6.0+)";
        return false;
    }

    // Provided-buffer ring: the kernel picks a buffer per completed recv.
    size_t ring_bytes = options_.recv_buffers * sizeof(io_uring_buf);
    void* ring_mem = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    buffers_bytes_ = size_t(options_.recv_buffers) * options_.recv_buffer_size;
    // Populated now: the kernel cycles through every buffer of the ring
    // anyway, so they are a fixed cost of the worker, paid at start rather
    // than as page faults on the receive path.
    void* buf_mem = mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE,
                         -1, 0);
    if (ring_mem == MAP_FAILED || buf_mem == MAP_FAILED) {
        error = who + "cannot map receive buffers: " + strerror(errno);
        return false;
    }
    buf_ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
    buffers_ = static_cast<uint8_t*>(buf_mem);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(buf_ring_);
    reg.ring_entries = options_.recv_buffers;
    reg.bgid = kBufferGroup;
    rc = io_uring_register_buf_ring(ring_.get(), &reg, 0);
    if (rc < 0) {
        error = who + "io_uring_register_buf_ring: " + strerror(-rc) + " (provided-buffer rings need Linux 5.19+)";
        return false;
    }
    io_uring_buf_ring_init(buf_ring_);
    for (uint32_t bid = 0; bid < options_.recv_buffers; ++bid) {
        io_uring_buf_ring_add(buf_ring_, buffers_ + size_t(bid) * options_.recv_buffer_size,
                              options_.recv_buffer_size, uint16_t(bid),
                              io_uring_buf_ring_mask(options_.recv_buffers), int(bid));
    }
    io_uring_buf_ring_advance(buf_ring_, int(options_.recv_buffers));

    // One listener per worker: SO_REUSEPORT spreads new connections.
    listen_fd_ = bind_tcp(options_.addr, options_.port, true, error);
    if (listen_fd_ < 0) {
        error = who + error;
        return false;
    }
    // Accepted sockets inherit the listener's send buffer, and a set size
    // turns the kernel's autotuning (up to tcp_wmem[2], 4 MiB) off: a client
    // that does not read then fills our send queue, and is cut at send_cap,
    // after at most 2 x sndbuf of kernel memory instead of megabytes.
    if (options_.sndbuf) {
        int size = int(options_.sndbuf);
        setsockopt(listen_fd_, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
    if (listen(listen_fd_, 65535) < 0) {
        error = who + "listen: " + strerror(errno);
        return false;
    }

    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
        error = who + "eventfd: " + strerror(errno);
        return false;
    }
    return true;
}

io_uring_sqe* Worker::get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
    while (!sqe) {
        // SQ full (a handler queued more than kSqEntries requests in one
        // batch): hand them to the kernel now, with the buffers recycled so
        // far visible to the receives among them.
        publish_buffers();
        int rc = io_uring_submit(ring_.get());
        if (rc == -EBUSY) {
            // Completions overflowed the CQ and the kernel cannot post them
            // until it has room: take them out; the loop handles them in order.
            reap_completions();
        } else if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
            fatal("io_uring_submit", -rc);
        }
        sqe = io_uring_get_sqe(ring_.get());
    }
    return sqe;
}

void Worker::reap_completions() {
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring_.get(), head, cqe) {
        completions_.push_back(Completion{cqe->user_data, cqe->res, cqe->flags});
        ++seen;
    }
    io_uring_cq_advance(ring_.get(), seen);
}

void Worker::publish_buffers() {
    if (!buffers_to_advance_) return;
    io_uring_buf_ring_advance(buf_ring_, buffers_to_advance_);
    buffers_to_advance_ = 0;
}

void Worker::arm_accept() {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_multishot_accept_direct(sqe, listen_fd_, nullptr, nullptr, 0);
    io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Accept), 0, 0));
}

void Worker::arm_wake() {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_multishot(sqe, wake_fd_, POLLIN);
    io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Wake), 0, 0));
}

void Worker::arm_recv(uint32_t slot) {
    Connection& c = conns_[slot];
    io_uring_sqe* sqe = get_sqe();
    if (options_.recv_mode == RecvMode::PollThenRecv) {
        io_uring_prep_poll_multishot(sqe, int(slot), POLLIN);
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Poll), slot, c.generation));
    } else {
        io_uring_prep_recv_multishot(sqe, int(slot), nullptr, 0, 0);
        sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
        sqe->buf_group = kBufferGroup;
        io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Recv), slot, c.generation));
    }
    c.io |= kRecvArmed;
}

void Worker::recv_once(uint32_t slot) {
    Connection& c = conns_[slot];
    io_uring_sqe* sqe = get_sqe();
    // MSG_DONTWAIT: when the data was already taken by the previous recv the
    // kernel answers -EAGAIN instead of parking this recv (and its memory)
    // until the next byte arrives.
    io_uring_prep_recv(sqe, int(slot), nullptr, options_.recv_buffer_size, MSG_DONTWAIT);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Recv), slot, c.generation));
    c.io |= kRecvOnce;
}

void Worker::on_poll(const Completion& cqe) {
    uint32_t slot = slot_of(cqe.user_data);
    Connection& c = conns_[slot];
    if (!(cqe.flags & IORING_CQE_F_MORE)) c.io &= ~kRecvArmed;
    const bool open = c.state == uint8_t(ConnState::Open) || c.state == uint8_t(ConnState::Draining);
    if (cqe.res < 0) {
        if (cqe.res != -ECANCELED && open) begin_close(slot, CloseReason::IoError);
    } else if (open) {
        // Readable, or hung up / in error: the recv tells which.
        if (!(c.io & kRecvOnce)) recv_once(slot);
        // A multishot poll also ends on CQ overflow.
        if (!(c.io & kRecvArmed)) {
            stats_.recv_rearms.add();
            arm_recv(slot);
        }
    }
    maybe_release(slot);
}

void Worker::submit_send(uint32_t slot) {
    Connection& c = conns_[slot];
    SendChunk* head = c.send_head;
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_send(sqe, int(slot), head->data + head->begin, head->end - head->begin, MSG_NOSIGNAL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Send), slot, c.generation));
    c.io |= kSendInFlight;
}

void Worker::update_clock() { now_ms_ = monotonic_ms(); }

void Worker::run() {
    update_clock();
    accepting_ = true;
    arm_accept();
    arm_wake();

    for (;;) {
        if (stop_requested_.load(std::memory_order_acquire) && !stopping_) {
            stopping_ = true;
            stop_at_ms_ = now_ms_ + stop_deadline_ms_.load();
            accepting_ = false;
            io_uring_sqe* sqe = get_sqe();
            io_uring_prep_cancel64(sqe, pack(uint8_t(Op::Accept), 0, 0), 0);
            io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Cancel), 0, 0));
            handler_->on_shutdown();
        }
        if (stopping_ && (open_ == 0 || now_ms_ >= stop_at_ms_)) break;

        uint64_t next_tick_ms = (now_tick() + 1) * uint64_t(kTickMs);
        uint64_t wait_ms = next_tick_ms > now_ms_ ? next_tick_ms - now_ms_ : 1;
        __kernel_timespec timeout{};
        timeout.tv_sec = int64_t(wait_ms / 1000);
        timeout.tv_nsec = int64_t(wait_ms % 1000) * 1000000;
        io_uring_cqe* first = nullptr;
        // With DEFER_TASKRUN completions are only produced inside this call.
        int rc = io_uring_submit_and_wait_timeout(ring_.get(), &first, 1, &timeout, nullptr);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            fatal("io_uring_submit_and_wait_timeout", -rc);
        update_clock();

        // Handlers may append to completions_ (get_sqe on -EBUSY): by index,
        // and each completion copied before it is handled.
        reap_completions();
        for (size_t i = 0; i < completions_.size(); ++i) {
            const Completion cqe = completions_[i];
            handle_cqe(cqe);
        }
        completions_.clear();
        publish_buffers();
        wheel_.advance(now_tick(), [this](uint32_t slot) { on_timer(slot); });
    }
}

void Worker::request_stop(uint32_t deadline_ms) {
    stop_deadline_ms_.store(deadline_ms);
    stop_requested_.store(true, std::memory_order_release);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

void Worker::post(const Mail& mail) {
    {
        std::lock_guard lock(mail_mutex_);
        mail_in_.push_back(mail);
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

void Worker::handle_cqe(const Completion& cqe) {
    switch (Op(op_of(cqe.user_data))) {
    case Op::Accept: on_accept(cqe); break;
    case Op::Recv: on_recv(cqe); break;
    case Op::Poll: on_poll(cqe); break;
    case Op::Send: on_send(cqe); break;
    case Op::Wake:
        on_wake();
        // A multishot poll ends on CQ overflow; it must be re-armed.
        if (!(cqe.flags & IORING_CQE_F_MORE)) arm_wake();
        break;
    case Op::Cancel:
    case Op::Close:
        break;  // results of teardown steps; nothing waits on them
    }
}

void Worker::on_wake() {
    uint64_t count;
    [[maybe_unused]] ssize_t n = read(wake_fd_, &count, sizeof(count));
    {
        std::lock_guard lock(mail_mutex_);
        mail_work_.swap(mail_in_);
    }
    for (const Mail& mail : mail_work_) handler_->on_mail(mail);
    mail_work_.clear();
}

void Worker::on_accept(const Completion& cqe) {
    // The multishot accept stops on an error or a CQ overflow (F_MORE clear).
    if (!(cqe.flags & IORING_CQE_F_MORE) && accepting_) arm_accept();
    if (cqe.res < 0) {
        if (cqe.res == -ENFILE) {
            // Fixed-file table full: the kernel already closed the new socket.
            stats_.rejected_capacity.add();
        } else if (cqe.res != -ECANCELED) {
            stats_.accept_errors.add();
        }
        return;
    }
    uint32_t slot = uint32_t(cqe.res);
    if (!accepting_) {
        reject(slot);
        return;
    }
    if (limits_.open_conns.fetch_add(1, std::memory_order_relaxed) >= limits_.max_conns) {
        limits_.open_conns.fetch_sub(1, std::memory_order_relaxed);
        stats_.accepted.add();
        stats_.rejected_capacity.add();
        stats_.closed[int(CloseReason::Rejected)].add();
        reject(slot);
        return;
    }

    Connection& c = conns_.activate(slot);
    if (++next_generation_ == 0) ++next_generation_;
    c.generation = next_generation_;
    c.state = uint8_t(ConnState::Open);
    c.last_rx_tick = now_tick();
    ++open_;
    stats_.accepted.add();
    stats_.connections.add();
    stats::ConnCounters& cs = conn_stats_[slot];
    if (cs.generation.load(std::memory_order_relaxed) != 0) stats_.slot_reuses.add();
    cs.packets_in.store(0, std::memory_order_relaxed);
    cs.packets_out.store(0, std::memory_order_relaxed);
    cs.bytes_in_kib.store(0, std::memory_order_relaxed);
    // Release: a reader that sees the new generation sees the zeroed counters.
    cs.generation.store(c.generation << 1 | 1, std::memory_order_release);

    arm_recv(slot);
    handler_->on_open(ConnRef{slot, c.generation});
}

void Worker::reject(uint32_t slot) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_close_direct(sqe, slot);
    io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Close), slot, 0));
}

void Worker::recycle_buffer(uint16_t bid) {
    io_uring_buf_ring_add(buf_ring_, buffers_ + size_t(bid) * options_.recv_buffer_size,
                          options_.recv_buffer_size, bid, io_uring_buf_ring_mask(options_.recv_buffers),
                          buffers_to_advance_);
    ++buffers_to_advance_;
}

void Worker::on_recv(const Completion& cqe) {
    uint32_t slot = slot_of(cqe.user_data);
    Connection& c = conns_[slot];
    const bool has_buffer = cqe.flags & IORING_CQE_F_BUFFER;
    const uint16_t bid = uint16_t(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    if (c.state == uint8_t(ConnState::Free) || (c.generation & 0xffffff) != generation_of(cqe.user_data)) {
        // Cannot happen while slots are released only after their last
        // completion; a buffer must still go back to the ring.
        if (has_buffer) recycle_buffer(bid);
        return;
    }
    const bool poll_mode = options_.recv_mode == RecvMode::PollThenRecv;
    const bool more = cqe.flags & IORING_CQE_F_MORE;
    if (poll_mode) {
        c.io &= ~kRecvOnce;
    } else if (!more) {
        c.io &= ~kRecvArmed;
    }

    if (cqe.res > 0) {
        if (c.state == uint8_t(ConnState::Open)) {
            c.last_rx_tick = now_tick();
            stats_.bytes_in.add(uint64_t(cqe.res));
            stats::ConnCounters& cs = conn_stats_[slot];
            const uint32_t uncounted = c.rx_below_kib + uint32_t(cqe.res);
            cs.bytes_in_kib.store(cs.bytes_in_kib.load(std::memory_order_relaxed) + uncounted / 1024,
                                  std::memory_order_relaxed);
            c.rx_below_kib = uint16_t(uncounted % 1024);
            deliver(slot, {buffers_ + size_t(bid) * options_.recv_buffer_size, size_t(cqe.res)});
        }
        recycle_buffer(bid);
        if (poll_mode) {
            // The poll fires on new data only: read on while the socket
            // says more is waiting, also while draining: closing a socket
            // with unread data makes the kernel send a reset, which can
            // destroy the last packets we sent.
            const bool reading = c.state == uint8_t(ConnState::Open) || c.state == uint8_t(ConnState::Draining);
            if ((cqe.flags & IORING_CQE_F_SOCK_NONEMPTY) && reading) recv_once(slot);
        } else if (!more && c.state == uint8_t(ConnState::Open)) {
            // A multishot recv also ends when the CQ overflowed: re-arm.
            stats_.recv_rearms.add();
            arm_recv(slot);
        }
    } else {
        if (has_buffer) recycle_buffer(bid);
        if (cqe.res == -ENOBUFS) {
            // The provided-buffer ring ran dry and ended this multishot recv;
            // the data waits in the socket. Buffers recycled during this batch
            // are visible to the kernel before the re-armed recv runs.
            stats_.buffer_ring_empty.add();
            if (c.state != uint8_t(ConnState::Closing)) {
                stats_.recv_rearms.add();
                if (poll_mode) {
                    recv_once(slot);
                } else {
                    arm_recv(slot);
                }
            }
        } else if (cqe.res == 0 || cqe.res == -ECONNRESET || cqe.res == -EPIPE || cqe.res == -ETIMEDOUT) {
            begin_close(slot, CloseReason::PeerClosed);
        } else if (cqe.res == -EAGAIN && poll_mode) {
            // The data of this wake-up was taken by the previous recv: the
            // multishot poll stays armed.
        } else if (cqe.res != -ECANCELED) {
            begin_close(slot, CloseReason::IoError);
        }
    }
    maybe_release(slot);
}

void Worker::deliver(uint32_t slot, std::span<const uint8_t> bytes) {
    Connection& c = conns_[slot];
    const ConnRef ref{slot, c.generation};

    // A packet split across reads: complete it in the reassembly buffer, with
    // only as many new bytes as it still lacks.
    while (c.partial && !bytes.empty()) {
        size_t take = std::min<size_t>(c.partial_cap - c.partial_len, bytes.size());
        std::memcpy(c.partial + c.partial_len, bytes.data(), take);
        c.partial_len += uint32_t(take);
        bytes = bytes.subspan(take);
        DataResult r = handler_->on_data(ref, {c.partial, c.partial_len});
        if (c.state != uint8_t(ConnState::Open)) return;
        uint32_t rest = c.partial_len - uint32_t(r.consumed);
        if (rest == 0) {
            drop_partial(c);
            break;
        }
        std::memmove(c.partial, c.partial + r.consumed, rest);
        c.partial_len = rest;
        if (!keep_partial(c, {}, r.needed)) return;
    }
    if (bytes.empty()) return;

    DataResult r = handler_->on_data(ref, bytes);
    if (c.state != uint8_t(ConnState::Open)) return;
    if (r.consumed < bytes.size()) keep_partial(c, bytes.subspan(r.consumed), r.needed);
}

// Makes the reassembly buffer hold its current bytes plus `tail`, with room
// for the whole packet when its size is known.
bool Worker::keep_partial(Connection& c, std::span<const uint8_t> tail, uint32_t needed) {
    uint32_t have = c.partial_len + uint32_t(tail.size());
    uint32_t want = std::max<uint32_t>({needed, have, kMinPartial});
    if (needed == 0 && have >= c.partial_cap) want = std::max(want, c.partial_cap * 2);
    if (want > c.partial_cap) {
        auto* grown = static_cast<uint8_t*>(std::realloc(c.partial, want));
        if (!grown) {
            begin_close(uint32_t(&c - &conns_[0]), CloseReason::IoError);
            return false;
        }
        c.partial = grown;
        c.partial_cap = want;
    }
    if (!tail.empty()) std::memcpy(c.partial + c.partial_len, tail.data(), tail.size());
    c.partial_len = have;
    return true;
}

void Worker::drop_partial(Connection& c) {
    std::free(c.partial);
    c.partial = nullptr;
    c.partial_len = c.partial_cap = 0;
}

Worker::Connection* Worker::live(ConnRef ref) {
    if (ref.slot >= options_.slots) return nullptr;
    Connection& c = conns_[ref.slot];
    if (c.generation != ref.generation || c.state == uint8_t(ConnState::Free)) return nullptr;
    return &c;
}

const Worker::Connection* Worker::live(ConnRef ref) const {
    return const_cast<Worker*>(this)->live(ref);
}

bool Worker::is_open(ConnRef ref) const {
    const Connection* c = live(ref);
    return c && c->state == uint8_t(ConnState::Open);
}

uint32_t Worker::idle_ms(ConnRef ref) const {
    const Connection* c = live(ref);
    return c ? (now_tick() - c->last_rx_tick) * kTickMs : 0;
}

std::span<uint8_t> Worker::reserve(ConnRef ref, size_t n) {
    Connection* c = live(ref);
    if (!c || c->state != uint8_t(ConnState::Open) || n > SendChunk::kCapacity) return {};
    if (c->queued + n > options_.send_cap) {
        stats_.slow_consumer_kicks.add();
        begin_close(ref.slot, CloseReason::SlowConsumer);
        return {};
    }
    SendChunk* tail = c->send_tail;
    if (!tail || tail->room() < n) {
        SendChunk* fresh = chunks_.get();
        if (!fresh) {
            begin_close(ref.slot, CloseReason::IoError);  // out of memory: this connection, not the server
            return {};
        }
        if (tail) {
            tail->next = fresh;
        } else {
            c->send_head = fresh;
        }
        c->send_tail = tail = fresh;
    }
    return {tail->data + tail->end, n};
}

void Worker::commit(ConnRef ref, size_t n) {
    Connection* c = live(ref);
    if (!c || n == 0) return;
    c->send_tail->end += uint32_t(n);
    c->queued += uint32_t(n);
    stats_.send_queue_bytes.add(n);
    if (!(c->io & kSendInFlight)) submit_send(ref.slot);
}

bool Worker::send(ConnRef ref, std::span<const uint8_t> bytes) {
    while (!bytes.empty()) {
        size_t n = std::min(bytes.size(), SendChunk::kCapacity);
        std::span<uint8_t> room = reserve(ref, n);
        if (room.empty()) return false;
        std::memcpy(room.data(), bytes.data(), n);
        commit(ref, n);
        bytes = bytes.subspan(n);
    }
    return true;
}

void Worker::on_send(const Completion& cqe) {
    uint32_t slot = slot_of(cqe.user_data);
    Connection& c = conns_[slot];
    c.io &= ~kSendInFlight;
    if (c.state == uint8_t(ConnState::Closing)) {
        maybe_release(slot);
        return;
    }
    if (cqe.res < 0) {
        bool reset = cqe.res == -EPIPE || cqe.res == -ECONNRESET || cqe.res == -ETIMEDOUT;
        begin_close(slot, reset ? CloseReason::PeerClosed : CloseReason::IoError);
        maybe_release(slot);
        return;
    }
    uint32_t sent = uint32_t(cqe.res);
    stats_.bytes_out.add(sent);
    stats_.send_queue_bytes.sub(sent);
    c.queued -= sent;
    c.send_head->begin += sent;
    while (c.send_head && c.send_head->begin == c.send_head->end) {
        SendChunk* done = c.send_head;
        c.send_head = done->next;
        if (!c.send_head) c.send_tail = nullptr;
        chunks_.put(done);
    }
    if (c.send_head) {
        submit_send(slot);
    } else if (c.state == uint8_t(ConnState::Draining)) {
        begin_close(slot, CloseReason::Count);  // on_close already ran at close()
        maybe_release(slot);
    }
}

void Worker::close(ConnRef ref, CloseReason reason, Linger linger) {
    Connection* c = live(ref);
    if (!c || c->state != uint8_t(ConnState::Open)) return;
    if (linger == Linger::Flush && c->queued > 0) {
        c->state = uint8_t(ConnState::Draining);
        drop_partial(*c);
        notify_close(ref, reason);
        wheel_.schedule(ref.slot, now_tick() + options_.drain_timeout_ms / kTickMs);
        return;
    }
    begin_close(ref.slot, reason);
    maybe_release(ref.slot);
}

// The one place a connection's close is counted and told to the handler:
// called when an Open connection leaves that state, so exactly once.
void Worker::notify_close(ConnRef ref, CloseReason reason) {
    stats_.closed[int(reason)].add();
    handler_->on_close(ref, reason);
}

void Worker::begin_close(uint32_t slot, CloseReason reason) {
    Connection& c = conns_[slot];
    if (c.state == uint8_t(ConnState::Closing) || c.state == uint8_t(ConnState::Free)) return;
    const bool notify = c.state == uint8_t(ConnState::Open);
    c.state = uint8_t(ConnState::Closing);
    wheel_.cancel(slot);
    drop_partial(c);
    if (notify) notify_close(ConnRef{slot, c.generation}, reason);
    // Cancel what is in flight: the armed recv (or poll), a one-shot recv, a
    // send stuck on a full socket. The slot is released when their last
    // completions have come back. Cancelling by exact user_data is a hash
    // lookup in the kernel; cancelling by descriptor scans every pending
    // request, which made closing n connections cost O(n^2).
    const bool poll_mode = options_.recv_mode == RecvMode::PollThenRecv;
    if (c.io & kRecvArmed) cancel(pack(uint8_t(poll_mode ? Op::Poll : Op::Recv), slot, c.generation));
    if (c.io & kRecvOnce) cancel(pack(uint8_t(Op::Recv), slot, c.generation));
    if (c.io & kSendInFlight) cancel(pack(uint8_t(Op::Send), slot, c.generation));
}

void Worker::cancel(uint64_t user_data) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, user_data, 0);
    io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Cancel), slot_of(user_data), 0));
}

void Worker::drop_send_queue(Connection& c) {
    stats_.send_queue_bytes.sub(c.queued);
    c.queued = 0;
    while (c.send_head) {
        SendChunk* next = c.send_head->next;
        chunks_.put(c.send_head);
        c.send_head = next;
    }
    c.send_tail = nullptr;
}

void Worker::maybe_release(uint32_t slot) {
    Connection& c = conns_[slot];
    if (c.state != uint8_t(ConnState::Closing) || c.io != 0) return;
    // Nothing of ours is in flight: the send chunks are ours again and the
    // slot can go back to the kernel. A new accept may reuse it right away.
    drop_send_queue(c);
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_close_direct(sqe, slot);
    io_uring_sqe_set_data64(sqe, pack(uint8_t(Op::Close), slot, c.generation));
    conn_stats_[slot].generation.store(c.generation << 1, std::memory_order_relaxed);
    c.state = uint8_t(ConnState::Free);
    c.generation = 0;
    conns_.deactivate(slot);
    --open_;
    limits_.open_conns.fetch_sub(1, std::memory_order_relaxed);
    stats_.connections.sub();
}

void Worker::set_deadline(ConnRef ref, uint32_t ms_from_now) {
    if (!is_open(ref)) return;
    wheel_.schedule(ref.slot, now_tick() + (ms_from_now + kTickMs - 1) / kTickMs);
}

void Worker::on_timer(uint32_t slot) {
    Connection& c = conns_[slot];
    if (c.state == uint8_t(ConnState::Open)) {
        handler_->on_deadline(ConnRef{slot, c.generation});
    } else if (c.state == uint8_t(ConnState::Draining)) {
        begin_close(slot, CloseReason::Count);  // the peer never took its last bytes
        maybe_release(slot);
    }
}

}  // namespace limaoim::net
