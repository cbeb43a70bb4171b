// webhook_sink: a tiny HTTP/1.1 receiver for webhook benchmarks
// (SERVER.md §12), not a general HTTP server.
//
//   webhook_sink [--port P] [--mode ok|hang]
//
// Listens on 127.0.0.1:P (0 = the kernel picks; the port is the first line
// on stdout). One thread, poll(), keep-alive. Requests are framed by
// Content-Length (no chunked bodies: limaoim's libcurl calls always carry a
// Content-Length). Per request it counts the `event=` query value, the body
// bytes and, for a JSON array body, its top-level elements.
//   --mode ok    answers every request `HTTP/1.1 200 OK` with an empty body
//   --mode hang  never answers (the connection stays until the peer closes)
// At SIGTERM or SIGINT it prints one line per event and exits 0:
//   event=msg.notify requests=N body_bytes=B elements=E
// and one line `connections=C open=O` (accepted; still open at the end).
//
// Memory: a connection's buffer grows to its largest request and is then
// reused; counters are per event name. Nothing is allocated per request.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct EventCount {
    std::string name;
    uint64_t requests = 0, body_bytes = 0, elements = 0;
};
std::vector<EventCount> g_events;

EventCount& event_of(std::string_view name) {
    for (auto& e : g_events)
        if (e.name == name) return e;
    g_events.push_back(EventCount{std::string(name)});
    return g_events.back();
}

struct Conn {
    int fd = -1;
    std::vector<char> buf;  // received, not yet consumed: buf[0..len)
    size_t len = 0;
    std::string out;        // answers not yet written (ok mode)
    bool close_after = false;
};

