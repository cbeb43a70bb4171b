// Envelopes: how workers (and off-loop threads) hand work to a worker.
//
// A worker's state is touched only by its own thread. Anything another
// thread wants done there — kick a session, deliver a stored message to the
// sessions it holds, report a finished fsync — travels as an Envelope into
// that worker's Inbox. The payload is immutable and reference-counted, so
// one stored message reaches many targets without a copy; a target encodes
// it for its own sessions (their keys live there).
//
// Memory: a Payload is one allocation from the general allocator (mimalloc
// in the server), freed by whichever thread drops the last reference. An
// Envelope is 24 bytes, kept by value in vectors whose capacity is reused.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <span>
#include <utility>
#include <vector>

namespace limaoim::net {

class Payload {
public:
    Payload() = default;
    // `size` uninitialised bytes for the creator to fill (writable_bytes)
    // before sharing; empty (operator bool false) when out of memory.
    static Payload allocate(size_t size) {
        void* memory = ::operator new(sizeof(Block) + size, std::nothrow);
        if (!memory) return {};
        Block* block = new (memory) Block{};
        block->size = uint32_t(size);
        return Payload(block);
    }
    // A copy of `bytes`; empty when out of memory.
    static Payload copy_of(std::span<const uint8_t> bytes) {
        Payload p = allocate(bytes.size());
        if (p && !bytes.empty()) std::memcpy(p.block_->data(), bytes.data(), bytes.size());
        return p;
    }
    Payload(const Payload& other) : block_(other.block_) {
        if (block_) block_->refs.fetch_add(1, std::memory_order_relaxed);
    }
    Payload(Payload&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
    Payload& operator=(Payload other) noexcept {
        std::swap(block_, other.block_);
        return *this;
    }
    ~Payload() {
        // acq_rel: the thread that frees sees every other thread's reads done.
        if (block_ && block_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            block_->~Block();
            ::operator delete(block_);
        }
    }

    std::span<const uint8_t> bytes() const {
        return block_ ? std::span<const uint8_t>(block_->data(), block_->size) : std::span<const uint8_t>();
    }
    // Only while this is the sole reference (use_count() == 1): a payload
    // is immutable once another thread may see it.
    std::span<uint8_t> writable_bytes() {
        return block_ ? std::span<uint8_t>(block_->data(), block_->size) : std::span<uint8_t>();
    }
    explicit operator bool() const { return block_ != nullptr; }
    uint32_t use_count() const { return block_ ? block_->refs.load(std::memory_order_relaxed) : 0; }

private:
    struct Block {
        std::atomic<uint32_t> refs{1};
        uint32_t size = 0;
        uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
    };
    explicit Payload(Block* block) : block_(block) {}
    Block* block_ = nullptr;
};

// What a handler means by `kind` and the two arguments is its own business;
// the loop only carries envelopes. The top 4 bits of `kind` name the family,
// i.e. which EnvelopeHandler of the target worker gets it (Worker::
// set_envelope_handler); the rest is the family's own numbering.
inline constexpr uint8_t kEnvelopeFamilies = 16;
constexpr uint16_t envelope_kind(uint8_t family, uint16_t kind) { return uint16_t(family << 12 | (kind & 0x0fff)); }
constexpr uint8_t envelope_family(uint16_t kind) { return uint8_t(kind >> 12); }

struct Envelope {
    uint16_t kind = 0;
    uint16_t flags = 0;
    uint32_t arg32 = 0;
    uint64_t arg = 0;  // e.g. a ConnId
    Payload payload;
};
static_assert(sizeof(Envelope) == 24);

// A worker's incoming envelopes: many producers, one consumer (the worker),
// bounded. Producers append whole batches under the lock; the consumer swaps
// the vector out under the lock and handles it without it. The doorbell is
// rung only when the inbox goes from empty to non-empty, so a burst costs the
// target one wake-up, however many producers and batches it has. A producer
// that may block (not a worker) can wait for room: take() wakes it.
class Inbox {
public:
    explicit Inbox(size_t capacity) : capacity_(capacity) {}

    enum class Push : uint8_t { Queued, QueuedRing, Full };
    // Appends all of `batch` or nothing; QueuedRing: the caller rings the
    // target's doorbell. `batch` is left empty on success.
    Push push(std::vector<Envelope>& batch) {
        std::lock_guard lock(mutex_);
        if (queued_.size() + batch.size() > capacity_) return Push::Full;
        const bool was_empty = queued_.empty();
        if (was_empty) {
            queued_.swap(batch);
        } else {
            for (Envelope& e : batch) queued_.push_back(std::move(e));
            batch.clear();
        }
        size_.store(queued_.size(), std::memory_order_relaxed);
        return was_empty ? Push::QueuedRing : Push::Queued;
    }
    // As push(), for a part of a batch; moved from only when queued.
    Push push_range(std::span<Envelope> envelopes) {
        std::lock_guard lock(mutex_);
        if (queued_.size() + envelopes.size() > capacity_) return Push::Full;
        const bool was_empty = queued_.empty();
        for (Envelope& e : envelopes) queued_.push_back(std::move(e));
        size_.store(queued_.size(), std::memory_order_relaxed);
        return was_empty ? Push::QueuedRing : Push::Queued;
    }
    // Until `n` envelopes fit (false: `deadline` came first).
    bool wait_for_room(size_t n, std::chrono::steady_clock::time_point deadline) {
        std::unique_lock lock(mutex_);
        ++room_waiters_;
        const bool room = room_.wait_until(lock, deadline, [&] { return queued_.size() + n <= capacity_; });
        --room_waiters_;
        return room;
    }
    Push push_one(Envelope&& envelope) {
        std::lock_guard lock(mutex_);
        if (queued_.size() >= capacity_) return Push::Full;
        queued_.push_back(std::move(envelope));
        size_.store(queued_.size(), std::memory_order_relaxed);
        return queued_.size() == 1 ? Push::QueuedRing : Push::Queued;
    }
    // The consumer: takes everything queued (out must be empty; its capacity
    // is handed to the producers in exchange).
    void take(std::vector<Envelope>& out) {
        std::lock_guard lock(mutex_);
        out.swap(queued_);
        size_.store(0, std::memory_order_relaxed);
        if (room_waiters_) room_.notify_all();
    }
    // Approximate, for a producer's bound check without the lock.
    size_t size() const { return size_.load(std::memory_order_relaxed); }
    size_t capacity() const { return capacity_; }

private:
    std::mutex mutex_;
    std::vector<Envelope> queued_;
    std::atomic<size_t> size_{0};
    size_t capacity_;
    std::condition_variable room_;
    uint32_t room_waiters_ = 0;  // under mutex_: take() notifies only when someone waits
};

// Where a thread off the loop (the IM core's committer, fan-out and API
// threads) posts envelopes for one worker: all it needs of net::Worker, so
// the IM core includes this header and never the loop's (tests/layering.sh).
class EnvelopeSink {
public:
    // Thread-safe: queues one envelope. False when the inbox is full
    // (counted); the caller decides what a refusal means.
    virtual bool post(Envelope&& envelope) = 0;
    // Thread-safe, for a thread that may block (never a worker): queues
    // `batch` in order, in parts that fit, waiting for room while the worker
    // drains it. False when `limit` passed first: `batch` then holds the
    // envelopes not queued (those before them were). Nothing counted.
    virtual bool post_waiting(std::vector<Envelope>& batch, std::chrono::milliseconds limit) = 0;

protected:
    ~EnvelopeSink() = default;
};

}  // namespace limaoim::net
