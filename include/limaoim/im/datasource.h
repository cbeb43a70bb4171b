// The business server as the source of channel members, lists and system
// uids (SERVER.md §13), instead of the store. Optional: off unless
// --datasource is set. The HTTP client is datasource/http_datasource.h;
// the IM core sees only this interface.
//
// Calls block for up to the implementation's timeout, so the core makes
// them on its committer thread only, never on a worker ring.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace limaoim::im {

class Datasource {
public:
    enum class Query : uint8_t { Subscribers, Denylist, Allowlist, SystemUids };

    virtual ~Datasource() = default;
    // The uids the business server answers for `query` about the channel
    // (ignored for SystemUids). False with `error` on a timeout, a status
    // other than 200 or an answer that is not a JSON array of strings.
    virtual bool fetch(Query query, std::string_view channel_id, uint8_t channel_type,
                       std::vector<std::string>& uids, std::string& error) = 0;
};

}  // namespace limaoim::im
