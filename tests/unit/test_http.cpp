// The HTTP API (SERVER.md §16.0-16.3): Api::handle against a fake im::Service
// (every endpoint, its Service call and its JSON; malformed input; auth),
// the messagesync window, the http_parser-based RequestParser, and
// http::Server on a real worker ring with a real blocking pool.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/net/address.h"
#include "limaoim/http/api.h"
#include "limaoim/http/server.h"
#include "limaoim/net/blocking_pool.h"
#include "limaoim/net/worker.h"
#include "ports.h"

using namespace limaoim;
using http::Api;
using http::Request;
using http::Response;
using nlohmann::json;

namespace {

std::string join(const std::vector<std::string>& items) {
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
    return out + "]";
}

// Records every call as one line; answers with `outcome` (or throws when
// `throw_message` is set). Thread-safe: the Server test calls it from the pool.
struct FakeService final : im::Service {
    std::mutex mutex;
    std::vector<std::string> calls;
    im::Outcome outcome;
    std::string throw_message;
    std::vector<std::string> online;
    std::vector<im::Message> messages;  // what the message reads return (up to the limit), oldest first
    std::vector<size_t> page_bytes;     // the byte limit of each message read, in order
    im::ApiSend last_send;

    im::Outcome record(std::string call) {
        std::lock_guard lock(mutex);
        calls.push_back(std::move(call));
        if (!throw_message.empty()) throw std::runtime_error(throw_message);
        return outcome;
    }
    std::string last() {
        std::lock_guard lock(mutex);
        return calls.empty() ? "" : calls.back();
    }
    size_t count() {
        std::lock_guard lock(mutex);
        return calls.size();
    }
    // Reads `messages` as the core reads the store (im::PageLimit: each
    // message counts its encoded size), from the oldest or the newest, and
    // appends them oldest first. True when the byte limit stopped the read.
    bool take(im::PageLimit limit, std::vector<im::Message>& out, bool from_newest = false) {
        {
            std::lock_guard lock(mutex);
            page_bytes.push_back(limit.bytes);
        }
        std::vector<im::Message> taken;
        size_t bytes = 0;
        for (size_t i = 0; i < messages.size() && taken.size() < limit.count && bytes <= limit.bytes; ++i) {
            const im::Message& m = messages[from_newest ? messages.size() - 1 - i : i];
            taken.push_back(m);
            bytes += im::encoded_size(m.view());
        }
        if (from_newest) std::reverse(taken.begin(), taken.end());
        out.insert(out.end(), taken.begin(), taken.end());
        return bytes > limit.bytes;
    }

    im::Outcome set_token(std::string_view uid, std::string_view token, uint8_t device_flag,
                          uint8_t device_level) override {
        return record("set_token " + std::string(uid) + " " + std::string(token) + " " + std::to_string(device_flag) +
                      " " + std::to_string(device_level));
    }
    std::vector<std::string> online_uids(const std::vector<std::string>& uids) override {
        record("online_uids " + join(uids));
        return online;
    }
    im::Outcome add_system_uids(const std::vector<std::string>& uids) override {
        return record("add_system_uids " + join(uids));
    }
    im::Outcome remove_system_uids(const std::vector<std::string>& uids) override {
        return record("remove_system_uids " + join(uids));
    }
    im::Outcome put_channel(std::string_view id, uint8_t type, std::string_view parent,
                            const std::vector<std::string>& subscribers) override {
        return record("put_channel " + std::string(id) + " " + std::to_string(type) + " " + std::string(parent) + " " +
                      join(subscribers));
    }
    im::Outcome add_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids,
                                bool reset) override {
        return record("add_subscribers " + std::string(id) + " " + std::to_string(type) + " " + join(uids) +
                      (reset ? " reset" : ""));
    }
    im::Outcome remove_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids) override {
        return record("remove_subscribers " + std::string(id) + " " + std::to_string(type) + " " + join(uids));
    }
    im::Outcome delete_channel(std::string_view id, uint8_t type) override {
        return record("delete_channel " + std::string(id) + " " + std::to_string(type));
    }
    im::Outcome edit_list(std::string_view id, uint8_t type, im::ListKind list, im::ListEdit edit,
                          const std::vector<std::string>& uids) override {
        const char* kinds[] = {"deny", "allow"};
        const char* edits[] = {"add", "set", "remove"};
        return record("edit_list " + std::string(id) + " " + std::to_string(type) + " " + kinds[int(list)] + " " +
                      edits[int(edit)] + " " + join(uids));
    }
    im::Outcome send(const im::ApiSend& message, im::ApiSent& sent) override {
        last_send = message;
        sent = {.message_id = 77, .message_seq = 5, .client_msg_no = message.client_msg_no + "-stored"};
        return record("send");
    }
    im::Outcome sync(std::string_view uid, uint32_t after_seq, im::PageLimit limit, std::vector<im::Message>& out) override {
        im::Outcome o =
            record("sync " + std::string(uid) + " " + std::to_string(after_seq) + " " + std::to_string(limit.count));
        if (o) take(limit, out);
        return o;
    }
    im::Outcome sync_ack(std::string_view uid, uint32_t seq) override {
        return record("sync_ack " + std::string(uid) + " " + std::to_string(seq));
    }
    im::Outcome channel_messages(std::string_view login_uid, std::string_view channel_id, uint8_t type,
                                 uint32_t from_seq, uint32_t to_seq, im::PageLimit limit, bool keep_newest,
                                 std::vector<im::Message>& out, bool& cut) override {
        im::Outcome o = record("channel_messages " + std::string(login_uid) + " " + std::string(channel_id) + " " +
                               std::to_string(type) + " " + std::to_string(from_seq) + " " + std::to_string(to_seq) +
                               " " + std::to_string(limit.count) + (keep_newest ? " newest" : ""));
        if (o) cut = take(limit, out, keep_newest);
        return o;
    }
    std::vector<im::ConversationView> conversation_views;  // what conversations() returns
    im::Outcome conversations(std::string_view uid, std::vector<im::ConversationView>& out) override {
        im::Outcome o = record("conversations " + std::string(uid));
        if (o) out = conversation_views;
        return o;
    }
    im::Outcome set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t unread) override {
        return record("set_unread " + std::string(uid) + " " + std::string(channel_id) + " " + std::to_string(type) +
                      " " + std::to_string(unread));
    }
    im::Outcome delete_conversation(const std::vector<std::string>& uids, std::string_view channel_id,
                                    uint8_t type) override {
        return record("delete_conversation " + join(uids) + " " + std::string(channel_id) + " " + std::to_string(type));
    }
    im::Outcome sync_conversations(std::string_view uid, int64_t version, std::vector<im::Conversation>& out) override {
        im::Outcome o = record("sync_conversations " + std::string(uid) + " " + std::to_string(version));
        if (o)
            for (const im::ConversationView& v : conversation_views) out.push_back(v.conversation);
        return o;
    }
    im::Outcome recent_messages(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t after_seq,
                                im::PageLimit limit, std::vector<im::Message>& out) override {
        im::Outcome o = record("recent_messages " + std::string(uid) + " " + std::string(channel_id) + " " +
                               std::to_string(type) + " " + std::to_string(after_seq) + " " + std::to_string(limit.count));
        if (o) {
            take(limit, out, true);
            std::reverse(out.begin(), out.end());  // newest first
        }
        return o;
    }
};

Response call(const Api& api, std::string method, std::string path, std::string body, std::string auth = "") {
    Request request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.body = std::move(body);
    request.authorization = std::move(auth);
    return api.handle(request);
}

Response post(const Api& api, std::string path, std::string body) {
    return call(api, "POST", std::move(path), std::move(body));
}

const std::string kOk = R"({"status":200})";

// A 400 whose message mentions `words`, with no Service call.
void check_refused(FakeService& service, const Api& api, const std::string& path, const std::string& body,
                   const std::string& words) {
    CAPTURE(path);
    CAPTURE(body);
    const size_t before = service.count();
    const Response r = post(api, path, body);
    CHECK(r.status == 400);
    const json parsed = json::parse(r.body);
    CHECK(parsed["status"] == 400);
    CHECK(parsed["msg"].get<std::string>().find(words) != std::string::npos);
    CHECK(r.body.rfind(R"({"msg":)", 0) == 0);  // "msg" first, then "status"
    CHECK(service.count() == before);
}

im::Message sample_message() {
    im::Message m;
    m.header_flags = 0x02;
    m.setting = 0;
    m.channel_type = 1;
    m.message_id = 1724551110972149765;
    m.message_seq = 42;
    m.timestamp = 1700000000;
    m.client_msg_no = "9f1c";
    m.from_uid = "alice";
    m.channel_id = "bob";
    m.payload = R"({"type":1})";
    return m;
}

const std::string kSampleResp =
    R"({"header":{"no_persist":0,"red_dot":1,"sync_once":0},"setting":0,)"
    R"("message_id":1724551110972149765,"message_idstr":"1724551110972149765",)"
    R"("client_msg_no":"9f1c","message_seq":42,"from_uid":"alice","channel_id":"bob","channel_type":1,)"
    R"("timestamp":1700000000,"payload":"eyJ0eXBlIjoxfQ=="})";

}  // namespace

// ---- routing, auth, conventions ----

TEST_CASE("Api: GET /health; unknown path 404; wrong method 405 with Allow") {
    FakeService service;
    Api api(service);
    Response r = call(api, "GET", "/health", "");
    CHECK(r.status == 200);
    CHECK(r.body == kOk);
    r = call(api, "POST", "/nope", "{}");
    CHECK(r.status == 404);
    CHECK(r.body == R"({"msg":"not found","status":404})");
    r = call(api, "GET", "/user/token", "");
    CHECK(r.status == 405);
    CHECK(json::parse(r.body)["status"] == 405);
    CHECK(std::string(r.allow) == "POST");
    r = call(api, "POST", "/health", "");
    CHECK(r.status == 405);
    CHECK(std::string(r.allow) == "GET");
    CHECK(service.count() == 0);
}

