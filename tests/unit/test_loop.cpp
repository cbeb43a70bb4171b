// The loop's services, each against real workers and real sockets: listener
// options, pause/resume of input, loop timers, fd watches, envelopes between
// workers, the blocking pool, reassembly (growth, budget, share, deadline), accept back-pressure
// and leaving the port at stop. Links net/ alone (no proto/, no gateway/).
// Every case runs on the backend LIMAOIM_TEST_IO_BACKEND names (auto when
// unset): meson runs the suite twice, as unit-loop and unit-loop-epoll.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/net/blocking_pool.h"
#include "limaoim/net/conn_id.h"
#include "limaoim/net/worker.h"
#include "child.h"
#include "ports.h"

using namespace limaoim;
using namespace limaoim::net;
using namespace std::chrono;
using limaoim::testing::connect_to;
using limaoim::testing::free_port;

namespace {

IoBackendKind backend_under_test() {
    IoBackendKind kind = IoBackendKind::Auto;
    if (const char* name = getenv("LIMAOIM_TEST_IO_BACKEND")) REQUIRE(parse_io_backend(name, kind));
    return kind;
}

std::string read_exactly(int fd, size_t n) {
    std::string out;
    char buf[256];
    while (out.size() < n) {
        ssize_t got = recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
        if (got <= 0) break;
        out.append(buf, size_t(got));
    }
    return out;
}

bool wait_for(const std::function<bool()>& done, milliseconds limit = 5s) {
    const auto end = steady_clock::now() + limit;
    while (steady_clock::now() < end) {
        if (done()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return done();
}

// Packets of one byte. 'P' pauses the input and resumes it from a loop timer
// 150 ms later; 'E' marks the connection established; 'B' and 'S' start a
// packet of a megabyte and of 4 KiB (to exercise reassembly), answered 'k'
// once whole; any other byte is echoed.
constexpr size_t kBigPacket = 1u << 20;

const std::vector<uint8_t>& bulk_answer() {
    static const std::vector<uint8_t> bytes = [] {
        std::vector<uint8_t> b(1u << 20);
        for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(i * 7 + i / 251);
        return b;
    }();
    return bytes;
}
constexpr size_t kSmallPacket = 4096;

struct ByteHandler final : Handler {
    Worker* worker = nullptr;
    // make_room: close this connection (the first one opened), once.
    bool evict_first = false;
    std::optional<ConnRef> first;
    std::atomic<int> opened{0};
    std::atomic<int> closed{0};
    std::atomic<int> last_reason{-1};
    std::atomic<int> resumed{0};

    void on_open(ConnRef conn, net::Transport&) override {
        if (!first) first = conn;
        ++opened;
    }
    bool make_room() override {
        if (!evict_first || !first) return false;
        worker->close(*first, CloseReason(kFirstHandlerCloseReason));
        evict_first = false;
        return true;
    }
    DataResult on_data(ConnRef conn, std::span<const uint8_t> bytes) override {
        for (size_t i = 0; i < bytes.size(); ++i) {
            switch (bytes[i]) {
            case 'P':
                worker->pause_input(conn);
                worker->add_timer(150, [this, conn] {
                    ++resumed;
                    worker->resume_input(conn);
                });
                return {i + 1, 0};
            case 'Q':  // paused and resumed at once: before a multishot recv's cancel completes
                worker->pause_input(conn);
                worker->resume_input(conn);
                return {i + 1, 0};
            case 'E':
                worker->established(conn);
                break;
            case 'D':  // more output than the socket's buffers hold: sends wait for room
                worker->send(conn, bulk_answer());
                break;
            case 'B':
            case 'S': {
                const size_t size = bytes[i] == 'B' ? kBigPacket : kSmallPacket;
                if (bytes.size() - i < size) return {i, uint32_t(size)};
                worker->send(conn, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("k"), 1));
                i += size - 1;
                break;
            }
            default:
                worker->send(conn, bytes.subspan(i, 1));
            }
        }
        return {bytes.size(), 0};
    }
    void on_deadline(ConnRef) override {}
    void on_close(ConnRef, CloseReason reason) override {
        last_reason = int(reason);
        ++closed;
    }
    void on_shutdown() override {}
};

struct CountingEnvelopes final : EnvelopeHandler {
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> kind_sum{0};
    void on_envelope(Envelope& e) override {
        ++count;
        bytes += e.payload.bytes().size();
        kind_sum += e.kind;
    }
};

// A worker with its own stats block, on a free loopback port.
struct TestWorker {
    std::unique_ptr<stats::WorkerBlock> block = std::make_unique<stats::WorkerBlock>();
    std::vector<stats::ConnCounters> conns = std::vector<stats::ConnCounters>(256);
    SharedLimits limits;
    ByteHandler handler;
    CountingEnvelopes envelopes;
    std::unique_ptr<Worker> worker;
    uint16_t port = free_port();

    explicit TestWorker(uint32_t index = 0, WorkerOptions options = {}, uint32_t max_pending = 0,
                        uint32_t max_open = 0) {
        limits.max_conns = 1000;
        options.index = index;
        if (options.slots > 256) options.slots = 256;  // the default: as many as conns holds
        options.recv_buffers = 64;
        options.io_backend = backend_under_test();
        worker = std::make_unique<Worker>(options, limits, *block, conns.data());
        handler.worker = worker.get();
        ListenerOptions listener;
        listener.addr = "127.0.0.1";
        listener.port = port;
        listener.handler = &handler;
        listener.max_pending = max_pending;
        listener.max_open = max_open;
        listener.backlog = 64;
        worker->add_listener(listener);
        worker->set_envelope_handler(0, &envelopes);
    }
    void start(std::span<Worker* const> peers) {
        worker->set_peers(peers);
        std::string error;
        REQUIRE_MESSAGE(worker->start(error), error);
    }
    void start() {
        Worker* self = worker.get();
        start(std::span<Worker* const>(&self, 1));
    }
    ~TestWorker() {
        worker->request_stop(1000);
        worker->join();
    }
};

}  // namespace

TEST_CASE("listener: accepted sockets inherit TCP_NODELAY and the fixed send buffer") {
    ListenerOptions options;
    options.addr = "127.0.0.1";
    options.port = free_port();
    options.sndbuf = 64u << 10;
    std::string error;
    const int listener = open_listener(options, error);
    REQUIRE_MESSAGE(listener >= 0, error);
    const int client = connect_to(options.port);
    REQUIRE(client >= 0);
    const int accepted = accept(listener, nullptr, nullptr);
    REQUIRE(accepted >= 0);
    int nodelay = 0;
    socklen_t len = sizeof(nodelay);
    REQUIRE(getsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0);
    CHECK(nodelay == 1);
    int sndbuf = 0;
    len = sizeof(sndbuf);
    REQUIRE(getsockopt(accepted, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) == 0);
    CHECK(sndbuf == 2 * (64 << 10));  // the kernel doubles what was set
    ::close(accepted);
    ::close(client);
    ::close(listener);
}

TEST_CASE("pause_input: packets pipelined behind a pause wait, then come in order without new bytes") {
    for (RecvMode mode : {RecvMode::PollThenRecv, RecvMode::Multishot}) {
        WorkerOptions options;
        options.recv_mode = mode;
        TestWorker w(0, options);
        w.start();
        const int fd = connect_to(w.port);
        REQUIRE(fd >= 0);
        // 'a' is echoed at once; 'P' pauses; "bc" wait for the resume.
        REQUIRE(send(fd, "aPbc", 4, 0) == 4);
        CHECK(read_exactly(fd, 1) == "a");
        pollfd p{fd, POLLIN, 0};
        CHECK(poll(&p, 1, 80) == 0);  // nothing while paused
        CHECK(read_exactly(fd, 2) == "bc");
        CHECK(w.handler.resumed == 1);
        // Bytes sent while paused are read after the resume, in order.
        REQUIRE(send(fd, "Pd", 2, 0) == 2);
        std::this_thread::sleep_for(20ms);
        REQUIRE(send(fd, "ef", 2, 0) == 2);
        CHECK(read_exactly(fd, 3) == "def");
        // Paused and resumed in one step: reading goes on afterwards.
        REQUIRE(send(fd, "Qg", 2, 0) == 2);
        CHECK(read_exactly(fd, 1) == "g");
        std::this_thread::sleep_for(50ms);
        REQUIRE(send(fd, "h", 1, 0) == 1);
        CHECK(read_exactly(fd, 1) == "h");
        CHECK(w.block->input_pauses.get() == 3);
        CHECK(w.block->reassembly_bytes.get() == 0);
        ::close(fd);
    }
}

TEST_CASE("io backend: the worker runs the backend asked for (auto: one that works here)") {
    TestWorker w;
    w.start();
    const IoBackendKind asked = backend_under_test();
    if (asked == IoBackendKind::Auto) {
        CHECK(w.worker->io_backend() != IoBackendKind::Auto);
    } else {
        CHECK(w.worker->io_backend() == asked);
    }
}

TEST_CASE("thread ownership: a Transport call from another thread than the loop's aborts, saying where") {
    const limaoim::testing::ChildEnd end = limaoim::testing::run_in_child([] {
        TestWorker w;
        w.start();
        (void)w.worker->is_open(ConnRef{0, 1});  // this thread is not the worker's
    });
    CHECK(end.aborted());
    CHECK_MESSAGE(end.stderr.find("on_loop_thread() does not hold") != std::string::npos, end.stderr);
}

TEST_CASE("sending: output larger than the socket holds waits for room and arrives whole, in order") {
    TestWorker w;
    w.start();
    const int fd = connect_to(w.port);
    REQUIRE(fd >= 0);
    REQUIRE(send(fd, "D", 1, 0) == 1);
    std::this_thread::sleep_for(50ms);  // the socket fills: the rest waits in the send queue
    CHECK(w.block->send_queue_bytes.get() > 0);
    const std::string got = read_exactly(fd, bulk_answer().size());
    CHECK(got == std::string(bulk_answer().begin(), bulk_answer().end()));
    CHECK(wait_for([&] { return w.block->send_queue_bytes.get() == 0; }));
    CHECK(w.block->bytes_out.get() == bulk_answer().size());
    ::close(fd);
}

TEST_CASE("closing: bytes and the FIN in one segment: the bytes are handled, then the close") {
    TestWorker w;
    w.start();
    const int fd = connect_to(w.port);
    REQUIRE(fd >= 0);
    REQUIRE(wait_for([&] { return w.handler.opened.load() == 1; }));
    // Corked, the bytes wait; the FIN then goes in the same segment, so the
    // server is woken once for both (an edge-triggered epoll only once).
    const int cork = 1;
    REQUIRE(setsockopt(fd, IPPROTO_TCP, TCP_CORK, &cork, sizeof cork) == 0);
    REQUIRE(send(fd, "abc", 3, 0) == 3);
    REQUIRE(shutdown(fd, SHUT_WR) == 0);
    CHECK(read_exactly(fd, 3) == "abc");
    CHECK(wait_for([&] { return w.handler.closed.load() == 1; }));
    CHECK(w.handler.last_reason.load() == int(CloseReason::PeerClosed));
    ::close(fd);
}

TEST_CASE("loop timers: one-shot, repeating, cancelled; fd watches call back on the worker thread") {
    std::atomic<int> once{0};
    std::atomic<int> repeated{0};
    std::atomic<int> cancelled{0};
    std::atomic<int> watched{0};
    std::atomic<bool> on_worker_thread{true};
    std::atomic<bool> armed{false};
    int event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    Worker::WatchId watch = 0;
    // The first connection's open gets us onto the worker's thread.
    struct Setup final : Handler {
        std::function<void()> fn;
        void on_open(ConnRef, net::Transport&) override { fn(); }
        DataResult on_data(ConnRef, std::span<const uint8_t> b) override { return {b.size(), 0}; }
        void on_deadline(ConnRef) override {}
        void on_close(ConnRef, CloseReason) override {}
        void on_shutdown() override {}
    };
    // The test's calls run on the worker's thread from the first connection's on_open.
    stats::WorkerBlock block;
    std::vector<stats::ConnCounters> conns(64);
    SharedLimits limits;
    limits.max_conns = 10;
    WorkerOptions options;
    options.slots = 64;
    options.recv_buffers = 16;
    options.io_backend = backend_under_test();
    Worker worker(options, limits, block, conns.data());
    Setup setup;
    TimerId to_cancel = 0;
    setup.fn = [&] {
        worker.add_timer(50, [&] { ++once; });
        TimerId every = worker.add_timer(20, [&] { ++repeated; }, 20);
        to_cancel = worker.add_timer(30, [&] { ++cancelled; });
        worker.cancel_timer(to_cancel);
        worker.add_timer(200, [&worker, every] { worker.cancel_timer(every); });
        const std::thread::id self = std::this_thread::get_id();
        watch = worker.watch_fd(event_fd, POLLIN, [&, self](int32_t revents) {
            if (std::this_thread::get_id() != self) on_worker_thread = false;
            if (revents & POLLIN) {
                uint64_t v;
                [[maybe_unused]] ssize_t n = read(event_fd, &v, sizeof(v));
                ++watched;
                if (watched == 3) worker.unwatch_fd(watch);
            }
        });
        armed = true;
    };
    ListenerOptions listener;
    listener.addr = "127.0.0.1";
    listener.port = free_port();
    listener.handler = &setup;
    worker.add_listener(listener);
    std::string error;
    REQUIRE_MESSAGE(worker.start(error), error);
    const int fd = connect_to(listener.port);
    REQUIRE(fd >= 0);
    REQUIRE(wait_for([&] { return armed.load(); }));
    uint64_t one = 1;
    for (int i = 0; i < 5; ++i) {
        REQUIRE(write(event_fd, &one, sizeof(one)) == 8);
        if (i < 3) REQUIRE(wait_for([&] { return watched.load() == i + 1; }));
    }
    std::this_thread::sleep_for(300ms);
    CHECK(once == 1);
    CHECK(cancelled == 0);
    CHECK(repeated >= 5);   // every 20 ms until cancelled at 200 ms
    CHECK(repeated <= 11);
    const int after_cancel = repeated;
    std::this_thread::sleep_for(100ms);
    CHECK(repeated == after_cancel);
    CHECK(watched == 3);  // unwatched after the third: writes 4 and 5 call nothing
    CHECK(on_worker_thread);
    ::close(fd);
    worker.request_stop(1000);
    worker.join();
    ::close(event_fd);
}

TEST_CASE("envelopes: a burst is handled at most kEnvelopesPerIteration per loop iteration, all of it, in order") {
    // Counts envelopes between iteration hooks, and checks the order.
    struct Burst final : EnvelopeHandler {
        std::atomic<uint64_t> handled{0};
        uint64_t this_iteration = 0;
        std::atomic<uint64_t> most_in_one_iteration{0};
        std::atomic<bool> in_order{true};
        void on_envelope(Envelope& e) override {
            if (e.arg != handled) in_order = false;
            ++handled;
            ++this_iteration;
        }
    } burst;
    TestWorker w;
    w.worker->set_envelope_handler(3, &burst);
    w.worker->add_iteration_hook([&] {
        if (burst.this_iteration > burst.most_in_one_iteration) burst.most_in_one_iteration = burst.this_iteration;
        burst.this_iteration = 0;
    });
    w.start();
    const uint64_t total = 3 * Worker::kEnvelopesPerIteration + 17;
    std::vector<Envelope> batch;
    for (uint64_t i = 0; i < total; ++i) batch.push_back(Envelope{.kind = envelope_kind(3, 1), .arg = i});
    REQUIRE(w.worker->post_batch(batch));  // one take gets them all
    REQUIRE(wait_for([&] { return burst.handled == total; }));
    CHECK(burst.in_order);
    CHECK(burst.most_in_one_iteration <= Worker::kEnvelopesPerIteration);
    CHECK(burst.most_in_one_iteration > 0);
}

TEST_CASE("envelopes: a producer waits for room in a full inbox until the consumer takes, or its deadline") {
    Inbox inbox(2);
    std::vector<Envelope> batch(2);
    REQUIRE(inbox.push(batch) == Inbox::Push::QueuedRing);
    const auto now = std::chrono::steady_clock::now();
    CHECK_FALSE(inbox.wait_for_room(1, now + std::chrono::milliseconds(20)));  // nobody takes
    std::thread consumer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::vector<Envelope> taken;
        inbox.take(taken);
    });
    CHECK(inbox.wait_for_room(2, std::chrono::steady_clock::now() + std::chrono::seconds(5)));  // woken by take()
    consumer.join();
    CHECK(inbox.size() == 0);
}

