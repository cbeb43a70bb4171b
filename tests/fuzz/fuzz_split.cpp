// fuzz_split: proto::split_frame must find the same packets in a byte stream,
// and fail with the same error at the same byte, however the stream is cut into
// reads. The chunked side reassembles as a server does: after each read it keeps
// only the unconsumed tail and splits again from its start.
//
// Input: [limit selector][n][n chunk sizes, each byte + 1][stream...]
// The chunk sizes repeat until the stream is used up; n == 0 means one read.
#include <algorithm>
#include <cstring>
#include <vector>

#include "fuzz_support.h"
#include "limaoim/proto/codec.h"

namespace {

using namespace limaoim::proto;

struct FrameSeen {
    size_t offset = 0;  // in the whole stream
    uint32_t size = 0;
    uint8_t header = 0;
    bool operator==(const FrameSeen&) const = default;
};

struct SplitOutcome {
    std::vector<FrameSeen> frames;
    SplitStatus end = SplitStatus::Incomplete;  // Incomplete (stream used up) or Error
    DecodeError error = DecodeError::None;
    size_t end_offset = 0;  // where the incomplete tail or the corrupt packet starts
    bool operator==(const SplitOutcome&) const = default;
};

// Byte 0 of the input: half the inputs use the server's default, the others a
// small limit so that TooLarge is reachable with short inputs.
uint32_t pick_limit(uint8_t selector) {
    return selector & 0x80 ? kDefaultMaxRemainingLength : uint32_t(selector) * 3;
}

// True while `available` cannot yet hold a complete remaining-length field.
bool length_field_incomplete(std::span<const uint8_t> available) {
    if (available.size() < 2) return true;
    std::span<const uint8_t> length = available.subspan(1);
    if (length.size() >= kMaxVarintBytes) return false;
    return std::all_of(length.begin(), length.end(), [](uint8_t b) { return (b & 0x80) != 0; });
}

// What split_frame promises about any single result, whatever came before.
void check_result(const SplitResult& result, std::span<const uint8_t> available, uint32_t limit) {
    switch (result.status) {
    case SplitStatus::Complete: {
        const Frame& frame = result.frame;
        FUZZ_CHECK(result.error == DecodeError::None);
        FUZZ_CHECK(frame.size >= 1 && frame.size <= available.size());
        FUZZ_CHECK(frame.header == available[0]);
        FUZZ_CHECK(frame.type_nibble() >= 1 && frame.type_nibble() <= 9);
        if (frame.type() == PacketType::Ping || frame.type() == PacketType::Pong) {
            FUZZ_CHECK(frame.size == 1 && frame.body.empty());
            break;
        }
        size_t length_bytes = frame.size - 1 - frame.body.size();
        FUZZ_CHECK(length_bytes >= 1 && length_bytes <= kMaxVarintBytes);
        FUZZ_CHECK(frame.body.size() <= limit);
        FUZZ_CHECK(frame.body.size() == 0 ||
                   reinterpret_cast<const uint8_t*>(frame.body.data()) == available.data() + 1 + length_bytes);
        break;
    }
    case SplitStatus::Incomplete:
        FUZZ_CHECK(result.error == DecodeError::None);
        if (result.needed == 0) {
            FUZZ_CHECK(length_field_incomplete(available));
        } else {
            FUZZ_CHECK(result.needed > available.size());
            FUZZ_CHECK(result.needed <= 1 + kMaxVarintBytes + uint64_t(limit));
        }
        break;
    case SplitStatus::Error:
        FUZZ_CHECK(result.error != DecodeError::None);
        FUZZ_CHECK(!available.empty());
        break;
    }
}

SplitOutcome split_in_one_read(std::span<const uint8_t> stream, uint32_t limit) {
    SplitOutcome outcome;
    size_t offset = 0;
    for (;;) {
        std::span<const uint8_t> available = stream.subspan(offset);
        SplitResult result = split_frame(available, limit);
        check_result(result, available, limit);
        if (result.status != SplitStatus::Complete) {
            outcome.end = result.status;
            outcome.error = result.error;
            outcome.end_offset = offset;
            return outcome;
        }
        outcome.frames.push_back({offset, result.frame.size, result.frame.header});
        offset += result.frame.size;
    }
}

// The reassembly buffer of one connection.
class Reassembly {
public:
    Reassembly(std::span<const uint8_t> whole_stream, uint32_t limit) : stream_(whole_stream), limit_(limit) {}

