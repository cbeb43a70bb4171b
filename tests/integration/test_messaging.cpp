// Messaging against the real server: SEND -> SENDACK -> RECV in every protocol
// version, multi-device, groups over several workers, de-duplication of
// resends, RECVACK and retransmission, offline storage and sync, a SIGKILL in
// the middle of a burst, fan-out latency and the crypto refusals.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "chat_client.h"
#include "http_client.h"
#include "im_server.h"
#include "im_helpers.h"

using namespace limaoim;
using namespace limaoim::testing;
using namespace std::chrono;
using nlohmann::json;

namespace {

int32_t now_s() { return int32_t(duration_cast<seconds>(system_clock::now().time_since_epoch()).count()); }

// ---- 1 ----

void chat_both_ways(ImServer& server, const std::string& a_uid, uint8_t a_version, const std::string& b_uid,
                    uint8_t b_version, const proto::Dialect& a_dialect = proto::kLiMaoIMDialect,
                    const proto::Dialect& b_dialect = proto::kLiMaoIMDialect) {
    CAPTURE(a_uid);
    CAPTURE(b_uid);
    ChatClient a = online(server, a_dialect, a_uid, a_version);
    ChatClient b = online(server, b_dialect, b_uid, b_version);
    uint32_t seq = 0;
    std::vector<std::pair<std::string, std::string>> sent;  // (from, text) in seq order
    for (int round = 0; round < 2; ++round) {
        ChatClient& from = round == 0 ? a : b;
        ChatClient& to = round == 0 ? b : a;
        for (uint32_t i = 0; i < 3; ++i) {
            const std::string text = from.uid() + " says " + std::to_string(i) + " to " + to.uid() + " \xe4\xbd\xa0\xe5\xa5\xbd";
            const std::string cmn = from.uid() + "-cmn-" + std::to_string(i);
            const uint8_t setting = from.version() >= 4 ? 0x80 : 0;
            const uint32_t client_seq = 100 * (round + 1) + i;
            proto::SendackPacket ack = send_acked(from, to.uid(), 1, text, client_seq, cmn, 0, setting);
            CHECK(ack.reason_code == 1);
            CHECK(ack.message_id > 0);
            CHECK(ack.message_seq == ++seq);
            auto r = to.read_recv(3000);
            REQUIRE_MESSAGE(r, to.uid() << " got no RECV");
            CHECK(r->message_id == ack.message_id);
            CHECK(r->message_seq == ack.message_seq);
            CHECK(r->channel_id == from.uid());  // the peer, from the receiver's view
            CHECK(r->channel_type == 1);
            CHECK(r->from_uid == from.uid());
            CHECK(r->payload == text);
            CHECK(r->flags == 0);
            CHECK(r->client_msg_no == (to.version() >= 2 && from.version() >= 2 ? cmn : ""));
            if (to.version() >= 4) CHECK(r->setting == setting);
            CHECK(std::abs(r->timestamp - now_s()) <= 5);
            if (to.version() >= 3) CHECK(r->wire_payload != text);  // encrypted on the wire
            CHECK(to.send_recvack(*r));
            sent.emplace_back(from.uid(), text);
        }
    }
    // The sending session gets no copy of its own message.
    CHECK(quiet(a, 150));
    CHECK(quiet(b, 150));
    // Stored in order under the shared person channel, seen the same from both sides.
    for (const std::string& viewer : {a_uid, b_uid}) {
        const std::string peer = viewer == a_uid ? b_uid : a_uid;
        json r = history(server.http_port(), viewer, peer, 1, 0, 0, 100, 1);
        REQUIRE(r["messages"].size() == sent.size());
        for (size_t i = 0; i < sent.size(); ++i) {
            const json& m = r["messages"][i];
            CHECK(m["message_seq"] == i + 1);
            CHECK(m["from_uid"] == sent[i].first);
            CHECK(m["channel_id"] == (sent[i].first == a_uid ? b_uid : a_uid));  // the recipient
            CHECK(unb64(m["payload"]) == sent[i].second);
        }
    }
}

// The first `senders` members pipeline `each` SENDs, interleaved, to the
// group `channel` (with no other messages yet): every member gets every
// message but its own once, in seq order, the same id for the same seq;
// the log is gapless.
void group_round(ImServer& server, const std::string& channel, const std::vector<std::string>& uids,
                 std::vector<ChatClient>& members, int senders, uint32_t each) {
    // The senders pipeline their SENDs, interleaved.
    for (uint32_t k = 0; k < each; ++k)
        for (int s = 0; s < senders; ++s)
            REQUIRE(members[s].send_message(channel, 2, uids[s] + "#" + std::to_string(k), k, uids[s] + "-" + std::to_string(k)));
    struct Sent {
        int64_t id;
        int sender;
        std::string text;
    };
    std::map<uint32_t, Sent> by_seq;
    for (int s = 0; s < senders; ++s) {
        uint32_t last_seq = 0;
        for (uint32_t k = 0; k < each; ++k) {
            auto ack = members[s].read_sendack();
            REQUIRE(ack);
            CHECK(ack->client_seq == k);  // in order per connection
            CHECK(ack->reason_code == 1);
            CHECK(ack->message_seq > last_seq);  // a connection's SENDs keep their order
            last_seq = ack->message_seq;
            CHECK(by_seq.emplace(ack->message_seq, Sent{ack->message_id, s, uids[s] + "#" + std::to_string(k)}).second);
        }
    }
    REQUIRE(by_seq.size() == uint32_t(senders) * each);
    CHECK(by_seq.begin()->first == 1);
    CHECK(by_seq.rbegin()->first == uint32_t(senders) * each);

    const auto deadline = Clock::now() + seconds(20);
    for (int i = 0; i < int(members.size()); ++i) {
        CAPTURE(uids[i]);
        std::vector<uint32_t> expected;
        for (const auto& [seq, sent] : by_seq)
            if (sent.sender != i) expected.push_back(seq);
        std::vector<uint32_t> got;
        while (got.size() < expected.size()) {
            auto r = members[i].read_recv(std::min(3000, left_ms(deadline)));
            if (!r) break;
            got.push_back(r->message_seq);
            auto it = by_seq.find(r->message_seq);
            REQUIRE(it != by_seq.end());
            CHECK(r->message_id == it->second.id);  // the same id for the same seq, for everyone
            CHECK(r->payload == it->second.text);
            CHECK(r->from_uid == uids[it->second.sender]);
            CHECK(r->channel_id == channel);
            CHECK(r->channel_type == 2);
            members[i].send_recvack(*r);
        }
        CHECK(got == expected);  // strictly increasing, no gap, nothing twice
    }
    std::this_thread::sleep_for(milliseconds(200));
    for (int i = 0; i < int(members.size()); ++i) CHECK_MESSAGE(quiet(members[i], 0), uids[i]);
    CHECK(seqs_of(whole_log(server.http_port(), "", channel, 2)) == range(1, uint32_t(senders) * each));
}

}  // namespace

