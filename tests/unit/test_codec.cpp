// Framing, decoding and encoding rules of PROTOCOL.md §2-§4 and Q1-Q9 that
// the vectors do not pin down alone: limits, malformed lengths, every type
// nibble, truncation, byte-by-byte reassembly and random round trips.
#include <doctest/doctest.h>

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "limaoim/proto/codec.h"

using namespace limaoim::proto;

namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint32_t kMaxVarintValue = (1u << 28) - 1;
constexpr uint8_t kAllVersions[] = {0, 1, 2, 3, 4, 5, 255};

Bytes encode_to_bytes(const Packet& packet, uint8_t version) {
    Bytes out(encoded_size(packet, version));
    REQUIRE(!out.empty());
    REQUIRE(encode(packet, version, out) == out.size());
    return out;
}

// Header byte, then the remaining length written by the codec.
Bytes header_and_length(uint8_t header, uint32_t remaining) {
    Bytes out(1 + kMaxVarintBytes);
    out[0] = header;
    out.resize(1 + write_varint(remaining, out.data() + 1));
    return out;
}

Frame frame_of(uint8_t header, std::string_view body) {
    return Frame{header, uint32_t(body.size() + 2), body};
}

bool is_fixed_layout(const Packet& packet) {
    return !std::holds_alternative<SendPacket>(packet) && !std::holds_alternative<RecvPacket>(packet);
}

bool has_body(const Packet& packet) {
    return !std::holds_alternative<PingPacket>(packet) && !std::holds_alternative<PongPacket>(packet);
}

// One packet of each type with every field of the newest version set and
// every string non-empty, so each field is on the wire at version 4.
std::vector<Packet> one_of_each_type() {
    return {
        ConnectPacket{.flags = 0x3, .version = 4, .client_key = "key", .device_flag = 1, .device_id = "dev",
                      .client_timestamp = -5, .uid = "alice", .token = "tok"},
        ConnackPacket{.flags = 0x1, .server_key = "skey", .salt = "salt", .time_diff = 77, .reason_code = 1},
        SendPacket{.flags = 0xf, .setting = 0x80, .msg_key = "mk", .client_seq = 9, .client_msg_no = "no",
                   .channel_id = "bob", .channel_type = 1, .payload = "hello"},
        SendackPacket{.flags = 0x2, .client_seq = 9, .message_id = int64_t(1) << 60, .message_seq = 3,
                      .reason_code = 1},
        RecvPacket{.flags = 0x4, .setting = 0x7f, .msg_key = "mk", .message_id = -1, .message_seq = 4,
                   .client_msg_no = "no", .timestamp = -2, .channel_id = "bob", .channel_type = 2,
                   .from_uid = "alice", .payload = "hi"},
        RecvackPacket{.flags = 0x6, .message_id = 42, .message_seq = 43},
        PingPacket{},
        PongPacket{},
        DisconnectPacket{.flags = 0, .reason_code = 0, .reason = "bye"},
    };
}

// Pointers to every string field of a packet (not the payload, which has no
// length prefix).
std::vector<std::string_view*> string_fields(Packet& packet) {
    return std::visit(
        [](auto& p) -> std::vector<std::string_view*> {
            using P = std::decay_t<decltype(p)>;
            if constexpr (std::is_same_v<P, ConnectPacket>) return {&p.client_key, &p.device_id, &p.uid, &p.token};
            if constexpr (std::is_same_v<P, ConnackPacket>) return {&p.server_key, &p.salt};
            if constexpr (std::is_same_v<P, SendPacket>) return {&p.msg_key, &p.client_msg_no, &p.channel_id};
            if constexpr (std::is_same_v<P, RecvPacket>)
                return {&p.msg_key, &p.client_msg_no, &p.channel_id, &p.from_uid};
            if constexpr (std::is_same_v<P, DisconnectPacket>) return {&p.reason};
            return {};
        },
        packet);
}

// Random packets whose fields are exactly those present at their version,
// so encode -> decode must give them back unchanged.
class PacketGenerator {
public:
    explicit PacketGenerator(uint64_t seed) : rng_(seed) {}

    uint8_t version() { return kAllVersions[pick(0, std::size(kAllVersions) - 1)]; }

