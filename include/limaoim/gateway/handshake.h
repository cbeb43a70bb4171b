// CONNECT -> CONNACK (SERVER.md §2.3 steps 2-5, PROTOCOL.md §5.1-§5.2): the
// token check and the X25519 key exchange, with no I/O, so that tests and
// fuzzers drive it directly.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "limaoim/proto/crypto.h"
#include "limaoim/proto/packet.h"
#include "limaoim/im/token_cache.h"

namespace limaoim::gateway {

enum class AuthFailure : uint8_t {
    None,
    TokenMissing,    // nothing stored for (uid, device flag)
    TokenMismatch,
    BadClientKey,    // not base64, or fewer than 32 bytes (Q15)
    LowOrderKey,     // shared secret all zero
    CryptoError,     // OpenSSL failed
    TokensStale,     // a shared store is unreachable: tokens changed on other nodes may be missed
};
const char* to_string(AuthFailure failure);

struct HandshakeResult {
    proto::ReasonCode reason = proto::ReasonCode::Error;
    AuthFailure failure = AuthFailure::None;
    int64_t time_diff = 0;  // 0 on failure, as the original
    // With crypto only, on success:
    std::array<char, 44> server_key_base64{};
    std::array<char, proto::crypto::kSaltLength> salt{};
    proto::crypto::SessionKey key;

    bool ok() const { return reason == proto::ReasonCode::Success; }
    // The CONNACK to send (views into this result); `with_crypto` as given to handshake().
    proto::ConnackPacket connack(bool with_crypto) const;
};

struct AuthPolicy {
    bool check_tokens = true;  // false in --mode test
    const im::TokenCache* tokens = nullptr;
    // How many handshakes of one thread share a server X25519 key pair.
    // 1 (the default) is a fresh pair per connection, as PROTOCOL.md §5.1
    // says. N > 1 halves the server's crypto cost (one scalar multiplication
    // instead of two); every connection still gets its own shared secret
    // (from its client key) and salt, but a leaked server private key would
    // expose up to N sessions instead of one.
    uint32_t server_key_uses = 1;
    // With a shared store (several nodes): false while this node cannot
    // hear other nodes' token changes (Redis unreachable). Token checks are
    // then refused with reason 0 (server error) rather than answered from a
    // copy that may have missed a revocation. Null: always current.
    const std::atomic<bool>* tokens_current = nullptr;
};

// `with_crypto`: the session's dialect exchanges keys at its version
// (proto::Dialect::has_crypto); CONNECT's client_key is then required.
HandshakeResult handshake(const proto::ConnectPacket& connect, bool with_crypto, const AuthPolicy& policy,
                          int64_t server_now_ms);

}  // namespace limaoim::gateway
