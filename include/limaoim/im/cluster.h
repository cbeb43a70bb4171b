// The other nodes on one shared store (several limaoim nodes behind a load
// balancer, docs/REDIS.md "Nodes"). The IM core knows them only through
// these two interfaces; cluster/ implements them on Redis.
//
// What crosses nodes: every stored message (each node delivers it to the
// sessions it holds, and keeps its users' conversations), logins (the same
// uid + device flag elsewhere is kicked; presence records the node),
// changes to what nodes cache from the store (tokens, channels, system uids)
// and the API's conversation edits.
// Messages and kicks are best effort: a node that misses one (its Redis
// connection broke) leaves those receivers to sync, as for any RECV lost
// with a connection; the caches are reloaded whole after a reconnection.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/im/committer.h"

namespace limaoim::im {

class Cluster {
public:
    virtual ~Cluster() = default;

    // These never wait: the event is queued for the cluster's own thread,
    // or dropped (counted) when that queue is full or Redis is down.
    // The fan-out thread: a message this node stored, for the other nodes'
    // sessions. `item.receivers` is set when the others cannot find the
    // receivers in their own memory (Fanout::deliver); the event carries it.
    virtual void message_stored(const FanoutItem& item) = 0;
    // Worker threads: a session of (uid, device flag) logged in here at
    // `login_ms` (wall clock; other nodes kick theirs if it is older), or left.
    virtual void session_online(std::string_view uid, uint8_t device_flag, bool online, uint64_t login_ms) = 0;
    // API threads, after the store has the change.
    virtual void token_changed(std::string_view uid, uint8_t device_flag, const std::array<uint8_t, 32>& digest) = 0;
    virtual void channel_changed(uint8_t type, std::string_view id) = 0;
    virtual void system_uids_changed() = 0;
    // Conversations are kept in every node's memory (each applies every
    // message): an edit made through one node's API is made on the others too.
    virtual void conversation_unread_set(std::string_view uid, std::string_view channel_id, uint8_t type,
                                         uint32_t unread) = 0;
    virtual void conversation_removed(const std::vector<std::string>& uids, std::string_view channel_id,
                                      uint8_t type) = 0;

    // API and fan-out threads; may wait for Redis (bounded by its timeout).
    // Which of `uids` have a session on another live node, appended to
    // `out`. False when Redis could not be asked.
    virtual bool online_elsewhere(const std::vector<std::string>& uids, std::vector<std::string>& out) = 0;
};

// What the other nodes tell this one; im::NodeListener implements it. Called on
// the cluster's receiving thread, which may wait.
class ClusterListener {
public:
    virtual ~ClusterListener() = default;
    // A message another node stored: for this node's sessions and conversations.
    virtual void on_remote_message(FanoutItem&& item) = 0;
    // (uid, device flag) logged in on another node at `login_ms`: this node's
    // session of it goes, unless it logged in later (the event was late).
    virtual void on_remote_login(std::string_view uid, uint8_t device_flag, uint64_t login_ms) = 0;
    virtual void on_token_changed(std::string_view uid, uint8_t device_flag, const std::array<uint8_t, 32>& digest) = 0;
    virtual void on_channel_changed(uint8_t type, std::string_view id) = 0;
    virtual void on_system_uids_changed() = 0;
    virtual void on_conversation_unread_set(std::string_view uid, std::string_view channel_id, uint8_t type,
                                            uint32_t unread) = 0;
    virtual void on_conversation_removed(const std::vector<std::string>& uids, std::string_view channel_id,
                                         uint8_t type) = 0;
    // Events from the others may have been missed (trimmed, a stream lost,
    // a registration lapsed, a late event dropped): everything cached from
    // the store is read again. False when that read failed: asked again.
    [[nodiscard]] virtual bool on_resync() = 0;
};

}  // namespace limaoim::im
