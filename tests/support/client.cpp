#include "client.h"

#include "limaoim/base64/base64.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "clock.h"

namespace limaoim::testing {

std::vector<uint8_t> from_hex(const std::string& hex) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(uint8_t(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

Client::~Client() { close(); }

Client::Client(Client&& other) noexcept
    : ws_close_code(other.ws_close_code), ws_pongs(other.ws_pongs), ws_data_frames(other.ws_data_frames),
      version(other.version), dialect(other.dialect), fd_(other.fd_), inbox_(std::move(other.inbox_)), raw_(std::move(other.raw_)),
      eof_(other.eof_), websocket_(other.websocket_) {
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
    raw_.clear();
    eof_ = false;
    websocket_ = false;
    ws_close_code.reset();
    ws_pongs = ws_data_frames = 0;
    return true;
}

bool Client::connect_websocket(uint16_t port, const std::string& host, const std::string& path) {
    if (!connect(port, host)) return false;
    const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 §1.3's example: its accept is known
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                                "\r\nSec-WebSocket-Version: 13\r\nOrigin: http://test\r\n\r\n";
    if (!send_raw({reinterpret_cast<const uint8_t*>(request.data()), request.size()})) return false;
    // The response ends at its blank line; frames may follow in the same read.
    const auto t0 = std::chrono::steady_clock::now();
    std::string head;
    for (;;) {
        const std::string_view text(reinterpret_cast<const char*>(inbox_.data()), inbox_.size());
        if (size_t end = text.find("\r\n\r\n"); end != std::string_view::npos) {
            head.assign(text.substr(0, end + 4));
            raw_.assign(inbox_.begin() + long(end + 4), inbox_.end());
            inbox_.clear();
            break;
        }
        const int64_t left = 3000 - ms_since(t0);
        if (left <= 0 || !fill(int(left))) return false;
    }
    if (!head.starts_with("HTTP/1.1 101 ") ||
        head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") == std::string::npos)
        return false;
    websocket_ = true;
    take_frames();
    return true;
}

std::vector<uint8_t> Client::ws_frame(uint8_t opcode, std::span<const uint8_t> payload, bool fin, bool masked) {
    static constexpr uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};
    std::vector<uint8_t> out;
    out.push_back(uint8_t((fin ? 0x80 : 0) | opcode));
    const uint8_t mask_bit = masked ? 0x80 : 0;
    if (payload.size() <= 125) {
        out.push_back(uint8_t(mask_bit | payload.size()));
    } else if (payload.size() <= 0xffff) {
        out.push_back(uint8_t(mask_bit | 126));
        out.push_back(uint8_t(payload.size() >> 8));
        out.push_back(uint8_t(payload.size()));
    } else {
        out.push_back(uint8_t(mask_bit | 127));
        for (int i = 7; i >= 0; --i) out.push_back(uint8_t(uint64_t(payload.size()) >> (8 * i)));
    }
    if (masked) out.insert(out.end(), kMask, kMask + 4);
    for (size_t i = 0; i < payload.size(); ++i) out.push_back(masked ? payload[i] ^ kMask[i & 3] : payload[i]);
    return out;
}

void Client::take_frames() {
    for (;;) {
        if (raw_.size() < 2) return;
        const uint8_t opcode = raw_[0] & 0x0f;
        uint64_t length = raw_[1] & 0x7f;
        size_t header = 2;
        if (raw_[1] & 0x80) {  // servers never mask (RFC 6455 §5.1): treat it as a broken stream
            eof_ = true;
            return;
        }
        if (length == 126 || length == 127) {
            const size_t bytes = length == 126 ? 2 : 8;
            if (raw_.size() < 2 + bytes) return;
            length = 0;
            for (size_t i = 0; i < bytes; ++i) length = (length << 8) | raw_[2 + i];
            header += bytes;
        }
        if (raw_.size() < header + length) return;
        const auto payload = std::span<const uint8_t>(raw_).subspan(header, size_t(length));
        if (opcode == 0 || opcode == 2) {
            ++ws_data_frames;
            inbox_.insert(inbox_.end(), payload.begin(), payload.end());
        } else if (opcode == 8) {
            ws_close_code = payload.size() >= 2 ? uint16_t(payload[0] << 8 | payload[1]) : uint16_t(1005);
        } else if (opcode == 9) {
            send_raw(ws_frame(10, payload));
        } else if (opcode == 10) {
            ++ws_pongs;
        }
        raw_.erase(raw_.begin(), raw_.begin() + long(header + length));
    }
}

void Client::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

bool Client::send_bytes(std::span<const uint8_t> bytes) {
    if (websocket_) return send_raw(ws_frame(2, bytes));
    return send_raw(bytes);
}

bool Client::send_raw(std::span<const uint8_t> bytes) {
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
    std::vector<uint8_t> buf(dialect->encoded_size(packet, v));
    if (buf.empty() || dialect->encode(packet, v, buf) != buf.size()) return false;
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
    if (websocket_) {
        raw_.insert(raw_.end(), buf, buf + n);
        take_frames();
    } else {
        inbox_.insert(inbox_.end(), buf, buf + n);
    }
    return true;
}

std::optional<Received> Client::read_packet(int timeout_ms) {
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
        proto::SplitResult r = dialect->split(inbox_, 1u << 24);
        if (r.status == proto::SplitStatus::Error) return std::nullopt;
        if (r.status == proto::SplitStatus::Complete) {
            Received out;
            out.bytes.assign(inbox_.begin(), inbox_.begin() + r.frame.size);
            inbox_.erase(inbox_.begin(), inbox_.begin() + r.frame.size);
            proto::SplitResult again = dialect->split(out.bytes, 1u << 24);
            if (dialect->decode(again.frame, version, out.packet) != proto::DecodeError::None) return std::nullopt;
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
    proto::crypto::KeyPair keys;
    std::string key_b64;
    const bool crypto = dialect->has_crypto(v);
    if (crypto) {
        proto::crypto::generate_keypair(keys);
        key_b64 = base64::encode(keys.public_key);
    }
    LoginResult result;
    if (!send_packet(make_connect(uid, token, v, device_flag, key_b64), v)) return result;
    version = dialect->session_version(v);  // the CONNACK is already at the session's version
    auto reply = read_packet(timeout_ms);
    if (!reply || reply->type() != proto::PacketType::Connack) return result;
    const auto& ack = std::get<proto::ConnackPacket>(reply->packet);
    result.answered = true;
    result.reason = ack.reason_code;
    result.time_diff = ack.time_diff;
    result.server_key = std::string(ack.server_key);
    result.salt = std::string(ack.salt);
    result.flags = ack.flags;
    result.server_version = ack.server_version;
    result.node_id = ack.node_id;
    result.connack = reply->bytes;
    if (crypto && ack.reason_code == uint8_t(proto::ReasonCode::Success)) {
        auto server_public = proto::crypto::parse_client_key(ack.server_key);
        proto::crypto::Key32 secret{};
        if (server_public && proto::crypto::shared_secret(keys.private_key, *server_public, secret))
            result.key = proto::crypto::derive_session_key(secret, ack.salt);
    }
    return result;
}

}  // namespace limaoim::testing
