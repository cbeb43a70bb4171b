// The HTTP API (SERVER.md §16.1-16.3) against the real server, at the socket
// level: errors and status codes, the bearer secret, tokens and the kick they
// cause, injected messages, online status, channel membership and lists as
// they judge SENDs (§5 step 3-4, §7.4-7.5), channel deletion.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <regex>
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

// A JSON error body as §16.0 has it: {"msg": "...", "status": N}.
void check_error_body(const HttpResult& r, int status) {
    CHECK(r.status == status);
    json body = json::parse(r.body, nullptr, false);
    REQUIRE_MESSAGE(body.is_object(), "not a JSON object: " << r.body);
    CHECK(body["status"] == status);
    CHECK(body["msg"].is_string());
}

// True when `bytes` begin with a whole response (headers and Content-Length body).
bool has_whole_response(const std::string& bytes) {
    const size_t end = bytes.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    const size_t at = bytes.find("Content-Length: ");
    const size_t length = at != std::string::npos && at < end ? std::stoul(bytes.substr(at + 16)) : 0;
    return bytes.size() >= end + 4 + length;
}

// Writes `request` as is and returns what comes back until EOF or the
// timeout, or with `one_response` until a whole response is in (a kept-alive
// connection is not waited on).
std::string raw_http(uint16_t port, const std::string& request, int timeout_ms = 5000, bool one_response = false) {
    Client c;
    if (!c.connect(port)) return {};
    if (!c.send_bytes(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(request.data()), request.size())))
        return {};
    std::string out;
    const auto deadline = Clock::now() + milliseconds(timeout_ms);
    for (;;) {
        const int64_t left = duration_cast<milliseconds>(deadline - Clock::now()).count();
        pollfd p{c.fd(), POLLIN, 0};
        if (left <= 0 || poll(&p, 1, int(left)) <= 0) break;
        char buf[4096];
        const ssize_t n = recv(c.fd(), buf, sizeof(buf), 0);
        if (n <= 0) break;
        out.append(buf, size_t(n));
        if (one_response && has_whole_response(out)) break;
    }
    return out;
}

// Sends and returns the SENDACK's reason (REQUIREs the SENDACK).
uint8_t send_reason(ChatClient& c, const std::string& channel_id, uint8_t type, const std::string& text,
                    proto::SendackPacket* out = nullptr) {
    static uint32_t client_seq = 0;
    ++client_seq;
    CAPTURE(channel_id);
    const proto::SendackPacket ack =
        send_acked(c, channel_id, type, text, client_seq, "cmn-" + c.uid() + "-" + std::to_string(client_seq));
    if (out) *out = ack;
    return ack.reason_code;
}

// Sends `count` person messages to bob in one write (client_msg_no
// PREFIX-i, setting `flag_of(i)`) and requires a SENDACK of success for each.
template <typename FlagOf>
void send_acked_burst(ChatClient& sender, uint32_t count, const std::string& text, const std::string& prefix,
                      FlagOf flag_of) {
    std::vector<uint8_t> bytes;
    for (uint32_t i = 1; i <= count; ++i) {
        auto one = sender.build_send("bob", 1, text, i, prefix + std::to_string(i), flag_of(i));
        bytes.insert(bytes.end(), one.begin(), one.end());
    }
    REQUIRE(sender.raw().send_bytes(bytes));
    for (uint32_t i = 1; i <= count; ++i) {
        auto ack = sender.read_sendack();
        REQUIRE(ack);
        REQUIRE(ack->reason_code == 1);
    }
}

}  // namespace

// ---- 11: errors ----

