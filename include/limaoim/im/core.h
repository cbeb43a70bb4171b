// The IM core of one server: channels, message ids, the committer and the
// fan-out thread, over a store engine it knows only as store::Store. The
// gateway of each worker calls it for SENDs (on the worker's thread, memory
// only: lookups and a queue push); the HTTP API calls it as an im::Service
// from its pool threads (those calls may wait for the store).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>

#include "limaoim/im/channels.h"
#include "limaoim/im/cluster.h"
#include "limaoim/im/committer.h"
#include "limaoim/im/conversations.h"
#include "limaoim/im/datasource.h"
#include "limaoim/im/events.h"
#include "limaoim/im/directory.h"
#include "limaoim/im/fanout.h"
#include "limaoim/im/ids.h"
#include "limaoim/im/rate_limit.h"
#include "limaoim/im/resolver.h"
#include "limaoim/im/service.h"
#include "limaoim/net/envelope.h"
#include "limaoim/stats/layout.h"
#include "limaoim/store/store.h"
#include "limaoim/im/token_cache.h"

namespace limaoim::im {

// A SEND's permission as far as a worker can judge it (§5 steps 3-4).
enum class SendCheck : uint8_t {
    Allowed,
    NotAllowed,        // reason 11
    UnknownTemporary,  // reason 3
    Resolve,           // the datasource must be asked: the committer does (CommitRequest::resolve)
};

// The envelope kinds the workers' gateways handle for the core.
struct GatewayKinds {
    uint16_t kick = 0;         // arg = ConnId; flags = kKickByToken for /user/token
    uint16_t deliver = 0;      // fanout.h
    uint16_t send_result = 0;  // committer.h
};
inline constexpr uint16_t kKickByToken = 1;
// The pair logged in on another node (arg32: that login's wall-clock ms, low
// 24 bits): the session leaves the directory without an offline event (the
// pair is still online, elsewhere), unless it is the newer login itself.
inline constexpr uint16_t kKickByOtherNode = 2;

struct CoreOptions {
    uint32_t node_id = 1;
    bool test_mode = false;  // no group/channel permission checks at SEND (§5 step 4)
    uint32_t max_messages_per_second = 100000;  // SENDs from sessions, server-wide (0: no limit)
    uint32_t max_messages_per_user = 100;       // units per sender per worker (UserRateLimit; 0: no limit)
    CommitterOptions committer;
    ConversationOptions conversations;
    uint32_t datasource_cache_ms = 60000;  // a channel fetched from the datasource is asked again after this
    // The API's temporary channels kept in memory at most (about 200 B plus
    // their subscribers each); the oldest is forgotten first.
    uint32_t max_temporary_channels = 100000;
};

class Core final : public Service, public ClusterListener {
public:
    Core(store::Store& store, TokenCache& tokens, Directory& directory, stats::PipelineBlock& stats,
         const CoreOptions& options);

    // Tokens, channels and system uids from the store into memory.
    bool load(std::string& error);
    void set_workers(std::span<net::EnvelopeSink* const> workers, const GatewayKinds& kinds);
    // Before start(): the webhook sender (null: no webhook configured).
    void set_events(Events* events);
    // Before start(): channel members, lists and system uids come from the
    // business server (§13), cached for datasource_cache_ms (null: the store's).
    void set_datasource(Datasource* datasource);
    Events* events() const { return events_; }
    // Before start(): the other nodes on a shared store (null: this node is alone).
    void set_cluster(Cluster* cluster);
    bool start(std::string& error);
    // Commits and delivers what is queued, then stops the threads. Call
    // before the workers stop (their inboxes take the last results).
    void stop();

    // ---- for the gateways (worker threads) ----
    const Channels& channels() const { return channels_; }
    IdGenerator& ids() { return ids_; }
    Committer& committer() { return committer_; }
    SendRateLimit& rate_limit() { return rate_limit_; }
    // The sender `uid`'s permission to SEND to (type, id), from memory only.
    // `receivers`: how many the message would reach as far as memory knows
    // (a person channel's 1; 0 for a channel not known yet).
    SendCheck check_send(std::string_view uid, uint8_t type, std::string_view id, uint32_t& receivers) const;
    const CoreOptions& options() const { return options_; }
    // SENDs to (type, id) wait for the datasource (Resolver::pending).
    bool resolving(uint8_t type, std::string_view id) const { return resolver_.pending(type, id); }
    // A session of (uid, device flag) logged in, or left while it still held
    // the pair: user.onlinestatus (§12.2) and the other nodes hear of it.
    void session_online(std::string_view uid, uint8_t device_flag, bool online, uint64_t login_ms);

