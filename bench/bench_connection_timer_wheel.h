// A coarse timer wheel with one slot per tick and enough slots for the
// longest delay, so every timer fires within one revolution and no entry has
// to carry a round count. Entries are client indices; cancelling is lazy: the
// caller keeps each client's current deadline tick and ignores an entry whose
// tick no longer matches. Slot vectors keep their capacity, so a steady
// heartbeat load schedules without allocating.
#pragma once

#include <cstdint>
#include <vector>

namespace limaoim::bench {

class TimerWheel {
public:
    explicit TimerWheel(uint32_t max_delay_ticks) : slots_(max_delay_ticks + 1) {}

    uint32_t now() const { return now_; }

    // Schedules `client` at now() + delay; a delay is clamped to 1..max.
    // Returns the deadline tick to remember for the lazy check.
    uint32_t schedule(uint32_t client, uint32_t delay_ticks) {
        if (delay_ticks == 0) delay_ticks = 1;
        if (delay_ticks >= slots_.size()) delay_ticks = static_cast<uint32_t>(slots_.size() - 1);
        const uint32_t deadline = now_ + delay_ticks;
        slots_[deadline % slots_.size()].push_back(client);
        return deadline;
    }

    // Fires every slot up to and including `tick`: fire(client, tick) per
    // entry. fire() may schedule again: never into the slot being fired,
    // since a delay is at least one tick and less than a revolution.
    template <typename Fire>
    void advance_to(uint32_t tick, Fire&& fire) {
        while (now_ < tick) {
            ++now_;
            std::vector<uint32_t>& slot = slots_[now_ % slots_.size()];
            for (size_t i = 0; i < slot.size(); ++i) fire(slot[i], now_);
            slot.clear();
        }
    }

private:
    std::vector<std::vector<uint32_t>> slots_;
    uint32_t now_ = 0;
};

}  // namespace limaoim::bench
