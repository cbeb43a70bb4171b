// The cluster's event encoding (cluster/redis_cluster.h): what one node
// sends, another decodes into the same fan-out item, and a cut or corrupt
// event is refused rather than read past its end; then a node on a
// redis-server of its own, for what makes it read its caches again.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

#include "limaoim/cluster/redis_cluster.h"
#include "limaoim/im/message.h"
#include "redis_server.h"

using namespace limaoim;

namespace {

im::FanoutItem item_with(const im::Message& m) {
    im::FanoutItem item;
    const std::vector<uint8_t> bytes = im::encode(m.view());
    item.message = net::Payload::copy_of(bytes);
    item.sender_device = 2;
    return item;
}

im::Message sample() {
    im::Message m;
    m.header_flags = 0x04;
    m.channel_type = im::kGroupChannel;
    m.message_id = 123456789012345;
    m.message_seq = 7;
    m.timestamp = 1700000000;
    m.client_msg_no = "cmn-1";
    m.from_uid = "alice";
    m.channel_id = "g1";
    m.payload = std::string("hello\0world", 11);
    return m;
}

}  // namespace

TEST_CASE("cluster: a message event decodes to the item it was made from") {
    im::FanoutItem item = item_with(sample());
    item.queue_seqs = {{"alice", 3}, {"bob", 9}};

    SUBCASE("the channel's subscribers (no receiver list)") {
        const std::string event = cluster::detail::encode_message(5, item);
        im::FanoutItem out;
        REQUIRE(cluster::detail::decode_message(event, out));
        CHECK(out.receivers == nullptr);
        CHECK(out.sender_device == 2);
        CHECK(out.queue_seqs == item.queue_seqs);
        const auto a = item.message.bytes(), b = out.message.bytes();
        CHECK(std::vector<uint8_t>(a.begin(), a.end()) == std::vector<uint8_t>(b.begin(), b.end()));
        CHECK_FALSE(out.remote);  // the receiving fan-out marks it (Fanout::push_remote)
    }
    SUBCASE("an explicit receiver list, binary uids included") {
        item.receivers = std::make_shared<const std::vector<std::string>>(
            std::vector<std::string>{"bob", std::string("c\0d", 3), ""});
        const std::string event = cluster::detail::encode_message(5, item);
        im::FanoutItem out;
        REQUIRE(cluster::detail::decode_message(event, out));
        REQUIRE(out.receivers != nullptr);
        CHECK(*out.receivers == *item.receivers);
    }
}

TEST_CASE("cluster: a cut or corrupt message event is refused") {
    im::FanoutItem item = item_with(sample());
    item.receivers = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"bob", "carol"});
    item.queue_seqs = {{"bob", 1}};
    const std::string event = cluster::detail::encode_message(5, item);
    // Every cut: the header, the lists, or the message's own encoding ends early.
    for (size_t n = 0; n < event.size(); ++n) {
        im::FanoutItem out;
        CHECK_MESSAGE(!cluster::detail::decode_message(std::string_view(event).substr(0, n), out), n);
    }
    // Another event kind is not a message.
    std::string other = event;
    other[0] = 'L';
    im::FanoutItem out;
    CHECK_FALSE(cluster::detail::decode_message(other, out));
    // A receiver count far past the event's end is refused, not allocated.
    std::string huge = event;
    const uint32_t count = 0x7fffffff;
    std::memcpy(huge.data() + 4, &count, 4);
    CHECK_FALSE(cluster::detail::decode_message(huge, out));
}

