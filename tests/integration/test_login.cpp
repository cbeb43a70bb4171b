// CONNECT -> CONNACK against the real server, every protocol version.
#include <doctest/doctest.h>

#include "client.h"
#include "server_process.h"

using namespace limaoim;
using namespace limaoim::testing;

namespace {
bool salt_charset_ok(const std::string& salt) {
    for (char c : salt)
        if (!std::isalnum(static_cast<unsigned char>(c))) return false;
    return salt.size() == 16;
}

// A v3/v4 SEND sealed and signed with `key`.
proto::SendPacket sealed_send(const proto::crypto::SessionKey& key, std::string& payload_store) {
    proto::crypto::Cipher cipher;
    proto::SendPacket send;
    send.client_seq = 7;
    send.client_msg_no = "c0ffee00c0ffee00c0ffee00c0ffee00";
    send.channel_id = "bob";
    send.channel_type = 1;
    payload_store.clear();
    cipher.seal_payload(key, R"({"type":1,"content":"hi"})", payload_store);
    send.payload = payload_store;
    return send;
}
}  // namespace

TEST_CASE("a second server on a port that is in use says so and exits, leaving the first alone") {
    ServerProcess first;
    REQUIRE_MESSAGE(first.started(), first.log());
    // SO_REUSEPORT would let it share the port silently; it must refuse.
    auto [status, out] = run_command("timeout 10 " + server_binary() +
                                     " --mode test --addr 127.0.0.1 --port " + std::to_string(first.port()) +
                                     " --instance second-" + std::to_string(first.port()) + " 2>&1");
    CHECK(status == 1);
    CHECK(out.find("cannot listen on 127.0.0.1:" + std::to_string(first.port())) != std::string::npos);
    CHECK(out.find("choose another --port") != std::string::npos);
    Client c;
    REQUIRE(c.connect(first.port()));
    CHECK(c.login("still-here", "t", 4).reason == 1);
}

TEST_CASE("login: every protocol version gets a CONNACK in its own version") {
    ServerProcess server;
    REQUIRE_MESSAGE(server.started(), server.log());
    for (uint8_t version : {1, 2, 3, 4}) {
        CAPTURE(int(version));
        Client c;
        REQUIRE(c.connect(server.port()));
        LoginResult r = c.login("user" + std::to_string(version), "any", version);
        REQUIRE(r.answered);
        CHECK(r.reason == 1);
        CHECK(std::llabs(r.time_diff) < 5000);  // we send ms, the server answers now - ours
        if (version > 2) {
            CHECK(r.server_key.size() == 44);
            CHECK(salt_charset_ok(r.salt));
            CHECK(r.key.key != proto::crypto::SessionKey{}.key);
        } else {
            CHECK(r.server_key.empty());
            CHECK(r.salt.empty());
        }
        // The session works: PING -> PONG.
        REQUIRE(c.send_hex("70"));
        auto pong = c.read_packet();
        REQUIRE(pong);
        CHECK(pong->type() == proto::PacketType::Pong);
    }
    CHECK(server.stat("counters.auth_ok") == 4);
}

TEST_CASE("login: v3/v4 client and server derive the same AES key (the server verifies our MsgKey)") {
    ServerProcess server;
    REQUIRE_MESSAGE(server.started(), server.log());
    for (uint8_t version : {3, 4}) {
        CAPTURE(int(version));
        Client c;
        REQUIRE(c.connect(server.port()));
        LoginResult r = c.login("keyuser" + std::to_string(version), "t", version);
        REQUIRE(r.reason == 1);
        proto::crypto::Cipher cipher;
        std::string payload, sign;
        proto::SendPacket send = sealed_send(r.key, payload);
        sign.clear();
        proto::crypto::append_send_sign(send, sign);
        char msg_key[32];
        cipher.msg_key(r.key, sign, msg_key);
        send.msg_key = std::string_view(msg_key, 32);

        REQUIRE(c.send_packet(send, version));
        auto ack = c.read_packet();
        REQUIRE(ack);
        REQUIRE(ack->type() == proto::PacketType::Sendack);
        // Accepted by the security layer (not 8 MsgKey, not 9 payload) and stored.
        CHECK(std::get<proto::SendackPacket>(ack->packet).reason_code == 1);
        CHECK(std::get<proto::SendackPacket>(ack->packet).client_seq == 7);

        proto::SendPacket tampered = send;
        tampered.channel_id = "mallory";  // signed for "bob"
        REQUIRE(c.send_packet(tampered, version));
        ack = c.read_packet();
        REQUIRE(ack);
        CHECK(std::get<proto::SendackPacket>(ack->packet).reason_code == 8);

        // Right MsgKey over a payload that is not valid ciphertext -> 9.
        proto::SendPacket garbled = send;
        std::string bad_payload = "AAAA";  // base64 of 3 bytes: not a multiple of 16
        garbled.payload = bad_payload;
        sign.clear();
        proto::crypto::append_send_sign(garbled, sign);
        cipher.msg_key(r.key, sign, msg_key);
        garbled.msg_key = std::string_view(msg_key, 32);
        REQUIRE(c.send_packet(garbled, version));
        ack = c.read_packet();
        REQUIRE(ack);
        CHECK(std::get<proto::SendackPacket>(ack->packet).reason_code == 9);
    }
}

TEST_CASE("login: release mode checks tokens; a refusal is a CONNACK 2 and a close") {
    ServerProcess server({"--token", "alice:0:secret", "--token", "alice:1:websecret"}, false);
    REQUIRE_MESSAGE(server.started(), server.log());
    SUBCASE("right token") {
        Client c;
        REQUIRE(c.connect(server.port()));
        CHECK(c.login("alice", "secret", 4, 0).reason == 1);
        Client web;
        REQUIRE(web.connect(server.port()));
        CHECK(web.login("alice", "websecret", 2, 1).reason == 1);
    }
    SUBCASE("wrong token, missing token, token of another device flag") {
        struct Case {
            std::string uid, token;
            uint8_t flag, version;
        } cases[] = {{"alice", "wrong", 0, 4}, {"nobody", "", 0, 1}, {"alice", "secret", 1, 3}};
        for (const Case& k : cases) {
            CAPTURE(k.uid);
            Client c;
            REQUIRE(c.connect(server.port()));
            LoginResult r = c.login(k.uid, k.token, k.version, k.flag);
            REQUIRE(r.answered);
            CHECK(r.reason == 2);
            CHECK(r.time_diff == 0);
            CHECK(r.server_key.empty());
            CHECK(c.wait_closed(2000));
        }
        CHECK(server.stat("counters.auth_failures") == 3);
        CHECK(server.stat("counters.closed.auth_failed") == 3);
    }
}

TEST_CASE("login: version bytes 0 and 255 are accepted like 1 and 4 (Q9)") {
    ServerProcess server;
    REQUIRE_MESSAGE(server.started(), server.log());
    Client v0;
    REQUIRE(v0.connect(server.port()));
    LoginResult r0 = v0.login("v0", "t", 0);
    CHECK(r0.reason == 1);
    CHECK(r0.server_key.empty());
    Client v255;
    REQUIRE(v255.connect(server.port()));
    LoginResult r255 = v255.login("v255", "t", 255);
    CHECK(r255.reason == 1);
    CHECK(r255.server_key.size() == 44);
}
