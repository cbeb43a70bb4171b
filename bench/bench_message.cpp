// bench_message: a load generator for LiMaoIM messaging (SEND/SENDACK,
// RECV/RECVACK) against limaoim in test mode.
//
//   person mode: P sender/receiver pairs, sender i writes to receiver i.
//   group mode:  M members of one group (created with POST /channel), all
//                online; members 0..K-1 send.
//   --kill-test: senders burst a fixed number of SENDs and log every
//                SENDACKed (message_id, seq, channel) to --acked-out, so a
//                driver can kill -9 the server mid-burst; --verify FILE then
//                checks through POST /channel/messagesync that each acked
//                message was kept exactly once and seqs run 1..max.
//
// Each of --threads threads owns an epoll loop and a share of the clients.
// The plaintext of every message carries "sender seq send_ns" and a padding
// pattern, so receivers check what they decrypt and measure SEND -> RECV
// (CLOCK_MONOTONIC: sender and receiver are in this process).
//
// Every phase has a deadline: login (--login-timeout), warmup + duration,
// drain (--drain); the run ends by itself after at most their sum + 5 s.
//
// --ws-port P: every client (the pinger too) connects to the server's
// WebSocket listener on P instead of --port, upgrades (GET /, 101 with the
// right Sec-WebSocket-Accept), then sends each packet in a masked binary
// frame and reads the server's binary frames as the packet byte stream
// (bench/bench_ws.h).
//
// --ports P1,P2,...,PN (person mode, TCP): several nodes of one cluster;
// sender i connects to P[i mod N] and its receiver to P[(i+1) mod N], so
// with N >= 2 every message crosses nodes (N = 1: both on P1, as --port).
//
// --dialect wukongim: every client speaks WuKongIM's WKProto (docs/WKPROTO.md)
// to the server's WKProto listener (limaoim --wk-addr); all packets are coded
// through proto::Dialect, so the load is the same as LiMaoIM's byte for byte
// except for the dialect's own fields.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_connection_shared.h"  // LatencyHistogram / LatencySnapshot
#include "bench_ws.h"
#include "limaoim/base64/base64.h"
#include "limaoim/proto/codec.h"
#include "limaoim/proto/crypto.h"
#include "limaoim/proto/dialect.h"

namespace {

namespace proto = limaoim::proto;
namespace crypto = limaoim::proto::crypto;
namespace base64 = limaoim::base64;
namespace ws = limaoim::bench::ws;
using limaoim::bench::LatencyHistogram;
using limaoim::bench::LatencySnapshot;
using nlohmann::json;

int64_t now_ns() {
    timespec t{};
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1'000'000'000LL + t.tv_nsec;
}
int64_t wall_ms() {
    timespec t{};
    clock_gettime(CLOCK_REALTIME, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1'000'000;
}
constexpr int64_t kSec = 1'000'000'000LL;

// ---------------------------------------------------------------- options

struct Options {
    std::string host = "127.0.0.1";
    uint16_t port = 6666;
    uint16_t http_port = 0;
    uint16_t ws_port = 0;  // non-zero: the clients use WebSocket to this port
    std::vector<uint16_t> ports;  // --ports: person mode, sender i on ports[i % N], receiver on ports[(i + 1) % N]
    std::string mode = "person";
    uint32_t pairs = 100;
    uint32_t members = 100;
    uint32_t senders = 0;  // group: default min(members, 10); kill-test: default 100
    std::string group_id;
    double rate = 0;      // total SENDs/s over all senders, 0 = window-driven
    uint32_t window = 0;  // SENDs in flight per sender (0: 16, or a 10000 cap under --rate)
    double duration = 10, warmup = 2, drain = 10, login_timeout = 30;
    uint8_t version = 4;  // the CONNECT's: 1..the dialect's latest_version
    proto::DialectId dialect_id = proto::DialectId::LiMaoIM;
    uint32_t threads = 2;
    uint32_t payload = 64;  // plaintext bytes per message
    bool pinger = false;
    std::string prefix;  // uid prefix; default unique per run
    bool kill_test = false;
    uint32_t kill_total = 10000;
    std::string acked_out;
    pid_t kill_pid = 0;
    uint32_t kill_after = 0;  // SIGKILL kill_pid after this many OK SENDACKs
    std::string verify_file;
    uint32_t verify_limit = 500;

    const proto::Dialect& dialect() const { return proto::dialect(dialect_id); }
    // Every packet after the CONNECT is coded at the version the server runs
    // the session at, which it derives from the CONNECT's (ours) the same way.
    uint8_t session_version() const { return dialect().session_version(version); }
    bool has_crypto() const { return dialect().has_crypto(session_version()); }
};

void usage() {
    std::fprintf(stderr,
                 "usage: bench_message [--mode person|group] [options]\n"
                 "  --host H --port P --http-port P   server (HTTP needed for group mode and --verify)\n"
                 "  --ws-port P                       clients connect over WebSocket to P instead of --port\n"
                 "  --ports P1,P2,...                 person: sender i on P[i%%N], its receiver on P[(i+1)%%N]\n"
                 "  --dialect limaoim|wukongim (WKProto, to limaoim --wk-addr's port)\n"
                 "  --version 1..4 (wukongim: 1..5) --threads T --duration S --warmup S --drain S --login-timeout S\n"
                 "  person: --pairs P          group: --members M --group-id G --senders K\n"
                 "  --rate R (SENDs/s total) | --window W (in flight per sender)   --payload BYTES\n"
                 "  --pinger (PING every 10 ms from an extra client, PONG latency)   --prefix UIDPREFIX\n"
                 "  --kill-test [--kill-total N] [--senders K] --acked-out FILE [--kill-pid PID --kill-after N]\n"
                 "  --verify FILE [--verify-limit L]   check a --acked-out file through /channel/messagesync\n");
}

bool parse_options(int argc, char** argv, Options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error("missing value for " + a);
            return argv[++i];
        };
        auto num = [&] { return std::stod(next()); };
        if (a == "--host") o.host = next();
        else if (a == "--port") o.port = uint16_t(num());
        else if (a == "--http-port") o.http_port = uint16_t(num());
        else if (a == "--ws-port") o.ws_port = uint16_t(num());
        else if (a == "--ports") {
            std::stringstream list(next());
            for (std::string item; std::getline(list, item, ',');) o.ports.push_back(uint16_t(std::stoul(item)));
        }
        else if (a == "--mode") o.mode = next();
        else if (a == "--pairs") o.pairs = uint32_t(num());
        else if (a == "--members") o.members = uint32_t(num());
        else if (a == "--senders") o.senders = uint32_t(num());
        else if (a == "--group-id") o.group_id = next();
        else if (a == "--rate") o.rate = num();
        else if (a == "--window") o.window = uint32_t(num());
        else if (a == "--duration") o.duration = num();
        else if (a == "--warmup") o.warmup = num();
        else if (a == "--drain") o.drain = num();
        else if (a == "--login-timeout") o.login_timeout = num();
        else if (a == "--version") o.version = uint8_t(num());
        else if (a == "--dialect") {
            const std::string name = next();
            if (name == proto::kWuKongIMDialect.name) o.dialect_id = proto::DialectId::WuKongIM;
            else if (name != proto::kLiMaoIMDialect.name) throw std::runtime_error("--dialect is limaoim or wukongim");
        }
        else if (a == "--threads") o.threads = std::max(1u, uint32_t(num()));
        else if (a == "--payload") o.payload = uint32_t(num());
        else if (a == "--pinger") o.pinger = true;
        else if (a == "--prefix") o.prefix = next();
        else if (a == "--kill-test") o.kill_test = true;
        else if (a == "--kill-total") o.kill_total = uint32_t(num());
        else if (a == "--acked-out") o.acked_out = next();
        else if (a == "--kill-pid") o.kill_pid = pid_t(num());
        else if (a == "--kill-after") o.kill_after = uint32_t(num());
        else if (a == "--verify") o.verify_file = next();
        else if (a == "--verify-limit") o.verify_limit = uint32_t(num());
        else if (a == "-h" || a == "--help") return usage(), false;
        else throw std::runtime_error("unknown option " + a);
    }
    if (o.mode != "person" && o.mode != "group") throw std::runtime_error("--mode is person or group");
    if (o.version < 1 || o.version > o.dialect().latest_version)
        throw std::runtime_error("--version is 1.." + std::to_string(o.dialect().latest_version) + " for " +
                                 o.dialect().name);
    if (!o.ports.empty() && (o.mode != "person" || o.kill_test || o.ws_port != 0))
        throw std::runtime_error("--ports is for person mode over TCP");
    if (o.prefix.empty()) o.prefix = "bm" + std::to_string(getpid()) + "x" + std::to_string(wall_ms() % 100000) + "_";
    if (o.group_id.empty()) o.group_id = o.prefix + "g";
    if (o.kill_test && o.senders == 0) o.senders = 100;  // a kill-test group's members are its senders
    if (o.mode == "group" && !o.kill_test) {
        if (o.senders == 0) o.senders = std::min(o.members, 10u);
        o.senders = std::min(o.senders, o.members);
    }
    if (o.window == 0) o.window = o.rate > 0 ? 10000 : (o.kill_test ? 32 : 16);
    if (o.payload < 48) o.payload = 48;  // room for the header text
    return true;
}

