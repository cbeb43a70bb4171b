#include "limaoim/gateway/handshake.h"
#include "limaoim/base64/base64.h"

#include <algorithm>

namespace limaoim::gateway {

using proto::ReasonCode;
namespace crypto = proto::crypto;

const char* to_string(AuthFailure failure) {
    switch (failure) {
    case AuthFailure::None: return "none";
    case AuthFailure::TokenMissing: return "token_missing";
    case AuthFailure::TokenMismatch: return "token_mismatch";
    case AuthFailure::BadClientKey: return "bad_client_key";
    case AuthFailure::LowOrderKey: return "low_order_key";
    case AuthFailure::CryptoError: return "crypto_error";
    case AuthFailure::TokensStale: return "tokens_stale";
    }
    return "unknown";
}

proto::ConnackPacket HandshakeResult::connack(bool with_crypto) const {
    proto::ConnackPacket p;
    p.reason_code = uint8_t(reason);
    p.time_diff = time_diff;
    if (with_crypto && ok()) {
        p.server_key = {server_key_base64.data(), server_key_base64.size()};
        p.salt = {salt.data(), salt.size()};
    }
    return p;
}

namespace {

// This thread's current server key pair and how many more handshakes may use it.
struct ServerKey {
    crypto::KeyPair pair;
    uint32_t uses_left = 0;
    uint32_t uses_per_key = 0;  // of the policy that made it
};

bool next_server_key(uint32_t uses_per_key, crypto::KeyPair& out) {
    thread_local ServerKey current;
    if (current.uses_left == 0 || current.uses_per_key != uses_per_key) {
        if (!crypto::generate_keypair(current.pair)) return false;
        current.uses_left = uses_per_key;
        current.uses_per_key = uses_per_key;
    }
    --current.uses_left;
    out = current.pair;
    return true;
}

HandshakeResult refuse(ReasonCode reason, AuthFailure failure) {
    HandshakeResult r;
    r.reason = reason;
    r.failure = failure;
    return r;
}
}  // namespace

HandshakeResult handshake(const proto::ConnectPacket& connect, bool with_crypto, const AuthPolicy& policy,
                          int64_t server_now_ms) {
    if (policy.check_tokens) {
        if (policy.tokens_current && !policy.tokens_current->load(std::memory_order_relaxed))
            return refuse(ReasonCode::Error, AuthFailure::TokensStale);
        switch (policy.tokens->check(connect.uid, connect.device_flag, connect.token)) {
        case im::TokenCheck::Match: break;
        case im::TokenCheck::Missing: return refuse(ReasonCode::AuthFail, AuthFailure::TokenMissing);
        case im::TokenCheck::Mismatch: return refuse(ReasonCode::AuthFail, AuthFailure::TokenMismatch);
        }
    }

    HandshakeResult r;
    if (with_crypto) {
        std::optional<crypto::Key32> client_key = crypto::parse_client_key(connect.client_key);
        if (!client_key) return refuse(ReasonCode::AuthFail, AuthFailure::BadClientKey);
        crypto::KeyPair server;
        if (!next_server_key(std::max<uint32_t>(policy.server_key_uses, 1), server))
            return refuse(ReasonCode::Error, AuthFailure::CryptoError);
        crypto::Key32 secret;
        if (!crypto::shared_secret(server.private_key, *client_key, secret))
            return refuse(ReasonCode::AuthFail, AuthFailure::LowOrderKey);
        base64::encode(server.public_key, r.server_key_base64.data());
        crypto::make_salt(r.salt.data());
        r.key = crypto::derive_session_key(secret, {r.salt.data(), r.salt.size()});
    }
    r.reason = ReasonCode::Success;
    // Wrapping arithmetic: a hostile client_timestamp must not overflow (Q6).
    r.time_diff = int64_t(uint64_t(server_now_ms) - uint64_t(connect.client_timestamp));
    return r;
}

}  // namespace limaoim::gateway
