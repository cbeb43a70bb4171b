// The business server as datasource (SERVER.md §13): im::Datasource over
// HTTP. Each fetch is one blocking `POST {url}` with
//   {"cmd":"getSubscribers"|"getBlacklist"|"getWhitelist"|"getSystemUIDs",
//    "data":{"channel_id":"...","channel_type":n}}   ({} for getSystemUIDs)
// and Content-Type: application/json; the answer must be HTTP 200 with a
// JSON array of strings. Anything else is false with an error naming the
// command, the channel and the cause, e.g.
//   "datasource: getSubscribers g1/2: timeout after 2000 ms"
//   "datasource: getBlacklist g1/2: HTTP 500"
//   "datasource: getSystemUIDs: answer is not a JSON array of strings"
//
// Calls may run on several threads at once (the IM core's resolver threads),
// each with a libcurl easy handle of its own taken from a pool and put back
// after, so connections stay open between calls. Caching (§7.6) is the
// caller's.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "limaoim/im/datasource.h"

namespace limaoim::datasource {

struct Options {
    uint32_t timeout_ms = 5000;            // every call, connect included
    size_t max_answer_bytes = 64u << 20;   // a longer answer is an error
};

class HttpDatasource final : public im::Datasource {
public:
    // `url`: the configured datasource (non-empty). The caller counts the
    // calls and failures (stats::PipelineBlock datasource_*).
    HttpDatasource(std::string url, const Options& options);
    ~HttpDatasource() override;
    HttpDatasource(const HttpDatasource&) = delete;
    HttpDatasource& operator=(const HttpDatasource&) = delete;

    bool fetch(Query query, std::string_view channel_id, uint8_t channel_type, std::vector<std::string>& uids,
               std::string& error) override;

    // "getSubscribers" ... (SERVER.md §13).
    static const char* command(Query query);

private:
    const std::string url_;
    const Options options_;
    std::mutex mutex_;
    std::vector<void*> idle_;  // CURL* handles not in a call; at most one per caller thread

};

}  // namespace limaoim::datasource
