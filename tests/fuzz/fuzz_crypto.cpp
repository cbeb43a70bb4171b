// fuzz_crypto: the v3/v4 payload and MsgKey code (PROTOCOL.md §5.3-§5.5)
// against a reference written here directly on OpenSSL's EVP interface:
// * decrypt / open_payload of arbitrary bytes never crash and accept exactly
//   the inputs with strict PKCS#7 padding (Q14), with the reference plaintext;
// * verify_send of arbitrary SEND fields is true exactly when msg_key equals
//   the reference MsgKey of the §5.4 sign string;
// * recv_msg_key equals the reference MsgKey of the §5.5 sign string;
// * seal_payload writes the reference ciphertext and open_payload returns the
//   plaintext; encrypt -> decrypt likewise.
//
// Input: [operation][key 16][iv 16][operation's fields...]
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <string>

#include "fuzz_support.h"
#include "limaoim/base64/base64.h"
#include "limaoim/proto/crypto.h"

namespace {

using namespace limaoim::proto;
namespace base64 = limaoim::base64;
using crypto::SessionKey;

constexpr size_t kBlock = 16;

struct CipherContextDeleter {
    void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, CipherContextDeleter>;

// AES-128-CBC over whole blocks; the caller pads (encrypt) or checks the padding (decrypt).
std::string reference_cbc(const SessionKey& key, std::string_view in, bool encrypting) {
    CipherContext ctx(EVP_CIPHER_CTX_new());
    FUZZ_CHECK(ctx);
    FUZZ_CHECK(EVP_CipherInit_ex(ctx.get(), EVP_aes_128_cbc(), nullptr, key.key.data(), key.iv.data(),
                                 encrypting ? 1 : 0) == 1);
    EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
    std::string out(in.size(), '\0');
    int written = 0;
    FUZZ_CHECK(EVP_CipherUpdate(ctx.get(), reinterpret_cast<uint8_t*>(out.data()), &written,
                                reinterpret_cast<const uint8_t*>(in.data()), int(in.size())) == 1);
    FUZZ_CHECK(size_t(written) == in.size());
    return out;
}

std::string reference_encrypt(const SessionKey& key, std::string_view plain) {
    std::string padded(plain);
    size_t pad = kBlock - plain.size() % kBlock;
    padded.append(pad, char(pad));
    return reference_cbc(key, padded, true);
}

// The plaintext, or nullopt unless the ciphertext is a non-empty multiple of the
// block size ending in 1..16 copies of the pad length.
std::optional<std::string> reference_decrypt(const SessionKey& key, std::string_view cipher) {
    if (cipher.empty() || cipher.size() % kBlock != 0) return std::nullopt;
    std::string plain = reference_cbc(key, cipher, false);
    size_t pad = uint8_t(plain.back());
    if (pad == 0 || pad > kBlock) return std::nullopt;
    for (size_t i = plain.size() - pad; i < plain.size(); ++i)
        if (uint8_t(plain[i]) != pad) return std::nullopt;
    plain.resize(plain.size() - pad);
    return plain;
}

std::string reference_base64(std::string_view in) {
    std::string out(base64::encoded_size(in.size()) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()), reinterpret_cast<const uint8_t*>(in.data()),
                            int(in.size()));
    out.resize(size_t(n));
    return out;
}

std::string reference_msg_key(const SessionKey& key, std::string_view sign) {
    std::string text = reference_base64(reference_encrypt(key, sign));
    std::array<uint8_t, 16> digest{};
    unsigned digest_size = 0;
    FUZZ_CHECK(EVP_Digest(text.data(), text.size(), digest.data(), &digest_size, EVP_md5(), nullptr) == 1);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (uint8_t b : digest) {
        hex.push_back(kHex[b >> 4]);
        hex.push_back(kHex[b & 15]);
    }
    return hex;
}

crypto::Cipher& cipher() {
    static crypto::Cipher* instance = new crypto::Cipher;  // reused, as a worker reuses its own
    return *instance;
}

// Output goes after this, to check that results are appended.
constexpr std::string_view kAlreadyThere = "kept";

void fuzz_decrypt(const SessionKey& key, std::string_view ciphertext) {
    std::string out(kAlreadyThere);
    bool ok = cipher().decrypt(key, ciphertext, out);
    std::optional<std::string> expected = reference_decrypt(key, ciphertext);
    FUZZ_CHECK(ok == expected.has_value());
    if (ok) FUZZ_CHECK(out == std::string(kAlreadyThere) + *expected);
}

void fuzz_open(const SessionKey& key, std::string_view wire) {
    std::string out(kAlreadyThere);
    bool ok = cipher().open_payload(key, wire, out);
    std::string raw(wire.size() / 4 * 3, '\0');
    std::optional<size_t> raw_size =
        base64::decode(wire, reinterpret_cast<uint8_t*>(raw.data()), raw.size());
    std::optional<std::string> expected;
    if (raw_size) expected = reference_decrypt(key, std::string_view(raw).substr(0, *raw_size));
    FUZZ_CHECK(ok == expected.has_value());
    if (ok) FUZZ_CHECK(out == std::string(kAlreadyThere) + *expected);
}

void fuzz_verify_send(const SessionKey& key, limaoim::fuzz::InputReader& input) {
    SendPacket send;
    send.client_seq = input.uint<uint32_t>();
    send.channel_type = input.u8();
    send.setting = input.u8();
    send.flags = input.u8() & 0x0f;
    uint8_t msg_key_choice = input.u8();
    std::string_view msg_key_from_input = input.short_text();
    send.client_msg_no = input.short_text();
    send.channel_id = input.short_text();
    send.payload = input.rest_text();

    std::string sign = std::to_string(send.client_seq);
    sign.append(send.client_msg_no).append(send.channel_id).append(std::to_string(send.channel_type));
    sign.append(send.payload);
    std::string signed_by_library;
    crypto::append_send_sign(send, signed_by_library);
    FUZZ_CHECK(signed_by_library == sign);

    // A third of the inputs sign correctly, a third are one character off.
    std::string msg_key = reference_msg_key(key, sign);
    if (msg_key_choice < 86) {
        send.msg_key = msg_key;
    } else if (msg_key_choice < 172) {
        msg_key[msg_key_choice % msg_key.size()] ^= 0x01;
        send.msg_key = msg_key;
    } else {
        send.msg_key = msg_key_from_input;
    }
    bool expected = send.msg_key == reference_msg_key(key, sign);
    FUZZ_CHECK(cipher().verify_send(key, send) == expected);
}

void fuzz_recv_msg_key(const SessionKey& key, limaoim::fuzz::InputReader& input) {
    RecvPacket recv;
    recv.message_id = int64_t(input.uint<uint64_t>());
    recv.message_seq = input.uint<uint32_t>();
    recv.timestamp = int32_t(input.uint<uint32_t>());
    recv.channel_type = input.u8();
    recv.client_msg_no = input.short_text();
    recv.from_uid = input.short_text();
    recv.channel_id = input.short_text();
    recv.payload = input.rest_text();

    std::string sign = std::to_string(recv.message_id) + std::to_string(recv.message_seq);
    sign.append(recv.client_msg_no).append(std::to_string(recv.timestamp)).append(recv.from_uid);
    sign.append(recv.channel_id).append(std::to_string(recv.channel_type)).append(recv.payload);
    std::string signed_by_library;
    crypto::append_recv_sign(recv, signed_by_library);
    FUZZ_CHECK(signed_by_library == sign);

    std::array<char, 32> msg_key{};
    cipher().recv_msg_key(key, recv, msg_key.data());
    FUZZ_CHECK(std::string_view(msg_key.data(), msg_key.size()) == reference_msg_key(key, sign));
}

void fuzz_seal_open(const SessionKey& key, std::string_view plain) {
    std::string expected_cipher = reference_encrypt(key, plain);

    std::string ciphertext(kAlreadyThere);
    cipher().encrypt(key, plain, ciphertext);
    FUZZ_CHECK(ciphertext == std::string(kAlreadyThere) + expected_cipher);
    std::string decrypted;
    FUZZ_CHECK(cipher().decrypt(key, expected_cipher, decrypted));
    FUZZ_CHECK(decrypted == plain);

    std::string wire;
    cipher().seal_payload(key, plain, wire);
    FUZZ_CHECK(wire == reference_base64(expected_cipher));
    std::string opened;
    FUZZ_CHECK(cipher().open_payload(key, wire, opened));
    FUZZ_CHECK(opened == plain);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    limaoim::fuzz::InputReader input(data, size);
    uint8_t operation = input.u8();
    SessionKey key;
    std::span<const uint8_t> key_bytes = input.bytes(key.key.size());
    std::copy(key_bytes.begin(), key_bytes.end(), key.key.begin());
    std::span<const uint8_t> iv_bytes = input.bytes(key.iv.size());
    std::copy(iv_bytes.begin(), iv_bytes.end(), key.iv.begin());

    switch (operation % 5) {
    case 0: fuzz_decrypt(key, input.rest_text()); break;
    case 1: fuzz_open(key, input.rest_text()); break;
    case 2: fuzz_verify_send(key, input); break;
    case 3: fuzz_recv_msg_key(key, input); break;
    case 4: fuzz_seal_open(key, input.rest_text()); break;
    }
    return 0;
}