TEST_CASE("cluster: a sealed event opens with the secret, within the age window only") {
    const std::string secret = "0123456789abcdef-cluster";
    const std::string event = std::string("T\x01\x00\x01", 4) + "alice";
    const uint64_t now = 1'800'000'000'000;
    const std::string sealed = cluster::detail::seal(secret, event, now, 0xb007, 42);
    CHECK(sealed.size() == event.size() + 3 * 8 + 32);
    std::string_view opened;
    cluster::detail::Origin origin;
    using cluster::detail::Unsealed;

    SUBCASE("verified") {
        CHECK(cluster::detail::unseal(secret, sealed, now, now, 30000, opened, origin) == Unsealed::Ok);
        CHECK(opened == event);
        CHECK(origin.boot == 0xb007);
        CHECK(origin.seq == 42);
        CHECK(origin.sealed_ms == now);
        CHECK(cluster::detail::unseal(secret, sealed, now + 30000, now + 30000, 30000, opened, origin) == Unsealed::Ok);  // clocks a little apart
        CHECK(cluster::detail::unseal(secret, sealed, now - 30000, now - 30000, 30000, opened, origin) == Unsealed::Ok);
    }
    SUBCASE("forged: another secret, an edited event, an edited boot, seq or time, a bare event") {
        CHECK(cluster::detail::unseal("another secret!!", sealed, now, now, 30000, opened, origin) == Unsealed::Forged);
        for (size_t at : {size_t(0), size_t(4), event.size(), event.size() + 8, event.size() + 16, sealed.size() - 1}) {
            std::string edited = sealed;
            edited[at] ^= 0x01;  // a byte of the event, its boot, seq, time, its MAC
            CHECK_MESSAGE(cluster::detail::unseal(secret, edited, now, now, 30000, opened, origin) == Unsealed::Forged, at);
        }
        // What an attacker without the secret publishes: the old, unsealed format.
        CHECK(cluster::detail::unseal(secret, event + std::string(56, '\0'), now, now, 30000, opened, origin) ==
              Unsealed::Forged);
        // Another uid with the original seal.
        std::string other = sealed;
        other.replace(4, 5, "mallo");
        CHECK(cluster::detail::unseal(secret, other, now, now, 30000, opened, origin) == Unsealed::Forged);
    }
    SUBCASE("read late: judged by when Redis added it, not by when it was read") {
        CHECK(cluster::detail::unseal(secret, sealed, now + 1000, now + 3'600'000, 30000, opened, origin) == Unsealed::Ok);
        // An entry id far ahead (written by hand) makes no old event fresh and no fresh one stale.
        CHECK(cluster::detail::unseal(secret, sealed, now + 3'600'000, now, 30000, opened, origin) == Unsealed::Ok);
        const std::string old_one = cluster::detail::seal(secret, event, now - 60000, 0xb007, 41);
        CHECK(cluster::detail::unseal(secret, old_one, now + 3'600'000, now, 30000, opened, origin) == Unsealed::Stale);
        // Ahead of this node's clock by more than the window, whenever added.
        CHECK(cluster::detail::unseal(secret, sealed, now, now - 30001, 30000, opened, origin) == Unsealed::Stale);
    }
    SUBCASE("late: sealed longer ago than the window, or ahead of it") {
        CHECK(cluster::detail::unseal(secret, sealed, now + 30001, now + 30001, 30000, opened, origin) == Unsealed::Stale);
        CHECK(cluster::detail::unseal(secret, sealed, now + 3'600'000, now + 3'600'000, 30000, opened, origin) == Unsealed::Stale);
        CHECK(cluster::detail::unseal(secret, sealed, now - 30001, now - 30001, 30000, opened, origin) == Unsealed::Stale);
    }
    SUBCASE("truncated: any cut is refused, an empty one too") {
        for (size_t keep = 0; keep < sealed.size(); ++keep)
            CHECK_MESSAGE(cluster::detail::unseal(secret, std::string_view(sealed).substr(0, keep), now, now, 30000, opened,
                                                  origin) == Unsealed::Forged,
                          keep);
        // Sealed empty: too short to be an event even with a valid MAC.
        CHECK(cluster::detail::unseal(secret, cluster::detail::seal(secret, "", now, 1, 1), now, now, 30000, opened, origin) ==
              Unsealed::Forged);
    }
}

TEST_CASE("cluster: the replay guard takes each event of a node once, a little out of order, and a new run") {
    using cluster::detail::Origin;
    cluster::detail::ReplayGuard guard;
    const uint64_t t = 1'800'000'000'000;
    CHECK(guard.fresh(1, Origin{7, 1, t}));
    CHECK_FALSE(guard.fresh(1, Origin{7, 1, t}));  // published again
    CHECK(guard.fresh(2, Origin{9, 1, t}));        // another node's own numbers
    CHECK(guard.fresh(1, Origin{7, 3, t}));
    CHECK(guard.fresh(1, Origin{7, 2, t}));  // late, not seen: taken
    CHECK_FALSE(guard.fresh(1, Origin{7, 2, t}));
    CHECK_FALSE(guard.fresh(1, Origin{7, 3, t}));
    CHECK(guard.fresh(1, Origin{7, 100, t + 5}));
    CHECK_FALSE(guard.fresh(1, Origin{7, 36, t}));  // 64 or more behind: cannot tell, dropped
    CHECK(guard.fresh(1, Origin{7, 37, t}));
    // The node restarts: a new run, sealed later, starts its numbers again.
    CHECK(guard.fresh(1, Origin{8, 1, t + 1000}));
    CHECK(guard.fresh(1, Origin{8, 2, t + 1001}));
    // A copy of the earlier run's event (still within the age window) is not.
    CHECK_FALSE(guard.fresh(1, Origin{7, 101, t + 6}));
    // A run whose clock is behind the last one's newest event: heard once it passes it.
    CHECK_FALSE(guard.fresh(1, Origin{5, 1, t + 900}));
    CHECK(guard.fresh(1, Origin{5, 2, t + 1002}));
}

