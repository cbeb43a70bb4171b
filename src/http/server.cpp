#include "limaoim/http/server.h"

#include <cctype>
#include <climits>
#include <new>
#include <utility>
#include <vector>

namespace limaoim::http {

using net::ConnRef;
using Linger = net::Transport::Linger;

namespace {

constexpr const char* kHttpCloseNames[] = {
    "http_bad_request", "http_body_too_large", "http_idle", "http_done", "http_shutdown", "http_refused", "http_evicted",
};
static_assert(std::size(kHttpCloseNames) == size_t(HttpClose::Evicted) - kFirstHttpCloseReason + 1);
static_assert(kFirstHttpCloseReason + std::size(kHttpCloseNames) <= net::kMaxCloseReasons);

const char* reason_phrase(uint16_t status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

std::span<const uint8_t> as_bytes(std::string_view text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// The envelope's argument: the connection, generation included, so a
// response for a connection that closed meanwhile finds no match.
uint64_t pack(ConnRef conn) { return uint64_t(conn.slot) << 32 | conn.generation; }
ConnRef unpack(uint64_t arg) { return {uint32_t(arg >> 32), uint32_t(arg)}; }

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(uint8_t(a[i])) != std::tolower(uint8_t(b[i]))) return false;
    return true;
}

// The answers the ring writes itself: built once.
const std::string& bad_request_response() {
    static const std::string bytes =
        serialize_response({400, R"({"msg":"malformed HTTP request","status":400})"}, false);
    return bytes;
}
const std::string& body_too_large_response() {
    static const std::string bytes =
        serialize_response({413, R"({"msg":"request body too large","status":413})"}, false);
    return bytes;
}
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace

std::span<const char* const> http_close_reason_names() { return kHttpCloseNames; }

std::string serialize_response(const Response& response, bool keep_alive, bool http10) {
    std::string out;
    out.reserve(160 + response.body.size());
    out += "HTTP/1.1 ";
    out += std::to_string(response.status);
    out += ' ';
    out += reason_phrase(response.status);
    out += "\r\nContent-Type: ";
    out += response.content_type ? response.content_type : kJsonContentType;
    out += "\r\nContent-Length: ";
    out += std::to_string(response.body.size());
    out += "\r\n";
    if (response.allow) {
        out += "Allow: ";
        out += response.allow;
        out += "\r\n";
    }
    if (!response.allow_origin.empty()) {
        // The methods and headers matter to a preflight only; other answers
        // may carry them.
        out += "Access-Control-Allow-Origin: ";
        out += response.allow_origin;
        out += "\r\nVary: Origin\r\nAccess-Control-Allow-Methods: GET, POST\r\n"
               "Access-Control-Allow-Headers: Authorization, Content-Type, token\r\nAccess-Control-Max-Age: 600\r\n";
    }
    if (!keep_alive) {
        out += "Connection: close\r\n";
    } else if (http10) {
        out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
    out += response.body;
    return out;
}

// ---- RequestParser ----

const http_parser_settings RequestParser::kSettings = [] {
    http_parser_settings settings;
    http_parser_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    return settings;
}();

RequestParser::RequestParser(size_t body_limit, const Api* gate) : body_limit_(body_limit), gate_(gate) {
    http_parser_init(&parser_, HTTP_REQUEST);
}

RequestParser::Result RequestParser::feed(std::span<const uint8_t> bytes) {
    // http_parser reads a call without bytes as the end of the stream.
    if (bytes.empty()) return {Status::NeedMore, 0};
    parser_.data = this;
    const size_t parsed =
        http_parser_execute(&parser_, &kSettings, reinterpret_cast<const char*>(bytes.data()), bytes.size());
    const auto error = http_errno(parser_.http_errno);
    // on_message_complete pauses the parser: it stops right after the request.
    if (error == HPE_PAUSED && complete_) return {Status::Complete, parsed};
    if (error != HPE_OK || parsed != bytes.size())
        return {refused_ ? Status::Refused : too_large_ ? Status::BodyTooLarge : Status::BadRequest, parsed};
    return {Status::NeedMore, parsed};
}

void RequestParser::next() {
    complete_ = false;
    http_parser_pause(&parser_, 0);
}

int RequestParser::on_message_begin(http_parser* parser) {
    RequestParser& self = *static_cast<RequestParser*>(parser->data);
    // clear() keeps the capacity of what was not handed over with the last request.
    self.request_.method.clear();
    self.request_.path.clear();
    self.request_.query.clear();
    self.request_.body.clear();
    self.request_.authorization.clear();
    self.request_.token.clear();
    self.authorized_ = false;
    self.request_.origin.clear();
    self.request_.host.clear();
    self.url_.clear();
    self.header_name_.clear();
    self.expect_.clear();
    self.in_header_value_ = false;
    self.continue_expected_ = false;
    return 0;
}

// The request line and headers are bounded by http_parser itself
// (HTTP_MAX_HEADER_SIZE, 80 KiB), so the strings they fill are too.
int RequestParser::on_url(http_parser* parser, const char* at, size_t length) {
    static_cast<RequestParser*>(parser->data)->url_.append(at, length);
    return 0;
}

int RequestParser::on_header_field(http_parser* parser, const char* at, size_t length) {
    RequestParser& self = *static_cast<RequestParser*>(parser->data);
    if (self.in_header_value_) {  // a new header starts
        self.header_name_.clear();
        self.in_header_value_ = false;
    }
    self.header_name_.append(at, length);
    return 0;
}

int RequestParser::on_header_value(http_parser* parser, const char* at, size_t length) {
    RequestParser& self = *static_cast<RequestParser*>(parser->data);
    if (!self.in_header_value_) {  // the name is complete: is it one we keep?
        self.in_header_value_ = true;
        self.header_ = Header::Other;
        if (equals_ignoring_case(self.header_name_, "authorization")) {
            self.header_ = Header::Authorization;
            self.request_.authorization.clear();
        } else if (equals_ignoring_case(self.header_name_, "token")) {
            self.header_ = Header::Token;
            self.request_.token.clear();
        } else if (equals_ignoring_case(self.header_name_, "expect")) {
            self.header_ = Header::Expect;
            self.expect_.clear();
        } else if (equals_ignoring_case(self.header_name_, "origin")) {
            self.header_ = Header::Origin;
            self.request_.origin.clear();
        } else if (equals_ignoring_case(self.header_name_, "host")) {
            self.header_ = Header::Host;
            self.request_.host.clear();
        }
    }
    switch (self.header_) {
    case Header::Authorization: self.request_.authorization.append(at, length); break;
    case Header::Token: self.request_.token.append(at, length); break;
    case Header::Expect: self.expect_.append(at, length); break;
    case Header::Origin: self.request_.origin.append(at, length); break;
    case Header::Host: self.request_.host.append(at, length); break;
    case Header::Other: break;
    }
    return 0;
}

int RequestParser::on_headers_complete(http_parser* parser) {
    RequestParser& self = *static_cast<RequestParser*>(parser->data);
    http_parser_url url;
    http_parser_url_init(&url);
    if (http_parser_parse_url(self.url_.data(), self.url_.size(), 0, &url) != 0) return -1;
    if (url.field_set & (1 << UF_PATH)) {
        self.request_.path.assign(self.url_, url.field_data[UF_PATH].off, url.field_data[UF_PATH].len);
    } else {
        self.request_.path.assign(1, '/');  // absolute form without a path: "http://host"
    }
    if (url.field_set & (1 << UF_QUERY))
        self.request_.query.assign(self.url_, url.field_data[UF_QUERY].off, url.field_data[UF_QUERY].len);
    self.request_.method = http_method_str(http_method(parser->method));
    // Who may ask is decided here, before a byte of the body is kept or a
    // "100 Continue" invites it: a refused client cannot make the server
    // buffer up to body_limit first.
    if (self.gate_) {
        if (std::optional<Response> refused = self.gate_->screen(self.request_)) {
            self.refusal_ = std::move(*refused);
            self.refused_ = true;
            return -1;  // 1 and 2 mean "no body" / "upgrade" to http_parser: any other value fails
        }
        self.authorized_ = self.gate_->authorized(self.request_.authorization, self.request_.token);
    }
    // Refused before a byte of the body is read (content_length is ULLONG_MAX
    // without the header; a chunked body is counted in on_body).
    if (parser->content_length != ULLONG_MAX && parser->content_length > self.body_limit_) {
        self.too_large_ = true;
        return -1;
    }
    // http_should_keep_alive's reading of the version: 1.1 and later keep
    // the connection by default, anything else closes it.
    self.http10_ = !(parser->http_major > 0 && parser->http_minor > 0);
    self.continue_expected_ = !self.http10_ && equals_ignoring_case(self.expect_, "100-continue");
    return 0;
}

int RequestParser::on_body(http_parser* parser, const char* at, size_t length) {
    RequestParser& self = *static_cast<RequestParser*>(parser->data);
    if (length > self.body_limit_ - self.request_.body.size()) {
        self.too_large_ = true;
        return -1;
    }
    self.request_.body.append(at, length);
    return 0;
}

int RequestParser::on_message_complete(http_parser* parser) {
    RequestParser& self = *static_cast<RequestParser*>(parser->data);
    self.complete_ = true;
    // After an Upgrade (or CONNECT) the bytes are another protocol's: answer, then close.
    self.keep_alive_ = http_should_keep_alive(parser) && !parser->upgrade;
    http_parser_pause(parser, 1);
    return 0;
}

// ---- Server ----

Server::Server(net::Worker& loop, net::Transport& io, net::BlockingPool& pool, const Api& api,
               const ServerOptions& options)
    : loop_(loop), io_(io), pool_(pool), api_(api), options_(options) {}

Server::Connection* Server::find(ConnRef conn) {
    auto it = conns_.find(conn.slot);
    return it != conns_.end() && it->second.generation == conn.generation ? &it->second : nullptr;
}

void Server::on_open(ConnRef conn, net::Transport&) {  // always the worker: the API is plain TCP
    conns_.try_emplace(conn.slot, conn.generation, options_.body_limit, api_).first->second.last_active = ++activity_;
    io_.set_deadline(conn, options_.idle_timeout_ms);
    if (unscreened_.size() > 2 * conns_.size() + 16)
        std::erase_if(unscreened_, [this](ConnRef old) {
            const Connection* c = find(old);
            return !c || c->screened;
        });
    unscreened_.push_back(conn);
}

// Whoever reaches the port could otherwise hold every connection open,
// idle, until the idle timeout, and keep the business server out: at the cap
// the oldest connection that has not sent a request past the screen goes
// (a business server's connection sends its request as soon as it opens).
bool Server::make_room() {
    while (!unscreened_.empty()) {
        const ConnRef oldest = unscreened_.front();
        unscreened_.pop_front();
        const Connection* c = find(oldest);
        if (!c || c->screened) continue;
        io_.close(oldest, net::CloseReason(HttpClose::Evicted));
        return true;
    }
    // With no secret every request passes the screen, so connections kept
    // alive after one could hold the cap: then the one answered longest ago
    // with no request under way goes (its client connects again for its
    // next request). With a secret those are the business server's: kept.
    if (api_.has_secret()) return false;
    const Connection* idlest = nullptr;
    uint32_t idlest_slot = 0;
    for (const auto& [slot, c] : conns_)
        if (!c.awaiting_response && !c.mid_request && (!idlest || c.last_active < idlest->last_active)) {
            idlest = &c;
            idlest_slot = slot;
        }
    if (!idlest) return false;
    io_.close(ConnRef{idlest_slot, idlest->generation}, net::CloseReason(HttpClose::Evicted));
    return true;
}

net::DataResult Server::on_data(ConnRef conn, std::span<const uint8_t> bytes) {
    Connection* c = find(conn);
    if (!c) return {bytes.size(), 0};
    size_t offset = 0;
    while (offset < bytes.size()) {
        const RequestParser::Result r = c->parser.feed(bytes.subspan(offset));
        switch (r.status) {
        case RequestParser::Status::NeedMore:
            c->mid_request = true;
            // Proved at the end of the headers, before its body (which may be long coming).
            if (c->parser.authorized()) c->screened = true;
            if (c->parser.take_continue_expected()) io_.send(conn, as_bytes(kContinue));
            return {bytes.size(), 0};
        case RequestParser::Status::BadRequest:
            fail(conn, bad_request_response(), HttpClose::BadRequest);
            return {bytes.size(), 0};
        case RequestParser::Status::BodyTooLarge:
            fail(conn, body_too_large_response(), HttpClose::BodyTooLarge);
            return {bytes.size(), 0};
        case RequestParser::Status::Refused:
            fail(conn, serialize_response(c->parser.refusal(), false), HttpClose::Refused);
            return {bytes.size(), 0};
        case RequestParser::Status::Complete:
            break;
        }
        // Past the screen; with a secret, a public page's request proves nothing.
        if (c->parser.authorized()) c->screened = true;
        offset += r.consumed;
        c->parser.take_continue_expected();  // the body came with the headers
        if (submit(conn, *c)) {
            // What the client pipelined behind this request waits in the
            // loop's buffer until the response is written.
            io_.pause_input(conn);
            return {offset, 0};
        }
        // The pool's queue is full: say so at once, then on to the next request.
        const std::string busy = serialize_response({503, R"({"msg":"server busy","status":503})"},
                                                    c->parser.keep_alive(), c->parser.http10());
        if (!respond(conn, *c, as_bytes(busy))) return {bytes.size(), 0};
    }
    return {offset, 0};
}

bool Server::submit(ConnRef conn, Connection& c) {
    const bool keep_alive = c.parser.keep_alive();
    const bool http10 = c.parser.http10();
    auto job = [api = &api_, request = std::move(c.parser.request()), keep_alive, http10, arg = pack(conn),
                max_response = options_.max_response_bytes]() -> net::Envelope {
        net::Envelope envelope;
        envelope.kind = kResponseEnvelope;
        envelope.arg = arg;
        try {
            std::string bytes = serialize_response(api->handle(request), keep_alive, http10);
            if (bytes.size() > max_response) {
                const std::string body = R"({"msg":"response of )" + std::to_string(bytes.size()) +
                                         R"( bytes exceeds the send cap; ask for fewer messages","status":500})";
                bytes = serialize_response({500, body}, keep_alive, http10);
            }
            envelope.payload = net::Payload::copy_of(as_bytes(bytes));
        } catch (const std::bad_alloc&) {
            // No payload: the worker closes the connection.
        }
        return envelope;
    };
    if (!pool_.submit(loop_, std::move(job))) return false;
    c.awaiting_response = true;
    return true;
}

