// RFC 6455 framing (§5), both directions, as pure functions over bytes: no
// sockets, no allocation but the caller's output vector. The WebSocket
// transport (websocket.h) feeds it what the loop received; the fuzz target
// tests/fuzz/fuzz_ws_frame.cpp feeds it anything, cut anywhere.
//
// A client's frames carry the LiMaoIM byte stream in binary data frames; a
// packet may span frames and messages, and a frame may hold several packets,
// so data payloads are not kept as frames: they are unmasked straight into
// one output stream and the frame boundaries forgotten. Only a frame header
// cut by a read, or a control frame (<= 125 bytes of payload) not yet whole,
// is left unconsumed for the caller to hand back with more bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace limaoim::ws {

enum class Opcode : uint8_t { Continuation = 0, Text = 1, Binary = 2, Close = 8, Ping = 9, Pong = 10 };

// Close status codes (RFC 6455 §7.4.1) this server sends.
enum class CloseCode : uint16_t {
    Normal = 1000,
    GoingAway = 1001,        // server shutting down
    ProtocolError = 1002,    // a frame breaks RFC 6455
    UnsupportedData = 1003,  // a text frame: LiMaoIM is binary
    NoStatus = 1005,         // received close frame without a code (never sent on the wire)
    InvalidData = 1007,      // a close frame's reason that is not UTF-8
    TooBig = 1009,           // a frame or a message over the limits
};

// Payload limits, checked on the header, before a byte of the payload is kept.
struct FrameLimits {
    uint32_t max_frame = 1u << 20;    // payload bytes of one frame
    uint32_t max_message = 1u << 20;  // payload bytes of one message (its frames together)
};

// What the reader remembers of a client between two reads: 16 bytes, in the
// transport's per-connection state.
struct ReaderState {
    uint32_t payload_left = 0;   // of the data frame being read
    uint32_t message_bytes = 0;  // of the data message being read, frames before this one included
    uint8_t mask[4] = {};        // the current data frame's masking key
    uint8_t mask_phase = 0;      // index into `mask` of the next payload byte
    bool in_message = false;     // a fragmented data message waits for continuation frames
    uint8_t spare[2] = {};
};
static_assert(sizeof(ReaderState) == 16);

struct ReadResult {
    enum class Stop : uint8_t {
        NeedMore,  // every whole frame was read; `consumed` may stop short at a cut header
        Control,   // a whole control frame: `control` and `control_payload` say which
        Error,     // the stream breaks the protocol: close with `error`
    };
    Stop stop = Stop::NeedMore;
    size_t consumed = 0;   // input bytes used, the control frame included
    uint32_t data_frames = 0;  // data frame headers read (for the stats)
    // With NeedMore and consumed < input: the size of the incomplete header,
    // or of the whole control frame, starting at `consumed` (0 = not known yet).
    uint32_t needed = 0;
    Opcode control = Opcode::Close;
    std::span<const uint8_t> control_payload;  // unmasked, in the caller's `control_buffer`
    CloseCode error = CloseCode::ProtocolError;
};

// Reads client frames from `in`: unmasks data payload bytes onto the end of
// `data` and stops at the end of the input, after a whole control frame, or
// at a violation. Call again with the bytes after `consumed`.
// `control_buffer` must hold 125 bytes.
ReadResult read_client_frames(ReaderState& state, std::span<const uint8_t> in, const FrameLimits& limits,
                              std::vector<uint8_t>& data, std::span<uint8_t, 125> control_buffer);

// A close frame's status code (RFC 6455 §7.4): 1005 for an empty payload,
// 0 for one that is malformed (one byte, or a code no endpoint may send).
uint16_t close_code_of(std::span<const uint8_t> payload);
// True when `text` is well-formed UTF-8 (RFC 3629: no overlongs, no
// surrogates, nothing past U+10FFFF), as a close frame's reason must be.
bool valid_utf8(std::span<const uint8_t> text);

// Server frames: unmasked, FIN set. The header of a frame with `payload`
// bytes is 2, 4 or 10 bytes (the shortest form, as §5.2 requires).
inline constexpr size_t kMaxServerHeader = 10;
size_t server_header_size(uint64_t payload);
// Writes the header into `out` (room for server_header_size(payload)); returns its size.
size_t write_server_header(Opcode opcode, uint64_t payload, uint8_t* out);

}  // namespace limaoim::ws
