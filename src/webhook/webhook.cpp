#include "limaoim/webhook/webhook.h"
#include "limaoim/log/clock.h"
#include "limaoim/log/log.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "limaoim/apijson/message_json.h"
#include "limaoim/im/message.h"
#include "limaoim/stats/layout.h"
#include "limaoim/store/store.h"

namespace limaoim::webhook {

namespace {

void curl_init_once() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t discard_body(char*, size_t size, size_t n, void*) { return size * n; }

CURLM* multi_of(void* p) { return static_cast<CURLM*>(p); }

uint32_t next_backoff(uint32_t current, const Options& o) {
    if (current == 0) return std::max<uint32_t>(o.backoff_initial_ms, 1);
    return uint32_t(std::min<uint64_t>(uint64_t(current) * 2, std::max(o.backoff_max_ms, o.backoff_initial_ms)));
}

const char* event_name(int kind) {  // by Sender::Kind
    static const char* const names[] = {"user.onlinestatus", "msg.offline", "msg.notify"};
    return names[kind];
}

}  // namespace

// One HTTP request on the multi handle; owned by the sender thread.
struct Sender::Call {
    Kind kind = Kind::Online;
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    std::string url;
    std::string body;
    char error[CURL_ERROR_SIZE] = {};

    ~Call() {
        if (easy) curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
    }
};

Sender::Sender(std::string url, const Options& options, store::Store& store, stats::PipelineBlock& stats)
    : url_(std::move(url)), options_(options), store_(store), stats_(stats) {
    curl_init_once();
    multi_ = curl_multi_init();
    // The notify queue's size before anything is queued: notify_has_room()
    // needs it from the committer's first batch on.
    uint64_t count = 0;
    if (store::Status s = store_.count_notify(count)) {
        notify_count_.store(count);
        count_known_ = true;
    } else {
        store_failing_.store(true);
        store_failures_.fetch_add(1);
        log::write(log::Level::Error, "webhook", "counting the msg.notify queue: %s (retried)", s.error.c_str());
    }
    if (!multi_) {
        log::write(log::Level::Error, "webhook", "curl_multi_init failed; no webhook is sent");
        return;
    }
    thread_ = std::thread([this] { run(); });
}

Sender::~Sender() {
    stop();
    if (multi_) curl_multi_cleanup(multi_of(multi_));
}

void Sender::stop() {
    stopping_.store(true);
    wake_pending_.store(false);
    wake();
    std::lock_guard lock(stop_mutex_);
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void Sender::wake() {
    if (!multi_ || wake_pending_.exchange(true)) return;
    curl_multi_wakeup(multi_of(multi_));
}

// ---- producers (any thread) ----

void Sender::online_status(std::string_view uid, uint8_t device_flag, bool online) {
    std::string entry;
    entry.reserve(uid.size() + 6);
    entry.append(uid);
    entry += '-';
    entry += std::to_string(device_flag);
    entry += online ? "-1" : "-0";
    bool was_empty = false;
    {
        std::lock_guard lock(mutex_);
        if (online_queue_.size() >= options_.online_queue_max || stopping_.load(std::memory_order_relaxed)) {
            online_dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        was_empty = online_queue_.empty();
        online_queue_.push_back(std::move(entry));
        online_queued_.store(online_queue_.size(), std::memory_order_relaxed);
    }
    if (was_empty) wake();
}

void Sender::offline_message(std::string_view message, std::vector<std::string>&& to_uids) {
    bool was_empty = false;
    {
        std::lock_guard lock(mutex_);
        size_t bytes = message.size();
        for (const std::string& uid : to_uids) bytes += uid.size() + sizeof(std::string);
        if (offline_queue_.size() >= options_.offline_queue_max ||
            offline_queue_bytes_ + bytes > options_.offline_queue_bytes_max ||
            stopping_.load(std::memory_order_relaxed)) {
            offline_dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        was_empty = offline_queue_.empty();
        offline_queue_bytes_ += bytes;
        offline_queue_.push_back({std::string(message), std::move(to_uids), bytes});
    }
    if (was_empty) wake();
}

bool Sender::notify_has_room(size_t pending) {
    if (notify_count_.load(std::memory_order_relaxed) + pending + 1 <= options_.queue_max) return true;
    notify_dropped_.fetch_add(1, std::memory_order_relaxed);
    last_notify_drop_ms_.store(clock::steady_ms(), std::memory_order_relaxed);
    return false;
}

void Sender::notify_queued(size_t n) {
    notify_count_.fetch_add(n);
    if (!notify_more_.exchange(true)) wake();
}

bool Sender::healthy(std::string& why) const {
    const uint64_t count = notify_count_.load(std::memory_order_relaxed);
    if (count >= options_.queue_max) {
        why = "webhook: the msg.notify queue is full (" + std::to_string(count) + " events; is the webhook receiver up?)";
        return false;
    }
    const int64_t dropped_at = last_notify_drop_ms_.load(std::memory_order_relaxed);
    if (dropped_at >= 0 && clock::steady_ms() - dropped_at < int64_t(options_.drop_health_window_ms)) {
        why = "webhook: msg.notify events were dropped in the last " +
              std::to_string(options_.drop_health_window_ms / 1000) + " s (queue at its bound of " +
              std::to_string(options_.queue_max) + ")";
        return false;
    }
    if (store_failing_.load(std::memory_order_relaxed)) {
        why = "webhook: reading the msg.notify queue from the store failed";
        return false;
    }
    return true;
}

// ---- the sender thread ----

void Sender::run() {
    CURLM* multi = multi_of(multi_);
    int64_t stop_deadline = -1;
    for (;;) {
        wake_pending_.store(false);
        int64_t now = clock::steady_ms();
        if (stopping_.load()) {
            if (stop_deadline < 0) stop_deadline = now + options_.timeout_ms;
            if (calls_.empty() || now >= stop_deadline) break;
        } else {
            start_online(now);
            start_offline();
            start_notify(now);
        }
        int running = 0;
        curl_multi_perform(multi, &running);
        bool finished_any = false;
        int left = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
            if (msg->msg != CURLMSG_DONE) continue;
            Call* call = nullptr;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &call);
            const CURLcode result = msg->data.result;
            long status = 0;
            if (result == CURLE_OK) curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            std::string failure;
            if (result != CURLE_OK)
                failure = call->error[0] ? call->error : curl_easy_strerror(result);
            else if (status != 200)
                failure = "HTTP " + std::to_string(status);
            curl_multi_remove_handle(multi, msg->easy_handle);
            finish(call, failure, clock::steady_ms());
            finished_any = true;
        }
        publish();
        if (finished_any) continue;  // start what waited for those calls
        now = clock::steady_ms();
        int wait = next_wait_ms(now);
        if (stop_deadline >= 0) wait = int(std::clamp<int64_t>(stop_deadline - now, 0, wait));
        if (curl_multi_poll(multi, nullptr, 0, wait, nullptr) != CURLM_OK)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // Calls still in flight at the stop deadline are abandoned: a notify
    // batch stays in the store and is sent again by the next start.
    for (auto& [call, owned] : calls_) curl_multi_remove_handle(multi, call->easy);
    calls_.clear();
    {
        std::lock_guard lock(mutex_);
        online_dropped_.fetch_add(online_queue_.size() + online_batch_.size(), std::memory_order_relaxed);
        offline_dropped_.fetch_add(offline_queue_.size(), std::memory_order_relaxed);
        online_queue_.clear();
        offline_queue_.clear();
        offline_queue_bytes_ = 0;
        online_queued_.store(0);
    }
    online_batch_.clear();
    publish();
}

bool Sender::start_call(Kind kind, std::string body, std::string event_id) {
    auto call = std::make_unique<Call>();
    call->kind = kind;
    call->body = std::move(body);
    // §12.1: the query is appended as is, also to a URL that has one.
    call->url = url_ + "?event=" + event_name(int(kind));
    call->headers = curl_slist_append(call->headers, "Content-Type: application/json");
    call->headers = curl_slist_append(call->headers, "Expect:");  // no 100-continue round trip
    if (!event_id.empty()) call->headers = curl_slist_append(call->headers, ("X-Limaoim-Event-Id: " + event_id).c_str());
    CURL* easy = curl_easy_init();
    if (!easy || !call->headers) {
        finish_failed_start(kind, "curl_easy_init failed");
        return false;
    }
    call->easy = easy;
    curl_easy_setopt(easy, CURLOPT_URL, call->url.c_str());
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(call->body.size()));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, long(options_.timeout_ms));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, call->error);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, call.get());
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (curl_multi_add_handle(multi_of(multi_), easy) != CURLM_OK) {
        finish_failed_start(kind, "curl_multi_add_handle failed");
        return false;
    }
    Call* raw = call.get();
    calls_.emplace(raw, std::move(call));
    return true;
}

