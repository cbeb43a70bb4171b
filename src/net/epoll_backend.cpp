// The epoll backend: the worker's completions produced from readiness (a
// proactor emulated on a reactor, as Boost.Asio does on epoll), for hosts
// where io_uring is forbidden (io_backend.h).
//
//   - accept: the listener is registered level-triggered; when readable,
//     accept4 (non-blocking, close-on-exec) puts each new socket in a free
//     slot and completes with the slot, as a direct-descriptor accept does;
//   - a connection's multishot poll is an edge-triggered EPOLLIN
//     registration (the worker issues one recv per wake-up and reads on while
//     kCqeSockNonEmpty says so); a multishot recv a level-triggered one that
//     reads one buffer per readiness;
//   - recv_once and send are done at once; a send that finds the socket full
//     waits for EPOLLOUT and completes then;
//   - the results of operations done at once are handed over at the next
//     wait(), never inside the call: the worker sees them, like a ring's, as
//     completions of its next iteration.
// Per slot the backend keeps 4 bytes (the descriptor and what is registered
// for it); a send waiting for room costs an entry in a map while it waits.
#include "io_backend.h"

#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

namespace limaoim::net::detail {
namespace {

constexpr int kEventsPerWait = 1024;
constexpr uint32_t kAcceptsPerWakeup = 64;  // a multishot accept's batch before other sockets get their turn
constexpr uint64_t kRestMs = 100;  // a listener's rest when no descriptor is left to shed a connection with

class EpollBackend final : public IoBackend {
public:
    EpollBackend(const WorkerOptions& options, std::vector<Completion>& completions)
        : IoBackend(options, completions) {}
    ~EpollBackend() override;

    bool init(std::string& error);
    IoBackendKind kind() const override { return IoBackendKind::Epoll; }

    void accept_multishot(uint32_t listener, int fd) override;
    void accept_once(uint32_t listener, int fd) override;
    void cancel_accepts(uint32_t listener) override;
    void poll_conn(uint32_t slot, uint64_t user_data) override { arm_input(slot, user_data, false); }
    void recv_multishot(uint32_t slot, uint64_t user_data) override { arm_input(slot, user_data, true); }
    void recv_once(uint32_t slot, uint64_t user_data) override { read_into_buffer(slot, user_data, false); }
    void send(uint32_t slot, const uint8_t* data, uint32_t len, uint64_t user_data) override;
    void cancel(uint64_t user_data) override;
    void close_slot(uint32_t slot) override;
    void poll_fd(int fd, uint32_t events, uint64_t user_data) override;
    void wait(uint64_t timeout_ms) override;
    void recycle_buffer(uint16_t bid) override { free_buffers_.push_back(bid); }

private:
    // A slot's 4 bytes: the descriptor (or, while free, the next free slot)
    // in the low 24 bits, what is registered in the high ones.
    static constexpr uint32_t kFdMask = (1u << 24) - 1;
    static constexpr uint32_t kFree = 1u << 24;
    static constexpr uint32_t kInputArmed = 1u << 25;    // a poll or a multishot recv
    static constexpr uint32_t kRecvMultishot = 1u << 26;  // ... the latter: level-triggered
    static constexpr uint32_t kSendWaiting = 1u << 27;   // an entry in sends_
    static constexpr uint32_t kRegistered = 1u << 28;    // in the epoll set
    // The peer's FIN (or an error) was reported: an edge that came with the
    // last bytes does not come again, so a short read says more is waiting.
    static constexpr uint32_t kPeerDone = 1u << 29;
    static constexpr uint32_t kNoSlot = kFdMask;

    struct WaitingSend {
        uint64_t user_data;
        const uint8_t* data;
        uint32_t len;
    };
    struct Listener {
        int fd = -1;
        bool multishot = false;
        bool registered = false;
        uint32_t once = 0;  // one-shot accepts asked for and not completed
        // Out of descriptors with no spare to shed a connection with: the
        // listener leaves the set until then (steady clock, ms), instead of
        // being reported on every wait.
        uint64_t resting_until_ms = 0;
    };
    struct FdPoll {
        int fd;      // the descriptor in the epoll set
        bool owned;  // a dup() of the caller's, which was in the set already
    };