TEST_CASE("envelopes: batches between workers, shared payloads freed once, a full inbox refuses") {
    WorkerOptions small;
    small.inbox_capacity = 100000;
    TestWorker a(0, small);
    TestWorker b(1, small);
    Worker* peers[] = {a.worker.get(), b.worker.get()};
    a.start(peers);
    b.start(peers);

    // Thread-safe post from outside: 10 envelopes sharing one payload.
    const uint8_t text[] = "stored message";
    Payload payload = Payload::copy_of(text);
    for (int i = 0; i < 10; ++i) REQUIRE(b.worker->post(Envelope{.kind = 1, .payload = payload}));
    REQUIRE(wait_for([&] { return b.envelopes.count == 10; }));
    CHECK(b.envelopes.bytes == 10 * sizeof(text));
    CHECK(wait_for([&] { return payload.use_count() == 1; }));  // every target dropped its reference

    CHECK(a.block->envelopes_refused.get() == 0);

    // All or nothing, bounded, and a doorbell only when it was empty.
    Inbox inbox(3);
    std::vector<Envelope> batch(2);
    CHECK(inbox.push(batch) == Inbox::Push::QueuedRing);
    CHECK(batch.empty());
    batch.resize(2);
    CHECK(inbox.push(batch) == Inbox::Push::Full);  // all or nothing
    CHECK(batch.size() == 2);
    CHECK(inbox.push_one(Envelope{}) == Inbox::Push::Queued);
    CHECK(inbox.push_one(Envelope{}) == Inbox::Push::Full);
    std::vector<Envelope> taken;
    inbox.take(taken);
    CHECK(taken.size() == 3);
    CHECK(inbox.push_one(Envelope{}) == Inbox::Push::QueuedRing);  // empty again: ring
}

