// A map that forgets its least recently used entries when trimmed to a
// bound: a cache of values that can be read again from where they live.
//
// Every entry is in a list from the most to the least recently used,
// linked through the map's own nodes: a hit (find) moves it to the front
// in O(1) and allocates nothing; only a new key allocates (its map node).
// Pointers to values stay valid until that entry is erased or trimmed
// (the map's nodes never move), so a caller may hold several at once.
#pragma once

#include <cstddef>
#include <functional>
#include <unordered_map>
#include <utility>

namespace limaoim::util {

template <typename Key, typename Value, typename Hash = std::hash<Key>>
class LruMap {
public:
    LruMap() = default;
    // The links point into the map's own nodes.
    LruMap(const LruMap&) = delete;
    LruMap& operator=(const LruMap&) = delete;

    // `key`'s value, now the most recently used; null when absent.
    Value* find(const Key& key) {
        auto it = entries_.find(key);
        if (it == entries_.end()) return nullptr;
        touch(it->second);
        return &it->second.value;
    }
    // Sets `key`'s value, the most recently used from now.
    Value& put(const Key& key, Value value) {
        auto [it, added] = entries_.try_emplace(key);
        Entry& entry = it->second;
        if (added)
            entry.key = &it->first;
        else
            unlink(entry);
        entry.value = std::move(value);
        link_newest(entry);
        return entry.value;
    }
    void erase(const Key& key) {
        auto it = entries_.find(key);
        if (it == entries_.end()) return;
        unlink(it->second);
        entries_.erase(it);
    }
    // Forgets the least recently used entries until at most `bound` are left.
    void trim(size_t bound) {
        while (entries_.size() > bound) {
            Entry& oldest = *oldest_;
            unlink(oldest);
            entries_.erase(entries_.find(*oldest.key));
        }
    }
    size_t size() const { return entries_.size(); }

private:
    struct Entry {
        Value value{};
        const Key* key = nullptr;  // the map node's own
        Entry* newer = nullptr;
        Entry* older = nullptr;
    };

    void touch(Entry& entry) {
        if (&entry == newest_) return;
        unlink(entry);
        link_newest(entry);
    }
    void unlink(Entry& entry) {
        (entry.newer ? entry.newer->older : newest_) = entry.older;
        (entry.older ? entry.older->newer : oldest_) = entry.newer;
    }
    void link_newest(Entry& entry) {
        entry.newer = nullptr;
        entry.older = newest_;
        (newest_ ? newest_->newer : oldest_) = &entry;
        newest_ = &entry;
    }

    std::unordered_map<Key, Entry, Hash> entries_;
    Entry* newest_ = nullptr;
    Entry* oldest_ = nullptr;
};

}  // namespace limaoim::util
