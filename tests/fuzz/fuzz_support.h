// Shared by the libFuzzer targets: a front-to-back reader of the fuzz input, so
// that make_corpus.py can lay out seeds field by field, and a check that aborts
// even in builds with NDEBUG (libFuzzer records an abort as a crash).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

#define FUZZ_CHECK(condition)                                                               \
    do {                                                                                    \
        if (!(condition)) {                                                                 \
            std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
            std::abort();                                                                   \
        }                                                                                   \
    } while (0)

namespace limaoim::fuzz {

// Reads fields in order; past the end every read yields zeros or an empty view,
// so any input, however short, is a valid sequence of fields.
class InputReader {
public:
    InputReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

    uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }

    // Big-endian, as on the wire.
    template <typename Unsigned>
    Unsigned uint() {
        Unsigned value = 0;
        for (size_t i = 0; i < sizeof(Unsigned); ++i) value = Unsigned(value << 8) | u8();
        return value;
    }

    std::span<const uint8_t> bytes(size_t count) {
        size_t n = count < remaining() ? count : remaining();
        std::span<const uint8_t> out(data_ + pos_, n);
        pos_ += n;
        return out;
    }

    std::string_view text(size_t count) {
        std::span<const uint8_t> b = bytes(count);
        return {reinterpret_cast<const char*>(b.data()), b.size()};
    }

    // One length byte, then that many bytes.
    std::string_view short_text() { return text(u8()); }

    std::span<const uint8_t> rest() { return bytes(remaining()); }
    std::string_view rest_text() { return text(remaining()); }

    size_t remaining() const { return size_ - pos_; }

private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

}  // namespace limaoim::fuzz