TEST_CASE("envelopes: send_envelope from a worker thread reaches the target once per envelope") {
    TestWorker a(0);
    TestWorker b(1);
    struct Sender final : Handler {
        Worker* worker = nullptr;
        std::atomic<int> refused{0};
        void on_open(ConnRef, net::Transport&) override {
            for (int i = 0; i < 30000; ++i) {
                if (!worker->send_envelope(1, Envelope{.kind = 2})) ++refused;
                if (!worker->send_envelope(0, Envelope{.kind = 3})) ++refused;
            }
        }
        DataResult on_data(ConnRef, std::span<const uint8_t> bytes) override { return {bytes.size(), 0}; }
        void on_deadline(ConnRef) override {}
        void on_close(ConnRef, CloseReason) override {}
        void on_shutdown() override {}
    };
    // a's listener is the byte handler; a second listener of a sends.
    Sender sender;
    sender.worker = a.worker.get();
    ListenerOptions second;
    second.addr = "127.0.0.1";
    second.port = free_port();
    second.handler = &sender;
    a.worker->add_listener(second);
    Worker* peers[] = {a.worker.get(), b.worker.get()};
    a.start(peers);
    b.start(peers);
    const int fd = connect_to(second.port);
    REQUIRE(fd >= 0);
    REQUIRE(wait_for([&] { return b.envelopes.count == 30000 && a.envelopes.count == 30000; }));
    CHECK(sender.refused == 0);
    CHECK(b.envelopes.kind_sum == 2 * 30000);
    CHECK(a.envelopes.kind_sum == 3 * 30000);
    CHECK(a.block->envelopes_out.get() == 60000);
    CHECK(b.block->envelopes_in.get() == 30000);
    ::close(fd);
}

