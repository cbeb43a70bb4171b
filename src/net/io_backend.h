// The seam between the worker and the kernel interface that does its I/O
// (internal to src/net/; nothing above the loop sees it).
//
// The worker is written as a proactor: it asks for operations (accept, recv,
// send, poll, cancel, close) and handles their completions, each tagged with
// the user_data it gave. Two backends produce those completions, in the way
// Redis' ae keeps one API over epoll, kqueue and select:
//   - io_uring (ring_backend.cpp): the operations are SQEs, connections are
//     direct descriptors in the ring's fixed-file table, receive buffers come
//     from a provided-buffer ring;
//   - epoll (epoll_backend.cpp), for hosts where io_uring is forbidden (a
//     container's seccomp profile, sysctl kernel.io_uring_disabled): a
//     proactor emulated on a reactor, as Boost.Asio does on epoll. Readiness
//     becomes the same completions, with the same flags; connections are
//     ordinary descriptors, mapped from their slots by the backend.
#pragma once

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "limaoim/net/conn_id.h"
#include "limaoim/net/io_backend.h"
#include "limaoim/net/worker.h"

namespace limaoim::net::detail {

// A system call the loop cannot go on without failed: log it, abort.
[[noreturn]] void fatal(const char* what, int err);

// What a completion is for, packed with its object into user_data:
//   bits 63..56 op | 55..28 generation (28 bits, as in ConnId) | 27..0 index
// The index is a connection's slot, a listener's or a watch's number.
enum class Op : uint8_t { Accept = 1, Recv, Send, Cancel, Close, Wake, Poll, Watch };

constexpr uint32_t kGenerationMask = ConnId::kGenerationMask;

inline uint64_t pack(Op op, uint32_t index, uint32_t generation) {
    return uint64_t(op) << 56 | uint64_t(generation & kGenerationMask) << 28 | (index & 0xfffffff);
}
inline Op op_of(uint64_t user_data) { return Op(uint8_t(user_data >> 56)); }
inline uint32_t generation_of(uint64_t user_data) { return uint32_t(user_data >> 28) & kGenerationMask; }
inline uint32_t index_of(uint64_t user_data) { return uint32_t(user_data) & 0xfffffff; }

// A completion, with io_uring's meaning of res and flags whatever the
// backend (ring_backend.cpp checks that the flag values are the kernel's).
struct Completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};
constexpr uint32_t kCqeBuffer = 1u << 0;        // res bytes are in buffer flags >> kCqeBufferShift
constexpr uint32_t kCqeMore = 1u << 1;          // the multishot request stays armed
constexpr uint32_t kCqeSockNonEmpty = 1u << 2;  // more data waits in the socket
constexpr unsigned kCqeBufferShift = 16;

class IoBackend {
public:
    virtual ~IoBackend();
    virtual IoBackendKind kind() const = 0;

    // Accepts into a free slot: res is the slot. A multishot accept stays
    // armed (kCqeMore) until cancel_accepts(); a one-shot one completes once.
    virtual void accept_multishot(uint32_t listener, int fd) = 0;
    virtual void accept_once(uint32_t listener, int fd) = 0;
    // Every accept of the listener completes with -ECANCELED; the caller
    // closes the listening socket right after.
    virtual void cancel_accepts(uint32_t listener) = 0;
    // A multishot POLLIN poll of the connection (res: revents).
    virtual void poll_conn(uint32_t slot, uint64_t user_data) = 0;
    // A multishot recv into receive buffers (kCqeBuffer).
    virtual void recv_multishot(uint32_t slot, uint64_t user_data) = 0;
    // One recv into a receive buffer that does not wait: -EAGAIN when empty.
    virtual void recv_once(uint32_t slot, uint64_t user_data) = 0;
    // res: bytes sent (maybe fewer than len) or -errno.
    virtual void send(uint32_t slot, const uint8_t* data, uint32_t len, uint64_t user_data) = 0;
    // The request with this user_data completes (with -ECANCELED unless it
    // had completed already).
    virtual void cancel(uint64_t user_data) = 0;
    // Closes the connection in the slot, which is free for accepts again.
    // Nothing of the slot may be in flight.
    virtual void close_slot(uint32_t slot) = 0;
    // A multishot poll of a descriptor that stays the caller's (res: revents).
    virtual void poll_fd(int fd, uint32_t events, uint64_t user_data) = 0;

    // Hands what was asked to the kernel, waits at most timeout_ms for a
    // completion, and appends the completions to the worker's list.
    virtual void wait(uint64_t timeout_ms) = 0;

    uint8_t* buffer(uint16_t bid) const { return buffers_ + size_t(bid) * buffer_size_; }
    // A receive buffer is the backend's again once the worker has parsed it.
    virtual void recycle_buffer(uint16_t bid) = 0;
    // Recycled buffers become visible to the kernel (io_uring batches this).
    virtual void publish_buffers() {}

protected:
    IoBackend(const WorkerOptions& options, std::vector<Completion>& completions);
    // recv_buffers x recv_buffer_size, populated at start: a fixed cost of
    // the worker rather than page faults on the receive path.
    bool map_buffers(std::string& error);

    const WorkerOptions& options_;
    std::vector<Completion>& completions_;  // the worker's: what wait() reaps goes there
    uint8_t* buffers_ = nullptr;
    size_t buffers_bytes_ = 0;
    uint32_t buffer_size_ = 0;
};

// io_uring_setup refused with this errno: io_uring is forbidden or absent
// (not a setup error of ours that epoll would only hide).
inline bool ring_forbidden(int err) { return err == EPERM || err == EACCES || err == ENOSYS; }

// Each returns a backend ready for use, or nullptr with `error` set (and
// `errno_out` the cause, for the automatic choice). Called on the worker's
// thread: a SINGLE_ISSUER ring takes submissions only from its creator.
std::unique_ptr<IoBackend> make_ring_backend(const WorkerOptions& options, std::vector<Completion>& completions,
                                             std::string& error, int& errno_out);
// Why io_uring_setup refused (err), and what allows it.
std::string ring_unavailable(int err);
// 0 when a ring can be created here, else the errno of io_uring_setup.
int probe_ring();
std::unique_ptr<IoBackend> make_epoll_backend(const WorkerOptions& options, std::vector<Completion>& completions,
                                              std::string& error);

}  // namespace limaoim::net::detail
