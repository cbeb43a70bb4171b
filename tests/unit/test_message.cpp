// im/message.h (the one binary encoding of a message, fake channel ids) and
// im/ids.h (snowflake message ids, SERVER.md §4).
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "limaoim/im/ids.h"
#include "limaoim/im/message.h"
#include "vectors.h"

using namespace limaoim;
using namespace limaoim::im;
using limaoim::testing::load_vectors;
using nlohmann::json;

namespace {

uint32_t crc32_of(std::string_view s) {
    return uint32_t(::crc32(0L, reinterpret_cast<const Bytef*>(s.data()), uInt(s.size())));
}

Message sample() {
    Message m;
    m.header_flags = 0x02;
    m.setting = 0x5a;
    m.channel_type = kGroupChannel;
    m.message_id = 0x0123456789abcdefLL;
    m.message_seq = 0xdeadbeef;
    m.timestamp = -12345;
    m.client_msg_no = "cmn-1";
    m.from_uid = "alice";
    m.channel_id = "group-7";
    m.payload = "hello";
    return m;
}

void check_same(const MessageView& a, const Message& b) {
    CHECK(a.header_flags == b.header_flags);
    CHECK(a.setting == b.setting);
    CHECK(a.channel_type == b.channel_type);
    CHECK(a.message_id == b.message_id);
    CHECK(a.message_seq == b.message_seq);
    CHECK(a.timestamp == b.timestamp);
    CHECK(a.client_msg_no == b.client_msg_no);
    CHECK(a.from_uid == b.from_uid);
    CHECK(a.channel_id == b.channel_id);
    CHECK(a.payload == b.payload);
    CHECK(a.expire == b.expire);
    CHECK(a.topic == b.topic);
}

std::span<const uint8_t> cspan(const std::vector<uint8_t>& v) { return {v.data(), v.size()}; }

}  // namespace

TEST_CASE("message: encode/decode round trip") {
    const Message m = sample();
    const std::vector<uint8_t> bytes = encode(m.view());
    CHECK(bytes.size() == encoded_size(m.view()));
    CHECK(bytes.size() == 20 + 2 + 5 + 2 + 5 + 2 + 7 + 4 + 5);
    const auto decoded = decode(cspan(bytes));
    REQUIRE(decoded);
    check_same(*decoded, m);
    // Message::from copies out of the bytes.
    const Message copy = Message::from(*decoded);
    check_same(copy.view(), m);

    // The span overload writes the same bytes.
    std::vector<uint8_t> out(encoded_size(m.view()), 0xcc);
    encode(m.view(), out);
    CHECK(out == bytes);
    // The string_view overload of decode.
    const std::string as_string(bytes.begin(), bytes.end());
    const auto again = decode(std::string_view(as_string));
    REQUIRE(again);
    check_same(*again, m);
}

TEST_CASE("message: the documented byte layout (little-endian, version byte first)") {
    Message m;
    m.header_flags = 0x04;
    m.setting = 0x07;
    m.channel_type = kPersonChannel;
    m.message_id = 0x0102030405060708LL;
    m.message_seq = 0x0a0b0c0d;
    m.timestamp = 0x11223344;
    m.client_msg_no = "c";
    m.from_uid = "ab";
    m.channel_id = "xyz";
    m.payload = "P";
    const std::vector<uint8_t> expected = {
        1,    0x04, 0x07, 1,                                     // version, flags, setting, type
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,          // message_id
        0x0d, 0x0c, 0x0b, 0x0a,                                  // message_seq
        0x44, 0x33, 0x22, 0x11,                                  // timestamp
        1,    0,    'c',                                         // client_msg_no
        2,    0,    'a',  'b',                                   // from_uid
        3,    0,    'x',  'y',  'z',                             // channel_id
        1,    0,    0,    0,    'P',                             // payload (u32 length)
    };
    CHECK(encode(m.view()) == expected);
}