TEST_CASE("api: bad requests at the socket level: 400 with a JSON error, 404, 405, 413") {
    ImServer server({"--http-body-limit", "1024"});
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();

    HttpResult health = http_request(http, "GET", "/health", "");
    CHECK(health.status == 200);
    CHECK(health.headers["content-type"].find("application/json") != std::string::npos);

    for (const std::string& body : {std::string("{bad json"), std::string(""), std::string("[1,2]"),
                                    std::string("\"uid\""), std::string("{\"uid\":\"a\",\"token\":\"b\"} trailing"),
                                    std::string("{\"uid\":\"a\",\"token\":\"b\",}")}) {
        CAPTURE(body);
        check_error_body(http_request(http, "POST", "/user/token", body), 400);
    }
    check_error_body(http_request(http, "POST", "/user/onlinestatus", R"({"uids":["a"]})"), 400);
    check_error_body(http_request(http, "POST", "/user/onlinestatus", R"([1])"), 400);

    CHECK(http_request(http, "POST", "/no/such/path", "{}").status == 404);
    CHECK(http_request(http, "GET", "/nope", "").status == 404);
    CHECK(http_request(http, "POST", "/user/token/", "{}").status == 404);
    HttpResult wrong = http_request(http, "GET", "/user/token", "");
    CHECK(wrong.status == 405);
    CHECK(wrong.headers["allow"] == "POST");
    CHECK(http_request(http, "PUT", "/channel", "{}").status == 405);
    HttpResult post_health = http_request(http, "POST", "/health", "{}");
    CHECK(post_health.status == 405);
    CHECK(post_health.headers["allow"] == "GET");

    // The body limit: 1024 bytes pass, 1025 do not.
    std::string at_limit = R"({"uid":"padme","token":"x"})";
    at_limit.resize(1024, ' ');
    CHECK(http_request(http, "POST", "/user/token", at_limit).status == 200);
    std::string over = at_limit + " ";
    HttpResult big = http_request(http, "POST", "/user/token", over);
    check_error_body(big, 413);
    // Refused on the Content-Length alone: the body is never sent.
    const std::string huge = raw_http(http, "POST /user/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                            "Content-Length: 100000\r\n\r\n");
    CHECK_MESSAGE(huge.rfind("HTTP/1.1 413", 0) == 0, huge);
    CHECK(http_request(http, "GET", "/health", "").status == 200);  // still serving

    // Each endpoint's own validation.
    struct Case {
        const char* path;
        json body;
    };
    const Case cases[] = {
        {"/user/token", json::object()},
        {"/user/token", {{"uid", "alice"}}},
        {"/user/token", {{"token", "t"}}},
        {"/user/token", {{"uid", 7}, {"token", "t"}}},
        {"/user/token", {{"uid", "alice"}, {"token", "t"}, {"device_flag", 300}}},
        {"/user/token", {{"uid", "alice"}, {"token", "t"}, {"device_flag", 1.5}}},
        {"/user/token", {{"uid", "a@b"}, {"token", "t"}}},
        {"/systemuids_add", {{"uids", "alice"}}},
        {"/systemuids_remove", {{"uids", {1, 2}}}},
        {"/channel", {{"channel_type", 2}}},
        {"/channel", {{"channel_id", "g"}, {"channel_type", 0}}},
        {"/channel", {{"channel_id", "g"}, {"channel_type", 1}}},
        {"/channel", {{"channel_id", "g"}, {"channel_type", 2}, {"subscribers", {1}}}},
        {"/channel/subscriber_add", {{"channel_id", "g"}, {"channel_type", 2}}},
        {"/channel/subscriber_add", {{"channel_id", "g"}, {"channel_type", 1}, {"subscribers", {"a"}}}},
        {"/channel/subscriber_add", {{"channel_type", 2}, {"subscribers", {"a"}}}},
        {"/channel/subscriber_remove", {{"channel_id", "g"}, {"channel_type", 2}}},
        {"/channel/delete", json::object()},
        {"/channel/blacklist_add", {{"channel_id", "g"}, {"channel_type", 0}, {"uids", {"a"}}}},
        {"/channel/blacklist_add", {{"channel_id", "g"}, {"channel_type", 2}}},
        {"/channel/blacklist_remove", {{"channel_id", "g"}, {"channel_type", 2}, {"uids", json::array()}}},
        {"/channel/whitelist_add", {{"channel_type", 2}, {"uids", {"a"}}}},
        {"/channel/whitelist_set", {{"channel_type", 2}}},
        {"/channel/blacklist_set", {{"channel_id", "g"}, {"uids", "a"}}},
        {"/message/send", {{"from_uid", "a"}, {"channel_id", "bob"}, {"channel_type", 1}, {"payload", ""}}},
        {"/message/send", {{"from_uid", "a"}, {"channel_id", "bob"}, {"channel_type", 1}}},
        {"/message/send", {{"from_uid", "a"}, {"channel_id", "bob"}, {"channel_type", 1}, {"payload", "!!notb64"}}},
        {"/message/send", {{"from_uid", "a"}, {"payload", b64("x")}}},
        {"/message/send", {{"channel_id", "bob"}, {"channel_type", 1}, {"payload", b64("x")}, {"header", 1}}},
        {"/message/sync", {{"message_seq", 0}}},
        {"/message/sync", {{"uid", "a"}, {"limit", -1}}},
        {"/message/syncack", {{"uid", "a"}}},
        {"/message/syncack", {{"last_message_seq", 3}}},
        {"/channel/messagesync", {{"login_uid", "a"}, {"channel_type", 1}}},
        {"/channel/messagesync", {{"channel_id", "g"}, {"channel_type", 2}, {"limit", -5}}},
        {"/channel/messagesync", {{"channel_id", "g"}, {"channel_type", 2}, {"min_message_seq", -1}}},
    };
    for (const Case& c : cases) {
        CAPTURE(c.path);
        CAPTURE(c.body.dump());
        check_error_body(http_request(http, "POST", c.path, c.body.dump()), 400);
    }
    // And the same endpoints with good input.
    post(http, "/user/token", {{"uid", "alice"}, {"token", "t"}, {"device_flag", 1}});
    post(http, "/systemuids_add", {{"uids", {"sys"}}});
    post(http, "/systemuids_remove", {{"uids", {"sys"}}});
    post(http, "/channel", {{"channel_id", "g"}, {"channel_type", 2}, {"subscribers", {"a"}}});
    post(http, "/channel/subscriber_add", {{"channel_id", "g"}, {"subscribers", {"b"}}});
    post(http, "/channel/subscriber_remove", {{"channel_id", "g"}, {"channel_type", 2}, {"subscribers", {"b"}}});
    post(http, "/channel/blacklist_set", {{"channel_id", "g"}, {"channel_type", 2}, {"uids", json::array()}});
    post(http, "/channel/whitelist_set", {{"channel_id", "g"}, {"channel_type", 2}});
    CHECK(post(http, "/user/onlinestatus", json::array()) == json::array());
    post(http, "/message/send", {{"from_uid", "a"}, {"channel_id", "g"}, {"channel_type", 2}, {"payload", b64("x")}});
    CHECK(post(http, "/message/sync", {{"uid", "a"}, {"limit", 10}}) == json::array());
    post(http, "/message/syncack", {{"uid", "a"}, {"last_message_seq", 3}});
    json page = post(http, "/channel/messagesync", {{"channel_id", "g"}, {"channel_type", 2}, {"limit", 10}});
    CHECK(page["messages"].size() == 1);
    post(http, "/channel/delete", {{"channel_id", "g"}, {"channel_type", 2}});
}

TEST_CASE("api: with --http-secret every request needs the bearer: 401 without or wrong, 200 with") {
    ImServer server({"--http-secret", "s3cret-Value"});
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    check_error_body(http_request(http, "GET", "/health", ""), 401);
    check_error_body(http_request(http, "GET", "/health", "", "wrong"), 401);
    check_error_body(http_request(http, "GET", "/health", "", "s3cret-Valu"), 401);
    check_error_body(http_request(http, "GET", "/health", "", "s3cret-Value2"), 401);
    CHECK(http_request(http, "GET", "/health", "", "s3cret-Value").status == 200);
    // Authorization is checked before anything else is told.
    CHECK(http_request(http, "POST", "/no/such", "{}").status == 401);
    CHECK(http_request(http, "POST", "/user/token", R"({"uid":"a","token":"t"})").status == 401);
    CHECK(http_request(http, "POST", "/user/token", R"({"uid":"a","token":"t"})", "s3cret-Value").status == 200);
    CHECK(http_request(http, "POST", "/user/onlinestatus", "[]", "s3cret-Value").status == 200);
}

// ---- 9 ----

TEST_CASE("api: /user/token refuses '@'; a new token kicks the session of that uid and device flag") {
    ImServer server({"--kick-delay-ms", "600"}, "", /*test_mode=*/false);
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    post(http, "/user/token", {{"uid", "al@ce"}, {"token", "x"}}, 400);
    post(http, "/user/token", {{"uid", "@"}, {"token", "x"}}, 400);
    set_token(server.http_port(), "alice", "t1", 0);
    set_token(server.http_port(), "alice", "w1", 1);

    // Without a stored token no login passes, not even with an empty one (S1).
    {
        ChatClient nobody;
        REQUIRE(nobody.connect(server.port()));
        CHECK(nobody.login("nobody", "", 4, 0).reason == 2);
        CHECK(nobody.raw().wait_closed(2000));
    }
    ChatClient app = online(server, "alice", 4, 0, "t1");
    ChatClient web = online(server, "alice", 2, 1, "w1");
    {
        ChatClient wrong_flag;
        REQUIRE(wrong_flag.connect(server.port()));
        CHECK(wrong_flag.login("alice", "t1", 4, 1).reason == 2);  // w1 is the WEB token
    }

    auto t0 = Clock::now();
    set_token(server.http_port(), "alice", "t2", 0);
    auto bye = app.read_any(3000);
    REQUIRE_MESSAGE(bye, "no DISCONNECT after the new token");
    REQUIRE(bye->type() == proto::PacketType::Disconnect);
    CHECK(std::get<proto::DisconnectPacket>(bye->packet).reason_code == 0);
    CHECK(!std::get<proto::DisconnectPacket>(bye->packet).reason.empty());
    // It is out at once (its PING goes unanswered) and closed after the kick delay.
    REQUIRE(app.ping());
    std::vector<Received> seen;
    CHECK(app.raw().wait_closed(3000, &seen));
    CHECK(seen.empty());
    const int64_t closed_after = ms_since(t0);
    CHECK_MESSAGE(closed_after >= 450, "closed " << closed_after << " ms after the new token");
    // The WEB session of the same uid is not affected.
    REQUIRE(web.ping());
    CHECK(web.read_pong(2000));

    {
        ChatClient old_token;
        REQUIRE(old_token.connect(server.port()));
        CHECK(old_token.login("alice", "t1", 4, 0).reason == 2);
        CHECK(old_token.raw().wait_closed(2000));
    }
    ChatClient again = online(server, "alice", 3, 0, "t2");
    REQUIRE(again.ping());
    CHECK(again.read_pong(2000));
    std::this_thread::sleep_for(milliseconds(200));  // the old session is gone, the new one stays
    REQUIRE(again.ping());
    CHECK(again.read_pong(2000));
    CHECK(post(http, "/user/onlinestatus", json{"alice"}) == json{"alice"});

    // Tokens are durable.
    REQUIRE(server.restart(SIGTERM));
    {
        ChatClient old_token;
        REQUIRE(old_token.connect(server.port()));
        CHECK(old_token.login("alice", "t1", 4, 0).reason == 2);
    }
    online(server, "alice", 4, 0, "t2");
    online(server, "alice", 4, 1, "w1");
}

// ---- 11: /message/send ----

TEST_CASE("api: /message/send injects messages: to a person from from_uid, and to a temporary channel") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    ChatClient app = online(server, "alice", 4, 0);
    ChatClient web = online(server, "alice", 2, 1);
    ChatClient bob = online(server, "bob", 4);
    ChatClient carol = online(server, "carol", 2);
    ChatClient dave = online(server, "dave", 4);
    ChatClient erin = online(server, "erin", 4);

    // Person, from alice: bob and every device of alice (sent "from device 2").
    const json answer = post(http, "/message/send",
                             {{"header", {{"red_dot", 1}, {"no_persist", 0}, {"sync_once", 0}}},
                              {"from_uid", "alice"},
                              {"channel_id", "bob"},
                              {"channel_type", 1},
                              {"payload", b64("injected \xe2\x9c\x93")}});
    CHECK(answer["status"] == 200);
    auto at_bob = bob.read_recv();
    REQUIRE(at_bob);
    // The answer says what the message became (WuKongIM's answer).
    CHECK(answer["data"]["message_id"] == at_bob->message_id);
    CHECK(answer["data"]["message_seq"] == at_bob->message_seq);
    CHECK(answer["data"]["client_msg_no"] == at_bob->client_msg_no);
    CHECK(at_bob->channel_id == "alice");
    CHECK(at_bob->from_uid == "alice");
    CHECK(at_bob->channel_type == 1);
    CHECK(at_bob->payload == "injected \xe2\x9c\x93");
    CHECK(at_bob->message_seq == 1);
    CHECK((at_bob->flags & 0x02) != 0);
    CHECK(std::regex_match(at_bob->client_msg_no, std::regex("[0-9a-f]{32}")));
    for (ChatClient* c : {&app, &web}) {
        auto r = c->read_recv();
        REQUIRE_MESSAGE(r, "alice's device " << (c == &app ? "APP" : "WEB") << " got nothing");
        CHECK(r->channel_id == "bob");
        CHECK(r->from_uid == "alice");
        CHECK(r->payload == "injected \xe2\x9c\x93");
        CHECK(r->message_id == at_bob->message_id);
    }
    json log = whole_log(http, "bob", "alice", 1);
    REQUIRE(log.size() == 1);
    CHECK(log[0]["message_id"] == at_bob->message_id);
    CHECK(log[0]["client_msg_no"] == at_bob->client_msg_no);
    // A client SEND continues the same channel.
    proto::SendackPacket ack;
    CHECK(send_reason(app, "bob", 1, "and by hand", &ack) == 1);
    CHECK(ack.message_seq == 2);
    REQUIRE(bob.read_recv());
    REQUIRE(web.read_recv());

    // NoPersist: delivered, not stored.
    post(http, "/message/send",
         {{"header", {{"no_persist", 1}}}, {"client_msg_no", "api-np"}, {"from_uid", "alice"}, {"channel_id", "bob"},
          {"channel_type", 1}, {"payload", b64("volatile")}});
    auto np = bob.read_recv();
    REQUIRE(np);
    CHECK(np->payload == "volatile");
    CHECK(np->client_msg_no == "api-np");
    CHECK((np->flags & 0x01) != 0);
    CHECK(np->message_seq == 0);
    CHECK(whole_log(http, "bob", "alice", 1).size() == 2);
    REQUIRE(app.read_recv());
    REQUIRE(web.read_recv());

    // Empty channel_id with subscribers: a temporary channel of exactly those.
    post(http, "/message/send", {{"from_uid", "sys"}, {"subscribers", {"carol", "dave", "carol"}}, {"payload", b64("tmp hello")}});
    auto at_carol = carol.read_recv();
    auto at_dave = dave.read_recv();
    REQUIRE(at_carol);
    REQUIRE(at_dave);
    CHECK(std::regex_match(at_carol->channel_id, std::regex("[0-9a-f]{32}@tmp")));
    CHECK(at_dave->channel_id == at_carol->channel_id);
    CHECK(at_carol->channel_type == 2);
    CHECK(at_carol->from_uid == "sys");
    CHECK(at_carol->payload == "tmp hello");
    CHECK(at_dave->message_id == at_carol->message_id);
    CHECK(quiet(carol, 100));  // once, though listed twice
    // A client may SEND to the temporary channel now; its members get it.
    const std::string tmp = at_carol->channel_id;
    CHECK(send_reason(carol, tmp, 2, "reply in tmp") == 1);
    auto reply = dave.read_recv();
    REQUIRE(reply);
    CHECK(reply->channel_id == tmp);
    CHECK(reply->from_uid == "carol");
    CHECK(reply->payload == "reply in tmp");

    // An explicit receiver list replaces the channel's subscribers for this message.
    post(http, "/channel", {{"channel_id", "gx"}, {"channel_type", 2}, {"subscribers", {"carol"}}});
    post(http, "/message/send",
         {{"from_uid", "sys"}, {"channel_id", "gx"}, {"channel_type", 2}, {"subscribers", {"erin"}}, {"payload", b64("to erin")}});
    auto at_erin = erin.read_recv();
    REQUIRE(at_erin);
    CHECK(at_erin->channel_id == "gx");
    CHECK(at_erin->payload == "to erin");

    // Nobody else got anything.
    CHECK(quiet(bob, 150));
    CHECK(quiet(carol, 50));
    CHECK(quiet(dave, 50));
    CHECK(quiet(erin, 50));
    CHECK(quiet(app, 50));
    CHECK(quiet(web, 50));
}

