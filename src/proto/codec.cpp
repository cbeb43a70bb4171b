// Framing, decoding and encoding of LiMaoIM packets (PROTOCOL.md §2-§4, Q1-Q9),
// and the framing both dialects share (body_fields.h).
//
// Each packet type's field order is written once, in a `fields()` template
// that a reader, a sizer and a writer all walk, so decode, encoded_size and
// encode cannot disagree about the layout of a version.
#include "limaoim/proto/codec.h"

#include "body_fields.h"

namespace limaoim::proto {

namespace {

using body::in_order;
using body::PacketOf;

// LiMaoIM's field orders (PROTOCOL.md §4): one `fields()` per packet with a
// body. SUB, SUBACK and EVENT have none: a LiMaoIM client is never sent one,
// and their type nibbles are refused.
struct LiMaoIMLayout {
    static constexpr PacketType kLastType = PacketType::Disconnect;

    // CONNECT carries its own version: the connection's is not known yet.
    template <PacketOf<ConnectPacket> P, class Visitor>
    static void fields(P& p, uint8_t, Visitor& visit) {
        visit(p.version);
        if (has_crypto(p.version)) visit(p.client_key);
        in_order(visit, p.device_flag, p.device_id, p.client_timestamp, p.uid, p.token);
    }

    template <PacketOf<ConnackPacket> P, class Visitor>
    static void fields(P& p, uint8_t version, Visitor& visit) {
        if (has_crypto(version)) in_order(visit, p.server_key, p.salt);
        in_order(visit, p.time_diff, p.reason_code);
    }

    template <PacketOf<SendPacket> P, class Visitor>
    static void fields(P& p, uint8_t version, Visitor& visit) {
        if (has_setting(version)) visit(p.setting);
        if (has_crypto(version)) visit(p.msg_key);
        visit(p.client_seq);
        if (has_client_msg_no(version)) visit(p.client_msg_no);
        in_order(visit, p.channel_id, p.channel_type);
        visit.rest(p.payload);
    }

    template <PacketOf<SendackPacket> P, class Visitor>
    static void fields(P& p, uint8_t, Visitor& visit) {
        in_order(visit, p.client_seq, p.message_id, p.message_seq, p.reason_code);
    }

    template <PacketOf<RecvPacket> P, class Visitor>
    static void fields(P& p, uint8_t version, Visitor& visit) {
        if (has_setting(version)) visit(p.setting);
        if (has_crypto(version)) visit(p.msg_key);
        in_order(visit, p.message_id, p.message_seq);
        if (has_client_msg_no(version)) visit(p.client_msg_no);
        in_order(visit, p.timestamp, p.channel_id, p.channel_type, p.from_uid);
        visit.rest(p.payload);
    }
};

using LiMaoIMCodec = body::BodyCodec<LiMaoIMLayout>;

// What byte 0 alone says about a packet: an error for an invalid type nibble.
constexpr DecodeError header_error(uint8_t header, uint8_t last_type) {
    const uint8_t nibble = header >> 4;
    if (nibble == 0) return DecodeError::ReservedType;
    return nibble > last_type ? DecodeError::UnknownType : DecodeError::None;
}

constexpr bool is_one_byte(uint8_t header) {
    const uint8_t nibble = header >> 4;
    return nibble == uint8_t(PacketType::Ping) || nibble == uint8_t(PacketType::Pong);
}

SplitResult split_error(DecodeError error) {
    SplitResult result;
    result.status = SplitStatus::Error;
    result.error = error;
    return result;
}

SplitResult split_complete(uint8_t header, uint32_t size, std::string_view body) {
    SplitResult result;
    result.status = SplitStatus::Complete;
    result.frame = Frame{header, size, body};
    return result;
}

}  // namespace

const char* to_string(PacketType type) {
    static constexpr const char* kNames[kTypeNibbleCount] = {
        "RESERVED", "CONNECT", "CONNACK",    "SEND",    "SENDACK", "RECV",    "RECVACK", "PING",
        "PONG",     "DISCONNECT", "SUB",  "SUBACK",  "EVENT",   "UNKNOWN", "UNKNOWN", "UNKNOWN",
    };
    const auto index = uint8_t(type);
    return index < kTypeNibbleCount ? kNames[index] : "UNKNOWN";
}

const char* to_string(DecodeError error) {
    // Same spelling as stats::kDecodeErrorNames, so logs and metrics agree.
    static constexpr const char* kNames[kDecodeErrorCount] = {
        "none", "reserved_type", "unknown_type", "malformed_length", "too_large", "truncated",
    };
    const auto index = uint8_t(error);
    return index < kDecodeErrorCount ? kNames[index] : "unknown";
}

size_t varint_size(uint32_t value) {
    if (value > body::kMaxVarintValue) return 0;
    return 1 + (value >= 1u << 7) + (value >= 1u << 14) + (value >= 1u << 21);
}

size_t write_varint(uint32_t value, uint8_t* out) {
    const size_t size = varint_size(value);
    for (size_t i = 0; i + 1 < size; ++i) {
        out[i] = uint8_t(value | 0x80);
        value >>= 7;
    }
    if (size) out[size - 1] = uint8_t(value);
    return size;
}

SplitResult body::split_frame_upto(std::span<const uint8_t> stream, uint32_t max_remaining_length, uint8_t last_type) {
    if (stream.empty()) return {};
    const uint8_t header = stream[0];
    if (DecodeError error = header_error(header, last_type); error != DecodeError::None) return split_error(error);
    if (is_one_byte(header)) return split_complete(header, 1, {});

    uint32_t remaining = 0;
    size_t length_bytes = 0;
    for (;;) {
        if (1 + length_bytes >= stream.size()) return {};
        const uint8_t byte = stream[1 + length_bytes];
        remaining |= uint32_t(byte & 0x7f) << (7 * length_bytes);
        ++length_bytes;
        if (!(byte & 0x80)) break;
        if (length_bytes == kMaxVarintBytes) return split_error(DecodeError::MalformedLength);
    }
    // Refused before any body byte is buffered (PROTOCOL.md Q3).
    if (remaining > max_remaining_length) return split_error(DecodeError::TooLarge);

    const uint32_t size = uint32_t(1 + length_bytes) + remaining;
    if (stream.size() < size) {
        SplitResult result;
        result.needed = size;
        return result;
    }
    const auto* body = reinterpret_cast<const char*>(stream.data() + 1 + length_bytes);
    return split_complete(header, size, std::string_view(body, remaining));
}

SplitResult split_frame(std::span<const uint8_t> stream, uint32_t max_remaining_length) {
    return LiMaoIMCodec::split(stream, max_remaining_length);
}

DecodeError decode(const Frame& frame, uint8_t version, Packet& out) { return LiMaoIMCodec::decode(frame, version, out); }

size_t encoded_size(const Packet& packet, uint8_t version) { return LiMaoIMCodec::encoded_size(packet, version); }

size_t encode(const Packet& packet, uint8_t version, std::span<uint8_t> out) {
    return LiMaoIMCodec::encode(packet, version, out);
}

}  // namespace limaoim::proto
