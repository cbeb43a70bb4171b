// A small local HTTP/1.1 server for tests of HTTP clients (the webhook
// sender, the datasource): listens on 127.0.0.1, port 0 (the kernel picks),
// on a thread of its own; keeps connections alive; reads requests framed by
// Content-Length (no chunked bodies) and records each one, in arrival order.
// The answer to each request is programmable: a status, a delay, or a hang
// (no answer until release()).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace limaoim::testing {

struct ReceivedRequest {
    std::string method;
    std::string target;  // as sent: path?query
    std::string path;
    std::string query;   // after the first '?', undecoded
    std::map<std::string, std::string> headers;  // names lowercased
    std::string body;

    std::string header(const std::string& lowercase_name) const {
        auto it = headers.find(lowercase_name);
        return it == headers.end() ? std::string() : it->second;
    }
};

struct Reply {
    int status = 200;
    int delay_ms = 0;     // answered this long after the request is complete
    bool hang = false;    // never answered until release()
    std::string body;     // sent as is, with Content-Type: application/json
};

class HttpReceiver {
public:
    // Which reply request number `index` (0-based, in arrival order) gets.
    using Responder = std::function<Reply(const ReceivedRequest& request, size_t index)>;

    HttpReceiver();   // listening and running when it returns
    ~HttpReceiver();  // stop()
    HttpReceiver(const HttpReceiver&) = delete;
    HttpReceiver& operator=(const HttpReceiver&) = delete;

    uint16_t port() const { return port_; }
    std::string url(const std::string& path = "/hook") const;

    // Replies: a queued one per request first, then the responder, then the
    // default (200, empty body).
    void push_reply(const Reply& reply);
    void set_responder(Responder responder);
    void set_default(const Reply& reply);
    // Answers every hanging request now (with its Reply's status and body),
    // and every later request that would hang.
    void release();
    // Closes every connection, hanging ones included, without an answer.
    void drop_connections();

    std::vector<ReceivedRequest> requests() const;
    size_t count() const;
    // Waits until `predicate(requests so far)` is true; false on timeout.
    bool wait_for(const std::function<bool(const std::vector<ReceivedRequest>&)>& predicate,
                  std::chrono::milliseconds timeout) const;
    bool wait_count(size_t n, std::chrono::milliseconds timeout) const {
        return wait_for([n](const std::vector<ReceivedRequest>& r) { return r.size() >= n; }, timeout);
    }
    // Requests whose answer was sent (hangs excluded until released).
    size_t answered() const;
    // Connections accepted so far.
    size_t connections() const;

    void stop();

private:
    struct Connection;
    void run();
    void wake();

    int listen_fd_ = -1;
    int wake_fd_ = -1;  // eventfd
    uint16_t port_ = 0;
    std::thread thread_;

    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    std::vector<ReceivedRequest> requests_;
    std::deque<Reply> queued_;
    Responder responder_;
    Reply default_;
    bool released_ = false;
    bool drop_ = false;
    bool stopping_ = false;
    size_t answered_ = 0;
    size_t connections_ = 0;
};

}  // namespace limaoim::testing