// A call that could not even start counts as a failed call.
void Sender::finish_failed_start(Kind kind, const char* why) {
    stats_.webhook_calls.add();
    stats_.webhook_failures.add();
    log_failure(kind, why);
}

void Sender::log_failure(Kind kind, const std::string& what) {
    // At most one line per event kind every 10 s, with the count since.
    const int index = int(kind);
    ++failures_unlogged_[index];
    const int64_t now = clock::steady_ms();
    if (last_log_ms_[index] != 0 && now - last_log_ms_[index] < 10000) return;
    log::write(log::Level::Warn, "webhook", "%s failed: %s (%llu failures since the last report)", event_name(int(kind)),
                 what.c_str(), static_cast<unsigned long long>(failures_unlogged_[index]));
    failures_unlogged_[index] = 0;
    last_log_ms_[index] = now;
}

void Sender::start_online(int64_t now) {
    if (online_in_flight_) return;
    if (online_batch_.empty()) {
        std::lock_guard lock(mutex_);
        const size_t n = std::min(online_queue_.size(), std::max<size_t>(options_.online_batch, 1));
        if (n == 0) return;
        online_batch_.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            online_batch_.push_back(std::move(online_queue_.front()));
            online_queue_.pop_front();
        }
        online_queued_.store(online_queue_.size(), std::memory_order_relaxed);
    } else if (now < online_retry_at_) {
        return;
    }
    nlohmann::ordered_json body = nlohmann::ordered_json::array();
    for (const std::string& entry : online_batch_) body.push_back(entry);
    if (start_call(Kind::Online, apijson::dump(body), {})) {
        online_in_flight_ = true;
    } else {
        online_backoff_ms_ = next_backoff(online_backoff_ms_, options_);
        online_retry_at_ = now + online_backoff_ms_;
    }
}

