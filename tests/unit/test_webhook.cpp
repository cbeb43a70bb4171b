// webhook/webhook.h: the webhook sender (SERVER.md §12) against a local
// HTTP receiver, over an in-memory notify queue or the real RocksDB store.
#include <doctest/doctest.h>


#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "http_receiver.h"
#include "limaoim/im/message.h"
#include "limaoim/stats/layout.h"
#include "fake_store.h"
#include "limaoim/store/store.h"
#include "limaoim/webhook/webhook.h"
#include "temp_dir.h"

using namespace limaoim;
using limaoim::testing::FakeStore;
using limaoim::testing::HttpReceiver;
using limaoim::testing::ReceivedRequest;
using limaoim::testing::Reply;
using limaoim::testing::TempDir;
using nlohmann::json;
using nlohmann::ordered_json;
using namespace std::chrono_literals;

namespace {

// True once `condition` holds, polled every 5 ms for up to `ms`.
bool eventually(const std::function<bool()>& condition, int ms = 3000) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < until) {
        if (condition()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return condition();
}

// Fast options for tests: short timeouts and backoffs.
webhook::Options fast() {
    webhook::Options o;
    o.timeout_ms = 300;
    o.notify_scan_ms = 50;
    o.backoff_initial_ms = 20;
    o.backoff_max_ms = 80;
    return o;
}

std::vector<uint8_t> encoded(int64_t id, std::string from, std::string channel, uint8_t type = im::kPersonChannel,
                             std::string payload = "hello") {
    im::Message m;
    m.header_flags = 0x02;  // red dot
    m.setting = 0;
    m.channel_type = type;
    m.message_id = id;
    m.message_seq = uint32_t(id % 1000);
    m.timestamp = 1700000000;
    m.client_msg_no = "cmn-" + std::to_string(id);
    m.from_uid = std::move(from);
    m.channel_id = std::move(channel);
    m.payload = std::move(payload);
    return im::encode(m.view());
}

// The fake store with failure switches on its msg.notify queue and a count of reads.
class NotifyStore final : public FakeStore {
public:
    std::atomic<bool> fail_read{false};
    std::atomic<bool> fail_delete{false};
    std::atomic<bool> fail_count{false};
    std::atomic<int> reads{0};

    void add(int64_t id, std::vector<uint8_t> bytes) {
        std::lock_guard lock(mutex);
        notify[id] = std::move(bytes);
    }
    size_t size() const {
        std::lock_guard lock(mutex);
        return notify.size();
    }

    store::Status read_notify(int64_t after_id, uint32_t limit, std::vector<store::NotifyEvent>& out) override {
        ++reads;
        if (fail_read) return store::Status::failure("read_notify: disk on fire");
        return FakeStore::read_notify(after_id, limit, out);
    }
    store::Status delete_notify(int64_t first_id, int64_t last_id) override {
        if (fail_delete) return store::Status::failure("delete_notify: disk on fire");
        return FakeStore::delete_notify(first_id, last_id);
    }
    store::Status count_notify(uint64_t& count) override {
        if (fail_count) return store::Status::failure("count_notify: disk on fire");
        return FakeStore::count_notify(count);
    }
};

// The entries of every request's body (a JSON array of strings), in order.
std::vector<std::string> entries_of(const std::vector<ReceivedRequest>& requests) {
    std::vector<std::string> out;
    for (const ReceivedRequest& r : requests)
        for (const json& e : json::parse(r.body)) out.push_back(e.get<std::string>());
    return out;
}

size_t array_entries(const std::vector<ReceivedRequest>& requests) {
    size_t n = 0;
    for (const ReceivedRequest& r : requests) n += json::parse(r.body).size();
    return n;
}

}  // namespace

