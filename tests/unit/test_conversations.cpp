// im/conversations.h: recent chats with unread counts (SERVER.md §11), their
// batched flush and the replay of stored messages at start.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <utility>
#include <string>
#include <vector>

#include "fake_store.h"
#include "limaoim/im/channels.h"
#include "limaoim/im/conversations.h"
#include "limaoim/im/message.h"
#include "limaoim/stats/layout.h"

using namespace limaoim;
using namespace limaoim::im;
using limaoim::testing::FakeStore;

namespace {

Message message(std::string from, std::string channel, uint8_t type, uint32_t seq, bool red_dot = true,
                int32_t timestamp = 1000) {
    Message m;
    m.header_flags = red_dot ? 0x02 : 0;
    m.channel_type = type;
    m.message_id = 100 + seq;
    m.message_seq = seq;
    m.timestamp = timestamp + int32_t(seq);
    m.client_msg_no = "c" + std::to_string(seq);
    m.from_uid = std::move(from);
    m.channel_id = std::move(channel);
    m.payload = "hi";
    return m;
}

// As the committer stores it: in its log, with the log's seq counter.
void store_message(FakeStore& store, const Message& m) {
    const std::string log = store::log_name(m.channel_type, log_channel_id(m.view()));
    std::lock_guard lock(store.mutex);
    store.logs[log].push_back({m.message_seq, encode(m.view())});
    store.channel_seqs[log] = m.message_seq;
}

const Conversation* find(const std::vector<Conversation>& list, std::string_view id, uint8_t type) {
    for (const Conversation& c : list)
        if (c.channel_id == id && c.channel_type == type) return &c;
    return nullptr;
}

std::vector<Conversation> listed(Conversations& conversations, std::string_view uid) {
    std::vector<Conversation> out;
    REQUIRE(conversations.list(uid, out).ok);
    return out;
}

// A stored list as list() shows it: timestamp descending.
std::vector<Conversation> by_time(std::vector<Conversation> items) {
    std::stable_sort(items.begin(), items.end(), [](const Conversation& a, const Conversation& b) { return a.timestamp > b.timestamp; });
    return items;
}

std::vector<Conversation> changed(Conversations& conversations, std::string_view uid, int64_t version) {
    std::vector<Conversation> out;
    REQUIRE(conversations.changed_since(uid, version, out).ok);
    return out;
}

Channel group(std::string id, std::vector<std::string> members) {
    store::ChannelRecord r;
    r.id = std::move(id);
    r.type = kGroupChannel;
    r.subscribers = std::move(members);
    return Channel::from(std::move(r));
}

}  // namespace

TEST_CASE("a person message: both users get the chat keyed by the peer, only the recipient an unread") {
    FakeStore store;
    stats::PipelineBlock block{};
    Conversations conversations(store, block, {});
    const Message m = message("alice", "bob", kPersonChannel, 1);
    conversations.apply(m.view(), std::vector<std::string>{"alice", "bob"});
    conversations.apply(message("alice", "bob", kPersonChannel, 2, false).view(), std::vector<std::string>{"alice", "bob"});

    const auto alice = listed(conversations, "alice");
    const auto bob = listed(conversations, "bob");
    REQUIRE(alice.size() == 1);
    REQUIRE(bob.size() == 1);
    CHECK(alice[0].channel_id == "bob");
    CHECK(alice[0].unread == 0);  // the sender's own messages
    CHECK(bob[0].channel_id == "alice");
    CHECK(bob[0].unread == 1);  // the second had no RedDot
    CHECK(bob[0].last_msg_seq == 2);
    CHECK(bob[0].last_client_msg_no == "c2");
    CHECK(bob[0].last_msg_id == 102);
    CHECK(bob[0].timestamp == 1002);
    CHECK(block.conversation_updates.get() == 4);
}

TEST_CASE("an older seq counts as unread but does not move the last message back") {
    FakeStore store;
    stats::PipelineBlock block{};
    Conversations conversations(store, block, {});
    conversations.apply(message("a", "g", kGroupChannel, 5).view(), std::vector<std::string>{"a", "b"});
    conversations.apply(message("a", "g", kGroupChannel, 4).view(), std::vector<std::string>{"a", "b"});
    const auto b = listed(conversations, "b");
    REQUIRE(b.size() == 1);
    CHECK(b[0].unread == 2);
    CHECK(b[0].last_msg_seq == 5);
}