    void post(uint64_t user_data, int32_t res, uint32_t flags) { ready_.push_back(Completion{user_data, res, flags}); }
    int fd_of(uint32_t slot) const { return int(slots_[slot] & kFdMask); }
    uint32_t take_slot(int fd);
    void arm_input(uint32_t slot, uint64_t user_data, bool multishot_recv);
    // Registers the slot's descriptor for what it waits for now; `user_data`
    // is any of the connection's requests (it carries the generation).
    void update_interest(uint32_t slot, uint64_t user_data);
    void read_into_buffer(uint32_t slot, uint64_t user_data, bool multishot);
    void try_waiting_send(uint32_t slot);
    void on_listener(uint32_t index);
    void on_connection(uint64_t data, uint32_t events);
    void set_listener_interest(uint32_t index, bool wanted);
    int accept_one(int listener_fd);

    int epoll_fd_ = -1;
    int spare_fd_ = -1;  // given up for a moment when the process is out of descriptors (accept_one)
    std::vector<uint32_t> slots_;
    uint32_t free_head_ = kNoSlot;
    std::vector<uint16_t> free_buffers_;
    std::vector<Completion> ready_;  // operations done since the last wait()
    std::vector<epoll_event> events_;
    std::unordered_map<uint32_t, WaitingSend> sends_;  // by slot: sends waiting for EPOLLOUT
    std::unordered_map<uint64_t, FdPoll> fd_polls_;    // by user_data: the wake eventfd, fd watches
    std::array<Listener, Worker::kMaxListeners> listeners_{};
};

EpollBackend::~EpollBackend() {
    for (uint32_t state : slots_)
        if (!(state & kFree)) ::close(int(state & kFdMask));
    for (auto& [user_data, poll] : fd_polls_)
        if (poll.owned) ::close(poll.fd);
    if (spare_fd_ >= 0) ::close(spare_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

bool EpollBackend::init(std::string& error) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
        error = std::string("epoll_create1: ") + strerror(errno);
        return false;
    }
    spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!map_buffers(error)) return false;
    free_buffers_.reserve(options_.recv_buffers);
    for (uint32_t bid = options_.recv_buffers; bid-- > 0;) free_buffers_.push_back(uint16_t(bid));
    // The slots' free list is threaded through the slots themselves, lowest first.
    slots_.resize(options_.slots);
    for (uint32_t slot = 0; slot < options_.slots; ++slot)
        slots_[slot] = kFree | (slot + 1 < options_.slots ? slot + 1 : kNoSlot);
    free_head_ = options_.slots ? 0 : kNoSlot;
    events_.resize(kEventsPerWait);
    ready_.reserve(1024);
    return true;
}

uint32_t EpollBackend::take_slot(int fd) {
    if (free_head_ == kNoSlot || uint32_t(fd) > kFdMask - 1) return kNoSlot;
    const uint32_t slot = free_head_;
    free_head_ = slots_[slot] & kFdMask;
    slots_[slot] = uint32_t(fd);
    return slot;
}

void EpollBackend::close_slot(uint32_t slot) {
    // Closing the descriptor also takes it out of the epoll set.
    ::close(fd_of(slot));
    sends_.erase(slot);
    slots_[slot] = kFree | free_head_;
    free_head_ = slot;
}

// ---- accepting ----

void EpollBackend::set_listener_interest(uint32_t index, bool wanted) {
    Listener& l = listeners_[index];
    if (wanted == l.registered) return;
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: a backlog left over is reported again
    ev.data.u64 = pack(Op::Accept, index, 0);
    if (epoll_ctl(epoll_fd_, wanted ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, l.fd, &ev) < 0)
        fatal("epoll_ctl (listener)", errno);
    l.registered = wanted;
}

void EpollBackend::accept_multishot(uint32_t index, int fd) {
    Listener& l = listeners_[index];
    l.fd = fd;
    l.multishot = true;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    set_listener_interest(index, true);
}

void EpollBackend::accept_once(uint32_t index, int fd) {
    Listener& l = listeners_[index];
    if (l.fd != fd) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    l.fd = fd;
    ++l.once;
    set_listener_interest(index, true);
}

void EpollBackend::cancel_accepts(uint32_t index) {
    Listener& l = listeners_[index];
    if (l.fd < 0) return;
    set_listener_interest(index, false);
    const uint64_t user_data = pack(Op::Accept, index, 0);
    if (l.multishot) post(user_data, -ECANCELED, 0);
    for (; l.once; --l.once) post(user_data, -ECANCELED, 0);
    l = Listener{};
}

// A new connection's descriptor, or -errno. Out of descriptors (EMFILE),
// the connection would stay in the backlog and the level-triggered listener
// would report it on every wait: the spare descriptor is given up to accept
// it and close it at once, as libev and nginx do.
int EpollBackend::accept_one(int listener_fd) {
    for (;;) {
        int fd = accept4(listener_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) return fd;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE) {
            // The spare may be gone: another worker's accept can take the
            // number this one freed, and the reopen then fails too.
            if (spare_fd_ < 0) spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (spare_fd_ < 0) return -EMFILE;  // nothing to shed with: rest the listener
            ::close(spare_fd_);
            fd = accept4(listener_fd, nullptr, nullptr, SOCK_CLOEXEC);
            const bool shed = fd >= 0;
            if (shed) ::close(fd);
            spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
            return shed ? -ENFILE : -EMFILE;
        }
        return -errno;
    }
}

