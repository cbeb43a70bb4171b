#include "client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace limaoim::testing {

namespace {
int64_t ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

std::vector<uint8_t> from_hex(const std::string& hex) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(uint8_t(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

Client::~Client() { close(); }

Client::Client(Client&& other) noexcept
    : version(other.version), fd_(other.fd_), inbox_(std::move(other.inbox_)), eof_(other.eof_) {
    other.fd_ = -1;
}

bool Client::connect(uint16_t port, const std::string& host) {
    close();
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &sa.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
        close();
        return false;
    }
    inbox_.clear();
    eof_ = false;
    return true;
}

void Client::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

bool Client::send_bytes(std::span<const uint8_t> bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        off += size_t(n);
    }
    return true;
}

bool Client::send_hex(const std::string& hex) { return send_bytes(from_hex(hex)); }

bool Client::send_packet(const proto::Packet& packet, uint8_t v) {
    std::vector<uint8_t> buf(proto::encoded_size(packet, v));
    if (buf.empty() || proto::encode(packet, v, buf) != buf.size()) return false;
    return send_bytes(buf);
}

bool Client::fill(int timeout_ms) {
    if (eof_ || fd_ < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc <= 0) return false;
    uint8_t buf[65536];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
        eof_ = true;
        return false;
    }
    inbox_.insert(inbox_.end(), buf, buf + n);
    return true;
}

std::optional<Received> Client::read_packet(int timeout_ms) {
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
        proto::SplitResult r = proto::split_frame(inbox_, 1u << 24);
        if (r.status == proto::SplitStatus::Error) return std::nullopt;
        if (r.status == proto::SplitStatus::Complete) {
            Received out;
            out.bytes.assign(inbox_.begin(), inbox_.begin() + r.frame.size);
            inbox_.erase(inbox_.begin(), inbox_.begin() + r.frame.size);
            proto::SplitResult again = proto::split_frame(out.bytes, 1u << 24);
            if (proto::decode(again.frame, version, out.packet) != proto::DecodeError::None) return std::nullopt;
            return out;
        }
        int64_t left = timeout_ms - ms_since(t0);
        if (left <= 0 || !fill(int(left))) return std::nullopt;
    }
}

bool Client::wait_closed(int timeout_ms, std::vector<Received>* seen) {
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
        if (eof_) return true;
        int64_t left = timeout_ms - ms_since(t0);
        if (left <= 0) return false;
        if (!fill(int(left))) {
            if (eof_) break;
            continue;
        }
        while (auto p = read_packet(0))
            if (seen) seen->push_back(std::move(*p));
    }
    return true;
}

proto::ConnectPacket Client::make_connect(std::string_view uid, std::string_view token, uint8_t v,
                                          uint8_t device_flag, std::string_view client_key_b64) {
    proto::ConnectPacket c;
    c.version = v;
    c.client_key = client_key_b64;
    c.device_flag = device_flag;
    c.device_id = "test-device";
    c.client_timestamp =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    c.uid = uid;
    c.token = token;
    return c;
}

LoginResult Client::login(const std::string& uid, const std::string& token, uint8_t v, uint8_t device_flag,
                          int timeout_ms) {
    version = v;
    proto::crypto::KeyPair keys;
    std::string key_b64;
    if (proto::has_crypto(v)) {
        proto::crypto::generate_keypair(keys);
        key_b64 = proto::crypto::base64_encode(keys.public_key);
    }
    LoginResult result;
    if (!send_packet(make_connect(uid, token, v, device_flag, key_b64), v)) return result;
    auto reply = read_packet(timeout_ms);
    if (!reply || reply->type() != proto::PacketType::Connack) return result;
    const auto& ack = std::get<proto::ConnackPacket>(reply->packet);
    result.answered = true;
    result.reason = ack.reason_code;
    result.time_diff = ack.time_diff;
    result.server_key = std::string(ack.server_key);
    result.salt = std::string(ack.salt);
    if (proto::has_crypto(v) && ack.reason_code == uint8_t(proto::ReasonCode::Success)) {
        auto server_public = proto::crypto::parse_client_key(ack.server_key);
        proto::crypto::Key32 secret{};
        if (server_public && proto::crypto::shared_secret(keys.private_key, *server_public, secret))
            result.key = proto::crypto::derive_session_key(secret, ack.salt);
    }
    return result;
}

}  // namespace limaoim::testing
