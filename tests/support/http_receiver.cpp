#include "http_receiver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include "clock.h"
#include "http_client.h"

namespace limaoim::testing {

namespace {

std::string trim(const std::string& s) {
    const size_t a = s.find_first_not_of(" \t");
    if (a == std::string::npos) return {};
    const size_t b = s.find_last_not_of(" \t\r");
    return s.substr(a, b - a + 1);
}

const char* reason_text(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

void send_all(int fd, const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
        const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += size_t(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd p{fd, POLLOUT, 0};
            ::poll(&p, 1, 100);
        } else {
            return;  // the client went away
        }
    }
}

}  // namespace

struct HttpReceiver::Connection {
    int fd = -1;
    std::string in;
    bool waiting = false;  // a request is recorded, its answer not sent yet
    bool hang = false;
    bool close_after = false;
    Clock::time_point due;
    Reply reply;

    ~Connection() {
        if (fd >= 0) ::close(fd);
    }
};

HttpReceiver::HttpReceiver() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
        ::listen(listen_fd_, 128) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0)
        throw std::runtime_error("HttpReceiver: cannot listen on 127.0.0.1");
    port_ = ntohs(sa.sin_port);
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    thread_ = std::thread([this] { run(); });
}

HttpReceiver::~HttpReceiver() {
    stop();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::string HttpReceiver::url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void HttpReceiver::wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void HttpReceiver::push_reply(const Reply& reply) {
    std::lock_guard lock(mutex_);
    queued_.push_back(reply);
}

void HttpReceiver::set_responder(Responder responder) {
    std::lock_guard lock(mutex_);
    responder_ = std::move(responder);
}

void HttpReceiver::set_default(const Reply& reply) {
    std::lock_guard lock(mutex_);
    default_ = reply;
}

void HttpReceiver::release() {
    {
        std::lock_guard lock(mutex_);
        released_ = true;
    }
    wake();
}

void HttpReceiver::drop_connections() {
    {
        std::lock_guard lock(mutex_);
        drop_ = true;
    }
    wake();
}

void HttpReceiver::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake();
    if (thread_.joinable()) thread_.join();
}

std::vector<ReceivedRequest> HttpReceiver::requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
}

size_t HttpReceiver::count() const {
    std::lock_guard lock(mutex_);
    return requests_.size();
}

size_t HttpReceiver::answered() const {
    std::lock_guard lock(mutex_);
    return answered_;
}

size_t HttpReceiver::connections() const {
    std::lock_guard lock(mutex_);
    return connections_;
}

bool HttpReceiver::wait_for(const std::function<bool(const std::vector<ReceivedRequest>&)>& predicate,
                            std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return predicate(requests_); });
}

