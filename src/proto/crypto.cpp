// PROTOCOL.md §5 on OpenSSL 3. OpenSSL 3 looks algorithms up by name in a
// locked method store and allocates a provider context per EVP context, so
// everything reusable is made once: the AES and MD5 algorithms per process;
// the X25519 import context, the base point and the MD5 context per thread;
// the AES context per Cipher.
#include "limaoim/proto/crypto.h"
#include "limaoim/base64/base64.h"
#include "limaoim/log/log.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace limaoim::proto::crypto {

namespace {

constexpr size_t kBlock = 16;
constexpr char kHexDigits[] = "0123456789abcdef";

// For OpenSSL calls that cannot fail with valid arguments and initialised
// contexts: a failure there means a broken library or memory corruption, and
// carrying on could put predictable bytes on the wire.
[[noreturn]] void openssl_fatal(const char* what) {
    log::write(log::Level::Error, "crypto", "OpenSSL failed: %s", what);
    ERR_print_errors_fp(stderr);
    std::abort();
}

struct PkeyDeleter {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct PkeyContextDeleter {
    void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};
struct DigestContextDeleter {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using PkeyContext = std::unique_ptr<EVP_PKEY_CTX, PkeyContextDeleter>;
using DigestContext = std::unique_ptr<EVP_MD_CTX, DigestContextDeleter>;

// Fetched once and deliberately never freed: the process holds them until
// exit, and freeing them from a static destructor could run after OpenSSL's
// own atexit cleanup.
const EVP_CIPHER* aes_128_cbc() {
    static const EVP_CIPHER* const cipher = EVP_CIPHER_fetch(nullptr, "AES-128-CBC", nullptr);
    return cipher;
}

const EVP_MD* md5_algorithm() {
    static const EVP_MD* const digest = EVP_MD_fetch(nullptr, "MD5", nullptr);
    return digest;
}

// One thread's X25519 machinery. Every public key, the server's own
// included, comes from the Montgomery ladder (X25519 with the base point u=9):
// in OpenSSL 3.0 it is faster than the fixed-base multiplication behind
// EVP_PKEY_keygen. A handshake derives with the key pair it has just made, so
// the derive context of the last generated pair is kept for that one use.
class X25519 {
public:
    X25519() : import_(EVP_PKEY_CTX_new_from_name(nullptr, "X25519", nullptr)) {
        static constexpr Key32 kBasePoint = {9};
        if (import_ && EVP_PKEY_fromdata_init(import_.get()) == 1) base_point_ = import_public(kBasePoint);
    }

    bool generate(KeyPair& out) {
        if (!base_point_ || RAND_priv_bytes(out.private_key.data(), int(out.private_key.size())) != 1)
            return false;
        PkeyContext ctx = derive_context(out.private_key);
        if (!ctx || !derive(ctx.get(), base_point_.get(), out.public_key)) return false;
        generated_ = std::move(ctx);
        generated_private_ = out.private_key;
        return true;
    }

    bool public_from_private(const Key32& private_key, Key32& public_key) {
        PkeyContext ctx = derive_context(private_key);
        return ctx && derive(ctx.get(), base_point_.get(), public_key);
    }

    bool shared_secret(const Key32& private_key, const Key32& peer_public, Key32& out) {
        PkeyContext ctx = take_generated(private_key);
        if (!ctx) ctx = derive_context(private_key);
        Pkey peer = import_public(peer_public);
        // OpenSSL refuses an all-zero secret (a low-order peer point) itself;
        // checking again keeps that guarantee whatever the library version.
        return ctx && peer && derive(ctx.get(), peer.get(), out) &&
               !std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0; });
    }

private:
    // The context of the last generate(), once, and only for its own key.
    PkeyContext take_generated(const Key32& private_key) {
        if (!generated_ || CRYPTO_memcmp(generated_private_.data(), private_key.data(), private_key.size()) != 0)
            return nullptr;
        OPENSSL_cleanse(generated_private_.data(), generated_private_.size());
        return std::move(generated_);
    }

    // A context ready to derive with `private_key`. The key's public half is
    // a placeholder: given none, OpenSSL would compute it by the slow
    // fixed-base multiplication, and deriving reads only the private half.
    PkeyContext derive_context(const Key32& private_key) {
        if (!base_point_) return nullptr;
        Key32 placeholder{};
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, const_cast<uint8_t*>(private_key.data()),
                                              private_key.size()),
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, placeholder.data(), placeholder.size()),
            OSSL_PARAM_construct_end(),
        };
        EVP_PKEY* raw = nullptr;
        if (EVP_PKEY_fromdata(import_.get(), &raw, EVP_PKEY_KEYPAIR, params) != 1) return nullptr;
        Pkey key(raw);
        PkeyContext ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
        if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) return nullptr;
        return ctx;
    }

    Pkey import_public(const Key32& public_key) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, const_cast<uint8_t*>(public_key.data()),
                                              public_key.size()),
            OSSL_PARAM_construct_end(),
        };
        EVP_PKEY* raw = nullptr;
        if (EVP_PKEY_fromdata(import_.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1) return nullptr;
        return Pkey(raw);
    }

    // No peer validation: X25519 takes any 32 bytes; low-order points show
    // as an all-zero result, which OpenSSL and shared_secret() refuse.
    static bool derive(EVP_PKEY_CTX* ctx, EVP_PKEY* peer, Key32& out) {
        size_t length = out.size();
        return EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) == 1 && EVP_PKEY_derive(ctx, out.data(), &length) == 1 &&
               length == out.size();
    }

    PkeyContext import_;
    Pkey base_point_;
    PkeyContext generated_;
    Key32 generated_private_{};
};