    Packet packet(int type, uint8_t version) {
        switch (type) {
        case 1: return connect();
        case 2: return connack(version);
        case 3: return send(version);
        case 4: return SendackPacket{flags(), u32(), i64(), u32(), u8()};
        case 5: return recv(version);
        case 6: return RecvackPacket{flags(), i64(), u32()};
        case 7: return PingPacket{};
        case 8: return PongPacket{};
        default: return DisconnectPacket{flags(), u8(), text()};
        }
    }

private:
    uint64_t pick(uint64_t low, uint64_t high) { return std::uniform_int_distribution<uint64_t>(low, high)(rng_); }
    uint8_t u8() { return uint8_t(rng_()); }
    uint8_t flags() { return uint8_t(rng_() & 0x0f); }
    uint32_t u32() { return uint32_t(rng_()); }
    int32_t i32() { return int32_t(uint32_t(rng_())); }
    int64_t i64() { return int64_t(rng_()); }

    // Mostly short strings, now and then empty, now and then at the u16 limit.
    std::string_view text() {
        const uint64_t roll = pick(0, 99);
        const size_t length = roll < 10 ? 0 : roll < 12 ? kMaxStringLength : pick(1, 40);
        std::string& s = strings_.emplace_back(length, '\0');
        for (char& c : s) c = char(rng_());
        if (strings_.size() > 64) strings_.pop_front();
        return s;
    }
    std::string_view text_if(bool present) { return present ? text() : std::string_view(); }

    ConnectPacket connect() {
        ConnectPacket p{.flags = flags(), .version = u8()};
        p.client_key = text_if(has_crypto(p.version));
        p.device_flag = u8();
        p.device_id = text();
        p.client_timestamp = i64();
        p.uid = text();
        p.token = text();
        return p;
    }

    ConnackPacket connack(uint8_t v) {
        ConnackPacket p{.flags = flags()};
        p.server_key = text_if(has_crypto(v));
        p.salt = text_if(has_crypto(v));
        p.time_diff = i64();
        p.reason_code = u8();
        return p;
    }

    SendPacket send(uint8_t v) {
        SendPacket p{.flags = flags()};
        p.setting = has_setting(v) ? u8() : 0;
        p.msg_key = text_if(has_crypto(v));
        p.client_seq = u32();
        p.client_msg_no = text_if(has_client_msg_no(v));
        p.channel_id = text();
        p.channel_type = u8();
        p.payload = text();
        return p;
    }

    RecvPacket recv(uint8_t v) {
        RecvPacket p{.flags = flags()};
        p.setting = has_setting(v) ? u8() : 0;
        p.msg_key = text_if(has_crypto(v));
        p.message_id = i64();
        p.message_seq = u32();
        p.client_msg_no = text_if(has_client_msg_no(v));
        p.timestamp = i32();
        p.channel_id = text();
        p.channel_type = u8();
        p.from_uid = text();
        p.payload = text();
        return p;
    }

    std::mt19937_64 rng_;
    std::deque<std::string> strings_;  // what the generated views point at
};

// A receiver that is handed a stream in pieces, as recv() would: it keeps the
// unparsed tail, and re-encodes each decoded packet so the result outlives
// its buffer.
class Receiver {
public:
    explicit Receiver(uint8_t version) : version_(version) {}

    void feed(std::span<const uint8_t> bytes) {
        pending_.insert(pending_.end(), bytes.begin(), bytes.end());
        size_t offset = 0;
        for (;;) {
            const SplitResult split = split_frame(std::span(pending_).subspan(offset));
            REQUIRE(split.status != SplitStatus::Error);
            if (split.status == SplitStatus::Incomplete) {
                // Once known, the size a reassembly buffer needs never changes.
                if (split.needed) CHECK((announced_ == 0 || announced_ == split.needed));
                announced_ = split.needed;
                break;
            }
            if (announced_) CHECK(split.frame.size == announced_);
            announced_ = 0;
            Packet packet;
            REQUIRE(decode(split.frame, version_, packet) == DecodeError::None);
            packets_.push_back(encode_to_bytes(packet, version_));
            offset += split.frame.size;
        }
        pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(offset));
    }

    const std::vector<Bytes>& packets() const { return packets_; }
    bool idle() const { return pending_.empty(); }

private:
    uint8_t version_;
    Bytes pending_;
    uint32_t announced_ = 0;
    std::vector<Bytes> packets_;
};

}  // namespace

