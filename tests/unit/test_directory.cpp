#include <doctest/doctest.h>

#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "limaoim/gateway/directory.h"
#include "limaoim/gateway/handshake.h"
#include "limaoim/gateway/session.h"
#include "limaoim/proto/crypto.h"

using namespace limaoim;
using gateway::Directory;
using gateway::SessionAddress;

TEST_CASE("Directory: one entry per (uid, device flag); replace returns the older session") {
    Directory d;
    std::string alice = "alice";
    CHECK_FALSE(d.replace(alice, 0, {0, 1, 10}).has_value());
    CHECK_FALSE(d.replace(alice, 1, {0, 2, 11}).has_value());  // WEB coexists with APP
    CHECK(d.size() == 2);
    std::string alice_again = "alice";
    auto old = d.replace(alice_again, 0, {1, 5, 12});
    REQUIRE(old.has_value());
    CHECK(*old == SessionAddress{0, 1, 10});
    CHECK(d.find("alice", 0) == SessionAddress{1, 5, 12});
    CHECK(d.size() == 2);
}

TEST_CASE("Directory: a replaced session's remove leaves the newer entry alone") {
    Directory d;
    std::string uid = "bob";
    d.replace(uid, 0, {0, 1, 1});
    d.replace(uid, 0, {0, 2, 2});
    CHECK_FALSE(d.remove("bob", 0, {0, 1, 1}));
    CHECK(d.find("bob", 0) == SessionAddress{0, 2, 2});
    CHECK(d.remove("bob", 0, {0, 2, 2}));
    CHECK_FALSE(d.find("bob", 0).has_value());
    CHECK(d.size() == 0);
}

TEST_CASE("Directory: matches a model under random inserts and removes (backward-shift deletion)") {
    Directory d(1);  // two shards: long probe chains
    std::vector<std::string> uids;
    for (int i = 0; i < 3000; ++i) uids.push_back("u" + std::to_string(i));
    std::unordered_map<std::string, SessionAddress> model;
    std::mt19937 rng(42);
    for (int step = 0; step < 40000; ++step) {
        const std::string& uid = uids[rng() % uids.size()];
        uint8_t flag = uint8_t(rng() % 2);
        std::string key = uid + "#" + std::to_string(flag);
        if (rng() % 3) {
            SessionAddress a{uint32_t(rng() % 4), uint32_t(rng() % 20000), uint32_t(step)};
            auto old = d.replace(uid, flag, a);
            auto it = model.find(key);
            CHECK(old.has_value() == (it != model.end()));
            if (old && it != model.end()) CHECK(*old == it->second);
            model[key] = a;
        } else {
            auto it = model.find(key);
            bool removed = d.remove(uid, flag, it == model.end() ? SessionAddress{} : it->second);
            CHECK(removed == (it != model.end()));
            if (it != model.end()) model.erase(it);
        }
    }
    CHECK(d.size() == model.size());
    for (const auto& [key, address] : model) {
        size_t hash = key.rfind('#');
        CHECK(d.find(key.substr(0, hash), uint8_t(key[hash + 1] - '0')) == address);
    }
}

TEST_CASE("Directory: concurrent workers keep exactly one entry per uid") {
    Directory d;
    std::vector<std::string> uids;
    for (int i = 0; i < 1000; ++i) uids.push_back("user" + std::to_string(i));
    std::vector<std::thread> threads;
    for (uint32_t w = 0; w < 4; ++w)
        threads.emplace_back([&, w] {
            for (int round = 0; round < 20; ++round)
                for (uint32_t i = 0; i < uids.size(); ++i) d.replace(uids[i], 0, {w, i, uint32_t(round)});
        });
    for (auto& t : threads) t.join();
    CHECK(d.size() == uids.size());
}

TEST_CASE("Session: 64 bytes; uids inline or on the heap; the AES key round-trips through 8 bytes") {
    gateway::Session s{};
    CHECK(s.set_uid("short"));
    CHECK(s.uid_view() == "short");
    s.free_uid();
    std::string long_uid(200, 'x');
    CHECK(s.set_uid(long_uid));
    CHECK(s.uid_view() == long_uid);
    s.free_uid();

    proto::crypto::SessionKey key;
    const char* hex = "0c15fdbf4d09bc6c";
    const char* salt = "a1B2c3D4e5F6g7H8";
    for (int i = 0; i < 16; ++i) {
        key.key[i] = uint8_t(hex[i]);
        key.iv[i] = uint8_t(salt[i]);
    }
    s.set_key(key);
    CHECK(s.key() == key);
}

