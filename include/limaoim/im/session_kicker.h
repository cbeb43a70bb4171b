// Kicks this node's session of a (uid, device flag): an envelope to the
// worker that holds it, whose gateway closes it. The API kicks a session
// whose token it replaced; the other nodes' events kick one that logged in
// there, or whose token changed there.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "limaoim/im/directory.h"
#include "limaoim/net/envelope.h"

namespace limaoim::im {

// A kick envelope's flags (arg = the session's ConnId).
inline constexpr uint16_t kKickByToken = 1;  // /user/token replaced its token
// The pair logged in on another node (arg32: that login's wall-clock ms, low
// 24 bits): the session leaves the directory without an offline event (the
// pair is still online, elsewhere), unless it is the newer login itself.
inline constexpr uint16_t kKickByOtherNode = 2;

class SessionKicker {
public:
    explicit SessionKicker(const Directory& directory) : directory_(directory) {}

    // Before the core starts: the workers, by index, and their kick envelope kind.
    void set_workers(std::span<net::EnvelopeSink* const> workers, uint16_t kick_kind) {
        workers_.assign(workers.begin(), workers.end());
        kick_kind_ = kick_kind;
    }

    // Any thread. Nothing when (uid, device flag) has no session here.
    void kick(std::string_view uid, uint8_t device_flag, uint16_t flags, uint32_t arg32 = 0) const {
        if (const net::ConnId session = directory_.find(uid, device_flag); session && session.worker() < workers_.size())
            workers_[session.worker()]->post(
                net::Envelope{.kind = kick_kind_, .flags = flags, .arg32 = arg32, .arg = session.value});
    }

private:
    const Directory& directory_;
    std::vector<net::EnvelopeSink*> workers_;
    uint16_t kick_kind_ = 0;
};

}  // namespace limaoim::im
