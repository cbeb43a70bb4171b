// fuzz_decode: in either dialect (proto/dialect.h), every packet the splitter finds is decoded; whatever decodes is
// re-encoded and decoded again, and the two decoded packets must be equal. The
// re-encoded bytes may differ from the input (non-minimal varints and trailing
// bytes after fixed-layout fields are accepted on input, never written), but
// encoding is canonical: the second packet re-encodes to the same bytes.
//
// Input: [selector][stream...]. Selector bit 7 picks the dialect (clear:
// LiMaoIM, set: WuKongIM's WKProto); version = 1 + (selector & 0x7f) % that
// dialect's latest version, so a LiMaoIM seed's byte is version - 1 as before.
#include <cstring>
#include <memory>

#include "fuzz_support.h"
#include "limaoim/proto/dialect.h"

namespace {

using namespace limaoim::proto;

// Exactly `size` bytes on the heap, so that AddressSanitizer sees any write past them.
std::unique_ptr<uint8_t[]> exact_buffer(size_t size) { return std::make_unique<uint8_t[]>(size); }

void check_round_trip(const Dialect& dialect, const Frame& frame, uint8_t version) {
    Packet first;
    DecodeError error = dialect.decode(frame, version, first);
    if (error != DecodeError::None) {
        FUZZ_CHECK(error == DecodeError::Truncated || error == DecodeError::ReservedType ||
                   error == DecodeError::UnknownType);
        return;
    }
    FUZZ_CHECK(type_of(first) == frame.type());

    size_t size = dialect.encoded_size(first, version);
    FUZZ_CHECK(size > 0);
    FUZZ_CHECK(size <= frame.size);

    std::unique_ptr<uint8_t[]> too_small = exact_buffer(size - 1);
    FUZZ_CHECK(dialect.encode(first, version, {too_small.get(), size - 1}) == 0);

    std::unique_ptr<uint8_t[]> encoded = exact_buffer(size);
    FUZZ_CHECK(dialect.encode(first, version, {encoded.get(), size}) == size);
    bool bare_byte = frame.type() == PacketType::Ping || frame.type() == PacketType::Pong;
    FUZZ_CHECK(encoded[0] == (bare_byte ? uint8_t(frame.header & 0xf0) : frame.header));

    SplitResult again = dialect.split({encoded.get(), size}, kDefaultMaxRemainingLength);
    FUZZ_CHECK(again.status == SplitStatus::Complete);
    FUZZ_CHECK(again.frame.size == size);

    Packet second;
    FUZZ_CHECK(dialect.decode(again.frame, version, second) == DecodeError::None);
    FUZZ_CHECK(second == first);

    std::unique_ptr<uint8_t[]> encoded_again = exact_buffer(size);
    FUZZ_CHECK(dialect.encoded_size(second, version) == size);
    FUZZ_CHECK(dialect.encode(second, version, {encoded_again.get(), size}) == size);
    FUZZ_CHECK(std::memcmp(encoded.get(), encoded_again.get(), size) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    limaoim::fuzz::InputReader input(data, size);
    const uint8_t selector = input.u8();
    const Dialect& dialect = selector & 0x80 ? kWuKongIMDialect : kLiMaoIMDialect;
    const uint8_t version = uint8_t(1 + (selector & 0x7f) % dialect.latest_version);
    std::span<const uint8_t> stream = input.rest();

    size_t offset = 0;
    for (;;) {
        SplitResult result = dialect.split(stream.subspan(offset), kDefaultMaxRemainingLength);
        if (result.status != SplitStatus::Complete) break;
        check_round_trip(dialect, result.frame, version);
        offset += result.frame.size;
    }
    return 0;
}
