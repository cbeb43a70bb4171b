// A hashed timer wheel: one pending deadline per object, O(1) schedule and
// cancel, links stored inside the objects themselves (12 bytes each, 32-bit
// indices instead of pointers) so a timer costs no allocation.
//
// Deadlines are in ticks. A deadline further away than the wheel's span sits
// in its bucket until its own tick comes round: advance() skips it on the
// earlier laps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace limaoim::net {

struct TimerLink {
    static constexpr uint32_t kNil = UINT32_MAX;
    static constexpr uint32_t kIdle = 0;         // not scheduled
    static constexpr uint32_t kFiring = UINT32_MAX;  // collected by advance(), not yet fired

    uint32_t prev = kNil;
    uint32_t next = kNil;
    uint32_t due = kIdle;  // tick, >= 1 when scheduled
};

class TimerWheel {
public:
    // Object `id`'s link lives at base + id * stride.
    TimerWheel(std::byte* links_base, size_t stride, uint32_t buckets_pow2, uint32_t start_tick);

    // (Re)schedules `id` at `due_tick` (clamped to at least the next tick).
    void schedule(uint32_t id, uint32_t due_tick);
    void cancel(uint32_t id);
    bool scheduled(uint32_t id) const;

    // Fires, in no particular order within a tick, every object due at or
    // before `now_tick`. `fire(id)` may schedule or cancel any object.
    template <class Fire>
    void advance(uint32_t now_tick, Fire&& fire) {
        while (int32_t(now_tick - current_) > 0) {
            ++current_;
            collect_due(current_);
            for (uint32_t id : due_) {
                TimerLink& l = link(id);
                if (l.due != TimerLink::kFiring) continue;  // cancelled or rescheduled meanwhile
                l.due = TimerLink::kIdle;
                fire(id);
            }
        }
    }

    uint32_t current_tick() const { return current_; }
    size_t pending() const { return pending_; }

private:
    TimerLink& link(uint32_t id) const { return *reinterpret_cast<TimerLink*>(base_ + size_t(id) * stride_); }
    void unlink(uint32_t id);
    void collect_due(uint32_t tick);

    std::byte* base_;
    size_t stride_;
    uint32_t mask_;
    uint32_t current_;
    size_t pending_ = 0;
    std::vector<uint32_t> heads_;
    std::vector<uint32_t> due_;  // reused between ticks
};

}  // namespace limaoim::net