TEST_CASE("cluster: a node that just began listening takes no event of an unknown node sealed before it did") {
    using cluster::detail::Origin;
    using cluster::detail::ReplayGuard;
    ReplayGuard guard;
    const uint64_t t = 1'800'000'000'000;
    guard.listening_since(t);
    // Recorded before this node started: not taken, even in order.
    CHECK_FALSE(guard.fresh(1, Origin{7, 1, t - ReplayGuard::kSkewMs - 1}));
    CHECK_FALSE(guard.fresh(1, Origin{7, 2, t - 20000}));
    // A clock a little behind is allowed for.
    CHECK(guard.fresh(1, Origin{7, 3, t - ReplayGuard::kSkewMs + 1}));
    CHECK(guard.fresh(1, Origin{7, 4, t + 10}));
    CHECK(guard.fresh(2, Origin{9, 1, t + 5}));
}

// ---- RedisCluster against a redis-server: what makes a node read its caches again ----

namespace {

struct CountingListener final : im::ClusterListener {
    std::atomic<int> resyncs{0};
    void on_remote_message(im::FanoutItem&&) override {}
    void on_remote_login(std::string_view, uint8_t, uint64_t) override {}
    void on_token_changed(std::string_view, uint8_t, const std::array<uint8_t, 32>&) override {}
    void on_channel_changed(uint8_t, std::string_view) override {}
    void on_system_uids_changed() override {}
    void on_conversation_unread_set(std::string_view, std::string_view, uint8_t, uint32_t) override {}
    void on_conversation_removed(const std::vector<std::string>&, std::string_view, uint8_t) override {}
    std::atomic<bool> resync_fails{false};
    bool on_resync() override {
        ++resyncs;
        return !resync_fails;
    }
};

bool eventually(const std::function<bool()>& condition, int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

}  // namespace

TEST_CASE("cluster node on a redis-server: its stream gone or its registration lapsed makes it read its caches again; "
          "an error reply does not") {
    testing::RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), redis.log());
    cluster::Options options;
    std::string error;
    REQUIRE(redis::parse_url(redis.url(), options.url, error));
    options.secret = "0123456789abcdef-cluster";
    CountingListener listener;
    stats::PipelineBlock block{};
    cluster::RedisCluster node(options, listener, block);
    REQUIRE_MESSAGE(node.start(error), error);
    // Something read, so the node has a position in its stream (a forged event: read, dropped).
    redis.cli("XADD lim:bus:{1} '*' e junk");
    REQUIRE(eventually([&] { return block.cluster_events_rejected.get() == 1; }, 2000));
    REQUIRE(listener.resyncs == 0);

    SUBCASE("the stream deleted (a Redis that lost its data)") {
        redis.cli("DEL lim:bus:{1}");
        CHECK(eventually([&] { return listener.resyncs == 1; }, 2500));  // checked once a second
    }
    SUBCASE("a resync that fails (the store unreadable) is tried again each second until it works") {
        listener.resync_fails = true;
        redis.cli("DEL lim:bus:{1}");
        CHECK(eventually([&] { return listener.resyncs == 2; }, 3500));
        listener.resync_fails = false;
        CHECK(eventually([&] { return listener.resyncs == 3; }, 2500));
        std::this_thread::sleep_for(std::chrono::milliseconds(1200));
        CHECK(listener.resyncs == 3);  // done: not asked again
    }
    SUBCASE("the registration lapsed (the others stopped sending here)") {
        redis.cli("DEL lim:node:{1}");
        CHECK(eventually([&] { return listener.resyncs == 1; }, 2500));  // refreshed once a second
    }
    SUBCASE("an error reply (the key of another type) is no lost stream: the node waits, and reads on after") {
        redis.cli("EVAL \"redis.call('DEL', KEYS[1]) redis.call('SET', KEYS[1], 'x')\" 1 lim:bus:{1}");
        CHECK(eventually([&] { return block.cluster_connected.get() == 0; }, 2500));
        std::this_thread::sleep_for(std::chrono::milliseconds(1200));
        CHECK(listener.resyncs == 0);
        redis.cli("DEL lim:bus:{1}");
        redis.cli("XADD lim:bus:{1} '*' e junk2");
        CHECK(eventually([&] { return block.cluster_events_rejected.get() == 2; }, 2500));
        CHECK(block.cluster_connected.get() == 1);
    }
    node.stop();
}
