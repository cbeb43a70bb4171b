#include "bench_connection_worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "bench_connection_timer_wheel.h"
#include "limaoim/proto/codec.h"
#include "limaoim/proto/crypto.h"

#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51  // Linux 6.3; older glibc headers lack it
#endif

namespace limaoim::bench {

namespace {

namespace proto = limaoim::proto;
namespace crypto = limaoim::proto::crypto;

constexpr int64_t kTickNs = 100'000'000;
// Handshakes in flight per worker. Bounds the server's accept backlog use
// (a SYN dropped on a full queue costs a 1 s retransmit) and the handshake
// slot pool below.
constexpr uint32_t kMaxHandshakesInFlight = 512;
// Launches between two epoll_wait calls, so completions are served while
// ramping as fast as possible.
constexpr uint32_t kLaunchBatch = 64;
constexpr int kRateWaitMs = 10;  // token refill granularity under -rate
constexpr uint8_t kMissedHeartbeatsToDrop = 3;
constexpr uint16_t kPortWindow = 64;
constexpr uint8_t kPing = 0x70;
constexpr size_t kConnackCapacity = 128;  // a v4 CONNACK is 74 bytes
constexpr int kEpollBatch = 1024;
constexpr int64_t kStartPollNs = 1'000'000;  // how often a prepared worker looks for the start

volatile sig_atomic_t g_terminate = 0;

void on_terminate(int) { g_terminate = 1; }

int64_t monotonic_ns() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1'000'000'000 + now.tv_nsec;
}

int64_t realtime_ms() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec * 1000 + now.tv_nsec / 1'000'000;
}

uint32_t to_ticks(int64_t ns) { return static_cast<uint32_t>((ns + kTickNs - 1) / kTickNs); }

FailReason reason_for_errno(int error) {
    switch (error) {
        case ECONNREFUSED: return FailReason::Refused;
        case ETIMEDOUT: return FailReason::Timeout;
        case ECONNRESET:
        case EPIPE: return FailReason::Reset;
        case EADDRNOTAVAIL: return FailReason::AddrNotAvail;
        default: return FailReason::Other;
    }
}

// The ephemeral port range, from which each socket gets a small window.
std::pair<uint16_t, uint16_t> ephemeral_port_range() {
    unsigned low = 32768, high = 60999;
    if (FILE* file = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
        if (std::fscanf(file, "%u %u", &low, &high) != 2) low = 32768, high = 60999;
        std::fclose(file);
    }
    return {static_cast<uint16_t>(low), static_cast<uint16_t>(high)};
}

struct SplitMix64 {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

enum class State : uint8_t { Waiting, Connecting, AwaitingConnack, Online, Ended };

// Per client: 12 bytes. The cid is first_cid + index.
struct Client {
    int32_t fd = -1;
    uint32_t deadline = 0;   // timer wheel tick of the pending timer
    uint16_t handshake = 0;  // slot in the handshake pool while connecting
    State state = State::Waiting;
    bool ping_outstanding : 1 = false;  // no PONG since the last PING
    uint8_t missed_heartbeats : 7 = 0;  // consecutive heartbeats that found a PING unanswered
};
static_assert(sizeof(Client) == 12);

// State needed only between connect() and the CONNACK; pooled because at most
// kMaxHandshakesInFlight exist at once.
struct Handshake {
    crypto::KeyPair keys;  // unused with -client-keys
    uint8_t received[kConnackCapacity];
    uint8_t received_length;
};

class ClientWorker {
public:
    ClientWorker(const Options& options, const WorkerPlan& plan, const SharedControl& control,
                 WorkerCounters& counters)
        : options_(options), plan_(plan), control_(control), counters_(counters),
          clients_(plan.count),
          handshakes_(kMaxHandshakesInFlight),
          wheel_(to_ticks(std::max(options.heartbeat_ns, options.connect_timeout_ns))),
          heartbeat_ticks_(to_ticks(options.heartbeat_ns)),
          connect_timeout_ticks_(to_ticks(options.connect_timeout_ns)),
          launch_rate_(static_cast<double>(options.rate) / plan.workers),
          random_{static_cast<uint64_t>(monotonic_ns()) ^ (uint64_t{plan.index} << 48)} {
        for (uint32_t slot = kMaxHandshakesInFlight; slot > 0; --slot) free_handshakes_.push_back(static_cast<uint16_t>(slot - 1));
        const auto [low, high] = ephemeral_port_range();
        port_low_ = low;
        port_windows_ = high >= low ? (high - low + 1) / kPortWindow : 0;
        use_port_windows_ = port_windows_ > 1;
    }

