#include "limaoim/net/budget_buffer.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>

namespace limaoim::net {

namespace {
constexpr uint64_t kMinCapacity = 64;
}  // namespace

void BudgetBuffer::consume(size_t n, uint64_t now_ms) {
    const uint32_t rest = block_->len - uint32_t(n);
    std::memmove(data(), data() + n, rest);
    block_->len = rest;
    block_->needed = 0;
    block_->started_ms = now_ms;
}

ReassemblyBudget::ReassemblyBudget(uint64_t limit, uint64_t share, stats::Counter& gauge)
    : limit_(limit), share_(share), gauge_(gauge) {}

ReassemblyBudget::~ReassemblyBudget() {
    // The gauge is left alone: the stats segment may be gone already.
    for (BudgetBuffer& buffer : holders_) std::free(buffer.block_);
}

uint64_t ReassemblyBudget::capacity_for(const BudgetBuffer& buffer, uint64_t have, uint32_t packet) const {
    if (!packet) packet = buffer.needed();
    uint64_t cap = std::bit_ceil(std::max(have, kMinCapacity));
    if (packet >= have) cap = std::min<uint64_t>(cap, packet);
    if (share_) cap = std::min(cap, share_);
    return std::min<uint64_t>(cap, UINT32_MAX);
}

uint32_t ReassemblyBudget::largest_holder(const BudgetBuffer& asking, uint32_t asking_slot, uint64_t extra) const {
    uint32_t largest = asking_slot;
    uint64_t largest_bytes = asking.capacity() + extra;
    for (const BudgetBuffer& held : holders_) {
        if (held.block_ != asking.block_ && held.capacity() > largest_bytes) {
            largest = held.owner();
            largest_bytes = held.capacity();
        }
    }
    return largest;
}

bool ReassemblyBudget::grow(BudgetBuffer& buffer, uint32_t slot, uint64_t cap, uint64_t now_ms) {
    const uint32_t old_cap = buffer.capacity();
    if (!buffer.block_) holders_.reserve(holders_.size() + 1);  // before the block: a throw then leaks nothing
    auto* grown = static_cast<BudgetBuffer::Block*>(std::realloc(buffer.block_, sizeof(BudgetBuffer::Block) + cap));
    if (!grown) return false;
    if (!buffer.block_) {
        *grown = BudgetBuffer::Block{.len = 0, .cap = 0, .needed = 0, .holder = uint32_t(holders_.size()),
                                     .owner = slot, .unused = 0, .started_ms = now_ms};
        holders_.push_back({});
    }
    grown->cap = uint32_t(cap);
    buffer.block_ = grown;
    holders_[grown->holder].block_ = grown;
    used_ += cap - old_cap;
    gauge_.add(cap - old_cap);
    return true;
}

void ReassemblyBudget::append(BudgetBuffer& buffer, std::span<const uint8_t> bytes) {
    if (!bytes.empty()) std::memcpy(buffer.data() + buffer.block_->len, bytes.data(), bytes.size());
    buffer.block_->len += uint32_t(bytes.size());
}

void ReassemblyBudget::release(BudgetBuffer& buffer) {
    if (!buffer) return;
    const uint32_t index = buffer.block_->holder;
    holders_[index] = holders_.back();
    holders_[index].block_->holder = index;
    holders_.pop_back();
    used_ -= buffer.capacity();
    gauge_.sub(buffer.capacity());
    std::free(buffer.block_);
    buffer.block_ = nullptr;
}

}  // namespace limaoim::net