TEST_CASE("handshake: token check and key exchange outcomes") {
    store::TokenStore tokens;
    tokens.set("alice", 0, "secret");
    gateway::AuthPolicy release{true, &tokens};
    gateway::AuthPolicy test_mode{false, &tokens};
    proto::ConnectPacket c;
    c.version = 1;
    c.uid = "alice";
    c.token = "secret";
    c.client_timestamp = 1000;

    CHECK(gateway::handshake(c, release, 1250).ok());
    CHECK(gateway::handshake(c, release, 1250).time_diff == 250);
    c.token = "wrong";
    auto r = gateway::handshake(c, release, 1250);
    CHECK(r.reason == proto::ReasonCode::AuthFail);
    CHECK(r.failure == gateway::AuthFailure::TokenMismatch);
    CHECK(r.time_diff == 0);
    c.uid = "nobody";
    c.token = "";  // quirk S1: no stored token is a refusal, even with an empty token
    CHECK(gateway::handshake(c, release, 0).failure == gateway::AuthFailure::TokenMissing);
    CHECK(gateway::handshake(c, test_mode, 0).ok());

    SUBCASE("v4: a real X25519 exchange gives the client the same AES key") {
        proto::crypto::KeyPair client;
        REQUIRE(proto::crypto::generate_keypair(client));
        std::string client_b64 = proto::crypto::base64_encode(client.public_key);
        c.version = 4;
        c.client_key = client_b64;
        auto ok = gateway::handshake(c, test_mode, 0);
        REQUIRE(ok.ok());
        proto::ConnackPacket ack = ok.connack(4);
        CHECK(ack.server_key.size() == 44);
        CHECK(ack.salt.size() == 16);
        auto server_key = proto::crypto::parse_client_key(ack.server_key);
        REQUIRE(server_key);
        proto::crypto::Key32 secret;
        REQUIRE(proto::crypto::shared_secret(client.private_key, *server_key, secret));
        CHECK(proto::crypto::derive_session_key(secret, ack.salt) == ok.key);
    }
    SUBCASE("v3/v4 key failures are auth failures with empty key strings") {
        c.version = 3;
        c.client_key = "not base64!";
        auto bad = gateway::handshake(c, test_mode, 0);
        CHECK(bad.failure == gateway::AuthFailure::BadClientKey);
        CHECK(bad.connack(3).server_key.empty());
        std::string short_key = proto::crypto::base64_encode(std::vector<uint8_t>(31, 9));
        c.client_key = short_key;
        CHECK(gateway::handshake(c, test_mode, 0).failure == gateway::AuthFailure::BadClientKey);
        std::string zero_key = proto::crypto::base64_encode(std::vector<uint8_t>(32, 0));
        c.client_key = zero_key;
        CHECK(gateway::handshake(c, test_mode, 0).failure == gateway::AuthFailure::LowOrderKey);
    }
    SUBCASE("time_diff wraps instead of overflowing on a hostile timestamp") {
        c.client_timestamp = INT64_MIN;
        CHECK(gateway::handshake(c, test_mode, 1).ok());
    }
}

namespace {
// The server keys and salts of `count` v4 handshakes under `policy`, each with a fresh client key.
std::pair<std::vector<std::string>, std::vector<std::string>> handshake_keys(const gateway::AuthPolicy& policy,
                                                                              int count) {
    std::vector<std::string> server_keys, salts;
    proto::ConnectPacket c;
    c.version = 4;
    c.uid = "u";
    for (int i = 0; i < count; ++i) {
        proto::crypto::KeyPair client;
        REQUIRE(proto::crypto::generate_keypair(client));
        std::string b64 = proto::crypto::base64_encode(client.public_key);
        c.client_key = b64;
        auto r = gateway::handshake(c, policy, 0);
        REQUIRE(r.ok());
        server_keys.emplace_back(r.server_key_base64.data(), r.server_key_base64.size());
        salts.emplace_back(r.salt.data(), r.salt.size());
    }
    return {server_keys, salts};
}
}  // namespace

TEST_CASE("handshake: --server-key-reuse shares a server key pair across N handshakes, never more") {
    store::TokenStore tokens;
    auto [server_keys, salts] = handshake_keys(gateway::AuthPolicy{false, &tokens, 3}, 7);
    // Keys come in runs of at most 3; salts are always fresh.
    CHECK(std::set<std::string>(server_keys.begin(), server_keys.end()).size() >= 3);
    for (size_t i = 0; i + 3 < server_keys.size(); ++i)
        CHECK_FALSE((server_keys[i] == server_keys[i + 1] && server_keys[i + 1] == server_keys[i + 2] &&
                     server_keys[i + 2] == server_keys[i + 3]));
    CHECK(std::set<std::string>(salts.begin(), salts.end()).size() == salts.size());

    // The default policy right after: no key of the previous policy is carried over.
    auto [fresh_keys, fresh_salts] = handshake_keys(gateway::AuthPolicy{false, &tokens, 1}, 4);
    CHECK(std::set<std::string>(fresh_keys.begin(), fresh_keys.end()).size() == 4);
}
