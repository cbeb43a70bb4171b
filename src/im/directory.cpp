#include "limaoim/im/directory.h"

#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace limaoim::im {

// ---------------------------------------------------------------------------
// SipHash-c-d (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012).
// State: four 64-bit words initialised from the 128-bit key and the constant
// "somepseudorandomlygeneratedbytes". The message is read as little-endian
// 64-bit words; the last word holds the 0..7 leftover bytes and, in its top
// byte, the message length mod 256. Each word m is absorbed as
// v3 ^= m; c SipRounds; v0 ^= m. Finalisation: v2 ^= 0xff; d SipRounds;
// the output is v0 ^ v1 ^ v2 ^ v3.
// ---------------------------------------------------------------------------
namespace detail {

uint64_t siphash(std::array<uint64_t, 2> key, std::string_view data, int c_rounds, int d_rounds) {
    uint64_t v0 = key[0] ^ 0x736f6d6570736575ULL;  // "somepseu"
    uint64_t v1 = key[1] ^ 0x646f72616e646f6dULL;  // "dorandom"
    uint64_t v2 = key[0] ^ 0x6c7967656e657261ULL;  // "lygenera"
    uint64_t v3 = key[1] ^ 0x7465646279746573ULL;  // "tedbytes"
    auto sip_round = [&] {  // the ARX round: two half-rounds over (v0,v1) and (v2,v3)
        v0 += v1; v1 = std::rotl(v1, 13); v1 ^= v0; v0 = std::rotl(v0, 32);
        v2 += v3; v3 = std::rotl(v3, 16); v3 ^= v2;
        v0 += v3; v3 = std::rotl(v3, 21); v3 ^= v0;
        v2 += v1; v1 = std::rotl(v1, 17); v1 ^= v2; v2 = std::rotl(v2, 32);
    };
    auto absorb = [&](uint64_t m) {
        v3 ^= m;
        for (int i = 0; i < c_rounds; ++i) sip_round();
        v0 ^= m;
    };

    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    size_t left = data.size();
    for (; left >= 8; p += 8, left -= 8) {
        uint64_t m;
        std::memcpy(&m, p, 8);
        if constexpr (std::endian::native == std::endian::big) m = __builtin_bswap64(m);
        absorb(m);
    }
    uint64_t last = uint64_t(data.size()) << 56;  // length mod 256 in the top byte
    for (size_t i = 0; i < left; ++i) last |= uint64_t(p[i]) << (8 * i);
    absorb(last);

    v2 ^= 0xff;
    for (int i = 0; i < d_rounds; ++i) sip_round();
    return v0 ^ v1 ^ v2 ^ v3;
}

namespace {
std::atomic<long> fail_after{-1};  // test hook: < 0 never fail
}  // namespace

void directory_fail_allocations_after(long n) { fail_after.store(n, std::memory_order_relaxed); }

}  // namespace detail