    ~ClientWorker() {
        if (epoll_fd_ >= 0) close(epoll_fd_);
    }

    // Before the clock starts: makes the -client-keys key pairs.
    bool prepare();
    // Waits for the parent to start the clock; false if told to stop first.
    bool wait_for_start();
    int run();

private:
    uint32_t current_tick() const { return static_cast<uint32_t>((monotonic_ns() - start_ns_) / kTickNs); }
    bool stopping() const { return g_terminate || control_.stop.load(std::memory_order_relaxed); }

    int wait_timeout_ms() const;
    void launch_due();
    void launch(uint32_t index);
    int open_socket(uint32_t index, bool with_port_window);
    void send_connect(uint32_t index);
    void receive_connack(uint32_t index);
    bool accept_connack(uint32_t index, const proto::Frame& frame, FailReason& reason);
    void come_online(uint32_t index, std::span<const uint8_t> extra);
    void receive_online(uint32_t index);
    void consume_online_bytes(uint32_t index, std::span<const uint8_t> bytes);
    void on_event(const epoll_event& event);
    void on_timer(uint32_t index, uint32_t tick);
    void heartbeat(uint32_t index);

    void fail(uint32_t index, FailReason reason);
    void end(uint32_t index);
    void release_handshake(Client& client);
    bool watch(uint32_t index, uint32_t events, int op);
    void close_all();

    const Options& options_;
    const WorkerPlan& plan_;
    const SharedControl& control_;
    WorkerCounters& counters_;

    int epoll_fd_ = -1;
    int64_t start_ns_ = 0;  // the parent's control_.start_ns, once published
    std::vector<Client> clients_;
    std::vector<Handshake> handshakes_;
    std::vector<uint16_t> free_handshakes_;
    TimerWheel wheel_;
    uint32_t heartbeat_ticks_;
    uint32_t connect_timeout_ticks_;

    uint32_t next_launch_ = 0;
    uint64_t live_ = 0;  // launched and not yet ended
    double launch_rate_;  // per second, 0 = unlimited
    double launch_tokens_ = 1;
    int64_t last_refill_ns_ = 0;

    uint16_t port_low_ = 0;
    uint32_t port_windows_ = 0;
    bool use_port_windows_ = false;

    SplitMix64 random_;
    // -client-keys: the public keys, base64-encoded once, used round robin.
    std::vector<std::array<char, crypto::base64_encoded_size(32)>> client_keys_;
    std::vector<uint8_t> send_buffer_;
    std::string token_;
    std::array<uint8_t, 4096> receive_buffer_{};
};

bool ClientWorker::prepare() {
    client_keys_.resize(options_.client_keys);
    for (auto& encoded : client_keys_) {
        crypto::KeyPair keys;
        if (!crypto::generate_keypair(keys)) {
            std::fputs("bench_connection: generating a client key pair failed\n", stderr);
            return false;
        }
        crypto::base64_encode(keys.public_key, encoded.data());
    }
    return true;
}

bool ClientWorker::wait_for_start() {
    while ((start_ns_ = control_.start_ns.load(std::memory_order_acquire)) == 0) {
        if (stopping()) return false;
        const timespec pause{0, kStartPollNs};
        nanosleep(&pause, nullptr);
    }
    return true;
}

int ClientWorker::run() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
        std::perror("bench_connection: epoll_create1");
        return 1;
    }
    last_refill_ns_ = monotonic_ns();
    std::array<epoll_event, kEpollBatch> events;
    while (!stopping() && (next_launch_ < clients_.size() || live_ > 0)) {
        launch_due();
        const int ready = epoll_wait(epoll_fd_, events.data(), kEpollBatch, wait_timeout_ms());
        if (ready < 0 && errno != EINTR) {
            std::perror("bench_connection: epoll_wait");
            close_all();
            return 1;
        }
        for (int i = 0; i < ready; ++i) on_event(events[i]);
        wheel_.advance_to(current_tick(), [this](uint32_t index, uint32_t tick) { on_timer(index, tick); });
    }
    close_all();
    return 0;
}

