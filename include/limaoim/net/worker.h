// One worker: one thread, one I/O backend (io_uring, or epoll where io_uring
// is forbidden: WorkerOptions::io_backend), a table of slots that are the
// connections, and one SO_REUSEPORT socket per listener. Below, the io_uring
// words describe both: the epoll backend produces the same completions from
// readiness (src/net/io_backend.h), and nothing above the loop can tell.
//
// The loop (in the style of Redis' ae and liburing's examples/proxy.c):
//   - per listener a multishot accept (or, with max_pending, a few one-shot
//     accepts) installs each new socket straight into the ring's fixed-file
//     table (a direct descriptor: no fd in the process table, so the 20000
//     open-files limit bounds each ring's table, not the server); each
//     connection remembers its listener, whose Handler serves it;
//   - per connection a multishot poll plus a one-shot recv per wake-up
//     (RecvMode::PollThenRecv, the default) or a multishot recv, filling
//     buffers the kernel picks from this worker's provided-buffer ring; a
//     buffer goes back to the ring as soon as the handler has parsed it, so
//     an idle connection holds none;
//   - sends from a per-connection queue of pooled 2 KiB chunks, one send in
//     flight per connection, a cap that turns a stuck reader into a close;
//   - one deadline per connection on a timer wheel ticking every 100 ms, and
//     timers of the handlers' own (loop_timer.h) that belong to no connection;
//   - fd watches: any descriptor (a store thread's eventfd, a library's
//     socket) polled on the ring, with a callback;
//   - an Inbox of Envelopes from other threads, one doorbell (eventfd) per
//     burst; envelopes to other workers are batched per target and handed
//     over once per loop iteration.
// Every call below must be made on this worker's thread, except post(),
// request_stop() and the setup calls before start(); the Transport calls,
// timers, watches and send_envelope() assert it in every build.
//
// One iteration: wait for completions (until the next timer at most) ->
// handle them -> loop timers -> connection deadlines -> iteration hooks ->
// input of resumed connections -> hand envelope batches to their targets.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/net/budget_buffer.h"
#include "limaoim/net/envelope.h"
#include "limaoim/net/handler.h"
#include "limaoim/net/id_table.h"
#include "limaoim/net/io_backend.h"
#include "limaoim/net/loop_timer.h"
#include "limaoim/net/slab.h"
#include "limaoim/net/timer_wheel.h"
#include "limaoim/net/transport.h"
#include "limaoim/stats/layout.h"

namespace limaoim::net {

namespace detail {
class IoBackend;
struct Completion;
}  // namespace detail

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
    uint32_t slots = 1024;          // max connections of this worker (io_uring: its fixed-file table size)
    uint32_t recv_buffers = 512;    // provided buffers (power of two)
    uint32_t recv_buffer_size = 2048;
    uint32_t send_cap = 64u << 10;  // queued output per connection before a slow-consumer close
    uint32_t drain_timeout_ms = 5000;  // close-after-flush gives up after this
    // Bytes all of this worker's held bytes may occupy together: the loop's
    // reassembly buffers and what the layers above hold (BudgetBuffer,
    // Worker::hold). A buffer grows as bytes arrive (geometrically, never
    // past the announced packet size); when growing one would pass the
    // budget, the connection holding the most is closed (reassembly_budget),
    // which is the asker only when it is itself the largest.
    uint64_t reassembly_budget = 64ull << 20;
    // What one buffer may hold (0: only the budget bounds it): the
    // largest packet its handler accepts plus what a paused input gathers.
    uint64_t reassembly_per_connection = 0;
    // A split packet (input not paused by the handler) that is not whole
    // after this long is closed (reassembly_timeout). 0: never.
    uint32_t reassembly_timeout_ms = 0;
    uint32_t inbox_capacity = 1u << 20;  // envelopes queued for this worker before send_envelope() refuses
    RecvMode recv_mode = RecvMode::PollThenRecv;
    IoBackendKind io_backend = IoBackendKind::Auto;
};

struct ListenerOptions {
    std::string addr = "0.0.0.0";
    uint16_t port = 0;
    Handler* handler = nullptr;
    uint32_t sndbuf = 64u << 10;  // SO_SNDBUF of every connection (0 = kernel autotuning)
    uint32_t backlog = 65535;     // capped by net.core.somaxconn
    // Connections not yet established (Transport::established) at which this
    // worker stops accepting on the listener: new ones wait in the kernel's
    // backlog instead of being accepted and then timing out. 0 = no limit.
    uint32_t max_pending = 0;
    // Connections open on this listener at which this worker refuses more:
    // each new one is closed at once (CloseReason::Rejected) unless the
    // handler makes room (Handler::make_room), so one listener's clients
    // cannot take every slot of max_conns. 0 = no limit.
    uint32_t max_open = 0;
};