TEST_CASE("messaging: person chat both ways in v2, v4, mixed versions and both dialects, payloads decrypted and checked") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const proto::Dialect& wk = proto::kWuKongIMDialect;
    const proto::Dialect& lm = proto::kLiMaoIMDialect;
    SUBCASE("v4 <-> v4") { chat_both_ways(server, "alice", 4, "bob", 4); }
    SUBCASE("v2 <-> v2") { chat_both_ways(server, "carl", 2, "dora", 2); }
    SUBCASE("v4 <-> v2") { chat_both_ways(server, "erin", 4, "fred", 2); }
    SUBCASE("v2 <-> v4") { chat_both_ways(server, "gina", 2, "hank", 4); }
    SUBCASE("v3 <-> v1") { chat_both_ways(server, "ivan", 3, "judy", 1); }
    // WuKongIM's WKProto clients, on the --wk-addr listener, among themselves
    // and with LiMaoIM's (one server for the three: a start each costs more).
    SUBCASE("WKProto v5 <-> WKProto v5, WKProto v5 <-> LiMaoIM v4, LiMaoIM v2 <-> WKProto v3") {
        chat_both_ways(server, "kai", 5, "lea", 5, wk, wk);
        chat_both_ways(server, "max", 5, "nia", 4, wk, lm);
        chat_both_ways(server, "oli", 2, "pia", 3, lm, wk);
    }
}

// ---- 2 ----

TEST_CASE("messaging: a user's APP and WEB sessions: the other device gets the sender's own message") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient app = online(server, "alice", 4, 0);
    ChatClient web = online(server, "alice", 2, 1);
    ChatClient bob = online(server, "bob", 4, 0);

    proto::SendackPacket ack = send_acked(app, "bob", 1, "from the phone", 1, "m-app-1");
    REQUIRE(ack.reason_code == 1);
    auto at_bob = bob.read_recv();
    REQUIRE(at_bob);
    CHECK(at_bob->channel_id == "alice");
    CHECK(at_bob->from_uid == "alice");
    CHECK(at_bob->payload == "from the phone");
    auto at_web = web.read_recv();
    REQUIRE(at_web);
    CHECK(at_web->channel_id == "bob");  // the recipient: it is the sender's own message
    CHECK(at_web->from_uid == "alice");
    CHECK(at_web->payload == "from the phone");
    CHECK(at_web->message_id == ack.message_id);
    CHECK(at_web->message_seq == ack.message_seq);
    CHECK(at_web->client_msg_no == "m-app-1");

    // bob answers: both of alice's devices get it, bob's session does not.
    proto::SendackPacket back = send_acked(bob, "alice", 1, "hi both", 7, "m-bob-1");
    REQUIRE(back.reason_code == 1);
    CHECK(back.message_seq == ack.message_seq + 1);
    for (ChatClient* c : {&app, &web}) {
        auto r = c->read_recv();
        REQUIRE(r);
        CHECK(r->channel_id == "bob");
        CHECK(r->from_uid == "bob");
        CHECK(r->payload == "hi both");
        CHECK(r->message_id == back.message_id);
    }
    // The sending session (alice/APP) never saw its own message, bob not his.
    CHECK(quiet(app, 200));
    CHECK(quiet(bob, 50));
    CHECK(quiet(web, 50));
}

// ---- 3 ----

TEST_CASE("messaging: a group of 50 over 4 workers: every member gets every message once, seqs gapless") {
    ImServer server({"--workers", "4"});
    REQUIRE_MESSAGE(server.started(), server.log());
    constexpr int kMembers = 50;
    std::vector<std::string> uids;
    for (int i = 0; i < kMembers; ++i) uids.push_back("m" + std::to_string(100 + i));
    post(server.http_port(), "/channel", {{"channel_id", "g50"}, {"channel_type", 2}, {"subscribers", uids}});
    std::vector<ChatClient> members;
    for (int i = 0; i < kMembers; ++i) members.push_back(online(server, uids[i], i % 5 == 0 ? 4 : 2));
    // SO_REUSEPORT spread the sessions: the fan-out crosses workers.
    json stat = server.process().stat_json();
    REQUIRE(stat.is_object());
    int busy_workers = 0;
    for (const json& w : stat["per_worker"]) busy_workers += w["authenticated"].get<int64_t>() > 0;
    CHECK_MESSAGE(busy_workers >= 2, stat["per_worker"].dump());

    group_round(server, "g50", uids, members, 3, 20);
}

TEST_CASE("messaging: a group of 10 LiMaoIM and 10 WKProto members, senders of both: every member gets every message once, in seq order") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    std::vector<std::string> uids;
    for (int i = 0; i < 20; ++i) uids.push_back((i % 2 ? "wk" : "lm") + std::to_string(i));
    post(server.http_port(), "/channel", {{"channel_id", "mixed"}, {"channel_type", 2}, {"subscribers", uids}});
    std::vector<ChatClient> members;
    for (int i = 0; i < 20; ++i)
        members.push_back(i % 2 ? online(server, proto::kWuKongIMDialect, uids[i], 5) : online(server, uids[i], 4));
    // Senders lm0, wk1, lm2, wk3.
    group_round(server, "mixed", uids, members, 4, 5);
}

// ---- 4 ----

