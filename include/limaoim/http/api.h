// The HTTP API's endpoints (SERVER.md §16.0-16.3), as a pure function of a
// parsed request and the IM core: no sockets, no loop, so every endpoint is
// unit-testable and fuzzable on its own. http::Server (server.h) frames the
// requests on a worker ring and runs handle() on an API pool thread, since
// the im::Service calls may wait for the store.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/im/service.h"

namespace limaoim::http {

struct Request {
    std::string method;  // as sent: "POST", "GET", ...
    std::string path;    // without the query
    std::string query;   // after '?', undecoded (no endpoint of §16.0-16.3 reads it)
    std::string body;
    std::string authorization;  // the Authorization header's value
    std::string token;          // the "token" header's value: WuKongIM's way to send the secret
    // Who sent it, as a browser tells (Api::screen): empty when absent.
    std::string origin;  // the Origin header's value
    std::string host;    // the Host header's value
};

inline constexpr const char* kJsonContentType = "application/json";

struct Response {
    uint16_t status = 200;
    std::string body;              // JSON unless content_type says otherwise
    const char* allow = nullptr;   // 405: the method the path accepts (the Allow header)
    const char* content_type = kJsonContentType;  // the Content-Type header (a static string)
    // A page at this origin (one of ApiOptions::allowed_origins) may read the
    // answer: the CORS headers name it. Empty: no CORS headers.
    std::string allow_origin;
};

// What GET /health and GET /metrics ask, composed by the server's main:
// the HTTP layer knows neither the store, nor the webhook, nor the stats
// segment. Called on an API pool thread; may take a moment (the store's
// write probe), never a ring's time.
struct Probes {
    // True when the server is healthy; false with `why` (GET /health
    // answers 503 {"msg": why, "status": 503}). Empty: always healthy.
    std::function<bool(std::string& why)> health;
    // The Prometheus text exposition, version 0.0.4 (GET /metrics).
    // Empty: /metrics is 404.
    std::function<std::string()> metrics;
};

// A file served as it is to GET (the demo page, http/demo.h): public, so
// answered without the bearer secret. The bytes are static (in the binary).
struct StaticFile {
    std::string_view path;          // the URL path, e.g. "/demo/demo.js"
    const char* content_type;
    std::string_view body;
    uint16_t status = 200;
};

inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

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

// The most messages one POST /message/sync or /channel/messagesync returns:
// a larger `limit` is clamped to it (a page, not the whole log).
inline constexpr uint32_t kMaxPageMessages = 1000;

struct ApiOptions {
    // Empty: no authorization. Otherwise every request needs
    // `Authorization: Bearer <secret>` or `token: <secret>` (401 without),
    // /health and /metrics included.
    std::string bearer_secret;
    // Origins ("scheme://host[:port]", exact) whose pages may call the API
    // from a browser, CORS included (their preflights pass without the
    // secret, their answers name them). A request with any other Origin is
    // refused (403), unless it comes from a page of the API's own address
    // (the demo).
    std::vector<std::string> allowed_origins;
    // The JSON bytes of messages one response gathers at most: a page ends
    // early past it ("more": 1), so the response stays under the server's
    // response cap (ServerOptions::max_response_bytes). The store read stops
    // there too (im::PageLimit): a page's messages are not all read first.
    // /conversation/syncMessages has one budget for all its channels.
    size_t message_bytes_budget = 8u << 20;
};

class Api {
public:
    // `static_files` are answered to GET before any other route, with neither
    // authorization nor the Origin and Host rules (they must hold nothing secret).
    explicit Api(im::Service& service, ApiOptions options = {}, Probes probes = {},
                 std::span<const StaticFile> static_files = {});

    // Any thread; never throws. Status codes: 200; 400 for a request that
    // is malformed or that the core refuses; 401 and 403 (screen()); 404
    // unknown path; 405 known path, other method; 500 when the core is
    // unavailable; 503 from GET /health when a probe fails.
    Response handle(const Request& request) const;

    // What the request's line and headers alone decide (its body is not
    // read): the refusal, or nothing when it may go on. The server asks at
    // the end of the headers, before a byte of the body is kept or "100
    // Continue" is sent; handle() asks again. In this order:
    //   - a GET of a static file, or a CORS preflight (OPTIONS, no
    //     credentials) from an allowed origin: allowed;
    //   - an Origin that is neither in allowed_origins nor the API's own
    //     (Origin's host[:port] == Host): 403. Browsers send Origin with
    //     every cross-origin fetch and every POST; business servers and curl
    //     send none;
    //   - no secret, and a Host that is not a loopback name or address
    //     (localhost, 127.x.x.x, [::1], with or without a port): 403. A page
    //     that rebinds its own DNS name to 127.0.0.1 sends its name here;
    //   - the secret missing or wrong: 401.
    std::optional<Response> screen(const Request& head) const;

    // True when no secret is configured, `authorization` carries it
    // ("Bearer <secret>"), or `token` is it (WuKongIM's business servers
    // send the secret, its manager token, as a "token" header).
    bool authorized(std::string_view authorization, std::string_view token = {}) const;
    bool has_secret() const { return secret_digest_.has_value(); }

private:
    Response probe(const Request& request) const;  // GET /health, GET /metrics
    bool is_static(std::string_view path) const;
    bool is_allowed_origin(std::string_view origin) const;
    bool is_secret(std::string_view candidate) const;  // a secret is set and this is it
    Response route(const Request& request) const;  // handle() once screen() let it through

    im::Service& service_;
    std::optional<std::array<uint8_t, 32>> secret_digest_;  // SHA-256 of the secret
    std::vector<std::string> allowed_origins_;
    size_t message_bytes_budget_;
    Probes probes_;
    std::span<const StaticFile> static_files_;
};

}  // namespace limaoim::http
