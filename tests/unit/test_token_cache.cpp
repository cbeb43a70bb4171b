#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "limaoim/im/token_cache.h"

using limaoim::im::TokenCheck;
using limaoim::im::TokenCache;

TEST_CASE("TokenCache: Match, Mismatch and Missing") {
    TokenCache tokens;
    CHECK(tokens.check("alice", 0, "") == TokenCheck::Missing);
    tokens.set("alice", 0, "0123456789abcdef0123456789abcdef");
    CHECK(tokens.size() == 1);

    CHECK(tokens.check("alice", 0, "0123456789abcdef0123456789abcdef") == TokenCheck::Match);
    CHECK(tokens.check("alice", 0, "0123456789abcdef0123456789abcdeF") == TokenCheck::Mismatch);  // last byte
    CHECK(tokens.check("alice", 0, "1123456789abcdef0123456789abcdef") == TokenCheck::Mismatch);  // first byte
    CHECK(tokens.check("alice", 0, "0123456789abcdef0123456789abcde") == TokenCheck::Mismatch);   // a prefix
    CHECK(tokens.check("alice", 0, "0123456789abcdef0123456789abcdef0") == TokenCheck::Mismatch); // it extended
    CHECK(tokens.check("alice", 0, "") == TokenCheck::Mismatch);
    CHECK(tokens.check("alice", 0, std::string("0123456789abcdef0123456789abcdef\0", 33)) == TokenCheck::Mismatch);

    // Per (uid, device flag): another flag or uid has nothing stored.
    CHECK(tokens.check("alice", 1, "0123456789abcdef0123456789abcdef") == TokenCheck::Missing);
    CHECK(tokens.check("alic", 0, "0123456789abcdef0123456789abcdef") == TokenCheck::Missing);
    CHECK(tokens.check("alicealice", 0, "0123456789abcdef0123456789abcdef") == TokenCheck::Missing);
    CHECK(tokens.check("", 0, "0123456789abcdef0123456789abcdef") == TokenCheck::Missing);
}

TEST_CASE("TokenCache: set overwrites; empty and binary tokens; flags are separate entries") {
    TokenCache tokens;
    tokens.set("bob", 1, "old");
    tokens.set("bob", 1, "new");
    tokens.set("bob", 2, "");
    tokens.set("bob", 255, std::string("\0\xff\x01", 3));
    CHECK(tokens.size() == 3);
    CHECK(tokens.check("bob", 1, "new") == TokenCheck::Match);
    CHECK(tokens.check("bob", 1, "old") == TokenCheck::Mismatch);
    CHECK(tokens.check("bob", 2, "") == TokenCheck::Match);  // a stored empty token matches an empty one only
    CHECK(tokens.check("bob", 2, std::string("\0", 1)) == TokenCheck::Mismatch);
    CHECK(tokens.check("bob", 255, std::string("\0\xff\x01", 3)) == TokenCheck::Match);
    CHECK(tokens.check("bob", 255, std::string("\0\xff\x02", 3)) == TokenCheck::Mismatch);
    CHECK(tokens.check("bob", 255, std::string("\0\xff", 2)) == TokenCheck::Mismatch);

    std::string long_token(4096, 't');
    tokens.set("carol", 0, long_token);
    CHECK(tokens.check("carol", 0, long_token) == TokenCheck::Match);
    long_token.back() = 'u';
    CHECK(tokens.check("carol", 0, long_token) == TokenCheck::Mismatch);
}

TEST_CASE("TokenCache: workers check while another thread sets") {
    TokenCache tokens;
    for (int i = 0; i < 100; ++i) tokens.set("u" + std::to_string(i), 0, "t" + std::to_string(i));
    std::atomic<bool> stop{false};
    std::atomic<int> wrong{0};
    std::vector<std::thread> readers;
    for (int w = 0; w < 4; ++w)
        readers.emplace_back([&] {
            while (!stop.load()) {
                for (int i = 0; i < 100; ++i) {
                    std::string uid = "u" + std::to_string(i);
                    if (tokens.check(uid, 0, "t" + std::to_string(i)) != TokenCheck::Match) wrong.fetch_add(1);
                    if (tokens.check(uid, 0, "x") != TokenCheck::Mismatch) wrong.fetch_add(1);
                }
            }
        });
    for (int i = 0; i < 2000; ++i) tokens.set("other" + std::to_string(i), uint8_t(i), "t");
    stop = true;
    for (auto& t : readers) t.join();
    CHECK(wrong.load() == 0);
    CHECK(tokens.size() == 2100);
}