TEST_CASE("messaging: a resent SEND (same client_msg_no, with or without DUP) is stored and delivered once") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient alice = online(server, "alice", 4);
    ChatClient bob = online(server, "bob", 2);

    proto::SendackPacket first = send_acked(alice, "bob", 1, "once", 1, "cmn-dup");
    REQUIRE(first.reason_code == 1);
    REQUIRE(first.message_seq == 1);
    proto::SendackPacket again = send_acked(alice, "bob", 1, "once", 2, "cmn-dup");
    CHECK(again.reason_code == 1);
    CHECK(again.message_id == first.message_id);
    CHECK(again.message_seq == first.message_seq);
    proto::SendackPacket dup = send_acked(alice, "bob", 1, "once", 3, "cmn-dup", 0x08);
    CHECK(dup.reason_code == 1);
    CHECK(dup.message_id == first.message_id);
    CHECK(dup.message_seq == first.message_seq);

    // Pipelined back to back (one commit batch): still one message.
    REQUIRE(alice.send_message("bob", 1, "twice in a row", 4, "cmn-pipe"));
    REQUIRE(alice.send_message("bob", 1, "twice in a row", 5, "cmn-pipe", 0x08));
    auto p1 = alice.read_sendack();
    auto p2 = alice.read_sendack();
    REQUIRE(p1);
    REQUIRE(p2);
    CHECK(p1->reason_code == 1);
    CHECK(p2->reason_code == 1);
    CHECK(p1->message_seq == 2);  // the resends consumed no seq
    CHECK(p2->message_id == p1->message_id);
    CHECK(p2->message_seq == p1->message_seq);

    // Another user's client_msg_no is another message.
    ChatClient carol = online(server, "carol", 4);
    proto::SendackPacket other = send_acked(carol, "bob", 1, "mine", 1, "cmn-dup");
    CHECK(other.reason_code == 1);
    CHECK(other.message_id != first.message_id);
    CHECK(other.message_seq == 1);  // carol's own channel with bob

    // bob got each message once.
    std::vector<int64_t> ids;
    while (auto r = bob.read_recv(400)) ids.push_back(r->message_id);
    CHECK(ids == std::vector<int64_t>{first.message_id, p1->message_id, other.message_id});

    CHECK(server.process().stat("pipeline.dedupe_hits") == 3);
    json log = history(server.http_port(), "bob", "alice", 1, 0, 0, 100, 1);
    CHECK(seqs_of(log["messages"]) == std::vector<uint32_t>{1, 2});
    REQUIRE(log["messages"].size() == 2);
    CHECK(log["messages"][0]["message_id"] == first.message_id);
    CHECK(log["messages"][0]["client_msg_no"] == "cmn-dup");
    CHECK(log["messages"][1]["client_msg_no"] == "cmn-pipe");
}

// ---- 5 ----

TEST_CASE("messaging: a RECV without RECVACK is sent again with the same bytes, up to --max-deliveries"
          * doctest::test_suite("timeouts")) {
    ImServer server({"--msg-timeout-ms", "300", "--retry-scan-ms", "50", "--max-deliveries", "3"});
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient alice = online(server, "alice", 4);
    ChatClient bob = online(server, "bob", 4);

    SUBCASE("never acknowledged: exactly 3 deliveries, 300 ms apart, identical bytes") {
        proto::SendackPacket ack = send_acked(alice, "bob", 1, "ack me", 1, "r-1");
        REQUIRE(ack.reason_code == 1);
        std::vector<RecvMessage> got;
        std::vector<int64_t> at;
        auto t0 = Clock::now();
        while (auto r = bob.read_recv(1500)) {
            got.push_back(*r);
            at.push_back(ms_since(t0));
        }
        REQUIRE(got.size() == 3);
        for (size_t i = 1; i < got.size(); ++i) {
            CHECK(got[i].raw == got[0].raw);
            const int64_t gap = at[i] - at[i - 1];
            CHECK_MESSAGE(gap >= 250, "redelivery " << i << " after " << gap << " ms");
            CHECK_MESSAGE(gap <= 1500, "redelivery " << i << " after " << gap << " ms");
        }
        CHECK(got[0].message_id == ack.message_id);
        CHECK(got[0].payload == "ack me");
        CHECK(server.process().stat("messages.recv_retransmits") == 2);
        CHECK(server.process().stat("messages.inflight_expired") == 1);
        // read_recv waited 1.5 s (5 timeouts) after the third: nothing more came.
    }

    SUBCASE("a RECVACK stops the redelivery") {
        proto::SendackPacket ack = send_acked(alice, "bob", 1, "acked at once", 1, "r-2");
        REQUIRE(ack.reason_code == 1);
        auto r = bob.read_recv();
        REQUIRE(r);
        REQUIRE(bob.send_recvack(*r));
        CHECK(quiet(bob, 900));
    }

    SUBCASE("a RECVACK after the first redelivery stops the third, for a receiver of either dialect") {
        ChatClient wk_bob = online(server, proto::kWuKongIMDialect, "wk-bob", 5);
        uint32_t client_seq = 0;
        for (ChatClient* receiver : {&bob, &wk_bob}) {
            CAPTURE(receiver->dialect().name);
            proto::SendackPacket ack = send_acked(alice, receiver->uid(), 1, "acked late", ++client_seq, "r-3-" + receiver->uid());
            REQUIRE(ack.reason_code == 1);
        }
        // Both receivers' redeliveries run at once: the loop takes ~300 ms in all.
        for (ChatClient* receiver : {&bob, &wk_bob}) {
            CAPTURE(receiver->dialect().name);
            auto r1 = receiver->read_recv();
            REQUIRE(r1);
            CHECK(r1->payload == "acked late");
            auto r2 = receiver->read_recv(1500);
            REQUIRE(r2);
            CHECK(r2->raw == r1->raw);
            REQUIRE(receiver->send_recvack(*r2));
        }
        CHECK(quiet(bob, 900));
        CHECK(quiet(wk_bob, 0));
        CHECK(server.process().stat("messages.recv_retransmits") == 2);
    }

    SUBCASE("only the unacknowledged one of two comes again") {
        proto::SendackPacket a1 = send_acked(alice, "bob", 1, "one", 1, "r-4");
        proto::SendackPacket a2 = send_acked(alice, "bob", 1, "two", 2, "r-5");
        auto r1 = bob.read_recv();
        auto r2 = bob.read_recv();
        REQUIRE(r1);
        REQUIRE(r2);
        CHECK(r1->message_id == a1.message_id);
        CHECK(r2->message_id == a2.message_id);
        REQUIRE(bob.send_recvack(*r1));
        auto again = bob.read_recv(1500);
        REQUIRE(again);
        CHECK(again->message_id == a2.message_id);
        CHECK(again->raw == r2->raw);
        REQUIRE(bob.send_recvack(*again));
        CHECK(quiet(bob, 900));
    }
}

// ---- 6 ----

