#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <rocksdb/db.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/store/store.h"
#include "ports.h"
#include "redis_server.h"
#include "temp_dir.h"

using namespace limaoim::store;
using limaoim::testing::RedisServer;
using limaoim::testing::RedisSentinel;
using limaoim::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Store> open_ok(const std::string& dir) {
    std::string error;
    auto store = open_embedded(dir, error);
    INFO(error);
    REQUIRE(store != nullptr);
    return store;
}

std::string open_error(const std::string& dir) {
    std::string error;
    CHECK(open_embedded(dir, error) == nullptr);
    return error;
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

void write_file(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<uint8_t> bytes_of(std::string_view text) { return {text.begin(), text.end()}; }

std::string message(std::string_view log, uint32_t seq) { return std::string(log) + "#" + std::to_string(seq); }

WriteBatch::Append append(std::string_view log, uint32_t seq) { return {std::string(log), seq, bytes_of(message(log, seq))}; }

// Puts a raw key into the store's RocksDB behind its back, as corruption would.
void put_raw(const std::string& dir, const std::string& key, const std::string& value) {
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(rocksdb::Options(), dir, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    REQUIRE(db->Put(rocksdb::WriteOptions(), key, value).ok());
}

std::vector<std::string> read_messages(Store& store, std::string_view log, uint32_t from, uint32_t to, uint32_t limit) {
    std::vector<std::string> out;
    REQUIRE(store.read_messages(log, from, to, {.count = limit}, out));
    return out;
}

std::vector<std::string> read_queue(Store& store, std::string_view uid, uint32_t after, uint32_t limit) {
    std::vector<std::string> out;
    REQUIRE(store.read_queue(uid, after, {.count = limit}, out));
    return out;
}

std::vector<std::string> messages(std::string_view log, std::initializer_list<uint32_t> seqs) {
    std::vector<std::string> out;
    for (uint32_t seq : seqs) out.push_back(message(log, seq));
    return out;
}

uint32_t channel_seq(Store& store, std::string_view log) {
    uint32_t seq = 99;
    REQUIRE(store.channel_seq(log, seq));
    return seq;
}

std::unique_ptr<Store> open_redis_ok(const RedisOptions& options) {
    std::string error;
    auto store = open_redis(options, error);
    INFO(error);
    REQUIRE(store != nullptr);
    return store;
}

// A store engine under test, opened (and opened again) by a test case.
struct Engine {
    virtual ~Engine() = default;
    virtual const char* name() const = 0;
    virtual std::unique_ptr<Store> open() = 0;
};

struct Embedded final : Engine {
    TempDir tmp;
    const char* name() const override { return "rocksdb"; }
    std::unique_ptr<Store> open() override { return open_ok(tmp.data()); }
};

// On a redis-server of its own; fails (never skips) when none can start.
struct OnRedis final : Engine {
    RedisServer server;
    RedisOptions options;
    OnRedis() {
        INFO(server.log());
        REQUIRE_MESSAGE(server.started(), "redis-server did not start (apt-get install redis-server)");
        options.url = server.url();
    }
    const char* name() const override { return "redis"; }
    std::unique_ptr<Store> open() override { return open_redis_ok(options); }
};

// Runs the calling test case once per engine (a doctest subcase each).
std::unique_ptr<Engine> each_engine() {
    std::unique_ptr<Engine> engine;
    SUBCASE("rocksdb") { engine = std::make_unique<Embedded>(); }
    SUBCASE("redis") { engine = std::make_unique<OnRedis>(); }
    return engine;
}

}  // namespace

TEST_CASE("store: a new directory is made and marked with the format") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
    CHECK(std::string(store->engine()) == "rocksdb");
    CHECK_FALSE(store->shared());
    CHECK(read_file(fs::path(tmp.data()) / "LIMAOIM_FORMAT") == "limaoim-store 1\n");

    // An existing empty directory (a fresh mount point, say) is taken too.
    fs::create_directory(tmp.root / "empty");
    open_ok((tmp.root / "empty").string());
}

TEST_CASE("store: a new store starts empty") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();

    uint32_t seq = 99;
    CHECK(store->channel_seq(log_name(2, "g"), seq));
    CHECK(seq == 0);
    seq = 99;
    CHECK(store->queue_seq("alice", seq));
    CHECK(seq == 0);
    seq = 99;
    CHECK(store->cursor("alice", seq));
    CHECK(seq == 0);
    int64_t id = 99;
    CHECK(store->max_message_id(id));
    CHECK(id == 0);
    CHECK(read_messages(*store, log_name(2, "g"), 1, 0, 100).empty());
    CHECK(read_queue(*store, "alice", 0, 100).empty());
    uint64_t count = 99;
    CHECK(store->count_notify(count));
    CHECK(count == 0);
}

TEST_CASE("store: tokens round-trip, replaced per (uid, device flag)") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    TokenRecord alice{"alice", 0, {}, 1};
    alice.digest.fill(0xaa);
    TokenRecord alice_web{"alice", 2, {}, 0};
    alice_web.digest.fill(0x01);
    TokenRecord binary{std::string("b\0\xff", 3), 255, {}, 7};
    binary.digest[31] = 0xff;
    for (const auto& token : {alice, alice_web, binary}) REQUIRE(store->put_token(token));
    alice.digest.fill(0xbb);  // a new login replaces the token of the same uid and flag
    alice.device_level = 0;
    REQUIRE(store->put_token(alice));

    std::map<std::pair<std::string, int>, TokenRecord> loaded;
    REQUIRE(store->load_tokens([&](TokenRecord&& t) { loaded[{t.uid, t.device_flag}] = std::move(t); }));
    REQUIRE(loaded.size() == 3);
    for (const auto& expected : {alice, alice_web, binary}) {
        const TokenRecord& got = loaded[{expected.uid, expected.device_flag}];
        CHECK(got.uid == expected.uid);
        CHECK(got.digest == expected.digest);
        CHECK(got.device_level == expected.device_level);
    }
}

TEST_CASE("store: channels are put, replaced, deleted and listed") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    ChannelRecord group{"g1", 2, "", {"alice", "bob"}, {"alice"}, {std::string("x\0y", 3)}};
    ChannelRecord same_id_other_type{"g1", 3, "parent", {}, {}, {}};
    ChannelRecord person{"carol", 1, "", {}, {}, {"mallory"}};
    ChannelRecord big{std::string("\0big\xff", 5), 2, "", {}, {}, {}};
    for (int i = 0; i < 5000; ++i) big.subscribers.push_back("user-" + std::to_string(i));
    for (const auto& channel : {group, same_id_other_type, person, big}) REQUIRE(store->put_channel(channel));

    group.subscribers = {"dave"};  // the whole record is replaced
    group.allowlist.clear();
    REQUIRE(store->put_channel(group));
    REQUIRE(store->delete_channel(1, "carol"));
    REQUIRE(store->delete_channel(2, "never-existed"));

    std::map<std::pair<int, std::string>, ChannelRecord> loaded;
    REQUIRE(store->load_channels([&](ChannelRecord&& c) { loaded[{c.type, c.id}] = std::move(c); }));
    REQUIRE(loaded.size() == 3);
    for (const auto& expected : {group, same_id_other_type, big}) {
        const ChannelRecord& got = loaded[{expected.type, expected.id}];
        CHECK(got.parent == expected.parent);
        CHECK(got.subscribers == expected.subscribers);
        CHECK(got.allowlist == expected.allowlist);
        CHECK(got.denylist == expected.denylist);
    }
    CHECK(loaded.count({1, "carol"}) == 0);
}

