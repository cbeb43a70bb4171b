// im/committer.h: the group-commit thread (SERVER.md §5 steps 5-8, §17),
// over an in-memory store::Store.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/im/channels.h"
#include "limaoim/im/cluster.h"
#include "limaoim/im/committer.h"
#include "limaoim/im/directory.h"
#include "limaoim/im/fanout.h"
#include "limaoim/im/ids.h"
#include "limaoim/im/message.h"
#include "limaoim/im/resolver.h"
#include "limaoim/net/worker.h"
#include "limaoim/stats/layout.h"
#include "limaoim/store/store.h"
#include "fake_store.h"

using namespace limaoim;
using namespace limaoim::im;

using limaoim::testing::FakeStore;

namespace {

int64_t wall_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}


// The outcome of one request, read the way the API would see it.
struct Sent {
    bool ok = false;
    std::string error;
    uint32_t value = 0;
    int64_t id = 0;     // filled in by the committer (the payload is shared with it)
    uint32_t seq = 0;
};

// `m` in the one binary encoding, as the committer and the fan-out take it.
net::Payload encoded(const Message& m) {
    net::Payload payload = net::Payload::allocate(encoded_size(m.view()));
    REQUIRE(payload);
    encode(m.view(), payload.writable_bytes());
    return payload;
}

// What the committer hands the fan-out for `m` once stored as `id` and `seq`.
FanoutItem stored_item(Message m, int64_t id = 0, uint32_t seq = 0) {
    m.message_id = id;
    m.message_seq = seq;
    FanoutItem item;
    item.message = encoded(m);
    return item;
}

// A Fanout and what it reads, wired as im::Core wires them, over `store`.
// It has no workers (nobody gets a delivery) unless a test gives it some
// (SlowFanout).
struct FanoutParts {
    Channels channels;
    Directory directory{2};
    stats::PipelineBlock block{};
    Conversations conversations;
    Fanout fanout;

    explicit FanoutParts(FakeStore& store, std::chrono::milliseconds worker_stuck_limit = Fanout::kWorkerStuckLimit)
        : conversations{store, block, {}}, fanout{channels, directory, conversations, block, 1u << 16, worker_stuck_limit} {
        fanout.set_workers(std::span<net::EnvelopeSink* const>(), 0);
    }

    void add_group(const std::string& id, std::vector<std::string> subscribers) {
        store::ChannelRecord r;
        r.id = id;
        r.type = kGroupChannel;
        r.subscribers = std::move(subscribers);
        channels.put(Channel::from(std::move(r)));
    }

    // Waits for the fan-out thread to have taken `n` messages, then a little
    // longer, so that one too many would show.
    uint64_t fanned_out(uint64_t n) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (block.fanout_messages.get() < n && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        return block.fanout_messages.get();
    }
};

// The IM core's pieces around one Committer, wired as im::Core wires them.
struct Rig : FanoutParts {
    FakeStore& store;
    IdGenerator ids{3};
    std::unique_ptr<Committer> committer;

    explicit Rig(FakeStore& s, CommitterOptions options = fast()) : FanoutParts(s), store(s) {
        fanout.start();
        committer = std::make_unique<Committer>(store, channels, ids, fanout, block, options);
    }
    ~Rig() {
        committer.reset();  // before the fan-out it pushes to
        fanout.stop();
    }
    static CommitterOptions fast() {
        CommitterOptions o;
        o.durability = Durability::Sync;
        o.commit_window_us = 0;
        return o;
    }
    void start() {
        std::string error;
        REQUIRE_MESSAGE(committer->start(error), error);
    }

    // As im::Core::send does: encode into a Payload, a waiter, submit, wait.
    Sent send(const Message& m, bool transient = false,
              std::shared_ptr<const std::vector<std::string>> receivers = nullptr) {
        CommitRequest request;
        request.sender_device = 2;
        request.message = encoded(m);
        const net::Payload shared = request.message;  // to read the id and seq it was given
        request.transient = transient;
        request.receivers = std::move(receivers);
        auto waiter = std::make_shared<CommitWaiter>();
        request.waiter = waiter;
        REQUIRE(committer->submit(std::move(request)));
        waiter->wait();
        return {waiter->ok, waiter->error, waiter->value, encoded_id(shared.bytes()), encoded_seq(shared.bytes())};
    }

    // A SEND a worker could not judge (its channel needs the datasource),
    // submitted without waiting; false when the committer refused it at once.
    bool submit_resolving(const Message& m, std::shared_ptr<CommitWaiter>& waiter) {
        CommitRequest request;
        request.resolve = true;
        request.message = encoded(m);
        waiter = std::make_shared<CommitWaiter>();
        request.waiter = waiter;
        return committer->submit(std::move(request));
    }

    Sent sync_ack(const std::string& uid, uint32_t seq) {
        CommitRequest request;
        request.kind = CommitRequest::Kind::CursorAdvance;
        request.uid = uid;
        request.cursor = seq;
        auto waiter = std::make_shared<CommitWaiter>();
        request.waiter = waiter;
        REQUIRE(committer->submit(std::move(request)));
        waiter->wait();
        return {waiter->ok, waiter->error, waiter->value};
    }
};

Message person(const std::string& from, const std::string& to, const std::string& payload,
               const std::string& client_msg_no = "", uint8_t flags = 0) {
    Message m;
    m.header_flags = flags;
    m.channel_type = kPersonChannel;
    m.from_uid = from;
    m.channel_id = to;
    m.client_msg_no = client_msg_no;
    m.payload = payload;
    m.timestamp = 1700000000;
    return m;
}

Message group(const std::string& from, const std::string& id, const std::string& payload,
              const std::string& client_msg_no = "", uint8_t flags = 0) {
    Message m = person(from, id, payload, client_msg_no, flags);
    m.channel_type = kGroupChannel;
    return m;
}

MessageView view_of(const FakeStore::Stored& s) {
    auto v = decode(std::span<const uint8_t>(s.bytes));
    REQUIRE(v);
    return *v;
}

std::vector<uint32_t> seqs_of(const std::vector<FakeStore::Stored>& v) {
    std::vector<uint32_t> out;
    for (const auto& s : v) out.push_back(s.seq);
    return out;
}

// Most cases' rig: one committer, started, on a store of its own.
struct OneNode {
    FakeStore store;
    Rig rig{store};
    OneNode() { rig.start(); }
};

}  // namespace

TEST_CASE_FIXTURE(OneNode, "committer: seqs 1, 2, 3 per log; person messages under the fake channel id") {
    rig.add_group("g1", {"alice", "bob"});

    const Sent a1 = rig.send(person("alice", "bob", "hi"));
    const Sent b1 = rig.send(person("bob", "alice", "hello"));
    const Sent g1 = rig.send(group("alice", "g1", "group 1"));
    const Sent a2 = rig.send(person("alice", "bob", "again"));
    const Sent c1 = rig.send(person("alice", "carol", "to carol"));
    const Sent g2 = rig.send(group("bob", "g1", "group 2"));
    for (const Sent* s : {&a1, &b1, &g1, &a2, &c1, &g2}) CHECK(s->ok);
    CHECK(a1.seq == 1);
    CHECK(b1.seq == 2);  // the same fake channel both ways
    CHECK(a2.seq == 3);
    CHECK(c1.seq == 1);
    CHECK(g1.seq == 1);
    CHECK(g2.seq == 2);

    // Ids: fresh snowflakes of this node, increasing in commit order.
    std::vector<int64_t> ids = {a1.id, b1.id, g1.id, a2.id, c1.id, g2.id};
    for (size_t i = 1; i < ids.size(); ++i) CHECK(ids[i] > ids[i - 1]);
    CHECK((a1.id >> 12 & 0x3ff) == 3);

    const auto chat = store.log(kPersonChannel, "bob@alice");
    REQUIRE(chat.size() == 3);
    CHECK(seqs_of(chat) == std::vector<uint32_t>{1, 2, 3});
    CHECK(view_of(chat[0]).payload == "hi");
    CHECK(view_of(chat[1]).payload == "hello");
    CHECK(view_of(chat[2]).payload == "again");
    // The stored bytes carry their id and seq; the channel id stays as sent.
    CHECK(view_of(chat[1]).message_seq == 2);
    CHECK(view_of(chat[1]).message_id == b1.id);
    CHECK(view_of(chat[1]).channel_id == "alice");
    CHECK(view_of(chat[1]).from_uid == "bob");
    CHECK(store.log(kPersonChannel, "bob").empty());
    CHECK(store.log(kPersonChannel, "alice").empty());
    CHECK(store.log(kPersonChannel, fake_channel_id("alice", "carol")).size() == 1);
    const auto grp = store.log(kGroupChannel, "g1");
    CHECK(seqs_of(grp) == std::vector<uint32_t>{1, 2});
    CHECK(view_of(grp[1]).message_id == g2.id);

    // The counters are written with the messages.
    CHECK(store.channel_counter(kPersonChannel, "bob@alice") == 3);
    CHECK(store.channel_counter(kGroupChannel, "g1") == 2);
    CHECK(store.channel_counter(kPersonChannel, fake_channel_id("alice", "carol")) == 1);
    CHECK(store.total_logged() == 6);
    CHECK(store.total_queued() == 0);
    CHECK(rig.block.messages_stored.get() == 6);
    CHECK(store.sync_flags.size() >= 1);
    CHECK(std::all_of(store.sync_flags.begin(), store.sync_flags.end(), [](bool b) { return b; }));
}

