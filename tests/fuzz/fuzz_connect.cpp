// fuzz_connect: the CONNECT path. A CONNECT built from the input is encoded,
// decoded as the server would, and handed to gateway::handshake in test mode
// and in release mode (with a small token store). Checked:
// * the outcome the spec requires for the kind of client key (PROTOCOL.md §5.1)
//   and of token (SERVER.md §2.3); a client key this target made itself is
//   accepted, and the client derives the same session key from the CONNACK;
// * a success for v>2 carries a 44-character base64 server key and a
//   16-character [0-9a-zA-Z] salt, and time_diff = now - client_timestamp;
// * a failure CONNACK has empty key and salt and time_diff 0;
// * the CONNACK survives encode -> decode.
//
// Input: [version][key kind][key fields][device_flag][client_timestamp i64]
//        [server_now i64][uid choice][token choice][device_id][uid][token]
// The strings at the end are one length byte and the bytes.
#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <string>

#include "fuzz_support.h"
#include "limaoim/base64/base64.h"
#include "limaoim/gateway/handshake.h"
#include "limaoim/proto/codec.h"

namespace {

using namespace limaoim;
using proto::crypto::Key32;
using proto::ReasonCode;
using gateway::AuthFailure;

// The u-coordinates whose X25519 with any clamped scalar is zero (orders 1, 2,
// 4 and 8, and their non-canonical forms p and p + 1), little-endian.
constexpr std::array<std::array<uint8_t, 32>, 7> kLowOrderPoints = {{
    {0x00},
    {0x01},
    {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
     0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
    {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
     0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
}};

// What the server must make of the client key (only read for v>2).
enum class KeyExpectation { Accepted, Refused, LowOrder, Unknown };

struct ClientKey {
    std::string base64;
    KeyExpectation expectation = KeyExpectation::Unknown;
    bool own_pair = false;  // private_key below is the one behind base64
    Key32 private_key{};
};

std::string base64_of(std::span<const uint8_t> bytes) { return base64::encode(bytes); }

// Key kinds, by the selector byte: half the inputs carry a real public key.
ClientKey read_client_key(fuzz::InputReader& input) {
    ClientKey key;
    uint8_t kind = input.u8();
    if (kind < 128) {
        // A real key pair with up to 16 extra bytes the server must ignore (§5.1 step 2).
        std::span<const uint8_t> private_bytes = input.bytes(32);
        std::copy(private_bytes.begin(), private_bytes.end(), key.private_key.begin());
        Key32 public_key;
        FUZZ_CHECK(proto::crypto::public_from_private(key.private_key, public_key));
        std::span<const uint8_t> extra = input.bytes(input.u8() % 17);
        std::string raw(public_key.begin(), public_key.end());
        raw.append(extra.begin(), extra.end());
        key.base64 = base64_of({reinterpret_cast<const uint8_t*>(raw.data()), raw.size()});
        key.own_pair = true;
        key.expectation = KeyExpectation::Accepted;
    } else if (kind < 160) {
        // Fewer than 32 bytes (Q15); 31 most often, the length an off-by-one accepts.
        uint8_t length_selector = input.u8();
        key.base64 = base64_of(input.bytes(length_selector < 128 ? 31 : length_selector % 32));
        key.expectation = KeyExpectation::Refused;
    } else if (kind < 192) {
        uint8_t selector = input.u8();
        std::array<uint8_t, 32> point = kLowOrderPoints[selector % kLowOrderPoints.size()];
        if (selector & 0x80) point[31] |= 0x80;  // X25519 ignores the top bit (RFC 7748 §5)
        std::string raw(point.begin(), point.end());
        std::span<const uint8_t> extra = input.bytes(input.u8() % 17);
        raw.append(extra.begin(), extra.end());
        key.base64 = base64_of({reinterpret_cast<const uint8_t*>(raw.data()), raw.size()});
        key.expectation = KeyExpectation::LowOrder;
    } else if (kind < 224) {
        // Valid base64 made invalid: a character outside the alphabet, or one
        // character fewer so the length is no multiple of 4.
        key.base64 = base64_of(input.bytes(input.u8()));
        uint8_t position = input.u8();
        uint8_t damage = input.u8();
        static constexpr std::string_view kForeign("!-_.*@ \n\0", 9);
        if (key.base64.empty() || damage & 1) {
            key.base64.insert(key.base64.empty() ? 0 : position % key.base64.size(), 1,
                              kForeign[(damage >> 1) % kForeign.size()]);
        } else {
            key.base64.erase(position % key.base64.size(), 1);
        }
        key.expectation = KeyExpectation::Refused;
    } else {
        key.base64 = std::string(input.short_text());
    }
    return key;
}

struct TokenEntry {
    std::string_view uid;
    uint8_t device_flag;
    std::string_view token;
};
constexpr std::array<TokenEntry, 3> kTokens = {{
    {"alice", 0, "tok-alice"},
    {"bob", 1, "tok-bob"},
    {"", 2, ""},
}};

const im::TokenCache& token_cache() {
    static const im::TokenCache* tokens = [] {
        auto* cache = new im::TokenCache;
        for (const TokenEntry& entry : kTokens) cache->set(entry.uid, entry.device_flag, entry.token);
        return cache;
    }();
    return *tokens;
}

im::TokenCheck expected_token_check(const proto::ConnectPacket& connect) {
    for (const TokenEntry& entry : kTokens) {
        if (entry.uid == connect.uid && entry.device_flag == connect.device_flag)
            return entry.token == connect.token ? im::TokenCheck::Match : im::TokenCheck::Mismatch;
    }
    return im::TokenCheck::Missing;
}

bool is_salt_character(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

void check_connack_round_trip(const proto::ConnackPacket& connack, uint8_t version) {
    size_t size = proto::encoded_size(connack, version);
    FUZZ_CHECK(size > 0);
    auto buffer = std::make_unique<uint8_t[]>(size);
    FUZZ_CHECK(proto::encode(connack, version, {buffer.get(), size}) == size);
    proto::SplitResult split = proto::split_frame({buffer.get(), size});
    FUZZ_CHECK(split.status == proto::SplitStatus::Complete && split.frame.size == size);
    proto::Packet decoded;
    FUZZ_CHECK(proto::decode(split.frame, version, decoded) == proto::DecodeError::None);
    FUZZ_CHECK(std::get<proto::ConnackPacket>(decoded) == connack);
}

void check_success(const gateway::HandshakeResult& result, const proto::ConnectPacket& connect,
                   const ClientKey& key, int64_t now_ms) {
    FUZZ_CHECK(result.failure == AuthFailure::None);
    FUZZ_CHECK(result.time_diff == int64_t(uint64_t(now_ms) - uint64_t(connect.client_timestamp)));
    proto::ConnackPacket connack = result.connack(proto::has_crypto(connect.version));
    FUZZ_CHECK(connack.reason_code == uint8_t(ReasonCode::Success));
    FUZZ_CHECK(connack.time_diff == result.time_diff);
    if (!proto::has_crypto(connect.version)) {
        FUZZ_CHECK(connack.server_key.empty() && connack.salt.empty());
        return;
    }
    FUZZ_CHECK(connack.server_key.size() == 44);
    Key32 server_public;
    FUZZ_CHECK(base64::decode(connack.server_key, server_public.data(), server_public.size()) == 32);
    FUZZ_CHECK(connack.salt.size() == proto::crypto::kSaltLength);
    FUZZ_CHECK(std::all_of(connack.salt.begin(), connack.salt.end(), is_salt_character));
    if (!key.own_pair) return;
    Key32 secret;
    FUZZ_CHECK(proto::crypto::shared_secret(key.private_key, server_public, secret));
    FUZZ_CHECK(proto::crypto::derive_session_key(secret, connack.salt) == result.key);
}

void check_failure(const gateway::HandshakeResult& result, uint8_t version) {
    FUZZ_CHECK(result.failure != AuthFailure::None);
    FUZZ_CHECK(result.failure != AuthFailure::CryptoError);  // OpenSSL does not fail on valid keys
    FUZZ_CHECK(result.reason == ReasonCode::AuthFail);
    proto::ConnackPacket connack = result.connack(proto::has_crypto(version));
    FUZZ_CHECK(connack.reason_code == uint8_t(ReasonCode::AuthFail));
    FUZZ_CHECK(connack.server_key.empty() && connack.salt.empty() && connack.time_diff == 0);
}

// Nullopt when the key's outcome is not known in advance (an arbitrary string).
std::optional<AuthFailure> expected_key_failure(const proto::ConnectPacket& connect, const ClientKey& key) {
    if (!proto::has_crypto(connect.version)) return AuthFailure::None;
    switch (key.expectation) {
    case KeyExpectation::Accepted: return AuthFailure::None;
    case KeyExpectation::Refused: return AuthFailure::BadClientKey;
    case KeyExpectation::LowOrder: return AuthFailure::LowOrderKey;
    case KeyExpectation::Unknown: return std::nullopt;
    }
    return std::nullopt;
}

void run_handshake(const proto::ConnectPacket& connect, const ClientKey& key, bool check_tokens, int64_t now_ms) {
    gateway::AuthPolicy policy{check_tokens, &token_cache()};
    gateway::HandshakeResult result = gateway::handshake(connect, proto::has_crypto(connect.version), policy, now_ms);

    std::optional<AuthFailure> key_failure = expected_key_failure(connect, key);
    AuthFailure token_failure = AuthFailure::None;
    if (check_tokens) {
        im::TokenCheck check = expected_token_check(connect);
        if (check == im::TokenCheck::Missing) token_failure = AuthFailure::TokenMissing;
        if (check == im::TokenCheck::Mismatch) token_failure = AuthFailure::TokenMismatch;
    }

    if (result.ok()) {
        FUZZ_CHECK(token_failure == AuthFailure::None);
        FUZZ_CHECK(!key_failure || *key_failure == AuthFailure::None);
        check_success(result, connect, key, now_ms);
    } else {
        check_failure(result, connect.version);
        // Which check runs first is the server's choice; the failure must be one that applies.
        bool token_explains = result.failure == token_failure;
        bool key_explains = key_failure ? result.failure == *key_failure
                                        : result.failure == AuthFailure::BadClientKey ||
                                              result.failure == AuthFailure::LowOrderKey;
        FUZZ_CHECK(token_explains || (key_explains && proto::has_crypto(connect.version)));
    }
    check_connack_round_trip(result.connack(proto::has_crypto(connect.version)), connect.version);
}

std::string_view pick(uint8_t choice, std::string_view listed, std::string_view from_input) {
    return choice & 1 ? listed : from_input;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::InputReader input(data, size);
    proto::ConnectPacket connect;
    connect.version = input.u8();
    ClientKey key = read_client_key(input);
    connect.client_key = key.base64;
    connect.device_flag = input.u8();
    connect.client_timestamp = int64_t(input.uint<uint64_t>());
    int64_t now_ms = int64_t(input.uint<uint64_t>());
    uint8_t uid_choice = input.u8();
    uint8_t token_choice = input.u8();
    connect.device_id = input.short_text();
    const TokenEntry& listed = kTokens[(uid_choice >> 1) % kTokens.size()];
    connect.uid = pick(uid_choice, listed.uid, input.short_text());
    connect.token = pick(token_choice, listed.token, input.short_text());

    // The server sees the CONNECT as decoded from the wire: for v<=2 without a client key.
    size_t wire_size = proto::encoded_size(connect, connect.version);
    FUZZ_CHECK(wire_size > 0);
    auto wire = std::make_unique<uint8_t[]>(wire_size);
    FUZZ_CHECK(proto::encode(connect, connect.version, {wire.get(), wire_size}) == wire_size);
    proto::SplitResult split = proto::split_frame({wire.get(), wire_size});
    FUZZ_CHECK(split.status == proto::SplitStatus::Complete && split.frame.size == wire_size);
    proto::Packet decoded;
    FUZZ_CHECK(proto::decode(split.frame, connect.version, decoded) == proto::DecodeError::None);
    const proto::ConnectPacket& received = std::get<proto::ConnectPacket>(decoded);
    proto::ConnectPacket expected = connect;
    if (!proto::has_crypto(connect.version)) expected.client_key = {};
    FUZZ_CHECK(received == expected);

    run_handshake(received, key, false, now_ms);
    run_handshake(received, key, true, now_ms);
    return 0;
}
