#include "limaoim/net/timer_wheel.h"

namespace limaoim::net {

TimerWheel::TimerWheel(std::byte* links_base, size_t stride, uint32_t buckets_pow2, uint32_t start_tick)
    : base_(links_base), stride_(stride), mask_(buckets_pow2 - 1), current_(start_tick),
      heads_(buckets_pow2, TimerLink::kNil) {}

bool TimerWheel::scheduled(uint32_t id) const {
    uint32_t due = link(id).due;
    return due != TimerLink::kIdle && due != TimerLink::kFiring;
}

void TimerWheel::unlink(uint32_t id) {
    TimerLink& l = link(id);
    if (l.prev != TimerLink::kNil) {
        link(l.prev).next = l.next;
    } else {
        heads_[l.due & mask_] = l.next;
    }
    if (l.next != TimerLink::kNil) link(l.next).prev = l.prev;
    l.prev = l.next = TimerLink::kNil;
    --pending_;
}

void TimerWheel::schedule(uint32_t id, uint32_t due_tick) {
    if (scheduled(id)) unlink(id);
    if (int32_t(due_tick - current_) <= 0) due_tick = current_ + 1;
    if (due_tick == TimerLink::kIdle || due_tick == TimerLink::kFiring) due_tick = 1;  // wrapped onto a marker
    TimerLink& l = link(id);
    l.due = due_tick;
    uint32_t& head = heads_[due_tick & mask_];
    l.prev = TimerLink::kNil;
    l.next = head;
    if (head != TimerLink::kNil) link(head).prev = id;
    head = id;
    ++pending_;
}

void TimerWheel::cancel(uint32_t id) {
    if (scheduled(id)) unlink(id);
    link(id).due = TimerLink::kIdle;
}

void TimerWheel::collect_due(uint32_t tick) {
    due_.clear();
    uint32_t id = heads_[tick & mask_];
    while (id != TimerLink::kNil) {
        TimerLink& l = link(id);
        uint32_t next = l.next;
        if (int32_t(l.due - tick) <= 0) {
            unlink(id);
            l.due = TimerLink::kFiring;
            due_.push_back(id);
        }
        id = next;
    }
}

}  // namespace limaoim::net