TEST_CASE_FIXTURE(OneNode, "committer: an API message without from_uid goes to the recipient's own person log") {
    const Sent s = rig.send(person("", "bob", "system says"));
    CHECK(s.ok);
    CHECK(s.seq == 1);
    CHECK(store.log(kPersonChannel, "bob").size() == 1);
}

TEST_CASE("committer: past max_cached_counters the seq cache drops the least recently used; dropped logs go on from the store") {
    FakeStore store;
    CommitterOptions options = Rig::fast();
    options.max_cached_counters = 4;
    Rig rig(store, options);
    rig.start();
    // A sender to ever new uids: one log, one counter each.
    for (int i = 0; i < 20; ++i) REQUIRE(rig.send(person("spammer", "u" + std::to_string(i), "hi")).seq == 1);
    CHECK(store.channel_seq_reads == 20);
    // Each log again: the seq continues whether its counter stayed or was
    // dropped (read again), and most were dropped.
    for (int i = 0; i < 20; ++i) CHECK(rig.send(person("spammer", "u" + std::to_string(i), "again")).seq == 2);
    CHECK(store.channel_seq_reads >= 20 + 20 - 5);
}

TEST_CASE("committer: past max_cached_counters a busy log stays cached among ever new ones") {
    FakeStore store;
    CommitterOptions options = Rig::fast();
    options.max_cached_counters = 4;
    Rig rig(store, options);
    rig.add_group("busy", {"a"});
    rig.start();
    REQUIRE(rig.send(group("a", "busy", "first")).seq == 1);
    // A sender to ever new uids, the busy group written between them: only
    // the new logs are read from the store (an every-other drop lost it).
    for (uint32_t i = 0; i < 40; ++i) {
        REQUIRE(rig.send(person("spammer", "u" + std::to_string(i), "hi")).seq == 1);
        REQUIRE(rig.send(group("a", "busy", "again")).seq == i + 2);
    }
    CHECK(store.channel_seq_reads == 1 + 40);
}

TEST_CASE("committer: RECVACK cursor advances take at most half the queue; SENDs the rest") {
    FakeStore store;
    CommitterOptions options = Rig::fast();
    options.max_queued = 4;
    Rig rig(store, options);  // not started: what is submitted stays queued
    auto advance = [&](uint32_t seq) {
        CommitRequest request;
        request.kind = CommitRequest::Kind::CursorAdvance;
        request.uid = "bob";
        request.cursor = seq;
        return rig.committer->submit(std::move(request));
    };
    auto send = [&] {
        CommitRequest request;
        request.message = encoded(group("a", "g", "m"));
        return rig.committer->submit(std::move(request));
    };
    CHECK(advance(1));
    CHECK(advance(2));
    CHECK_FALSE(advance(3));  // the next RECVACK moves the cursor as far
    CHECK(send());
    CHECK(send());
    CHECK_FALSE(send());  // full
    CHECK(rig.block.cursor_advances.get() == 2);
    CHECK(rig.block.commit_refused.get() == 2);
    rig.committer->stop();
}

TEST_CASE("committer: a new committer over the same store continues the seqs and ids") {
    FakeStore store;
    int64_t last_id = 0;
    {
        Rig rig(store);
        rig.start();
        rig.add_group("g", {"a"});
        for (int i = 1; i <= 3; ++i) CHECK(rig.send(group("a", "g", "m")).seq == uint32_t(i));
        const Sent p = rig.send(person("a", "b", "p"));
        CHECK(p.seq == 1);
        last_id = p.id;
        // Push the stored max id into the future: the next run must stay above it.
        std::lock_guard lock(store.mutex);
        store.max_id = last_id + (int64_t(3600000) << 22);
        last_id = store.max_id;
    }
    Rig again(store);
    again.add_group("g", {"a"});
    again.start();
    const Sent g4 = again.send(group("a", "g", "m4"));
    CHECK(g4.seq == 4);
    CHECK(g4.id > last_id);
    const Sent p2 = again.send(person("b", "a", "p2"));
    CHECK(p2.seq == 2);
    CHECK(seqs_of(store.log(kGroupChannel, "g")) == std::vector<uint32_t>{1, 2, 3, 4});
    CHECK(store.channel_counter(kGroupChannel, "g") == 4);
}

TEST_CASE_FIXTURE(OneNode, "committer: max_message_id is written with each batch") {
    rig.add_group("g", {"a"});
    for (int i = 0; i < 5; ++i) {
        const Sent s = rig.send(group("a", "g", "m"));
        CHECK(s.ok);
        CHECK(store.max_id_now() == s.id);
    }
    // A NoPersist message too (no log entry, but an id).
    const Sent n = rig.send(group("a", "g", "np", "", 0x01));
    CHECK(n.ok);
    CHECK(store.max_id_now() == n.id);
    std::lock_guard lock(store.mutex);
    for (int64_t id : store.batch_max_ids) CHECK(id != 0);
}

TEST_CASE_FIXTURE(OneNode, "committer: dedupe of (from_uid, client_msg_no) within the window") {
    rig.add_group("g", {"a", "b"});

    const Sent first = rig.send(group("a", "g", "once", "cmn-1"));
    const Sent resend = rig.send(group("a", "g", "once (resent)", "cmn-1"));
    CHECK(first.ok);
    CHECK(resend.ok);
    CHECK(resend.id == first.id);
    CHECK(resend.seq == first.seq);
    CHECK(store.log(kGroupChannel, "g").size() == 1);
    CHECK(rig.block.dedupe_hits.get() == 1);

    // Another uid with the same client_msg_no, or another client_msg_no: stored.
    const Sent other_uid = rig.send(group("b", "g", "b's", "cmn-1"));
    const Sent other_no = rig.send(group("a", "g", "a's second", "cmn-2"));
    CHECK(other_uid.seq == 2);
    CHECK(other_no.seq == 3);
    // No client_msg_no: never deduped.
    CHECK(rig.send(group("a", "g", "x")).seq == 4);
    CHECK(rig.send(group("a", "g", "x")).seq == 5);
    CHECK(rig.block.dedupe_hits.get() == 1);
    // The key is (uid, client_msg_no), not a concatenation.
    CHECK(rig.send(group("ab", "g", "y", "c")).seq == 6);
    CHECK(rig.send(group("a", "g", "y", "bc")).seq == 7);
    // Dedupe hits also for person messages, whichever recipient the resend names.
    const Sent p = rig.send(person("a", "b", "p", "cmn-p"));
    const Sent p_again = rig.send(person("a", "b", "p", "cmn-p"));
    CHECK(p_again.id == p.id);
    CHECK(p_again.seq == p.seq);
    CHECK(rig.block.dedupe_hits.get() == 2);
    CHECK(store.total_logged() == 8);
    // Written to the store's window for the next start.
    std::lock_guard lock(store.mutex);
    CHECK(store.dedupe.size() == 6);
}

TEST_CASE("committer: dedupe within one batch (a resend queued behind the first)") {
    FakeStore store;
    CommitterOptions o;
    o.durability = Durability::Group;
    o.commit_window_us = 200000;  // one batch gathers both
    Rig rig(store, o);
    rig.start();
    rig.add_group("g", {"a"});
    Sent results[2];
    std::thread t1([&] { results[0] = rig.send(group("a", "g", "m", "dup")); });
    std::thread t2([&] { results[1] = rig.send(group("a", "g", "m", "dup")); });
    t1.join();
    t2.join();
    CHECK(results[0].ok);
    CHECK(results[1].ok);
    CHECK(results[0].id == results[1].id);
    CHECK(results[0].seq == results[1].seq);
    CHECK(store.log(kGroupChannel, "g").size() == 1);
    CHECK(rig.block.dedupe_hits.get() == 1);
}

