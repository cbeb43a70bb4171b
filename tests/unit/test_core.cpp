// im/core.h and its faces: what the API's service (im/api_service.h) keeps
// beyond the committer's work, and what the send judge then finds.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "fake_store.h"
#include "limaoim/im/core.h"
#include "limaoim/im/token_cache.h"

using namespace limaoim;
using namespace limaoim::im;
using limaoim::testing::FakeStore;

namespace {

// A core on a fake store whose commits are written at once; started by the caller.
struct CoreRig {
    FakeStore store;
    im::TokenCache tokens;
    Directory directory{2};
    stats::PipelineBlock block{};
    Core core;
    Service& api = core.service();

    explicit CoreRig(CoreOptions options = {}) : core(store, tokens, directory, block, fast(options)) {
        core.set_workers({}, GatewayKinds{});
    }
    static CoreOptions fast(CoreOptions options) {
        options.committer.durability = Durability::Sync;
        options.committer.commit_window_us = 0;
        return options;
    }
    void start() {
        std::string error;
        REQUIRE_MESSAGE(core.start(error), error);
    }
};

// The seqs of a page, in its order.
std::vector<uint32_t> seqs(const std::vector<Message>& messages) {
    std::vector<uint32_t> out;
    for (const Message& m : messages) out.push_back(m.message_seq);
    return out;
}

}  // namespace