TEST_CASE("codec: remaining-length varint sizes and bytes at every boundary") {
    struct Case {
        uint32_t value;
        Bytes bytes;
    };
    const Case cases[] = {
        {0, {0x00}},
        {127, {0x7f}},
        {128, {0x80, 0x01}},
        {16383, {0xff, 0x7f}},
        {16384, {0x80, 0x80, 0x01}},
        {2097151, {0xff, 0xff, 0x7f}},
        {2097152, {0x80, 0x80, 0x80, 0x01}},
        {kMaxVarintValue, {0xff, 0xff, 0xff, 0x7f}},
    };
    for (const Case& c : cases) {
        INFO("value " << c.value);
        uint8_t out[kMaxVarintBytes] = {};
        CHECK(varint_size(c.value) == c.bytes.size());
        REQUIRE(write_varint(c.value, out) == c.bytes.size());
        CHECK(Bytes(out, out + c.bytes.size()) == c.bytes);

        Bytes wire = header_and_length(0x30, c.value);
        const SplitResult split = split_frame(wire, kMaxVarintValue);
        CHECK(split.needed == (c.value ? wire.size() + c.value : 0));
    }
    CHECK(varint_size(kMaxVarintValue + 1) == 0);
    uint8_t untouched[kMaxVarintBytes] = {0xaa, 0xaa, 0xaa, 0xaa};
    CHECK(write_varint(kMaxVarintValue + 1, untouched) == 0);
    CHECK(untouched[0] == 0xaa);
}

TEST_CASE("codec: a non-minimal remaining length is accepted") {
    const Bytes wire = {0x90, 0x83, 0x80, 0x80, 0x00, 0x07, 0x00, 0x00};  // DISCONNECT, length 3 in 4 bytes
    const SplitResult split = split_frame(wire);
    REQUIRE(split.status == SplitStatus::Complete);
    CHECK(split.frame.size == wire.size());
    Packet packet;
    REQUIRE(decode(split.frame, 4, packet) == DecodeError::None);
    CHECK(std::get<DisconnectPacket>(packet).reason_code == 7);
}

TEST_CASE("codec: 1 MiB is allowed and one byte more is refused with only the length field present") {
    const Bytes at_limit = header_and_length(0x30, kDefaultMaxRemainingLength);
    CHECK(at_limit == Bytes{0x30, 0x80, 0x80, 0x40});
    SplitResult split = split_frame(at_limit);
    CHECK(split.status == SplitStatus::Incomplete);
    CHECK(split.needed == 4 + kDefaultMaxRemainingLength);

    split = split_frame(header_and_length(0x30, kDefaultMaxRemainingLength + 1));
    CHECK(split.status == SplitStatus::Error);
    CHECK(split.error == DecodeError::TooLarge);

    // Until the length field is complete its value is unknown: only incomplete.
    split = split_frame(Bytes{0x30, 0x81, 0x80});
    CHECK(split.status == SplitStatus::Incomplete);
    CHECK(split.needed == 0);
}

TEST_CASE("codec: the remaining-length limit is configurable") {
    for (uint32_t limit : {0u, 1u, 100u, 16384u, kMaxVarintValue}) {
        INFO("limit " << limit);
        SplitResult split = split_frame(header_and_length(0x50, limit), limit);
        CHECK(split.status == (limit ? SplitStatus::Incomplete : SplitStatus::Complete));
        if (limit < kMaxVarintValue) {
            split = split_frame(header_and_length(0x50, limit + 1), limit);
            CHECK(split.status == SplitStatus::Error);
            CHECK(split.error == DecodeError::TooLarge);
        }
    }
    // A whole packet over the limit is refused as well, not only a partial one.
    Bytes whole = header_and_length(0x90, 3);
    whole.insert(whole.end(), {0x00, 0x00, 0x00});
    CHECK(split_frame(whole, 3).status == SplitStatus::Complete);
    CHECK(split_frame(whole, 2).error == DecodeError::TooLarge);
}

TEST_CASE("codec: a 4th length byte with its continuation bit set is malformed") {
    for (uint8_t fourth : {0x80, 0x81, 0xff}) {
        const Bytes wire = {0x30, 0xff, 0xff, 0xff, fourth};
        const SplitResult split = split_frame(wire, kMaxVarintValue);
        CHECK(split.status == SplitStatus::Error);
        CHECK(split.error == DecodeError::MalformedLength);
    }
    const Bytes five_bytes = {0x30, 0x80, 0x80, 0x80, 0x80, 0x00};
    CHECK(split_frame(five_bytes, kMaxVarintValue).error == DecodeError::MalformedLength);
    const Bytes final_fourth = {0x30, 0x80, 0x80, 0x80, 0x00};  // 0 in four bytes
    const SplitResult split = split_frame(final_fourth);
    REQUIRE(split.status == SplitStatus::Complete);
    CHECK(split.frame.size == 5);
    CHECK(split.frame.body.empty());
}