// ---- 11: online status ----

TEST_CASE("api: /user/onlinestatus lists only uids with a live session") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    auto online_set = [&](const json& uids) {
        json r = post(http, "/user/onlinestatus", uids);
        REQUIRE(r.is_array());
        std::set<std::string> out;
        for (const json& u : r) out.insert(u.get<std::string>());
        return out;
    };
    auto wait_for = [&](const json& uids, const std::set<std::string>& expected) {
        std::set<std::string> got;
        auto t0 = Clock::now();
        while ((got = online_set(uids)) != expected && ms_since(t0) < 3000) std::this_thread::sleep_for(milliseconds(20));
        return got;
    };
    const json asked = {"alice", "bob", "zed"};
    CHECK(online_set(asked).empty());
    ChatClient app = online(server, "alice", 4, 0);
    ChatClient web = online(server, "alice", 2, 1);
    ChatClient bob = online(server, "bob", 1);
    CHECK(online_set(asked) == std::set<std::string>{"alice", "bob"});
    CHECK(online_set(json{"bob"}) == std::set<std::string>{"bob"});
    bob.raw().close();
    CHECK(wait_for(asked, {"alice"}) == std::set<std::string>{"alice"});
    app.raw().close();
    std::this_thread::sleep_for(milliseconds(100));
    CHECK(online_set(asked) == std::set<std::string>{"alice"});  // the WEB session is still there
    web.raw().close();
    CHECK(wait_for(asked, {}).empty());
}