void Sender::set_presence_filter(PresenceFilter filter) { presence_filter_ = std::move(filter); }

void Sender::start_offline() {
    while (offline_in_flight_ < std::max<size_t>(options_.offline_concurrency, 1)) {
        Offline item;
        {
            std::lock_guard lock(mutex_);
            if (offline_queue_.empty()) return;
            item = std::move(offline_queue_.front());
            offline_queue_.pop_front();
            offline_queue_bytes_ -= item.bytes;
        }
        // Redis's presence says who has a session elsewhere; if it cannot
        // be asked, they count as offline: one push too many, never one missing.
        if (presence_filter_) presence_filter_(item.to_uids);
        if (item.to_uids.empty()) continue;
        std::optional<im::MessageView> message = im::decode(item.message);
        if (!message) {
            ++offline_failed_;
            log_failure(Kind::Offline, "a message that does not decode");
            continue;
        }
        nlohmann::ordered_json body = apijson::message_resp(*message);
        body["to_uids"] = std::move(item.to_uids);
        if (start_call(Kind::Offline, apijson::dump(body), {}))
            ++offline_in_flight_;
        else
            ++offline_failed_;
    }
}

void Sender::store_failed(const std::string& what, int64_t now) {
    store_failures_.fetch_add(1, std::memory_order_relaxed);
    if (!store_failing_.exchange(true))
        log::write(log::Level::Error, "webhook", "%s (retried with backoff)", what.c_str());
    notify_backoff_ms_ = next_backoff(notify_backoff_ms_, options_);
    notify_next_at_ = now + notify_backoff_ms_;
}

void Sender::store_ok() {
    if (store_failing_.exchange(false)) log::write(log::Level::Info, "webhook", "the msg.notify queue is readable again");
}

void Sender::notify_count_sub(uint64_t n) {
    uint64_t count = notify_count_.load();
    while (!notify_count_.compare_exchange_weak(count, count > n ? count - n : 0)) {
    }
}

// After HTTP 200: the batch leaves the store.
bool Sender::notify_delete(int64_t now) {
    if (store::Status s = store_.delete_notify(notify_first_, notify_last_); !s) {
        notify_delete_pending_ = true;
        store_failed("removing msg.notify events " + std::to_string(notify_first_) + "-" +
                         std::to_string(notify_last_) + " after HTTP 200: " + s.error,
                     now);
        return false;
    }
    store_ok();
    notify_delete_pending_ = false;
    notify_read_after_ = notify_last_;
    notify_count_sub(notify_events_);
    notify_sent_ += notify_events_;
    notify_events_ = 0;
    notify_body_.clear();
    notify_backoff_ms_ = 0;
    notify_next_at_ = now + options_.notify_scan_ms;
    return true;
}

