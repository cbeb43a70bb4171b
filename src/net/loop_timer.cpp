#include "limaoim/net/loop_timer.h"

#include <cstdint>

namespace limaoim::net {

TimerId LoopTimers::add(uint64_t due_ms, std::function<void()> callback, uint32_t every_ms) {
    const uint32_t id = entries_.acquire();
    Entry& e = entries_[id];
    e.callback = std::move(callback);
    e.due_ms = due_ms;
    e.every_ms = every_ms;
    ++e.serial;
    e.active = true;
    ++active_;
    heap_.push(Due{due_ms, id, e.serial});
    return entries_.handle(id, e);
}

void LoopTimers::cancel(TimerId timer) {
    Entry* entry = entries_.live(timer);
    if (!entry) return;
    Entry& e = *entry;
    e.active = false;
    e.callback = nullptr;  // what it captured goes now, not when its heap entry surfaces
    --active_;
    entries_.release(uint32_t(timer));
}

void LoopTimers::drop_stale() {
    while (!heap_.empty()) {
        const Due& top = heap_.top();
        const Entry& e = entries_[top.id];
        if (e.active && e.serial == top.serial && e.due_ms == top.due_ms) return;
        heap_.pop();
    }
}

uint64_t LoopTimers::next_due() {
    drop_stale();
    return heap_.empty() ? UINT64_MAX : heap_.top().due_ms;
}

void LoopTimers::run_due(uint64_t now_ms) {
    for (drop_stale(); !heap_.empty() && heap_.top().due_ms <= now_ms; drop_stale()) {
        const Due due = heap_.top();
        heap_.pop();
        Entry& e = entries_[due.id];
        if (e.every_ms) {
            e.due_ms += e.every_ms;
            if (e.due_ms <= now_ms) e.due_ms = now_ms + e.every_ms;
            heap_.push(Due{e.due_ms, due.id, e.serial});
            // Moved out while it runs (the callback may cancel its own timer,
            // which must not destroy the function being executed), and back
            // if the timer still stands.
            const uint32_t serial = e.serial;
            std::function<void()> callback = std::move(e.callback);
            callback();
            Entry& after = entries_[due.id];
            if (after.active && after.serial == serial) after.callback = std::move(callback);
        } else {
            std::function<void()> callback = std::move(e.callback);
            e.active = false;
            --active_;
            entries_.release(due.id);
            callback();
        }
    }
}

}  // namespace limaoim::net
