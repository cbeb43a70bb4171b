// The IM core of one server, wired: the channels, ids, conversations,
// fan-out and committer it owns, and the three faces it shows, each a class
// of its own over those parts:
//   SendJudge     the workers' gateways ask it whether a SEND may go (memory
//                 only); with a datasource it hosts the Resolver whose
//                 threads fetch channels for the SENDs it could not judge;
//   ApiService    the HTTP API's im::Service, on the API pool's threads
//                 (those calls may wait for the store);
//   NodeListener  the cluster's im::ClusterListener: what the other nodes
//                 on a shared store tell this one.
// They share the channels and one lock for read-modify-writes of them
// (channel_write_). The core knows the store engine only as store::Store.
//
// Construction builds every part (none starts a thread); set_workers,
// set_events, set_datasource and set_cluster connect the outside before
// start(); stop() stops the threads in the order that loses nothing, and
// the members are destroyed in the reverse order of their declaration.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "limaoim/im/api_service.h"
#include "limaoim/im/channels.h"
#include "limaoim/im/cluster.h"
#include "limaoim/im/committer.h"
#include "limaoim/im/conversations.h"
#include "limaoim/im/datasource.h"
#include "limaoim/im/directory.h"
#include "limaoim/im/events.h"
#include "limaoim/im/fanout.h"
#include "limaoim/im/ids.h"
#include "limaoim/im/node_listener.h"
#include "limaoim/im/rate_limit.h"
#include "limaoim/im/send_judge.h"
#include "limaoim/im/session_kicker.h"
#include "limaoim/im/token_cache.h"
#include "limaoim/net/envelope.h"
#include "limaoim/stats/layout.h"
#include "limaoim/store/store.h"

namespace limaoim::im {

// The envelope kinds the workers' gateways handle for the core.
struct GatewayKinds {
    uint16_t kick = 0;         // arg = ConnId; flags: session_kicker.h
    uint16_t deliver = 0;      // fanout.h
    uint16_t send_result = 0;  // committer.h
};

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

class Core {
public:
    Core(store::Store& store, TokenCache& tokens, Directory& directory, stats::PipelineBlock& stats,
         const CoreOptions& options);
    Core(const Core&) = delete;
    Core& operator=(const Core&) = delete;

    // Tokens, channels, system uids and conversations from the store into memory.
    bool load(std::string& error);
    void set_workers(std::span<net::EnvelopeSink* const> workers, const GatewayKinds& kinds);
    // Before start(): the webhook sender (null: no webhook configured).
    void set_events(Events* events);
    // Before start(): channel members, lists and system uids come from the
    // business server (§13), cached for datasource_cache_ms (null: the store's).
    void set_datasource(Datasource* datasource);
    // Before start(): the other nodes on a shared store (null: this node is alone).
    void set_cluster(Cluster* cluster);
    bool start(std::string& error);
    // Commits and delivers what is queued, then stops the threads. Call
    // before the workers stop (their inboxes take the last results).
    void stop();

    // ---- its faces ----
    Service& service() { return api_; }
    ClusterListener& cluster_listener() { return node_listener_; }
    const SendJudge& send_judge() const { return send_judge_; }

    // ---- for the gateways (worker threads) ----
    const Channels& channels() const { return channels_; }
    IdGenerator& ids() { return ids_; }
    Committer& committer() { return committer_; }
    SendRateLimit& rate_limit() { return rate_limit_; }
    const CoreOptions& options() const { return options_; }
    // A session of (uid, device flag) logged in, or left while it still held
    // the pair: user.onlinestatus (§12.2) and the other nodes hear of it.
    void session_online(std::string_view uid, uint8_t device_flag, bool online, uint64_t login_ms);

private:
    const CoreOptions options_;
    Channels channels_;
    // API writes, datasource fetches and the other nodes' changes
    // read-modify-write a channel or the system uids: one at a time.
    std::mutex channel_write_;
    IdGenerator ids_;
    Conversations conversations_;
    Fanout fanout_;
    Committer committer_;
    SessionKicker kicker_;
    SendJudge send_judge_;
    ApiService api_;
    NodeListener node_listener_;
    SendRateLimit rate_limit_;
    Events* events_ = nullptr;
    Cluster* cluster_ = nullptr;
};

}  // namespace limaoim::im
