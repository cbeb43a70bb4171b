// The opening handshake (RFC 6455 §4.2): the client's HTTP/1.1 upgrade
// request, parsed with http_parser (as the HTTP API's requests are), and the
// server's answer. Any path and any Origin are accepted, as the original's
// listener does (PROTOCOL.md §1); no subprotocol or extension is chosen.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace limaoim::ws {

enum class UpgradeStatus : uint8_t {
    Incomplete,   // the header block has not ended yet
    Accepted,     // a valid WebSocket upgrade: answer 101
    Bad,          // not a valid upgrade request: 400
    BadVersion,   // Sec-WebSocket-Version other than 13: 426 naming 13 (§4.4)
    TooLarge,     // the header block passes the limit: 431
};

struct UpgradeResult {
    UpgradeStatus status = UpgradeStatus::Incomplete;
    size_t request_bytes = 0;  // the request's length (bytes after it are frames)
    std::string accept;        // Sec-WebSocket-Accept, when Accepted
    const char* problem = "";  // why it was refused, for the 4xx body and the log
    size_t scanned = 0;        // Incomplete: where the next search for the blank line may start
};

// `in` holds what the client sent so far; `max_request` bounds the header
// block (a slow or endless one is cut there, not buffered on). The search
// for the blank line that ends it starts at `scan_from` (the `scanned` of
// the last Incomplete result for the same request).
UpgradeResult parse_upgrade(std::span<const uint8_t> in, size_t max_request, size_t scan_from = 0);

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)).
std::string accept_key(std::string_view client_key);

// The bytes to send back: the 101 for Accepted, an error response (with
// Connection: close) for the rest.
std::string upgrade_response(const UpgradeResult& result);

}  // namespace limaoim::ws
