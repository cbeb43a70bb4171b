// WuKongIM's WKProto (docs/WKPROTO.md) against the real server, on its
// --wk-addr listener (and once on --wk-ws-addr): what only this dialect has (the CONNACK's
// server_version and node_id, crypto at every version, expire, topic, the
// refused stream/SUB/EVENT features, the NoEncrypt setting), kicks across
// dialects and the per-dialect stats. The messaging cases every dialect
// shares run for both in test_messaging.cpp.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "chat_client.h"
#include "clock.h"
#include "http_client.h"
#include "im_helpers.h"
#include "im_server.h"
#include "ports.h"

using namespace limaoim;
using namespace limaoim::testing;
using nlohmann::json;

namespace {

const proto::Dialect& wk = proto::kWuKongIMDialect;
const proto::Dialect& lm = proto::kLiMaoIMDialect;

constexpr uint8_t kNotSupportHeader = uint8_t(proto::ReasonCode::NotSupportHeader);

}  // namespace

TEST_CASE("wkproto: CONNACK has server_version (flag bit 0) for CONNECT versions above 3, node_id from session "
          "version 4; crypto and messages at every version") {
    ImServer server({"--node-id", "7"});
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient peer = online(server, "peer", 4);
    struct Case {
        uint8_t connect_version;
        uint8_t session_version;
        bool says_server_version;
    };
    // 0 and versions above the server's run at its latest (5), as WuKongIM's do.
    for (const Case k : {Case{1, 1, false}, Case{2, 2, false}, Case{3, 3, false}, Case{4, 4, true}, Case{5, 5, true},
                         Case{0, 5, false}, Case{9, 5, true}}) {
        CAPTURE(int(k.connect_version));
        const std::string uid = "wk-v" + std::to_string(k.connect_version);
        ChatClient c;
        c.set_dialect(wk);
        REQUIRE(c.connect(server.wk_port()));
        const LoginResult r = c.login(uid, "", k.connect_version);
        REQUIRE(r.answered);
        CHECK(r.reason == uint8_t(proto::ReasonCode::Success));
        CHECK(c.version() == k.session_version);
        CHECK(c.logged_in());  // a session key at every version: client_key and server_key/salt exchanged
        CHECK((r.flags & proto::kConnackHasServerVersion) == (k.says_server_version ? 1 : 0));
        CHECK(r.server_version == (k.says_server_version ? k.session_version : 0));
        CHECK(r.node_id == (k.session_version >= 4 ? 7u : 0u));
        // The client decoded it at the session version; encoded again at that
        // version it is the same bytes: no field missing, none left over.
        proto::Packet connack;
        REQUIRE(wk.decode(wk.split(r.connack, 1u << 24).frame, c.version(), connack) == proto::DecodeError::None);
        std::vector<uint8_t> again(wk.encoded_size(connack, c.version()));
        CHECK(wk.encode(connack, c.version(), again) == again.size());
        CHECK(again == r.connack);
        // Encrypted both ways at this version.
        const proto::SendackPacket out = send_acked(c, "peer", 1, "from " + uid, 1, uid + "-1");
        REQUIRE(out.reason_code == 1);
        expect_recv(peer, uid, 1, uid, "from " + uid, out);
        const proto::SendackPacket back = send_acked(peer, uid, 1, "to " + uid, k.connect_version + 10u, "p-" + uid);
        REQUIRE(back.reason_code == 1);
        expect_recv(c, "peer", 1, "peer", "to " + uid, back);
    }
}

TEST_CASE("wkproto: over WebSocket (--wk-ws-addr): login at v5, a message each way with a LiMaoIM client") {
    // Every listener at once: LiMaoIM's TCP and WebSocket, WKProto's TCP and
    // WebSocket, the API (five per worker).
    const uint16_t wk_ws_port = free_port();
    ImServer server({"--wk-ws-addr", "127.0.0.1:" + std::to_string(wk_ws_port)});
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient lm_client = online(server, "lm-a", 4);
    ChatClient web;
    web.set_dialect(wk);
    REQUIRE(web.connect_websocket(wk_ws_port));
    REQUIRE(web.login("wk-web", "", 5).reason == uint8_t(proto::ReasonCode::Success));
    REQUIRE(web.logged_in());
    const proto::SendackPacket out = send_acked(web, "lm-a", 1, "over a WebSocket", 1, "ws-1");
    REQUIRE(out.reason_code == 1);
    expect_recv(lm_client, "wk-web", 1, "wk-web", "over a WebSocket", out);
    const proto::SendackPacket back = send_acked(lm_client, "wk-web", 1, "and back", 1, "ws-2");
    REQUIRE(back.reason_code == 1);
    expect_recv(web, "lm-a", 1, "lm-a", "and back", back);
    CHECK(web.raw().ws_data_frames >= 3);  // CONNACK, SENDACK, RECV came as WebSocket frames
}

