// The session state machine of one worker (SERVER.md §2-§3): CONNECT ->
// CONNACK with token check and key exchange, PING -> PONG, kicking the older
// session of a (uid, device flag), auth and idle deadlines, shutdown.
//
// Listeners reach it through one net::Handler per protocol dialect
// (handler(DialectId)): a session's codec is the dialect of the listener
// that accepted it, its transport what carries its bytes (plain TCP or
// WebSocket); the state machine below is the same for every pair. It sees
// connections only through their transport and the loop's services
// (envelopes, iteration hooks), never io_uring.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "limaoim/im/directory.h"
#include "limaoim/gateway/handshake.h"
#include "limaoim/gateway/session.h"
#include "limaoim/im/core.h"
#include "limaoim/im/directory.h"
#include "limaoim/gateway/inflight.h"
#include "limaoim/net/handler.h"
#include "limaoim/net/slab.h"
#include "limaoim/net/transport.h"
#include "limaoim/net/worker.h"
#include "limaoim/proto/codec.h"
#include "limaoim/proto/dialect.h"

namespace limaoim::gateway {

// The gateway's envelopes (net/envelope.h families).
inline constexpr uint8_t kEnvelopeFamily = 1;

inline constexpr const char* kKickReason = "Account login on other devices";
inline constexpr const char* kShutdownReason = "Server shutting down";
// POST /user/token's DISCONNECT text, as the original's ("the account logged in on another device").
inline constexpr const char* kTokenKickReason = "账号在其他设备上登录";

// The gateway's close reasons, after the loop's own (net/handler.h).
enum class GatewayClose : uint8_t {
    ClientDisconnect = net::kFirstHandlerCloseReason,  // the client sent DISCONNECT
    AuthTimeout,          // no successful CONNECT within the auth deadline
    IdleTimeout,          // no byte received for the idle timeout
    DecodeError,          // undecodable packet (see decode_errors by kind)
    PacketBeforeConnect,  // first packet was not CONNECT
    AuthFailed,           // failure CONNACK written, then closed
    Kicked,               // replaced by a newer login of the same uid + device flag
    Shutdown,             // server shutdown
    ProtocolViolation,    // a second CONNECT on an authenticated session
};
inline constexpr const char* kGatewayCloseNames[] = {
    "client_disconnect", "auth_timeout", "idle_timeout", "decode_error", "packet_before_connect",
    "auth_failed", "kicked", "shutdown", "protocol_violation",
};
// Every close reason's name by index, the loop's and the gateway's, for the
// stats segment (empty names for unused indexes).
std::vector<std::string> close_reason_names();
const char* close_reason_name(net::CloseReason reason);

// What every worker's gateway shares.
struct GatewayShared {
    AuthPolicy auth;
    uint32_t auth_timeout_ms = 10000;
    uint32_t idle_timeout_ms = 70000;
    uint32_t kick_delay_ms = 4000;
    uint32_t max_packet = proto::kDefaultMaxRemainingLength;
    uint32_t max_connect_packet = proto::kDefaultMaxConnectLength;  // before login; <= max_packet
    // CONNECTs one worker handles per loop iteration; the rest wait, in
    // order, for the next iterations, so a login storm cannot starve the
    // input of established sessions (their PINGs) of the ring's time.
    uint32_t handshakes_per_iteration = 16;
    // SENDs of one session at the committer at once; at the cap its input
    // waits (in order) until a SENDACK is written.
    uint16_t max_sends_in_flight = 64;
    uint32_t retry_scan_ms = 1000;  // how often RECVs are checked for a missing RECVACK
    InflightOptions inflight;

    uint64_t node_id = 0;  // this node's number (--node-id), told to WKProto clients in CONNACK
    im::Directory directory;
    im::Core* core = nullptr;  // set before the workers start
};

// The gateway's envelope kinds, for im::Core.
im::GatewayKinds gateway_envelope_kinds();

class Gateway final : public net::EnvelopeHandler {
public:
    // `loop` gives the envelopes, timers and the iteration hook; each
    // connection is reached through the transport it was opened with.
    Gateway(net::Worker& loop, GatewayShared& shared);
    Gateway(const Gateway&) = delete;
    Gateway& operator=(const Gateway&) = delete;

    // What a listener (or the WebSocket layer over it) of `dialect` hands
    // its connections to.
    net::Handler& handler(proto::DialectId dialect) { return entries_[uint8_t(dialect)]; }

    void on_envelope(net::Envelope& envelope) override;

private:
    // One per dialect: opens a session with its codec; the rest of the
    // Handler calls are the gateway's own, the same for every dialect.
    class Entry final : public net::Handler {
    public:
        Entry(Gateway& gateway, const proto::Dialect& dialect) : gateway_(gateway), dialect_(dialect) {}
        void on_open(net::ConnRef conn, net::Transport& transport) override {
            gateway_.open(conn, transport, dialect_);
        }
        net::DataResult on_data(net::ConnRef conn, std::span<const uint8_t> bytes) override {
            return gateway_.on_data(conn, bytes);
        }
        void on_deadline(net::ConnRef conn) override { gateway_.on_deadline(conn); }
        void on_close(net::ConnRef conn, net::CloseReason reason) override { gateway_.on_close(conn, reason); }
        void on_shutdown() override { gateway_.on_shutdown(); }