// ---------------------------------------------------------------- HTTP (one request per connection)

struct HttpReply {
    int status = 0;
    std::string body;
};

HttpReply http_post(const std::string& host, uint16_t port, const std::string& path, const std::string& body,
                    int timeout_ms = 10000) {
    HttpReply r;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &sa.sin_addr);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) return close(fd), r;
    std::string req = "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n" +
                      "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\n\r\n" + body;
    for (size_t off = 0; off < req.size();) {
        ssize_t n = send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return close(fd), r;
        off += size_t(n);
    }
    std::string raw;
    char buf[65536];
    for (;;) {  // bounded: SO_RCVTIMEO ends a stalled read
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        raw.append(buf, size_t(n));
        size_t head = raw.find("\r\n\r\n");
        if (head == std::string::npos) continue;
        std::string lower = raw.substr(0, head);
        std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
        size_t cl = lower.find("content-length:");
        if (cl != std::string::npos && raw.size() >= head + 4 + std::stoul(lower.substr(cl + 15))) break;
    }
    close(fd);
    size_t head = raw.find("\r\n\r\n"), sp = raw.find(' ');
    if (head == std::string::npos || sp == std::string::npos) return r;
    r.status = std::atoi(raw.c_str() + sp + 1);
    r.body = raw.substr(head + 4);
    if (raw.substr(0, head).find("chunked") != std::string::npos) {  // de-chunk
        std::string out;
        size_t pos = 0;
        while (pos < r.body.size()) {
            size_t eol = r.body.find("\r\n", pos);
            if (eol == std::string::npos) break;
            size_t len = std::strtoul(r.body.c_str() + pos, nullptr, 16);
            if (len == 0) break;
            out.append(r.body, eol + 2, len);
            pos = eol + 2 + len + 2;
        }
        r.body = out;
    }
    return r;
}

// ---------------------------------------------------------------- shared state

struct Bits {
    std::vector<uint64_t> w;
    bool test(uint32_t i) const { return i / 64 < w.size() && (w[i / 64] >> (i % 64) & 1); }
    bool set(uint32_t i) {  // returns true if it was already set
        if (i / 64 >= w.size()) w.resize(i / 64 + 1 + w.size() / 2);
        bool was = w[i / 64] >> (i % 64) & 1;
        w[i / 64] |= uint64_t{1} << (i % 64);
        return was;
    }
};

enum Phase : int { kLogin, kRun, kDrain, kStop };
std::atomic<int> g_phase{kLogin};
std::atomic<int64_t> g_measure_start{INT64_MAX}, g_measure_end{INT64_MAX}, g_send_end{INT64_MAX};
std::atomic<uint64_t> g_kill_acks{0};
std::atomic<bool> g_killed{false};
volatile sig_atomic_t g_interrupted = 0;

struct alignas(64) Counters {
    std::atomic<uint64_t> online{0}, login_failed{0}, closed{0}, sent{0}, acked_ok{0}, acked_err{0}, abandoned{0},
        recv_distinct{0}, dups{0}, bad_payload{0}, window_sends{0}, window_recvs{0}, ack_reason[16] = {};
    static void bump(std::atomic<uint64_t>& c, uint64_t n = 1) { c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
};

struct Recorder {  // --acked-out, shared by the threads
    std::mutex mu;
    FILE* file = nullptr;
    void write(const std::string& lines) {
        if (!file || lines.empty()) return;
        std::lock_guard lock(mu);
        std::fwrite(lines.data(), 1, lines.size(), file);
        std::fflush(file);  // a driver may watch the file to time the kill
    }
};

// ---------------------------------------------------------------- clients

// Upgrading: --ws-port only, the upgrade request is sent and the 101 not yet read.
enum class State : uint8_t { Idle, Connecting, Upgrading, AwaitConnack, Online, Closed };

struct Conn {
    int fd = -1;
    State state = State::Idle;
    bool out_armed = false;
    std::string uid;
    crypto::KeyPair keys;
    crypto::SessionKey key;
    std::vector<uint8_t> in;  // the packet byte stream (--ws-port: the payload of the server's frames)
    std::string out;
    int64_t last_ping = 0;
    // --ws-port
    ws::FrameParser ws_parser;
    ws::ControlAssembler ws_control;
    char ws_accept[ws::kAcceptLength] = {};
    uint16_t port = 0;  // --ports: this client's node; 0 = --port (or --ws-port)
    // sender
    int32_t si = -1;  // sender index, -1 = not a sender
    std::string target;
    uint8_t target_type = 0;
    uint32_t next_seq = 1, to_send = UINT32_MAX;
    std::deque<std::pair<uint32_t, int64_t>> inflight;  // (client_seq, send_ns), SENDACKs come in order
    Bits acked;
    // receiver: person: got[0] from expect_si; group: got[si]
    bool receiver = false;
    int32_t expect_si = -1;
    std::vector<Bits> got;
};

struct Plan {
    const Options* o;
    uint32_t total_senders = 0;
    uint64_t fanout = 1;  // deliveries expected per accepted message
    std::vector<std::string> uids;  // of the senders, by sender index
    std::string make_uid(int32_t si) const {
        if (o->mode == "group") return o->prefix + "m" + std::to_string(si);
        return o->prefix + (o->kill_test ? "k" : "s") + std::to_string(si);
    }
    const std::string& sender_uid(int32_t si) const { return uids[size_t(si)]; }
};

class Worker {
public:
    Worker(const Plan& plan, Counters& c, Recorder& rec) : plan_(plan), o_(*plan.o), c_(c), rec_(rec) {}
    std::vector<Conn> conns;
    LatencyHistogram ack_lat, recv_lat;  // microseconds
    uint64_t ack_max = 0, recv_max = 0;
    void run();

private:
    void start_connect(uint32_t i);
    void close_conn(uint32_t i, bool count = true);
    void on_event(uint32_t i, uint32_t events);
    void send_connect(uint32_t i);
    bool on_upgrade_bytes(uint32_t i, std::span<const uint8_t> bytes);
    bool feed_ws(uint32_t i, std::span<const uint8_t> bytes);
    void on_frame(Conn& c, const proto::Frame& f);
    void on_recv(Conn& c, const proto::RecvPacket& r);
    void send_one(Conn& c, int64_t now);
    void append(Conn& c, const proto::Packet& p);
    // "si-seq" in a buffer of the worker's, valid until the next call.
    std::string_view msg_no(int64_t si, int64_t seq) {
        auto r = std::to_chars(msg_no_, msg_no_ + 24, si);
        *r.ptr++ = '-';
        r = std::to_chars(r.ptr, msg_no_ + sizeof(msg_no_), seq);
        return {msg_no_, size_t(r.ptr - msg_no_)};
    }
    char msg_no_[48];
    // LiMaoIM v1 has no client_msg_no; WKProto has it at every version.
    bool client_msg_no_on_wire() const {
        return o_.dialect_id == proto::DialectId::WuKongIM || o_.session_version() > 1;
    }
    void flush(uint32_t i);
    void set_out(uint32_t i, bool on);