void EpollBackend::on_listener(uint32_t index) {
    Listener& l = listeners_[index];
    const uint64_t user_data = pack(Op::Accept, index, 0);
    uint32_t budget = l.multishot ? kAcceptsPerWakeup : l.once;
    while (budget-- > 0) {
        const int fd = accept_one(l.fd);
        if (fd == -EAGAIN) break;
        const uint32_t flags = l.multishot ? kCqeMore : 0;
        if (!l.multishot) --l.once;
        if (fd == -EMFILE) {
            post(user_data, -ENFILE, flags);  // counted as refused for capacity, as a shed one is
            set_listener_interest(index, false);
            l.resting_until_ms = uint64_t(clock::steady_ms()) + kRestMs;
            return;
        }
        if (fd < 0) {
            post(user_data, fd, flags);
            if (fd == -ENFILE) break;
            continue;
        }
        const uint32_t slot = take_slot(fd);
        if (slot == kNoSlot) {
            // Every slot taken: closed at once, as the kernel does when a
            // ring's fixed-file table is full.
            ::close(fd);
            post(user_data, -ENFILE, flags);
            continue;
        }
        post(user_data, int32_t(slot), flags);
    }
    if (!l.multishot && l.once == 0) set_listener_interest(index, false);
}

// ---- connections ----

void EpollBackend::update_interest(uint32_t slot, uint64_t user_data) {
    uint32_t& state = slots_[slot];
    uint32_t events = 0;
    if (state & kInputArmed) events |= EPOLLIN | EPOLLRDHUP;
    if (state & kSendWaiting) events |= EPOLLOUT;
    if (events && !(state & kRecvMultishot)) events |= EPOLLET;
    const int fd = fd_of(slot);
    if (!events) {
        if (state & kRegistered) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        state &= ~kRegistered;
        return;
    }
    epoll_event ev{};
    ev.events = events;
    // The input request's user_data, rebuilt from any request's generation.
    ev.data.u64 = pack((state & kRecvMultishot) ? Op::Recv : Op::Poll, slot, generation_of(user_data));
    if (epoll_ctl(epoll_fd_, (state & kRegistered) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) < 0)
        fatal("epoll_ctl (connection)", errno);
    state |= kRegistered;
}

