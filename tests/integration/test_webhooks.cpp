// Webhooks against the real server and a local receiver (SERVER.md §12):
// user.onlinestatus in order and once, msg.offline per message with offline
// subscribers, msg.notify for every message from its durable queue (across a
// kill -9), a receiver that fails then recovers, one that hangs (delivery
// goes on, the queue stays bounded), and /health when the store's directory
// becomes read-only.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "http_receiver.h"
#include "im_helpers.h"

using namespace limaoim;
using namespace limaoim::testing;
using namespace std::chrono;
using nlohmann::json;

namespace {

std::vector<ReceivedRequest> of_event(const std::vector<ReceivedRequest>& requests, const std::string& event) {
    std::vector<ReceivedRequest> out;
    for (const ReceivedRequest& r : requests)
        if (r.query == "event=" + event) out.push_back(r);
    return out;
}

// Every "uid-flag-status" entry of the user.onlinestatus calls answered 200, in order.
std::vector<std::string> online_entries(const std::vector<ReceivedRequest>& requests) {
    std::vector<std::string> out;
    for (const ReceivedRequest& r : of_event(requests, "user.onlinestatus"))
        for (const json& entry : json::parse(r.body)) out.push_back(entry.get<std::string>());
    return out;
}

// Message ids of every msg.notify call (repeats included).
std::vector<int64_t> notified_ids(const std::vector<ReceivedRequest>& requests) {
    std::vector<int64_t> out;
    for (const ReceivedRequest& r : of_event(requests, "msg.notify"))
        for (const json& m : json::parse(r.body)) out.push_back(m["message_id"].get<int64_t>());
    return out;
}

std::vector<std::string> webhook_args(const HttpReceiver& receiver, std::vector<std::string> more = {}) {
    std::vector<std::string> args{"--webhook", receiver.url("/hook"), "--webhook-timeout-ms", "500",
                                  "--webhook-notify-scan-ms", "50"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
}

// Sends `n` person messages a -> b and waits for each SENDACK; the message ids.
std::vector<int64_t> send_person(ChatClient& a, const std::string& to, int n, uint32_t first_seq = 1) {
    std::vector<int64_t> ids;
    for (int i = 0; i < n; ++i) {
        const uint32_t client_seq = first_seq + uint32_t(i);
        const proto::SendackPacket ack =
            send_acked(a, to, 1, "m" + std::to_string(i), client_seq, "cmn-" + std::to_string(client_seq), 0x02);
        REQUIRE(int(ack.reason_code) == 1);
        ids.push_back(ack.message_id);
    }
    return ids;
}

}  // namespace

TEST_CASE("webhook: online/offline events once and in order, msg.offline per message, msg.notify for all") {
    HttpReceiver receiver;
    ImServer server(webhook_args(receiver));
    REQUIRE(server.started());
    {
        ChatClient a = online(server, "wa");
        {
            ChatClient b = online(server, "wb", 4, 1);
        }
        // A message to a user who is not online: msg.offline names him.
        std::vector<int64_t> ids = send_person(a, "wc", 2);
        REQUIRE(receiver.wait_for([&](const auto& r) { return notified_ids(r).size() >= 2; }, seconds(10)));
        CHECK(notified_ids(receiver.requests()) == ids);
        REQUIRE(receiver.wait_for([](const auto& r) { return of_event(r, "msg.offline").size() >= 2; }, seconds(10)));
        for (const ReceivedRequest& r : of_event(receiver.requests(), "msg.offline")) {
            const json body = json::parse(r.body);
            CHECK(body["to_uids"] == json::array({"wc"}));
            CHECK(body["from_uid"] == "wa");
            CHECK(body["channel_id"] == "wc");
            CHECK(body["message_idstr"] == std::to_string(body["message_id"].get<int64_t>()));
            CHECK(r.header("content-type").find("application/json") == 0);
        }
        const json first = json::parse(of_event(receiver.requests(), "msg.notify")[0].body)[0];
        CHECK(unb64(first["payload"]) == "m0");
        CHECK(first["header"]["red_dot"] == 1);
    }
    const std::vector<std::string> expected{"wa-0-1", "wb-1-1", "wb-1-0", "wa-0-0"};
    REQUIRE(receiver.wait_for([&](const auto& r) { return online_entries(r).size() >= expected.size(); }, seconds(10)));
    std::this_thread::sleep_for(milliseconds(300));  // nothing more comes
    CHECK(online_entries(receiver.requests()) == expected);
    CHECK(receiver.requests()[0].path == "/hook");
}

TEST_CASE("webhook: a receiver answering 500 for a while gets everything once it answers 200, nothing twice"
          * doctest::test_suite("timeouts")) {
    HttpReceiver receiver;
    std::mutex mutex;
    std::vector<int> statuses;  // per request index, what it was answered
    receiver.set_responder([&](const ReceivedRequest&, size_t index) {
        Reply reply;
        reply.status = index < 4 ? 500 : 200;  // the first calls of both kinds fail
        std::lock_guard lock(mutex);
        if (statuses.size() <= index) statuses.resize(index + 1);
        statuses[index] = reply.status;
        return reply;
    });
    ImServer server(webhook_args(receiver));
    REQUIRE(server.started());
    std::vector<int64_t> ids;
    {
        ChatClient a = online(server, "fa");
        ChatClient b = online(server, "fb");
        ids = send_person(a, "fb", 30);
    }
    // The requests answered 200 only.
    auto accepted = [&] {
        const std::vector<ReceivedRequest> all = receiver.requests();
        std::lock_guard lock(mutex);
        std::vector<ReceivedRequest> ok;
        for (size_t i = 0; i < all.size() && i < statuses.size(); ++i)
            if (statuses[i] == 200) ok.push_back(all[i]);
        return ok;
    };
    const std::vector<std::string> expected{"fa-0-1", "fb-0-1", "fb-0-0", "fa-0-0"};
    const auto deadline = Clock::now() + seconds(20);
    while (Clock::now() < deadline &&
           (notified_ids(accepted()).size() < ids.size() || online_entries(accepted()).size() < expected.size()))
        std::this_thread::sleep_for(milliseconds(50));
    std::this_thread::sleep_for(milliseconds(300));  // nothing more comes
    const std::vector<ReceivedRequest> ok = accepted();
    CHECK(notified_ids(ok) == ids);  // each once, in commit order
    // b's and a's offline events may come in either order (two clients closing).
    std::vector<std::string> entries = online_entries(ok);
    REQUIRE(entries.size() == expected.size());
    CHECK(std::vector<std::string>(entries.begin(), entries.begin() + 2) == std::vector<std::string>(expected.begin(), expected.begin() + 2));
    CHECK(std::set<std::string>(entries.begin() + 2, entries.end()) == std::set<std::string>(expected.begin() + 2, expected.end()));
    CHECK(receiver.count() > ok.size());  // there were failures, and retries
}

TEST_CASE("webhook: a hanging receiver slows no delivery; the notify queue stays at its bound, /health says so") {
    auto deliver = [](ImServer& server, int n) {
        ChatClient a = online(server, "ha");
        ChatClient b = online(server, "hb");
        const auto t0 = Clock::now();
        for (int i = 0; i < n; ++i) {
            REQUIRE(a.send_message("hb", 1, "x", uint32_t(i + 1), "h" + std::to_string(i)));
        }
        for (int i = 0; i < n; ++i) {
            auto recv = b.read_recv(5000);
            REQUIRE(recv);
            REQUIRE(b.send_recvack(*recv));
        }
        return ms_since(t0);
    };
    const int n = 400;
    int64_t baseline_ms = 0, hanging_ms = 0;
    {
        ImServer plain;
        REQUIRE(plain.started());
        baseline_ms = deliver(plain, n);
    }
    HttpReceiver receiver;
    receiver.set_default(Reply{.hang = true});
    ImServer server(webhook_args(receiver, {"--webhook-queue-max", "100"}));
    REQUIRE(server.started());
    hanging_ms = deliver(server, n);
    MESSAGE("400 person messages delivered: " << baseline_ms << " ms without a webhook, " << hanging_ms
                                                << " ms with a hanging receiver");
    // Delivery does not wait for the receiver (each call would take the 500 ms timeout).
    CHECK(hanging_ms < std::max<int64_t>(baseline_ms * 4, 2000));
    int status = 0;
    const json health = http_json(server.http_port(), "GET", "/health", json(), &status);
    CHECK(status == 503);
    CHECK(health.dump().find("webhook") != std::string::npos);
    // The durable queue holds at most its bound; the rest were dropped and counted.
    // (The sender thread publishes its counters at least once a second.)
    auto metric = [&](const std::string& name) -> int64_t {
        const HttpResult metrics = http_request(server.http_port(), "GET", "/metrics", "");
        const size_t at = metrics.body.find("\n" + name + " ");
        return at == std::string::npos ? -1 : std::stoll(metrics.body.substr(at + name.size() + 2));
    };
    for (const auto deadline = Clock::now() + seconds(5);
         Clock::now() < deadline && metric("limaoim_webhook_notify_dropped_total") != n - 100;)
        std::this_thread::sleep_for(milliseconds(100));
    CHECK(metric("limaoim_webhook_notify_queue") == 100);
    CHECK(metric("limaoim_webhook_notify_dropped_total") == n - 100);
    receiver.release();
}

TEST_CASE("webhook: msg.notify events queued at a kill -9 are delivered after the restart") {
    HttpReceiver receiver;
    receiver.set_default(Reply{.status = 500});
    ImServer server(webhook_args(receiver));
    REQUIRE(server.started());
    std::vector<int64_t> ids;
    {
        ChatClient a = online(server, "ka");
        ids = send_person(a, "kb", 5);
    }
    REQUIRE(receiver.wait_count(1, seconds(5)));
    REQUIRE(server.restart(SIGKILL));
    receiver.set_default(Reply{.status = 200});
    REQUIRE(receiver.wait_for(
        [&](const auto& r) {
            std::set<int64_t> seen;
            for (int64_t id : notified_ids(r)) seen.insert(id);
            return std::all_of(ids.begin(), ids.end(), [&](int64_t id) { return seen.count(id) == 1; });
        },
        seconds(15)));
}

TEST_CASE("/health is 503 while the store's directory is read-only, 200 again after") {
    ImServer server;
    REQUIRE(server.started());
    int status = 0;
    http_json(server.http_port(), "GET", "/health", json(), &status);
    CHECK(status == 200);
    const std::string dir = server.data_dir();
    if (::mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0) {
        MESSAGE("skipped: cannot bind-mount " << dir << " (needs root): " << std::strerror(errno));
        return;
    }
    const bool read_only =
        ::mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0;
    // The server probes the store at most once a second.
    auto health_until = [&](int wanted) {
        json body;
        for (const auto deadline = Clock::now() + seconds(5); Clock::now() < deadline;) {
            body = http_json(server.http_port(), "GET", "/health", json(), &status);
            if (status == wanted) break;
            std::this_thread::sleep_for(milliseconds(100));
        }
        return body;
    };
    const json red = read_only ? health_until(503) : json();
    ::umount2(dir.c_str(), MNT_DETACH);
    REQUIRE(read_only);
    CHECK(status == 503);
    CHECK(red.dump().find("store") != std::string::npos);
    health_until(200);
    CHECK(status == 200);
}

TEST_CASE("datasource: members and lists come from the business server; its failures answer reason 0") {
    HttpReceiver business;
    business.set_responder([](const ReceivedRequest& r, size_t) {
        const json q = json::parse(r.body, nullptr, false);
        Reply reply;
        const std::string cmd = q.is_object() ? q.value("cmd", "") : "";
        const std::string channel = q.is_object() && q["data"].is_object() ? q["data"].value("channel_id", "") : "";
        if (channel == "broken") {
            reply.status = 500;
        } else if (channel == "slow") {
            reply.delay_ms = 2000;
            reply.body = "[]";
        } else if (cmd == "getSubscribers") {
            reply.body = R"(["da","db"])";
        } else if (cmd == "getBlacklist") {
            reply.body = channel == "da" ? R"(["db"])" : "[]";  // da blocks db in person chats
        } else {
            reply.body = "[]";
        }
        return reply;
    });
    ImServer server({"--datasource", business.url("/ds"), "--datasource-timeout-ms", "300", "--token", "da:0:ta",
                     "--token", "db:0:tb", "--token", "dx:0:tx"},
                    "", false);
    REQUIRE(server.started());
    ChatClient a = online(server, "da", 4, 0, "ta");
    ChatClient b = online(server, "db", 4, 0, "tb");
    ChatClient x = online(server, "dx", 4, 0, "tx");
    auto send = [](ChatClient& c, const std::string& channel, uint8_t type, uint32_t seq) {
        return int(send_acked(c, channel, type, "hello", seq, "ds-" + std::to_string(seq), 0, 0, 5000).reason_code);
    };
    CHECK(send(a, "g1", 2, 1) == 1);  // a member by the datasource
    auto recv = b.read_recv();
    REQUIRE(recv);
    CHECK(recv->channel_id == "g1");
    CHECK(send(x, "g1", 2, 2) == 11);  // not a member
    CHECK(send(b, "da", 1, 3) == 11);  // on da's blacklist
    CHECK(send(x, "da", 1, 4) == 1);
    CHECK(send(a, "broken", 2, 5) == 0);
    // A SEND waiting for a slow answer holds up no other: b's SEND to a
    // channel already known is answered while a's waits for its timeout.
    auto asked_about = [&](const std::string& channel) {
        for (const ReceivedRequest& r : business.requests())
            if (r.body.find("\"" + channel + "\"") != std::string::npos) return true;
        return false;
    };
    REQUIRE(a.send_message("slow", 2, "hello", 6, "ds-6"));
    const auto t0 = Clock::now();
    while (!asked_about("slow") && ms_since(t0) < 3000) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    REQUIRE(asked_about("slow"));
    const auto t1 = Clock::now();
    CHECK(send(b, "g1", 2, 7) == 1);
    const int64_t other_ms = ms_since(t1);
    auto slow = a.read_sendack(5000);
    REQUIRE(slow);
    CHECK(slow->reason_code == 0);  // past the timeout
    const int64_t slow_ms = ms_since(t0);
    MESSAGE("a SEND to a known channel: " << other_ms << " ms while one waited " << slow_ms << " ms for the datasource");
    CHECK(other_ms < slow_ms / 2);  // waiting behind it, it would come a few ms after
    CHECK(slow_ms >= 250);
    // Asked once per channel within the cache period, system uids once.
    const std::vector<ReceivedRequest> asked = business.requests();
    size_t system = 0, g1_subscribers = 0;
    for (const ReceivedRequest& r : asked) {
        const json q = json::parse(r.body);
        if (q["cmd"] == "getSystemUIDs") ++system;
        if (q["cmd"] == "getSubscribers" && q["data"]["channel_id"] == "g1") ++g1_subscribers;
        CHECK(r.path == "/ds");
    }
    CHECK(system == 1);
    CHECK(g1_subscribers == 1);
    CHECK(server.log().find("datasource") != std::string::npos);
}
