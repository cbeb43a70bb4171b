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
#include <unordered_map>
#include <variant>
#include <vector>

#include "bench_connection_timer_wheel.h"
#include "bench_ws.h"
#include "limaoim/base64/base64.h"
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
// Launches between two epoll_wait calls, so completions are served while
// ramping as fast as possible.
constexpr uint32_t kLaunchBatch = 64;
// Handshake slots are indexed by 16 bits; a worker holds fewer sockets.
constexpr size_t kMaxHandshakeSlots = 65535;
// Retry backoff: retry_ms x 2^(attempt-1), the doubling stopping at 32 x.
constexpr uint32_t kMaxBackoffDoublings = 5;
constexpr int kRateWaitMs = 10;  // token refill granularity under -rate
constexpr uint8_t kMissedHeartbeatsToDrop = 3;
constexpr uint16_t kPortWindow = 64;
constexpr uint8_t kPing = 0x70;
constexpr size_t kConnackCapacity = 128;  // a LiMaoIM v4 CONNACK is 75 bytes, a WKProto v5 one 84
// -ws: the server's 101 answer is read into the same buffer (~130 bytes).
constexpr size_t kUpgradeCapacity = 512;
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

// RetryWait: a failed attempt waits for its retry (-retry-ms), no socket.
// Upgrading (-ws only): the upgrade request is sent, the 101 not yet read.
enum class State : uint8_t { Waiting, Connecting, Upgrading, AwaitingConnack, Online, RetryWait, Ended };

// Per client: 16 bytes. Index i < plan.count is cid first_cid + i (a -cids,
// "established", client); above that, storm_first_cid + (i - count).
struct Client {
    int32_t fd = -1;
    uint32_t deadline = 0;      // timer wheel tick of the pending timer
    uint32_t ping_sent_us = 0;  // the oldest unanswered PING's send time, microseconds since the start (mod 2^32)
    uint16_t handshake = 0;     // slot in the handshake pool while connecting
    State state = State::Waiting;
    bool ping_outstanding : 1 = false;  // no PONG since the last PING
    uint8_t missed_heartbeats : 2 = 0;  // consecutive heartbeats that found a PING unanswered
    uint8_t failed_attempts : 5 = 0;    // saturates at 31; sets the retry backoff
};
static_assert(sizeof(Client) == 16);

// State needed only between connect() and the CONNACK; pooled (the pool grows
// to the most attempts in flight at once).
struct Handshake {
    crypto::KeyPair keys;  // unused with -client-keys
    int64_t connect_ns;    // connect() called
    int64_t sent_ns;       // CONNECT sent
    // The CONNACK's bytes (-ws: first the 101 answer, then the CONNACK's
    // payload bytes taken out of its frames).
    uint8_t received[kUpgradeCapacity];
    uint16_t received_length;
    char ws_accept[ws::kAcceptLength];  // -ws: the Sec-WebSocket-Accept the 101 must carry
};

// Token bucket of one launch rate. A burst holds at most burst_seconds of
// it: 100 ms for the gentle ramp; a storm catches up on up to 1 s of launches
// a busy (or descheduled) worker missed, so that its offered rate holds.
struct Pacer {
    double rate = 0;  // per second, 0 = unlimited
    double burst_seconds = 0.1;
    double tokens = 1;
    int64_t last_ns = 0;

    void refill(int64_t now) {
        if (rate <= 0) return;
        const double burst = std::max(1.0, rate * burst_seconds);
        tokens = std::min(burst, tokens + rate * static_cast<double>(now - last_ns) / 1e9);
        last_ns = now;
    }
    bool ready() const { return rate <= 0 || tokens >= 1; }
    bool take() {
        if (rate <= 0) return true;
        if (tokens < 1) return false;
        tokens -= 1;
        return true;
    }
};

