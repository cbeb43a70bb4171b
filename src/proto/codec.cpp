// Framing, decoding and encoding of LiMaoIM packets (PROTOCOL.md §2-§4, Q1-Q9).
//
// Each packet type's field order is written once, in a `fields()` template
// that a reader, a sizer and a writer all walk, so decode, encoded_size and
// encode cannot disagree about the layout of a version.
#include "limaoim/proto/codec.h"

#include <concepts>
#include <cstring>
#include <type_traits>
#include <variant>

namespace limaoim::proto {

namespace {

// Largest value a 4-byte varint holds (PROTOCOL.md §3.2).
constexpr uint32_t kMaxVarintValue = (1u << 28) - 1;

constexpr uint8_t kPingByte = uint8_t(PacketType::Ping) << 4;
constexpr uint8_t kPongByte = uint8_t(PacketType::Pong) << 4;

template <size_t N>
uint64_t load_be(const uint8_t* p) {
    uint64_t value = 0;
    for (size_t i = 0; i < N; ++i) value = value << 8 | p[i];
    return value;
}

template <size_t N>
void store_be(uint64_t value, uint8_t* p) {
    for (size_t i = 0; i < N; ++i) p[i] = uint8_t(value >> (8 * (N - 1 - i)));
}

// Reads fields off a body. A read past the end marks the reader overrun and
// pins it at the end, so every later read fails too and decode() checks
// once after the last field instead of after each one.
class BodyReader {
public:
    explicit BodyReader(std::string_view body)
        : cur_(reinterpret_cast<const uint8_t*>(body.data())), end_(cur_ + body.size()) {}

    bool overrun() const { return overrun_; }

    void operator()(uint8_t& v) { v = uint8_t(take<1>()); }
    void operator()(uint32_t& v) { v = uint32_t(take<4>()); }
    void operator()(int32_t& v) { v = int32_t(uint32_t(take<4>())); }
    void operator()(int64_t& v) { v = int64_t(take<8>()); }
    void operator()(std::string_view& v) {
        const size_t length = take<2>();
        v = view(has(length) ? length : fail());
    }
    void rest(std::string_view& v) { v = view(size_t(end_ - cur_)); }

private:
    bool has(size_t n) const { return size_t(end_ - cur_) >= n; }

    size_t fail() {
        overrun_ = true;
        cur_ = end_;
        return 0;
    }

    template <size_t N>
    uint64_t take() {
        if (!has(N)) return fail();
        const uint64_t value = load_be<N>(cur_);
        cur_ += N;
        return value;
    }

    std::string_view view(size_t n) {
        std::string_view v(reinterpret_cast<const char*>(cur_), n);
        cur_ += n;
        return v;
    }

    const uint8_t* cur_;
    const uint8_t* end_;
    bool overrun_ = false;
};

// Counts body bytes; notes a string too long for its u16 length prefix.
class BodySizer {
public:
    size_t size() const { return size_; }
    bool representable() const { return representable_; }

    void operator()(uint8_t) { size_ += 1; }
    void operator()(uint32_t) { size_ += 4; }
    void operator()(int32_t) { size_ += 4; }
    void operator()(int64_t) { size_ += 8; }
    void operator()(std::string_view v) {
        representable_ &= v.size() <= kMaxStringLength;
        size_ += 2 + v.size();
    }
    void rest(std::string_view v) { size_ += v.size(); }

private:
    size_t size_ = 0;
    bool representable_ = true;
};

// Writes fields into a buffer BodySizer has already measured.
class BodyWriter {
public:
    explicit BodyWriter(uint8_t* out) : cur_(out) {}

