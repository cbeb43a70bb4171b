// Whether a sender may SEND to a channel (SERVER.md §5 steps 3-4, §7.4-7.5),
// judged from the channels in memory. With a datasource (§13) a channel is
// a cache of the business server's answer, kept datasource_cache_ms: a SEND
// to one not fresh is parked in the Resolver this class hosts, whose threads
// fetch the channel (refresh) and judge the SEND again (judged_reason)
// before handing it back to the committer.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "limaoim/im/channels.h"
#include "limaoim/im/committer.h"
#include "limaoim/im/datasource.h"
#include "limaoim/im/message.h"
#include "limaoim/im/resolver.h"
#include "limaoim/stats/layout.h"

namespace limaoim::im {

// A SEND's permission as far as a worker can judge it (§5 steps 3-4).
enum class SendCheck : uint8_t {
    Allowed,
    NotAllowed,        // reason 11
    UnknownTemporary,  // reason 3
    Resolve,           // the datasource must be asked: the committer does (CommitRequest::resolve)
};

struct SendJudgeOptions {
    bool test_mode = false;                // no group/channel permission checks (§5 step 4)
    uint32_t datasource_cache_ms = 60000;  // a channel fetched from the datasource is asked again after this
};

class SendJudge {
public:
    // `channel_write`: the lock every read-modify-write of a channel or of
    // the system uids takes (the API's, this class's fetches, the other nodes').
    SendJudge(Channels& channels, std::mutex& channel_write, Committer& committer, stats::PipelineBlock& stats,
              const SendJudgeOptions& options);

    // Before start(): null keeps the channels the store holds (no Resolve).
    void set_datasource(Datasource* datasource) { datasource_ = datasource; }
    bool has_datasource() const { return datasource_ != nullptr; }
    // Where the committer parks the SENDs judged Resolve.
    ChannelResolver& resolver() { return resolver_; }
    // The resolver's threads, with a datasource only.
    void start();
    // What is parked is judged and handed to the committer: before it stops.
    void stop();

    // Worker threads, memory only. `receivers`: how many the message would
    // reach as far as memory knows (a person channel's 1; 0 for a channel
    // not known yet).
    SendCheck check_send(std::string_view uid, uint8_t type, std::string_view id, uint32_t& receivers) const;
    // SENDs to (type, id) wait for the datasource (Resolver::pending).
    bool resolving(uint8_t type, std::string_view id) const { return resolver_.pending(type, id); }

private:
    // The resolver's threads: load a channel that is not fresh, then judge a SEND against it.
    bool refresh_channel(uint8_t type, std::string_view id, std::string& error);
    uint8_t judged_reason(const MessageView& message) const;
    // `fetched`: the datasource has just been asked; judge what is there.
    SendCheck judge(std::string_view uid, uint8_t type, std::string_view id, bool fetched,
                    uint32_t* receivers = nullptr) const;
    bool fresh(const Channel& channel) const;
    bool fetch_channel(uint8_t type, std::string_view id, std::string& error);

    Channels& channels_;
    std::mutex& channel_write_;
    Committer& committer_;
    stats::PipelineBlock& stats_;
    const SendJudgeOptions options_;
    Datasource* datasource_ = nullptr;
    // System uids are asked once (§13); after a failure, not again before
    // this steady ms (every channel's fetch needs them).
    std::atomic<bool> system_uids_fetched_{false};
    std::atomic<int64_t> system_uids_failed_until_{0};
    // Last: destroyed (its threads joined) before what they use.
    Resolver resolver_;
};

}  // namespace limaoim::im