TEST_CASE("blocking pool: a slow job does not stop the loop; its result comes back as an envelope") {
    TestWorker w;
    w.start();
    BlockingPool pool("test-pool", 1, 2);
    std::atomic<bool> job_done{false};
    REQUIRE(pool.submit(*w.worker, [&] {
        std::this_thread::sleep_for(300ms);
        job_done = true;
        return Envelope{.kind = 7, .arg = 42};
    }));
    // While the job blocks its thread, the worker echoes.
    const int fd = connect_to(w.port);
    REQUIRE(fd >= 0);
    REQUIRE(send(fd, "x", 1, 0) == 1);
    CHECK(read_exactly(fd, 1) == "x");
    CHECK_FALSE(job_done);
    REQUIRE(wait_for([&] { return w.envelopes.count == 1; }));
    CHECK(w.envelopes.kind_sum == 7);
    // Bounded: one running, two queued, the next refused.
    REQUIRE(pool.submit(*w.worker, [] {
        std::this_thread::sleep_for(100ms);
        return Envelope{.kind = 1};
    }));
    std::this_thread::sleep_for(20ms);
    CHECK(pool.submit(*w.worker, [] { return Envelope{.kind = 1}; }));
    CHECK(pool.submit(*w.worker, [] { return Envelope{.kind = 1}; }));
    CHECK_FALSE(pool.submit(*w.worker, [] { return Envelope{.kind = 1}; }));
    pool.stop();  // runs what was queued
    REQUIRE(wait_for([&] { return w.envelopes.count == 4; }));
    CHECK_FALSE(pool.submit(*w.worker, [] { return Envelope{}; }));
    ::close(fd);
}

