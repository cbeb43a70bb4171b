// WuKongIM's WKProto, versions 1-5 (docs/WKPROTO.md): its field orders on
// the shared codec machinery (body_fields.h), and the dialect that carries
// them. Field orders and conditions follow the Go codec
// (WuKongIMGoProto); where the JavaScript SDK reads otherwise, WKPROTO.md
// says so.
#include "body_fields.h"
#include "limaoim/proto/dialect.h"

namespace limaoim::proto {

namespace {

using body::in_order;
using body::PacketOf;

inline constexpr uint8_t kWKProtoLatestVersion = 5;

constexpr bool has_expire(uint8_t version) { return version >= 3; }
constexpr bool has_node_id(uint8_t version) { return version >= 4; }
// Stream fields exist from version 2 and were dropped again in 5 (streams
// became EVENT packets).
constexpr bool has_stream(uint8_t version, uint8_t setting) {
    return version >= 2 && version < 5 && (setting & wk_setting::kStream);
}
constexpr bool has_topic(uint8_t setting) { return setting & wk_setting::kTopic; }

struct WKProtoLayout {
    static constexpr PacketType kLastType = PacketType::Event;

    // client_key is on the wire at every version (empty without crypto).
    template <PacketOf<ConnectPacket> P, class Visitor>
    static void fields(P& p, uint8_t, Visitor& visit) {
        in_order(visit, p.version, p.device_flag, p.device_id, p.uid, p.token, p.client_timestamp, p.client_key);
    }

    template <PacketOf<ConnackPacket> P, class Visitor>
    static void fields(P& p, uint8_t version, Visitor& visit) {
        if (p.flags & kConnackHasServerVersion) visit(p.server_version);
        in_order(visit, p.time_diff, p.reason_code, p.server_key, p.salt);
        if (has_node_id(version)) visit(p.node_id);
    }

    template <PacketOf<SendPacket> P, class Visitor>
    static void fields(P& p, uint8_t version, Visitor& visit) {
        in_order(visit, p.setting, p.client_seq, p.client_msg_no);
        if (has_stream(version, p.setting)) visit(p.stream_no);
        in_order(visit, p.channel_id, p.channel_type);
        if (has_expire(version)) visit(p.expire);
        visit(p.msg_key);
        if (has_topic(p.setting)) visit(p.topic);
        visit.rest(p.payload);
    }

    template <PacketOf<RecvPacket> P, class Visitor>
    static void fields(P& p, uint8_t version, Visitor& visit) {
        in_order(visit, p.setting, p.msg_key, p.from_uid, p.channel_id, p.channel_type);
        if (has_expire(version)) visit(p.expire);
        visit(p.client_msg_no);
        if (has_stream(version, p.setting)) in_order(visit, p.stream_flag, p.stream_no, p.stream_id);
        in_order(visit, p.message_id, p.message_seq, p.timestamp);
        if (has_topic(p.setting)) visit(p.topic);
        visit.rest(p.payload);
    }

    template <PacketOf<SubPacket> P, class Visitor>
    static void fields(P& p, uint8_t, Visitor& visit) {
        in_order(visit, p.setting, p.sub_no, p.channel_id, p.channel_type, p.action, p.param);
    }

    // Unlike LiMaoIM's, the message id comes first.
    template <PacketOf<SendackPacket> P, class Visitor>
    static void fields(P& p, uint8_t, Visitor& visit) {
        in_order(visit, p.message_id, p.client_seq, p.message_seq, p.reason_code);
    }

    template <PacketOf<SubackPacket> P, class Visitor>
    static void fields(P& p, uint8_t, Visitor& visit) {
        in_order(visit, p.sub_no, p.channel_id, p.channel_type, p.action, p.reason_code);
    }

    template <PacketOf<EventPacket> P, class Visitor>
    static void fields(P& p, uint8_t, Visitor& visit) {
        in_order(visit, p.id, p.type, p.timestamp);
        visit.rest(p.data);
    }
};

using WKProtoCodec = body::BodyCodec<WKProtoLayout>;

// The WuKongIM server runs a session at its client's version, or at its own
// latest when the client sends 0 or one it does not know yet.
uint8_t lower_version(uint8_t connect_version) {
    return connect_version == 0 || connect_version > kWKProtoLatestVersion ? kWKProtoLatestVersion
                                                                           : connect_version;
}

// Every WKProto version carries client_key, server_key/salt and msg_key.
bool always(uint8_t) { return true; }

bool unless_no_encrypt(uint8_t setting) { return !(setting & wk_setting::kNoEncrypt); }

// The WuKongIM server says its version in CONNACK only to clients of
// version 4 and later (older ones do not read the byte), and the node id
// from version 4 on (the codec writes it at the session's version).
void server_version_and_node(ConnackPacket& connack, uint8_t connect_version, uint8_t session_version,
                             uint64_t node_id) {
    if (connect_version > 3) {
        connack.flags = kConnackHasServerVersion;
        connack.server_version = session_version;
    }
    connack.node_id = node_id;
}

// Stream messages: the Go codec's bit (0x02) and the 1.0.x JavaScript SDK's
// (0x04, with another field layout, docs/WKPROTO.md §8). Neither is served.
constexpr uint8_t kStreamBits = wk_setting::kStream | 0x04;

}  // namespace

const Dialect kWuKongIMDialect = {
    DialectId::WuKongIM,
    "wukongim",
    kWKProtoLatestVersion,
    lower_version,
    always,
    unless_no_encrypt,
    /*refused_send_setting=*/kStreamBits,
    /*recv_setting_mask=*/uint8_t(~(kStreamBits | wk_setting::kNoEncrypt)),
    server_version_and_node,
    WKProtoCodec::split,
    WKProtoCodec::decode,
    WKProtoCodec::encoded_size,
    WKProtoCodec::encode,
};

}  // namespace limaoim::proto
