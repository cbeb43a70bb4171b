// Memory for per-connection objects.
//
// SlotArray<T>: one T per direct-descriptor slot, in an anonymous mapping
// reserved for the whole fixed-file table but touched only where slots are
// used. When every slot of a page is free again the page goes back to the
// kernel (MADV_DONTNEED), so connection churn leaves no resident residue.
//
// ChunkPool: fixed-size send chunks, a short per-worker free list in front
// of the general allocator (mimalloc in the server).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <vector>

namespace limaoim::net {

class PageMap {
public:
    PageMap(size_t object_size, size_t count);
    ~PageMap();
    PageMap(const PageMap&) = delete;
    PageMap& operator=(const PageMap&) = delete;

    std::byte* base() const { return base_; }
    // Counts a slot of `index` in use / free; a page whose last slot is
    // freed is returned to the kernel and reads as zeros on next touch.
    void acquire(size_t index);
    void release(size_t index);
    size_t resident_pages() const { return resident_pages_; }

private:
    std::byte* base_ = nullptr;
    size_t bytes_ = 0;
    size_t objects_per_page_;
    std::vector<uint16_t> live_per_page_;
    size_t resident_pages_ = 0;
};

template <class T>
class SlotArray {
    static_assert(std::is_trivially_destructible_v<T>, "slots are dropped with their pages");
    static_assert(4096 % sizeof(T) == 0, "a slot must not straddle pages");

public:
    explicit SlotArray(size_t count) : pages_(sizeof(T), count), count_(count) {}

    size_t size() const { return count_; }
    T& operator[](size_t i) { return reinterpret_cast<T*>(pages_.base())[i]; }
    const T& operator[](size_t i) const { return reinterpret_cast<const T*>(pages_.base())[i]; }

    // Constructs a fresh T in slot i (its page becomes resident).
    T& activate(size_t i) {
        pages_.acquire(i);
        return *new (&(*this)[i]) T{};
    }
    void deactivate(size_t i) { pages_.release(i); }
    size_t resident_pages() const { return pages_.resident_pages(); }

private:
    PageMap pages_;
    size_t count_;
};

// A send chunk: bytes [begin, end) of data are queued, [0, begin) were sent.
struct SendChunk {
    static constexpr size_t kSize = 2048;
    static constexpr size_t kCapacity = kSize - 16;

    SendChunk* next = nullptr;
    uint32_t begin = 0;
    uint32_t end = 0;
    uint8_t data[kCapacity];

    uint32_t room() const { return uint32_t(kCapacity) - end; }
};
static_assert(sizeof(SendChunk) == SendChunk::kSize);

class ChunkPool {
public:
    explicit ChunkPool(size_t max_cached = 64) : max_cached_(max_cached) {}
    ~ChunkPool();
    ChunkPool(const ChunkPool&) = delete;
    ChunkPool& operator=(const ChunkPool&) = delete;

    SendChunk* get();  // nullptr when the allocator is out of memory
    void put(SendChunk* chunk);
    size_t in_use() const { return in_use_; }

private:
    SendChunk* free_ = nullptr;
    size_t cached_ = 0;
    size_t max_cached_;
    size_t in_use_ = 0;
};

}  // namespace limaoim::net