    // ---- ClusterListener (the cluster's receiving thread) ----
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

    // ---- Service (API threads) ----
    Outcome set_token(std::string_view uid, std::string_view token, uint8_t device_flag,
                      uint8_t device_level) override;
    std::vector<std::string> online_uids(const std::vector<std::string>& uids) override;
    Outcome add_system_uids(const std::vector<std::string>& uids) override;
    Outcome remove_system_uids(const std::vector<std::string>& uids) override;
    Outcome put_channel(std::string_view id, uint8_t type, std::string_view parent,
                        const std::vector<std::string>& subscribers) override;
    Outcome add_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids,
                            bool reset) override;
    Outcome remove_subscribers(std::string_view id, uint8_t type, const std::vector<std::string>& uids) override;
    Outcome delete_channel(std::string_view id, uint8_t type) override;
    Outcome edit_list(std::string_view id, uint8_t type, ListKind list, ListEdit edit,
                      const std::vector<std::string>& uids) override;
    Outcome send(const ApiSend& message) override;
    Outcome sync(std::string_view uid, uint32_t after_seq, PageLimit limit, std::vector<Message>& out) override;
    Outcome sync_ack(std::string_view uid, uint32_t seq) override;
    Outcome channel_messages(std::string_view login_uid, std::string_view channel_id, uint8_t type,
                             uint32_t from_seq, uint32_t to_seq, PageLimit limit, bool keep_newest,
                             std::vector<Message>& out, bool& cut) override;
    Outcome conversations(std::string_view uid, std::vector<ConversationView>& out) override;
    Outcome set_unread(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t unread) override;
    Outcome delete_conversation(const std::vector<std::string>& uids, std::string_view channel_id,
                                uint8_t type) override;
    Outcome sync_conversations(std::string_view uid, int64_t version, std::vector<Conversation>& out) override;
    Outcome recent_messages(std::string_view uid, std::string_view channel_id, uint8_t type, uint32_t after_seq,
                            PageLimit limit, std::vector<Message>& out) override;

private:
    // The resolver's threads (im/resolver.h): load a channel that is not
    // fresh, then judge a SEND against it.
    bool refresh_channel(uint8_t type, std::string_view id, std::string& error);
    uint8_t judged_reason(const MessageView& message) const;
    SendCheck judge(std::string_view uid, uint8_t type, std::string_view id, bool fetched,
                    uint32_t* receivers = nullptr) const;
    bool fresh(const Channel& channel) const;
    bool fetch_channel(uint8_t type, std::string_view id, std::string& error);

    // Writes `channel` to the store, then installs it (channel_write_ held).
    Outcome install(Channel&& channel);
    // Kicks this node's session of (uid, device flag), if any (`flags`: kKickByToken or kKickByOtherNode).
    void kick_session(std::string_view uid, uint8_t device_flag, uint16_t flags, uint32_t arg32 = 0);
    bool load_cached(std::string& error);  // tokens, channels, system uids
    Channel copy_or_new(std::string_view id, uint8_t type) const;
    // The API's temporary channels (§7.3), in memory only: at most
    // options_.max_temporary_channels, the oldest forgotten first.
    void add_temporary(Channel&& channel);
    void remove_temporary(const std::string& id);

    store::Store& store_;
    TokenCache& tokens_;
    Directory& directory_;
    CoreOptions options_;
    Channels channels_;
    IdGenerator ids_;
    Conversations conversations_;
    Fanout fanout_;
    Committer committer_;
    std::vector<net::EnvelopeSink*> workers_;
    GatewayKinds kinds_;
    Events* events_ = nullptr;
    Cluster* cluster_ = nullptr;
    Datasource* datasource_ = nullptr;
    // System uids are asked once (§13); after a failure, not again before
    // this steady ms (every channel's fetch needs them).
    std::atomic<bool> system_uids_fetched_{false};
    std::atomic<int64_t> system_uids_failed_until_{0};
    Resolver resolver_;
    stats::PipelineBlock& stats_;
    SendRateLimit rate_limit_;
    // API writes read-modify-write a channel or the system uids: one at a time.
    std::mutex channel_write_;
    std::deque<std::string> temporary_ids_;  // oldest first (under channel_write_)
};

}  // namespace limaoim::im