namespace {

// `count` bytes of a packet's body (anything but the handler's commands).
bool send_body(int fd, size_t count) {
    const std::string body(count, '.');
    return send(fd, body.data(), body.size(), 0) == ssize_t(body.size());
}

}  // namespace

TEST_CASE("reassembly: memory grows as the bytes of a split packet arrive, not as announced") {
    TestWorker w;
    w.start();
    const auto held = [&] { return w.block->reassembly_bytes.get(); };
    const int fd = connect_to(w.port);
    REQUIRE(fd >= 0);
    REQUIRE(send(fd, "B", 1, 0) == 1);  // announces a 1 MiB packet
    REQUIRE(send_body(fd, 1000));
    // The power of two that holds the 1001 bytes, not the megabyte announced.
    CHECK(wait_for([&] { return held() == 1024; }));
    REQUIRE(send_body(fd, 100u << 10));
    CHECK(wait_for([&] { return held() == 128u << 10; }));
    REQUIRE(send_body(fd, kBigPacket - 1 - 1000 - (100u << 10)));
    CHECK(read_exactly(fd, 1) == "k");
    // At most the packet's size on the way, and nothing once it is whole.
    CHECK(wait_for([&] { return held() == 0; }));
    CHECK(w.handler.closed == 0);
    ::close(fd);
}

TEST_CASE("reassembly budget: connections announcing big packets do not get an honest split packet refused") {
    WorkerOptions options;
    options.reassembly_budget = 2 * kBigPacket + 1024;  // what two announcements used to reserve, and a little
    TestWorker w(0, options);
    w.start();
    int hogs[2];
    for (int& hog : hogs) {
        hog = connect_to(w.port);
        REQUIRE(hog >= 0);
        REQUIRE(send(hog, "B", 1, 0) == 1);
        REQUIRE(send_body(hog, 10));  // and then trickles (or not)
    }
    REQUIRE(wait_for([&] { return w.block->reassembly_bytes.get() == 2 * 64; }));
    const int honest = connect_to(w.port);
    REQUIRE(honest >= 0);
    REQUIRE(send(honest, "S", 1, 0) == 1);  // a 4 KiB packet split across two reads
    REQUIRE(send_body(honest, 2000));
    REQUIRE(wait_for([&] { return w.block->reassembly_bytes.get() == 2 * 64 + 2048; }));
    REQUIRE(send_body(honest, kSmallPacket - 1 - 2000));
    CHECK(read_exactly(honest, 1) == "k");
    CHECK(w.handler.closed == 0);
    for (int hog : hogs) ::close(hog);
    ::close(honest);
}

