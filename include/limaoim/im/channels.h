// Every channel the server knows, in memory (SERVER.md §7): group channels
// with their subscribers, users' person channels (which hold their allow and
// deny lists), temporary channels, and the system uids.
//
// Loaded whole from the store at start; every API change is written to the
// store first and then replaces the channel here, so it applies to the next
// SEND on any worker (§7.6 compatible rule). A channel is an immutable
// snapshot behind a shared_ptr: a SEND or a fan-out holds the version it
// looked up while an API call installs the next one.
//
// Thread-safe: workers, the committer and the fan-out thread read, API threads write.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "limaoim/store/store.h"

namespace limaoim::im {

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using UidSet = std::unordered_set<std::string, StringHash, std::equal_to<>>;

struct Channel {
    std::string id;
    uint8_t type = 0;
    std::string parent;      // set: every uid counts as a subscriber for the send check (§7.2)
    bool temporary = false;  // an @tmp channel of /message/send: memory only (§7.3)
    int64_t fetched_ms = 0;  // from the datasource at this steady-clock time (memory only); 0: not
    std::vector<std::string> subscribers;  // in the order they were added
    UidSet subscriber_set;
    UidSet allowlist;
    UidSet denylist;

    bool has_subscriber(std::string_view uid) const { return subscriber_set.contains(uid); }
    // Exactly `uids`, in their order, each once.
    void set_subscribers(const std::vector<std::string>& uids);
    store::ChannelRecord record() const;
    static Channel from(store::ChannelRecord&& record);
};

inline constexpr std::string_view kTemporarySuffix = "@tmp";

class Channels {
public:
    std::shared_ptr<const Channel> find(uint8_t type, std::string_view id) const;
    void put(Channel&& channel);
    // A copy of (type, id) to edit and put back, or a new channel with no subscribers.
    Channel copy_or_new(uint8_t type, std::string_view id) const;
    void erase(uint8_t type, std::string_view id);
    // Every stored channel at once (a reload from a shared store): channels
    // not in `stored` go, temporary ones stay.
    void replace_stored(std::vector<Channel>&& stored);
    size_t size() const;

    bool is_system(std::string_view uid) const;
    void set_system_uids(std::vector<std::string> uids);
    std::vector<std::string> system_uids() const;

    // §7.4: a system uid, or (allowlist non-empty ? in it : not in the denylist).
    bool allowed(const Channel& channel, std::string_view uid) const;

private:
    static std::string key(uint8_t type, std::string_view id) { return store::log_name(type, id); }

    // A plain mutex, not a shared one: every holder is brief (a hash lookup
    // and a shared_ptr copy), and glibc's reader-preferring rwlock let a
    // stream of SEND lookups starve an API write for seconds.
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<const Channel>, StringHash, std::equal_to<>> channels_;
    UidSet system_uids_;
};

}  // namespace limaoim::im
