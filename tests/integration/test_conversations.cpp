// Conversations (SERVER.md §11, §16.4) and the global SEND rate limit (§5
// step 0) against the real server: unread counts, last messages and order
// for person chats and groups fed by v4 clients and the API, kept over a
// clean restart and a SIGKILL (replay of stored messages); every
// conversation endpoint with good and bad input; the per-user LRU cap; a
// removed subscriber's conversation; a 600-SEND flood under
// --max-messages-per-second.
//
// The helpers at the top (b64, post, ...) are copies of the local helpers of
// test_messaging.cpp / test_api.cpp, kept here so that this file builds on
// its own.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <sstream>
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





// A request whose body is sent as is (malformed JSON); checks a 400 with the
// error body of §16.0.
void post_raw_400(uint16_t http_port, const std::string& path, const std::string& body) {
    HttpResult r = http_request(http_port, "POST", path, body);
    CHECK_MESSAGE(r.status == 400, path << " " << body << " -> " << r.status << " " << r.body);
    json j = json::parse(r.body, nullptr, false);
    CHECK_MESSAGE((j.is_object() && j["status"] == 400 && j["msg"].is_string()), "error body: " << r.body);
}


// GET /conversations?uid=...
json conversations(uint16_t http_port, const std::string& uid) {
    int status = 0;
    json r = http_json(http_port, "GET", "/conversations?uid=" + uid, nullptr, &status);
    REQUIRE_MESSAGE((status == 200 && r.is_array()), "GET /conversations?uid=" << uid << " -> " << status << " "
                                                                                << r.dump());
    return r;
}

using Key = std::pair<std::string, int>;  // (channel_id as the user sees it, channel_type)

Key key_of(const json& item) { return {item.value("channel_id", std::string()), item.value("channel_type", -1)}; }

// A user's list keyed by conversation (the order of equal timestamps is free).
std::map<Key, json> by_key(const json& list) {
    std::map<Key, json> out;
    for (const json& item : list) out[key_of(item)] = item;
    return out;
}

std::string key_text(const Key& k) { return k.first + "/" + std::to_string(k.second); }

// What the test sent, and what each user's conversations must then be (§11).
struct Msg {
    std::string from, channel_id;  // channel_id as sent: the recipient for person chats
    uint8_t type = 0;
    bool red_dot = false;
    uint32_t seq = 0;
    std::string client_msg_no, text;
    int period = 0;  // messages of a later period were sent >= 1.1 s later (a later timestamp second)
};

struct Conv {
    uint32_t unread = 0;
    Msg last;
};

class Model {
public:
    std::map<std::string, std::vector<std::string>> groups;
    std::map<std::string, std::map<Key, Conv>> users;

    // Gives the message its seq (gapless per log, from 1) and applies it to
    // every receiver's conversations.
    Msg record(const std::string& from, const std::string& channel_id, uint8_t type, bool red_dot, int period) {
        Msg m;
        m.from = from;
        m.channel_id = channel_id;
        m.type = type;
        m.red_dot = red_dot;
        m.period = period;
        const std::string log = type == 1 ? std::min(from, channel_id) + "@" + std::max(from, channel_id)
                                          : std::to_string(type) + "#" + channel_id;
        m.seq = ++seqs_[log];
        m.client_msg_no = "cmn-" + log + "-" + std::to_string(m.seq);
        m.text = from + " -> " + channel_id + " #" + std::to_string(m.seq) + " \xe4\xbd\xa0\xe5\xa5\xbd";
        std::vector<std::string> receivers;
        if (type == 1) {
            receivers = {from};
            if (channel_id != from) receivers.push_back(channel_id);
        } else {
            receivers = groups.at(channel_id);
        }
        for (const std::string& uid : receivers) {
            const Key key{type == 1 ? (uid == from ? channel_id : from) : channel_id, type};
            Conv& c = users[uid][key];
            if (red_dot && uid != from) ++c.unread;
            c.last = m;
        }
        return m;
    }

    std::map<Key, Conv>& of(const std::string& uid) { return users[uid]; }

private:
    std::map<std::string, uint32_t> seqs_;
};

// Where `list` (GET /conversations) differs from `expect`; empty when it does not.
std::string diff(const json& list, const std::map<Key, Conv>& expect) {
    std::ostringstream out;
    if (!list.is_array()) return "not an array";
    if (list.size() != expect.size()) {
        out << list.size() << " conversations, expected " << expect.size() << " (";
        for (const auto& [k, c] : expect) out << key_text(k) << " ";
        out << ")";
        return out.str();
    }
    for (size_t i = 0; i < list.size(); ++i) {
        const json& item = list[i];
        const Key k = key_of(item);
        auto it = expect.find(k);
        if (it == expect.end()) {
            out << "unexpected conversation " << key_text(k) << "; ";
            continue;
        }
        const Conv& c = it->second;
        const Msg& m = c.last;
        auto field = [&](const char* name, const json& got, const json& want) {
            if (got != want) out << key_text(k) << ": " << name << " " << got.dump() << ", expected " << want.dump() << "; ";
        };
        field("unread", item.value("unread", json()), c.unread);
        const json& last = item.contains("last_message") ? item["last_message"] : json();
        if (!last.is_object()) {
            out << key_text(k) << ": last_message " << last.dump() << "; ";
            continue;
        }
        field("last_message.message_seq", last.value("message_seq", json()), m.seq);
        field("last_message.from_uid", last.value("from_uid", json()), m.from);
        field("last_message.channel_id", last.value("channel_id", json()), m.channel_id);
        field("last_message.channel_type", last.value("channel_type", json()), m.type);
        field("last_message.client_msg_no", last.value("client_msg_no", json()), m.client_msg_no);
        field("last_message.payload", last.value("payload", json()), b64(m.text));
        field("last_message.header.red_dot", last.contains("header") ? last["header"].value("red_dot", json()) : json(),
              m.red_dot ? 1 : 0);
        field("timestamp (= last_message.timestamp)", item.value("timestamp", json()), last.value("timestamp", json()));
        if (last.contains("message_id") && last["message_id"].is_number_integer())
            field("last_message.message_idstr", last.value("message_idstr", json()),
                  std::to_string(last["message_id"].get<int64_t>()));
        if (i > 0) {
            const json& prev = list[i - 1];
            if (prev.value("timestamp", int64_t(0)) < item.value("timestamp", int64_t(0)))
                out << "timestamps not descending at " << i << "; ";
            auto p = expect.find(key_of(prev));
            if (p != expect.end() && p->second.last.period < m.period)
                out << key_text(key_of(prev)) << " (older) listed before " << key_text(k) << "; ";
        }
    }
    return out.str();
}