// ---- 8 ----

TEST_CASE("api: person deny and allow lists judge the sender by the recipient's channel (§7.5); system uids pass") {
    ImServer server;  // test mode: person lists apply in every mode
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    ChatClient alice = online(server, "alice", 4);
    ChatClient bob = online(server, "bob", 4);
    ChatClient carol = online(server, "carol", 2);

    post(http, "/channel/blacklist_add", {{"channel_id", "bob"}, {"channel_type", 1}, {"uids", {"alice"}}});
    proto::SendackPacket ack;
    CHECK(send_reason(alice, "bob", 1, "blocked", &ack) == 11);
    CHECK(ack.message_id == 0);
    CHECK(ack.message_seq == 0);
    CHECK(quiet(bob, 150));
    CHECK(send_reason(bob, "alice", 1, "bob may still write", &ack) == 1);
    CHECK(ack.message_seq == 1);  // the refused SEND consumed no seq
    auto r = alice.read_recv();
    REQUIRE(r);
    CHECK(r->payload == "bob may still write");
    CHECK(send_reason(carol, "bob", 1, "carol is not listed") == 1);
    REQUIRE(bob.read_recv());

    // A system uid passes the deny list.
    post(http, "/systemuids_add", {{"uids", {"alice"}}});
    CHECK(send_reason(alice, "bob", 1, "as system") == 1);
    REQUIRE(bob.read_recv());
    post(http, "/systemuids_remove", {{"uids", {"alice"}}});
    CHECK(send_reason(alice, "bob", 1, "blocked again") == 11);

    post(http, "/channel/blacklist_remove", {{"channel_id", "bob"}, {"channel_type", 1}, {"uids", {"alice"}}});
    CHECK(send_reason(alice, "bob", 1, "unblocked") == 1);
    REQUIRE(bob.read_recv());

    // An allow list: only those on it may write.
    post(http, "/channel/whitelist_add", {{"channel_id", "bob"}, {"channel_type", 1}, {"uids", {"carol"}}});
    CHECK(send_reason(alice, "bob", 1, "not on the list") == 11);
    CHECK(send_reason(carol, "bob", 1, "on the list") == 1);
    REQUIRE(bob.read_recv());
    post(http, "/channel/whitelist_set", {{"channel_id", "bob"}, {"channel_type", 1}, {"uids", json::array()}});
    CHECK(send_reason(alice, "bob", 1, "list cleared") == 1);
    REQUIRE(bob.read_recv());
    post(http, "/channel/blacklist_set", {{"channel_id", "bob"}, {"channel_type", 1}, {"uids", {"alice", "carol"}}});
    CHECK(send_reason(alice, "bob", 1, "set") == 11);
    CHECK(send_reason(carol, "bob", 1, "set") == 11);
    post(http, "/channel/blacklist_set", {{"channel_id", "bob"}, {"channel_type", 1}, {"uids", json::array()}});
    CHECK(send_reason(carol, "bob", 1, "set cleared") == 1);
    REQUIRE(bob.read_recv());

    // Lists survive a restart (SERVER.md §17), system uids too.
    post(http, "/channel/blacklist_add", {{"channel_id", "bob"}, {"channel_type", 1}, {"uids", {"alice"}}});
    post(http, "/systemuids_add", {{"uids", {"carol"}}});
    post(http, "/channel/blacklist_add", {{"channel_id", "bob"}, {"channel_type", 1}, {"uids", {"carol"}}});
    REQUIRE(server.restart(SIGTERM));
    ChatClient alice2 = online(server, "alice", 4);
    ChatClient carol2 = online(server, "carol", 4);
    CHECK(send_reason(alice2, "bob", 1, "after restart") == 11);
    CHECK(send_reason(carol2, "bob", 1, "system after restart") == 1);

    // Test mode skips only the group checks: a group's deny list does not stop a SEND.
    post(server.http_port(), "/channel", {{"channel_id", "g"}, {"channel_type", 2}, {"subscribers", {"bob"}}});
    post(server.http_port(), "/channel/blacklist_add", {{"channel_id", "g"}, {"channel_type", 2}, {"uids", {"alice"}}});
    CHECK(send_reason(alice2, "g", 2, "test mode") == 1);
    CHECK(send_reason(alice2, "no-such-group", 2, "test mode") == 1);
    CHECK(send_reason(alice2, "0123456789abcdef0123456789abcdef@tmp", 2, "unknown tmp") == 3);
}

