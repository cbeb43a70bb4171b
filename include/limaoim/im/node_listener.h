// What the other nodes on a shared store tell this one (im/cluster.h),
// applied to this node's memory: their messages go to the fan-out, their
// logins and token changes kick this node's session of the pair, their
// channel and system-uid changes are read again from the store, their
// conversation edits are made here too. Called on the cluster's receiving
// thread, which may wait for the store.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/im/channels.h"
#include "limaoim/im/cluster.h"
#include "limaoim/im/conversations.h"
#include "limaoim/im/fanout.h"
#include "limaoim/im/session_kicker.h"
#include "limaoim/im/token_cache.h"
#include "limaoim/store/store.h"

namespace limaoim::im {

class NodeListener final : public ClusterListener {
public:
    // `channel_write`: the lock every read-modify-write of a channel or of the system uids takes.
    NodeListener(store::Store& store, TokenCache& tokens, Channels& channels, Conversations& conversations,
                 Fanout& fanout, const SessionKicker& kicker, std::mutex& channel_write);

    // Tokens, channels and system uids from the store into memory, whole:
    // at start (Core::load) and after events from the others were missed.
    bool load_cached(std::string& error);

    void on_remote_message(FanoutItem&& item) override;
    void on_remote_login(std::string_view uid, uint8_t device_flag, uint64_t login_ms) override;
    void on_token_changed(std::string_view uid, uint8_t device_flag, const std::array<uint8_t, 32>& digest) override;
    void on_channel_changed(uint8_t type, std::string_view id) override;
    void on_system_uids_changed() override;
    void on_conversation_unread_set(std::string_view uid, std::string_view channel_id, uint8_t type,
                                    uint32_t unread) override;
    void on_conversation_removed(const std::vector<std::string>& uids, std::string_view channel_id,
                                 uint8_t type) override;
    bool on_resync() override;

private:
    store::Store& store_;
    TokenCache& tokens_;
    Channels& channels_;
    Conversations& conversations_;
    Fanout& fanout_;
    const SessionKicker& kicker_;
    std::mutex& channel_write_;
};

}  // namespace limaoim::im