TEST_CASE("reassembly budget: when it is full the largest holder is closed, not the connection asking") {
    WorkerOptions options;
    options.reassembly_budget = 64u << 10;
    TestWorker w(0, options);
    w.start();
    const int hog = connect_to(w.port);
    REQUIRE(hog >= 0);
    REQUIRE(send(hog, "B", 1, 0) == 1);
    REQUIRE(send_body(hog, 40u << 10));
    REQUIRE(wait_for([&] { return w.block->reassembly_bytes.get() == 64u << 10; }));  // the whole budget
    const int honest = connect_to(w.port);
    REQUIRE(honest >= 0);
    REQUIRE(send(honest, "S", 1, 0) == 1);
    REQUIRE(send_body(honest, 100));
    REQUIRE(wait_for([&] { return w.handler.closed == 1; }));
    CHECK(w.handler.last_reason == int(CloseReason::ReassemblyBudget));
    CHECK(read_exactly(hog, 1).empty());  // the hog is the one closed
    REQUIRE(send_body(honest, kSmallPacket - 1 - 100));
    CHECK(read_exactly(honest, 1) == "k");
    CHECK(w.handler.closed == 1);

    // Alone and over the budget, the asker is the largest: it pays.
    REQUIRE(send(honest, "B", 1, 0) == 1);
    REQUIRE(send_body(honest, 70u << 10));
    REQUIRE(wait_for([&] { return w.handler.closed == 2; }));
    CHECK(w.block->closed[int(CloseReason::ReassemblyBudget)].get() == 2);
    CHECK(read_exactly(honest, 1).empty());
    CHECK(wait_for([&] { return w.block->reassembly_bytes.get() == 0; }));
    ::close(hog);
    ::close(honest);
}

TEST_CASE("reassembly: one connection may hold no more than its share of the budget") {
    WorkerOptions options;
    options.reassembly_per_connection = 8u << 10;
    TestWorker w(0, options);
    w.start();
    const int fd = connect_to(w.port);
    REQUIRE(fd >= 0);
    REQUIRE(send(fd, "S", 1, 0) == 1);  // a packet within the share is taken
    REQUIRE(send_body(fd, kSmallPacket - 1));
    CHECK(read_exactly(fd, 1) == "k");
    REQUIRE(send(fd, "B", 1, 0) == 1);
    REQUIRE(send_body(fd, 10u << 10));
    REQUIRE(wait_for([&] { return w.handler.closed == 1; }));
    CHECK(w.handler.last_reason == int(CloseReason::ReassemblyBudget));
    CHECK(w.block->reassembly_bytes.get() == 0);
    ::close(fd);
}

TEST_CASE("reassembly: a split packet trickling in is closed at the reassembly deadline; a prompt one is not") {
    WorkerOptions options;
    options.reassembly_timeout_ms = 400;
    TestWorker w(0, options);
    w.start();
    const int trickler = connect_to(w.port), prompt = connect_to(w.port);
    REQUIRE(trickler >= 0);
    REQUIRE(prompt >= 0);
    const auto t0 = steady_clock::now();
    REQUIRE(send(trickler, "B", 1, 0) == 1);
    REQUIRE(send(prompt, "S", 1, 0) == 1);
    std::this_thread::sleep_for(200ms);
    REQUIRE(send_body(prompt, kSmallPacket - 1));
    CHECK(read_exactly(prompt, 1) == "k");
    while (w.handler.closed == 0 && steady_clock::now() - t0 < 2s) {
        send_body(trickler, 1);  // a byte every 50 ms: never idle, never whole
        std::this_thread::sleep_for(50ms);
    }
    const auto closed_after = duration_cast<milliseconds>(steady_clock::now() - t0).count();
    REQUIRE(w.handler.closed == 1);
    CHECK(w.handler.last_reason == int(CloseReason::ReassemblyTimeout));
    CHECK(closed_after >= 400);
    CHECK(closed_after < 1000);
    CHECK(read_exactly(trickler, 1).empty());
    // The prompt one started a new packet: its own time, not the first one's.
    REQUIRE(send(prompt, "S", 1, 0) == 1);
    std::this_thread::sleep_for(250ms);
    REQUIRE(send_body(prompt, kSmallPacket - 1));
    CHECK(read_exactly(prompt, 1) == "k");
    CHECK(w.handler.closed == 1);
    ::close(trickler);
    ::close(prompt);
}