TEST_CASE("committer: after the dedupe window a resend is stored again") {
    FakeStore store;
    CommitterOptions o = Rig::fast();
    o.dedupe_window_ms = 1;
    Rig rig(store, o);
    rig.start();
    rig.add_group("g", {"a"});
    const Sent first = rig.send(group("a", "g", "m", "late"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const Sent later = rig.send(group("a", "g", "m", "late"));
    CHECK(first.ok);
    CHECK(later.ok);
    CHECK(later.id != first.id);
    CHECK(later.seq == 2);
    CHECK(store.log(kGroupChannel, "g").size() == 2);
    CHECK(rig.block.dedupe_hits.get() == 0);
}

TEST_CASE("committer: dedupe_window_ms 0 turns dedupe off (nothing remembered)") {
    FakeStore store;
    CommitterOptions o = Rig::fast();
    o.dedupe_window_ms = 0;
    Rig rig(store, o);
    rig.start();
    rig.add_group("g", {"a"});
    CHECK(rig.send(group("a", "g", "m", "same")).seq == 1);
    CHECK(rig.send(group("a", "g", "m", "same")).seq == 2);
    CHECK(rig.block.dedupe_hits.get() == 0);
    CHECK(rig.block.dedupe_entries.get() == 0);
    std::lock_guard lock(store.mutex);
    CHECK(store.dedupe.empty());
}

TEST_CASE("committer: the dedupe window is reloaded from the store at start") {
    FakeStore store;
    {
        std::lock_guard lock(store.mutex);
        store.dedupe.push_back({wall_ms() - 1000, "a", "old-cmn", 777, 42});
        store.dedupe.push_back({wall_ms() - 10'000'000, "a", "expired-cmn", 778, 43});  // outside the window
    }
    int64_t first_id = 0;
    {
        Rig rig(store);
        rig.start();
        rig.add_group("g", {"a"});
        const Sent s = rig.send(group("a", "g", "m", "old-cmn"));
        CHECK(s.ok);
        CHECK(s.id == 777);
        CHECK(s.seq == 42);
        CHECK(store.log(kGroupChannel, "g").empty());
        CHECK(rig.block.dedupe_hits.get() == 1);
        const Sent e = rig.send(group("a", "g", "m", "expired-cmn"));
        CHECK(e.seq == 1);
        CHECK(e.id != 778);
        const Sent fresh = rig.send(group("a", "g", "m", "new-cmn"));
        CHECK(fresh.seq == 2);
        first_id = fresh.id;
    }
    // A restart remembers what the previous run stored.
    Rig again(store);
    again.start();
    again.add_group("g", {"a"});
    const Sent s = again.send(group("a", "g", "m", "new-cmn"));
    CHECK(s.id == first_id);
    CHECK(s.seq == 2);
    CHECK(again.block.dedupe_hits.get() == 1);
    CHECK(store.log(kGroupChannel, "g").size() == 2);
}

TEST_CASE("committer: start fails when the dedupe window cannot be loaded") {
    FakeStore store;
    store.fail_load_dedupe = true;
    Rig rig(store);
    std::string error;
    CHECK_FALSE(rig.committer->start(error));
    CHECK(error.find("load_dedupe failed") != std::string::npos);
}

TEST_CASE_FIXTURE(OneNode, "committer: a store commit failure answers an error, stores nothing, and leaves no seq gap") {
    rig.add_group("g", {"a", "b"});
    CHECK(rig.send(group("a", "g", "1")).seq == 1);

    store.fail_commit = true;
    const Sent failed = rig.send(group("a", "g", "2 (fails)", "cmn-f"));
    CHECK_FALSE(failed.ok);
    CHECK(failed.error.find("disk on fire") != std::string::npos);
    const Sent failed_sync_once = rig.send(group("a", "g", "so (fails)", "", 0x04));
    CHECK_FALSE(failed_sync_once.ok);
    CHECK(store.log(kGroupChannel, "g").size() == 1);
    CHECK(store.total_queued() == 0);
    CHECK(store.channel_counter(kGroupChannel, "g") == 1);
    CHECK(rig.block.commit_failures.get() >= 2);

    store.fail_commit = false;
    const Sent next = rig.send(group("a", "g", "2"));
    CHECK(next.ok);
    CHECK(next.seq == 2);  // the seq the failed one would have had
    // The failed message's dedupe entry went with it: its resend is stored.
    const Sent retry = rig.send(group("a", "g", "2 (retry)", "cmn-f"));
    CHECK(retry.ok);
    CHECK(retry.seq == 3);
    CHECK(rig.block.dedupe_hits.get() == 0);
    // And the queue seqs of the failed SyncOnce copies are handed out again.
    const Sent so = rig.send(group("a", "g", "so", "", 0x04));
    CHECK(so.ok);
    CHECK(seqs_of(store.queue("a")) == std::vector<uint32_t>{1});
    CHECK(seqs_of(store.queue("b")) == std::vector<uint32_t>{1});
    CHECK(seqs_of(store.log(kGroupChannel, "g")) == std::vector<uint32_t>{1, 2, 3});
    CHECK(store.channel_counter(kGroupChannel, "g") == 3);
}

TEST_CASE_FIXTURE(OneNode, "committer: a failed seq read fails the message and stores nothing of its batch") {
    rig.add_group("g", {"a", "b"});
    store.fail_channel_seq = true;
    const Sent failed = rig.send(group("a", "g", "x"));
    CHECK_FALSE(failed.ok);
    CHECK_FALSE(failed.error.empty());
    CHECK(store.total_logged() == 0);
    store.fail_channel_seq = false;
    CHECK(rig.send(group("a", "g", "y")).seq == 1);

    // A SyncOnce copy whose queue seq cannot be read.
    store.fail_queue_seq = true;
    CHECK_FALSE(rig.send(group("a", "g", "z", "", 0x04)).ok);
    CHECK(store.total_queued() == 0);
    store.fail_queue_seq = false;
    CHECK(rig.send(group("a", "g", "z", "", 0x04)).ok);
    CHECK(seqs_of(store.queue("a")) == std::vector<uint32_t>{1});
}

TEST_CASE("committer: SyncOnce group message: one queue copy per subscriber with its own queue seq") {
    FakeStore store;
    {
        std::lock_guard lock(store.mutex);
        store.queue_seqs["c"] = 10;  // c's queue has history
    }
    Rig rig(store);
    rig.start();
    rig.add_group("g", {"a", "b", "c"});

    const Sent s1 = rig.send(group("a", "g", "so-1", "", 0x04 | 0x02));
    CHECK(s1.ok);
    CHECK(s1.seq == 0);  // not in the channel log
    CHECK(store.log(kGroupChannel, "g").empty());
    CHECK(store.channel_counter(kGroupChannel, "g") == 0);
    const Sent s2 = rig.send(group("b", "g", "so-2", "", 0x04 | 0x02));
    CHECK(s2.ok);

    const auto qa = store.queue("a"), qb = store.queue("b"), qc = store.queue("c");
    CHECK(seqs_of(qa) == std::vector<uint32_t>{1, 2});
    CHECK(seqs_of(qb) == std::vector<uint32_t>{1, 2});
    CHECK(seqs_of(qc) == std::vector<uint32_t>{11, 12});
    CHECK(store.counter(store.queue_seqs, "a") == 2);
    CHECK(store.counter(store.queue_seqs, "c") == 12);
    CHECK(store.total_queued() == 6);
    CHECK(rig.block.queue_copies_stored.get() == 6);

    // Each copy: the message's id, the user's queue seq, the group's id, and
    // no red dot for the sender's own copy.
    const MessageView a1 = view_of(qa[0]), b1 = view_of(qb[0]), c1 = view_of(qc[0]);
    for (const MessageView* v : {&a1, &b1, &c1}) {
        CHECK(v->message_id == s1.id);
        CHECK(v->channel_id == "g");
        CHECK(v->channel_type == kGroupChannel);
        CHECK(v->payload == "so-1");
        CHECK(v->sync_once());
        CHECK(v->from_uid == "a");
    }
    CHECK(a1.message_seq == 1);
    CHECK(c1.message_seq == 11);
    CHECK_FALSE(a1.red_dot());  // the sender's copy
    CHECK(b1.red_dot());
    CHECK(c1.red_dot());
    CHECK_FALSE(view_of(qb[1]).red_dot());  // b sent the second
    CHECK(view_of(qa[1]).red_dot());
}

TEST_CASE_FIXTURE(OneNode, "committer: SyncOnce person message: each user's copy names the peer (S7)") {
    const Sent s = rig.send(person("alice", "bob", "so", "", 0x04 | 0x02));
    CHECK(s.ok);
    CHECK(s.seq == 0);
    CHECK(store.total_logged() == 0);
    const auto qa = store.queue("alice"), qb = store.queue("bob");
    REQUIRE(qa.size() == 1);
    REQUIRE(qb.size() == 1);
    const MessageView a = view_of(qa[0]), b = view_of(qb[0]);
    CHECK(a.channel_id == "bob");    // the sender's copy: the recipient
    CHECK(b.channel_id == "alice");  // the recipient's copy: the sender
    CHECK(a.channel_type == kPersonChannel);
    CHECK(a.from_uid == "alice");
    CHECK(b.from_uid == "alice");
    CHECK_FALSE(a.red_dot());
    CHECK(b.red_dot());
    CHECK(a.message_id == s.id);
    CHECK(b.message_id == s.id);

    // Self-chat: one copy.
    CHECK(rig.send(person("carol", "carol", "me", "", 0x04)).ok);
    CHECK(store.queue("carol").size() == 1);
    // An explicit receiver list decides who gets a copy.
    auto receivers = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"x", "y"});
    CHECK(rig.send(group("sys", "g-none", "to x and y", "", 0x04), false, receivers).ok);
    CHECK(store.queue("x").size() == 1);
    CHECK(store.queue("y").size() == 1);
    CHECK(store.queue("sys").empty());
}