TEST_CASE("message: empty fields and binary bytes survive") {
    Message empty;
    const std::vector<uint8_t> bytes = encode(empty.view());
    CHECK(bytes.size() == 20 + 2 + 2 + 2 + 4);
    auto d = decode(cspan(bytes));
    REQUIRE(d);
    check_same(*d, empty);
    CHECK(d->client_msg_no.empty());
    CHECK(d->payload.empty());

    Message binary = sample();
    binary.payload = std::string("\0\x01\xff\x00zz\x80", 7);
    binary.client_msg_no = std::string("\0", 1);
    binary.from_uid = std::string("\xe5\xbc\xa0\x00", 4);
    binary.channel_id = std::string(3, '\0');
    binary.message_id = -1;
    binary.message_seq = UINT32_MAX;
    binary.timestamp = INT32_MIN;
    const std::vector<uint8_t> b2 = encode(binary.view());
    d = decode(cspan(b2));
    REQUIRE(d);
    check_same(*d, binary);
    CHECK(d->payload.size() == 7);
    CHECK(d->client_msg_no.size() == 1);
}

TEST_CASE("message: large payload (beyond u16) and u16-max string fields") {
    Message m = sample();
    std::mt19937 rng(7);
    m.payload.resize(3 * 1024 * 1024 + 17);
    for (char& c : m.payload) c = char(rng());
    m.client_msg_no.assign(65535, 'c');
    m.from_uid.assign(65535, 'f');
    m.channel_id.assign(65535, 'i');
    const std::vector<uint8_t> bytes = encode(m.view());
    CHECK(bytes.size() == 20 + 3 * (2 + 65535) + 4 + m.payload.size());
    const auto d = decode(cspan(bytes));
    REQUIRE(d);
    check_same(*d, m);
}

TEST_CASE("message: expire and topic make format 2, the extras after the payload; format 1 otherwise") {
    Message m = sample();
    const std::vector<uint8_t> plain = encode(m.view());
    CHECK(plain[0] == 1);
    m.expire = 0x01020304;
    m.topic = "tp";
    const std::vector<uint8_t> bytes = encode(m.view());
    CHECK(bytes.size() == encoded_size(m.view()));
    REQUIRE(bytes.size() == plain.size() + 4 + 2 + 2);
    CHECK(bytes[0] == 2);
    CHECK(std::equal(plain.begin() + 1, plain.end(), bytes.begin() + 1));  // the same bytes up to the payload's end
    const std::vector<uint8_t> extras(bytes.end() - 8, bytes.end());
    CHECK(extras == std::vector<uint8_t>{0x04, 0x03, 0x02, 0x01, 2, 0, 't', 'p'});
    const auto decoded = decode(cspan(bytes));
    REQUIRE(decoded);
    check_same(*decoded, m);
    for (size_t n = plain.size(); n < bytes.size(); ++n) CHECK_FALSE(decode(std::span<const uint8_t>(bytes.data(), n)));
    m.topic.clear();  // expire alone is enough
    CHECK(encode(m.view())[0] == 2);
}

TEST_CASE("message: expired() from the timestamp and expire seconds; 0 never expires") {
    MessageView m;
    m.timestamp = 1000;
    CHECK_FALSE(m.expired(1'000'000));
    m.expire = 60;
    CHECK_FALSE(m.expired(1059));
    CHECK(m.expired(1060));
}

TEST_CASE("message: decode refuses truncated bytes, extra bytes and other versions") {
    const Message m = sample();
    const std::vector<uint8_t> bytes = encode(m.view());
    CHECK_FALSE(decode(std::span<const uint8_t>()));
    for (size_t n = 0; n < bytes.size(); ++n) {
        CAPTURE(n);
        CHECK_FALSE(decode(std::span<const uint8_t>(bytes.data(), n)));
    }
    std::vector<uint8_t> extra = bytes;
    extra.push_back(0);
    CHECK_FALSE(decode(cspan(extra)));
    extra.push_back(0x55);
    CHECK_FALSE(decode(cspan(extra)));

    for (int version : {0, 2, 0xff}) {
        std::vector<uint8_t> other = bytes;
        other[0] = uint8_t(version);
        CAPTURE(version);
        CHECK_FALSE(decode(cspan(other)));
    }

    // A length that runs past the end (payload length made larger).
    std::vector<uint8_t> lying = bytes;
    const size_t payload_len_at = bytes.size() - m.payload.size() - 4;
    lying[payload_len_at] = uint8_t(m.payload.size() + 1);
    CHECK_FALSE(decode(cspan(lying)));
    // ... and a huge one (no overflow in the bounds check).
    lying[payload_len_at] = lying[payload_len_at + 1] = lying[payload_len_at + 2] = lying[payload_len_at + 3] = 0xff;
    CHECK_FALSE(decode(cspan(lying)));
    // A string length that is too short leaves extra bytes: refused too.
    std::vector<uint8_t> shorter = bytes;
    shorter[payload_len_at] = uint8_t(m.payload.size() - 1);
    CHECK_FALSE(decode(cspan(shorter)));
}

