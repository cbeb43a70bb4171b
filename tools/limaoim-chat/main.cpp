// limaoim-chat: a small command-line client for trying a limaoim server.
// Logs in (v1-v4, with the v3/v4 key exchange), then sends lines (--say or
// stdin) to a person (--to) or group (--group) and prints what arrives.
//
// stdout: `sent ...` / `refused ...` per SENDACK and one line per RECV.
// stderr: status and errors. Exit status: 0 ok; 1 login failed, connection
// lost or closed by the server, a SENDACK or PONG timed out, or a message was
// refused; 2 usage.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "limaoim/base64/base64.h"
#include "limaoim/proto/codec.h"
#include "limaoim/proto/crypto.h"
#include "limaoim/proto/packet.h"

namespace {

namespace proto = limaoim::proto;
namespace crypto = limaoim::proto::crypto;
namespace base64 = limaoim::base64;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kConnectTimeout = 5s, kConnackTimeout = 10s, kSendackTimeout = 10s;
constexpr auto kPingInterval = 20s, kPongTimeout = 10s;

struct Options {
    std::string uid, token, host = "127.0.0.1", device_id = "limaoim-chat", to, group, say;
    uint16_t port = 6666;
    uint8_t device = 0, version = 4;
    uint32_t count = 1;
    double listen = -1;  // < 0: not given
};

volatile sig_atomic_t g_stop = 0;
sigset_t g_wait_mask;  // the mask during waits: SIGINT/SIGTERM unblocked only there

const char* reason_name(unsigned code) {
    static const char* const names[] = {"Error", "Success", "AuthFail", "SubscriberNotExist", "InBlacklist",
                                        "ChannelNotExist", "UserNotOnNode", "SenderOffline", "MsgKeyError",
                                        "PayloadDecodeError", "ForwardSendPacketError", "NotAllowSend"};
    return code < std::size(names) ? names[code] : "Unknown";
}

// Control bytes shown as \xNN so a payload cannot garble the terminal.
std::string printable(std::string_view s) {
    std::string out;
    for (unsigned char ch : s) {
        if (ch >= 0x20 && ch != 0x7f) { out += char(ch); continue; }
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", ch);
        out += buf;
    }
    return out;
}

std::string random_hex32() {
    static std::random_device rd;
    static std::mt19937_64 rng((uint64_t(rd()) << 32) ^ rd());
    char out[33];
    std::snprintf(out, sizeof out, "%016llx%016llx", (unsigned long long)rng(), (unsigned long long)rng());
    return out;
}

int ms_until(Clock::time_point t) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
    return ms <= 0 ? 0 : ms > 3'600'000 ? 3'600'000 : int(ms + 1);
}

// poll() that a SIGINT/SIGTERM interrupts (they are blocked everywhere else).
int wait_fds(pollfd* fds, nfds_t n, int timeout_ms) {
    timespec ts{timeout_ms / 1000, long(timeout_ms % 1000) * 1'000'000};
    int rc = ppoll(fds, n, timeout_ms < 0 ? nullptr : &ts, &g_wait_mask);
    // ppoll delivers a pending signal only when it returns EINTR, not when
    // an fd was ready: look for one left pending.
    sigset_t pending;
    if (sigpending(&pending) == 0 && (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM))) g_stop = 1;
    return rc < 0 && errno == EINTR ? 0 : rc;
}

struct Conn {
    int fd = -1;
    uint8_t version = 4;
    crypto::SessionKey key;
    crypto::Cipher cipher;
    std::vector<uint8_t> inbox;

