// The bytes both store engines keep: the primitives their keys and values
// are made of, and the two records they store as one opaque value each.
// One copy, so a RocksDB directory and a Redis keyspace hold the same
// record bytes, and neither engine can drift from the other (the bytes are
// pinned by tests/unit/test_record_codec.cpp: existing stores must open).
//
// A channel record is varint-length-prefixed parent, then subscribers,
// allowlist and denylist, each a varint count of varint-length-prefixed uids.
// A conversation list is a varint count of entries, each: varint-length-
// prefixed channel id, type byte, varint unread, BE-i64 timestamp, varint
// last seq, varint-length-prefixed last client_msg_no, BE-i64 last message
// id, BE-i64 version.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/store/store.h"

namespace limaoim::store {

// LEB128: seven bits a byte, least significant first.
inline void put_varint(std::string& out, uint64_t value) {
    for (; value >= 0x80; value >>= 7) out.push_back(char(value | 0x80));
    out.push_back(char(value));
}

// Varint length, then the bytes.
inline void put_bytes(std::string& out, std::string_view bytes) {
    put_varint(out, bytes.size());
    out.append(bytes);
}

// The low `width` bytes of `value`, most significant first: keys made of
// them sort numerically.
inline void put_be(std::string& out, uint64_t value, int width) {
    for (int shift = (width - 1) * 8; shift >= 0; shift -= 8) out.push_back(char(value >> shift));
}

// A signed value with its sign bit flipped, so that under put_be negative
// values sort before positive ones; flipping again gives the value back.
inline uint64_t order_preserving(int64_t value) { return uint64_t(value) ^ (uint64_t(1) << 63); }
inline int64_t from_order_preserving(uint64_t stored) { return int64_t(stored ^ (uint64_t(1) << 63)); }

// Reads what the put_* functions wrote; any overrun clears `ok` and yields
// empty values, so a corrupt record is reported, never read past its end.
struct RecordReader {
    std::string_view rest;
    bool ok = true;

    std::string_view take(uint64_t size) {
        if (!ok || size > rest.size()) return ok = false, std::string_view{};
        std::string_view taken = rest.substr(0, size);
        rest.remove_prefix(size);
        return taken;
    }
    uint64_t varint() {
        uint64_t value = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            std::string_view byte = take(1);
            if (!ok) return 0;
            value |= uint64_t(uint8_t(byte[0]) & 0x7f) << shift;
            if (!(uint8_t(byte[0]) & 0x80)) return value;
        }
        return ok = false, 0;
    }
    std::string bytes() { return std::string(take(varint())); }
    uint64_t be(int width) {
        uint64_t value = 0;
        for (char byte : take(width)) value = value << 8 | uint8_t(byte);
        return value;
    }
    bool finished() const { return ok && rest.empty(); }
};

// The channel's parent and lists; its type and id are the engine's key.
std::string encode_channel(const ChannelRecord& channel);
// Appends to `channel`'s lists; false when `value` is truncated, has bytes
// left over or counts more entries than it holds.
bool decode_channel(std::string_view value, ChannelRecord& channel);

std::string encode_conversations(const std::vector<ConversationRecord>& list);
// Appends to `list`; false as decode_channel.
bool decode_conversations(std::string_view value, std::vector<ConversationRecord>& list);

}  // namespace limaoim::store
