#include "limaoim/im/token_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <memory>
#include <mutex>
#include <new>

namespace limaoim::im {

namespace {

// Fetched once and never freed (see proto/crypto.cpp on OpenSSL's exit cleanup).
const EVP_MD* sha256_algorithm() {
    static const EVP_MD* const digest = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
    return digest;
}

struct DigestContextDeleter {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// SHA-256 with one reused context per thread; false if OpenSSL fails (out of memory).
bool sha256(std::string_view in, TokenCache::Digest& out) {
    thread_local std::unique_ptr<EVP_MD_CTX, DigestContextDeleter> ctx(EVP_MD_CTX_new());
    unsigned length = 0;
    return ctx && sha256_algorithm() && EVP_DigestInit_ex(ctx.get(), sha256_algorithm(), nullptr) == 1 &&
           EVP_DigestUpdate(ctx.get(), in.data(), in.size()) == 1 &&
           EVP_DigestFinal_ex(ctx.get(), out.data(), &length) == 1 && length == out.size();
}

}  // namespace

std::string TokenCache::key(std::string_view uid, uint8_t device_flag) {
    std::string k;
    k.reserve(uid.size() + 1);
    k.push_back(char(device_flag));
    k.append(uid);
    return k;
}

bool TokenCache::digest(std::string_view token, Digest& out) { return sha256(token, out); }

void TokenCache::set(std::string_view uid, uint8_t device_flag, std::string_view token) {
    Digest d;
    if (!sha256(token, d)) throw std::bad_alloc();
    set_digest(uid, device_flag, d);
}

void TokenCache::set_digest(std::string_view uid, uint8_t device_flag, const Digest& digest) {
    std::unique_lock lock(mutex_);
    tokens_[key(uid, device_flag)] = digest;
}

// Why digests rather than CRYPTO_memcmp over the tokens themselves: that needs
// equal lengths, and returning early on a length mismatch would tell an
// attacker the stored token's length. Digesting the presented token takes time
// that depends only on its own length, which the attacker already knows, and
// the comparison is then always 32 bytes in constant time. One SHA-256 of a
// short string is small next to the X25519 of the same CONNECT.
TokenCheck TokenCache::check(std::string_view uid, uint8_t device_flag, std::string_view token) const {
    Digest presented;
    const bool digested = sha256(token, presented);  // outside the lock
    thread_local std::string probe;                   // reused: no allocation per CONNECT
    probe.clear();
    probe.push_back(char(device_flag));
    probe.append(uid);
    std::shared_lock lock(mutex_);
    auto it = tokens_.find(probe);
    if (it == tokens_.end()) return TokenCheck::Missing;
    if (!digested) return TokenCheck::Mismatch;  // fail closed
    return CRYPTO_memcmp(it->second.data(), presented.data(), presented.size()) == 0 ? TokenCheck::Match
                                                                                     : TokenCheck::Mismatch;
}

size_t TokenCache::size() const {
    std::shared_lock lock(mutex_);
    return tokens_.size();
}

}  // namespace limaoim::im