TEST_CASE("accept back-pressure: at max_pending the worker stops accepting; connections wait in the backlog") {
    TestWorker w(0, {}, 2);
    w.start();
    std::vector<int> fds;
    for (int i = 0; i < 5; ++i) {
        fds.push_back(connect_to(w.port));
        REQUIRE(fds.back() >= 0);  // the kernel completes the TCP handshake: in the backlog
    }
    REQUIRE(wait_for([&] { return w.handler.opened >= 2; }));
    std::this_thread::sleep_for(100ms);
    CHECK(w.handler.opened.load() == 2);
    CHECK(w.block->accept_pauses.get() == 1);
    // Each established connection makes room for one more; none was reset.
    REQUIRE(send(fds[0], "E", 1, 0) == 1);
    REQUIRE(wait_for([&] { return w.handler.opened == 3; }));
    REQUIRE(send(fds[1], "E", 1, 0) == 1);
    REQUIRE(wait_for([&] { return w.handler.opened == 4; }));
    // So does a pending connection that closes.
    ::close(fds[2]);
    REQUIRE(wait_for([&] { return w.handler.opened == 5; }));
    CHECK(w.handler.closed == 1);
    fds.erase(fds.begin() + 2);
    for (int fd : fds) {
        REQUIRE(send(fd, "z", 1, 0) == 1);
        CHECK(read_exactly(fd, 1) == "z");
        ::close(fd);
    }
}

TEST_CASE("slot table full: a connection beyond the worker's slots is closed at once and counted; a close frees a slot") {
    WorkerOptions options;
    options.slots = 64;  // max_conns is 1000: the table is the limit
    TestWorker w(0, options);
    w.start();
    std::vector<int> fds;
    for (uint32_t i = 0; i < w.worker->slots(); ++i) {
        fds.push_back(connect_to(w.port));
        REQUIRE(fds.back() >= 0);
    }
    REQUIRE(wait_for([&] { return w.handler.opened == int(w.worker->slots()); }));
    const int extra = connect_to(w.port);
    REQUIRE(extra >= 0);
    CHECK(read_exactly(extra, 1).empty());  // closed by the server
    // Counted when the worker handles the accept's completion, which may
    // come after the client has seen the close.
    CHECK(wait_for([&] { return w.block->rejected_capacity.get() == 1; }));
    ::close(extra);
    ::close(fds.back());
    fds.pop_back();
    REQUIRE(wait_for([&] { return w.handler.closed == 1; }));
    fds.push_back(connect_to(w.port));
    REQUIRE(send(fds.back(), "y", 1, 0) == 1);
    CHECK(read_exactly(fds.back(), 1) == "y");
    for (int fd : fds) ::close(fd);
}

