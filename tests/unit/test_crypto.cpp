// The v3/v4 security layer against vectors/crypto.json (RFC 7748 key pairs,
// key derivation, payloads, MsgKeys, a v4 handshake), plus the refusals the
// spec requires: low-order peer keys, bad base64, short keys, bad padding.
#include <doctest/doctest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "limaoim/base64/base64.h"
#include "limaoim/proto/codec.h"
#include "limaoim/proto/crypto.h"
#include "vectors.h"

namespace {

using namespace limaoim::proto;
namespace base64 = limaoim::base64;
using crypto::Key32;
using crypto::SessionKey;
using nlohmann::json;

const json& vectors() {
    static const json parsed = limaoim::testing::load_vectors("crypto.json");
    return parsed;
}

std::string from_hex(std::string_view hex) {
    REQUIRE(hex.size() % 2 == 0);
    std::string out;
    for (size_t i = 0; i < hex.size(); i += 2)
        out.push_back(char(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    return out;
}

std::string to_hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (char c : bytes) {
        out.push_back(kDigits[uint8_t(c) >> 4]);
        out.push_back(kDigits[uint8_t(c) & 15]);
    }
    return out;
}

template <size_t N>
std::string_view as_text(const std::array<uint8_t, N>& bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), N};
}

std::span<const uint8_t> as_bytes(std::string_view text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

Key32 key_from_hex(std::string_view hex) {
    std::string bytes = from_hex(hex);
    REQUIRE(bytes.size() == 32);
    Key32 key;
    std::copy(bytes.begin(), bytes.end(), key.begin());
    return key;
}

std::string random_bytes(size_t n) {
    std::string out(n, '\0');
    if (n > 0) REQUIRE(RAND_bytes(reinterpret_cast<uint8_t*>(out.data()), int(n)) == 1);
    return out;
}

SessionKey random_session_key() {
    SessionKey key;
    REQUIRE(RAND_bytes(key.key.data(), int(key.key.size())) == 1);
    REQUIRE(RAND_bytes(key.iv.data(), int(key.iv.size())) == 1);
    return key;
}

// The session of crypto.json, as the vectors spell it.
SessionKey vector_session() {
    SessionKey key;
    std::string aes_key = vectors()["aes_key_derivation"]["aes_key_ascii"];
    std::string salt = vectors()["iv"]["salt_ascii"];
    REQUIRE(aes_key.size() == 16);
    REQUIRE(salt.size() == 16);
    std::copy(aes_key.begin(), aes_key.end(), key.key.begin());
    std::copy(salt.begin(), salt.end(), key.iv.begin());
    return key;
}

// Independent AES-128-CBC on OpenSSL's own PKCS#7 padding, or with none.
std::string openssl_cbc(const SessionKey& key, std::string_view in, bool encrypting, bool padding) {
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    REQUIRE(ctx != nullptr);
    REQUIRE(EVP_CipherInit_ex(ctx, EVP_aes_128_cbc(), nullptr, key.key.data(), key.iv.data(), encrypting) == 1);
    EVP_CIPHER_CTX_set_padding(ctx, padding ? 1 : 0);
    std::string out(in.size() + 16, '\0');
    int n = 0;
    int final_n = 0;
    auto* dst = reinterpret_cast<uint8_t*>(out.data());
    CHECK(EVP_CipherUpdate(ctx, dst, &n, reinterpret_cast<const uint8_t*>(in.data()), int(in.size())) == 1);
    CHECK(EVP_CipherFinal_ex(ctx, dst + n, &final_n) == 1);
    EVP_CIPHER_CTX_free(ctx);
    out.resize(size_t(n + final_n));
    return out;
}

SendPacket vector_send(const json& fields) {
    SendPacket send;
    send.msg_key = fields["msg_key"].get_ref<const std::string&>();
    send.client_seq = fields["client_seq"];
    send.client_msg_no = fields["client_msg_no"].get_ref<const std::string&>();
    send.channel_id = fields["channel_id"].get_ref<const std::string&>();
    send.channel_type = fields["channel_type"];
    send.payload = fields["payload_text"].get_ref<const std::string&>();
    return send;
}

// Low-order points of Curve25519 (the list libsodium refuses): 0, 1, the two
// points of order 8, p-1, p and p+1. X25519 ignores the top bit, so each is
// also tried with it set.
std::vector<Key32> low_order_points() {
    const char* const hex[] = {
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    };
    std::vector<Key32> points;
    for (const char* h : hex) {
        Key32 point = key_from_hex(h);
        points.push_back(point);
        point[31] |= 0x80;
        points.push_back(point);
    }
    return points;
}

}  // namespace