// Polls GET /conversations until it matches the model (fan-out applies a
// message to conversations a moment after its SENDACK).
void expect_user(uint16_t http_port, Model& model, const std::string& uid, int timeout_ms = 3000) {
    const auto t0 = Clock::now();
    json list;
    std::string err;
    do {
        list = conversations(http_port, uid);
        err = diff(list, model.of(uid));
        if (err.empty()) return;
        std::this_thread::sleep_for(milliseconds(20));
    } while (ms_since(t0) < timeout_ms);
    CHECK_MESSAGE(err.empty(), "conversations of " << uid << ": " << err << "\n" << list.dump());
}

void api_send(uint16_t http_port, const Msg& m) {
    post(http_port, "/message/send",
         {{"header", {{"no_persist", 0}, {"red_dot", m.red_dot ? 1 : 0}, {"sync_once", 0}}},
          {"client_msg_no", m.client_msg_no},
          {"from_uid", m.from},
          {"channel_id", m.channel_id},
          {"channel_type", m.type},
          {"payload", b64(m.text)}});
}

void client_send(ChatClient& c, const Msg& m) {
    static uint32_t client_seq = 0;
    ++client_seq;
    CAPTURE(m.channel_id);
    const proto::SendackPacket ack =
        send_acked(c, m.channel_id, m.type, m.text, client_seq, m.client_msg_no, m.red_dot ? proto::flag::kRedDot : 0);
    CHECK(ack.reason_code == 1);
    CHECK_MESSAGE(ack.message_seq == m.seq, m.from << " -> " << m.channel_id);
}

// A simple message through the API: the text and client_msg_no do not matter.
void inject(uint16_t http_port, const std::string& from, const std::string& channel_id, uint8_t type, bool red_dot,
            const std::string& text = "x") {
    json body = {{"header", {{"no_persist", 0}, {"red_dot", red_dot ? 1 : 0}, {"sync_once", 0}}},
                 {"from_uid", from},
                 {"channel_id", channel_id},
                 {"channel_type", type},
                 {"payload", b64(text)}};
    post(http_port, "/message/send", body);
}

// Polls until `uid`'s conversation keys are exactly `keys` (order free).
std::set<Key> wait_keys(uint16_t http_port, const std::string& uid, const std::set<Key>& keys, int timeout_ms = 3000) {
    const auto t0 = Clock::now();
    std::set<Key> got;
    do {
        got.clear();
        for (const json& item : conversations(http_port, uid)) got.insert(key_of(item));
        if (got == keys) break;
        std::this_thread::sleep_for(milliseconds(20));
    } while (ms_since(t0) < timeout_ms);
    return got;
}

std::string keys_text(const std::set<Key>& keys) {
    std::string out;
    for (const Key& k : keys) out += key_text(k) + " ";
    return out;
}

// A conversation of `uid`'s list, polled until `pred` holds (nullopt: absent at the end).
template <typename Pred>
std::optional<json> wait_item(uint16_t http_port, const std::string& uid, const Key& key, Pred pred,
                              int timeout_ms = 3000) {
    const auto t0 = Clock::now();
    std::optional<json> found;
    do {
        found.reset();
        for (const json& item : conversations(http_port, uid))
            if (key_of(item) == key) found = item;
        if (found && pred(*found)) break;
        std::this_thread::sleep_for(milliseconds(20));
    } while (ms_since(t0) < timeout_ms);
    return found;
}

std::vector<uint32_t> down_from(uint32_t first, uint32_t last) {  // first, first-1, ..., last
    std::vector<uint32_t> out;
    for (uint32_t s = first; s >= last && s > 0; --s) out.push_back(s);
    return out;
}

}  // namespace

// ---- 1 ----

