// A protocol dialect: how one family of clients puts the packets of
// proto/packet.h on the wire. LiMaoIM (docs/PROTOCOL.md) and WuKongIM's
// WKProto (docs/WKPROTO.md) share framing, packet types and crypto but order
// and gate their fields differently; the gateway holds one Dialect per
// session, chosen by the listener that accepted it (never guessed from
// bytes), and runs the same session state machine over either.
//
// A table of functions rather than a class hierarchy: there are two
// dialects, both constant, and a session refers to its own through the
// gateway's carrier table (a byte), not a pointer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "limaoim/proto/codec.h"
#include "limaoim/proto/packet.h"

namespace limaoim::proto {

enum class DialectId : uint8_t { LiMaoIM = 0, WuKongIM = 1 };
inline constexpr int kDialectCount = 2;

struct Dialect {
    DialectId id;
    const char* name;        // "limaoim" | "wukongim": logs, stats, metrics labels
    uint8_t latest_version;  // the highest version this server speaks in it
    // The version a session runs at, given its CONNECT's version byte
    // (LiMaoIM echoes the client's; WKProto takes the lower of the two).
    uint8_t (*session_version)(uint8_t connect_version);
    // Whether a session at `version` exchanges keys in CONNECT/CONNACK and
    // carries msg_key on SEND/RECV (payloads AES-encrypted unless a message's
    // setting says otherwise, see payload_encrypted).
    bool (*has_crypto)(uint8_t version);
    // Whether a SEND with `setting` has its payload encrypted, for a
    // session where has_crypto() holds. (A RECV is always sealed then: the
    // WuKongIM SDKs decrypt every RECV whatever its setting says.)
    bool (*payload_encrypted)(uint8_t setting);
    // Setting bits a SEND of this dialect may not carry: features this
    // server refuses (SENDACK reason NotSupportHeader) rather than ignores.
    uint8_t refused_send_setting;
    // Setting bits a RECV of this dialect keeps of its message's setting:
    // a bit that would make the client read fields the server does not
    // write (WKProto's stream bits) or skip decryption is cleared.
    uint8_t recv_setting_mask;
    // Fills in the CONNACK fields only this dialect has (given the CONNECT's
    // version, the session's and this node's id); LiMaoIM's leaves it be.
    void (*complete_connack)(ConnackPacket& connack, uint8_t connect_version, uint8_t session_version,
                             uint64_t node_id);
    SplitResult (*split)(std::span<const uint8_t> stream, uint32_t max_remaining_length);
    DecodeError (*decode)(const Frame& frame, uint8_t version, Packet& out);
    size_t (*encoded_size)(const Packet& packet, uint8_t version);
    size_t (*encode)(const Packet& packet, uint8_t version, std::span<uint8_t> out);
};

extern const Dialect kLiMaoIMDialect;
extern const Dialect kWuKongIMDialect;  // src/proto/wkproto.cpp

// The dialect with this id (a session's carrier table stores the id).
const Dialect& dialect(DialectId id);

}  // namespace limaoim::proto