X25519& thread_x25519() {
    thread_local X25519 instance;
    return instance;
}

// MD5 with one reused context per thread, as MsgKeys are per message.
// EVP_Digest would allocate the context too; OpenSSL 3.0 still rebuilds its
// small provider state on every init (one malloc and free per digest), which
// no 3.0 EVP call avoids.
void md5(std::string_view in, uint8_t (&out)[16]) {
    thread_local DigestContext ctx(EVP_MD_CTX_new());
    unsigned length = 0;
    if (!ctx || EVP_DigestInit_ex(ctx.get(), md5_algorithm(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), in.data(), in.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), out, &length) != 1 || length != sizeof out)
        openssl_fatal("MD5");
}

void append_decimal(std::string& out, auto value) {
    char digits[24];
    out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}

}  // namespace

bool generate_keypair(KeyPair& out) { return thread_x25519().generate(out); }

bool public_from_private(const Key32& private_key, Key32& public_key) {
    return thread_x25519().public_from_private(private_key, public_key);
}

bool shared_secret(const Key32& private_key, const Key32& peer_public, Key32& out) {
    if (thread_x25519().shared_secret(private_key, peer_public, out)) return true;
    // A refused peer key is an ordinary outcome: leave no stale error behind.
    ERR_clear_error();
    return false;
}

std::optional<Key32> parse_client_key(std::string_view base64_key) {
    // Every character counts for validity, but only the first 32 bytes are
    // kept: the first 44 characters (33 bytes) cover them.
    std::optional<size_t> size = base64::decoded_size(base64_key);
    if (!size || *size < 32) return std::nullopt;
    uint8_t head[33];
    base64::decode(base64_key.substr(0, base64::encoded_size(32)), head, sizeof head);
    Key32 key;
    std::copy_n(head, key.size(), key.begin());
    return key;
}

void md5_hex(std::string_view in, char* out32) {
    uint8_t digest[16];
    md5(in, digest);
    for (size_t i = 0; i < sizeof digest; ++i) {
        out32[2 * i] = kHexDigits[digest[i] >> 4];
        out32[2 * i + 1] = kHexDigits[digest[i] & 15];
    }
}

SessionKey derive_session_key(const Key32& secret, std::string_view salt) {
    char secret_base64[base64::encoded_size(32)];
    base64::encode(secret, secret_base64);
    char hex[32];
    md5_hex({secret_base64, sizeof secret_base64}, hex);
    SessionKey key;
    std::copy_n(hex, key.key.size(), key.key.begin());
    std::copy_n(salt.begin(), std::min(salt.size(), key.iv.size()), key.iv.begin());
    return key;
}

void make_salt(char* out) {
    static constexpr std::string_view kSaltAlphabet =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    // Bytes at or above the largest multiple of 62 are redrawn, so that each
    // character is uniform; 2 spare bytes per salt cover most rejections.
    constexpr unsigned kAcceptBelow = 256 / kSaltAlphabet.size() * kSaltAlphabet.size();
    uint8_t random[kSaltLength + 2];
    size_t used = sizeof random;
    for (size_t filled = 0; filled < kSaltLength;) {
        if (used == sizeof random) {
            if (RAND_bytes(random, int(sizeof random)) != 1) openssl_fatal("RAND_bytes");
            used = 0;
        }
        uint8_t byte = random[used++];
        if (byte < kAcceptBelow) out[filled++] = kSaltAlphabet[byte % kSaltAlphabet.size()];
    }
}

void append_send_sign(const SendPacket& send, std::string& out) {
    append_decimal(out, send.client_seq);
    out.append(send.client_msg_no).append(send.channel_id);
    append_decimal(out, unsigned(send.channel_type));
    out.append(send.payload);
}

void append_recv_sign(const RecvPacket& recv, std::string& out) {
    append_decimal(out, recv.message_id);
    append_decimal(out, recv.message_seq);
    out.append(recv.client_msg_no);
    append_decimal(out, recv.timestamp);
    out.append(recv.from_uid).append(recv.channel_id);
    append_decimal(out, unsigned(recv.channel_type));
    out.append(recv.payload);
}