TEST_CASE("message: only SyncOnce, RedDot and NoPersist are kept (DUP is dropped)") {
    Message m = sample();
    m.header_flags = 0xff;
    const auto bytes = encode(m.view());
    CHECK(bytes[1] == kKeptHeaderFlags);
    const auto d = decode(cspan(bytes));
    REQUIRE(d);
    CHECK(d->header_flags == 0x07);
    m.header_flags = 0x08;  // DUP only
    CHECK(encode(m.view())[1] == 0);
}

TEST_CASE("message: flag accessors") {
    MessageView v;
    CHECK(v.persisted());
    v.header_flags = 0x02;
    CHECK(v.red_dot());
    CHECK(v.persisted());
    v.header_flags = 0x04;
    CHECK(v.sync_once());
    CHECK_FALSE(v.persisted());
    v.header_flags = 0x01;
    CHECK(v.no_persist());
    CHECK_FALSE(v.persisted());
    CHECK_FALSE(v.red_dot());
}

TEST_CASE("message: patch_id / patch_seq rewrite in place; encoded_id / encoded_seq read back") {
    const Message m = sample();
    std::vector<uint8_t> bytes = encode(m.view());
    const std::vector<uint8_t> original = bytes;
    CHECK(encoded_id(cspan(bytes)) == m.message_id);
    CHECK(encoded_seq(cspan(bytes)) == m.message_seq);

    patch_id(bytes, 1724551110972149765LL);
    CHECK(encoded_id(cspan(bytes)) == 1724551110972149765LL);
    CHECK(encoded_seq(cspan(bytes)) == m.message_seq);
    patch_seq(bytes, 42);
    CHECK(encoded_seq(cspan(bytes)) == 42);
    CHECK(encoded_id(cspan(bytes)) == 1724551110972149765LL);
    patch_id(bytes, -7);
    CHECK(encoded_id(cspan(bytes)) == -7);

    CHECK(bytes.size() == original.size());
    // Only bytes 4..15 changed.
    for (size_t i = 0; i < bytes.size(); ++i)
        if (i < 4 || i >= 16) CHECK(bytes[i] == original[i]);

    const auto d = decode(cspan(bytes));
    REQUIRE(d);
    Message expected = m;
    expected.message_id = -7;
    expected.message_seq = 42;
    check_same(*d, expected);

    // Works on the empty message too (no strings after the fixed part).
    Message e;
    std::vector<uint8_t> eb = encode(e.view());
    patch_id(eb, 99);
    patch_seq(eb, 3);
    const auto ed = decode(cspan(eb));
    REQUIRE(ed);
    CHECK(ed->message_id == 99);
    CHECK(ed->message_seq == 3);
}

TEST_CASE("fake_channel_id: the vectors of misc.json") {
    const json doc = load_vectors("misc.json");
    const json& cases = doc.at("fake_channel_ids").at("cases");
    REQUIRE(cases.size() >= 6);
    for (const json& c : cases) {
        const std::string from = c.at("from_uid"), to = c.at("to_uid");
        CAPTURE(from);
        CAPTURE(to);
        CHECK(crc32_of(from) == c.at("crc32_from").get<uint32_t>());
        CHECK(crc32_of(to) == c.at("crc32_to").get<uint32_t>());
        CHECK(fake_channel_id(from, to) == c.at("fake_channel_id").get<std::string>());
    }
}