TEST_CASE("user.onlinestatus: batches in event order, capped, the original's request shape") {
    HttpReceiver receiver;
    receiver.push_reply({200, 150});  // the first call is slow: the others queue behind it
    NotifyStore store;
    stats::PipelineBlock stats{};
    webhook::Options o = fast();
    o.online_batch = 3;
    webhook::Sender sender(receiver.url(), o, store, stats);

    std::vector<std::string> expected;
    for (int i = 0; i < 10; ++i) {
        sender.online_status("u" + std::to_string(i), uint8_t(i % 3), i % 2 == 0);
        expected.push_back("u" + std::to_string(i) + "-" + std::to_string(i % 3) + "-" + (i % 2 == 0 ? "1" : "0"));
    }
    REQUIRE(receiver.wait_for([](const auto& r) { return array_entries(r) >= 10; }, 3s));
    const auto requests = receiver.requests();
    CHECK(entries_of(requests) == expected);
    CHECK(requests.size() >= 4);  // 10 entries, at most 3 per call
    for (const ReceivedRequest& r : requests) {
        CHECK(r.method == "POST");
        CHECK(r.path == "/hook");
        CHECK(r.query == "event=user.onlinestatus");
        CHECK(r.header("content-type") == "application/json");
        CHECK(json::parse(r.body).size() <= 3);
        CHECK(json::parse(r.body).size() >= 1);
    }
    CHECK(eventually([&] { return stats.webhook_calls.get() == requests.size(); }));
    CHECK(stats.webhook_failures.get() == 0);
    CHECK(eventually([&] { return stats.webhook_online_queue.get() == 0; }));
    std::string why;
    CHECK(sender.healthy(why));
}

TEST_CASE("user.onlinestatus: 500 then 200 delivers everything once, in order; the failed batch is sent again") {
    HttpReceiver receiver;
    receiver.push_reply({500, 30});
    receiver.push_reply({500});
    NotifyStore store;
    stats::PipelineBlock stats{};
    webhook::Options o = fast();
    o.online_batch = 4;
    webhook::Sender sender(receiver.url(), o, store, stats);

    std::vector<std::string> expected;
    for (int i = 0; i < 3; ++i) {
        sender.online_status("a" + std::to_string(i), 0, true);
        expected.push_back("a" + std::to_string(i) + "-0-1");
    }
    // Entries queued while the first batch fails go after it.
    REQUIRE(receiver.wait_count(1, 2s));
    for (int i = 0; i < 6; ++i) {
        sender.online_status("b" + std::to_string(i), 1, false);
        expected.push_back("b" + std::to_string(i) + "-1-0");
    }
    REQUIRE(receiver.wait_for(
        [&](const auto& r) {
            if (r.size() < 3) return false;
            return array_entries({r.begin() + 2, r.end()}) >= expected.size();
        },
        3s));
    const auto requests = receiver.requests();
    // Requests 0 and 1 were answered 500: the same batch both times, then again.
    CHECK(requests[0].body == requests[1].body);
    CHECK(requests[1].body == requests[2].body);
    const std::vector<ReceivedRequest> delivered(requests.begin() + 2, requests.end());
    CHECK(entries_of(delivered) == expected);
    CHECK(eventually([&] { return stats.webhook_failures.get() == 2; }));
    CHECK(sender.online_dropped() == 0);
}

TEST_CASE("user.onlinestatus: a hanging receiver: calls time out and are retried, the queue is bounded, drops counted") {
    HttpReceiver receiver;
    receiver.set_default({200, 0, true});  // hang
    NotifyStore store;
    stats::PipelineBlock stats{};
    webhook::Options o = fast();
    o.timeout_ms = 150;
    o.online_queue_max = 5;
    webhook::Sender sender(receiver.url(), o, store, stats);

    sender.online_status("first", 0, true);
    REQUIRE(receiver.wait_count(1, 2s));  // "first" is in flight, out of the queue
    for (int i = 0; i < 12; ++i) sender.online_status("q" + std::to_string(i), 0, true);
    CHECK(sender.online_dropped() == 7);  // 5 fit
    // The hanging call times out (150 ms) and the same batch goes again.
    REQUIRE(receiver.wait_count(2, 2s));
    auto requests = receiver.requests();
    CHECK(requests[0].body == R"(["first-0-1"])");
    CHECK(requests[1].body == R"(["first-0-1"])");
    CHECK(eventually([&] { return stats.webhook_failures.get() >= 1 && stats.webhook_online_dropped.get() == 7; }));
    CHECK(eventually([&] { return stats.webhook_online_queue.get() == 6; }));  // the batch and the 5 queued

    // The receiver answers again: what was kept arrives, once each.
    receiver.set_default({200});
    receiver.release();
    REQUIRE(eventually([&] {
        const auto r = receiver.requests();
        const auto e = entries_of(r);
        return !e.empty() && e.back() == "q4-0-1";
    }));
    std::vector<std::string> tail;
    for (const std::string& e : entries_of(receiver.requests()))
        if (e != "first-0-1") tail.push_back(e);
    CHECK(tail == std::vector<std::string>{"q0-0-1", "q1-0-1", "q2-0-1", "q3-0-1", "q4-0-1"});
    CHECK(eventually([&] { return stats.webhook_online_queue.get() == 0; }));
}

