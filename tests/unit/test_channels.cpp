// im/channels.h: the in-memory channel registry (SERVER.md §7).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/im/channels.h"
#include "limaoim/im/message.h"

using namespace limaoim;
using namespace limaoim::im;

namespace {

Channel make(uint8_t type, std::string id, std::vector<std::string> subscribers = {}) {
    store::ChannelRecord r;
    r.type = type;
    r.id = std::move(id);
    r.subscribers = std::move(subscribers);
    return Channel::from(std::move(r));
}

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

}  // namespace

TEST_CASE("Channels: find / put / erase by (type, id)") {
    Channels channels;
    CHECK(channels.size() == 0);
    CHECK(channels.find(kGroupChannel, "g1") == nullptr);

    channels.put(make(kGroupChannel, "g1", {"a", "b"}));
    channels.put(make(kPersonChannel, "g1", {"g1"}));  // same id, another type: a different channel
    channels.put(make(3, "g1"));
    channels.put(make(kGroupChannel, "g2", {"c"}));
    CHECK(channels.size() == 4);

    auto group = channels.find(kGroupChannel, "g1");
    REQUIRE(group);
    CHECK(group->type == kGroupChannel);
    CHECK(group->subscribers == std::vector<std::string>{"a", "b"});
    auto person = channels.find(kPersonChannel, "g1");
    REQUIRE(person);
    CHECK(person->type == kPersonChannel);
    CHECK(person->subscribers == std::vector<std::string>{"g1"});
    CHECK(channels.find(3, "g1"));
    CHECK(channels.find(4, "g1") == nullptr);
    CHECK(channels.find(kGroupChannel, "g") == nullptr);
    CHECK(channels.find(kGroupChannel, "g1 ") == nullptr);

    // Replacing keeps one entry.
    channels.put(make(kGroupChannel, "g1", {"z"}));
    CHECK(channels.size() == 4);
    CHECK(channels.find(kGroupChannel, "g1")->subscribers == std::vector<std::string>{"z"});

    // Erase removes that (type, id) only.
    channels.erase(kGroupChannel, "g1");
    CHECK(channels.size() == 3);
    CHECK(channels.find(kGroupChannel, "g1") == nullptr);
    CHECK(channels.find(kPersonChannel, "g1"));
    CHECK(channels.find(3, "g1"));
    CHECK(channels.find(kGroupChannel, "g2"));
    channels.erase(kGroupChannel, "missing");  // no-op
    channels.erase(kGroupChannel, "g1");
    CHECK(channels.size() == 3);

    // Ids with bytes that could confuse a composed key.
    channels.put(make(kGroupChannel, std::string("a\0b", 3)));
    channels.put(make(kGroupChannel, "a"));
    CHECK(channels.find(kGroupChannel, std::string_view("a\0b", 3)));
    CHECK(channels.find(kGroupChannel, std::string_view("a\0b", 3))->id.size() == 3);
    CHECK(channels.find(kGroupChannel, "a")->id == "a");
    CHECK(channels.size() == 5);
}

TEST_CASE("Channels: a held snapshot does not change when the next version is put") {
    Channels channels;
    Channel c = make(kGroupChannel, "g", {"a", "b"});
    c.denylist.insert("x");
    channels.put(std::move(c));
    std::shared_ptr<const Channel> held = channels.find(kGroupChannel, "g");
    REQUIRE(held);

    Channel next = *held;
    next.subscribers.push_back("c");
    next.subscriber_set.insert("c");
    next.denylist.clear();
    next.allowlist.insert("a");
    channels.put(std::move(next));

    CHECK(held->subscribers == std::vector<std::string>{"a", "b"});
    CHECK_FALSE(held->has_subscriber("c"));
    CHECK(held->denylist.contains("x"));
    CHECK(held->allowlist.empty());
    auto now = channels.find(kGroupChannel, "g");
    REQUIRE(now);
    CHECK(now != held);
    CHECK(now->subscribers == std::vector<std::string>{"a", "b", "c"});
    CHECK(now->has_subscriber("c"));

    // Erased: the holder keeps its copy alive.
    channels.erase(kGroupChannel, "g");
    CHECK(channels.find(kGroupChannel, "g") == nullptr);
    CHECK(now->subscribers.size() == 3);
    CHECK(held.use_count() == 1);
}

