// The WebSocket transport: RFC 6455 between the loop and a protocol handler
// (the gateway), in the style of HAProxy's layering: framing apart from the
// stream it carries.
//
//      net::Worker ──Handler──▶ WebSocketTransport ──Handler──▶ gateway
//      net::Worker ◀─Transport── WebSocketTransport ◀─Transport── gateway
//
// Downwards it is the Handler of the worker's WebSocket listener: it answers
// the upgrade request, then reads client frames (frame.h) and hands the
// unmasked payload bytes up as one byte stream. Upwards it is the Transport
// of those connections: what the gateway queues goes out as binary frames,
// one per reserve/commit or send (one LiMaoIM packet per message, as the
// original's server writes). The gateway cannot tell it from plain TCP.
//
// Where memory comes from: 32 bytes per connection in a SlotArray indexed by
// the connection's slot (pages touched only by WebSocket connections); an
// incomplete upgrade request, frame header or control frame stays in the
// loop's reassembly buffer; LiMaoIM bytes the gateway could not take yet (a
// split packet, input held back while paused) in a BudgetBuffer per
// connection, charged to the worker's reassembly budget with the loop's own
// buffers (Worker::hold): one budget bounds both layers, and when it is full
// the largest holder is closed, whichever layer holds it. An idle upgraded
// connection holds no buffer.
//
// Every call is made on the worker's thread.
#pragma once

#include <cstdint>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "limaoim/net/handler.h"
#include "limaoim/net/slab.h"
#include "limaoim/net/transport.h"
#include "limaoim/net/worker.h"
#include "limaoim/ws/frame.h"

namespace limaoim::ws {

// This layer's close reasons. The handler range of net/handler.h is shared
// by the layers above the loop: the gateway's take kFirstHandlerCloseReason
// + 0..8, these + 9..15, the HTTP server's + 16.. (server/server.cpp checks that the
// ranges do not overlap when it names them for the stats segment).
inline constexpr uint8_t kFirstCloseReason = net::kFirstHandlerCloseReason + 9;
enum class WsClose : uint8_t {
    UpgradeTimeout = kFirstCloseReason,  // no complete upgrade request within the upgrade timeout
    BadUpgrade,                          // the request was not a valid WebSocket upgrade (4xx sent)
    ProtocolError,                       // a frame broke RFC 6455 (close 1002 sent)
    TextFrame,                           // a text frame: LiMaoIM is binary (close 1003 sent)
    TooBig,                              // a frame or message over the limits (close 1009 sent)
    CloseFrame,                          // the client sent a close frame (answered)
    ShutdownBeforeUpgrade,               // the server stopped before the upgrade completed
};
inline constexpr const char* kCloseNames[] = {
    "ws_upgrade_timeout", "ws_bad_upgrade", "ws_protocol_error", "ws_text_frame",
    "ws_too_big",         "ws_close_frame", "ws_shutdown",
};
static_assert(std::size(kCloseNames) <= 7, "the next layer's reasons start 7 after the first of these");

struct WebSocketOptions {
    FrameLimits limits;
    uint32_t upgrade_timeout_ms = 10000;  // accept -> complete upgrade request
    uint32_t max_upgrade_request = 8192;  // bytes of the request line and headers
};

class WebSocketTransport final : public net::Handler, public net::Transport {
public:
    // `loop` carries the bytes; `upper` gets the stream of every connection
    // once upgraded (on_open with this transport).
    WebSocketTransport(net::Worker& loop, net::Handler& upper, const WebSocketOptions& options);

    // ---- net::Handler, for the worker's WebSocket listener ----
    void on_open(net::ConnRef conn, net::Transport& transport) override;
    net::DataResult on_data(net::ConnRef conn, std::span<const uint8_t> bytes) override;
    void on_deadline(net::ConnRef conn) override;
    void on_close(net::ConnRef conn, net::CloseReason reason) override;
    void on_shutdown() override;

    // ---- net::Transport, for the upper handler ----
    std::span<uint8_t> reserve(net::ConnRef conn, size_t n) override;
    void commit(net::ConnRef conn, size_t n) override;
    bool send(net::ConnRef conn, std::span<const uint8_t> bytes) override;
    // With Linger::Flush a close frame goes first (1001 once the server is
    // shutting down, else 1000); Drop cuts the TCP connection as it is.
    void close(net::ConnRef conn, net::CloseReason reason, Linger linger = Linger::Drop) override;
    void set_deadline(net::ConnRef conn, uint32_t ms_from_now) override { loop_.set_deadline(conn, ms_from_now); }
    void pause_input(net::ConnRef conn) override;
    void resume_input(net::ConnRef conn) override;
    void established(net::ConnRef conn) override { loop_.established(conn); }
    bool is_open(net::ConnRef conn) const override;
    uint32_t idle_ms(net::ConnRef conn) const override { return loop_.idle_ms(conn); }
    stats::ConnCounters& counters(net::ConnRef conn) override { return loop_.counters(conn); }

    // One connection's framing state: 32 bytes.
    struct Connection {
        uint32_t generation;  // 0 = free
        uint8_t state;        // State
        uint8_t flags;        // Flags
        uint16_t scanned;     // Upgrading: bytes of the request searched for its end already
        ReaderState reader;   // 16 bytes
        net::BudgetBuffer held;  // LiMaoIM bytes the upper handler has not taken yet (a split packet, paused input)
    };
    static_assert(sizeof(Connection) == 32, "an idle WebSocket session costs its framing state, 32 bytes");

private:
    enum class State : uint8_t { Free, Upgrading, Open, Closing };
    enum Flags : uint8_t {
        kPaused = 1,        // the upper handler paused the input
        kResumeQueued = 2,  // in resumed_, its held bytes to be handed back
    };

    Connection* live(net::ConnRef conn);
    const Connection* live(net::ConnRef conn) const;
    net::DataResult upgrade(net::ConnRef conn, Connection& c, std::span<const uint8_t> bytes);
    net::DataResult read_frames(net::ConnRef conn, Connection& c, std::span<const uint8_t> bytes);
    // Hands `stream_` (and what is held) to the upper handler, keeps what it
    // did not take. False when the connection was closed meanwhile.
    bool deliver(net::ConnRef conn, Connection& c);
    bool hold(net::ConnRef conn, Connection& c, std::span<const uint8_t> bytes, uint32_t needed);
    void drop_held(Connection& c);
    bool control_frame(net::ConnRef conn, Connection& c, Opcode opcode, std::span<const uint8_t> payload);
    void fail(net::ConnRef conn, CloseCode code, WsClose reason);
    // Queues a close frame and closes with Flush; the connection is gone after it.
    void close_with(net::ConnRef conn, CloseCode code, net::CloseReason reason);
    bool send_frame(net::ConnRef conn, Opcode opcode, std::span<const uint8_t> payload);
    void hand_back_resumed();

    net::Worker& loop_;
    net::Handler& upper_;
    WebSocketOptions options_;
    stats::WorkerBlock& stats_;
    net::SlotArray<Connection> conns_;
    std::vector<uint8_t> stream_;   // unmasked payload of one read, before the upper handler sees it; capacity kept
    std::vector<uint8_t> scratch_;  // reserve() when header + n passes the worker's limit
    // What the last reserve() handed out: the loop's room (header in front)
    // or scratch_ (reserved_header_ == 0). One reserve/commit at a time.
    uint8_t* reserved_at_ = nullptr;
    size_t reserved_header_ = 0;
    std::vector<net::ConnRef> resumed_;
    std::vector<net::ConnRef> resumed_work_;
};

}  // namespace limaoim::ws
