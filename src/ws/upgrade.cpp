#include "limaoim/ws/upgrade.h"
#include "limaoim/base64/base64.h"

#include <http_parser.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

namespace limaoim::ws {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // RFC 6455 §1.3

// The headers the handshake needs. A field or value may reach the
// callbacks in pieces, so both are appended to.
struct Headers {
    std::string field;
    std::string* value = nullptr;  // where the current header's value goes, or null (not needed)
    bool field_done = false;
    std::string upgrade, connection, key, version;
    bool host = false;  // §4.1: the request carries a Host header
    bool complete = false;
};

// ASCII only: header bytes >= 0x80 compare as they are (std::tolower of a
// negative char is undefined).
char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

// True when the comma-separated list `header` holds `token` (case-insensitive):
// browsers send "Connection: keep-alive, Upgrade".
bool has_token(std::string_view header, std::string_view token) {
    while (!header.empty()) {
        size_t comma = header.find(',');
        std::string_view item = header.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (iequals(item, token)) return true;
        if (comma == std::string_view::npos) break;
        header.remove_prefix(comma + 1);
    }
    return false;
}

int on_header_field(http_parser* parser, const char* at, size_t length) {
    auto& h = *static_cast<Headers*>(parser->data);
    if (h.field_done) {  // a new header begins
        h.field.clear();
        h.field_done = false;
    }
    if (h.field.size() + length > 64) h.field.clear();  // no header we need is that long
    else h.field.append(at, length);
    return 0;
}

int on_header_value(http_parser* parser, const char* at, size_t length) {
    auto& h = *static_cast<Headers*>(parser->data);
    if (!h.field_done) {
        h.field_done = true;
        if (iequals(h.field, "Host")) h.host = true;
        h.value = iequals(h.field, "Upgrade")                 ? &h.upgrade
                  : iequals(h.field, "Connection")            ? &h.connection
                  : iequals(h.field, "Sec-WebSocket-Key")     ? &h.key
                  : iequals(h.field, "Sec-WebSocket-Version") ? &h.version
                                                              : nullptr;
        if (h.value) h.value->clear();  // a repeated header: the last one counts
    }
    if (h.value) h.value->append(at, length);
    return 0;
}

int on_headers_complete(http_parser* parser) {
    static_cast<Headers*>(parser->data)->complete = true;
    return 0;
}

const http_parser_settings kSettings = [] {
    http_parser_settings settings;
    http_parser_settings_init(&settings);
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    return settings;
}();

// §4.1: the key is 16 random bytes in base64: 24 characters ending in "==".
bool valid_key(std::string_view key) { return base64::decoded_size(key) == 16; }

UpgradeResult refused(UpgradeStatus status, size_t request_bytes, const char* problem) {
    UpgradeResult r;
    r.status = status;
    r.request_bytes = request_bytes;
    r.problem = problem;
    return r;
}

std::string error_response(std::string_view status_line, std::string_view extra_headers, std::string_view body) {
    std::string out;
    out.reserve(160 + body.size());
    out += "HTTP/1.1 ";
    out += status_line;
    out += "\r\n";
    out += extra_headers;
    out += "Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ";
    out += std::to_string(body.size() + 1);
    out += "\r\n\r\n";
    out += body;
    out += "\n";
    return out;
}

}  // namespace

std::string accept_key(std::string_view client_key) {
    std::string input(client_key);
    input += kGuid;
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
    return base64::encode(digest);
}

UpgradeResult parse_upgrade(std::span<const uint8_t> in, size_t max_request, size_t scan_from) {
    const std::string_view text(reinterpret_cast<const char*>(in.data()), in.size());
    const size_t end = text.find("\r\n\r\n", std::min(scan_from, text.size()));
    if (end == std::string_view::npos) {
        if (in.size() > max_request) return refused(UpgradeStatus::TooLarge, in.size(), "request header too large");
        UpgradeResult incomplete;
        incomplete.scanned = in.size() < 3 ? 0 : in.size() - 3;  // a blank line may be cut after its first 3 bytes
        return incomplete;
    }
    const size_t request_bytes = end + 4;
    if (request_bytes > max_request) return refused(UpgradeStatus::TooLarge, request_bytes, "request header too large");

    Headers headers;
    http_parser parser;
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &headers;
    http_parser_execute(&parser, &kSettings, text.data(), request_bytes);
    if (!headers.complete || HTTP_PARSER_ERRNO(&parser) != HPE_OK)
        return refused(UpgradeStatus::Bad, request_bytes, "malformed HTTP request");
    if (parser.method != HTTP_GET) return refused(UpgradeStatus::Bad, request_bytes, "a WebSocket upgrade is a GET");
    if (parser.http_major < 1 || (parser.http_major == 1 && parser.http_minor < 1))
        return refused(UpgradeStatus::Bad, request_bytes, "a WebSocket upgrade needs HTTP/1.1");
    if (!headers.host) return refused(UpgradeStatus::Bad, request_bytes, "the request has no Host header");
    if (!has_token(headers.upgrade, "websocket") || !has_token(headers.connection, "upgrade"))
        return refused(UpgradeStatus::Bad, request_bytes,
                       "this port speaks WebSocket: send Upgrade: websocket and Connection: Upgrade");
    if (headers.version != "13")
        return refused(UpgradeStatus::BadVersion, request_bytes, "Sec-WebSocket-Version must be 13");
    if (!valid_key(headers.key)) return refused(UpgradeStatus::Bad, request_bytes, "Sec-WebSocket-Key is not 16 bytes in base64");

    UpgradeResult r;
    r.status = UpgradeStatus::Accepted;
    r.request_bytes = request_bytes;
    r.accept = accept_key(headers.key);
    return r;
}

std::string upgrade_response(const UpgradeResult& result) {
    switch (result.status) {
    case UpgradeStatus::Accepted:
        return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: " + result.accept + "\r\n\r\n";
    case UpgradeStatus::BadVersion:
        return error_response("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n", result.problem);
    case UpgradeStatus::TooLarge:
        return error_response("431 Request Header Fields Too Large", "", result.problem);
    case UpgradeStatus::Bad:
    case UpgradeStatus::Incomplete:
        break;
    }
    return error_response("400 Bad Request", "", result.problem);
}

}  // namespace limaoim::ws
