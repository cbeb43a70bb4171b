// base64/base64.h: RFC 4648's vectors through both APIs, the strict decoding
// the protocol and the HTTP API rely on, and exactly-sized buffers: OpenSSL
// writes a NUL after what it encodes and zeros for the padding it decodes,
// neither of which may land in the caller's memory.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/base64/base64.h"

namespace base64 = limaoim::base64;

namespace {

std::span<const uint8_t> as_bytes(std::string_view text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

std::string random_bytes(std::mt19937& random, size_t n) {
    std::string out(n, '\0');
    for (char& c : out) c = char(random());
    return out;
}

}  // namespace

TEST_CASE("base64: RFC 4648's vectors, both ways, both APIs") {
    const std::pair<std::string_view, std::string_view> rfc4648[] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    for (auto [plain, encoded] : rfc4648) {
        CAPTURE(plain);
        CHECK(base64::encode(plain) == encoded);
        CHECK(base64::encode(as_bytes(plain)) == encoded);
        CHECK(base64::decoded_size(encoded) == plain.size());
        CHECK(base64::decode(encoded) == std::string(plain));
    }
    // The last two characters of the alphabet.
    CHECK(base64::encode(std::string_view("\xfb\xff", 2)) == "+/8=");
    CHECK(base64::decode("+/+/") == std::string("\xfb\xff\xbf"));
}

TEST_CASE("base64: decoding is strict, but takes non-zero trailing bits as Go's StdEncoding does") {
    // The bits after the last byte are dropped, whatever they are.
    CHECK(base64::decode("Zh==") == "f");
    CHECK(base64::decode("Zm9=") == "fo");

    const std::string_view invalid[] = {
        "Z",          "Zg",       "Zg=",   "Zm9vY", "Z===", "====", "=Zm9", "Zg==Zg==", "Zm9=Zm9v", "Zm8=Zm9v",
        "Zm9v=",      " Zm9v",    "Zm9 ",  "Zm9v\n", "Zm9v\nZg==", "Zm9v\r\n", "Zm-v", "Zm_v", "Zm9\x80", "Zg=A",
        "Z=9v",       std::string_view("Zm9\0", 4),
    };
    for (std::string_view text : invalid) {
        CAPTURE(text);
        CHECK_FALSE(base64::decoded_size(text));
        CHECK_FALSE(base64::decode(text));
        uint8_t out[16];
        CHECK_FALSE(base64::decode(text, out, sizeof out));
    }
}

TEST_CASE("base64: the capacity bounds the decoded bytes, not the text") {
    uint8_t out[4];
    CHECK_FALSE(base64::decode("Zm9vYg==", out, 3));
    CHECK(base64::decode("Zm9vYg==", out, 4) == 4u);
    CHECK(base64::decode("Zm9v", out, 3) == 3u);
    CHECK_FALSE(base64::decode("Zm9vYmE=", out, 4));
}

TEST_CASE("base64: exactly-sized buffers get their bytes and nothing past them") {
    std::mt19937 random(20261207);
    constexpr char kGuard = '#';
    for (size_t n = 0; n <= 100; ++n) {
        CAPTURE(n);
        const std::string bytes = random_bytes(random, n);

        std::string text(base64::encoded_size(n) + 1, kGuard);
        CHECK(base64::encode(as_bytes(bytes), text.data()) == base64::encoded_size(n));
        CHECK(text.back() == kGuard);  // OpenSSL's NUL went elsewhere
        text.pop_back();
        CHECK(text == base64::encode(bytes));
        CHECK(text.find(kGuard) == std::string::npos);

        std::vector<uint8_t> raw(n + 1, uint8_t(kGuard));
        CHECK(base64::decode(text, raw.data(), n) == n);
        CHECK(raw.back() == uint8_t(kGuard));  // no padding zeros past the n bytes
        CHECK(std::string(raw.begin(), raw.end() - 1) == bytes);
        CHECK(base64::decode(text) == bytes);
    }
}