TEST_CASE("fake_channel_id: symmetric when the CRCs differ; to@from on a tie") {
    std::mt19937 rng(11);
    for (int i = 0; i < 2000; ++i) {
        const std::string a = "u" + std::to_string(rng() % 100000), b = "v" + std::to_string(rng() % 100000);
        REQUIRE(crc32_of(a) != crc32_of(b));
        const std::string ab = fake_channel_id(a, b);
        CHECK(ab == fake_channel_id(b, a));
        const std::string& high = crc32_of(a) > crc32_of(b) ? a : b;
        const std::string& low = crc32_of(a) > crc32_of(b) ? b : a;
        CHECK(ab == high + "@" + low);
    }
    CHECK(fake_channel_id("u1", "u1") == "u1@u1");
    CHECK(fake_channel_id("", "x") == fake_channel_id("x", ""));
    // "plumless" and "buckeroo" share a CRC-32: each side gets to@from (§7.1 caveat).
    REQUIRE(crc32_of("plumless") == crc32_of("buckeroo"));
    CHECK(fake_channel_id("plumless", "buckeroo") == "buckeroo@plumless");
    CHECK(fake_channel_id("buckeroo", "plumless") == "plumless@buckeroo");
}

TEST_CASE("log_channel_id: person with and without from_uid, group") {
    Message m;
    m.channel_type = kPersonChannel;
    m.from_uid = "alice";
    m.channel_id = "bob";
    CHECK(log_channel_id(m.view()) == "bob@alice");
    m.from_uid = "bob";
    m.channel_id = "alice";
    CHECK(log_channel_id(m.view()) == "bob@alice");
    m.from_uid = "test1";
    m.channel_id = "test2";
    CHECK(log_channel_id(m.view()) == "test1@test2");
    // The API without a from_uid: the recipient's own person channel.
    m.from_uid.clear();
    CHECK(log_channel_id(m.view()) == "test2");
    // Group (and any other type): the channel id, whatever the sender.
    m.channel_type = kGroupChannel;
    m.from_uid = "alice";
    m.channel_id = "bob";
    CHECK(log_channel_id(m.view()) == "bob");
    m.channel_type = 3;
    CHECK(log_channel_id(m.view()) == "bob");
}

// ---- IdGenerator ----

namespace {
constexpr int64_t kMs = 1700000000123;
int64_t ms_of(int64_t id) { return (id >> 22) + kSnowflakeEpochMs; }
uint32_t node_of(int64_t id) { return uint32_t(id >> 12) & 0x3ff; }
uint32_t step_of(int64_t id) { return uint32_t(id) & 0xfff; }
}  // namespace

TEST_CASE("IdGenerator: layout (ms - epoch) << 22 | node << 12 | step, against misc.json") {
    const json v = load_vectors("misc.json").at("snowflake_message_id");
    const int64_t ms = v.at("ms"), expected = v.at("message_id");
    const uint32_t node = v.at("node_id"), step = v.at("step");
    IdGenerator ids(node);
    int64_t id = 0;
    for (uint32_t i = 0; i <= step; ++i) {
        id = ids.next(ms);
        CHECK(step_of(id) == i);
    }
    CHECK(id == expected);
    CHECK(id == (((ms - kSnowflakeEpochMs) << 22) | int64_t(node) << 12 | step));

    IdGenerator other(0x2a5);
    const int64_t first = other.next(kMs);
    CHECK(first == ((kMs - kSnowflakeEpochMs) << 22 | int64_t(0x2a5) << 12));
    CHECK(ms_of(first) == kMs);
    CHECK(node_of(first) == 0x2a5);
    // A later ms starts at step 0 again.
    const int64_t later = other.next(kMs + 5);
    CHECK(later == ((kMs + 5 - kSnowflakeEpochMs) << 22 | int64_t(0x2a5) << 12));
    // Node ids keep their low 10 bits only.
    IdGenerator wide(0x400 | 3);
    CHECK(node_of(wide.next(kMs)) == 3);
}

