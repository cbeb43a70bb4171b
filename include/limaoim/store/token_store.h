// Tokens per (uid, device flag), checked at CONNECT (SERVER.md §2.3 step 4).
//
// The embedded store for this milestone keeps them in memory, filled from the
// config file and --token flags at start; the durable engines and the HTTP
// API that writes them (POST /user/token) come with the messaging milestone.
// Thread-safe: every worker reads, writers take the lock exclusively.
#pragma once

#include <cstdint>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace limaoim::store {

enum class TokenCheck : uint8_t {
    Match,
    Mismatch,
    Missing,  // nothing stored: refused outside test mode (quirk S1)
};

class TokenStore {
public:
    void set(std::string_view uid, uint8_t device_flag, std::string_view token);
    TokenCheck check(std::string_view uid, uint8_t device_flag, std::string_view token) const;
    size_t size() const;

private:
    static std::string key(std::string_view uid, uint8_t device_flag);

    mutable std::shared_mutex mutex_;
    std::unordered_map<std::string, std::string> tokens_;
};

}  // namespace limaoim::store