TEST_CASE("conversations: unread counts, last messages, order for three users in person chats and groups; "
          "kept over a clean restart and over a SIGKILL right after the SENDACKs") {
    // No periodic flush before the SIGKILL: what the restart shows after it comes from the replay.
    ImServer server({"--conversation-flush-ms", "60000"});
    REQUIRE_MESSAGE(server.started(), server.log());
    uint16_t http = server.http_port();
    Model model;
    model.groups["g1"] = {"a", "b", "c"};
    model.groups["g2"] = {"a", "b"};
    for (const auto& [id, members] : model.groups)
        post(http, "/channel", {{"channel_id", id}, {"channel_type", 2}, {"subscribers", members}});

    {
        ChatClient a = online(server, "a");
        ChatClient b = online(server, "b");
        ChatClient c = online(server, "c");
        auto send = [&](ChatClient& from, const std::string& to, uint8_t type, bool red) {
            client_send(from, model.record(from.uid(), to, type, red, 1));
        };
        auto inject_msg = [&](const std::string& from, const std::string& to, uint8_t type, bool red, int period) {
            api_send(http, model.record(from, to, type, red, period));
        };
        // Period 1.
        send(a, "b", 1, true);
        send(a, "b", 1, true);
        send(b, "a", 1, true);
        send(b, "a", 1, false);
        send(a, "g1", 2, true);
        send(c, "g1", 2, false);
        send(c, "g1", 2, true);
        inject_msg("c", "a", 1, true, 1);
        inject_msg("b", "g2", 2, true, 1);
        send(b, "c", 1, true);  // b has this conversation through its own message only
        std::this_thread::sleep_for(milliseconds(1100));
        // Period 2: a later second.
        client_send(b, model.record("b", "g1", 2, true, 2));
        inject_msg("a", "b", 1, false, 2);
    }
    // Spelled out once, so that the model itself is checked too.
    CHECK(model.of("a")[{"b", 1}].unread == 1);
    CHECK(model.of("b")[{"a", 1}].unread == 2);
    CHECK(model.of("a")[{"g1", 2}].unread == 2);
    CHECK(model.of("b")[{"g1", 2}].unread == 2);
    CHECK(model.of("c")[{"g1", 2}].unread == 2);
    CHECK(model.of("b")[{"g2", 2}].unread == 0);
    CHECK(model.of("b")[{"c", 1}].unread == 0);
    CHECK(model.of("c")[{"a", 1}].unread == 0);
    CHECK(model.of("a").size() == 4);
    CHECK(model.of("b").size() == 4);
    CHECK(model.of("c").size() == 3);
    for (const char* uid : {"a", "b", "c"}) expect_user(http, model, uid);
    CHECK(conversations(http, "nobody").empty());

    // A clean restart: the very same lists.
    std::map<std::string, std::map<Key, json>> before;
    for (const char* uid : {"a", "b", "c"}) before[uid] = by_key(conversations(http, uid));
    std::optional<int> status;
    REQUIRE_MESSAGE(server.restart(SIGTERM, 10000, &status), server.log());
    CHECK(status == std::optional<int>(0));
    http = server.http_port();
    for (const char* uid : {"a", "b", "c"}) {
        CAPTURE(uid);
        json list = conversations(http, uid);
        CHECK(by_key(list) == before[uid]);
        CHECK_MESSAGE(diff(list, model.of(uid)).empty(), diff(list, model.of(uid)));
    }

    // SIGKILL right after the SENDACKs (and the API's 200): the restart replays them.
    {
        ChatClient a = online(server, "a");
        ChatClient b = online(server, "b");
        ChatClient c = online(server, "c");
        client_send(a, model.record("a", "b", 1, true, 2));
        client_send(c, model.record("c", "g1", 2, true, 2));
        client_send(b, model.record("b", "c", 1, true, 2));
        client_send(c, model.record("c", "a", 1, false, 2));
        api_send(http, model.record("a", "g2", 2, true, 2));
        REQUIRE_MESSAGE(server.restart(SIGKILL), server.log());
    }
    http = server.http_port();
    CHECK(model.of("b")[{"a", 1}].unread == 3);
    CHECK(model.of("c")[{"b", 1}].unread == 2);
    CHECK(model.of("b")[{"g2", 2}].unread == 1);
    for (const char* uid : {"a", "b", "c"}) expect_user(http, model, uid, 500);
}

// ---- 2 ----

