// The HTTP/1.1 server of the API (SERVER.md §16): a second listener on the
// worker rings. A worker frames each request (http_parser) on its ring,
// pauses the connection's input, and hands the request to the API pool,
// whose thread runs Api::handle (the im::Service calls may block) and
// serializes the response; the bytes come back to the worker as an envelope
// and are written there. Requests a client pipelines wait in the loop's
// reassembly buffer meanwhile, so responses leave in request order.
#pragma once

#include <http_parser.h>

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "limaoim/http/api.h"
#include "limaoim/net/blocking_pool.h"
#include "limaoim/net/envelope.h"
#include "limaoim/net/handler.h"
#include "limaoim/net/transport.h"
#include "limaoim/net/worker.h"

namespace limaoim::http {

// The HTTP server's envelopes (net/envelope.h families; the gateway's is 1).
inline constexpr uint8_t kEnvelopeFamily = 2;
inline constexpr uint16_t kResponseEnvelope = net::envelope_kind(kEnvelopeFamily, 1);

// Close reasons, placed after the gateway's (kFirstHandlerCloseReason + 0..8).
inline constexpr uint8_t kFirstHttpCloseReason = net::kFirstHandlerCloseReason + 16;
enum class HttpClose : uint8_t {
    BadRequest = kFirstHttpCloseReason,  // the request could not be parsed (answered 400)
    BodyTooLarge,  // the body passed ServerOptions::body_limit (answered 413)
    Idle,          // no complete request within the idle timeout
    Done,          // answered, and the request asked to close (Connection: close, HTTP/1.0)
    Shutdown,      // server shutdown
    Refused,       // Api::screen refused the request at the end of its headers (answered 401 or 403)
    Evicted,       // at --http-max-connections, the oldest connection with no screened request yet made room
};
// The names of HttpClose's values, the first at index kFirstHttpCloseReason
// of the stats segment's reason table.
std::span<const char* const> http_close_reason_names();

struct ServerOptions {
    size_t body_limit = 1u << 20;       // over it: 413 and close
    uint32_t idle_timeout_ms = 60000;   // a connection's next request must be complete within it
    // A response is queued whole (the loop takes one packet past its send
    // cap onto a queue under it); a larger one is replaced by a 500 that
    // says so, which bounds what one request can make the server hold.
    size_t max_response_bytes = 16u << 20;
};

// The status line, headers and body of `response`, ready to write.
// `keep_alive` false adds "Connection: close"; `http10` true with keep_alive
// adds "Connection: keep-alive" (HTTP/1.0 closes by default).
std::string serialize_response(const Response& response, bool keep_alive, bool http10 = false);

// Frames requests out of a connection's byte stream with http_parser, one at
// a time: feed() stops right after a complete request, and the caller feeds
// the rest once it is done with that one (next()). Holds the request's
// fields across feeds, so the caller keeps no bytes of an incomplete request.
// Pure (no sockets): the server and the fuzz target share it.
// With `gate`, each request is screened (Api::screen) at the end of its
// headers: a refused one ends the stream before a byte of its body is kept.
class RequestParser {
public:
    explicit RequestParser(size_t body_limit, const Api* gate = nullptr);
    RequestParser(const RequestParser&) = delete;
    RequestParser& operator=(const RequestParser&) = delete;

    enum class Status : uint8_t { NeedMore, Complete, BadRequest, BodyTooLarge, Refused };
    struct Result {
        Status status = Status::NeedMore;
        // NeedMore: all of the bytes (the parser keeps what it needs of them).
        // Complete: up to the request's last byte; the rest is the next request's.
        size_t consumed = 0;
    };
    // The next bytes of the stream (after the consumed ones). Not to be called
    // between a Complete and next(). After an error the stream is dead.
    Result feed(std::span<const uint8_t> bytes);

    // After Complete, until next():
    Request& request() { return request_; }
    bool keep_alive() const { return keep_alive_; }
    bool http10() const { return http10_; }
    // Starts the next request.
    void next();
    // After Refused: the gate's answer.
    const Response& refusal() const { return refusal_; }

