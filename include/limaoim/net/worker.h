// One worker: one thread, one io_uring, one SO_REUSEPORT listener, one
// fixed-file table whose slots are the connections.
//
// The loop (in the style of Redis' ae and liburing's examples/proxy.c):
//   - a multishot accept installs each new socket straight into the ring's
//     fixed-file table (a direct descriptor: no fd in the process table, so
//     the 20000 open-files limit bounds each ring's table, not the server);
//   - per connection a multishot poll plus a one-shot recv per wake-up
//     (RecvMode::PollThenRecv, the default) or a multishot recv, filling
//     buffers the kernel picks from this worker's provided-buffer ring; a
//     buffer goes back to the ring as soon as the handler has parsed it, so
//     an idle connection holds none;
//   - sends from a per-connection queue of pooled 2 KiB chunks, one send in
//     flight per connection, a cap that turns a stuck reader into a close;
//   - one deadline per connection on a timer wheel ticking every 100 ms;
//   - a mailbox (mutex-protected queue + eventfd) for other threads.
// Every transport call below must be made on this worker's thread, except
// post() and request_stop().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/net/handler.h"
#include "limaoim/net/slab.h"
#include "limaoim/net/timer_wheel.h"
#include "limaoim/stats/layout.h"

struct io_uring;
struct io_uring_buf_ring;
struct io_uring_sqe;

namespace limaoim::net {

// Limits every worker shares.
struct SharedLimits {
    uint64_t max_conns = 0;
    std::atomic<uint64_t> open_conns{0};
};

// How a connection waits for data. Multishot recv keeps a receive request
// armed in the kernel (~856 bytes of kernel memory per connection on 6.18);
// PollThenRecv keeps only a multishot poll armed (~256 bytes) and issues a
// one-shot buffer-select recv when the socket is readable: one more SQE per
// wake-up, less kernel memory per idle connection. BENCHMARKS.md compares them.
enum class RecvMode : uint8_t { Multishot, PollThenRecv };

struct WorkerOptions {
    uint32_t index = 0;
    std::string addr = "0.0.0.0";
    uint16_t port = 0;
    uint32_t slots = 1024;          // fixed-file table size = max connections of this worker
    uint32_t recv_buffers = 512;    // provided buffers (power of two)
    uint32_t recv_buffer_size = 2048;
    uint32_t send_cap = 64u << 10;  // queued output per connection before a slow-consumer close
    uint32_t sndbuf = 64u << 10;    // SO_SNDBUF of every connection (0 = kernel autotuning)
    uint32_t drain_timeout_ms = 5000;  // close-after-flush gives up after this
    RecvMode recv_mode = RecvMode::PollThenRecv;
};

// Each worker's listener sets SO_REUSEPORT, which lets any other process of
// the same user add a listener of its own to the port and take a share of
// the connections. A bind without the option fails on a port that anything
// listens on: this probe says so before the workers bind. Returns an empty
// string when the port is free, else the message.
std::string probe_listen_port(const std::string& addr, uint16_t port);

class Worker {
public:
    static constexpr uint32_t kTickMs = 100;

    Worker(const WorkerOptions& options, SharedLimits& limits, stats::WorkerBlock& stats,
           stats::ConnCounters* conn_stats);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void set_handler(Handler* handler) { handler_ = handler; }

    // Starts the worker's thread, which creates the ring, the listener, the
    // buffer ring and the file table there (a SINGLE_ISSUER ring accepts
    // submissions only from the thread that created it), then runs the loop
    // until stopped and drained. Returns once the ring is ready; on failure
    // false, with a message that names the cause and the fix.
    bool start(std::string& error);
    void join();
    // Thread-safe: stop accepting, ask the handler to say goodbye, exit once
    // every connection is closed or `deadline_ms` passed.
    void request_stop(uint32_t deadline_ms);
    // Thread-safe: queue a message for this worker's handler.
    void post(const Mail& mail);

    // ---- transport (worker thread only) ----

    // Queues bytes for sending. Returns false if the connection is not open
    // or the queue passed the send cap (the connection is then closed as a
    // slow consumer, and on_close has run).
    bool send(ConnRef conn, std::span<const uint8_t> bytes);
    // Contiguous room for `n` bytes at the end of the send queue, to encode
    // into directly (n <= SendChunk::kCapacity); commit() queues what was
    // written. Empty when the connection is not open or over its cap.
    std::span<uint8_t> reserve(ConnRef conn, size_t n);
    void commit(ConnRef conn, size_t n);

    enum class Linger : uint8_t { Drop, Flush };
    // Closes the connection: on_close(reason) runs at once; with Linger::Flush
    // the queued output is sent first (for at most drain_timeout_ms).
    void close(ConnRef conn, CloseReason reason, Linger linger = Linger::Drop);

