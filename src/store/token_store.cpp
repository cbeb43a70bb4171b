#include "limaoim/store/token_store.h"

#include <mutex>

namespace limaoim::store {

std::string TokenStore::key(std::string_view uid, uint8_t device_flag) {
    std::string k;
    k.reserve(uid.size() + 1);
    k.push_back(char(device_flag));
    k.append(uid);
    return k;
}

void TokenStore::set(std::string_view uid, uint8_t device_flag, std::string_view token) {
    std::unique_lock lock(mutex_);
    tokens_[key(uid, device_flag)] = std::string(token);
}

TokenCheck TokenStore::check(std::string_view uid, uint8_t device_flag, std::string_view token) const {
    thread_local std::string probe;  // reused: no allocation per CONNECT
    probe.clear();
    probe.push_back(char(device_flag));
    probe.append(uid);
    std::shared_lock lock(mutex_);
    auto it = tokens_.find(probe);
    if (it == tokens_.end()) return TokenCheck::Missing;
    return it->second == token ? TokenCheck::Match : TokenCheck::Mismatch;
}

size_t TokenStore::size() const {
    std::shared_lock lock(mutex_);
    return tokens_.size();
}

}  // namespace limaoim::store
