#include <doctest/doctest.h>

#include <chrono>
#include <thread>
#include <string>

#include "limaoim/redis/client.h"
#include "limaoim/redis/pool.h"
#include "ports.h"
#include "redis_server.h"

using namespace limaoim::redis;
using limaoim::testing::RedisServer;

namespace {

Url parsed(std::string_view text) {
    Url url;
    std::string error;
    INFO(text, " ", error);
    REQUIRE(parse_url(text, url, error));
    return url;
}

std::string parse_error(std::string_view text) {
    Url url;
    std::string error;
    INFO(text);
    CHECK_FALSE(parse_url(text, url, error));
    CHECK(!error.empty());
    return error;
}

}  // namespace

TEST_CASE("parse_url: redis:// and redis+sentinel:// forms") {
    Url url = parsed("redis://127.0.0.1:6379");
    REQUIRE(url.servers.size() == 1);
    CHECK(url.servers[0].host == "127.0.0.1");
    CHECK(url.servers[0].port == 6379);
    CHECK(url.db == 0);
    CHECK_FALSE(url.sentinel());

    url = parsed("redis://redis.internal:7000/3");
    CHECK(url.servers[0].host == "redis.internal");
    CHECK(url.db == 3);

    url = parsed("redis://[::1]:6380/1");
    CHECK(url.servers[0].host == "::1");
    CHECK(url.servers[0].port == 6380);

    url = parsed("redis+sentinel://s1:26379,s2:26380,10.0.0.3:26381/mymaster/2");
    REQUIRE(url.servers.size() == 3);
    CHECK(url.servers[1].host == "s2");
    CHECK(url.servers[1].port == 26380);
    CHECK(url.servers[2].host == "10.0.0.3");
    CHECK(url.master_name == "mymaster");
    CHECK(url.sentinel());
    CHECK(url.db == 2);

    url = parsed("redis+sentinel://s1:26379/mymaster");
    CHECK(url.db == 0);
}

TEST_CASE("parse_url: bad URLs say what is wrong") {
    CHECK(parse_error("http://h:1").find("redis://") != std::string::npos);
    CHECK(parse_error("").find("redis://") != std::string::npos);
    CHECK(parse_error("redis://").find("no HOST:PORT") != std::string::npos);
    CHECK(parse_error("redis://host").find("no :PORT") != std::string::npos);
    CHECK(parse_error("redis://:6379").find("no host") != std::string::npos);
    CHECK(parse_error("redis://h:0").find("port") != std::string::npos);
    CHECK(parse_error("redis://h:65536").find("port") != std::string::npos);
    CHECK(parse_error("redis://h:12ab").find("port") != std::string::npos);
    CHECK(parse_error("redis://h:1/x").find("not a number") != std::string::npos);
    CHECK(parse_error("redis://h:1/").find("not a number") != std::string::npos);
    CHECK(parse_error("redis://h:1/-1").find("not a number") != std::string::npos);
    CHECK(parse_error("redis://a:1,b:2").find("redis+sentinel://") != std::string::npos);
    CHECK(parse_error("redis://h:1?db=2").find("no query") != std::string::npos);
    CHECK(parse_error("redis+sentinel://s:1").find("master's name") != std::string::npos);
    CHECK(parse_error("redis+sentinel://s:1/").find("master's name") != std::string::npos);
    CHECK(parse_error("redis+sentinel://s:1/m/").find("not a number") != std::string::npos);
    CHECK(parse_error("redis+sentinel://s:1,/m").find("trailing comma") != std::string::npos);
    // A password never reaches the error (and so the log).
    for (const char* bad : {"redis://s3cret@h:1", "redis://u:s3cret%zz@h:1", "redis://u:s3cret@h:1?db=2",
                            "redis://u:s3cret@", "redis+sentinel://u:s3cret@s:1,/m"}) {
        const std::string error = parse_error(bad);
        CHECK_MESSAGE(error.find("s3cret") == std::string::npos, error);
    }
    CHECK(parse_error("redis://s3cret@h:1").find("USER:PASSWORD@") != std::string::npos);
    CHECK(parse_error("redis://u:s3cret%zz@h:1").find("%XX") != std::string::npos);
}