    void operator()(uint8_t v) { *cur_++ = v; }
    void operator()(uint32_t v) { put<4>(v); }
    void operator()(int32_t v) { put<4>(uint32_t(v)); }
    void operator()(int64_t v) { put<8>(uint64_t(v)); }
    void operator()(std::string_view v) {
        put<2>(v.size());
        rest(v);
    }
    void rest(std::string_view v) {
        if (!v.empty()) std::memcpy(cur_, v.data(), v.size());
        cur_ += v.size();
    }

private:
    template <size_t N>
    void put(uint64_t v) {
        store_be<N>(v, cur_);
        cur_ += N;
    }

    uint8_t* cur_;
};

// `P` is the packet struct itself when decoding, a const one when encoding.
template <class P, class T>
concept PacketOf = std::same_as<std::remove_const_t<P>, T>;

template <PacketOf<ConnectPacket> P, class Visitor>
void fields(P& p, uint8_t /*connection version: CONNECT carries its own*/, Visitor& visit) {
    visit(p.version);
    if (has_crypto(p.version)) visit(p.client_key);
    visit(p.device_flag);
    visit(p.device_id);
    visit(p.client_timestamp);
    visit(p.uid);
    visit(p.token);
}

template <PacketOf<ConnackPacket> P, class Visitor>
void fields(P& p, uint8_t version, Visitor& visit) {
    if (has_crypto(version)) {
        visit(p.server_key);
        visit(p.salt);
    }
    visit(p.time_diff);
    visit(p.reason_code);
}

template <PacketOf<SendPacket> P, class Visitor>
void fields(P& p, uint8_t version, Visitor& visit) {
    if (has_setting(version)) visit(p.setting);
    if (has_crypto(version)) visit(p.msg_key);
    visit(p.client_seq);
    if (has_client_msg_no(version)) visit(p.client_msg_no);
    visit(p.channel_id);
    visit(p.channel_type);
    visit.rest(p.payload);
}

template <PacketOf<SendackPacket> P, class Visitor>
void fields(P& p, uint8_t, Visitor& visit) {
    visit(p.client_seq);
    visit(p.message_id);
    visit(p.message_seq);
    visit(p.reason_code);
}

template <PacketOf<RecvPacket> P, class Visitor>
void fields(P& p, uint8_t version, Visitor& visit) {
    if (has_setting(version)) visit(p.setting);
    if (has_crypto(version)) visit(p.msg_key);
    visit(p.message_id);
    visit(p.message_seq);
    if (has_client_msg_no(version)) visit(p.client_msg_no);
    visit(p.timestamp);
    visit(p.channel_id);
    visit(p.channel_type);
    visit(p.from_uid);
    visit.rest(p.payload);
}

template <PacketOf<RecvackPacket> P, class Visitor>
void fields(P& p, uint8_t, Visitor& visit) {
    visit(p.message_id);
    visit(p.message_seq);
}

template <PacketOf<DisconnectPacket> P, class Visitor>
void fields(P& p, uint8_t, Visitor& visit) {
    visit(p.reason_code);
    visit(p.reason);
}

// A packet only WKProto has (SUB, SUBACK, EVENT) has no LiMaoIM layout: it
// cannot be encoded for a LiMaoIM client, and its type nibble is refused.
template <class P>
concept HasLayout = requires(const P& p, BodySizer& sizer) { fields(p, uint8_t{}, sizer); };

template <class P>
constexpr bool kIsOneByte = std::is_same_v<P, PingPacket> || std::is_same_v<P, PongPacket>;

// Packet's alternative index + 1 is the type nibble (packet.h).
template <class P, size_t I = 0>
constexpr uint8_t type_nibble_of() {
    if constexpr (std::is_same_v<std::variant_alternative_t<I, Packet>, P>) {
        return uint8_t(I + 1);
    } else {
        return type_nibble_of<P, I + 1>();
    }
}

template <class P>
DecodeError decode_as(const Frame& frame, uint8_t version, Packet& out) {
    if constexpr (kIsOneByte<P>) {
        out.emplace<P>();
        return DecodeError::None;
    } else {
        P& packet = out.emplace<P>();
        packet.flags = frame.flags();
        BodyReader reader(frame.body);
        fields(packet, version, reader);
        return reader.overrun() ? DecodeError::Truncated : DecodeError::None;
    }
}

template <DecodeError error>
DecodeError reject(const Frame&, uint8_t, Packet&) {
    return error;
}

using Decoder = DecodeError (*)(const Frame&, uint8_t, Packet&);
constexpr Decoder kDecoders[kTypeNibbleCount] = {
    reject<DecodeError::ReservedType>,  decode_as<ConnectPacket>,          decode_as<ConnackPacket>,
    decode_as<SendPacket>,              decode_as<SendackPacket>,          decode_as<RecvPacket>,
    decode_as<RecvackPacket>,           decode_as<PingPacket>,             decode_as<PongPacket>,
    decode_as<DisconnectPacket>,        reject<DecodeError::UnknownType>,  reject<DecodeError::UnknownType>,
    reject<DecodeError::UnknownType>,   reject<DecodeError::UnknownType>,  reject<DecodeError::UnknownType>,
    reject<DecodeError::UnknownType>,
};

// What byte 0 alone says about a packet: an error for an invalid type nibble.
constexpr DecodeError header_error(uint8_t header) {
    const uint8_t nibble = header >> 4;
    if (nibble == 0) return DecodeError::ReservedType;
    return nibble > uint8_t(PacketType::Disconnect) ? DecodeError::UnknownType : DecodeError::None;
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

// Body size of a packet with a body, or 0 when it cannot be put on the wire.
// No valid body is empty, so 0 is free to mean "refused".
template <class P>
size_t body_size(const P& packet, uint8_t version) {
    BodySizer sizer;
    fields(packet, version, sizer);
    const bool fits = sizer.representable() && sizer.size() <= kMaxVarintValue;
    return fits ? sizer.size() : 0;
}

template <class P>
size_t packet_size(const P& packet, uint8_t version) {
    if constexpr (!kIsOneByte<P> && !HasLayout<P>) {
        return 0;
    } else if constexpr (kIsOneByte<P>) {
        return 1;
    } else {
        const size_t body = body_size(packet, version);
        return body ? 1 + varint_size(uint32_t(body)) + body : 0;
    }
}

template <class P>
size_t encode_packet(const P& packet, uint8_t version, std::span<uint8_t> out) {
    if constexpr (!kIsOneByte<P> && !HasLayout<P>) {
        return 0;
    } else if constexpr (kIsOneByte<P>) {
        if (out.empty()) return 0;
        out[0] = std::is_same_v<P, PingPacket> ? kPingByte : kPongByte;
        return 1;
    } else {
        const size_t body = body_size(packet, version);
        if (body == 0) return 0;
        const size_t total = 1 + varint_size(uint32_t(body)) + body;
        if (out.size() < total) return 0;
        uint8_t* p = out.data();
        *p++ = uint8_t(type_nibble_of<P>() << 4 | (packet.flags & 0x0f));
        p += write_varint(uint32_t(body), p);
        BodyWriter writer(p);
        fields(packet, version, writer);
        return total;
    }
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
    if (value > kMaxVarintValue) return 0;
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

SplitResult split_frame(std::span<const uint8_t> stream, uint32_t max_remaining_length) {
    if (stream.empty()) return {};
    const uint8_t header = stream[0];
    if (DecodeError error = header_error(header); error != DecodeError::None) return split_error(error);
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

DecodeError decode(const Frame& frame, uint8_t version, Packet& out) {
    return kDecoders[frame.type_nibble()](frame, version, out);
}

size_t encoded_size(const Packet& packet, uint8_t version) {
    return std::visit([version](const auto& p) { return packet_size(p, version); }, packet);
}

size_t encode(const Packet& packet, uint8_t version, std::span<uint8_t> out) {
    return std::visit([version, out](const auto& p) { return encode_packet(p, version, out); }, packet);
}

}  // namespace limaoim::proto
