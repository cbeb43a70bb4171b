// datasource/http_datasource.h: the business server as datasource (SERVER.md
// §13) against a local HTTP receiver.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "http_receiver.h"
#include "limaoim/datasource/http_datasource.h"

using namespace limaoim;
using limaoim::testing::HttpReceiver;
using limaoim::testing::Reply;
using nlohmann::json;
using Query = im::Datasource::Query;
using namespace std::chrono_literals;

namespace {

datasource::Options fast() {
    datasource::Options o;
    o.timeout_ms = 200;
    return o;
}

}  // namespace

TEST_CASE("datasource: each command's request and a good answer") {
    HttpReceiver receiver;
    datasource::HttpDatasource source(receiver.url("/ds"), fast());
    std::vector<std::string> uids;
    std::string error;

    receiver.push_reply({200, 0, false, R"(["alice","bob"])"});
    REQUIRE(source.fetch(Query::Subscribers, "g1", 2, uids, error));
    CHECK(uids == std::vector<std::string>{"alice", "bob"});
    CHECK(error.empty());

    receiver.push_reply({200, 0, false, R"([])"});
    REQUIRE(source.fetch(Query::Denylist, "u1", 1, uids, error));
    CHECK(uids.empty());
    receiver.push_reply({200, 0, false, R"(["c"])"});
    REQUIRE(source.fetch(Query::Allowlist, "g1", 2, uids, error));
    CHECK(uids == std::vector<std::string>{"c"});
    receiver.push_reply({200, 0, false, R"(["sys"])"});
    REQUIRE(source.fetch(Query::SystemUids, "", 0, uids, error));
    CHECK(uids == std::vector<std::string>{"sys"});

    const auto requests = receiver.requests();
    REQUIRE(requests.size() == 4);
    for (const auto& r : requests) {
        CHECK(r.method == "POST");
        CHECK(r.target == "/ds");
        CHECK(r.header("content-type") == "application/json");
    }
    CHECK(json::parse(requests[0].body) == json::parse(R"({"cmd":"getSubscribers","data":{"channel_id":"g1","channel_type":2}})"));
    CHECK(json::parse(requests[1].body) == json::parse(R"({"cmd":"getBlacklist","data":{"channel_id":"u1","channel_type":1}})"));
    CHECK(json::parse(requests[2].body) == json::parse(R"({"cmd":"getWhitelist","data":{"channel_id":"g1","channel_type":2}})"));
    CHECK(json::parse(requests[3].body) == json::parse(R"({"cmd":"getSystemUIDs","data":{}})"));
    CHECK(receiver.connections() == 1);  // one handle, its connection kept
}

TEST_CASE("datasource: failures, each with its error text") {
    HttpReceiver receiver;
    datasource::HttpDatasource source(receiver.url("/ds"), fast());
    std::vector<std::string> uids{"kept"};
    std::string error;

    SUBCASE("HTTP 500") {
        receiver.push_reply({500, 0, false, R"(["a"])"});
        CHECK_FALSE(source.fetch(Query::Subscribers, "group1", 2, uids, error));
        CHECK(error == "datasource: getSubscribers group1/2: HTTP 500");
    }
    SUBCASE("timeout") {
        receiver.push_reply({200, 0, true});
        const auto started = std::chrono::steady_clock::now();
        CHECK_FALSE(source.fetch(Query::Subscribers, "group1", 2, uids, error));
        CHECK(std::chrono::steady_clock::now() - started < 1s);
        CHECK(error == "datasource: getSubscribers group1/2: timeout after 200 ms");
        // The next call works (a new connection).
        receiver.release();
        receiver.push_reply({200, 0, false, R"(["z"])"});
        CHECK(source.fetch(Query::Subscribers, "group1", 2, uids, error));
        CHECK(uids == std::vector<std::string>{"z"});
        uids = {"kept"};
    }
    SUBCASE("malformed JSON") {
        receiver.push_reply({200, 0, false, R"(["a",)"});
        CHECK_FALSE(source.fetch(Query::Denylist, "g", 2, uids, error));
        CHECK(error == "datasource: getBlacklist g/2: answer is not a JSON array of strings");
    }
    SUBCASE("an array of something else") {
        receiver.push_reply({200, 0, false, R"(["a",1])"});
        CHECK_FALSE(source.fetch(Query::Allowlist, "g", 2, uids, error));
        CHECK(error == "datasource: getWhitelist g/2: answer is not a JSON array of strings");
    }
    SUBCASE("an object") {
        receiver.push_reply({200, 0, false, R"({"uids":["a"]})"});
        CHECK_FALSE(source.fetch(Query::SystemUids, "", 0, uids, error));
        CHECK(error == "datasource: getSystemUIDs: answer is not a JSON array of strings");
    }
    SUBCASE("nobody listening") {
        datasource::HttpDatasource gone("http://127.0.0.1:1/ds", fast());
        CHECK_FALSE(gone.fetch(Query::Subscribers, "g", 2, uids, error));
        CHECK(error.rfind("datasource: getSubscribers g/2: ", 0) == 0);
        CHECK(error.size() > std::string("datasource: getSubscribers g/2: ").size());
    }
    CHECK(uids == std::vector<std::string>{"kept"});  // untouched on failure
}

TEST_CASE("datasource: null is an empty list (how Go encodes an empty []string)") {
    HttpReceiver receiver;
    datasource::HttpDatasource source(receiver.url("/ds"), fast());
    receiver.push_reply({200, 0, false, "null"});
    std::vector<std::string> uids{"stale"};
    std::string error;
    CHECK(source.fetch(datasource::HttpDatasource::Query::Denylist, "g", 2, uids, error));
    CHECK(uids.empty());
}