    // True once after the headers of a request that sent "Expect:
    // 100-continue" (curl does for bodies over 1 KiB): the caller answers
    // "100 Continue" so the client sends its body without waiting.
    bool take_continue_expected() { return std::exchange(continue_expected_, false); }
    // The current request's headers passed the gate with the secret (when
    // one is set): known at the end of its headers, before its body.
    bool authorized() const { return authorized_; }

private:
    enum class Header : uint8_t { Other, Authorization, Token, Expect, Origin, Host };
    static int on_message_begin(http_parser* parser);
    static int on_url(http_parser* parser, const char* at, size_t length);
    static int on_header_field(http_parser* parser, const char* at, size_t length);
    static int on_header_value(http_parser* parser, const char* at, size_t length);
    static int on_headers_complete(http_parser* parser);
    static int on_body(http_parser* parser, const char* at, size_t length);
    static int on_message_complete(http_parser* parser);
    static const http_parser_settings kSettings;

    http_parser parser_;
    size_t body_limit_;
    const Api* gate_;
    Request request_;
    Response refusal_;
    std::string url_;
    std::string header_name_;  // the header being read (pieces may span feeds)
    std::string expect_;
    Header header_ = Header::Other;
    bool in_header_value_ = false;
    bool too_large_ = false;
    bool refused_ = false;
    bool authorized_ = false;
    bool complete_ = false;
    bool keep_alive_ = false;
    bool http10_ = false;
    bool continue_expected_ = false;
};

class Server final : public net::Handler, public net::EnvelopeHandler {
public:
    // `loop` is the worker the listener belongs to (pool results come back to
    // it as envelopes: register this server with set_envelope_handler(
    // kEnvelopeFamily, ...)); every connection is reached through `io`;
    // requests run on `pool` against `api`. All must outlive the server.
    Server(net::Worker& loop, net::Transport& io, net::BlockingPool& pool, const Api& api,
           const ServerOptions& options);

    void on_open(net::ConnRef conn, net::Transport& transport) override;
    net::DataResult on_data(net::ConnRef conn, std::span<const uint8_t> bytes) override;
    void on_deadline(net::ConnRef conn) override;
    void on_close(net::ConnRef conn, net::CloseReason reason) override;
    void on_shutdown() override;
    bool make_room() override;
    void on_envelope(net::Envelope& envelope) override;

private:
    struct Connection {
        Connection(uint32_t generation_, size_t body_limit, const Api& gate)
            : generation(generation_), parser(body_limit, &gate) {}
        uint32_t generation;
        bool awaiting_response = false;  // a request is on the pool; input paused
        bool screened = false;           // a request of it passed Api::screen with the secret (if one is set)
        bool mid_request = false;        // part of a request came, not all of it
        uint64_t last_active = 0;        // Server::activity_ when it opened or was last answered
        RequestParser parser;
    };

    Connection* find(net::ConnRef conn);
    // Hands the parsed request to the pool; false when its queue is full.
    bool submit(net::ConnRef conn, Connection& c);
    // Writes a response, then closes the connection (the request asked to,
    // or the server stops) or readies it for the next request. False when
    // the connection is gone: the caller must stop touching `c`.
    bool respond(net::ConnRef conn, Connection& c, std::span<const uint8_t> bytes);
    // Writes an error response and closes.
    void fail(net::ConnRef conn, const std::string& response, HttpClose reason);

    net::Worker& loop_;
    net::Transport& io_;
    net::BlockingPool& pool_;
    const Api& api_;
    ServerOptions options_;
    // HTTP connections only (few), by slot.
    std::unordered_map<uint32_t, Connection> conns_;
    // Connections in the order they opened, the first that have not yet
    // passed the screen: the ones make_room closes. Entries of connections
    // closed or screened meanwhile are skipped (and dropped when they pile up).
    std::deque<net::ConnRef> unscreened_;
    uint64_t activity_ = 0;  // counts openings and answers: orders connections by when they were last active
    bool shutting_down_ = false;
};

}  // namespace limaoim::http
