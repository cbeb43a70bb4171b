// Who is online where: uid -> every session of that uid, one per device
// flag (0..255), each a net::ConnId. The only structure the workers share
// (DESIGN.md "Threads"); at most one session per (uid, device flag), which is
// what enforces one session per device class (SERVER.md §3).
//
// Layout (directory.cpp has the details):
// - 2^shard_bits shards, picked by the top bits of the uid's hash, each an
//   open-addressing table behind its own mutex;
// - a table slot is one 8-byte word: a pointer to the uid's record with a
//   16-bit hash tag in its top bits (0 = empty); linear probing, backward-
//   shift deletion (no tombstones), grown by 1.5x above load 0.8, shrunk
//   below 0.2;
// - one record per online uid, one malloc: a small header, the sessions and
//   their device flags (sorted by device flag) and the uid's bytes. The
//   directory owns its uid bytes; a record is freed with its last session.
// - the hash is SipHash-1-3 keyed per process (getrandom at construction),
//   so chosen uids cannot build long probe chains.
//
// Memory per single-device uid: a record of 17 + uid bytes (48 bytes of
// glibc heap for uids of up to 23 bytes, 32-40 in mimalloc) plus 10-15 bytes
// of table; bytes_in_use() counts it as glibc would, and the unit test checks
// it stays <= 64 bytes per session for 100k uids of 10-20 bytes.
//
// Nothing here throws after construction except find_all() growing the
// caller's vector; allocation failure in replace() is reported, not thrown.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "limaoim/net/conn_id.h"

namespace limaoim::im {

struct DirectoryEntry {
    net::ConnId conn;
    uint8_t device_flag = 0;
    bool operator==(const DirectoryEntry&) const = default;
};

class Directory {
public:
    static constexpr size_t kMaxUid = 65535;  // the protocol's uid is a uint16-length string

    struct ReplaceResult {
        net::ConnId replaced;  // the session this one replaced (the caller kicks it), or empty
        bool ok = true;        // false: out of memory or uid longer than kMaxUid; nothing changed
    };

    explicit Directory(uint32_t shard_bits = 6);  // 2^shard_bits shards, shard_bits 1..16; key from getrandom()
    Directory(uint32_t shard_bits, std::array<uint64_t, 2> hash_key);  // tests: a fixed SipHash key
    ~Directory();
    Directory(const Directory&) = delete;
    Directory& operator=(const Directory&) = delete;

    // Points (uid, device_flag) at `conn` (non-empty). On failure (ok false)
    // the directory is unchanged and the caller should refuse the login.
    [[nodiscard]] ReplaceResult replace(std::string_view uid, uint8_t device_flag, net::ConnId conn);
    // Removes the entry only while it still points at `conn`: a session
    // replaced by a newer login leaves the newer entry alone.
    bool remove(std::string_view uid, uint8_t device_flag, net::ConnId conn);
    // The session of (uid, device_flag), or an empty ConnId.
    net::ConnId find(std::string_view uid, uint8_t device_flag) const;
    // Every session of `uid` in ascending device flag order, appended to
    // `out` (not cleared); returns how many were appended (0..256). Reserve
    // 256 in `out` up front and this never allocates.
    size_t find_all(std::string_view uid, std::vector<DirectoryEntry>& out) const;
    size_t size() const;          // sessions
    size_t bytes_in_use() const;  // shards + tables + records (as glibc malloc sizes them)

private:
    struct alignas(64) Shard {
        mutable std::mutex mutex;
        uint64_t* slots = nullptr;  // `capacity` words: Record* | tag << 48, 0 = empty
        uint32_t capacity = 0;
        uint32_t records = 0;       // occupied slots = online uids
        size_t sessions = 0;
        size_t record_bytes = 0;
    };

    uint64_t hash(std::string_view uid) const;
    Shard& shard_for(uint64_t h) const { return shards_[h >> (64 - shard_bits_)]; }

    uint32_t shard_bits_;
    std::array<uint64_t, 2> key_;
    std::unique_ptr<Shard[]> shards_;
};

namespace detail {
// SipHash-c-d with 64-bit output (Aumasson & Bernstein, 2012); the directory
// uses c = 1, d = 3. key[0] / key[1] are the key's bytes 0..7 / 8..15 read
// little-endian. Exposed for the reference-vector test.
uint64_t siphash(std::array<uint64_t, 2> key, std::string_view data, int c_rounds = 1, int d_rounds = 3);

// Tests only: make the directory's next `n` allocations succeed and the ones
// after fail, until called again with a negative `n` (the default state).
void directory_fail_allocations_after(long n);
}  // namespace detail

}  // namespace limaoim::im