    private:
        Gateway& gateway_;
        const proto::Dialect& dialect_;
    };

    void open(net::ConnRef conn, net::Transport& transport, const proto::Dialect& dialect);
    net::DataResult on_data(net::ConnRef conn, std::span<const uint8_t> bytes);
    void on_deadline(net::ConnRef conn);
    void on_close(net::ConnRef conn, net::CloseReason reason);
    // Idempotent: a second call finds every session closed by the first
    // (each dialect's entry, and the WebSocket layer, may tell it).
    void on_shutdown();

    enum EnvelopeKind : uint16_t {
        kKick = net::envelope_kind(kEnvelopeFamily, 1),
        kDeliver = net::envelope_kind(kEnvelopeFamily, 2),
        kSendResult = net::envelope_kind(kEnvelopeFamily, 3),
    };
    friend im::GatewayKinds gateway_envelope_kinds();

    // Each returns false when it closed the connection: the caller must stop
    // touching the session.
    bool handle_frame(net::ConnRef conn, Session& session, const proto::Frame& frame);
    bool handle_connect(net::ConnRef conn, Session& session, const proto::ConnectPacket& connect);
    bool handle_send(net::ConnRef conn, Session& session, const proto::SendPacket& send);
    // The rate limit's wait is over: the session's input goes on unless its in-flight cap holds it.
    void resume_rated(net::ConnRef conn);
    bool handle_recvack(net::ConnRef conn, Session& session, const proto::RecvackPacket& ack);
    bool send_ack(net::ConnRef conn, Session& session, uint32_t client_seq, int64_t id, uint32_t seq, uint8_t reason);
    void on_send_result(net::Envelope& result);
    void on_deliver(net::Envelope& delivery);
    bool write_recv(net::ConnRef conn, Session& session, const im::MessageView& message, uint32_t seq, uint16_t flags);
    void retransmit_expired();
    // Encodes with the session's dialect at `version` (a CONNACK's may
    // differ from the session's: see handle_connect).
    bool send_packet(net::ConnRef conn, const proto::Packet& packet, uint8_t version);
    void kick(net::ConnId old);
    void kick_local(net::ConnRef conn, const char* reason);
    // The gauges an authenticated session counts in, when it stops counting.
    void uncount_authenticated(const Session& session);
    void close(net::ConnRef conn, GatewayClose reason,
               net::Transport::Linger linger = net::Transport::Linger::Drop);
    void decode_failed(net::ConnRef conn, proto::DecodeError error);
    void grant_deferred_handshakes();
    void submit_cursor_advances();
    Session* session_of(net::ConnRef conn);
    net::ConnId id_of(net::ConnRef conn) const { return net::ConnId::make(loop_.index(), conn.slot, conn.generation); }
    // The transport and codec of the connection in `conn`'s slot (a stale
    // reference reaches a transport that ignores it, as every Transport call does).
    net::Transport& io(net::ConnRef conn) { return *carriers_[sessions_[conn.slot].carrier].transport; }
    const proto::Dialect& codec(const Session& s) const { return *carriers_[s.carrier].dialect; }

    // The (transport, dialect) pairs this gateway's connections came
    // through, in order of first use: TCP and WebSocket, each per dialect.
    struct Carrier {
        net::Transport* transport = nullptr;
        const proto::Dialect* dialect = nullptr;
    };
    static constexpr size_t kMaxCarriers = 2 * proto::kDialectCount;
    static_assert(proto::kDialectCount == stats::kDialects, "stats count sessions and packets per dialect");
    std::array<Carrier, kMaxCarriers> carriers_{};
    uint8_t carrier_count_ = 0;
    std::array<Entry, proto::kDialectCount> entries_;

    net::Worker& loop_;
    GatewayShared& shared_;
    stats::WorkerBlock& stats_;
    net::SlotArray<Session> sessions_;
    std::vector<uint8_t> scratch_;  // packets larger than a send chunk
    proto::crypto::Cipher cipher_;  // this worker's AES contexts
    std::string plaintext_;         // decrypted SEND payloads, reused
    std::string sealed_;            // encrypted RECV payloads, reused
    InflightTable inflight_;
    im::UserRateLimit user_rate_;  // this worker's senders
    // When each SEND at the committer was decoded, oldest first: the
    // committer answers one worker's SENDs in the order they were queued.
    std::deque<uint64_t> send_started_us_;
    // CONNECTs over this iteration's budget, paused, oldest first.
    std::deque<net::ConnRef> deferred_handshakes_;
    // SyncOnce RECVACKs of this loop iteration: the highest seq per uid,
    // submitted as one cursor advance each at its end (kept for the next
    // iteration while the committer refuses it).
    std::unordered_map<std::string, uint32_t, im::StringHash, std::equal_to<>> pending_cursors_;
    uint32_t handshakes_left_ = 0;  // this iteration's budget
};

}  // namespace limaoim::gateway
