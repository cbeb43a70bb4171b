// Text helpers the stats renderers share (prometheus.cpp, limaoim-stat's report).
#pragma once

#include <cstdint>
#include <string>

namespace limaoim::stats {

// printf into the end of `out`; one formatted piece is cut at 511 bytes.
void appendf(std::string& out, const char* format, ...) __attribute__((format(printf, 2, 3)));

// For %llu: uint64_t is unsigned long on this ABI.
inline unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

}  // namespace limaoim::stats