    // Appends one read and splits what it can; false once the stream is corrupt.
    bool receive(std::span<const uint8_t> read, SplitOutcome& outcome) {
        tail_.insert(tail_.end(), read.begin(), read.end());
        size_t consumed = 0;
        for (;;) {
            std::span<const uint8_t> available(tail_.data() + consumed, tail_.size() - consumed);
            SplitResult result = split_frame(available, limit_);
            check_result(result, available, limit_);
            size_t offset = tail_offset_ + consumed;
            if (result.status == SplitStatus::Error) {
                outcome.end = SplitStatus::Error;
                outcome.error = result.error;
                outcome.end_offset = offset;
                return false;
            }
            if (result.status == SplitStatus::Incomplete) {
                check_announced_size(offset, result.needed);
                break;
            }
            check_frame(offset, result.frame);
            outcome.frames.push_back({offset, result.frame.size, result.frame.header});
            consumed += result.frame.size;
        }
        tail_.erase(tail_.begin(), tail_.begin() + ptrdiff_t(consumed));
        tail_offset_ += consumed;
        outcome.end_offset = tail_offset_;
        return true;
    }

private:
    // The bytes handed out are the stream's, and a size announced while the
    // packet was incomplete is the size it has once complete.
    void check_frame(size_t offset, const Frame& frame) {
        FUZZ_CHECK(offset + frame.size <= stream_.size());
        const uint8_t* body_in_stream = stream_.data() + offset + (frame.size - frame.body.size());
        FUZZ_CHECK(frame.body.empty() || std::memcmp(frame.body.data(), body_in_stream, frame.body.size()) == 0);
        if (announced_offset_ == offset && announced_size_ != 0) FUZZ_CHECK(frame.size == announced_size_);
    }

    void check_announced_size(size_t offset, uint32_t needed) {
        if (announced_offset_ == offset && announced_size_ != 0 && needed != 0) FUZZ_CHECK(needed == announced_size_);
        if (needed != 0) {
            announced_offset_ = offset;
            announced_size_ = needed;
        }
    }

    std::span<const uint8_t> stream_;
    uint32_t limit_;
    std::vector<uint8_t> tail_;
    size_t tail_offset_ = 0;  // stream offset of tail_[0]
    size_t announced_offset_ = 0;
    uint32_t announced_size_ = 0;
};

SplitOutcome split_in_chunks(std::span<const uint8_t> stream, uint32_t limit, std::span<const uint8_t> chunk_sizes) {
    SplitOutcome outcome;
    Reassembly connection(stream, limit);
    size_t fed = 0;
    for (size_t read_index = 0; fed < stream.size(); ++read_index) {
        size_t wanted = chunk_sizes.empty() ? stream.size() : size_t(chunk_sizes[read_index % chunk_sizes.size()]) + 1;
        size_t n = std::min(wanted, stream.size() - fed);
        if (!connection.receive(stream.subspan(fed, n), outcome)) return outcome;
        fed += n;
    }
    return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    limaoim::fuzz::InputReader input(data, size);
    uint32_t limit = pick_limit(input.u8());
    std::span<const uint8_t> chunk_sizes = input.bytes(input.u8() % 16);
    std::span<const uint8_t> stream = input.rest();

    SplitOutcome whole = split_in_one_read(stream, limit);
    SplitOutcome chunked = split_in_chunks(stream, limit, chunk_sizes);
    FUZZ_CHECK(chunked == whole);
    return 0;
}
