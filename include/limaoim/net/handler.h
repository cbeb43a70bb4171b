// The contract between the event loop (net/) and the protocol above it.
//
// The loop owns sockets, buffers, timers and the ring; it knows nothing of IM.
// A Handler owns per-connection protocol state, kept in its own slot-indexed
// table; it knows nothing of io_uring. Calls go both ways on the worker's
// thread only: the loop calls the Handler's on_* functions, the Handler calls
// the Worker's transport functions (worker.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "limaoim/stats/layout.h"

namespace limaoim::net {

// A connection as the handler sees it: its slot (the io_uring direct
// descriptor index, so handler tables can be indexed by it) and the
// generation given at accept. A reference whose generation no longer
// matches refers to a closed connection and is ignored by every call.
struct ConnRef {
    uint32_t slot = 0;
    uint32_t generation = 0;
    bool operator==(const ConnRef&) const = default;
};

// A message from another worker (or the main thread) to this worker's
// handler. Kind 0 is reserved for the loop itself.
struct Mail {
    uint32_t kind = 0;
    uint32_t slot = 0;
    uint32_t generation = 0;
    uint32_t arg = 0;
};

// What on_data() made of the bytes it was given.
struct DataResult {
    size_t consumed = 0;  // bytes of complete packets handled
    // Total size of the incomplete packet that starts at `consumed`, when its
    // length field is complete; 0 when not yet known. The loop keeps exactly
    // the unconsumed tail and uses this to size the reassembly buffer once.
    uint32_t needed = 0;
};

using CloseReason = stats::CloseReason;

class Handler {
public:
    virtual ~Handler() = default;

    // A connection was accepted. Set its deadline here: a connection without
    // one never times out.
    virtual void on_open(ConnRef conn) = 0;

    // Bytes received, in order. `bytes` is valid only during the call (it is
    // a provided buffer, or the connection's reassembly buffer), and only
    // until the handler closes the connection: closing frees the reassembly
    // buffer at once, so a handler returns right after it closes. Its return
    // value is then ignored.
    virtual DataResult on_data(ConnRef conn, std::span<const uint8_t> bytes) = 0;

    // The deadline set with Worker::set_deadline passed.
    virtual void on_deadline(ConnRef conn) = 0;

    // Called exactly once per connection, when it is closed for any reason
    // (by the handler, the peer, an error or a slow-consumer cut). After it,
    // the reference is dead: the handler drops every trace of it.
    virtual void on_close(ConnRef conn, CloseReason reason) = 0;

    virtual void on_mail(const Mail& mail) = 0;

    // The server is stopping: accepting has stopped; say goodbye to every
    // connection. The loop exits once no connection is left or the shutdown
    // deadline passes.
    virtual void on_shutdown() = 0;
};

}  // namespace limaoim::net