TEST_CASE("crypto: X25519 of the RFC 7748 key pairs") {
    const json& x = vectors()["x25519"];
    const Key32 client_private = key_from_hex(x["client_private_hex"].get<std::string>());
    const Key32 server_private = key_from_hex(x["server_private_hex"].get<std::string>());

    Key32 client_public{};
    Key32 server_public{};
    REQUIRE(crypto::public_from_private(client_private, client_public));
    REQUIRE(crypto::public_from_private(server_private, server_public));
    CHECK(to_hex(as_text(client_public)) == x["client_public_hex"]);
    CHECK(to_hex(as_text(server_public)) == x["server_public_hex"]);
    CHECK(base64::encode(client_public) == x["client_public_base64"]);
    CHECK(base64::encode(server_public) == x["server_public_base64"]);

    Key32 server_side{};
    Key32 client_side{};
    REQUIRE(crypto::shared_secret(server_private, client_public, server_side));
    REQUIRE(crypto::shared_secret(client_private, server_public, client_side));
    CHECK(to_hex(as_text(server_side)) == x["shared_secret_hex"]);
    CHECK(client_side == server_side);
}

TEST_CASE("crypto: AES key and IV derivation, step by step") {
    const json& d = vectors()["aes_key_derivation"];
    const Key32 secret = key_from_hex(vectors()["x25519"]["shared_secret_hex"].get<std::string>());

    const std::string secret_base64 = base64::encode(secret);
    CHECK(secret_base64 == d["shared_secret_base64"]);
    char md5[32];
    crypto::md5_hex(secret_base64, md5);
    CHECK(std::string_view(md5, 32) == d["md5_hex_of_base64"]);

    const std::string salt = vectors()["iv"]["salt_ascii"];
    const SessionKey key = crypto::derive_session_key(secret, salt);
    CHECK(as_text(key.key) == d["aes_key_ascii"]);
    CHECK(to_hex(as_text(key.key)) == d["aes_key_hex"]);
    CHECK(to_hex(as_text(key.iv)) == vectors()["iv"]["iv_hex"]);
    CHECK(key == vector_session());
}

TEST_CASE("crypto: payload encryption vectors") {
    const SessionKey key = vector_session();
    crypto::Cipher cipher;
    for (const json& v : vectors()["payload_encryption"]) {
        CAPTURE(v["label"].get<std::string>());
        const std::string plain = from_hex(v["plaintext_hex"].get<std::string>());
        const std::string expected_cipher = from_hex(v["ciphertext_hex"].get<std::string>());
        const std::string wire = v["wire_base64"];

        std::string ciphertext = "kept";
        cipher.encrypt(key, plain, ciphertext);
        CHECK(ciphertext == "kept" + expected_cipher);
        CHECK(expected_cipher.size() == v["padded_length"].get<size_t>());

        std::string sealed = "kept";
        cipher.seal_payload(key, plain, sealed);
        CHECK(sealed == "kept" + wire);

        std::string decrypted = "kept";
        CHECK(cipher.decrypt(key, expected_cipher, decrypted));
        CHECK(decrypted == "kept" + plain);

        std::string opened = "kept";
        CHECK(cipher.open_payload(key, wire, opened));
        CHECK(opened == "kept" + plain);
    }
}

