#include "limaoim/ws/frame.h"

#include <algorithm>

namespace limaoim::ws {

namespace {

bool is_control(uint8_t opcode) { return opcode & 0x8; }

ReadResult error(size_t consumed, CloseCode code, uint32_t data_frames) {
    ReadResult r;
    r.data_frames = data_frames;
    r.stop = ReadResult::Stop::Error;
    r.consumed = consumed;
    r.error = code;
    return r;
}

ReadResult need_more(size_t consumed, uint32_t needed, uint32_t data_frames) {
    ReadResult r;
    r.data_frames = data_frames;
    r.consumed = consumed;
    r.needed = needed;
    return r;
}

// XORs `n` bytes with the masking key from `phase` on (RFC 6455 §5.3).
void unmask(const uint8_t* in, uint8_t* out, size_t n, const uint8_t mask[4], uint8_t phase) {
    for (size_t i = 0; i < n; ++i) out[i] = in[i] ^ mask[(phase + i) & 3];
}

}  // namespace

ReadResult read_client_frames(ReaderState& state, std::span<const uint8_t> in, const FrameLimits& limits,
                              std::vector<uint8_t>& data, std::span<uint8_t, 125> control_buffer) {
    size_t pos = 0;
    uint32_t frames = 0;
    for (;;) {
        if (state.payload_left > 0) {  // the rest of a data frame, as far as it came
            const size_t n = std::min<size_t>(state.payload_left, in.size() - pos);
            const size_t old = data.size();
            data.resize(old + n);
            unmask(in.data() + pos, data.data() + old, n, state.mask, state.mask_phase);
            state.mask_phase = uint8_t((state.mask_phase + n) & 3);
            state.payload_left -= uint32_t(n);
            pos += n;
            if (state.payload_left > 0) return need_more(pos, 0, frames);
        }
        const size_t avail = in.size() - pos;
        if (avail == 0) return need_more(pos, 0, frames);
        if (avail < 2) return need_more(pos, 2, frames);
        const uint8_t b0 = in[pos];
        const uint8_t b1 = in[pos + 1];
        const bool fin = b0 & 0x80;
        const uint8_t opcode = b0 & 0x0f;
        const uint8_t len7 = b1 & 0x7f;
        // No extension was negotiated, so the reserved bits must be 0 (§5.2);
        // a client must mask every frame (§5.1).
        if (b0 & 0x70) return error(pos, CloseCode::ProtocolError, frames);
        if (!(b1 & 0x80)) return error(pos, CloseCode::ProtocolError, frames);
        const size_t length_bytes = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        const size_t header = 2 + length_bytes + 4;
        if (avail < header) return need_more(pos, uint32_t(header), frames);
        uint64_t length = len7;
        if (length_bytes) {
            length = 0;
            for (size_t i = 0; i < length_bytes; ++i) length = (length << 8) | in[pos + 2 + i];
            if (length >> 63) return error(pos, CloseCode::ProtocolError, frames);  // §5.2: the top bit must be 0
        }
        const uint8_t* mask = &in[pos + 2 + length_bytes];

        if (is_control(opcode)) {
            // §5.5: control frames are never fragmented and carry <= 125 bytes.
            if (opcode != uint8_t(Opcode::Close) && opcode != uint8_t(Opcode::Ping) &&
                opcode != uint8_t(Opcode::Pong))
                return error(pos, CloseCode::ProtocolError, frames);
            if (!fin || length > 125) return error(pos, CloseCode::ProtocolError, frames);
            if (avail < header + length) return need_more(pos, uint32_t(header + length), frames);
            unmask(&in[pos + header], control_buffer.data(), size_t(length), mask, 0);
            ReadResult r;
            r.stop = ReadResult::Stop::Control;
            r.data_frames = frames;
            r.consumed = pos + header + size_t(length);
            r.control = Opcode(opcode);
            r.control_payload = control_buffer.first(size_t(length));
            return r;
        }
        if (opcode == uint8_t(Opcode::Text)) return error(pos, CloseCode::UnsupportedData, frames);
        if (opcode == uint8_t(Opcode::Binary)) {
            if (state.in_message) return error(pos, CloseCode::ProtocolError, frames);  // §5.4: interleaved messages
            state.message_bytes = 0;
        } else if (opcode == uint8_t(Opcode::Continuation)) {
            if (!state.in_message) return error(pos, CloseCode::ProtocolError, frames);  // nothing to continue
        } else {
            return error(pos, CloseCode::ProtocolError, frames);  // reserved data opcodes 3-7
        }
        if (length > limits.max_frame || state.message_bytes + length > limits.max_message)
            return error(pos, CloseCode::TooBig, frames);
        state.message_bytes += uint32_t(length);
        state.in_message = !fin;
        std::copy(mask, mask + 4, state.mask);
        state.mask_phase = 0;
        state.payload_left = uint32_t(length);
        pos += header;
        ++frames;
    }
}

uint16_t close_code_of(std::span<const uint8_t> payload) {
    if (payload.empty()) return uint16_t(CloseCode::NoStatus);
    if (payload.size() < 2) return 0;
    const uint16_t code = uint16_t(payload[0] << 8 | payload[1]);
    // §7.4: 1000-1003 and 1007-1014 are defined for endpoints to send,
    // 3000-4999 belong to libraries and applications; 1004-1006 and 1015
    // must never appear on the wire.
    if ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
        return code;
    return 0;
}

bool valid_utf8(std::span<const uint8_t> text) {
    size_t i = 0;
    while (i < text.size()) {
        const uint8_t b = text[i];
        size_t extra;
        uint32_t min, code;
        if (b < 0x80) {
            ++i;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            extra = 1, min = 0x80, code = b & 0x1f;
        } else if ((b & 0xf0) == 0xe0) {
            extra = 2, min = 0x800, code = b & 0x0f;
        } else if ((b & 0xf8) == 0xf0) {
            extra = 3, min = 0x10000, code = b & 0x07;
        } else {
            return false;  // a continuation byte first, or 0xf8..0xff
        }
        if (i + extra >= text.size()) return false;  // cut short
        for (size_t k = 1; k <= extra; ++k) {
            if ((text[i + k] & 0xc0) != 0x80) return false;
            code = (code << 6) | (text[i + k] & 0x3f);
        }
        if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
        i += extra + 1;
    }
    return true;
}

size_t server_header_size(uint64_t payload) { return payload <= 125 ? 2 : payload <= 0xffff ? 4 : 10; }

size_t write_server_header(Opcode opcode, uint64_t payload, uint8_t* out) {
    out[0] = uint8_t(0x80 | uint8_t(opcode));
    if (payload <= 125) {
        out[1] = uint8_t(payload);
        return 2;
    }
    if (payload <= 0xffff) {
        out[1] = 126;
        out[2] = uint8_t(payload >> 8);
        out[3] = uint8_t(payload);
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; ++i) out[2 + i] = uint8_t(payload >> (56 - 8 * i));
    return 10;
}

}  // namespace limaoim::ws