bool Server::respond(ConnRef conn, Connection& c, std::span<const uint8_t> bytes) {
    if (!io_.send(conn, bytes)) return false;  // closed (a slow consumer): on_close has run
    if (!c.parser.keep_alive() || shutting_down_) {
        io_.close(conn, net::CloseReason(shutting_down_ ? HttpClose::Shutdown : HttpClose::Done), Linger::Flush);
        return false;
    }
    c.parser.next();
    c.mid_request = false;
    c.last_active = ++activity_;
    io_.set_deadline(conn, options_.idle_timeout_ms);
    return true;
}

void Server::fail(ConnRef conn, const std::string& response, HttpClose reason) {
    io_.send(conn, as_bytes(response));
    io_.close(conn, net::CloseReason(reason), Linger::Flush);
}

void Server::on_envelope(net::Envelope& envelope) {
    if (envelope.kind != kResponseEnvelope) return;
    const ConnRef conn = unpack(envelope.arg);
    Connection* c = find(conn);
    if (!c) return;  // closed while its request ran
    c->awaiting_response = false;
    if (!envelope.payload) {
        io_.close(conn, net::CloseReason::IoError);
        return;
    }
    if (respond(conn, *c, envelope.payload.bytes())) io_.resume_input(conn);
}

void Server::on_deadline(ConnRef conn) {
    Connection* c = find(conn);
    if (!c) return;
    // A request on the pool is the server's delay, not the client's.
    if (c->awaiting_response) {
        io_.set_deadline(conn, options_.idle_timeout_ms);
        return;
    }
    io_.close(conn, net::CloseReason(HttpClose::Idle));
}

void Server::on_close(ConnRef conn, net::CloseReason) {
    if (find(conn)) conns_.erase(conn.slot);
}

void Server::on_shutdown() {
    shutting_down_ = true;
    // Connections with a request on the pool close once it is answered
    // (respond()); the others now. on_close edits conns_: collect first.
    std::vector<ConnRef> idle;
    for (const auto& [slot, c] : conns_)
        if (!c.awaiting_response) idle.push_back({slot, c.generation});
    for (ConnRef conn : idle) io_.close(conn, net::CloseReason(HttpClose::Shutdown));
}

}  // namespace limaoim::http