TEST_CASE("api: outside test mode: group membership, allow and deny lists, unknown channels, system uids") {
    ImServer server({}, "", /*test_mode=*/false);
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    for (const char* uid : {"alice", "bob", "carol", "mallory"}) set_token(server.http_port(), uid, std::string("tk-") + uid);
    ChatClient alice = online(server, "alice", 4, 0, "tk-alice");
    ChatClient bob = online(server, "bob", 2, 0, "tk-bob");
    ChatClient carol = online(server, "carol", 4, 0, "tk-carol");
    ChatClient mallory = online(server, "mallory", 4, 0, "tk-mallory");
    post(http, "/channel", {{"channel_id", "g1"}, {"channel_type", 2}, {"subscribers", {"alice", "bob", "carol"}}});

    CHECK(send_reason(alice, "g1", 2, "hello group") == 1);
    for (ChatClient* c : {&bob, &carol}) {
        auto r = c->read_recv();
        REQUIRE(r);
        CHECK(r->channel_id == "g1");
        CHECK(r->payload == "hello group");
    }
    proto::SendackPacket ack;
    CHECK(send_reason(mallory, "g1", 2, "not a member", &ack) == 11);
    CHECK(ack.message_seq == 0);
    CHECK(send_reason(mallory, "0123456789abcdef0123456789abcdef@tmp", 2, "x") == 3);
    CHECK(send_reason(mallory, "no-such-group", 2, "x") == 11);
    CHECK(send_reason(mallory, "no-such-group", 3, "x") == 11);

    // An allow list on the group.
    post(http, "/channel/whitelist_add", {{"channel_id", "g1"}, {"channel_type", 2}, {"uids", {"alice"}}});
    CHECK(send_reason(bob, "g1", 2, "not allowed") == 11);
    CHECK(send_reason(alice, "g1", 2, "allowed") == 1);
    // whitelist_set sets the allow list (S4): bob only.
    post(http, "/channel/whitelist_set", {{"channel_id", "g1"}, {"channel_type", 2}, {"uids", {"bob"}}});
    CHECK(send_reason(bob, "g1", 2, "bob allowed now") == 1);
    CHECK(send_reason(alice, "g1", 2, "alice not any more") == 11);
    post(http, "/channel/whitelist_set", {{"channel_id", "g1"}, {"channel_type", 2}});
    CHECK(send_reason(alice, "g1", 2, "no allow list") == 1);
    CHECK(send_reason(carol, "g1", 2, "no allow list") == 1);

    // A deny list on the group; a system uid passes it.
    post(http, "/channel/blacklist_add", {{"channel_id", "g1"}, {"channel_type", 2}, {"uids", {"carol"}}});
    CHECK(send_reason(carol, "g1", 2, "denied") == 11);
    post(http, "/systemuids_add", {{"uids", {"carol"}}});
    CHECK(send_reason(carol, "g1", 2, "as system") == 1);
    post(http, "/systemuids_remove", {{"uids", {"carol"}}});
    CHECK(send_reason(carol, "g1", 2, "denied again") == 11);
    // POST /channel replaces the members and keeps the lists.
    post(http, "/channel", {{"channel_id", "g1"}, {"channel_type", 2}, {"subscribers", {"carol", "mallory"}}});
    CHECK(send_reason(carol, "g1", 2, "still denied") == 11);
    CHECK(send_reason(mallory, "g1", 2, "member now") == 1);
    CHECK(send_reason(alice, "g1", 2, "not a member now") == 11);

    // A channel with a parent (bind) counts everyone as a subscriber for the check.
    post(http, "/channel", {{"channel_id", "open"}, {"channel_type", 2}, {"bind", "parent"}, {"subscribers", {"bob"}}});
    CHECK(send_reason(mallory, "open", 2, "bound channel") == 1);
    // Person lists apply here too.
    post(http, "/channel/blacklist_add", {{"channel_id", "bob"}, {"channel_type", 1}, {"uids", {"mallory"}}});
    CHECK(send_reason(mallory, "bob", 1, "to bob") == 11);
    CHECK(send_reason(bob, "mallory", 1, "to mallory") == 1);
}

// ---- 11: membership changes apply at once (S3), deletion (S5) ----