TEST_CASE("parse_url: credentials, percent-encoded; masked() hides the password") {
    Url url = parsed("redis://limaoim:s3cret@h:1/2");
    CHECK(url.user == "limaoim");
    CHECK(url.password == "s3cret");
    CHECK(url.servers[0].host == "h");
    CHECK(url.db == 2);

    url = parsed("redis://:p%40ss%2Fw%3a@h:1");  // '@', '/' and ':' in a password
    CHECK(url.user.empty());
    CHECK(url.password == "p@ss/w:");

    url = parsed("redis+sentinel://u:pw@s1:1,s2:2/mymaster/3");
    CHECK(url.password == "pw");
    CHECK(url.servers.size() == 2);
    CHECK(url.master_name == "mymaster");
    CHECK(url.db == 3);

    CHECK(masked("redis://limaoim:s3cret@h:1/2") == "redis://limaoim:***@h:1/2");
    CHECK(masked("redis://:s3cret@h:1") == "redis://:***@h:1");
    CHECK(masked("redis://s3cret@h:1") == "redis://***@h:1");
    CHECK(masked("redis+sentinel://u:a@b/c@s:1/m") == "redis+sentinel://u:***@s:1/m");  // an unescaped '@' or '/'
    CHECK(masked("redis://h:1/0") == "redis://h:1/0");
}

TEST_CASE("Client: commands and pipelining against a redis-server") {
    RedisServer server;
    INFO(server.log());
    REQUIRE(server.started());
    Client client(parsed(server.url(2)), 2000);
    std::string error;
    REQUIRE(client.connect(error));
    CHECK(client.master().port == server.port());

    Reply reply = client.command({"SET", "k", std::string_view("a\0b", 3)}, error);
    REQUIRE(reply);
    reply = client.command({"GET", "k"}, error);
    REQUIRE(reply);
    CHECK(std::string(reply->str, reply->len) == std::string("a\0b", 3));
    CHECK(server.cli("-n 2 EXISTS k") == "1\n");  // SELECTed the URL's db
    CHECK(server.cli("-n 0 EXISTS k") == "0\n");

    CHECK_FALSE(client.command({"NOSUCHCOMMAND"}, error));  // an error reply keeps the connection
    CHECK(error.find("unknown command") != std::string::npos);
    CHECK(client.connected());

    REQUIRE(client.append({"INCR", "n"}, error));
    REQUIRE(client.append({"INCR", "n"}, error));
    Reply first = client.read(error), second = client.read(error);
    REQUIRE(first);
    REQUIRE(second);
    CHECK(first->integer == 1);
    CHECK(second->integer == 2);
}

TEST_CASE("Client: a replica is refused; a dead server is retried with backoff, then reconnected") {
    RedisServer master;
    REQUIRE(master.started());
    RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(master.port())});
    REQUIRE(replica.started());
    Client to_replica(parsed(replica.url()), 2000);
    std::string error;
    CHECK_FALSE(to_replica.connect(error));
    CHECK(error.find("not a master") != std::string::npos);

    Client client(parsed(master.url()), 500);
    REQUIRE(client.connect(error));
    REQUIRE(master.stop(SIGKILL));
    CHECK_FALSE(client.command({"PING"}, error));  // the I/O error drops the connection
    CHECK_FALSE(client.connected());
    CHECK_FALSE(client.connect(error));  // refused
    const auto before = std::chrono::steady_clock::now();
    CHECK_FALSE(client.connect(error));  // within the backoff: no attempt
    CHECK(std::chrono::steady_clock::now() - before < std::chrono::milliseconds(50));
    CHECK(error.find("next attempt in") != std::string::npos);

    REQUIRE(master.start());
    bool connected = false;
    for (int i = 0; i < 60 && !connected; ++i) {
        connected = client.command({"PING"}, error) != nullptr;
        if (!connected) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(connected);
}

