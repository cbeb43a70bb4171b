// Base64, the standard alphabet with '=' padding (RFC 4648 §4): the client
// keys and encrypted payloads of the binary protocol (PROTOCOL.md §5) and the
// byte fields of the business server's JSON (SERVER.md §16.0). OpenSSL
// converts; this module adds exactly-sized buffers and strict decoding. It is
// the bottom of the layer stack: it includes nothing of limaoim, and every
// layer may include it (tests/layering.sh).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace limaoim::base64 {

inline constexpr size_t encoded_size(size_t bytes) { return (bytes + 2) / 3 * 4; }

// Writes exactly encoded_size(in.size()) characters to `out` (no NUL after
// them) and returns that count. Allocates nothing: the per-packet path.
size_t encode(std::span<const uint8_t> in, char* out);
std::string encode(std::span<const uint8_t> in);
std::string encode(std::string_view bytes);

// The decoded size of `text` when it is strict base64, else nullopt. Strict:
// a length that is a multiple of 4, padding only at the end, the standard
// alphabet only (no whitespace, no line breaks). Like Go's StdEncoding, which
// the original server decodes with, non-zero bits after the last byte are
// accepted; unlike it, line breaks are refused too.
std::optional<size_t> decoded_size(std::string_view text);

// Strict decoding into `out`: the decoded length, or nullopt when `text` is
// not strict base64 or more than `out_capacity` bytes would be written. Writes
// the decoded bytes only. Allocates nothing: the per-packet path.
std::optional<size_t> decode(std::string_view text, uint8_t* out, size_t out_capacity);
std::optional<std::string> decode(std::string_view text);

}  // namespace limaoim::base64