    bool send(const proto::Packet& p) {
        std::vector<uint8_t> buf(proto::encoded_size(p, version));
        if (buf.empty() || proto::encode(p, version, buf) != buf.size()) return false;
        for (size_t off = 0; off < buf.size();) {
            ssize_t n = ::send(fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            off += size_t(n);
        }
        return true;
    }
    // Appends what the socket has; false on EOF or error.
    bool fill() {
        uint8_t buf[65536];
        ssize_t n;
        do n = recv(fd, buf, sizeof buf, 0); while (n < 0 && errno == EINTR);
        if (n <= 0) return false;
        inbox.insert(inbox.end(), buf, buf + n);
        return true;
    }
    // Takes the first complete frame off the inbox into `frame` and decodes it
    // into `out` (whose views point into `frame`). 0: none yet, -1: corrupt.
    int take(std::vector<uint8_t>& frame, proto::Packet& out) {
        auto r = proto::split_frame(inbox);
        if (r.status == proto::SplitStatus::Incomplete) return 0;
        if (r.status == proto::SplitStatus::Error) return -1;
        frame.assign(inbox.begin(), inbox.begin() + r.frame.size);
        inbox.erase(inbox.begin(), inbox.begin() + r.frame.size);
        auto again = proto::split_frame(frame);
        return proto::decode(again.frame, version, out) == proto::DecodeError::None ? 1 : -1;
    }
};

bool connect_to(Conn& c, const Options& o) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (int rc = getaddrinfo(o.host.c_str(), std::to_string(o.port).c_str(), &hints, &res); rc != 0) {
        std::cerr << "limaoim-chat: cannot resolve " << o.host << ": " << gai_strerror(rc) << '\n';
        return false;
    }
    int err = ETIMEDOUT;
    for (addrinfo* a = res; a && c.fd < 0 && !g_stop; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) { err = errno; continue; }
        if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            socklen_t len = sizeof err;
            err = wait_fds(&p, 1, int(std::chrono::milliseconds(kConnectTimeout).count())) > 0 ? 0 : ETIMEDOUT;
            if (err == 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        } else {
            err = errno == EISCONN ? 0 : errno;
        }
        if (err == 0) c.fd = fd; else close(fd);
    }
    freeaddrinfo(res);
    if (c.fd < 0 || g_stop) {
        std::cerr << "limaoim-chat: cannot connect to " << o.host << ':' << o.port << ": "
                  << (g_stop ? "interrupted" : std::strerror(err)) << '\n';
        return false;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return true;
}

bool login(Conn& c, const Options& o) {
    c.version = o.version;
    crypto::KeyPair keys;
    std::string key_b64;
    if (proto::has_crypto(c.version)) {
        if (!crypto::generate_keypair(keys)) { std::cerr << "limaoim-chat: key generation failed\n"; return false; }
        key_b64 = base64::encode(keys.public_key);
    }
    proto::ConnectPacket cp;
    cp.version = c.version;
    cp.client_key = key_b64;
    cp.device_flag = o.device;
    cp.device_id = o.device_id;
    cp.client_timestamp = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
    cp.uid = o.uid;
    cp.token = o.token;
    if (!c.send(cp)) { std::cerr << "limaoim-chat: sending CONNECT failed: " << std::strerror(errno) << '\n'; return false; }
    const auto deadline = Clock::now() + kConnackTimeout;
    std::vector<uint8_t> frame;
    proto::Packet p;
    for (;;) {
        int got = c.take(frame, p);
        if (got < 0) { std::cerr << "limaoim-chat: login failed: undecodable reply\n"; return false; }
        if (got > 0 && std::holds_alternative<proto::ConnackPacket>(p)) break;
        if (got > 0 && std::holds_alternative<proto::DisconnectPacket>(p)) {
            auto& d = std::get<proto::DisconnectPacket>(p);
            std::cerr << "limaoim-chat: login failed: server sent DISCONNECT reason " << unsigned(d.reason_code)
                      << " (" << reason_name(d.reason_code) << "): " << printable(d.reason) << '\n';
            return false;
        }
        if (got > 0) continue;  // anything else before CONNACK: ignored
        pollfd pf{c.fd, POLLIN, 0};
        if (g_stop || Clock::now() >= deadline || (wait_fds(&pf, 1, ms_until(deadline)) > 0 && !c.fill())) {
            std::cerr << "limaoim-chat: login failed: "
                      << (g_stop ? "interrupted" : Clock::now() >= deadline ? "no CONNACK within 10 s"
                                                                             : "server closed the connection")
                      << '\n';
            return false;
        }
    }
    const auto& ack = std::get<proto::ConnackPacket>(p);
    if (ack.reason_code != uint8_t(proto::ReasonCode::Success)) {
        std::cerr << "limaoim-chat: login refused: reason " << unsigned(ack.reason_code) << " ("
                  << reason_name(ack.reason_code) << ")\n";
        return false;
    }
    if (proto::has_crypto(c.version)) {
        auto server_key = crypto::parse_client_key(ack.server_key);
        crypto::Key32 secret{};
        if (!server_key || ack.salt.size() != crypto::kSaltLength ||
            !crypto::shared_secret(keys.private_key, *server_key, secret)) {
            std::cerr << "limaoim-chat: login failed: unusable server key or salt in CONNACK\n";
            return false;
        }
        c.key = crypto::derive_session_key(secret, ack.salt);
    }
    std::cerr << "limaoim-chat: logged in as " << o.uid << " (device " << unsigned(o.device) << ", protocol v"
              << unsigned(c.version) << ") to " << o.host << ':' << o.port << '\n';
    return true;
}