    const Plan& plan_;
    const Options& o_;
    Counters& c_;
    Recorder& rec_;
    int ep_ = -1;
    crypto::Cipher cipher_;
    std::string scratch_, scratch2_, plain_, acked_lines_;
    std::vector<uint32_t> dirty_;
    uint32_t connecting_ = 0, next_connect_ = 0;
    bool close_me_ = false;  // set by on_frame: close the connection after this frame
    uint64_t ws_random_ = 0x9e3779b97f4a7c15ULL ^ uint64_t(now_ns());  // mask keys and nonces (SplitMix64)
    uint64_t next_random() {
        uint64_t z = (ws_random_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

void Worker::set_out(uint32_t i, bool on) {
    Conn& c = conns[i];
    if (c.out_armed == on || c.fd < 0) return;
    epoll_event ev{EPOLLIN | (on ? EPOLLOUT : 0u), {.u64 = i}};
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    c.out_armed = on;
}

void Worker::start_connect(uint32_t i) {
    Conn& c = conns[i];
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(c.port != 0 ? c.port : o_.ws_port != 0 ? o_.ws_port : o_.port);
    inet_pton(AF_INET, o_.host.c_str(), &sa.sin_addr);
    int rc = connect(c.fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    if (rc != 0 && errno != EINPROGRESS) {
        ::close(c.fd);
        c.fd = -1;
        c.state = State::Closed;
        Counters::bump(c_.login_failed);
        return;
    }
    c.state = State::Connecting;
    c.out_armed = true;
    epoll_event ev{EPOLLIN | EPOLLOUT, {.u64 = i}};
    epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
    ++connecting_;
}

void Worker::close_conn(uint32_t i, bool count) {
    Conn& c = conns[i];
    if (c.fd < 0) return;
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
    if (c.state == State::Online) {
        if (count) Counters::bump(c_.closed);
        Counters::bump(c_.online, uint64_t(-1));
    } else if (c.state == State::Connecting || c.state == State::Upgrading || c.state == State::AwaitConnack) {
        --connecting_;
        Counters::bump(c_.login_failed);
    }
    Counters::bump(c_.abandoned, c.inflight.size());
    c.inflight.clear();
    c.state = State::Closed;
}

void Worker::append(Conn& c, const proto::Packet& p) {
    const uint8_t version = std::holds_alternative<proto::ConnectPacket>(p) ? o_.version : o_.session_version();
    size_t at = c.out.size(), n = o_.dialect().encoded_size(p, version);
    if (o_.ws_port != 0) {  // one packet per masked binary frame
        const auto mask = uint32_t(next_random());
        const size_t header = ws::masked_header_size(n);
        c.out.resize(at + header + n);
        auto* frame = reinterpret_cast<uint8_t*>(c.out.data()) + at;
        ws::write_masked_header(frame, ws::kBinary, n, mask);
        o_.dialect().encode(p, version, {frame + header, n});
        ws::apply_mask(frame + header, n, mask);
        return;
    }
    c.out.resize(at + n);
    o_.dialect().encode(p, version, {reinterpret_cast<uint8_t*>(c.out.data()) + at, n});
}

void Worker::flush(uint32_t i) {
    Conn& c = conns[i];
    if (c.fd < 0 || c.out.empty() || c.state == State::Connecting) return;
    size_t off = 0;
    while (off < c.out.size()) {
        ssize_t n = ::send(c.fd, c.out.data() + off, c.out.size() - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += size_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        c.out.clear();
        return close_conn(i);
    }
    c.out.erase(0, off);
    set_out(i, !c.out.empty());
}

void Worker::send_one(Conn& c, int64_t now) {
    const uint32_t seq = c.next_seq++;
    // "si seq send_ns " then a pattern tied to seq, padded to --payload bytes.
    plain_ = std::to_string(c.si) + ' ' + std::to_string(seq) + ' ' + std::to_string(now) + ' ';
    for (size_t k = plain_.size(); k < o_.payload; ++k) plain_ += char('a' + (seq + k) % 26);
    proto::SendPacket s;
    s.client_seq = seq;
    s.client_msg_no = msg_no(c.si, seq);
    s.channel_id = c.target;
    s.channel_type = c.target_type;
    char key[32];
    if (o_.has_crypto() && o_.dialect().payload_encrypted(s.setting)) {
        scratch_.clear();
        cipher_.seal_payload(c.key, plain_, scratch_);
        s.payload = scratch_;
        scratch2_.clear();
        crypto::append_send_sign(s, scratch2_);
        cipher_.msg_key(c.key, scratch2_, key);
        s.msg_key = std::string_view(key, 32);
    } else {
        s.payload = plain_;
    }
    append(c, s);
    c.inflight.emplace_back(seq, now);
    Counters::bump(c_.sent);
    if (now >= g_measure_start.load(std::memory_order_relaxed) && now < g_measure_end.load(std::memory_order_relaxed))
        Counters::bump(c_.window_sends);
}

void Worker::on_recv(Conn& c, const proto::RecvPacket& r) {
    bool ok = true;
    if (o_.has_crypto()) {  // a RECV is sealed whatever its setting (dialect.h)
        char expected[32];
        cipher_.recv_msg_key(c.key, r, expected);
        plain_.clear();
        ok = r.msg_key == std::string_view(expected, 32) && cipher_.open_payload(c.key, r.payload, plain_);
    } else {
        plain_.assign(r.payload);
    }
    // Parse "si seq send_ns " and check the padding and the envelope.
    int64_t si = -1, seq = -1, sent_ns = 0;
    const char* p = plain_.data();
    const char* end = p + plain_.size();
    for (int64_t* field : {&si, &seq, &sent_ns}) {
        auto res = std::from_chars(p, end, *field);
        if (res.ec != std::errc() || res.ptr == end || *res.ptr != ' ') {
            ok = false;
            break;
        }
        p = res.ptr + 1;
    }
    if (ok) {
        for (size_t k = size_t(p - plain_.data()); k < plain_.size(); ++k)
            if (plain_[k] != char('a' + (uint64_t(seq) + k) % 26)) ok = false;
        ok = ok && plain_.size() == o_.payload && si >= 0 && si < int64_t(plan_.total_senders) && seq > 0 &&
             r.from_uid == plan_.sender_uid(int32_t(si)) &&
             r.client_msg_no == (client_msg_no_on_wire() ? msg_no(si, seq) : std::string_view());
        if (o_.mode == "person") ok = ok && si == c.expect_si && r.channel_id == r.from_uid && r.channel_type == 1;
        else ok = ok && r.channel_id == o_.group_id && r.channel_type == 2 && si != c.si;
    }
    // RECVACK echoes the header flags; sent even for a bad message so the
    // server does not retransmit it for the rest of the run.
    append(c, proto::RecvackPacket{r.flags, r.message_id, r.message_seq});
    if (!ok) return Counters::bump(c_.bad_payload);
    Bits& bits = c.got[o_.mode == "person" ? 0 : size_t(si)];
    if (bits.set(uint32_t(seq))) return Counters::bump(c_.dups);
    Counters::bump(c_.recv_distinct);
    const int64_t now = now_ns();
    if (now >= g_measure_start.load(std::memory_order_relaxed) && now < g_measure_end.load(std::memory_order_relaxed))
        Counters::bump(c_.window_recvs);
    if (sent_ns >= g_measure_start.load(std::memory_order_relaxed) &&
        sent_ns < g_measure_end.load(std::memory_order_relaxed)) {
        uint64_t us = uint64_t(std::max<int64_t>(0, now - sent_ns) / 1000);
        recv_lat.record(us);
        recv_max = std::max(recv_max, us);
    }
}

void Worker::on_frame(Conn& c, const proto::Frame& f) {
    proto::Packet pkt;
    if (o_.dialect().decode(f, o_.session_version(), pkt) != proto::DecodeError::None) return Counters::bump(c_.bad_payload);
    switch (proto::type_of(pkt)) {
        case proto::PacketType::Connack: {
            auto& a = std::get<proto::ConnackPacket>(pkt);
            bool ok = c.state == State::AwaitConnack && a.reason_code == uint8_t(proto::ReasonCode::Success);
            if (ok && o_.has_crypto()) {
                auto server_public = crypto::parse_client_key(a.server_key);
                crypto::Key32 secret{};
                ok = server_public && a.salt.size() == crypto::kSaltLength &&
                     crypto::shared_secret(c.keys.private_key, *server_public, secret);
                if (ok) c.key = crypto::derive_session_key(secret, a.salt);
            }
            if (!ok) {
                close_me_ = true;  // a refused login
                return;
            }
            c.state = State::Online;
            c.last_ping = now_ns();
            --connecting_;
            Counters::bump(c_.online);
            return;
        }
        case proto::PacketType::Sendack: {
            auto& a = std::get<proto::SendackPacket>(pkt);
            int64_t sent_ns = 0;
            auto it = std::find_if(c.inflight.begin(), c.inflight.end(),
                                   [&](auto& e) { return e.first == a.client_seq; });
            if (it == c.inflight.end()) return Counters::bump(c_.bad_payload);  // an ack for nothing we sent
            sent_ns = it->second;
            c.inflight.erase(it);
            Counters::bump(c_.ack_reason[a.reason_code & 15]);
            if (a.reason_code == uint8_t(proto::ReasonCode::Success)) {
                c.acked.set(a.client_seq);
                Counters::bump(c_.acked_ok);
                if (o_.kill_test) {
                    acked_lines_ += std::to_string(a.message_id) + ' ' + std::to_string(a.message_seq) + ' ' +
                                    std::to_string(c.target_type) + ' ' + c.target + ' ' + c.uid + ' ' +
                                    std::to_string(c.si) + '-' + std::to_string(a.client_seq) + '\n';
                    uint64_t n = g_kill_acks.fetch_add(1, std::memory_order_relaxed) + 1;
                    if (o_.kill_pid > 0 && n >= o_.kill_after && !g_killed.exchange(true)) {
                        kill(o_.kill_pid, SIGKILL);
                        std::fprintf(stderr, "bench_message: SIGKILL sent to %d after %llu acks\n", int(o_.kill_pid),
                                     (unsigned long long)n);
                    }
                }
            } else {
                Counters::bump(c_.acked_err);
            }
            if (sent_ns >= g_measure_start.load(std::memory_order_relaxed) &&
                sent_ns < g_measure_end.load(std::memory_order_relaxed)) {
                uint64_t us = uint64_t(std::max<int64_t>(0, now_ns() - sent_ns) / 1000);
                ack_lat.record(us);
                ack_max = std::max(ack_max, us);
            }
            return;
        }
        case proto::PacketType::Recv:
            if (c.receiver) return on_recv(c, std::get<proto::RecvPacket>(pkt));
            append(c, proto::RecvackPacket{std::get<proto::RecvPacket>(pkt).flags,
                                           std::get<proto::RecvPacket>(pkt).message_id,
                                           std::get<proto::RecvPacket>(pkt).message_seq});
            // A person-mode sender receives nothing; kill-test group senders
            // get each other's messages and only acknowledge them.
            if (!(o_.kill_test && o_.mode == "group")) Counters::bump(c_.bad_payload);
            return;
        case proto::PacketType::Disconnect: close_me_ = true; return;
        default: return;  // PONG of our heartbeats
    }
}

void Worker::send_connect(uint32_t i) {
    Conn& c = conns[i];
    std::string key_b64;
    if (o_.has_crypto()) {
        crypto::generate_keypair(c.keys);
        key_b64 = base64::encode(c.keys.public_key);
    }
    proto::ConnectPacket cp;
    cp.version = o_.version;
    cp.client_key = key_b64;
    cp.device_flag = 0;
    cp.device_id = "bench";
    cp.client_timestamp = wall_ms();
    cp.uid = c.uid;
    cp.token = "";
    c.state = State::AwaitConnack;
    append(c, cp);
    flush(i);
}

// --ws-port: bytes of the server's answer to the upgrade (in c.in until the
// header block is complete). On the 101 the CONNECT goes out and the bytes
// after the header are frames. False: close the connection.
bool Worker::on_upgrade_bytes(uint32_t i, std::span<const uint8_t> bytes) {
    Conn& c = conns[i];
    c.in.insert(c.in.end(), bytes.begin(), bytes.end());
    const ws::UpgradeResult r = ws::check_upgrade_response(c.in, std::string_view(c.ws_accept, ws::kAcceptLength));
    if (r.status == ws::UpgradeStatus::Incomplete) return c.in.size() < 16384;
    if (r.status == ws::UpgradeStatus::Refused) {
        std::fprintf(stderr, "bench_message: WebSocket upgrade refused (%s): %.*s\n", r.reason,
                     int(std::min<size_t>(c.in.size(), 200)), reinterpret_cast<const char*>(c.in.data()));
        return false;
    }
    std::vector<uint8_t> frames(c.in.begin() + ptrdiff_t(r.header_size), c.in.end());
    c.in.clear();
    send_connect(i);
    return c.fd >= 0 && feed_ws(i, frames);
}

// --ws-port: the server's frames; binary payload is appended to c.in, a
// ping answered (the pong queued in c.out), a close ends the connection
// (false), as do a text frame and a protocol error.
bool Worker::feed_ws(uint32_t i, std::span<const uint8_t> bytes) {
    struct Sink {
        Worker& w;
        Conn& c;
        bool ok = true;
        bool on_data(uint8_t opcode, std::span<const uint8_t> chunk) {
            if (opcode != ws::kBinary) return ok = false;
            c.in.insert(c.in.end(), chunk.begin(), chunk.end());
            return true;
        }
        bool on_control(uint8_t opcode, std::span<const uint8_t> chunk, size_t offset, size_t total) {
            if (!c.ws_control.add(chunk, offset, total)) return true;
            if (opcode == ws::kPing) ws::append_masked_frame(c.out, ws::kPong, c.ws_control.payload(), uint32_t(w.next_random()));
            if (opcode != ws::kClose) return true;
            ws::append_masked_frame(c.out, ws::kClose, ws::close_payload(1000), uint32_t(w.next_random()));
            return ok = false;
        }
    } sink{*this, conns[i]};
    const ws::FeedResult r = conns[i].ws_parser.feed(bytes, sink);
    if (r == ws::FeedResult::ProtocolError)
        std::fprintf(stderr, "bench_message: WebSocket protocol error from the server: %s\n", conns[i].ws_parser.error());
    return r == ws::FeedResult::Ok && sink.ok;
}

void Worker::on_event(uint32_t i, uint32_t events) {
    Conn& c = conns[i];
    if (c.fd < 0) return;
    if (c.state == State::Connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) return close_conn(i);
        if (o_.ws_port == 0) return send_connect(i);
        char key[ws::kKeyLength];
        ws::make_key(next_random(), next_random(), key);
        ws::accept_for(std::string_view(key, sizeof key), c.ws_accept);
        ws::append_upgrade_request(c.out, o_.host, o_.ws_port, std::string_view(key, sizeof key));
        c.state = State::Upgrading;
        flush(i);
        return;
    }
    if (events & EPOLLOUT) flush(i);
    if (c.fd < 0 || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    uint8_t buf[65536];
    for (int reads = 0; reads < 8; ++reads) {  // bounded, so one busy socket cannot starve the rest
        ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) return close_conn(i, g_phase.load() != kStop);
        if (o_.ws_port == 0) {
            c.in.insert(c.in.end(), buf, buf + n);
        } else if (!(c.state == State::Upgrading ? on_upgrade_bytes(i, {buf, size_t(n)}) : feed_ws(i, {buf, size_t(n)}))) {
            flush(i);  // a pong or close queued by the parser's sink
            return close_conn(i);
        }
        if (size_t(n) < sizeof(buf)) break;
    }
    if (c.fd < 0 || c.state == State::Upgrading) return;
    size_t off = 0;
    while (off < c.in.size()) {
        auto r = o_.dialect().split(std::span(c.in).subspan(off), 1u << 24);
        if (r.status == proto::SplitStatus::Incomplete) break;
        if (r.status == proto::SplitStatus::Error) return close_conn(i);
        close_me_ = false;
        on_frame(c, r.frame);
        if (close_me_) return close_conn(i);
        off += r.frame.size;
    }
    c.in.erase(c.in.begin(), c.in.begin() + ptrdiff_t(off));
    if (!c.out.empty()) dirty_.push_back(i);
}

void Worker::run() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    epoll_event evs[512];
    const size_t n = conns.size();
    std::vector<uint32_t> senders;
    for (uint32_t i = 0; i < n; ++i)
        if (conns[i].si >= 0) senders.push_back(i);
    size_t rr = 0;  // round robin over senders under --rate
    int64_t last_heartbeat_scan = 0;
    double tokens = 0;
    int64_t last_refill = now_ns();
    const double thread_rate = plan_.total_senders ? o_.rate * double(senders.size()) / plan_.total_senders : 0;
    // Loop bound: the main thread sets kStop by a deadline.
    while (g_phase.load(std::memory_order_relaxed) != kStop) {
        // Few handshakes at a time: a burst of thousands of SYNs overflows the
        // listen backlog and costs 1 s SYN retries.
        while (next_connect_ < n && connecting_ < 128) start_connect(next_connect_++);
        const int64_t now = now_ns();
        const int phase = g_phase.load(std::memory_order_relaxed);
        if (phase == kRun && now < g_send_end.load(std::memory_order_relaxed)) {
            if (o_.rate > 0) {
                tokens = std::min(std::max(1.0, thread_rate * 0.05), tokens + thread_rate * double(now - last_refill) / kSec);
                last_refill = now;
                for (size_t tried = 0; tokens >= 1 && tried < senders.size(); ++tried) {
                    const uint32_t i = senders[rr++ % senders.size()];
                    Conn& c = conns[i];
                    if (c.state != State::Online || c.inflight.size() >= o_.window || c.next_seq > c.to_send) continue;
                    send_one(c, now);
                    tokens -= 1;
                    tried = 0;
                    dirty_.push_back(i);
                }
            } else {
                for (uint32_t i : senders) {
                    Conn& c = conns[i];
                    if (c.state != State::Online || c.out.size() > (1u << 20)) continue;
                    bool any = false;
                    while (c.inflight.size() < o_.window && c.next_seq <= c.to_send) send_one(c, now), any = true;
                    if (any) dirty_.push_back(i);
                }
            }
        }
        // Heartbeat: the server closes sessions silent for 70 s.
        if (phase >= kRun && now - last_heartbeat_scan > kSec) {
            last_heartbeat_scan = now;
            for (uint32_t i = 0; i < n; ++i)
                if (conns[i].state == State::Online && now - conns[i].last_ping > 20 * kSec) {
                    conns[i].last_ping = now;
                    append(conns[i], proto::PingPacket{});
                    dirty_.push_back(i);
                }
        }
        for (uint32_t i : dirty_) flush(i);
        dirty_.clear();
        if (!acked_lines_.empty()) rec_.write(acked_lines_), acked_lines_.clear();
        int ready = epoll_wait(ep_, evs, 512, o_.rate > 0 ? 1 : 5);
        for (int k = 0; k < ready; ++k) on_event(uint32_t(evs[k].data.u64), evs[k].events);
        for (uint32_t i : dirty_) flush(i);
        dirty_.clear();
    }
    if (!acked_lines_.empty()) rec_.write(acked_lines_), acked_lines_.clear();
    for (uint32_t i = 0; i < n; ++i) close_conn(i, false);
    ::close(ep_);
}

// ---------------------------------------------------------------- pinger

struct PingerResult {
    LatencyHistogram hist;
    uint64_t max_us = 0, sent = 0, lost = 0;
    bool online = false;
};

// One blocking client: PING every 10 ms, wait up to 1 s for the PONG.
void run_pinger(const Options& o, PingerResult& res, const std::atomic<bool>& stop) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(o.ws_port != 0 ? o.ws_port : o.port);
    inet_pton(AF_INET, o.host.c_str(), &sa.sin_addr);
    std::vector<uint8_t> in;
    // --ws-port: packets go out in masked binary frames; the received frames'
    // binary payload is the packet stream in `in`, pings are answered.
    const bool use_ws = o.ws_port != 0;
    ws::FrameParser parser;
    ws::ControlAssembler control;
    uint32_t mask = uint32_t(now_ns()) | 1;
    auto next_mask = [&] { return mask = mask * 1664525u + 1013904223u; };
    bool ws_failed = false;
    auto send_packet = [&](std::span<const uint8_t> packet) {
        std::vector<uint8_t> frame;
        if (use_ws) ws::append_masked_frame(frame, ws::kBinary, packet, next_mask());
        else frame.assign(packet.begin(), packet.end());
        return send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) == ssize_t(frame.size());
    };
    auto take = [&](const uint8_t* bytes, size_t n) {
        if (!use_ws) return in.insert(in.end(), bytes, bytes + n), void();
        struct Sink {
            std::vector<uint8_t>& in;
            ws::ControlAssembler& control;
            int fd;
            uint32_t mask;
            bool on_data(uint8_t opcode, std::span<const uint8_t> chunk) {
                in.insert(in.end(), chunk.begin(), chunk.end());
                return opcode == ws::kBinary;
            }
            bool on_control(uint8_t opcode, std::span<const uint8_t> chunk, size_t offset, size_t total) {
                if (!control.add(chunk, offset, total) || opcode == ws::kPong) return true;
                std::vector<uint8_t> reply;
                ws::append_masked_frame(reply, opcode == ws::kPing ? ws::kPong : ws::kClose,
                                        opcode == ws::kPing ? control.payload() : std::span<const uint8_t>(), mask);
                (void)!send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
                return opcode == ws::kPing;
            }
        } sink{in, control, fd, next_mask()};
        if (parser.feed({bytes, n}, sink) != ws::FeedResult::Ok) ws_failed = true;
    };
    const proto::Dialect& dialect = o.dialect();
    uint8_t connack_reason = 0;  // of the last CONNACK read (0: none or undecodable)
    bool eof = false;
    // The next frame's type nibble, or -1 on timeout/EOF.
    auto read_frame = [&](int timeout_ms) -> int {
        const int64_t deadline = now_ns() + int64_t(timeout_ms) * 1'000'000;
        for (;;) {
            auto r = dialect.split(in, 1u << 24);
            if (r.status == proto::SplitStatus::Error) return -1;
            if (r.status == proto::SplitStatus::Complete) {
                int type = r.frame.type_nibble();
                proto::Packet connack;
                if (r.frame.type() == proto::PacketType::Connack &&
                    dialect.decode(r.frame, o.session_version(), connack) == proto::DecodeError::None)
                    connack_reason = std::get<proto::ConnackPacket>(connack).reason_code;
                in.erase(in.begin(), in.begin() + r.frame.size);
                return type;
            }
            const int64_t left = (deadline - now_ns()) / 1'000'000;
            pollfd p{fd, POLLIN, 0};
            if (left <= 0 || poll(&p, 1, int(left)) <= 0) return -1;
            uint8_t buf[4096];
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n <= 0) return eof = true, -1;
            take(buf, size_t(n));
            if (ws_failed) return eof = true, -1;
        }
    };
    // --ws-port: the upgrade, within 5 s; bytes after the 101 are frames.
    auto upgrade = [&]() -> bool {
        if (!use_ws) return true;
        char key[ws::kKeyLength], accept[ws::kAcceptLength];
        ws::make_key(uint64_t(now_ns()), uint64_t(getpid()), key);
        ws::accept_for(std::string_view(key, sizeof key), accept);
        std::string request;
        ws::append_upgrade_request(request, o.host, o.ws_port, std::string_view(key, sizeof key));
        if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) != ssize_t(request.size())) return false;
        std::vector<uint8_t> head;
        const int64_t deadline = now_ns() + 5 * kSec;
        for (;;) {
            const ws::UpgradeResult r = ws::check_upgrade_response(head, std::string_view(accept, sizeof accept));
            if (r.status == ws::UpgradeStatus::Refused) return false;
            if (r.status == ws::UpgradeStatus::Accepted) {
                take(head.data() + r.header_size, head.size() - r.header_size);
                return !ws_failed;
            }
            pollfd p{fd, POLLIN, 0};
            const int64_t left = (deadline - now_ns()) / 1'000'000;
            if (left <= 0 || poll(&p, 1, int(left)) <= 0) return false;
            uint8_t buf[4096];
            const ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n <= 0) return false;
            head.insert(head.end(), buf, buf + n);
        }
    };
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 && upgrade()) {
        crypto::KeyPair keys;
        std::string key_b64;
        if (o.has_crypto()) crypto::generate_keypair(keys), key_b64 = base64::encode(keys.public_key);
        const std::string uid = o.prefix + "pinger";
        proto::ConnectPacket cp{0, o.version, key_b64, 0, "bench", wall_ms(), uid, ""};
        std::vector<uint8_t> b(dialect.encoded_size(cp, o.version));
        dialect.encode(cp, o.version, b);
        res.online = send_packet(b) && read_frame(5000) == int(proto::PacketType::Connack) &&
                     connack_reason == uint8_t(proto::ReasonCode::Success);
    }
    int64_t next = now_ns();
    while (res.online && !stop.load()) {
        const int64_t t0 = now_ns();
        const uint8_t ping = 0x70;
        if (!send_packet(std::span(&ping, 1))) break;
        ++res.sent;
        int type = -1;
        for (int frames = 0; frames < 64 && (type = read_frame(1000)) != int(proto::PacketType::Pong) && type >= 0;)
            ++frames;  // skip anything else (there should be nothing)
        if (type != int(proto::PacketType::Pong)) {
            ++res.lost;  // a PONG that comes later is taken for the next PING's
            if (eof) break;
        } else {
            uint64_t us = uint64_t((now_ns() - t0) / 1000);
            res.hist.record(us);
            res.max_us = std::max(res.max_us, us);
        }
        next += 10'000'000;
        const int64_t wait = next - now_ns();
        if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
        else next = now_ns();
    }
    close(fd);
}