bool ieq_prefix(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

// Top-level elements of a JSON array body (0 if it is not an array): commas
// at depth 1 outside strings, plus one for a non-empty array.
uint64_t array_elements(std::string_view b) {
    size_t i = 0;
    while (i < b.size() && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t')) ++i;
    if (i == b.size() || b[i] != '[') return 0;
    int depth = 0;
    bool in_str = false, esc = false, any = false;
    uint64_t commas = 0;
    for (; i < b.size(); ++i) {
        const char c = b[i];
        if (in_str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
            if (depth == 1) any = true;
        } else if (c == '[' || c == '{') {
            if (depth == 1) any = true;
            ++depth;
        } else if (c == ']' || c == '}') {
            if (--depth == 0) break;
        } else if (c == ',' && depth == 1) {
            ++commas;
        } else if (depth == 1 && c != ' ' && c != '\n' && c != '\r' && c != '\t') {
            any = true;
        }
    }
    return any ? commas + 1 : 0;
}

// Consumes whole requests from c.buf; false = a malformed request (close).
bool handle_requests(Conn& c, bool answer) {
    size_t off = 0;
    for (;;) {
        std::string_view data(c.buf.data() + off, c.len - off);
        const size_t hend = data.find("\r\n\r\n");
        if (hend == std::string_view::npos) {
            if (data.size() > 64 * 1024) return false;  // headers too long
            break;
        }
        std::string_view head = data.substr(0, hend);
        const size_t eol = head.find("\r\n");
        std::string_view line = head.substr(0, eol);
        size_t content_length = 0;
        bool conn_close = false;
        size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
        while (pos < head.size()) {
            size_t e = head.find("\r\n", pos);
            if (e == std::string_view::npos) e = head.size();
            std::string_view h = head.substr(pos, e - pos);
            if (ieq_prefix(h, "content-length:")) {
                content_length = std::strtoull(std::string(trim(h.substr(15))).c_str(), nullptr, 10);
            } else if (ieq_prefix(h, "transfer-encoding:")) {
                return false;  // chunked bodies are not supported
            } else if (ieq_prefix(h, "connection:")) {
                std::string_view v = trim(h.substr(11));
                conn_close = ieq_prefix(v, "close");
            }
            pos = e + 2;
        }
        if (content_length > (64u << 20)) return false;
        const size_t need = hend + 4 + content_length;
        if (data.size() < need) break;  // body not complete yet
        // Request target: METHOD SP TARGET SP VERSION; event= in its query.
        std::string_view target;
        if (size_t s1 = line.find(' '); s1 != std::string_view::npos) {
            size_t s2 = line.find(' ', s1 + 1);
            target = line.substr(s1 + 1, s2 == std::string_view::npos ? std::string_view::npos : s2 - s1 - 1);
        }
        std::string_view event = "-";
        if (size_t q = target.find('?'); q != std::string_view::npos) {
            std::string_view query = target.substr(q + 1);
            for (size_t p = 0; p <= query.size();) {
                size_t amp = query.find('&', p);
                if (amp == std::string_view::npos) amp = query.size();
                std::string_view kv = query.substr(p, amp - p);
                if (kv.substr(0, 6) == "event=") event = kv.substr(6);
                p = amp + 1;
            }
        }
        std::string_view body = data.substr(hend + 4, content_length);
        EventCount& ec = event_of(event);
        ++ec.requests;
        ec.body_bytes += body.size();
        ec.elements += array_elements(body);
        if (answer) {
            c.out += "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n";
            if (conn_close) c.out += "Connection: close\r\n";
            c.out += "\r\n";
            if (conn_close) c.close_after = true;
        }
        off += need;
        if (conn_close) break;
    }
    if (off > 0) {
        std::memmove(c.buf.data(), c.buf.data() + off, c.len - off);
        c.len -= off;
    }
    return true;
}

bool flush_out(Conn& c) {
    while (!c.out.empty()) {
        ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
            if (errno == EINTR) continue;
            return false;
        }
        c.out.erase(0, size_t(n));
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    int port = 0;
    bool answer = true;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "webhook_sink: %s needs a value\n", argv[i]);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--port") port = std::atoi(next());
        else if (a == "--mode") {
            std::string_view m = next();
            if (m == "ok") answer = true;
            else if (m == "hang") answer = false;
            else { std::fprintf(stderr, "webhook_sink: --mode ok|hang\n"); return 2; }
        } else {
            std::fprintf(stderr, "usage: webhook_sink [--port P (0 = pick)] [--mode ok|hang]\n");
            return a == "-h" || a == "--help" ? 0 : 2;
        }
    }

    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, nullptr);
    sigemptyset(&empty);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lfd, 128) != 0) {
        std::perror("webhook_sink: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen);
    std::printf("%d\n", int(ntohs(addr.sin_port)));
    std::fflush(stdout);

    std::vector<Conn> conns;
    std::vector<pollfd> pfds;
    uint64_t accepted = 0;
    while (!g_stop) {
        pfds.clear();
        pfds.push_back({lfd, POLLIN, 0});
        for (auto& c : conns) pfds.push_back({c.fd, short(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
        int n = ::ppoll(pfds.data(), pfds.size(), nullptr, &empty);
        if (n < 0) {
            if (errno == EINTR) continue;
            std::perror("webhook_sink: ppoll");
            return 1;
        }
        // Connections first (indices match pfds[1..]), then accept.
        for (size_t i = 0; i < conns.size(); ++i) {
            Conn& c = conns[i];
            const short re = pfds[i + 1].revents;
            bool dead = false;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                for (;;) {
                    if (c.buf.size() - c.len < 16384) c.buf.resize(std::max<size_t>(c.buf.size() * 2, 65536));
                    ssize_t r = ::recv(c.fd, c.buf.data() + c.len, c.buf.size() - c.len, 0);
                    if (r > 0) {
                        c.len += size_t(r);
                        continue;
                    }
                    if (r == 0) dead = true;
                    else if (errno == EINTR) continue;
                    else if (errno != EAGAIN && errno != EWOULDBLOCK) dead = true;
                    break;
                }
                if (!handle_requests(c, answer)) dead = true;
            }
            if (!dead && !flush_out(c)) dead = true;
            if (!dead && c.close_after && c.out.empty()) dead = true;
            if (dead) c.fd = (::close(c.fd), -1);
        }
        std::erase_if(conns, [](const Conn& c) { return c.fd < 0; });
        if (pfds[0].revents & POLLIN) {
            for (;;) {
                int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) break;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                ++accepted;
                conns.emplace_back();
                conns.back().fd = fd;
            }
        }
    }
    for (const auto& e : g_events)
        std::printf("event=%s requests=%llu body_bytes=%llu elements=%llu\n", e.name.c_str(),
                    (unsigned long long)e.requests, (unsigned long long)e.body_bytes, (unsigned long long)e.elements);
    std::printf("connections=%llu open=%zu\n", (unsigned long long)accepted, conns.size());
    std::fflush(stdout);
    for (auto& c : conns) ::close(c.fd);
    ::close(lfd);
    return 0;
}