TEST_CASE("store: the system uid set is replaced whole") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    REQUIRE(store->put_system_uids({"sys1", "sys2", std::string("\0\xff", 2)}));
    std::vector<std::string> uids;
    REQUIRE(store->load_system_uids(uids));
    CHECK(std::set<std::string>(uids.begin(), uids.end()) ==
          std::set<std::string>{"sys1", "sys2", std::string("\0\xff", 2)});

    REQUIRE(store->put_system_uids({"sys3"}));
    uids.clear();
    REQUIRE(store->load_system_uids(uids));
    CHECK(uids == std::vector<std::string>{"sys3"});

    REQUIRE(store->put_system_uids({}));
    uids.clear();
    REQUIRE(store->load_system_uids(uids));
    CHECK(uids.empty());
}

TEST_CASE("store: read_messages honours from_seq, to_seq and limit, one log only") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    const std::string log = log_name(2, "g");
    // Logs whose names extend, or are a prefix of, the one read; their entries must never leak in.
    const std::string longer = log_name(2, "g\x01"), shorter = log_name(2, "");
    WriteBatch batch;
    for (uint32_t seq : {1u, 2u, 3u, 255u, 256u, 257u, 0xffffffffu}) batch.messages.push_back(append(log, seq));
    for (uint32_t seq : {1u, 2u, 4u}) {
        batch.messages.push_back(append(longer, seq));
        batch.messages.push_back(append(shorter, seq));
    }
    batch.queue_messages.push_back(append(log, 1));  // a queue with the same name is another keyspace
    REQUIRE(store->commit(batch, false));

    CHECK(read_messages(*store, log, 1, 0, 100) == messages(log, {1, 2, 3, 255, 256, 257, 0xffffffff}));
    CHECK(read_messages(*store, log, 0, 0, 100) == messages(log, {1, 2, 3, 255, 256, 257, 0xffffffff}));
    CHECK(read_messages(*store, log, 2, 0, 3) == messages(log, {2, 3, 255}));
    CHECK(read_messages(*store, log, 3, 256, 100) == messages(log, {3, 255}));  // to_seq excluded
    CHECK(read_messages(*store, log, 4, 255, 100).empty());
    CHECK(read_messages(*store, log, 256, 256, 100).empty());
    CHECK(read_messages(*store, log, 300, 200, 100).empty());
    CHECK(read_messages(*store, log, 1, 0, 0).empty());
    CHECK(read_messages(*store, log, 258, 0, 100) == messages(log, {0xffffffff}));
    CHECK(read_messages(*store, longer, 1, 0, 100) == messages(longer, {1, 2, 4}));
    CHECK(read_messages(*store, shorter, 2, 5, 100) == messages(shorter, {2, 4}));

    std::vector<std::string> out{"kept"};  // results are appended
    REQUIRE(store->read_messages(log, 1, 3, {.count = 100}, out));
    CHECK(out == std::vector<std::string>{"kept", message(log, 1), message(log, 2)});

    // Stored bytes come back exactly, NULs and all.
    WriteBatch binary;
    binary.messages.push_back({log, 300, {0, 1, 0xff, 0}});
    REQUIRE(store->commit(binary, false));
    CHECK(read_messages(*store, log, 300, 301, 1) == std::vector<std::string>{std::string("\0\x01\xff\0", 4)});
}

// A message of about 10 KB whose bytes name its seq: big_message(log, 7).
std::string big_message(std::string_view log, uint32_t seq) { return message(log, seq) + std::string(10000, 'x'); }

std::vector<std::string> big_messages(std::string_view log, std::initializer_list<uint32_t> seqs) {
    std::vector<std::string> out;
    for (uint32_t seq : seqs) out.push_back(big_message(log, seq));
    return out;
}

// `count` big messages in a channel log and in a queue, both named `log`.
void store_big_messages(Store& store, const std::string& log, uint32_t count) {
    WriteBatch batch;
    for (uint32_t seq = 1; seq <= count; ++seq) {
        batch.messages.push_back({log, seq, bytes_of(big_message(log, seq))});
        batch.queue_messages.push_back({log, seq, bytes_of(big_message(log, seq))});
    }
    REQUIRE(store.commit(batch, false));
}

TEST_CASE("store: a read stops after the message that passes its byte limit, on the side it keeps") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    const std::string log = log_name(2, "g");
    store_big_messages(*store, log, 100);
    const size_t size = big_message(log, 1).size();  // as seqs 2-9
    auto read = [&](uint32_t from, uint32_t to, ReadLimit limit) {
        std::vector<std::string> out;
        REQUIRE(store->read_messages(log, from, to, limit, out));
        return out;
    };

    // 25,000 bytes: the third message passes them and is the last read.
    CHECK(read(1, 0, {.count = 100, .bytes = 25000}) == big_messages(log, {1, 2, 3}));
    CHECK(read(1, 0, {.count = 100, .bytes = 25000, .newest = true}) == big_messages(log, {98, 99, 100}));
    CHECK(read(10, 51, {.count = 100, .bytes = 25000, .newest = true}) == big_messages(log, {48, 49, 50}));
    CHECK(read(10, 51, {.count = 100, .bytes = 25000}) == big_messages(log, {10, 11, 12}));
    // Exactly reached is not passed; one message at least, whatever the limit.
    CHECK(read(1, 0, {.count = 100, .bytes = 2 * size}) == big_messages(log, {1, 2, 3}));
    CHECK(read(1, 0, {.count = 100, .bytes = 2 * size + 1}) == big_messages(log, {1, 2, 3}));
    CHECK(read(1, 0, {.count = 100, .bytes = 0}) == big_messages(log, {1}));
    CHECK(read(1, 0, {.count = 100, .bytes = 0, .newest = true}) == big_messages(log, {100}));
    // The count still holds; no limit in bytes reads what the count allows.
    CHECK(read(1, 0, {.count = 2, .newest = true}) == big_messages(log, {99, 100}));
    CHECK(read(1, 0, {.count = 100, .newest = true}).size() == 100);
    CHECK(read(1, 0, {.count = 0, .bytes = 0}).empty());
    CHECK(read(101, 0, {.count = 100, .bytes = 0, .newest = true}).empty());
    // A read the bytes stopped is one whose messages hold more than them.
    const ReadLimit limit{.count = 100, .bytes = 25000};
    size_t bytes = 0;
    for (const std::string& m : read(1, 0, limit)) bytes += m.size();
    CHECK(limit.spent(bytes));

    // Results are appended, ascending, in both directions.
    std::vector<std::string> out{"kept"};
    REQUIRE(store->read_messages(log, 1, 0, {.count = 100, .bytes = 1, .newest = true}, out));
    REQUIRE(store->read_messages(log, 1, 0, {.count = 2, .newest = true}, out));
    CHECK(out == std::vector<std::string>{"kept", big_message(log, 100), big_message(log, 99), big_message(log, 100)});

    // The queue reads the same way.
    std::vector<std::string> queued;
    REQUIRE(store->read_queue(log, 5, {.count = 100, .bytes = 25000}, queued));
    CHECK(queued == big_messages(log, {6, 7, 8}));
}