TEST_CASE("Api: a bearer secret is required on every request when configured") {
    FakeService service;
    Api api(service, {.bearer_secret = "s3cret"});
    CHECK(call(api, "GET", "/health", "").status == 401);
    CHECK(call(api, "GET", "/health", "", "Bearer wrong!").status == 401);
    CHECK(call(api, "GET", "/health", "", "Bearer s3cre").status == 401);
    CHECK(call(api, "GET", "/health", "", "Basic s3cret").status == 401);
    CHECK(call(api, "GET", "/health", "", "s3cret").status == 401);
    CHECK(call(api, "POST", "/nope", "", "").status == 401);  // paths are not disclosed either
    const Response refused = call(api, "POST", "/user/token", R"({"uid":"a","token":"t"})", "Bearer x");
    CHECK(refused.status == 401);
    CHECK(refused.body == R"({"msg":"unauthorized","status":401})");
    CHECK(service.count() == 0);
    CHECK(call(api, "GET", "/health", "", "Bearer s3cret").status == 200);
    CHECK(call(api, "GET", "/health", "", "bearer  s3cret ").status == 200);
    CHECK(call(api, "POST", "/user/token", R"({"uid":"a","token":"t"})", "Bearer s3cret").status == 200);
    CHECK(service.count() == 1);
    Api open(service);
    CHECK(open.authorized(""));
    CHECK(open.authorized("Bearer anything"));
}

TEST_CASE("Api: static files answer GET without the secret; nothing else does") {
    FakeService service;
    const http::StaticFile files[] = {{"/demo/", "text/html; charset=utf-8", "<html>", 200},
                                      {"/demo/missing.js", "text/plain", "not built", 404}};
    Api api(service, {.bearer_secret = "s3cret"}, {}, files);
    Response page = call(api, "GET", "/demo/", "");
    CHECK(page.status == 200);
    CHECK(page.body == "<html>");
    CHECK(std::string(page.content_type) == "text/html; charset=utf-8");
    CHECK(call(api, "GET", "/demo/missing.js", "").status == 404);
    CHECK(call(api, "POST", "/demo/", "").status == 401);       // only GET
    CHECK(call(api, "GET", "/demo/other.js", "").status == 401);  // only the listed paths
    CHECK(call(api, "GET", "/demo/?x=1", "").status == 401);      // the path must match exactly (the query is apart)
}

// A request as it arrives, headers only: what Api::screen sees.
Request head(std::string method, std::string path, std::string host, std::string origin = "",
             std::string authorization = "") {
    Request request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.host = std::move(host);
    request.origin = std::move(origin);
    request.authorization = std::move(authorization);
    return request;
}

// The status screen() answers, 0 when the request may go on.
int screened(const Api& api, const Request& request) {
    const std::optional<Response> refused = api.screen(request);
    return refused ? refused->status : 0;
}

TEST_CASE("net::is_loopback_host: localhost, 127.0.0.0/8 and ::1 only, as names and addresses, not look-alikes") {
    for (const char* host : {"localhost", "LOCALHOST", "127.0.0.1", "127.255.1.2", "::1", "0:0:0:0:0:0:0:1"}) {
        CAPTURE(host);
        CHECK(limaoim::net::is_loopback_host(host));
    }
    for (const char* host : {"", "127.example.com", "127.0.0.1.evil.example", "128.0.0.1", "0.0.0.0", "::", "::2",
                             "[::1]", "localhost.evil.example", "localhos", "127.1"}) {
        CAPTURE(host);
        CHECK_FALSE(limaoim::net::is_loopback_host(host));
    }
}

TEST_CASE("Api::screen: no secret: a browser's cross-origin request and a rebound Host are refused; curl is not") {
    FakeService service;
    const http::StaticFile files[] = {{"/demo/", "text/html; charset=utf-8", "<html>", 200}};
    Api api(service, {.allowed_origins = {"http://admin.example:8080"}}, {}, files);
    // curl and business servers: no Origin, Host = what they dialed (or none, HTTP/1.0).
    for (const char* host : {"127.0.0.1:1516", "127.0.0.1", "127.9.8.7:80", "localhost:1516", "LocalHost", "[::1]:1516",
                             "[::1]", ""}) {
        CAPTURE(host);
        CHECK(screened(api, head("POST", "/user/token", host)) == 0);
    }
    // A page at another origin: Chromium's "simple" text/plain POST carries its Origin.
    CHECK(screened(api, head("POST", "/user/token", "127.0.0.1:1516", "http://evil.example")) == 403);
    CHECK(screened(api, head("GET", "/conversations", "localhost:1516", "https://evil.example")) == 403);
    CHECK(screened(api, head("POST", "/user/token", "127.0.0.1:1516", "null")) == 403);  // sandboxed frame, file://
    CHECK(screened(api, head("POST", "/user/token", "127.0.0.1:1516", "http://127.0.0.1:9999")) == 403);
    // DNS rebinding: the page's own name, now resolving to 127.0.0.1, is the Host; Origin absent (GET) or the same.
    for (const char* host : {"evil.example:1516", "evil.example", "127.0.0.1.evil.example:1516", "127.0.0.1:x",
                             "10.0.0.1:1516", "[::2]:1516", "localhost.evil.example"}) {
        CAPTURE(host);
        CHECK(screened(api, head("POST", "/message/sync", host)) == 403);
    }
    CHECK(screened(api, head("POST", "/message/sync", "evil.example:1516", "http://evil.example:1516")) == 403);
    // The API's own pages (the demo) call it same-origin; an allowed origin passes, exactly.
    CHECK(screened(api, head("POST", "/channel/messagesync", "127.0.0.1:1516", "http://127.0.0.1:1516")) == 0);
    CHECK(screened(api, head("POST", "/channel/messagesync", "localhost:1516", "http://localhost:1516")) == 0);
    CHECK(screened(api, head("POST", "/user/token", "127.0.0.1:1516", "http://admin.example:8080")) == 0);
    CHECK(screened(api, head("POST", "/user/token", "127.0.0.1:1516", "http://admin.example:8081")) == 403);
    CHECK(screened(api, head("POST", "/user/token", "127.0.0.1:1516", "http://admin.example")) == 403);
    // Static pages are public: served to any page and any Host.
    CHECK(screened(api, head("GET", "/demo/", "evil.example:1516", "http://evil.example")) == 0);
    CHECK(screened(api, head("POST", "/demo/", "evil.example:1516")) == 403);
    // handle() decides the same, before the core is asked.
    Request forged = head("POST", "/user/token", "127.0.0.1:1516", "http://evil.example");
    forged.body = R"({"uid":"alice","token":"x"})";
    const Response refused = api.handle(forged);
    CHECK(refused.status == 403);
    CHECK(json::parse(refused.body)["msg"].get<std::string>().find("http_allowed_origins") != std::string::npos);
    CHECK(service.count() == 0);
}

TEST_CASE("Api::screen: with a secret any Host is accepted, the Origin rule stays, then the secret decides") {
    FakeService service;
    Api api(service, {.bearer_secret = "s3cret"});
    CHECK(screened(api, head("POST", "/user/token", "im.example.com:1516", "", "Bearer s3cret")) == 0);
    CHECK(screened(api, head("POST", "/user/token", "im.example.com:1516")) == 401);
    CHECK(screened(api, head("POST", "/user/token", "im.example.com", "https://im.example.com", "Bearer s3cret")) == 0);
    CHECK(screened(api, head("POST", "/user/token", "im.example.com:1516", "http://evil.example", "Bearer s3cret")) ==
          403);
}

TEST_CASE("Api: an allowed origin gets CORS: its preflight passes without the secret, its answers name it") {
    FakeService service;
    Api api(service, {.bearer_secret = "s3cret", .allowed_origins = {"http://admin.example:8080"}});
    const std::string admin = "http://admin.example:8080";
    // The browser's preflight for a JSON POST with Authorization carries neither.
    const Response preflight = api.handle(head("OPTIONS", "/user/token", "127.0.0.1:1516", admin));
    CHECK(preflight.status == 200);
    CHECK(preflight.allow_origin == admin);
    const std::string wire = http::serialize_response(preflight, true);
    CHECK(wire.find("\r\nAccess-Control-Allow-Origin: http://admin.example:8080\r\nVary: Origin\r\n") !=
          std::string::npos);
    CHECK(wire.find("\r\nAccess-Control-Allow-Headers: Authorization, Content-Type, token\r\n") != std::string::npos);
    CHECK(screened(api, head("OPTIONS", "/user/token", "127.0.0.1:1516", "http://evil.example")) == 403);
    CHECK(screened(api, head("OPTIONS", "/user/token", "127.0.0.1:1516")) == 401);  // no Origin: no preflight
    // The request itself needs the secret, and its answer names the origin.
    Request post_token = head("POST", "/user/token", "127.0.0.1:1516", admin, "Bearer s3cret");
    post_token.body = R"({"uid":"a","token":"t"})";
    const Response answer = api.handle(post_token);
    CHECK(answer.status == 200);
    CHECK(answer.allow_origin == admin);
    CHECK(api.handle(head("POST", "/user/token", "127.0.0.1:1516", admin)).status == 401);
    // Curl and the API's own pages get no CORS headers.
    post_token.origin.clear();
    CHECK(api.handle(post_token).allow_origin.empty());
    CHECK(http::serialize_response(api.handle(post_token), true).find("Access-Control") == std::string::npos);
    CHECK(service.count() == 3);
}

TEST_CASE("Api: malformed JSON and bodies of the wrong shape are 400s, never exceptions") {
    FakeService service;
    Api api(service);
    check_refused(service, api, "/user/token", "", "malformed JSON");
    check_refused(service, api, "/user/token", "{", "malformed JSON");
    check_refused(service, api, "/user/token", R"({"uid":"a",})", "malformed JSON");
    check_refused(service, api, "/user/token", "\xff\xfe", "malformed JSON");
    check_refused(service, api, "/user/token", R"(["uid"])", "JSON object");
    check_refused(service, api, "/message/sync", "42", "JSON object");
    check_refused(service, api, "/user/onlinestatus", R"({"uids":["a"]})", "JSON array");
    // Deep nesting does not overflow a stack.
    check_refused(service, api, "/user/token", std::string(100000, '['), "malformed JSON");
    check_refused(service, api, "/user/token", std::string(100000, '[') + std::string(100000, ']'), "JSON object");
}

TEST_CASE("Api: the core's outcomes map to 400 and 500; an exception from it to 500") {
    FakeService service;
    Api api(service);
    service.outcome = im::Outcome::bad_request("uid contains @");
    Response r = post(api, "/user/token", R"({"uid":"a@b","token":"t"})");
    CHECK(r.status == 400);
    CHECK(r.body == R"({"msg":"uid contains @","status":400})");
    service.outcome = im::Outcome::unavailable("store failed");
    r = post(api, "/channel/delete", R"({"channel_id":"g1","channel_type":2})");
    CHECK(r.status == 500);
    CHECK(r.body == R"({"msg":"store failed","status":500})");
    r = post(api, "/message/sync", R"({"uid":"a","limit":5})");
    CHECK(r.status == 500);
    r = post(api, "/channel/messagesync", R"({"channel_id":"g1","channel_type":2,"limit":5})");
    CHECK(r.status == 500);
    service.outcome = im::Outcome::ok();
    service.throw_message = "boom";
    r = post(api, "/systemuids_add", R"({"uids":["s"]})");
    CHECK(r.status == 500);
    CHECK(json::parse(r.body)["msg"] == "boom");
}

