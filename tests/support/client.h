// A blocking client for integration tests: real sockets, the project's
// codec and crypto, timeouts on every read. It speaks LiMaoIM's protocol
// unless given another dialect (WuKongIM's WKProto): every encode, decode
// and split goes through `dialect`.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "limaoim/proto/codec.h"
#include "limaoim/proto/crypto.h"
#include "limaoim/proto/dialect.h"
#include "limaoim/proto/packet.h"

namespace limaoim::testing {

// A packet read from the server, owning its bytes.
struct Received {
    std::vector<uint8_t> bytes;
    proto::Packet packet;
    proto::PacketType type() const { return proto::type_of(packet); }
};

struct LoginResult {
    bool answered = false;  // a CONNACK came back
    uint8_t reason = 0;
    int64_t time_diff = 0;
    proto::crypto::SessionKey key;  // v3/v4: derived on the client side
    std::string server_key;
    std::string salt;
    // WKProto only: the header flags, server_version (flag bit 0) and node_id (v>=4).
    uint8_t flags = 0;
    uint8_t server_version = 0;
    uint64_t node_id = 0;
    std::vector<uint8_t> connack;  // the CONNACK frame as received
};

class Client {
public:
    Client() = default;
    ~Client();
    Client(Client&& other) noexcept;
    Client& operator=(Client&&) = delete;

    bool connect(uint16_t port, const std::string& host = "127.0.0.1");
    // connect() then the WebSocket upgrade (RFC 6455 §4.1) on `path`; true
    // once a 101 with the right Sec-WebSocket-Accept came. From then on
    // send_bytes() sends one masked binary frame and reads take the LiMaoIM
    // stream out of the server's frames (pings answered, close recorded).
    bool connect_websocket(uint16_t port, const std::string& host = "127.0.0.1", const std::string& path = "/");
    void close();
    int fd() const { return fd_; }
    bool websocket() const { return websocket_; }

    // Bytes exactly as given, no framing (hostile-client tests).
    bool send_raw(std::span<const uint8_t> bytes);
    // A client frame: FIN as given, masked with a fixed key unless `masked` is false.
    static std::vector<uint8_t> ws_frame(uint8_t opcode, std::span<const uint8_t> payload, bool fin = true,
                                         bool masked = true);
    // The status code of the server's close frame (1005 when it had none);
    // nullopt until one came.
    std::optional<uint16_t> ws_close_code;
    uint32_t ws_pongs = 0;       // pong frames received
    uint32_t ws_data_frames = 0; // binary frames received

    // One binary frame per call over WebSocket, else the bytes as they are.
    bool send_bytes(std::span<const uint8_t> bytes);
    bool send_hex(const std::string& hex);
    bool send_packet(const proto::Packet& packet, uint8_t version);

    // The next packet, or nullopt on timeout, EOF or a decode error.
    std::optional<Received> read_packet(int timeout_ms = 3000);
    // True once the server closed the connection (EOF or reset) within the
    // timeout; packets that arrive first are collected into `seen`.
    bool wait_closed(int timeout_ms, std::vector<Received>* seen = nullptr);

    // CONNECT (with a fresh X25519 key when the dialect has crypto at `version`:
    // LiMaoIM v3/v4, every WKProto version) and read the CONNACK; `version`
    // is then the session's (WKProto: 0 or one above 5 runs at 5).
    LoginResult login(const std::string& uid, const std::string& token, uint8_t version = 4,
                      uint8_t device_flag = 0, int timeout_ms = 3000);
    // The packet's strings view the arguments: keep them alive while it is used.
    static proto::ConnectPacket make_connect(std::string_view uid, std::string_view token, uint8_t version,
                                             uint8_t device_flag, std::string_view client_key_b64);

    uint8_t version = 4;
    const proto::Dialect* dialect = &proto::kLiMaoIMDialect;

private:
    bool fill(int timeout_ms);
    void take_frames();  // server frames in raw_ -> inbox_
    int fd_ = -1;
    std::vector<uint8_t> inbox_;  // the LiMaoIM stream
    std::vector<uint8_t> raw_;    // WebSocket: frames not yet whole
    bool eof_ = false;
    bool websocket_ = false;
};

std::vector<uint8_t> from_hex(const std::string& hex);

}  // namespace limaoim::testing
