#include "limaoim/gateway/gateway.h"
#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"

#include <cstdio>

namespace limaoim::gateway {

using net::CloseReason;
using net::ConnId;
using net::ConnRef;
using proto::PacketType;
using Linger = net::Transport::Linger;

using clock::steady_us;
using clock::wall_ms;
using stats::histogram_bucket;

const char* close_reason_name(CloseReason reason) {
    const uint8_t i = uint8_t(reason);
    if (i < net::kLoopCloseReasons) return net::kLoopCloseReasonNames[i];
    if (i >= net::kFirstHandlerCloseReason && size_t(i - net::kFirstHandlerCloseReason) < std::size(kGatewayCloseNames))
        return kGatewayCloseNames[i - net::kFirstHandlerCloseReason];
    return "unknown";
}

std::vector<std::string> close_reason_names() {
    std::vector<std::string> names(net::kFirstHandlerCloseReason + std::size(kGatewayCloseNames));
    for (uint8_t i = 0; i < net::kLoopCloseReasons; ++i) names[i] = net::kLoopCloseReasonNames[i];
    for (size_t i = 0; i < std::size(kGatewayCloseNames); ++i)
        names[net::kFirstHandlerCloseReason + i] = kGatewayCloseNames[i];
    return names;
}

im::GatewayKinds gateway_envelope_kinds() {
    return {Gateway::kKick, Gateway::kDeliver, Gateway::kSendResult};
}

Gateway::Gateway(net::Worker& loop, GatewayShared& shared)
    : loop_(loop), shared_(shared), stats_(loop.stats()), sessions_(loop.slots()),
      inflight_(loop.slots(), shared.inflight), user_rate_(shared.core->options().max_messages_per_user),
      entries_{Entry(*this, proto::kLiMaoIMDialect), Entry(*this, proto::kWuKongIMDialect)},
      handshakes_left_(shared.handshakes_per_iteration) {
    loop_.add_iteration_hook([this] {
        grant_deferred_handshakes();
        if (!pending_cursors_.empty()) submit_cursor_advances();
    });
    loop_.add_timer(shared_.retry_scan_ms, [this] { retransmit_expired(); }, shared_.retry_scan_ms);
}

void Gateway::close(ConnRef conn, GatewayClose reason, Linger linger) {
    io(conn).close(conn, CloseReason(reason), linger);
}

// At the end of each loop iteration, what is left of its budget goes to the
// CONNECTs that waited longest (their input is handed back after this hook,
// in the same iteration); then the budget is renewed for the next one, whose
// new CONNECTs queue behind any still waiting. So one iteration never does
// more than handshakes_per_iteration.
void Gateway::grant_deferred_handshakes() {
    while (handshakes_left_ && !deferred_handshakes_.empty()) {
        const ConnRef conn = deferred_handshakes_.front();
        deferred_handshakes_.pop_front();
        Session* s = session_of(conn);
        if (!s || s->state != SessionState::AwaitConnect) continue;  // closed while it waited
        s->flags = uint8_t((s->flags & ~Session::kHandshakeDeferred) | Session::kHandshakeGranted);
        --handshakes_left_;
        io(conn).resume_input(conn);
    }
    handshakes_left_ = shared_.handshakes_per_iteration;
    if (!deferred_handshakes_.empty()) loop_.run_again_now();
}

Session* Gateway::session_of(ConnRef conn) {
    Session& s = sessions_[conn.slot];
    return s.state != SessionState::Free && s.generation == conn.generation ? &s : nullptr;
}

void Gateway::open(ConnRef conn, net::Transport& transport, const proto::Dialect& dialect) {
    uint8_t index = 0;
    while (index < carrier_count_ &&
           (carriers_[index].transport != &transport || carriers_[index].dialect != &dialect))
        ++index;
    if (index == carrier_count_) {
        if (carrier_count_ == kMaxCarriers) {  // a wiring error, not a client's doing
            transport.close(conn, CloseReason::IoError);
            return;
        }
        carriers_[carrier_count_++] = {&transport, &dialect};
    }
    Session& s = sessions_.activate(conn.slot);
    s.state = SessionState::AwaitConnect;
    s.generation = conn.generation;
    s.carrier = index;
    stats_.pending_handshakes.add();
    io(conn).set_deadline(conn, shared_.auth_timeout_ms);
}

net::DataResult Gateway::on_data(ConnRef conn, std::span<const uint8_t> bytes) {
    Session* s = session_of(conn);
    if (!s) return {bytes.size(), 0};
    size_t offset = 0;
    while (offset < bytes.size()) {
        // Checked per frame: the packets pipelined behind a CONNECT get the
        // full limit once it has logged the client in.
        const uint32_t limit =
            s->state == SessionState::AwaitConnect ? shared_.max_connect_packet : shared_.max_packet;
        proto::SplitResult r = codec(*s).split(bytes.subspan(offset), limit);
        if (r.status == proto::SplitStatus::Incomplete) return {offset, r.needed};
        if (r.status == proto::SplitStatus::Error) {
            decode_failed(conn, r.error);
            return {bytes.size(), 0};
        }
        if (s->state == SessionState::AwaitConnect && r.frame.type() == PacketType::Connect &&
            !(s->flags & Session::kHandshakeGranted)) {
            // Over this iteration's handshake budget, or others wait already:
            // this CONNECT (and whatever the client sent behind it) waits its turn.
            if (handshakes_left_ == 0 || !deferred_handshakes_.empty()) {
                s->flags |= Session::kHandshakeDeferred;
                deferred_handshakes_.push_back(conn);
                stats_.handshakes_deferred.add();
                io(conn).pause_input(conn);
                return {offset, 0};
            }
            --handshakes_left_;
        }
        stats_.packets_in[r.frame.type_nibble()].add();
        stats_.dialect_packets_in[uint8_t(codec(*s).id)].add();
        stats::ConnCounters& cs = io(conn).counters(conn);
        cs.packets_in.store(cs.packets_in.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        if (!handle_frame(conn, *s, r.frame)) return {bytes.size(), 0};
        offset += r.frame.size;
        // At the in-flight SEND cap or over the rate limit: what follows
        // waits in the loop's reassembly buffer until a SENDACK makes room
        // (on_send_result) or the limit's wait is over (resume_rated).
        if (s->flags & Session::kInputPaused) return {offset, 0};
    }
    return {offset, 0};
}

void Gateway::decode_failed(ConnRef conn, proto::DecodeError error) {
    stats_.decode_errors[int(error)].add();
    close(conn, GatewayClose::DecodeError);
}

bool Gateway::handle_frame(ConnRef conn, Session& s, const proto::Frame& frame) {
    const PacketType type = frame.type();
    if (s.state == SessionState::AwaitConnect) {
        if (type != PacketType::Connect) {
            close(conn, GatewayClose::PacketBeforeConnect);
            return false;
        }
        proto::Packet packet;
        if (proto::DecodeError e = codec(s).decode(frame, 0, packet); e != proto::DecodeError::None) {
            decode_failed(conn, e);
            return false;
        }
        return handle_connect(conn, s, std::get<proto::ConnectPacket>(packet));
    }

    // Bodies are decoded even when ignored: an undecodable packet closes.
    proto::Packet packet;
    if (proto::DecodeError e = codec(s).decode(frame, s.version, packet); e != proto::DecodeError::None) {
        decode_failed(conn, e);
        return false;
    }
    // A replaced session is out of the directory: nothing it sends is acted
    // on, its PINGs go unanswered (SERVER.md §3 step 1).
    if (s.state == SessionState::Kicked) return true;

    switch (type) {
    case PacketType::Ping:
        return send_packet(conn, proto::PongPacket{}, s.version);
    case PacketType::Disconnect:
        close(conn, GatewayClose::ClientDisconnect);
        return false;
    case PacketType::Connect:
        close(conn, GatewayClose::ProtocolViolation);
        return false;
    case PacketType::Send:
        return handle_send(conn, s, std::get<proto::SendPacket>(packet));
    case PacketType::Recvack:
        return handle_recvack(conn, s, std::get<proto::RecvackPacket>(packet));
    case PacketType::Sub: {
        // WKProto's live subscription is not served: the client hears so
        // (docs/WKPROTO.md "What this server does").
        const auto& sub = std::get<proto::SubPacket>(packet);
        proto::SubackPacket ack;
        ack.sub_no = sub.sub_no;
        ack.channel_id = sub.channel_id;
        ack.channel_type = sub.channel_type;
        ack.action = sub.action;
        ack.reason_code = uint8_t(proto::ReasonCode::NotSupportHeader);
        return send_packet(conn, ack, s.version);
    }
    case PacketType::Event:
        // As the WuKongIM server, which ends a session on an event it does not handle.
        close(conn, GatewayClose::ProtocolViolation);
        return false;
    default:
        return true;  // server-to-client types a client has no reason to send (Q10)
    }
}

// SERVER.md §5 steps 2-4 on the worker (memory only: the session's key,
// the channel snapshots); steps 5-8 at the committer, whose answer comes
// back as a kSendResult envelope in the order the SENDs were handed over.
bool Gateway::handle_send(ConnRef conn, Session& s, const proto::SendPacket& send) {
    stats_.sends.add();
    im::Core& core = *shared_.core;
    const im::SendJudge& judge = core.send_judge();
    uint32_t receivers = 0;
    const im::SendCheck check = judge.check_send(s.uid_view(), send.channel_type, send.channel_id, receivers);
    // §5 step 0, for every SEND: it is handled; over the server's rate, or
    // its sender's (weighted by receivers), its sender's next packets wait
    // (back-pressure, never a drop).
    const int64_t now_ns = clock::steady_ns();
    const uint32_t server_wait_ms = core.rate_limit().charge(now_ns);
    const uint32_t user_wait_ms = user_rate_.charge(s.uid_view(), im::UserRateLimit::cost(receivers), now_ns);
    if (const uint32_t wait_ms = std::max(server_wait_ms, user_wait_ms); wait_ms && !(s.flags & Session::kRatePaused)) {
        if (!(s.flags & Session::kInputPaused)) io(conn).pause_input(conn);
        s.flags |= Session::kRatePaused;
        (user_wait_ms >= server_wait_ms ? stats_.user_rate_limit_waits : stats_.rate_limit_waits).add();
        loop_.add_timer(wait_ms, [this, conn] { resume_rated(conn); }, 0);
    }
    // A feature of the dialect this server does not serve (WKProto's stream
    // messages) is refused, not delivered as something else.
    if (send.setting & codec(s).refused_send_setting)
        return send_ack(conn, s, send.client_seq, 0, 0, uint8_t(proto::ReasonCode::NotSupportHeader));
    std::string_view payload = send.payload;
    if (codec(s).has_crypto(s.version) && codec(s).payload_encrypted(send.setting)) {
        const proto::crypto::SessionKey key = s.key();
        // Each crypto failure gets a fresh message id, as the original's (PROTOCOL.md §5.4).
        if (!cipher_.verify_send(key, send))
            return send_ack(conn, s, send.client_seq, core.ids().next(), 0, uint8_t(proto::ReasonCode::MsgKeyError));
        plaintext_.clear();
        if (!cipher_.open_payload(key, send.payload, plaintext_))
            return send_ack(conn, s, send.client_seq, core.ids().next(), 0,
                            uint8_t(proto::ReasonCode::PayloadDecodeError));
        payload = plaintext_;
    }
    if (check == im::SendCheck::NotAllowed)
        return send_ack(conn, s, send.client_seq, 0, 0, uint8_t(proto::ReasonCode::NotAllowSend));
    if (check == im::SendCheck::UnknownTemporary)
        return send_ack(conn, s, send.client_seq, 0, 0, uint8_t(proto::ReasonCode::SubscriberNotExist));

    im::MessageView m;
    m.header_flags = uint8_t(send.flags & im::kKeptHeaderFlags);
    m.setting = send.setting;
    m.channel_type = send.channel_type;
    m.timestamp = int32_t(clock::wall_seconds());
    m.client_msg_no = send.client_msg_no;
    m.from_uid = s.uid_view();
    m.channel_id = send.channel_id;
    m.payload = payload;
    m.expire = send.expire;
    m.topic = send.topic;
    im::CommitRequest request;
    request.sender_device = s.device_flag;
    request.client_seq = send.client_seq;
    request.origin = id_of(conn);
    request.route = {&loop_, kSendResult};
    // Behind SENDs still waiting for the datasource on this channel, even
    // when the cache can judge this one: a sender's SENDs stay in order.
    const bool request_resolves = check == im::SendCheck::Resolve ||
                                  (check == im::SendCheck::Allowed && judge.resolving(send.channel_type, send.channel_id));
    request.resolve = request_resolves;
    // The message's one allocation: these bytes are stored, and shared by
    // every delivery envelope.
    request.message = net::Payload::allocate(im::encoded_size(m));
    if (!request.message || (im::encode(m, request.message.writable_bytes()), !core.committer().submit(std::move(request))))
        return send_ack(conn, s, send.client_seq, 0, 0, uint8_t(proto::ReasonCode::Error));
    // Results come back in this order, except those that waited for the
    // datasource (kResolvedResult): they carry no start time.
    if (!request_resolves) send_started_us_.push_back(steady_us());
    stats_.sends_in_flight.add();
    if (++s.sends_in_flight >= shared_.max_sends_in_flight) {
        if (!(s.flags & Session::kInputPaused)) io(conn).pause_input(conn);
        s.flags |= Session::kSendsPaused;
        stats_.send_pauses.add();
    }
    return true;
}

void Gateway::resume_rated(ConnRef conn) {
    Session* s = session_of(conn);
    if (!s || !(s->flags & Session::kRatePaused)) return;  // closed (or its slot reused) meanwhile
    s->flags &= uint8_t(~Session::kRatePaused);
    if (!(s->flags & Session::kInputPaused)) io(conn).resume_input(conn);
}

bool Gateway::send_ack(ConnRef conn, Session& s, uint32_t client_seq, int64_t id, uint32_t seq, uint8_t reason) {
    proto::SendackPacket ack;
    ack.client_seq = client_seq;
    ack.message_id = id;
    ack.message_seq = seq;
    ack.reason_code = reason;
    stats_.sendacks[reason < stats::kReasonCodes ? reason : 0].add();
    return send_packet(conn, ack, s.version);
}

void Gateway::on_send_result(net::Envelope& result) {
    // One result per SEND handed over, in the same order, on this thread.
    const bool resolved = result.flags & im::kResolvedResult;
    LIMAOIM_ASSERT(resolved || !send_started_us_.empty());
    const uint64_t started = resolved ? 0 : send_started_us_.front();
    if (!resolved) send_started_us_.pop_front();
    stats_.sends_in_flight.sub();
    const ConnId id{result.arg};
    const ConnRef conn{id.slot(), id.generation()};
    Session* s = session_of(conn);
    if (!s || s->state == SessionState::AwaitConnect) return;  // closed meanwhile; the message stands
    --s->sends_in_flight;
    const uint8_t reason = uint8_t(result.flags);
    const bool stored = reason == uint8_t(proto::ReasonCode::Success);
    const std::span<const uint8_t> message = result.payload.bytes();
    if (!send_ack(conn, *s, result.arg32, stored ? im::encoded_id(message) : 0, stored ? im::encoded_seq(message) : 0,
                  reason))
        return;
    if (stored && !resolved) stats_.send_latency_us[histogram_bucket(steady_us() - started)].add();
    if ((s->flags & Session::kSendsPaused) && s->sends_in_flight < shared_.max_sends_in_flight) {
        s->flags &= uint8_t(~Session::kSendsPaused);
        if (!(s->flags & Session::kInputPaused)) io(conn).resume_input(conn);
    }
}

// A stored message for one of this worker's sessions (im/fanout.h).
void Gateway::on_deliver(net::Envelope& delivery) {
    const ConnId id{delivery.arg};
    const ConnRef conn{id.slot(), id.generation()};
    Session* s = session_of(conn);
    if (!s || s->state != SessionState::Authenticated) {
        stats_.deliveries_stale.add();
        return;
    }
    const im::MessageView m = im::decode_checked(delivery.payload.bytes());
    if (m.expired(clock::wall_seconds())) {
        stats_.deliveries_expired.add();
        return;
    }
    const uint32_t seq = delivery.arg32 ? delivery.arg32 : m.message_seq;
    if (!write_recv(conn, *s, m, seq, delivery.flags)) return;
    stats_.recvs.add();
    if (!inflight_.add(conn, m.message_id, delivery.payload, seq, delivery.flags, loop_.now_ms()))
        stats_.inflight_evicted.add();
    stats_.inflight.set(inflight_.size());
}

// The RECV of §8 step 3 for this session: its version, its key. Written the
// same way on a retransmission, so the bytes are the same (same key and IV).
bool Gateway::write_recv(ConnRef conn, Session& s, const im::MessageView& message, uint32_t seq, uint16_t flags) {
    const im::MessageView* m = &message;
    proto::RecvPacket recv;
    recv.flags = m->header_flags;
    recv.setting = m->setting & codec(s).recv_setting_mask;
    recv.message_id = m->message_id;
    recv.message_seq = seq;
    recv.client_msg_no = m->client_msg_no;
    recv.timestamp = m->timestamp;
    recv.channel_id = (flags & im::Fanout::kRewriteChannel) ? m->from_uid : m->channel_id;
    recv.channel_type = m->channel_type;
    recv.from_uid = m->from_uid;
    recv.payload = m->payload;
    recv.expire = m->expire;
    recv.topic = m->topic;
    char msg_key[32];
    if (codec(s).has_crypto(s.version)) {
        const proto::crypto::SessionKey key = s.key();
        sealed_.clear();
        cipher_.seal_payload(key, m->payload, sealed_);
        recv.payload = sealed_;
        cipher_.recv_msg_key(key, recv, msg_key);
        recv.msg_key = std::string_view(msg_key, 32);
    }
    return send_packet(conn, recv, s.version);
}

bool Gateway::handle_recvack(ConnRef conn, Session& s, const proto::RecvackPacket& ack) {
    if (inflight_.ack(conn, ack.message_id)) {
        stats_.recvacks.add();
        stats_.inflight.set(inflight_.size());
    } else {
        stats_.recvacks_unknown.add();
    }
    // §9 step 2: the RECVACK's own header says whether it moves the
    // SyncOnce cursor (the committer owns cursors; cursor = max(cursor, v)).
    // Coalesced: the RECVACKs of one loop iteration make one advance per
    // uid (at its end), so a flood of 14-byte packets cannot crowd SENDs out
    // of the committer's queue.
    if ((ack.flags & proto::flag::kSyncOnce) && !(ack.flags & proto::flag::kNoPersist)) {
        if (auto it = pending_cursors_.find(s.uid_view()); it != pending_cursors_.end())
            it->second = std::max(it->second, ack.message_seq);
        else
            pending_cursors_.emplace(std::string(s.uid_view()), ack.message_seq);
    }
    return true;
}

void Gateway::submit_cursor_advances() {
    // One refused (the committer is busy) stays for the next iteration.
    std::erase_if(pending_cursors_, [this](const auto& entry) {
        im::CommitRequest request;
        request.kind = im::CommitRequest::Kind::CursorAdvance;
        request.uid = entry.first;
        request.cursor = entry.second;
        return shared_.core->committer().submit(std::move(request));
    });
}

// Every --retry-scan-ms: RECVs past --msg-timeout go again, to the same
// session, until --max-deliveries; then they are left to sync.
void Gateway::retransmit_expired() {
    const int64_t now_s = clock::wall_seconds();
    const size_t dropped = inflight_.expire(loop_.now_ms(), [this, now_s](const InflightTable::Entry& e) {
        const ConnRef conn{e.slot, e.generation};
        Session* s = session_of(conn);
        if (!s || s->state != SessionState::Authenticated) return true;
        const im::MessageView m = im::decode_checked(e.message.bytes());
        if (m.expired(now_s)) {
            stats_.deliveries_expired.add();
            return false;  // it goes no more: out of the table (and of the session's --max-inflight)
        }
        if (write_recv(conn, *s, m, e.seq, e.flags)) stats_.recv_retransmits.add();
        return true;
    });
    stats_.inflight_expired.add(dropped);
    stats_.inflight.set(inflight_.size());
}

bool Gateway::handle_connect(ConnRef conn, Session& s, const proto::ConnectPacket& connect) {
    const uint64_t started_us = steady_us();
    const proto::Dialect& dialect = codec(s);
    const uint8_t version = dialect.session_version(connect.version);
    const bool with_crypto = dialect.has_crypto(version);
    HandshakeResult result = handshake(connect, with_crypto, shared_.auth, wall_ms());
    if (!result.ok()) {
        stats_.auth_failures.add();
        if (log::enabled(log::Level::Debug))
            log::write(log::Level::Debug, "gateway", "worker %u: CONNECT refused (uid '%.*s', device %u): %s",
                       loop_.index(), int(connect.uid.size()), connect.uid.data(), connect.device_flag,
                       to_string(result.failure));
        if (send_packet(conn, result.connack(with_crypto), version))
            close(conn, GatewayClose::AuthFailed, Linger::Flush);
        return false;
    }
    if (!s.set_uid(connect.uid)) {
        io(conn).close(conn, CloseReason::IoError);  // out of memory for this session
        return false;
    }
    const im::Directory::ReplaceResult entry = shared_.directory.replace(s.uid_view(), connect.device_flag, id_of(conn));
    if (!entry.ok) {
        io(conn).close(conn, CloseReason::IoError);  // out of memory for the directory entry
        return false;
    }
    // user.onlinestatus (§12.2) and the other nodes (which kick their
    // session of the pair); a session replaced by this login has no
    // offline event (§3: the pair stays online).
    const uint64_t login_ms = uint64_t(wall_ms());
    s.set_login_ms(login_ms);
    shared_.core->session_online(s.uid_view(), connect.device_flag, true, login_ms);
    if (entry.replaced) kick(entry.replaced);
    s.version = version;
    s.device_flag = connect.device_flag;
    if (with_crypto) s.set_key(result.key);
    s.state = SessionState::Authenticated;

    io(conn).established(conn);
    stats_.pending_handshakes.sub();
    stats_.authenticated.add();
    stats_.by_device_flag[stats::device_flag_bucket(s.device_flag)].add();
    stats_.by_dialect[uint8_t(dialect.id)].add();
    stats_.auth_ok.add();

    proto::ConnackPacket connack = result.connack(with_crypto);
    dialect.complete_connack(connack, connect.version, version, shared_.node_id);
    if (!send_packet(conn, connack, version)) return false;
    io(conn).set_deadline(conn, shared_.idle_timeout_ms);
    stats_.handshake_latency_us[histogram_bucket(steady_us() - started_us)].add();
    return true;
}

bool Gateway::send_packet(ConnRef conn, const proto::Packet& packet, uint8_t version) {
    // Both taken once: a failed send frees the session.
    net::Transport& transport = io(conn);
    const proto::Dialect& dialect = codec(sessions_[conn.slot]);
    const size_t size = dialect.encoded_size(packet, version);
    if (size <= net::Transport::kMaxReserve) {
        std::span<uint8_t> room = transport.reserve(conn, size);
        if (room.empty()) return false;  // closed as a slow consumer
        transport.commit(conn, dialect.encode(packet, version, room));
    } else {
        scratch_.resize(size);
        dialect.encode(packet, version, scratch_);
        if (!transport.send(conn, scratch_)) return false;
    }
    stats_.packets_out[int(proto::type_of(packet))].add();
    stats_.dialect_packets_out[uint8_t(dialect.id)].add();
    stats::ConnCounters& cs = transport.counters(conn);
    cs.packets_out.store(cs.packets_out.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return true;
}

// The replaced session may live on another worker: only that worker may
// touch it, so the kick travels there as an envelope.
void Gateway::kick(ConnId old) {
    if (old.worker() == loop_.index()) {
        kick_local(ConnRef{old.slot(), old.generation()}, kKickReason);
    } else if (!loop_.send_envelope(old.worker(), net::Envelope{.kind = kKick, .arg = old.value})) {
        // The target's inbox is full: the old session is out of the directory
        // already and cannot be told; it ends at its idle deadline at the latest.
        stats_.kicks_lost.add();
    }
}

void Gateway::on_envelope(net::Envelope& envelope) {
    switch (envelope.kind) {
    case kDeliver:
        on_deliver(envelope);
        break;
    case kSendResult:
        on_send_result(envelope);
        break;
    case kKick: {
        const ConnId id{envelope.arg};
        const ConnRef conn{id.slot(), id.generation()};
        if (envelope.flags & im::kKickByToken) {
            // POST /user/token: the session is still in the directory (no
            // newer login replaced it there): it leaves it now.
            Session* s = session_of(conn);
            if (!s || s->state != SessionState::Authenticated) break;
            if (shared_.directory.remove(s->uid_view(), s->device_flag, id))
                shared_.core->session_online(s->uid_view(), s->device_flag, false, 0);
            kick_local(conn, kTokenKickReason);
        } else if (envelope.flags & im::kKickByOtherNode) {
            // The pair logged in on another node: it is still online (there),
            // so this session leaves the directory without an offline event.
            Session* s = session_of(conn);
            if (!s || s->state != SessionState::Authenticated) break;
            // The other login's event came late, after this newer one: this stays
            // (that node is told of this login and kicks its own). A tie kicks.
            const uint32_t later_by = (s->login_ms24() - envelope.arg32) & 0xffffff;
            if (later_by != 0 && later_by < 0x800000) break;
            shared_.directory.remove(s->uid_view(), s->device_flag, id);
            kick_local(conn, kKickReason);
        } else {
            kick_local(conn, kKickReason);
        }
        break;
    }
    default:
        break;
    }
}

void Gateway::uncount_authenticated(const Session& s) {
    stats_.authenticated.sub();
    stats_.by_device_flag[stats::device_flag_bucket(s.device_flag)].sub();
    stats_.by_dialect[uint8_t(codec(s).id)].sub();
}

void Gateway::kick_local(ConnRef conn, const char* reason) {
    Session* s = session_of(conn);
    if (!s || s->state != SessionState::Authenticated) return;
    s->state = SessionState::Kicked;
    stats_.kicks.add();
    uncount_authenticated(*s);
    inflight_.drop_session(conn);  // it receives nothing more
    stats_.inflight.set(inflight_.size());
    proto::DisconnectPacket bye;
    bye.reason = reason;
    if (!send_packet(conn, bye, s->version)) return;
    io(conn).set_deadline(conn, shared_.kick_delay_ms);
}

void Gateway::on_deadline(ConnRef conn) {
    Session* s = session_of(conn);
    if (!s) return;
    switch (s->state) {
    case SessionState::AwaitConnect:
        // A client whose whole CONNECT came in time and waits for our
        // handshake budget is not timed out for our slowness: its turn comes
        // (the queue is bounded by the listener's pending limit).
        if (s->flags & Session::kHandshakeDeferred) {
            io(conn).set_deadline(conn, shared_.auth_timeout_ms);
        } else {
            close(conn, GatewayClose::AuthTimeout);
        }
        break;
    case SessionState::Authenticated: {
        // The deadline is set once per idle period, not per packet: on expiry
        // look at when the last byte came and wait out the remainder.
        uint32_t idle = io(conn).idle_ms(conn);
        if (idle >= shared_.idle_timeout_ms) {
            close(conn, GatewayClose::IdleTimeout);
        } else {
            io(conn).set_deadline(conn, shared_.idle_timeout_ms - idle);
        }
        break;
    }
    case SessionState::Kicked:
        // Its DISCONNECT went out a kick delay ago: a flushing close costs
        // nothing more and lets a framing layer (WebSocket) say goodbye too.
        close(conn, GatewayClose::Kicked, Linger::Flush);
        break;
    case SessionState::Free:
        break;
    }
}

void Gateway::on_close(ConnRef conn, CloseReason reason) {
    Session* s = session_of(conn);
    if (!s) return;
    switch (s->state) {
    case SessionState::AwaitConnect:
        stats_.pending_handshakes.sub();
        break;
    case SessionState::Authenticated:
        // Offline only when this session still held the pair: one that a
        // newer login replaced (its kick still on the way) says nothing.
        if (shared_.directory.remove(s->uid_view(), s->device_flag, id_of(conn)))
            shared_.core->session_online(s->uid_view(), s->device_flag, false, 0);
        uncount_authenticated(*s);
        break;
    case SessionState::Kicked:
    case SessionState::Free:
        break;
    }
    if (s->uid_len && log::enabled(log::Level::Debug))
        log::write(log::Level::Debug, "gateway", "worker %u: uid '%.*s' closed: %s", loop_.index(), int(s->uid_len),
                   s->uid_view().data(), close_reason_name(reason));
    inflight_.drop_session(conn);  // §9 compatible rule: no retransmission to a closed session
    stats_.inflight.set(inflight_.size());
    s->free_uid();
    s->state = SessionState::Free;
    sessions_.deactivate(conn.slot);
}

void Gateway::on_shutdown() {
    proto::DisconnectPacket bye;
    bye.reason = kShutdownReason;
    for (uint32_t slot = 0; slot < sessions_.size(); ++slot) {
        Session& s = sessions_[slot];
        if (s.state == SessionState::Free) continue;
        const ConnRef conn{slot, s.generation};
        if (s.state == SessionState::AwaitConnect) {
            close(conn, GatewayClose::Shutdown);
            continue;
        }
        // A kicked session has had its DISCONNECT: it only waits to close.
        if (s.state == SessionState::Kicked || send_packet(conn, bye, s.version))
            close(conn, GatewayClose::Shutdown, Linger::Flush);
    }
}

}  // namespace limaoim::gateway