namespace {

// ---------------------------------------------------------------------------
// Records: one malloc per online uid.
//   Record header (8 bytes) | ConnId sessions[cap] | uint8 flags[cap] | uid bytes
// Sessions and flags are parallel arrays sorted by device flag; a record always
// holds 1..256 sessions (it is freed with its last one), so count and capacity
// are stored minus one in a byte each. malloc aligns to 16, so the sessions
// after the 8-byte header are 8-aligned.
// ---------------------------------------------------------------------------
struct Record {
    uint32_t hash;     // low 32 bits of the uid's hash: its home slot, for growth and deletion
    uint16_t uid_len;
    uint8_t count_m1;  // sessions - 1
    uint8_t cap_m1;    // capacity - 1
};
static_assert(sizeof(Record) == 8);

constexpr size_t kMaxSessions = 256;

size_t count(const Record* r) { return size_t(r->count_m1) + 1; }
size_t cap(const Record* r) { return size_t(r->cap_m1) + 1; }
size_t record_size(size_t capacity, size_t uid_len) { return sizeof(Record) + 9 * capacity + uid_len; }
net::ConnId* sessions(Record* r) { return reinterpret_cast<net::ConnId*>(r + 1); }
const net::ConnId* sessions(const Record* r) { return reinterpret_cast<const net::ConnId*>(r + 1); }
uint8_t* flags(Record* r) { return reinterpret_cast<uint8_t*>(r + 1) + 8 * cap(r); }
const uint8_t* flags(const Record* r) { return reinterpret_cast<const uint8_t*>(r + 1) + 8 * cap(r); }
char* uid_bytes(Record* r) { return reinterpret_cast<char*>(r + 1) + 9 * cap(r); }
const char* uid_bytes(const Record* r) { return reinterpret_cast<const char*>(r + 1) + 9 * cap(r); }

// What glibc malloc takes for a request of n bytes on 64-bit: an 8-byte size
// header, 16-byte granularity, 32 bytes at least. mimalloc's small size
// classes are no larger. bytes_in_use() counts this, not the request.
size_t malloc_cost(size_t n) { return std::max<size_t>(32, (n + 8 + 15) & ~size_t(15)); }

// ---------------------------------------------------------------------------
// Table words: the record pointer in the low 48 bits, a 16-bit hash tag in the
// top 16 (so most non-matching slots are skipped without touching the record).
// Linux hands user space addresses below 2^47 on x86-64 (2^48 on arm64)
// unless mmap is explicitly asked for more; allocate() checks it anyway and
// treats a pointer with high bits as an allocation failure.
// ---------------------------------------------------------------------------
static_assert(sizeof(void*) == 8 && sizeof(uintptr_t) == 8, "table words pack a 48-bit pointer with a 16-bit tag");
constexpr unsigned kTagShift = 48;
constexpr uint64_t kPointerMask = (uint64_t(1) << kTagShift) - 1;

uint64_t make_word(const Record* r, uint16_t tag) { return uint64_t(reinterpret_cast<uintptr_t>(r)) | uint64_t(tag) << kTagShift; }
Record* record_of(uint64_t word) { return reinterpret_cast<Record*>(uintptr_t(word & kPointerMask)); }
uint16_t tag_of_word(uint64_t word) { return uint16_t(word >> kTagShift); }
uint16_t tag_of_hash(uint64_t h) { return uint16_t(h >> 32); }  // bits 32..47: neither the shard (top) nor the slot (low 32)

void* allocate(size_t n, bool zeroed) {
    long f = detail::fail_after.load(std::memory_order_relaxed);
    if (f == 0) return nullptr;
    if (f > 0) detail::fail_after.fetch_sub(1, std::memory_order_relaxed);
    void* p = zeroed ? std::calloc(n, 1) : std::malloc(n);
    if (p && (reinterpret_cast<uintptr_t>(p) >> kTagShift) != 0) {  // cannot carry a tag: never seen on Linux
        std::free(p);
        return nullptr;
    }
    return p;
}

Record* new_record(size_t capacity, uint32_t hash, std::string_view uid, size_t count) {
    auto* r = static_cast<Record*>(allocate(record_size(capacity, uid.size()), false));
    if (!r) return nullptr;
    *r = Record{hash, uint16_t(uid.size()), uint8_t(count - 1), uint8_t(capacity - 1)};
    if (!uid.empty()) std::memcpy(uid_bytes(r), uid.data(), uid.size());
    return r;
}

// Slots: `capacity` is any size (not a power of two, so tables grow by 1.5x);
// the home slot scales the hash's low 32 bits into [0, capacity).
uint32_t home(uint32_t hash, uint32_t capacity) { return uint32_t((uint64_t(hash) * capacity) >> 32); }
uint32_t next(uint32_t i, uint32_t capacity) { return i + 1 == capacity ? 0 : i + 1; }
uint32_t distance(uint32_t from, uint32_t to, uint32_t capacity) { return to >= from ? to - from : to + capacity - from; }

constexpr uint32_t kNotFound = UINT32_MAX;
constexpr uint32_t kInitialSlots = 16;
// Grow by 1.5x above load 0.8 (0.53 right after), shrink to load 0.5 below 0.2.
bool over_full(size_t records, uint32_t capacity) { return records * 5 > size_t(capacity) * 4; }
bool too_empty(size_t records, uint32_t capacity) { return capacity > kInitialSlots && records * 5 < capacity; }

uint32_t lookup(const uint64_t* slots, uint32_t capacity, std::string_view uid, uint64_t h) {
    if (capacity == 0) return kNotFound;
    const uint16_t tag = tag_of_hash(h);
    const uint32_t h32 = uint32_t(h);
    for (uint32_t i = home(h32, capacity);; i = next(i, capacity)) {
        const uint64_t w = slots[i];
        if (w == 0) return kNotFound;
        if (tag_of_word(w) != tag) continue;
        const Record* r = record_of(w);
        if (r->hash == h32 && r->uid_len == uid.size() &&
            (uid.empty() || std::memcmp(uid_bytes(r), uid.data(), uid.size()) == 0))
            return i;
    }
}

void place(uint64_t* slots, uint32_t capacity, uint64_t word) {
    uint32_t i = home(record_of(word)->hash, capacity);
    while (slots[i]) i = next(i, capacity);
    slots[i] = word;
}

// Backward-shift deletion: walk the cluster after the hole and move back every
// entry whose home is not cyclically in (hole, j], i.e. which may sit at the hole.
void erase_at(uint64_t* slots, uint32_t capacity, uint32_t index) {
    uint32_t hole = index;
    for (uint32_t j = next(index, capacity); slots[j]; j = next(j, capacity)) {
        uint32_t h = home(record_of(slots[j])->hash, capacity);
        if (distance(h, j, capacity) >= distance(hole, j, capacity)) {
            slots[hole] = slots[j];
            hole = j;
        }
    }
    slots[hole] = 0;
}

}  // namespace