// ---- §16.1 users ----

TEST_CASE("Api: POST /user/token") {
    FakeService service;
    Api api(service);
    Response r = post(api, "/user/token", R"({"uid":"alice","token":"tk","device_flag":1,"device_level":1})");
    CHECK(r.status == 200);
    CHECK(r.body == kOk);
    CHECK(service.last() == "set_token alice tk 1 1");
    CHECK(post(api, "/user/token", R"({"uid":"bob","token":"tk","device_flag":null})").status == 200);
    CHECK(service.last() == "set_token bob tk 0 0");
    check_refused(service, api, "/user/token", R"({"token":"tk"})", "uid is required");
    check_refused(service, api, "/user/token", R"({"uid":"","token":"tk"})", "uid is required");
    check_refused(service, api, "/user/token", R"({"uid":"  ","token":"tk"})", "uid is required");
    check_refused(service, api, "/user/token", R"({"uid":"alice"})", "token is required");
    check_refused(service, api, "/user/token", R"({"uid":42,"token":"tk"})", "uid must be a string");
    check_refused(service, api, "/user/token", R"({"uid":"a","token":["tk"]})", "token must be a string");
    check_refused(service, api, "/user/token", R"({"uid":"a","token":"t","device_flag":"1"})", "device_flag must be an integer");
    check_refused(service, api, "/user/token", R"({"uid":"a","token":"t","device_flag":1.5})", "device_flag must be an integer");
    check_refused(service, api, "/user/token", R"({"uid":"a","token":"t","device_flag":true})", "device_flag must be an integer");
    check_refused(service, api, "/user/token", R"({"uid":"a","token":"t","device_flag":256})", "device_flag is out of range");
    check_refused(service, api, "/user/token", R"({"uid":"a","token":"t","device_level":-1})", "device_level is out of range");
    check_refused(service, api, "/user/token", R"({"uid":"a","token":"t","device_level":18446744073709551615})",
                  "device_level is out of range");
}

TEST_CASE("Api: POST /user/onlinestatus takes and returns a bare array") {
    FakeService service;
    Api api(service);
    service.online = {"b"};
    Response r = post(api, "/user/onlinestatus", R"(["a","b","c"])");
    CHECK(r.status == 200);
    CHECK(r.body == R"(["b"])");
    CHECK(service.last() == "online_uids [a,b,c]");
    service.online = {};
    r = post(api, "/user/onlinestatus", "[]");
    CHECK(r.body == "[]");
    check_refused(service, api, "/user/onlinestatus", R"(["a",1])", "array of strings");
}

TEST_CASE("Api: POST /systemuids_add and /systemuids_remove") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/systemuids_add", R"({"uids":["s1","s2"]})").body == kOk);
    CHECK(service.last() == "add_system_uids [s1,s2]");
    CHECK(post(api, "/systemuids_remove", R"({"uids":["s1"]})").body == kOk);
    CHECK(service.last() == "remove_system_uids [s1]");
    check_refused(service, api, "/systemuids_add", R"({"uids":"s1"})", "uids must be an array of strings");
    check_refused(service, api, "/systemuids_remove", R"({"uids":[1]})", "uids must be an array of strings");
}

// ---- §16.3 channels ----

TEST_CASE("Api: POST /channel") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/channel", R"({"channel_id":"g1","channel_type":2,"bind":"p","forbidden":0,"subscribers":["a","b"]})")
              .body == kOk);
    CHECK(service.last() == "put_channel g1 2 p [a,b]");
    CHECK(post(api, "/channel", R"({"channel_id":"g2","channel_type":3})").status == 200);
    CHECK(service.last() == "put_channel g2 3  []");
    check_refused(service, api, "/channel", R"({"channel_type":2})", "channel_id is required");
    check_refused(service, api, "/channel", R"({"channel_id":"g1"})", "channel_type must not be 0");
    check_refused(service, api, "/channel", R"({"channel_id":"g1","channel_type":1})", "person channels");
    check_refused(service, api, "/channel", R"({"channel_id":"g1","channel_type":2,"bind":1})", "bind must be a string");
    check_refused(service, api, "/channel", R"({"channel_id":"g1","channel_type":2,"forbidden":"no"})", "forbidden");
}

TEST_CASE("Api: POST /channel/subscriber_add: type 0 means group, reset only when 1") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/channel/subscriber_add", R"({"channel_id":"g1","channel_type":0,"subscribers":["c"]})").body == kOk);
    CHECK(service.last() == "add_subscribers g1 2 [c]");
    CHECK(post(api, "/channel/subscriber_add", R"({"channel_id":"g1","channel_type":5,"reset":1,"subscribers":["c","d"]})")
              .status == 200);
    CHECK(service.last() == "add_subscribers g1 5 [c,d] reset");
    CHECK(post(api, "/channel/subscriber_add", R"({"channel_id":"g1","reset":2,"subscribers":["c"]})").status == 200);
    CHECK(service.last() == "add_subscribers g1 2 [c]");
    check_refused(service, api, "/channel/subscriber_add", R"({"channel_id":"g1","subscribers":[]})", "subscribers must not be empty");
    check_refused(service, api, "/channel/subscriber_add", R"({"channel_id":"g1"})", "subscribers must not be empty");
    check_refused(service, api, "/channel/subscriber_add", R"({"subscribers":["c"]})", "channel_id is required");
    check_refused(service, api, "/channel/subscriber_add", R"({"channel_id":"u","channel_type":1,"subscribers":["c"]})",
                  "person channels");
}

TEST_CASE("Api: POST /channel/subscriber_remove and /channel/delete") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/channel/subscriber_remove", R"({"channel_id":"g1","channel_type":2,"subscribers":["c"]})").body == kOk);
    CHECK(service.last() == "remove_subscribers g1 2 [c]");
    check_refused(service, api, "/channel/subscriber_remove", R"({"channel_id":"g1","channel_type":2})", "subscribers");
    check_refused(service, api, "/channel/subscriber_remove", R"({"channel_type":2,"subscribers":["c"]})", "channel_id");
    CHECK(post(api, "/channel/delete", R"({"channel_id":"g1","channel_type":2})").body == kOk);
    CHECK(service.last() == "delete_channel g1 2");
    check_refused(service, api, "/channel/delete", R"({"channel_type":2})", "channel_id is required");
}

TEST_CASE("Api: the six list endpoints") {
    FakeService service;
    Api api(service);
    const std::string body = R"({"channel_id":"g1","channel_type":2,"uids":["x","y"]})";
    const std::pair<const char*, const char*> cases[] = {
        {"/channel/blacklist_add", "edit_list g1 2 deny add [x,y]"},
        {"/channel/blacklist_set", "edit_list g1 2 deny set [x,y]"},
        {"/channel/blacklist_remove", "edit_list g1 2 deny remove [x,y]"},
        {"/channel/whitelist_add", "edit_list g1 2 allow add [x,y]"},
        {"/channel/whitelist_set", "edit_list g1 2 allow set [x,y]"},
        {"/channel/whitelist_remove", "edit_list g1 2 allow remove [x,y]"},
    };
    for (const auto& [path, expected] : cases) {
        CAPTURE(path);
        CHECK(post(api, path, body).body == kOk);
        CHECK(service.last() == expected);
    }
    // _set: only the channel id is required; no uids clear the list.
    CHECK(post(api, "/channel/blacklist_set", R"({"channel_id":"u1"})").status == 200);
    CHECK(service.last() == "edit_list u1 0 deny set []");
    CHECK(post(api, "/channel/whitelist_set", R"({"channel_id":"u1","channel_type":1,"uids":[]})").status == 200);
    CHECK(service.last() == "edit_list u1 1 allow set []");
    check_refused(service, api, "/channel/whitelist_set", R"({"uids":["x"]})", "channel_id is required");
    for (const char* path : {"/channel/blacklist_add", "/channel/blacklist_remove", "/channel/whitelist_add",
                             "/channel/whitelist_remove"}) {
        check_refused(service, api, path, R"({"channel_id":"g1","uids":["x"]})", "channel_type must not be 0");
        check_refused(service, api, path, R"({"channel_id":"g1","channel_type":2,"uids":[]})", "uids must not be empty");
        check_refused(service, api, path, R"({"channel_type":2,"uids":["x"]})", "channel_id is required");
    }
}

// ---- §16.2 messages ----

TEST_CASE("Api: POST /message/send") {
    FakeService service;
    Api api(service);
    Response r = post(api, "/message/send",
                      R"({"header":{"no_persist":0,"red_dot":1,"sync_once":2},"client_msg_no":"c1","from_uid":"alice",)"
                      R"("channel_id":"bob","channel_type":1,"payload":"aGVsbG8=","expire":30})");
    CHECK(r.status == 200);
    // What the message became, as WuKongIM answers it.
    CHECK(r.body == R"({"status":200,"data":{"message_id":77,"message_seq":5,"client_msg_no":"c1-stored"}})");
    CHECK(service.last() == "send");
    CHECK(service.last_send.expire == 30);
    CHECK(service.last_send.header_flags == 0x02);  // sync_once 2 does not count
    CHECK(service.last_send.client_msg_no == "c1");
    CHECK(service.last_send.from_uid == "alice");
    CHECK(service.last_send.channel_id == "bob");
    CHECK(service.last_send.channel_type == 1);
    CHECK(service.last_send.subscribers.empty());
    CHECK(service.last_send.payload == "hello");

    // A temporary channel: subscribers, no channel id; every header bit.
    r = post(api, "/message/send",
             R"({"header":{"no_persist":1,"red_dot":1,"sync_once":1},"subscribers":["a","b"],"payload":"AA=="})");
    CHECK(r.status == 200);
    CHECK(service.last_send.header_flags == 0x07);
    CHECK(service.last_send.channel_id.empty());
    CHECK(service.last_send.subscribers == std::vector<std::string>{"a", "b"});
    CHECK(service.last_send.payload == std::string(1, '\0'));

    const std::string to_bob = R"("channel_id":"bob","channel_type":1)";
    check_refused(service, api, "/message/send", "{" + to_bob + "}", "payload must not be empty");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":""})", "payload must not be empty");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":"aGVsbG8"})", "not valid base64");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":"aGV$bG8="})", "not valid base64");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":"aG==bG8="})", "not valid base64");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":"aGVs bG8="})", "not valid base64");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":123})", "payload must be a string");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":"AA==","expire":-1})", "expire is out of range");
    check_refused(service, api, "/message/send", R"({"channel_type":1,"payload":"aGk="})", "channel_id or subscribers");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":"aGk=","header":1})", "header must be an object");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":"aGk=","header":{"red_dot":"1"}})",
                  "red_dot must be an integer");
    check_refused(service, api, "/message/send", "{" + to_bob + R"(,"payload":"aGk=","subscribers":"a"})",
                  "subscribers must be an array");
    check_refused(service, api, "/message/send", R"({"channel_id":"bob","channel_type":300,"payload":"aGk="})",
                  "channel_type is out of range");
}

