// Message ids: snowflakes (SERVER.md §4): 41 bits of ms since the Twitter
// epoch, 10 bits of node id, 12 bits of per-ms step.
//
// Lock-free and thread-safe (one CAS per id). Unique and increasing across
// restarts too: the generator starts above the largest id the store has seen
// (written with every commit), so a clock set back between two runs cannot
// make an id come out twice. When 4096 ids are taken within one ms it runs
// ahead of the clock by a ms instead of waiting (the original sleeps).
#pragma once

#include <atomic>
#include <cstdint>

namespace limaoim::im {

inline constexpr int64_t kSnowflakeEpochMs = 1288834974657;

class IdGenerator {
public:
    explicit IdGenerator(uint32_t node_id) : node_bits_(int64_t(node_id & 0x3ff) << 12) {}
    // Ids after `id` only (the store's max_message_id at start).
    void start_above(int64_t id) { last_.store(id, std::memory_order_relaxed); }
    int64_t next(int64_t now_unix_ms);
    int64_t next();  // with the wall clock

private:
    int64_t node_bits_;
    std::atomic<int64_t> last_{0};
};

}  // namespace limaoim::im