// ---------------------------------------------------------------------------

Directory::Directory(uint32_t shard_bits) : Directory(shard_bits, [] {
    std::array<uint64_t, 2> key{};
    auto* p = reinterpret_cast<unsigned char*>(key.data());
    size_t got = 0;
    while (got < sizeof(key)) {
        ssize_t n = ::getrandom(p + got, sizeof(key) - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "Directory: getrandom");
        }
        got += size_t(n);
    }
    return key;
}()) {}

Directory::Directory(uint32_t shard_bits, std::array<uint64_t, 2> hash_key) : shard_bits_(shard_bits), key_(hash_key) {
    // shard_for() shifts by 64 - shard_bits: 0 would be undefined; more than 16 would overlap the tag bits.
    if (shard_bits < 1 || shard_bits > 16) throw std::invalid_argument("Directory: shard_bits must be 1..16");
    shards_ = std::make_unique<Shard[]>(size_t(1) << shard_bits);
}

Directory::~Directory() {
    for (size_t s = 0; s < (size_t(1) << shard_bits_); ++s) {
        Shard& shard = shards_[s];
        for (uint32_t i = 0; i < shard.capacity; ++i)
            if (shard.slots[i]) std::free(record_of(shard.slots[i]));
        std::free(shard.slots);
    }
}

uint64_t Directory::hash(std::string_view uid) const { return detail::siphash(key_, uid); }

namespace {
// Moves the shard's table to `capacity` slots; false (table unchanged) if out of memory.
bool resize_table(uint64_t*& slots, uint32_t& old_capacity, uint32_t capacity) {
    auto* fresh = static_cast<uint64_t*>(allocate(size_t(capacity) * sizeof(uint64_t), true));
    if (!fresh) return false;
    for (uint32_t i = 0; i < old_capacity; ++i)
        if (slots[i]) place(fresh, capacity, slots[i]);
    std::free(slots);
    slots = fresh;
    old_capacity = capacity;
    return true;
}
}  // namespace

Directory::ReplaceResult Directory::replace(std::string_view uid, uint8_t device_flag, net::ConnId conn) {
    assert(conn && "an empty ConnId means 'no session'");
    if (uid.size() > kMaxUid) return {{}, false};
    const uint64_t h = hash(uid);
    Shard& shard = shard_for(h);
    std::lock_guard lock(shard.mutex);

    const uint32_t i = lookup(shard.slots, shard.capacity, uid, h);
    if (i == kNotFound) {
        // A new uid: its record first, then room in the table, so a failure leaves nothing behind.
        Record* r = new_record(1, uint32_t(h), uid, 1);
        if (!r) return {{}, false};
        sessions(r)[0] = conn;
        flags(r)[0] = device_flag;
        if (shard.capacity == 0 || over_full(size_t(shard.records) + 1, shard.capacity)) {
            uint32_t grown = shard.capacity == 0 ? kInitialSlots : shard.capacity + shard.capacity / 2;
            if (!resize_table(shard.slots, shard.capacity, grown)) {
                std::free(r);
                return {{}, false};
            }
        }
        place(shard.slots, shard.capacity, make_word(r, tag_of_hash(h)));
        ++shard.records;
        ++shard.sessions;
        shard.record_bytes += malloc_cost(record_size(1, uid.size()));
        return {};
    }

    Record* r = record_of(shard.slots[i]);
    const size_t n = count(r);
    const size_t pos = size_t(std::lower_bound(flags(r), flags(r) + n, device_flag) - flags(r));
    if (pos < n && flags(r)[pos] == device_flag) {  // this device's session: swap it
        net::ConnId old = sessions(r)[pos];
        sessions(r)[pos] = conn;
        return {old, true};
    }

    // Another device of an online uid: insert at `pos`, in place or in a record twice the size.
    assert(n < kMaxSessions);
    if (n < cap(r)) {
        std::memmove(sessions(r) + pos + 1, sessions(r) + pos, (n - pos) * sizeof(net::ConnId));
        std::memmove(flags(r) + pos + 1, flags(r) + pos, n - pos);
    } else {
        const size_t grown = std::min(kMaxSessions, 2 * n);
        Record* g = new_record(grown, r->hash, {uid_bytes(r), r->uid_len}, n + 1);
        if (!g) return {{}, false};
        std::memcpy(sessions(g), sessions(r), pos * sizeof(net::ConnId));
        std::memcpy(sessions(g) + pos + 1, sessions(r) + pos, (n - pos) * sizeof(net::ConnId));
        std::memcpy(flags(g), flags(r), pos);
        std::memcpy(flags(g) + pos + 1, flags(r) + pos, n - pos);
        shard.record_bytes += malloc_cost(record_size(grown, r->uid_len)) - malloc_cost(record_size(n, r->uid_len));
        shard.slots[i] = make_word(g, tag_of_word(shard.slots[i]));
        std::free(r);
        r = g;
    }
    sessions(r)[pos] = conn;
    flags(r)[pos] = device_flag;
    r->count_m1 = uint8_t(n);  // n + 1 sessions
    ++shard.sessions;
    return {};
}