TEST_CASE("Api: POST /message/sync renders MessageResp exactly, keys in the spec's order") {
    FakeService service;
    Api api(service);
    service.messages = {sample_message(), sample_message()};
    service.messages[1].header_flags = 0x05;
    service.messages[1].payload = std::string("\x00\xff", 2);
    service.messages[1].from_uid = "\xc3\x28";  // not UTF-8 (the binary protocol allows it): replaced, not fatal
    Response r = post(api, "/message/sync", R"({"uid":"alice","message_seq":7,"limit":100})");
    CHECK(r.status == 200);
    CHECK(service.last() == "sync alice 7 100");
    const json parsed = json::parse(r.body);
    REQUIRE(parsed.size() == 2);
    CHECK(r.body.substr(0, kSampleResp.size() + 2) == "[" + kSampleResp + ",");
    CHECK(parsed[1]["header"] == json::parse(R"({"no_persist":1,"red_dot":0,"sync_once":1})"));
    CHECK(parsed[1]["payload"] == "AP8=");
    // Negative ids and seq/limit bounds.
    service.messages = {sample_message()};
    service.messages[0].message_id = -5;
    r = post(api, "/message/sync", R"({"uid":"alice","limit":1})");
    CHECK(json::parse(r.body)[0]["message_idstr"] == "-5");
    CHECK(post(api, "/message/sync", R"({"uid":"alice","limit":99999999999})").status == 200);
    CHECK(service.last() == "sync alice 0 1000");  // clamped to kMaxPageMessages

    const size_t calls = service.count();
    r = post(api, "/message/sync", R"({"uid":"alice","limit":0})");  // limit 0 returns nothing
    CHECK(r.status == 200);
    CHECK(r.body == "[]");
    CHECK(service.count() == calls);
    check_refused(service, api, "/message/sync", R"({"uid":"alice","limit":-1})", "limit must not be negative");
    check_refused(service, api, "/message/sync", R"({"limit":10})", "uid is required");
    check_refused(service, api, "/message/sync", R"({"uid":"a","message_seq":-1,"limit":10})", "message_seq is out of range");
    check_refused(service, api, "/message/sync", R"({"uid":"a","limit":"10"})", "limit must be an integer");
}

TEST_CASE("Api: POST /message/syncack") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/message/syncack", R"({"uid":"alice","last_message_seq":12})").body == kOk);
    CHECK(service.last() == "sync_ack alice 12");
    check_refused(service, api, "/message/syncack", R"({"uid":"alice","last_message_seq":0})", "last_message_seq must not be 0");
    check_refused(service, api, "/message/syncack", R"({"uid":"alice"})", "last_message_seq must not be 0");
    check_refused(service, api, "/message/syncack", R"({"last_message_seq":3})", "uid is required");
}

// ---- /channel/messagesync ----

TEST_CASE("message_sync_window: reverse = 1 reads forward from min+1") {
    using http::HistoryWindow;
    using http::message_sync_window;
    CHECK(message_sync_window(0, 0, 20, true) == HistoryWindow{1, 0, 20, false});
    CHECK(message_sync_window(10, 0, 20, true) == HistoryWindow{11, 0, 20, false});
    CHECK(message_sync_window(10, 15, 20, true) == HistoryWindow{11, 15, 5, false});   // min(L, max-min)
    CHECK(message_sync_window(10, 100, 20, true) == HistoryWindow{11, 100, 20, false});
    CHECK(message_sync_window(10, 11, 20, true).empty);  // nothing between 10 and 11
    CHECK(message_sync_window(10, 5, 20, true).empty);   // max below min
    CHECK(message_sync_window(4294967295u, 0, 20, true).empty);
}

TEST_CASE("message_sync_window: reverse = 0 reads the newest below max, or forward from min+1") {
    using http::HistoryWindow;
    using http::message_sync_window;
    CHECK(message_sync_window(0, 0, 20, false) == HistoryWindow{0, 0, 20, false});     // the oldest L
    CHECK(message_sync_window(0, 100, 20, false) == HistoryWindow{80, 100, 20, false});
    CHECK(message_sync_window(0, 10, 20, false) == HistoryWindow{0, 10, 20, false});   // max(0, max-L)
    CHECK(message_sync_window(5, 0, 20, false) == HistoryWindow{6, 0, 20, false});
    CHECK(message_sync_window(5, 100, 20, false) == HistoryWindow{6, 100, 20, false});
    CHECK(message_sync_window(5, 6, 20, false).empty);
}

TEST_CASE("Api: POST /channel/messagesync: window, echo of min/max, more") {
    FakeService service;
    Api api(service);
    service.messages = {sample_message(), sample_message()};
    Response r = post(api, "/channel/messagesync",
                      R"({"login_uid":"alice","channel_id":"bob","channel_type":1,"min_message_seq":0,)"
                      R"("max_message_seq":100,"limit":2,"reverse":0})");
    CHECK(r.status == 200);
    CHECK(service.last() == "channel_messages alice bob 1 98 100 2 newest");
    CHECK(r.body == R"({"min_message_seq":0,"max_message_seq":100,"more":1,"messages":[)" + kSampleResp + "," +
                        kSampleResp + "]}");

    r = post(api, "/channel/messagesync", R"({"login_uid":"alice","channel_id":"bob","channel_type":1,)"
                                          R"("min_message_seq":10,"max_message_seq":15,"limit":20,"reverse":1})");
    CHECK(service.last() == "channel_messages alice bob 1 11 15 5");
    CHECK(json::parse(r.body)["more"] == 0);  // 2 < 20

    r = post(api, "/channel/messagesync", R"({"channel_id":"g1","channel_type":2,"min_message_seq":3,"limit":3})");
    CHECK(service.last() == "channel_messages  g1 2 4 0 3");
    CHECK(json::parse(r.body)["more"] == 0);  // 2 < 3

    const size_t calls = service.count();
    r = post(api, "/channel/messagesync", R"({"channel_id":"g1","channel_type":2,"min_message_seq":5,"max_message_seq":6,"limit":3})");
    CHECK(service.count() == calls);  // empty window: no read
    CHECK(r.body == R"({"min_message_seq":5,"max_message_seq":6,"more":0,"messages":[]})");

    check_refused(service, api, "/channel/messagesync", R"({"channel_id":"g1","limit":-1})", "limit must not be negative");
    check_refused(service, api, "/channel/messagesync", R"({"channel_type":2,"limit":5})", "channel_id is required");
    check_refused(service, api, "/channel/messagesync", R"({"channel_id":"g1","max_message_seq":-3,"limit":5})",
                  "max_message_seq is out of range");
    check_refused(service, api, "/channel/messagesync", R"({"channel_id":"g1","reverse":"1","limit":5})",
                  "reverse must be an integer");
}

TEST_CASE("Api: limit is clamped to kMaxPageMessages; a page ends at the byte budget with more = 1") {
    FakeService service;
    for (uint32_t seq = 1; seq <= 1500; ++seq) {
        im::Message m = sample_message();
        m.message_seq = seq;
        service.messages.push_back(m);
    }
    Api api(service);
    Response r = post(api, "/channel/messagesync", R"({"channel_id":"g1","channel_type":2,"limit":4294967295,"reverse":1})");
    CHECK(service.last() == "channel_messages  g1 2 1 0 1000");
    json page = json::parse(r.body);
    CHECK(page["messages"].size() == http::kMaxPageMessages);
    CHECK(page["more"] == 1);
    CHECK(json::parse(post(api, "/message/sync", R"({"uid":"alice","limit":4294967295})").body).size() == 1000);
    // Backward from max: the newest 1000 below it.
    post(api, "/channel/messagesync", R"({"channel_id":"g1","channel_type":2,"max_message_seq":1501,"limit":4294967295})");
    CHECK(service.last() == "channel_messages  g1 2 501 1501 1000 newest");

    // A /channel/messagesync page of `count` messages with "more": 1, the one at `at` of seq `seq`.
    auto check_cut_page = [](const Api& with, const char* body, size_t count, size_t at, uint32_t seq) {
        const json cut = json::parse(post(with, "/channel/messagesync", body).body);
        REQUIRE(cut["messages"].size() == count);
        CHECK(cut["messages"][at]["message_seq"] == seq);
        CHECK(cut["more"] == 1);
    };
    // A budget of three sample messages (each counted as at most ~470 bytes
    // of JSON): forward keeps the oldest, backward the newest.
    service.messages.resize(10);
    Api small(service, {.message_bytes_budget = 1500});
    check_cut_page(small, R"({"channel_id":"g1","channel_type":2,"limit":10,"reverse":1})", 3, 0, 1);
    check_cut_page(small, R"({"channel_id":"g1","channel_type":2,"max_message_seq":11,"limit":10})", 3, 2, 10);
    const json queue = json::parse(post(small, "/message/sync", R"({"uid":"alice","limit":10})").body);
    REQUIRE(queue.size() == 3);
    CHECK(queue[0]["message_seq"] == 1);
    CHECK(service.page_bytes.back() == 1500);  // the read itself stops at the budget

    // One message over the budget still goes (the next page must be
    // reachable). The read stops after it, not knowing whether another
    // follows: "more" is 1 (a following empty page says 0).
    service.messages.resize(2);
    for (im::Message& m : service.messages) m.payload.assign(8192, 'x');
    check_cut_page(small, R"({"channel_id":"g1","channel_type":2,"limit":5,"reverse":1})", 1, 0, 1);
    check_cut_page(small, R"({"channel_id":"g1","channel_type":2,"max_message_seq":11,"limit":5})", 1, 0, 2);  // the newest

    // A topic counts too, escaped at worst: 2,000 control bytes are 12,000 bytes of JSON.
    for (im::Message& m : service.messages) {
        m.payload = "x";
        m.topic.assign(2000, '\x01');
    }
    Api topics(service, {.message_bytes_budget = 13000});
    check_cut_page(topics, R"({"channel_id":"g1","channel_type":2,"limit":5,"reverse":1})", 1, 0, 1);
}