void EpollBackend::arm_input(uint32_t slot, uint64_t user_data, bool multishot_recv) {
    uint32_t& state = slots_[slot];
    state |= kInputArmed;
    if (multishot_recv) {
        state |= kRecvMultishot;
    } else {
        state &= ~kRecvMultishot;
    }
    update_interest(slot, user_data);
}

void EpollBackend::read_into_buffer(uint32_t slot, uint64_t user_data, bool multishot) {
    const uint32_t more = multishot ? kCqeMore : 0;
    if (free_buffers_.empty()) {
        // As a ring does when its provided buffers run out; a multishot
        // recv ends, and the worker asks again once buffers came back.
        if (multishot) {
            slots_[slot] &= ~kInputArmed;
            update_interest(slot, user_data);
        }
        post(user_data, -ENOBUFS, 0);
        return;
    }
    const uint16_t bid = free_buffers_.back();
    const ssize_t n = ::recv(fd_of(slot), buffer(bid), buffer_size_, MSG_DONTWAIT);
    if (n > 0) {
        free_buffers_.pop_back();
        // A full buffer: more is likely waiting, which an edge-triggered
        // registration would not report again; so is the end of the stream
        // after bytes that came with it (the worker reads on and gets 0).
        const bool more_waits = size_t(n) == buffer_size_ || (slots_[slot] & kPeerDone);
        const uint32_t nonempty = more_waits ? kCqeSockNonEmpty : 0;
        post(user_data, int32_t(n), kCqeBuffer | more | nonempty | uint32_t(bid) << kCqeBufferShift);
        return;
    }
    const int32_t res = n == 0 ? 0 : -errno;
    if (multishot && res == -EAGAIN) return;  // readiness that another read took
    if (multishot) {
        slots_[slot] &= ~kInputArmed;  // the end of the stream, or an error, ends a multishot recv
        update_interest(slot, user_data);
    }
    post(user_data, res, 0);
}

void EpollBackend::send(uint32_t slot, const uint8_t* data, uint32_t len, uint64_t user_data) {
    const ssize_t n = ::send(fd_of(slot), data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
        post(user_data, int32_t(n), 0);
    } else if (errno == EAGAIN) {
        sends_[slot] = WaitingSend{user_data, data, len};
        slots_[slot] |= kSendWaiting;
        update_interest(slot, user_data);
    } else {
        post(user_data, -errno, 0);
    }
}

void EpollBackend::try_waiting_send(uint32_t slot) {
    auto it = sends_.find(slot);
    const WaitingSend waiting = it->second;
    const ssize_t n = ::send(fd_of(slot), waiting.data, waiting.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) return;  // still full: the next EPOLLOUT
    post(waiting.user_data, n >= 0 ? int32_t(n) : -errno, 0);
    sends_.erase(it);
    slots_[slot] &= ~kSendWaiting;
    update_interest(slot, waiting.user_data);
}

void EpollBackend::on_connection(uint64_t data, uint32_t events) {
    const uint32_t slot = index_of(data);
    const uint32_t state = slots_[slot];
    if (state & kFree) return;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) slots_[slot] |= kPeerDone;
    if ((state & kSendWaiting) && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) try_waiting_send(slot);
    if (!(slots_[slot] & kInputArmed) || !(events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) return;
    if (state & kRecvMultishot) {
        read_into_buffer(slot, data, true);
    } else {
        post(data, int32_t(events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)), kCqeMore);
    }
}