Cipher::Cipher() : ctx_(EVP_CIPHER_CTX_new()) {
    // Bound to AES-128-CBC once here; each call then re-keys with a null
    // cipher, which keeps OpenSSL's provider context instead of rebuilding it.
    if (!ctx_ || !aes_128_cbc() || EVP_CipherInit_ex(ctx_, aes_128_cbc(), nullptr, nullptr, nullptr, 1) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx_, 0) != 1) {
        EVP_CIPHER_CTX_free(ctx_);
        throw std::runtime_error("OpenSSL: cannot set up AES-128-CBC");
    }
}

Cipher::~Cipher() { EVP_CIPHER_CTX_free(ctx_); }

// OpenSSL's padding is off: PKCS#7 is done here, so that decrypt can report
// every padding error itself (Q14) and encrypt needs no padded copy.
void Cipher::encrypt(const SessionKey& key, std::string_view plain, std::string& out) {
    const size_t whole = plain.size() / kBlock * kBlock;
    const size_t pad = kBlock - plain.size() % kBlock;
    uint8_t last[kBlock];
    if (plain.size() > whole) std::memcpy(last, plain.data() + whole, kBlock - pad);
    std::memset(last + kBlock - pad, int(pad), pad);

    const size_t start = out.size();
    out.resize(start + whole + kBlock);
    auto* dst = reinterpret_cast<uint8_t*>(out.data() + start);
    int written = 0;
    int last_written = 0;
    if (EVP_EncryptInit_ex(ctx_, nullptr, nullptr, key.key.data(), key.iv.data()) != 1 ||
        EVP_EncryptUpdate(ctx_, dst, &written, reinterpret_cast<const uint8_t*>(plain.data()), int(whole)) != 1 ||
        EVP_EncryptUpdate(ctx_, dst + whole, &last_written, last, int(kBlock)) != 1 ||
        size_t(written) + size_t(last_written) != whole + kBlock)
        openssl_fatal("AES-128-CBC encrypt");
}

bool Cipher::decrypt(const SessionKey& key, std::string_view cipher, std::string& out) {
    if (cipher.empty() || cipher.size() % kBlock != 0) return false;
    const size_t start = out.size();
    out.resize(start + cipher.size());
    auto* dst = reinterpret_cast<uint8_t*>(out.data() + start);
    int written = 0;
    if (EVP_DecryptInit_ex(ctx_, nullptr, nullptr, key.key.data(), key.iv.data()) != 1 ||
        EVP_DecryptUpdate(ctx_, dst, &written, reinterpret_cast<const uint8_t*>(cipher.data()),
                          int(cipher.size())) != 1 ||
        size_t(written) != cipher.size())
        openssl_fatal("AES-128-CBC decrypt");

    const uint8_t pad = dst[cipher.size() - 1];
    bool valid = pad >= 1 && pad <= kBlock;
    for (size_t i = 1; valid && i <= pad; ++i) valid = dst[cipher.size() - i] == pad;
    out.resize(valid ? out.size() - pad : start);
    return valid;
}

void Cipher::seal_payload(const SessionKey& key, std::string_view plain, std::string& out) {
    scratch2_.clear();
    encrypt(key, plain, scratch2_);
    const size_t start = out.size();
    out.resize(start + base64::encoded_size(scratch2_.size()));
    base64::encode({reinterpret_cast<const uint8_t*>(scratch2_.data()), scratch2_.size()}, out.data() + start);
}

bool Cipher::open_payload(const SessionKey& key, std::string_view wire, std::string& out) {
    scratch2_.resize(wire.size() / 4 * 3);
    std::optional<size_t> length =
        base64::decode(wire, reinterpret_cast<uint8_t*>(scratch2_.data()), scratch2_.size());
    if (!length) return false;
    scratch2_.resize(*length);
    return decrypt(key, scratch2_, out);
}

// `sign` may live in scratch_: it is read once, before scratch_ is reused.
void Cipher::msg_key(const SessionKey& key, std::string_view sign, char* out32) {
    scratch2_.clear();
    encrypt(key, sign, scratch2_);
    scratch_.resize(base64::encoded_size(scratch2_.size()));
    base64::encode({reinterpret_cast<const uint8_t*>(scratch2_.data()), scratch2_.size()}, scratch_.data());
    md5_hex(scratch_, out32);
}

bool Cipher::verify_send(const SessionKey& key, const SendPacket& send) {
    scratch_.clear();
    append_send_sign(send, scratch_);
    char expected[32];
    msg_key(key, scratch_, expected);
    return send.msg_key.size() == sizeof expected &&
           CRYPTO_memcmp(send.msg_key.data(), expected, sizeof expected) == 0;
}

void Cipher::recv_msg_key(const SessionKey& key, const RecvPacket& recv, char* out32) {
    scratch_.clear();
    append_recv_sign(recv, scratch_);
    msg_key(key, scratch_, out32);
}

}  // namespace limaoim::proto::crypto