TEST_CASE_FIXTURE(OneNode, "committer: SyncOnce person copies name the channel as the RECV does (§8 step 3, S7)") {
    // An API person message with an explicit receiver list: the recipient's
    // copy names the sender; everyone else's (the sender, a third uid) the
    // recipient, as the fan-out's RECV does (kRewriteChannel only for
    // uid == channel_id).
    auto receivers =
        std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"bob", "carol", "alice"});
    CHECK(rig.send(person("alice", "bob", "so", "", 0x04), false, receivers).ok);
    const auto qa = store.queue("alice"), qb = store.queue("bob"), qc = store.queue("carol");
    REQUIRE(qa.size() == 1);
    REQUIRE(qb.size() == 1);
    REQUIRE(qc.size() == 1);
    CHECK(view_of(qb[0]).channel_id == "alice");
    CHECK(view_of(qa[0]).channel_id == "bob");
    CHECK(view_of(qc[0]).channel_id == "bob");
}

TEST_CASE("committer: dedupe_max forgets the oldest remembered pair") {
    FakeStore store;
    CommitterOptions o = Rig::fast();
    o.dedupe_max = 2;
    Rig rig(store, o);
    rig.start();
    rig.add_group("g", {"a"});
    const Sent a1 = rig.send(group("a", "g", "m", "k1"));
    const Sent a2 = rig.send(group("a", "g", "m", "k2"));
    const Sent a3 = rig.send(group("a", "g", "m", "k3"));  // k1 forgotten
    CHECK(rig.block.dedupe_evicted.get() == 1);
    CHECK(rig.send(group("a", "g", "m", "k3")).id == a3.id);
    CHECK(rig.send(group("a", "g", "m", "k2")).id == a2.id);
    const Sent again = rig.send(group("a", "g", "m", "k1"));
    CHECK(again.id != a1.id);
    CHECK(again.seq == 4);
    CHECK(rig.block.dedupe_hits.get() == 2);
}

TEST_CASE("committer: dedupe_max eviction after a failed commit still forgets the oldest pair") {
    // A failed batch forgets its pairs; when one of them is sent again later
    // it is newer than the pairs stored in between, so those go first.
    FakeStore store;
    CommitterOptions o = Rig::fast();
    o.dedupe_max = 2;
    Rig rig(store, o);
    rig.start();
    rig.add_group("g", {"a"});
    store.fail_commit = true;
    CHECK_FALSE(rig.send(group("a", "g", "m", "K")).ok);
    store.fail_commit = false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const Sent l = rig.send(group("a", "g", "m", "L"));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const Sent k = rig.send(group("a", "g", "m", "K"));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const Sent m = rig.send(group("a", "g", "m", "M"));  // full: L (the oldest) is forgotten
    CHECK(l.ok);
    CHECK(k.ok);
    CHECK(m.ok);
    const Sent k_again = rig.send(group("a", "g", "m", "K"));
    CHECK(k_again.id == k.id);  // still remembered
    CHECK(k_again.seq == k.seq);
    CHECK(store.log(kGroupChannel, "g").size() == 3);
}

TEST_CASE("committer: dedupe_max eviction skips a pair's older record (stored again since)") {
    // The store's window holds K twice (sent again after a shorter window
    // of the previous run): K's first record is not the oldest live pair, L is.
    FakeStore store;
    const int64_t now = wall_ms();
    {
        std::lock_guard lock(store.mutex);
        store.dedupe.push_back({now - 3000, "a", "K", 101, 1});
        store.dedupe.push_back({now - 2000, "a", "L", 102, 2});
        store.dedupe.push_back({now - 1000, "a", "K", 103, 3});
    }
    CommitterOptions o = Rig::fast();
    o.dedupe_max = 2;
    Rig rig(store, o);
    rig.start();
    rig.add_group("g", {"a"});
    CHECK(rig.send(group("a", "g", "m", "M")).seq == 1);  // full: L goes
    const Sent k = rig.send(group("a", "g", "m", "K"));
    CHECK(k.id == 103);
    CHECK(k.seq == 3);
    const Sent l = rig.send(group("a", "g", "m", "L"));
    CHECK(l.id != 102);
    CHECK(l.seq == 2);
}

TEST_CASE_FIXTURE(OneNode, "committer: NoPersist is not stored and has seq 0") {
    rig.add_group("g", {"a", "b"});
    const Sent np = rig.send(group("a", "g", "np", "", 0x01));
    CHECK(np.ok);
    CHECK(np.seq == 0);
    CHECK(np.id != 0);
    const Sent np_person = rig.send(person("a", "b", "np", "", 0x01));
    CHECK(np_person.ok);
    CHECK(np_person.seq == 0);
    // NoPersist with SyncOnce: no queue copies either.
    CHECK(rig.send(group("a", "g", "np+so", "", 0x01 | 0x04)).ok);
    CHECK(store.total_logged() == 0);
    CHECK(store.total_queued() == 0);
    CHECK(store.channel_counter(kGroupChannel, "g") == 0);
    // The next persisted message starts at 1.
    CHECK(rig.send(group("a", "g", "p")).seq == 1);
}

TEST_CASE_FIXTURE(OneNode, "committer: transient requests (temporary channels) are not stored") {
    auto receivers = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"a", "b"});
    const Sent t = rig.send(group("", "abc@tmp", "tmp", ""), true, receivers);
    CHECK(t.ok);
    CHECK(t.seq == 0);
    CHECK(t.id != 0);
    CHECK(store.total_logged() == 0);
    CHECK(store.channel_counter(kGroupChannel, "abc@tmp") == 0);
    // The same channel, persisted: the counter was not consumed by the transient one.
    CHECK(rig.send(group("", "abc@tmp", "kept"), false, receivers).seq == 1);
}

TEST_CASE_FIXTURE(OneNode, "committer: cursor = max(cursor, min(v, last queue seq)), never backwards") {
    rig.add_group("g", {"a", "b"});
    for (int i = 0; i < 3; ++i) CHECK(rig.send(group("b", "g", "so", "", 0x04)).ok);
    CHECK(store.counter(store.queue_seqs, "a") == 3);

    Sent r = rig.sync_ack("a", 2);
    CHECK(r.ok);
    CHECK(r.value == 2);
    CHECK(store.counter(store.cursors, "a") == 2);
    r = rig.sync_ack("a", 100);  // past the last queue seq: clamped
    CHECK(r.ok);
    CHECK(r.value == 3);
    CHECK(store.counter(store.cursors, "a") == 3);
    r = rig.sync_ack("a", 1);  // backwards: stays
    CHECK(r.ok);
    CHECK(r.value == 3);
    CHECK(store.counter(store.cursors, "a") == 3);
    // A user without a queue stays at 0.
    r = rig.sync_ack("nobody", 5);
    CHECK(r.ok);
    CHECK(r.value == 0);
    CHECK(store.counter(store.cursors, "nobody") == 0);
    // More copies later: the cursor can advance to them.
    CHECK(rig.send(group("b", "g", "so", "", 0x04)).ok);
    r = rig.sync_ack("a", 100);
    CHECK(r.value == 4);
    CHECK(store.counter(store.cursors, "a") == 4);
    // b's cursor is its own.
    CHECK(rig.sync_ack("b", 2).value == 2);
    CHECK(store.counter(store.cursors, "a") == 4);
    CHECK(store.counter(store.cursors, "b") == 2);
}

TEST_CASE("committer: the cursor continues from the store after a restart") {
    FakeStore store;
    {
        std::lock_guard lock(store.mutex);
        store.queue_seqs["u"] = 10;
        store.cursors["u"] = 7;
    }
    Rig rig(store);
    rig.start();
    CHECK(rig.sync_ack("u", 3).value == 7);
    CHECK(store.counter(store.cursors, "u") == 7);
    CHECK(rig.sync_ack("u", 9).value == 9);
    CHECK(store.counter(store.cursors, "u") == 9);
}