TEST_CASE("store: read_queue returns seqs after after_seq, per user") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    WriteBatch batch;
    for (uint32_t seq = 1; seq <= 5; ++seq) batch.queue_messages.push_back(append("alice", seq));
    batch.queue_messages.push_back(append("alicea", 1));
    batch.queue_messages.push_back(append("bob", 7));
    batch.queue_seqs = {{"alice", 5}, {"alicea", 1}, {"bob", 7}};
    batch.cursors = {{"alice", 2}};
    REQUIRE(store->commit(batch, false));

    CHECK(read_queue(*store, "alice", 0, 100) == messages("alice", {1, 2, 3, 4, 5}));
    CHECK(read_queue(*store, "alice", 2, 100) == messages("alice", {3, 4, 5}));
    CHECK(read_queue(*store, "alice", 2, 2) == messages("alice", {3, 4}));
    CHECK(read_queue(*store, "alice", 5, 100).empty());
    CHECK(read_queue(*store, "alice", 0xffffffff, 100).empty());
    CHECK(read_queue(*store, "bob", 0, 100) == messages("bob", {7}));
    CHECK(read_queue(*store, "carol", 0, 100).empty());

    uint32_t seq = 0;
    REQUIRE(store->queue_seq("alice", seq));
    CHECK(seq == 5);
    REQUIRE(store->queue_seq("alicea", seq));
    CHECK(seq == 1);
    REQUIRE(store->cursor("alice", seq));
    CHECK(seq == 2);
    REQUIRE(store->cursor("bob", seq));
    CHECK(seq == 0);
}

TEST_CASE("store: counters, ids and messages survive close and reopen (sync=true)") {
    auto engine = each_engine();
    INFO(engine->name());
    const std::string log = log_name(2, "g");
    {
        auto store = engine->open();
        WriteBatch batch;
        batch.messages = {append(log, 1), append(log, 2)};
        batch.queue_messages = {append("alice", 1)};
        batch.channel_seqs = {{log, 2}};
        batch.queue_seqs = {{"alice", 1}};
        batch.cursors = {{"alice", 1}};
        batch.dedupe = {{1000, "alice", "c1", 42, 2}};
        batch.max_message_id = 42;
        REQUIRE(store->commit(batch, true));
    }
    {
        auto store = engine->open();
        CHECK(channel_seq(*store, log) == 2);
        uint32_t seq = 0;
        REQUIRE(store->queue_seq("alice", seq));
        CHECK(seq == 1);
        REQUIRE(store->cursor("alice", seq));
        CHECK(seq == 1);
        int64_t id = 0;
        REQUIRE(store->max_message_id(id));
        CHECK(id == 42);
        CHECK(read_messages(*store, log, 1, 0, 100) == messages(log, {1, 2}));
        CHECK(read_queue(*store, "alice", 0, 100) == messages("alice", {1}));
        int dedupe = 0;
        REQUIRE(store->load_dedupe(0, [&](DedupeRecord&&) { ++dedupe; }));
        CHECK(dedupe == 1);

        // The committer continues from what it reads back; a batch without
        // max_message_id (0) leaves the stored one alone.
        WriteBatch next;
        next.messages = {append(log, 3)};
        next.channel_seqs = {{log, 3, 2}};
        REQUIRE(store->commit(next, false));
    }
    auto store = engine->open();
    CHECK(channel_seq(*store, log) == 3);
    int64_t id = 0;
    REQUIRE(store->max_message_id(id));
    CHECK(id == 42);
    CHECK(read_messages(*store, log, 1, 0, 100) == messages(log, {1, 2, 3}));
}

TEST_CASE("store: delete_channel drops the record and its log but keeps the seq counter") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    const std::string log = log_name(2, "g"), neighbour = log_name(2, "g2");
    REQUIRE(store->put_channel({"g", 2, "", {"alice"}, {}, {}}));
    WriteBatch batch;
    for (uint32_t seq = 1; seq <= 10; ++seq) batch.messages.push_back(append(log, seq));
    batch.messages.push_back(append(neighbour, 1));
    batch.queue_messages.push_back(append(log, 1));
    batch.channel_seqs = {{log, 10}, {neighbour, 1}};
    REQUIRE(store->commit(batch, false));

    REQUIRE(store->delete_channel(2, "g"));
    CHECK(read_messages(*store, log, 0, 0, 100).empty());
    CHECK(channel_seq(*store, log) == 10);
    CHECK(read_messages(*store, neighbour, 0, 0, 100) == messages(neighbour, {1}));
    CHECK(read_queue(*store, log, 0, 100) == messages(log, {1}));
    int channels = 0;
    REQUIRE(store->load_channels([&](ChannelRecord&&) { ++channels; }));
    CHECK(channels == 0);

    // Re-created, the channel continues after the old seqs, and only the new messages are there.
    REQUIRE(store->put_channel({"g", 2, "", {}, {}, {}}));
    WriteBatch again;
    again.messages = {append(log, 11)};
    again.channel_seqs = {{log, 11, 10}};
    REQUIRE(store->commit(again, false));
    CHECK(read_messages(*store, log, 0, 0, 100) == messages(log, {11}));
}

TEST_CASE("store: the dedupe window loads since a time, oldest first,") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    WriteBatch batch;
    batch.dedupe = {{3000, "bob", "m3", 30, 3},
                    {1000, "alice", "m1", 10, 1},
                    {2000, std::string("a\0b", 3), std::string("\0\xff", 2), 20, 2},
                    {2000, "a", "bm", 21, 5},
                    {-5, "clock", "before-epoch", 1, 1}};
    REQUIRE(store->commit(batch, false));

    auto load = [&](int64_t since) {
        std::vector<DedupeRecord> out;
        REQUIRE(store->load_dedupe(since, [&](DedupeRecord&& r) { out.push_back(std::move(r)); }));
        return out;
    };
    auto all = load(std::numeric_limits<int64_t>::min());
    REQUIRE(all.size() == 5);
    CHECK(all[0].time_ms == -5);
    CHECK(all[1].time_ms == 1000);
    CHECK(all[4].time_ms == 3000);
    CHECK(all[4].uid == "bob");
    CHECK(all[4].client_msg_no == "m3");
    CHECK(all[4].message_id == 30);
    CHECK(all[4].message_seq == 3);
    // Same time: both kept, uid and client_msg_no split correctly despite the NULs.
    std::set<std::pair<std::string, std::string>> at_2000{{all[2].uid, all[2].client_msg_no},
                                                          {all[3].uid, all[3].client_msg_no}};
    CHECK(at_2000 == std::set<std::pair<std::string, std::string>>{{std::string("a\0b", 3), std::string("\0\xff", 2)},
                                                                   {"a", "bm"}});

    CHECK(load(2000).size() == 3);
    CHECK(load(2001).size() == 1);
    CHECK(load(3001).empty());
}