TEST_CASE("messaging: messages to an offline user are stored; history paging; SyncOnce queue and its cursor") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    ChatClient alice = online(server, "alice", 4);
    constexpr uint32_t kN = 25;
    send_offline(alice, "bob", kN);
    // Everything, in order, as bob sees it.
    json all = history(http, "bob", "alice", 1, 0, 0, 100, 1);
    CHECK(seqs_of(all["messages"]) == range(1, kN));
    CHECK(all["more"] == 0);
    for (uint32_t i = 0; i < all["messages"].size(); ++i) {
        const json& m = all["messages"][i];
        CHECK(m["from_uid"] == "alice");
        CHECK(m["channel_id"] == "bob");
        CHECK(m["channel_type"] == 1);
        CHECK(m["client_msg_no"] == "off-" + std::to_string(i + 1));
        CHECK(unb64(m["payload"]) == "offline #" + std::to_string(i + 1));
        CHECK(m["message_idstr"] == std::to_string(m["message_id"].get<int64_t>()));
        CHECK(m["header"]["sync_once"] == 0);
    }

    // Forward (reverse = 1) pages from min + 1.
    json p = history(http, "bob", "alice", 1, 0, 0, 10, 1);
    CHECK(seqs_of(p["messages"]) == range(1, 10));
    CHECK(p["more"] == 1);
    p = history(http, "bob", "alice", 1, 10, 0, 10, 1);
    CHECK(seqs_of(p["messages"]) == range(11, 20));
    CHECK(p["more"] == 1);
    p = history(http, "bob", "alice", 1, 20, 0, 10, 1);
    CHECK(seqs_of(p["messages"]) == range(21, 25));
    CHECK(p["more"] == 0);
    CHECK(p["min_message_seq"] == 20);
    // Bounded by max (seq < max).
    p = history(http, "bob", "alice", 1, 5, 9, 10, 1);
    CHECK(seqs_of(p["messages"]) == range(6, 8));
    CHECK(p["more"] == 0);
    p = history(http, "bob", "alice", 1, 5, 30, 3, 1);
    CHECK(seqs_of(p["messages"]) == range(6, 8));
    CHECK(p["more"] == 1);
    // Backward (reverse = 0): min 0 -> the newest `limit` below max; both 0 -> the oldest.
    p = history(http, "bob", "alice", 1, 0, 0, 10, 0);
    CHECK(seqs_of(p["messages"]) == range(1, 10));
    CHECK(p["more"] == 1);
    p = history(http, "bob", "alice", 1, 0, 20, 5, 0);
    CHECK(seqs_of(p["messages"]) == range(15, 19));
    CHECK(p["more"] == 1);
    CHECK(p["max_message_seq"] == 20);
    p = history(http, "bob", "alice", 1, 0, 26, 100, 0);
    CHECK(seqs_of(p["messages"]) == range(1, 25));
    CHECK(p["more"] == 0);
    p = history(http, "bob", "alice", 1, 22, 0, 10, 0);
    CHECK(seqs_of(p["messages"]) == range(23, 25));
    CHECK(p["more"] == 0);
    p = history(http, "bob", "alice", 1, 25, 0, 10, 1);
    CHECK(p["messages"].empty());
    CHECK(p["more"] == 0);
    // alice sees the same log from her side.
    CHECK(seqs_of(history(http, "alice", "bob", 1, 0, 0, 100, 1)["messages"]) == range(1, kN));

    // bob logs in: nothing is pushed to him (SERVER.md §8).
    ChatClient bob = online(server, "bob", 2);
    CHECK(quiet(bob, 200));
    bob.raw().close();

    // SyncOnce (+ RedDot): no channel seq, a copy in each user's queue.
    for (uint32_t i = 1; i <= 3; ++i) {
        proto::SendackPacket ack = send_acked(alice, "bob", 1, "once #" + std::to_string(i), 100 + i,
                                              "so-" + std::to_string(i), 0x04 | 0x02);
        REQUIRE(ack.reason_code == 1);
        CHECK(ack.message_id > 0);
        CHECK(ack.message_seq == 0);
    }
    CHECK(history(http, "bob", "alice", 1, 0, 0, 100, 1)["messages"].size() == kN);  // not in the channel log
    json q = post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}});
    REQUIRE(q.is_array());
    CHECK(seqs_of(q) == range(1, 3));
    for (uint32_t i = 0; i < q.size(); ++i) {
        CHECK(q[i]["channel_id"] == "alice");  // the peer, for bob (S7 compatible rule)
        CHECK(q[i]["from_uid"] == "alice");
        CHECK(q[i]["header"]["sync_once"] == 1);
        CHECK(q[i]["header"]["red_dot"] == 1);
        CHECK(unb64(q[i]["payload"]) == "once #" + std::to_string(i + 1));
    }
    json qa = post(http, "/message/sync", {{"uid", "alice"}, {"message_seq", 0}, {"limit", 100}});
    CHECK(seqs_of(qa) == range(1, 3));
    if (!qa.empty()) {
        CHECK(qa[0]["channel_id"] == "bob");
        CHECK(qa[0]["header"]["red_dot"] == 0);  // the sender's copy
    }
    CHECK(seqs_of(post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 1}, {"limit", 100}})) == range(2, 3));
    CHECK(seqs_of(post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 2}})) == range(1, 2));
    CHECK(post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 0}}).empty());

    // The cursor only moves forward.
    post(http, "/message/syncack", {{"uid", "bob"}, {"last_message_seq", 2}});
    CHECK(seqs_of(post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}})) == range(3, 3));
    post(http, "/message/syncack", {{"uid", "bob"}, {"last_message_seq", 1}});
    CHECK(seqs_of(post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}})) == range(3, 3));
    // Past the last seq: the cursor stops at the last one, so the next message is seen.
    post(http, "/message/syncack", {{"uid", "bob"}, {"last_message_seq", 100}});
    CHECK(post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}}).empty());
    REQUIRE(send_acked(alice, "bob", 1, "once #4", 104, "so-4", 0x04).reason_code == 1);
    CHECK(seqs_of(post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}})) == range(4, 4));
    // alice's cursor is her own.
    CHECK(seqs_of(post(http, "/message/sync", {{"uid", "alice"}, {"message_seq", 0}, {"limit", 100}})) == range(1, 4));

    // bob online: the RECV carries his queue seq; a RECVACK with SyncOnce moves his cursor.
    ChatClient bob2 = online(server, "bob", 4);
    REQUIRE(send_acked(alice, "bob", 1, "once #5", 105, "so-5", 0x04).reason_code == 1);
    auto r = bob2.read_recv();
    REQUIRE(r);
    CHECK(r->message_seq == 5);
    CHECK((r->flags & 0x04) != 0);
    CHECK(r->payload == "once #5");
    CHECK(r->channel_id == "alice");
    REQUIRE(bob2.send_recvack(*r));
    json left;
    auto t0 = Clock::now();
    do {
        left = post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}});
        if (left.empty()) break;
        std::this_thread::sleep_for(milliseconds(20));
    } while (ms_since(t0) < 3000);
    CHECK_MESSAGE(left.empty(), left.dump());
    // Bad requests.
    post(http, "/message/sync", {{"message_seq", 0}, {"limit", 10}}, 400);
    post(http, "/message/sync", {{"uid", "bob"}, {"limit", -1}}, 400);
    post(http, "/message/syncack", {{"uid", "bob"}, {"last_message_seq", 0}}, 400);
}

