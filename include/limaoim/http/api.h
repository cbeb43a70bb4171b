// The HTTP API's endpoints (SERVER.md §16.0-16.3), as a pure function of a
// parsed request and the IM core: no sockets, no loop, so every endpoint is
// unit-testable and fuzzable on its own. http::Server (server.h) frames the
// requests on a worker ring and runs handle() on an API pool thread, since
// the im::Service calls may wait for the store.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "limaoim/im/service.h"

namespace limaoim::http {

struct Request {
    std::string method;  // as sent: "POST", "GET", ...
    std::string path;    // without the query
    std::string query;   // after '?', undecoded (no endpoint of §16.0-16.3 reads it)
    std::string body;
    std::string authorization;  // the Authorization header's value
};

struct Response {
    uint16_t status = 200;
    std::string body;              // always JSON
    const char* allow = nullptr;   // 405: the method the path accepts (the Allow header)
};

// The seq window POST /channel/messagesync reads (§16.3), in the terms of
// im::Service::channel_messages: from_seq <= seq < to_seq (to_seq 0: no
// bound), at most `limit`. `empty`: the window holds no seq at all.
struct HistoryWindow {
    uint32_t from_seq = 0;
    uint32_t to_seq = 0;
    uint32_t limit = 0;
    bool empty = false;
    bool operator==(const HistoryWindow&) const = default;
};
// `forward` is the request's reverse == 1.
HistoryWindow message_sync_window(uint32_t min_seq, uint32_t max_seq, uint32_t limit, bool forward);

// Standard alphabet with '=' padding (the JSON encoding of byte fields, §16.0).
std::string base64_encode(std::string_view bytes);
// Strict: length a multiple of 4, padding only at the end, standard alphabet
// only (no whitespace). Nullopt otherwise. Like Go's StdEncoding, which the
// original decodes with, non-zero bits after the last byte are accepted.
std::optional<std::string> base64_decode(std::string_view text);

class Api {
public:
    // `bearer_secret` empty: no authorization. Otherwise every request needs
    // `Authorization: Bearer <secret>` (401 without).
    explicit Api(im::Service& service, std::string_view bearer_secret = {});

    // Any thread; never throws. Status codes: 200; 400 for a request that
    // is malformed or that the core refuses; 401; 404 unknown path; 405
    // known path, other method; 500 when the core is unavailable.
    Response handle(const Request& request) const;

    // True when no secret is configured or `authorization` carries it.
    bool authorized(std::string_view authorization) const;

private:
    im::Service& service_;
    std::optional<std::array<uint8_t, 32>> secret_digest_;  // SHA-256 of the secret
};

}  // namespace limaoim::http