TEST_CASE("store: find_dedupe finds one SEND in the window; with no replicas asked for there is nothing to await") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    WriteBatch batch;
    batch.dedupe = {{1000, "alice", "m1", 10, 1}, {2000, std::string("a\0b", 3), std::string("\0\xff", 2), 20, 2}};
    REQUIRE(store->commit(batch, false));
    DedupeRecord found_record;
    bool found = false;
    REQUIRE(store->find_dedupe(std::string("a\0b", 3), std::string("\0\xff", 2), 0, found_record, found));
    CHECK(found);
    CHECK(found_record.time_ms == 2000);
    CHECK(found_record.uid == std::string("a\0b", 3));
    CHECK(found_record.client_msg_no == std::string("\0\xff", 2));
    CHECK(found_record.message_id == 20);
    CHECK(found_record.message_seq == 2);
    REQUIRE(store->find_dedupe("alice", "m1", 1001, found_record, found));
    CHECK_FALSE(found);  // older than since_ms
    REQUIRE(store->find_dedupe("alice", "m2", 0, found_record, found));
    CHECK_FALSE(found);
    REQUIRE(store->find_dedupe("bob", "m1", 0, found_record, found));
    CHECK_FALSE(found);
    CHECK(store->confirm_dedupe({found_record}).ok);  // no replicas asked for: nothing to wait for
}

TEST_CASE("store: the embedded dedupe window expires before a time") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
    WriteBatch batch;
    batch.dedupe = {{3000, "bob", "m3", 30, 3}, {1000, "alice", "m1", 10, 1}, {2000, "a", "bm", 21, 5},
                    {2000, "b", "bm", 22, 6}, {-5, "clock", "before-epoch", 1, 1}};
    REQUIRE(store->commit(batch, false));
    auto load = [&](int64_t since) {
        std::vector<DedupeRecord> out;
        REQUIRE(store->load_dedupe(since, [&](DedupeRecord&& r) { out.push_back(std::move(r)); }));
        return out;
    };

    REQUIRE(store->expire_dedupe(2000));  // strictly before
    auto left = load(std::numeric_limits<int64_t>::min());
    REQUIRE(left.size() == 3);
    CHECK(left[0].time_ms == 2000);
    REQUIRE(store->expire_dedupe(std::numeric_limits<int64_t>::max()));
    CHECK(load(std::numeric_limits<int64_t>::min()).empty());
}

TEST_CASE("store: a batch is seen whole by concurrent readers") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    const std::string log = log_name(2, "g");
    constexpr uint32_t batches = 2000;
    std::atomic<bool> done{false};
    std::atomic<int> torn{0}, reads{0};
    std::thread reader([&] {
        while (!done.load()) {
            // The counter is written in the same batch as its message and the
            // id: whatever counter a reader sees, those are there as well.
            uint32_t seq = 0;
            int64_t id = 0;
            std::vector<std::string> out;
            if (!store->channel_seq(log, seq) || !store->max_message_id(id) ||
                !store->read_messages(log, seq, seq + 1, {.count = 1}, out))
                torn.fetch_add(1);
            if (seq > 0 && (out.size() != 1 || id < int64_t(seq))) torn.fetch_add(1);
            reads.fetch_add(1);
        }
    });
    for (uint32_t seq = 1; seq <= batches; ++seq) {
        WriteBatch batch;
        batch.max_message_id = seq;
        batch.channel_seqs = {{log, seq, seq - 1}};
        batch.messages = {append(log, seq)};
        REQUIRE(store->commit(batch, false));
    }
    done = true;
    reader.join();
    CHECK(torn.load() == 0);
    CHECK(reads.load() > 0);
    CHECK(read_messages(*store, log, 0, 0, batches + 1).size() == batches);
}

TEST_CASE("store: another format version is refused and left untouched") {
    TempDir tmp;
    open_ok(tmp.data());
    const fs::path marker = fs::path(tmp.data()) / "LIMAOIM_FORMAT";

    write_file(marker, "limaoim-store 2\n");
    std::string error = open_error(tmp.data());
    CHECK(error.find("has store format 2, this limaoim reads format 1") != std::string::npos);
    CHECK(error.find("refusing to open it (no silent rewrite)") != std::string::npos);
    CHECK(error.find(tmp.data()) != std::string::npos);
    CHECK(read_file(marker) == "limaoim-store 2\n");

    write_file(marker, "something else\n");
    CHECK(open_error(tmp.data()).find("unreadable LIMAOIM_FORMAT") != std::string::npos);

    // The copy inside the data is checked too: a marker cannot vouch for another format.
    write_file(marker, "limaoim-store 1\n");
    put_raw(tmp.data(), "mformat", "2");
    error = open_error(tmp.data());
    CHECK(error.find("holds store format 2") != std::string::npos);
}

TEST_CASE("store: an unmarked non-empty directory is refused") {
    TempDir tmp;
    {
        // A RocksDB database that limaoim did not write.
        rocksdb::Options options;
        options.create_if_missing = true;
        rocksdb::DB* raw = nullptr;
        REQUIRE(rocksdb::DB::Open(options, tmp.data(), &raw).ok());
        delete raw;
    }
    std::string error = open_error(tmp.data());
    CHECK(error.find("has no LIMAOIM_FORMAT marker: refusing to open it") != std::string::npos);
    CHECK(!fs::exists(fs::path(tmp.data()) / "LIMAOIM_FORMAT"));

    const fs::path other = tmp.root / "other";
    fs::create_directory(other);
    write_file(other / "notes.txt", "hello");
    CHECK(open_error(other.string()).find("has no LIMAOIM_FORMAT marker") != std::string::npos);
    CHECK(!fs::exists(other / "LIMAOIM_FORMAT"));
}

TEST_CASE("store: a regular file or an open store is refused with a clear error") {
    TempDir tmp;
    const fs::path file = tmp.root / "file";
    write_file(file, "x");
    CHECK(open_error(file.string()).find("exists and is not a directory") != std::string::npos);

    auto store = open_ok(tmp.data());
    std::string error = open_error(tmp.data());  // RocksDB's LOCK: one process per directory
    CHECK(error.find("cannot open store in " + tmp.data()) != std::string::npos);
}

TEST_CASE("store: a corrupt channel record is reported, not read past its end") {
    TempDir tmp;
    {
        auto store = open_ok(tmp.data());
        REQUIRE(store->put_channel({"good", 2, "", {"alice"}, {}, {}}));
    }
    // 'c', type 2, id "bad": a parent claiming 127 bytes where there are 2.
    put_raw(tmp.data(), "c\x02" "bad", "\x7f" "ab");
    auto store = open_ok(tmp.data());
    Status status = store->load_channels([](ChannelRecord&&) {});
    CHECK(!status.ok);
    CHECK(status.error.find("corrupt channel record") != std::string::npos);
    CHECK(status.error.find("bad") != std::string::npos);
}

TEST_CASE("the msg.notify queue: ascending by id, read after an id, deleted by range, counted, kept over a reopen") {
    auto engine = each_engine();
    INFO(engine->name());
    {
        auto store = engine->open();
        WriteBatch batch;
        for (int64_t id : {int64_t(7), int64_t(300), int64_t(1) << 40, int64_t(42)})
            batch.notify.push_back({id, {uint8_t(id & 0xff), 1, 2}});
        REQUIRE(store->commit(batch, true));
    }
    auto store = engine->open();
    uint64_t count = 0;
    REQUIRE(store->count_notify(count));
    CHECK(count == 4);
    std::vector<NotifyEvent> events;
    REQUIRE(store->read_notify(0, 3, events));
    REQUIRE(events.size() == 3);
    CHECK(events[0].id == 7);
    CHECK(events[1].id == 42);
    CHECK(events[2].id == 300);
    CHECK(events[1].bytes == std::vector<uint8_t>{42, 1, 2});
    events.clear();
    REQUIRE(store->read_notify(42, 10, events));
    REQUIRE(events.size() == 2);
    CHECK(events[1].id == int64_t(1) << 40);
    REQUIRE(store->delete_notify(7, 300));
    events.clear();
    REQUIRE(store->read_notify(0, 10, events));
    REQUIRE(events.size() == 1);
    CHECK(events[0].id == int64_t(1) << 40);
    REQUIRE(store->count_notify(count));
    CHECK(count == 1);
}