TEST_CASE("crypto: SEND sign string, MsgKey and verification") {
    const json& s = vectors()["send"];
    const SessionKey key = vector_session();
    crypto::Cipher cipher;
    const SendPacket send = vector_send(s["fields"]);

    std::string sign = "kept";
    crypto::append_send_sign(send, sign);
    CHECK(sign == "kept" + s["sign_string_text"].get<std::string>());
    CHECK(to_hex(std::string_view(sign).substr(4)) == s["sign_string_hex"]);

    std::string sign_cipher_base64;
    cipher.seal_payload(key, std::string_view(sign).substr(4), sign_cipher_base64);
    CHECK(sign_cipher_base64 == s["sign_ciphertext_base64"]);
    char msg_key[32];
    cipher.msg_key(key, std::string_view(sign).substr(4), msg_key);
    CHECK(std::string_view(msg_key, 32) == s["msg_key"]);

    CHECK(cipher.verify_send(key, send));
    std::string plain;
    CHECK(cipher.open_payload(key, send.payload, plain));
    CHECK(plain == s["plaintext_payload_text"]);

    SUBCASE("a MsgKey one character off, cut short or empty is refused") {
        std::string off = s["msg_key"];
        off[31] = off[31] == '0' ? '1' : '0';
        SendPacket wrong = send;
        wrong.msg_key = off;
        CHECK_FALSE(cipher.verify_send(key, wrong));
        wrong.msg_key = send.msg_key.substr(0, 31);
        CHECK_FALSE(cipher.verify_send(key, wrong));
        wrong.msg_key = {};
        CHECK_FALSE(cipher.verify_send(key, wrong));
    }
    SUBCASE("another session's key does not verify") {
        CHECK_FALSE(cipher.verify_send(random_session_key(), send));
    }
}

TEST_CASE("crypto: a SEND tampered after signing is refused") {
    const json& t = vectors()["tampered_send"];
    const SessionKey key = vector_session();
    crypto::Cipher cipher;
    SendPacket tampered = vector_send(vectors()["send"]["fields"]);
    tampered.channel_id = "mallory";
    CHECK_FALSE(cipher.verify_send(key, tampered));

    std::string sign;
    crypto::append_send_sign(tampered, sign);
    char msg_key[32];
    cipher.msg_key(key, sign, msg_key);
    CHECK(std::string_view(msg_key, 32) == t["expected_msg_key_for_these_fields"]);
    tampered.msg_key = t["expected_msg_key_for_these_fields"].get_ref<const std::string&>();
    CHECK(cipher.verify_send(key, tampered));
}

TEST_CASE("crypto: RECV sign string and MsgKey") {
    const json& r = vectors()["recv"];
    const json& f = r["fields"];
    const SessionKey key = vector_session();
    crypto::Cipher cipher;
    RecvPacket recv;
    recv.message_id = f["message_id"].get<int64_t>();
    recv.message_seq = f["message_seq"];
    recv.client_msg_no = f["client_msg_no"].get_ref<const std::string&>();
    recv.timestamp = f["timestamp"];
    recv.channel_id = f["channel_id"].get_ref<const std::string&>();
    recv.channel_type = f["channel_type"];
    recv.from_uid = f["from_uid"].get_ref<const std::string&>();
    recv.payload = f["payload_text"].get_ref<const std::string&>();

    std::string sign = "kept";
    crypto::append_recv_sign(recv, sign);
    CHECK(sign == "kept" + r["sign_string_text"].get<std::string>());
    std::string sign_cipher_base64;
    cipher.seal_payload(key, std::string_view(sign).substr(4), sign_cipher_base64);
    CHECK(sign_cipher_base64 == r["sign_ciphertext_base64"]);

    char msg_key[32];
    cipher.recv_msg_key(key, recv, msg_key);
    CHECK(std::string_view(msg_key, 32) == r["msg_key"]);
    CHECK(std::string_view(msg_key, 32) == f["msg_key"]);

    SUBCASE("a negative timestamp is signed with its minus sign") {
        recv.timestamp = -5;
        std::string negative;
        crypto::append_recv_sign(recv, negative);
        CHECK(negative.find("d00dfeed-5bob") != std::string::npos);
    }
}

