// The IM core of one server: channels, message ids, the committer and the
// fan-out thread, over a store engine it knows only as store::Store. The
// gateway of each worker calls it for SENDs (on the worker's thread, memory
// only: lookups and a queue push); the HTTP API calls it as an im::Service
// from its pool threads (those calls may wait for the store).
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string>

#include "limaoim/im/channels.h"
#include "limaoim/im/committer.h"
#include "limaoim/im/directory.h"
#include "limaoim/im/fanout.h"
#include "limaoim/im/ids.h"
#include "limaoim/im/service.h"
#include "limaoim/stats/layout.h"
#include "limaoim/store/store.h"
#include "limaoim/store/token_store.h"

namespace limaoim::net {
class Worker;
}

namespace limaoim::im {

// The envelope kinds the workers' gateways handle for the core.
struct GatewayKinds {
    uint16_t kick = 0;         // arg = ConnId; flags = kKickByToken for /user/token
    uint16_t deliver = 0;      // fanout.h
    uint16_t send_result = 0;  // committer.h
};
inline constexpr uint16_t kKickByToken = 1;

struct CoreOptions {
    uint32_t node_id = 1;
    bool test_mode = false;  // no group/channel permission checks at SEND (§5 step 4)
    CommitterOptions committer;
};

class Core final : public Service {
public:
    Core(store::Store& store, store::TokenStore& tokens, Directory& directory, stats::PipelineBlock& stats,
         const CoreOptions& options);

    // Tokens, channels and system uids from the store into memory.
    bool load(std::string& error);
    void set_workers(std::span<net::Worker* const> workers, const GatewayKinds& kinds);
    bool start(std::string& error);
    // Commits and delivers what is queued, then stops the threads. Call
    // before the workers stop (their inboxes take the last results).
    void stop();

    // ---- for the gateways (worker threads) ----
    const Channels& channels() const { return channels_; }
    IdGenerator& ids() { return ids_; }
    Committer& committer() { return committer_; }
    const GatewayKinds& kinds() const { return kinds_; }
    bool test_mode() const { return options_.test_mode; }

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
    Outcome sync(std::string_view uid, uint32_t after_seq, uint32_t limit, std::vector<Message>& out) override;
    Outcome sync_ack(std::string_view uid, uint32_t seq) override;
    Outcome channel_messages(std::string_view login_uid, std::string_view channel_id, uint8_t type,
                             uint32_t from_seq, uint32_t to_seq, uint32_t limit, std::vector<Message>& out) override;

private:
    // Writes `channel` to the store, then installs it (channel_write_ held).
    Outcome install(Channel&& channel);
    Channel copy_or_new(std::string_view id, uint8_t type) const;

    store::Store& store_;
    store::TokenStore& tokens_;
    Directory& directory_;
    CoreOptions options_;
    Channels channels_;
    IdGenerator ids_;
    Fanout fanout_;
    Committer committer_;
    std::vector<net::Worker*> workers_;
    GatewayKinds kinds_;
    // API writes read-modify-write a channel or the system uids: one at a time.
    std::mutex channel_write_;
};

}  // namespace limaoim::im