TEST_CASE("at most max_per_user conversations: the least recently used goes") {
    FakeStore store;
    stats::PipelineBlock block{};
    Conversations conversations(store, block, {.max_per_user = 3});
    for (uint32_t i = 1; i <= 3; ++i)
        conversations.apply(message("p" + std::to_string(i), "u", kPersonChannel, 1, true, int32_t(i * 10)).view(),
                            std::vector<std::string>{"p" + std::to_string(i), "u"});
    // p1 used again: p2 is now the least recently used.
    conversations.apply(message("p1", "u", kPersonChannel, 2, true, 100).view(), std::vector<std::string>{"p1", "u"});
    conversations.apply(message("p4", "u", kPersonChannel, 1, true, 200).view(), std::vector<std::string>{"p4", "u"});
    const auto u = listed(conversations, "u");
    REQUIRE(u.size() == 3);
    CHECK(find(u, "p2", kPersonChannel) == nullptr);
    CHECK(find(u, "p1", kPersonChannel) != nullptr);
    // Listed by timestamp, newest first.
    CHECK(u[0].channel_id == "p4");
    CHECK(u[1].channel_id == "p1");
    CHECK(u[2].channel_id == "p3");
}

TEST_CASE("changed_since returns the conversations with a newer version") {
    FakeStore store;
    stats::PipelineBlock block{};
    Conversations conversations(store, block, {});
    conversations.apply(message("a", "g1", kGroupChannel, 1).view(), std::vector<std::string>{"a", "b"});
    const auto all = changed(conversations, "b", 0);
    REQUIRE(all.size() == 1);
    CHECK(changed(conversations, "b", all[0].version).empty());
    CHECK(changed(conversations, "nobody", 0).empty());
}

TEST_CASE("a flush stores the lists; a new instance loads them as they were") {
    FakeStore store;
    stats::PipelineBlock block{};
    Channels channels;
    std::vector<Conversation> before;
    {
        Conversations conversations(store, block, {});
        for (uint32_t seq = 1; seq <= 3; ++seq) {
            const Message m = message("alice", "bob", kPersonChannel, seq);
            store_message(store, m);
            conversations.apply(m.view(), std::vector<std::string>{"alice", "bob"});
        }
        before = listed(conversations, "bob");
        conversations.start();
        conversations.stop();  // flushes
    }
    CHECK(store.conversations.count("bob") == 1);
    CHECK(store.conversation_seqs.begin()->second == 3);
    Conversations again(store, block, {});
    std::string error;
    REQUIRE(again.load(channels, error));
    CHECK(listed(again, "bob") == before);
    CHECK(listed(again, "bob")[0].unread == 3);  // nothing replayed twice
}

TEST_CASE("at start, stored messages the lists miss are replayed into them") {
    FakeStore store;
    stats::PipelineBlock block{};
    Channels channels;
    channels.put(group("g", {"a", "b", "c"}));
    {
        Conversations conversations(store, block, {});
        const Message first = message("a", "g", kGroupChannel, 1);
        store_message(store, first);
        conversations.apply(first.view(), std::vector<std::string>{"a", "b", "c"});
        conversations.start();
        conversations.stop();
    }
    // Stored, and a client may have seen it, but the process died before the next flush.
    store_message(store, message("b", "g", kGroupChannel, 2));
    store_message(store, message("a", "c", kPersonChannel, 1));

    Conversations again(store, block, {});
    std::string error;
    REQUIRE(again.load(channels, error));
    const auto c = listed(again, "c");
    REQUIRE(find(c, "g", kGroupChannel));
    CHECK(find(c, "g", kGroupChannel)->unread == 2);
    CHECK(find(c, "g", kGroupChannel)->last_msg_seq == 2);
    REQUIRE(find(c, "a", kPersonChannel));
    CHECK(find(c, "a", kPersonChannel)->unread == 1);
    CHECK(find(listed(again, "b"), "g", kGroupChannel)->unread == 1);  // her own second message does not count
    // The replay is flushed: a third start replays nothing again.
    Conversations third(store, block, {});
    REQUIRE(third.load(channels, error));
    CHECK(find(listed(third, "c"), "g", kGroupChannel)->unread == 2);
}

TEST_CASE("an unread edit is durable and a replay after it does not count the messages it saw") {
    FakeStore store;
    stats::PipelineBlock block{};
    Channels channels;
    {
        Conversations conversations(store, block, {});
        const Message m1 = message("alice", "bob", kPersonChannel, 1);
        store_message(store, m1);
        conversations.apply(m1.view(), std::vector<std::string>{"alice", "bob"});
        store::Status status;
        REQUIRE(conversations.set_unread("bob", "alice", kPersonChannel, 0, status));
        CHECK(status.ok);
        CHECK_FALSE(conversations.set_unread("bob", "nobody", kPersonChannel, 0, status));
        // Applied but not flushed when the process dies.
        const Message m2 = message("alice", "bob", kPersonChannel, 2);
        store_message(store, m2);
        conversations.apply(m2.view(), std::vector<std::string>{"alice", "bob"});
    }
    Conversations again(store, block, {});
    std::string error;
    REQUIRE(again.load(channels, error));
    CHECK(listed(again, "bob")[0].unread == 1);
}