TEST_CASE("crypto: the v4 handshake of crypto.json") {
    const json& h = vectors()["handshake"];
    const json& x = vectors()["x25519"];
    const std::string connect_bytes = from_hex(h["connect_v4_hex"].get<std::string>());
    SplitResult split = split_frame(as_bytes(connect_bytes));
    REQUIRE(split.status == SplitStatus::Complete);
    Packet packet;
    REQUIRE(decode(split.frame, 4, packet) == DecodeError::None);
    const auto& connect = std::get<ConnectPacket>(packet);

    // Server side: the client's key, the server's reply, the session key.
    std::optional<Key32> client_public = crypto::parse_client_key(connect.client_key);
    REQUIRE(client_public);
    CHECK(to_hex(as_text(*client_public)) == x["client_public_hex"]);
    const Key32 server_private = key_from_hex(x["server_private_hex"].get<std::string>());
    Key32 server_public{};
    REQUIRE(crypto::public_from_private(server_private, server_public));
    const json& connack = h["connack_v4_fields"];
    CHECK(base64::encode(server_public) == connack["server_key"]);
    Key32 secret{};
    REQUIRE(crypto::shared_secret(server_private, *client_public, secret));
    const std::string salt = connack["salt"];
    CHECK(crypto::derive_session_key(secret, salt) == vector_session());

    // Client side: the CONNACK's key gives the same session.
    std::optional<Key32> server_key = crypto::parse_client_key(connack["server_key"].get<std::string>());
    REQUIRE(server_key);
    Key32 client_secret{};
    REQUIRE(crypto::shared_secret(key_from_hex(x["client_private_hex"].get<std::string>()), *server_key,
                                  client_secret));
    CHECK(crypto::derive_session_key(client_secret, salt) == vector_session());
}

TEST_CASE("crypto: fresh key pairs agree, whichever key the thread generated last") {
    crypto::KeyPair a;
    crypto::KeyPair b;
    REQUIRE(crypto::generate_keypair(a));
    REQUIRE(crypto::generate_keypair(b));
    CHECK(a.private_key != b.private_key);
    CHECK(a.public_key != b.public_key);
    Key32 derived_public{};
    REQUIRE(crypto::public_from_private(a.private_key, derived_public));
    CHECK(derived_public == a.public_key);
    REQUIRE(crypto::public_from_private(b.private_key, derived_public));
    CHECK(derived_public == b.public_key);

    // b was generated last (the handshake's order), then again for b and a.
    Key32 b_side{};
    Key32 b_again{};
    Key32 a_side{};
    REQUIRE(crypto::shared_secret(b.private_key, a.public_key, b_side));
    REQUIRE(crypto::shared_secret(b.private_key, a.public_key, b_again));
    REQUIRE(crypto::shared_secret(a.private_key, b.public_key, a_side));
    CHECK(b_side == a_side);
    CHECK(b_again == a_side);
    CHECK(b_side != Key32{});
}

TEST_CASE("crypto: low-order peer keys are refused") {
    crypto::KeyPair server;
    REQUIRE(crypto::generate_keypair(server));
    const Key32 rfc_private = key_from_hex(vectors()["x25519"]["server_private_hex"].get<std::string>());
    for (const Key32& point : low_order_points()) {
        CAPTURE(to_hex(as_text(point)));
        Key32 secret{};
        CHECK_FALSE(crypto::shared_secret(server.private_key, point, secret));
        CHECK_FALSE(crypto::shared_secret(rfc_private, point, secret));
        CHECK(ERR_peek_error() == 0);
        // Through the server's path too: valid base64 of a bad point.
        std::optional<Key32> parsed = crypto::parse_client_key(base64::encode(point));
        REQUIRE(parsed);
        CHECK_FALSE(crypto::shared_secret(rfc_private, *parsed, secret));
    }
}

TEST_CASE("crypto: parse_client_key keeps the first 32 bytes of valid base64") {
    std::string bytes = random_bytes(40);
    for (size_t n : {32u, 33u, 34u, 35u, 40u}) {
        CAPTURE(n);
        std::optional<Key32> key = crypto::parse_client_key(base64::encode(as_bytes(bytes.substr(0, n))));
        REQUIRE(key);
        CHECK(as_text(*key) == bytes.substr(0, 32));
    }
    CHECK_FALSE(crypto::parse_client_key(base64::encode(as_bytes(bytes.substr(0, 31)))));
    CHECK_FALSE(crypto::parse_client_key(""));
    std::string text = base64::encode(as_bytes(bytes));  // 56 characters
    CHECK(crypto::parse_client_key(text));
    text[50] = '*';  // past the characters that hold the 32 kept bytes
    CHECK_FALSE(crypto::parse_client_key(text));
    CHECK_FALSE(crypto::parse_client_key(base64::encode(as_bytes(bytes.substr(0, 32))) + "\n"));
    CHECK_FALSE(crypto::parse_client_key(base64::encode(as_bytes(bytes.substr(0, 32))) + "Zg=="));
}