// Until the next wheel tick, or sooner while launches are waiting.
int ClientWorker::wait_timeout_ms() const {
    const bool launches_left = next_launch_ < clients_.size() && !free_handshakes_.empty();
    if (launches_left && (launch_rate_ == 0 || launch_tokens_ >= 1)) return 0;
    const int64_t until_tick = start_ns_ + (int64_t{current_tick()} + 1) * kTickNs - monotonic_ns();
    const int timeout = static_cast<int>(std::clamp<int64_t>(until_tick / 1'000'000 + 1, 1, kTickNs / 1'000'000));
    return launches_left ? std::min(timeout, kRateWaitMs) : timeout;
}

void ClientWorker::launch_due() {
    if (stopping()) return;
    if (launch_rate_ > 0) {
        const int64_t now = monotonic_ns();
        const double burst = std::max(1.0, launch_rate_ / 10);
        launch_tokens_ = std::min(burst, launch_tokens_ + launch_rate_ * static_cast<double>(now - last_refill_ns_) / 1e9);
        last_refill_ns_ = now;
    }
    for (uint32_t launched = 0; launched < kLaunchBatch && next_launch_ < clients_.size() && !free_handshakes_.empty();
         ++launched) {
        if (launch_rate_ > 0) {
            if (launch_tokens_ < 1) return;
            launch_tokens_ -= 1;
        }
        launch(next_launch_++);
    }
}

