// Entries addressed by a 32-bit id that is reused once released: loop
// timers, fd watches. A deque, so a reference stays valid while a callback
// run from one entry adds others.
//
// What callers hold is a handle, the id with the entry's serial above it
// (T has `uint32_t serial`, bumped at each use, and `bool active`): a
// handle kept past its entry's release finds nothing, even once the id is
// in use again.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

namespace limaoim::net {

template <class T>
class IdTable {
public:
    // A free entry's id (the entry keeps whatever its last user left in it).
    uint32_t acquire() {
        if (free_.empty()) {
            entries_.emplace_back();
            return uint32_t(entries_.size() - 1);
        }
        const uint32_t id = free_.back();
        free_.pop_back();
        return id;
    }
    void release(uint32_t id) { free_.push_back(id); }
    static uint64_t handle(uint32_t id, const T& entry) { return uint64_t(id) | uint64_t(entry.serial) << 32; }
    // The active entry `handle` names, or null: released since, or never made.
    T* live(uint64_t handle) {
        const uint32_t id = uint32_t(handle);
        if (id >= entries_.size()) return nullptr;
        T& entry = entries_[id];
        return entry.active && entry.serial == uint32_t(handle >> 32) ? &entry : nullptr;
    }
    T& operator[](uint32_t id) { return entries_[id]; }
    size_t size() const { return entries_.size(); }

private:
    std::deque<T> entries_;
    std::vector<uint32_t> free_;
};

}  // namespace limaoim::net