TEST_CASE("wkproto: a SEND's expire: delivered with it; once past, not retransmitted nor synced") {
    // A retransmit comes 1.05-1.1 s after the RECV: past any expire of 1 s.
    ImServer server({"--msg-timeout-ms", "1050", "--retry-scan-ms", "50"});
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    ChatClient alice = online(server, wk, "alice", 5);
    ChatClient bob = online(server, wk, "bob", 5);

    REQUIRE(alice.send_message("bob", 1, "for an hour", 1, "e-1", 0, 0, 3600));
    const auto hour = alice.read_sendack();
    REQUIRE(hour);
    REQUIRE(hour->reason_code == 1);
    auto r = bob.read_recv();
    REQUIRE(r);
    CHECK(r->message_id == hour->message_id);
    CHECK(r->expire == 3600);
    CHECK(r->payload == "for an hour");
    REQUIRE(bob.send_recvack(*r));

    const auto t0 = Clock::now();
    REQUIRE(alice.send_message("bob", 1, "for a second", 2, "e-2", 0, 0, 1));
    REQUIRE(alice.send_message("carol", 1, "for a second", 3, "e-3", 0, 0, 1));  // carol is offline
    REQUIRE(alice.send_message("carol", 1, "for an hour", 4, "e-4", 0, 0, 3600));
    std::vector<proto::SendackPacket> acks;
    for (int i = 0; i < 3; ++i) {
        const auto ack = alice.read_sendack();
        REQUIRE(ack);
        CHECK(ack->reason_code == 1);
        acks.push_back(*ack);
    }
    // Expiry counts whole seconds from the message's timestamp: bob gets the
    // one-second message once, or not at all when that second ended first;
    // its retransmit is past it either way. Never a second copy.
    int copies = 0;
    while (auto m = bob.read_recv(int(std::max<int64_t>(0, 1300 - ms_since(t0))))) {
        ++copies;
        CHECK(m->message_id == acks[0].message_id);
        CHECK(m->expire == 1);
    }
    CHECK(copies <= 1);
    CHECK(server.process().stat("messages.deliveries_expired") == 1);
    CHECK(server.process().stat("messages.recv_retransmits") == 0);
    // The API's sync has only the unexpired ones.
    CHECK(seqs_of(history(http, "bob", "alice", 1, 0, 0, 100, 1)["messages"]) == std::vector<uint32_t>{1});
    const json carols = history(http, "carol", "alice", 1, 0, 0, 100, 1)["messages"];
    REQUIRE(carols.size() == 1);
    CHECK(carols[0]["message_id"] == acks[2].message_id);
}

TEST_CASE("wkproto: a topic (setting 0x08) is stored with the message and reaches a WKProto receiver") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient alice = online(server, wk, "alice", 5);
    ChatClient bob = online(server, wk, "bob", 4);
    REQUIRE(send_acked(alice, "bob", 1, "no topic", 1, "t-1").reason_code == 1);
    REQUIRE(alice.send_message("bob", 1, "on topic", 2, "t-2", 0, proto::wk_setting::kTopic, 0, "weather"));
    const auto topical = alice.read_sendack();
    REQUIRE(topical);
    REQUIRE(topical->reason_code == 1);
    auto plain = bob.read_recv();
    REQUIRE(plain);
    CHECK(plain->setting == 0);
    CHECK(plain->topic.empty());
    auto r = bob.read_recv();
    REQUIRE(r);
    CHECK(r->message_id == topical->message_id);
    CHECK(r->setting == proto::wk_setting::kTopic);
    CHECK(r->topic == "weather");
    CHECK(r->payload == "on topic");
}

TEST_CASE("wkproto: refused features: a stream-bit SEND gets SENDACK 20, SUB a SUBACK 20, an EVENT closes the "
          "connection") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient alice = online(server, wk, "alice", 4);  // v2-4 carry the Go codec's stream fields
    ChatClient bob = online(server, wk, "bob", 5);
    for (const uint8_t stream_bit : {uint8_t(0x02), uint8_t(0x04)}) {
        CAPTURE(int(stream_bit));
        const proto::SendackPacket ack =
            send_acked(alice, "bob", 1, "streamed", stream_bit, "s-" + std::to_string(stream_bit), 0, stream_bit);
        CHECK(ack.reason_code == kNotSupportHeader);
        CHECK(ack.message_seq == 0);
    }
    CHECK(quiet(bob, 100));  // nothing stored or delivered

    proto::SubPacket sub;
    sub.sub_no = "sub-1";
    sub.channel_id = "live";
    sub.channel_type = 2;
    sub.action = 1;
    REQUIRE(alice.raw().send_packet(sub, alice.version()));
    const auto p = alice.read_any();
    REQUIRE(p);
    REQUIRE(p->type() == proto::PacketType::Suback);
    const auto& suback = std::get<proto::SubackPacket>(p->packet);
    CHECK(suback.sub_no == "sub-1");
    CHECK(suback.channel_id == "live");
    CHECK(suback.channel_type == 2);
    CHECK(suback.action == 1);
    CHECK(suback.reason_code == kNotSupportHeader);

    proto::EventPacket event;
    event.id = "ev-1";
    event.type = "chunk";
    event.data = "x";
    REQUIRE(bob.raw().send_packet(event, bob.version()));
    CHECK(bob.raw().wait_closed(2000));
    CHECK(server.process().wait_stat("counters.closed.protocol_violation", 1, 2000) == 1);
    // The other session carries on.
    REQUIRE(alice.ping());
    CHECK(alice.read_pong());
}