TEST_CASE("msg.offline: MessageResp plus to_uids, one attempt, bounded") {
    HttpReceiver receiver;
    NotifyStore store;
    stats::PipelineBlock stats{};
    webhook::Sender sender(receiver.url(), fast(), store, stats);

    const std::vector<uint8_t> bytes = encoded(1724551110972149765, "alice", "bob", im::kPersonChannel, "hi \x01");
    sender.offline_message(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                           {"bob", "carol"});
    REQUIRE(receiver.wait_count(1, 2s));
    const ReceivedRequest r = receiver.requests()[0];
    CHECK(r.method == "POST");
    CHECK(r.query == "event=msg.offline");
    CHECK(r.header("content-type") == "application/json");
    CHECK(r.body ==
          R"({"header":{"no_persist":0,"red_dot":1,"sync_once":0},"setting":0,)"
          R"("message_id":1724551110972149765,"message_idstr":"1724551110972149765","client_msg_no":"cmn-1724551110972149765",)"
          R"("message_seq":765,"from_uid":"alice","channel_id":"bob","channel_type":1,"timestamp":1700000000,)"
          R"("payload":"aGkgAQ==","to_uids":["bob","carol"]})");

    SUBCASE("a failed call is not repeated and is counted") {
        receiver.set_default({500});
        sender.offline_message(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), {"x"});
        REQUIRE(receiver.wait_count(2, 2s));
        CHECK(eventually([&] { return stats.webhook_offline_dropped.get() == 1; }));
        std::this_thread::sleep_for(100ms);
        CHECK(receiver.count() == 2);
    }
    SUBCASE("a hanging receiver: at most offline_concurrency calls, the queue bounded, every drop counted") {
        webhook::Options o = fast();
        o.timeout_ms = 150;
        o.offline_concurrency = 2;
        o.offline_queue_max = 3;
        HttpReceiver hanging;
        hanging.set_default({200, 0, true});
        stats::PipelineBlock stats2{};
        webhook::Sender slow(hanging.url(), o, store, stats2);
        for (int i = 0; i < 10; ++i)
            slow.offline_message(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), {"x"});
        CHECK(slow.offline_dropped() >= 5);  // 3 queued, 2 in flight at most
        // Every call times out (one attempt): all 10 counted in the end.
        CHECK(eventually([&] { return stats2.webhook_offline_dropped.get() == 10; }));
        CHECK(hanging.count() <= 5);
        CHECK(hanging.count() >= 3);
    }
    SUBCASE("the queue's bytes are bounded too: big messages are dropped before the count bound") {
        webhook::Options o = fast();
        o.offline_concurrency = 1;
        o.offline_queue_max = 1000;
        o.offline_queue_bytes_max = 2 * (bytes.size() + 64);  // two messages with one short uid each
        HttpReceiver hanging;
        hanging.set_default({200, 0, true});
        stats::PipelineBlock stats2{};
        webhook::Sender slow(hanging.url(), o, store, stats2);
        for (int i = 0; i < 10; ++i)
            slow.offline_message(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), {"x"});
        CHECK(slow.offline_dropped() >= 7);  // 2 queued, 1 in flight at most
        hanging.release();
    }
}

