// The contract between the event loop (net/) and a protocol above it.
//
// The loop owns sockets, buffers, timers and the ring; it knows nothing of IM.
// A Handler owns per-connection protocol state, kept in its own slot-indexed
// table; it knows nothing of io_uring. Calls go both ways on the worker's
// thread only: the loop calls the Handler's on_* functions, the Handler
// calls the Transport's (transport.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace limaoim::net {

class Transport;

// A connection as a handler of its own worker sees it: its slot (the
// io_uring direct descriptor index, so handler tables can be indexed by it)
// and the generation given at accept. A reference whose generation no
// longer matches refers to a closed connection and is ignored by every call.
// Across workers a connection is a ConnId (conn_id.h).
struct ConnRef {
    uint32_t slot = 0;
    uint32_t generation = 0;
    bool operator==(const ConnRef&) const = default;
};

// Why a connection was closed: an index into the stats segment's per-reason
// counters, whose names the server registers at start. The loop's own
// reasons are named here; a handler defines its own from
// kFirstHandlerCloseReason on, so a new layer adds reasons without editing
// the loop or the stats layout.
enum class CloseReason : uint8_t {
    PeerClosed = 0,        // EOF or reset from the peer
    IoError = 1,           // send/recv failed otherwise, or out of memory for this connection
    SlowConsumer = 2,      // unsent output passed the send cap
    Rejected = 3,          // refused at accept: --max-conns
    ReassemblyBudget = 4,   // the largest holder when the worker's reassembly budget is full, or over its own share
    ReassemblyTimeout = 5,  // a split packet not completed within WorkerOptions::reassembly_timeout_ms
};
inline constexpr uint8_t kLoopCloseReasons = 6;
inline constexpr uint8_t kFirstHandlerCloseReason = 8;
inline constexpr uint8_t kMaxCloseReasons = 32;  // the stats segment's table
inline constexpr const char* kLoopCloseReasonNames[kLoopCloseReasons] = {
    "peer_closed", "io_error", "slow_consumer", "rejected", "reassembly_budget", "reassembly_timeout",
};

// What on_data() made of the bytes it was given.
struct DataResult {
    size_t consumed = 0;  // bytes of complete packets handled
    // Total size of the incomplete packet that starts at `consumed`, when its
    // length field is complete; 0 when not yet known. The loop keeps exactly
    // the unconsumed tail, grows its buffer as bytes arrive and never past
    // this size (an announced size costs nothing until the bytes come).
    uint32_t needed = 0;
};

class Handler {
public:
    virtual ~Handler() = default;

    // A connection was accepted on a listener of this handler (or a framing
    // layer below finished its own handshake). `transport` carries it: every
    // call about this connection goes there, so one handler can serve
    // connections of several transports (plain TCP, WebSocket) side by side.
    // Set its deadline here: a connection without one never times out.
    virtual void on_open(ConnRef conn, Transport& transport) = 0;

    // Bytes received, in order. `bytes` is valid only during the call (a
    // provided buffer, or the connection's reassembly buffer), and only until
    // the handler closes the connection: closing frees the reassembly buffer
    // at once, so a handler returns right after it closes (its return value
    // is then ignored). A handler that paused the input (Transport::
    // pause_input) returns what it consumed so far; the loop keeps the rest,
    // complete packets included, and hands it back after resume_input.
    virtual DataResult on_data(ConnRef conn, std::span<const uint8_t> bytes) = 0;

    // The deadline set with Transport::set_deadline passed.
    virtual void on_deadline(ConnRef conn) = 0;

    // Called exactly once per connection, when it is closed for any reason
    // (by the handler, the peer, an error or a slow-consumer cut). After it,
    // the reference is dead: the handler drops every trace of it.
    virtual void on_close(ConnRef conn, CloseReason reason) = 0;

    // A listener of this handler is at its max_open (ListenerOptions) and a
    // new connection came: close one of its connections the handler would
    // rather lose (one that has not proved itself yet) and return true to
    // have the new one accepted, or false to refuse it. The closed one counts
    // until its close completes: the listener may pass max_open by those.
    virtual bool make_room() { return false; }

    // The server is stopping: accepting has stopped; say goodbye to every
    // connection. The loop exits once no connection is left or the shutdown
    // deadline passes; a connection the handler left open then is not
    // reported to on_close (the process is ending).
    virtual void on_shutdown() = 0;
};

}  // namespace limaoim::net
