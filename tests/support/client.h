// A blocking LiMaoIM client for integration tests: real sockets, the
// project's codec and crypto, timeouts on every read.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "limaoim/proto/codec.h"
#include "limaoim/proto/crypto.h"
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
};

class Client {
public:
    Client() = default;
    ~Client();
    Client(Client&& other) noexcept;
    Client& operator=(Client&&) = delete;

    bool connect(uint16_t port, const std::string& host = "127.0.0.1");
    void close();
    int fd() const { return fd_; }

    bool send_bytes(std::span<const uint8_t> bytes);
    bool send_hex(const std::string& hex);
    bool send_packet(const proto::Packet& packet, uint8_t version);

    // The next packet, or nullopt on timeout, EOF or a decode error.
    std::optional<Received> read_packet(int timeout_ms = 3000);
    // True once the server closed the connection (EOF or reset) within the
    // timeout; packets that arrive first are collected into `seen`.
    bool wait_closed(int timeout_ms, std::vector<Received>* seen = nullptr);

    // CONNECT (with a fresh X25519 key for v3/v4) and read the CONNACK.
    LoginResult login(const std::string& uid, const std::string& token, uint8_t version = 4,
                      uint8_t device_flag = 0, int timeout_ms = 3000);
    // The packet's strings view the arguments: keep them alive while it is used.
    static proto::ConnectPacket make_connect(std::string_view uid, std::string_view token, uint8_t version,
                                             uint8_t device_flag, std::string_view client_key_b64);

    uint8_t version = 4;

private:
    bool fill(int timeout_ms);
    int fd_ = -1;
    std::vector<uint8_t> inbox_;
    bool eof_ = false;
};

std::vector<uint8_t> from_hex(const std::string& hex);

}  // namespace limaoim::testing
