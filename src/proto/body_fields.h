// The machinery both dialects' codecs share (proto/dialect.h): framing, and
// the reader, sizer and writer that walk a packet's fields. Internal to
// src/proto.
//
// A dialect is a Layout: a struct whose static `fields(packet, version,
// visit)` overloads give each packet type's field order, and whose
// `kLastType` is the highest type nibble it knows. BodyCodec<Layout> turns
// that into split/decode/encoded_size/encode, so the LiMaoIM and WKProto
// codecs differ only in their field orders, and a layout's decode,
// encoded_size and encode cannot disagree with each other.
#pragma once

#include <array>
#include <concepts>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "limaoim/proto/codec.h"
#include "limaoim/proto/packet.h"

namespace limaoim::proto::body {

// Largest value a 4-byte varint holds (PROTOCOL.md §3.2).
inline constexpr uint32_t kMaxVarintValue = (1u << 28) - 1;

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
    void operator()(uint64_t& v) { v = take<8>(); }
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
    void operator()(uint64_t) { size_ += 8; }
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
    void operator()(uint64_t v) { put<8>(v); }
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

// Visits `fields` in the order given: a layout's one line per packet.
template <class Visitor, class... Fields>
void in_order(Visitor& visit, Fields&... fields) {
    (visit(fields), ...);
}

// The packets both dialects lay out alike: a Layout's own fields() come
// first, and a packet it leaves out is laid out here.
struct CommonLayout {
    template <PacketOf<RecvackPacket> P, class Visitor>
    static void fields(P& p, uint8_t, Visitor& visit) {
        in_order(visit, p.message_id, p.message_seq);
    }

    template <PacketOf<DisconnectPacket> P, class Visitor>
    static void fields(P& p, uint8_t, Visitor& visit) {
        in_order(visit, p.reason_code, p.reason);
    }
};

template <class Layout, class P, class Visitor>
void visit_fields(P& p, uint8_t version, Visitor& visit) {
    if constexpr (requires { Layout::fields(p, version, visit); }) {
        Layout::fields(p, version, visit);
    } else {
        CommonLayout::fields(p, version, visit);
    }
}

// Whether `Layout` puts packet `P` on the wire (LiMaoIM has no SUB, say).
template <class Layout, class P>
concept HasLayout = requires(const P& p, BodySizer& sizer) { Layout::fields(p, uint8_t{}, sizer); } ||
                    requires(const P& p, BodySizer& sizer) { CommonLayout::fields(p, uint8_t{}, sizer); };

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

// Framing is the same in both dialects; only the highest type nibble differs.
SplitResult split_frame_upto(std::span<const uint8_t> stream, uint32_t max_remaining_length, uint8_t last_type);

template <class Layout>
struct BodyCodec {
    static SplitResult split(std::span<const uint8_t> stream, uint32_t max_remaining_length) {
        return split_frame_upto(stream, max_remaining_length, uint8_t(Layout::kLastType));
    }

    static DecodeError decode(const Frame& frame, uint8_t version, Packet& out) {
        return kDecoders[frame.type_nibble()](frame, version, out);
    }

    static size_t encoded_size(const Packet& packet, uint8_t version) {
        return std::visit([version](const auto& p) { return packet_size(p, version); }, packet);
    }

    static size_t encode(const Packet& packet, uint8_t version, std::span<uint8_t> out) {
        return std::visit([version, out](const auto& p) { return encode_packet(p, version, out); }, packet);
    }

private:
    template <class P>
    static DecodeError decode_as(const Frame& frame, uint8_t version, Packet& out) {
        if constexpr (kIsOneByte<P>) {
            out.emplace<P>();
            return DecodeError::None;
        } else {
            P& packet = out.emplace<P>();
            packet.flags = frame.flags();
            BodyReader reader(frame.body);
            visit_fields<Layout>(packet, version, reader);
            return reader.overrun() ? DecodeError::Truncated : DecodeError::None;
        }
    }

    template <DecodeError error>
    static DecodeError reject(const Frame&, uint8_t, Packet&) {
        return error;
    }

    using Decoder = DecodeError (*)(const Frame&, uint8_t, Packet&);

    template <size_t Nibble>
    static constexpr Decoder decoder_for() {
        if constexpr (Nibble == 0) {
            return reject<DecodeError::ReservedType>;
        } else if constexpr (Nibble > size_t(Layout::kLastType)) {
            return reject<DecodeError::UnknownType>;
        } else {
            return decode_as<std::variant_alternative_t<Nibble - 1, Packet>>;
        }
    }

    template <size_t... Nibbles>
    static constexpr std::array<Decoder, kTypeNibbleCount> decoders(std::index_sequence<Nibbles...>) {
        return {decoder_for<Nibbles>()...};
    }

    static constexpr std::array<Decoder, kTypeNibbleCount> kDecoders =
        decoders(std::make_index_sequence<kTypeNibbleCount>{});

    // Body size of a packet with a body, or 0 when it cannot be put on the
    // wire. No valid body is empty, so 0 is free to mean "refused".
    template <class P>
    static size_t body_size(const P& packet, uint8_t version) {
        BodySizer sizer;
        visit_fields<Layout>(packet, version, sizer);
        const bool fits = sizer.representable() && sizer.size() <= kMaxVarintValue;
        return fits ? sizer.size() : 0;
    }

    template <class P>
    static size_t packet_size(const P& packet, uint8_t version) {
        if constexpr (kIsOneByte<P>) {
            return 1;
        } else if constexpr (!HasLayout<Layout, P>) {
            return 0;
        } else {
            const size_t body = body_size(packet, version);
            return body ? 1 + varint_size(uint32_t(body)) + body : 0;
        }
    }

    template <class P>
    static size_t encode_packet(const P& packet, uint8_t version, std::span<uint8_t> out) {
        if constexpr (kIsOneByte<P>) {
            if (out.empty()) return 0;
            out[0] = uint8_t(type_nibble_of<P>() << 4);
            return 1;
        } else if constexpr (!HasLayout<Layout, P>) {
            return 0;
        } else {
            const size_t body = body_size(packet, version);
            if (body == 0) return 0;
            const size_t total = 1 + varint_size(uint32_t(body)) + body;
            if (out.size() < total) return 0;
            uint8_t* p = out.data();
            *p++ = uint8_t(type_nibble_of<P>() << 4 | (packet.flags & 0x0f));
            p += write_varint(uint32_t(body), p);
            BodyWriter writer(p);
            visit_fields<Layout>(packet, version, writer);
            return total;
        }
    }
};

}  // namespace limaoim::proto::body