void EpollBackend::cancel(uint64_t user_data) {
    const uint32_t index = index_of(user_data);
    switch (op_of(user_data)) {
    case Op::Poll:
    case Op::Recv: {
        // A one-shot recv is done already; only an armed input request waits.
        uint32_t& state = slots_[index];
        if ((state & kFree) || !(state & kInputArmed)) return;
        const bool multishot = state & kRecvMultishot;
        if ((op_of(user_data) == Op::Recv) != multishot) return;
        state &= ~kInputArmed;
        update_interest(index, user_data);
        post(user_data, -ECANCELED, 0);
        return;
    }
    case Op::Send: {
        auto it = sends_.find(index);
        if (it == sends_.end() || it->second.user_data != user_data) return;
        sends_.erase(it);
        slots_[index] &= ~kSendWaiting;
        update_interest(index, user_data);
        post(user_data, -ECANCELED, 0);
        return;
    }
    case Op::Watch:
    case Op::Wake: {
        auto it = fd_polls_.find(user_data);
        if (it == fd_polls_.end()) return;
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second.fd, nullptr);
        if (it->second.owned) ::close(it->second.fd);
        fd_polls_.erase(it);
        post(user_data, -ECANCELED, 0);
        return;
    }
    default:
        return;
    }
}

// ---- descriptors of others ----

void EpollBackend::poll_fd(int fd, uint32_t events, uint64_t user_data) {
    epoll_event ev{};
    // Edge-triggered: like a multishot poll, one completion per wake-up.
    ev.events = events | EPOLLET;
    ev.data.u64 = user_data;
    FdPoll poll{fd, false};
    int rc = epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    if (rc < 0 && errno == EEXIST) {
        // Watched twice (a ring polls a descriptor as often as asked): an
        // epoll set holds a descriptor once, so the second watch gets a dup.
        poll = FdPoll{fcntl(fd, F_DUPFD_CLOEXEC, 0), true};
        rc = poll.fd < 0 ? -1 : epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, poll.fd, &ev);
    }
    if (rc < 0) {
        if (poll.owned && poll.fd >= 0) ::close(poll.fd);
        post(user_data, -errno, 0);
        return;
    }
    fd_polls_[user_data] = poll;
}

// ---- waiting ----

void EpollBackend::wait(uint64_t timeout_ms) {
    // Resting listeners come back when their time is up (or wake us then).
    for (uint32_t i = 0; i < listeners_.size(); ++i) {
        Listener& l = listeners_[i];
        if (!l.resting_until_ms) continue;
        const uint64_t now = uint64_t(clock::steady_ms());
        if (now >= l.resting_until_ms) {
            l.resting_until_ms = 0;
            if (l.fd >= 0 && (l.multishot || l.once)) set_listener_interest(i, true);
        } else {
            timeout_ms = std::min<uint64_t>(timeout_ms, l.resting_until_ms - now);
        }
    }
    // Operations done since the last wait have completed: do not sleep on them.
    const int timeout = ready_.empty() ? int(std::min<uint64_t>(timeout_ms, INT_MAX)) : 0;
    const int n = epoll_wait(epoll_fd_, events_.data(), int(events_.size()), timeout);
    if (n < 0 && errno != EINTR) fatal("epoll_wait", errno);
    for (int i = 0; i < n; ++i) {
        const uint64_t data = events_[i].data.u64;
        switch (op_of(data)) {
        case Op::Accept: on_listener(index_of(data)); break;
        case Op::Poll:
        case Op::Recv: on_connection(data, events_[i].events); break;
        default:
            // The wake eventfd or an fd watch, unless cancelled in this batch.
            if (fd_polls_.count(data)) post(data, int32_t(events_[i].events & ~uint32_t(EPOLLET)), kCqeMore);
            break;
        }
    }
    completions_.insert(completions_.end(), ready_.begin(), ready_.end());
    ready_.clear();
}

}  // namespace

std::unique_ptr<IoBackend> make_epoll_backend(const WorkerOptions& options, std::vector<Completion>& completions,
                                              std::string& error) {
    auto backend = std::make_unique<EpollBackend>(options, completions);
    if (!backend->init(error)) return nullptr;
    return backend;
}

}  // namespace limaoim::net::detail
