// Elapsed and remaining time on the steady clock, for the tests' timeouts.
// Header-only: the support library and the test programs share it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace limaoim::testing {

using Clock = std::chrono::steady_clock;

inline int64_t ms_since(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// Milliseconds left until `deadline` (at least 1, so a read still polls once).
inline int left_ms(Clock::time_point deadline) {
    return int(std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
}

}  // namespace limaoim::testing