TEST_CASE("conversations: the endpoints of §16.4 with good and bad input") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    uint16_t http = server.http_port();
    post(http, "/channel", {{"channel_id", "g1"}, {"channel_type", 2}, {"subscribers", {"a", "b", "c"}}});
    post(http, "/channel", {{"channel_id", "g2"}, {"channel_type", 2}, {"subscribers", {"a", "b"}}});
    post(http, "/channel", {{"channel_id", "g3"}, {"channel_type", 2}, {"subscribers", {"a", "b"}}});
    inject(http, "a", "b", 1, true);
    inject(http, "a", "b", 1, true);
    inject(http, "b", "a", 1, true);
    inject(http, "c", "g1", 2, true);
    inject(http, "b", "g2", 2, true);
    for (int i = 1; i <= 20; ++i) inject(http, "a", "g3", 2, false, "g3 #" + std::to_string(i));
    const std::set<Key> a_keys{{"b", 1}, {"g1", 2}, {"g2", 2}, {"g3", 2}}, b_keys{{"a", 1}, {"g1", 2}, {"g2", 2}, {"g3", 2}};
    REQUIRE(wait_keys(http, "a", a_keys) == a_keys);
    REQUIRE(wait_keys(http, "b", b_keys) == b_keys);
    REQUIRE(wait_keys(http, "c", {{"g1", 2}}) == std::set<Key>{{"g1", 2}});
    auto unread_of = [&](const std::string& uid, const Key& key) -> int64_t {
        for (const json& item : conversations(http, uid))
            if (key_of(item) == key) return item.value("unread", int64_t(-1));
        return -2;  // no such conversation
    };
    REQUIRE(wait_item(http, "b", {"a", 1}, [](const json& j) { return j["unread"] == 2; }));
    REQUIRE(wait_item(http, "a", {"g3", 2}, [](const json& j) { return j["last_message"]["message_seq"] == 20; }));
    CHECK(unread_of("a", {"b", 1}) == 1);
    CHECK(unread_of("b", {"g1", 2}) == 1);
    CHECK(unread_of("b", {"g3", 2}) == 0);

    SUBCASE("GET /conversations") {
        for (const char* path : {"/conversations", "/conversations?uid=", "/conversations?other=a"}) {
            HttpResult r = http_request(http, "GET", path, "");
            CHECK_MESSAGE(r.status == 400, path << " -> " << r.status << " " << r.body);
        }
        CHECK(conversations(http, "nobody").empty());
        // A temporary channel's message is never stored: its last_message is null.
        post(http, "/message/send",
             {{"header", {{"red_dot", 1}}}, {"from_uid", "a"}, {"channel_id", ""}, {"subscribers", {"a", "b"}},
              {"payload", b64("tmp")}});
        std::optional<json> tmp;
        const auto t0 = Clock::now();
        do {
            for (const json& item : conversations(http, "b")) {
                const std::string id = item.value("channel_id", std::string());
                if (id.size() > 4 && id.ends_with("@tmp")) tmp = item;
            }
            if (tmp) break;
            std::this_thread::sleep_for(milliseconds(20));
        } while (ms_since(t0) < 3000);
        REQUIRE_MESSAGE(tmp, conversations(http, "b").dump());
        CHECK((*tmp)["channel_type"] == 2);
        CHECK((*tmp)["unread"] == 1);
        CHECK((*tmp).contains("last_message"));
        CHECK((*tmp)["last_message"].is_null());
    }

    SUBCASE("clearUnread, setUnread: persisted; bad input") {
        CHECK(post(http, "/conversations/clearUnread", {{"uid", "b"}, {"channel_id", "a"}, {"channel_type", 1}}) ==
              json{{"status", 200}});
        CHECK(unread_of("b", {"a", 1}) == 0);
        CHECK(unread_of("a", {"b", 1}) == 1);  // the other side's is its own
        CHECK(post(http, "/conversations/setUnread",
                   {{"uid", "a"}, {"channel_id", "g1"}, {"channel_type", 2}, {"unread", 5}}) == json{{"status", 200}});
        CHECK(unread_of("a", {"g1", 2}) == 5);
        CHECK(unread_of("b", {"g1", 2}) == 1);
        // Of a conversation the user does not have: nothing is created.
        int status = 0;
        http_json(http, "POST", "/conversations/setUnread",
                  {{"uid", "c"}, {"channel_id", "g2"}, {"channel_type", 2}, {"unread", 3}}, &status);
        MESSAGE("setUnread of a conversation the user does not have -> " << status);
        CHECK(unread_of("c", {"g2", 2}) == -2);

        for (const char* path : {"/conversations/clearUnread", "/conversations/setUnread"}) {
            CAPTURE(path);
            const json good = {{"uid", "b"}, {"channel_id", "a"}, {"channel_type", 1}, {"unread", 1}};
            for (const char* drop : {"uid", "channel_id", "channel_type"}) {
                json bad = good;
                bad.erase(drop);
                post(http, path, bad, 400);
            }
            json zero = good;
            zero["channel_type"] = 0;
            post(http, path, zero, 400);
            json empty_uid = good;
            empty_uid["uid"] = "";
            post(http, path, empty_uid, 400);
            post_raw_400(http, path, "{\"uid\":\"b\",\"channel_id\":");
            post_raw_400(http, path, "not json");
            post(http, path, json::array({"b"}), 400);
        }
        post(http, "/conversations/setUnread",
             {{"uid", "b"}, {"channel_id", "a"}, {"channel_type", 1}, {"unread", "five"}}, 400);
        CHECK(unread_of("b", {"a", 1}) == 0);  // untouched by the refused requests

        // Durable: a crash right after the 200s keeps them.
        REQUIRE_MESSAGE(server.restart(SIGKILL), server.log());
        http = server.http_port();
        CHECK(unread_of("b", {"a", 1}) == 0);
        CHECK(unread_of("a", {"g1", 2}) == 5);
        CHECK(unread_of("a", {"b", 1}) == 1);
        CHECK(unread_of("b", {"g1", 2}) == 1);
        // A message after it counts on from there.
        inject(http, "c", "g1", 2, true);
        CHECK(wait_item(http, "a", {"g1", 2}, [](const json& j) { return j["unread"] == 6; }).value_or(json())["unread"] == 6);
    }

    SUBCASE("delete: gone, also after a restart; bad input") {
        CHECK(post(http, "/conversations/delete", {{"uids", {"a", "b"}}, {"channel_id", "g2"}, {"channel_type", 2}}) ==
              json{{"status", 200}});
        CHECK(wait_keys(http, "a", {{"b", 1}, {"g1", 2}, {"g3", 2}}, 0) == std::set<Key>{{"b", 1}, {"g1", 2}, {"g3", 2}});
        CHECK(wait_keys(http, "b", {{"a", 1}, {"g1", 2}, {"g3", 2}}, 0) == std::set<Key>{{"a", 1}, {"g1", 2}, {"g3", 2}});
        // One side of a person chat only.
        CHECK(post(http, "/conversations/delete", {{"uids", {"b"}}, {"channel_id", "a"}, {"channel_type", 1}}) ==
              json{{"status", 200}});
        CHECK(unread_of("b", {"a", 1}) == -2);
        CHECK(unread_of("a", {"b", 1}) == 1);
        // Deleting what is not there is no error.
        CHECK(post(http, "/conversations/delete", {{"uids", {"c", "nobody"}}, {"channel_id", "g2"}, {"channel_type", 2}}) ==
              json{{"status", 200}});

        post(http, "/conversations/delete", {{"uids", json::array()}, {"channel_id", "g1"}, {"channel_type", 2}}, 400);
        post(http, "/conversations/delete", {{"channel_id", "g1"}, {"channel_type", 2}}, 400);
        post(http, "/conversations/delete", {{"uids", {"a"}}, {"channel_type", 2}}, 400);
        post(http, "/conversations/delete", {{"uids", {"a"}}, {"channel_id", ""}, {"channel_type", 2}}, 400);
        post(http, "/conversations/delete", {{"uids", "a"}, {"channel_id", "g1"}, {"channel_type", 2}}, 400);
        post_raw_400(http, "/conversations/delete", "{\"uids\":[\"a\"");
        CHECK(unread_of("a", {"g1", 2}) == 1);  // untouched by the refused requests

        REQUIRE_MESSAGE(server.restart(SIGKILL), server.log());
        http = server.http_port();
        CHECK(wait_keys(http, "a", {{"b", 1}, {"g1", 2}, {"g3", 2}}, 0) == std::set<Key>{{"b", 1}, {"g1", 2}, {"g3", 2}});
        CHECK(wait_keys(http, "b", {{"g1", 2}, {"g3", 2}}, 0) == std::set<Key>{{"g1", 2}, {"g3", 2}});
        // A new message brings a deleted conversation back, counting from 0.
        inject(http, "a", "b", 1, true);
        auto back = wait_item(http, "b", {"a", 1}, [](const json& j) { return j["unread"] == 1; });
        REQUIRE(back);
        CHECK((*back)["unread"] == 1);
        CHECK((*back)["last_message"]["message_seq"] == 4);
    }

    SUBCASE("conversation/sync: all, none after the newest version, then only what changed") {
        HttpResult raw = http_request(http, "POST", "/conversation/sync", json{{"uid", "a"}, {"version", 0}}.dump());
        REQUIRE(raw.status == 200);
        const nlohmann::ordered_json all = nlohmann::ordered_json::parse(raw.body, nullptr, false);
        REQUIRE(all.is_array());
        CHECK(all.size() == 4);
        const std::map<Key, json> listed = by_key(conversations(http, "a"));
        int64_t max_version = 0;
        int64_t prev_ts = std::numeric_limits<int64_t>::max();
        for (const auto& item : all) {
            std::vector<std::string> keys;
            for (const auto& [k, v] : item.items()) keys.push_back(k);
            CHECK(keys == std::vector<std::string>{"channel_id", "channel_type", "unread", "timestamp", "last_msg_seq",
                                                   "last_client_msg_no", "offset_msg_seq", "readed_to_msg_seq",
                                                   "version", "recents"});
            const Key k{item.value("channel_id", std::string()), item.value("channel_type", -1)};
            REQUIRE_MESSAGE(listed.count(k), key_text(k));
            const json& l = listed.at(k);
            CHECK(item["unread"] == l["unread"]);
            CHECK(item["timestamp"] == l["timestamp"]);
            CHECK(item["last_msg_seq"] == l["last_message"]["message_seq"]);
            CHECK(item["last_client_msg_no"] == l["last_message"]["client_msg_no"]);
            CHECK(item["offset_msg_seq"] == 0);
            CHECK(item["readed_to_msg_seq"] == item["last_msg_seq"].get<int64_t>() - item["unread"].get<int64_t>());
            CHECK(item["recents"].is_null());
            REQUIRE(item["version"].is_number_integer());
            CHECK(item["version"].get<int64_t>() > 0);
            max_version = std::max(max_version, item["version"].get<int64_t>());
            CHECK(item["timestamp"].get<int64_t>() <= prev_ts);
            prev_ts = item["timestamp"].get<int64_t>();
        }
        CHECK(post(http, "/conversation/sync", {{"uid", "a"}, {"version", -1}}).size() == 4);
        // msg_count > 0 (as WuKongIM's business servers ask): each one's newest messages, newest first.
        const json with_recents =
            post(http, "/conversation/sync", {{"uid", "a"}, {"version", 0}, {"last_msg_seqs", "b:1:2|g1:2:1"}, {"msg_count", 2}});
        CHECK(with_recents.size() == 4);
        for (const json& item : with_recents) {
            CAPTURE(item.dump());
            REQUIRE(item["recents"].is_array());
            REQUIRE(!item["recents"].empty());
            CHECK(item["recents"].size() <= 2);
            CHECK(item["recents"][0]["message_seq"] == item["last_msg_seq"]);
            if (item["recents"].size() == 2)
                CHECK(item["recents"][1]["message_seq"].get<int64_t>() < item["last_msg_seq"].get<int64_t>());
        }
        CHECK(post(http, "/conversation/sync", {{"uid", "a"}, {"version", max_version}}) == json::array());
        CHECK(post(http, "/conversation/sync", {{"uid", "nobody"}, {"version", 0}}) == json::array());

        std::this_thread::sleep_for(milliseconds(5));  // versions are milliseconds
        inject(http, "b", "a", 1, true, "new");
        json changed;
        const auto t0 = Clock::now();
        do {
            changed = post(http, "/conversation/sync", {{"uid", "a"}, {"version", max_version}});
            if (!changed.empty()) break;
            std::this_thread::sleep_for(milliseconds(20));
        } while (ms_since(t0) < 3000);
        REQUIRE_MESSAGE(changed.size() == 1, changed.dump());
        CHECK(changed[0]["channel_id"] == "b");
        CHECK(changed[0]["channel_type"] == 1);
        CHECK(changed[0]["unread"] == 2);
        CHECK(changed[0]["last_msg_seq"] == 4);
        CHECK(changed[0]["version"].get<int64_t>() > max_version);

        post(http, "/conversation/sync", {{"version", 0}}, 400);
        post(http, "/conversation/sync", {{"uid", ""}, {"version", 0}}, 400);
        post_raw_400(http, "/conversation/sync", "{\"uid\":");
    }

    SUBCASE("conversation/syncMessages: newest first, at most msg_count, after last_msg_seq, in request order") {
        auto sync = [&](const json& channels, int64_t msg_count) {
            return post(http, "/conversation/syncMessages", {{"uid", "a"}, {"channels", channels}, {"msg_count", msg_count}});
        };
        auto g3 = [](uint32_t last_msg_seq) {
            return json::array({{{"channel_id", "g3"}, {"channel_type", 2}, {"last_msg_seq", last_msg_seq}}});
        };
        json r = sync(g3(0), 5);
        REQUIRE(r.size() == 1);
        CHECK(r[0]["channel_id"] == "g3");
        CHECK(r[0]["channel_type"] == 2);
        CHECK(seqs_of(r[0]["messages"]) == down_from(20, 16));
        const json& newest = r[0]["messages"][0];
        CHECK(newest["from_uid"] == "a");
        CHECK(newest["channel_id"] == "g3");
        CHECK(newest["payload"] == b64("g3 #20"));
        CHECK(seqs_of(sync(g3(0), 0)[0]["messages"]) == down_from(20, 6));  // default 15
        CHECK(seqs_of(sync(g3(0), -4)[0]["messages"]) == down_from(20, 6));
        CHECK(seqs_of(post(http, "/conversation/syncMessages", {{"uid", "a"}, {"channels", g3(0)}})[0]["messages"]) ==
              down_from(20, 6));
        CHECK(seqs_of(sync(g3(0), 100)[0]["messages"]) == down_from(20, 1));
        CHECK(seqs_of(sync(g3(17), 15)[0]["messages"]) == down_from(20, 18));
        CHECK(seqs_of(sync(g3(17), 2)[0]["messages"]) == down_from(20, 19));
        CHECK(sync(g3(20), 15)[0]["messages"] == json::array());
        CHECK(sync(g3(25), 15)[0]["messages"] == json::array());

        // Request order, person chats by the peer, unknown channels empty.
        json several = sync(json::array({{{"channel_id", "g2"}, {"channel_type", 2}, {"last_msg_seq", 0}},
                                         {{"channel_id", "nochannel"}, {"channel_type", 2}, {"last_msg_seq", 0}},
                                         {{"channel_id", "b"}, {"channel_type", 1}, {"last_msg_seq", 1}},
                                         {{"channel_id", "g3"}, {"channel_type", 2}, {"last_msg_seq", 18}}}),
                            10);
        REQUIRE(several.size() == 4);
        CHECK(several[0]["channel_id"] == "g2");
        CHECK(seqs_of(several[0]["messages"]) == std::vector<uint32_t>{1});
        CHECK(several[0]["messages"][0]["from_uid"] == "b");
        CHECK(several[1]["channel_id"] == "nochannel");
        CHECK(several[1]["messages"] == json::array());
        CHECK(several[2]["channel_id"] == "b");
        CHECK(several[2]["channel_type"] == 1);
        CHECK(seqs_of(several[2]["messages"]) == down_from(3, 2));
        CHECK(several[2]["messages"][0]["from_uid"] == "b");
        CHECK(several[2]["messages"][0]["channel_id"] == "a");  // stored person messages name the recipient
        CHECK(several[2]["messages"][1]["from_uid"] == "a");
        CHECK(several[3]["channel_id"] == "g3");
        CHECK(seqs_of(several[3]["messages"]) == down_from(20, 19));
        // The same person chat from the other side.
        json from_b = post(http, "/conversation/syncMessages",
                           {{"uid", "b"}, {"channels", {{{"channel_id", "a"}, {"channel_type", 1}}}}, {"msg_count", 0}});
        REQUIRE(from_b.size() == 1);
        CHECK(seqs_of(from_b[0]["messages"]) == down_from(3, 1));
        CHECK(post(http, "/conversation/syncMessages", {{"uid", "a"}, {"channels", json::array()}}) == json::array());

        const json item = {{"channel_id", "g3"}, {"channel_type", 2}, {"last_msg_seq", 0}};
        for (const char* drop : {"channel_id", "channel_type"}) {
            json bad = item;
            bad.erase(drop);
            post(http, "/conversation/syncMessages", {{"uid", "a"}, {"channels", json::array({item, bad})}}, 400);
        }
        json zero = item;
        zero["channel_type"] = 0;
        post(http, "/conversation/syncMessages", {{"uid", "a"}, {"channels", json::array({zero})}}, 400);
        post(http, "/conversation/syncMessages", {{"uid", "a"}, {"channels", json::array({"g3"})}}, 400);
        post(http, "/conversation/syncMessages", {{"uid", "a"}, {"channels", "g3"}}, 400);
        post(http, "/conversation/syncMessages", {{"channels", json::array({item})}}, 400);
        post_raw_400(http, "/conversation/syncMessages", "{\"uid\":\"a\",\"channels\":[");
    }
}

