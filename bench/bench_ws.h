// The client side of RFC 6455 (WebSocket) for the load generators
// (bench_connection -ws, bench_message --ws-port): the opening handshake
// (upgrade request, 101 check with Sec-WebSocket-Accept), masked frames out,
// and a streaming parser for the server's frames that yields the payload of
// data frames as a byte stream (a LiMaoIM packet may span frames, a frame may
// hold several) and control frames (ping, pong, close) to the caller.
//
// Header-only; needs libcrypto (SHA-1 and base64 of the accept value), which
// every bench target links through proto_dep. The parser's state is 16 bytes,
// so a load generator can keep one per connection for 25,000+ connections.
// A control frame's payload (at most 125 bytes) is handed over in the pieces
// it arrived in; ControlAssembler puts a split one together (the caller
// keeps one only while a control frame is split, see bench_connection).
#pragma once

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace limaoim::bench::ws {

inline constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
inline constexpr size_t kKeyLength = 24;     // base64 of 16 bytes
inline constexpr size_t kAcceptLength = 28;  // base64 of a 20-byte SHA-1
inline constexpr size_t kMaxControlPayload = 125;
// A client frame's header: 2 bytes, 0/2/8 bytes of extended length, 4 of mask.
inline constexpr size_t kMaxClientHeader = 14;

enum Opcode : uint8_t { kContinuation = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9, kPong = 0xA };

inline bool is_control(uint8_t opcode) { return (opcode & 0x8) != 0; }

// ---------------------------------------------------------------- opening handshake

// The base64 of 16 bytes (the nonce of Sec-WebSocket-Key): 24 characters.
inline void make_key(uint64_t high, uint64_t low, char out[kKeyLength]) {
    uint8_t nonce[16];
    for (int i = 0; i < 8; ++i) nonce[i] = static_cast<uint8_t>(high >> (56 - 8 * i));
    for (int i = 0; i < 8; ++i) nonce[8 + i] = static_cast<uint8_t>(low >> (56 - 8 * i));
    char encoded[kKeyLength + 1];  // EVP_EncodeBlock adds a NUL
    EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded), nonce, sizeof nonce);
    std::memcpy(out, encoded, kKeyLength);
}

// Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)), 28 characters.
inline bool accept_for(std::string_view key, char out[kAcceptLength]) {
    char input[64 + kGuid.size()];
    if (key.size() > 64) return false;
    std::memcpy(input, key.data(), key.size());
    std::memcpy(input + key.size(), kGuid.data(), kGuid.size());
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    if (EVP_Digest(input, key.size() + kGuid.size(), digest, &digest_length, EVP_sha1(), nullptr) != 1 ||
        digest_length != 20)
        return false;
    char encoded[kAcceptLength + 1];
    EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded), digest, 20);
    std::memcpy(out, encoded, kAcceptLength);
    return true;
}

// Appends the upgrade request: GET path, Host host:port, the key.
inline void append_upgrade_request(std::string& out, std::string_view host, uint16_t port, std::string_view key,
                                   std::string_view path = "/") {
    out.append("GET ").append(path).append(" HTTP/1.1\r\nHost: ").append(host).append(":").append(std::to_string(port));
    out.append("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ").append(key);
    out.append("\r\nSec-WebSocket-Version: 13\r\n\r\n");
}

enum class UpgradeStatus : uint8_t {
    Incomplete,  // no end of the header block yet
    Accepted,    // 101 with Upgrade: websocket, Connection: Upgrade and the right accept value
    Refused,     // anything else; `reason` says what
};

struct UpgradeResult {
    UpgradeStatus status = UpgradeStatus::Incomplete;
    size_t header_size = 0;  // bytes of the response up to and including the empty line
    const char* reason = "";
};

namespace detail {

inline bool iequals(std::string_view a, std::string_view b) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; };
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [&](char x, char y) { return lower(x) == lower(y); });
}

inline std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