bool Directory::remove(std::string_view uid, uint8_t device_flag, net::ConnId conn) {
    if (uid.size() > kMaxUid || !conn) return false;
    const uint64_t h = hash(uid);
    Shard& shard = shard_for(h);
    std::lock_guard lock(shard.mutex);

    const uint32_t i = lookup(shard.slots, shard.capacity, uid, h);
    if (i == kNotFound) return false;
    Record* r = record_of(shard.slots[i]);
    const size_t n = count(r);
    const size_t pos = size_t(std::lower_bound(flags(r), flags(r) + n, device_flag) - flags(r));
    if (pos == n || flags(r)[pos] != device_flag || sessions(r)[pos] != conn) return false;
    --shard.sessions;

    if (n == 1) {  // the uid's last session: the record and its slot go
        shard.record_bytes -= malloc_cost(record_size(cap(r), r->uid_len));
        erase_at(shard.slots, shard.capacity, i);
        std::free(r);
        --shard.records;
        if (too_empty(shard.records, shard.capacity))  // best effort: on failure the table stays as it is
            resize_table(shard.slots, shard.capacity, std::max(kInitialSlots, shard.records * 2));
        return true;
    }

    std::memmove(sessions(r) + pos, sessions(r) + pos + 1, (n - 1 - pos) * sizeof(net::ConnId));
    std::memmove(flags(r) + pos, flags(r) + pos + 1, n - 1 - pos);
    r->count_m1 = uint8_t(n - 2);  // n - 1 sessions
    const size_t c = cap(r);
    if ((n - 1) * 4 <= c) {  // a quarter full: move to a record half the size (best effort)
        if (Record* s = new_record(c / 2, r->hash, {uid_bytes(r), r->uid_len}, n - 1)) {
            std::memcpy(sessions(s), sessions(r), (n - 1) * sizeof(net::ConnId));
            std::memcpy(flags(s), flags(r), n - 1);
            shard.record_bytes -= malloc_cost(record_size(c, r->uid_len)) - malloc_cost(record_size(c / 2, r->uid_len));
            shard.slots[i] = make_word(s, tag_of_word(shard.slots[i]));
            std::free(r);
        }
    }
    return true;
}

net::ConnId Directory::find(std::string_view uid, uint8_t device_flag) const {
    if (uid.size() > kMaxUid) return {};
    const uint64_t h = hash(uid);
    const Shard& shard = shard_for(h);
    std::lock_guard lock(shard.mutex);
    const uint32_t i = lookup(shard.slots, shard.capacity, uid, h);
    if (i == kNotFound) return {};
    const Record* r = record_of(shard.slots[i]);
    const size_t n = count(r);
    const size_t pos = size_t(std::lower_bound(flags(r), flags(r) + n, device_flag) - flags(r));
    return pos < n && flags(r)[pos] == device_flag ? sessions(r)[pos] : net::ConnId{};
}

size_t Directory::find_all(std::string_view uid, std::vector<DirectoryEntry>& out) const {
    if (uid.size() > kMaxUid) return 0;
    const uint64_t h = hash(uid);
    const Shard& shard = shard_for(h);
    std::lock_guard lock(shard.mutex);
    const uint32_t i = lookup(shard.slots, shard.capacity, uid, h);
    if (i == kNotFound) return 0;
    const Record* r = record_of(shard.slots[i]);
    const size_t n = count(r);
    for (size_t k = 0; k < n; ++k) out.push_back(DirectoryEntry{sessions(r)[k], flags(r)[k]});
    return n;
}

size_t Directory::size() const {
    size_t n = 0;
    for (size_t s = 0; s < (size_t(1) << shard_bits_); ++s) {
        std::lock_guard lock(shards_[s].mutex);
        n += shards_[s].sessions;
    }
    return n;
}

size_t Directory::bytes_in_use() const {
    const size_t shard_count = size_t(1) << shard_bits_;
    size_t n = shard_count * sizeof(Shard);
    for (size_t s = 0; s < shard_count; ++s) {
        std::lock_guard lock(shards_[s].mutex);
        if (shards_[s].capacity) n += malloc_cost(size_t(shards_[s].capacity) * sizeof(uint64_t));
        n += shards_[s].record_bytes;
    }
    return n;
}

}  // namespace limaoim::im