// ---- 3 ----

TEST_CASE("conversations: --conversation-max 3 keeps a user's 3 most recent, also after a SIGKILL") {
    // Nothing flushed before the SIGKILL: the list after it is rebuilt by replaying the logs.
    ImServer server({"--conversation-max", "3", "--conversation-flush-ms", "60000"});
    REQUIRE_MESSAGE(server.started(), server.log());
    uint16_t http = server.http_port();
    // The logs are u@p1 ... u@p6 (fake ids, §7.1); sent in the reverse order.
    for (const char* peer : {"p5", "p4", "p3", "p2", "p1"}) inject(http, peer, "u", 1, true);
    const std::set<Key> first{{"p1", 1}, {"p2", 1}, {"p3", 1}};
    CHECK_MESSAGE(wait_keys(http, "u", first) == first, keys_text(wait_keys(http, "u", first, 0)));
    // Each sender keeps its own (single) conversation.
    for (const char* peer : {"p1", "p2", "p3", "p4", "p5"})
        CHECK(wait_keys(http, peer, {{"u", 1}}) == std::set<Key>{{"u", 1}});
    // p3 again (now the most recent), then p6: p2 is the least recently used.
    inject(http, "p3", "u", 1, true);
    CHECK(wait_item(http, "u", {"p3", 1}, [](const json& j) { return j["unread"] == 2; }).has_value());
    inject(http, "p6", "u", 1, true);
    const std::set<Key> second{{"p1", 1}, {"p3", 1}, {"p6", 1}};
    CHECK_MESSAGE(wait_keys(http, "u", second) == second, keys_text(wait_keys(http, "u", second, 0)));

    REQUIRE_MESSAGE(server.restart(SIGKILL), server.log());
    http = server.http_port();
    const std::set<Key> after = wait_keys(http, "u", second, 500);
    CHECK_MESSAGE(after == second, "after the restart: " << keys_text(after));
    for (const json& item : conversations(http, "u")) {
        CAPTURE(item.dump());
        CHECK(item["unread"] == (item["channel_id"] == "p3" ? 2 : 1));
    }
}

