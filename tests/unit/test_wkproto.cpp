// The WKProto dialect (docs/WKPROTO.md): every packet round-trips at every
// version, each version/setting/flag condition puts exactly its field on the
// wire, truncated bodies are refused, and the dialect's session rules.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "limaoim/proto/dialect.h"

using namespace limaoim::proto;

namespace {

const Dialect& wk = kWuKongIMDialect;

std::vector<uint8_t> encode_wk(const Packet& packet, uint8_t version) {
    std::vector<uint8_t> wire(wk.encoded_size(packet, version));
    REQUIRE(!wire.empty());
    REQUIRE(wk.encode(packet, version, wire) == wire.size());
    return wire;
}

Frame split_one(const std::vector<uint8_t>& wire) {
    const SplitResult split = wk.split(wire, kDefaultMaxRemainingLength);
    REQUIRE(split.status == SplitStatus::Complete);
    REQUIRE(split.frame.size == wire.size());
    return split.frame;
}

// Decoded strings are views into `wire`: keep it while the packet is used.
Packet round_trip(const Packet& packet, uint8_t version, std::vector<uint8_t>& wire) {
    wire = encode_wk(packet, version);
    Packet decoded;
    REQUIRE(wk.decode(split_one(wire), version, decoded) == DecodeError::None);
    return decoded;
}

// The body bytes of `packet` at `version` (after byte 0 and a 1-byte length).
std::string body_of(const Packet& packet, uint8_t version) {
    const std::vector<uint8_t> wire = encode_wk(packet, version);
    REQUIRE(wire.size() < 130);
    return std::string(wire.begin() + 2, wire.end());
}

std::string bytes(std::initializer_list<int> values) {
    std::string out;
    for (int v : values) out += char(v);
    return out;
}

std::string str(std::string_view s) { return bytes({0, int(s.size())}) + std::string(s); }

SendPacket full_send() {
    SendPacket p;
    p.flags = flag::kRedDot;
    p.setting = wk_setting::kStream | wk_setting::kTopic | wk_setting::kReceipt;
    p.msg_key = "0123456789abcdef0123456789abcdef";
    p.client_seq = 7;
    p.client_msg_no = "cmn";
    p.channel_id = "bob";
    p.channel_type = 1;
    p.payload = "payload";
    p.expire = 3600;
    p.stream_no = "s-1";
    p.topic = "news";
    return p;
}

RecvPacket full_recv() {
    RecvPacket p;
    p.flags = flag::kSyncOnce;
    p.setting = wk_setting::kStream | wk_setting::kTopic;
    p.msg_key = "0123456789abcdef0123456789abcdef";
    p.message_id = 1234567890123456789;
    p.message_seq = 42;
    p.client_msg_no = "cmn";
    p.timestamp = 1700000000;
    p.channel_id = "alice";
    p.channel_type = 1;
    p.from_uid = "alice";
    p.payload = "payload";
    p.expire = 60;
    p.stream_no = "s-1";
    p.stream_id = 0x0102030405060708;
    p.stream_flag = 2;
    p.topic = "news";
    return p;
}

ConnackPacket full_connack() {
    ConnackPacket p;
    p.flags = kConnackHasServerVersion;
    p.server_key = "server-key";
    p.salt = "a1B2c3D4e5F6g7H8";
    p.time_diff = -1500;
    p.reason_code = uint8_t(ReasonCode::Success);
    p.server_version = 4;
    p.node_id = 0xfedcba9876543210;
    return p;
}

// Every packet the dialect carries, with every field set.
std::vector<Packet> every_packet() {
    return {
        ConnectPacket{0, 3, "client-key", 1, "dev-1", 1700000000123, "alice", "tok"},
        full_connack(),
        full_send(),
        SendackPacket{0, 7, 1234567890123456789, 42, uint8_t(ReasonCode::Success)},
        full_recv(),
        RecvackPacket{flag::kNoPersist, 1234567890123456789, 42},
        PingPacket{},
        PongPacket{},
        DisconnectPacket{0, uint8_t(ReasonCode::ConnectKick), "logged in elsewhere"},
        SubPacket{0, 0, "sub-1", "live-1", 9, 1, "{\"k\":1}"},
        SubackPacket{0, "sub-1", "live-1", 9, 1, uint8_t(ReasonCode::Success)},
        EventPacket{0, "ev-1", "stream.delta", 1700000000123, "data"},
    };
}

// What decoding `packet` at `version` gives back: the fields the version or
// the setting keeps off the wire read as zero.
Packet expected_at(Packet packet, uint8_t version) {
    const bool stream = version >= 2 && version <= 4;
    if (auto* p = std::get_if<ConnackPacket>(&packet)) {
        if (version < 4) p->node_id = 0;
    } else if (auto* p = std::get_if<SendPacket>(&packet)) {
        if (version < 3) p->expire = 0;
        if (!stream) p->stream_no = {};
    } else if (auto* p = std::get_if<RecvPacket>(&packet)) {
        if (version < 3) p->expire = 0;
        if (!stream) {
            p->stream_no = {};
            p->stream_id = 0;
            p->stream_flag = 0;
        }
    }
    return packet;
}

}  // namespace

