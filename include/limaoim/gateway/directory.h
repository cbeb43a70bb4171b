// Who is online where: (uid, device flag) -> the session's worker, slot and
// generation. The only structure the workers share (DESIGN.md "Threads").
//
// Sharded by hash, each shard an open-addressing table of 24-byte entries
// behind its own mutex; at most one entry per (uid, device flag), which is
// what enforces one session per device class (SERVER.md §3).
// Entries do not own their uid: they point at the uid kept in the session,
// which stays put until the session has removed its entry.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

namespace limaoim::gateway {

struct SessionAddress {
    uint32_t worker = 0;
    uint32_t slot = 0;
    uint32_t generation = 0;
    bool operator==(const SessionAddress&) const = default;
};

class Directory {
public:
    explicit Directory(uint32_t shard_bits = 6);  // 2^shard_bits shards, shard_bits 1..16

    // Points (uid, device_flag) at `address`; returns the session it
    // replaced, which the caller must kick. `uid` must outlive the entry.
    std::optional<SessionAddress> replace(std::string_view uid, uint8_t device_flag, SessionAddress address);
    // Removes the entry only while it still points at `address`: a session
    // replaced by a newer login leaves the newer entry alone.
    bool remove(std::string_view uid, uint8_t device_flag, SessionAddress address);
    std::optional<SessionAddress> find(std::string_view uid, uint8_t device_flag) const;
    size_t size() const;

private:
    struct Entry {
        const char* uid = nullptr;  // nullptr = empty bucket
        uint32_t hash = 0;
        uint16_t uid_len = 0;
        uint8_t device_flag = 0;
        uint8_t worker = 0;
        uint32_t slot = 0;
        uint32_t generation = 0;
    };
    static_assert(sizeof(Entry) == 24);

    struct alignas(64) Shard {
        mutable std::mutex mutex;
        std::vector<Entry> table;  // power-of-two size, linear probing
        size_t used = 0;
    };

    static uint64_t hash(std::string_view uid, uint8_t device_flag);
    Shard& shard_for(uint64_t h) const { return shards_[h >> (64 - shard_bits_)]; }
    static size_t find_index(const Shard& shard, std::string_view uid, uint8_t device_flag, uint32_t h32);
    static void grow(Shard& shard);
    static void erase_at(Shard& shard, size_t index);

    uint32_t shard_bits_;
    std::unique_ptr<Shard[]> shards_;
};

}  // namespace limaoim::gateway