TEST_CASE("committer: 4 threads into one channel: seqs gapless, stored order == seq order") {
    FakeStore store;
    CommitterOptions o;
    o.durability = Durability::Group;
    o.commit_window_us = 200;
    o.max_batch = 64;
    Rig rig(store, o);
    rig.start();
    rig.add_group("busy", {"t0", "t1", "t2", "t3"});
    constexpr int kThreads = 4, kPer = 1500;
    std::vector<std::vector<Sent>> results(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPer; ++i) {
                // Every other message of thread 0 is a person message (another log).
                if (t == 0 && i % 2)
                    results[t].push_back(rig.send(person("t0", "t1", std::to_string(i))));
                else
                    results[t].push_back(
                        rig.send(group("t" + std::to_string(t), "busy", std::to_string(i), "c" + std::to_string(i))));
            }
        });
    for (auto& th : threads) th.join();

    const size_t person_count = kPer / 2, group_count = kThreads * kPer - person_count;
    const auto busy = store.log(kGroupChannel, "busy");
    REQUIRE(busy.size() == group_count);
    bool in_order = true;
    for (size_t i = 0; i < busy.size(); ++i) {
        in_order &= busy[i].seq == i + 1;
        in_order &= view_of(busy[i]).message_seq == i + 1;
        if (i) in_order &= view_of(busy[i]).message_id > view_of(busy[i - 1]).message_id;
    }
    CHECK(in_order);
    const auto chat = store.log(kPersonChannel, fake_channel_id("t0", "t1"));
    REQUIRE(chat.size() == person_count);
    for (size_t i = 0; i < chat.size(); ++i) CHECK(chat[i].seq == i + 1);
    CHECK(store.channel_counter(kGroupChannel, "busy") == group_count);

    // Each thread saw its own messages' seqs increase, and all of them are distinct.
    std::set<uint32_t> seen;
    for (int t = 0; t < kThreads; ++t) {
        uint32_t last = 0;
        for (size_t i = 0; i < results[t].size(); ++i) {
            const Sent& s = results[t][i];
            CHECK(s.ok);
            if (t == 0 && i % 2) continue;
            CHECK(s.seq > last);
            last = s.seq;
            CHECK(seen.insert(s.seq).second);
        }
    }
    CHECK(seen.size() == group_count);
    // Batches formed (group commit), and each wrote its largest id.
    std::lock_guard lock(store.mutex);
    CHECK(store.commits < size_t(kThreads) * kPer);
    for (int64_t id : store.batch_max_ids) CHECK(id != 0);
    CHECK(store.max_id == std::max(view_of(busy.back()).message_id, view_of(chat.back()).message_id));
}

TEST_CASE_FIXTURE(OneNode, "committer: stored and NoPersist messages go to the fan-out; resends and failures do not") {
    rig.add_group("g", {"a", "b"});
    CHECK(rig.send(group("a", "g", "1", "k1")).ok);
    CHECK(rig.send(group("a", "g", "1 again", "k1")).ok);  // a resend: answered, not delivered again
    CHECK(rig.send(group("a", "g", "np", "", 0x01)).ok);    // NoPersist: delivered
    CHECK(rig.send(group("a", "g", "so", "", 0x04)).ok);    // SyncOnce: delivered
    store.fail_commit = true;
    CHECK_FALSE(rig.send(group("a", "g", "lost")).ok);      // failed: not delivered
    store.fail_commit = false;
    CHECK(rig.sync_ack("a", 1).ok);                          // not a message
    CHECK(rig.send(person("a", "b", "p")).ok);
    // The fan-out thread runs on its own: wait for it, then make sure no more come.
    CHECK(rig.fanned_out(4) == 4);
    // Nobody is online (no directory entries): b of each group message and b of the chat.
    CHECK(rig.block.offline_receivers.get() == 4);
}

TEST_CASE_FIXTURE(OneNode, "committer: stop commits what is queued; submit after stop is refused") {
    rig.add_group("g", {"a"});
    std::vector<std::shared_ptr<CommitWaiter>> waiters;
    for (int i = 0; i < 100; ++i) {
        CommitRequest r;
        r.message = encoded(group("a", "g", "m"));
        r.waiter = std::make_shared<CommitWaiter>();
        waiters.push_back(r.waiter);
        REQUIRE(rig.committer->submit(std::move(r)));
    }
    rig.committer->stop();
    for (auto& w : waiters) {
        CHECK(w->done);
        CHECK(w->ok);
    }
    CHECK(store.log(kGroupChannel, "g").size() == 100);
    CommitRequest late;
    late.kind = CommitRequest::Kind::CursorAdvance;
    late.uid = "a";
    CHECK_FALSE(rig.committer->submit(std::move(late)));
    CHECK(rig.block.commit_refused.get() == 1);
}

TEST_CASE("committer: two committers on one shared store, one group: seqs gapless, conflicts redone") {
    FakeStore store;
    store.shared_mode = true;
    CommitterOptions o;
    o.durability = Durability::Group;
    o.commit_window_us = 100;
    o.max_batch = 16;
    Rig node1(store, o), node2(store, o);  // two nodes: each its own committer and seq cache
    node1.start();
    node2.start();
    node1.add_group("g", {"a", "b"});
    node2.add_group("g", {"a", "b"});
    constexpr int kPer = 400;
    std::vector<Sent> sent1, sent2;
    std::thread t1([&] {
        for (int i = 0; i < kPer; ++i) sent1.push_back(node1.send(group("a", "g", "1-" + std::to_string(i), "a" + std::to_string(i))));
    });
    std::thread t2([&] {
        for (int i = 0; i < kPer; ++i) sent2.push_back(node2.send(group("b", "g", "2-" + std::to_string(i), "b" + std::to_string(i))));
    });
    t1.join();
    t2.join();
    const auto log = store.log(kGroupChannel, "g");
    REQUIRE(log.size() == 2 * kPer);
    for (size_t i = 0; i < log.size(); ++i) {
        CHECK(log[i].seq == i + 1);
        CHECK(view_of(log[i]).message_seq == i + 1);
    }
    std::set<uint32_t> seqs;
    for (const auto* sent : {&sent1, &sent2})
        for (const Sent& s : *sent) {
            CHECK(s.ok);
            CHECK(seqs.insert(s.seq).second);
        }
    // Each node's first commit after the other's raced it was refused and redone.
    CHECK(store.conflicts > 0);
    CHECK(node1.block.commit_conflicts.get() + node2.block.commit_conflicts.get() == store.conflicts);
    CHECK(node1.block.commit_failures.get() + node2.block.commit_failures.get() == 0);
}

namespace {

// Two nodes on one shared store (as on Redis), started, each with group g = {a, b}.
struct TwoNodes {
    FakeStore store;
    Rig node1{store};
    Rig node2{store};
    TwoNodes() {
        store.shared_mode = true;
        node1.start();
        node2.start();
        node1.add_group("g", {"a", "b"});
        node2.add_group("g", {"a", "b"});
    }
};

}  // namespace

TEST_CASE_FIXTURE(TwoNodes, "committer: a SEND resent to another node after its first node stored it is answered, not stored twice") {
    const Sent first = node1.send(group("a", "g", "hello", "cmn-moved"));
    REQUIRE(first.ok);
    // The client lost node 1 before its SENDACK and resent to node 2.
    const Sent resent = node2.send(group("a", "g", "hello", "cmn-moved"));
    CHECK(resent.ok);
    CHECK(resent.id == first.id);
    CHECK(resent.seq == first.seq);
    CHECK(store.log(kGroupChannel, "g").size() == 1);
    CHECK(node2.block.dedupe_hits.get() == 1);
    // Node 2 goes on from the store's seq, not from its own empty cache.
    const Sent next = node2.send(group("b", "g", "next", "cmn-next"));
    CHECK(next.seq == 2);
}

TEST_CASE_FIXTURE(TwoNodes, "committer: a resend found in the store but not confirmed replicated gets reason 0, then its first id") {
    // Node 1's batch was written on the master but its WAIT fell short: the
    // record may vanish in a failover, so node 2 must not ack the resend from
    // it until the replicas have it.
    store.unreplicated_commits = 1;
    const Sent first = node1.send(group("a", "g", "hello", "cmn-r"));
    CHECK_FALSE(first.ok);
    store.reads_unreplicated = true;
    const Sent early = node2.send(group("a", "g", "hello", "cmn-r"));
    CHECK_FALSE(early.ok);
    CHECK(early.error.find("not confirmed") != std::string::npos);
    CHECK(store.confirm_dedupe_calls == 1);  // one wait, no retry loop on it
    store.reads_unreplicated = false;
    const Sent later = node2.send(group("a", "g", "hello", "cmn-r"));
    CHECK(later.ok);
    CHECK(later.seq == 1);
    CHECK(store.log(kGroupChannel, "g").size() == 1);
}

TEST_CASE("committer: a batch that keeps conflicting fails with reason 0 after bounded retries") {
    // A store whose counter always moves: every commit conflicts.
    struct Racing final : public FakeStore {
        store::Status commit(const store::WriteBatch& batch, bool sync) override {
            {
                std::lock_guard lock(mutex);
                for (const auto& c : batch.channel_seqs) channel_seqs[c.log] = c.previous + 1000;
            }
            return FakeStore::commit(batch, sync);
        }
    } store;
    store.shared_mode = true;
    Rig rig(store);
    rig.start();
    rig.add_group("g", {"a"});
    const Sent s = rig.send(group("a", "g", "never", "cmn-x"));
    CHECK_FALSE(s.ok);
    CHECK(s.error.find("conflict") != std::string::npos);
    CHECK(store.log(kGroupChannel, "g").empty());
    CHECK(rig.block.commit_failures.get() == 1);
    CHECK(rig.block.commit_conflicts.get() == 8);
}

