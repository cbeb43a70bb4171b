// OpenSSL's EVP_EncodeBlock and EVP_DecodeBlock convert, but neither fits as
// it is. The encoder writes a NUL after its output, and callers size their
// buffers exactly; the decoder skips leading whitespace and trailing
// characters outside the alphabet, reads '=' as a zero digit anywhere, and
// writes (and counts) the padding as zero bytes. So a text is checked
// strictly before it is converted, and the last group goes through a small
// local buffer both ways: nothing is written past the caller's bytes.
#include "limaoim/base64/base64.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace limaoim::base64 {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<bool, 256> make_alphabet_table() {
    std::array<bool, 256> table{};
    for (size_t i = 0; i < 64; ++i) table[uint8_t(kAlphabet[i])] = true;
    return table;
}
constexpr std::array<bool, 256> kInAlphabet = make_alphabet_table();

// OpenSSL takes and returns lengths as int: at most this many groups (3
// bytes, 4 characters) per call, 1 GiB of text.
constexpr size_t kGroupsPerCall = size_t(1) << 28;

// Decodes whole groups of checked text, none of them padded, to 3 bytes each.
void decode_groups(const char* text, size_t groups, uint8_t* out) {
    for (size_t done = 0; done < groups;) {
        const size_t count = std::min(groups - done, kGroupsPerCall);
        if (EVP_DecodeBlock(out + done * 3, reinterpret_cast<const unsigned char*>(text + done * 4), int(count * 4)) !=
            int(count * 3)) {
            // The text was checked: OpenSSL refusing it is a bug, not input.
            std::fputs("base64: EVP_DecodeBlock refused checked text\n", stderr);
            std::abort();
        }
        done += count;
    }
}

// `text` is strict base64 of `size` bytes; `out` holds `size` bytes.
void decode_checked(std::string_view text, size_t size, uint8_t* out) {
    if (text.empty()) return;
    const size_t head_groups = text.size() / 4 - 1;
    decode_groups(text.data(), head_groups, out);
    // The last group may be padded: OpenSSL writes its 3 bytes here.
    uint8_t last[3];
    decode_groups(text.data() + head_groups * 4, 1, last);
    std::memcpy(out + head_groups * 3, last, size - head_groups * 3);
}

}  // namespace

size_t encode(std::span<const uint8_t> in, char* out) {
    if (in.empty()) return 0;
    // Every group but the last (1 to 3 bytes) straight into `out`: each call's
    // NUL lands on the first character of a group written after it.
    const size_t head_groups = (in.size() - 1) / 3;
    auto* text = reinterpret_cast<unsigned char*>(out);
    for (size_t done = 0; done < head_groups;) {
        const size_t count = std::min(head_groups - done, kGroupsPerCall);
        EVP_EncodeBlock(text + done * 4, in.data() + done * 3, int(count * 3));
        done += count;
    }
    unsigned char last[5];  // 4 characters and OpenSSL's NUL
    EVP_EncodeBlock(last, in.data() + head_groups * 3, int(in.size() - head_groups * 3));
    std::memcpy(text + head_groups * 4, last, 4);
    return encoded_size(in.size());
}

std::string encode(std::span<const uint8_t> in) {
    std::string out(encoded_size(in.size()), '\0');
    encode(in, out.data());
    return out;
}

std::string encode(std::string_view bytes) {
    return encode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

std::optional<size_t> decoded_size(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    size_t padding = 0;
    if (!text.empty() && text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
    const bool all_in_alphabet = std::all_of(text.begin(), text.end() - std::ptrdiff_t(padding),
                                             [](char c) { return kInAlphabet[uint8_t(c)]; });
    if (!all_in_alphabet) return std::nullopt;
    return text.size() / 4 * 3 - padding;
}

std::optional<size_t> decode(std::string_view text, uint8_t* out, size_t out_capacity) {
    const std::optional<size_t> size = decoded_size(text);
    if (!size || *size > out_capacity) return std::nullopt;
    decode_checked(text, *size, out);
    return size;
}

std::optional<std::string> decode(std::string_view text) {
    const std::optional<size_t> size = decoded_size(text);
    if (!size) return std::nullopt;
    std::string out(*size, '\0');
    decode_checked(text, *size, reinterpret_cast<uint8_t*>(out.data()));
    return out;
}

}  // namespace limaoim::base64
