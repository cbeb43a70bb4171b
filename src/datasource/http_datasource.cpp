#include "limaoim/datasource/http_datasource.h"

#include <curl/curl.h>

#include <mutex>
#include <nlohmann/json.hpp>

namespace limaoim::datasource {

namespace {

void curl_init_once() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Answer {
    std::string body;
    size_t limit = 0;
    bool too_long = false;
};

size_t collect(char* data, size_t size, size_t n, void* user) {
    auto* answer = static_cast<Answer*>(user);
    const size_t bytes = size * n;
    if (answer->body.size() + bytes > answer->limit) {
        answer->too_long = true;
        return 0;  // ends the transfer with CURLE_WRITE_ERROR
    }
    answer->body.append(data, bytes);
    return bytes;
}

}  // namespace

const char* HttpDatasource::command(Query query) {
    switch (query) {
    case Query::Subscribers:
        return "getSubscribers";
    case Query::Denylist:
        return "getBlacklist";
    case Query::Allowlist:
        return "getWhitelist";
    case Query::SystemUids:
        break;
    }
    return "getSystemUIDs";
}

HttpDatasource::HttpDatasource(std::string url, const Options& options) : url_(std::move(url)), options_(options) {
    curl_init_once();
}

HttpDatasource::~HttpDatasource() {
    for (void* easy : idle_) curl_easy_cleanup(static_cast<CURL*>(easy));
}

bool HttpDatasource::fetch(Query query, std::string_view channel_id, uint8_t channel_type,
                           std::vector<std::string>& uids, std::string& error) {
    const char* cmd = command(query);
    std::string what = std::string("datasource: ") + cmd;
    nlohmann::json request;
    request["cmd"] = cmd;
    if (query == Query::SystemUids) {
        request["data"] = nlohmann::json::object();
    } else {
        request["data"] = {{"channel_id", channel_id}, {"channel_type", channel_type}};
        what += ' ';
        what.append(channel_id);
        what += '/' + std::to_string(channel_type);
    }
    const std::string body = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    auto fail = [&](const std::string& cause) {
        error = what + ": " + cause;
        return false;
    };

    CURL* easy = nullptr;
    {
        std::lock_guard lock(mutex_);
        if (!idle_.empty()) {
            easy = static_cast<CURL*>(idle_.back());
            idle_.pop_back();
        }
    }
    if (easy)
        curl_easy_reset(easy);  // keeps the open connection, forgets the last call's options
    else if (!(easy = curl_easy_init()))
        return fail("curl_easy_init failed");
    struct PutBack {
        HttpDatasource& owner;
        CURL* easy;
        ~PutBack() {
            std::lock_guard lock(owner.mutex_);
            owner.idle_.push_back(easy);
        }
    } put_back{*this, easy};
    Answer answer;
    answer.limit = options_.max_answer_bytes;
    char curl_error[CURL_ERROR_SIZE] = {};
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(easy, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.size()));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, long(options_.timeout_ms));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, curl_error);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    const CURLcode result = curl_easy_perform(easy);
    long status = 0;
    if (result == CURLE_OK) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, nullptr);
    curl_slist_free_all(headers);

    if (result == CURLE_OPERATION_TIMEDOUT)
        return fail("timeout after " + std::to_string(options_.timeout_ms) + " ms");
    if (answer.too_long)
        return fail("answer longer than " + std::to_string(options_.max_answer_bytes) + " bytes");
    if (result != CURLE_OK) return fail(curl_error[0] ? curl_error : curl_easy_strerror(result));
    if (status != 200) return fail("HTTP " + std::to_string(status));

    const nlohmann::json value = nlohmann::json::parse(answer.body, nullptr, false);
    // A Go business server encodes an empty []string as null: the original takes it as empty.
    if (value.is_null() && !value.is_discarded()) {
        uids.clear();
        return true;
    }
    if (!value.is_array()) return fail("answer is not a JSON array of strings");
    std::vector<std::string> out;
    out.reserve(value.size());
    for (const nlohmann::json& item : value) {
        if (!item.is_string()) return fail("answer is not a JSON array of strings");
        out.push_back(item.get<std::string>());
    }
    uids = std::move(out);
    return true;
}

}  // namespace limaoim::datasource