TEST_CASE("wkproto: every packet round-trips at every version 1-5") {
    for (uint8_t version = 1; version <= 5; ++version) {
        for (const Packet& packet : every_packet()) {
            INFO("version " << int(version) << " " << std::string(to_string(type_of(packet))));
            std::vector<uint8_t> wire;
            CHECK(round_trip(packet, version, wire) == expected_at(packet, version));
        }
    }
}

TEST_CASE("wkproto: CONNECT's fields are in WKProto's order, client_key at every version") {
    const ConnectPacket connect{0, 1, "ck", 2, "d", 0x0102030405060708, "u", "t"};
    const std::string expected =
        bytes({1, 2}) + str("d") + str("u") + str("t") + bytes({1, 2, 3, 4, 5, 6, 7, 8}) + str("ck");
    for (uint8_t version = 1; version <= 5; ++version) CHECK(body_of(connect, version) == expected);
}

TEST_CASE("wkproto: CONNACK's server version only with header flag bit 0, its node id only from version 4") {
    ConnackPacket connack = full_connack();
    connack.server_key = "k";
    connack.salt = "s";
    connack.time_diff = 0x0102030405060708;
    const std::string common = bytes({1, 2, 3, 4, 5, 6, 7, 8, 1}) + str("k") + str("s");
    const std::string node_id = bytes({0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10});

    CHECK(encode_wk(connack, 4)[0] == 0x21);
    CHECK(body_of(connack, 3) == bytes({4}) + common);
    CHECK(body_of(connack, 4) == bytes({4}) + common + node_id);
    CHECK(body_of(connack, 5) == bytes({4}) + common + node_id);

    connack.flags = 0;
    CHECK(encode_wk(connack, 2)[0] == 0x20);
    CHECK(body_of(connack, 2) == common);
    CHECK(body_of(connack, 4) == common + node_id);
    std::vector<uint8_t> wire;
    CHECK(std::get<ConnackPacket>(round_trip(connack, 4, wire)).server_version == 0);
}

TEST_CASE("wkproto: SEND: stream_no v2-4 with the stream bit, expire from v3, topic with the topic bit") {
    SendPacket send = full_send();
    send.msg_key = "mk";
    send.payload = "P";
    const uint8_t setting = send.setting;
    const std::string head = bytes({setting, 0, 0, 0, 7}) + str("cmn");
    const std::string channel = str("bob") + bytes({1});
    const std::string expire = bytes({0, 0, 0x0e, 0x10});
    const std::string tail = str("mk") + str("news") + "P";

    CHECK(body_of(send, 1) == head + channel + tail);
    CHECK(body_of(send, 2) == head + str("s-1") + channel + tail);
    CHECK(body_of(send, 3) == head + str("s-1") + channel + expire + tail);
    CHECK(body_of(send, 4) == head + str("s-1") + channel + expire + tail);
    CHECK(body_of(send, 5) == head + channel + expire + tail);

    send.setting = 0;
    CHECK(body_of(send, 3) == bytes({0, 0, 0, 0, 7}) + str("cmn") + channel + expire + str("mk") + "P");
}

TEST_CASE("wkproto: RECV: stream flag, no and id v2-4 with the stream bit, expire from v3, topic with the topic bit") {
    RecvPacket recv = full_recv();
    recv.msg_key = "mk";
    recv.from_uid = "a";
    recv.channel_id = "c";
    recv.client_msg_no = "n";
    recv.message_id = 0x0102030405060708;
    recv.message_seq = 9;
    recv.timestamp = 0x0a0b0c0d;
    recv.payload = "P";
    const uint8_t setting = recv.setting;
    const std::string head = bytes({setting}) + str("mk") + str("a") + str("c") + bytes({1});
    const std::string expire = bytes({0, 0, 0, 60});
    const std::string stream = bytes({2}) + str("s-1") + bytes({1, 2, 3, 4, 5, 6, 7, 8});
    const std::string ids = bytes({1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 9, 0x0a, 0x0b, 0x0c, 0x0d});
    const std::string tail = str("news") + "P";

    CHECK(body_of(recv, 1) == head + str("n") + ids + tail);
    CHECK(body_of(recv, 2) == head + str("n") + stream + ids + tail);
    CHECK(body_of(recv, 3) == head + expire + str("n") + stream + ids + tail);
    CHECK(body_of(recv, 4) == head + expire + str("n") + stream + ids + tail);
    CHECK(body_of(recv, 5) == head + expire + str("n") + ids + tail);

    recv.setting = 0;
    CHECK(body_of(recv, 4) == bytes({0}) + str("mk") + str("a") + str("c") + bytes({1}) + expire + str("n") + ids + "P");
}

