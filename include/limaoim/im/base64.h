// Base64, standard alphabet with '=' padding: the JSON encoding of byte
// fields (SERVER.md §16.0), for the HTTP API and the webhooks alike.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace limaoim::im {

std::string base64_encode(std::string_view bytes);
// Strict: length a multiple of 4, padding only at the end, standard alphabet
// only (no whitespace). Nullopt otherwise. Like Go's StdEncoding, which the
// original decodes with, non-zero bits after the last byte are accepted.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace limaoim::im
