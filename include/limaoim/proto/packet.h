// The packets of both dialects the gateway speaks: LiMaoIM versions 1-4
// (docs/PROTOCOL.md §3-§8) and WuKongIM's WKProto versions 1-5
// (docs/WKPROTO.md). One model for both: a field only one dialect puts on the
// wire (WKProto's expire, topic, stream fields, node id) is left at its zero
// value by the other's decoder and ignored by its encoder, so the session
// state machine above handles one set of structs whichever codec carries them
// (proto/dialect.h).
//
// Every string and payload field is a view into the buffer the packet was
// decoded from (the worker's receive buffer, or a session's reassembly chunk):
// a decoded packet is valid only while that buffer is. Nothing here allocates.
#pragma once

#include <cstdint>
#include <string_view>
#include <variant>

namespace limaoim::proto {

enum class PacketType : uint8_t {
    Connect = 1,
    Connack = 2,
    Send = 3,
    Sendack = 4,
    Recv = 5,
    Recvack = 6,
    Ping = 7,
    Pong = 8,
    Disconnect = 9,
    Sub = 10,     // WKProto only: subscribe a session to a channel's live messages
    Suback = 11,  // WKProto only
    Event = 12,   // WKProto v5 only
};
// Arrays indexed by the raw type nibble (0..15) are sized with this, so a
// counter exists for every value a hostile client can put on the wire.
inline constexpr int kTypeNibbleCount = 16;

const char* to_string(PacketType type);

// Header flag bits: the low nibble of byte 0.
namespace flag {
inline constexpr uint8_t kDup = 0x08;
inline constexpr uint8_t kSyncOnce = 0x04;
inline constexpr uint8_t kRedDot = 0x02;
inline constexpr uint8_t kNoPersist = 0x01;
}  // namespace flag

// WKProto: a CONNACK's header flag bit 0 says its body starts with the
// server's version byte (the DUP/sync/red-dot/no-persist bits mean nothing
// on a CONNACK).
inline constexpr uint8_t kConnackHasServerVersion = 0x01;

// WKProto's SEND/RECV/SUB setting byte (LiMaoIM v4 has the byte; limaoim
// gives it no bits).
namespace wk_setting {
inline constexpr uint8_t kReceipt = 0x80;    // the sender wants read receipts
inline constexpr uint8_t kSignal = 0x20;     // end-to-end (Signal) encrypted: the server does not look
inline constexpr uint8_t kNoEncrypt = 0x10;  // the payload is plain, msg_key not checked
inline constexpr uint8_t kTopic = 0x08;      // a topic string follows
inline constexpr uint8_t kStream = 0x02;     // v2-4: stream fields follow
}  // namespace wk_setting

enum class ReasonCode : uint8_t {
    Error = 0,
    Success = 1,
    AuthFail = 2,
    SubscriberNotExist = 3,
    InBlacklist = 4,
    ChannelNotExist = 5,
    UserNotOnNode = 6,
    SenderOffline = 7,
    MsgKeyError = 8,
    PayloadDecodeError = 9,
    ForwardSendPacketError = 10,
    NotAllowSend = 11,
    // WKProto's further codes (a LiMaoIM client is never sent one).
    ConnectKick = 12,
    NotInWhitelist = 13,
    QueryTokenError = 14,
    SystemError = 15,
    ChannelIdError = 16,
    NodeMatchError = 17,
    NodeNotMatch = 18,
    Ban = 19,
    NotSupportHeader = 20,
    ClientKeyIsEmpty = 21,
    RateLimit = 22,
    NotSupportChannelType = 23,
    Disband = 24,
    SendBan = 25,
};

inline constexpr uint8_t kLatestVersion = 4;

// Field presence uses strict comparisons on the connection's version byte, so
// version 0 behaves like 1 and anything above 4 like 4 (PROTOCOL.md Q9).
constexpr bool has_client_msg_no(uint8_t version) { return version > 1; }
constexpr bool has_crypto(uint8_t version) { return version > 2; }
constexpr bool has_setting(uint8_t version) { return version > 3; }

struct ConnectPacket {
    uint8_t flags = 0;
    uint8_t version = 0;
    std::string_view client_key;  // present when this packet's version > 2
    uint8_t device_flag = 0;
    std::string_view device_id;
    int64_t client_timestamp = 0;
    std::string_view uid;
    std::string_view token;
    bool operator==(const ConnectPacket&) const = default;
};

struct ConnackPacket {
    uint8_t flags = 0;
    std::string_view server_key;  // v>2
    std::string_view salt;        // v>2
    int64_t time_diff = 0;
    uint8_t reason_code = 0;
    uint8_t server_version = 0;  // WKProto: present when the header's flag bit 0 is set
    uint64_t node_id = 0;        // WKProto v>=4
    bool operator==(const ConnackPacket&) const = default;
};

struct SendPacket {
    uint8_t flags = 0;
    uint8_t setting = 0;        // v>3
    std::string_view msg_key;   // v>2
    uint32_t client_seq = 0;
    std::string_view client_msg_no;  // v>1
    std::string_view channel_id;
    uint8_t channel_type = 0;
    std::string_view payload;  // the rest of the body
    uint32_t expire = 0;            // WKProto v>=3: seconds the message lives, 0 = forever
    std::string_view stream_no;     // WKProto v2-4 with the stream setting bit
    std::string_view topic;         // WKProto with the topic setting bit
    bool operator==(const SendPacket&) const = default;
};

struct SendackPacket {
    uint8_t flags = 0;
    uint32_t client_seq = 0;
    int64_t message_id = 0;
    uint32_t message_seq = 0;
    uint8_t reason_code = 0;
    bool operator==(const SendackPacket&) const = default;
};

struct RecvPacket {
    uint8_t flags = 0;
    uint8_t setting = 0;        // v>3
    std::string_view msg_key;   // v>2
    int64_t message_id = 0;
    uint32_t message_seq = 0;
    std::string_view client_msg_no;  // v>1
    int32_t timestamp = 0;
    std::string_view channel_id;
    uint8_t channel_type = 0;
    std::string_view from_uid;
    std::string_view payload;  // the rest of the body
    uint32_t expire = 0;            // WKProto v>=3
    std::string_view stream_no;     // WKProto v2-4 with the stream setting bit
    uint64_t stream_id = 0;         // the same
    uint8_t stream_flag = 0;        // the same: 0 start, 1 going on, 2 end
    std::string_view topic;         // WKProto with the topic setting bit
    bool operator==(const RecvPacket&) const = default;
};

struct RecvackPacket {
    uint8_t flags = 0;
    int64_t message_id = 0;
    uint32_t message_seq = 0;
    bool operator==(const RecvackPacket&) const = default;
};

struct PingPacket {
    bool operator==(const PingPacket&) const = default;
};

struct PongPacket {
    bool operator==(const PongPacket&) const = default;
};

struct DisconnectPacket {
    uint8_t flags = 0;
    uint8_t reason_code = 0;
    std::string_view reason;
    bool operator==(const DisconnectPacket&) const = default;
};

// WKProto: subscribe (action 0) or unsubscribe (1) a session to a channel.
struct SubPacket {
    uint8_t flags = 0;
    uint8_t setting = 0;
    std::string_view sub_no;  // the client's number for this request, echoed in SUBACK
    std::string_view channel_id;
    uint8_t channel_type = 0;
    uint8_t action = 0;
    std::string_view param;
    bool operator==(const SubPacket&) const = default;
};

struct SubackPacket {
    uint8_t flags = 0;
    std::string_view sub_no;
    std::string_view channel_id;
    uint8_t channel_type = 0;
    uint8_t action = 0;
    uint8_t reason_code = 0;
    bool operator==(const SubackPacket&) const = default;
};

// WKProto v5: an event on a message (e.g. a streamed reply's next chunk).
struct EventPacket {
    uint8_t flags = 0;
    std::string_view id;
    std::string_view type;
    int64_t timestamp = 0;
    std::string_view data;  // the rest of the body
    bool operator==(const EventPacket&) const = default;
};

// Alternative index + 1 == PacketType value.
using Packet = std::variant<ConnectPacket, ConnackPacket, SendPacket, SendackPacket, RecvPacket,
                            RecvackPacket, PingPacket, PongPacket, DisconnectPacket, SubPacket,
                            SubackPacket, EventPacket>;

inline PacketType type_of(const Packet& packet) {
    return static_cast<PacketType>(packet.index() + 1);
}

}  // namespace limaoim::proto
