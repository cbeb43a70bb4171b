// A message as the IM core stores, queues and delivers it (SERVER.md §5 step 6),
// and its one binary encoding: the same bytes are the value in the store, the
// Payload every delivery envelope shares, and what the API reads back.
//
// Encoding (little-endian, format byte first so a stored format can change):
//   u8 format | u8 header_flags | u8 setting | u8 channel_type | i64 message_id |
//   u32 message_seq | i32 timestamp | u16 n, client_msg_no | u16 n, from_uid |
//   u16 n, channel_id | u32 n, payload
//   [format 2 only: u32 expire | u16 n, topic]
// Format 1 is written whenever expire and topic are unset (every LiMaoIM
// message), so those bytes are what they always were; both are read.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace limaoim::im {

inline constexpr uint8_t kPersonChannel = 1;
inline constexpr uint8_t kGroupChannel = 2;

// Header flags a message keeps (proto::flag bits; DUP is never kept, §6).
inline constexpr uint8_t kKeptHeaderFlags = 0x04 | 0x02 | 0x01;  // SyncOnce | RedDot | NoPersist

// A view over encoded bytes (or over an owning Message's strings).
struct MessageView {
    uint8_t header_flags = 0;
    uint8_t setting = 0;
    uint8_t channel_type = 0;
    int64_t message_id = 0;
    uint32_t message_seq = 0;   // channel seq, or the queue seq of a SyncOnce copy; 0 when not persisted
    int32_t timestamp = 0;      // seconds
    std::string_view client_msg_no;
    std::string_view from_uid;
    std::string_view channel_id;  // as sent: the recipient uid for person messages
    std::string_view payload;     // plaintext
    uint32_t expire = 0;          // seconds after timestamp it stops being delivered or synced; 0 = never
    std::string_view topic;       // WKProto's topic; empty for LiMaoIM messages

    // Past its expiry at wall-clock second `now_s`: not delivered, not synced.
    bool expired(int64_t now_s) const { return expire && now_s >= int64_t(timestamp) + expire; }
    bool red_dot() const { return header_flags & 0x02; }
    bool sync_once() const { return header_flags & 0x04; }
    bool no_persist() const { return header_flags & 0x01; }
    // Persisted in the channel log with a channel seq (§6).
    bool persisted() const { return !(header_flags & (0x04 | 0x01)); }
};

struct Message {
    uint8_t header_flags = 0;
    uint8_t setting = 0;
    uint8_t channel_type = 0;
    int64_t message_id = 0;
    uint32_t message_seq = 0;
    int32_t timestamp = 0;
    std::string client_msg_no;
    std::string from_uid;
    std::string channel_id;
    std::string payload;
    uint32_t expire = 0;
    std::string topic;

    MessageView view() const {
        return {header_flags, setting,       channel_type, message_id, message_seq, timestamp,
                client_msg_no, from_uid,     channel_id,   payload,    expire,      topic};
    }
    static Message from(const MessageView& v) {
        return {v.header_flags,
                v.setting,
                v.channel_type,
                v.message_id,
                v.message_seq,
                v.timestamp,
                std::string(v.client_msg_no),
                std::string(v.from_uid),
                std::string(v.channel_id),
                std::string(v.payload),
                v.expire,
                std::string(v.topic)};
    }
};

// client_msg_no, from_uid and channel_id are kept with a 16-bit length:
// longer ones cannot be encoded (a SEND's are 16-bit on the wire; the API
// refuses longer ones).
inline constexpr size_t kMaxMessageString = UINT16_MAX;

size_t encoded_size(const MessageView& message);
// Writes encoded_size(message) bytes into `out` (which must have room).
void encode(const MessageView& message, std::span<uint8_t> out);
std::vector<uint8_t> encode(const MessageView& message);
// Nullopt on truncated or malformed bytes (a corrupt store value).
std::optional<MessageView> decode(std::span<const uint8_t> bytes);
inline std::optional<MessageView> decode(std::string_view bytes) {
    return decode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}
// A message this server encoded itself, or checked when another node's
// event brought it: that it decodes is an invariant (LIMAOIM_ASSERT).
MessageView decode_checked(std::span<const uint8_t> bytes);
// Rewrite the id or seq of encoded bytes in place (the committer fills them in).
void patch_id(std::span<uint8_t> encoded, int64_t id);
void patch_seq(std::span<uint8_t> encoded, uint32_t seq);
// Read them back without decoding the rest (a SENDACK needs only these).
int64_t encoded_id(std::span<const uint8_t> encoded);
uint32_t encoded_seq(std::span<const uint8_t> encoded);

// The fake channel id two users share (SERVER.md §7.1): CRC-32/IEEE decides the order.
std::string fake_channel_id(std::string_view from, std::string_view to);
// The id a message's log is stored under: the fake channel of a person
// message (the recipient's own person channel when the API sent it without
// a from_uid, §16.2), else the channel id.
std::string log_channel_id(const MessageView& message);
// The users of a person message's chat (§8): the sender (when there is one)
// and the recipient, once for a self-chat; appended to `out`.
void person_receivers(const MessageView& message, std::vector<std::string>& out);

}  // namespace limaoim::im