TEST_CASE("conversations: --conversation-users-max 1: every user's list read back from the store, also after a SIGKILL") {
    ImServer server({"--conversation-users-max", "1", "--conversation-flush-ms", "20"});
    REQUIRE_MESSAGE(server.started(), server.log());
    uint16_t http = server.http_port();
    const std::vector<std::string> users{"u1", "u2", "u3"};
    for (const std::string& uid : users) inject(http, "s", uid, 1, true);
    for (const std::string& uid : users)
        CHECK(wait_item(http, uid, {"s", 1}, [](const json& j) { return j["unread"] == 1; }).value_or(json())["unread"] == 1);
    // Flushed and evicted by now but one: the second message makes partial
    // users, merged with the stored lists by the API read or the flusher.
    std::this_thread::sleep_for(milliseconds(60));
    for (const std::string& uid : users) inject(http, "s", uid, 1, true);
    for (const std::string& uid : users)
        CHECK(wait_item(http, uid, {"s", 1}, [](const json& j) { return j["unread"] == 2; }).value_or(json())["unread"] == 2);
    REQUIRE_MESSAGE(server.restart(SIGKILL), server.log());
    http = server.http_port();
    for (const std::string& uid : users) {
        const json list = conversations(http, uid);
        REQUIRE(list.size() == 1);
        CHECK(list[0]["unread"] == 2);
        CHECK(list[0]["last_message"]["message_seq"] == 2);
    }
    CHECK(by_key(conversations(http, "s")).size() == 3);
}