struct Chat {
    Conn& c;
    const Options& o;
    std::string channel;
    uint8_t channel_type = 0;
    uint32_t next_seq = 1;
    std::map<uint32_t, Clock::time_point> waiting;  // client_seq -> SENDACK deadline
    int refused = 0;
    std::optional<Clock::time_point> pong_deadline;

    bool send_text(const std::string& text) {
        proto::SendPacket s;
        s.flags = 0x02;  // RedDot, as the SDKs send chat messages: it counts as unread (§11)
        s.client_seq = next_seq;
        const std::string msg_no = random_hex32();
        s.client_msg_no = msg_no;
        s.channel_id = channel;
        s.channel_type = channel_type;
        std::string wire;
        char msg_key[32];
        if (proto::has_crypto(c.version)) {
            c.cipher.seal_payload(c.key, text, wire);
            s.payload = wire;
            std::string sign;
            crypto::append_send_sign(s, sign);
            c.cipher.msg_key(c.key, sign, msg_key);
            s.msg_key = std::string_view(msg_key, 32);
        } else {
            s.payload = text;
        }
        if (!c.send(s)) { std::cerr << "limaoim-chat: sending failed: " << std::strerror(errno) << '\n'; return false; }
        waiting[next_seq++] = Clock::now() + kSendackTimeout;
        return true;
    }

    // False when the connection must end (DISCONNECT).
    bool handle(const proto::Packet& p) {
        if (auto* a = std::get_if<proto::SendackPacket>(&p)) {
            if (!waiting.erase(a->client_seq)) return true;  // not ours to report
            if (a->reason_code == uint8_t(proto::ReasonCode::Success)) {
                std::cout << "sent seq=" << a->message_seq << " id=" << a->message_id << std::endl;
            } else {
                ++refused;
                std::cout << "refused: reason " << unsigned(a->reason_code) << " (" << reason_name(a->reason_code)
                          << ")" << std::endl;
            }
        } else if (auto* r = std::get_if<proto::RecvPacket>(&p)) {
            std::string text(r->payload);
            if (proto::has_crypto(c.version)) {
                char expected[32];
                c.cipher.recv_msg_key(c.key, *r, expected);
                text.clear();
                if (r->msg_key != std::string_view(expected, 32))
                    std::cerr << "limaoim-chat: warning: RECV id " << r->message_id << " has a wrong MsgKey\n";
                if (!c.cipher.open_payload(c.key, r->payload, text)) {
                    std::cerr << "limaoim-chat: warning: RECV id " << r->message_id << " does not decrypt\n";
                    text = "<undecryptable payload>";
                }
            }
            std::cout << '[' << printable(r->channel_id) << '/' << unsigned(r->channel_type) << "] "
                      << printable(r->from_uid) << ": " << printable(text) << " (seq " << r->message_seq << ", id "
                      << r->message_id << ')' << std::endl;
            proto::RecvackPacket ack{uint8_t(r->flags & 0x0f), r->message_id, r->message_seq};
            c.send(ack);
        } else if (std::holds_alternative<proto::PongPacket>(p)) {
            pong_deadline.reset();
        } else if (auto* d = std::get_if<proto::DisconnectPacket>(&p)) {
            std::cerr << "limaoim-chat: disconnected by the server: reason " << unsigned(d->reason_code) << " ("
                      << reason_name(d->reason_code) << "): " << printable(d->reason) << '\n';
            return false;
        }
        return true;  // anything else is ignored
    }