TEST_CASE("IdGenerator: more than 4096 ids in one ms stay unique, increasing, on their node") {
    for (uint32_t node : {0u, 1u, 517u, 1023u}) {
        CAPTURE(node);
        IdGenerator ids(node);
        int64_t last = 0;
        for (int i = 0; i < 3 * 4096 + 100; ++i) {
            const int64_t id = ids.next(kMs);  // the clock does not move
            REQUIRE(id > last);
            REQUIRE(node_of(id) == node);
            last = id;
        }
        // It ran ahead by 3 ms rather than spill into the node bits.
        CHECK(ms_of(last) == kMs + 3);
        CHECK(step_of(last) == 99);
        // The clock catching up does not go back.
        CHECK(ids.next(kMs + 1) > last);
        CHECK(ids.next(kMs + 3) > last);
        // A clock ahead of it jumps forward.
        const int64_t ahead = ids.next(kMs + 100);
        CHECK(ms_of(ahead) == kMs + 100);
        CHECK(step_of(ahead) == 0);
    }
}

TEST_CASE("IdGenerator: a clock set back never repeats or decreases an id") {
    IdGenerator ids(9);
    const int64_t a = ids.next(kMs);
    const int64_t b = ids.next(kMs - 60000);
    const int64_t c = ids.next(kMs - 1);
    CHECK(b > a);
    CHECK(c > b);
    CHECK(node_of(b) == 9);
}

TEST_CASE("IdGenerator: start_above keeps ids above the store's largest") {
    IdGenerator ids(4);
    // A future id (a previous run with a clock ahead), same node.
    const int64_t future = ((kMs + 3600000 - kSnowflakeEpochMs) << 22) | 4 << 12 | 17;
    ids.start_above(future);
    int64_t last = future;
    for (int i = 0; i < 5000; ++i) {
        const int64_t id = ids.next(kMs);
        REQUIRE(id > last);
        REQUIRE(node_of(id) == 4);
        last = id;
    }
    // An id of another node (higher node bits, last step): still above, still our node.
    IdGenerator other(4);
    const int64_t foreign = ((kMs + 10 - kSnowflakeEpochMs) << 22) | int64_t(1023) << 12 | 0xfff;
    other.start_above(foreign);
    const int64_t id = other.next(kMs);
    CHECK(id > foreign);
    CHECK(node_of(id) == 4);
    // An id in the past does not hold the clock back.
    IdGenerator past(4);
    past.start_above(((kMs - 1000 - kSnowflakeEpochMs) << 22) | 4 << 12);
    CHECK(past.next(kMs) == (((kMs - kSnowflakeEpochMs) << 22) | 4 << 12));
    // The wall-clock overload: above a future start too.
    IdGenerator wall(4);
    wall.start_above(future);
    CHECK(wall.next() > future);
}

TEST_CASE("IdGenerator: thread-safe (4 threads x 100k ids, all unique, each thread increasing)") {
    IdGenerator ids(77);
    constexpr int kThreads = 4, kPer = 100000;
    std::vector<std::vector<int64_t>> got(kThreads);
    std::vector<std::thread> threads;
    std::atomic<bool> go{false};
    for (int t = 0; t < kThreads; ++t) {
        got[t].reserve(kPer);
        threads.emplace_back([&, t] {
            while (!go.load()) std::this_thread::yield();
            for (int i = 0; i < kPer; ++i) got[t].push_back(t % 2 ? ids.next() : ids.next(kMs + 365LL * 86400000));
        });
    }
    go = true;
    for (auto& th : threads) th.join();
    std::vector<int64_t> all;
    bool increasing = true, on_node = true;
    for (const auto& v : got) {
        for (size_t i = 1; i < v.size(); ++i) increasing &= v[i] > v[i - 1];
        for (int64_t id : v) on_node &= node_of(id) == 77;
        all.insert(all.end(), v.begin(), v.end());
    }
    CHECK(increasing);
    CHECK(on_node);
    std::sort(all.begin(), all.end());
    CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
    CHECK(all.size() == size_t(kThreads) * kPer);
}
