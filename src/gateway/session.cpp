#include "limaoim/gateway/session.h"

#include <cstdlib>
#include <cstring>

namespace limaoim::gateway {

namespace {
constexpr char kHex[] = "0123456789abcdef";

uint8_t hex_value(uint8_t c) { return c <= '9' ? c - '0' : c - 'a' + 10; }
}  // namespace

bool Session::set_uid(std::string_view value) {
    if (value.size() > kInlineUid) {
        char* copy = static_cast<char*>(std::malloc(value.size()));
        if (!copy) return false;
        std::memcpy(copy, value.data(), value.size());
        uid.heap = copy;
    } else {
        std::memcpy(uid.inline_bytes, value.data(), value.size());
    }
    uid_len = uint16_t(value.size());
    return true;
}

void Session::free_uid() {
    if (uid_len > kInlineUid) std::free(uid.heap);
    uid_len = 0;
}

void Session::set_key(const proto::crypto::SessionKey& session_key) {
    for (size_t i = 0; i < key_bytes.size(); ++i)
        key_bytes[i] = uint8_t(hex_value(session_key.key[2 * i]) << 4 | hex_value(session_key.key[2 * i + 1]));
    iv = session_key.iv;
}

proto::crypto::SessionKey Session::key() const {
    proto::crypto::SessionKey k;
    for (size_t i = 0; i < key_bytes.size(); ++i) {
        k.key[2 * i] = uint8_t(kHex[key_bytes[i] >> 4]);
        k.key[2 * i + 1] = uint8_t(kHex[key_bytes[i] & 15]);
    }
    k.iv = iv;
    return k;
}

}  // namespace limaoim::gateway