class ClientWorker {
public:
    ClientWorker(const Options& options, const WorkerPlan& plan, const SharedControl& control,
                 WorkerCounters& counters)
        : options_(options), dialect_(proto::dialect(options.dialect)),
          session_version_(dialect_.session_version(options.version)), plan_(plan), control_(control), counters_(counters),
          clients_(plan.count + plan.storm_count),
          wheel_(to_ticks(std::max({options.heartbeat_ns, options.connect_timeout_ns, max_backoff_ns(options)}))),
          heartbeat_ticks_(to_ticks(options.heartbeat_ns)),
          connect_timeout_ticks_(to_ticks(options.connect_timeout_ns)),
          random_{static_cast<uint64_t>(monotonic_ns()) ^ (uint64_t{plan.index} << 48)} {
        established_pacer_.rate = static_cast<double>(options.rate) / plan.workers;
        storm_pacer_.rate = static_cast<double>(options.storm_rate) / plan.workers;
        storm_pacer_.burst_seconds = 1;
        const auto [low, high] = ephemeral_port_range();
        port_low_ = low;
        port_windows_ = high >= low ? (high - low + 1) / kPortWindow : 0;
        use_port_windows_ = port_windows_ > 1;
        if (options.ws) {
            ws_parsers_.resize(clients_.size());
            ws_host_ = inet_ntoa(options.server);
        }
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
    static int64_t max_backoff_ns(const Options& options) {
        return int64_t{options.retry_ms} * 1'000'000 * (int64_t{1} << kMaxBackoffDoublings) * 3 / 2;
    }
    uint32_t current_tick() const { return static_cast<uint32_t>((monotonic_ns() - start_ns_) / kTickNs); }
    uint32_t now_us32() const { return static_cast<uint32_t>((monotonic_ns() - start_ns_) / 1000); }
    bool stopping() const { return g_terminate || control_.stop.load(std::memory_order_relaxed); }
    bool established(uint32_t index) const { return index < plan_.count; }
    uint64_t cid_of(uint32_t index) const {
        return established(index) ? plan_.first_cid + index : plan_.storm_first_cid + (index - plan_.count);
    }
    uint64_t global_index_of(uint32_t index) const {
        return established(index) ? plan_.first_global_index + index
                                  : plan_.storm_first_global_index + (index - plan_.count);
    }
    bool established_launch_open() const {
        return next_launch_ < plan_.count && (options_.max_inflight == 0 || in_flight_ < options_.max_inflight);
    }
    bool storm_launch_open() const { return storm_started_ && next_storm_ < clients_.size(); }
    bool storm_pending() const { return !storm_started_ && plan_.storm_count > 0; }

    int wait_timeout_ms() const;
    void launch_due();
    bool check_storm_start(int64_t now);
    void launch(uint32_t index, bool retry);
    uint16_t acquire_handshake();
    int open_socket(uint32_t index, bool with_port_window);
    void on_connected(uint32_t index);
    void send_connect(uint32_t index);
    void receive_connack(uint32_t index);
    void process_connack(uint32_t index, int64_t received_ns);
    // -ws
    void send_upgrade(uint32_t index);
    void receive_upgrade(uint32_t index);
    void receive_connack_ws(uint32_t index);
    void feed_connack_ws(uint32_t index, std::span<const uint8_t> bytes, int64_t received_ns);
    void receive_online_ws(uint32_t index);
    enum class ControlAction : uint8_t { None, Closed };
    ControlAction on_ws_control(uint32_t index, uint8_t opcode, std::span<const uint8_t> chunk, size_t offset, size_t total);
    bool send_ws_frame(uint32_t index, uint8_t opcode, std::span<const uint8_t> payload);
    bool accept_connack(uint32_t index, const proto::Frame& frame, FailReason& reason);
    void come_online(uint32_t index, int64_t received_ns, std::span<const uint8_t> extra);
    void receive_online(uint32_t index);
    void consume_online_bytes(uint32_t index, std::span<const uint8_t> bytes);
    void on_event(const epoll_event& event);
    void on_timer(uint32_t index, uint32_t tick);
    void heartbeat(uint32_t index);

    void fail(uint32_t index, FailReason reason);
    void lose(uint32_t index, bool dropped);
    void end(uint32_t index);
    void close_attempt(Client& client);
    void publish_gauges();
    bool watch(uint32_t index, uint32_t events, int op);
    void close_all();

    const Options& options_;
    // -dialect: every packet is coded through it. The server answers at the
    // session version it derives from our CONNECT's (both dialects: ours).
    const proto::Dialect& dialect_;
    const uint8_t session_version_;
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

    uint32_t next_launch_ = 0;  // next -cids client to launch
    uint32_t next_storm_ = 0;   // next storm client (an index >= plan.count), once the storm started
    bool storm_started_ = false;
    uint64_t live_ = 0;         // launched and not yet ended (a client waiting to retry is live)
    uint64_t in_flight_ = 0;    // attempts between connect() and CONNACK or failure
    uint64_t retry_waiting_ = 0;
    Pacer established_pacer_;
    Pacer storm_pacer_;

    uint16_t port_low_ = 0;
    uint32_t port_windows_ = 0;
    bool use_port_windows_ = false;

    SplitMix64 random_;
    // -client-keys: the public keys, base64-encoded once, used round robin.
    std::vector<std::array<char, base64::encoded_size(32)>> client_keys_;
    std::vector<uint8_t> send_buffer_;
    std::string token_;
    std::array<uint8_t, 4096> receive_buffer_{};

    // -ws: a frame parser per client (16 bytes; empty without -ws), the
    // control frames that arrived split (rare: only while split), scratch.
    std::vector<ws::FrameParser> ws_parsers_;
    std::unordered_map<uint32_t, ws::ControlAssembler> ws_controls_;
    std::string ws_host_;  // the server's address, for the Host header
    std::string upgrade_request_;
};

bool ClientWorker::prepare() {
    client_keys_.resize(options_.client_keys);
    for (auto& encoded : client_keys_) {
        crypto::KeyPair keys;
        if (!crypto::generate_keypair(keys)) {
            std::fputs("bench_connection: generating a client key pair failed\n", stderr);
            return false;
        }
        base64::encode(keys.public_key, encoded.data());
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
    established_pacer_.last_ns = monotonic_ns();
    next_storm_ = static_cast<uint32_t>(plan_.count);
    std::array<epoll_event, kEpollBatch> events;
    while (!stopping() && (next_launch_ < plan_.count || next_storm_ < clients_.size() || live_ > 0)) {
        launch_due();
        const int ready = epoll_wait(epoll_fd_, events.data(), kEpollBatch, wait_timeout_ms());
        if (ready < 0 && errno != EINTR) {
            std::perror("bench_connection: epoll_wait");
            close_all();
            return 1;
        }
        for (int i = 0; i < ready; ++i) on_event(events[i]);
        wheel_.advance_to(current_tick(), [this](uint32_t index, uint32_t tick) { on_timer(index, tick); });
        publish_gauges();
    }
    close_all();
    return 0;
}

// Until the next wheel tick, or sooner while launches are waiting (or the
// storm may begin).
int ClientWorker::wait_timeout_ms() const {
    const bool established_left = established_launch_open();
    const bool storm_left = storm_launch_open();
    if ((established_left && established_pacer_.ready()) || (storm_left && storm_pacer_.ready())) return 0;
    const int64_t until_tick = start_ns_ + (int64_t{current_tick()} + 1) * kTickNs - monotonic_ns();
    const int timeout = static_cast<int>(std::clamp<int64_t>(until_tick / 1'000'000 + 1, 1, kTickNs / 1'000'000));
    return established_left || storm_left || storm_pending() ? std::min(timeout, kRateWaitMs) : timeout;
}

// True once the parent's storm start time has come.
bool ClientWorker::check_storm_start(int64_t now) {
    if (storm_started_) return true;
    const int64_t storm_start = control_.storm_start_ns.load(std::memory_order_acquire);
    if (storm_start == 0 || now < storm_start) return false;
    storm_started_ = true;
    storm_pacer_.last_ns = storm_start;
    return true;
}

void ClientWorker::launch_due() {
    if (stopping()) return;
    const int64_t now = monotonic_ns();
    established_pacer_.refill(now);
    for (uint32_t launched = 0; launched < kLaunchBatch && established_launch_open() && established_pacer_.take(); ++launched)
        launch(next_launch_++, false);
    if (plan_.storm_count == 0 || !check_storm_start(now)) return;
    storm_pacer_.refill(now);
    for (uint32_t launched = 0; launched < kLaunchBatch && storm_launch_open() && storm_pacer_.take(); ++launched) {
        WorkerCounters::bump(counters_.storm_launched);
        launch(next_storm_++, false);
    }
}

// A socket bound to its source address (if any) and limited to a small
// window of the ephemeral range, so that connect() finds a free port in a few
// probes instead of scanning past thousands of taken ones. Returns the fd or
// -errno.
int ClientWorker::open_socket(uint32_t index, bool with_port_window) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    const uint64_t global = global_index_of(index);
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

uint16_t ClientWorker::acquire_handshake() {
    if (free_handshakes_.empty()) {
        // A worker holds far fewer sockets than the 16-bit slot index allows.
        if (handshakes_.size() >= kMaxHandshakeSlots) std::abort();
        handshakes_.emplace_back();
        return static_cast<uint16_t>(handshakes_.size() - 1);
    }
    const uint16_t slot = free_handshakes_.back();
    free_handshakes_.pop_back();
    return slot;
}

// One connect attempt: a first one (live_ counts the client from here on) or
// a retry.
void ClientWorker::launch(uint32_t index, bool retry) {
    Client& client = clients_[index];
    if (!retry) ++live_;
    WorkerCounters::bump(counters_.offered);
    if (retry) WorkerCounters::bump(counters_.retries);
    client.state = State::Connecting;
    client.handshake = acquire_handshake();
    ++in_flight_;
    Handshake& handshake = handshakes_[client.handshake];
    handshake.received_length = 0;
    handshake.connect_ns = monotonic_ns();
    if (options_.ws) {
        ws_parsers_[index] = ws::FrameParser{};
        if (!ws_controls_.empty()) ws_controls_.erase(index);
    }
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
        case State::Connecting: on_connected(index); break;
        case State::Upgrading: receive_upgrade(index); break;
        case State::AwaitingConnack: options_.ws ? receive_connack_ws(index) : receive_connack(index); break;
        case State::Online: options_.ws ? receive_online_ws(index) : receive_online(index); break;
        case State::Waiting:
        case State::RetryWait:
        case State::Ended: break;
    }
}

// The TCP connect completed (or failed): CONNECT goes out, or with -ws the
// upgrade request.
void ClientWorker::on_connected(uint32_t index) {
    Client& client = clients_[index];
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(client.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
    if (error != 0) return fail(index, reason_for_errno(error));
    WorkerCounters::bump(counters_.tcp_connected);
    if (options_.ws) return send_upgrade(index);
    send_connect(index);
}

void ClientWorker::send_connect(uint32_t index) {
    Client& client = clients_[index];
    char uid[24];
    const auto uid_end = std::to_chars(uid, uid + sizeof uid, cid_of(index)).ptr;
    char client_key[base64::encoded_size(32)];
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
    if (dialect_.has_crypto(session_version_) && !client_keys_.empty()) {
        const auto& encoded = client_keys_[global_index_of(index) % client_keys_.size()];
        connect.client_key = std::string_view(encoded.data(), encoded.size());
    } else if (dialect_.has_crypto(session_version_)) {
        Handshake& handshake = handshakes_[client.handshake];
        if (!crypto::generate_keypair(handshake.keys)) return fail(index, FailReason::Other);
        connect.client_key = std::string_view(client_key, base64::encode(handshake.keys.public_key, client_key));
    }
    const proto::Packet packet = connect;
    const size_t size = dialect_.encoded_size(packet, options_.version);
    // -ws: the packet is encoded after room for the largest frame header,
    // which is then written right before it and the payload masked.
    const size_t room = options_.ws ? ws::kMaxClientHeader : 0;
    if (send_buffer_.size() < room + size) send_buffer_.resize(room + size);
    size_t written = dialect_.encode(packet, options_.version, std::span(send_buffer_).subspan(room));
    size_t begin = 0;
    if (options_.ws && written != 0) {
        const auto mask = static_cast<uint32_t>(random_.next());
        begin = room - ws::masked_header_size(written);
        ws::write_masked_header(send_buffer_.data() + begin, ws::kBinary, written, mask);
        ws::apply_mask(send_buffer_.data() + room, written, mask);
        written += room - begin;
    }
    // A fresh socket's send buffer always takes one small packet whole.
    handshakes_[client.handshake].sent_ns = monotonic_ns();
    const ssize_t sent = written == 0 ? -1 : send(client.fd, send_buffer_.data() + begin, written, MSG_NOSIGNAL);
    if (sent != static_cast<ssize_t>(written)) return fail(index, sent < 0 ? reason_for_errno(errno) : FailReason::Other);
    client.state = State::AwaitingConnack;
    // -ws: already watched for input since the upgrade request.
    if (!options_.ws && !watch(index, EPOLLIN, EPOLL_CTL_MOD)) fail(index, FailReason::Other);
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
    handshake.received_length += static_cast<uint16_t>(received);
    process_connack(index, monotonic_ns());
}

// The bytes received so far (handshake.received) hold a CONNACK, part of one
// or something else.
void ClientWorker::process_connack(uint32_t index, int64_t received_ns) {
    const Handshake& handshake = handshakes_[clients_[index].handshake];
    const std::span<const uint8_t> stream(handshake.received, handshake.received_length);
    const proto::SplitResult split = dialect_.split(stream, proto::kDefaultMaxRemainingLength);
    if (split.status == proto::SplitStatus::Incomplete) {
        if (split.needed > kConnackCapacity || handshake.received_length == kConnackCapacity)
            fail(index, FailReason::BadConnack);
        return;
    }
    FailReason reason = FailReason::BadConnack;
    if (split.status == proto::SplitStatus::Error || !accept_connack(index, split.frame, reason)) return fail(index, reason);
    come_online(index, received_ns, stream.subspan(split.frame.size));
}

// The CONNACK must say success and, from v3 on, carry a 32-byte server key
// (base64) and a 16-byte salt. Without -client-keys the AES key is derived as
// a real client would, which also refuses a key giving an all-zero secret;
// with -client-keys the client stops after the size checks.
bool ClientWorker::accept_connack(uint32_t index, const proto::Frame& frame, FailReason& reason) {
    reason = FailReason::BadConnack;
    proto::Packet packet;
    if (frame.type() != proto::PacketType::Connack || dialect_.decode(frame, session_version_, packet) != proto::DecodeError::None)
        return false;
    const auto& connack = std::get<proto::ConnackPacket>(packet);
    if (connack.reason_code != static_cast<uint8_t>(proto::ReasonCode::Success)) {
        reason = FailReason::AuthFail;
        return false;
    }
    if (!dialect_.has_crypto(session_version_)) return true;
    crypto::Key32 server_key;
    uint8_t decoded[48];
    const auto decoded_length = base64::decode(connack.server_key, decoded, sizeof decoded);
    if (!decoded_length || *decoded_length != server_key.size() || connack.salt.size() != crypto::kSaltLength) return false;
    if (!client_keys_.empty()) return true;
    std::copy_n(decoded, server_key.size(), server_key.begin());
    crypto::Key32 secret;
    if (!crypto::shared_secret(handshakes_[clients_[index].handshake].keys.private_key, server_key, secret)) return false;
    // Unused afterwards (no messages are sent), but part of a login's cost.
    [[maybe_unused]] const crypto::SessionKey session = crypto::derive_session_key(secret, connack.salt);
    return true;
}

void ClientWorker::come_online(uint32_t index, int64_t received_ns, std::span<const uint8_t> extra) {
    Client& client = clients_[index];
    const Handshake& handshake = handshakes_[client.handshake];
    counters_.connect_to_connack.record(static_cast<uint64_t>(std::max<int64_t>(0, received_ns - handshake.sent_ns)) / 1000);
    counters_.login.record(static_cast<uint64_t>(std::max<int64_t>(0, received_ns - handshake.connect_ns)) / 1000);
    close_attempt(client);  // releases the handshake slot, keeps the socket
    client.state = State::Online;
    client.failed_attempts = 0;
    const int64_t now = monotonic_ns();
    WorkerCounters::bump(counters_.came_online);
    counters_.last_online_ns.store(now, std::memory_order_relaxed);
    if (established(index)) {
        WorkerCounters::bump(counters_.est_came_online);
        counters_.est_last_online_ns.store(now, std::memory_order_relaxed);
    }
    // First PING at a random point of the interval so that the heartbeats of
    // a fast ramp do not all fall on the same tick.
    client.deadline = wheel_.schedule(index, 1 + static_cast<uint32_t>(random_.next() % heartbeat_ticks_));
    if (!extra.empty()) consume_online_bytes(index, extra);
}

void ClientWorker::receive_online(uint32_t index) {
    const ssize_t received = recv(clients_[index].fd, receive_buffer_.data(), receive_buffer_.size(), 0);
    if (received < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (received <= 0) return lose(index, false);
    consume_online_bytes(index, std::span(receive_buffer_.data(), static_cast<size_t>(received)));
}

// An online bench client only expects PONGs, which are one byte each. Any
// other packet (a DISCONNECT after a kick) means the server is sending it
// away: counted as closed by the peer, no reassembly needed.
void ClientWorker::consume_online_bytes(uint32_t index, std::span<const uint8_t> bytes) {
    for (const uint8_t byte : bytes) {
        if (byte >> 4 != static_cast<uint8_t>(proto::PacketType::Pong)) return lose(index, false);
        WorkerCounters::bump(counters_.pongs_received);
        Client& client = clients_[index];
        if (client.ping_outstanding) counters_.pong.record(now_us32() - client.ping_sent_us);
        client.ping_outstanding = false;
        client.missed_heartbeats = 0;
    }
}

// ---------------------------------------------------------------- -ws

// A masked frame of at most 125 payload bytes (a control frame, or the
// one-byte PING packet). False when it did not go out whole: errno EAGAIN
// when the send buffer took nothing; a partial send breaks the stream (errno
// is then set to EPIPE).
bool ClientWorker::send_ws_frame(uint32_t index, uint8_t opcode, std::span<const uint8_t> payload) {
    uint8_t frame[ws::kMaxClientHeader + ws::kMaxControlPayload];
    payload = payload.first(std::min(payload.size(), ws::kMaxControlPayload));
    const size_t size = ws::write_masked_frame(frame, opcode, payload, static_cast<uint32_t>(random_.next()));
    const ssize_t sent = send(clients_[index].fd, frame, size, MSG_NOSIGNAL);
    if (sent == static_cast<ssize_t>(size)) return true;
    if (sent >= 0) errno = EPIPE;
    return false;
}

// After the TCP connect: GET / with a fresh Sec-WebSocket-Key; the 101 must
// carry the accept value kept in the handshake slot.
void ClientWorker::send_upgrade(uint32_t index) {
    Client& client = clients_[index];
    Handshake& handshake = handshakes_[client.handshake];
    char key[ws::kKeyLength];
    ws::make_key(random_.next(), random_.next(), key);
    if (!ws::accept_for(std::string_view(key, sizeof key), handshake.ws_accept)) return fail(index, FailReason::Other);
    upgrade_request_.clear();
    ws::append_upgrade_request(upgrade_request_, ws_host_, options_.port, std::string_view(key, sizeof key));
    const ssize_t sent = send(client.fd, upgrade_request_.data(), upgrade_request_.size(), MSG_NOSIGNAL);
    if (sent != static_cast<ssize_t>(upgrade_request_.size()))
        return fail(index, sent < 0 ? reason_for_errno(errno) : FailReason::Other);
    client.state = State::Upgrading;
    if (!watch(index, EPOLLIN, EPOLL_CTL_MOD)) fail(index, FailReason::Other);
}

void ClientWorker::receive_upgrade(uint32_t index) {
    Client& client = clients_[index];
    Handshake& handshake = handshakes_[client.handshake];
    const ssize_t received = recv(client.fd, handshake.received + handshake.received_length,
                                  kUpgradeCapacity - handshake.received_length, 0);
    if (received == 0) return fail(index, FailReason::Reset);
    if (received < 0) {
        if (errno != EAGAIN && errno != EINTR) fail(index, reason_for_errno(errno));
        return;
    }
    handshake.received_length += static_cast<uint16_t>(received);
    const ws::UpgradeResult result = ws::check_upgrade_response(
        std::span<const uint8_t>(handshake.received, handshake.received_length),
        std::string_view(handshake.ws_accept, ws::kAcceptLength));
    if (result.status == ws::UpgradeStatus::Incomplete) {
        if (handshake.received_length == kUpgradeCapacity) fail(index, FailReason::BadUpgrade);
        return;
    }
    if (result.status == ws::UpgradeStatus::Refused) return fail(index, FailReason::BadUpgrade);
    // Bytes after the 101 are frames already (none are expected before the
    // CONNECT, but a server may send a ping).
    uint8_t extra[kUpgradeCapacity];
    const size_t extra_length = handshake.received_length - result.header_size;
    std::copy_n(handshake.received + result.header_size, extra_length, extra);
    handshake.received_length = 0;
    send_connect(index);
    if (extra_length == 0 || clients_[index].state != State::AwaitingConnack) return;
    feed_connack_ws(index, std::span<const uint8_t>(extra, extra_length), monotonic_ns());
}

void ClientWorker::receive_connack_ws(uint32_t index) {
    const ssize_t received = recv(clients_[index].fd, receive_buffer_.data(), receive_buffer_.size(), 0);
    if (received == 0) return fail(index, FailReason::Reset);
    if (received < 0) {
        if (errno != EAGAIN && errno != EINTR) fail(index, reason_for_errno(errno));
        return;
    }
    feed_connack_ws(index, std::span<const uint8_t>(receive_buffer_.data(), static_cast<size_t>(received)), monotonic_ns());
}

// The server's frames before the CONNACK: their payload bytes are collected
// in the handshake slot (at most kConnackCapacity), then read as with TCP.
void ClientWorker::feed_connack_ws(uint32_t index, std::span<const uint8_t> bytes, int64_t received_ns) {
    struct Sink {
        ClientWorker& worker;
        uint32_t index;
        Handshake& handshake;
        bool overflow = false, closed = false, text = false;
        bool on_data(uint8_t opcode, std::span<const uint8_t> chunk) {
            text = opcode != ws::kBinary;
            overflow = !text && chunk.size() > kConnackCapacity - handshake.received_length;
            if (text || overflow) return false;
            std::copy(chunk.begin(), chunk.end(), handshake.received + handshake.received_length);
            handshake.received_length = static_cast<uint16_t>(handshake.received_length + chunk.size());
            return true;
        }
        bool on_control(uint8_t opcode, std::span<const uint8_t> chunk, size_t offset, size_t total) {
            closed = worker.on_ws_control(index, opcode, chunk, offset, total) == ControlAction::Closed;
            return !closed;
        }
    } sink{*this, index, handshakes_[clients_[index].handshake]};
    const ws::FeedResult result = ws_parsers_[index].feed(bytes, sink);
    if (result == ws::FeedResult::ProtocolError || sink.text) return fail(index, FailReason::BadUpgrade);
    if (sink.overflow) return fail(index, FailReason::BadConnack);
    if (sink.closed) return fail(index, FailReason::Reset);
    process_connack(index, received_ns);
}

void ClientWorker::receive_online_ws(uint32_t index) {
    const ssize_t received = recv(clients_[index].fd, receive_buffer_.data(), receive_buffer_.size(), 0);
    if (received < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (received <= 0) return lose(index, false);
    // Binary payload bytes are the packet stream (PONGs); anything else, a
    // close or a protocol error ends the client as closed by the peer.
    struct Sink {
        ClientWorker& worker;
        uint32_t index;
        bool on_data(uint8_t opcode, std::span<const uint8_t> chunk) {
            if (opcode != ws::kBinary) return worker.lose(index, false), false;
            worker.consume_online_bytes(index, chunk);
            return worker.clients_[index].state == State::Online;
        }
        bool on_control(uint8_t opcode, std::span<const uint8_t> chunk, size_t offset, size_t total) {
            if (worker.on_ws_control(index, opcode, chunk, offset, total) != ControlAction::Closed) return true;
            worker.lose(index, false);
            return false;
        }
    } sink{*this, index};
    if (ws_parsers_[index].feed(std::span<const uint8_t>(receive_buffer_.data(), static_cast<size_t>(received)), sink) ==
        ws::FeedResult::ProtocolError)
        lose(index, false);
}

// A piece of a control frame: a ping is answered with a pong carrying its
// payload, a close with a close (1000) and Closed (the caller ends the
// client); a pong is ignored. A frame split over reads waits in ws_controls_.
ClientWorker::ControlAction ClientWorker::on_ws_control(uint32_t index, uint8_t opcode, std::span<const uint8_t> chunk,
                                                        size_t offset, size_t total) {
    if (opcode == ws::kPong) return ControlAction::None;
    ws::ControlAssembler whole;
    std::span<const uint8_t> payload = chunk;
    if (offset != 0 || chunk.size() != total) {
        auto at = ws_controls_.try_emplace(index).first;
        if (!at->second.add(chunk, offset, total)) return ControlAction::None;
        whole = at->second;
        ws_controls_.erase(at);
        payload = whole.payload();
    }
    if (opcode == ws::kPing) {
        send_ws_frame(index, ws::kPong, payload);  // a failure shows at the next read
        return ControlAction::None;
    }
    send_ws_frame(index, ws::kClose, ws::close_payload(1000));
    return ControlAction::Closed;
}

void ClientWorker::on_timer(uint32_t index, uint32_t tick) {
    Client& client = clients_[index];
    if (client.deadline != tick) return;  // rescheduled or ended since
    switch (client.state) {
        case State::Connecting:
        case State::Upgrading:
        case State::AwaitingConnack: fail(index, FailReason::Timeout); break;
        case State::Online: heartbeat(index); break;
        case State::RetryWait:
            --retry_waiting_;
            if (stopping()) return end(index);
            launch(index, true);
            break;
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
        if (++client.missed_heartbeats >= kMissedHeartbeatsToDrop) return lose(index, true);
    }
    // The PONG that comes answers the oldest unanswered PING: its time stays.
    if (!client.ping_outstanding) client.ping_sent_us = now_us32();
    if (options_.ws) {
        // The one-byte PING in a masked binary frame: 7 bytes, sent whole or
        // not at all unless the send buffer is nearly full (then the stream
        // would be broken: the client gives up).
        const ssize_t sent = send_ws_frame(index, ws::kBinary, std::span(&kPing, 1)) ? 1 : -1;
        if (sent == 1) WorkerCounters::bump(counters_.pings_sent);
        else if (errno != EAGAIN) return lose(index, false);
    } else if (send(client.fd, &kPing, 1, MSG_NOSIGNAL) == 1) {
        WorkerCounters::bump(counters_.pings_sent);
    } else if (errno != EAGAIN) {
        return lose(index, false);
    }
    // Also when the send buffer is full: a server that stops reading is
    // treated like one that stops answering.
    client.ping_outstanding = true;
    client.deadline = wheel_.schedule(index, heartbeat_ticks_);
}

// A failed attempt. With -retry-ms, one the server reset or refused, or that
// timed out, is tried again after the backoff; otherwise the client gives up.
void ClientWorker::fail(uint32_t index, FailReason reason) {
    WorkerCounters::bump(counters_.failed[static_cast<size_t>(reason)]);
    const bool retryable = reason == FailReason::Reset || reason == FailReason::Refused || reason == FailReason::Timeout;
    if (options_.retry_ms == 0 || !retryable || stopping()) {
        WorkerCounters::bump(counters_.gave_up);
        if (established(index)) WorkerCounters::bump(counters_.est_gave_up);
        return end(index);
    }
    Client& client = clients_[index];
    close_attempt(client);
    if (client.fd >= 0) close(client.fd);
    client.fd = -1;
    if (client.failed_attempts < 31) ++client.failed_attempts;
    const uint32_t doublings = std::min<uint32_t>(client.failed_attempts - 1, kMaxBackoffDoublings);
    const double jitter = 0.5 + static_cast<double>(random_.next() >> 11) / 9007199254740992.0;  // [0.5, 1.5)
    const auto delay_ns = static_cast<int64_t>(static_cast<double>(options_.retry_ms) * 1e6 * (1u << doublings) * jitter);
    client.state = State::RetryWait;
    client.deadline = wheel_.schedule(index, to_ticks(delay_ns));
    ++retry_waiting_;
}

// An online client that the server closed or reset (or sent something other
// than a PONG), or that missed kMissedHeartbeatsToDrop PONGs in a row.
void ClientWorker::lose(uint32_t index, bool dropped) {
    WorkerCounters::bump(dropped ? counters_.dropped : counters_.closed_by_peer);
    if (established(index)) WorkerCounters::bump(dropped ? counters_.est_dropped : counters_.est_closed_by_peer);
    end(index);
}

void ClientWorker::end(uint32_t index) {
    Client& client = clients_[index];
    if (!ws_controls_.empty()) ws_controls_.erase(index);
    close_attempt(client);
    if (client.fd >= 0) close(client.fd);
    client.fd = -1;
    client.state = State::Ended;
    --live_;
}

// Leaves the connecting states: frees the handshake slot (the socket is the
// caller's to close or keep).
void ClientWorker::close_attempt(Client& client) {
    if (client.state != State::Connecting && client.state != State::Upgrading && client.state != State::AwaitingConnack)
        return;
    free_handshakes_.push_back(client.handshake);
    --in_flight_;
    client.state = State::Waiting;
}

void ClientWorker::publish_gauges() {
    WorkerCounters::set(counters_.in_flight, in_flight_);
    WorkerCounters::set(counters_.retry_waiting, retry_waiting_);
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