TEST_CASE("remove deletes durably; a user left with nothing is deleted from the store") {
    FakeStore store;
    stats::PipelineBlock block{};
    Channels channels;
    Conversations conversations(store, block, {});
    conversations.apply(message("a", "g", kGroupChannel, 1).view(), std::vector<std::string>{"a", "b"});
    CHECK(conversations.remove({"b"}, "g", kGroupChannel).ok);
    CHECK(listed(conversations, "b").empty());
    CHECK(store.conversations.count("a") == 1);
    CHECK(store.conversations.count("b") == 0);
    Conversations again(store, block, {});
    std::string error;
    REQUIRE(again.load(channels, error));
    CHECK(listed(again, "b").empty());
    CHECK(listed(again, "a").size() == 1);
}

TEST_CASE("an API edit the background flush wrote first (without a sync) is synced before it is answered") {
    FakeStore store;
    stats::PipelineBlock block{};
    Conversations conversations(store, block, {100, 10, 100});
    conversations.start();
    conversations.apply(message("a", "g", kGroupChannel, 1).view(), std::vector<std::string>{"a", "b"});
    bool flushed = false;
    for (int i = 0; i < 500 && !flushed; ++i) {
        {
            std::lock_guard lock(store.mutex);
            flushed = !store.sync_flags.empty();
        }
        if (!flushed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(flushed);
    // What an edit finds when the flusher took its change first: nothing
    // dirty, the change written but not synced.
    CHECK(conversations.remove({"zz"}, "g", kGroupChannel).ok);
    CHECK(store.syncs == 1);
    CHECK(conversations.remove({"zz"}, "g", kGroupChannel).ok);
    CHECK(store.syncs == 1);  // synced already
    conversations.stop();
}

TEST_CASE("another node's edit is not flushed at once (that node stored it); the next background flush writes it") {
    FakeStore store;
    stats::PipelineBlock block{};
    Channels channels;
    store.conversations["a"] = {{"g", kGroupChannel, 0, 1000, 1, "c1", 101, 1}};
    store.conversations["b"] = {{"g", kGroupChannel, 1, 1000, 1, "c1", 101, 1}};
    Conversations conversations(store, block, {});
    std::string error;
    REQUIRE(conversations.load(channels, error));  // a and b complete in memory
    conversations.apply(message("a", "g", kGroupChannel, 2).view(), std::vector<std::string>{"a", "b"}, false);
    CHECK(listed(conversations, "b")[0].unread == 2);
    store::Status status;
    REQUIRE(conversations.set_unread("b", "g", kGroupChannel, 7, status, false));
    CHECK(status.ok);
    CHECK(listed(conversations, "b")[0].unread == 7);
    CHECK(conversations.remove({"a"}, "g", kGroupChannel, false).ok);
    CHECK(listed(conversations, "a").empty());
    CHECK(store.commits == 0);
    // The next flush (an edit of this node's here) writes this node's lists as they are now.
    CHECK(conversations.remove({"zz"}, "g", kGroupChannel).ok);
    CHECK(store.conversations["b"].at(0).unread == 7);
    CHECK(store.conversations.count("a") == 0);
}

TEST_CASE("another node's message makes no user here: its list is that node's to write, read from the store") {
    FakeStore store;
    stats::PipelineBlock block{};
    Conversations conversations(store, block, {});
    conversations.apply(message("a", "g", kGroupChannel, 1).view(), std::vector<std::string>{"a", "b"}, false);
    CHECK(block.conversation_users.get() == 0);
    CHECK(store.conversation_reads == 0);
    // What the other node wrote is what this one shows.
    store.conversations["b"] = {{"g", kGroupChannel, 1, 1001, 1, "c1", 101, 5}};
    const auto b = listed(conversations, "b");
    REQUIRE(b.size() == 1);
    CHECK(b[0].unread == 1);
    CHECK(listed(conversations, "a").empty());
    CHECK(conversations.remove({"zz"}, "g", kGroupChannel).ok);  // a flush
    CHECK(store.conversations["b"].at(0).unread == 1);           // not counted twice
    CHECK(store.conversations.count("a") == 0);
}

TEST_CASE("past users_max the least recently used clean users are evicted and read back intact from the store") {
    FakeStore store;
    stats::PipelineBlock block{};
    Conversations conversations(store, block, {.users_max = 2});
    for (uint32_t i = 1; i <= 5; ++i)
        conversations.apply(message("s", "g" + std::to_string(i), kGroupChannel, i).view(),
                            std::vector<std::string>{"u" + std::to_string(i)});
    CHECK(store.conversation_reads == 0);  // apply() never reads the store (the fan-out thread's)
    CHECK(block.conversation_users.get() == 5);  // all changed since the last flush: kept
    std::map<std::string, std::vector<Conversation>> before;
    for (uint32_t i = 1; i <= 5; ++i) before["u" + std::to_string(i)] = listed(conversations, "u" + std::to_string(i));
    CHECK(conversations.remove({"zz"}, "g", kGroupChannel).ok);  // a flush
    CHECK(block.conversation_users.get() == 2);
    CHECK(block.conversation_evictions.get() == 3);
    for (const auto& [uid, list] : before) CHECK(listed(conversations, uid) == list);
    CHECK(block.conversation_users.get() <= 2);
    // An edit of an evicted user: read back, edited, stored.
    store::Status status;
    REQUIRE(conversations.set_unread("u1", "g1", kGroupChannel, 0, status));
    CHECK(status.ok);
    CHECK(store.conversations["u1"].at(0).unread == 0);
    CHECK(listed(conversations, "u1").at(0).unread == 0);
}

TEST_CASE("a user not in memory gets a partial list: the flusher merges it with the stored one") {
    FakeStore store;
    stats::PipelineBlock block{};
    // Stored: alice's chat (unread 2, last seq 5) and group g's (unread 1, last seq 9).
    store.conversations["bob"] = {{"alice", kPersonChannel, 2, 1005, 5, "c5", 105, 10},
                                  {"g", kGroupChannel, 1, 1009, 9, "c9", 109, 10}};
    Conversations conversations(store, block, {});
    conversations.apply(message("carol", "g", kGroupChannel, 7).view(), std::vector<std::string>{"bob"});  // older
    conversations.apply(message("alice", "bob", kPersonChannel, 6).view(), std::vector<std::string>{"bob"});
    CHECK(store.conversation_reads == 0);
    conversations.start();
    conversations.stop();  // flushes
    const auto& bob = store.conversations["bob"];
    REQUIRE(bob.size() == 2);
    CHECK(bob[0].channel_id == "alice");  // the changed ones first, most recent first
    CHECK(bob[0].unread == 3);
    CHECK(bob[0].last_msg_seq == 6);
    CHECK(bob[0].last_client_msg_no == "c6");
    CHECK(bob[1].channel_id == "g");
    CHECK(bob[1].unread == 2);
    CHECK(bob[1].last_msg_seq == 9);  // the stored one is newer
    CHECK(bob[1].last_msg_id == 109);
    CHECK(listed(conversations, "bob") == by_time(bob));
}

TEST_CASE("an API read of a partial user merges it with the stored list, and the flush does not count it twice") {
    FakeStore store;
    stats::PipelineBlock block{};
    store.conversations["bob"] = {{"alice", kPersonChannel, 2, 1005, 5, "c5", 105, 10},
                                  {"dave", kPersonChannel, 4, 1001, 1, "c1", 101, 10}};
    Conversations conversations(store, block, {});
    conversations.apply(message("alice", "bob", kPersonChannel, 6).view(), std::vector<std::string>{"alice", "bob"});
    const auto bob = listed(conversations, "bob");
    REQUIRE(bob.size() == 2);
    CHECK(bob[0].channel_id == "alice");
    CHECK(bob[0].unread == 3);
    CHECK(bob[0].last_msg_seq == 6);
    CHECK(bob[1].channel_id == "dave");
    CHECK(bob[1].unread == 4);
    CHECK(changed(conversations, "bob", 0) == bob);
    CHECK(conversations.remove({"zz"}, "g", kGroupChannel).ok);  // a flush
    CHECK(by_time(store.conversations["bob"]) == bob);
    CHECK(listed(conversations, "bob") == bob);
}

TEST_CASE("an API read of a user not in memory cannot miss a flush made while it read the store") {
    FakeStore store;
    stats::PipelineBlock block{};
    store.conversations["u"] = {{"g1", kGroupChannel, 1, 1001, 1, "c1", 101, 1}};
    Conversations conversations(store, block, {.users_max = 1});
    std::atomic<bool> flushed{false};
    std::thread flusher;
    bool armed = true;
    store.on_conversation_read = [&] {
        if (!std::exchange(armed, false)) return;
        // Between the API's read and its merge: a message for u (and v), and a
        // flush that writes u and would evict it (v, changed, is kept).
        conversations.apply(message("s", "g2", kGroupChannel, 1).view(), std::vector<std::string>{"u", "v"});
        flusher = std::thread([&] {
            CHECK(conversations.remove({"zz"}, "g", kGroupChannel).ok);
            flushed = true;
        });
        for (int i = 0; i < 20 && !flushed; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    };
    const auto u = listed(conversations, "u");
    flusher.join();
    CHECK(u.size() == 2);
    CHECK(find(u, "g1", kGroupChannel));
    CHECK(find(u, "g2", kGroupChannel));
    CHECK(store.conversations["u"].size() == 2);
}

TEST_CASE("at start at most users_max stored lists are kept; the replay merges the others with theirs") {
    FakeStore store;
    stats::PipelineBlock block{};
    Channels channels;
    for (const char* uid : {"u1", "u2", "u3"}) store.conversations[uid] = {{"g", kGroupChannel, 1, 1001, 1, "c1", 101, 1}};
    // Stored, not yet in u3's list.
    store_message(store, message("s", "u3", kPersonChannel, 1));
    Conversations conversations(store, block, {.users_max = 1});
    std::string error;
    REQUIRE(conversations.load(channels, error));
    CHECK(block.conversation_users.get() == 1);
    const auto& u3 = store.conversations["u3"];
    REQUIRE(u3.size() == 2);
    CHECK(u3[0].channel_id == "s");
    CHECK(u3[0].unread == 1);
    CHECK(u3[1].channel_id == "g");
    CHECK(listed(conversations, "u2").size() == 1);
}

TEST_CASE("a failed flush keeps the changes and writes them with the next") {
    FakeStore store;
    stats::PipelineBlock block{};
    Conversations conversations(store, block, {});
    conversations.apply(message("a", "g", kGroupChannel, 1).view(), std::vector<std::string>{"a", "b"});
    store.fail_commit = true;
    store::Status status = conversations.remove({"zz"}, "g", kGroupChannel);  // forces a flush
    CHECK_FALSE(status.ok);
    CHECK(block.conversation_flush_failures.get() == 1);
    CHECK(store.conversations.empty());
    store.fail_commit = false;
    status = conversations.remove({"zz"}, "g", kGroupChannel);
    CHECK(status.ok);
    CHECK(store.conversations.count("a") == 1);
    CHECK(store.conversations.count("b") == 1);
    CHECK(store.conversation_seqs.size() == 1);
}

TEST_CASE("the replay goes in commit order across logs: the cap keeps the most recent chats") {
    FakeStore store;
    stats::PipelineBlock block{};
    Channels channels;
    std::string error;
    {
        Conversations first(store, block, {});  // the store keeps conversations from now on
        REQUIRE(first.load(channels, error));
    }
    // Sent p5, p4, p3, p2, p1, p3 again, p6 (ascending ids), never flushed;
    // the logs' names sort in another order (u@p1 ... u@p6).
    int64_t id = 1000;
    std::map<std::string, uint32_t> seqs;
    for (const char* from : {"p5", "p4", "p3", "p2", "p1", "p3", "p6"}) {
        Message m = message(from, "u", kPersonChannel, ++seqs[from]);
        m.message_id = ++id;
        store_message(store, m);
    }
    Conversations conversations(store, block, {.max_per_user = 3});
    REQUIRE(conversations.load(channels, error));
    std::set<std::string> kept;
    for (const Conversation& c : listed(conversations, "u")) kept.insert(c.channel_id);
    CHECK(kept == std::set<std::string>{"p1", "p3", "p6"});
}

TEST_CASE("a store from before conversations: its history is not replayed into unread counts") {
    FakeStore store;
    stats::PipelineBlock block{};
    Channels channels;
    store_message(store, message("alice", "bob", kPersonChannel, 1));
    std::string error;
    {
        Conversations upgraded(store, block, {});
        REQUIRE(upgraded.load(channels, error));
        CHECK(listed(upgraded, "bob").empty());
    }
    // From then on the store keeps them: what a crash leaves unflushed is replayed.
    store_message(store, message("alice", "bob", kPersonChannel, 2));
    Conversations again(store, block, {});
    REQUIRE(again.load(channels, error));
    REQUIRE(listed(again, "bob").size() == 1);
    CHECK(listed(again, "bob")[0].unread == 1);
    CHECK(listed(again, "bob")[0].last_msg_seq == 2);
}
