#include "limaoim/ws/websocket.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>

#include "limaoim/log/log.h"
#include "limaoim/ws/upgrade.h"

namespace limaoim::ws {

using net::CloseReason;
using net::ConnRef;
using net::DataResult;

namespace {

CloseReason reason_of(WsClose reason) { return CloseReason(uint8_t(reason)); }

constexpr size_t kControlHeader = 6;  // a control frame's header: 2 bytes and the mask (payload <= 125)

}  // namespace

WebSocketTransport::WebSocketTransport(net::Worker& loop, net::Handler& upper, const WebSocketOptions& options)
    : loop_(loop), upper_(upper), options_(options), stats_(loop.stats()), conns_(loop.slots()) {
    // Held bytes of resumed connections go up before the loop hands back its
    // own buffered input (the loop's step after the iteration hooks).
    loop_.add_iteration_hook([this] { hand_back_resumed(); });
}

WebSocketTransport::Connection* WebSocketTransport::live(ConnRef conn) {
    Connection& c = conns_[conn.slot];
    return c.generation && c.generation == conn.generation ? &c : nullptr;
}

const WebSocketTransport::Connection* WebSocketTransport::live(ConnRef conn) const {
    const Connection& c = conns_[conn.slot];
    return c.generation && c.generation == conn.generation ? &c : nullptr;
}

// ---------------------------------------------------------------- downwards: the loop's handler

void WebSocketTransport::on_open(ConnRef conn, net::Transport&) {
    Connection& c = conns_.activate(conn.slot);
    c.generation = conn.generation;
    c.state = uint8_t(State::Upgrading);
    loop_.set_deadline(conn, options_.upgrade_timeout_ms);
}

DataResult WebSocketTransport::on_data(ConnRef conn, std::span<const uint8_t> bytes) {
    Connection* c = live(conn);
    if (!c) return {bytes.size(), 0};
    switch (State(c->state)) {
    case State::Upgrading:
        return upgrade(conn, *c, bytes);
    case State::Open:
        return read_frames(conn, *c, bytes);
    case State::Free:
    case State::Closing:
        break;
    }
    return {bytes.size(), 0};  // closing: what the client still sends is ignored
}

// The request stays in the loop's reassembly buffer until its header block
// is whole (bounded by max_upgrade_request, in time by the upgrade timeout).
DataResult WebSocketTransport::upgrade(ConnRef conn, Connection& c, std::span<const uint8_t> bytes) {
    const UpgradeResult request = parse_upgrade(bytes, options_.max_upgrade_request, c.scanned);
    if (request.status == UpgradeStatus::Incomplete) {
        c.scanned = uint16_t(std::min<size_t>(request.scanned, UINT16_MAX));  // a request dribbled in is searched once, not once per byte
        return {0, 0};
    }
    const std::string response = upgrade_response(request);
    if (request.status != UpgradeStatus::Accepted) {
        stats_.ws_upgrades_refused.add();
        log::write(log::Level::Debug, "ws", "upgrade refused: %s", request.problem);
        loop_.send(conn, {reinterpret_cast<const uint8_t*>(response.data()), response.size()});
        loop_.close(conn, reason_of(WsClose::BadUpgrade), Linger::Flush);
        return {bytes.size(), 0};
    }
    if (!loop_.send(conn, {reinterpret_cast<const uint8_t*>(response.data()), response.size()}))
        return {bytes.size(), 0};
    stats_.ws_upgrades.add();
    stats_.ws_sessions.add();
    c.state = uint8_t(State::Open);
    upper_.on_open(conn, *this);  // sets the upper handler's own deadline
    if (!live(conn)) return {bytes.size(), 0};
    // A client may send frames right behind its request.
    const auto frames = bytes.subspan(request.request_bytes);
    if (frames.empty()) return {bytes.size(), 0};
    const DataResult r = read_frames(conn, c, frames);
    return {request.request_bytes + r.consumed, r.needed};
}

DataResult WebSocketTransport::read_frames(ConnRef conn, Connection& c, std::span<const uint8_t> bytes) {
    std::array<uint8_t, 125> control{};
    stream_.clear();
    size_t pos = 0;
    for (;;) {
        const ReadResult r = read_client_frames(c.reader, bytes.subspan(pos), options_.limits, stream_, control);
        pos += r.consumed;
        stats_.ws_frames_in.add(r.data_frames);
        if (r.stop == ReadResult::Stop::NeedMore) {
            if ((!stream_.empty() || c.held) && !deliver(conn, c)) return {bytes.size(), 0};
            return {pos, r.needed};
        }
        // The data before a close or a violation still goes up first, as a
        // TCP stream's packets before its end or its garbage do.
        if (r.stop == ReadResult::Stop::Error || r.control == Opcode::Close) {
            if ((!stream_.empty() || c.held) && !deliver(conn, c)) return {bytes.size(), 0};
            stream_.clear();
        }
        if (r.stop == ReadResult::Stop::Error) {
            const WsClose reason = r.error == CloseCode::UnsupportedData ? WsClose::TextFrame
                                   : r.error == CloseCode::TooBig       ? WsClose::TooBig
                                                                        : WsClose::ProtocolError;
            close_with(conn, r.error, reason_of(reason));
            return {bytes.size(), 0};
        }
        // A close behind input the upper handler has not taken (it paused)
        // waits in the loop's buffer until that input went up, as a TCP
        // stream's end waits behind its packets. Control frames leave the
        // reader's state as it was, so it is read again from its start.
        if (r.control == Opcode::Close && (c.flags & kPaused))
            return {pos - kControlHeader - r.control_payload.size(), 0};
        if (!control_frame(conn, c, r.control, r.control_payload)) return {bytes.size(), 0};
    }
}

bool WebSocketTransport::control_frame(ConnRef conn, Connection& c, Opcode opcode, std::span<const uint8_t> payload) {
    stats_.ws_control_in.add();
    switch (opcode) {
    case Opcode::Ping:  // §5.5.2: answer with the same payload
        return send_frame(conn, Opcode::Pong, payload);
    case Opcode::Close: {
        // §5.5.1: answer with a close frame, echoing the code, then close
        // the TCP connection (the server closes first, §7.1.1).
        const uint16_t code = close_code_of(payload);
        if (code == 0) {
            close_with(conn, CloseCode::ProtocolError, reason_of(WsClose::ProtocolError));
            return false;
        }
        if (payload.size() > 2 && !valid_utf8(payload.subspan(2))) {  // §8.1: the reason is UTF-8
            close_with(conn, CloseCode::InvalidData, reason_of(WsClose::ProtocolError));
            return false;
        }
        c.state = uint8_t(State::Closing);
        const uint8_t echo[2] = {uint8_t(code >> 8), uint8_t(code)};
        const bool sent = send_frame(conn, Opcode::Close,
                                     code == uint16_t(CloseCode::NoStatus) ? std::span<const uint8_t>{} : echo);
        if (sent) loop_.close(conn, reason_of(WsClose::CloseFrame), Linger::Flush);
        return false;
    }
    default:  // an unsolicited pong is allowed and needs no answer
        return true;
    }
}

// Hands the unmasked bytes of this read (after any held ones, in order) to
// the upper handler, and holds what it did not take.
bool WebSocketTransport::deliver(ConnRef conn, Connection& c) {
    if (c.held) {
        if (!stream_.empty() && !hold(conn, c, stream_, 0)) return false;
        stream_.clear();
        if (c.flags & kPaused) return true;
        const DataResult r = upper_.on_data(conn, c.held.bytes());
        if (!live(conn) || c.state != uint8_t(State::Open)) return false;  // on_close released what was held
        if (r.consumed >= c.held.size()) {
            drop_held(c);
        } else if (r.consumed > 0) {
            c.held.consume(r.consumed, loop_.now_ms());  // a new packet at the front: its own size and time
        }
        if (c.held) c.held.expect(r.needed);
        return true;
    }
    if (c.flags & kPaused) return hold(conn, c, stream_, 0);
    const DataResult r = upper_.on_data(conn, stream_);
    if (!live(conn) || c.state != uint8_t(State::Open)) return false;
    if (r.consumed < stream_.size())
        return hold(conn, c, std::span<const uint8_t>(stream_).subspan(r.consumed), r.needed);
    return true;
}

// The worker grows the buffer from its reassembly budget; on false it has
// closed the connection (on_close released the buffer).
bool WebSocketTransport::hold(ConnRef conn, Connection& c, std::span<const uint8_t> bytes, uint32_t needed) {
    const uint32_t before = c.held.capacity();
    if (!loop_.hold(conn, c.held, bytes, needed)) return false;
    stats_.ws_held_bytes.add(c.held.capacity() - before);
    return true;
}

void WebSocketTransport::drop_held(Connection& c) {
    stats_.ws_held_bytes.sub(c.held.capacity());
    loop_.release(c.held);
}

void WebSocketTransport::on_deadline(ConnRef conn) {
    Connection* c = live(conn);
    if (!c) return;
    if (c->state == uint8_t(State::Upgrading)) {
        stats_.ws_upgrades_refused.add();
        loop_.close(conn, reason_of(WsClose::UpgradeTimeout));
    } else if (c->state == uint8_t(State::Open)) {
        upper_.on_deadline(conn);
    }
}

void WebSocketTransport::on_close(ConnRef conn, CloseReason reason) {
    Connection* c = live(conn);
    if (!c) return;
    const bool upgraded = c->state != uint8_t(State::Upgrading);
    drop_held(*c);
    c->state = uint8_t(State::Free);
    c->generation = 0;
    conns_.deactivate(conn.slot);
    if (upgraded) {
        stats_.ws_sessions.sub();
        upper_.on_close(conn, reason);
    }
}

void WebSocketTransport::on_shutdown() {
    for (uint32_t slot = 0; slot < conns_.size(); ++slot) {
        const Connection& c = conns_[slot];
        if (c.generation && c.state == uint8_t(State::Upgrading))
            loop_.close(ConnRef{slot, c.generation}, reason_of(WsClose::ShutdownBeforeUpgrade));
    }
    // The upper handler says goodbye to the upgraded ones. It may be told
    // twice (the worker tells each listener's handler once, and it may
    // serve a TCP listener too): its on_shutdown must be idempotent.
    upper_.on_shutdown();
}

// ---------------------------------------------------------------- upwards: the upper handler's transport

std::span<uint8_t> WebSocketTransport::reserve(ConnRef conn, size_t n) {
    const Connection* c = live(conn);
    if (!c || c->state != uint8_t(State::Open) || n > kMaxReserve) return {};
    const size_t header = server_header_size(n);
    if (n + header > kMaxReserve) {  // the loop's room cannot take header and bytes: build them apart
        scratch_.resize(n);
        reserved_at_ = scratch_.data();
        reserved_header_ = 0;
        return scratch_;
    }
    std::span<uint8_t> room = loop_.reserve(conn, n + header);
    if (room.empty()) return {};
    reserved_at_ = room.data();
    reserved_header_ = header;
    return room.subspan(header, n);
}

void WebSocketTransport::commit(ConnRef conn, size_t n) {
    if (!live(conn)) return;
    if (reserved_header_ == 0) {
        send(conn, std::span<const uint8_t>(scratch_).first(n));
        return;
    }
    // The header was sized for what was reserved; a shorter packet may need
    // the shorter form (§5.2: the minimal length encoding), so the payload
    // moves up to meet it.
    const size_t header = server_header_size(n);
    if (header < reserved_header_) std::memmove(reserved_at_ + header, reserved_at_ + reserved_header_, n);
    write_server_header(Opcode::Binary, n, reserved_at_);
    loop_.commit(conn, header + n);
    stats_.ws_frames_out.add();
}

bool WebSocketTransport::send(ConnRef conn, std::span<const uint8_t> bytes) {
    const Connection* c = live(conn);
    if (!c || c->state != uint8_t(State::Open)) return false;
    return send_frame(conn, Opcode::Binary, bytes);
}

bool WebSocketTransport::send_frame(ConnRef conn, Opcode opcode, std::span<const uint8_t> payload) {
    uint8_t header[kMaxServerHeader];
    const size_t header_size = write_server_header(opcode, payload.size(), header);
    if (header_size + payload.size() <= kMaxReserve) {
        std::span<uint8_t> room = loop_.reserve(conn, header_size + payload.size());
        if (room.empty()) return false;
        std::memcpy(room.data(), header, header_size);
        if (!payload.empty()) std::memcpy(room.data() + header_size, payload.data(), payload.size());
        loop_.commit(conn, header_size + payload.size());
    } else if (!loop_.send(conn, {header, header_size}) || !loop_.send(conn, payload)) {
        return false;
    }
    stats_.ws_frames_out.add();
    return true;
}

void WebSocketTransport::close_with(ConnRef conn, CloseCode code, CloseReason reason) {
    Connection* c = live(conn);
    if (!c) return;
    c->state = uint8_t(State::Closing);
    const uint8_t payload[2] = {uint8_t(uint16_t(code) >> 8), uint8_t(code)};
    if (send_frame(conn, Opcode::Close, payload)) loop_.close(conn, reason, Linger::Flush);
}

void WebSocketTransport::close(ConnRef conn, CloseReason reason, Linger linger) {
    const Connection* c = live(conn);
    if (!c) return;
    if (linger == Linger::Flush && c->state == uint8_t(State::Open))
        close_with(conn, loop_.stopping() ? CloseCode::GoingAway : CloseCode::Normal, reason);
    else
        loop_.close(conn, reason, linger);
}

void WebSocketTransport::pause_input(ConnRef conn) {
    Connection* c = live(conn);
    if (!c) return;
    c->flags |= kPaused;
    loop_.pause_input(conn);
}

void WebSocketTransport::resume_input(ConnRef conn) {
    Connection* c = live(conn);
    if (!c || !(c->flags & kPaused)) return;
    c->flags &= uint8_t(~kPaused);
    if (!(c->flags & kResumeQueued)) {
        c->flags |= kResumeQueued;
        resumed_.push_back(conn);
    }
    loop_.run_again_now();  // the hand-back runs in an iteration hook, never inside this call
}

void WebSocketTransport::hand_back_resumed() {
    if (resumed_.empty()) return;
    resumed_work_.swap(resumed_);
    for (const ConnRef conn : resumed_work_) {
        Connection* c = live(conn);
        if (!c) continue;
        c->flags &= uint8_t(~kResumeQueued);
        if (c->flags & kPaused) continue;  // paused again before its turn
        if (c->held) {
            c->held.restart(loop_.now_ms());  // the peer could not send while paused
            stream_.clear();
            if (!deliver(conn, *c)) continue;
        }
        if (!(c->flags & kPaused)) loop_.resume_input(conn);
    }
    resumed_work_.clear();
}

bool WebSocketTransport::is_open(ConnRef conn) const {
    const Connection* c = live(conn);
    return c && c->state == uint8_t(State::Open) && loop_.is_open(conn);
}

}  // namespace limaoim::ws
