#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "limaoim/store/record_codec.h"

using namespace limaoim::store;

namespace {

ChannelRecord sample_channel() {
    ChannelRecord channel;
    channel.parent = "p";
    channel.subscribers = {"a", "bc"};
    channel.denylist = {"d"};
    return channel;
}

ConversationRecord sample_conversation() {
    ConversationRecord c;
    c.channel_id = "u2";
    c.channel_type = 1;
    c.unread = 300;                          // two varint bytes
    c.timestamp = 1700000000;                // 0x6553f100
    c.last_msg_seq = 5;
    c.last_client_msg_no = "c1";
    c.last_msg_id = 0x0102030405060708;
    c.version = -1;                          // all ones, not sign-flipped
    return c;
}

// The bytes RocksDB directories and Redis keyspaces already hold: a change
// here means existing stores no longer open.
const std::string pinned_channel("\x01p" "\x02\x01" "a\x02" "bc" "\x00" "\x01\x01" "d", 12);
const std::string pinned_conversations(
    "\x01"                                // one entry
    "\x02u2"                              // channel id
    "\x01"                                // type
    "\xac\x02"                            // unread 300
    "\x00\x00\x00\x00\x65\x53\xf1\x00"    // timestamp, BE
    "\x05"                                // last seq
    "\x02" "c1"                           // last client_msg_no
    "\x01\x02\x03\x04\x05\x06\x07\x08"    // last message id, BE
    "\xff\xff\xff\xff\xff\xff\xff\xff",   // version -1
    35);

}  // namespace

TEST_CASE("record codec: a channel record and a conversation list keep their stored bytes") {
    CHECK(encode_channel(sample_channel()) == pinned_channel);
    CHECK(encode_conversations({sample_conversation()}) == pinned_conversations);

    ChannelRecord channel;
    REQUIRE(decode_channel(pinned_channel, channel));
    CHECK(channel.parent == "p");
    CHECK(channel.subscribers == std::vector<std::string>{"a", "bc"});
    CHECK(channel.allowlist.empty());
    CHECK(channel.denylist == std::vector<std::string>{"d"});

    std::vector<ConversationRecord> list;
    REQUIRE(decode_conversations(pinned_conversations, list));
    CHECK(list == std::vector<ConversationRecord>{sample_conversation()});
}

TEST_CASE("record codec: records round-trip, empty ones and binary bytes included") {
    ChannelRecord empty_channel, channel;
    REQUIRE(decode_channel(encode_channel(empty_channel), channel));
    CHECK(channel.parent.empty());
    CHECK(channel.subscribers.empty());

    ChannelRecord binary;
    binary.parent = std::string("\0\xff", 2);
    binary.subscribers = {std::string(200, 'x'), ""};  // a 200-byte uid takes a two-byte length
    binary.allowlist = {std::string("\x80", 1)};
    binary.denylist = {"z"};
    ChannelRecord decoded;
    REQUIRE(decode_channel(encode_channel(binary), decoded));
    CHECK(decoded.parent == binary.parent);
    CHECK(decoded.subscribers == binary.subscribers);
    CHECK(decoded.allowlist == binary.allowlist);
    CHECK(decoded.denylist == binary.denylist);

    std::vector<ConversationRecord> none;
    REQUIRE(decode_conversations(encode_conversations({}), none));
    CHECK(none.empty());

    ConversationRecord extreme;
    extreme.channel_id = std::string("\0", 1);
    extreme.channel_type = 255;
    extreme.unread = std::numeric_limits<uint32_t>::max();
    extreme.timestamp = std::numeric_limits<int64_t>::min();
    extreme.last_msg_seq = std::numeric_limits<uint32_t>::max();
    extreme.last_msg_id = std::numeric_limits<int64_t>::max();
    extreme.version = 0;
    const std::vector<ConversationRecord> two{sample_conversation(), extreme};
    std::vector<ConversationRecord> list;
    REQUIRE(decode_conversations(encode_conversations(two), list));
    CHECK(list == two);
}

TEST_CASE("record codec: a truncated or overlong record is rejected") {
    const std::string channel_bytes = encode_channel(sample_channel());
    const std::string list_bytes = encode_conversations({sample_conversation(), sample_conversation()});
    for (size_t size = 0; size < channel_bytes.size(); ++size) {
        ChannelRecord channel;
        CHECK_MESSAGE(!decode_channel(std::string_view(channel_bytes).substr(0, size), channel), size);
    }
    for (size_t size = 0; size < list_bytes.size(); ++size) {
        std::vector<ConversationRecord> list;
        CHECK_MESSAGE(!decode_conversations(std::string_view(list_bytes).substr(0, size), list), size);
    }
    ChannelRecord channel;
    CHECK(!decode_channel(channel_bytes + "x", channel));
    std::vector<ConversationRecord> list;
    CHECK(!decode_conversations(list_bytes + "x", list));

    // A count larger than the bytes left is refused before anything is read.
    std::string huge_count;
    put_varint(huge_count, 1u << 20);
    CHECK(!decode_conversations(huge_count, list));
    CHECK(!decode_channel(std::string("\x00", 1) + huge_count, channel));
}

TEST_CASE("record codec: varints, big-endian integers and order-preserving ids read back") {
    std::string out;
    for (uint64_t value : {uint64_t(0), uint64_t(127), uint64_t(128), uint64_t(300), ~uint64_t(0)}) put_varint(out, value);
    put_be(out, 0x0a0b0c0d, 4);
    put_be(out, order_preserving(-2), 8);
    put_bytes(out, "hi");
    CHECK(out.substr(0, 4) == std::string("\x00\x7f\x80\x01", 4));

    RecordReader in{out};
    CHECK(in.varint() == 0);
    CHECK(in.varint() == 127);
    CHECK(in.varint() == 128);
    CHECK(in.varint() == 300);
    CHECK(in.varint() == ~uint64_t(0));
    CHECK(in.be(4) == 0x0a0b0c0d);
    CHECK(from_order_preserving(in.be(8)) == -2);
    CHECK(in.bytes() == "hi");
    CHECK(in.finished());

    // Negative values sort first once flipped and written big-endian.
    std::string negative, positive;
    put_be(negative, order_preserving(-1), 8);
    put_be(positive, order_preserving(1), 8);
    CHECK(negative < positive);

    const std::string no_last_byte(10, '\x80'), short_bytes("\x05" "ab", 3);
    RecordReader overlong{no_last_byte};
    CHECK(overlong.varint() == 0);
    CHECK(!overlong.ok);
    RecordReader past_end{short_bytes};
    CHECK(past_end.bytes().empty());
    CHECK(!past_end.finished());
}