TEST_CASE("messaging: 200 SyncOnce RECVACKs in one write move the cursor through a few committer requests") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    ChatClient alice = online(server, "alice", 4);
    ChatClient bob = online(server, "bob", 4);
    constexpr uint32_t kMessages = 200;
    std::vector<RecvMessage> received;
    for (uint32_t k = 1; k <= kMessages; ++k) {
        REQUIRE(send_acked(alice, "bob", 1, "once", k, "ack-" + std::to_string(k), 0x04).reason_code == 1);
        auto r = bob.read_recv();
        REQUIRE(r);
        received.push_back(*r);
    }
    const int64_t before = server.process().stat("pipeline.cursor_advances");
    std::vector<uint8_t> acks;
    for (const RecvMessage& r : received) {
        proto::RecvackPacket ack;
        ack.flags = r.flags & 0x0f;
        ack.message_id = r.message_id;
        ack.message_seq = r.message_seq;
        std::vector<uint8_t> one(proto::encoded_size(ack, 4));
        REQUIRE(proto::encode(ack, 4, one) == one.size());
        acks.insert(acks.end(), one.begin(), one.end());
    }
    REQUIRE(bob.raw().send_bytes(acks));
    json left;
    const auto t0 = Clock::now();
    do {
        left = post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}});
        if (left.empty()) break;
        std::this_thread::sleep_for(milliseconds(20));
    } while (ms_since(t0) < 3000);
    CHECK_MESSAGE(left.empty(), left.dump());  // the cursor is at the last one
    const int64_t advances = server.process().stat("pipeline.cursor_advances") - before;
    MESSAGE(kMessages << " RECVACKs in one write: " << advances << " cursor advances");
    CHECK(advances >= 1);
    CHECK(advances <= 10);  // one per loop iteration that read some of them (2,814 bytes: a read or a few)
}

// ---- 7 ----

namespace {

struct BurstResult {
    std::map<uint32_t, std::pair<int64_t, uint32_t>> acked;  // client_seq -> (id, seq)
    uint32_t written = 0;  // SENDs written to the socket: client_seq 0 .. written-1
    uint32_t refused = 0;  // SENDACKs with another reason than 1
    bool finished = false;
};

std::string burst_cmn(int sender, uint32_t k) { return "b" + std::to_string(sender) + "-" + std::to_string(k); }
std::string burst_text(int sender, uint32_t k) { return "burst " + std::to_string(sender) + "/" + std::to_string(k); }

// Pipelines `n` SENDs with up to `window` awaiting their SENDACK; reads
// whatever comes (RECVs of the others' messages too) until done or the
// server goes away.
void burst(ChatClient& c, int sender, uint32_t n, uint32_t window, std::atomic<uint32_t>& acked_total,
           BurstResult& out) {
    uint32_t outstanding = 0;
    std::vector<uint8_t> bytes;
    for (;;) {
        if (out.written < n && outstanding <= window / 2) {
            bytes.clear();
            uint32_t k = out.written;
            for (; k < n && outstanding < window; ++k, ++outstanding) {
                auto one = c.build_send("gburst", 2, burst_text(sender, k), k, burst_cmn(sender, k));
                bytes.insert(bytes.end(), one.begin(), one.end());
            }
            if (!c.raw().send_bytes(bytes)) return;
            out.written = k;
        }
        if (outstanding == 0 && out.written >= n) {
            out.finished = true;
            return;
        }
        auto p = c.raw().read_packet(10000);
        if (!p) return;  // killed
        if (p->type() != proto::PacketType::Sendack) continue;
        const auto& ack = std::get<proto::SendackPacket>(p->packet);
        --outstanding;
        if (ack.reason_code == 1) {
            out.acked[ack.client_seq] = {ack.message_id, ack.message_seq};
            acked_total.fetch_add(1, std::memory_order_relaxed);
        } else {
            ++out.refused;
        }
    }
}

}  // namespace

