// The protocol state of one connection: 64 bytes in the gateway's
// SlotArray, indexed by the connection's slot (net::ConnRef::slot).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "limaoim/proto/crypto.h"

namespace limaoim::gateway {

enum class SessionState : uint8_t {
    Free = 0,        // no connection (what a zeroed slot reads as)
    AwaitConnect,    // accepted; the first packet must be CONNECT (auth deadline)
    Authenticated,   // in the directory; PING is answered (idle deadline)
    Kicked,          // replaced by a newer login: DISCONNECT sent, closing after the kick delay
};

struct Session {
    static constexpr size_t kInlineUid = 24;
    // flags
    static constexpr uint8_t kHandshakeGranted = 1;   // a deferred CONNECT's turn came: handle it now
    static constexpr uint8_t kHandshakeDeferred = 2;  // a whole CONNECT waits for the handshake budget
    static constexpr uint8_t kSendsPaused = 4;        // input paused at the in-flight SEND cap
    static constexpr uint8_t kRatePaused = 8;         // input paused by a SEND rate limit (server-wide or the user's)
    static constexpr uint8_t kInputPaused = kSendsPaused | kRatePaused;

    SessionState state;
    uint8_t version;        // the CONNECT's version byte, used for everything sent back
    uint8_t device_flag;
    uint8_t flags;
    uint32_t generation;    // of the connection this session belongs to
    uint16_t uid_len;
    uint16_t sends_in_flight;  // SENDs at the committer, SENDACK not yet written
    uint8_t carrier;        // index into the gateway's carriers: the transport and dialect of this session
    // Wall-clock ms of the login, low 24 bits (wraps every 4.6 h): which of
    // two logins of one pair on two nodes is the newer (kKickByOtherNode).
    // In the bytes that kept the session one cache line.
    uint8_t login_ms[3];
    // The uid, inline when short (the usual case), else in a malloc'd copy.
    union {
        char inline_bytes[kInlineUid];
        char* heap;
    } uid;
    // AES-128 key: the key is 16 lowercase hex characters (PROTOCOL.md §5.2),
    // kept here as the 8 bytes they spell; the IV is the 16-byte salt.
    std::array<uint8_t, 8> key_bytes;
    std::array<uint8_t, 16> iv;

    std::string_view uid_view() const {
        return {uid_len <= kInlineUid ? uid.inline_bytes : uid.heap, uid_len};
    }
    void set_login_ms(uint64_t ms) {
        login_ms[0] = uint8_t(ms);
        login_ms[1] = uint8_t(ms >> 8);
        login_ms[2] = uint8_t(ms >> 16);
    }
    uint32_t login_ms24() const { return login_ms[0] | uint32_t(login_ms[1]) << 8 | uint32_t(login_ms[2]) << 16; }
    bool set_uid(std::string_view value);  // false if out of memory
    void free_uid();
    void set_key(const proto::crypto::SessionKey& key);
    proto::crypto::SessionKey key() const;
};
static_assert(sizeof(Session) == 64, "one cache line per session");

}  // namespace limaoim::gateway
