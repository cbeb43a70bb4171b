// ChatClient's SEND building and RECV checking against vectors/crypto.json:
// the same bytes as the reference SEND, and the reference RECV decrypts and
// verifies (a tampered one throws). No server needed.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "chat_client.h"
#include "vectors.h"

using namespace limaoim;
using namespace limaoim::testing;

namespace {
proto::crypto::SessionKey vector_key(const nlohmann::json& v) {
    proto::crypto::Key32 secret{};
    auto bytes = from_hex(v["x25519"]["shared_secret_hex"].get<std::string>());
    std::copy(bytes.begin(), bytes.end(), secret.begin());
    return proto::crypto::derive_session_key(secret, v["iv"]["salt_ascii"].get<std::string>());
}

Received frame(const std::string& hex, uint8_t version) {
    Received r;
    r.bytes = from_hex(hex);
    auto split = proto::split_frame(r.bytes);
    REQUIRE(split.status == proto::SplitStatus::Complete);
    REQUIRE(proto::decode(split.frame, version, r.packet) == proto::DecodeError::None);
    return r;
}
}  // namespace

TEST_CASE("ChatClient builds the reference SEND and checks the reference RECV") {
    const auto v = load_vectors("crypto.json");
    const auto key = vector_key(v);
    ChatClient c;
    c.adopt_session("alice", key, 4);

    const auto& send = v["send"];
    const auto& f = send["fields"];
    // Header flags of the vector: RedDot only.
    auto bytes = c.build_send(f["channel_id"], f["channel_type"], send["plaintext_payload_text"], f["client_seq"],
                              f["client_msg_no"], proto::flag::kRedDot, f["setting"]);
    CHECK(bytes == from_hex(send["packet_v4_hex"]));

    c.adopt_session("alice", key, 3);
    bytes = c.build_send(f["channel_id"], f["channel_type"], send["plaintext_payload_text"], f["client_seq"],
                         f["client_msg_no"], proto::flag::kRedDot, 0);
    CHECK(bytes == from_hex(send["packet_v3_hex"]));

    c.adopt_session("alice", key, 4);
    const auto& recv = v["recv"];
    RecvMessage m = c.decode_recv(frame(recv["packet_v4_hex"], 4));
    CHECK(m.payload == recv["plaintext_payload_text"].get<std::string>());
    CHECK(m.message_id == recv["fields"]["message_id"].get<int64_t>());
    CHECK(m.from_uid == "bob");
    CHECK(m.flags == proto::flag::kRedDot);
    CHECK(m.raw == from_hex(recv["packet_v4_hex"]));

    // One flipped character of the MsgKey must be caught.
    std::string hex = recv["packet_v4_hex"];
    size_t at = hex.find("3430653230");  // "40e20", the start of the MsgKey
    REQUIRE(at != std::string::npos);
    hex.replace(at, 2, "35");
    CHECK_THROWS_AS(c.decode_recv(frame(hex, 4)), RecvCheckError);

    // v2: plaintext both ways, no MsgKey.
    c.adopt_session("alice", {}, 2);
    bytes = c.build_send("bob", 1, "hi", 1, "n1");
    std::string send_hex;
    for (uint8_t b : bytes) send_hex += "0123456789abcdef"[b >> 4], send_hex += "0123456789abcdef"[b & 15];
    Received r = frame(send_hex, 2);
    const auto& s = std::get<proto::SendPacket>(r.packet);
    CHECK(s.payload == "hi");
    CHECK(s.client_msg_no == "n1");
    CHECK(s.msg_key.empty());
}
