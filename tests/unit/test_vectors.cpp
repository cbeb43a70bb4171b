// The codecs against their vectors: LiMaoIM's packets.json and
// edge_cases.json (tests/vectors, produced by the independent Python
// implementation and cross-checked with the original Go codec), and WKProto's
// wkproto/*.json (produced by WuKongIM's own JavaScript SDK).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "limaoim/proto/codec.h"
#include "limaoim/proto/crypto.h"
#include "limaoim/proto/dialect.h"
#include "vectors.h"

using namespace limaoim::proto;
using limaoim::testing::load_vectors;
using nlohmann::json;

namespace {

// Vectors in every array-valued section: what the checks below must reach.
size_t vectors_in(const json& document) {
    size_t count = 0;
    for (const auto& [section, value] : document.items())
        if (value.is_array()) count += value.size();
    return count;
}

std::string from_hex(const std::string& hex) {
    REQUIRE(hex.size() % 2 == 0);
    std::string bytes(hex.size() / 2, '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    return bytes;
}

std::string to_hex(std::span<const uint8_t> bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string hex;
    for (uint8_t b : bytes) {
        hex += kDigits[b >> 4];
        hex += kDigits[b & 0x0f];
    }
    return hex;
}

std::span<const uint8_t> as_bytes(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

uint8_t flags_of(const json& flags) {
    return uint8_t((flags.at("dup").get<bool>() ? flag::kDup : 0) |
                   (flags.at("sync_once").get<bool>() ? flag::kSyncOnce : 0) |
                   (flags.at("red_dot").get<bool>() ? flag::kRedDot : 0) |
                   (flags.at("no_persist").get<bool>() ? flag::kNoPersist : 0));
}

// Each packet's fields under their vector names. The payload is named
// payload_hex: the vectors give it as hex.
template <class V>
void named_fields(ConnectPacket& p, V& v) {
    v("version", p.version);
    v("client_key", p.client_key);
    v("device_flag", p.device_flag);
    v("device_id", p.device_id);
    v("client_timestamp", p.client_timestamp);
    v("uid", p.uid);
    v("token", p.token);
}
template <class V>
void named_fields(ConnackPacket& p, V& v) {
    v("server_key", p.server_key);
    v("salt", p.salt);
    v("time_diff", p.time_diff);
    v("reason_code", p.reason_code);
    v("server_version", p.server_version);
    v("node_id", p.node_id);
}
template <class V>
void named_fields(SendPacket& p, V& v) {
    v("setting", p.setting);
    v("msg_key", p.msg_key);
    v("client_seq", p.client_seq);
    v("client_msg_no", p.client_msg_no);
    v("channel_id", p.channel_id);
    v("channel_type", p.channel_type);
    v("payload_hex", p.payload);
    v("expire", p.expire);
    v("stream_no", p.stream_no);
    v("topic", p.topic);
}
template <class V>
void named_fields(SendackPacket& p, V& v) {
    v("client_seq", p.client_seq);
    v("message_id", p.message_id);
    v("message_seq", p.message_seq);
    v("reason_code", p.reason_code);
}
template <class V>
void named_fields(RecvPacket& p, V& v) {
    v("setting", p.setting);
    v("msg_key", p.msg_key);
    v("message_id", p.message_id);
    v("message_seq", p.message_seq);
    v("client_msg_no", p.client_msg_no);
    v("timestamp", p.timestamp);
    v("channel_id", p.channel_id);
    v("channel_type", p.channel_type);
    v("from_uid", p.from_uid);
    v("payload_hex", p.payload);
    v("expire", p.expire);
    v("stream_no", p.stream_no);
    v("stream_id", p.stream_id);
    v("stream_flag", p.stream_flag);
    v("topic", p.topic);
}
template <class V>
void named_fields(RecvackPacket& p, V& v) {
    v("message_id", p.message_id);
    v("message_seq", p.message_seq);
}
template <class V>
void named_fields(DisconnectPacket& p, V& v) {
    v("reason_code", p.reason_code);
    v("reason", p.reason);
}
template <class V>
void named_fields(SubPacket& p, V& v) {
    v("setting", p.setting);
    v("sub_no", p.sub_no);
    v("channel_id", p.channel_id);
    v("channel_type", p.channel_type);
    v("action", p.action);
    v("param", p.param);
}
template <class V>
void named_fields(SubackPacket& p, V& v) {
    v("sub_no", p.sub_no);
    v("channel_id", p.channel_id);
    v("channel_type", p.channel_type);
    v("action", p.action);
    v("reason_code", p.reason_code);
}
template <class V>
void named_fields(EventPacket& p, V& v) {
    v("id", p.id);
    v("type", p.type);
    v("timestamp", p.timestamp);
    v("data_hex", p.data);
}
template <class V>
void named_fields(PingPacket&, V&) {}
template <class V>
void named_fields(PongPacket&, V&) {}

template <class P>
constexpr bool kHasFlags = requires(P p) { p.flags; };

// Payload and EVENT data are given as hex.
bool is_hex_field(std::string_view name) { return name.ends_with("_hex"); }

// Builds a packet from a vector's `fields`. Strings are views into the json
// document; the payload's bytes go to `payload_storage`.
struct FieldLoader {
    const json& fields;
    std::string& payload_storage;
    size_t keys_used = 0;

    template <class T>
    void operator()(const char* name, T& member) {
        if (!fields.contains(name)) return;
        ++keys_used;
        member = fields.at(name).get<T>();
    }
    void operator()(const char* name, std::string_view& member) {
        if (!fields.contains(name)) return;
        ++keys_used;
        if (is_hex_field(name)) {
            payload_storage = from_hex(fields.at(name).get_ref<const std::string&>());
            member = payload_storage;
        } else {
            member = fields.at(name).get_ref<const std::string&>();
        }
    }
};

// Checks a decoded packet against `fields`; a field the vector leaves out
// must not be on the wire, so it decodes to its default.
struct FieldChecker {
    const json& fields;
    size_t keys_used = 0;

    template <class T>
    void operator()(const char* name, const T& member) {
        INFO("field " << name);
        if (!fields.contains(name)) {
            CHECK(member == T{});
            return;
        }
        ++keys_used;
        CHECK(member == fields.at(name).get<T>());
    }
    void operator()(const char* name, const std::string_view& member) {
        INFO("field " << name);
        if (!fields.contains(name)) {
            CHECK(member.empty());
            return;
        }
        ++keys_used;
        const std::string& text = fields.at(name).get_ref<const std::string&>();
        if (is_hex_field(name)) {
            CHECK(to_hex(as_bytes(std::string(member))) == text);
        } else {
            CHECK(member == text);
        }
    }
};

size_t extra_keys(const json& fields) {
    return fields.contains("flags") + fields.contains("payload_text");
}

template <class P>
Packet packet_from_fields(const json& fields, std::string& payload_storage) {
    P packet;
    FieldLoader loader{fields, payload_storage};
    named_fields(packet, loader);
    if constexpr (kHasFlags<P>) packet.flags = flags_of(fields.at("flags"));
    REQUIRE_MESSAGE(loader.keys_used + extra_keys(fields) == fields.size(), "a field the test does not know");
    return packet;
}

Packet expected_packet(const std::string& type, const json& fields, std::string& payload_storage) {
    if (type == "CONNECT") return packet_from_fields<ConnectPacket>(fields, payload_storage);
    if (type == "CONNACK") return packet_from_fields<ConnackPacket>(fields, payload_storage);
    if (type == "SEND") return packet_from_fields<SendPacket>(fields, payload_storage);
    if (type == "SENDACK") return packet_from_fields<SendackPacket>(fields, payload_storage);
    if (type == "RECV") return packet_from_fields<RecvPacket>(fields, payload_storage);
    if (type == "RECVACK") return packet_from_fields<RecvackPacket>(fields, payload_storage);
    if (type == "PING") return packet_from_fields<PingPacket>(fields, payload_storage);
    if (type == "PONG") return packet_from_fields<PongPacket>(fields, payload_storage);
    if (type == "DISCONNECT") return packet_from_fields<DisconnectPacket>(fields, payload_storage);
    if (type == "SUB") return packet_from_fields<SubPacket>(fields, payload_storage);
    if (type == "SUBACK") return packet_from_fields<SubackPacket>(fields, payload_storage);
    if (type == "EVENT") return packet_from_fields<EventPacket>(fields, payload_storage);
    FAIL("unknown packet type " << type);
    return {};
}

void check_decoded_fields(Packet& decoded, const json& fields) {
    std::visit(
        [&](auto& packet) {
            using P = std::decay_t<decltype(packet)>;
            FieldChecker checker{fields};
            named_fields(packet, checker);
            if constexpr (kHasFlags<P>) CHECK(packet.flags == flags_of(fields.at("flags")));
            if (fields.contains("payload_text")) {
                if constexpr (requires { packet.payload; })
                    CHECK(packet.payload == fields.at("payload_text").get_ref<const std::string&>());
            }
            CHECK(checker.keys_used + extra_keys(fields) == fields.size());
        },
        decoded);
}

// One packet vector: split and decode its hex with `dialect`, compare every
// field, encode its fields back to the same hex.
void check_packet_vector(const json& vector, const Dialect& dialect = kLiMaoIMDialect) {
    const std::string& name = vector.at("name").get_ref<const std::string&>();
    const std::string& type = vector.at("type").get_ref<const std::string&>();
    const auto version = vector.at("version").get<uint8_t>();
    const json& fields = vector.at("fields");
    const std::string& hex = vector.at("hex").get_ref<const std::string&>();
    INFO("vector: " << name);

    const std::string wire = from_hex(hex);
    const SplitResult split = dialect.split(as_bytes(wire), kDefaultMaxRemainingLength);
    REQUIRE(split.status == SplitStatus::Complete);
    CHECK(split.frame.size == wire.size());
    const json& remaining_length = vector.at("remaining_length");
    if (remaining_length.is_null()) {
        CHECK(wire.size() == 1);  // PING/PONG: no length field at all (Q1)
        CHECK(split.frame.body.empty());
    } else {
        CHECK(split.frame.body.size() == remaining_length.get<uint32_t>());
    }

    Packet decoded;
    REQUIRE(dialect.decode(split.frame, version, decoded) == DecodeError::None);
    CHECK(to_string(type_of(decoded)) == type);
    check_decoded_fields(decoded, fields);

    std::string payload_storage;
    const Packet expected = expected_packet(type, fields, payload_storage);
    CHECK(decoded == expected);
    std::vector<uint8_t> out(wire.size() + 16);
    CHECK(dialect.encoded_size(expected, version) == wire.size());
    const size_t written = dialect.encode(expected, version, out);
    CHECK(to_hex(std::span(out.data(), written)) == hex);
}

void check_varint_vector(const json& vector) {
    const auto value = vector.at("value").get<uint32_t>();
    const std::string& hex = vector.at("hex").get_ref<const std::string&>();
    INFO("varint " << value);
    uint8_t out[kMaxVarintBytes + 1] = {};
    CHECK(varint_size(value) == hex.size() / 2);
    CHECK(to_hex(std::span(out, write_varint(value, out))) == hex);

    // With no limit in the way, the framer reads the value back from a
    // header byte and the length field alone.
    const std::string wire = from_hex("30" + hex);
    const SplitResult split = split_frame(as_bytes(wire), (1u << 28) - 1);
    const uint32_t size = uint32_t(wire.size()) + value;
    if (value == 0) {
        REQUIRE(split.status == SplitStatus::Complete);
        CHECK(split.frame.size == size);
    } else {
        CHECK(split.status == SplitStatus::Incomplete);
        CHECK(split.needed == size);
    }
}

// Splits a whole buffer into frames and decodes each; the error, if any,
// from either step.
struct StreamOutcome {
    std::vector<std::string> types;
    size_t consumed = 0;
    bool incomplete = false;
    bool error = false;
};

StreamOutcome read_stream(const std::string& wire, uint8_t version) {
    StreamOutcome outcome;
    const std::span<const uint8_t> bytes = as_bytes(wire);
    while (outcome.consumed < bytes.size()) {
        const SplitResult split = split_frame(bytes.subspan(outcome.consumed));
        if (split.status != SplitStatus::Complete) {
            outcome.incomplete = split.status == SplitStatus::Incomplete;
            outcome.error = split.status == SplitStatus::Error;
            return outcome;
        }
        Packet packet;
        if (decode(split.frame, version, packet) != DecodeError::None) {
            outcome.error = true;
            return outcome;
        }
        outcome.types.emplace_back(to_string(type_of(packet)));
        outcome.consumed += split.frame.size;
    }
    return outcome;
}

void check_decode_case(const json& c) {
    const std::string& hex = c.at("hex").get_ref<const std::string&>();
    const std::string& expect = c.at("expect").get_ref<const std::string&>();
    INFO("decode case " << hex << " expecting " << expect);
    const StreamOutcome outcome = read_stream(from_hex(hex), c.at("version").get<uint8_t>());
    if (expect == "packet") {
        REQUIRE(outcome.types.size() == 1);
        CHECK(outcome.types[0] == c.at("type").get_ref<const std::string&>());
        CHECK(outcome.consumed == c.at("consumed").get<size_t>());
        CHECK(outcome.consumed == hex.size() / 2);
    } else if (expect == "packets") {
        CHECK(outcome.types == c.at("types").get<std::vector<std::string>>());
        CHECK(outcome.consumed == hex.size() / 2);
    } else if (expect == "incomplete") {
        CHECK(outcome.incomplete);
        CHECK(outcome.types.empty());
    } else if (expect == "error") {
        CHECK(outcome.error);
        CHECK(outcome.types.empty());
    } else {
        FAIL("unknown expectation " << expect);
    }
    CHECK(outcome.incomplete + outcome.error <= 1);
}

}  // namespace

TEST_CASE("vectors: every packet of packets.json decodes field by field and re-encodes to its hex") {
    const json document = load_vectors("packets.json");
    size_t checked = 0;
    for (const json& vector : document.at("vectors")) {
        check_packet_vector(vector);
        ++checked;
    }
    CHECK(checked == vectors_in(document));
    CHECK(checked >= 38);
}

TEST_CASE("vectors: every section of edge_cases.json") {
    const json document = load_vectors("edge_cases.json");
    size_t checked = 0;
    for (const json& vector : document.at("remaining_length_varints")) {
        check_varint_vector(vector);
        ++checked;
    }
    for (const char* section : {"remaining_length_boundaries", "empty_strings", "max_size_strings"}) {
        for (const json& vector : document.at(section)) {
            check_packet_vector(vector);
            ++checked;
        }
    }
    for (const json& c : document.at("decode_cases")) {
        check_decode_case(c);
        ++checked;
    }
    CHECK(checked == vectors_in(document));
}

TEST_CASE("vectors: a CONNECT decodes the same whatever the connection's version") {
    const json document = load_vectors("packets.json");
    size_t connects = 0;
    for (const json& vector : document.at("vectors")) {
        if (vector.at("type") != "CONNECT") continue;
        ++connects;
        INFO("vector: " << vector.at("name").get<std::string>());
        const std::string wire = from_hex(vector.at("hex").get<std::string>());
        const SplitResult split = split_frame(as_bytes(wire));
        REQUIRE(split.status == SplitStatus::Complete);
        Packet reference;
        REQUIRE(decode(split.frame, vector.at("version").get<uint8_t>(), reference) == DecodeError::None);
        for (int connection_version : {0, 1, 2, 3, 4, 5, 255}) {
            Packet packet;
            REQUIRE(decode(split.frame, uint8_t(connection_version), packet) == DecodeError::None);
            CHECK(packet == reference);
        }
    }
    CHECK(connects == 4);
}

// wkproto/*.json: WKProto vectors made by WuKongIM's own JavaScript SDK
// (clients/wksdk/tools/make-vectors.mjs), run through the WuKongIM dialect.
namespace {

json load_wkproto_vectors(const char* file) {
    json document = load_vectors(std::string("wkproto/") + file);
    REQUIRE(document.at("dialect") == "wukongim");
    return document;
}

crypto::SessionKey session_of(const json& document) {
    const std::string& key = document.at("session").at("aes_key").get_ref<const std::string&>();
    const std::string& iv = document.at("session").at("aes_iv").get_ref<const std::string&>();
    REQUIRE(key.size() == 16);
    REQUIRE(iv.size() == 16);
    crypto::SessionKey session;
    std::copy(key.begin(), key.end(), session.key.begin());
    std::copy(iv.begin(), iv.end(), session.iv.begin());
    return session;
}

Packet decode_wkproto_vector(const json& vector, const std::string& wire) {
    const SplitResult split = kWuKongIMDialect.split(as_bytes(wire), kDefaultMaxRemainingLength);
    REQUIRE(split.status == SplitStatus::Complete);
    Packet packet;
    REQUIRE(kWuKongIMDialect.decode(split.frame, vector.at("version").get<uint8_t>(), packet) == DecodeError::None);
    return packet;
}

}  // namespace

TEST_CASE("vectors: every packet of wkproto/sdk.json decodes field by field and re-encodes to its hex in WKProto") {
    const json document = load_wkproto_vectors("sdk.json");
    size_t checked = 0;
    for (const json& vector : document.at("vectors")) {
        check_packet_vector(vector, kWuKongIMDialect);
        ++checked;
    }
    CHECK(checked == vectors_in(document));
    CHECK(checked >= 13);
}

TEST_CASE("vectors: the SDK's sealed SENDs verify and open with our crypto, and its RECVs carry our msg_key") {
    const json document = load_wkproto_vectors("sdk.json");
    const crypto::SessionKey session = session_of(document);
    crypto::Cipher cipher;
    size_t sends = 0;
    size_t recvs = 0;
    for (const json& vector : document.at("vectors")) {
        if (!vector.contains("plain_payload_text")) continue;
        INFO("vector: " << vector.at("name").get<std::string>());
        const std::string wire = from_hex(vector.at("hex").get_ref<const std::string&>());
        const Packet packet = decode_wkproto_vector(vector, wire);
        std::string_view payload;
        if (const auto* send = std::get_if<SendPacket>(&packet)) {
            CHECK(kWuKongIMDialect.payload_encrypted(send->setting));
            CHECK(cipher.verify_send(session, *send));
            payload = send->payload;
            ++sends;
        } else {
            const auto& recv = std::get<RecvPacket>(packet);
            CHECK(kWuKongIMDialect.payload_encrypted(recv.setting));
            char msg_key[32];
            cipher.recv_msg_key(session, recv, msg_key);
            CHECK(std::string_view(msg_key, 32) == recv.msg_key);
            payload = recv.payload;
            ++recvs;
        }
        std::string plain;
        REQUIRE(cipher.open_payload(session, payload, plain));
        CHECK(plain == vector.at("plain_payload_text").get_ref<const std::string&>());
    }
    CHECK(sends == 2);
    CHECK(recvs == 2);
}