// ---- 4 ----

TEST_CASE("conversations: /channel/subscriber_remove removes the removed user's conversation of the group") {
    ImServer server;
    REQUIRE_MESSAGE(server.started(), server.log());
    uint16_t http = server.http_port();
    post(http, "/channel", {{"channel_id", "g1"}, {"channel_type", 2}, {"subscribers", {"a", "b", "c"}}});
    post(http, "/channel", {{"channel_id", "g2"}, {"channel_type", 2}, {"subscribers", {"a", "c"}}});
    inject(http, "a", "g1", 2, true);
    inject(http, "a", "g2", 2, true);
    REQUIRE(wait_keys(http, "c", {{"g1", 2}, {"g2", 2}}) == std::set<Key>{{"g1", 2}, {"g2", 2}});
    REQUIRE(wait_keys(http, "b", {{"g1", 2}}) == std::set<Key>{{"g1", 2}});

    CHECK(post(http, "/channel/subscriber_remove", {{"channel_id", "g1"}, {"channel_type", 2}, {"subscribers", {"c"}}}) ==
          json{{"status", 200}});
    CHECK(wait_keys(http, "c", {{"g2", 2}}, 0) == std::set<Key>{{"g2", 2}});
    CHECK(wait_keys(http, "b", {{"g1", 2}}, 0) == std::set<Key>{{"g1", 2}});
    CHECK(wait_keys(http, "a", {{"g1", 2}, {"g2", 2}}, 0) == std::set<Key>{{"g1", 2}, {"g2", 2}});
    // A later message of the group no longer reaches c.
    inject(http, "b", "g1", 2, true);
    CHECK(wait_item(http, "a", {"g1", 2}, [](const json& j) { return j["unread"] == 1; }).has_value());

    REQUIRE_MESSAGE(server.restart(SIGKILL), server.log());
    http = server.http_port();
    CHECK(wait_keys(http, "c", {{"g2", 2}}, 0) == std::set<Key>{{"g2", 2}});
    auto b_g1 = wait_item(http, "b", {"g1", 2}, [](const json& j) { return j["unread"] == 1; }, 500);
    REQUIRE(b_g1);
    CHECK((*b_g1)["unread"] == 1);
    CHECK((*b_g1)["last_message"]["message_seq"] == 2);
}

// ---- 5 ----

