// The global SEND rate limit (SERVER.md §5 step 0, --max-messages-per-second),
// applied by back-pressure: a SEND is never refused or dropped for it; the
// session that sent it stops being read for as long as the server is over
// its rate (the gateway pauses its input), so a flooding client slows to
// its share while the others go on.
//
// A generic cell rate algorithm on one atomic: each SEND moves a theoretical
// arrival time on by 1/rate; a burst of one second's worth goes through at
// once. Lock-free, shared by every worker thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace limaoim::im {

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
        const int64_t ahead = next - now_ns - kBurstNs;
        return ahead <= 0 ? 0 : uint32_t((ahead + 999'999) / 1'000'000);
    }

private:
    static constexpr int64_t kBurstNs = 1'000'000'000;  // one second's worth at once
    const int64_t interval_ns_;
    std::atomic<int64_t> tat_ns_{0};
};

}  // namespace limaoim::im
