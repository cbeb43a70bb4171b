#include "limaoim/net/slab.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <new>

namespace limaoim::net {

namespace {
constexpr size_t kPage = 4096;
}

PageMap::PageMap(size_t object_size, size_t count) : objects_per_page_(kPage / object_size) {
    bytes_ = (object_size * count + kPage - 1) / kPage * kPage;
    if (bytes_ == 0) bytes_ = kPage;
    // NORESERVE: the whole table is address space only; pages become
    // resident (and count in RSS) when a slot on them is first written.
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    base_ = static_cast<std::byte*>(p);
    live_per_page_.assign(bytes_ / kPage, 0);
}

PageMap::~PageMap() {
    if (base_) munmap(base_, bytes_);
}

void PageMap::acquire(size_t index) {
    uint16_t& live = live_per_page_[index / objects_per_page_];
    if (live++ == 0) ++resident_pages_;
}

void PageMap::release(size_t index) {
    size_t page = index / objects_per_page_;
    if (--live_per_page_[page] == 0) {
        madvise(base_ + page * kPage, kPage, MADV_DONTNEED);
        --resident_pages_;
    }
}

ChunkPool::~ChunkPool() {
    while (free_) {
        SendChunk* next = free_->next;
        std::free(free_);
        free_ = next;
    }
}

SendChunk* ChunkPool::get() {
    SendChunk* chunk = free_;
    if (chunk) {
        free_ = chunk->next;
        --cached_;
    } else {
        chunk = static_cast<SendChunk*>(std::malloc(sizeof(SendChunk)));
        if (!chunk) return nullptr;
    }
    chunk->next = nullptr;
    chunk->begin = 0;
    chunk->end = 0;
    ++in_use_;
    return chunk;
}

void ChunkPool::put(SendChunk* chunk) {
    --in_use_;
    // Past a small cache, chunks go back to the allocator so a burst of
    // slow consumers does not pin memory after they are gone.
    if (cached_ >= max_cached_) {
        std::free(chunk);
        return;
    }
    chunk->next = free_;
    free_ = chunk;
    ++cached_;
}

}  // namespace limaoim::net