namespace {

struct Flood {
    int64_t elapsed_ms = 0;
    uint32_t acks = 0, refused = 0;
    std::set<uint32_t> client_seqs, message_seqs;
};

// One v4 client writes `n` SENDs to a person chat at once (pipelined, no
// waiting for SENDACKs) while a thread reads the SENDACKs.
Flood flood(ImServer& server, uint32_t n) {
    ChatClient c = online(server, "flooder");
    std::vector<uint8_t> bytes;
    for (uint32_t k = 1; k <= n; ++k) {
        auto one = c.build_send("sink", 1, "flood #" + std::to_string(k), k, "flood-" + std::to_string(k));
        bytes.insert(bytes.end(), one.begin(), one.end());
    }
    Flood out;
    const auto t0 = Clock::now();
    std::thread reader([&] {
        while (out.acks < n) {
            auto p = c.raw().read_packet(5000);
            if (!p) return;
            if (p->type() != proto::PacketType::Sendack) continue;
            const auto& ack = std::get<proto::SendackPacket>(p->packet);
            ++out.acks;
            if (ack.reason_code != 1) ++out.refused;
            out.client_seqs.insert(ack.client_seq);
            out.message_seqs.insert(ack.message_seq);
        }
    });
    CHECK(c.raw().send_bytes(bytes));
    reader.join();
    out.elapsed_ms = ms_since(t0);
    return out;
}

std::set<uint32_t> one_to(uint32_t n) {
    std::set<uint32_t> out;
    for (uint32_t k = 1; k <= n; ++k) out.insert(k);
    return out;
}

// How many messages the log of the person chat flooder/sink holds.
size_t stored(uint16_t http_port) {
    size_t count = 0;
    uint32_t after = 0;
    for (int page = 0; page < 100; ++page) {
        json r = post(http_port, "/channel/messagesync",
                      {{"login_uid", "flooder"}, {"channel_id", "sink"}, {"channel_type", 1}, {"min_message_seq", after},
                       {"limit", 500}, {"reverse", 1}});
        const json& messages = r["messages"];
        if (!messages.is_array() || messages.empty()) break;
        count += messages.size();
        after = messages.back().value("message_seq", 0u);
        if (r.value("more", 0) == 0) break;
    }
    return count;
}

// The rate limit's wait counter on GET /metrics (-1: not there).
int64_t metric(uint16_t http_port, const std::string& name) {
    HttpResult r = http_request(http_port, "GET", "/metrics", "");
    if (r.status != 200) return -1;
    std::istringstream lines(r.body);
    std::string line;
    while (std::getline(lines, line))
        if (line.rfind(name + " ", 0) == 0) return std::stoll(line.substr(name.size() + 1));
    return -1;
}

constexpr uint32_t kFlood = 600;

}  // namespace

TEST_CASE("rate limit: 600 pipelined SENDs at --max-messages-per-second 200 all succeed, none dropped, in >= ~2 s") {
    ImServer server({"--max-messages-per-second", "200", "--durability", "none"});
    REQUIRE_MESSAGE(server.started(), server.log());
    const Flood f = flood(server, kFlood);
    MESSAGE("600 SENDs at 200/s: " << f.elapsed_ms << " ms");
    CHECK(f.acks == kFlood);
    CHECK(f.refused == 0);
    CHECK(f.client_seqs == one_to(kFlood));
    CHECK(f.message_seqs == one_to(kFlood));
    // A burst of 200, then 400 more at 200/s: 2 s at least; 1.2 s leaves room for timer rounding.
    CHECK(f.elapsed_ms >= 1200);
    CHECK(stored(server.http_port()) == kFlood);
    // Counted: limaoim-stat --json and /metrics.
    CHECK(server.process().stat("messages.rate_limit_waits") > 0);
    CHECK(metric(server.http_port(), "limaoim_rate_limit_waits_total") > 0);
}

TEST_CASE("rate limit: per user: one account's 150 pipelined SENDs wait; another user's SENDs meanwhile do not") {
    // 50 per second per user: the flooder's burst of 50, then 100 at 50/s (2 s).
    ImServer server({"--max-messages-per-user", "50", "--durability", "none"});
    REQUIRE_MESSAGE(server.started(), server.log());
    ChatClient victim = online(server, "victim");
    std::thread flooding([&] {
        const Flood f = flood(server, 150);
        MESSAGE("flooder: " << f.acks << " SENDACKs, " << f.refused << " refused, in " << f.elapsed_ms << " ms");
        CHECK(f.acks == 150);
        CHECK(f.refused == 0);
        CHECK(f.elapsed_ms >= 1200);  // 2 s owed; room for timer rounding
    });
    // Wait until the flooder owes time (its input paused), then the victim
    // sends 20, one at a time: each answered at once, not after the flood.
    for (int i = 0; i < 300 && server.process().stat("messages.user_rate_limit_waits") == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(server.process().stat("messages.user_rate_limit_waits") > 0);
    int64_t slowest_ms = 0;
    for (uint32_t k = 1; k <= 20; ++k) {
        const auto t0 = Clock::now();
        REQUIRE(victim.send_message("friend", 1, "hi", k, "v-" + std::to_string(k)));
        auto ack = victim.read_sendack(5000);
        REQUIRE(ack);
        CHECK(ack->reason_code == 1);
        slowest_ms = std::max<int64_t>(slowest_ms, ms_since(t0));
    }
    MESSAGE("victim: 20 SENDs while the flooder waits, slowest SENDACK " << slowest_ms << " ms");
    CHECK(slowest_ms < 1000);  // the flooder still owes seconds
    CHECK(metric(server.http_port(), "limaoim_user_rate_limit_waits_total") > 0);
    CHECK(server.process().stat("messages.rate_limit_waits") == 0);
    flooding.join();
}

TEST_CASE("rate limit: the same 600 SENDs without a limit are not held back") {
    ImServer server({"--durability", "none"});
    REQUIRE_MESSAGE(server.started(), server.log());
    const Flood f = flood(server, kFlood);
    MESSAGE("600 SENDs, default limit: " << f.elapsed_ms << " ms");
    CHECK(f.acks == kFlood);
    CHECK(f.refused == 0);
    CHECK(f.message_seqs == one_to(kFlood));
    // The limited run needs >= 2 s by construction; this one has no wait at
    // all (the default burst is 100000): the counter says so, whatever the
    // machine's speed (elapsed_ms is only reported).
    CHECK(stored(server.http_port()) == kFlood);
    CHECK(server.process().stat("messages.rate_limit_waits") == 0);
    CHECK(metric(server.http_port(), "limaoim_rate_limit_waits_total") == 0);
}
