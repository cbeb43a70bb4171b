// The v3/v4 security layer (PROTOCOL.md §5): X25519 key exchange, the AES key
// and IV derivation, AES-128-CBC payloads and MsgKey signatures. OpenSSL
// libcrypto does the primitives.
//
// Weak by design, reproduced for compatibility (Q12): the AES key is 16 hex
// characters of an MD5, the IV is fixed per connection, nothing covers headers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "limaoim/proto/packet.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace limaoim::proto::crypto {

using Key32 = std::array<uint8_t, 32>;

struct KeyPair {
    Key32 private_key{};
    Key32 public_key{};
};

// A fresh X25519 key pair from the CSPRNG. False only if OpenSSL fails.
bool generate_keypair(KeyPair& out);

// The public key of a private key (RFC 7748 clamping applied by X25519).
bool public_from_private(const Key32& private_key, Key32& public_key);

// X25519(private, peer). False when the peer key is a low-order point (the
// shared secret would be all zero: PROTOCOL.md §5.1) or OpenSSL fails.
bool shared_secret(const Key32& private_key, const Key32& peer_public, Key32& out);

// The server's reading of CONNECT.client_key: strict base64 (base64/base64.h),
// then the first 32 bytes (§5.1 step 2). Nullopt for invalid base64 or fewer
// than 32 bytes (Q15).
std::optional<Key32> parse_client_key(std::string_view base64_key);

// AES-128 key and CBC IV of one connection, both as raw bytes.
struct SessionKey {
    std::array<uint8_t, 16> key{};  // the 16 ASCII characters md5hex(base64(secret))[0:16]
    std::array<uint8_t, 16> iv{};   // the 16 ASCII bytes of the salt
    bool operator==(const SessionKey&) const = default;
};

inline constexpr size_t kSaltLength = 16;

// §5.2. `salt` must be kSaltLength bytes.
SessionKey derive_session_key(const Key32& secret, std::string_view salt);

// kSaltLength characters of [0-9a-zA-Z] from the CSPRNG (Q13).
void make_salt(char* out);

// Lowercase hex MD5 of `in`, 32 characters.
void md5_hex(std::string_view in, char* out32);

// Sign strings (§5.4 and §5.5), appended to `out`.
void append_send_sign(const SendPacket& send, std::string& out);
void append_recv_sign(const RecvPacket& recv, std::string& out);

// AES-128-CBC/PKCS#7 with one connection's key. Holds OpenSSL contexts and a
// scratch buffer that grows to the largest payload seen and is then reused,
// so steady-state calls do not allocate. One per thread; not thread-safe.
class Cipher {
public:
    Cipher();
    ~Cipher();
    Cipher(const Cipher&) = delete;
    Cipher& operator=(const Cipher&) = delete;

    // Raw ciphertext of PKCS7(plain), appended to `out`.
    void encrypt(const SessionKey& key, std::string_view plain, std::string& out);
    // Strict PKCS#7 (Q14): false for an empty input, a length that is not a
    // multiple of 16, or bad padding. Plaintext appended to `out`.
    bool decrypt(const SessionKey& key, std::string_view cipher, std::string& out);

    // Wire payload: base64(encrypt(plain)), appended to `out`.
    void seal_payload(const SessionKey& key, std::string_view plain, std::string& out);
    // Inverse of seal_payload: false on invalid base64 or decryption failure.
    bool open_payload(const SessionKey& key, std::string_view wire, std::string& out);

    // md5hex(base64(encrypt(sign))): 32 lowercase hex characters to `out32`.
    void msg_key(const SessionKey& key, std::string_view sign, char* out32);

    // MsgKey check of a SEND as the server does it (§5.4 step 1).
    bool verify_send(const SessionKey& key, const SendPacket& send);
    // MsgKey of a RECV for a receiver with `key` (§5.5).
    void recv_msg_key(const SessionKey& key, const RecvPacket& recv, char* out32);

private:
    EVP_CIPHER_CTX* ctx_;
    std::string scratch_;   // sign strings, then the base64 of their ciphertext
    std::string scratch2_;  // raw ciphertext
};

}  // namespace limaoim::proto::crypto
