#include "limaoim/gateway/directory.h"

#include <cstring>
#include <functional>
#include <stdexcept>

namespace limaoim::gateway {

namespace {
constexpr size_t kInitialBuckets = 16;
constexpr size_t kNotFound = SIZE_MAX;
}  // namespace

Directory::Directory(uint32_t shard_bits) : shard_bits_(shard_bits) {
    // shard_for() shifts by 64 - shard_bits: 0 would be undefined.
    if (shard_bits < 1 || shard_bits > 16) throw std::invalid_argument("Directory: shard_bits must be 1..16");
    shards_ = std::make_unique<Shard[]>(size_t(1) << shard_bits);
}

uint64_t Directory::hash(std::string_view uid, uint8_t device_flag) {
    uint64_t h = std::hash<std::string_view>{}(uid) ^ (uint64_t(device_flag) * 0x9e3779b97f4a7c15ULL);
    // Final mix so both the shard (top bits) and the bucket (low bits) vary.
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

size_t Directory::find_index(const Shard& shard, std::string_view uid, uint8_t device_flag, uint32_t h32) {
    if (shard.table.empty()) return kNotFound;
    size_t mask = shard.table.size() - 1;
    for (size_t i = h32 & mask;; i = (i + 1) & mask) {
        const Entry& e = shard.table[i];
        if (!e.uid) return kNotFound;
        if (e.hash == h32 && e.device_flag == device_flag && e.uid_len == uid.size() &&
            std::memcmp(e.uid, uid.data(), uid.size()) == 0)
            return i;
    }
}

void Directory::grow(Shard& shard) {
    std::vector<Entry> old;
    old.swap(shard.table);
    shard.table.assign(old.empty() ? kInitialBuckets : old.size() * 2, Entry{});
    size_t mask = shard.table.size() - 1;
    for (const Entry& e : old) {
        if (!e.uid) continue;
        size_t i = e.hash & mask;
        while (shard.table[i].uid) i = (i + 1) & mask;
        shard.table[i] = e;
    }
}

// Backward-shift deletion: no tombstones, so probe chains stay short.
void Directory::erase_at(Shard& shard, size_t index) {
    size_t mask = shard.table.size() - 1;
    size_t hole = index;
    for (size_t i = (index + 1) & mask; shard.table[i].uid; i = (i + 1) & mask) {
        size_t home = shard.table[i].hash & mask;
        // Move entry i into the hole unless its home lies cyclically in (hole, i].
        bool home_between = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!home_between) {
            shard.table[hole] = shard.table[i];
            hole = i;
        }
    }
    shard.table[hole] = Entry{};
    --shard.used;
}

std::optional<SessionAddress> Directory::replace(std::string_view uid, uint8_t device_flag, SessionAddress address) {
    uint64_t h = hash(uid, device_flag);
    uint32_t h32 = uint32_t(h);
    Shard& shard = shard_for(h);
    std::lock_guard lock(shard.mutex);
    size_t i = find_index(shard, uid, device_flag, h32);
    if (i != kNotFound) {
        Entry& e = shard.table[i];
        SessionAddress old{e.worker, e.slot, e.generation};
        e.uid = uid.data();  // the newer session's copy
        e.worker = uint8_t(address.worker);
        e.slot = address.slot;
        e.generation = address.generation;
        return old;
    }
    if ((shard.used + 1) * 4 > shard.table.size() * 3) grow(shard);
    size_t mask = shard.table.size() - 1;
    i = h32 & mask;
    while (shard.table[i].uid) i = (i + 1) & mask;
    shard.table[i] = Entry{uid.data(), h32, uint16_t(uid.size()), device_flag, uint8_t(address.worker),
                           address.slot, address.generation};
    ++shard.used;
    return std::nullopt;
}

bool Directory::remove(std::string_view uid, uint8_t device_flag, SessionAddress address) {
    uint64_t h = hash(uid, device_flag);
    Shard& shard = shard_for(h);
    std::lock_guard lock(shard.mutex);
    size_t i = find_index(shard, uid, device_flag, uint32_t(h));
    if (i == kNotFound) return false;
    const Entry& e = shard.table[i];
    if (SessionAddress{e.worker, e.slot, e.generation} != address) return false;
    erase_at(shard, i);
    return true;
}

std::optional<SessionAddress> Directory::find(std::string_view uid, uint8_t device_flag) const {
    uint64_t h = hash(uid, device_flag);
    const Shard& shard = shard_for(h);
    std::lock_guard lock(shard.mutex);
    size_t i = find_index(shard, uid, device_flag, uint32_t(h));
    if (i == kNotFound) return std::nullopt;
    const Entry& e = shard.table[i];
    return SessionAddress{e.worker, e.slot, e.generation};
}

size_t Directory::size() const {
    size_t n = 0;
    for (size_t s = 0; s < (size_t(1) << shard_bits_); ++s) {
        std::lock_guard lock(shards_[s].mutex);
        n += shards_[s].used;
    }
    return n;
}

}  // namespace limaoim::gateway