TEST_CASE("wkproto: SENDACK puts the message id first; SUB, SUBACK and EVENT in the Go codec's order") {
    CHECK(body_of(SendackPacket{0, 7, 0x0102030405060708, 9, 1}, 5) ==
          bytes({1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 7, 0, 0, 0, 9, 1}));
    CHECK(body_of(SubPacket{0, 0x80, "n", "c", 2, 1, "p"}, 5) == bytes({0x80}) + str("n") + str("c") + bytes({2, 1}) + str("p"));
    CHECK(body_of(SubackPacket{0, "n", "c", 2, 1, 22}, 5) == str("n") + str("c") + bytes({2, 1, 22}));
    CHECK(body_of(EventPacket{0, "i", "t", 0x0102030405060708, "D"}, 5) ==
          str("i") + str("t") + bytes({1, 2, 3, 4, 5, 6, 7, 8}) + "D");
}

TEST_CASE("wkproto: a body cut anywhere before its last fixed field is refused as truncated") {
    for (uint8_t version = 1; version <= 5; ++version) {
        for (const Packet& packet : every_packet()) {
            if (wk.encoded_size(packet, version) == 1) continue;  // PING, PONG
            INFO("version " << int(version) << " " << std::string(to_string(type_of(packet))));
            const std::vector<uint8_t> wire = encode_wk(packet, version);
            const Frame whole = split_one(wire);
            // Payload-like tails (SEND, RECV, EVENT) may lose bytes and still
            // decode; everything before them may not.
            std::string_view rest;
            std::visit([&](const auto& p) {
                if constexpr (requires { p.payload; }) rest = p.payload;
                if constexpr (requires { p.data; }) rest = p.data;
            }, packet);
            for (size_t cut = 0; cut < whole.body.size() - rest.size(); ++cut) {
                Frame truncated = whole;
                truncated.body = whole.body.substr(0, cut);
                Packet out;
                CHECK(wk.decode(truncated, version, out) == DecodeError::Truncated);
            }
        }
    }
}

TEST_CASE("wkproto: type nibbles 10-12 frame and decode in WKProto, 13-15 are unknown; LiMaoIM still refuses 10-12") {
    for (int nibble = 10; nibble <= 15; ++nibble) {
        INFO("nibble " << nibble);
        const std::vector<uint8_t> wire = {uint8_t(nibble << 4), 0};
        const SplitResult in_wk = wk.split(wire, kDefaultMaxRemainingLength);
        const SplitResult in_limaoim = kLiMaoIMDialect.split(wire, kDefaultMaxRemainingLength);
        CHECK(in_limaoim.status == SplitStatus::Error);
        CHECK(in_limaoim.error == DecodeError::UnknownType);
        if (nibble <= 12) {
            REQUIRE(in_wk.status == SplitStatus::Complete);
            Packet out;
            CHECK(wk.decode(in_wk.frame, 5, out) == DecodeError::Truncated);  // an empty body
            CHECK(kLiMaoIMDialect.decode(in_wk.frame, 4, out) == DecodeError::UnknownType);
        } else {
            CHECK(in_wk.status == SplitStatus::Error);
            CHECK(in_wk.error == DecodeError::UnknownType);
        }
    }
    const std::vector<uint8_t> reserved = {0x00, 0};
    CHECK(wk.split(reserved, kDefaultMaxRemainingLength).error == DecodeError::ReservedType);
    // And LiMaoIM cannot encode what it has no layout for.
    CHECK(kLiMaoIMDialect.encoded_size(SubPacket{}, 4) == 0);
}

TEST_CASE("wkproto: the dialect's session rules") {
    CHECK(&dialect(DialectId::WuKongIM) == &kWuKongIMDialect);
    CHECK(&dialect(DialectId::LiMaoIM) == &kLiMaoIMDialect);
    CHECK(wk.latest_version == 5);
    CHECK(std::string_view(wk.name) == "wukongim");
    // The client's version, or the server's latest for 0 and anything newer.
    for (uint8_t v = 1; v <= 5; ++v) CHECK(wk.session_version(v) == v);
    CHECK(wk.session_version(0) == 5);
    CHECK(wk.session_version(6) == 5);
    CHECK(wk.session_version(255) == 5);
    for (uint8_t v = 0; v <= 6; ++v) CHECK(wk.has_crypto(v));
    CHECK(wk.payload_encrypted(0));
    CHECK(wk.payload_encrypted(uint8_t(~wk_setting::kNoEncrypt)));
    CHECK_FALSE(wk.payload_encrypted(wk_setting::kNoEncrypt));
    // LiMaoIM: the client's version, crypto from 3, always encrypted.
    CHECK(kLiMaoIMDialect.session_version(2) == 2);
    CHECK_FALSE(kLiMaoIMDialect.has_crypto(2));
    CHECK(kLiMaoIMDialect.payload_encrypted(wk_setting::kNoEncrypt));
}