// A socket bound to its source address (if any) and limited to a small
// window of the ephemeral range, so that connect() finds a free port in a few
// probes instead of scanning past thousands of taken ones. Returns the fd or
// -errno.
int ClientWorker::open_socket(uint32_t index, bool with_port_window) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    const uint64_t global = plan_.first_global_index + index;
    const uint64_t sources = std::max<size_t>(1, options_.sources.size());
    if (with_port_window) {
        const uint32_t window = static_cast<uint32_t>((global / sources) % port_windows_);
        const uint32_t low = port_low_ + window * kPortWindow;
        const uint32_t range = low | ((low + kPortWindow - 1) << 16);
        if (setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &range, sizeof range) != 0 && errno == ENOPROTOOPT)
            use_port_windows_ = false;  // kernel before 6.3: plain ephemeral search
    }
    if (!options_.sources.empty()) {
        const int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        sockaddr_in source{};
        source.sin_family = AF_INET;
        source.sin_addr = options_.sources[global % sources];
        if (bind(fd, reinterpret_cast<const sockaddr*>(&source), sizeof source) != 0) {
            const int error = errno;
            close(fd);
            return -error;
        }
    }
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_addr = options_.server;
    server.sin_port = htons(options_.port);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0 && errno != EINPROGRESS) {
        const int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

void ClientWorker::launch(uint32_t index) {
    Client& client = clients_[index];
    ++live_;
    client.state = State::Connecting;
    client.handshake = free_handshakes_.back();
    free_handshakes_.pop_back();
    handshakes_[client.handshake].received_length = 0;
    int fd = open_socket(index, use_port_windows_);
    // A window can be full of ports still held from an earlier run; the
    // whole range may not be.
    if (fd == -EADDRNOTAVAIL && use_port_windows_) fd = open_socket(index, false);
    if (fd < 0) return fail(index, reason_for_errno(-fd));
    client.fd = fd;
    client.deadline = wheel_.schedule(index, connect_timeout_ticks_);
    if (!watch(index, EPOLLOUT, EPOLL_CTL_ADD)) fail(index, FailReason::Other);
}

bool ClientWorker::watch(uint32_t index, uint32_t events, int op) {
    epoll_event event{};
    event.events = events;
    event.data.u64 = index;
    return epoll_ctl(epoll_fd_, op, clients_[index].fd, &event) == 0;
}

void ClientWorker::on_event(const epoll_event& event) {
    const auto index = static_cast<uint32_t>(event.data.u64);
    switch (clients_[index].state) {
        case State::Connecting: send_connect(index); break;
        case State::AwaitingConnack: receive_connack(index); break;
        case State::Online: receive_online(index); break;
        case State::Waiting:
        case State::Ended: break;
    }
}

void ClientWorker::send_connect(uint32_t index) {
    Client& client = clients_[index];
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(client.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
    if (error != 0) return fail(index, reason_for_errno(error));

    char uid[24];
    const auto uid_end = std::to_chars(uid, uid + sizeof uid, plan_.first_cid + index).ptr;
    char client_key[crypto::base64_encoded_size(32)];
    proto::ConnectPacket connect;
    connect.version = options_.version;
    connect.device_flag = options_.device_flag;
    connect.device_id = "bench";
    connect.client_timestamp = realtime_ms();
    connect.uid = std::string_view(uid, uid_end - uid);
    if (options_.token_prefix.empty()) {
        connect.token = options_.token;
    } else {
        token_.assign(options_.token_prefix).append(connect.uid);
        connect.token = token_;
    }
    if (proto::has_crypto(options_.version) && !client_keys_.empty()) {
        const auto& encoded = client_keys_[(plan_.first_global_index + index) % client_keys_.size()];
        connect.client_key = std::string_view(encoded.data(), encoded.size());
    } else if (proto::has_crypto(options_.version)) {
        Handshake& handshake = handshakes_[client.handshake];
        if (!crypto::generate_keypair(handshake.keys)) return fail(index, FailReason::Other);
        connect.client_key = std::string_view(client_key, crypto::base64_encode(handshake.keys.public_key, client_key));
    }
    const proto::Packet packet = connect;
    const size_t size = proto::encoded_size(packet, options_.version);
    if (send_buffer_.size() < size) send_buffer_.resize(size);
    const size_t written = proto::encode(packet, options_.version, send_buffer_);
    // A fresh socket's send buffer always takes one small packet whole.
    const ssize_t sent = written == 0 ? -1 : send(client.fd, send_buffer_.data(), written, MSG_NOSIGNAL);
    if (sent != static_cast<ssize_t>(written)) return fail(index, sent < 0 ? reason_for_errno(errno) : FailReason::Other);
    client.state = State::AwaitingConnack;
    if (!watch(index, EPOLLIN, EPOLL_CTL_MOD)) fail(index, FailReason::Other);
}

void ClientWorker::receive_connack(uint32_t index) {
    Client& client = clients_[index];
    Handshake& handshake = handshakes_[client.handshake];
    const ssize_t received = recv(client.fd, handshake.received + handshake.received_length,
                                  kConnackCapacity - handshake.received_length, 0);
    if (received == 0) return fail(index, FailReason::Reset);
    if (received < 0) {
        if (errno != EAGAIN && errno != EINTR) fail(index, reason_for_errno(errno));
        return;
    }
    handshake.received_length += static_cast<uint8_t>(received);
    const std::span<const uint8_t> stream(handshake.received, handshake.received_length);
    const proto::SplitResult split = proto::split_frame(stream);
    if (split.status == proto::SplitStatus::Incomplete) {
        if (split.needed > kConnackCapacity || handshake.received_length == kConnackCapacity)
            fail(index, FailReason::BadConnack);
        return;
    }
    FailReason reason = FailReason::BadConnack;
    if (split.status == proto::SplitStatus::Error || !accept_connack(index, split.frame, reason)) return fail(index, reason);
    come_online(index, stream.subspan(split.frame.size));
}

// The CONNACK must say success and, from v3 on, carry a 32-byte server key
// (base64) and a 16-byte salt. Without -client-keys the AES key is derived as
// a real client would, which also refuses a key giving an all-zero secret;
// with -client-keys the client stops after the size checks.
bool ClientWorker::accept_connack(uint32_t index, const proto::Frame& frame, FailReason& reason) {
    reason = FailReason::BadConnack;
    proto::Packet packet;
    if (frame.type() != proto::PacketType::Connack || proto::decode(frame, options_.version, packet) != proto::DecodeError::None)
        return false;
    const auto& connack = std::get<proto::ConnackPacket>(packet);
    if (connack.reason_code != static_cast<uint8_t>(proto::ReasonCode::Success)) {
        reason = FailReason::AuthFail;
        return false;
    }
    if (!proto::has_crypto(options_.version)) return true;
    crypto::Key32 server_key;
    uint8_t decoded[48];
    const auto decoded_length = crypto::base64_decode(connack.server_key, decoded, sizeof decoded);
    if (!decoded_length || *decoded_length != server_key.size() || connack.salt.size() != crypto::kSaltLength) return false;
    if (!client_keys_.empty()) return true;
    std::copy_n(decoded, server_key.size(), server_key.begin());
    crypto::Key32 secret;
    if (!crypto::shared_secret(handshakes_[clients_[index].handshake].keys.private_key, server_key, secret)) return false;
    // Unused afterwards (no messages are sent), but part of a login's cost.
    [[maybe_unused]] const crypto::SessionKey session = crypto::derive_session_key(secret, connack.salt);
    return true;
}

void ClientWorker::come_online(uint32_t index, std::span<const uint8_t> extra) {
    Client& client = clients_[index];
    release_handshake(client);
    client.state = State::Online;
    WorkerCounters::bump(counters_.came_online);
    counters_.last_online_ns.store(monotonic_ns(), std::memory_order_relaxed);
    // First PING at a random point of the interval so that the heartbeats of
    // a fast ramp do not all fall on the same tick.
    client.deadline = wheel_.schedule(index, 1 + static_cast<uint32_t>(random_.next() % heartbeat_ticks_));
    if (!extra.empty()) consume_online_bytes(index, extra);
}

void ClientWorker::receive_online(uint32_t index) {
    const ssize_t received = recv(clients_[index].fd, receive_buffer_.data(), receive_buffer_.size(), 0);
    if (received < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (received <= 0) {
        WorkerCounters::bump(counters_.closed_by_peer);
        return end(index);
    }
    consume_online_bytes(index, std::span(receive_buffer_.data(), static_cast<size_t>(received)));
}

// An online bench client only expects PONGs, which are one byte each. Any
// other packet (a DISCONNECT after a kick) means the server is sending it
// away: counted as closed by the peer, no reassembly needed.
void ClientWorker::consume_online_bytes(uint32_t index, std::span<const uint8_t> bytes) {
    for (const uint8_t byte : bytes) {
        if (byte >> 4 != static_cast<uint8_t>(proto::PacketType::Pong)) {
            WorkerCounters::bump(counters_.closed_by_peer);
            return end(index);
        }
        WorkerCounters::bump(counters_.pongs_received);
        clients_[index].ping_outstanding = false;
        clients_[index].missed_heartbeats = 0;
    }
}

void ClientWorker::on_timer(uint32_t index, uint32_t tick) {
    Client& client = clients_[index];
    if (client.deadline != tick) return;  // rescheduled or ended since
    switch (client.state) {
        case State::Connecting:
        case State::AwaitingConnack: fail(index, FailReason::Timeout); break;
        case State::Online: heartbeat(index); break;
        case State::Waiting:
        case State::Ended: break;
    }
}

// A heartbeat that finds the previous PING unanswered is a missing PONG;
// after kMissedHeartbeatsToDrop of them in a row the client gives up and
// closes, as the original client does. A PING is sent every interval anyway.
void ClientWorker::heartbeat(uint32_t index) {
    Client& client = clients_[index];
    if (client.ping_outstanding) {
        WorkerCounters::bump(counters_.pongs_missing);
        if (++client.missed_heartbeats >= kMissedHeartbeatsToDrop) {
            WorkerCounters::bump(counters_.dropped);
            return end(index);
        }
    }
    if (send(client.fd, &kPing, 1, MSG_NOSIGNAL) == 1) {
        WorkerCounters::bump(counters_.pings_sent);
    } else if (errno != EAGAIN) {
        WorkerCounters::bump(counters_.closed_by_peer);
        return end(index);
    }
    // Also when the send buffer is full: a server that stops reading is
    // treated like one that stops answering.
    client.ping_outstanding = true;
    client.deadline = wheel_.schedule(index, heartbeat_ticks_);
}

void ClientWorker::fail(uint32_t index, FailReason reason) {
    WorkerCounters::bump(counters_.failed[static_cast<size_t>(reason)]);
    end(index);
}

void ClientWorker::end(uint32_t index) {
    Client& client = clients_[index];
    release_handshake(client);
    if (client.fd >= 0) close(client.fd);
    client.fd = -1;
    client.state = State::Ended;
    --live_;
}

void ClientWorker::release_handshake(Client& client) {
    if (client.state == State::Connecting || client.state == State::AwaitingConnack) free_handshakes_.push_back(client.handshake);
}

void ClientWorker::close_all() {
    for (Client& client : clients_) {
        if (client.fd >= 0) close(client.fd);
        client.fd = -1;
    }
}

}  // namespace

int run_worker(const Options& options, const WorkerPlan& plan, SharedControl& control, WorkerCounters& counters) {
    // Ctrl-C reaches the whole process group: the parent decides when to stop.
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction terminate {};
    terminate.sa_handler = on_terminate;
    sigaction(SIGTERM, &terminate, nullptr);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) return 1;  // the parent died before prctl took effect
    ClientWorker worker(options, plan, control, counters);
    const bool prepared = worker.prepare();
    control.ready.fetch_add(1, std::memory_order_release);
    if (!prepared) return 1;
    if (!worker.wait_for_start()) return 0;
    return worker.run();
}

}  // namespace limaoim::bench