TEST_CASE("Pool: a lease's client comes back for the next; a broken one too, and connects again") {
    RedisServer server;
    INFO(server.log());
    REQUIRE(server.started());
    Pool pool(parsed(server.url()), 2000);
    std::string error;
    // A client that has connected once knows its master; a new one does not
    // (an address would not tell them apart: a new client may take a freed one's).
    auto used = [&](Client& client) { return client.master().port == server.port(); };
    {
        Pool::Lease lease = pool.take();
        CHECK_FALSE(used(*lease));
        REQUIRE(lease->command({"PING"}, error));
    }
    {
        // Two callers at once: the idle client, and a new one.
        Pool::Lease again = pool.take();
        Pool::Lease second = pool.take();
        CHECK(used(*again));
        CHECK(again->connected());  // its connection came back with it
        CHECK_FALSE(used(*second));
    }
    {
        Pool::Lease lease = pool.take();  // the one returned last
        REQUIRE(used(*lease));
        REQUIRE(lease->command({"PING"}, error));
        // Its connection dies under it (the server drops every client).
        server.cli("CLIENT KILL TYPE normal");
        CHECK_FALSE(lease->command({"PING"}, error));
        CHECK_FALSE(lease->connected());
    }
    Pool::Lease lease = pool.take();
    CHECK(used(*lease));              // the broken one came back
    CHECK_FALSE(lease->connected());  // disconnected
    CHECK(lease->command({"PING"}, error));  // and connects again on its next call
}

TEST_CASE("Client: AUTH with a password or an ACL user; a wrong one fails without showing it") {
    RedisServer server({"--requirepass", "s3cret", "--user", "limaoim", "on", ">acl-pw", "~*", "&*", "+@all", "-config"});
    INFO(server.log());
    REQUIRE(server.started());
    const std::string where = "127.0.0.1:" + std::to_string(server.port());
    std::string error;

    Client no_password(parsed("redis://" + where), 2000);
    CHECK_FALSE(no_password.connect(error));
    CHECK_MESSAGE(error.find("NOAUTH") != std::string::npos, error);

    Client wrong(parsed("redis://:wrong-pw@" + where), 2000);
    CHECK_FALSE(wrong.connect(error));
    CHECK_MESSAGE(error.find("AUTH") != std::string::npos, error);
    CHECK(error.find("wrong-pw") == std::string::npos);

    Client by_password(parsed("redis://:s3cret@" + where + "/1"), 2000);
    REQUIRE_MESSAGE(by_password.connect(error), error);
    CHECK(by_password.command({"SET", "k", "v"}, error));
    std::string found;
    CHECK(check_fsync(by_password, found) == Fsync::Always);  // RedisServer runs appendfsync always
    CHECK_MESSAGE(found.find("appendfsync always") != std::string::npos, found);

    Client by_user(parsed("redis://limaoim:acl-pw@" + where + "/1"), 2000);
    REQUIRE_MESSAGE(by_user.connect(error), error);
    Reply value = by_user.command({"GET", "k"}, error);
    REQUIRE(value);
    CHECK(std::string(value->str, value->len) == "v");
    // The ACL denies CONFIG: durability cannot be checked, and says why.
    CHECK(check_fsync(by_user, found) == Fsync::Unknown);
    CHECK_MESSAGE(found.find("CONFIG GET") != std::string::npos, found);

    Client wrong_user(parsed("redis://limaoim:s3cret@" + where), 2000);
    CHECK_FALSE(wrong_user.connect(error));
    CHECK(error.find("AUTH as limaoim") != std::string::npos);
    CHECK(error.find("s3cret") == std::string::npos);
}

TEST_CASE("check_fsync: appendfsync everysec or no AOF is weaker than always") {
    RedisServer server({"--appendfsync", "everysec"});
    REQUIRE(server.started());
    Client client(parsed(server.url()), 2000);
    std::string found;
    CHECK(check_fsync(client, found) == Fsync::Weaker);
    CHECK_MESSAGE(found.find("appendfsync everysec") != std::string::npos, found);
    REQUIRE(server.cli("CONFIG SET appendfsync always") == "OK\n");
    CHECK(check_fsync(client, found) == Fsync::Always);
    REQUIRE(server.cli("CONFIG SET appendonly no") == "OK\n");
    CHECK(check_fsync(client, found) == Fsync::Weaker);
    CHECK_MESSAGE(found.find("appendonly no") != std::string::npos, found);
}