TEST_CASE("conversations and their seqs round-trip, a user's list alone too; an empty list deletes the user's") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    ConversationRecord c{"bob", 1, 3, 1700000000, 42, "client-no", int64_t(1) << 50, 1700000000123};
    ConversationRecord g{std::string("g\0x", 3), 2, 0, -5, 0, "", 0, 1};
    WriteBatch batch;
    batch.conversations.push_back({"alice", {c, g}});
    batch.conversations.push_back({"carol", {g}});
    batch.conversation_seqs.push_back({log_name(2, "g"), 9});
    batch.channel_seqs.push_back({log_name(2, "g"), 11});
    REQUIRE(store->commit(batch, false));

    std::map<std::string, std::vector<ConversationRecord>> loaded;
    REQUIRE(store->load_conversations([&](UserConversations&& u) { loaded[u.uid] = u.conversations; }));
    CHECK(loaded.size() == 2);
    CHECK(loaded["alice"] == std::vector<ConversationRecord>{c, g});
    std::vector<std::vector<ConversationRecord>> lists{{c}};
    const std::vector<std::string> asked{"alice", "nobody", "carol"};
    REQUIRE(store->get_conversations(asked, lists));
    CHECK(lists == std::vector<std::vector<ConversationRecord>>{{c, g}, {}, {g}});
    std::map<std::string, uint32_t> seqs, channel_seqs;
    REQUIRE(store->load_conversation_seqs([&](std::string_view log, uint32_t seq) { seqs[std::string(log)] = seq; }));
    REQUIRE(store->load_channel_seqs([&](std::string_view log, uint32_t seq) { channel_seqs[std::string(log)] = seq; }));
    CHECK(seqs == std::map<std::string, uint32_t>{{log_name(2, "g"), 9}});
    CHECK(channel_seqs == std::map<std::string, uint32_t>{{log_name(2, "g"), 11}});

    WriteBatch removal;
    removal.conversations.push_back({"carol", {}});
    REQUIRE(store->commit(removal, false));
    loaded.clear();
    REQUIRE(store->load_conversations([&](UserConversations&& u) { loaded[u.uid] = u.conversations; }));
    CHECK(loaded.count("carol") == 0);
    REQUIRE(store->get_conversations(std::vector<std::string>{"carol"}, lists));
    CHECK(lists == std::vector<std::vector<ConversationRecord>>{{}});
}

TEST_CASE("writable: true on a healthy store, false with a reason when its directory cannot take a file") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
    std::string why;
    CHECK(store->writable(why));
    // Root ignores permission bits; a directory in the way of the probe file is what fails for anyone.
    fs::create_directory(fs::path(tmp.data()) / ".health-probe");
    fs::create_directory(fs::path(tmp.data()) / ".health-probe" / "x");
    CHECK_FALSE(store->writable(why));
    CHECK(why.find("cannot write in") != std::string::npos);
}

TEST_CASE("store: get_channel reads one record") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    const ChannelRecord group{std::string("g\0\xff", 3), 2, "p", {"alice", "bob"}, {"alice"}, {"mallory"}};
    REQUIRE(store->put_channel(group));
    ChannelRecord got;
    bool found = false;
    REQUIRE(store->get_channel(2, group.id, got, found));
    REQUIRE(found);
    CHECK(got.id == group.id);
    CHECK(got.type == 2);
    CHECK(got.parent == "p");
    CHECK(got.subscribers == group.subscribers);
    CHECK(got.allowlist == group.allowlist);
    CHECK(got.denylist == group.denylist);
    REQUIRE(store->get_channel(3, group.id, got, found));
    CHECK_FALSE(found);
}

TEST_CASE("store: notify ids beyond 2^53 keep their order and exact values") {
    auto engine = each_engine();
    INFO(engine->name());
    auto store = engine->open();
    const int64_t big = int64_t(1) << 53;
    WriteBatch batch;
    for (int64_t id : {big + 2, big + 1, std::numeric_limits<int64_t>::max(), big + 256, int64_t(1)})
        batch.notify.push_back({id, {uint8_t(id & 0xff)}});
    REQUIRE(store->commit(batch, false));
    std::vector<NotifyEvent> events;
    REQUIRE(store->read_notify(big, 10, events));
    REQUIRE(events.size() == 4);
    CHECK(events[0].id == big + 1);
    CHECK(events[1].id == big + 2);
    CHECK(events[2].id == big + 256);
    CHECK(events[3].id == std::numeric_limits<int64_t>::max());
    CHECK(events[0].bytes == std::vector<uint8_t>{1});
    events.clear();
    REQUIRE(store->read_notify(big + 1, 1, events));
    REQUIRE(events.size() == 1);
    CHECK(events[0].id == big + 2);
    REQUIRE(store->delete_notify(big + 2, std::numeric_limits<int64_t>::max()));
    events.clear();
    REQUIRE(store->read_notify(0, 10, events));
    REQUIRE(events.size() == 2);
    CHECK(events[0].id == 1);
    CHECK(events[1].id == big + 1);
}

// ---- the Redis engine only ----

