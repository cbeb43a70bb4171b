// Drives ws::read_client_frames over a stream cut into reads, as the
// WebSocket transport and the loop do together: the unconsumed tail (a cut
// header, a control frame not yet whole) is kept and read again with the
// next chunk. Used by tests/unit/test_ws.cpp and the fuzz target
// tests/fuzz/fuzz_ws_frame.cpp, which both compare cuts against one read.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "limaoim/ws/frame.h"

namespace limaoim::testing {

struct ReaderOutcome {
    std::vector<uint8_t> data;  // the unmasked data payloads, in order
    std::vector<std::pair<ws::Opcode, std::vector<uint8_t>>> controls;
    uint16_t error = 0;         // the close code the reader stopped with, 0 if none
    uint64_t data_frames = 0;
    bool operator==(const ReaderOutcome&) const = default;
};

// `chunks` repeats until the stream is used up; empty = one read. A close
// frame ends the reading, as the transport closes the connection there.
inline ReaderOutcome read_chunked(std::span<const uint8_t> stream, std::vector<size_t> chunks,
                                  const ws::FrameLimits& limits) {
    ReaderOutcome out;
    ws::ReaderState state;
    std::vector<uint8_t> pending;  // what the loop would keep
    std::array<uint8_t, 125> control{};
    size_t offset = 0;
    size_t next_chunk = 0;
    while (offset < stream.size()) {
        size_t n = chunks.empty() ? stream.size() : chunks[next_chunk++ % chunks.size()];
        n = std::min(std::max<size_t>(n, 1), stream.size() - offset);
        pending.insert(pending.end(), stream.begin() + long(offset), stream.begin() + long(offset + n));
        offset += n;
        size_t used = 0;
        for (;;) {
            const ws::ReadResult r =
                ws::read_client_frames(state, std::span<const uint8_t>(pending).subspan(used), limits, out.data, control);
            used += r.consumed;
            out.data_frames += r.data_frames;
            if (r.stop == ws::ReadResult::Stop::Error) {
                out.error = uint16_t(r.error);
                return out;
            }
            if (r.stop == ws::ReadResult::Stop::NeedMore) break;
            out.controls.emplace_back(r.control,
                                      std::vector<uint8_t>(r.control_payload.begin(), r.control_payload.end()));
            if (r.control == ws::Opcode::Close) return out;
        }
        pending.erase(pending.begin(), pending.begin() + long(used));
    }
    return out;
}

}  // namespace limaoim::testing
