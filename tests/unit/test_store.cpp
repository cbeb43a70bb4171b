#include <doctest/doctest.h>
#include <rocksdb/db.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/store/store.h"

using namespace limaoim::store;
namespace fs = std::filesystem;

namespace {

// A fresh directory under /tmp, removed with everything in it afterwards.
// The store goes in its "data" subdirectory, which open_embedded makes.
struct TempDir {
    fs::path root;
    TempDir() {
        char pattern[] = "/tmp/limaoim-store-test-XXXXXX";
        REQUIRE(mkdtemp(pattern) != nullptr);
        root = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    std::string data() const { return (root / "data").string(); }
};

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
    REQUIRE(store.read_messages(log, from, to, limit, out));
    return out;
}

std::vector<std::string> read_queue(Store& store, std::string_view uid, uint32_t after, uint32_t limit) {
    std::vector<std::string> out;
    REQUIRE(store.read_queue(uid, after, limit, out));
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

}  // namespace

TEST_CASE("store: a new directory is made, marked with the format, and starts empty") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
    CHECK(std::string(store->engine()) == "rocksdb");
    CHECK(read_file(fs::path(tmp.data()) / "LIMAOIM_FORMAT") == "limaoim-store 1\n");

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

    // An existing empty directory (a fresh mount point, say) is taken too.
    fs::create_directory(tmp.root / "empty");
    open_ok((tmp.root / "empty").string());
}

TEST_CASE("store: tokens round-trip, replaced per (uid, device flag)") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
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
    TempDir tmp;
    auto store = open_ok(tmp.data());
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
    TempDir tmp;
    auto store = open_ok(tmp.data());
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
    TempDir tmp;
    auto store = open_ok(tmp.data());
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
    REQUIRE(store->read_messages(log, 1, 3, 100, out));
    CHECK(out == std::vector<std::string>{"kept", message(log, 1), message(log, 2)});

    // Stored bytes come back exactly, NULs and all.
    WriteBatch binary;
    binary.messages.push_back({log, 300, {0, 1, 0xff, 0}});
    REQUIRE(store->commit(binary, false));
    CHECK(read_messages(*store, log, 300, 301, 1) == std::vector<std::string>{std::string("\0\x01\xff\0", 4)});
}

TEST_CASE("store: read_queue returns seqs after after_seq, per user") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
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
    TempDir tmp;
    const std::string log = log_name(2, "g");
    {
        auto store = open_ok(tmp.data());
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
        auto store = open_ok(tmp.data());
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
        next.channel_seqs = {{log, 3}};
        REQUIRE(store->commit(next, false));
    }
    auto store = open_ok(tmp.data());
    CHECK(channel_seq(*store, log) == 3);
    int64_t id = 0;
    REQUIRE(store->max_message_id(id));
    CHECK(id == 42);
    CHECK(read_messages(*store, log, 1, 0, 100) == messages(log, {1, 2, 3}));
}

TEST_CASE("store: delete_channel drops the record and its log but keeps the seq counter") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
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
    again.channel_seqs = {{log, 11}};
    REQUIRE(store->commit(again, false));
    CHECK(read_messages(*store, log, 0, 0, 100) == messages(log, {11}));
}

TEST_CASE("store: the dedupe window loads since a time, oldest first, and expires before one") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
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

    REQUIRE(store->expire_dedupe(2000));  // strictly before
    auto left = load(std::numeric_limits<int64_t>::min());
    REQUIRE(left.size() == 3);
    CHECK(left[0].time_ms == 2000);
    REQUIRE(store->expire_dedupe(std::numeric_limits<int64_t>::max()));
    CHECK(load(std::numeric_limits<int64_t>::min()).empty());
}

TEST_CASE("store: a batch is seen whole by concurrent readers") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
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
                !store->read_messages(log, seq, seq + 1, 1, out))
                torn.fetch_add(1);
            if (seq > 0 && (out.size() != 1 || id < int64_t(seq))) torn.fetch_add(1);
            reads.fetch_add(1);
        }
    });
    for (uint32_t seq = 1; seq <= batches; ++seq) {
        WriteBatch batch;
        batch.max_message_id = seq;
        batch.channel_seqs = {{log, seq}};
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
    TempDir tmp;
    {
        auto store = open_ok(tmp.data());
        WriteBatch batch;
        for (int64_t id : {int64_t(7), int64_t(300), int64_t(1) << 40, int64_t(42)})
            batch.notify.push_back({id, {uint8_t(id & 0xff), 1, 2}});
        REQUIRE(store->commit(batch, true));
    }
    auto store = open_ok(tmp.data());
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

TEST_CASE("conversations and their seqs round-trip; an empty list deletes the user's") {
    TempDir tmp;
    auto store = open_ok(tmp.data());
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
