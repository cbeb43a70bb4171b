// The global SEND rate limit (SERVER.md §5 step 0, --max-messages-per-second),
// applied by back-pressure: a SEND is never refused or dropped for it; the
// session that sent it stops being read for as long as the server is over
// its rate (the gateway pauses its input), so a flooding client slows to
// its share while the others go on.
//
// A generic cell rate algorithm on one atomic: each SEND moves a theoretical
// arrival time on by 1/rate; a burst of one second's worth goes through at
// once. Lock-free, shared by every worker thread.
//
// The per-user limit (--max-messages-per-user) is the same algorithm with one
// arrival time per sender and a SEND weighted by its receivers, so one
// account flooding (a big group above all) waits alone, not everyone.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "limaoim/im/channels.h"

namespace limaoim::im {

// Both limits let one second's worth through at once.
inline constexpr int64_t kBurstNs = 1'000'000'000;

// How long a sender whose theoretical arrival time is `ahead_ns` past the
// burst should wait, in ms rounded up (0: none).
inline int64_t owed_ms(int64_t ahead_ns) { return ahead_ns <= 0 ? 0 : (ahead_ns + 999'999) / 1'000'000; }

class SendRateLimit {
public:
    // 0: unlimited.
    explicit SendRateLimit(uint32_t per_second) : interval_ns_(per_second ? 1'000'000'000 / int64_t(per_second) : 0) {}

    // Charges one SEND at `now_ns` (a monotonic clock); how long, in ms
    // rounded up, its sender should wait before the next (0: no wait).
    uint32_t charge(int64_t now_ns) {
        if (interval_ns_ == 0) return 0;
        int64_t tat = tat_ns_.load(std::memory_order_relaxed);
        int64_t next;
        do {
            next = std::max(tat, now_ns) + interval_ns_;
        } while (!tat_ns_.compare_exchange_weak(tat, next, std::memory_order_relaxed));
        return uint32_t(owed_ms(next - now_ns - kBurstNs));
    }

private:
    const int64_t interval_ns_;
    std::atomic<int64_t> tat_ns_{0};
};

// One worker's senders (a user with sessions on several workers has a
// bucket on each: up to --workers times the rate). Worker thread only.
class UserRateLimit {
public:
    // A SEND's units: 1, and 1 more per kReceiversPerUnit receivers, so a
    // message to a 20,000-member group costs what 201 person messages do.
    static constexpr uint32_t kReceiversPerUnit = 100;
    static uint32_t cost(uint32_t receivers) { return 1 + receivers / kReceiversPerUnit; }

    // units_per_second 0: unlimited.
    explicit UserRateLimit(uint32_t units_per_second)
        : interval_ns_(units_per_second ? 1'000'000'000 / int64_t(units_per_second) : 0) {}

    // Charges `units` to `uid` at `now_ns` (a monotonic clock); how long, in
    // ms rounded up, the sender should wait before its next packet (0: none).
    // A burst of one second's worth goes at once. One wait is at most
    // kMaxWaitMs (the session's PINGs and RECVACKs wait with its SENDs): a
    // bigger debt is paid over the following SENDs' waits.
    uint32_t charge(std::string_view uid, uint32_t units, int64_t now_ns) {
        if (interval_ns_ == 0) return 0;
        if (tat_ns_.size() >= sweep_at_) sweep(now_ns);
        auto it = tat_ns_.find(uid);
        if (it == tat_ns_.end()) it = tat_ns_.emplace(std::string(uid), now_ns).first;
        it->second = std::max(it->second, now_ns) + int64_t(units) * interval_ns_;
        return uint32_t(std::min<int64_t>(owed_ms(it->second - now_ns - kBurstNs), kMaxWaitMs));
    }

    static constexpr int64_t kMaxWaitMs = 5000;

    // Senders tracked: those still owing time, plus at most as many again
    // since the last sweep, so the memory is bounded by the users who sent in
    // the last second or so (each logged in on this worker), idle ones none.
    size_t tracked() const { return tat_ns_.size(); }

private:
    static constexpr size_t kMinSweep = 1024;

    // A sender whose arrival time has passed owes nothing: its entry says
    // what a missing one does.
    void sweep(int64_t now_ns) {
        std::erase_if(tat_ns_, [now_ns](const auto& entry) { return entry.second <= now_ns; });
        sweep_at_ = std::max(kMinSweep, tat_ns_.size() * 2);
    }

    const int64_t interval_ns_;
    std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>> tat_ns_;  // heap: one entry per recent sender
    size_t sweep_at_ = kMinSweep;
};

}  // namespace limaoim::im
