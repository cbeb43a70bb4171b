// A blocking messaging client for integration tests, built on Client: login
// at any version 1-4 (WKProto: 1-5), SEND with the v3/v4 encryption and
// MsgKey, RECV with the payload decrypted and the MsgKey checked, RECVACK,
// PING/PONG. set_dialect() before login for WuKongIM's WKProto.
//
// Packets read while waiting for a particular type (a RECV that arrives
// before the SENDACK being waited for, say) are kept, in order, and handed
// out by the next read of their type or by read_any(): nothing is dropped.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "client.h"

namespace limaoim::testing {

// A RECV that owns its fields.
struct RecvMessage {
    std::vector<uint8_t> raw;  // the frame exactly as received (retransmission checks compare these)
    uint8_t flags = 0;         // header flag nibble
    uint8_t setting = 0;       // v4
    std::string msg_key;       // v3/v4
    int64_t message_id = 0;
    uint32_t message_seq = 0;
    std::string client_msg_no;  // v2+
    uint32_t expire = 0;        // WKProto v3+
    std::string topic;          // WKProto, setting bit 0x08
    int32_t timestamp = 0;
    std::string channel_id;
    uint8_t channel_type = 0;
    std::string from_uid;
    std::string wire_payload;  // as on the wire (base64 ciphertext for v3/v4)
    std::string payload;       // plaintext
};

// Thrown by read_recv() when a v3/v4 RECV's MsgKey does not verify or its
// payload does not decrypt: a test must not carry on with such a message.
struct RecvCheckError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class ChatClient {
public:
    ChatClient();
    ~ChatClient();
    ChatClient(ChatClient&&) noexcept;
    ChatClient& operator=(ChatClient&&) = delete;

    bool connect(uint16_t port, const std::string& host = "127.0.0.1") { return client_.connect(port, host); }
    // The protocol dialect of this client's packets (LiMaoIM unless set).
    void set_dialect(const proto::Dialect& dialect) { client_.dialect = &dialect; }
    const proto::Dialect& dialect() const { return *client_.dialect; }
    bool connect_websocket(uint16_t port, const std::string& host = "127.0.0.1") {
        return client_.connect_websocket(port, host);
    }
    // CONNECT/CONNACK on a connected socket; keeps the session key for v3/v4.
    LoginResult login(const std::string& uid, const std::string& token = "", uint8_t version = 4,
                      uint8_t device_flag = 0, int timeout_ms = 3000);
    // connect() then login(); true when the CONNACK says Success (and, for
    // v3/v4, a session key was derived).
    bool connect_login(uint16_t port, const std::string& uid, uint8_t version = 4, uint8_t device_flag = 0,
                       const std::string& token = "", int timeout_ms = 3000);
    bool logged_in() const { return logged_in_; }

    // The SEND as bytes, encrypted and signed for v3/v4 (WKProto: always,
    // the payload left plain under setting 0x10); client_msg_no is dropped
    // for v1 and setting for v<4 (the encoder follows the dialect and
    // version, so do expire and topic: WKProto's).
    std::vector<uint8_t> build_send(const std::string& channel_id, uint8_t channel_type, const std::string& plaintext,
                                    uint32_t client_seq, const std::string& client_msg_no, uint8_t header_flags = 0,
                                    uint8_t setting = 0, uint32_t expire = 0, std::string_view topic = {});
    bool send_message(const std::string& channel_id, uint8_t channel_type, const std::string& plaintext,
                      uint32_t client_seq, const std::string& client_msg_no, uint8_t header_flags = 0,
                      uint8_t setting = 0, uint32_t expire = 0, std::string_view topic = {});

    // The next SENDACK (nullopt on timeout, EOF or a decode error).
    std::optional<proto::SendackPacket> read_sendack(int timeout_ms = 3000);
    // The next RECV, decrypted and, for v3/v4, MsgKey-verified (throws
    // RecvCheckError otherwise).
    std::optional<RecvMessage> read_recv(int timeout_ms = 3000);
    // RECVACK(message_id, message_seq) with the RECV's header flags echoed.
    bool send_recvack(const RecvMessage& recv);
    bool ping();
    bool read_pong(int timeout_ms = 3000);
    // The next packet of any type (queued ones first).
    std::optional<Received> read_any(int timeout_ms = 3000);
    // Packets read but not yet handed out.
    size_t pending() const { return pending_.size(); }

    // A received RECV frame turned into a RecvMessage; `verify` checks the
    // MsgKey and decrypts (v3/v4). Throws RecvCheckError on failure.
    RecvMessage decode_recv(const Received& received, bool verify = true);

    // Use `key` at `version` without a handshake: for checks against fixed
    // vectors (crypto.json) and for decoding frames captured elsewhere.
    void adopt_session(const std::string& uid, const proto::crypto::SessionKey& key, uint8_t version) {
        uid_ = uid;
        key_ = key;
        client_.version = version;
    }

    Client& raw() { return client_; }
    uint8_t version() const { return client_.version; }
    const proto::crypto::SessionKey& session_key() const { return key_; }
    const std::string& uid() const { return uid_; }

private:
    // The first queued packet of `type`, else packets read until one comes
    // (others are queued).
    std::optional<Received> read_type(proto::PacketType type, int timeout_ms);

    Client client_;
    std::unique_ptr<proto::crypto::Cipher> cipher_;  // not movable itself
    proto::crypto::SessionKey key_;
    std::string uid_;
    bool logged_in_ = false;
    std::deque<Received> pending_;
};

}  // namespace limaoim::testing