// ---------------------------------------------------------------- verify

int run_verify(const Options& o) {
    if (o.http_port == 0) throw std::runtime_error("--verify needs --http-port");
    std::ifstream in(o.verify_file);
    if (!in) throw std::runtime_error("cannot read " + o.verify_file);
    struct Acked {
        uint32_t seq;
        std::string msg_no;
    };
    struct Channel {
        std::string login_uid;
        std::map<std::string, Acked> acked;  // message_id -> ack
    };
    std::map<std::pair<int, std::string>, Channel> channels;  // (type, id)
    std::string line;
    uint64_t acked_total = 0;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        if (line.rfind("# channel ", 0) == 0) {  // "# channel TYPE ID LOGIN_UID": channels with no ack too
            std::string hash, word, id, login;
            int type;
            ls >> hash >> word >> type >> id >> login;
            channels[{type, id}].login_uid = login;
            continue;
        }
        if (line.empty() || line[0] == '#') continue;
        std::string message_id, id, login, msg_no;
        uint32_t seq;
        int type;
        if (!(ls >> message_id >> seq >> type >> id >> login >> msg_no)) throw std::runtime_error("bad line: " + line);
        auto& ch = channels[{type, id}];
        ch.login_uid = login;
        if (!ch.acked.emplace(message_id, Acked{seq, msg_no}).second)
            std::fprintf(stderr, "verify: message_id %s acked twice in the file\n", message_id.c_str());
        ++acked_total;
    }
    uint64_t missing = 0, duplicated = 0, seq_mismatch = 0, gaps = 0, seq_dups = 0, stored_total = 0, unacked_stored = 0,
             http_errors = 0;
    for (auto& [key, ch] : channels) {
        std::map<std::string, int> seen;  // message_id -> times stored
        std::map<std::string, uint32_t> stored_seq;
        uint32_t last = 0, expect = 1;
        // Pages forward from seq 1; bounded by the page count and by progress.
        for (uint32_t page = 0; page < 1'000'000; ++page) {
            json req = {{"login_uid", ch.login_uid}, {"channel_id", key.second},  {"channel_type", key.first},
                        {"min_message_seq", last},   {"max_message_seq", 0},      {"limit", o.verify_limit},
                        {"reverse", 1}};
            HttpReply r = http_post(o.host, o.http_port, "/channel/messagesync", req.dump());
            json j = json::parse(r.body, nullptr, false);
            if (r.status != 200 || !j.is_object() || !j.contains("messages")) {
                std::fprintf(stderr, "verify: %s/%d: HTTP %d %s\n", key.second.c_str(), key.first, r.status,
                             r.body.substr(0, 200).c_str());
                ++http_errors;
                break;
            }
            const json& msgs = j["messages"];
            uint32_t page_last = last;
            for (const json& m : msgs) {
                std::string id = m.contains("message_idstr") ? m["message_idstr"].get<std::string>()
                                                              : std::to_string(m["message_id"].get<int64_t>());
                uint32_t seq = m["message_seq"].get<uint32_t>();
                if (seq < expect) ++seq_dups;
                else if (seq > expect) gaps += seq - expect;
                expect = std::max(expect, seq + 1);
                page_last = std::max(page_last, seq);
                ++seen[id];
                stored_seq[id] = seq;
                ++stored_total;
            }
            if (msgs.empty() || page_last == last) break;
            last = page_last;
        }
        for (auto& [id, a] : ch.acked) {
            auto it = seen.find(id);
            if (it == seen.end()) {
                if (missing++ < 20)
                    std::fprintf(stderr, "verify: MISSING acked message %s seq %u (%s) in %s\n", id.c_str(), a.seq,
                                 a.msg_no.c_str(), key.second.c_str());
            } else {
                if (it->second > 1) ++duplicated;
                if (stored_seq[id] != a.seq) ++seq_mismatch;
            }
        }
        for (auto& [id, times] : seen)
            if (!ch.acked.count(id)) ++unacked_stored;
    }
    const bool ok = missing == 0 && duplicated == 0 && seq_mismatch == 0 && gaps == 0 && seq_dups == 0 && http_errors == 0;
    std::printf("verify: %zu channels, %llu acked, %llu stored (%llu stored without an ack: fine, in flight at the kill)\n"
                "verify: missing %llu, duplicated %llu, seq mismatches %llu, seq gaps %llu, seq duplicates %llu, "
                "http errors %llu -> %s\n",
                channels.size(), (unsigned long long)acked_total, (unsigned long long)stored_total,
                (unsigned long long)unacked_stored, (unsigned long long)missing, (unsigned long long)duplicated,
                (unsigned long long)seq_mismatch, (unsigned long long)gaps, (unsigned long long)seq_dups,
                (unsigned long long)http_errors, ok ? "OK" : "FAILED");
    json out = {{"mode", "verify"}, {"channels", channels.size()}, {"acked", acked_total}, {"stored", stored_total},
                {"stored_unacked", unacked_stored}, {"missing", missing}, {"duplicated", duplicated},
                {"seq_mismatch", seq_mismatch}, {"seq_gaps", gaps}, {"seq_dups", seq_dups},
                {"http_errors", http_errors}, {"ok", ok}};
    std::printf("%s\n", out.dump().c_str());
    return ok ? 0 : 1;
}