    // Replaces the connection's deadline (on_deadline runs when it passes).
    // Only an Open connection has one: closing cancels it.
    void set_deadline(ConnRef conn, uint32_t ms_from_now);

    bool is_open(ConnRef conn) const;
    uint32_t idle_ms(ConnRef conn) const;               // since its last received byte
    uint32_t index() const { return options_.index; }
    uint32_t slots() const { return options_.slots; }
    stats::WorkerBlock& stats() { return stats_; }
    stats::ConnCounters& conn_stats(ConnRef conn) { return conn_stats_[conn.slot]; }

    // Each connection's loop-side state: 64 bytes, in a SlotArray indexed by
    // its direct-descriptor slot.
    struct Connection {
        // Cache line 0, all of it: touched on every completion of this connection.
        uint32_t generation;      // 0 = free; from next_generation_
        uint8_t state;            // ConnState
        uint8_t io;               // IoFlags: which requests are in flight
        uint16_t rx_below_kib;    // bytes received not yet counted in ConnCounters::bytes_in_kib
        TimerLink timer;          // 12 bytes
        uint32_t last_rx_tick;    // for idle_ms()
        uint32_t queued;          // bytes in the send queue
        uint8_t* partial;         // reassembly buffer (malloc), only while a packet is split
        SendChunk* send_head;     // from the worker's ChunkPool
        SendChunk* send_tail;
        uint32_t partial_len;
        uint32_t partial_cap;
    };
    static_assert(sizeof(Connection) == 64, "one cache line per connection in the loop");

private:
    enum class ConnState : uint8_t { Free, Open, Draining, Closing };
    // kRecvArmed: the multishot recv, or in PollThenRecv mode the multishot
    // poll; kRecvOnce: PollThenRecv's one-shot recv.
    enum IoFlags : uint8_t { kRecvArmed = 1, kSendInFlight = 2, kRecvOnce = 4 };
    enum class Op : uint8_t;
    // A completion copied out of the CQ, so the CQ can be advanced before the
    // handlers run and queue new requests.
    struct Completion {
        uint64_t user_data;
        int32_t res;
        uint32_t flags;
    };

    bool init(std::string& error);
    void run();
    io_uring_sqe* get_sqe();
    void reap_completions();
    void publish_buffers();
    void arm_accept();
    void arm_recv(uint32_t slot);
    void recv_once(uint32_t slot);
    void arm_wake();
    void submit_send(uint32_t slot);

    void handle_cqe(const Completion& cqe);
    void on_accept(const Completion& cqe);
    void on_recv(const Completion& cqe);
    void on_poll(const Completion& cqe);
    void on_send(const Completion& cqe);
    void on_wake();

    void deliver(uint32_t slot, std::span<const uint8_t> bytes);
    bool keep_partial(Connection& c, std::span<const uint8_t> tail, uint32_t needed);
    void drop_partial(Connection& c);
    void recycle_buffer(uint16_t bid);
    void reject(uint32_t slot);

    // Teardown: on_close, then wait for in-flight requests, then close_direct.
    void begin_close(uint32_t slot, CloseReason reason);
    void notify_close(ConnRef ref, CloseReason reason);
    void maybe_release(uint32_t slot);
    void cancel(uint64_t user_data);
    void drop_send_queue(Connection& c);
    void on_timer(uint32_t slot);

    Connection* live(ConnRef ref);
    const Connection* live(ConnRef ref) const;
    void update_clock();
    uint32_t now_tick() const { return uint32_t(now_ms_ / kTickMs); }

    WorkerOptions options_;
    SharedLimits& limits_;
    stats::WorkerBlock& stats_;
    stats::ConnCounters* conn_stats_;
    Handler* handler_ = nullptr;

    std::thread thread_;
    std::unique_ptr<io_uring> ring_;
    bool ring_ready_ = false;
    int listen_fd_ = -1;
    int wake_fd_ = -1;
    io_uring_buf_ring* buf_ring_ = nullptr;
    uint8_t* buffers_ = nullptr;  // recv_buffers * recv_buffer_size, mmap'd
    size_t buffers_bytes_ = 0;
    uint16_t buffers_to_advance_ = 0;
    std::vector<Completion> completions_;  // reaped, not yet handled; capacity kept

    SlotArray<Connection> conns_;
    TimerWheel wheel_;
    ChunkPool chunks_;
    uint32_t next_generation_ = 0;
    uint64_t now_ms_ = 0;
    uint64_t open_ = 0;  // connections not yet released (any state but Free)
    bool accepting_ = false;

    std::mutex mail_mutex_;
    std::vector<Mail> mail_in_;
    std::vector<Mail> mail_work_;
    std::atomic<bool> stop_requested_{false};
    std::atomic<uint32_t> stop_deadline_ms_{0};
    bool stopping_ = false;
    uint64_t stop_at_ms_ = 0;
};

}  // namespace limaoim::net