TEST_CASE("codec: every type nibble with every flag nibble, from byte 0 alone") {
    for (int nibble = 0; nibble < kTypeNibbleCount; ++nibble) {
        for (int flags = 0; flags < 16; ++flags) {
            const uint8_t header = uint8_t(nibble << 4 | flags);
            INFO("header " << int(header));
            const Bytes alone = {header};
            const SplitResult split = split_frame(alone);
            Packet packet;
            const DecodeError decoded = decode(frame_of(header, {}), 4, packet);
            if (nibble == 0) {
                CHECK(split.status == SplitStatus::Error);
                CHECK(split.error == DecodeError::ReservedType);
                CHECK(decoded == DecodeError::ReservedType);
            } else if (nibble >= 10) {
                CHECK(split.status == SplitStatus::Error);
                CHECK(split.error == DecodeError::UnknownType);
                CHECK(decoded == DecodeError::UnknownType);
            } else if (nibble == 7 || nibble == 8) {
                REQUIRE(split.status == SplitStatus::Complete);
                CHECK(split.frame.size == 1);
                CHECK(split.frame.header == header);
                CHECK(decoded == DecodeError::None);
                CHECK(int(type_of(packet)) == nibble);
            } else {
                CHECK(split.status == SplitStatus::Incomplete);
                CHECK(split.needed == 0);
                CHECK(decoded == DecodeError::Truncated);  // Q2: an empty body holds no field
            }
        }
    }
    CHECK(split_frame(Bytes{}).status == SplitStatus::Incomplete);
}

TEST_CASE("codec: PING and PONG are one byte, the next packet starts right after") {
    const Bytes stream = {0x7f, 0x8a, 0x70};
    size_t offset = 0;
    for (PacketType expected : {PacketType::Ping, PacketType::Pong, PacketType::Ping}) {
        const SplitResult split = split_frame(std::span(stream).subspan(offset));
        REQUIRE(split.status == SplitStatus::Complete);
        CHECK(split.frame.size == 1);
        Packet packet;
        REQUIRE(decode(split.frame, 1, packet) == DecodeError::None);
        CHECK(type_of(packet) == expected);
        offset += 1;
    }
    for (uint8_t version : kAllVersions) {
        CHECK(encode_to_bytes(PingPacket{}, version) == Bytes{0x70});
        CHECK(encode_to_bytes(PongPacket{}, version) == Bytes{0x80});
    }
}

TEST_CASE("codec: Q2 a zero remaining length is written 00 and a zero-length body is truncated") {
    uint8_t out[kMaxVarintBytes] = {0xaa};
    REQUIRE(write_varint(0, out) == 1);
    CHECK(out[0] == 0x00);
    for (uint8_t nibble : {1, 2, 3, 4, 5, 6, 9}) {
        const Bytes wire = {uint8_t(nibble << 4), 0x00};
        const SplitResult split = split_frame(wire);
        REQUIRE(split.status == SplitStatus::Complete);
        CHECK(split.frame.size == 2);
        Packet packet;
        CHECK(decode(split.frame, 4, packet) == DecodeError::Truncated);
    }
}

TEST_CASE("codec: a body cut anywhere inside its fields is truncated, at every version") {
    for (uint8_t version : kAllVersions) {
        for (const Packet& packet : one_of_each_type()) {
            if (!has_body(packet)) continue;
            INFO("type " << to_string(type_of(packet)) << " version " << int(version));
            const Bytes wire = encode_to_bytes(packet, version);
            const SplitResult split = split_frame(wire);
            REQUIRE(split.status == SplitStatus::Complete);
            const std::string_view body = split.frame.body;
            const std::string_view payload = is_fixed_layout(packet)
                ? std::string_view()
                : std::visit([](const auto& p) -> std::string_view {
                      if constexpr (requires { p.payload; }) return p.payload;
                      return {};
                  }, packet);
            const size_t fields_end = body.size() - payload.size();
            for (size_t cut = 0; cut < body.size(); ++cut) {
                Packet decoded;
                const DecodeError error = decode(frame_of(split.frame.header, body.substr(0, cut)), version, decoded);
                CHECK(error == (cut < fields_end ? DecodeError::Truncated : DecodeError::None));
            }
        }
    }
}