// Each worker's listener sets SO_REUSEPORT, which lets any other process of
// the same user add a listener of its own to the port and take a share of
// the connections. A bind without the option fails on a port that anything
// listens on: this probe says so before the workers bind. Returns an empty
// string when the port is free, else the message, which names `option` (the
// flag that sets this port) as the fix.
std::string probe_listen_port(const std::string& addr, uint16_t port, const std::string& option);

// A listening socket for `listener` that shares its port with the other
// workers' (SO_REUSEPORT), or -1 with `error` set. Accepted sockets inherit
// its TCP_NODELAY and SO_SNDBUF.
int open_listener(const ListenerOptions& listener, std::string& error);

// Who handles the envelopes that reach a worker.
class EnvelopeHandler {
public:
    virtual ~EnvelopeHandler() = default;
    virtual void on_envelope(Envelope& envelope) = 0;
};

class Worker final : public Transport, public EnvelopeSink {
public:
    static constexpr uint32_t kTickMs = 100;
    static constexpr uint32_t kMaxListeners = 8;
    static constexpr size_t kEnvelopesPerIteration = 4096;  // the rest waits for the next iteration

    Worker(const WorkerOptions& options, SharedLimits& limits, stats::WorkerBlock& stats,
           stats::ConnCounters* conn_stats);
    ~Worker() override;
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // ---- setup, before start() ----
    // The listener is bound at start(); returns its index.
    uint32_t add_listener(const ListenerOptions& listener);
    // Envelopes whose kind is in `family` (envelope_family(kind)) go to
    // `handler`: each layer above the loop (the gateway, the HTTP API)
    // numbers its own kinds inside its family.
    void set_envelope_handler(uint8_t family, EnvelopeHandler* handler);
    // Every worker of the server, by index: the targets of send_envelope().
    void set_peers(std::span<Worker* const> peers);

    // Starts the worker's thread, which creates the ring, the listeners, the
    // buffer ring and the file table there (a SINGLE_ISSUER ring accepts
    // submissions only from the thread that created it), then runs the loop
    // until stopped and drained. Returns once the ring is ready; on failure
    // false, with a message that names the cause and the fix.
    bool start(std::string& error);
    void join();
    // Thread-safe: stop accepting (the listeners leave the port at once),
    // ask the handlers to say goodbye, exit once every connection is closed
    // or `deadline_ms` passed.
    void request_stop(uint32_t deadline_ms);

    // ---- envelopes ----
    // Thread-safe (EnvelopeSink): queues one envelope for this worker's
    // EnvelopeHandler. False when the inbox is full (counted); the caller
    // decides what a refusal means (nothing is dropped silently).
    bool post(Envelope&& envelope) override;
    // Thread-safe: queues all of `batch` or nothing (false, counted); one
    // lock and at most one doorbell for the whole batch. Left empty on success.
    bool post_batch(std::vector<Envelope>& batch);
    // Thread-safe, for a thread that may block (EnvelopeSink::post_waiting).
    bool post_waiting(std::vector<Envelope>& batch, std::chrono::milliseconds limit) override;
    // Worker thread: queues an envelope for worker `target` (this one
    // included); batches go out at the end of the loop iteration, one
    // doorbell per target. False when the target's inbox is full (counted).
    bool send_envelope(uint32_t target, Envelope&& envelope);

    // ---- loop services (worker thread) ----
    // A timer that belongs to no connection; `every_ms` > 0 repeats it.
    // The callback may add and cancel timers, itself included.
    TimerId add_timer(uint32_t ms_from_now, std::function<void()> callback, uint32_t every_ms = 0);
    void cancel_timer(TimerId id);
    // Polls `fd` (POLLIN/POLLOUT...) on the ring; `callback(revents)` runs on
    // each readiness (revents < 0: the poll failed with -errno and the watch
    // is gone). The descriptor stays the caller's: unwatch before closing it.
    using WatchId = uint64_t;
    WatchId watch_fd(int fd, uint32_t poll_events, std::function<void(int32_t revents)> callback);
    void unwatch_fd(WatchId id);
    // Runs `hook` once at the end of every loop iteration, after the timers
    // and before envelope batches are handed over.
    void add_iteration_hook(std::function<void()> hook);
    // The next wait for completions returns at once: a hook has more to do.
    void run_again_now() { run_again_ = true; }
    uint64_t now_ms() const { return now_ms_; }
    // request_stop() has reached the loop: the handlers' on_shutdown runs or ran.
    bool stopping() const { return stopping_; }