TEST_CASE("Channels: allowed() (§7.4): system uid, allowlist, denylist") {
    Channels channels;
    Channel c = make(kPersonChannel, "bob", {"bob"});

    // No lists: everyone.
    CHECK(channels.allowed(c, "alice"));
    CHECK(channels.allowed(c, ""));

    // Denylist only.
    c.denylist = {"mallory", "eve"};
    CHECK_FALSE(channels.allowed(c, "mallory"));
    CHECK_FALSE(channels.allowed(c, "eve"));
    CHECK(channels.allowed(c, "alice"));

    // A non-empty allowlist decides alone (the denylist is not consulted).
    c.allowlist = {"alice", "eve"};
    CHECK(channels.allowed(c, "alice"));
    CHECK(channels.allowed(c, "eve"));  // in both lists: the allowlist wins
    CHECK_FALSE(channels.allowed(c, "carol"));
    CHECK_FALSE(channels.allowed(c, "mallory"));

    // A system uid passes everything.
    CHECK_FALSE(channels.is_system("sys"));
    channels.set_system_uids({"sys", "root"});
    CHECK(channels.is_system("sys"));
    CHECK(channels.is_system("root"));
    CHECK(sorted(channels.system_uids()) == std::vector<std::string>{"root", "sys"});
    CHECK(channels.allowed(c, "sys"));
    c.denylist.insert("sys");
    c.allowlist.clear();
    CHECK(channels.allowed(c, "sys"));
    CHECK_FALSE(channels.allowed(c, "mallory"));

    // set_system_uids replaces the whole set.
    channels.set_system_uids({"root"});
    CHECK_FALSE(channels.is_system("sys"));
    CHECK_FALSE(channels.allowed(c, "sys"));
    CHECK(channels.system_uids() == std::vector<std::string>{"root"});
    channels.set_system_uids({});
    CHECK(channels.system_uids().empty());
}

TEST_CASE("Channel::from dedupes subscribers keeping their order; record() round trip") {
    store::ChannelRecord r;
    r.id = "grp";
    r.type = kGroupChannel;
    r.parent = "parent-1";
    r.subscribers = {"c", "a", "c", "b", "a", "d", "c"};
    r.allowlist = {"a", "b", "a"};
    r.denylist = {"x"};
    Channel c = Channel::from(store::ChannelRecord(r));
    CHECK(c.id == "grp");
    CHECK(c.type == kGroupChannel);
    CHECK(c.parent == "parent-1");
    CHECK_FALSE(c.temporary);
    CHECK(c.subscribers == std::vector<std::string>{"c", "a", "b", "d"});
    CHECK(c.subscriber_set.size() == 4);
    for (const char* uid : {"a", "b", "c", "d"}) CHECK(c.has_subscriber(uid));
    CHECK_FALSE(c.has_subscriber("x"));
    CHECK(c.allowlist.size() == 2);
    CHECK(c.denylist.size() == 1);

    const store::ChannelRecord back = c.record();
    CHECK(back.id == "grp");
    CHECK(back.type == kGroupChannel);
    CHECK(back.parent == "parent-1");
    CHECK(back.subscribers == std::vector<std::string>{"c", "a", "b", "d"});
    CHECK(sorted(back.allowlist) == std::vector<std::string>{"a", "b"});
    CHECK(sorted(back.denylist) == std::vector<std::string>{"x"});

    // And back again: the same channel.
    Channel again = Channel::from(store::ChannelRecord(back));
    CHECK(again.subscribers == c.subscribers);
    CHECK(again.subscriber_set == c.subscriber_set);
    CHECK(again.allowlist == c.allowlist);
    CHECK(again.denylist == c.denylist);
    CHECK(again.parent == c.parent);

    // Empty record.
    Channel empty = Channel::from(store::ChannelRecord{});
    CHECK(empty.subscribers.empty());
    CHECK(empty.record().subscribers.empty());
}

TEST_CASE("Channels: readers and a writer at once see whole snapshots") {
    Channels channels;
    channels.put(make(kGroupChannel, "g", {"v0"}));
    std::atomic<bool> stop{false};
    std::atomic<long> torn{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t)
        readers.emplace_back([&] {
            while (!stop.load()) {
                auto c = channels.find(kGroupChannel, "g");
                if (!c || c->subscribers.size() != c->subscriber_set.size()) ++torn;
            }
        });
    for (int i = 1; i < 20000; ++i) {
        std::vector<std::string> subs;
        for (int j = 0; j <= i % 5; ++j) subs.push_back("v" + std::to_string(i) + "-" + std::to_string(j));
        channels.put(make(kGroupChannel, "g", subs));
    }
    stop = true;
    for (auto& t : readers) t.join();
    CHECK(torn.load() == 0);
    CHECK(channels.size() == 1);
}