// True when the comma-separated list holds the token (case-insensitive).
inline bool has_token(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        const size_t comma = list.find(',');
        if (iequals(trim(list.substr(0, comma)), token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

}  // namespace detail

// Checks the server's answer to the upgrade request (RFC 6455 §4.1, the
// client's checks): status 101, Upgrade: websocket, Connection containing
// Upgrade, Sec-WebSocket-Accept equal to `expected_accept`, and no extension
// or subprotocol (none was asked for). Bytes after header_size are already
// frames.
inline UpgradeResult check_upgrade_response(std::span<const uint8_t> bytes, std::string_view expected_accept) {
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    const size_t end = text.find("\r\n\r\n");
    if (end == std::string_view::npos) return {};
    UpgradeResult result{UpgradeStatus::Refused, end + 4, ""};
    std::string_view head = text.substr(0, end + 2);  // every line ends with CRLF
    const size_t first_line = head.find("\r\n");
    const std::string_view status_line = head.substr(0, first_line);
    head.remove_prefix(first_line + 2);
    if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/" || status_line.substr(8, 4) != " 101" ||
        (status_line.size() > 12 && status_line[12] != ' ')) {
        result.reason = "status is not 101";
        return result;
    }
    bool upgrade = false, connection = false, accept = false;
    while (!head.empty()) {
        const size_t eol = head.find("\r\n");
        const std::string_view line = head.substr(0, eol);
        head.remove_prefix(eol + 2);
        const size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
            result.reason = "malformed header line";
            return result;
        }
        const std::string_view name = line.substr(0, colon), value = detail::trim(line.substr(colon + 1));
        if (detail::iequals(name, "Upgrade")) upgrade = detail::iequals(value, "websocket");
        else if (detail::iequals(name, "Connection")) connection = detail::has_token(value, "Upgrade");
        else if (detail::iequals(name, "Sec-WebSocket-Accept")) accept = value == expected_accept;
        else if (detail::iequals(name, "Sec-WebSocket-Extensions") || detail::iequals(name, "Sec-WebSocket-Protocol")) {
            result.reason = "extension or subprotocol not asked for";
            return result;
        }
    }
    if (!upgrade) result.reason = "no Upgrade: websocket";
    else if (!connection) result.reason = "no Connection: Upgrade";
    else if (!accept) result.reason = "wrong or missing Sec-WebSocket-Accept";
    else result.status = UpgradeStatus::Accepted;
    return result;
}

// ---------------------------------------------------------------- frames out (client: masked)

// Size of a masked frame's header for a payload of `length` bytes.
inline constexpr size_t masked_header_size(uint64_t length) {
    return 2 + (length < 126 ? 0 : length <= 0xFFFF ? 2 : 8) + 4;
}

