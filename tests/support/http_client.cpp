#include "http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "clock.h"

namespace limaoim::testing {

namespace {

// Decodes a chunked body; false while it is incomplete.
bool dechunk(const std::string& in, std::string& out) {
    out.clear();
    size_t pos = 0;
    for (;;) {
        size_t eol = in.find("\r\n", pos);
        if (eol == std::string::npos) return false;
        size_t size = std::strtoul(in.substr(pos, eol - pos).c_str(), nullptr, 16);
        pos = eol + 2;
        if (size == 0) return true;  // trailers are ignored
        if (in.size() < pos + size + 2) return false;
        out.append(in, pos, size);
        pos += size + 2;
    }
}

// Parses what has been received; true once the response is complete (or, at
// EOF, as complete as it will get).
bool parse_response(const std::string& raw, bool eof, HttpResult& r) {
    size_t head_end = raw.find("\r\n\r\n");
    if (head_end == std::string::npos) return false;
    size_t line_end = raw.find("\r\n");
    std::string status_line = raw.substr(0, line_end);
    size_t sp = status_line.find(' ');
    if (status_line.rfind("HTTP/", 0) != 0 || sp == std::string::npos) {
        r.error = "bad status line: " + status_line;
        return true;
    }
    int status = std::atoi(status_line.c_str() + sp + 1);
    r.headers.clear();
    size_t pos = line_end + 2;
    while (pos < head_end) {
        size_t eol = raw.find("\r\n", pos);
        std::string line = raw.substr(pos, eol - pos);
        pos = eol + 2;
        size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        size_t v = line.find_first_not_of(" \t", colon + 1);
        r.headers[lower(line.substr(0, colon))] = v == std::string::npos ? "" : line.substr(v);
    }
    std::string rest = raw.substr(head_end + 4);
    if (auto te = r.headers.find("transfer-encoding"); te != r.headers.end() && lower(te->second) == "chunked") {
        if (!dechunk(rest, r.body)) {
            if (eof) r.error = "truncated chunked body";
            return eof;
        }
    } else if (auto cl = r.headers.find("content-length"); cl != r.headers.end()) {
        size_t length = std::strtoul(cl->second.c_str(), nullptr, 10);
        if (rest.size() < length) {
            if (eof) r.error = "truncated body";
            return eof;
        }
        r.body = rest.substr(0, length);
    } else {
        if (!eof) return false;  // the body runs to EOF
        r.body = rest;
    }
    r.status = r.error.empty() ? status : 0;
    return true;
}

}  // namespace

HttpResult http_request(uint16_t port, const std::string& method, const std::string& path, const std::string& body,
                        const std::string& bearer, int timeout_ms, const std::string& host) {
    HttpResult r;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return r.error = "socket failed", r;
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &sa.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
        return r.error = std::string("connect: ") + std::strerror(errno), r;

    std::string request = method + " " + path + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
                          "\r\nConnection: close\r\n";
    if (!bearer.empty()) request += "Authorization: Bearer " + bearer + "\r\n";
    if (!body.empty() || method == "POST" || method == "PUT")
        request += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    request += "\r\n" + body;
    for (size_t off = 0; off < request.size();) {
        pollfd p{fd, POLLOUT, 0};
        if (poll(&p, 1, left_ms(deadline)) <= 0) return r.error = "send timeout", r;
        ssize_t n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return r.error = std::string("send: ") + std::strerror(errno), r;
        off += size_t(n);
    }

    std::string raw;
    char buf[16384];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        int rc = poll(&p, 1, left_ms(deadline));
        if (rc <= 0) {
            r.error = "response timeout after " + std::to_string(raw.size()) + " bytes";
            return r;
        }
        ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        bool eof = n <= 0;
        if (!eof) raw.append(buf, size_t(n));
        if (parse_response(raw, eof, r)) return r;
        if (eof) {
            r.error = raw.empty() ? "connection closed without a response" : "truncated response";
            return r;
        }
    }
}

nlohmann::json http_json(uint16_t port, const std::string& method, const std::string& path,
                         const nlohmann::json& body, int* status) {
    HttpResult r = http_request(port, method, path, body.is_null() ? "" : body.dump());
    if (status) *status = r.status;
    if (r.status == 0) return nlohmann::json(nlohmann::json::value_t::discarded);
    return nlohmann::json::parse(r.body, nullptr, false);
}

}  // namespace limaoim::testing