    // ---- Transport (worker thread) ----
    std::span<uint8_t> reserve(ConnRef conn, size_t n) override;
    void commit(ConnRef conn, size_t n) override;
    bool send(ConnRef conn, std::span<const uint8_t> bytes) override;
    void close(ConnRef conn, CloseReason reason, Linger linger = Linger::Drop) override;
    void set_deadline(ConnRef conn, uint32_t ms_from_now) override;
    void pause_input(ConnRef conn) override;
    void resume_input(ConnRef conn) override;
    void established(ConnRef conn) override;
    bool is_open(ConnRef conn) const override;
    uint32_t idle_ms(ConnRef conn) const override;
    stats::ConnCounters& counters(ConnRef conn) override { return conn_stats_[conn.slot]; }

    uint32_t index() const { return options_.index; }
    // The backend that runs (never Auto once start() succeeded).
    IoBackendKind io_backend() const { return backend_kind_; }
    uint32_t slots() const { return options_.slots; }
    stats::WorkerBlock& stats() { return stats_; }

    // ---- held bytes (worker thread) ----
    // A split packet waits in a BudgetBuffer of its connection until it is
    // whole, and a paused connection's input until it is resumed. A layer
    // above that holds bytes of its own (WebSocket: the LiMaoIM bytes its
    // handler has not taken yet) keeps them in one too, charged to the same
    // budget, the same share per buffer and the same reassembly timeout.
    // Appends `bytes` to `conn`'s `buffer`; `needed`: the size of the packet
    // at its front, once known (growth stops there). When the budget is
    // full the connection holding the largest buffer is closed
    // (reassembly_budget), whichever layer holds it: the asker only when it
    // is itself the largest. False when `conn` was closed (that, over its
    // share, or out of memory): on_close has run and released the buffer.
    bool hold(ConnRef conn, BudgetBuffer& buffer, std::span<const uint8_t> bytes, uint32_t needed = 0);
    void release(BudgetBuffer& buffer) { budget_.release(buffer); }

    // Each connection's loop-side state: 64 bytes, in a SlotArray indexed by
    // its direct-descriptor slot.
    struct Connection {
        // Cache line 0, all of it: touched on every completion of this connection.
        uint32_t generation;      // 0 = free; from next_generation_, < 2^28 (ConnId)
        uint8_t state;            // ConnState
        uint8_t io;               // IoFlags: which requests are in flight
        uint16_t rx_below_kib;    // bytes received not yet counted in ConnCounters::bytes_in_kib
        TimerLink timer;          // 12 bytes
        uint32_t last_rx_tick;    // for idle_ms()
        uint32_t queued;          // bytes in the send queue
        uint8_t listener;         // index into listeners_: whose handler serves it
        uint8_t flags;            // ConnFlags
        uint16_t unused16;        // free: padding to the cache line
        BudgetBuffer partial;     // only while a packet is split or input is paused
        SendChunk* send_head;     // from the worker's ChunkPool
        SendChunk* send_tail;
        uint64_t unused64;        // free: padding to the cache line
    };
    static_assert(sizeof(Connection) == 64, "one cache line per connection in the loop");

private:
    enum class ConnState : uint8_t { Free, Open, Draining, Closing };
    // kRecvArmed: the multishot recv, or in PollThenRecv mode the multishot
    // poll; kRecvOnce: PollThenRecv's one-shot recv.
    enum IoFlags : uint8_t { kRecvArmed = 1, kSendInFlight = 2, kRecvOnce = 4 };
    enum ConnFlags : uint8_t {
        kPending = 1,      // counts against its listener's max_pending
        kInputPaused = 2,
        kResumeQueued = 4,  // in resumed_, waiting for its buffered input to be handed back
    };
    // A completion copied out of the CQ, so the CQ can be advanced before the
    // handlers run and queue new requests.
    using Completion = detail::Completion;
    struct Listener {
        ListenerOptions options;
        int fd = -1;
        uint32_t open = 0;               // connections accepted and not yet released
        uint32_t pending = 0;            // connections with kPending
        uint32_t accepts_in_flight = 0;  // accept requests in the kernel
        bool at_limit = false;           // pending reached max_pending (counted once per episode)
    };
    struct Watch {
        std::function<void(int32_t)> callback;
        int fd = -1;
        uint32_t events = 0;
        uint32_t serial = 0;
        bool active = false;   // unwatch_fd() not called
        bool armed = false;    // a poll is in the kernel
    };

