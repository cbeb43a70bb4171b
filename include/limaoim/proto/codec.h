// Framing, decoding and encoding of LiMaoIM packets (PROTOCOL.md §3-§4).
//
// split_frame() finds packet boundaries in a byte stream and refuses an
// oversize remaining length as soon as the length field is complete, before a
// single body byte is buffered. decode() turns one frame into a Packet whose
// fields are views into the frame's bytes. encode() writes into a caller-owned
// buffer. None of the three allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "limaoim/proto/packet.h"

namespace limaoim::proto {

inline constexpr uint32_t kDefaultMaxRemainingLength = 1u << 20;  // 1 MiB, inclusive
// Before a client has logged in only its CONNECT is expected, and a real one
// is well under 1 KiB: a smaller limit bounds what an unauthenticated
// connection can make the server buffer.
inline constexpr uint32_t kDefaultMaxConnectLength = 4096;
inline constexpr size_t kMaxVarintBytes = 4;
inline constexpr size_t kMaxStringLength = 65535;

enum class DecodeError : uint8_t {
    None = 0,
    ReservedType,     // type nibble 0
    UnknownType,      // type nibble 10..15
    MalformedLength,  // continuation bit set on the 4th remaining-length byte
    TooLarge,         // remaining length above the configured maximum
    Truncated,        // a field or string runs past the end of the body
};
inline constexpr int kDecodeErrorCount = 6;

const char* to_string(DecodeError error);

// One packet's bytes at the front of a stream.
struct Frame {
    uint8_t header = 0;        // byte 0: type << 4 | flags
    uint32_t size = 0;         // header + length field + body
    std::string_view body;     // remaining-length bytes; empty for PING/PONG

    uint8_t type_nibble() const { return header >> 4; }
    PacketType type() const { return static_cast<PacketType>(header >> 4); }
    uint8_t flags() const { return header & 0x0f; }
};

enum class SplitStatus : uint8_t { Complete, Incomplete, Error };

struct SplitResult {
    SplitStatus status = SplitStatus::Incomplete;
    DecodeError error = DecodeError::None;  // set when status == Error
    Frame frame;                            // set when status == Complete
    // When Incomplete: the packet's full size once the length field is
    // complete (so a reassembly buffer can be sized exactly), else 0.
    uint32_t needed = 0;
};

// Looks at the front of `stream`. Complete: `frame.size` bytes form one packet
// (PING/PONG are exactly one byte). Incomplete: wait for more bytes.
// Error: the stream is corrupt; a server closes the connection.
SplitResult split_frame(std::span<const uint8_t> stream,
                        uint32_t max_remaining_length = kDefaultMaxRemainingLength);

// Decodes one frame for a connection speaking `version` (CONNECT ignores it:
// its own version byte decides whether client_key is present). Errors are
// Truncated, ReservedType or UnknownType; trailing bytes after the last field
// of a fixed-layout packet are ignored (Q8). On error `out` is unspecified.
DecodeError decode(const Frame& frame, uint8_t version, Packet& out);

// Exact number of bytes encode() writes for `packet` at `version`, or 0 when
// it cannot be encoded (a string over 65535 bytes, a body over 268435455).
size_t encoded_size(const Packet& packet, uint8_t version);

// Writes `packet` at `version` into `out`; returns the bytes written, or 0 when
// encoded_size() is 0 or `out` is too small. PING is written 0x70, PONG 0x80,
// the remaining length in its shortest form (0 as a single 00 byte, Q2).
size_t encode(const Packet& packet, uint8_t version, std::span<uint8_t> out);

// Remaining-length varint helpers, exposed for tests and fuzzers. Both return
// 0 for a value over 268435455 (it does not fit in 4 bytes); write_varint then
// writes nothing.
size_t varint_size(uint32_t value);
size_t write_varint(uint32_t value, uint8_t* out);

}  // namespace limaoim::proto