void HttpReceiver::run() {
    std::vector<std::unique_ptr<Connection>> conns;

    // A complete request at the front of c.in is recorded and its reply chosen.
    auto parse = [&](Connection& c) {
        if (c.waiting) return true;
        const size_t end = c.in.find("\r\n\r\n");
        if (end == std::string::npos) return true;
        ReceivedRequest request;
        size_t line_end = c.in.find("\r\n");
        const std::string request_line = c.in.substr(0, line_end);
        const size_t sp1 = request_line.find(' ');
        const size_t sp2 = request_line.find(' ', sp1 + 1);
        if (sp1 == std::string::npos || sp2 == std::string::npos) return false;
        request.method = request_line.substr(0, sp1);
        request.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
        const size_t q = request.target.find('?');
        request.path = request.target.substr(0, q);
        if (q != std::string::npos) request.query = request.target.substr(q + 1);
        size_t at = line_end + 2;
        while (at < end) {
            const size_t next = c.in.find("\r\n", at);
            const std::string line = c.in.substr(at, next - at);
            at = next + 2;
            const size_t colon = line.find(':');
            if (colon == std::string::npos) return false;
            request.headers[lower(line.substr(0, colon))] = trim(line.substr(colon + 1));
        }
        if (request.headers.count("transfer-encoding")) return false;  // not supported
        size_t length = 0;
        if (auto it = request.headers.find("content-length"); it != request.headers.end())
            length = size_t(std::strtoull(it->second.c_str(), nullptr, 10));
        if (c.in.size() < end + 4 + length) return true;
        request.body = c.in.substr(end + 4, length);
        c.in.erase(0, end + 4 + length);
        c.close_after = lower(request.header("connection")) == "close";

        Responder responder;
        size_t index = 0;
        Reply reply;
        bool chosen = false;
        bool released = false;
        {
            std::lock_guard lock(mutex_);
            index = requests_.size();
            requests_.push_back(request);
            if (!queued_.empty()) {
                reply = queued_.front();
                queued_.pop_front();
                chosen = true;
            } else if (responder_) {
                responder = responder_;
            } else {
                reply = default_;
                chosen = true;
            }
            released = released_;
        }
        if (!chosen) reply = responder(request, index);
        changed_.notify_all();
        c.waiting = true;
        c.reply = reply;
        c.hang = reply.hang && !released;
        c.due = Clock::now() + std::chrono::milliseconds(reply.delay_ms);
        return true;
    };

    for (;;) {
        bool released = false;
        {
            std::lock_guard lock(mutex_);
            if (stopping_) break;
            if (drop_) {
                conns.clear();
                drop_ = false;
            }
            released = released_;
        }
        // Answers that are due.
        const Clock::time_point now = Clock::now();
        for (auto& c : conns) {
            if (!c || !c->waiting) continue;
            if (c->hang ? !released : now < c->due) continue;
            std::string out = "HTTP/1.1 " + std::to_string(c->reply.status) + " " + reason_text(c->reply.status) +
                              "\r\nContent-Type: application/json\r\nContent-Length: " +
                              std::to_string(c->reply.body.size()) + "\r\n" +
                              (c->close_after ? "Connection: close\r\n" : "") + "\r\n" + c->reply.body;
            send_all(c->fd, out);
            {
                std::lock_guard lock(mutex_);
                ++answered_;
            }
            changed_.notify_all();
            c->waiting = false;
            if (c->close_after || !parse(*c)) c.reset();
        }
        conns.erase(std::remove(conns.begin(), conns.end(), nullptr), conns.end());

        std::vector<pollfd> fds;
        fds.push_back({listen_fd_, POLLIN, 0});
        fds.push_back({wake_fd_, POLLIN, 0});
        int timeout = 100;
        for (auto& c : conns) {
            fds.push_back({c->fd, POLLIN, 0});
            if (c->waiting && !c->hang) {
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c->due - now).count();
                timeout = int(std::clamp<int64_t>(left, 0, timeout));
            }
        }
        ::poll(fds.data(), fds.size(), timeout);
        if (fds[1].revents) {
            uint64_t v;
            [[maybe_unused]] ssize_t n = ::read(wake_fd_, &v, sizeof v);
        }
        if (fds[0].revents & POLLIN) {
            for (;;) {
                const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) break;
                auto c = std::make_unique<Connection>();
                c->fd = fd;
                conns.push_back(std::move(c));
                std::lock_guard lock(mutex_);
                ++connections_;
            }
        }
        for (size_t i = 2; i < fds.size(); ++i) {
            if (!fds[i].revents) continue;
            auto& c = conns[i - 2];
            bool closed = false;
            char buffer[65536];
            for (;;) {
                const ssize_t n = ::recv(c->fd, buffer, sizeof buffer, 0);
                if (n > 0) {
                    c->in.append(buffer, size_t(n));
                    continue;
                }
                if (n == 0 || (errno != EAGAIN && errno != EINTR)) closed = true;
                break;
            }
            if (closed || !parse(*c)) c.reset();
        }
        conns.erase(std::remove(conns.begin(), conns.end(), nullptr), conns.end());
    }
    conns.clear();
}

}  // namespace limaoim::testing
