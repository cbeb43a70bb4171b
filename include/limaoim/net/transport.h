// What a protocol handler may do to a connection (in the style of Redis'
// connection.h): the one interface between a protocol and whatever carries
// its bytes. net::Worker implements it for plain TCP; a framing layer (the
// WebSocket transport of a later milestone) implements it by wrapping the
// worker's, so the gateway above does not know which one carries a session.
//
// Every call is made on the connection's worker thread. Each takes a ConnRef
// and does nothing (or returns empty/false) when the connection is no longer
// open, so a handler may hold stale references safely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "limaoim/net/handler.h"
#include "limaoim/stats/layout.h"

namespace limaoim::net {

class Transport {
public:
    enum class Linger : uint8_t { Drop, Flush };

    virtual ~Transport() = default;

    // Contiguous room for `n` bytes at the end of the send queue, to encode
    // into directly (n <= kMaxReserve); commit() queues what was written.
    // Empty when the connection is not open, or when the queue passed the
    // send cap (the connection is then closed as a slow consumer and
    // on_close has run).
    static constexpr size_t kMaxReserve = 2032;
    virtual std::span<uint8_t> reserve(ConnRef conn, size_t n) = 0;
    virtual void commit(ConnRef conn, size_t n) = 0;
    // Queues bytes of any length; false as reserve() fails.
    virtual bool send(ConnRef conn, std::span<const uint8_t> bytes) = 0;

    // Closes the connection: on_close(reason) runs at once; with Flush the
    // queued output is sent first (for a bounded time).
    virtual void close(ConnRef conn, CloseReason reason, Linger linger = Linger::Drop) = 0;

    // Replaces the connection's deadline (Handler::on_deadline runs when it
    // passes). Closing cancels it.
    virtual void set_deadline(ConnRef conn, uint32_t ms_from_now) = 0;

    // Stops handing this connection's input to on_data: the bytes already
    // received stay buffered, and no more are read (the kernel's receive
    // window then holds the peer back). resume_input() hands the buffered
    // bytes back in a later step of the same loop iteration, never from
    // inside the call, then reads on. Used while a packet waits for
    // something asynchronous (a durable store, a token check, a handshake
    // budget) and the packets pipelined behind it must wait too.
    virtual void pause_input(ConnRef conn) = 0;
    virtual void resume_input(ConnRef conn) = 0;

    // The handler has admitted the connection (a login succeeded): it no
    // longer counts against its listener's limit of pending connections,
    // past which the loop stops accepting and leaves new connections in the
    // kernel's backlog.
    virtual void established(ConnRef conn) = 0;

    virtual bool is_open(ConnRef conn) const = 0;
    virtual uint32_t idle_ms(ConnRef conn) const = 0;  // since its last received byte
    // Per-connection counters in the stats segment (packets in/out).
    virtual stats::ConnCounters& counters(ConnRef conn) = 0;
};

}  // namespace limaoim::net