TEST_CASE("wkproto: a plain-payload SEND (setting 0x10) is sealed for every receiver; a WKProto RECV has the bit "
          "cleared") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient alice = online(server, wk, "alice", 5);
    ChatClient bob = online(server, "bob", 4);
    ChatClient carol = online(server, wk, "carol", 5);
    const uint8_t setting = proto::wk_setting::kNoEncrypt | proto::wk_setting::kReceipt;
    for (ChatClient* to : {&bob, &carol}) {
        CAPTURE(to->dialect().name);
        const std::string text = "plain to " + to->uid();
        const proto::SendackPacket ack = send_acked(alice, to->uid(), 1, text, 1, "n-" + to->uid(), 0, setting);
        REQUIRE(ack.reason_code == 1);
        // read_recv checks the MsgKey and decrypts: it throws on a plain payload.
        auto r = to->read_recv();
        REQUIRE(r);
        CHECK(r->payload == text);
        CHECK(r->wire_payload != text);
        CHECK((r->setting & proto::wk_setting::kReceipt) != 0);
        if (&to->dialect() == &wk) CHECK(r->setting == proto::wk_setting::kReceipt);  // 0x10 would skip decryption
    }
}

TEST_CASE("wkproto: a second login of the uid and device flag kicks the first, within and across dialects") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const auto version_of = [](const proto::Dialect& d) { return uint8_t(&d == &wk ? 5 : 4); };
    int kicks = 0;
    for (const proto::Dialect* first_dialect : {&lm, &wk}) {
        for (const proto::Dialect* second_dialect : {&lm, &wk}) {
            const std::string uid = std::string("kim-") + first_dialect->name + "-" + second_dialect->name;
            CAPTURE(uid);
            ChatClient first = online(server, *first_dialect, uid, version_of(*first_dialect), 0);
            ChatClient web = online(server, *second_dialect, uid, version_of(*second_dialect), 1);  // another device
            ChatClient second = online(server, *second_dialect, uid, version_of(*second_dialect), 0);
            ++kicks;
            const auto bye = first.read_any();
            REQUIRE(bye);
            REQUIRE(bye->type() == proto::PacketType::Disconnect);
            CHECK(std::get<proto::DisconnectPacket>(bye->packet).reason == "Account login on other devices");
            for (ChatClient* c : {&second, &web}) {
                REQUIRE(c->ping());
                CHECK(c->read_pong());
            }
        }
    }
    CHECK(server.process().stat("counters.kicks") == kicks);
}

TEST_CASE("wkproto: sessions and packets are counted per dialect in limaoim-stat --json and GET /metrics") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient lm_client = online(server, "lm-a", 4);
    ChatClient wk5 = online(server, wk, "wk-b", 5);
    ChatClient wk3 = online(server, wk, "wk-c", 3);
    REQUIRE(wk5.ping());
    REQUIRE(wk5.read_pong());
    // LiMaoIM: CONNECT in, CONNACK out; WKProto: two CONNECTs and a PING in, two CONNACKs and a PONG out.
    const ServerProcess& process = server.process();
    CHECK(process.wait_stat("gauges.dialects.limaoim", 1, 2000) == 1);
    CHECK(process.wait_stat("gauges.dialects.wukongim", 2, 2000) == 2);
    CHECK(process.wait_stat("counters.dialect_packets_in.limaoim", 1, 2000) == 1);
    CHECK(process.wait_stat("counters.dialect_packets_in.wukongim", 3, 2000) == 3);
    CHECK(process.wait_stat("counters.dialect_packets_out.limaoim", 1, 2000) == 1);
    CHECK(process.wait_stat("counters.dialect_packets_out.wukongim", 3, 2000) == 3);
    const HttpResult metrics = http_request(server.http_port(), "GET", "/metrics", "");
    REQUIRE(metrics.status == 200);
    for (const char* line : {"limaoim_authenticated_by_dialect{dialect=\"limaoim\"} 1\n",
                             "limaoim_authenticated_by_dialect{dialect=\"wukongim\"} 2\n",
                             "limaoim_dialect_packets_in_total{dialect=\"wukongim\"} 3\n",
                             "limaoim_dialect_packets_out_total{dialect=\"limaoim\"} 1\n"})
        CHECK_MESSAGE(metrics.body.find(line) != std::string::npos, line);
}