    int run() {
        const bool interactive = !channel.empty() && o.say.empty();
        const bool listen_given = o.listen >= 0;
        bool stdin_open = interactive || (listen_given && o.listen == 0);
        bool listening = o.say.empty();  // --say: listening starts once all are acked
        uint32_t said = 0;
        const auto listen_for = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.listen));
        std::optional<Clock::time_point> end;
        if (listening && o.listen > 0) end = Clock::now() + listen_for;
        auto next_ping = Clock::now() + kPingInterval;
        std::string line_buf;
        std::vector<uint8_t> frame;
        const int ok = 0;  // the exit status when nothing went wrong; 1 if a message was refused
        for (;;) {
            if (g_stop) { std::cerr << "limaoim-chat: interrupted\n"; return refused ? 1 : ok; }
            if (!listening && said < o.count && waiting.empty()) {
                if (!send_text(o.say)) return 1;
                ++said;
            }
            if (!listening && said == o.count && waiting.empty()) {
                if (!listen_given) return refused ? 1 : ok;
                listening = true;
                if (o.listen > 0) end = Clock::now() + listen_for;
            }
            const auto now = Clock::now();
            if (waiting.empty()) {
                if (interactive && !stdin_open) return refused ? 1 : ok;
                if (listening && !interactive && o.listen == 0 && !stdin_open) return refused ? 1 : ok;
                if (end && now >= *end) return refused ? 1 : ok;
            }
            Clock::time_point wake = next_ping;
            for (auto& [seq, deadline] : waiting) {
                if (deadline <= now) {
                    std::cerr << "limaoim-chat: no SENDACK for client_seq " << seq << " within 10 s\n";
                    return 1;
                }
                wake = std::min(wake, deadline);
            }
            if (pong_deadline && *pong_deadline <= now) {
                std::cerr << "limaoim-chat: the server did not answer PING within 10 s\n";
                return 1;
            }
            if (now >= next_ping) {
                if (!c.send(proto::PingPacket{})) { std::cerr << "limaoim-chat: connection lost\n"; return 1; }
                if (!pong_deadline) pong_deadline = now + kPongTimeout;
                next_ping = now + kPingInterval;
                continue;
            }
            if (pong_deadline) wake = std::min(wake, *pong_deadline);
            if (end && *end > now) wake = std::min(wake, *end);
            pollfd fds[2] = {{c.fd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
            if (wait_fds(fds, stdin_open ? 2 : 1, ms_until(wake)) < 0) {
                std::cerr << "limaoim-chat: poll: " << std::strerror(errno) << '\n';
                return 1;
            }
            if (fds[0].revents) {
                if (!c.fill()) { std::cerr << "limaoim-chat: the server closed the connection\n"; return 1; }
                proto::Packet p;
                for (int got; (got = c.take(frame, p)) != 0;) {
                    if (got < 0) { std::cerr << "limaoim-chat: undecodable packet from the server\n"; return 1; }
                    if (!handle(p)) return 1;
                }
            }
            if (stdin_open && fds[1].revents) {
                char buf[4096];
                ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) stdin_open = false;
                if (!interactive) continue;  // --listen 0 watches stdin only for its end
                if (n > 0) line_buf.append(buf, size_t(n));
                if (!stdin_open && !line_buf.empty() && line_buf.back() != '\n') line_buf += '\n';
                for (size_t nl; (nl = line_buf.find('\n')) != std::string::npos;) {
                    std::string line = line_buf.substr(0, nl);
                    line_buf.erase(0, nl + 1);
                    if (!line.empty() && line.back() == '\r') line.pop_back();
                    if (!line.empty() && !send_text(line)) return 1;
                }
            }
        }
    }
};

void on_stop(int) { g_stop = 1; }

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"limaoim-chat: log in to a limaoim server, send messages and print what arrives"};
    Options o;
    app.add_option("--uid", o.uid, "user id to log in as")->required();
    app.add_option("--token", o.token, "login token (any value against a --mode test server)");
    app.add_option("--host", o.host, "server host")->capture_default_str();
    app.add_option("--port", o.port, "server TCP port")->capture_default_str();
    app.add_option("--device", o.device, "device flag: 0 app, 1 web, 2 system")->capture_default_str();
    app.add_option("--device-id", o.device_id, "device id sent in CONNECT")->capture_default_str();
    app.add_option("--proto-version", o.version, "protocol version 1-4 (3 and 4 encrypt)")
        ->check(CLI::Range(1, 4))
        ->capture_default_str();
    auto* to = app.add_option("--to", o.to, "send to this user (channel type 1)");
    auto* group = app.add_option("--group", o.group, "send to this group (channel type 2)");
    to->excludes(group);
    auto* say = app.add_option("--say", o.say, "send TEXT, wait for its SENDACK and exit (see --listen)");
    app.add_option("--count", o.count, "with --say: send TEXT this many times")
        ->check(CLI::Range(1u, 1'000'000u))
        ->needs(say);
    app.add_option("--listen", o.listen, "print RECVs for SECONDS (0: until stdin closes or Ctrl-C)")
        ->check(CLI::Range(0.0, 31'536'000.0));
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    if (!o.say.empty() && o.to.empty() && o.group.empty()) {
        std::cerr << "limaoim-chat: --say needs --to or --group\n";
        return 2;
    }
    if (o.to.empty() && o.group.empty() && o.listen < 0) {
        std::cerr << "limaoim-chat: nothing to do: give --to USER or --group GROUP, or --listen SECONDS\n";
        return 2;
    }

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, &g_wait_mask);
    sigdelset(&g_wait_mask, SIGINT);
    sigdelset(&g_wait_mask, SIGTERM);
    struct sigaction sa{};
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    Conn conn;
    if (!connect_to(conn, o) || !login(conn, o)) return 1;
    Chat chat{conn, o, o.to.empty() ? o.group : o.to, uint8_t(o.to.empty() ? 2 : 1), 1, {}, 0, {}};
    int rc = chat.run();
    close(conn.fd);
    return rc;
}