TEST_CASE("epoll: out of descriptors, a new connection is closed at once and counted, not left to spin the loop") {
    // Direct descriptors (io_uring) do not count against the process's
    // open-files limit: only epoll's connections do.
    if (backend_under_test() != IoBackendKind::Epoll) return;
    TestWorker w;
    w.start();
    const int first = connect_to(w.port);
    REQUIRE(first >= 0);
    REQUIRE(wait_for([&] { return w.handler.opened == 1; }));
    const int extra = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // made while descriptors remain
    REQUIRE(extra >= 0);
    rlimit saved{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    rlimit low = saved;
    low.rlim_cur = uint64_t(extra) + 8;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    std::vector<int> fillers;  // every descriptor below the limit taken
    for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers.push_back(fd);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(w.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(extra, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const bool connected = ::connect(extra, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
    const bool closed_by_server = connected && read_exactly(extra, 1).empty() && errno != EAGAIN;
    const bool counted = wait_for([&] { return w.block->rejected_capacity.get() == 1; });
    for (int fd : fillers) ::close(fd);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    CHECK(connected);
    CHECK(closed_by_server);
    CHECK(counted);
    CHECK(w.handler.opened == 1);
    ::close(extra);
    // Descriptors again: connections are served.
    const int later = connect_to(w.port);
    REQUIRE(later >= 0);
    REQUIRE(send(later, "x", 1, 0) == 1);
    CHECK(read_exactly(later, 1) == "x");
    ::close(later);
    ::close(first);
}

TEST_CASE("epoll: out of descriptors with no spare to shed one with, the listener rests instead of spinning") {
    if (backend_under_test() != IoBackendKind::Epoll) return;
    const int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);  // the lowest free number before the worker's own
    REQUIRE(probe >= 0);
    ::close(probe);
    TestWorker w;
    w.start();
    const int extra = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(extra >= 0);
    rlimit saved{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    rlimit low = saved;
    // Below the worker's spare descriptor: closing it frees a number the
    // limit forbids, as when another thread takes the freed one first.
    low.rlim_cur = uint64_t(probe);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    std::vector<int> fillers;
    for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers.push_back(fd);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(w.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool connected = ::connect(extra, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;  // waits in the backlog
    std::this_thread::sleep_for(500ms);
    const uint64_t refused = w.block->rejected_capacity.get();
    for (int fd : fillers) ::close(fd);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    CHECK(connected);
    CHECK(refused >= 1);
    CHECK(refused <= 10);  // one try per 100 ms rest; a spinning listener counts thousands
    // Descriptors again: the connection left in the backlog is taken and served.
    REQUIRE(send(extra, "y", 1, 0) == 1);
    CHECK(read_exactly(extra, 1) == "y");
    ::close(extra);
}

TEST_CASE("accept back-pressure: connections refused over max_conns give their accept back") {
    // One-shot accepts: a refused connection must re-arm its accept, or ten
    // refusals would leave the listener with none in flight.
    TestWorker w(0, {}, 4);
    w.limits.max_conns = 1;
    w.start();
    const int first = connect_to(w.port);
    REQUIRE(first >= 0);
    REQUIRE(wait_for([&] { return w.handler.opened == 1; }));
    for (int i = 0; i < 10; ++i) {
        const int refused = connect_to(w.port);
        REQUIRE(refused >= 0);
        CHECK(read_exactly(refused, 1).empty());  // closed by the server
        ::close(refused);
    }
    CHECK(w.block->closed[int(CloseReason::Rejected)].get() == 10);
    ::close(first);
    REQUIRE(wait_for([&] { return w.handler.closed == 1; }));
    const int later = connect_to(w.port);
    REQUIRE(later >= 0);
    REQUIRE(send(later, "y", 1, 0) == 1);
    CHECK(read_exactly(later, 1) == "y");
    CHECK(w.handler.opened == 2);
    ::close(later);
}

TEST_CASE("listener cap: past max_open the listener's new connections are refused; a close makes room") {
    TestWorker w(0, {}, 0, 2);
    w.start();
    const int first = connect_to(w.port);
    const int second = connect_to(w.port);
    REQUIRE(first >= 0);
    REQUIRE(second >= 0);
    REQUIRE(wait_for([&] { return w.handler.opened == 2; }));
    for (int i = 0; i < 3; ++i) {
        const int refused = connect_to(w.port);
        REQUIRE(refused >= 0);
        CHECK(read_exactly(refused, 1).empty());  // closed by the server
        ::close(refused);
    }
    CHECK(w.block->closed[int(CloseReason::Rejected)].get() == 3);
    CHECK(w.handler.opened == 2);
    // A refusal by the listener's cap takes nothing of the server-wide count.
    CHECK(w.limits.open_conns.load() == 2);
    ::close(first);
    REQUIRE(wait_for([&] { return w.limits.open_conns.load() == 1; }));  // its slot released
    const int later = connect_to(w.port);
    REQUIRE(later >= 0);
    REQUIRE(send(later, "y", 1, 0) == 1);
    CHECK(read_exactly(later, 1) == "y");
    CHECK(w.handler.opened == 3);
    ::close(second);
    ::close(later);
}

TEST_CASE("listener cap: a handler that makes room has its oldest closed and the new one accepted") {
    TestWorker w(0, {}, 0, 2);
    w.handler.evict_first = true;
    w.start();
    const int first = connect_to(w.port);
    const int second = connect_to(w.port);
    REQUIRE(wait_for([&] { return w.handler.opened == 2; }));
    const int third = connect_to(w.port);
    REQUIRE(third >= 0);
    REQUIRE(send(third, "z", 1, 0) == 1);
    CHECK(read_exactly(third, 1) == "z");  // accepted
    CHECK(read_exactly(first, 1).empty());  // the first made room
    CHECK(w.block->closed[int(CloseReason::Rejected)].get() == 0);
    const int fourth = connect_to(w.port);  // the handler makes no more room
    REQUIRE(fourth >= 0);
    CHECK(read_exactly(fourth, 1).empty());
    CHECK(w.block->closed[int(CloseReason::Rejected)].get() == 1);
    for (int fd : {first, second, third, fourth}) ::close(fd);
}

TEST_CASE("stop: the listeners leave the port at once") {
    auto w = std::make_unique<TestWorker>();
    w->start();
    const uint16_t port = w->port;
    const int fd = connect_to(port);
    REQUIRE(fd >= 0);
    w->worker->request_stop(2000);
    // The connection holds the worker in its shutdown; the port is free already.
    REQUIRE(wait_for([&] {
        const int probe = connect_to(port);
        if (probe >= 0) ::close(probe);
        return probe < 0;
    }));
    ::close(fd);
    w.reset();
}

TEST_CASE("ConnId packs worker, slot and generation") {
    const ConnId id = ConnId::make(4095, (1u << 20) - 1, ConnId::kGenerationMask);
    CHECK(id.worker() == 4095);
    CHECK(id.slot() == (1u << 20) - 1);
    CHECK(id.generation() == ConnId::kGenerationMask);
    const ConnId small = ConnId::make(1, 2, 3);
    CHECK(small.worker() == 1);
    CHECK(small.slot() == 2);
    CHECK(small.generation() == 3);
    CHECK_FALSE(ConnId{});
}
