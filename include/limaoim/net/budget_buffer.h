// Bytes a connection holds while it waits for more (a split packet, input
// held back while paused), in a buffer that grows as they arrive and is
// charged to its worker's reassembly budget. Every layer that holds a
// connection's bytes uses this one type, so one budget bounds them all: the
// loop's reassembly buffers (net::Worker) and what the WebSocket layer holds
// for its handler (ws::WebSocketTransport) cannot each take a budget's worth.
//
// The budget keeps the accounts (bytes in use, who holds them); the worker
// that owns it decides who pays when it is full (Worker::hold: the largest
// holder's connection is closed), as only it can close connections.
//
// Every call is made on the worker's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "limaoim/stats/layout.h"

namespace limaoim::net {

class ReassemblyBudget;

// One holder's bytes: a pointer, null while it holds nothing (an idle
// connection pays 8 bytes and no allocation). The bytes live in a malloc'd
// block with its bookkeeping in front, so only holders pay for that.
// Trivially destructible (it lives in SlotArrays): ReassemblyBudget::release
// frees it.
class BudgetBuffer {
public:
    explicit operator bool() const { return block_ != nullptr; }
    uint8_t* data() const { return reinterpret_cast<uint8_t*>(block_ + 1); }
    uint32_t size() const { return block_ ? block_->len : 0; }
    uint32_t capacity() const { return block_ ? block_->cap : 0; }
    std::span<const uint8_t> bytes() const { return {data(), size()}; }
    // The size of the packet at the front once its header said so, else 0.
    uint32_t needed() const { return block_ ? block_->needed : 0; }
    // When the packet at the front began to wait.
    uint64_t started_ms() const { return block_ ? block_->started_ms : 0; }
    uint32_t owner() const { return block_->owner; }

    // The packet at the front is `packet` bytes long (0: not known yet).
    void expect(uint32_t packet) {
        if (packet) block_->needed = packet;
    }
    // Restarts the clock of the packet at the front (input was held back
    // by the server, not the peer).
    void restart(uint64_t now_ms) {
        if (block_) block_->started_ms = now_ms;
    }
    // The first `n` bytes (< size()) were taken: the rest moves to the
    // front and is a new packet, with its own size and its own time. Taking
    // everything is ReassemblyBudget::release.
    void consume(size_t n, uint64_t now_ms);

private:
    friend class ReassemblyBudget;
    struct Block {
        uint32_t len;
        uint32_t cap;
        uint32_t needed;
        uint32_t holder;      // index in the budget's holders
        uint32_t owner;       // the connection's slot
        uint32_t unused;
        uint64_t started_ms;
    };
    Block* block_ = nullptr;
};
static_assert(sizeof(BudgetBuffer) == 8, "what an idle connection pays for a buffer: one pointer");

class ReassemblyBudget {
public:
    // `limit`: bytes of capacity all buffers together may hold; `share`:
    // what one buffer may hold (0: only the limit bounds it). `gauge`
    // shows the bytes in use.
    ReassemblyBudget(uint64_t limit, uint64_t share, stats::Counter& gauge);
    ~ReassemblyBudget();  // frees what is still held (a worker stopped with connections open)
    ReassemblyBudget(const ReassemblyBudget&) = delete;
    ReassemblyBudget& operator=(const ReassemblyBudget&) = delete;

    uint64_t used() const { return used_; }
    uint64_t limit() const { return limit_; }
    uint64_t share() const { return share_; }

    // The capacity `buffer` grows to for holding `have` bytes: the power of
    // two that holds them (a packet read in n pieces costs at most log n
    // reallocs, and a holder's size does not depend on how its bytes were
    // cut), never past the packet's size (`packet`, or what the buffer
    // knows; 0: unknown), nor past the share. Announcing a big packet
    // reserves nothing.
    uint64_t capacity_for(const BudgetBuffer& buffer, uint64_t have, uint32_t packet) const;
    bool fits(uint64_t extra) const { return used_ + extra <= limit_; }
    // Who pays when `asking` needs `extra` bytes more and they do not fit:
    // the slot of the largest buffer, `asking` counted with its growth (it
    // pays itself when nobody holds more).
    uint32_t largest_holder(const BudgetBuffer& asking, uint32_t asking_slot, uint64_t extra) const;

    // Grows `buffer` of connection `slot` to `cap` bytes (> its capacity),
    // charged whether it fits or not (the caller made room). False when out
    // of memory; the buffer is then as it was.
    bool grow(BudgetBuffer& buffer, uint32_t slot, uint64_t cap, uint64_t now_ms);
    // Appends to what the buffer holds; it has the capacity.
    static void append(BudgetBuffer& buffer, std::span<const uint8_t> bytes);
    // Frees the buffer and returns its capacity to the budget.
    void release(BudgetBuffer& buffer);

    // The buffers held (few: split packets are short-lived), for a scan.
    size_t holders() const { return holders_.size(); }
    const BudgetBuffer& holder(size_t i) const { return holders_[i]; }

private:
    uint64_t limit_;
    uint64_t share_;
    stats::Counter& gauge_;
    uint64_t used_ = 0;
    // Copies of every live buffer's pointer, at the index its block records.
    std::vector<BudgetBuffer> holders_;
};

}  // namespace limaoim::net
