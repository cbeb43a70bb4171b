#include "limaoim/im/send_judge.h"
#include "limaoim/log/clock.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace limaoim::im {

namespace {

using clock::steady_ms;

constexpr uint8_t kReasonSuccess = 1, kReasonUnknownTemporary = 3, kReasonNotAllowed = 11;
// After a failed getSystemUIDs, every fetch fails at once for this long.
constexpr int64_t kDatasourceRetryMs = 1000;

}  // namespace

SendJudge::SendJudge(Channels& channels, std::mutex& channel_write, Committer& committer, stats::PipelineBlock& stats,
                     const SendJudgeOptions& options)
    : channels_(channels), channel_write_(channel_write), committer_(committer), stats_(stats), options_(options),
      resolver_({}, [this](uint8_t type, std::string_view id, std::string& error) { return refresh_channel(type, id, error); },
                [this](const MessageView& m) { return judged_reason(m); },
                [this](CommitRequest&& request) {
                    // The committer's queue is full only under a flood far
                    // past the pipeline's rate: these threads wait for room.
                    while (!committer_.submit(std::move(request)) && !committer_.stopping())
                        std::this_thread::sleep_for(std::chrono::milliseconds(1));
                }) {}

void SendJudge::start() {
    if (datasource_) resolver_.start();
}

void SendJudge::stop() { resolver_.stop(); }

SendCheck SendJudge::check_send(std::string_view uid, uint8_t type, std::string_view id, uint32_t& receivers) const {
    return judge(uid, type, id, false, &receivers);
}

bool SendJudge::fresh(const Channel& channel) const {
    return channel.temporary || (channel.fetched_ms != 0 && steady_ms() - channel.fetched_ms < int64_t(options_.datasource_cache_ms));
}

SendCheck SendJudge::judge(std::string_view uid, uint8_t type, std::string_view id, bool fetched,
                           uint32_t* receivers) const {
    const bool ask = datasource_ && !fetched;
    if (receivers) *receivers = type == kPersonChannel ? 1 : 0;
    if (type == kPersonChannel) {
        // §7.5, limaoim's rule: the recipient's person channel judges the
        // sender, in every mode.
        std::shared_ptr<const Channel> recipient = channels_.find(kPersonChannel, id);
        if (ask && (!recipient || !fresh(*recipient))) return SendCheck::Resolve;
        if (recipient && !channels_.allowed(*recipient, uid)) return SendCheck::NotAllowed;
        return SendCheck::Allowed;
    }
    std::shared_ptr<const Channel> channel = channels_.find(type, id);
    if (channel && receivers) *receivers = uint32_t(std::min<size_t>(channel->subscribers.size(), UINT32_MAX));
    if (!channel && id.ends_with(kTemporarySuffix)) return SendCheck::UnknownTemporary;
    if (ask && (!channel || !fresh(*channel))) return SendCheck::Resolve;
    // A channel never created has no subscribers (§5 step 4): accepted
    // and delivered to nobody in test mode only.
    if (!channel) return options_.test_mode ? SendCheck::Allowed : SendCheck::NotAllowed;
    if (options_.test_mode) return SendCheck::Allowed;
    if (!channels_.allowed(*channel, uid)) return SendCheck::NotAllowed;
    if (channel->parent.empty() && !channel->has_subscriber(uid)) return SendCheck::NotAllowed;
    return SendCheck::Allowed;
}

bool SendJudge::refresh_channel(uint8_t type, std::string_view id, std::string& error) {
    // Several SENDs may have parked the channel one after another: the
    // first fetch serves the rest.
    if (std::shared_ptr<const Channel> c = channels_.find(type, id); c && fresh(*c) && system_uids_fetched_) return true;
    const int64_t now = steady_ms();
    if (now < system_uids_failed_until_) {
        error = "datasource: getSystemUIDs failed less than " + std::to_string(kDatasourceRetryMs) + " ms ago";
        return false;
    }
    if (fetch_channel(type, id, error)) return true;
    if (!system_uids_fetched_) system_uids_failed_until_ = now + kDatasourceRetryMs;
    return false;
}

bool SendJudge::fetch_channel(uint8_t type, std::string_view id, std::string& error) {
    std::vector<std::string> subscribers, denylist, allowlist;
    auto ask = [&](Datasource::Query query, std::vector<std::string>& out) {
        stats_.datasource_calls.add();
        if (datasource_->fetch(query, id, type, out, error)) return true;
        stats_.datasource_failures.add();
        return false;
    };
    if (!system_uids_fetched_) {
        std::vector<std::string> system;
        if (!ask(Datasource::Query::SystemUids, system)) return false;
        std::lock_guard lock(channel_write_);
        channels_.set_system_uids(std::move(system));
        system_uids_fetched_ = true;
    }
    if (type == kPersonChannel) {
        subscribers.emplace_back(id);  // a person channel's one subscriber is its user (§7.1)
    } else if (!ask(Datasource::Query::Subscribers, subscribers)) {
        return false;
    }
    if (!ask(Datasource::Query::Denylist, denylist) || !ask(Datasource::Query::Allowlist, allowlist)) return false;
    std::lock_guard lock(channel_write_);
    Channel c = channels_.copy_or_new(type, id);
    c.set_subscribers(subscribers);
    c.denylist = UidSet(denylist.begin(), denylist.end());
    c.allowlist = UidSet(allowlist.begin(), allowlist.end());
    c.fetched_ms = steady_ms();
    channels_.put(std::move(c));  // a cache: the business server keeps the truth
    return true;
}

uint8_t SendJudge::judged_reason(const MessageView& m) const {
    switch (judge(m.from_uid, m.channel_type, m.channel_id, true)) {
    case SendCheck::Allowed:
        return kReasonSuccess;
    case SendCheck::UnknownTemporary:
        return kReasonUnknownTemporary;
    case SendCheck::NotAllowed:
    case SendCheck::Resolve:
        break;
    }
    return kReasonNotAllowed;
}

}  // namespace limaoim::im
