// im/core.h: what the core keeps for the API beyond the committer's work.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "fake_store.h"
#include "limaoim/im/core.h"
#include "limaoim/store/token_store.h"

using namespace limaoim;
using namespace limaoim::im;
using limaoim::testing::FakeStore;

TEST_CASE("core: the API's temporary channels are bounded; the oldest is forgotten, its SENDs get reason 3") {
    FakeStore store;
    store::TokenStore tokens;
    Directory directory{2};
    stats::PipelineBlock block{};
    CoreOptions options;
    options.max_temporary_channels = 3;
    options.committer.durability = Durability::Sync;
    options.committer.commit_window_us = 0;
    Core core(store, tokens, directory, block, options);
    core.set_workers({}, GatewayKinds{});
    std::string error;
    REQUIRE_MESSAGE(core.start(error), error);
    for (int i = 0; i < 5; ++i) {
        ApiSend send;
        send.from_uid = "system";
        send.subscribers = {"alice", "bob"};
        send.payload = "notice " + std::to_string(i);
        REQUIRE(bool(core.send(send)));
    }
    // Each message made a temporary channel; alice's conversations name them, oldest last.
    std::vector<Conversation> chats;
    for (int i = 0; i < 200 && chats.size() < 5; ++i) {
        REQUIRE(bool(core.sync_conversations("alice", 0, chats)));
        if (chats.size() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(chats.size() == 5);
    size_t known = 0, forgotten = 0;
    for (const Conversation& c : chats) {
        uint32_t receivers = 0;
        const SendCheck check = core.check_send("alice", kGroupChannel, c.channel_id, receivers);
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