// Writes a masked frame's header (FIN set unless `fin` is false); the mask
// key's bytes are mask_key's, most significant first. Returns its size.
inline size_t write_masked_header(uint8_t* out, uint8_t opcode, uint64_t length, uint32_t mask_key, bool fin = true) {
    size_t at = 0;
    out[at++] = static_cast<uint8_t>((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (length < 126) {
        out[at++] = static_cast<uint8_t>(0x80 | length);
    } else if (length <= 0xFFFF) {
        out[at++] = 0x80 | 126;
        out[at++] = static_cast<uint8_t>(length >> 8);
        out[at++] = static_cast<uint8_t>(length);
    } else {
        out[at++] = 0x80 | 127;
        for (int shift = 56; shift >= 0; shift -= 8) out[at++] = static_cast<uint8_t>(length >> shift);
    }
    for (int shift = 24; shift >= 0; shift -= 8) out[at++] = static_cast<uint8_t>(mask_key >> shift);
    return at;
}

// XORs `data` with the mask key, as payload bytes offset.. of a frame.
inline void apply_mask(uint8_t* data, size_t length, uint32_t mask_key, size_t offset = 0) {
    uint8_t key[4];
    for (int i = 0; i < 4; ++i) key[i] = static_cast<uint8_t>(mask_key >> (24 - 8 * ((i + offset) % 4)));
    size_t i = 0;
    if (length >= 16) {  // 8 bytes at a time: the key repeats every 4
        uint64_t wide;
        uint8_t pattern[8];
        for (int k = 0; k < 8; ++k) pattern[k] = key[k % 4];
        std::memcpy(&wide, pattern, 8);
        for (; i + 8 <= length; i += 8) {
            uint64_t word;
            std::memcpy(&word, data + i, 8);
            word ^= wide;
            std::memcpy(data + i, &word, 8);
        }
    }
    for (; i < length; ++i) data[i] ^= key[i % 4];
}

// Writes a whole masked frame (header + masked payload) to `out`, which has
// room for masked_header_size(payload.size()) + payload.size() bytes.
inline size_t write_masked_frame(uint8_t* out, uint8_t opcode, std::span<const uint8_t> payload, uint32_t mask_key) {
    const size_t header = write_masked_header(out, opcode, payload.size(), mask_key);
    if (!payload.empty()) std::memcpy(out + header, payload.data(), payload.size());
    apply_mask(out + header, payload.size(), mask_key);
    return header + payload.size();
}

// Appends a masked frame to a byte container (std::string or std::vector<uint8_t>).
template <typename Buffer>
void append_masked_frame(Buffer& out, uint8_t opcode, std::span<const uint8_t> payload, uint32_t mask_key) {
    const size_t at = out.size();
    out.resize(at + masked_header_size(payload.size()) + payload.size());
    write_masked_frame(reinterpret_cast<uint8_t*>(out.data()) + at, opcode, payload, mask_key);
}

// A close frame's payload: the status code (2 bytes, big endian).
inline std::array<uint8_t, 2> close_payload(uint16_t code) {
    return {static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code)};
}

// ---------------------------------------------------------------- frames in (server: unmasked)

enum class FeedResult : uint8_t {
    Ok,             // every byte consumed
    Stopped,        // the sink returned false: the caller stops reading this stream
    ProtocolError,  // the server broke RFC 6455 (see FrameParser::error())
};

// A streaming parser of the server's frames; 16 bytes of state. feed() calls
//   bool sink.on_data(uint8_t message_opcode, std::span<const uint8_t> bytes)
//       payload bytes of a data message (kBinary or kText; a fragmented
//       message's continuation frames report the first frame's opcode)
//   bool sink.on_control(uint8_t opcode, std::span<const uint8_t> chunk, size_t offset, size_t total)
//       a piece of a control frame's payload (kClose, kPing, kPong); called
//       at least once per control frame (once with an empty chunk when the
//       payload is empty); the frame is complete when offset + chunk.size()
//       == total
// Either returns false to stop (feed() then returns Stopped; the parser's
// state is then undefined).
class FrameParser {
public:
    template <typename Sink>
    FeedResult feed(std::span<const uint8_t> bytes, Sink&& sink) {
        size_t at = 0;
        while (at < bytes.size()) {
            if (have_ != kInPayload) {
                // Header bytes: the first two tell the total header size.
                header_[have_++] = bytes[at++];
                if (have_ < 2) continue;
                if (have_ == 2 && check_start() != FeedResult::Ok) return FeedResult::ProtocolError;
                const size_t needed = header_size();
                if (have_ < needed) continue;
                const FeedResult checked = begin_frame();
                if (checked != FeedResult::Ok) return checked;
                if (remaining_ == 0 && !finish_empty(sink)) return FeedResult::Stopped;
                continue;
            }
            const size_t take = std::min<size_t>(remaining_, bytes.size() - at);
            const std::span<const uint8_t> chunk = bytes.subspan(at, take);
            const uint8_t opcode = frame_opcode();
            const size_t total = header_[1] & 0x7F;  // a control frame's length fits in 7 bits
            bool go_on;
            if (is_control(opcode)) go_on = sink.on_control(opcode, chunk, total - remaining_, total);
            else go_on = sink.on_data(message_opcode(), chunk);
            at += take;
            remaining_ -= static_cast<uint32_t>(take);
            if (remaining_ == 0) end_frame();
            if (!go_on) return FeedResult::Stopped;
        }
        return FeedResult::Ok;
    }

    const char* error() const { return kErrors[flags_ & kErrorMask]; }
    // True between the frames of a fragmented data message.
    bool in_message() const { return (flags_ & kInMessage) != 0; }

private:
    static constexpr uint8_t kInPayload = 0xFF;
    static constexpr uint8_t kInMessage = 0x80;   // flags_: a data message started and not finished
    static constexpr uint8_t kTextMessage = 0x40; // flags_: that message is text
    static constexpr uint8_t kErrorMask = 0x0F;   // flags_: the error, an index into kErrors
    static constexpr const char* kErrors[] = {
        "none",
        "RSV bits set (no extension was negotiated)",
        "masked frame from the server",
        "length not in its shortest form",
        "64-bit length with the top bit set",
        "frame larger than 4 GiB",
        "unknown control opcode",
        "fragmented control frame",
        "control frame longer than 125 bytes",
        "continuation frame outside a message",
        "new data frame inside a fragmented message",
        "unknown data opcode",
    };

    size_t header_size() const {
        const uint8_t length = header_[1] & 0x7F;
        return 2 + (length == 126 ? 2 : length == 127 ? 8 : 0);
    }
    uint8_t frame_opcode() const { return header_[0] & 0x0F; }
    uint8_t message_opcode() const { return (flags_ & kTextMessage) ? kText : kBinary; }

    FeedResult fail(uint8_t error) {
        flags_ = static_cast<uint8_t>((flags_ & ~kErrorMask) | error);
        return FeedResult::ProtocolError;
    }

    // The first two header bytes: everything but the extended length.
    FeedResult check_start() {
        const uint8_t opcode = frame_opcode();
        const bool fin = (header_[0] & 0x80) != 0;
        if (header_[0] & 0x70) return fail(1);
        if (header_[1] & 0x80) return fail(2);  // also before a mask would overflow header_
        if (is_control(opcode)) {
            if (opcode != kClose && opcode != kPing && opcode != kPong) return fail(6);
            if (!fin) return fail(7);
            if ((header_[1] & 0x7F) > kMaxControlPayload) return fail(8);
        } else if (opcode == kContinuation) {
            if (!(flags_ & kInMessage)) return fail(9);
        } else if (opcode == kBinary || opcode == kText) {
            if (flags_ & kInMessage) return fail(10);
        } else {
            return fail(11);
        }
        return FeedResult::Ok;
    }

    // The header is complete: checks the length and enters the payload.
    FeedResult begin_frame() {
        const uint8_t opcode = frame_opcode();
        uint64_t length = header_[1] & 0x7F;
        if (length == 126) {
            length = (uint64_t{header_[2]} << 8) | header_[3];
            if (length < 126) return fail(3);
        } else if (length == 127) {
            length = 0;
            for (int i = 2; i < 10; ++i) length = (length << 8) | header_[i];
            if (length >> 63) return fail(4);
            if (length <= 0xFFFF) return fail(3);
        }
        if (length > UINT32_MAX) return fail(5);
        if (opcode == kBinary || opcode == kText)
            flags_ = static_cast<uint8_t>(kInMessage | (opcode == kText ? kTextMessage : 0));
        remaining_ = static_cast<uint32_t>(length);
        have_ = kInPayload;
        return FeedResult::Ok;
    }

    // A frame without payload: control frames still reach the sink once.
    template <typename Sink>
    bool finish_empty(Sink& sink) {
        const uint8_t opcode = frame_opcode();
        bool go_on = true;
        if (is_control(opcode)) go_on = sink.on_control(opcode, std::span<const uint8_t>(), 0, 0);
        end_frame();
        return go_on;
    }

    void end_frame() {
        if (!is_control(frame_opcode()) && (header_[0] & 0x80)) flags_ = 0;  // the message's last frame
        have_ = 0;
    }

    uint8_t header_[10] = {};  // a server frame's header: 2 + at most 8 (unmasked)
    uint8_t have_ = 0;         // header bytes collected, or kInPayload
    uint8_t flags_ = 0;        // kInMessage, kTextMessage, the error
    uint32_t remaining_ = 0;   // payload bytes left in the current frame
};
static_assert(sizeof(FrameParser) == 16);

// A control frame put together from the pieces FrameParser hands over.
struct ControlAssembler {
    uint8_t length = 0;
    uint8_t bytes[kMaxControlPayload] = {};

    // True when the frame is complete (then bytes[0..length) is its payload).
    bool add(std::span<const uint8_t> chunk, size_t offset, size_t total) {
        if (offset == 0) length = 0;
        const size_t room = kMaxControlPayload - length;
        const size_t take = std::min(room, chunk.size());
        if (take > 0) std::memcpy(bytes + length, chunk.data(), take);
        length = static_cast<uint8_t>(length + take);
        return offset + chunk.size() == total;
    }
    std::span<const uint8_t> payload() const { return {bytes, length}; }
};

// The status code of a close frame's payload; 1005 (none) when it has none.
inline uint16_t close_code(std::span<const uint8_t> payload) {
    return payload.size() >= 2 ? static_cast<uint16_t>((payload[0] << 8) | payload[1]) : 1005;
}

}  // namespace limaoim::bench::ws
