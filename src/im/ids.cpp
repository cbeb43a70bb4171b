#include "limaoim/im/ids.h"

#include "limaoim/log/clock.h"

namespace limaoim::im {

int64_t IdGenerator::next(int64_t now_unix_ms) {
    const int64_t now_id = (now_unix_ms - kSnowflakeEpochMs) << 22 | node_bits_;
    int64_t last = last_.load(std::memory_order_relaxed);
    for (;;) {
        int64_t id = last >= now_id ? last + 1 : now_id;
        if ((id & (0x3ffLL << 12)) != node_bits_)  // the step overflowed into the node bits: next ms
            id = ((last >> 22) + 1) << 22 | node_bits_;
        if (last_.compare_exchange_weak(last, id, std::memory_order_relaxed)) return id;
    }
}

int64_t IdGenerator::next() { return next(clock::wall_ms()); }

}  // namespace limaoim::im
