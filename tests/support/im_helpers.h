// Helpers the integration tests share: base64 of the API's byte fields, a
// JSON POST that checks its status, a logged-in chat client (and a raw one),
// a SEND and its SENDACK, a RECV checked field by field, silence, a user's
// token and a channel's history.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chat_client.h"
#include "clock.h"
#include "http_client.h"
#include "im_server.h"
#include "limaoim/base64/base64.h"

namespace limaoim::testing {

inline std::string b64(std::string_view s) { return base64::encode(s); }

inline std::string unb64(const std::string& s) { return base64::decode(s).value_or("<bad base64: " + s + ">"); }

// POST `body` as JSON; the test stops unless the status is `expect`.
inline nlohmann::json post(uint16_t http_port, const std::string& path, const nlohmann::json& body, int expect = 200) {
    int status = 0;
    nlohmann::json r = http_json(http_port, "POST", path, body, &status);
    REQUIRE_MESSAGE(status == expect, path << " " << body.dump() << " -> " << status << " " << r.dump());
    return r;
}

// A client logged in as `uid`; the test stops if the login fails.
inline ChatClient online(ImServer& server, const std::string& uid, uint8_t version = 4, uint8_t device_flag = 0,
                         const std::string& token = "") {
    ChatClient c;
    REQUIRE_MESSAGE(c.connect_login(server.port(), uid, version, device_flag, token),
                    "login of " << uid << " v" << int(version) << " flag " << int(device_flag));
    return c;
}

// A client of `dialect` logged in as `uid` on its listener; the test stops
// if the login fails.
inline ChatClient online(ImServer& server, const proto::Dialect& dialect, const std::string& uid, uint8_t version,
                         uint8_t device_flag = 0) {
    ChatClient c;
    c.set_dialect(dialect);
    REQUIRE_MESSAGE(c.connect_login(server.port(dialect), uid, version, device_flag),
                    "login of " << uid << " " << dialect.name << " v" << int(version) << " flag " << int(device_flag));
    return c;
}

// A raw Client logged in as `uid` (token "t") on `server`'s TCP port; the
// test stops if the login fails.
inline Client logged_in(const ServerProcess& server, const std::string& uid, uint8_t version = 4,
                        uint8_t device_flag = 0) {
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.login(uid, "t", version, device_flag).reason == uint8_t(proto::ReasonCode::Success));
    return c;
}

// SEND and its SENDACK (the test stops without one).
inline proto::SendackPacket send_acked(ChatClient& c, const std::string& channel_id, uint8_t type,
                                       const std::string& text, uint32_t client_seq, const std::string& client_msg_no,
                                       uint8_t flags = 0, uint8_t setting = 0, int timeout_ms = 3000) {
    REQUIRE(c.send_message(channel_id, type, text, client_seq, client_msg_no, flags, setting));
    auto ack = c.read_sendack(timeout_ms);
    REQUIRE_MESSAGE(ack, "no SENDACK for client_seq " << client_seq << " from " << c.uid());
    CHECK(ack->client_seq == client_seq);
    return *ack;
}

// Messages 1..count from `from` to `to` (text "offline #i", client_msg_no
// "off-i", client_seq i), each SENDACKed with success and seq i: `to`'s log
// with `from` must be new.
inline void send_offline(ChatClient& from, const std::string& to, uint32_t count) {
    for (uint32_t i = 1; i <= count; ++i) {
        const proto::SendackPacket ack =
            send_acked(from, to, 1, "offline #" + std::to_string(i), i, "off-" + std::to_string(i));
        REQUIRE(ack.reason_code == 1);
        CHECK(ack.message_seq == i);
    }
}

// A RECV of `text` from `from` in `channel_id` (as the receiver sees it),
// decrypted and MsgKey-checked by read_recv(); RECVACKed.
inline void expect_recv(ChatClient& to, const std::string& channel_id, uint8_t type, const std::string& from,
                        const std::string& text, const proto::SendackPacket& ack, int timeout_ms = 5000) {
    CAPTURE(to.uid());
    CAPTURE(text);
    auto r = to.read_recv(timeout_ms);
    REQUIRE_MESSAGE(r, to.uid() << " (v" << int(to.version()) << ") got no RECV of '" << text << "'");
    CHECK(r->channel_id == channel_id);
    CHECK(r->channel_type == type);
    CHECK(r->from_uid == from);
    CHECK(r->payload == text);
    CHECK(r->message_id == ack.message_id);
    CHECK(r->message_seq == ack.message_seq);
    if (to.version() >= 3) CHECK(r->wire_payload != text);  // encrypted on the wire, for this session's key
    CHECK(to.send_recvack(*r));
}

// Nothing at all within `ms`.
inline bool quiet(ChatClient& c, int ms) {
    auto p = c.read_any(ms);
    if (p) MESSAGE("unexpected packet of type " << int(p->type()) << " for " << c.uid());
    return !p;
}

// POST /user/token; the test goes on (failed) unless it answers 200.
inline void set_token(uint16_t http_port, const std::string& uid, const std::string& token, uint8_t device_flag = 0) {
    CHECK(post(http_port, "/user/token",
               {{"uid", uid}, {"token", token}, {"device_flag", device_flag}, {"device_level", 1}}) ==
          nlohmann::json{{"status", 200}});
}

// POST /channel/messagesync: a page of the channel's log as `login_uid` sees it.
inline nlohmann::json history(uint16_t http_port, const std::string& login_uid, const std::string& channel_id,
                              uint8_t type, uint32_t min_seq, uint32_t max_seq, uint32_t limit, int reverse) {
    nlohmann::json r = post(http_port, "/channel/messagesync",
                            {{"login_uid", login_uid},
                             {"channel_id", channel_id},
                             {"channel_type", type},
                             {"min_message_seq", min_seq},
                             {"max_message_seq", max_seq},
                             {"limit", limit},
                             {"reverse", reverse}});
    REQUIRE(r.is_object());
    REQUIRE(r["messages"].is_array());
    return r;
}

// The whole log of a channel, paged forward 1000 at a time.
inline nlohmann::json whole_log(uint16_t http_port, const std::string& login_uid, const std::string& channel_id,
                                uint8_t type) {
    nlohmann::json all = nlohmann::json::array();
    uint32_t after = 0;
    for (int page = 0; page < 1000; ++page) {
        nlohmann::json r = history(http_port, login_uid, channel_id, type, after, 0, 1000, 1);
        for (nlohmann::json& m : r["messages"]) all.push_back(std::move(m));
        if (r["messages"].empty() || r["more"] == 0) break;
        after = all.back()["message_seq"].get<uint32_t>();
    }
    return all;
}

inline std::vector<uint32_t> seqs_of(const nlohmann::json& messages) {
    std::vector<uint32_t> out;
    for (const nlohmann::json& m : messages) out.push_back(m["message_seq"].get<uint32_t>());
    return out;
}

// first, first + 1, ..., last.
inline std::vector<uint32_t> range(uint32_t first, uint32_t last) {
    std::vector<uint32_t> out;
    for (uint32_t s = first; s <= last; ++s) out.push_back(s);
    return out;
}

}  // namespace limaoim::testing