TEST_CASE("messaging: SIGKILL in the middle of a 10000-SEND burst: every acked message survives once, no seq reused") {
    ImServer server({"--send-cap", "16777216", "--workers", "2"});
    REQUIRE_MESSAGE(server.started(), server.log());
    constexpr int kSenders = 4;
    constexpr uint32_t kEach = 2500;
    std::vector<std::string> uids;
    for (int i = 0; i < kSenders; ++i) uids.push_back("burster" + std::to_string(i));
    post(server.http_port(), "/channel", {{"channel_id", "gburst"}, {"channel_type", 2}, {"subscribers", uids}});
    std::vector<ChatClient> clients;
    for (int i = 0; i < kSenders; ++i) clients.push_back(online(server, uids[i], 4));

    std::atomic<uint32_t> acked_total{0};
    std::vector<BurstResult> results(kSenders);
    std::vector<std::thread> threads;
    for (int i = 0; i < kSenders; ++i)
        threads.emplace_back([&, i] { burst(clients[i], i, kEach, 256, acked_total, results[i]); });
    auto t0 = Clock::now();
    while (acked_total.load() < kSenders * kEach / 2 && ms_since(t0) < 60000)
        std::this_thread::sleep_for(microseconds(200));
    const uint32_t acked_at_kill = acked_total.load();
    std::optional<int> status;
    REQUIRE_MESSAGE(server.restart(SIGKILL, 10000, &status), server.log());
    for (auto& t : threads) t.join();
    MESSAGE("SIGKILL after " << acked_at_kill << " SENDACKs (" << ms_since(t0) << " ms into the burst); "
                             << acked_total.load() << " acked in all");
    CHECK(acked_at_kill >= kSenders * kEach / 2);
    CHECK(acked_at_kill < kSenders * kEach);  // the kill came during the burst
    uint32_t acked = 0;
    for (const BurstResult& r : results) {
        CHECK(r.refused == 0);
        acked += uint32_t(r.acked.size());
    }

    // After the restart: the log holds every acked message exactly once, gapless.
    const uint16_t http = server.http_port();
    json log = whole_log(http, "", "gburst", 2);
    const uint32_t stored = uint32_t(log.size());
    CHECK(stored >= acked);
    CHECK(seqs_of(log) == range(1, stored));
    std::map<std::string, std::pair<int64_t, uint32_t>> by_cmn;
    std::set<int64_t> ids;
    for (const json& m : log) {
        CHECK_MESSAGE(by_cmn.emplace(m["client_msg_no"].get<std::string>(),
                                     std::pair{m["message_id"].get<int64_t>(), m["message_seq"].get<uint32_t>()})
                          .second,
                      "stored twice: " << m["client_msg_no"]);
        CHECK(ids.insert(m["message_id"].get<int64_t>()).second);
    }
    size_t missing = 0, mismatched = 0;
    for (int i = 0; i < kSenders; ++i) {
        for (const auto& [k, id_seq] : results[i].acked) {
            auto it = by_cmn.find(burst_cmn(i, k));
            if (it == by_cmn.end()) {
                ++missing;
            } else if (it->second != id_seq) {
                ++mismatched;
            }
        }
    }
    CHECK_MESSAGE(missing == 0, missing << " acked messages lost");
    CHECK_MESSAGE(mismatched == 0, mismatched << " acked messages stored with another id or seq");
    if (!log.empty()) {
        const json& m = log.back();
        CHECK(m["channel_id"] == "gburst");
        CHECK(unb64(m["payload"]).rfind("burst ", 0) == 0);
    }

    // A new SEND continues after the highest stored seq.
    ChatClient fresh = online(server, "burster0", 4);
    proto::SendackPacket next = send_acked(fresh, "gburst", 2, "after the crash", 1, "after-crash-1");
    CHECK(next.reason_code == 1);
    CHECK(next.message_seq == stored + 1);
    CHECK(ids.count(next.message_id) == 0);

    // The clients resend what was never acked (DUP): stored ones are answered
    // with their id and seq, the others are stored now; acked ones resent are
    // answered with their first id and seq (the dedupe window survives).
    std::vector<ChatClient> again;
    for (int i = 0; i < kSenders; ++i) again.push_back(online(server, uids[i], 4, 1));
    uint32_t expected_seq = stored + 1;
    size_t resend_wrong = 0, resent = 0;
    for (int i = 0; i < kSenders; ++i) {
        std::vector<uint32_t> todo;
        for (uint32_t k = 0; k < results[i].written; ++k)
            if (!results[i].acked.count(k)) todo.push_back(k);
        // A few acked ones too.
        for (auto it = results[i].acked.begin(); it != results[i].acked.end() && todo.size() < 2000; std::advance(it, 1))
            if (it->first % 97 == 0) todo.push_back(it->first);
        // Pipelined; the SENDACKs come in the order of the SENDs.
        std::vector<uint8_t> bytes;
        for (uint32_t k : todo) {
            auto one = again[i].build_send("gburst", 2, burst_text(i, k), k, burst_cmn(i, k), 0x08);
            bytes.insert(bytes.end(), one.begin(), one.end());
        }
        REQUIRE(again[i].raw().send_bytes(bytes));
        for (uint32_t k : todo) {
            auto ack = again[i].read_sendack(10000);
            REQUIRE(ack);
            CHECK(ack->client_seq == k);
            ++resent;
            if (ack->reason_code != 1) {
                ++resend_wrong;
                continue;
            }
            auto stored_it = by_cmn.find(burst_cmn(i, k));
            if (stored_it != by_cmn.end()) {
                if (stored_it->second != std::pair{ack->message_id, ack->message_seq}) ++resend_wrong;
            } else if (ack->message_seq != ++expected_seq) {
                ++resend_wrong;
            }
        }
    }
    CHECK_MESSAGE(resend_wrong == 0, resend_wrong << " of " << resent << " resends answered wrongly");
    json after = whole_log(http, "", "gburst", 2);
    CHECK(seqs_of(after) == range(1, expected_seq));
    std::set<std::string> cmns;
    for (const json& m : after) CHECK_MESSAGE(cmns.insert(m["client_msg_no"].get<std::string>()).second, m["client_msg_no"]);
    for (ChatClient& c : again) c.raw().close();
}

// ---- 10 ----

TEST_CASE("messaging: fan-out to a 1000-member group does not stall another client's PINGs") {
    ImServer server({"--workers", "2"});
    REQUIRE_MESSAGE(server.started(), server.log());
    constexpr int kMembers = 1000;
    constexpr uint32_t kMessages = 30;
    std::vector<std::string> uids;
    for (int i = 0; i < kMembers; ++i) uids.push_back("fan" + std::to_string(i));
    uids.push_back("fanner");
    post(server.http_port(), "/channel", {{"channel_id", "g1000"}, {"channel_type", 2}, {"subscribers", uids}});
    std::vector<ChatClient> members;
    members.reserve(kMembers);
    for (int i = 0; i < kMembers; ++i) members.push_back(online(server, uids[i], 2));
    ChatClient sender = online(server, "fanner", 4);
    ChatClient pinger = online(server, "pinger", 4);

    std::atomic<bool> stop{false};
    std::atomic<int64_t> max_rtt_us{0};
    std::atomic<int> pongs{0}, lost{0};
    std::thread ping_thread([&] {
        while (!stop.load()) {
            auto t = Clock::now();
            if (!pinger.ping() || !pinger.read_pong(5000)) {
                lost.fetch_add(1);
                return;
            }
            const int64_t us = duration_cast<microseconds>(Clock::now() - t).count();
            if (us > max_rtt_us.load()) max_rtt_us.store(us);
            pongs.fetch_add(1);
            std::this_thread::sleep_for(milliseconds(1));
        }
    });
    std::this_thread::sleep_for(milliseconds(50));
    for (uint32_t k = 0; k < kMessages; ++k)
        REQUIRE(sender.send_message("g1000", 2, "to all #" + std::to_string(k), k, "fan-" + std::to_string(k)));
    std::vector<int64_t> ids;
    for (uint32_t k = 0; k < kMessages; ++k) {
        auto ack = sender.read_sendack(10000);
        REQUIRE(ack);
        CHECK(ack->reason_code == 1);
        CHECK(ack->message_seq == k + 1);
        ids.push_back(ack->message_id);
    }
    // Read every member (the fan-out runs meanwhile; the pinger keeps pinging).
    size_t complete = 0;
    const auto deadline = Clock::now() + seconds(30);
    for (int i = 0; i < kMembers; ++i) {
        uint32_t n = 0;
        bool in_order = true;
        while (n < kMessages) {
            auto r = members[i].read_recv(std::min(5000, left_ms(deadline)));
            if (!r) break;
            in_order &= r->message_seq == n + 1 && r->message_id == ids[n] && r->channel_id == "g1000";
            ++n;
        }
        if (n == kMessages && in_order) ++complete;
    }
    stop = true;
    ping_thread.join();
    CHECK(complete == kMembers);
    CHECK(lost == 0);
    CHECK(pongs > 0);
    MESSAGE("PONG round trip during the fan-out of " << kMessages << " x " << kMembers << " RECVs: max "
                                                     << max_rtt_us.load() / 1000.0 << " ms over " << pongs.load()
                                                     << " PINGs");
    CHECK(max_rtt_us.load() < 1000000);
}