TEST_CASE("Api: /conversation/syncMessages has one byte budget for all its channels, spent in their order") {
    FakeService service;
    for (uint32_t seq = 1; seq <= 10; ++seq) {
        im::Message m = sample_message();
        m.message_seq = seq;
        m.payload.assign(1000, 'x');  // about 1,045 bytes stored, 1,792 counted as JSON
        service.messages.push_back(m);
    }
    Api api(service, {.message_bytes_budget = 5000});
    const json list = json::parse(post(api, "/conversation/syncMessages",
                                       R"({"uid":"alice","msg_count":10,"channels":[)"
                                       R"({"channel_id":"g1","channel_type":2},{"channel_id":"g2","channel_type":2},)"
                                       R"({"channel_id":"g3","channel_type":2},{"channel_id":"g4","channel_type":2}]})")
                                      .body);
    auto seqs = [&](size_t channel) {
        std::vector<uint32_t> out;
        for (const json& m : list[channel]["messages"]) out.push_back(m["message_seq"]);
        return out;
    };
    REQUIRE(list.size() == 4);  // the response's shape is unchanged: every channel, in request order
    for (size_t i = 0; i < 4; ++i) CHECK(list[i]["channel_id"] == "g" + std::to_string(i + 1));
    // g1 reads 5 (past 5,000 stored bytes) and keeps the newest two
    // (3,584 bytes of JSON); g2 gets the 1,416 left: its newest message
    // (one at least), which spends the budget; g3 and g4 are not read.
    CHECK(seqs(0) == std::vector<uint32_t>{10, 9});
    CHECK(seqs(1) == std::vector<uint32_t>{10});
    CHECK(list[2]["messages"].empty());
    CHECK(list[3]["messages"].empty());
    CHECK(service.page_bytes == std::vector<size_t>{5000, 1416});
    CHECK(service.last() == "recent_messages alice g2 2 0 10");
}

// ---- RequestParser ----