TEST_CASE("api: subscriber_add and subscriber_remove apply to the next SEND (S3)") {
    ImServer server({}, "", /*test_mode=*/false);
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    set_token(server.http_port(), "owner", "t");
    set_token(server.http_port(), "newbie", "t");
    ChatClient owner = online(server, "owner", 4, 0, "t");
    ChatClient newbie = online(server, "newbie", 2, 0, "t");
    post(http, "/channel", {{"channel_id", "club"}, {"channel_type", 2}, {"subscribers", {"owner"}}});
    CHECK(send_reason(newbie, "club", 2, "let me in") == 11);

    post(http, "/channel/subscriber_add", {{"channel_id", "club"}, {"channel_type", 2}, {"subscribers", {"newbie"}}});
    CHECK(send_reason(newbie, "club", 2, "in") == 1);
    auto r = owner.read_recv();
    REQUIRE(r);
    CHECK(r->payload == "in");
    CHECK(send_reason(owner, "club", 2, "welcome") == 1);
    auto w = newbie.read_recv();
    REQUIRE(w);
    CHECK(w->payload == "welcome");

    post(http, "/channel/subscriber_remove", {{"channel_id", "club"}, {"channel_type", 2}, {"subscribers", {"newbie"}}});
    CHECK(send_reason(newbie, "club", 2, "still here?") == 11);
    CHECK(send_reason(owner, "club", 2, "newbie gone") == 1);
    CHECK(quiet(newbie, 150));

    // reset: 1 drops every member first; channel_type 0 means a group.
    post(http, "/channel/subscriber_add", {{"channel_id", "club"}, {"reset", 1}, {"subscribers", {"newbie"}}});
    CHECK(send_reason(owner, "club", 2, "owner out") == 11);
    CHECK(send_reason(newbie, "club", 2, "newbie alone") == 1);
    CHECK(quiet(owner, 150));
}

TEST_CASE("api: /channel/delete removes the channel, its members, lists and log (S5)") {
    ImServer server({}, "", /*test_mode=*/false);
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    set_token(server.http_port(), "owner", "t");
    set_token(server.http_port(), "member", "t");
    ChatClient owner = online(server, "owner", 4, 0, "t");
    ChatClient member = online(server, "member", 4, 0, "t");
    post(http, "/channel", {{"channel_id", "gdel"}, {"channel_type", 2}, {"subscribers", {"owner", "member"}}});
    for (int i = 0; i < 3; ++i) CHECK(send_reason(owner, "gdel", 2, "doomed " + std::to_string(i)) == 1);
    for (int i = 0; i < 3; ++i) REQUIRE(member.read_recv());
    CHECK(whole_log(http, "owner", "gdel", 2).size() == 3);
    post(http, "/channel/blacklist_add", {{"channel_id", "gdel"}, {"channel_type", 2}, {"uids", {"member"}}});

    post(http, "/channel/delete", {{"channel_id", "gdel"}, {"channel_type", 2}});
    CHECK(whole_log(http, "owner", "gdel", 2).empty());
    CHECK(send_reason(owner, "gdel", 2, "gone") == 11);  // no such group any more
    CHECK(quiet(member, 150));

    // Created again: no old members, no old lists, no old messages.
    post(http, "/channel", {{"channel_id", "gdel"}, {"channel_type", 2}, {"subscribers", {"member"}}});
    CHECK(send_reason(owner, "gdel", 2, "not a member of the new one") == 11);
    proto::SendackPacket ack;
    CHECK(send_reason(member, "gdel", 2, "reborn", &ack) == 1);  // the deny list went with the channel
    json log = whole_log(http, "member", "gdel", 2);
    REQUIRE(log.size() == 1);
    CHECK(unb64(log[0]["payload"]) == "reborn");
    CHECK(log[0]["message_seq"] == ack.message_seq);

    // And after a restart it stays deleted.
    post(http, "/channel/delete", {{"channel_id", "gdel"}, {"channel_type", 2}});
    REQUIRE(server.restart(SIGTERM));
    CHECK(whole_log(server.http_port(), "member", "gdel", 2).empty());
    ChatClient member2 = online(server, "member", 4, 0, "t");
    CHECK(send_reason(member2, "gdel", 2, "after restart") == 11);
}

// §16.3 bounds `limit` only at 1,000 messages; a business server asking for 200 messages
// of 500 bytes (about 150 KB of JSON) must get them, with the default flags.
TEST_CASE("api: /channel/messagesync and /message/sync answer pages larger than 64 KiB") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    ChatClient alice = online(server, "alice", 2);
    const std::string text(500, 'p');
    constexpr uint32_t kN = 200;
    send_acked_burst(alice, kN, text, "page-", [](uint32_t i) { return uint8_t(i % 2 ? 0x04 : 0); });
    int status = 0;
    json page = http_json(http, "POST", "/channel/messagesync",
                          {{"login_uid", "bob"}, {"channel_id", "alice"}, {"channel_type", 1}, {"limit", kN}, {"reverse", 1}},
                          &status);
    CHECK_MESSAGE(status == 200, page.dump().substr(0, 300));
    if (status == 200) CHECK(page["messages"].size() == kN / 2);
    json queue = http_json(http, "POST", "/message/sync", {{"uid", "bob"}, {"limit", kN}}, &status);
    CHECK_MESSAGE(status == 200, queue.dump().substr(0, 300));
    if (status == 200) CHECK(queue.size() == kN / 2);
}

// ---- issue 25: what a browser sends on a page's behalf ----

namespace {

// The headers Chromium 120 sends with a page's fetch(), in its order; `extra`
// goes where Chromium puts Origin and the Sec-Fetch-* headers.
std::string chromium_request(const std::string& method, const std::string& path, const std::string& host,
                             const std::string& extra, const std::string& body = "",
                             const std::string& content_type = "text/plain;charset=UTF-8") {
    std::string wire = method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: keep-alive\r\n";
    if (!body.empty()) wire += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    wire += "sec-ch-ua: \"Chromium\";v=\"120\", \"Not?A_Brand\";v=\"8\"\r\nsec-ch-ua-platform: \"Linux\"\r\n"
            "sec-ch-ua-mobile: ?0\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
            "Gecko) Chrome/120.0.0.0 Safari/537.36\r\n";
    if (!body.empty()) wire += "Content-Type: " + content_type + "\r\n";
    wire += "Accept: */*\r\n" + extra + "Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n";
    return wire + body;
}

// What curl -d sends.
std::string curl_request(const std::string& path, const std::string& host, const std::string& body) {
    return "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
           "Content-Length: " + std::to_string(body.size()) +
           "\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n" + body;
}

// raw_http's answer is refused with `status` and a JSON message, and the
// server closed the connection (raw_http read to EOF well before its timeout).
void check_refused(const std::string& response, int status) {
    CAPTURE(response);
    CHECK(response.rfind("HTTP/1.1 " + std::to_string(status) + " ", 0) == 0);
    CHECK(response.find("\r\nConnection: close\r\n") != std::string::npos);
    const size_t body = response.find("\r\n\r\n");
    REQUIRE(body != std::string::npos);
    const json parsed = json::parse(response.substr(body + 4), nullptr, false);
    CHECK(parsed["status"] == status);
    CHECK(parsed["msg"].is_string());
}

}  // namespace