// ---- 12 ----

TEST_CASE("messaging: a bad MsgKey gets reason 8 with a message id; an undecryptable payload reason 9") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    for (uint8_t version : {uint8_t(4), uint8_t(3)}) {
        CAPTURE(int(version));
        ChatClient alice = online(server, "alice", version);
        ChatClient bob = online(server, "bob", 4);

        // A MsgKey that does not match: flip one hex digit of a valid SEND's.
        std::vector<uint8_t> bytes = alice.build_send("bob", 1, "tampered", 11, "bad-key");
        REQUIRE(!bytes.empty());
        proto::Packet packet;
        proto::SplitResult split = proto::split_frame(bytes, 1u << 20);
        REQUIRE(split.status == proto::SplitStatus::Complete);
        REQUIRE(proto::decode(split.frame, version, packet) == proto::DecodeError::None);
        const std::string key(std::get<proto::SendPacket>(packet).msg_key);
        REQUIRE(key.size() == 32);
        auto at = std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
        REQUIRE(at != bytes.end());
        *at = *at == '0' ? '1' : '0';
        REQUIRE(alice.raw().send_bytes(bytes));
        auto ack = alice.read_sendack();
        REQUIRE(ack);
        CHECK(ack->reason_code == 8);
        CHECK(ack->message_id != 0);
        CHECK(ack->message_seq == 0);
        CHECK(ack->client_seq == 11);

        // A valid MsgKey over a payload that does not decrypt: not base64,
        // not whole AES blocks, and two blocks whose padding is wrong under
        // this session's key (a random key gives any fixed blocks valid
        // padding about once in 256 sessions: pick ones that do not).
        std::vector<std::string> garbages = {"not base64 at all!", b64(std::string(15, 'x'))};
        for (int fill = 0x7f; garbages.size() < 3; --fill) {
            const std::string blocks = b64(std::string(32, char(fill)));
            std::string decrypted;
            if (!proto::crypto::Cipher().open_payload(alice.session_key(), blocks, decrypted)) garbages.push_back(blocks);
        }
        for (const std::string& garbage : garbages) {
            CAPTURE(garbage);
            proto::SendPacket s;
            s.client_seq = 12;
            s.client_msg_no = "bad-payload";
            s.channel_id = "bob";
            s.channel_type = 1;
            s.payload = garbage;
            std::string sign;
            proto::crypto::append_send_sign(s, sign);
            proto::crypto::Cipher cipher;
            char msg_key[32];
            cipher.msg_key(alice.session_key(), sign, msg_key);
            s.msg_key = std::string_view(msg_key, 32);
            std::string ignored;
            CHECK_FALSE(cipher.open_payload(alice.session_key(), garbage, ignored));
            REQUIRE(alice.raw().send_packet(s, version));
            auto bad = alice.read_sendack();
            REQUIRE(bad);
            CHECK(bad->reason_code == 9);
            CHECK(bad->message_seq == 0);
            CHECK(bad->client_seq == 12);
        }

        // Nothing of it was delivered or stored; the connection still works.
        CHECK(quiet(bob, 200));
        proto::SendackPacket good = send_acked(alice, "bob", 1, "fine", 13, "good-" + std::to_string(version));
        CHECK(good.reason_code == 1);
        auto r = bob.read_recv();
        REQUIRE(r);
        CHECK(r->payload == "fine");
        CHECK(r->message_id == good.message_id);
        json log = history(server.http_port(), "alice", "bob", 1, 0, 0, 100, 1);
        for (const json& m : log["messages"]) CHECK(m["client_msg_no"].get<std::string>().rfind("good-", 0) == 0);
    }
}

// ---- more of §5, §6, §9 ----

TEST_CASE("messaging: header flags (NoPersist, RedDot relayed; DUP not), self-chat, empty and large payloads") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    ChatClient alice = online(server, "alice", 4);
    ChatClient bob4 = online(server, "bob", 4, 0);
    ChatClient bob2 = online(server, "bob", 2, 1);

    // NoPersist: an id, no seq, delivered, not stored.
    proto::SendackPacket np = send_acked(alice, "bob", 1, "volatile", 1, "np-1", 0x01);
    CHECK(np.reason_code == 1);
    CHECK(np.message_id > 0);
    CHECK(np.message_seq == 0);
    for (ChatClient* c : {&bob4, &bob2}) {
        auto r = c->read_recv();
        REQUIRE(r);
        CHECK(r->flags == 0x01);
        CHECK(r->message_seq == 0);
        CHECK(r->payload == "volatile");
    }
    // RedDot relayed, DUP not (a first send with DUP set is simply a message).
    proto::SendackPacket rd = send_acked(alice, "bob", 1, "red", 2, "rd-1", 0x02 | 0x08);
    CHECK(rd.reason_code == 1);
    CHECK(rd.message_seq == 1);
    for (ChatClient* c : {&bob4, &bob2}) {
        auto r = c->read_recv();
        REQUIRE(r);
        CHECK(r->flags == 0x02);
        CHECK(r->message_seq == 1);
    }
    json log = history(http, "alice", "bob", 1, 0, 0, 100, 1);
    REQUIRE(log["messages"].size() == 1);
    CHECK(log["messages"][0]["header"]["red_dot"] == 1);
    CHECK(log["messages"][0]["header"]["no_persist"] == 0);

    // Empty payload.
    proto::SendackPacket empty = send_acked(alice, "bob", 1, "", 3, "empty-1");
    CHECK(empty.reason_code == 1);
    for (ChatClient* c : {&bob4, &bob2}) {
        auto r = c->read_recv();
        REQUIRE(r);
        CHECK(r->payload.empty());
        CHECK(r->message_id == empty.message_id);
    }

    // Self-chat: stored under u@u; the sender's other device gets it, named by the uid itself.
    ChatClient alice_web = online(server, "alice", 2, 1);
    proto::SendackPacket self = send_acked(alice, "alice", 1, "note to self", 4, "self-1");
    CHECK(self.reason_code == 1);
    CHECK(self.message_seq == 1);
    auto r = alice_web.read_recv();
    REQUIRE(r);
    CHECK(r->channel_id == "alice");
    CHECK(r->from_uid == "alice");
    CHECK(r->payload == "note to self");
    CHECK(quiet(alice, 150));
    CHECK(quiet(bob4, 0));
    CHECK(history(http, "alice", "alice", 1, 0, 0, 10, 1)["messages"].size() == 1);
}