namespace {

using Status = http::RequestParser::Status;

std::span<const uint8_t> bytes_of(std::string_view text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

}  // namespace

TEST_CASE("RequestParser: one request, fed whole or a byte at a time") {
    const std::string wire =
        "POST /user/token?x=1&y=2 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer abc\r\n"
        "Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"uid\":\"a\"}";
    for (bool bytewise : {false, true}) {
        http::RequestParser parser(1024);
        http::RequestParser::Result r;
        size_t offset = 0;
        while (offset < wire.size()) {
            const size_t n = bytewise ? 1 : wire.size() - offset;
            r = parser.feed(bytes_of(std::string_view(wire).substr(offset, n)));
            REQUIRE(r.status != Status::BadRequest);
            offset += r.consumed;
            if (r.status == Status::Complete) break;
            CHECK(r.consumed == n);
        }
        REQUIRE(r.status == Status::Complete);
        CHECK(offset == wire.size());
        CHECK(parser.request().method == "POST");
        CHECK(parser.request().path == "/user/token");
        CHECK(parser.request().query == "x=1&y=2");
        CHECK(parser.request().authorization == "Bearer abc");
        CHECK(parser.request().body == R"({"uid":"a"})");
        CHECK(parser.keep_alive());
        CHECK_FALSE(parser.http10());
    }
}

TEST_CASE("RequestParser: pipelined requests come one at a time; the rest is left unconsumed") {
    const std::string first = "GET /health HTTP/1.1\r\n\r\n";
    const std::string second = "POST /a HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    const std::string wire = first + second + "GET /b";
    http::RequestParser parser(1024);
    auto r = parser.feed(bytes_of(wire));
    REQUIRE(r.status == Status::Complete);
    CHECK(r.consumed == first.size());
    CHECK(parser.request().path == "/health");
    CHECK(parser.request().body.empty());
    parser.next();
    r = parser.feed(bytes_of(wire).subspan(first.size()));
    REQUIRE(r.status == Status::Complete);
    CHECK(r.consumed == second.size());
    CHECK(parser.request().path == "/a");
    CHECK(parser.request().body == "{}");
    CHECK_FALSE(parser.keep_alive());
}

TEST_CASE("RequestParser: keep-alive by version and Connection header") {
    struct Case {
        const char* wire;
        bool keep_alive;
        bool http10;
    };
    for (const Case& c : {Case{"GET / HTTP/1.1\r\n\r\n", true, false},
                          Case{"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false, false},
                          Case{"GET / HTTP/1.0\r\n\r\n", false, true},
                          Case{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, true},
                          Case{"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false, false}}) {
        CAPTURE(c.wire);
        http::RequestParser parser(1024);
        REQUIRE(parser.feed(bytes_of(c.wire)).status == Status::Complete);
        CHECK(parser.keep_alive() == c.keep_alive);
        CHECK(parser.http10() == c.http10);
    }
}

TEST_CASE("RequestParser: bodies over the limit are refused, by Content-Length before they arrive") {
    http::RequestParser declared(10);
    CHECK(declared.feed(bytes_of("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n")).status == Status::BodyTooLarge);
    http::RequestParser at_limit(10);
    CHECK(at_limit.feed(bytes_of("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789")).status == Status::Complete);
    http::RequestParser chunked(10);
    CHECK(chunked.feed(bytes_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n")).status ==
          Status::NeedMore);
    CHECK(chunked.feed(bytes_of("5\r\n01234\r\n")).status == Status::BodyTooLarge);
    http::RequestParser chunked_ok(10);
    REQUIRE(chunked_ok.feed(bytes_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")).status ==
            Status::Complete);
    CHECK(chunked_ok.request().body == "{}");
}

TEST_CASE("RequestParser: malformed requests, absolute URLs, Expect: 100-continue") {
    for (const char* bad : {"garbage\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                            "FOO / HTTP/1.1\r\n\r\n"}) {
        CAPTURE(std::string(bad));
        http::RequestParser parser(1024);
        CHECK(parser.feed(bytes_of(bad)).status == Status::BadRequest);
    }
    http::RequestParser absolute(1024);
    REQUIRE(absolute.feed(bytes_of("GET http://host:80/x/y?q HTTP/1.1\r\n\r\n")).status == Status::Complete);
    CHECK(absolute.request().path == "/x/y");
    CHECK(absolute.request().query == "q");

    http::RequestParser expecting(1024);
    CHECK(expecting.feed(bytes_of("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n")).status ==
          Status::NeedMore);
    CHECK(expecting.take_continue_expected());
    CHECK_FALSE(expecting.take_continue_expected());
    CHECK(expecting.feed(bytes_of("{}")).status == Status::Complete);
}

TEST_CASE("RequestParser: with a gate, a refused request stops at its headers: no body kept, no 100 Continue") {
    FakeService service;
    Api api(service, {.bearer_secret = "k"});
    http::RequestParser parser(1u << 20, &api);
    const std::string headers =
        "POST /message/send HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n";
    const auto r = parser.feed(bytes_of(headers + "{\"payload\":"));
    CHECK(r.status == Status::Refused);
    CHECK(r.consumed <= headers.size());
    CHECK(parser.refusal().status == 401);
    CHECK_FALSE(parser.take_continue_expected());
    CHECK(parser.request().body.empty());
    // Refused before the body limit is looked at: the client learns only that it may not ask.
    http::RequestParser browser(10, &api);
    CHECK(browser.feed(bytes_of("POST /user/token HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
                                "Authorization: Bearer k\r\nContent-Length: 100\r\n\r\n"))
              .status == Status::Refused);
    CHECK(browser.refusal().status == 403);
    http::RequestParser allowed(1024, &api);
    REQUIRE(allowed.feed(bytes_of("POST /a HTTP/1.1\r\nhost: 127.0.0.1:1\r\nORIGIN: http://127.0.0.1:1\r\n"
                                  "Authorization: Bearer k\r\nContent-Length: 2\r\n\r\n{}"))
                .status == Status::Complete);
    CHECK(allowed.request().host == "127.0.0.1:1");
    CHECK(allowed.request().origin == "http://127.0.0.1:1");
    // WuKongIM's "token" header carries the secret as well as the bearer does.
    http::RequestParser wukongim(1024, &api);
    REQUIRE(wukongim.feed(bytes_of("POST /user/device_quit HTTP/1.1\r\nHost: im.example\r\nToken: k\r\n"
                                   "Content-Length: 2\r\n\r\n{}"))
                .status == Status::Complete);
    CHECK(wukongim.request().token == "k");
    CHECK(wukongim.authorized());
    http::RequestParser wrong_token(1024, &api);
    CHECK(wrong_token.feed(bytes_of("POST /user/device_quit HTTP/1.1\r\nHost: im.example\r\ntoken: x\r\n"
                                    "Content-Length: 2\r\n\r\n{}"))
              .status == Status::Refused);
    CHECK(wrong_token.refusal().status == 401);
}

TEST_CASE("serialize_response: status line, JSON headers, Connection by keep-alive and version") {
    const http::Response ok{200, R"({"status":200})"};
    CHECK(http::serialize_response(ok, true) ==
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"status\":200}");
    CHECK(http::serialize_response(ok, false).find("\r\nConnection: close\r\n\r\n") != std::string::npos);
    CHECK(http::serialize_response(ok, true, true).find("\r\nConnection: keep-alive\r\n\r\n") != std::string::npos);
    http::Response not_allowed{405, "{}", "POST"};
    CHECK(http::serialize_response(not_allowed, true).rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0) == 0);
    CHECK(http::serialize_response(not_allowed, true).find("\r\nAllow: POST\r\n") != std::string::npos);
}

TEST_CASE("http_close_reason_names: after the gateway's, one name per HttpClose") {
    const auto names = http::http_close_reason_names();
    CHECK(http::kFirstHttpCloseReason == net::kFirstHandlerCloseReason + 16);
    REQUIRE(names.size() == 7);
    CHECK(std::string(names[uint8_t(http::HttpClose::BadRequest) - http::kFirstHttpCloseReason]) == "http_bad_request");
    CHECK(std::string(names[uint8_t(http::HttpClose::Done) - http::kFirstHttpCloseReason]) == "http_done");
    CHECK(std::string(names[uint8_t(http::HttpClose::Refused) - http::kFirstHttpCloseReason]) == "http_refused");
    CHECK(std::string(names[uint8_t(http::HttpClose::Evicted) - http::kFirstHttpCloseReason]) == "http_evicted");
    CHECK(http::kFirstHttpCloseReason + names.size() <= net::kMaxCloseReasons);
}

// ---- Server on a real worker ring ----

namespace {

using namespace std::chrono_literals;
using testing::connect_to;

void send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        REQUIRE(n > 0);
        bytes.remove_prefix(size_t(n));
    }
}

// Reads responses (headers + Content-Length body) off the socket.
struct ResponseReader {
    int fd;
    std::string buffer;
    bool eof = false;

    bool fill() {
        char chunk[4096];
        const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) {
            eof = true;
            return false;
        }
        buffer.append(chunk, size_t(n));
        return true;
    }
    // The next whole response, "" at EOF or timeout.
    std::string next() {
        for (;;) {
            const size_t end = buffer.find("\r\n\r\n");
            if (end != std::string::npos) {
                size_t length = 0;
                const size_t at = buffer.find("Content-Length: ");
                if (at != std::string::npos && at < end) length = std::stoul(buffer.substr(at + 16));
                if (buffer.size() >= end + 4 + length) {
                    std::string response = buffer.substr(0, end + 4 + length);
                    buffer.erase(0, end + 4 + length);
                    return response;
                }
            }
            if (!fill()) return "";
        }
    }
    bool closed() {
        while (!eof) fill();
        return buffer.empty();
    }
};

struct TestServer {
    FakeService service;
    Api api{service, {.bearer_secret = "k"}};
    std::unique_ptr<stats::WorkerBlock> block = std::make_unique<stats::WorkerBlock>();
    std::vector<stats::ConnCounters> conns = std::vector<stats::ConnCounters>(64);
    net::SharedLimits limits;
    std::unique_ptr<net::Worker> worker;
    net::BlockingPool pool{"test-api", 2, 64};
    std::unique_ptr<http::Server> server;
    uint16_t port = testing::free_port();

    explicit TestServer(http::ServerOptions options = {}) {
        limits.max_conns = 64;
        net::WorkerOptions worker_options;
        worker_options.slots = 64;
        worker_options.recv_buffers = 64;
        worker = std::make_unique<net::Worker>(worker_options, limits, *block, conns.data());
        server = std::make_unique<http::Server>(*worker, *worker, pool, api, options);
        net::ListenerOptions listener;
        listener.addr = "127.0.0.1";
        listener.port = port;
        listener.handler = server.get();
        worker->add_listener(listener);
        worker->set_envelope_handler(http::kEnvelopeFamily, server.get());
        net::Worker* self = worker.get();
        worker->set_peers(std::span<net::Worker* const>(&self, 1));
        std::string error;
        REQUIRE_MESSAGE(worker->start(error), error);
    }
    ~TestServer() {
        pool.stop();  // before the worker its results go to
        worker->request_stop(1000);
        worker->join();
    }
};

const char* kAuth = "Authorization: Bearer k\r\n";

}  // namespace

TEST_CASE("Server: pipelined requests are answered in order on one keep-alive connection") {
    TestServer t;
    const int fd = connect_to(t.port);
    REQUIRE(fd >= 0);
    ResponseReader reader{fd};
    const std::string token = R"({"uid":"alice","token":"t"})";
    std::string wire = std::string("GET /health HTTP/1.1\r\n") + kAuth + "\r\n";
    wire += std::string("POST /user/token HTTP/1.1\r\n") + kAuth + "Content-Length: " + std::to_string(token.size()) +
            "\r\n\r\n" + token;
    wire += std::string("GET /nope HTTP/1.1\r\n") + kAuth + "\r\n";
    send_all(fd, wire);
    std::string r = reader.next();
    CHECK(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(r.find("\r\n\r\n{\"status\":200}") != std::string::npos);
    r = reader.next();
    CHECK(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(t.service.last() == "set_token alice t 0 0");
    CHECK(reader.next().rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
    // Still open: one more, in two pieces.
    send_all(fd, "GET /hea");
    std::this_thread::sleep_for(20ms);
    send_all(fd, std::string("lth HTTP/1.1\r\n") + kAuth + "\r\n");
    CHECK(reader.next().rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    ::close(fd);
}

TEST_CASE("Server: Connection: close and HTTP/1.0 are answered, then closed") {
    TestServer t;
    for (const std::string& wire : {std::string("GET /health HTTP/1.1\r\nConnection: close\r\n") + kAuth + "\r\n",
                                   std::string("GET /health HTTP/1.0\r\n") + kAuth + "\r\n"}) {
        const int fd = connect_to(t.port);
        REQUIRE(fd >= 0);
        ResponseReader reader{fd};
        send_all(fd, wire + "GET /health HTTP/1.1\r\n\r\n");  // never answered
        const std::string r = reader.next();
        CHECK(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
        CHECK(r.find("Connection: close\r\n") != std::string::npos);
        CHECK(reader.closed());
        ::close(fd);
    }
}

TEST_CASE("Server: a malformed request gets 400, a body over the limit 413, then the connection closes") {
    http::ServerOptions options;
    options.body_limit = 100;
    TestServer t(options);
    struct Case {
        std::string wire;
        const char* status_line;
    };
    for (const Case& c : {Case{"BLAH\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"},
                          Case{std::string("POST /message/send HTTP/1.1\r\n") + kAuth + "Content-Length: 101\r\n\r\n",
                               "HTTP/1.1 413 Payload Too Large\r\n"}}) {
        const int fd = connect_to(t.port);
        REQUIRE(fd >= 0);
        ResponseReader reader{fd};
        send_all(fd, c.wire);
        const std::string r = reader.next();
        CHECK(r.rfind(c.status_line, 0) == 0);
        CHECK(json::parse(r.substr(r.find("\r\n\r\n") + 4))["status"].get<int>() > 0);
        CHECK(reader.closed());
        ::close(fd);
    }
    CHECK(t.service.count() == 0);
}

TEST_CASE("Server: Expect: 100-continue gets its interim response before the body is sent") {
    TestServer t;
    const int fd = connect_to(t.port);
    REQUIRE(fd >= 0);
    ResponseReader reader{fd};
    const std::string body = R"({"uids":["s"]})";
    send_all(fd, std::string("POST /systemuids_add HTTP/1.1\r\n") + kAuth + "Expect: 100-continue\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n");
    CHECK(reader.next() == "HTTP/1.1 100 Continue\r\n\r\n");
    send_all(fd, body);
    CHECK(reader.next().rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(t.service.last() == "add_system_uids [s]");
    ::close(fd);
}

TEST_CASE("Server: a refused request is answered at its headers, before 100 Continue, and its connection closed") {
    TestServer t;
    struct Case {
        std::string wire;
        const char* status_line;
    };
    for (const Case& c : {Case{"POST /message/send HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                               "Content-Length: 50000000\r\n\r\n",
                               "HTTP/1.1 401 Unauthorized\r\n"},
                          Case{std::string("POST /user/token HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n") +
                                   kAuth + "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 27\r\n\r\n",
                               "HTTP/1.1 403 Forbidden\r\n"}}) {
        const int fd = connect_to(t.port);
        REQUIRE(fd >= 0);
        ResponseReader reader{fd};
        send_all(fd, c.wire);  // the body is never sent: the answer must not wait for it
        const std::string r = reader.next();
        CHECK(r.rfind(c.status_line, 0) == 0);
        CHECK(r.find("Connection: close\r\n") != std::string::npos);
        CHECK(reader.closed());
        ::close(fd);
    }
    CHECK(t.service.count() == 0);
    CHECK(t.block->closed[uint8_t(http::HttpClose::Refused)].get() == 2);
}

TEST_CASE("Server: a response larger than max_response_bytes becomes a 500 that says so") {
    http::ServerOptions options;
    options.max_response_bytes = 4096;
    TestServer t(options);
    im::Message big = sample_message();
    big.payload.assign(8192, 'x');
    t.service.messages = {big};
    const int fd = connect_to(t.port);
    REQUIRE(fd >= 0);
    ResponseReader reader{fd};
    const std::string body = R"({"uid":"alice","limit":1})";
    send_all(fd, std::string("POST /message/sync HTTP/1.1\r\n") + kAuth + "Content-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body);
    const std::string r = reader.next();
    CHECK(r.rfind("HTTP/1.1 500 Internal Server Error\r\n", 0) == 0);
    CHECK(r.find("send cap") != std::string::npos);
    ::close(fd);
}

TEST_CASE("Server: an idle keep-alive connection is closed at the idle timeout") {
    http::ServerOptions options;
    options.idle_timeout_ms = 300;
    TestServer t(options);
    const int fd = connect_to(t.port);
    REQUIRE(fd >= 0);
    ResponseReader reader{fd};
    send_all(fd, std::string("GET /health HTTP/1.1\r\n") + kAuth + "\r\n");
    CHECK(reader.next().rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    const auto started = std::chrono::steady_clock::now();
    CHECK(reader.closed());
    CHECK(std::chrono::steady_clock::now() - started < 3s);
    ::close(fd);
}

// ---- GET /health and GET /metrics (issue 12) ----

TEST_CASE("Api: GET /health asks its probe: 200, or 503 with what is wrong") {
    FakeService service;
    bool healthy = true;
    int asked = 0;
    http::Probes probes;
    probes.health = [&](std::string& why) {
        ++asked;
        if (!healthy) why = "worker 2 loop stalled for 6000 ms; store: cannot write in /data: No space left on device";
        return healthy;
    };
    Api api(service, {}, probes);
    Response r = call(api, "GET", "/health", "");
    CHECK(r.status == 200);
    CHECK(r.body == kOk);
    CHECK(std::string(r.content_type) == "application/json");
    healthy = false;
    r = call(api, "GET", "/health", "");
    CHECK(r.status == 503);
    const json body = json::parse(r.body);
    CHECK(body["status"] == 503);
    CHECK(body["msg"] == "worker 2 loop stalled for 6000 ms; store: cannot write in /data: No space left on device");
    CHECK(asked == 2);
    CHECK(http::serialize_response(r, true).rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
    CHECK(service.count() == 0);
}

TEST_CASE("Api: GET /metrics answers the probe's Prometheus text; 404 without one; bearer secret applies") {
    FakeService service;
    Api without(service);
    CHECK(call(without, "GET", "/metrics", "").status == 404);

    http::Probes probes;
    probes.metrics = [] { return std::string("# HELP limaoim_up Up.\n# TYPE limaoim_up gauge\nlimaoim_up 1\n"); };
    Api api(service, {.bearer_secret = "s3cret"}, probes);
    CHECK(call(api, "GET", "/metrics", "").status == 401);
    Response r = call(api, "GET", "/metrics", "", "Bearer s3cret");
    CHECK(r.status == 200);
    CHECK(r.body == "# HELP limaoim_up Up.\n# TYPE limaoim_up gauge\nlimaoim_up 1\n");
    CHECK(std::string(r.content_type) == "text/plain; version=0.0.4; charset=utf-8");
    const std::string wire = http::serialize_response(r, true);
    CHECK(wire.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != std::string::npos);
    CHECK(wire.find("application/json") == std::string::npos);

    r = call(api, "POST", "/metrics", "", "Bearer s3cret");
    CHECK(r.status == 405);
    CHECK(std::string(r.allow) == "GET");
    CHECK(std::string(r.content_type) == "application/json");

    http::Probes throwing;
    throwing.metrics = []() -> std::string { throw std::runtime_error("segment gone"); };
    Api broken(service, {}, throwing);
    r = call(broken, "GET", "/metrics", "");
    CHECK(r.status == 500);
    CHECK(std::string(r.content_type) == "application/json");
    CHECK(service.count() == 0);
}

// ---- WuKongIM v2's HTTP API (docs/WKAPI.md) ----
// Requests shaped as WuKongIM's source reads them (internal/api, v2),
// answers in its shapes; errors are its 400 {"msg", "status": 400}.

namespace {

Response call_with_token(const Api& api, std::string path, std::string body, std::string token) {
    Request request;
    request.method = "POST";
    request.path = std::move(path);
    request.body = std::move(body);
    request.token = std::move(token);
    return api.handle(request);
}

Response get(const Api& api, std::string path, std::string query) {
    Request request;
    request.method = "GET";
    request.path = std::move(path);
    request.query = std::move(query);
    return api.handle(request);
}

}  // namespace

TEST_CASE("WuKongIM API: the secret as WuKongIM's \"token\" header opens every route, WuKongIM's too; nothing else does") {
    FakeService service;
    Api api(service, {.bearer_secret = "s3cret"});
    CHECK(call_with_token(api, "/user/device_quit", R"({"uid":"a","device_flag":0})", "").status == 401);
    CHECK(call_with_token(api, "/user/device_quit", R"({"uid":"a","device_flag":0})", "wrong").status == 401);
    CHECK(call_with_token(api, "/user/device_quit", R"({"uid":"a","device_flag":0})", "s3cre").status == 401);
    CHECK(call(api, "POST", "/channel/subscriber_remove_all", R"({"channel_id":"g1","channel_type":2})").status == 401);
    CHECK(service.count() == 0);
    CHECK(call_with_token(api, "/user/device_quit", R"({"uid":"a","device_flag":0})", "s3cret").status == 200);
    CHECK(call_with_token(api, "/user/token", R"({"uid":"a","token":"t"})", "s3cret").status == 200);
    CHECK(call(api, "POST", "/channel/subscriber_remove_all", R"({"channel_id":"g1","channel_type":2})", "Bearer s3cret")
              .status == 200);
    CHECK(api.authorized("", "s3cret"));
    CHECK_FALSE(api.authorized("", "Bearer s3cret"));
    CHECK_FALSE(api.authorized("Bearer wrong", "wrong"));
    // The screen at the end of the headers asks the same.
    Request headers = head("POST", "/message/sendbatch", "im.example:5001");
    CHECK(screened(api, headers) == 401);
    headers.token = "s3cret";
    CHECK(screened(api, headers) == 0);
}

TEST_CASE("WuKongIM API: POST /user/device_quit voids the device's token with one nobody knows; -1 quits all three") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/user/device_quit", R"({"uid":"alice","device_flag":1})").body == kOk);
    REQUIRE(service.count() == 1);
    const std::string first = service.last();
    CHECK(first.rfind("set_token alice ", 0) == 0);
    CHECK(first.size() == std::string("set_token alice ").size() + 64 + 4);  // 64 hex digits, " 1 1"
    CHECK(first.ends_with(" 1 1"));
    CHECK(post(api, "/user/device_quit", R"({"uid":"alice","device_flag":1})").status == 200);
    CHECK(service.last() != first);  // a new one each time
    CHECK(post(api, "/user/device_quit", R"({"uid":"bob","device_flag":-1})").body == kOk);
    REQUIRE(service.count() == 5);
    {
        std::lock_guard lock(service.mutex);
        CHECK(service.calls[2].ends_with(" 0 1"));
        CHECK(service.calls[3].ends_with(" 1 1"));
        CHECK(service.calls[4].ends_with(" 2 1"));
    }
    check_refused(service, api, "/user/device_quit", R"({"device_flag":0})", "uid is required");
    check_refused(service, api, "/user/device_quit", R"({"uid":"a","device_flag":-2})", "device_flag is out of range");
    service.outcome = im::Outcome::unavailable("store down");
    const Response failed = post(api, "/user/device_quit", R"({"uid":"a","device_flag":0})");
    CHECK(failed.status == 500);
    CHECK(failed.body == R"({"msg":"store down","status":500})");
}

TEST_CASE("WuKongIM API: /user/systemuids_add and _remove are LiMaoIM's /systemuids_add and _remove") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/user/systemuids_add", R"({"uids":["s1"]})").body == kOk);
    CHECK(service.last() == "add_system_uids [s1]");
    CHECK(post(api, "/user/systemuids_remove", R"({"uids":["s1"]})").body == kOk);
    CHECK(service.last() == "remove_system_uids [s1]");
    check_refused(service, api, "/user/systemuids_add", R"({"uids":"s1"})", "uids must be an array of strings");
}

TEST_CASE("WuKongIM API: POST /channel with WuKongIM's fields adds subscribers (reset 1 replaces); LiMaoIM's replaces") {
    FakeService service;
    Api api(service);
    // WuKongIM's channelCreateReq: channel info flags, reset, subscribers.
    CHECK(post(api, "/channel", R"({"channel_id":"g1","channel_type":2,"large":0,"ban":0,"reset":0,"subscribers":["a","b"]})")
              .body == kOk);
    CHECK(service.last() == "add_subscribers g1 2 [a,b]");
    CHECK(post(api, "/channel", R"({"channel_id":"g1","channel_type":2,"reset":1,"subscribers":["c"]})").body == kOk);
    CHECK(service.last() == "add_subscribers g1 2 [c] reset");
    CHECK(post(api, "/channel", R"({"channel_id":"g1","channel_type":2,"large":1})").body == kOk);
    CHECK(service.last() == "add_subscribers g1 2 []");
    // A person channel exists with its user: nothing to store, but no subscribers either.
    const size_t calls = service.count();
    CHECK(post(api, "/channel", R"({"channel_id":"alice","channel_type":1,"reset":0})").body == kOk);
    CHECK(service.count() == calls);
    check_refused(service, api, "/channel", R"({"channel_id":"alice","channel_type":1,"reset":0,"subscribers":["b"]})",
                  "person channels take no subscribers");
    check_refused(service, api, "/channel", R"({"channel_id":"g1","channel_type":2,"ban":1})", "ban is not supported");
    check_refused(service, api, "/channel", R"({"channel_id":"g1","channel_type":2,"send_ban":1})", "send_ban is not supported");
    check_refused(service, api, "/channel", R"({"channel_id":"g1","channel_type":2,"disband":1})", "disband is not supported");
    check_refused(service, api, "/channel", R"({"channel_id":"g1","channel_type":2,"allow_stranger":1})",
                  "allow_stranger is not supported");
    check_refused(service, api, "/channel", R"({"channel_id":"g1","reset":0})", "channel_type must not be 0");
    check_refused(service, api, "/channel", R"({"channel_id":"g1","channel_type":2,"large":"yes"})", "large must be an integer");
    // Neither dialect's own fields: LiMaoIM's, as before.
    CHECK(post(api, "/channel", R"({"channel_id":"g2","channel_type":2,"subscribers":["a"]})").body == kOk);
    CHECK(service.last() == "put_channel g2 2  [a]");
}

TEST_CASE("WuKongIM API: POST /channel/info makes sure the channel exists; its unsupported flags are refused") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/channel/info", R"({"channel_id":"g1","channel_type":2,"large":1,"ban":0})").body == kOk);
    CHECK(service.last() == "add_subscribers g1 2 []");
    const size_t calls = service.count();
    CHECK(post(api, "/channel/info", R"({"channel_id":"alice","channel_type":1})").body == kOk);
    CHECK(service.count() == calls);
    check_refused(service, api, "/channel/info", R"({"channel_id":"g1","channel_type":2,"ban":1})", "ban is not supported");
    check_refused(service, api, "/channel/info", R"({"channel_type":2})", "channel_id is required");
}

TEST_CASE("WuKongIM API: the three *_remove_all calls") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/channel/subscriber_remove_all", R"({"channel_id":"g1","channel_type":2})").body == kOk);
    CHECK(service.last() == "add_subscribers g1 2 [] reset");
    CHECK(post(api, "/channel/blacklist_remove_all", R"({"channel_id":"g1","channel_type":2})").body == kOk);
    CHECK(service.last() == "edit_list g1 2 deny set []");
    CHECK(post(api, "/channel/whitelist_remove_all", R"({"channel_id":"alice","channel_type":1})").body == kOk);
    CHECK(service.last() == "edit_list alice 1 allow set []");
    check_refused(service, api, "/channel/subscriber_remove_all", R"({"channel_id":"alice","channel_type":1})",
                  "person channels");
    for (const char* path : {"/channel/subscriber_remove_all", "/channel/blacklist_remove_all", "/channel/whitelist_remove_all"}) {
        check_refused(service, api, path, R"({"channel_type":2})", "channel_id is required");
        check_refused(service, api, path, R"({"channel_id":"g1"})", "channel_type must not be 0");
    }
}

TEST_CASE("WuKongIM API: POST /message/sendbatch sends to each subscriber's person channel; answers fail_uids and reason") {
    FakeService service;
    Api api(service);
    Response r = post(api, "/message/sendbatch",
                      R"({"header":{"red_dot":1},"from_uid":"sys","subscribers":["a","b"],"payload":"aGk="})");
    CHECK(r.status == 200);
    CHECK(r.body == R"({"fail_uids":[],"reason":[]})");
    CHECK(service.count() == 2);
    CHECK(service.last_send.channel_id == "b");
    CHECK(service.last_send.channel_type == 1);
    CHECK(service.last_send.from_uid == "sys");
    CHECK(service.last_send.header_flags == 0x02);
    CHECK(service.last_send.payload == "hi");
    CHECK(service.last_send.subscribers.empty());
    service.outcome = im::Outcome::bad_request("refused with SENDACK reason 4");
    r = post(api, "/message/sendbatch", R"({"from_uid":"sys","subscribers":["a"],"payload":"aGk="})");
    CHECK(r.status == 200);
    CHECK(r.body == R"({"fail_uids":["a"],"reason":["refused with SENDACK reason 4"]})");
    service.outcome = {};
    check_refused(service, api, "/message/sendbatch", R"({"subscribers":["a"],"payload":"aGk="})", "from_uid is required");
    check_refused(service, api, "/message/sendbatch", R"({"from_uid":"s","payload":"aGk="})", "subscribers must not be empty");
    check_refused(service, api, "/message/sendbatch", R"({"from_uid":"s","subscribers":["a"]})", "payload");
}

TEST_CASE("WuKongIM API: POST /channel/messagesync with start/end/pull_mode: WuKongIM's windows and answer") {
    FakeService service;
    Api api(service);
    service.messages = {sample_message(), sample_message()};
    // start 0, end 0: the newest `limit`.
    Response r = post(api, "/channel/messagesync",
                      R"({"login_uid":"alice","channel_id":"bob","channel_type":1,"start_message_seq":0,)"
                      R"("end_message_seq":0,"limit":2,"pull_mode":0})");
    CHECK(r.status == 200);
    CHECK(service.last() == "channel_messages alice bob 1 0 0 2 newest");
    CHECK(r.body == R"({"start_message_seq":0,"end_message_seq":0,"more":1,"messages":[)" + kSampleResp + "," +
                        kSampleResp + "]}");
    // pull_mode 1 (up): start <= seq < end, from the oldest.
    r = post(api, "/channel/messagesync", R"({"login_uid":"alice","channel_id":"g1","channel_type":2,)"
                                          R"("start_message_seq":10,"end_message_seq":20,"limit":5,"pull_mode":1})");
    CHECK(service.last() == "channel_messages alice g1 2 10 20 5");
    CHECK(json::parse(r.body)["more"] == 0);
    CHECK(json::parse(r.body)["start_message_seq"] == 10);
    CHECK(json::parse(r.body)["end_message_seq"] == 20);
    r = post(api, "/channel/messagesync", R"({"login_uid":"u","channel_id":"g1","channel_type":2,"start_message_seq":10,"limit":5,"pull_mode":1})");
    CHECK(service.last() == "channel_messages u g1 2 10 0 5");
    // pull_mode 0 (down): end < seq <= start, from the newest.
    r = post(api, "/channel/messagesync", R"({"login_uid":"u","channel_id":"g1","channel_type":2,)"
                                          R"("start_message_seq":30,"end_message_seq":10,"limit":5,"pull_mode":0})");
    CHECK(service.last() == "channel_messages u g1 2 11 31 5 newest");
    r = post(api, "/channel/messagesync", R"({"login_uid":"u","channel_id":"g1","channel_type":2,"start_message_seq":30,"limit":5})");
    CHECK(service.last() == "channel_messages u g1 2 1 31 5 newest");
    // A 64-bit seq past this server's 32 bits: past every message, echoed as asked.
    r = post(api, "/channel/messagesync", R"({"login_uid":"u","channel_id":"g1","channel_type":2,)"
                                          R"("start_message_seq":9000000000,"limit":5})");
    CHECK(service.last() == "channel_messages u g1 2 1 0 5 newest");
    CHECK(json::parse(r.body)["start_message_seq"] == 9000000000LL);
    // Empty windows read nothing.
    const size_t calls = service.count();
    r = post(api, "/channel/messagesync", R"({"login_uid":"u","channel_id":"g1","channel_type":2,)"
                                          R"("start_message_seq":5,"end_message_seq":9,"limit":5,"pull_mode":0})");
    CHECK(r.body == R"({"start_message_seq":5,"end_message_seq":9,"more":0,"messages":[]})");
    r = post(api, "/channel/messagesync", R"({"login_uid":"u","channel_id":"g1","channel_type":2,)"
                                          R"("start_message_seq":9,"end_message_seq":9,"limit":5,"pull_mode":1})");
    CHECK(json::parse(r.body)["messages"].empty());
    // Both past 32 bits (clamped to the largest seq): (end, start] is empty, not every message.
    r = post(api, "/channel/messagesync", R"({"login_uid":"u","channel_id":"g1","channel_type":2,)"
                                          R"("start_message_seq":9999999999,"end_message_seq":9999999999,"limit":5})");
    CHECK(json::parse(r.body)["messages"].empty());
    CHECK(service.count() == calls);
    check_refused(service, api, "/channel/messagesync", R"({"channel_id":"g1","channel_type":2,"pull_mode":0,"limit":5})",
                  "login_uid is required");
    check_refused(service, api, "/channel/messagesync", R"({"login_uid":"u","channel_id":"g1","start_message_seq":-1})",
                  "start_message_seq is out of range");
}

TEST_CASE("WuKongIM API: GET /channel/max_message_seq and /channel/last_message read the newest message") {
    FakeService service;
    Api api(service);
    Response r = get(api, "/channel/max_message_seq", "channel_id=g1&channel_type=2");
    CHECK(r.status == 200);
    CHECK(r.body == R"({"message_seq":0})");
    CHECK(service.last().rfind("channel_messages  g1 2 0 0 1 newest", 0) == 0);
    r = get(api, "/channel/last_message", "channel_id=g1&channel_type=2");
    CHECK(r.status == 200);
    CHECK(r.body == R"({"status":404})");  // WuKongIM's "no message": 200 with status 404
    service.messages = {sample_message()};
    r = get(api, "/channel/max_message_seq", "login_uid=alice&channel_id=bob&channel_type=1");
    CHECK(r.body == R"({"message_seq":42})");
    CHECK(service.last() == "channel_messages alice bob 1 0 0 1 newest");
    r = get(api, "/channel/last_message", "login_uid=alice&channel_id=bob&channel_type=1");
    CHECK(r.body == kSampleResp);
    CHECK(get(api, "/channel/last_message", "channel_type=2").status == 400);
    r = get(api, "/channel/max_message_seq", "channel_id=bob&channel_type=1");
    CHECK(r.status == 400);
    CHECK(r.body == R"({"msg":"login_uid is required for a person channel","status":400})");
    CHECK(get(api, "/channel/max_message_seq", "channel_id=g1&channel_type=two").status == 400);
    CHECK(get(api, "/channel/max_message_seq", "channel_id=g1&channel_type=256").status == 400);
    CHECK(post(api, "/channel/max_message_seq", "{}").status == 405);
}

TEST_CASE("WuKongIM API: /conversations/delete takes WuKongIM's \"uid\" or LiMaoIM's \"uids\"; /conversation/channels") {
    FakeService service;
    Api api(service);
    CHECK(post(api, "/conversations/delete", R"({"uid":"alice","channel_id":"g1","channel_type":2})").body == kOk);
    CHECK(service.last() == "delete_conversation [alice] g1 2");
    CHECK(post(api, "/conversations/delete", R"({"uids":["a","b"],"channel_id":"g1","channel_type":2})").body == kOk);
    CHECK(service.last() == "delete_conversation [a,b] g1 2");
    check_refused(service, api, "/conversations/delete", R"({"uid":"","channel_id":"g1","channel_type":2})", "uid is required");
    check_refused(service, api, "/conversations/delete", R"({"channel_id":"g1","channel_type":2})", "uids must not be empty");

    im::ConversationView view;
    view.conversation.channel_id = "g1";
    view.conversation.channel_type = 2;
    service.conversation_views = {view};
    view.conversation.channel_id = "bob";
    view.conversation.channel_type = 1;
    service.conversation_views.push_back(view);
    const Response r = post(api, "/conversation/channels", R"({"uid":"alice"})");
    CHECK(r.status == 200);
    CHECK(r.body == R"([{"channel_id":"g1","channel_type":2},{"channel_id":"bob","channel_type":1}])");
    CHECK(service.last() == "conversations alice");
    check_refused(service, api, "/conversation/channels", "{}", "uid is required");
}

TEST_CASE("WuKongIM API: /conversation/sync with msg_count fills recents, newest first; readed_to_msg_seq") {
    FakeService service;
    Api api(service);
    im::ConversationView view;
    view.conversation.channel_id = "bob";
    view.conversation.channel_type = 1;
    view.conversation.unread = 2;
    view.conversation.last_msg_seq = 42;
    view.conversation.version = 7;
    service.conversation_views = {view};
    im::Message older = sample_message();
    older.message_seq = 41;
    service.messages = {older, sample_message()};
    // As WuKongIM's syncUserConversation reads it.
    Response r = post(api, "/conversation/sync", R"({"uid":"alice","version":0,"last_msg_seqs":"","msg_count":1,)"
                                                 R"("only_unread":0,"exclude_channel_types":[],"page":0,"page_size":0})");
    CHECK(r.status == 200);
    CHECK(service.last() == "recent_messages alice bob 1 0 1");
    CHECK(r.body == R"([{"channel_id":"bob","channel_type":1,"unread":2,"timestamp":0,"last_msg_seq":42,)"
                    R"("last_client_msg_no":"","offset_msg_seq":0,"readed_to_msg_seq":40,"version":7,"recents":[)" +
                        kSampleResp + "]}]");
    r = post(api, "/conversation/sync", R"({"uid":"alice","version":0,"msg_count":5})");
    const json recents = json::parse(r.body)[0]["recents"];
    REQUIRE(recents.size() == 2);
    CHECK(recents[0]["message_seq"] == 42);
    CHECK(recents[1]["message_seq"] == 41);
    // Without msg_count: LiMaoIM's answer, recents null, nothing read.
    const size_t calls = service.count();
    r = post(api, "/conversation/sync", R"({"uid":"alice","version":0})");
    CHECK(json::parse(r.body)[0]["recents"].is_null());
    CHECK(service.count() == calls + 1);  // sync_conversations alone
    check_refused(service, api, "/conversation/sync", R"({"uid":"alice","msg_count":"1"})", "msg_count must be an integer");
}