TEST_CASE("api: no secret: a web page's requests (cross-origin, DNS rebinding) are refused; curl and allowed origins pass") {
    ImServer server({"--http-allowed-origins", "http://admin.example:8080"}, "", /*test_mode=*/false);
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    const std::string loopback = "127.0.0.1:" + std::to_string(http);
    const std::string rebound = "evil.example:" + std::to_string(http);
    const std::string token = R"({"uid":"alice","token":"x"})";

    // A page at http://evil.example: a "simple" text/plain POST, no preflight.
    const auto started = Clock::now();
    check_refused(raw_http(http, chromium_request("POST", "/user/token", loopback,
                                                  "Origin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\n"
                                                  "Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: empty\r\n"
                                                  "Referer: http://evil.example/\r\n",
                                                  token)),
                  403);
    // The same page after rebinding evil.example to 127.0.0.1: same-origin to
    // the browser, so a GET has no Origin; a POST carries its own.
    check_refused(raw_http(http, chromium_request("GET", "/conversations?uid=alice", rebound,
                                                  "Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\n"
                                                  "Sec-Fetch-Dest: empty\r\nReferer: http://" + rebound + "/\r\n")),
                  403);
    check_refused(raw_http(http, chromium_request("POST", "/message/sync", rebound,
                                                  "Origin: http://" + rebound + "\r\nSec-Fetch-Site: same-origin\r\n"
                                                  "Sec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n",
                                                  R"({"uid":"alice","limit":100})", "application/json")),
                  403);
    CHECK(Clock::now() - started < 3s);  // answered and closed, not left to the timeout
    // No token was set: alice cannot log in with "x".
    {
        ChatClient mallory;
        REQUIRE(mallory.connect(server.port()));
        CHECK(mallory.login("alice", "x", 4, 0).reason == 2);
    }

    // curl and business servers: no Origin, the Host they dialed.
    for (const std::string& host : {loopback, "localhost:" + std::to_string(http)}) {
        const std::string ok = raw_http(http, curl_request("/user/token", host, token), 2000, true);
        CHECK_MESSAGE(ok.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, ok);
    }
    CHECK(http_request(http, "GET", "/health", "").status == 200);
    // The demo page's own history request (same origin) and a page at an allowed origin.
    const std::string history = R"({"login_uid":"alice","channel_id":"bob","channel_type":1,"limit":20})";
    std::string r = raw_http(http, chromium_request("POST", "/channel/messagesync", loopback,
                                                    "Origin: http://" + loopback + "\r\nSec-Fetch-Site: same-origin\r\n"
                                                    "Sec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n",
                                                    history, "application/json"),
                             2000, true);
    CHECK_MESSAGE(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, r);
    r = raw_http(http, chromium_request("POST", "/user/token", loopback,
                                        "Origin: http://admin.example:8080\r\nSec-Fetch-Site: cross-site\r\n"
                                        "Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: empty\r\n",
                                        R"({"uid":"bob","token":"b"})"),
                 2000, true);
    CHECK_MESSAGE(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, r);
    CHECK(r.find("\r\nAccess-Control-Allow-Origin: http://admin.example:8080\r\n") != std::string::npos);
    // Its JSON requests are preflighted first (no body, no credentials).
    r = raw_http(http, chromium_request("OPTIONS", "/user/token", loopback,
                                        "Access-Control-Request-Method: POST\r\n"
                                        "Access-Control-Request-Headers: authorization,content-type\r\n"
                                        "Origin: http://admin.example:8080\r\nSec-Fetch-Mode: cors\r\n"),
                 2000, true);
    CHECK_MESSAGE(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, r);
    CHECK(r.find("\r\nAccess-Control-Allow-Headers: Authorization, Content-Type, token\r\n") != std::string::npos);
    // The demo page itself is public static content, whatever the Host.
    r = raw_http(http, chromium_request("GET", "/demo/", rebound, "Sec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\n"),
                 2000, true);
    CHECK_MESSAGE(r.rfind("HTTP/1.1 403", 0) != 0, r.substr(0, 200));
}

TEST_CASE("api: the secret is checked at the end of the headers: 401 before 100 Continue, then closed") {
    ImServer server({"--http-secret", "s3cret-Value"});
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    // curl's shape for a large body: it waits for 100 Continue before sending it.
    const auto started = Clock::now();
    const std::string r = raw_http(http, "POST /message/send HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(http) +
                                             "\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Type: application/json\r\n"
                                             "Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n");
    check_refused(r, 401);
    CHECK(Clock::now() - started < 3s);
    // With the secret any Host passes (a proxy in front may name the server).
    HttpResult named = http_request(http, "GET", "/health", "", "s3cret-Value");
    CHECK(named.status == 200);
    const std::string proxied = raw_http(http, "GET /health HTTP/1.1\r\nHost: im.example.com\r\nAuthorization: Bearer "
                                               "s3cret-Value\r\nConnection: close\r\n\r\n");
    CHECK_MESSAGE(proxied.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, proxied);
}