TEST_CASE("msg.offline: in a cluster the presence filter drops users online elsewhere, on the sender's thread") {
    HttpReceiver receiver;
    NotifyStore store;
    stats::PipelineBlock stats{};
    webhook::Sender sender(receiver.url(), fast(), store, stats);
    std::atomic<int> asked{0};
    std::atomic<bool> off_this_thread{false};
    const std::thread::id test_thread = std::this_thread::get_id();
    sender.set_presence_filter([&](std::vector<std::string>& uids) {
        if (std::this_thread::get_id() != test_thread) off_this_thread = true;
        ++asked;
        std::erase(uids, std::string("carol"));  // carol has a session on another node
        std::erase(uids, std::string("dave"));
    });
    const std::vector<uint8_t> bytes = encoded(1724551110972149765, "alice", "bob", im::kPersonChannel, "hi");
    const std::string_view message(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    sender.offline_message(message, {"dave"});  // online elsewhere: no call at all
    sender.offline_message(message, {"bob", "carol"});
    REQUIRE(receiver.wait_count(1, 2s));
    CHECK(nlohmann::json::parse(receiver.requests()[0].body)["to_uids"] == nlohmann::json::array({"bob"}));
    std::this_thread::sleep_for(100ms);
    CHECK(receiver.count() == 1);
    CHECK(asked == 2);
    CHECK(off_this_thread);
}

TEST_CASE("msg.notify: read from the store, posted as MessageResp arrays, deleted after 200") {
    HttpReceiver receiver;
    NotifyStore store;
    for (int64_t id = 101; id <= 105; ++id) store.add(id, encoded(id, "alice", "bob"));
    store.add(106, encoded(106, "alice", "g1", im::kGroupChannel));
    stats::PipelineBlock stats{};
    webhook::Options o = fast();
    o.notify_batch = 4;
    webhook::Sender sender(receiver.url(), o, store, stats);
    CHECK(sender.notify_queue_size() == 6);

    REQUIRE(receiver.wait_count(2, 3s));
    REQUIRE(eventually([&] { return store.size() == 0; }));
    const auto requests = receiver.requests();
    REQUIRE(requests.size() == 2);
    CHECK(requests[0].query == "event=msg.notify");
    CHECK(requests[0].header("x-limaoim-event-id") == "101-104");
    CHECK(requests[1].header("x-limaoim-event-id") == "105-106");
    const json first = json::parse(requests[0].body);
    REQUIRE(first.size() == 4);
    CHECK(first[0]["message_id"] == 101);
    CHECK(first[0]["message_idstr"] == "101");
    CHECK(first[0]["channel_id"] == "bob");  // person message: the recipient
    CHECK(first[0]["from_uid"] == "alice");
    CHECK(first[0]["payload"] == "aGVsbG8=");
    const json second = json::parse(requests[1].body);
    CHECK(second[1]["channel_id"] == "g1");
    CHECK(second[1]["channel_type"] == 2);
    // The keys in MessageResp's order.
    std::vector<std::string> keys;
    const ordered_json ordered = ordered_json::parse(requests[0].body);
    for (const auto& item : ordered[0].items()) keys.push_back(item.key());
    CHECK(keys == std::vector<std::string>{"header", "setting", "message_id", "message_idstr", "client_msg_no",
                                           "message_seq", "from_uid", "channel_id", "channel_type", "timestamp",
                                           "payload"});
    CHECK(eventually([&] { return stats.webhook_notify_sent.get() == 6 && stats.webhook_notify_queue.get() == 0; }));
    CHECK(sender.notify_queue_size() == 0);

    SUBCASE("notify_queued() wakes the sender before the scan interval") {
        // (The scan interval here is 50 ms; the point is the count and the wake-up.)
        store.add(200, encoded(200, "x", "y"));
        sender.notify_queued(1);
        REQUIRE(receiver.wait_count(3, 2s));
        CHECK(receiver.requests()[2].header("x-limaoim-event-id") == "200-200");
        CHECK(eventually([&] { return store.size() == 0 && sender.notify_queue_size() == 0; }));
    }
}

TEST_CASE("msg.notify: notify_queued() is what starts a batch when the scan interval is long") {
    HttpReceiver receiver;
    NotifyStore store;
    stats::PipelineBlock stats{};
    webhook::Options o = fast();
    o.notify_scan_ms = 60000;
    webhook::Sender sender(receiver.url(), o, store, stats);
    std::this_thread::sleep_for(50ms);  // the first (empty) scan is done
    store.add(7, encoded(7, "a", "b"));
    sender.notify_queued(1);
    REQUIRE(receiver.wait_count(1, 2s));
    CHECK(receiver.requests()[0].header("x-limaoim-event-id") == "7-7");
    CHECK(eventually([&] { return store.size() == 0 && sender.notify_queue_size() == 0; }));
}

TEST_CASE("msg.notify: kept after failures, retried with backoff, delivered by the next start (RocksDB)") {
    TempDir tmp;
    std::string error;
    std::unique_ptr<store::Store> db = store::open_embedded(tmp.data(), error);
    REQUIRE_MESSAGE(db, error);
    store::WriteBatch batch;
    for (int64_t id = 1000; id < 1003; ++id) batch.notify.push_back({id, encoded(id, "alice", "bob")});
    REQUIRE(db->commit(batch, true));

    {
        HttpReceiver failing;
        failing.set_default({503});
        stats::PipelineBlock stats{};
        webhook::Sender sender(failing.url(), fast(), *db, stats);
        CHECK(sender.notify_queue_size() == 3);
        REQUIRE(failing.wait_count(3, 3s));  // the first call and two retries
        const auto r = failing.requests();
        CHECK(r[0].body == r[1].body);
        CHECK(r[1].body == r[2].body);
        CHECK(r[0].header("x-limaoim-event-id") == "1000-1002");
        CHECK(stats.webhook_notify_sent.get() == 0);
        std::string why;
        CHECK(sender.healthy(why));  // a failing receiver is not a full queue
        sender.stop();
    }
    uint64_t count = 0;
    REQUIRE(db->count_notify(count));
    CHECK(count == 3);

    // The process "restarts": a new store handle on the same directory.
    db.reset();
    db = store::open_embedded(tmp.data(), error);
    REQUIRE_MESSAGE(db, error);
    HttpReceiver receiver;
    stats::PipelineBlock stats{};
    webhook::Sender sender(receiver.url(), fast(), *db, stats);
    REQUIRE(receiver.wait_count(1, 2s));
    CHECK(receiver.requests()[0].header("x-limaoim-event-id") == "1000-1002");
    const json body = json::parse(receiver.requests()[0].body);
    REQUIRE(body.size() == 3);
    CHECK(body[2]["message_idstr"] == "1002");
    REQUIRE(eventually([&] {
        uint64_t c = 1;
        return db->count_notify(c) && c == 0;
    }));
    CHECK(eventually([&] { return stats.webhook_notify_sent.get() == 3; }));
    sender.stop();
}

TEST_CASE("msg.notify: stop() waits for a hanging call at most the timeout; the batch stays queued") {
    HttpReceiver receiver;
    receiver.set_default({200, 0, true});
    NotifyStore store;
    store.add(5, encoded(5, "a", "b"));
    stats::PipelineBlock stats{};
    webhook::Options o = fast();
    o.timeout_ms = 200;
    auto sender = std::make_unique<webhook::Sender>(receiver.url(), o, store, stats);
    REQUIRE(receiver.wait_count(1, 2s));
    const auto started = std::chrono::steady_clock::now();
    sender->stop();
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(took < 600ms);
    CHECK(store.size() == 1);
    sender.reset();
}

TEST_CASE("msg.notify: a delayed 200 during stop() still removes the batch") {
    HttpReceiver receiver;
    receiver.set_default({200, 100});
    NotifyStore store;
    store.add(5, encoded(5, "a", "b"));
    stats::PipelineBlock stats{};
    webhook::Sender sender(receiver.url(), fast(), store, stats);
    REQUIRE(receiver.wait_count(1, 2s));
    sender.stop();
    CHECK(store.size() == 0);
}

TEST_CASE("msg.notify: store failures are retried with backoff and make healthy() false") {
    HttpReceiver receiver;
    NotifyStore store;
    store.fail_count = true;
    store.fail_read = true;
    store.add(9, encoded(9, "a", "b"));
    stats::PipelineBlock stats{};
    webhook::Sender sender(receiver.url(), fast(), store, stats);
    std::string why;
    CHECK_FALSE(sender.healthy(why));
    CHECK(why.find("store") != std::string::npos);
    store.fail_count = false;
    CHECK(eventually([&] { return store.reads.load() >= 3; }));  // retried
    CHECK(receiver.count() == 0);
    CHECK(sender.store_failures() >= 3);
    CHECK_FALSE(sender.healthy(why));

    store.fail_read = false;
    store.fail_delete = true;  // answered 200, then the delete fails: retried, not sent again
    REQUIRE(receiver.wait_count(1, 2s));
    CHECK(eventually([&] { return sender.store_failures() >= 6; }));
    CHECK(store.size() == 1);
    store.fail_delete = false;
    CHECK(eventually([&] { return store.size() == 0; }));
    CHECK(receiver.count() == 1);
    CHECK(eventually([&] { return sender.healthy(why); }));
    CHECK(sender.notify_queue_size() == 0);
}

TEST_CASE("msg.notify: the queue's bound: notify_has_room, drops counted, healthy()") {
    HttpReceiver receiver;
    receiver.set_default({500});
    NotifyStore store;
    for (int64_t id = 1; id <= 3; ++id) store.add(id, encoded(id, "a", "b"));
    stats::PipelineBlock stats{};
    webhook::Options o = fast();
    o.queue_max = 4;
    webhook::Sender sender(receiver.url(), o, store, stats);
    std::string why;
    CHECK(sender.healthy(why));
    CHECK(sender.notify_has_room(0));   // 3 queued + 1 <= 4
    CHECK_FALSE(sender.notify_has_room(1));  // a batch's event pending: 3 + 1 + 1 > 4
    CHECK_FALSE(sender.notify_has_room(2));
    CHECK(sender.notify_dropped() == 2);
    CHECK_FALSE(sender.healthy(why));  // dropped within the last minute
    CHECK(why.find("dropped") != std::string::npos);
    CHECK(eventually([&] { return stats.webhook_notify_dropped.get() == 2; }));

    store.add(4, encoded(4, "a", "b"));
    sender.notify_queued(1);
    CHECK_FALSE(sender.notify_has_room(0));
    CHECK_FALSE(sender.healthy(why));
    CHECK(why.find("full") != std::string::npos);
    CHECK(eventually([&] { return stats.webhook_notify_queue.get() == 4; }));
}

TEST_CASE("webhook: a URL with a query gets ?event= appended as is (§12.1)") {
    HttpReceiver receiver;
    NotifyStore store;
    stats::PipelineBlock stats{};
    webhook::Sender sender(receiver.url("/hook?key=abc"), fast(), store, stats);
    sender.online_status("u", 1, true);
    REQUIRE(receiver.wait_count(1, 2s));
    CHECK(receiver.requests()[0].target == "/hook?key=abc?event=user.onlinestatus");
}

TEST_CASE("webhook: nobody listening: connection errors are failures, nothing crashes") {
    std::string url;
    {
        HttpReceiver gone;
        url = gone.url();
    }
    NotifyStore store;
    store.add(1, encoded(1, "a", "b"));
    stats::PipelineBlock stats{};
    webhook::Sender sender(url, fast(), store, stats);
    sender.online_status("u", 0, true);
    CHECK(eventually([&] { return stats.webhook_failures.get() >= 3; }));
    CHECK(store.size() == 1);
}