TEST_CASE("codec: a string length pointing past the body is truncated") {
    // DISCONNECT: reason_code 0, reason length 5, 4 bytes present.
    const std::string body = std::string("\x00\x00\x05", 3) + "abcd";
    Packet packet;
    CHECK(decode(frame_of(0x90, body), 4, packet) == DecodeError::Truncated);
    const std::string complete = body + "e";
    CHECK(decode(frame_of(0x90, complete), 4, packet) == DecodeError::None);
    CHECK(std::get<DisconnectPacket>(packet).reason == "abcde");
    // A length of 0xffff is read unsigned (Q4): 65535 bytes, not -1.
    const std::string longest = std::string("\x00\xff\xff", 3) + std::string(65535, 'z');
    REQUIRE(decode(frame_of(0x90, longest), 4, packet) == DecodeError::None);
    CHECK(std::get<DisconnectPacket>(packet).reason.size() == 65535);
    CHECK(decode(frame_of(0x90, longest.substr(0, longest.size() - 1)), 4, packet) == DecodeError::Truncated);
}

TEST_CASE("codec: bytes after the last field of a fixed-layout packet are ignored, SEND/RECV keep them as payload") {
    for (uint8_t version : kAllVersions) {
        for (const Packet& packet : one_of_each_type()) {
            if (!has_body(packet)) continue;
            INFO("type " << to_string(type_of(packet)) << " version " << int(version));
            const Bytes wire = encode_to_bytes(packet, version);
            const SplitResult split = split_frame(wire);
            REQUIRE(split.status == SplitStatus::Complete);
            Packet clean;
            REQUIRE(decode(split.frame, version, clean) == DecodeError::None);
            const std::string longer = std::string(split.frame.body) + "\xbe\xef";
            Packet padded;
            REQUIRE(decode(frame_of(split.frame.header, longer), version, padded) == DecodeError::None);
            if (is_fixed_layout(packet)) {
                CHECK(padded == clean);
            } else {
                CHECK(padded != clean);
                const std::string_view payload = std::visit([](const auto& p) -> std::string_view {
                    if constexpr (requires { p.payload; }) return p.payload;
                    return {};
                }, padded);
                CHECK(payload.substr(payload.size() - 2) == "\xbe\xef");
            }
        }
    }
}

TEST_CASE("codec: decoded strings are views into the frame, flags and setting come through unchanged") {
    const RecvPacket sent{.flags = 0x0f, .setting = 0x7f, .msg_key = "key", .message_id = 1, .message_seq = 2,
                          .client_msg_no = "no", .timestamp = 3, .channel_id = "chan", .channel_type = 4,
                          .from_uid = "from", .payload = "payload"};
    const Bytes wire = encode_to_bytes(sent, 4);
    CHECK(wire[0] == 0x5f);
    const SplitResult split = split_frame(wire);
    Packet packet;
    REQUIRE(decode(split.frame, 4, packet) == DecodeError::None);
    const RecvPacket& received = std::get<RecvPacket>(packet);
    CHECK(received == sent);
    const auto* first = reinterpret_cast<const char*>(wire.data());
    for (std::string_view view : {received.msg_key, received.client_msg_no, received.channel_id,
                                  received.from_uid, received.payload}) {
        CHECK(view.data() > first);
        CHECK(view.data() + view.size() <= first + wire.size());
    }
    // Only the low nibble of `flags` reaches byte 0.
    SendackPacket ack{.flags = 0xf3};
    CHECK(encode_to_bytes(ack, 4)[0] == 0x43);
}

TEST_CASE("codec: encode refuses a string over 65535 bytes in every string field") {
    const std::string longest(kMaxStringLength, 's');
    const std::string too_long(kMaxStringLength + 1, 's');
    for (const Packet& original : one_of_each_type()) {
        Packet packet = original;
        const size_t field_count = string_fields(packet).size();
        for (size_t field = 0; field < field_count; ++field) {
            INFO("type " << to_string(type_of(packet)) << " string #" << field);
            packet = original;
            *string_fields(packet)[field] = longest;
            const size_t size = encoded_size(packet, 4);
            CHECK(size > kMaxStringLength);
            Bytes out(size, 0xaa);
            CHECK(encode(packet, 4, out) == size);

            *string_fields(packet)[field] = too_long;
            CHECK(encoded_size(packet, 4) == 0);
            std::fill(out.begin(), out.end(), 0xaa);
            CHECK(encode(packet, 4, out) == 0);
            CHECK(out[0] == 0xaa);
        }
    }
}

