#include "limaoim/gateway/inflight.h"

namespace limaoim::gateway {

InflightTable::InflightTable(uint32_t slots, const InflightOptions& options)
    : options_(options), index_(64, 0), index_mask_(63), sessions_(slots) {}

size_t InflightTable::home(uint32_t slot, int64_t message_id) const {
    // Snowflake ids differ in their low bits (step) and middle bits (ms);
    // a multiplicative mix spreads both, with the slot, over the table.
    uint64_t h = uint64_t(message_id) ^ (uint64_t(slot) << 40 | slot);
    h *= 0x9e3779b97f4a7c15ull;
    return size_t(h >> 32) & index_mask_;
}

uint32_t InflightTable::find(uint32_t slot, int64_t message_id) const {
    for (size_t i = home(slot, message_id);; i = (i + 1) & index_mask_) {
        const uint32_t cell = index_[i];
        if (!cell) return kNone;
        const Entry& e = entries_[cell - 1];
        if (e.slot == slot && e.message_id == message_id) return cell - 1;
    }
}

void InflightTable::index_insert(uint32_t entry) {
    if ((live_ + 1) * 2 > index_.size()) grow_index();
    size_t i = home(entries_[entry].slot, entries_[entry].message_id);
    while (index_[i]) i = (i + 1) & index_mask_;
    index_[i] = entry + 1;
}

void InflightTable::index_erase(uint32_t entry) {
    size_t i = home(entries_[entry].slot, entries_[entry].message_id);
    while (index_[i] != entry + 1) i = (i + 1) & index_mask_;
    // Backward shift: pull later cells of the run into the hole when their
    // home does not lie cyclically in (hole, cell], so no tombstones.
    size_t hole = i;
    for (size_t j = (i + 1) & index_mask_; index_[j]; j = (j + 1) & index_mask_) {
        const Entry& e = entries_[index_[j] - 1];
        const size_t h = home(e.slot, e.message_id);
        const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
        if (!stays) {
            index_[hole] = index_[j];
            hole = j;
        }
    }
    index_[hole] = 0;
}

void InflightTable::grow_index() {
    std::vector<uint32_t> old(index_.size() * 2, 0);
    old.swap(index_);
    index_mask_ = index_.size() - 1;
    for (uint32_t cell : old) {
        if (!cell) continue;
        size_t i = home(entries_[cell - 1].slot, entries_[cell - 1].message_id);
        while (index_[i]) i = (i + 1) & index_mask_;
        index_[i] = cell;
    }
}

void InflightTable::unlink_time(uint32_t index) {
    Entry& e = entries_[index];
    (e.time_prev == kNone ? time_head_ : entries_[e.time_prev].time_next) = e.time_next;
    (e.time_next == kNone ? time_tail_ : entries_[e.time_next].time_prev) = e.time_prev;
}

void InflightTable::link_time_tail(uint32_t index) {
    Entry& e = entries_[index];
    e.time_prev = time_tail_;
    e.time_next = kNone;
    (time_tail_ == kNone ? time_head_ : entries_[time_tail_].time_next) = index;
    time_tail_ = index;
}

void InflightTable::release(uint32_t index) {
    Entry& e = entries_[index];
    index_erase(index);
    unlink_time(index);
    SessionList& list = sessions_[e.slot];
    (e.conn_prev == kNone ? list.oldest : entries_[e.conn_prev].conn_next) = e.conn_next;
    (e.conn_next == kNone ? list.newest : entries_[e.conn_next].conn_prev) = e.conn_prev;
    if (--list.count == 0) sessions_.deactivate(e.slot);
    e.message = net::Payload();
    e.time_next = free_head_;
    free_head_ = index;
    --live_;
}

bool InflightTable::add(net::ConnRef conn, int64_t message_id, const net::Payload& message, uint32_t seq,
                        uint16_t flags, uint64_t now_ms) {
    // A new session in the slot: the previous one's entries go first (its
    // close normally dropped them), so nothing below finds one of them.
    if (sessions_[conn.slot].count != 0 && sessions_[conn.slot].generation != conn.generation)
        drop_session({conn.slot, sessions_[conn.slot].generation});
    // The same message again on this session (a uid listed twice in an API
    // receiver list): one entry, re-armed.
    if (uint32_t existing = find(conn.slot, message_id); existing != kNone) {
        Entry& e = entries_[existing];
        e.message = message;
        e.seq = seq;
        e.flags = flags;
        e.deliveries = 1;
        e.deadline_ms = now_ms + options_.timeout_ms;
        unlink_time(existing);
        link_time_tail(existing);
        return true;
    }
    bool evicted = false;
    SessionList* list = nullptr;
    if (sessions_[conn.slot].count == 0) {
        list = &sessions_.activate(conn.slot);
        *list = {kNone, kNone, 0, conn.generation};
    } else {
        list = &sessions_[conn.slot];
        if (list->count >= options_.max_per_session) {
            release(list->oldest);
            evicted = true;
            if (list->count == 0) {  // max_per_session 1: the page was let go
                list = &sessions_.activate(conn.slot);
                *list = {kNone, kNone, 0, conn.generation};
            }
        }
    }
    uint32_t index;
    if (free_head_ != kNone) {
        index = free_head_;
        free_head_ = entries_[index].time_next;
    } else {
        index = uint32_t(entries_.size());
        entries_.emplace_back();
    }
    Entry& e = entries_[index];
    e.message = message;
    e.message_id = message_id;
    e.deadline_ms = now_ms + options_.timeout_ms;
    e.slot = conn.slot;
    e.generation = conn.generation;
    e.seq = seq;
    e.flags = flags;
    e.deliveries = 1;
    link_time_tail(index);
    e.conn_next = kNone;
    e.conn_prev = list->newest;
    (list->newest == kNone ? list->oldest : entries_[list->newest].conn_next) = index;
    list->newest = index;
    ++list->count;
    ++live_;
    index_insert(index);
    return !evicted;
}

bool InflightTable::ack(net::ConnRef conn, int64_t message_id) {
    const uint32_t index = find(conn.slot, message_id);
    if (index == kNone || entries_[index].generation != conn.generation) return false;
    release(index);
    return true;
}

void InflightTable::drop_session(net::ConnRef conn) {
    SessionList& list = sessions_[conn.slot];
    if (list.count == 0 || list.generation != conn.generation) return;
    while (sessions_[conn.slot].count) release(sessions_[conn.slot].oldest);
}

}  // namespace limaoim::gateway
