// A connection's identity across workers, packed in one 64-bit word for
// tables that outlive a loop iteration and are shared between workers (the
// uid directory, in-flight deliveries):
//   bits 63..48 worker | 47..28 slot | 27..0 generation
// ConnRef (handler.h) is the same connection as seen inside its own worker.
#pragma once

#include <cstdint>

namespace limaoim::net {

struct ConnId {
    static constexpr unsigned kWorkerBits = 16;
    static constexpr unsigned kSlotBits = 20;        // the kernel's fixed-file table holds at most 2^20
    static constexpr unsigned kGenerationBits = 28;  // workers hand out generations 1 .. 2^28-1
    static constexpr uint32_t kGenerationMask = (1u << kGenerationBits) - 1;

    uint64_t value = 0;  // 0: no connection

    static constexpr ConnId make(uint32_t worker, uint32_t slot, uint32_t generation) {
        return ConnId{uint64_t(worker) << (kSlotBits + kGenerationBits) | uint64_t(slot) << kGenerationBits |
                      (generation & kGenerationMask)};
    }
    constexpr uint32_t worker() const { return uint32_t(value >> (kSlotBits + kGenerationBits)); }
    constexpr uint32_t slot() const { return uint32_t(value >> kGenerationBits) & ((1u << kSlotBits) - 1); }
    constexpr uint32_t generation() const { return uint32_t(value) & kGenerationMask; }
    explicit constexpr operator bool() const { return value != 0; }
    constexpr bool operator==(const ConnId&) const = default;
};
static_assert(sizeof(ConnId) == 8);

}  // namespace limaoim::net