TEST_CASE("api: --http-max-connections: at the cap the oldest connection without a request makes room; then, with "
          "no secret, the one answered longest ago; with a secret none, and new ones are closed; the IM port still "
          "accepts") {
    bool with_secret = false;
    SUBCASE("no secret") {}
    SUBCASE("with a secret") { with_secret = true; }
    CAPTURE(with_secret);
    std::vector<std::string> args = {"--http-max-connections", "2", "--workers", "1"};
    if (with_secret) args.insert(args.end(), {"--http-secret", "s3cret-Value"});
    ImServer server(args);
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    const std::string bearer = with_secret ? "s3cret-Value" : "";
    std::this_thread::sleep_for(200ms);  // ImServer's start probe has closed its connection
    // Whoever reaches the port holds both connections, idle.
    Client idle1;
    Client idle2;
    REQUIRE(idle1.connect(http));
    std::this_thread::sleep_for(50ms);
    REQUIRE(idle2.connect(http));
    std::this_thread::sleep_for(50ms);
    // A business server's request still gets through: the oldest idle one made room.
    CHECK(http_request(http, "GET", "/health", "", bearer).status == 200);
    CHECK(idle1.wait_closed(2000));
    CHECK_FALSE(idle2.wait_closed(100));
    // Two kept-alive connections that made requests: idle2 made room for the second.
    const std::string request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                                (with_secret ? "Authorization: Bearer " + bearer + "\r\n" : std::string()) + "\r\n";
    auto kept_alive = [&](Client& c) {
        REQUIRE(c.connect(http));
        REQUIRE(c.send_bytes(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(request.data()), request.size())));
        pollfd p{c.fd(), POLLIN, 0};
        REQUIRE(poll(&p, 1, 2000) == 1);
        char buf[512];
        const ssize_t n = recv(c.fd(), buf, sizeof(buf), 0);
        REQUIRE(n > 0);
        CHECK(std::string_view(buf, size_t(n)).starts_with("HTTP/1.1 200 OK"));
    };
    Client k1;
    Client k2;
    kept_alive(k1);
    std::this_thread::sleep_for(50ms);
    kept_alive(k2);
    CHECK(idle2.wait_closed(2000));
    if (!with_secret) {
        // Every request passes the screen: kept-alive ones would hold the cap
        // (a local user's, say). The one answered longest ago makes room.
        Client k3;
        kept_alive(k3);
        CHECK(k1.wait_closed(2000));
        CHECK_FALSE(k2.wait_closed(100));
        CHECK(server.process().stat("counters.closed.http_evicted") == 3);
    } else {
        // The business server's kept-alive connections stay: a new one is closed at accept.
        Client refused;
        REQUIRE(refused.connect(http));  // the kernel completes the handshake; the server closes it at accept
        CHECK(refused.wait_closed(2000));
        CHECK_FALSE(k1.wait_closed(100));
        CHECK(server.process().stat("counters.closed.http_evicted") == 2);
        CHECK(server.process().stat("counters.closed.rejected") >= 1);
    }
    ChatClient im = online(server, "carol", 1);
}

TEST_CASE("api: limit 4294967295 returns one page of 1000 messages with more = 1") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    ChatClient alice = online(server, "alice", 2);
    constexpr uint32_t kN = 1100;
    send_acked_burst(alice, kN, "m", "many-", [](uint32_t) { return uint8_t(0); });
    json page = post(http, "/channel/messagesync",
                     {{"login_uid", "bob"}, {"channel_id", "alice"}, {"channel_type", 1}, {"limit", 4294967295u},
                      {"reverse", 1}});
    REQUIRE(page["messages"].is_array());
    CHECK(page["messages"].size() == 1000);
    CHECK(page["more"] == 1);
    CHECK(page["messages"][0]["message_seq"] == 1);
    page = post(http, "/channel/messagesync",
                {{"login_uid", "bob"}, {"channel_id", "alice"}, {"channel_type", 1}, {"min_message_seq", 1000},
                 {"limit", 4294967295u}, {"reverse", 1}});
    CHECK(page["messages"].size() == kN - 1000);
    CHECK(page["more"] == 0);
}

// ---- WuKongIM v2's API (docs/WKAPI.md) ----

TEST_CASE("api: a WuKongIM business server: its token header, /user/device_quit logs every device of a user out") {
    ImServer server({"--http-secret", "mgr-token"}, "", /*test_mode=*/false);
    REQUIRE_MESSAGE(server.started(), server.log());
    const uint16_t http = server.http_port();
    // As WuKongIM's business servers send the manager token.
    const auto wukongim_post = [&](const std::string& path, const std::string& token, const std::string& body) {
        return raw_http(http, "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\ntoken: " + token +
                                  "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                                  "\r\nConnection: close\r\n\r\n" + body);
    };
    const auto status_line = [](const std::string& response) { return response.substr(0, response.find("\r\n")); };
    CHECK(status_line(wukongim_post("/user/token", "wrong", R"({"uid":"alice","token":"t1"})")) == "HTTP/1.1 401 Unauthorized");
    for (const char* body : {R"({"uid":"alice","token":"t1","device_flag":0,"device_level":1})",
                             R"({"uid":"alice","token":"w1","device_flag":1,"device_level":1})"}) {
        const std::string r = wukongim_post("/user/token", "mgr-token", body);
        CHECK(status_line(r) == "HTTP/1.1 200 OK");
        CHECK(r.ends_with(R"({"status":200})"));
    }
    ChatClient app = online(server, "alice", 4, 0, "t1");
    ChatClient web = online(server, "alice", 4, 1, "w1");

    const std::string quit = wukongim_post("/user/device_quit", "mgr-token", R"({"uid":"alice","device_flag":-1})");
    CHECK(status_line(quit) == "HTTP/1.1 200 OK");
    CHECK(quit.ends_with(R"({"status":200})"));
    for (ChatClient* session : {&app, &web}) {
        auto bye = session->read_any(3000);
        REQUIRE_MESSAGE(bye, "no DISCONNECT after /user/device_quit");
        CHECK(bye->type() == proto::PacketType::Disconnect);
    }
    // Neither old token logs in again, nor an empty one; a new token does.
    for (const auto& [token, flag] : {std::pair{"t1", 0}, std::pair{"w1", 1}, std::pair{"", 0}}) {
        ChatClient old;
        REQUIRE(old.connect(server.port()));
        CHECK(old.login("alice", token, 4, uint8_t(flag)).reason == 2);
    }
    CHECK(status_line(wukongim_post("/user/token", "mgr-token", R"({"uid":"alice","token":"t2","device_flag":0})")) ==
          "HTTP/1.1 200 OK");
    online(server, "alice", 4, 0, "t2");
}