TEST_CASE_FIXTURE(TwoNodes, "committer: on a shared store the SyncOnce cursor follows queue seqs other nodes handed out") {
    // bob's queue gets copy 1 through node 1; bob acknowledges it through node 2.
    REQUIRE(node1.send(person("alice", "bob", "one", "", 0x04)).ok);
    CHECK(node2.sync_ack("bob", 1).value == 1);
    // Copy 2 through node 1 again: node 2's cached last queue seq (1) is stale.
    REQUIRE(node1.send(person("alice", "bob", "two", "", 0x04)).ok);
    CHECK(node2.sync_ack("bob", 2).value == 2);
    CHECK(store.counter(store.cursors, "bob") == 2);
    // The cursor another node moved is not moved back.
    CHECK(node1.sync_ack("bob", 1).value == 2);
    CHECK(store.counter(store.cursors, "bob") == 2);
}

TEST_CASE_FIXTURE(OneNode, "committer: a cursor advance without a waiter (a RECVACK) whose queue seq cannot be read fails alone") {
    store.fail_queue_seq = true;
    CommitRequest request;  // as the gateway submits a SyncOnce RECVACK: no waiter
    request.kind = CommitRequest::Kind::CursorAdvance;
    request.uid = "bob";
    request.cursor = 3;
    REQUIRE(rig.committer->submit(std::move(request)));
    const Sent after = rig.sync_ack("carol", 1);  // queued behind it: the committer went on
    CHECK_FALSE(after.ok);                          // (the same failing read)
    store.fail_queue_seq = false;
    CHECK(rig.send(group("a", "g", "still working")).ok);
}

namespace {

// One node on a store shared with other nodes (as on Redis), with group
// g = {a, b}; a case sets the store's faults, then starts it.
struct SharedNode {
    FakeStore store;
    Rig rig{store};
    SharedNode() {
        store.shared_mode = true;
        rig.add_group("g", {"a", "b"});
    }
};

}  // namespace

TEST_CASE_FIXTURE(SharedNode, "committer: a lost reply after the write: answered success, fanned out once, a resend is a dedupe hit") {
    store.lose_reply_after_write = 1;
    rig.start();
    const Sent first = rig.send(group("a", "g", "1", "k1"));
    CHECK(first.ok);
    CHECK(first.seq == 1);
    CHECK(store.outcome_calls == 1);
    const Sent resend = rig.send(group("a", "g", "1 again", "k1"));
    CHECK(resend.ok);
    CHECK(resend.id == first.id);
    CHECK(resend.seq == 1);
    CHECK(rig.send(group("a", "g", "2")).seq == 2);
    CHECK(seqs_of(store.log(kGroupChannel, "g")) == std::vector<uint32_t>{1, 2});
    CHECK(rig.fanned_out(2) == 2);  // "1" once, "2"; the resend not
}

TEST_CASE_FIXTURE(SharedNode, "committer: a lost reply found written without known replicas: reason 0, delivered once, a resend is a dedupe hit") {
    store.lose_reply_after_write = 1;
    store.outcome_unreplicated = true;
    rig.start();
    const Sent first = rig.send(group("a", "g", "1", "k1"));
    CHECK_FALSE(first.ok);  // the SENDACK promises the replicas: not known
    const Sent resend = rig.send(group("a", "g", "1 again", "k1"));
    CHECK(resend.ok);
    CHECK(resend.seq == 1);
    CHECK(seqs_of(store.log(kGroupChannel, "g")) == std::vector<uint32_t>{1});
    CHECK(rig.fanned_out(1) == 1);
}

TEST_CASE_FIXTURE(SharedNode, "committer: a lost reply before the write: prepared again, stored once, fanned out once") {
    store.lose_reply_unwritten = 1;
    rig.start();
    const Sent first = rig.send(group("a", "g", "1", "k1"));
    CHECK(first.ok);
    CHECK(first.seq == 1);
    CHECK(store.fenced_ids.size() == 1);  // the lost copy can never land
    const Sent resend = rig.send(group("a", "g", "1 again", "k1"));
    CHECK(resend.ok);
    CHECK(resend.id == first.id);
    CHECK(seqs_of(store.log(kGroupChannel, "g")) == std::vector<uint32_t>{1});
    CHECK(rig.fanned_out(1) == 1);
}

TEST_CASE("committer: an outcome still unknown after the wait: reason 0, the batch kept and settled later") {
    for (const bool was_written : {true, false}) {
        CAPTURE(was_written);
        FakeStore store;
        store.shared_mode = true;
        (was_written ? store.lose_reply_after_write : store.lose_reply_unwritten) = 1;
        store.fail_outcome = 1000000;
        CommitterOptions options = Rig::fast();
        options.outcome_wait_ms = 50;
        Rig rig(store, options);
        rig.start();
        rig.add_group("g", {"a", "b"});
        const Sent first = rig.send(group("a", "g", "1", "k1"));
        CHECK_FALSE(first.ok);
        CHECK(store.outcome_calls > 1);  // asked again with backoff
        // While its outcome is unknown nothing else is written, a resend included.
        CHECK_FALSE(rig.send(group("a", "g", "1 again", "k1")).ok);
        CHECK_FALSE(rig.send(group("a", "g", "other")).ok);
        CHECK(rig.fanned_out(0) == 0);
        store.fail_outcome = 0;  // the store is back
        const Sent resend = rig.send(group("a", "g", "1 again", "k1"));
        CHECK(resend.ok);
        CHECK(resend.seq == 1);
        if (was_written) CHECK(resend.id == first.id);  // a dedupe hit of the stored one
        CHECK(rig.send(group("a", "g", "2")).seq == 2);
        CHECK(seqs_of(store.log(kGroupChannel, "g")) == std::vector<uint32_t>{1, 2});
        CHECK(rig.fanned_out(2) == 2);  // seq 1 once (late, or as the resend) and seq 2
    }
}

TEST_CASE_FIXTURE(SharedNode, "committer: a commit written without its replicas: reason 0, but delivered; a resend is a dedupe hit") {
    store.unreplicated_commits = 1;
    rig.start();
    const Sent first = rig.send(group("a", "g", "1", "k1"));
    CHECK_FALSE(first.ok);
    CHECK(first.error.find("replicas") != std::string::npos);
    CHECK(rig.fanned_out(1) == 1);  // stored on the master every node reads: delivered
    const Sent resend = rig.send(group("a", "g", "1 again", "k1"));
    CHECK(resend.ok);
    CHECK(resend.id == first.id);
    CHECK(resend.seq == 1);
    CHECK(rig.send(group("a", "g", "2")).seq == 2);
    CHECK(seqs_of(store.log(kGroupChannel, "g")) == std::vector<uint32_t>{1, 2});
    CHECK(rig.fanned_out(2) == 2);
}

namespace {

bool finished(const std::shared_ptr<CommitWaiter>& waiter) {
    std::lock_guard lock(waiter->mutex);
    return waiter->done;
}

// A datasource stand-in for the resolver: a channel named "slow" is held
// until released; "dead" fails; the rest load at once and are judged allowed
// unless named "closed" (reason 11).
struct FakeDatasource {
    std::mutex mutex;
    std::condition_variable cv;
    bool released = false;
    std::map<std::string, int> refreshes;

    bool refresh(std::string_view id, std::string& error) {
        std::unique_lock lock(mutex);
        ++refreshes[std::string(id)];
        if (id == "slow") cv.wait(lock, [this] { return released; });
        if (id == "dead") {
            error = "datasource: getSubscribers dead/2: HTTP 500";
            return false;
        }
        return true;
    }
    void release() {
        std::lock_guard lock(mutex);
        released = true;
        cv.notify_all();
    }
    int count(const std::string& id) {
        std::lock_guard lock(mutex);
        return refreshes[id];
    }
};

struct ResolvingRig {
    FakeStore store;
    Rig rig{store};
    FakeDatasource datasource;
    std::unique_ptr<Resolver> resolver;

    explicit ResolvingRig(ResolverOptions options = {}) {
        resolver = std::make_unique<Resolver>(
            options, [this](uint8_t, std::string_view id, std::string& error) { return datasource.refresh(id, error); },
            [](const MessageView& m) { return uint8_t(m.channel_id == "closed" ? 11 : 1); },
            [this](CommitRequest&& request) { CHECK(rig.committer->submit(std::move(request))); });
        rig.committer->set_resolver(resolver.get());
        rig.start();
        rig.add_group("g", {"a", "b"});
    }
    ~ResolvingRig() {
        datasource.release();
        resolver->stop();  // before the committer, as im::Core stops them
    }
};

}  // namespace