// ---------------------------------------------------------------- main

// Bucket upper bounds overshoot by up to 12.5 %: never report above the true max.
int64_t pct(const LatencySnapshot& s, double f, uint64_t max) { return std::min(s.percentile(f), int64_t(max)); }

int run_load(const Options& o) {
    Plan plan;
    plan.o = &o;
    const bool group = o.mode == "group";
    for (uint32_t k = 0; k < (o.kill_test || group ? o.senders : o.pairs); ++k) plan.uids.push_back(plan.make_uid(int32_t(k)));
    std::vector<Conn> all;  // in creation order, dealt to threads round-robin below
    auto add = [&](std::string uid) -> Conn& {
        all.emplace_back();
        all.back().uid = std::move(uid);
        return all.back();
    };
    if (o.kill_test) {
        plan.total_senders = o.senders;
        for (uint32_t k = 0; k < o.senders; ++k) {
            Conn& c = add(plan.sender_uid(int32_t(k)));
            c.si = int32_t(k);
            // Group: all senders share one channel (the seq order is tested
            // under concurrent writers); person: each its own fake channel.
            c.target = group ? o.group_id : o.prefix + "kp" + std::to_string(k);
            c.target_type = group ? 2 : 1;
            c.to_send = o.kill_total / o.senders + (k < o.kill_total % o.senders ? 1 : 0);
        }
    } else if (group) {
        plan.total_senders = o.senders;
        plan.fanout = o.members - 1;
        for (uint32_t m = 0; m < o.members; ++m) {
            Conn& c = add(plan.make_uid(int32_t(m)));
            c.receiver = true;
            c.got.resize(o.senders);
            if (m < o.senders) c.si = int32_t(m), c.target = o.group_id, c.target_type = 2;
        }
    } else {
        plan.total_senders = o.pairs;
        for (uint32_t p = 0; p < o.pairs; ++p) {
            Conn& s = add(plan.sender_uid(int32_t(p)));
            s.si = int32_t(p);
            s.target = o.prefix + "r" + std::to_string(p);
            s.target_type = 1;
            if (!o.ports.empty()) s.port = o.ports[p % o.ports.size()];
            Conn& r = add(s.target);  // (s may dangle from here: add grows the vector)
            r.receiver = true;
            r.expect_si = int32_t(p);
            r.got.resize(1);
            if (!o.ports.empty()) r.port = o.ports[(p + 1) % o.ports.size()];
        }
    }
    if (group) {
        if (o.http_port == 0) throw std::runtime_error("group mode needs --http-port (the group is made with POST /channel)");
        json subs = json::array();
        const uint32_t n = o.kill_test ? o.senders : o.members;
        for (uint32_t m = 0; m < n; ++m) subs.push_back(plan.make_uid(int32_t(m)));
        json req = {{"channel_id", o.group_id}, {"channel_type", 2}, {"subscribers", subs}};
        HttpReply r = http_post(o.host, o.http_port, "/channel", req.dump());
        if (r.status != 200) throw std::runtime_error("POST /channel: HTTP " + std::to_string(r.status) + " " + r.body);
    }
    Recorder rec;
    if (o.kill_test) {
        if (o.acked_out.empty()) throw std::runtime_error("--kill-test needs --acked-out FILE");
        rec.file = std::fopen(o.acked_out.c_str(), "w");
        if (!rec.file) throw std::runtime_error("cannot write " + o.acked_out);
        std::string head = "# bench_message --kill-test: message_id seq channel_type channel_id login_uid client_msg_no\n";
        for (const Conn& c : all) head += "# channel " + std::to_string(c.target_type) + " " + c.target + " " + c.uid + "\n";
        rec.write(head);
    }

    const uint32_t nthreads = std::min<uint32_t>(o.threads, uint32_t(all.size()));
    std::vector<Counters> counters(nthreads);
    std::vector<std::unique_ptr<Worker>> workers;
    for (uint32_t t = 0; t < nthreads; ++t) workers.push_back(std::make_unique<Worker>(plan, counters[t], rec));
    for (size_t i = 0; i < all.size(); ++i) workers[i % nthreads]->conns.push_back(std::move(all[i]));
    const uint64_t total_clients = all.size();
    all.clear();

    auto sum = [&](auto member) {
        uint64_t s = 0;
        for (auto& c : counters) s += (c.*member).load(std::memory_order_relaxed);
        return s;
    };
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

    // Login: every client online (or failed) by --login-timeout.
    const int64_t t_login = now_ns();
    while (now_ns() - t_login < int64_t(o.login_timeout * kSec) && !g_interrupted &&
           sum(&Counters::online) + sum(&Counters::login_failed) < total_clients)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const uint64_t online = sum(&Counters::online), failed = total_clients - online;
    std::fprintf(stderr, "bench_message: %llu/%llu clients online in %.2f s (%s v%d%s, %u threads)\n",
                 (unsigned long long)online, (unsigned long long)total_clients, double(now_ns() - t_login) / kSec,
                 o.dialect().name, o.version, o.ws_port != 0 ? ", WebSocket" : "", nthreads);

    PingerResult pinger;
    std::atomic<bool> pinger_stop{false};
    std::thread pinger_thread;
    if (o.pinger) pinger_thread = std::thread([&] { run_pinger(o, pinger, pinger_stop); });

    const int64_t t0 = now_ns();
    const int64_t run_ns = o.kill_test ? int64_t(o.duration * kSec) : int64_t((o.warmup + o.duration) * kSec);
    g_measure_start = o.kill_test ? t0 : t0 + int64_t(o.warmup * kSec);
    g_measure_end = t0 + run_ns;
    g_send_end = t0 + run_ns;
    if (failed == 0 || o.kill_test) g_phase = kRun;
    // Run: progress once a second. A kill-test ends as soon as every SEND is
    // answered or every sender is gone.
    uint64_t last_sent = 0, last_recv = 0, last_ack = 0;
    int64_t next_report = t0 + kSec;
    while (g_phase == kRun && now_ns() < t0 + run_ns && !g_interrupted) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        const uint64_t answered = sum(&Counters::acked_ok) + sum(&Counters::acked_err) + sum(&Counters::abandoned);
        if (o.kill_test && ((answered >= o.kill_total) || sum(&Counters::online) == 0)) break;
        if (now_ns() >= next_report) {
            next_report += kSec;
            uint64_t s = sum(&Counters::sent), r = sum(&Counters::recv_distinct), a = sum(&Counters::acked_ok);
            std::fprintf(stderr, "  t=%5.1fs online %llu  sends/s %llu  acks/s %llu  recvs/s %llu  errors %llu  bad %llu\n",
                         double(now_ns() - t0) / kSec, (unsigned long long)sum(&Counters::online),
                         (unsigned long long)(s - last_sent), (unsigned long long)(a - last_ack),
                         (unsigned long long)(r - last_recv), (unsigned long long)sum(&Counters::acked_err),
                         (unsigned long long)sum(&Counters::bad_payload));
            last_sent = s, last_recv = r, last_ack = a;
        }
    }
    const double measured_s = double(std::min(now_ns(), g_measure_end.load()) - g_measure_start.load()) / kSec;
    g_send_end = 0;
    g_measure_end = std::min(g_measure_end.load(), now_ns());
    g_phase = kDrain;
    // Drain: until every SEND is answered and every accepted message is
    // delivered to each expected receiver, or --drain passes.
    const int64_t t_drain = now_ns();
    while (now_ns() - t_drain < int64_t(o.drain * kSec) && !g_interrupted) {
        const uint64_t answered = sum(&Counters::acked_ok) + sum(&Counters::acked_err) + sum(&Counters::abandoned);
        const bool acks_done = answered >= sum(&Counters::sent);
        const bool recvs_done = o.kill_test || sum(&Counters::recv_distinct) >= sum(&Counters::acked_ok) * plan.fanout;
        if ((acks_done && recvs_done) || sum(&Counters::online) == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const double drain_s = double(now_ns() - t_drain) / kSec;
    g_phase = kStop;
    pinger_stop = true;
    for (auto& t : threads) t.join();
    if (pinger_thread.joinable()) pinger_thread.join();
    if (rec.file) std::fclose(rec.file);

    // Missing: accepted (SENDACK 1) but not received by an expected receiver;
    // extra: received without a SENDACK 1 (e.g. the ack was still in flight).
    std::vector<const Bits*> acked(plan.total_senders, nullptr);
    for (auto& w : workers)
        for (const Conn& c : w->conns)
            if (c.si >= 0) acked[size_t(c.si)] = &c.acked;
    uint64_t missing = 0, extra = 0;
    for (auto& w : workers)
        for (const Conn& c : w->conns) {
            if (!c.receiver) continue;
            for (size_t slot = 0; slot < c.got.size(); ++slot) {
                const size_t si = group ? slot : size_t(c.expect_si);
                if (group && int32_t(si) == c.si) continue;  // own messages are not delivered to this session
                const Bits& a = *acked[si];
                const Bits& g = c.got[slot];
                for (size_t k = 0; k < std::max(a.w.size(), g.w.size()); ++k) {
                    uint64_t aw = k < a.w.size() ? a.w[k] : 0, gw = k < g.w.size() ? g.w[k] : 0;
                    missing += uint64_t(__builtin_popcountll(aw & ~gw));
                    extra += uint64_t(__builtin_popcountll(gw & ~aw));
                }
            }
        }
    LatencySnapshot ack_snap, recv_snap, pong_snap;
    uint64_t ack_max = 0, recv_max = 0;
    for (auto& w : workers) {
        ack_snap.add(w->ack_lat), recv_snap.add(w->recv_lat);
        ack_max = std::max(ack_max, w->ack_max), recv_max = std::max(recv_max, w->recv_max);
    }
    pong_snap.add(pinger.hist);
    json reasons = json::object();
    for (int r = 0; r < 16; ++r) {
        uint64_t n = 0;
        for (auto& c : counters) n += c.ack_reason[r].load();
        if (n) reasons[std::to_string(r)] = n;
    }
    const double secs = std::max(measured_s, 1e-9);
    json out = {
        {"mode", o.kill_test ? "kill-test" : o.mode}, {"transport", o.ws_port != 0 ? "ws" : "tcp"},
        {"dialect", o.dialect().name}, {"version", o.version}, {"threads", nthreads},
        {"clients", total_clients}, {"online", online}, {"login_failed", failed},
        {"senders", plan.total_senders}, {"fanout", plan.fanout}, {"window", o.window}, {"rate", o.rate},
        {"payload", o.payload}, {"measured_s", measured_s}, {"drain_s", drain_s},
        {"sent", sum(&Counters::sent)}, {"acked_ok", sum(&Counters::acked_ok)},
        {"errors", sum(&Counters::acked_err)}, {"ack_reasons", reasons},
        {"unanswered", sum(&Counters::sent) - sum(&Counters::acked_ok) - sum(&Counters::acked_err)},
        {"sends_per_s", double(sum(&Counters::window_sends)) / secs},
        {"delivered_per_s", double(sum(&Counters::window_recvs)) / secs},
        {"delivered", sum(&Counters::recv_distinct)}, {"missing", missing}, {"duplicates", sum(&Counters::dups)},
        {"recv_without_ack", extra}, {"bad", sum(&Counters::bad_payload)}, {"closed", sum(&Counters::closed)},
        {"sendack_us", {{"p50", pct(ack_snap, 0.5, ack_max)}, {"p99", pct(ack_snap, 0.99, ack_max)}, {"p999", pct(ack_snap, 0.999, ack_max)},
                        {"max", ack_max}, {"n", ack_snap.count()}}},
        {"recv_us", {{"p50", pct(recv_snap, 0.5, recv_max)}, {"p99", pct(recv_snap, 0.99, recv_max)}, {"p999", pct(recv_snap, 0.999, recv_max)},
                     {"max", recv_max}, {"n", recv_snap.count()}}},
    };
    if (o.pinger)
        out["pong_us"] = {{"p50", pct(pong_snap, 0.5, pinger.max_us)}, {"p99", pct(pong_snap, 0.99, pinger.max_us)}, {"max", pinger.max_us},
                          {"n", pong_snap.count()}, {"lost", pinger.lost}, {"online", pinger.online}};
    if (o.kill_test) out["acked_out"] = o.acked_out, out["killed"] = g_killed.load();

    std::printf("bench_message %s %s v%d%s: %llu clients (%llu online), %u senders, window %u, rate %.0f/s, %u-byte payloads\n",
                out["mode"].get<std::string>().c_str(), o.dialect().name, o.version, o.ws_port != 0 ? " over WebSocket" : "",
                (unsigned long long)total_clients,
                (unsigned long long)online, plan.total_senders, o.window, o.rate, o.payload);
    std::printf("  measured %.1f s (+%.1f s drain): %.0f sends/s, %.0f delivered msgs/s (fan-out %llu)\n", measured_s,
                drain_s, out["sends_per_s"].get<double>(), out["delivered_per_s"].get<double>(),
                (unsigned long long)plan.fanout);
    std::printf("  sent %llu, SENDACK ok %llu, errors %llu %s, unanswered %llu\n",
                (unsigned long long)out["sent"].get<uint64_t>(), (unsigned long long)out["acked_ok"].get<uint64_t>(),
                (unsigned long long)out["errors"].get<uint64_t>(), reasons.dump().c_str(),
                (unsigned long long)out["unanswered"].get<uint64_t>());
    std::printf("  SEND->SENDACK us: p50 %lld p99 %lld p999 %lld max %llu\n", (long long)pct(ack_snap, 0.5, ack_max),
                (long long)pct(ack_snap, 0.99, ack_max), (long long)pct(ack_snap, 0.999, ack_max), (unsigned long long)ack_max);
    std::printf("  SEND->RECV    us: p50 %lld p99 %lld p999 %lld max %llu\n", (long long)pct(recv_snap, 0.5, recv_max),
                (long long)pct(recv_snap, 0.99, recv_max), (long long)pct(recv_snap, 0.999, recv_max), (unsigned long long)recv_max);
    std::printf("  RECVs: delivered %llu, missing %llu, duplicates %llu, without ack %llu, bad %llu; closed %llu\n",
                (unsigned long long)out["delivered"].get<uint64_t>(), (unsigned long long)missing,
                (unsigned long long)out["duplicates"].get<uint64_t>(), (unsigned long long)extra,
                (unsigned long long)out["bad"].get<uint64_t>(), (unsigned long long)out["closed"].get<uint64_t>());
    if (o.pinger)
        std::printf("  pinger PONG us: p50 %lld p99 %lld max %llu (%llu pongs, %llu lost)\n",
                    (long long)pct(pong_snap, 0.5, pinger.max_us), (long long)pct(pong_snap, 0.99, pinger.max_us), (unsigned long long)pinger.max_us,
                    (unsigned long long)pong_snap.count(), (unsigned long long)pinger.lost);
    std::printf("%s\n", out.dump().c_str());
    std::fflush(stdout);
    if (o.kill_test) return online == total_clients ? 0 : 1;
    const bool clean = failed == 0 && missing == 0 && out["duplicates"] == 0 && out["errors"] == 0 &&
                       out["bad"] == 0 && out["unanswered"] == 0;
    return clean ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, [](int) { g_interrupted = 1; });
    signal(SIGTERM, [](int) { g_interrupted = 1; });
    try {
        Options o;
        if (!parse_options(argc, argv, o)) return 2;
        if (!o.verify_file.empty()) return run_verify(o);
        return run_load(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_message: %s\n", e.what());
        return 2;
    }
}