    bool init(std::string& error);
    bool open_backend(const std::string& who, std::string& error);
    void run();
    uint64_t wait_timeout_ms();
    void arm_accepts(uint32_t listener);
    void arm_recv(uint32_t slot);
    void recv_once(uint32_t slot);
    void arm_wake();
    void arm_watch(uint32_t id);
    void submit_send(uint32_t slot);
    void begin_stop();

    void handle_cqe(const Completion& cqe);
    void on_accept(const Completion& cqe);
    void on_recv(const Completion& cqe);
    void on_poll(const Completion& cqe);
    void on_send(const Completion& cqe);
    void on_watch(const Completion& cqe);
    void on_wake();
    void handle_envelopes();
    // n bytes at the tail of c's send queue, no cap check (reserve and send check it).
    std::span<uint8_t> reserve_room(ConnRef ref, Connection* c, size_t n);
    void cut_slow_consumer(ConnRef ref);

    void deliver(uint32_t slot, std::span<const uint8_t> bytes);
    void feed_partial(uint32_t slot);
    bool hold_bytes(uint32_t slot, BudgetBuffer& buffer, std::span<const uint8_t> tail, uint32_t needed);
    bool make_room(uint32_t slot, const BudgetBuffer& buffer, uint64_t extra);
    void close_stalled_partials();
    void deliver_resumed();
    void continue_reading(uint32_t slot);
    void reject(uint32_t slot);
    void flush_outboxes();
    void ring_doorbell();
    bool pushed(Inbox::Push result, size_t count);  // post()/post_batch(): counts a refusal, rings

    // Teardown: on_close, then wait for in-flight requests, then close_direct.
    void begin_close(uint32_t slot, CloseReason reason);
    void notify_close(ConnRef ref, CloseReason reason);
    void maybe_release(uint32_t slot);
    void drop_send_queue(Connection& c);
    void on_timer(uint32_t slot);
    void leave_pending(Connection& c);

    Connection* live(ConnRef ref);
    const Connection* live(ConnRef ref) const;
    Handler& handler_of(const Connection& c) { return *listeners_[c.listener].options.handler; }
    void update_clock();
    uint32_t now_tick() const { return uint32_t(now_ms_ / kTickMs); }

    WorkerOptions options_;
    SharedLimits& limits_;
    stats::WorkerBlock& stats_;
    stats::ConnCounters* conn_stats_;
    std::vector<Listener> listeners_;
    std::array<EnvelopeHandler*, kEnvelopeFamilies> envelope_handlers_{};
    std::vector<Worker*> peers_;

    std::thread thread_;
    // Set by the loop thread as it starts: the calls "on this worker's
    // thread" assert it (LIMAOIM_ASSERT, every build); before start() the
    // setup thread is the only one, and may add timers and watches.
    std::atomic<std::thread::id> loop_thread_{};
    bool on_loop_thread() const {
        const std::thread::id owner = loop_thread_.load(std::memory_order_relaxed);
        return owner == std::thread::id() || owner == std::this_thread::get_id();
    }
    std::unique_ptr<detail::IoBackend> io_;
    IoBackendKind backend_kind_ = IoBackendKind::Auto;
    int wake_fd_ = -1;
    std::vector<Completion> completions_;  // reaped, not yet handled; capacity kept

    SlotArray<Connection> conns_;
    TimerWheel wheel_;
    ChunkPool chunks_;
    uint32_t next_generation_ = 0;
    uint64_t now_ms_ = 0;
    uint64_t open_ = 0;  // connections not yet released (any state but Free)
    // Every BudgetBuffer of this worker's connections, the loop's and the
    // layers' above: the budget-full path and the stall check scan them.
    ReassemblyBudget budget_;
    uint32_t stall_checked_tick_ = 0;
    bool accepting_ = false;
    bool run_again_ = false;

    std::vector<ConnRef> resumed_;       // resume_input() since the last hand-back
    std::vector<ConnRef> resumed_work_;  // being handed back; capacity kept
    LoopTimers timers_;
    IdTable<Watch> watches_;
    std::vector<std::function<void()>> iteration_hooks_;

    Inbox inbox_;
    std::vector<Envelope> inbox_work_;               // taken from inbox_; capacity kept
    size_t inbox_next_ = 0;                          // the next of inbox_work_ to handle
    size_t envelopes_left_ = kEnvelopesPerIteration;  // this iteration's budget
    std::vector<std::vector<Envelope>> outboxes_;    // by target worker
    std::vector<uint32_t> outbox_targets_;           // targets with a non-empty outbox

    std::atomic<bool> stop_requested_{false};
    std::atomic<uint32_t> stop_deadline_ms_{0};
    bool stopping_ = false;
    uint64_t stop_at_ms_ = 0;
};

}  // namespace limaoim::net
