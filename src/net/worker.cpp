#include "limaoim/net/worker.h"
#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"

#include "limaoim/net/conn_id.h"
#include "io_backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <future>
#include <mutex>

namespace limaoim::net {

using detail::index_of;
using detail::generation_of;
using detail::Op;
using detail::op_of;
using detail::pack;
using detail::kCqeBuffer;
using detail::kCqeMore;
using detail::kCqeSockNonEmpty;
using detail::kCqeBufferShift;

namespace {

constexpr unsigned kCompletionsReserved = 8192;  // the ring's CQ size: one reap's worth
constexpr uint32_t kAcceptsInFlight = 64;  // one-shot accepts per listener with max_pending (8 measured 30 % fewer handshakes/s in a storm)
constexpr uint32_t kGenerationMask = ConnId::kGenerationMask;
static_assert(Transport::kMaxReserve == SendChunk::kCapacity);

[[noreturn]] void fatal(const char* what, int err) {
    log::write(log::Level::Error, "worker", "%s: %s", what, strerror(err));
    std::abort();
}

// A TCP socket bound to addr:port, or -1 with `error` set. SO_REUSEADDR
// always, so connections of an earlier run still in TIME_WAIT do not hold
// the port; SO_REUSEPORT when the port is to be shared by our workers.
int bind_tcp(const std::string& addr, uint16_t port, bool share_port, std::string& error) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) {
        error = "'" + addr + "' is not an IPv4 address";
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
        if (errno == EADDRINUSE) error += " (another program, or another limaoim, listens there)";
        ::close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

std::string probe_listen_port(const std::string& addr, uint16_t port, const std::string& option) {
    std::string problem;
    int fd = bind_tcp(addr, port, false, problem);
    if (fd >= 0) ::close(fd);
    if (!problem.empty()) problem += ": choose another " + option;
    return problem;
}

int open_listener(const ListenerOptions& options, std::string& error) {
    int fd = bind_tcp(options.addr, options.port, true, error);
    if (fd < 0) return -1;
    // Accepted sockets inherit these from the listener (the kernel clones
    // the listening socket's options into each child), so they cost no
    // syscall per connection, which a direct descriptor could not take anyway.
    //  - A set SO_SNDBUF turns the kernel's autotuning (up to tcp_wmem[2],
    //    4 MiB) off: a client that does not read then fills our send queue
    //    and is cut at send_cap, after at most 2 x sndbuf of kernel memory.
    //  - TCP_NODELAY: with one send in flight per connection, a small packet
    //    queued behind an unacknowledged one would wait for Nagle plus the
    //    peer's delayed ACK (up to 40 ms); messaging latency depends on it.
    if (options.sndbuf) {
        int size = int(options.sndbuf);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (listen(fd, int(options.backlog)) < 0) {
        error = std::string("listen: ") + strerror(errno);
        ::close(fd);
        return -1;
    }
    return fd;
}

Worker::Worker(const WorkerOptions& options, SharedLimits& limits, stats::WorkerBlock& stats,
               stats::ConnCounters* conn_stats)
    : options_(options), limits_(limits), stats_(stats), conn_stats_(conn_stats),
      conns_(options.slots),
      wheel_(reinterpret_cast<std::byte*>(&conns_[0]) + offsetof(Connection, timer), sizeof(Connection),
             1024, uint32_t(uint64_t(clock::steady_ms()) / kTickMs)),
      budget_(options.reassembly_budget, options.reassembly_per_connection, stats.reassembly_bytes),
      inbox_(options.inbox_capacity) {
    completions_.reserve(kCompletionsReserved);
}

Worker::~Worker() {
    io_.reset();  // connections still open are closed with it
    for (Listener& l : listeners_)
        if (l.fd >= 0) ::close(l.fd);
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

uint32_t Worker::add_listener(const ListenerOptions& listener) {
    listeners_.push_back(Listener{listener});
    return uint32_t(listeners_.size() - 1);
}

void Worker::set_peers(std::span<Worker* const> peers) {
    peers_.assign(peers.begin(), peers.end());
    outboxes_.resize(peers_.size());
}

bool Worker::start(std::string& error) {
    std::promise<std::string> ready;
    std::future<std::string> result = ready.get_future();
    thread_ = std::thread([this, &ready] {
        loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
        std::string init_error;
        bool ok = init(init_error);
        ready.set_value(init_error);
        if (ok) run();
    });
    pthread_setname_np(thread_.native_handle(), ("worker-" + std::to_string(index())).substr(0, 15).c_str());
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
    if (listeners_.empty() || listeners_.size() > kMaxListeners) {
        error = who + "needs 1 to " + std::to_string(kMaxListeners) + " listeners";
        return false;
    }

    if (!open_backend(who, error)) return false;

    // One socket per listener and worker: SO_REUSEPORT spreads new connections.
    for (Listener& l : listeners_) {
        l.fd = open_listener(l.options, error);
        if (l.fd < 0) {
            error = who + error;
            return false;
        }
    }

    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
        error = who + "eventfd: " + strerror(errno);
        return false;
    }
    return true;
}

const char* io_backend_name(IoBackendKind kind) {
    switch (kind) {
    case IoBackendKind::Auto: return "auto";
    case IoBackendKind::IoUring: return "io_uring";
    case IoBackendKind::Epoll: return "epoll";
    }
    return "?";
}

bool parse_io_backend(const std::string& name, IoBackendKind& kind) {
    for (IoBackendKind k : {IoBackendKind::Auto, IoBackendKind::IoUring, IoBackendKind::Epoll}) {
        if (name == io_backend_name(k)) {
            kind = k;
            return true;
        }
    }
    return false;
}

IoBackendKind resolve_io_backend(IoBackendKind requested, std::string& why) {
    why.clear();
    if (requested != IoBackendKind::Auto) return requested;
    const int err = detail::probe_ring();
    if (err == 0 || !detail::ring_forbidden(err)) return IoBackendKind::IoUring;
    why = detail::ring_unavailable(err);
    return IoBackendKind::Epoll;
}

// io_uring unless told otherwise; with Auto, epoll when the ring cannot be
// created because io_uring is forbidden or absent. Any other failure of the
// ring (a fixed-file table over the open-files limit...) is a setup error
// that epoll would only hide. A fallback here is logged once per process
// (the server resolves Auto before it plans: resolve_io_backend).
bool Worker::open_backend(const std::string& who, std::string& error) {
    if (options_.io_backend != IoBackendKind::Epoll) {
        int err = 0;
        io_ = detail::make_ring_backend(options_, completions_, error, err);
        if (!io_) {
            if (options_.io_backend == IoBackendKind::IoUring || !detail::ring_forbidden(err)) {
                error = who + error;
                return false;
            }
            static std::once_flag logged;
            std::call_once(logged, [&] { log::write(log::Level::Warn, "worker", "I/O backend: epoll, %s", error.c_str()); });
            error.clear();
        }
    }
    if (!io_) io_ = detail::make_epoll_backend(options_, completions_, error);
    if (!io_) {
        error = who + error;
        return false;
    }
    backend_kind_ = io_->kind();
    return true;
}

// ---- accepting ----

// A listener without max_pending keeps one multishot accept in the kernel.
// One with max_pending keeps up to kAcceptsInFlight one-shot accepts, and
// never more than the limit leaves room for: a multishot accept would go on
// completing a whole backlog's worth of connections in one batch before a
// cancel could stop it. At the limit, new connections stay in the kernel's
// accept backlog (the client's TCP handshake completes there and its CONNECT
// waits in the socket) instead of being accepted, then starved of handshake
// time and reset at the auth deadline. The listener stays in the
// SO_REUSEPORT group, so its share of new connections queues for this worker.
void Worker::arm_accepts(uint32_t index) {
    Listener& l = listeners_[index];
    if (!accepting_) return;
    if (!l.options.max_pending) {
        if (l.accepts_in_flight) return;
        io_->accept_multishot(index, l.fd);
        l.accepts_in_flight = 1;
        return;
    }
    while (l.accepts_in_flight < kAcceptsInFlight && l.pending + l.accepts_in_flight < l.options.max_pending) {
        io_->accept_once(index, l.fd);
        ++l.accepts_in_flight;
    }
    const bool full = l.pending >= l.options.max_pending;
    if (full && !l.at_limit) stats_.accept_pauses.add();
    l.at_limit = full;
}

void Worker::on_accept(const Completion& cqe) {
    const uint32_t index = index_of(cqe.user_data);
    Listener& l = listeners_[index];
    // A one-shot accept is done; the multishot one stops on an error, a
    // cancel or a CQ overflow (F_MORE clear).
    if (!(cqe.flags & kCqeMore)) --l.accepts_in_flight;
    if (cqe.res < 0) {
        if (cqe.res == -ENFILE) {
            // Slot table full (or, on epoll, out of descriptors): the new
            // socket was closed already, by the kernel or the backend.
            stats_.rejected_capacity.add();
        } else if (cqe.res != -ECANCELED) {
            stats_.accept_errors.add();
        }
        arm_accepts(index);
        return;
    }
    const uint32_t slot = uint32_t(cqe.res);
    if (!accepting_) {
        reject(slot);
        return;
    }
    // The server-wide count first: a connection refused anyway makes no room.
    const bool server_full = limits_.open_conns.fetch_add(1, std::memory_order_relaxed) >= limits_.max_conns;
    const bool listener_full =
        !server_full && l.options.max_open && l.open >= l.options.max_open && !l.options.handler->make_room();
    if (server_full || listener_full) {
        limits_.open_conns.fetch_sub(1, std::memory_order_relaxed);
        stats_.accepted.add();
        stats_.rejected_capacity.add();
        stats_.closed[uint8_t(CloseReason::Rejected)].add();
        reject(slot);
        arm_accepts(index);
        return;
    }

    Connection& c = conns_.activate(slot);
    next_generation_ = (next_generation_ + 1) & kGenerationMask;
    if (next_generation_ == 0) next_generation_ = 1;
    c.generation = next_generation_;
    c.state = uint8_t(ConnState::Open);
    c.listener = uint8_t(index);
    c.last_rx_tick = now_tick();
    ++open_;
    ++l.open;
    stats_.accepted.add();
    stats_.connections.add();
    stats::ConnCounters& cs = conn_stats_[slot];
    if (cs.generation.load(std::memory_order_relaxed) != 0) stats_.slot_reuses.add();
    cs.packets_in.store(0, std::memory_order_relaxed);
    cs.packets_out.store(0, std::memory_order_relaxed);
    cs.bytes_in_kib.store(0, std::memory_order_relaxed);
    // Release: a reader that sees the new generation sees the zeroed counters.
    cs.generation.store(c.generation << 1 | 1, std::memory_order_release);
    if (l.options.max_pending) {
        c.flags |= kPending;
        ++l.pending;
    }
    arm_accepts(index);

    arm_recv(slot);
    l.options.handler->on_open(ConnRef{slot, c.generation}, *this);
}

void Worker::established(ConnRef ref) {
    Connection* c = live(ref);
    if (!c || !(c->flags & kPending)) return;
    leave_pending(*c);
}

void Worker::leave_pending(Connection& c) {
    c.flags &= ~kPending;
    --listeners_[c.listener].pending;
    arm_accepts(c.listener);
}

void Worker::reject(uint32_t slot) { io_->close_slot(slot); }

// ---- receiving ----

void Worker::arm_wake() {
    io_->poll_fd(wake_fd_, POLLIN, pack(Op::Wake, 0, 0));
}

void Worker::arm_recv(uint32_t slot) {
    Connection& c = conns_[slot];
    if (options_.recv_mode == RecvMode::PollThenRecv) {
        io_->poll_conn(slot, pack(Op::Poll, slot, c.generation));
    } else {
        io_->recv_multishot(slot, pack(Op::Recv, slot, c.generation));
    }
    c.io |= kRecvArmed;
}

void Worker::recv_once(uint32_t slot) {
    Connection& c = conns_[slot];
    // It does not wait: when the data was already taken by the previous recv
    // the answer is -EAGAIN.
    io_->recv_once(slot, pack(Op::Recv, slot, c.generation));
    c.io |= kRecvOnce;
}

void Worker::on_poll(const Completion& cqe) {
    uint32_t slot = index_of(cqe.user_data);
    Connection& c = conns_[slot];
    if (!(cqe.flags & kCqeMore)) c.io &= ~kRecvArmed;
    const bool open = c.state == uint8_t(ConnState::Open) || c.state == uint8_t(ConnState::Draining);
    if (cqe.res < 0) {
        if (cqe.res != -ECANCELED && open) begin_close(slot, CloseReason::IoError);
    } else if (open) {
        // Readable, or hung up / in error: the recv tells which. A paused
        // connection reads nothing now; resume_input() issues the recv.
        if (!(c.io & kRecvOnce) && !(c.flags & kInputPaused)) recv_once(slot);
        // A multishot poll also ends on CQ overflow.
        if (!(c.io & kRecvArmed)) {
            stats_.recv_rearms.add();
            arm_recv(slot);
        }
    }
    maybe_release(slot);
}

void Worker::on_recv(const Completion& cqe) {
    uint32_t slot = index_of(cqe.user_data);
    Connection& c = conns_[slot];
    const bool has_buffer = cqe.flags & kCqeBuffer;
    const uint16_t bid = uint16_t(cqe.flags >> kCqeBufferShift);
    if (c.state == uint8_t(ConnState::Free) || c.generation != generation_of(cqe.user_data)) {
        // Cannot happen while slots are released only after their last
        // completion; a buffer must still go back to the ring.
        if (has_buffer) io_->recycle_buffer(bid);
        return;
    }
    const bool poll_mode = options_.recv_mode == RecvMode::PollThenRecv;
    const bool more = cqe.flags & kCqeMore;
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
            deliver(slot, {io_->buffer(bid), size_t(cqe.res)});
        }
        io_->recycle_buffer(bid);
        const bool reading = (c.state == uint8_t(ConnState::Open) && !(c.flags & kInputPaused)) ||
                             c.state == uint8_t(ConnState::Draining);
        // The poll fires on new data only: read on while the socket says
        // more is waiting, also while draining: closing a socket with unread
        // data makes the kernel send a reset, which can destroy the last
        // packets we sent.
        if (poll_mode && (cqe.flags & kCqeSockNonEmpty) && reading) recv_once(slot);
    } else {
        if (has_buffer) io_->recycle_buffer(bid);
        if (cqe.res == -ENOBUFS) {
            // The provided-buffer ring ran dry and ended this multishot recv;
            // the data waits in the socket. Buffers recycled during this batch
            // are visible to the kernel before the re-armed recv runs.
            stats_.buffer_ring_empty.add();
            if (poll_mode && c.state != uint8_t(ConnState::Closing) && !(c.flags & kInputPaused)) {
                stats_.recv_rearms.add();
                recv_once(slot);
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
    // A multishot recv that ended (-ENOBUFS, a CQ overflow, or the cancel of
    // a pause that was resumed before the cancel completed) is re-armed here,
    // the one place that sees every way it can end.
    if (!poll_mode && !(c.io & kRecvArmed) && c.state == uint8_t(ConnState::Open) && !(c.flags & kInputPaused)) {
        stats_.recv_rearms.add();
        arm_recv(slot);
    }
    maybe_release(slot);
}

void Worker::deliver(uint32_t slot, std::span<const uint8_t> bytes) {
    Connection& c = conns_[slot];
    // Bytes behind a split packet or a pause join what is buffered, and are
    // parsed from there: the order of the stream is kept.
    if (c.partial || (c.flags & kInputPaused)) {
        if (hold_bytes(slot, c.partial, bytes, 0)) feed_partial(slot);
        return;
    }
    DataResult r = handler_of(c).on_data(ConnRef{slot, c.generation}, bytes);
    if (c.state != uint8_t(ConnState::Open)) return;
    if (r.consumed < bytes.size()) hold_bytes(slot, c.partial, bytes.subspan(r.consumed), r.needed);
}

// Hands the buffered bytes to the handler until it has taken every complete
// packet, the rest is an unfinished packet, or it paused the input.
void Worker::feed_partial(uint32_t slot) {
    Connection& c = conns_[slot];
    while (c.partial && !(c.flags & kInputPaused)) {
        DataResult r = handler_of(c).on_data(ConnRef{slot, c.generation}, c.partial.bytes());
        if (c.state != uint8_t(ConnState::Open)) return;
        if (r.consumed == 0) {
            c.partial.expect(r.needed);  // the packet's size, once known: growth stops there
            return;
        }
        if (r.consumed == c.partial.size()) {
            budget_.release(c.partial);
            return;
        }
        c.partial.consume(r.consumed, now_ms_);  // a new packet at the front: its own size and its own time
    }
}

bool Worker::hold(ConnRef conn, BudgetBuffer& buffer, std::span<const uint8_t> bytes, uint32_t needed) {
    const Connection* c = live(conn);
    if (!c || c->state != uint8_t(ConnState::Open)) return false;
    return hold_bytes(conn.slot, buffer, bytes, needed);
}

// Makes `buffer` of connection `slot` hold its current bytes plus `tail`,
// growing it from the budget (ReassemblyBudget::capacity_for). False when
// the connection was closed: out of memory, over its share, or the largest
// holder of a full budget.
bool Worker::hold_bytes(uint32_t slot, BudgetBuffer& buffer, std::span<const uint8_t> tail, uint32_t needed) {
    const uint64_t have = uint64_t(buffer.size()) + tail.size();
    if (budget_.share() && have > budget_.share()) {
        begin_close(slot, CloseReason::ReassemblyBudget);
        return false;
    }
    if (have > buffer.capacity() || !buffer) {
        const uint64_t want = budget_.capacity_for(buffer, have, needed);
        if (!make_room(slot, buffer, want - buffer.capacity())) return false;
        if (!budget_.grow(buffer, slot, want, now_ms_)) {
            begin_close(slot, CloseReason::IoError);  // out of memory: this connection, not the server
            return false;
        }
    }
    buffer.expect(needed);
    ReassemblyBudget::append(buffer, tail);
    return true;
}

// Room for `extra` more bytes in the budget. When it is full the largest
// holder pays, not whoever asks next: a hog announcing big packets cannot
// get honest connections with a packet split across two reads closed. The
// asker is closed (false) only when it would itself be the largest. The
// scan is O(holders), on this rare path only. Closing a connection
// releases every buffer it holds, the layers' above too (their on_close).
bool Worker::make_room(uint32_t slot, const BudgetBuffer& buffer, uint64_t extra) {
    while (!budget_.fits(extra)) {
        const uint32_t largest = budget_.largest_holder(buffer, slot, extra);
        const uint64_t used = budget_.used();
        begin_close(largest, CloseReason::ReassemblyBudget);
        if (largest == slot) return false;
        LIMAOIM_ASSERT(budget_.used() < used);  // else this would never end
        maybe_release(largest);
        if (conns_[slot].state != uint8_t(ConnState::Open)) return false;
    }
    return true;
}

// Once a tick: a split packet not whole after reassembly_timeout_ms is
// closed, however steadily its bytes trickle (the idle deadline of the
// handler sees every byte as activity), whichever layer holds it. Input the
// handler paused is not the peer's delay and is not timed.
void Worker::close_stalled_partials() {
    if (options_.reassembly_timeout_ms == 0 || budget_.holders() == 0 || stall_checked_tick_ == now_tick()) return;
    stall_checked_tick_ = now_tick();
    // Backwards: a release moves the last holder into the released one's place.
    for (size_t i = budget_.holders(); i-- > 0;) {
        if (i >= budget_.holders()) continue;  // a close released several
        const BudgetBuffer& held = budget_.holder(i);
        const uint32_t slot = held.owner();
        if (conns_[slot].flags & kInputPaused) continue;
        if (now_ms_ - held.started_ms() < options_.reassembly_timeout_ms) continue;
        begin_close(slot, CloseReason::ReassemblyTimeout);
        maybe_release(slot);
    }
}

// ---- pausing input ----

void Worker::pause_input(ConnRef ref) {
    Connection* c = live(ref);
    if (!c || c->state != uint8_t(ConnState::Open) || (c->flags & kInputPaused)) return;
    c->flags |= kInputPaused;
    stats_.input_pauses.add();
    // A multishot recv would go on filling the buffer: stop it. (The poll of
    // PollThenRecv may stay: its wake-ups are ignored while paused.)
    if (options_.recv_mode == RecvMode::Multishot && (c->io & kRecvArmed))
        io_->cancel(pack(Op::Recv, ref.slot, c->generation));
}

void Worker::resume_input(ConnRef ref) {
    Connection* c = live(ref);
    if (!c || !(c->flags & kInputPaused)) return;
    c->flags &= ~kInputPaused;
    // Handed back after the current step of the loop, never from inside this
    // call: the caller may be in the middle of on_data for another packet.
    if (!(c->flags & kResumeQueued)) {
        c->flags |= kResumeQueued;
        resumed_.push_back(ref);
    }
}

void Worker::deliver_resumed() {
    // A handler may resume (or pause and resume) connections while their
    // input is handed back: those wait for the next round, so one round is
    // bounded by what was resumed before it.
    while (!resumed_.empty()) {
        resumed_work_.swap(resumed_);
        for (ConnRef ref : resumed_work_) {
            Connection* c = live(ref);
            if (!c) continue;
            c->flags &= ~kResumeQueued;
            if (c->state != uint8_t(ConnState::Open) || (c->flags & kInputPaused)) continue;
            c->partial.restart(now_ms_);  // the peer could not send while paused
            feed_partial(ref.slot);
            if (c->state == uint8_t(ConnState::Open) && !(c->flags & kInputPaused)) continue_reading(ref.slot);
            maybe_release(ref.slot);  // closed while handing back, with nothing in flight
        }
        resumed_work_.clear();
    }
}

// After a pause nothing tells us whether data arrived meanwhile (the poll's
// wake-ups were ignored, a multishot recv was cancelled): look.
void Worker::continue_reading(uint32_t slot) {
    Connection& c = conns_[slot];
    if (options_.recv_mode == RecvMode::PollThenRecv) {
        if (!(c.io & kRecvOnce)) recv_once(slot);
    } else if (!(c.io & kRecvArmed)) {
        arm_recv(slot);
    }
}

// ---- sending ----

Worker::Connection* Worker::live(ConnRef ref) {
    // Every Transport call comes through here: the connection table is the
    // loop thread's alone (a handler on another thread must post an envelope).
    LIMAOIM_ASSERT(on_loop_thread());
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
        cut_slow_consumer(ref);
        return {};
    }
    return reserve_room(ref, c, n);
}

void Worker::cut_slow_consumer(ConnRef ref) {
    stats_.slow_consumer_kicks.add();
    begin_close(ref.slot, CloseReason::SlowConsumer);
    maybe_release(ref.slot);
}

std::span<uint8_t> Worker::reserve_room(ConnRef ref, Connection* c, size_t n) {
    SendChunk* tail = c->send_tail;
    if (!tail || tail->room() < n) {
        SendChunk* fresh = chunks_.get();
        if (!fresh) {
            begin_close(ref.slot, CloseReason::IoError);  // out of memory: this connection, not the server
            maybe_release(ref.slot);
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

// A packet larger than the cap (a 1 MiB message) must still reach a reader
// that keeps up: the cap is checked once, against what is queued before it.
// So a session holds at most send_cap + one packet.
bool Worker::send(ConnRef ref, std::span<const uint8_t> bytes) {
    Connection* c = live(ref);
    if (!c || c->state != uint8_t(ConnState::Open)) return false;
    if (c->queued + std::min(bytes.size(), SendChunk::kCapacity) > options_.send_cap) {
        cut_slow_consumer(ref);
        return false;
    }
    while (!bytes.empty()) {
        size_t n = std::min(bytes.size(), SendChunk::kCapacity);
        std::span<uint8_t> room = reserve_room(ref, live(ref), n);
        if (room.empty()) return false;
        std::memcpy(room.data(), bytes.data(), n);
        commit(ref, n);
        bytes = bytes.subspan(n);
    }
    return true;
}

void Worker::submit_send(uint32_t slot) {
    Connection& c = conns_[slot];
    SendChunk* head = c.send_head;
    io_->send(slot, head->data + head->begin, head->end - head->begin, pack(Op::Send, slot, c.generation));
    c.io |= kSendInFlight;
}

void Worker::on_send(const Completion& cqe) {
    uint32_t slot = index_of(cqe.user_data);
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
        begin_close(slot, CloseReason::PeerClosed);  // not counted again: on_close already ran at close()
        maybe_release(slot);
    }
}

// ---- closing ----

void Worker::close(ConnRef ref, CloseReason reason, Linger linger) {
    Connection* c = live(ref);
    if (!c || c->state != uint8_t(ConnState::Open)) return;
    if (linger == Linger::Flush && c->queued > 0) {
        c->state = uint8_t(ConnState::Draining);
        c->flags &= ~kInputPaused;  // read (and discard) on, so the close is a FIN, not a reset
        budget_.release(c->partial);
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
    Connection& c = conns_[ref.slot];
    if (c.flags & kPending) leave_pending(c);
    stats_.closed[uint8_t(reason)].add();
    handler_of(c).on_close(ref, reason);
}

void Worker::begin_close(uint32_t slot, CloseReason reason) {
    Connection& c = conns_[slot];
    if (c.state == uint8_t(ConnState::Closing) || c.state == uint8_t(ConnState::Free)) return;
    const bool notify = c.state == uint8_t(ConnState::Open);
    c.state = uint8_t(ConnState::Closing);
    wheel_.cancel(slot);
    budget_.release(c.partial);
    if (notify) notify_close(ConnRef{slot, c.generation}, reason);
    // Cancel what is in flight: the armed recv (or poll), a one-shot recv, a
    // send stuck on a full socket. The slot is released when their last
    // completions have come back. Cancelling by exact user_data is a hash
    // lookup in the kernel; cancelling by descriptor scans every pending
    // request, which made closing n connections cost O(n^2).
    const bool poll_mode = options_.recv_mode == RecvMode::PollThenRecv;
    if (c.io & kRecvArmed) io_->cancel(pack(poll_mode ? Op::Poll : Op::Recv, slot, c.generation));
    if (c.io & kRecvOnce) io_->cancel(pack(Op::Recv, slot, c.generation));
    if (c.io & kSendInFlight) io_->cancel(pack(Op::Send, slot, c.generation));
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
    io_->close_slot(slot);
    conn_stats_[slot].generation.store(c.generation << 1, std::memory_order_relaxed);
    c.state = uint8_t(ConnState::Free);
    c.generation = 0;
    --listeners_[c.listener].open;
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
        handler_of(c).on_deadline(ConnRef{slot, c.generation});
    } else if (c.state == uint8_t(ConnState::Draining)) {
        begin_close(slot, CloseReason::PeerClosed);  // the peer never took its last bytes; counted at close()
        maybe_release(slot);
    }
}

// ---- loop services ----

TimerId Worker::add_timer(uint32_t ms_from_now, std::function<void()> callback, uint32_t every_ms) {
    LIMAOIM_ASSERT(on_loop_thread());
    return timers_.add(now_ms_ + ms_from_now, std::move(callback), every_ms);
}

void Worker::cancel_timer(TimerId id) {
    LIMAOIM_ASSERT(on_loop_thread());
    timers_.cancel(id);
}

Worker::WatchId Worker::watch_fd(int fd, uint32_t poll_events, std::function<void(int32_t)> callback) {
    LIMAOIM_ASSERT(on_loop_thread());
    const uint32_t id = watches_.acquire();
    Watch& w = watches_[id];
    w.callback = std::move(callback);
    w.fd = fd;
    w.events = poll_events;
    w.serial = (w.serial + 1) & kGenerationMask;
    w.active = true;
    arm_watch(id);
    return watches_.handle(id, w);
}

void Worker::arm_watch(uint32_t id) {
    Watch& w = watches_[id];
    io_->poll_fd(w.fd, w.events, pack(Op::Watch, id, w.serial));
    w.armed = true;
}

void Worker::unwatch_fd(WatchId watch) {
    LIMAOIM_ASSERT(on_loop_thread());
    Watch* watched = watches_.live(watch);
    if (!watched) return;
    Watch& w = *watched;
    const uint32_t id = uint32_t(watch);
    w.active = false;
    w.callback = nullptr;
    // The id is reused only after the poll's last completion has come back.
    if (w.armed) {
        io_->cancel(pack(Op::Watch, id, w.serial));
    } else {
        watches_.release(id);
    }
}

void Worker::on_watch(const Completion& cqe) {
    const uint32_t id = index_of(cqe.user_data);
    Watch& w = watches_[id];
    const bool more = cqe.flags & kCqeMore;
    if (!more) w.armed = false;
    if (!w.active || w.serial != generation_of(cqe.user_data)) {
        if (!more && !w.active) watches_.release(id);
        return;
    }
    if (cqe.res < 0) {
        // The poll failed (a closed descriptor) or was cancelled by someone
        // else than unwatch_fd(): the watch is over, and its owner is told.
        std::function<void(int32_t)> callback = std::move(w.callback);
        w.active = false;
        if (!more) watches_.release(id);
        callback(cqe.res);
        return;
    }
    // A multishot poll ends on CQ overflow: re-arm before the callback, which
    // may unwatch.
    if (!more) arm_watch(id);
    // Moved out while it runs: it may unwatch itself, which must not destroy
    // the function being executed; it comes back if the watch still stands.
    const uint32_t serial = w.serial;
    std::function<void(int32_t)> callback = std::move(w.callback);
    callback(cqe.res);
    Watch& after = watches_[id];
    if (after.active && after.serial == serial) after.callback = std::move(callback);
}

void Worker::add_iteration_hook(std::function<void()> hook) { iteration_hooks_.push_back(std::move(hook)); }

// ---- envelopes ----

// What an inbox push means for the poster: a refusal is counted (`count`
// envelopes), the first envelope into an empty inbox rings the doorbell.
bool Worker::pushed(Inbox::Push result, size_t count) {
    if (result == Inbox::Push::Full) {
        stats_.envelopes_refused.add(count);
        return false;
    }
    if (result == Inbox::Push::QueuedRing) ring_doorbell();
    return true;
}

bool Worker::post(Envelope&& envelope) { return pushed(inbox_.push_one(std::move(envelope)), 1); }

bool Worker::post_batch(std::vector<Envelope>& batch) {
    if (batch.empty()) return true;
    const size_t count = batch.size();
    return pushed(inbox_.push(batch), count);
}

bool Worker::post_waiting(std::vector<Envelope>& batch, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    size_t queued = 0;
    while (queued < batch.size()) {
        const size_t n = std::min(batch.size() - queued, std::max<size_t>(inbox_.capacity(), 1));
        const bool whole = queued == 0 && n == batch.size();
        const Inbox::Push pushed = whole ? inbox_.push(batch) : inbox_.push_range(std::span(batch).subspan(queued, n));
        if (pushed == Inbox::Push::QueuedRing) ring_doorbell();
        if (pushed == Inbox::Push::Full) {
            if (inbox_.wait_for_room(n, deadline)) continue;
            batch.erase(batch.begin(), batch.begin() + ptrdiff_t(queued));
            return false;
        }
        if (whole) return true;  // push() emptied it
        queued += n;
    }
    batch.clear();
    return true;
}

void Worker::set_envelope_handler(uint8_t family, EnvelopeHandler* handler) {
    if (family >= kEnvelopeFamilies) fatal("envelope family out of range", EINVAL);
    envelope_handlers_[family] = handler;
}

bool Worker::send_envelope(uint32_t target, Envelope&& envelope) {
    LIMAOIM_ASSERT(on_loop_thread());
    std::vector<Envelope>& outbox = outboxes_[target];
    if (outbox.size() + peers_[target]->inbox_.size() >= peers_[target]->inbox_.capacity()) {
        stats_.envelopes_refused.add();
        return false;
    }
    if (outbox.empty()) outbox_targets_.push_back(target);
    outbox.push_back(std::move(envelope));
    stats_.envelopes_out.add();
    return true;
}

void Worker::flush_outboxes() {
    size_t kept = 0;
    for (uint32_t target : outbox_targets_) {
        Worker& peer = *peers_[target];
        switch (peer.inbox_.push(outboxes_[target])) {
        case Inbox::Push::QueuedRing:
            if (&peer == this) {
                run_again_ = true;  // our own inbox: drained at the next iteration, no syscall
            } else {
                peer.ring_doorbell();
            }
            break;
        case Inbox::Push::Queued:
            break;
        case Inbox::Push::Full:
            // Others filled it since send_envelope() looked: try again next
            // iteration; the batch stays bounded by that check.
            outbox_targets_[kept++] = target;
            run_again_ = true;
            break;
        }
    }
    outbox_targets_.resize(kept);
}

void Worker::ring_doorbell() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

void Worker::on_wake() {
    uint64_t count;
    // Read before taking: a push after the take rings again.
    [[maybe_unused]] ssize_t n = read(wake_fd_, &count, sizeof(count));
    handle_envelopes();
}

// At most kEnvelopesPerIteration per loop iteration: a burst (a message to a
// big group is an envelope per receiving session) is spread over iterations,
// with the connections' completions handled in between, so the other
// sessions' PINGs are not held up behind it.
void Worker::handle_envelopes() {
    if (inbox_next_ == inbox_work_.size()) {
        inbox_work_.clear();
        inbox_next_ = 0;
        inbox_.take(inbox_work_);
        stats_.envelopes_in.add(inbox_work_.size());
    }
    const size_t end = std::min(inbox_work_.size(), inbox_next_ + envelopes_left_);
    envelopes_left_ -= end - inbox_next_;
    for (; inbox_next_ < end; ++inbox_next_) {
        Envelope& e = inbox_work_[inbox_next_];
        EnvelopeHandler* handler = envelope_handlers_[envelope_family(e.kind)];
        if (!handler) fatal("envelope of a family without a handler", EINVAL);
        handler->on_envelope(e);
        e.payload = Payload();  // the last holder frees it now, not at the next take
    }
    if (inbox_next_ < inbox_work_.size()) run_again_ = true;
}

// ---- the loop ----

// Once per iteration: the clock, and the loop's heartbeat for GET /health
// (one relaxed store to this worker's own stats block).
void Worker::update_clock() {
    now_ms_ = uint64_t(clock::steady_ms());
    stats_.loop_heartbeat_ms.set(now_ms_);
}

uint64_t Worker::wait_timeout_ms() {
    // Completions reaped outside the handling loop (a full SQ in a hook or a
    // timer) and input handed back must not wait for the next tick.
    if (run_again_ || !resumed_.empty() || !completions_.empty()) return 0;
    const uint64_t next_tick_ms = (now_tick() + 1) * uint64_t(kTickMs);
    const uint64_t next_ms = std::min(next_tick_ms, timers_.next_due());
    return next_ms > now_ms_ ? next_ms - now_ms_ : 0;
}

void Worker::begin_stop() {
    stopping_ = true;
    stop_at_ms_ = now_ms_ + stop_deadline_ms_.load();
    accepting_ = false;
    // Leave the port at once: a listener still in the SO_REUSEPORT group
    // would take its share of new connections into a backlog nobody
    // accepts. The socket goes when the cancelled accept lets go of it.
    for (uint32_t i = 0; i < listeners_.size(); ++i) {
        Listener& l = listeners_[i];
        if (l.accepts_in_flight) io_->cancel_accepts(i);
        ::close(l.fd);
        l.fd = -1;
    }
    // Each handler once, however many listeners it serves.
    std::vector<Handler*> told;
    for (Listener& l : listeners_) {
        if (std::find(told.begin(), told.end(), l.options.handler) != told.end()) continue;
        told.push_back(l.options.handler);
        l.options.handler->on_shutdown();
    }
}

void Worker::run() {
    update_clock();
    accepting_ = true;
    for (uint32_t i = 0; i < listeners_.size(); ++i) arm_accepts(i);
    arm_wake();

    for (;;) {
        if (stop_requested_.load(std::memory_order_acquire) && !stopping_) begin_stop();
        if (stopping_ && (open_ == 0 || now_ms_ >= stop_at_ms_)) break;

        const uint64_t wait_ms = wait_timeout_ms();
        run_again_ = false;
        // Hands what was asked to the kernel; what completed is appended to completions_.
        io_->wait(wait_ms);
        update_clock();

        // Handlers may append to completions_ (a full SQ on -EBUSY): by index,
        // and each completion copied before it is handled.
        envelopes_left_ = kEnvelopesPerIteration;
        for (size_t i = 0; i < completions_.size(); ++i) {
            const Completion cqe = completions_[i];
            handle_cqe(cqe);
        }
        completions_.clear();
        // Our own envelopes (send_envelope to this worker) ring no doorbell;
        // a burst may have left some over from the last iteration.
        if (inbox_.size() || inbox_next_ < inbox_work_.size()) handle_envelopes();
        timers_.run_due(now_ms_);
        wheel_.advance(now_tick(), [this](uint32_t slot) { on_timer(slot); });
        close_stalled_partials();
        for (auto& hook : iteration_hooks_) hook();
        deliver_resumed();
        flush_outboxes();
        io_->publish_buffers();
    }
}

void Worker::request_stop(uint32_t deadline_ms) {
    stop_deadline_ms_.store(deadline_ms);
    stop_requested_.store(true, std::memory_order_release);
    ring_doorbell();
}

void Worker::handle_cqe(const Completion& cqe) {
    switch (Op(op_of(cqe.user_data))) {
    case Op::Accept: on_accept(cqe); break;
    case Op::Recv: on_recv(cqe); break;
    case Op::Poll: on_poll(cqe); break;
    case Op::Send: on_send(cqe); break;
    case Op::Watch: on_watch(cqe); break;
    case Op::Wake:
        on_wake();
        // A multishot poll ends on CQ overflow; it must be re-armed.
        if (!(cqe.flags & kCqeMore)) arm_wake();
        break;
    case Op::Cancel:
    case Op::Close:
        break;  // results of teardown steps; nothing waits on them
    }
}

}  // namespace limaoim::net
