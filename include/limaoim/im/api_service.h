// The HTTP API's calls into the IM core (im/service.h), on the API pool's
// threads: users' tokens and the system uids, channels and their lists,
// messages sent through the committer, reads from the store, the users'
// conversations. Every change is stored first, then made in memory, then
// told to the other nodes (when there are some).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/im/channels.h"
#include "limaoim/im/cluster.h"
#include "limaoim/im/committer.h"
#include "limaoim/im/conversations.h"
#include "limaoim/im/directory.h"
#include "limaoim/im/service.h"
#include "limaoim/im/session_kicker.h"
#include "limaoim/im/token_cache.h"
#include "limaoim/store/store.h"

namespace limaoim::im {

class ApiService final : public Service {
public:
    // `channel_write`: the lock every read-modify-write of a channel or of
    // the system uids takes. The API's temporary channels (§7.3) are kept
    // in memory, at most `max_temporary_channels`, the oldest forgotten first.
    ApiService(store::Store& store, TokenCache& tokens, const Directory& directory, Channels& channels,
               Conversations& conversations, Committer& committer, const SessionKicker& kicker,
               std::mutex& channel_write, uint32_t max_temporary_channels);

    // Before the API serves: the other nodes to tell of changes (null: alone).
    void set_cluster(Cluster* cluster) { cluster_ = cluster; }

    // ---- users ----
    Outcome set_token(std::string_view uid, std::string_view token, uint8_t device_flag,
                      uint8_t device_level) override;
    std::vector<std::string> online_uids(const std::vector<std::string>& uids) override;
    Outcome add_system_uids(const std::vector<std::string>& uids) override;
    Outcome remove_system_uids(const std::vector<std::string>& uids) override;

    // ---- channels ----
    Outcome put_channel(std::string_view id, uint8_t type, std::string_view parent,
                        const std::vector<std::string>& subscribers) override;
    Outcome add_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids,
                            bool reset) override;
    Outcome remove_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids) override;
    Outcome delete_channel(std::string_view id, uint8_t type) override;
    Outcome edit_list(std::string_view id, uint8_t type, ListKind list, ListEdit edit,
                      const std::vector<std::string>& uids) override;

    // ---- messages ----
    Outcome send(const ApiSend& message, ApiSent& sent) override;
    Outcome sync(std::string_view uid, uint32_t after_seq, PageLimit limit, std::vector<Message>& out) override;
    Outcome sync_ack(std::string_view uid, uint32_t seq) override;
    Outcome channel_messages(std::string_view login_uid, std::string_view channel_id, uint8_t type,
                             uint32_t from_seq, uint32_t to_seq, PageLimit limit, bool keep_newest,
                             std::vector<Message>& out, bool& cut) override;

    // ---- conversations ----
    Outcome conversations(std::string_view uid, std::vector<ConversationView>& out) override;
    Outcome set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t unread) override;
    Outcome delete_conversation(const std::vector<std::string>& uids, std::string_view channel_id,
                                uint8_t type) override;
    Outcome sync_conversations(std::string_view uid, int64_t version, std::vector<Conversation>& out) override;
    Outcome recent_messages(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t after_seq,
                            PageLimit limit, std::vector<Message>& out) override;

private:
    // Writes `channel` to the store, then installs it (channel_write_ held).
    Outcome install(Channel&& channel);
    void add_temporary(Channel&& channel);
    void remove_temporary(const std::string& id);

    store::Store& store_;
    TokenCache& tokens_;
    const Directory& directory_;
    Channels& channels_;
    Conversations& conversations_;
    Committer& committer_;
    const SessionKicker& kicker_;
    std::mutex& channel_write_;
    const uint32_t max_temporary_channels_;
    Cluster* cluster_ = nullptr;
    std::deque<std::string> temporary_ids_;  // oldest first (under channel_write_)
};

}  // namespace limaoim::im