TEST_CASE("codec: a body over 268435455 bytes cannot be encoded") {
    // Reserved, never touched: encoded_size() only looks at lengths.
    const size_t span = size_t(kMaxVarintValue) + 1;
    void* area = mmap(nullptr, span, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(area != MAP_FAILED);
    SendPacket send{.channel_id = "c"};
    const size_t fields = encoded_size(send, 1) - 2;  // header + 1-byte length
    send.payload = std::string_view(static_cast<const char*>(area), kMaxVarintValue - fields);
    CHECK(encoded_size(send, 1) == 1 + 4 + size_t(kMaxVarintValue));
    send.payload = std::string_view(static_cast<const char*>(area), kMaxVarintValue - fields + 1);
    CHECK(encoded_size(send, 1) == 0);
    munmap(area, span);
}

TEST_CASE("codec: encode into a buffer one byte short writes nothing and returns 0") {
    for (uint8_t version : kAllVersions) {
        for (const Packet& packet : one_of_each_type()) {
            INFO("type " << to_string(type_of(packet)) << " version " << int(version));
            const size_t size = encoded_size(packet, version);
            REQUIRE(size > 0);
            Bytes out(size, 0xaa);
            CHECK(encode(packet, version, std::span(out).first(size - 1)) == 0);
            CHECK(std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0xaa; }));
            CHECK(encode(packet, version, out) == size);
        }
    }
}

TEST_CASE("codec: a stream split at every byte boundary yields the packets of one whole read") {
    PacketGenerator generator(0x11a0);
    for (uint8_t version : {1, 2, 3, 4}) {
        INFO("version " << int(version));
        Bytes stream;
        std::vector<Bytes> sent;
        for (int i = 0; i < 60; ++i) {
            Packet packet = generator.packet(1 + i % 9, version);
            if (encoded_size(packet, version) > 200) continue;  // keep the quadratic loop below small
            sent.push_back(encode_to_bytes(packet, version));
            stream.insert(stream.end(), sent.back().begin(), sent.back().end());
        }
        REQUIRE(sent.size() > 30);

        Receiver whole(version);
        whole.feed(stream);
        CHECK(whole.packets() == sent);
        CHECK(whole.idle());

        for (size_t cut = 0; cut <= stream.size(); ++cut) {
            Receiver two_reads(version);
            two_reads.feed(std::span(stream).first(cut));
            two_reads.feed(std::span(stream).subspan(cut));
            CHECK(two_reads.packets() == sent);
            CHECK(two_reads.idle());
        }

        Receiver byte_by_byte(version);
        for (uint8_t byte : stream) byte_by_byte.feed(std::span(&byte, 1));
        CHECK(byte_by_byte.packets() == sent);
        CHECK(byte_by_byte.idle());
    }
}

TEST_CASE("codec: random packets of every type and version survive encode -> split -> decode") {
    const uint64_t seed = std::random_device{}();
    INFO("seed " << seed);
    PacketGenerator generator(seed);
    Bytes out(6 * (kMaxStringLength + 2) + 64);  // RECV: four strings and a payload
    int round_trips[kTypeNibbleCount] = {};
    for (int i = 0; i < 4000; ++i) {
        const uint8_t version = generator.version();
        const Packet packet = generator.packet(1 + i % 9, version);
        const size_t size = encode(packet, version, out);
        REQUIRE(size == encoded_size(packet, version));
        REQUIRE(size > 0);

        const SplitResult split = split_frame(std::span(out).first(size));
        REQUIRE(split.status == SplitStatus::Complete);
        REQUIRE(split.frame.size == size);
        Packet decoded;
        REQUIRE(decode(split.frame, version, decoded) == DecodeError::None);
        CHECK(decoded == packet);
        ++round_trips[int(type_of(decoded))];
    }
    for (int type = 1; type <= 9; ++type) CHECK(round_trips[type] > 400);
}

TEST_CASE("codec: names of packet types and decode errors") {
    CHECK(std::string_view(to_string(PacketType::Connect)) == "CONNECT");
    CHECK(std::string_view(to_string(PacketType::Disconnect)) == "DISCONNECT");
    CHECK(std::string_view(to_string(PacketType(0))) == "RESERVED");
    CHECK(std::string_view(to_string(PacketType(15))) == "UNKNOWN");
    CHECK(std::string_view(to_string(DecodeError::TooLarge)) == "too_large");
    CHECK(std::string_view(to_string(DecodeError::Truncated)) == "truncated");
}