TEST_CASE("core: the API's temporary channels are bounded; the oldest is forgotten, its SENDs get reason 3") {
    CoreOptions options;
    options.max_temporary_channels = 3;
    CoreRig rig(options);
    Core& core = rig.core;
    rig.start();
    for (int i = 0; i < 5; ++i) {
        ApiSend send;
        send.from_uid = "system";
        send.subscribers = {"alice", "bob"};
        send.payload = "notice " + std::to_string(i);
        ApiSent sent;
        REQUIRE(bool(rig.api.send(send, sent)));
    }
    // Each message made a temporary channel; alice's conversations name them, oldest last.
    std::vector<Conversation> chats;
    for (int i = 0; i < 200 && chats.size() < 5; ++i) {
        REQUIRE(bool(rig.api.sync_conversations("alice", 0, chats)));
        if (chats.size() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(chats.size() == 5);
    size_t known = 0, forgotten = 0;
    for (const Conversation& c : chats) {
        uint32_t receivers = 0;
        const SendCheck check = core.send_judge().check_send("alice", kGroupChannel, c.channel_id, receivers);
        if (check == SendCheck::UnknownTemporary) ++forgotten;
        if (check != SendCheck::UnknownTemporary) {
            ++known;
            CHECK(receivers == 2);
        }
    }
    CHECK(known == 3);
    CHECK(forgotten == 2);
    core.stop();
}

TEST_CASE("core: the API's message reads stop at their byte limit, on the side the client continues from") {
    FakeStore store;
    im::TokenCache tokens;
    Directory directory{2};
    stats::PipelineBlock block{};
    Core core(store, tokens, directory, block, CoreOptions{});
    Service& api = core.service();
    // Ten group messages of about 1 KB in g1's log and in alice's queue.
    store::WriteBatch batch;
    for (uint32_t seq = 1; seq <= 10; ++seq) {
        const std::string payload(1000, 'x');
        MessageView m;
        m.channel_type = kGroupChannel;
        m.message_seq = seq;
        m.from_uid = "bob";
        m.channel_id = "g1";
        m.payload = payload;
        batch.messages.push_back({store::log_name(kGroupChannel, "g1"), seq, encode(m)});
        batch.queue_messages.push_back({"alice", seq, encode(m)});
    }
    REQUIRE(store.commit(batch, true));
    const PageLimit limit{.count = 10, .bytes = 2500};  // the third message passes it

    std::vector<Message> page;
    bool cut = false;
    REQUIRE(bool(api.channel_messages("", "g1", kGroupChannel, 1, 0, limit, false, page, cut)));
    CHECK(seqs(page) == std::vector<uint32_t>{1, 2, 3});
    CHECK(cut);
    page.clear();
    REQUIRE(bool(api.channel_messages("", "g1", kGroupChannel, 1, 0, limit, true, page, cut)));
    CHECK(seqs(page) == std::vector<uint32_t>{8, 9, 10});
    CHECK(cut);
    page.clear();
    REQUIRE(bool(api.channel_messages("", "g1", kGroupChannel, 1, 0, {.count = 10}, true, page, cut)));
    CHECK(page.size() == 10);
    CHECK_FALSE(cut);

    page.clear();
    REQUIRE(bool(api.recent_messages("alice", "g1", kGroupChannel, 0, limit, page)));
    CHECK(seqs(page) == std::vector<uint32_t>{10, 9, 8});  // newest first
    page.clear();
    REQUIRE(bool(api.recent_messages("alice", "g1", kGroupChannel, 8, limit, page)));
    CHECK(seqs(page) == std::vector<uint32_t>{10, 9});
    page.clear();
    REQUIRE(bool(api.recent_messages("alice", "g1", kGroupChannel, 0xffffffff, limit, page)));
    CHECK(page.empty());

    page.clear();
    REQUIRE(bool(api.sync("alice", 0, limit, page)));
    CHECK(seqs(page) == std::vector<uint32_t>{1, 2, 3});
}

TEST_CASE("core: the API's reads leave expired messages out and read on past them, from the side they keep") {
    FakeStore store;
    im::TokenCache tokens;
    Directory directory{2};
    stats::PipelineBlock block{};
    Core core(store, tokens, directory, block, CoreOptions{});
    Service& api = core.service();
    // g1 and alice's queue: seqs 1-3 live, 4-12 expired (sent an hour ago, for a minute), 13-14 live.
    const int32_t now = int32_t(std::chrono::duration_cast<std::chrono::seconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
    store::WriteBatch batch;
    for (uint32_t seq = 1; seq <= 14; ++seq) {
        MessageView m;
        m.channel_type = kGroupChannel;
        m.message_seq = seq;
        m.from_uid = "bob";
        m.channel_id = "g1";
        m.payload = "p";
        m.timestamp = now;
        if (seq >= 4 && seq <= 12) {
            m.timestamp = now - 3600;
            m.expire = 60;
        }
        batch.messages.push_back({store::log_name(kGroupChannel, "g1"), seq, encode(m)});
        batch.queue_messages.push_back({"alice", seq, encode(m)});
    }
    REQUIRE(store.commit(batch, true));
    std::vector<Message> page;
    bool cut = false;
    // Oldest first: three live, then past nine expired to the next two.
    REQUIRE(bool(api.channel_messages("", "g1", kGroupChannel, 1, 0, {.count = 5}, false, page, cut)));
    CHECK(seqs(page) == std::vector<uint32_t>{1, 2, 3, 13, 14});
    CHECK_FALSE(cut);
    // Newest first: the two live, then past the expired run to the older ones, ascending.
    page.clear();
    REQUIRE(bool(api.channel_messages("", "g1", kGroupChannel, 1, 0, {.count = 4}, true, page, cut)));
    CHECK(seqs(page) == std::vector<uint32_t>{2, 3, 13, 14});
    CHECK_FALSE(cut);
    // A whole page of expired messages: the page reads on, it does not look like the end.
    page.clear();
    REQUIRE(bool(api.channel_messages("", "g1", kGroupChannel, 4, 0, {.count = 2}, false, page, cut)));
    CHECK(seqs(page) == std::vector<uint32_t>{13, 14});
    // Past the rereads' bound the page is answered short and said to be cut: the client asks again.
    page.clear();
    REQUIRE(bool(api.channel_messages("", "g1", kGroupChannel, 4, 0, {.count = 1}, false, page, cut)));
    CHECK(page.empty());
    CHECK(cut);
    page.clear();
    REQUIRE(bool(api.recent_messages("alice", "g1", kGroupChannel, 0, {.count = 3}, page)));
    CHECK(seqs(page) == std::vector<uint32_t>{14, 13, 3});  // newest first
    page.clear();
    REQUIRE(bool(api.sync("alice", 2, {.count = 3}, page)));
    CHECK(seqs(page) == std::vector<uint32_t>{3, 13, 14});
}

TEST_CASE("core: an API message whose strings do not fit a message's 16-bit lengths is refused, not stored") {
    CoreRig rig;
    Core& core = rig.core;
    rig.start();
    const std::string too_long(kMaxMessageString + 1, 'x');
    for (int field = 0; field < 3; ++field) {
        ApiSend send;
        send.from_uid = field == 0 ? too_long : "system";
        send.channel_id = field == 1 ? too_long : "alice";
        send.channel_type = kPersonChannel;
        send.client_msg_no = field == 2 ? too_long : "";
        send.payload = "hi";
        ApiSent sent;
        const Outcome outcome = rig.api.send(send, sent);
        CHECK(outcome.code == Outcome::Code::BadRequest);
    }
    ApiSend longest;
    longest.from_uid = "system";
    longest.channel_id = "alice";
    longest.channel_type = kPersonChannel;
    longest.client_msg_no = std::string(kMaxMessageString, 'y');
    longest.payload = "hi";
    ApiSent sent;
    REQUIRE(bool(rig.api.send(longest, sent)));
    // What the message became: the committer's id and seq, the client_msg_no it was stored with.
    CHECK(sent.message_id != 0);
    CHECK(sent.message_seq == 1);
    CHECK(sent.client_msg_no == longest.client_msg_no);
    core.stop();
}