TEST_CASE("crypto: salts are 16 characters of [0-9a-zA-Z], each character drawn") {
    std::set<char> seen;
    std::set<std::string> salts;
    constexpr int kSalts = 2000;
    for (int i = 0; i < kSalts; ++i) {
        char salt[crypto::kSaltLength + 1];
        salt[crypto::kSaltLength] = '#';
        crypto::make_salt(salt);
        CHECK(salt[crypto::kSaltLength] == '#');
        for (size_t c = 0; c < crypto::kSaltLength; ++c) {
            REQUIRE(std::isalnum(static_cast<unsigned char>(salt[c])));
            seen.insert(salt[c]);
        }
        salts.emplace(salt, crypto::kSaltLength);
    }
    CHECK(seen.size() == 62);
    CHECK(salts.size() == size_t(kSalts));
}

TEST_CASE("crypto: decryption checks PKCS#7 strictly") {
    const SessionKey key = random_session_key();
    crypto::Cipher cipher;
    // A ciphertext whose last plaintext block ends with `tail`.
    auto ending_with = [&](std::string_view tail) {
        std::string block = random_bytes(32);
        block.replace(block.size() - tail.size(), tail.size(), tail);
        return openssl_cbc(key, block, true, false);
    };
    auto refused = [&](std::string_view ciphertext) {
        std::string out = "kept";
        bool ok = cipher.decrypt(key, ciphertext, out);
        CHECK(out == "kept");
        return !ok;
    };

    CHECK(refused(""));
    CHECK(refused(random_bytes(15)));
    CHECK(refused(random_bytes(17)));
    CHECK(refused(ending_with(std::string(1, '\0'))));
    CHECK(refused(ending_with(std::string(1, char(17)))));
    CHECK(refused(ending_with(std::string(1, char(0xff)))));
    CHECK(refused(ending_with("\x02\x03\x03")));
    CHECK(refused(ending_with(std::string("\x01", 1) + std::string(15, char(16)))));

    std::string full_block_pad = "kept";
    CHECK(cipher.decrypt(key, ending_with(std::string(16, char(16))), full_block_pad));
    CHECK(full_block_pad.size() == 4 + 16);
    std::string one_pad = "kept";
    CHECK(cipher.decrypt(key, ending_with("\x01"), one_pad));
    CHECK(one_pad.size() == 4 + 31);

    std::string opened;
    CHECK_FALSE(cipher.open_payload(key, "", opened));
    CHECK_FALSE(cipher.open_payload(key, "not base64!", opened));
    CHECK_FALSE(cipher.open_payload(key, base64::encode(ending_with(std::string(1, '\0'))), opened));
    CHECK(opened.empty());
}

TEST_CASE("crypto: random payloads of 0..100 bytes round trip and match OpenSSL") {
    crypto::Cipher cipher;
    std::string ciphertext;
    std::string wire;
    std::string back;
    for (size_t n = 0; n <= 100; ++n) {
        CAPTURE(n);
        const SessionKey key = random_session_key();
        const std::string plain = random_bytes(n);
        ciphertext.clear();
        cipher.encrypt(key, plain, ciphertext);
        CHECK(ciphertext.size() == (n / 16 + 1) * 16);
        CHECK(ciphertext == openssl_cbc(key, plain, true, true));
        back.clear();
        CHECK(cipher.decrypt(key, ciphertext, back));
        CHECK(back == plain);

        wire.clear();
        cipher.seal_payload(key, plain, wire);
        CHECK(wire == base64::encode(ciphertext));
        back.clear();
        CHECK(cipher.open_payload(key, wire, back));
        CHECK(back == plain);
    }
}
