// Tokens per (uid, device flag), checked at CONNECT (SERVER.md §2.3 step 4).
//
// The in-memory copy every CONNECT checks: filled at start from the durable
// store (store.h) and the config file's and --token flags' tokens, then kept
// current by POST /user/token, which writes the store first.
// Thread-safe: every worker reads, writers take the lock exclusively.
//
// Tokens are kept as SHA-256 digests and compared in constant time
// (CRYPTO_memcmp over the two 32-byte digests): how long a check takes says
// nothing about how much of a guess was right, nor how long the stored token
// is, and no plaintext token stays in the server's memory.
#pragma once

#include <array>
#include <cstdint>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace limaoim::im {

enum class TokenCheck : uint8_t {
    Match,
    Mismatch,
    Missing,  // nothing stored: refused outside test mode (quirk S1)
};

class TokenCache {
public:
    using Digest = std::array<uint8_t, 32>;  // SHA-256

    // The SHA-256 kept for `token` (what the durable store keeps too); false if OpenSSL fails.
    static bool digest(std::string_view token, Digest& out);
    // Throws std::bad_alloc if out of memory (also when OpenSSL cannot digest).
    void set(std::string_view uid, uint8_t device_flag, std::string_view token);
    void set_digest(std::string_view uid, uint8_t device_flag, const Digest& digest);
    // Missing if nothing is stored; Mismatch (fail closed) if OpenSSL cannot digest the token.
    TokenCheck check(std::string_view uid, uint8_t device_flag, std::string_view token) const;
    size_t size() const;

private:
    static std::string key(std::string_view uid, uint8_t device_flag);

    mutable std::shared_mutex mutex_;
    std::unordered_map<std::string, Digest> tokens_;  // key(): device flag byte + uid
};

}  // namespace limaoim::im