TEST_CASE("resolver: a SEND waiting for a hanging datasource holds up no other SEND; it is stored once answered") {
    ResolvingRig r;
    r.resolver->start();
    std::shared_ptr<CommitWaiter> slow;
    REQUIRE(r.rig.submit_resolving(group("a", "slow", "waits"), slow));
    for (int i = 0; i < 200 && r.datasource.count("slow") == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(r.datasource.count("slow") == 1);
    // The committer goes on meanwhile: a SEND that needs no datasource, and
    // one to another channel that does.
    CHECK(r.rig.send(group("a", "g", "at once")).ok);
    std::shared_ptr<CommitWaiter> other;
    REQUIRE(r.rig.submit_resolving(group("a", "other", "its own fetch"), other));
    other->wait(std::chrono::seconds(5));
    CHECK(other->ok);
    CHECK_FALSE(finished(slow));
    CHECK(r.resolver->parked() == 1);
    // Until it is handed back, the worker parks SENDs to that channel behind it.
    CHECK(r.resolver->pending(kGroupChannel, "slow"));
    // "other" leaves the resolver's table just after its SEND is handed back.
    for (int i = 0; i < 200 && r.resolver->pending(kGroupChannel, "other"); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK_FALSE(r.resolver->pending(kGroupChannel, "other"));
    CHECK_FALSE(r.resolver->pending(kPersonChannel, "slow"));
    r.datasource.release();
    slow->wait(std::chrono::seconds(5));
    CHECK(slow->ok);
    CHECK(r.store.log(kGroupChannel, "slow").size() == 1);
    CHECK(r.resolver->parked() == 0);
    for (int i = 0; i < 200 && r.resolver->pending(kGroupChannel, "slow"); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK_FALSE(r.resolver->pending(kGroupChannel, "slow"));
}

TEST_CASE("resolver: SENDs parked on one channel share one fetch, in order; a refusal is each one's answer") {
    ResolvingRig r;
    std::vector<std::shared_ptr<CommitWaiter>> waiters(5), closed(2);
    for (size_t i = 0; i < waiters.size(); ++i)
        REQUIRE(r.rig.submit_resolving(group("a", "g2", "m" + std::to_string(i)), waiters[i]));
    for (auto& w : closed) REQUIRE(r.rig.submit_resolving(group("a", "closed", "no"), w));
    CHECK(r.resolver->parked() == 7);
    r.resolver->start();  // parked before the threads ran: one fetch each channel
    for (auto& w : waiters) {
        w->wait(std::chrono::seconds(5));
        CHECK(w->ok);
    }
    for (auto& w : closed) {
        w->wait(std::chrono::seconds(5));
        CHECK_FALSE(w->ok);
        CHECK(w->error.find("reason 11") != std::string::npos);
    }
    CHECK(r.datasource.count("g2") == 1);
    CHECK(r.datasource.count("closed") == 1);
    std::vector<std::string> payloads;
    for (const auto& stored : r.store.log(kGroupChannel, "g2")) payloads.emplace_back(view_of(stored).payload);
    CHECK(payloads == std::vector<std::string>{"m0", "m1", "m2", "m3", "m4"});
    CHECK(r.store.log(kGroupChannel, "closed").empty());
}

TEST_CASE("resolver: a failed fetch answers reason 0; the channel is not asked again within retry_ms") {
    ResolverOptions options;
    options.retry_ms = 300;
    ResolvingRig r(options);
    r.resolver->start();
    std::shared_ptr<CommitWaiter> first;
    REQUIRE(r.rig.submit_resolving(group("a", "dead", "x"), first));
    first->wait(std::chrono::seconds(5));
    CHECK_FALSE(first->ok);
    std::shared_ptr<CommitWaiter> again;
    CHECK_FALSE(r.rig.submit_resolving(group("a", "dead", "x"), again));  // refused at once: reason 0
    CHECK(r.datasource.count("dead") == 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(350));
    REQUIRE(r.rig.submit_resolving(group("a", "dead", "x"), again));
    again->wait(std::chrono::seconds(5));
    CHECK(r.datasource.count("dead") == 2);
}

TEST_CASE("resolver: at max_parked a SEND is refused at once; stopping answers what is parked") {
    ResolverOptions options;
    options.max_parked = 3;
    ResolvingRig r(options);  // not started: nothing is asked
    std::vector<std::shared_ptr<CommitWaiter>> waiters(3);
    for (size_t i = 0; i < waiters.size(); ++i)
        REQUIRE(r.rig.submit_resolving(group("a", "c" + std::to_string(i), "m"), waiters[i]));
    std::shared_ptr<CommitWaiter> over;
    CHECK_FALSE(r.rig.submit_resolving(group("a", "c9", "m"), over));
    r.resolver->stop();
    for (auto& w : waiters) {
        w->wait(std::chrono::seconds(5));
        CHECK_FALSE(w->ok);
    }
    for (const char* id : {"c0", "c1", "c2"}) CHECK(r.store.log(kGroupChannel, id).empty());
}

TEST_CASE("committer: CommitWaiter::wait gives up after its limit with an error") {
    CommitWaiter waiter;
    waiter.wait(std::chrono::milliseconds(20));
    CHECK(waiter.done);
    CHECK_FALSE(waiter.ok);
    CHECK_FALSE(waiter.error.empty());
    // The committer's late answer changes nothing the caller reads (unlocked) now.
    const std::string error = waiter.error;
    waiter.finish(true, "late");
    CHECK_FALSE(waiter.ok);
    CHECK(waiter.error == error);
}

namespace {

// A running worker whose inbox holds 4 envelopes and whose deliveries are
// slow to handle: the fan-out finds its inbox full again and again.
struct SlowWorker {
    struct Recorder final : net::EnvelopeHandler {
        std::mutex mutex;
        std::vector<int64_t> ids;
        std::atomic<bool> stuck{false};  // the worker takes nothing more while set
        void on_envelope(net::Envelope& e) override {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            while (stuck) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            std::lock_guard lock(mutex);
            ids.push_back(encoded_id(e.payload.bytes()));
        }
        size_t count() {
            std::lock_guard lock(mutex);
            return ids.size();
        }
        // Until `n` envelopes came, 10 s at most.
        void wait_for(size_t n) {
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            while (count() < n && std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    };
    // A worker needs a listener; nobody connects to it.
    struct NoConnections final : net::Handler {
        void on_open(net::ConnRef, net::Transport&) override {}
        net::DataResult on_data(net::ConnRef, std::span<const uint8_t>) override { return {}; }
        void on_deadline(net::ConnRef) override {}
        void on_close(net::ConnRef, net::CloseReason) override {}
        void on_shutdown() override {}
    };
    static constexpr uint16_t kDeliver = net::envelope_kind(5, 1);
    NoConnections no_connections;
    stats::WorkerBlock block{};
    std::vector<stats::ConnCounters> conns = std::vector<stats::ConnCounters>(16);
    net::SharedLimits limits;
    Recorder recorder;
    std::unique_ptr<net::Worker> worker;
    net::Worker* peers[1] = {};     // the loop's view of itself
    net::EnvelopeSink* self[1] = {};  // the IM core's

    SlowWorker() {
        limits.max_conns = 16;
        net::WorkerOptions options;
        options.slots = 16;
        options.recv_buffers = 8;
        options.inbox_capacity = 4;
        worker = std::make_unique<net::Worker>(options, limits, block, conns.data());
        net::ListenerOptions listener;
        listener.addr = "127.0.0.1";
        listener.handler = &no_connections;
        worker->add_listener(listener);
        worker->set_envelope_handler(5, &recorder);
        peers[0] = worker.get();
        self[0] = worker.get();
        worker->set_peers(peers);
        std::string error;
        REQUIRE_MESSAGE(worker->start(error), error);
    }
    ~SlowWorker() {
        worker->request_stop(1000);
        worker->join();
    }
};

// The fan-out tests' rig: a fan-out over `store` delivering to a SlowWorker
// (started first, stopped last).
struct WithSlowWorker {
    SlowWorker slow;
};
struct SlowFanout : WithSlowWorker, FanoutParts {
    explicit SlowFanout(FakeStore& store, std::chrono::milliseconds worker_stuck_limit = Fanout::kWorkerStuckLimit)
        : FanoutParts(store, worker_stuck_limit) {
        fanout.set_workers(slow.self, SlowWorker::kDeliver);
    }
};

}  // namespace

TEST_CASE("fan-out: a full worker inbox is waited out: every delivery arrives, in order, none dropped") {
    FakeStore store;
    SlowFanout f(store);
    REQUIRE(f.directory.replace("b", 1, net::ConnId::make(0, 1, 1)).ok);
    REQUIRE(f.directory.replace("b", 2, net::ConnId::make(0, 2, 1)).ok);  // two sessions: 2 deliveries a message
    f.fanout.start();
    std::vector<FanoutItem> items;
    // NoPersist: a delivery dropped would be lost for good.
    for (int64_t id = 1; id <= 30; ++id) items.push_back(stored_item(person("a", "b", "m", "", 0x01), id));
    f.fanout.push(items);
    f.slow.recorder.wait_for(60);
    f.fanout.stop();
    CHECK(f.block.deliveries_refused.get() == 0);
    CHECK(f.block.deliveries.get() == 60);
    std::vector<int64_t> expected;
    for (int64_t id = 1; id <= 30; ++id) expected.insert(expected.end(), {id, id});
    std::lock_guard lock(f.slow.recorder.mutex);
    CHECK(f.slow.recorder.ids == expected);
}

TEST_CASE("fan-out: big groups go out a slice at a time, in turn, each group's messages in order; a small message "
          "is not kept behind them") {
    FakeStore store;
    SlowFanout f(store);
    // Two groups of 3 slices and a member, the one online member last.
    std::vector<std::string> big_group;
    for (size_t i = 0; i < 3 * Fanout::kSlice; ++i) big_group.push_back("m" + std::to_string(i));
    big_group.push_back("watcher");
    f.add_group("bigA", big_group);
    f.add_group("bigB", big_group);
    f.add_group("small", {"victim"});
    REQUIRE(f.directory.replace("watcher", 1, net::ConnId::make(0, 1, 1)).ok);
    REQUIRE(f.directory.replace("victim", 1, net::ConnId::make(0, 2, 1)).ok);
    std::vector<FanoutItem> items;
    for (uint32_t seq = 1; seq <= 3; ++seq) items.push_back(stored_item(group("sender", "bigA", "m"), 10 + seq, seq));
    for (uint32_t seq = 1; seq <= 3; ++seq) items.push_back(stored_item(group("sender", "bigB", "m"), 20 + seq, seq));
    items.push_back(stored_item(group("sender", "small", "m"), 99, 1));
    f.fanout.push(items);  // all taken at once when the thread starts
    f.fanout.start();
    f.slow.recorder.wait_for(7);
    f.fanout.stop();
    std::lock_guard lock(f.slow.recorder.mutex);
    // One after another, the small message would come last (11 12 13 21 22 23 99).
    CHECK(f.slow.recorder.ids == std::vector<int64_t>{99, 11, 21, 12, 22, 13, 23});
    CHECK(f.block.conversation_updates.get() == 6 * (3 * Fanout::kSlice + 1) + 1);
}

TEST_CASE("fan-out: messages kept behind a big one of their channel go out in seq order, whatever order they came in") {
    FakeStore store;
    SlowFanout f(store);
    std::vector<std::string> big_group;
    for (size_t i = 0; i < 2 * Fanout::kSlice; ++i) big_group.push_back("m" + std::to_string(i));
    big_group.push_back("watcher");
    f.add_group("big", big_group);
    REQUIRE(f.directory.replace("watcher", 1, net::ConnId::make(0, 1, 1)).ok);
    std::vector<FanoutItem> items;
    // 3 before 2: as a cluster node's order releases 3 when 2's hold ended, and 2 comes after.
    for (uint32_t seq : {1u, 3u, 2u}) items.push_back(stored_item(group("sender", "big", "m"), seq, seq));
    f.fanout.push(items);
    f.fanout.start();
    f.slow.recorder.wait_for(3);
    f.fanout.stop();
    std::lock_guard lock(f.slow.recorder.mutex);
    CHECK(f.slow.recorder.ids == std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("committer: SENDACKs to a worker whose inbox is smaller than the batch all arrive, in order") {
    SlowWorker slow;
    FakeStore store;
    Rig rig(store);
    rig.add_group("g", {"a"});
    // Queued before the thread starts: one batch of 30 results for an inbox of 4.
    for (int i = 0; i < 30; ++i) {
        CommitRequest r;
        r.message = encoded(group("a", "g", "m"));
        r.route = {slow.worker.get(), SlowWorker::kDeliver};
        r.client_seq = uint32_t(i + 1);
        REQUIRE(rig.committer->submit(std::move(r)));
    }
    rig.start();
    slow.recorder.wait_for(30);
    std::lock_guard lock(slow.recorder.mutex);
    REQUIRE(slow.recorder.ids.size() == 30);
    CHECK(std::is_sorted(slow.recorder.ids.begin(), slow.recorder.ids.end()));
    CHECK(slow.block.envelopes_refused.get() == 0);
}

TEST_CASE("fan-out: a worker that takes nothing for the stuck limit has the rest dropped, counted; later ones at once") {
    FakeStore store;
    constexpr auto kStuckLimit = std::chrono::milliseconds(1000);
    SlowFanout f(store, kStuckLimit);
    f.slow.recorder.stuck = true;
    REQUIRE(f.directory.replace("b", 1, net::ConnId::make(0, 1, 1)).ok);
    f.fanout.start();
    auto messages = [](int64_t first, int64_t last) {
        std::vector<FanoutItem> items;
        for (int64_t id = first; id <= last; ++id) items.push_back(stored_item(person("a", "b", "m", "", 0x01), id));
        return items;
    };
    auto accounted_within = [&](uint64_t count, std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (f.block.deliveries.get() + f.block.deliveries_refused.get() < count && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        return f.block.deliveries.get() + f.block.deliveries_refused.get() == count;
    };
    auto first = messages(1, 20);
    f.fanout.push(first);
    CHECK(accounted_within(20, std::chrono::seconds(5)));
    CHECK(f.block.deliveries_refused.get() >= 12);  // at most the inbox and what the worker took before it stuck
    // Known stuck: the next batch is not waited on for another stuck limit
    // (a healthy worker's deliveries behind it would wait as long).
    auto second = messages(21, 40);
    f.fanout.push(second);
    CHECK(accounted_within(40, kStuckLimit / 2));
    f.slow.recorder.stuck = false;
    f.fanout.stop();
}

namespace {

// The other nodes, as the fan-out sees them: what it publishes is kept.
struct FakeCluster final : Cluster {
    std::mutex mutex;
    std::vector<FanoutItem> published;
    void message_stored(const FanoutItem& item) override {
        std::lock_guard lock(mutex);
        published.push_back(item);
    }
    void session_online(std::string_view, uint8_t, bool, uint64_t) override {}
    void token_changed(std::string_view, uint8_t, const std::array<uint8_t, 32>&) override {}
    void channel_changed(uint8_t, std::string_view) override {}
    void system_uids_changed() override {}
    void conversation_unread_set(std::string_view, std::string_view, uint8_t, uint32_t) override {}
    void conversation_removed(const std::vector<std::string>&, std::string_view, uint8_t) override {}
    bool online_elsewhere(const std::vector<std::string>&, std::vector<std::string>&) override { return true; }
};

// A channel as im::Core caches it from the datasource (only the node that asked has it).
Channel fetched_group(const std::string& id, std::vector<std::string> subscribers) {
    store::ChannelRecord r;
    r.id = id;
    r.type = kGroupChannel;
    r.subscribers = std::move(subscribers);
    Channel c = Channel::from(std::move(r));
    c.fetched_ms = 1;
    return c;
}

}  // namespace

TEST_CASE("fan-out: the storing node publishes every group message, with the receivers other nodes cannot know") {
    FakeStore store;
    FakeCluster cluster;
    FanoutParts node(store);
    node.channels.put(fetched_group("fetched", {"a", "b"}));
    node.add_group("stored", {"a", "b"});
    node.fanout.set_cluster(&cluster);
    node.fanout.start();
    std::vector<FanoutItem> items;
    for (const char* channel : {"fetched", "stored", "not-cached"}) items.push_back(stored_item(group("a", channel, "m")));
    node.fanout.push(items);
    node.fanout.stop();  // delivers what is queued first

    std::lock_guard lock(cluster.mutex);
    REQUIRE(cluster.published.size() == 3);  // the uncached channel's too: another node may know it
    REQUIRE(cluster.published[0].receivers != nullptr);
    CHECK(*cluster.published[0].receivers == std::vector<std::string>{"a", "b"});
    CHECK(cluster.published[1].receivers == nullptr);  // every node holds a stored channel: the event stays small
    CHECK(cluster.published[2].receivers == nullptr);
    CHECK(node.block.fanout_no_receivers.get() == 1);
}

TEST_CASE("fan-out: a node that never cached the channel delivers another node's message by the receivers it carries") {
    // The storing node: it asked the datasource, so it has the channel.
    FakeStore store;
    FakeCluster cluster;
    FanoutParts storing(store);
    storing.channels.put(fetched_group("g", {"a", "b"}));
    storing.fanout.set_cluster(&cluster);
    storing.fanout.start();
    std::vector<FanoutItem> items;
    items.push_back(stored_item(group("a", "g", "m"), 42));
    storing.fanout.push(items);
    storing.fanout.stop();
    std::unique_lock lock(cluster.mutex);
    REQUIRE(cluster.published.size() == 1);

    // Another node: b is online there, the channel is not in its memory.
    SlowFanout other(store);
    REQUIRE(other.directory.replace("b", 1, net::ConnId::make(0, 1, 1)).ok);
    other.fanout.start();
    other.fanout.push_remote(std::move(cluster.published[0]));
    other.fanout.push_remote(stored_item(group("a", "other", "m")));  // no receivers carried, none known here
    other.slow.recorder.wait_for(1);
    other.fanout.stop();
    std::lock_guard recorded(other.slow.recorder.mutex);
    CHECK(other.slow.recorder.ids == std::vector<int64_t>{42});
    CHECK(other.block.fanout_no_receivers.get() == 1);  // the message that named nobody, counted
}
