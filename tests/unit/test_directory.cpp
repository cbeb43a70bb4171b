#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "limaoim/base64/base64.h"
#include "limaoim/im/directory.h"
#include "limaoim/gateway/handshake.h"
#include "limaoim/gateway/session.h"
#include "limaoim/proto/crypto.h"

using namespace limaoim;
using im::Directory;
using im::DirectoryEntry;
using net::ConnId;

namespace {
constexpr std::array<uint64_t, 2> kTestKey{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

ConnId conn(uint32_t worker, uint32_t slot, uint32_t generation) { return ConnId::make(worker, slot, generation); }

std::vector<DirectoryEntry> all_of(const Directory& d, std::string_view uid) {
    std::vector<DirectoryEntry> out;
    size_t n = d.find_all(uid, out);
    CHECK(n == out.size());
    return out;
}

// Resets the allocation-failure hook even when a check throws.
struct FailAllocations {
    explicit FailAllocations(long after) { im::detail::directory_fail_allocations_after(after); }
    ~FailAllocations() { im::detail::directory_fail_allocations_after(-1); }
};
}  // namespace

TEST_CASE("Directory: one session per (uid, device flag); replace returns the older session") {
    Directory d;
    std::string alice = "alice";
    auto r = d.replace(alice, 0, conn(0, 1, 10));
    CHECK(r.ok);
    CHECK_FALSE(r.replaced);
    r = d.replace(alice, 1, conn(0, 2, 11));  // WEB coexists with APP
    CHECK(r.ok);
    CHECK_FALSE(r.replaced);
    CHECK(d.size() == 2);
    r = d.replace(std::string("alice"), 0, conn(1, 5, 12));
    CHECK(r.ok);
    CHECK(r.replaced == conn(0, 1, 10));
    CHECK(d.find("alice", 0) == conn(1, 5, 12));
    CHECK(d.find("alice", 1) == conn(0, 2, 11));
    CHECK_FALSE(d.find("alice", 2));
    CHECK_FALSE(d.find("alic", 0));
    CHECK_FALSE(d.find("alicea", 0));
    CHECK(d.size() == 2);
}

TEST_CASE("Directory: the directory owns its uid bytes") {
    Directory d;
    {
        std::string uid = "transient-uid";
        CHECK(d.replace(uid, 3, conn(0, 1, 1)).ok);
        uid.assign(uid.size(), 'X');  // the caller's buffer is reused
    }
    CHECK(d.find("transient-uid", 3) == conn(0, 1, 1));
    CHECK_FALSE(d.find("XXXXXXXXXXXXX", 3));
}

TEST_CASE("Directory: a replaced session's remove leaves the newer entry alone") {
    Directory d;
    CHECK(d.replace("bob", 0, conn(0, 1, 1)).ok);
    CHECK(d.replace("bob", 0, conn(0, 2, 2)).replaced == conn(0, 1, 1));
    CHECK_FALSE(d.remove("bob", 0, conn(0, 1, 1)));  // stale: the kicked session closing
    CHECK(d.find("bob", 0) == conn(0, 2, 2));
    CHECK_FALSE(d.remove("bob", 1, conn(0, 2, 2)));  // right session, wrong device flag
    CHECK_FALSE(d.remove("bobb", 0, conn(0, 2, 2)));
    CHECK_FALSE(d.remove("bob", 0, ConnId{}));
    CHECK(d.size() == 1);
    CHECK(d.remove("bob", 0, conn(0, 2, 2)));
    CHECK_FALSE(d.find("bob", 0));
    CHECK_FALSE(d.remove("bob", 0, conn(0, 2, 2)));
    CHECK(d.size() == 0);
}

TEST_CASE("Directory: find_all over 0, 1, several and all 256 device flags") {
    Directory d(2, kTestKey);
    std::vector<DirectoryEntry> out{{conn(9, 9, 9), 7}};  // appended to, not cleared
    CHECK(d.find_all("carol", out) == 0);
    CHECK(out.size() == 1);

    CHECK(d.replace("carol", 5, conn(0, 5, 1)).ok);
    CHECK(d.find_all("carol", out) == 1);
    REQUIRE(out.size() == 2);
    CHECK(out[1] == DirectoryEntry{conn(0, 5, 1), 5});

    // Several, inserted out of order: returned by ascending device flag.
    CHECK(d.replace("carol", 1, conn(1, 1, 1)).ok);
    CHECK(d.replace("carol", 200, conn(2, 200, 1)).ok);
    CHECK(d.replace("carol", 0, conn(3, 0, 1)).ok);
    CHECK(all_of(d, "carol") == std::vector<DirectoryEntry>{{conn(3, 0, 1), 0}, {conn(1, 1, 1), 1},
                                                            {conn(0, 5, 1), 5}, {conn(2, 200, 1), 200}});
    CHECK(d.remove("carol", 5, conn(0, 5, 1)));
    CHECK(all_of(d, "carol") ==
          std::vector<DirectoryEntry>{{conn(3, 0, 1), 0}, {conn(1, 1, 1), 1}, {conn(2, 200, 1), 200}});
    CHECK(all_of(d, "dave").empty());

    // Every device flag of one uid, in a scrambled order; then all but one leave.
    std::vector<int> order(256);
    for (int i = 0; i < 256; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(7));
    for (int f : order) CHECK(d.replace("erin", uint8_t(f), conn(f % 4, f, 100 + f)).ok);
    CHECK(d.size() == 3 + 256);
    auto every = all_of(d, "erin");
    REQUIRE(every.size() == 256);
    for (int f = 0; f < 256; ++f) CHECK(every[f] == DirectoryEntry{conn(f % 4, f, 100 + f), uint8_t(f)});
    for (int f : order) CHECK(d.replace("erin", uint8_t(f), conn(0, f, 1000 + f)).replaced == conn(f % 4, f, 100 + f));
    for (int f : order)
        if (f != 77) CHECK(d.remove("erin", uint8_t(f), conn(0, f, 1000 + f)));
    CHECK(all_of(d, "erin") == std::vector<DirectoryEntry>{{conn(0, 77, 1077), 77}});
    CHECK(d.remove("erin", 77, conn(0, 77, 1077)));
    CHECK(all_of(d, "erin").empty());
    CHECK(d.size() == 3);
}

TEST_CASE("Directory: uids of 0 bytes and of 64 KiB - 1 bytes; longer ones are refused") {
    Directory d;
    CHECK(d.replace("", 0, conn(0, 1, 1)).ok);
    CHECK(d.replace(std::string_view{}, 1, conn(0, 2, 1)).ok);
    CHECK(d.find("", 0) == conn(0, 1, 1));
    CHECK(all_of(d, "").size() == 2);
    CHECK_FALSE(d.find(std::string_view("\0", 1), 0));

    std::string big(Directory::kMaxUid, 'b');
    big.back() = 'z';
    CHECK(d.replace(big, 9, conn(1, 1, 1)).ok);
    CHECK(d.find(big, 9) == conn(1, 1, 1));
    std::string other = big;
    other[0] = 'c';
    CHECK_FALSE(d.find(other, 9));
    std::string too_big(Directory::kMaxUid + 1, 'b');
    auto r = d.replace(too_big, 9, conn(1, 2, 1));
    CHECK_FALSE(r.ok);
    CHECK_FALSE(r.replaced);
    CHECK_FALSE(d.find(too_big, 9));
    CHECK(all_of(d, too_big).empty());
    CHECK(d.size() == 3);
    CHECK(d.remove(big, 9, conn(1, 1, 1)));
    CHECK(d.remove("", 0, conn(0, 1, 1)));
    CHECK(d.remove("", 1, conn(0, 2, 1)));
    CHECK(d.size() == 0);
}

TEST_CASE("Directory: matches a std::map model over 200k random operations across growth and deletion") {
    Directory d(1, kTestKey);  // two shards: big tables, long clusters
    std::mt19937 rng(42);
    std::vector<std::string> uids;
    for (int i = 0; i < 6000; ++i) uids.push_back("u" + std::to_string(i) + std::string(rng() % 30, 'x'));
    std::map<std::pair<std::string, uint8_t>, ConnId> model;
    uint32_t generation = 0;
    size_t pool = 50;  // the live uid range swells and shrinks, so tables grow and shrink
    for (int step = 0; step < 200000; ++step) {
        if (step % 20000 == 0) pool = step % 40000 == 0 ? uids.size() : 50;
        const std::string& uid = uids[rng() % std::min(pool, uids.size())];
        uint8_t flag = uint8_t(rng() % 8 == 0 ? rng() % 256 : rng() % 3);
        auto key = std::make_pair(uid, flag);
        auto it = model.find(key);
        unsigned op = rng() % 10;
        if (op < 5 && pool > 50) {
            ConnId c = conn(rng() % 4, rng() % 1000, ++generation);
            auto r = d.replace(uid, flag, c);
            REQUIRE(r.ok);
            CHECK(r.replaced == (it == model.end() ? ConnId{} : it->second));
            model[key] = c;
        } else if (op < 8 || pool == 50) {
            // Mostly the right session; sometimes a stale one, which must change nothing.
            bool stale = rng() % 4 == 0;
            ConnId c = it == model.end() ? conn(0, 0, 1) : stale ? conn(1, 1, it->second.generation() + 1) : it->second;
            bool removed = d.remove(uid, flag, c);
            CHECK(removed == (it != model.end() && !stale));
            if (removed) model.erase(it);
        } else {
            CHECK(d.find(uid, flag) == (it == model.end() ? ConnId{} : it->second));
            std::vector<DirectoryEntry> expected;
            for (auto m = model.lower_bound({uid, 0}); m != model.end() && m->first.first == uid; ++m)
                expected.push_back({m->second, m->first.second});
            CHECK(all_of(d, uid) == expected);
        }
        if (step % 1000 == 0) CHECK(d.size() == model.size());
    }
    CHECK(d.size() == model.size());
    for (const auto& [key, c] : model) CHECK(d.find(key.first, key.second) == c);
    for (const auto& [key, c] : model) CHECK(d.remove(key.first, key.second, c));
    CHECK(d.size() == 0);
}

TEST_CASE("Directory: concurrent replace and remove from 4 threads") {
    Directory d;
    std::vector<std::string> uids;
    for (int i = 0; i < 2000; ++i) uids.push_back("user" + std::to_string(i));

    SUBCASE("each thread its own device flag of shared uids: records grow and shrink under contention") {
        std::vector<std::thread> threads;
        for (uint32_t w = 0; w < 4; ++w)
            threads.emplace_back([&, w] {
                for (uint32_t round = 1; round <= 10; ++round)
                    for (uint32_t i = 0; i < uids.size(); ++i) {
                        ConnId c = conn(w, i, round);
                        auto r = d.replace(uids[i], uint8_t(w), c);
                        const bool removes = (i + w) % 2;  // logs out again in rounds 1..9
                        CHECK((r.ok && r.replaced == (round == 1 || removes ? ConnId{} : conn(w, i, round - 1))));
                        if (round < 10 && removes) CHECK(d.remove(uids[i], uint8_t(w), c));
                    }
            });
        for (auto& t : threads) t.join();
        CHECK(d.size() == 4 * uids.size());
        for (uint32_t i = 0; i < uids.size(); ++i) {
            auto all = all_of(d, uids[i]);
            REQUIRE(all.size() == 4);
            for (uint32_t w = 0; w < 4; ++w) CHECK(all[w] == DirectoryEntry{conn(w, i, 10), uint8_t(w)});
        }
    }
    SUBCASE("all threads log the same (uid, device) in and out: every session is kicked or removed exactly once") {
        std::atomic<size_t> kicked{0}, removed{0};
        std::vector<std::thread> threads;
        for (uint32_t w = 0; w < 4; ++w)
            threads.emplace_back([&, w] {
                for (uint32_t round = 1; round <= 20; ++round)
                    for (uint32_t i = 0; i < 200; ++i) {
                        ConnId c = conn(w, i, round);
                        auto r = d.replace(uids[i], 0, c);
                        CHECK(r.ok);
                        if (r.replaced) kicked.fetch_add(1);
                        if (d.remove(uids[i], 0, c)) removed.fetch_add(1);
                    }
            });
        for (auto& t : threads) t.join();
        CHECK(kicked + removed == 4 * 20 * 200);
        CHECK(d.size() == 0);  // the last replace of each uid is always followed by its own remove
    }
}

TEST_CASE("Directory: SipHash-1-3 keyed per process") {
    using im::detail::siphash;
    // The paper's SipHash-2-4 vectors (key 00..0f, message 00 01 .. of length n) check the
    // construction; the round counts are parameters.
    std::string msg;
    for (int i = 0; i < 64; ++i) msg.push_back(char(i));
    CHECK(siphash(kTestKey, std::string_view(msg).substr(0, 0), 2, 4) == 0x726fdb47dd0e0e31ULL);
    CHECK(siphash(kTestKey, std::string_view(msg).substr(0, 7), 2, 4) == 0xab0200f58b01d137ULL);
    CHECK(siphash(kTestKey, std::string_view(msg).substr(0, 8), 2, 4) == 0x93f5f5799a932462ULL);
    CHECK(siphash(kTestKey, std::string_view(msg).substr(0, 15), 2, 4) == 0xa129ca6149be45e5ULL);
    CHECK(siphash(kTestKey, std::string_view(msg).substr(0, 63), 2, 4) == 0x958a324ceb064572ULL);
    // SipHash-1-3 with a zero key: what CPython 3.11's hash() of these bytes is under PYTHONHASHSEED=0.
    CHECK(siphash({0, 0}, "a") == 0x407448d2b89b1813ULL);
    CHECK(siphash({0, 0}, "abcdefgh") == 0x3f7b849c0b8e35eaULL);
    CHECK(siphash({0, 0}, "0123456789abcdefXYZ") == 0x283e7687cd67183bULL);

    // The same uid hashes differently under two keys (all 64 bits, so shard, tag and slot differ).
    for (std::string uid : {"", "alice", "a-much-longer-user-identifier-0123456789"}) {
        uint64_t a = siphash(kTestKey, uid), b = siphash({kTestKey[0] ^ 1, kTestKey[1]}, uid);
        CHECK(a != b);
        CHECK(siphash(kTestKey, uid) == a);  // deterministic under one key
    }
    // Two default-constructed directories draw different keys, and behave the same.
    Directory one, two;
    CHECK(one.replace("x", 0, conn(0, 1, 1)).ok);
    CHECK(two.replace("x", 0, conn(0, 1, 1)).ok);
    CHECK(one.find("x", 0) == two.find("x", 0));
}

TEST_CASE("Directory: an allocation failure in replace changes nothing and says so") {
    Directory d(1, kTestKey);
    CHECK(d.replace("alice", 0, conn(0, 1, 1)).ok);
    size_t bytes = d.bytes_in_use();
    {
        FailAllocations fail(0);
        auto r = d.replace("bob", 0, conn(0, 2, 1));  // a new uid needs a record
        CHECK_FALSE(r.ok);
        CHECK_FALSE(r.replaced);
        CHECK_FALSE(d.find("bob", 0));
        r = d.replace("alice", 1, conn(0, 3, 1));  // a second device needs a bigger record
        CHECK_FALSE(r.ok);
        CHECK_FALSE(d.find("alice", 1));
        CHECK(all_of(d, "alice") == std::vector<DirectoryEntry>{{conn(0, 1, 1), 0}});
        r = d.replace("alice", 0, conn(0, 4, 1));  // replacing in place allocates nothing
        CHECK(r.ok);
        CHECK(r.replaced == conn(0, 1, 1));
        CHECK(d.size() == 1);
        CHECK(d.bytes_in_use() == bytes);
    }
    // Fill until the next new uid must grow its shard's table, then fail only that growth.
    std::vector<std::string> in;
    for (int i = 0; in.size() < 2000; ++i) {
        std::string uid = "g" + std::to_string(i);
        size_t before = d.bytes_in_use();
        {
            FailAllocations fail(1);  // the record is allocated, the table growth is not
            auto r = d.replace(uid, 0, conn(1, uint32_t(i), 1));
            if (r.ok) {
                in.push_back(uid);
                continue;
            }
        }
        // Refused: nothing changed, everything already in is intact, and without the failure it goes in.
        CHECK(d.bytes_in_use() == before);
        CHECK_FALSE(d.find(uid, 0));
        CHECK(d.size() == in.size() + 1);
        for (size_t k = 0; k < in.size(); ++k) CHECK(d.find(in[k], 0));
        CHECK(d.replace(uid, 0, conn(1, uint32_t(i), 1)).ok);
        CHECK(d.bytes_in_use() > before);
        in.push_back(uid);
    }
    CHECK(d.size() == in.size() + 1);
}

TEST_CASE("Directory: bytes per session for 100k single-device uids of 10-20 bytes") {
    Directory d;  // the server's 64 shards
    const size_t empty = d.bytes_in_use();
    std::mt19937 rng(1);
    std::vector<std::string> uids;
    for (int i = 0; i < 100000; ++i) {
        std::string uid = std::to_string(i) + "-";
        uid.resize(10 + rng() % 11, 'u');
        uids.push_back(uid);
    }
    std::set<size_t> checkpoints{25000, 50000, 75000, 100000};
    for (size_t i = 0; i < uids.size(); ++i) {
        REQUIRE(d.replace(uids[i], uint8_t(i % 2), conn(uint32_t(i % 8), uint32_t(i % 100000), 1)).ok);
        if (checkpoints.count(i + 1))
            std::printf("directory: %zu uids: %.1f bytes/session (%zu bytes in use)\n", i + 1,
                        double(d.bytes_in_use()) / double(i + 1), d.bytes_in_use());
    }
    const double per_session = double(d.bytes_in_use()) / double(uids.size());
    CHECK(d.size() == uids.size());
    CHECK(per_session <= 64.0);
    // Everyone leaves: the tables shrink back and the records are gone.
    for (size_t i = 0; i < uids.size(); ++i)
        REQUIRE(d.remove(uids[i], uint8_t(i % 2), conn(uint32_t(i % 8), uint32_t(i % 100000), 1)));
    CHECK(d.size() == 0);
    std::printf("directory: empty %zu bytes, after 100k in and out %zu bytes\n", empty, d.bytes_in_use());
    CHECK(d.bytes_in_use() <= empty + 64 * 16 * sizeof(uint64_t) + 64 * 32);
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
    im::TokenCache tokens;
    tokens.set("alice", 0, "secret");
    gateway::AuthPolicy release{true, &tokens};
    gateway::AuthPolicy test_mode{false, &tokens};
    proto::ConnectPacket c;
    c.version = 1;
    c.uid = "alice";
    c.token = "secret";
    c.client_timestamp = 1000;

    CHECK(gateway::handshake(c, proto::has_crypto(c.version), release, 1250).ok());
    CHECK(gateway::handshake(c, proto::has_crypto(c.version), release, 1250).time_diff == 250);
    c.token = "wrong";
    auto r = gateway::handshake(c, proto::has_crypto(c.version), release, 1250);
    CHECK(r.reason == proto::ReasonCode::AuthFail);
    CHECK(r.failure == gateway::AuthFailure::TokenMismatch);
    CHECK(r.time_diff == 0);
    c.uid = "nobody";
    c.token = "";  // quirk S1: no stored token is a refusal, even with an empty token
    CHECK(gateway::handshake(c, proto::has_crypto(c.version), release, 0).failure == gateway::AuthFailure::TokenMissing);
    CHECK(gateway::handshake(c, proto::has_crypto(c.version), test_mode, 0).ok());

    SUBCASE("a shared store out of reach: token checks are refused with reason 0, test mode is not") {
        std::atomic<bool> current{false};
        gateway::AuthPolicy stale = release;
        stale.tokens_current = &current;
        c.uid = "alice";
        c.token = "secret";
        auto refused = gateway::handshake(c, proto::has_crypto(c.version), stale, 0);
        CHECK(refused.reason == proto::ReasonCode::Error);
        CHECK(refused.failure == gateway::AuthFailure::TokensStale);
        current = true;
        CHECK(gateway::handshake(c, proto::has_crypto(c.version), stale, 0).ok());
        gateway::AuthPolicy stale_test_mode = test_mode;
        current = false;
        stale_test_mode.tokens_current = &current;
        CHECK(gateway::handshake(c, proto::has_crypto(c.version), stale_test_mode, 0).ok());
    }

    SUBCASE("v4: a real X25519 exchange gives the client the same AES key") {
        proto::crypto::KeyPair client;
        REQUIRE(proto::crypto::generate_keypair(client));
        std::string client_b64 = base64::encode(client.public_key);
        c.version = 4;
        c.client_key = client_b64;
        auto ok = gateway::handshake(c, proto::has_crypto(c.version), test_mode, 0);
        REQUIRE(ok.ok());
        proto::ConnackPacket ack = ok.connack(true);
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
        auto bad = gateway::handshake(c, proto::has_crypto(c.version), test_mode, 0);
        CHECK(bad.failure == gateway::AuthFailure::BadClientKey);
        CHECK(bad.connack(true).server_key.empty());
        std::string short_key = base64::encode(std::vector<uint8_t>(31, 9));
        c.client_key = short_key;
        CHECK(gateway::handshake(c, proto::has_crypto(c.version), test_mode, 0).failure == gateway::AuthFailure::BadClientKey);
        std::string zero_key = base64::encode(std::vector<uint8_t>(32, 0));
        c.client_key = zero_key;
        CHECK(gateway::handshake(c, proto::has_crypto(c.version), test_mode, 0).failure == gateway::AuthFailure::LowOrderKey);
    }
    SUBCASE("time_diff wraps instead of overflowing on a hostile timestamp") {
        c.client_timestamp = INT64_MIN;
        CHECK(gateway::handshake(c, proto::has_crypto(c.version), test_mode, 1).ok());
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
        std::string b64 = base64::encode(client.public_key);
        c.client_key = b64;
        auto r = gateway::handshake(c, proto::has_crypto(c.version), policy, 0);
        REQUIRE(r.ok());
        server_keys.emplace_back(r.server_key_base64.data(), r.server_key_base64.size());
        salts.emplace_back(r.salt.data(), r.salt.size());
    }
    return {server_keys, salts};
}
}  // namespace

TEST_CASE("handshake: --server-key-reuse shares a server key pair across N handshakes, never more") {
    im::TokenCache tokens;
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
