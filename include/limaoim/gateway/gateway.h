// The session state machine of one worker (SERVER.md §2-§3): CONNECT ->
// CONNACK with token check and key exchange, PING -> PONG, kicking the older
// session of a (uid, device flag), auth and idle deadlines, shutdown.
//
// Implements net::Handler; sees connections only through the Worker's
// transport calls and never touches io_uring.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "limaoim/gateway/directory.h"
#include "limaoim/gateway/handshake.h"
#include "limaoim/gateway/session.h"
#include "limaoim/net/handler.h"
#include "limaoim/net/slab.h"
#include "limaoim/net/worker.h"
#include "limaoim/proto/codec.h"

namespace limaoim::gateway {

inline constexpr const char* kKickReason = "Account login on other devices";
inline constexpr const char* kShutdownReason = "Server shutting down";

// What every worker's gateway shares.
struct GatewayShared {
    AuthPolicy auth;
    uint32_t auth_timeout_ms = 10000;
    uint32_t idle_timeout_ms = 70000;
    uint32_t kick_delay_ms = 4000;
    uint32_t max_packet = proto::kDefaultMaxRemainingLength;
    uint32_t max_connect_packet = proto::kDefaultMaxConnectLength;  // before login; <= max_packet
    uint32_t max_pending_handshakes = 65536;
    bool log_connections = false;

    Directory directory;
    std::vector<net::Worker*> workers;  // by index, for kicks across workers
    std::atomic<uint32_t> pending_handshakes{0};
};

class Gateway final : public net::Handler {
public:
    Gateway(net::Worker& worker, GatewayShared& shared);

    void on_open(net::ConnRef conn) override;
    net::DataResult on_data(net::ConnRef conn, std::span<const uint8_t> bytes) override;
    void on_deadline(net::ConnRef conn) override;
    void on_close(net::ConnRef conn, net::CloseReason reason) override;
    void on_mail(const net::Mail& mail) override;
    void on_shutdown() override;

private:
    enum MailKind : uint32_t { kKick = 1 };

    // Each returns false when it closed the connection: the caller must stop
    // touching the session.
    bool handle_frame(net::ConnRef conn, Session& session, const proto::Frame& frame);
    bool handle_connect(net::ConnRef conn, Session& session, const proto::ConnectPacket& connect);
    bool handle_send(net::ConnRef conn, Session& session, const proto::SendPacket& send);
    bool send_packet(net::ConnRef conn, const proto::Packet& packet, uint8_t version);
    void kick(const SessionAddress& old);
    void kick_local(uint32_t slot, uint32_t generation);
    void decode_failed(net::ConnRef conn, proto::DecodeError error);
    Session* session_of(net::ConnRef conn);

    net::Worker& worker_;
    GatewayShared& shared_;
    stats::WorkerBlock& stats_;
    net::SlotArray<Session> sessions_;
    std::vector<uint8_t> scratch_;  // packets larger than a send chunk
    proto::crypto::Cipher cipher_;  // this worker's AES contexts
    std::string plaintext_;         // decrypted SEND payloads, reused
};

}  // namespace limaoim::gateway