void Sender::start_notify(int64_t now) {
    if (notify_in_flight_) return;
    if (notify_delete_pending_) {
        if (now < notify_next_at_ || !notify_delete(now)) return;
    }
    if (notify_events_ == 0) {
        // Between batches: the scan interval, unless more is known to wait.
        const bool more = notify_more_.load() || notify_full_read_;
        if (now < notify_next_at_ && !more) return;
        if (store_failing_.load() && now < notify_next_at_) return;  // a store failure's backoff
        if (!count_known_) {
            uint64_t count = 0;
            if (store::Status s = store_.count_notify(count); !s) {
                store_failed("counting the msg.notify queue: " + s.error, now);
                return;
            }
            notify_count_.store(count);  // the store's figure includes what notify_queued() added
            count_known_ = true;
        }
        notify_more_.store(false);
        const uint64_t seen = notify_count_.load();
        std::vector<store::NotifyEvent> events;
        const uint32_t limit = std::max<uint32_t>(options_.notify_batch, 1);
        if (store::Status s = store_.read_notify(notify_read_after_, limit, events); !s) {
            store_failed("reading the msg.notify queue: " + s.error, now);
            return;
        }
        store_ok();
        notify_full_read_ = events.size() == limit;
        if (events.empty()) {
            // The count drifted (or never was): nothing is queued. Unless
            // notify_queued() added to it since the read.
            uint64_t expected = seen;
            notify_count_.compare_exchange_strong(expected, 0);
            notify_next_at_ = now + options_.notify_scan_ms;
            return;
        }
        nlohmann::ordered_json body = nlohmann::ordered_json::array();
        for (const store::NotifyEvent& event : events) {
            if (std::optional<im::MessageView> message = im::decode(std::span<const uint8_t>(event.bytes)))
                body.push_back(apijson::message_resp(*message));
            else
                log::write(log::Level::Error, "webhook", "msg.notify event %lld does not decode; skipped",
                             static_cast<long long>(event.id));
        }
        notify_first_ = events.front().id;
        notify_last_ = events.back().id;
        notify_events_ = events.size();
        if (body.empty()) {  // nothing to send: only corrupt events
            notify_delete(now);
            return;
        }
        notify_body_ = apijson::dump(body);
    } else if (now < notify_next_at_) {
        return;  // the failed batch waits for its backoff
    }
    if (start_call(Kind::Notify, notify_body_, std::to_string(notify_first_) + "-" + std::to_string(notify_last_))) {
        notify_in_flight_ = true;
    } else {
        notify_backoff_ms_ = next_backoff(notify_backoff_ms_, options_);
        notify_next_at_ = now + notify_backoff_ms_;
    }
}

void Sender::finish(Call* call, const std::string& failure, int64_t now) {
    const Kind kind = call->kind;
    calls_.erase(call);  // frees it
    stats_.webhook_calls.add();
    const bool ok = failure.empty();
    if (!ok) {
        stats_.webhook_failures.add();
        log_failure(kind, failure);
    }
    switch (kind) {
    case Kind::Online:
        online_in_flight_ = false;
        if (ok) {
            online_batch_.clear();
            online_backoff_ms_ = 0;
        } else {
            online_backoff_ms_ = next_backoff(online_backoff_ms_, options_);
            online_retry_at_ = now + online_backoff_ms_;
        }
        break;
    case Kind::Offline:
        --offline_in_flight_;
        if (!ok) ++offline_failed_;
        break;
    case Kind::Notify:
        notify_in_flight_ = false;
        if (ok) {
            notify_delete(now);
        } else {
            notify_backoff_ms_ = next_backoff(notify_backoff_ms_, options_);
            notify_next_at_ = now + notify_backoff_ms_;
        }
        break;
    }
}

int Sender::next_wait_ms(int64_t now) const {
    int64_t wait = 1000;
    if (!online_in_flight_ && !online_batch_.empty()) wait = std::min(wait, online_retry_at_ - now);
    if (!notify_in_flight_) wait = std::min(wait, notify_next_at_ - now);
    return int(std::max<int64_t>(wait, 0));
}

void Sender::publish() {
    const uint64_t online_dropped = online_dropped_.load(std::memory_order_relaxed);
    const uint64_t offline_dropped = offline_dropped_.load(std::memory_order_relaxed) + offline_failed_;
    const uint64_t notify_dropped = notify_dropped_.load(std::memory_order_relaxed);
    stats_.webhook_online_queue.set(online_queued_.load(std::memory_order_relaxed) + online_batch_.size());
    stats_.webhook_online_dropped.add(online_dropped - published_.online_dropped);
    stats_.webhook_offline_dropped.add(offline_dropped - published_.offline_dropped);
    stats_.webhook_notify_queue.set(notify_count_.load(std::memory_order_relaxed));
    stats_.webhook_notify_sent.add(notify_sent_ - published_.notify_sent);
    stats_.webhook_notify_dropped.add(notify_dropped - published_.notify_dropped);
    published_ = {online_dropped, offline_dropped, notify_sent_, notify_dropped};
}

}  // namespace limaoim::webhook
