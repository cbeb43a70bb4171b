// Entries addressed by a 32-bit id that is reused once released: loop
// timers, fd watches. A deque, so a reference stays valid while a callback
// run from one entry adds others.
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
    T& operator[](uint32_t id) { return entries_[id]; }
    size_t size() const { return entries_.size(); }

private:
    std::deque<T> entries_;
    std::vector<uint32_t> free_;
};

}  // namespace limaoim::net