// A message may be as large as --max-packet allows (1 MiB by default), and a
// v4 receiver's RECV of it is a third larger again (base64). Such a RECV is
// larger than --send-cap (64 KiB by default) on its own: it must still be
// delivered to a client that reads, not cut as a "slow consumer".
TEST_CASE("messaging: payloads larger than one send chunk and than --send-cap reach v2 and v4 receivers") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    ChatClient alice = online(server, "alice", 4);
    ChatClient bob4 = online(server, "bob", 4, 0);
    ChatClient bob2 = online(server, "bob", 2, 1);
    uint32_t client_seq = 0;
    for (size_t size : {size_t(20000), size_t(60000), size_t(70000), size_t(300000)}) {
        CAPTURE(size);
        std::string big(size, '\0');
        for (size_t i = 0; i < size; ++i) big[i] = char((i * 131 + i / 7) & 0xff);
        proto::SendackPacket ack = send_acked(alice, "bob", 1, big, ++client_seq, "big-" + std::to_string(size));
        CHECK(ack.reason_code == 1);
        for (ChatClient* c : {&bob4, &bob2}) {
            CAPTURE(int(c->version()));
            if (c->raw().fd() < 0) continue;  // closed at an earlier size
            auto r = c->read_recv(5000);
            if (!r) {
                const bool closed = c->raw().wait_closed(0);
                const std::string why = closed ? "closed" : "left open";
                FAIL_CHECK("no RECV; the receiving connection was " << why);
                c->raw().close();
                continue;
            }
            CHECK(r->payload.size() == size);
            CHECK(r->payload == big);
        }
        // Stored whole, and readable through the history API (limit 1: it cannot ask for less).
        int status = 0;
        json m = http_json(http, "POST", "/channel/messagesync",
                           {{"login_uid", "bob"}, {"channel_id", "alice"}, {"channel_type", 1},
                            {"min_message_seq", ack.message_seq - 1}, {"limit", 1}, {"reverse", 1}}, &status);
        CHECK_MESSAGE(status == 200, m.dump().substr(0, 300));
        if (status == 200 && m["messages"].size() == 1) CHECK(unb64(m["messages"][0]["payload"]) == big);
    }
}

TEST_CASE("messaging: in-flight RECVs: --max-inflight evicts the oldest; a closed session's are dropped") {
    ImServer server({"--msg-timeout-ms", "300", "--retry-scan-ms", "50", "--max-deliveries", "3", "--max-inflight", "2"});
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient alice = online(server, "alice", 4);

    SUBCASE("four unacknowledged RECVs, room for two: only the newest two come again") {
        ChatClient bob = online(server, "bob", 2);
        std::vector<int64_t> ids;
        for (uint32_t i = 0; i < 4; ++i) {
            proto::SendackPacket ack = send_acked(alice, "bob", 1, "m" + std::to_string(i), i, "ev-" + std::to_string(i));
            REQUIRE(ack.reason_code == 1);
            ids.push_back(ack.message_id);
        }
        std::map<int64_t, int> deliveries;
        while (auto r = bob.read_recv(1200)) ++deliveries[r->message_id];
        CHECK(deliveries[ids[0]] == 1);
        CHECK(deliveries[ids[1]] == 1);
        CHECK(deliveries[ids[2]] == 3);
        CHECK(deliveries[ids[3]] == 3);
    }

    SUBCASE("the receiver closes without RECVACK: its next session gets no redelivery") {
        {
            ChatClient bob = online(server, "bob", 4);
            REQUIRE(send_acked(alice, "bob", 1, "before the close", 1, "cl-1").reason_code == 1);
            REQUIRE(bob.read_recv());
        }
        ChatClient bob = online(server, "bob", 4);
        CHECK(quiet(bob, 900));
    }

    SUBCASE("a kicked receiver's RECVs are not sent to the session that replaced it") {
        ChatClient bob = online(server, "bob", 4);
        REQUIRE(send_acked(alice, "bob", 1, "to the old session", 1, "kk-1").reason_code == 1);
        REQUIRE(bob.read_recv());
        ChatClient bob_new = online(server, "bob", 4);
        CHECK(quiet(bob_new, 900));
        auto bye = bob.read_any(1000);
        REQUIRE(bye);
        CHECK(bye->type() == proto::PacketType::Disconnect);
        CHECK(quiet(bob, 300));
    }
}

TEST_CASE("messaging: SyncOnce to a group: each member's RECV and queue copy carry that member's own queue seq") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    post(http, "/channel", {{"channel_id", "gs"}, {"channel_type", 2}, {"subscribers", {"alice", "bob", "carol"}}});
    ChatClient alice = online(server, "alice", 4);
    ChatClient bob = online(server, "bob", 2);
    ChatClient carol = online(server, "carol", 4);
    // bob's queue is two ahead of carol's.
    for (int i = 0; i < 2; ++i) {
        REQUIRE(send_acked(alice, "bob", 1, "only bob " + std::to_string(i), 10 + i, "ob-" + std::to_string(i), 0x04)
                    .reason_code == 1);
        auto r = bob.read_recv();
        REQUIRE(r);
        CHECK(r->message_seq == uint32_t(i + 1));
    }
    proto::SendackPacket ack = send_acked(alice, "gs", 2, "to the group once", 20, "gs-1", 0x04);
    REQUIRE(ack.reason_code == 1);
    CHECK(ack.message_seq == 0);
    auto at_bob = bob.read_recv();
    auto at_carol = carol.read_recv();
    REQUIRE(at_bob);
    REQUIRE(at_carol);
    CHECK(at_bob->message_seq == 3);
    CHECK(at_carol->message_seq == 1);
    CHECK(at_bob->message_id == ack.message_id);
    CHECK(at_carol->message_id == ack.message_id);
    CHECK(at_bob->channel_id == "gs");
    CHECK(at_carol->payload == "to the group once");
    json qb = post(http, "/message/sync", {{"uid", "bob"}, {"message_seq", 2}, {"limit", 10}});
    REQUIRE(qb.size() == 1);
    CHECK(qb[0]["message_seq"] == 3);
    CHECK(qb[0]["channel_id"] == "gs");
    json qc = post(http, "/message/sync", {{"uid", "carol"}, {"message_seq", 0}, {"limit", 10}});
    REQUIRE(qc.size() == 1);
    CHECK(qc[0]["message_seq"] == 1);
    CHECK(qc[0]["message_id"] == ack.message_id);
    CHECK(history(http, "", "gs", 2, 0, 0, 10, 1)["messages"].empty());
    CHECK(quiet(alice, 100));
}
