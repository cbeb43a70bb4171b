#include "chat_client.h"

#include <chrono>

#include "clock.h"

namespace limaoim::testing {

namespace crypto = proto::crypto;

ChatClient::ChatClient() : cipher_(std::make_unique<crypto::Cipher>()) {}
ChatClient::~ChatClient() = default;
ChatClient::ChatClient(ChatClient&& other) noexcept
    : client_(std::move(other.client_)), cipher_(std::move(other.cipher_)), key_(other.key_),
      uid_(std::move(other.uid_)), logged_in_(other.logged_in_), pending_(std::move(other.pending_)) {}

LoginResult ChatClient::login(const std::string& uid, const std::string& token, uint8_t version, uint8_t device_flag,
                              int timeout_ms) {
    pending_.clear();
    LoginResult r = client_.login(uid, token, version, device_flag, timeout_ms);
    key_ = r.key;
    uid_ = uid;
    // Client::login leaves the key all zero when the server key was unusable.
    logged_in_ = r.answered && r.reason == uint8_t(proto::ReasonCode::Success) &&
                 (!dialect().has_crypto(version) || key_ != crypto::SessionKey{});
    return r;
}

bool ChatClient::connect_login(uint16_t port, const std::string& uid, uint8_t version, uint8_t device_flag,
                               const std::string& token, int timeout_ms) {
    if (!connect(port)) return false;
    login(uid, token, version, device_flag, timeout_ms);
    return logged_in_;
}

std::vector<uint8_t> ChatClient::build_send(const std::string& channel_id, uint8_t channel_type,
                                            const std::string& plaintext, uint32_t client_seq,
                                            const std::string& client_msg_no, uint8_t header_flags,
                                            uint8_t setting, uint32_t expire, std::string_view topic) {
    const uint8_t v = version();
    proto::SendPacket s;
    s.flags = header_flags & 0x0f;
    s.setting = setting;
    s.client_seq = client_seq;
    s.client_msg_no = client_msg_no;
    s.channel_id = channel_id;
    s.channel_type = channel_type;
    s.expire = expire;
    s.topic = topic;
    std::string wire;
    char msg_key[32];
    if (dialect().has_crypto(v)) {
        if (dialect().payload_encrypted(setting)) {
            cipher_->seal_payload(key_, plaintext, wire);
            s.payload = wire;
        } else {
            s.payload = plaintext;
        }
        // The sign string covers the fields as they go on the wire; a v3
        // connection still signs client_msg_no (it is present from v2 on).
        std::string sign;
        crypto::append_send_sign(s, sign);
        cipher_->msg_key(key_, sign, msg_key);
        s.msg_key = std::string_view(msg_key, 32);
    } else {
        s.payload = plaintext;
    }
    std::vector<uint8_t> out(dialect().encoded_size(s, v));
    if (out.empty() || dialect().encode(s, v, out) != out.size()) return {};
    return out;
}

bool ChatClient::send_message(const std::string& channel_id, uint8_t channel_type, const std::string& plaintext,
                              uint32_t client_seq, const std::string& client_msg_no, uint8_t header_flags,
                              uint8_t setting, uint32_t expire, std::string_view topic) {
    auto bytes = build_send(channel_id, channel_type, plaintext, client_seq, client_msg_no, header_flags, setting,
                            expire, topic);
    return !bytes.empty() && client_.send_bytes(bytes);
}

std::optional<Received> ChatClient::read_type(proto::PacketType type, int timeout_ms) {
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        if (it->type() == type) {
            Received r = std::move(*it);
            pending_.erase(it);
            return r;
        }
    }
    auto t0 = std::chrono::steady_clock::now();
    // Bounded by the timeout: each pass either returns or consumes a packet.
    for (;;) {
        int64_t left = timeout_ms - ms_since(t0);
        auto p = client_.read_packet(int(left > 0 ? left : 0));
        if (!p) return std::nullopt;
        if (p->type() == type) return p;
        pending_.push_back(std::move(*p));
    }
}

std::optional<Received> ChatClient::read_any(int timeout_ms) {
    if (!pending_.empty()) {
        Received r = std::move(pending_.front());
        pending_.pop_front();
        return r;
    }
    return client_.read_packet(timeout_ms);
}

std::optional<proto::SendackPacket> ChatClient::read_sendack(int timeout_ms) {
    auto p = read_type(proto::PacketType::Sendack, timeout_ms);
    if (!p) return std::nullopt;
    return std::get<proto::SendackPacket>(p->packet);
}

RecvMessage ChatClient::decode_recv(const Received& received, bool verify) {
    const auto& r = std::get<proto::RecvPacket>(received.packet);
    RecvMessage m;
    m.raw = received.bytes;
    m.flags = r.flags;
    m.setting = r.setting;
    m.msg_key = std::string(r.msg_key);
    m.message_id = r.message_id;
    m.message_seq = r.message_seq;
    m.client_msg_no = std::string(r.client_msg_no);
    m.expire = r.expire;
    m.topic = std::string(r.topic);
    m.timestamp = r.timestamp;
    m.channel_id = std::string(r.channel_id);
    m.channel_type = r.channel_type;
    m.from_uid = std::string(r.from_uid);
    m.wire_payload = std::string(r.payload);
    if (!dialect().has_crypto(version())) {
        m.payload = m.wire_payload;
        return m;
    }
    auto where = [&] {
        return " (message_id " + std::to_string(m.message_id) + ", seq " + std::to_string(m.message_seq) +
               ", from " + m.from_uid + ", to " + uid_ + ")";
    };
    if (verify) {
        char expected[32];
        cipher_->recv_msg_key(key_, r, expected);
        if (r.msg_key != std::string_view(expected, 32))
            throw RecvCheckError("RECV MsgKey mismatch: got '" + m.msg_key + "', expected '" +
                                 std::string(expected, 32) + "'" + where());
    }
    if (!cipher_->open_payload(key_, r.payload, m.payload) && verify)
        throw RecvCheckError("RECV payload does not decrypt" + where());
    return m;
}

std::optional<RecvMessage> ChatClient::read_recv(int timeout_ms) {
    auto p = read_type(proto::PacketType::Recv, timeout_ms);
    if (!p) return std::nullopt;
    return decode_recv(*p, true);
}

bool ChatClient::send_recvack(const RecvMessage& recv) {
    proto::RecvackPacket ack;
    ack.flags = recv.flags & 0x0f;
    ack.message_id = recv.message_id;
    ack.message_seq = recv.message_seq;
    return client_.send_packet(ack, version());
}

bool ChatClient::ping() { return client_.send_packet(proto::PingPacket{}, version()); }

bool ChatClient::read_pong(int timeout_ms) { return read_type(proto::PacketType::Pong, timeout_ms).has_value(); }

}  // namespace limaoim::testing