namespace {

struct RedisFixture {
    RedisServer server;
    RedisOptions options;
    RedisFixture() {
        INFO(server.log());
        REQUIRE_MESSAGE(server.started(), "redis-server did not start (apt-get install redis-server)");
        options.url = server.url();
    }
};

// A TCP proxy in front of a redis-server that can lose one reply: armed, it
// passes on what the client sends, but at the first bytes of the server's
// answer it closes both sides instead: a connection that died after the
// command reached the server.
class ReplyLosingProxy {
public:
    explicit ReplyLosingProxy(uint16_t target) : target_(target) {
        listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa = loopback(0);
        socklen_t len = sizeof(sa);
        REQUIRE(bind(listener_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
        REQUIRE(listen(listener_, 16) == 0);
        getsockname(listener_, reinterpret_cast<sockaddr*>(&sa), &len);
        port_ = ntohs(sa.sin_port);
        REQUIRE(pipe2(wake_, O_CLOEXEC) == 0);
        thread_ = std::thread([this] { run(); });
    }
    ~ReplyLosingProxy() {
        stop_ = true;
        (void)!write(wake_[1], "x", 1);
        thread_.join();
        for (int fd : {listener_, wake_[0], wake_[1]}) ::close(fd);
    }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

    std::atomic<bool> lose_next_reply{false};
    std::atomic<int> replies_lost{0};

private:
    static sockaddr_in loopback(uint16_t port) {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons(port);
        return sa;
    }
    static bool relay(int from, int to) {
        char buffer[65536];
        const ssize_t n = read(from, buffer, sizeof(buffer));
        for (ssize_t done = 0; n > 0 && done < n;) {
            const ssize_t w = write(to, buffer + done, size_t(n - done));
            if (w <= 0) return false;
            done += w;
        }
        return n > 0;
    }
    void run() {
        struct Pair {
            int client, server;
        };
        std::vector<Pair> pairs;
        std::vector<pollfd> fds;
        while (!stop_) {
            fds = {{listener_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
            for (const Pair& p : pairs) {
                fds.push_back({p.client, POLLIN, 0});
                fds.push_back({p.server, POLLIN, 0});
            }
            if (poll(fds.data(), fds.size(), 1000) <= 0) continue;
            for (size_t i = 0; i < pairs.size(); ++i) {
                Pair& p = pairs[i];
                bool open = !fds[2 + 2 * i].revents || relay(p.client, p.server);
                if (open && fds[3 + 2 * i].revents) {
                    if (lose_next_reply.exchange(false)) {
                        ++replies_lost;
                        open = false;
                    } else {
                        open = relay(p.server, p.client);
                    }
                }
                if (!open) {
                    ::close(p.client);
                    ::close(p.server);
                    p.client = -1;
                }
            }
            std::erase_if(pairs, [](const Pair& p) { return p.client < 0; });
            if (fds[0].revents & POLLIN) {
                const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
                const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                const sockaddr_in sa = loopback(target_);
                if (client >= 0 && connect(server, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0) {
                    pairs.push_back({client, server});
                } else {
                    if (client >= 0) ::close(client);
                    ::close(server);
                }
            }
        }
        for (const Pair& p : pairs) {
            ::close(p.client);
            ::close(p.server);
        }
    }

    uint16_t target_;
    uint16_t port_ = 0;
    int listener_ = -1;
    int wake_[2] = {-1, -1};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// A batch that touches every kind of key, for checking a conflict wrote none of it.
WriteBatch everything(const std::string& log, uint32_t seq, uint32_t previous) {
    WriteBatch batch;
    batch.messages = {append(log, seq)};
    batch.channel_seqs = {{log, seq, previous}};
    batch.queue_messages = {append("alice", seq)};
    batch.queue_seqs = {{"alice", seq, previous}};
    batch.cursors = {{"alice", seq}};
    batch.dedupe = {{1000, "alice", "c" + std::to_string(seq), 100 + seq, seq}};
    batch.notify = {{int64_t(100 + seq), {1}}};
    batch.max_message_id = 100 + seq;
    batch.conversations = {{"alice", {{"g", 2, 1, 1, seq, "c", 100 + seq, 1}}}};
    batch.conversation_seqs = {{log, seq}};
    return batch;
}

}  // namespace

TEST_CASE("redis store: engine, shared, and bad options") {
    RedisFixture redis;
    auto store = open_redis_ok(redis.options);
    CHECK(std::string(store->engine()) == "redis");
    CHECK(store->shared());
    std::string why;
    CHECK(store->writable(why));

    std::string error;
    RedisOptions bad = redis.options;
    bad.url = "redis://127.0.0.1";
    CHECK(open_redis(bad, error) == nullptr);
    CHECK(error.starts_with("redis: bad URL: "));
    bad.url = "redis://127.0.0.1:" + std::to_string(limaoim::testing::free_port());
    CHECK(open_redis(bad, error) == nullptr);
    CHECK(error.starts_with("redis: cannot open "));
}

TEST_CASE("redis store: a stale counter or an existing dedupe key is a conflict that writes nothing") {
    RedisFixture redis;
    auto store = open_redis_ok(redis.options);
    const std::string log = log_name(2, "g");
    REQUIRE(store->commit(everything(log, 1, 0), false));

    auto unchanged = [&] {
        CHECK(channel_seq(*store, log) == 1);
        CHECK(read_messages(*store, log, 0, 0, 10) == messages(log, {1}));
        CHECK(read_queue(*store, "alice", 0, 10) == messages("alice", {1}));
        uint32_t seq = 0;
        REQUIRE(store->queue_seq("alice", seq));
        CHECK(seq == 1);
        REQUIRE(store->cursor("alice", seq));
        CHECK(seq == 1);
        int64_t id = 0;
        REQUIRE(store->max_message_id(id));
        CHECK(id == 101);
        uint64_t count = 0;
        REQUIRE(store->count_notify(count));
        CHECK(count == 1);
        DedupeRecord record;
        bool found = true;
        REQUIRE(store->find_dedupe("alice", "c2", 0, record, found));
        CHECK_FALSE(found);
        std::map<std::string, uint32_t> seqs;
        REQUIRE(store->load_conversation_seqs([&](std::string_view l, uint32_t s) { seqs[std::string(l)] = s; }));
        CHECK(seqs == std::map<std::string, uint32_t>{{log, 1}});
    };

    // Another node handed out seq 1 already: this batch still expects 0.
    Status status = store->commit(everything(log, 2, 0), false);
    CHECK_FALSE(status.ok);
    CHECK(status.conflict);
    CHECK(status.error.starts_with("redis: commit conflict: "));
    CHECK(status.error.find("holds 1, this batch expected 0") != std::string::npos);
    unchanged();

    // A queue counter alone moved.
    WriteBatch queue_stale = everything(log, 2, 1);
    queue_stale.queue_seqs = {{"alice", 2, 0}};
    status = store->commit(queue_stale, false);
    CHECK(status.conflict);
    CHECK(status.error.find("lim:qseq:{alice}") != std::string::npos);
    unchanged();

    // The SEND was stored by another node: its dedupe key exists.
    WriteBatch resent = everything(log, 2, 1);
    resent.dedupe = {{1000, "alice", "c1", 7, 7}};
    status = store->commit(resent, false);
    CHECK(status.conflict);
    CHECK(status.error.find("exists") != std::string::npos);
    unchanged();

    // With the counters it holds, the batch goes through.
    REQUIRE(store->commit(everything(log, 2, 1), false));
    CHECK(read_messages(*store, log, 0, 0, 10) == messages(log, {1, 2}));
    Status failure = Status::failure("x");
    CHECK_FALSE(failure.conflict);
}

TEST_CASE("redis store: cursors, conversation seqs and the max message id only grow") {
    RedisFixture redis;
    auto store = open_redis_ok(redis.options);
    const std::string log = log_name(2, "g");
    const int64_t big = (int64_t(1) << 60) + 1;
    WriteBatch first;
    first.cursors = {{"alice", 5}};
    first.conversation_seqs = {{log, 9}};
    first.max_message_id = big;
    REQUIRE(store->commit(first, false));
    WriteBatch older;
    older.cursors = {{"alice", 3}};
    older.conversation_seqs = {{log, 10000}};  // more digits, larger
    older.max_message_id = big - 1;
    REQUIRE(store->commit(older, false));
    uint32_t seq = 0;
    REQUIRE(store->cursor("alice", seq));
    CHECK(seq == 5);
    std::map<std::string, uint32_t> seqs;
    REQUIRE(store->load_conversation_seqs([&](std::string_view l, uint32_t s) { seqs[std::string(l)] = s; }));
    CHECK(seqs[log] == 10000);
    int64_t id = 0;
    REQUIRE(store->max_message_id(id));
    CHECK(id == big);
    WriteBatch newer;
    newer.max_message_id = big + 1;
    REQUIRE(store->commit(newer, false));
    REQUIRE(store->max_message_id(id));
    CHECK(id == big + 1);
}

TEST_CASE("redis store: dedupe records expire after the window") {
    RedisFixture redis;
    redis.options.dedupe_window_ms = 300;
    auto store = open_redis_ok(redis.options);
    WriteBatch batch;
    batch.dedupe = {{1000, "alice", "m1", 10, 1}};
    REQUIRE(store->commit(batch, false));
    DedupeRecord record;
    bool found = false;
    REQUIRE(store->find_dedupe("alice", "m1", 0, record, found));
    CHECK(found);
    CHECK(store->expire_dedupe(std::numeric_limits<int64_t>::max()));  // a no-op: keys expire by themselves
    REQUIRE(store->find_dedupe("alice", "m1", 0, record, found));
    CHECK(found);
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    REQUIRE(store->find_dedupe("alice", "m1", 0, record, found));
    CHECK_FALSE(found);
    int left = 0;
    REQUIRE(store->load_dedupe(std::numeric_limits<int64_t>::min(), [&](DedupeRecord&&) { ++left; }));
    CHECK(left == 0);
}

TEST_CASE("redis store: log_max keeps the newest entries of each log written") {
    RedisFixture redis;
    redis.options.log_max = 3;
    auto store = open_redis_ok(redis.options);
    const std::string log = log_name(2, "g"), other = log_name(2, "h");
    WriteBatch batch;
    for (uint32_t seq = 1; seq <= 5; ++seq) batch.messages.push_back(append(log, seq));
    batch.messages.push_back(append(other, 1));
    for (uint32_t seq = 1; seq <= 5; ++seq) batch.queue_messages.push_back(append("alice", seq));
    REQUIRE(store->commit(batch, false));
    CHECK(read_messages(*store, log, 0, 0, 10) == messages(log, {3, 4, 5}));
    CHECK(read_messages(*store, other, 0, 0, 10) == messages(other, {1}));
    CHECK(read_queue(*store, "alice", 0, 10).size() == 5);  // queues are not capped

    WriteBatch more;
    more.messages = {append(log, 6)};
    REQUIRE(store->commit(more, false));
    CHECK(read_messages(*store, log, 0, 0, 10) == messages(log, {4, 5, 6}));
}

TEST_CASE("redis store: two stores on one Redis see each other's writes and conflict") {
    RedisFixture redis;
    auto node1 = open_redis_ok(redis.options);
    RedisOptions second = redis.options;
    second.node_id = 2;
    auto node2 = open_redis_ok(second);
    const std::string log = log_name(2, "g");

    WriteBatch from1;
    from1.messages = {append(log, 1)};
    from1.channel_seqs = {{log, 1, 0}};
    from1.notify = {{11, {1}}};
    from1.max_message_id = 11;
    REQUIRE(node1->commit(from1, false));
    CHECK(channel_seq(*node2, log) == 1);
    CHECK(read_messages(*node2, log, 0, 0, 10) == messages(log, {1}));
    REQUIRE(node2->put_channel({"g", 2, "", {"alice"}, {}, {}}));
    ChannelRecord got;
    bool found = false;
    REQUIRE(node1->get_channel(2, "g", got, found));
    CHECK(found);

    // Node 2's counter is stale: it conflicts, reloads, redoes.
    WriteBatch from2;
    from2.messages = {append(log, 1)};
    from2.channel_seqs = {{log, 1, 0}};
    CHECK(node2->commit(from2, false).conflict);
    from2.messages = {append(log, 2)};
    from2.channel_seqs = {{log, 2, channel_seq(*node2, log)}};
    REQUIRE(node2->commit(from2, false));
    CHECK(read_messages(*node1, log, 0, 0, 10) == messages(log, {1, 2}));

    // The msg.notify queue and the max id are each node's own.
    uint64_t count = 9;
    REQUIRE(node2->count_notify(count));
    CHECK(count == 0);
    int64_t id = 9;
    REQUIRE(node2->max_message_id(id));
    CHECK(id == 0);
    REQUIRE(node1->count_notify(count));
    CHECK(count == 1);
}

TEST_CASE("redis store: Redis down fails fast with redis: errors; back up, the same store works again") {
    RedisFixture redis;
    redis.options.timeout_ms = 500;
    auto store = open_redis_ok(redis.options);
    const std::string log = log_name(2, "g");
    WriteBatch batch;
    batch.messages = {append(log, 1)};
    batch.channel_seqs = {{log, 1, 0}};
    REQUIRE(store->commit(batch, true));

    REQUIRE(redis.server.stop(SIGKILL));  // appendfsync always: the commit is on disk
    for (int attempt = 0; attempt < 3; ++attempt) {
        const auto start = std::chrono::steady_clock::now();
        uint32_t seq = 0;
        Status status = store->channel_seq(log, seq);
        CHECK_FALSE(status.ok);
        CHECK_FALSE(status.conflict);
        CHECK(status.error.starts_with("redis: channel_seq: "));
        status = store->commit(batch, true);
        CHECK(status.error.starts_with("redis: commit: "));
        std::string why;
        CHECK_FALSE(store->writable(why));
        CHECK(why.starts_with("redis: "));
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(redis.options.timeout_ms));
    }

    INFO(redis.server.log());
    REQUIRE(redis.server.start());
    std::string why;
    bool back = false;
    for (int i = 0; i < 100 && !back; ++i) {
        back = store->writable(why);
        if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(back);
    CHECK(channel_seq(*store, log) == 1);
    CHECK(read_messages(*store, log, 0, 0, 10) == messages(log, {1}));
    WriteBatch next;  // the script cache was lost with the restart: EVAL brings it back
    next.messages = {append(log, 2)};
    next.channel_seqs = {{log, 2, 1}};
    Status status;
    for (int i = 0; i < 100 && !(status = store->commit(next, false)); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(status.ok);
    CHECK(read_messages(*store, log, 0, 0, 10) == messages(log, {1, 2}));
}

TEST_CASE("redis store: WAIT for replicas: too few acks are reported as written but unreplicated") {
    RedisFixture redis;
    redis.options.wait_replicas = 1;
    redis.options.wait_timeout_ms = 100;
    auto store = open_redis_ok(redis.options);
    const std::string log = log_name(2, "g");
    WriteBatch batch;
    batch.messages = {append(log, 1)};
    batch.channel_seqs = {{log, 1, 0}};
    batch.dedupe = {{1000, "alice", "c1", 101, 1}};
    Status status = store->commit(batch, true);
    CHECK(status.ok);
    CHECK(status.unreplicated);
    CHECK(status.error == "redis: commit: written but acknowledged by only 0 of 1 replicas");
    CHECK(read_messages(*store, log, 0, 0, 10) == messages(log, {1}));
    batch.dedupe.clear();

    // A resend's lookup finds the record on the master alone: a failover
    // could lose it, and the wait for the replicas says so.
    DedupeRecord record;
    bool found = false;
    REQUIRE(store->find_dedupe("alice", "c1", 0, record, found));
    CHECK(found);
    status = store->confirm_dedupe({record});
    CHECK_FALSE(status.ok);
    CHECK(status.error == "redis: confirm_dedupe: on 0 of 1 replicas");
    // A record that is not (or no longer) on the master this connection reaches.
    DedupeRecord elsewhere = record;
    elsewhere.client_msg_no = "c2";
    status = store->confirm_dedupe({record, elsewhere});
    CHECK(status.error == "redis: confirm_dedupe: the record of alice's resend is no longer on the master");
    DedupeRecord moved = record;
    moved.message_id = 999;
    CHECK(store->confirm_dedupe({moved}).error ==
          "redis: confirm_dedupe: the record of alice's resend is no longer on the master");

    // The replica's first sync at once, not after Redis 7's default 5 s wait
    // for more replicas (this test waited 5 s for it and failed under ASan).
    redis.server.cli("CONFIG SET repl-diskless-sync-delay 0");
    RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(redis.server.port())});
    REQUIRE(replica.started());
    bool online = false;
    for (int i = 0; i < 100 && !online; ++i) {
        online = redis.server.cli("INFO replication").find("state=online") != std::string::npos;
        if (!online) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    REQUIRE(online);
    redis.options.wait_timeout_ms = 2000;
    auto waiting = open_redis_ok(redis.options);
    batch.messages = {append(log, 2)};
    batch.channel_seqs = {{log, 2, 1}};
    status = waiting->commit(batch, true);
    INFO(status.error);
    CHECK(status.ok);
    CHECK_FALSE(status.unreplicated);
    CHECK(replica.cli("ZCARD 'lim:log:{\x02g}'") == "2\n");
    CHECK(waiting->confirm_dedupe({record}).ok);
    CHECK(replica.cli("EXISTS 'lim:dd:5:{alice}:c1'") == "1\n");
}

TEST_CASE("redis store: a Sentinel URL finds the master; a replica URL is refused") {
    RedisFixture redis;
    RedisSentinel sentinel(redis.server.port());
    INFO(sentinel.log());
    REQUIRE(sentinel.started());
    RedisOptions via = redis.options;
    via.url = sentinel.url_for("mymaster", 3);
    auto store = open_redis_ok(via);
    const std::string log = log_name(2, "g");
    WriteBatch batch;
    batch.messages = {append(log, 1)};
    batch.channel_seqs = {{log, 1, 0}};
    REQUIRE(store->commit(batch, true));
    CHECK(redis.server.cli("-n 3 GET 'lim:seq:{\x02g}'") == "1\n");
    std::string why;
    CHECK(store->writable(why));

    std::string error;
    via.url = sentinel.url_for("nosuchmaster");
    CHECK(open_redis(via, error) == nullptr);
    CHECK(error.find("nosuchmaster") != std::string::npos);

    RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(redis.server.port())});
    REQUIRE(replica.started());
    via.url = replica.url();
    CHECK(open_redis(via, error) == nullptr);
    CHECK(error.find("not a master") != std::string::npos);
}

// Bytes Redis has sent to its clients so far (INFO stats).
uint64_t redis_output_bytes(const RedisServer& server) {
    const std::string stats = server.cli("INFO stats");
    const std::string field = "total_net_output_bytes:";
    const size_t at = stats.find(field);
    REQUIRE(at != std::string::npos);
    return std::stoull(stats.substr(at + field.size()));
}

TEST_CASE("redis store: a read stopped by its byte limit fetched about what it returned, not the whole count") {
    RedisFixture redis;
    auto store = open_redis_ok(redis.options);
    const std::string log = log_name(2, "g");
    store_big_messages(*store, log, 100);  // 1 MB each way
    // Fetched (bytes Redis sent) against returned, for a read of up to 100.
    auto fetched = [&](uint32_t after, ReadLimit limit, size_t& returned) {
        std::vector<std::string> out;
        const uint64_t before = redis_output_bytes(redis.server);
        REQUIRE(store->read_queue(log, after, limit, out));
        const uint64_t sent = redis_output_bytes(redis.server) - before;
        returned = 0;
        for (const std::string& m : out) returned += m.size();
        return sent;
    };
    size_t returned = 0;
    // Three returned: the first page of 8 was fetched, not the 100.
    uint64_t sent = fetched(0, {.count = 100, .bytes = 25000}, returned);
    CHECK(returned < 31000);
    CHECK(sent < 100000);
    // Ten returned: a page of 8, then one of 2 (what the bytes left hold at
    // the size seen, plus one): nothing fetched in vain.
    sent = fetched(0, {.count = 100, .bytes = 100000}, returned);
    CHECK(returned > 100000);
    CHECK(sent < returned + 5000);
    // Backwards the same, from the newest.
    std::vector<std::string> out;
    REQUIRE(store->read_messages(log, 1, 0, {.count = 100, .bytes = 100000, .newest = true}, out));
    REQUIRE(out.size() == 10);
    CHECK(out.front() == big_message(log, 91));
    CHECK(out.back() == big_message(log, 100));
    // Small messages go 32 a page: the whole log, in order, across pages.
    const std::string small = log_name(2, "small");
    WriteBatch batch;
    for (uint32_t seq = 1; seq <= 100; ++seq) batch.messages.push_back(append(small, seq));
    REQUIRE(store->commit(batch, false));
    out.clear();
    REQUIRE(store->read_messages(small, 1, 0, {.count = 1000, .bytes = 1 << 20, .newest = true}, out));
    REQUIRE(out.size() == 100);
    for (uint32_t seq = 1; seq <= 100; ++seq) CHECK(out[seq - 1] == message(small, seq));
}

TEST_CASE("redis store: a reply lost after the script ran is an unknown outcome; the lookup finds the batch") {
    RedisFixture redis;
    ReplyLosingProxy proxy(redis.server.port());
    RedisOptions through_proxy = redis.options;
    through_proxy.url = proxy.url();
    auto store = open_redis_ok(through_proxy);
    const std::string log = log_name(2, "g");
    WriteBatch batch = everything(log, 1, 0);
    batch.id = 42;
    CHECK(channel_seq(*store, log) == 0);  // a connection made: the reply lost is the script's
    proxy.lose_next_reply = true;
    const Status status = store->commit(batch, true);
    INFO(status.error);
    CHECK(proxy.replies_lost == 1);
    CHECK_FALSE(status.ok);
    CHECK(status.unknown);  // not a plain failure: the script may have run
    CHECK_FALSE(status.conflict);
    bool written = false;
    REQUIRE(store->commit_outcome(batch, written));
    CHECK(written);
    CHECK(read_messages(*store, log, 0, 0, 10) == messages(log, {1}));
    REQUIRE(store->commit_outcome(batch, written));  // asked again: the same answer
    CHECK(written);
}

TEST_CASE("redis store: a batch whose outcome was asked before it ran is fenced, never written") {
    RedisFixture redis;
    auto store = open_redis_ok(redis.options);
    const std::string log = log_name(2, "g");
    WriteBatch late = everything(log, 1, 0);
    late.id = 7;
    bool written = true;
    REQUIRE(store->commit_outcome(late, written));
    CHECK_FALSE(written);
    // The lost copy arriving after the question: refused, nothing written.
    const Status status = store->commit(late, true);
    CHECK_FALSE(status.ok);
    CHECK_FALSE(status.unknown);
    CHECK(status.error.find("fenced") != std::string::npos);
    CHECK(channel_seq(*store, log) == 0);
    // The markers of batches known written do not pile up: each commit
    // deletes the one before; the fenced one stays for its time to live.
    for (uint32_t seq = 1; seq <= 3; ++seq) {
        WriteBatch batch = everything(log, seq, seq - 1);
        batch.id = 100 + seq;
        REQUIRE(store->commit(batch, true));
    }
    std::istringstream keys(redis.server.cli("KEYS 'lim:batch:*'"));
    std::set<std::string> markers;
    for (std::string line; std::getline(keys, line);) markers.insert(line);
    CHECK(markers == std::set<std::string>{"lim:batch:{1}:7", "lim:batch:{1}:103"});
}
