// Several limaoim nodes on one Redis (issue 14) behave as one server: person
// and group messages across nodes arrive as RECVs the receiver's node
// encrypted; a second login on another node kicks the first; an offline
// user's messages are read on another node; tokens and channels set through
// one node's API hold on the others; two nodes with one node id refuse to
// share a Redis; a Redis outage is survived and recovered from without a
// restart; a node killed (kill -9) during a burst, and a Sentinel failover
// during a burst, lose no SENDACKed message and store none twice.
//
// They need redis-server (and redis-sentinel for the failover): without it the
// RedisServer does not start and the case fails, it is not skipped.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "chat_client.h"
#include "http_client.h"
#include "im_helpers.h"
#include "im_server.h"
#include "redis_server.h"
#include "server_process.h"
#include "temp_dir.h"

using namespace limaoim;
using namespace limaoim::testing;
using namespace std::chrono;
using nlohmann::json;

namespace {

// One node: its own data directory, ports and --node-id, the shared `store`.
std::unique_ptr<ImServer> start_node(const std::string& store, int node_id, bool test_mode = true,
                                     std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"--store", store, "--node-id", std::to_string(node_id)};
    args.insert(args.end(), more.begin(), more.end());
    auto node = std::make_unique<ImServer>(args, "", test_mode);
    REQUIRE_MESSAGE(node->started(), "node " << node_id << " did not start:\n" << node->log());
    return node;
}

// Nodes 1..n on `store`.
std::vector<std::unique_ptr<ImServer>> start_nodes(const std::string& store, int n, bool test_mode = true,
                                                   std::vector<std::string> more = {}) {
    std::vector<std::unique_ptr<ImServer>> nodes;
    for (int i = 1; i <= n; ++i) nodes.push_back(start_node(store, i, test_mode, more));
    return nodes;
}

std::string logs(const std::vector<std::unique_ptr<ImServer>>& nodes) {
    std::string out;
    for (size_t i = 0; i < nodes.size(); ++i) out += "---- node " + std::to_string(i + 1) + " ----\n" + nodes[i]->log();
    return out;
}

// The node id bits of a snowflake message id (SERVER.md §4).
int node_of(int64_t message_id) { return int((message_id >> 12) & 0x3ff); }

std::set<std::string> as_set(const json& uids) {
    std::set<std::string> out;
    if (uids.is_array())
        for (const json& u : uids) out.insert(u.get<std::string>());
    return out;
}

// The next DISCONNECT (other packets before it are skipped), then the close.
void expect_kicked(ChatClient& c, int timeout_ms) {
    const auto deadline = Clock::now() + milliseconds(timeout_ms);
    std::optional<Received> p;
    while (Clock::now() < deadline) {
        p = c.read_any(left_ms(deadline));
        if (!p || p->type() == proto::PacketType::Disconnect) break;
    }
    REQUIRE_MESSAGE(p, c.uid() << ": no DISCONNECT within " << timeout_ms << " ms");
    CHECK(p->type() == proto::PacketType::Disconnect);
    CHECK_MESSAGE(c.raw().wait_closed(left_ms(deadline) + 2000), c.uid() << ": not closed after its DISCONNECT");
}

bool ping_pong(ChatClient& c, int timeout_ms = 3000) { return c.ping() && c.read_pong(timeout_ms); }

// GET /health until it answers `status` or the timeout passes; the last answer.
HttpResult wait_health(uint16_t http_port, int status, int timeout_ms) {
    const auto deadline = Clock::now() + milliseconds(timeout_ms);
    HttpResult h;
    do {
        h = http_request(http_port, "GET", "/health", "", "", 2000);
        if (h.status == status) break;
        std::this_thread::sleep_for(milliseconds(100));
    } while (Clock::now() < deadline);
    return h;
}

// `bytes` as printf(1) octal escapes: a shell argument cannot carry NUL bytes.
std::string printf_escaped(std::string_view bytes) {
    std::string escaped;
    for (unsigned char c : bytes) {
        char octal[8];
        std::snprintf(octal, sizeof octal, "\\%03o", c);
        escaped += octal;
    }
    return escaped;
}

// The run and the last sequence number add_event sealed with.
constexpr uint64_t kTestBoot = 0x7e57b007;
uint64_t last_test_seq = 0;

// Adds `event` to `stream` (a node's bus, lim:bus:{ID}) as a node does
// (src/cluster/redis_cluster.cpp): followed by a run id, a sequence number
// and the unix time in ms (u64 each) and HMAC-SHA256(secret, all of it),
// made here by openssl(1); raw when `secret` is empty. `age_ms`: sealed
// that long ago; `seq` 0: the next one.
void add_event(const RedisServer& redis, const std::string& stream, std::string event, const std::string& secret,
               uint64_t age_ms = 0, uint64_t seq = 0) {
    const uint64_t now = uint64_t(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count()) - age_ms;
    if (seq == 0) seq = ++last_test_seq;
    if (!secret.empty())
        for (const uint64_t v : {kTestBoot, seq, now}) event.append(reinterpret_cast<const char*>(&v), sizeof v);
    const std::string bytes = "printf '" + printf_escaped(event) + "'";
    const std::string sealed =
        secret.empty() ? bytes : "{ " + bytes + "; " + bytes + " | openssl dgst -sha256 -hmac '" + secret + "' -binary; }";
    auto [status, id] = run_command(sealed + " | redis-cli -p " + std::to_string(redis.port()) + " -x XADD '" + stream +
                                    "' '*' e");
    REQUIRE(status == 0);
    REQUIRE_MESSAGE(id.find('-') != std::string::npos, id);  // the entry's id
}

// The server binary run directly, for a node that should refuse to start:
// its exit status and output (bounded by timeout(1): 137 if still running).
std::pair<int, std::string> run_node(const std::string& args) {
    const uint16_t port = free_port();
    const std::string instance = "it-node-" + std::to_string(port);
    const TempDir dir;
    const std::string cmd = "timeout -s KILL 20 " + server_binary() + " --addr 127.0.0.1 --port " +
                            std::to_string(port) + " --instance " + instance + " --mode test --data-dir " + dir.root.string() +
                            " --http-addr 127.0.0.1:" + std::to_string(free_port()) + " --ws-addr 127.0.0.1:" +
                            std::to_string(free_port()) + " " + args + " 2>&1";
    auto result = run_command(cmd);
    unlink(("/dev/shm/limaoim-" + instance).c_str());
    return result;
}

// ---- bursts: a sender that reconnects and resends what was not acked ----

std::string burst_cmn(const std::string& uid, uint32_t k) { return uid + "-" + std::to_string(k); }
std::string burst_text(const std::string& uid, uint32_t k) { return "burst " + uid + "/" + std::to_string(k); }

struct Sender {
    std::string uid;
    size_t node = 0;  // index into the ports; the one it is on now
    std::map<uint32_t, std::pair<int64_t, uint32_t>> acked;  // client_seq -> (id, seq) of its reason-1 SENDACK
    std::atomic<uint32_t> acked_count{0};
    uint32_t refused = 0;        // SENDACKs with another reason than 1
    uint32_t resent = 0;         // SENDs sent again (same client_msg_no, DUP)
    uint32_t reconnects = 0;     // logins after the first
    uint32_t unexpected = 0;     // SENDACKs for nothing in flight
    uint32_t changed = 0;        // reason-1 SENDACKs of one client_msg_no with another id or seq
    bool finished = false;
    std::string error;
    std::vector<size_t> nodes_used;
};

// Sends client_seq 0..n-1 ("gX" group, type 2) with up to `window` awaiting
// their SENDACK. On EOF, a failed write or `stall_ms` without any packet
// while SENDs are in flight it logs in on the next node (same uid, device
// flag 0) and sends every unanswered SEND again with the same client_msg_no
// and client_seq, DUP set. A SENDACK with another reason than 1 puts its SEND
// back for a resend 200 ms later when `retry_refused`, else it is counted and
// dropped. `dead` (optional) marks nodes the test killed, so that a client
// does not try them.
void run_sender(Sender& s, const std::vector<uint16_t>& ports, const std::string& channel_id, uint32_t n,
                uint32_t window, bool retry_refused, int stall_ms, Clock::time_point deadline,
                std::atomic<uint32_t>& acked_total, const std::vector<std::atomic<bool>>* dead = nullptr) {
    auto c = std::make_unique<ChatClient>();
    if (!c->connect_login(ports[s.node], s.uid, 4, 0, "", 5000)) {
        s.error = "first login failed on node index " + std::to_string(s.node);
        return;
    }
    s.nodes_used.push_back(s.node);
    std::set<uint32_t> inflight;  // sent on this connection or before, no SENDACK yet
    std::set<uint32_t> retry;     // refused, to send again
    uint32_t next = 0;
    auto last_retry = Clock::now();
    std::vector<uint8_t> bytes;

    auto reconnect = [&]() -> bool {
        c->raw().close();
        while (Clock::now() < deadline) {
            s.node = (s.node + 1) % ports.size();
            if (dead && (*dead)[s.node].load()) continue;
            auto fresh = std::make_unique<ChatClient>();
            if (fresh->connect_login(ports[s.node], s.uid, 4, 0, "", 3000)) {
                c = std::move(fresh);
                ++s.reconnects;
                s.nodes_used.push_back(s.node);
                // Everything unanswered again, in order, as a resend.
                std::vector<uint8_t> again;
                for (uint32_t k : inflight) {
                    auto one = c->build_send(channel_id, 2, burst_text(s.uid, k), k, burst_cmn(s.uid, k), 0x08);
                    again.insert(again.end(), one.begin(), one.end());
                    ++s.resent;
                }
                if (again.empty() || c->raw().send_bytes(again)) return true;
                c->raw().close();
            }
            std::this_thread::sleep_for(milliseconds(100));
        }
        return false;
    };

    while (Clock::now() < deadline) {
        bytes.clear();
        if (!retry.empty() && ms_since(last_retry) >= 200) {
            for (auto it = retry.begin(); it != retry.end() && inflight.size() < window;) {
                auto one = c->build_send(channel_id, 2, burst_text(s.uid, *it), *it, burst_cmn(s.uid, *it), 0x08);
                bytes.insert(bytes.end(), one.begin(), one.end());
                ++s.resent;
                inflight.insert(*it);
                it = retry.erase(it);
            }
            last_retry = Clock::now();
        }
        if (next < n && inflight.size() <= window / 2) {
            for (; next < n && inflight.size() < window; ++next) {
                auto one = c->build_send(channel_id, 2, burst_text(s.uid, next), next, burst_cmn(s.uid, next));
                bytes.insert(bytes.end(), one.begin(), one.end());
                inflight.insert(next);
            }
        }
        if (!bytes.empty() && !c->raw().send_bytes(bytes)) {
            if (!reconnect()) break;
            continue;
        }
        if (inflight.empty() && retry.empty() && next >= n) {
            s.finished = true;
            return;
        }
        auto p = c->raw().read_packet(inflight.empty() ? 50 : stall_ms);
        if (!p) {
            if (inflight.empty()) continue;  // only refused ones waiting for their resend
            if (!reconnect()) break;
            continue;
        }
        if (p->type() != proto::PacketType::Sendack) continue;  // RECVs of the others' messages
        const auto& ack = std::get<proto::SendackPacket>(p->packet);
        const uint32_t k = ack.client_seq;
        if (inflight.erase(k) == 0) {
            ++s.unexpected;
            continue;
        }
        if (ack.reason_code == 1) {
            auto [it, fresh] = s.acked.emplace(k, std::pair{ack.message_id, ack.message_seq});
            if (!fresh && it->second != std::pair{ack.message_id, ack.message_seq}) ++s.changed;
            if (fresh) {
                s.acked_count.fetch_add(1, std::memory_order_relaxed);
                acked_total.fetch_add(1, std::memory_order_relaxed);
            }
        } else {
            ++s.refused;
            if (retry_refused) retry.insert(k);
        }
    }
    s.error = "deadline passed: " + std::to_string(s.acked.size()) + " of " + std::to_string(n) + " acked, " +
              std::to_string(inflight.size()) + " in flight, " + std::to_string(retry.size()) + " to retry";
}

// The channel's whole log holds every sender's messages 0..n-1 exactly once,
// reason-1 SENDACKs matching what is stored, seqs gapless, ids unique.
void check_exactly_once(uint16_t http_port, const std::string& channel_id, const std::vector<Sender>& senders,
                        uint32_t n) {
    json log = whole_log(http_port, "", channel_id, 2);
    const uint32_t stored = uint32_t(log.size());
    MESSAGE(stored << " messages stored in " << channel_id);
    CHECK(stored == senders.size() * n);
    CHECK_MESSAGE(seqs_of(log) == range(1, stored), "seqs not 1.." << stored << " in order, without gaps");
    std::map<std::string, std::pair<int64_t, uint32_t>> by_cmn;
    std::set<int64_t> ids;
    size_t twice = 0, ids_twice = 0;
    for (const json& m : log) {
        if (!by_cmn.emplace(m["client_msg_no"].get<std::string>(),
                            std::pair{m["message_id"].get<int64_t>(), m["message_seq"].get<uint32_t>()})
                 .second) {
            if (++twice <= 5) MESSAGE("stored twice: " << m.dump());
        }
        if (!ids.insert(m["message_id"].get<int64_t>()).second) ++ids_twice;
    }
    CHECK_MESSAGE(twice == 0, twice << " client_msg_nos stored more than once");
    CHECK_MESSAGE(ids_twice == 0, ids_twice << " message ids stored more than once");
    size_t missing = 0, mismatched = 0, never_acked = 0;
    for (const Sender& s : senders) {
        for (uint32_t k = 0; k < n; ++k) {
            auto stored_it = by_cmn.find(burst_cmn(s.uid, k));
            auto acked_it = s.acked.find(k);
            if (acked_it == s.acked.end()) {
                ++never_acked;
                continue;
            }
            if (stored_it == by_cmn.end()) {
                if (++missing <= 5) MESSAGE("acked but not stored: " << burst_cmn(s.uid, k));
            } else if (stored_it->second != acked_it->second) {
                if (++mismatched <= 5)
                    MESSAGE(burst_cmn(s.uid, k) << " acked as (" << acked_it->second.first << ", "
                                                << acked_it->second.second << "), stored as ("
                                                << stored_it->second.first << ", " << stored_it->second.second << ")");
            }
        }
    }
    CHECK_MESSAGE(missing == 0, missing << " SENDACKed messages are not in the history");
    CHECK_MESSAGE(mismatched == 0, mismatched << " SENDACKed messages are stored with another id or seq");
    CHECK_MESSAGE(never_acked == 0, never_acked << " messages never got a reason-1 SENDACK");
}

}  // namespace

// ---- person and group messages across nodes ----

TEST_CASE("cluster: person and group messages between users on three nodes arrive as RECVs the receiver's node "
          "encrypted; RECVACKs and presence work across nodes") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 3, true, {"--msg-timeout-ms", "500", "--retry-scan-ms", "50"});
    ImServer& n1 = *nodes[0];
    ImServer& n2 = *nodes[1];
    ImServer& n3 = *nodes[2];
    // The group first, through node 1's API (the others learn it from Redis).
    post(n1.http_port(), "/channel", {{"channel_id", "g1"}, {"channel_type", 2}, {"subscribers", {"alice", "bob", "carol"}}});

    ChatClient alice = online(n1, "alice", 4, 0);
    ChatClient bob = online(n2, "bob", 4, 0);
    ChatClient carol = online(n3, "carol", 3, 0);
    ChatClient alice_web = online(n3, "alice", 2, 1);

    SUBCASE("person messages") {
        // alice (node 1) -> bob (node 2); her WEB session on node 3 gets her own message.
        proto::SendackPacket a1 = send_acked(alice, "bob", 1, "hello bob, from node 1", 1, "a-1");
        REQUIRE(a1.reason_code == 1);
        CHECK(a1.message_seq == 1);
        CHECK(node_of(a1.message_id) == 1);
        expect_recv(bob, "alice", 1, "alice", "hello bob, from node 1", a1);
        expect_recv(alice_web, "bob", 1, "alice", "hello bob, from node 1", a1);

        // bob (node 2) answers: alice on node 1 and on node 3.
        proto::SendackPacket b1 = send_acked(bob, "alice", 1, "hi alice \xe4\xbd\xa0\xe5\xa5\xbd", 1, "b-1");
        REQUIRE(b1.reason_code == 1);
        CHECK(b1.message_seq == 2);  // one person channel, one seq counter, whichever node
        CHECK(node_of(b1.message_id) == 2);
        expect_recv(alice, "bob", 1, "bob", "hi alice \xe4\xbd\xa0\xe5\xa5\xbd", b1);
        expect_recv(alice_web, "bob", 1, "bob", "hi alice \xe4\xbd\xa0\xe5\xa5\xbd", b1);

        // carol (node 3, v3) -> bob (node 2) and -> alice (nodes 1 and 3).
        proto::SendackPacket c1 = send_acked(carol, "bob", 1, "carol to bob", 1, "c-1");
        REQUIRE(c1.reason_code == 1);
        CHECK(c1.message_seq == 1);
        CHECK(node_of(c1.message_id) == 3);
        expect_recv(bob, "carol", 1, "carol", "carol to bob", c1);
        proto::SendackPacket c2 = send_acked(carol, "alice", 1, "carol to alice", 2, "c-2");
        REQUIRE(c2.reason_code == 1);
        expect_recv(alice, "carol", 1, "carol", "carol to alice", c2);
        expect_recv(alice_web, "carol", 1, "carol", "carol to alice", c2);

        // The same log from every node.
        for (ImServer* n : {&n1, &n2, &n3}) {
            json h = history(n->http_port(), "bob", "alice", 1, 0, 0, 100, 1)["messages"];
            REQUIRE(h.size() == 2);
            CHECK(h[0]["client_msg_no"] == "a-1");
            CHECK(h[1]["client_msg_no"] == "b-1");
            CHECK(unb64(h[1]["payload"]) == "hi alice \xe4\xbd\xa0\xe5\xa5\xbd");
        }
    }

    SUBCASE("group messages") {
        proto::SendackPacket a1 = send_acked(alice, "g1", 2, "group: alice on node 1", 1, "ga-1");
        REQUIRE(a1.reason_code == 1);
        CHECK(a1.message_seq == 1);
        expect_recv(bob, "g1", 2, "alice", "group: alice on node 1", a1);
        expect_recv(carol, "g1", 2, "alice", "group: alice on node 1", a1);
        expect_recv(alice_web, "g1", 2, "alice", "group: alice on node 1", a1);

        proto::SendackPacket b1 = send_acked(bob, "g1", 2, "group: bob on node 2", 1, "gb-1");
        REQUIRE(b1.reason_code == 1);
        CHECK(b1.message_seq == 2);
        expect_recv(alice, "g1", 2, "bob", "group: bob on node 2", b1);
        expect_recv(carol, "g1", 2, "bob", "group: bob on node 2", b1);
        expect_recv(alice_web, "g1", 2, "bob", "group: bob on node 2", b1);

        proto::SendackPacket c1 = send_acked(carol, "g1", 2, "group: carol on node 3", 1, "gc-1");
        REQUIRE(c1.reason_code == 1);
        CHECK(c1.message_seq == 3);
        expect_recv(alice, "g1", 2, "carol", "group: carol on node 3", c1);
        expect_recv(bob, "g1", 2, "carol", "group: carol on node 3", c1);
        expect_recv(alice_web, "g1", 2, "carol", "group: carol on node 3", c1);

        json h = history(n2.http_port(), "bob", "g1", 2, 0, 0, 100, 1)["messages"];
        CHECK(seqs_of(h) == range(1, 3));
    }

    // No session gets a copy of its own message, none a second delivery: the
    // RECVACKs reached the nodes holding the sessions (else a RECV would come
    // again after --msg-timeout-ms 500).
    CHECK(quiet(alice, 1200));
    CHECK(quiet(bob, 100));
    CHECK(quiet(carol, 100));
    CHECK(quiet(alice_web, 100));

    // Presence is the cluster's: any node lists the uids online on any node.
    for (ImServer* n : {&n1, &n2, &n3}) {
        json online_uids = post(n->http_port(), "/user/onlinestatus", json{"alice", "bob", "carol", "dave"});
        CHECK_MESSAGE((as_set(online_uids) == std::set<std::string>{"alice", "bob", "carol"}),
                      "node on port " << n->port() << " says online: " << online_uids.dump());
    }
    carol.raw().close();
    std::set<std::string> left;
    const auto t0 = Clock::now();
    do {
        left = as_set(post(n1.http_port(), "/user/onlinestatus", json{"alice", "bob", "carol"}));
        if (left == std::set<std::string>{"alice", "bob"}) break;
        std::this_thread::sleep_for(milliseconds(50));
    } while (ms_since(t0) < 3000);
    CHECK_MESSAGE((left == std::set<std::string>{"alice", "bob"}), "carol (gone from node 3) still online for node 1");
}

TEST_CASE("cluster: a group's members sending through two nodes at once: each session gets the group's RECVs in seq "
          "order, every one once") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 2);
    // Through both nodes, so neither waits for the other to hear of it.
    for (auto& n : nodes)
        post(n->http_port(), "/channel", {{"channel_id", "gorder"}, {"channel_type", 2}, {"subscribers", {"r1", "r2"}}});
    std::vector<ChatClient> readers;
    readers.push_back(online(*nodes[0], "r1", 4, 0));
    readers.push_back(online(*nodes[1], "r2", 4, 0));
    // Two senders per node (test mode lets non-members send), all logged in
    // before any sends. Each message is fanned out at once by the node that
    // stored it, while the other node's come through Redis.
    constexpr int kSenders = 4;
    constexpr uint32_t kEach = 250;
    constexpr uint32_t kWindow = 8;
    std::vector<ChatClient> senders;
    for (int i = 0; i < kSenders; ++i) senders.push_back(online(*nodes[i % 2], "orderer" + std::to_string(i), 4, 0));
    // A first message, seen by both nodes before the burst: a node takes the
    // first message of a channel it has not seen as the start of its order.
    const proto::SendackPacket first = send_acked(senders[0], "gorder", 2, "first", 1000, "first");
    for (ChatClient& r : readers) expect_recv(r, "gorder", 2, "orderer0", "first", first);

    const auto deadline = Clock::now() + seconds(30);
    struct Seen {
        uint32_t received = 0, out_of_order = 0, last_seq = 0;
    };
    std::vector<Seen> seen(readers.size());
    std::vector<uint32_t> acked(kSenders, 0);
    std::vector<std::thread> threads;
    for (size_t r = 0; r < readers.size(); ++r)
        threads.emplace_back([&, r] {
            while (seen[r].received < kSenders * kEach && Clock::now() < deadline) {
                auto recv = readers[r].read_recv(2000);
                if (!recv) continue;
                ++seen[r].received;
                if (recv->message_seq <= seen[r].last_seq) ++seen[r].out_of_order;
                seen[r].last_seq = std::max(seen[r].last_seq, recv->message_seq);
                readers[r].send_recvack(*recv);
            }
        });
    for (int i = 0; i < kSenders; ++i)
        threads.emplace_back([&, i] {
            uint32_t sent = 0;
            while (acked[i] < kEach && Clock::now() < deadline) {
                for (; sent < kEach && sent - acked[i] < kWindow; ++sent)
                    if (!senders[i].send_message("gorder", 2, "m" + std::to_string(sent), sent, senders[i].uid() + "-" + std::to_string(sent)))
                        return;
                auto ack = senders[i].read_sendack(2000);
                if (ack && ack->reason_code == 1) ++acked[i];
            }
        });
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < kSenders; ++i) CHECK(acked[i] == kEach);
    for (size_t r = 0; r < readers.size(); ++r) {
        CAPTURE(r);
        MESSAGE("reader on node " << r + 1 << ": " << seen[r].received << " RECVs, " << seen[r].out_of_order
                                  << " after a later seq");
        CHECK(seen[r].received == kSenders * kEach);
        CHECK(seen[r].out_of_order == 0);
        CHECK(seen[r].last_seq == kSenders * kEach + 1);
    }
    // Held back for order, never given up on (each gap filled well within 1 s).
    const int64_t held = nodes[0]->process().stat("pipeline.fanout_held") + nodes[1]->process().stat("pipeline.fanout_held");
    MESSAGE(held << " messages held back for an earlier seq");
    for (auto& n : nodes) CHECK(n->process().stat("pipeline.fanout_hold_expired") == 0);
}

// ---- kick across nodes ----

TEST_CASE("cluster: a second login of the same uid and device flag on another node kicks the first") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 3, true, {"--kick-delay-ms", "500"});
    ImServer& n1 = *nodes[0];
    ImServer& n2 = *nodes[1];
    ImServer& n3 = *nodes[2];

    ChatClient app1 = online(n1, "alice", 4, 0);
    ChatClient web2 = online(n2, "alice", 4, 1);
    ChatClient bob = online(n2, "bob", 4, 0);

    // alice's APP logs in again on node 3: the one on node 1 is kicked.
    ChatClient app3 = online(n3, "alice", 4, 0);
    expect_kicked(app1, 5000);
    // Her WEB session (another device flag) is not touched, the new one stays.
    CHECK(ping_pong(web2));
    CHECK(ping_pong(app3));
    std::this_thread::sleep_for(milliseconds(700));  // past the kick delay: nothing closes the new one late
    CHECK(ping_pong(app3));
    CHECK(ping_pong(web2));

    proto::SendackPacket b1 = send_acked(bob, "alice", 1, "to the new session", 1, "b-1");
    REQUIRE(b1.reason_code == 1);
    expect_recv(app3, "bob", 1, "bob", "to the new session", b1);
    expect_recv(web2, "bob", 1, "bob", "to the new session", b1);
    // Node 1 has had b1 too (else the next session there would get it as well).
    REQUIRE(n1.process().wait_stat("pipeline.fanout_messages", 1, 3000) == 1);

    // And back: a login on node 1 kicks the one on node 3; on node 2, the one on node 2.
    ChatClient app1b = online(n1, "alice", 2, 0);
    expect_kicked(app3, 5000);
    ChatClient web2b = online(n2, "alice", 4, 1);
    expect_kicked(web2, 5000);
    CHECK(ping_pong(app1b));
    CHECK(ping_pong(web2b));
    proto::SendackPacket b2 = send_acked(bob, "alice", 1, "to the newest sessions", 2, "b-2");
    REQUIRE(b2.reason_code == 1);
    expect_recv(app1b, "bob", 1, "bob", "to the newest sessions", b2);
    expect_recv(web2b, "bob", 1, "bob", "to the newest sessions", b2);
    CHECK(quiet(app1b, 300));
    CHECK(quiet(web2b, 100));
}

// ---- offline on node 1, sync on node 3 ----

TEST_CASE("cluster: a user offline while messages are sent on node 1 reads them on node 3 (history, SyncOnce queue)") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 3);
    ImServer& n1 = *nodes[0];
    ImServer& n2 = *nodes[1];
    ImServer& n3 = *nodes[2];
    ChatClient alice = online(n1, "alice", 4);
    constexpr uint32_t kN = 20;
    send_offline(alice, "bob", kN);
    // SyncOnce (+ RedDot): a copy in bob's queue.
    for (uint32_t i = 1; i <= 3; ++i) {
        proto::SendackPacket ack = send_acked(alice, "bob", 1, "once #" + std::to_string(i), 100 + i,
                                              "so-" + std::to_string(i), 0x04 | 0x02);
        REQUIRE(ack.reason_code == 1);
        CHECK(ack.message_seq == 0);
    }

    // The channel's history, read on node 3.
    json all = history(n3.http_port(), "bob", "alice", 1, 0, 0, 100, 1);
    CHECK(seqs_of(all["messages"]) == range(1, kN));
    CHECK(all["more"] == 0);
    for (uint32_t i = 0; i < all["messages"].size(); ++i) {
        const json& m = all["messages"][i];
        CHECK(m["from_uid"] == "alice");
        CHECK(m["client_msg_no"] == "off-" + std::to_string(i + 1));
        CHECK(unb64(m["payload"]) == "offline #" + std::to_string(i + 1));
    }
    // A page on node 2.
    CHECK(seqs_of(history(n2.http_port(), "bob", "alice", 1, 10, 0, 5, 1)["messages"]) == range(11, 15));

    // The SyncOnce queue, read on node 3; its cursor moved on node 2 holds on node 3.
    json q = post(n3.http_port(), "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}});
    REQUIRE(q.is_array());
    CHECK(seqs_of(q) == range(1, 3));
    for (uint32_t i = 0; i < q.size(); ++i) {
        CHECK(q[i]["channel_id"] == "alice");
        CHECK(q[i]["from_uid"] == "alice");
        CHECK(q[i]["header"]["sync_once"] == 1);
        CHECK(unb64(q[i]["payload"]) == "once #" + std::to_string(i + 1));
    }
    post(n2.http_port(), "/message/syncack", {{"uid", "bob"}, {"last_message_seq", 2}});
    CHECK(seqs_of(post(n3.http_port(), "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}})) ==
          range(3, 3));

    // bob comes online on node 3: nothing is pushed; new messages from node 1 are.
    ChatClient bob = online(n3, "bob", 4);
    CHECK(quiet(bob, 300));
    proto::SendackPacket once4 = send_acked(alice, "bob", 1, "once #4", 104, "so-4", 0x04);
    REQUIRE(once4.reason_code == 1);
    auto r = bob.read_recv(5000);
    REQUIRE_MESSAGE(r, "bob on node 3 got no RECV of alice's SyncOnce message from node 1");
    CHECK(r->message_seq == 4);  // his queue seq
    CHECK((r->flags & 0x04) != 0);
    CHECK(r->payload == "once #4");
    REQUIRE(bob.send_recvack(*r));
    // The RECVACK on node 3 moved the cursor node 1 reads.
    json left;
    const auto t0 = Clock::now();
    do {
        left = post(n1.http_port(), "/message/sync", {{"uid", "bob"}, {"message_seq", 0}, {"limit", 100}});
        if (left.empty()) break;
        std::this_thread::sleep_for(milliseconds(20));
    } while (ms_since(t0) < 3000);
    CHECK_MESSAGE(left.empty(), left.dump());

    proto::SendackPacket more = send_acked(alice, "bob", 1, "online now", kN + 1, "off-21");
    REQUIRE(more.reason_code == 1);
    CHECK(more.message_seq == kN + 1);
    expect_recv(bob, "alice", 1, "alice", "online now", more);
}

// ---- tokens and channels set through one node ----

namespace {

// A token set through another node reaches this one as an event and a read
// from Redis (milliseconds, more on a loaded machine): logs in once it has.
ChatClient online_once_known(ImServer& server, const std::string& uid, const std::string& token) {
    const auto t0 = Clock::now();
    for (;;) {
        ChatClient c;
        if (c.connect_login(server.port(), uid, 4, 0, token)) return c;
        REQUIRE_MESSAGE(ms_since(t0) < 3000, "login of " << uid << " with the token set on another node");
        std::this_thread::sleep_for(milliseconds(20));
    }
}

}  // namespace

TEST_CASE("cluster: a token set on node 1 logs in on node 2; a new token on node 1 kicks the session on node 2") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 2, /*test_mode=*/false, {"--kick-delay-ms", "500"});
    ImServer& n1 = *nodes[0];
    ImServer& n2 = *nodes[1];
    set_token(n1.http_port(), "alice", "t1", 0);
    set_token(n2.http_port(), "bob", "tb", 0);

    {
        ChatClient nobody;
        REQUIRE(nobody.connect(n2.port()));
        CHECK(nobody.login("nobody", "", 4, 0).reason == 2);
    }
    {
        ChatClient wrong;
        REQUIRE(wrong.connect(n2.port()));
        CHECK(wrong.login("alice", "t0", 4, 0).reason == 2);
    }
    ChatClient alice = online_once_known(n2, "alice", "t1");
    ChatClient bob = online_once_known(n1, "bob", "tb");
    proto::SendackPacket ack = send_acked(bob, "alice", 1, "token from the other node", 1, "t-1");
    REQUIRE(ack.reason_code == 1);
    expect_recv(alice, "bob", 1, "bob", "token from the other node", ack);

    // A new token through node 1: alice's session on node 2 is kicked, the old token is refused everywhere.
    set_token(n1.http_port(), "alice", "t2", 0);
    expect_kicked(alice, 5000);
    for (ImServer* n : {&n1, &n2}) {
        ChatClient old_token;
        REQUIRE(old_token.connect(n->port()));
        CHECK_MESSAGE(old_token.login("alice", "t1", 4, 0).reason == 2, "the old token still logs in on port " << n->port());
    }
    ChatClient again = online_once_known(n2, "alice", "t2");
    CHECK(ping_pong(again));
    CHECK(ping_pong(bob));
}

TEST_CASE("cluster: a group created and changed through node 1 is known to node 2 within a short time (not test mode)") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 2, /*test_mode=*/false);
    ImServer& n1 = *nodes[0];
    ImServer& n2 = *nodes[1];
    // Each token through the node its user logs in on (tokens across nodes: the case above).
    set_token(n1.http_port(), "alice", "tk-alice");
    for (const char* uid : {"bob", "carol"}) set_token(n2.http_port(), uid, std::string("tk-") + uid);
    ChatClient alice = online(n1, "alice", 4, 0, "tk-alice");
    ChatClient bob = online(n2, "bob", 4, 0, "tk-bob");
    ChatClient carol = online(n2, "carol", 4, 0, "tk-carol");

    uint32_t client_seq = 0;
    // SENDs until one has `reason` (2 s at most); the matching SENDACK.
    auto until_reason = [&](ChatClient& c, const std::string& channel, uint8_t reason, const std::string& what) {
        const auto t0 = Clock::now();
        proto::SendackPacket ack;
        do {
            ++client_seq;
            ack = send_acked(c, channel, 2, what, client_seq, c.uid() + "-" + std::to_string(client_seq));
            if (ack.reason_code == reason) break;
            std::this_thread::sleep_for(milliseconds(50));
        } while (ms_since(t0) < 2000);
        CHECK_MESSAGE(ack.reason_code == reason, what << ": reason " << int(ack.reason_code) << " after " << ms_since(t0)
                                                      << " ms, wanted " << int(reason));
        MESSAGE(what << ": reason " << int(ack.reason_code) << " after " << ms_since(t0) << " ms");
        return ack;
    };

    CHECK(send_acked(bob, "g1", 2, "before the group exists", ++client_seq, "pre-1").reason_code == 11);
    post(n1.http_port(), "/channel", {{"channel_id", "g1"}, {"channel_type", 2}, {"subscribers", {"alice", "bob"}}});
    proto::SendackPacket b1 = until_reason(bob, "g1", 1, "bob (node 2) to the group made on node 1");
    if (b1.reason_code == 1) expect_recv(alice, "g1", 2, "bob", "bob (node 2) to the group made on node 1", b1);
    CHECK(send_acked(carol, "g1", 2, "not a member", ++client_seq, "c-x").reason_code == 11);

    post(n1.http_port(), "/channel/subscriber_add", {{"channel_id", "g1"}, {"channel_type", 2}, {"subscribers", {"carol"}}});
    proto::SendackPacket c1 = until_reason(carol, "g1", 1, "carol (node 2) after subscriber_add on node 1");
    if (c1.reason_code == 1) {
        expect_recv(alice, "g1", 2, "carol", "carol (node 2) after subscriber_add on node 1", c1);
        expect_recv(bob, "g1", 2, "carol", "carol (node 2) after subscriber_add on node 1", c1);
    }

    post(n1.http_port(), "/channel/subscriber_remove", {{"channel_id", "g1"}, {"channel_type", 2}, {"subscribers", {"bob"}}});
    until_reason(bob, "g1", 11, "bob (node 2) after subscriber_remove on node 1");

    post(n1.http_port(), "/channel/blacklist_add", {{"channel_id", "g1"}, {"channel_type", 2}, {"uids", {"carol"}}});
    until_reason(carol, "g1", 11, "carol (node 2) after blacklist_add on node 1");
}

// ---- node ids ----

TEST_CASE("cluster: a second node with a node id already taken on the same Redis exits with status 1 and says so"
          * doctest::test_suite("timeouts")) {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto first = start_node(redis.url(), 7);

    // The same id: run the binary directly to see its exit status.
    const auto t0 = Clock::now();
    auto [status, out] = run_node("--store " + redis.url() + " --node-id 7 --cluster-secret " + kTestClusterSecret);
    const int64_t took = ms_since(t0);
    MESSAGE("the second node with id 7 exited with status " << status << " after " << took << " ms");
    CHECK_MESSAGE(status == 1, "status " << status << " (137: still running after 20 s, killed):\n" << out);
    CHECK(took < 10000);
    const std::string said = lower(out);
    CHECK_MESSAGE((said.find("node id") != std::string::npos || said.find("node_id") != std::string::npos), out);
    CHECK_MESSAGE(said.find('7') != std::string::npos, out);
    CHECK_MESSAGE((said.find("taken") != std::string::npos || said.find("in use") != std::string::npos ||
                   said.find("already") != std::string::npos),
                  out);

    // The first node was not disturbed; another id starts beside it.
    CHECK(wait_health(first->http_port(), 200, 3000).status == 200);
    ChatClient a = online(*first, "alice", 4);
    auto other = start_node(redis.url(), 8);
    ChatClient b = online(*other, "bob", 4);
    proto::SendackPacket ack = send_acked(b, "alice", 1, "from node 8", 1, "n8-1");
    REQUIRE(ack.reason_code == 1);
    CHECK(node_of(ack.message_id) == 8);
    expect_recv(a, "bob", 1, "bob", "from node 8", ack);

    // Stopped cleanly, its id is free again.
    std::optional<int> stopped = first->stop(SIGTERM, 10000);
    CHECK(stopped == std::optional<int>(0));
    std::unique_ptr<ImServer> again;
    const auto t1 = Clock::now();
    do {
        again = std::make_unique<ImServer>(std::vector<std::string>{"--store", redis.url(), "--node-id", "7"});
        if (again->started()) break;
        std::this_thread::sleep_for(milliseconds(250));
    } while (ms_since(t1) < 30000);
    REQUIRE_MESSAGE(again->started(), "node id 7 not free 30 s after its node stopped:\n" << again->log());
    MESSAGE("node id 7 was free again " << ms_since(t1) << " ms after a clean stop");
}

// ---- Redis down ----

TEST_CASE("cluster: Redis stopped for 10 s: sessions stay, SENDs get reason 0, token logins reason 0, /health 503; "
          "all recovers without a restart" * doctest::test_suite("timeouts")) {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 2, /*test_mode=*/false, {"--redis-timeout-ms", "1000"});
    ImServer& n1 = *nodes[0];
    ImServer& n2 = *nodes[1];
    // Each token through the node its user logs in on (tokens across nodes: a case above).
    set_token(n1.http_port(), "alice", "tk-alice");
    for (const char* uid : {"bob", "carol"}) set_token(n2.http_port(), uid, std::string("tk-") + uid);
    ChatClient alice = online(n1, "alice", 4, 0, "tk-alice");
    ChatClient bob = online(n2, "bob", 4, 0, "tk-bob");
    uint32_t client_seq = 0;
    std::vector<std::string> acked_cmns;
    proto::SendackPacket before = send_acked(alice, "bob", 1, "before the outage", ++client_seq, "a-0");
    REQUIRE(before.reason_code == 1);
    acked_cmns.push_back("a-0");
    expect_recv(bob, "alice", 1, "alice", "before the outage", before);
    REQUIRE(wait_health(n1.http_port(), 200, 3000).status == 200);

    const auto t_stop = Clock::now();
    REQUIRE_MESSAGE(redis.stop(), redis.log());
    MESSAGE("redis stopped in " << ms_since(t_stop) << " ms");

    // /health says it on both nodes.
    for (ImServer* n : {&n1, &n2}) {
        HttpResult h = wait_health(n->http_port(), 503, 5000);
        CHECK_MESSAGE(h.status == 503, "GET /health on port " << n->http_port() << ": " << h.status << " " << h.body);
        if (h.status == 503)
            CHECK_MESSAGE((lower(h.body).find("redis") != std::string::npos || lower(h.body).find("store") != std::string::npos),
                          h.body);
    }
    // Twice during the outage: PINGs answered, SENDs refused with reason 0 within a few seconds, token logins refused.
    for (int round = 0; round < 2; ++round) {
        CAPTURE(round);
        CHECK(ping_pong(alice));
        CHECK(ping_pong(bob));
        for (ChatClient* c : {&alice, &bob}) {
            const std::string to = c == &alice ? "bob" : "alice";
            ++client_seq;
            REQUIRE(c->send_message(to, 1, "during the outage", client_seq, c->uid() + "-out-" + std::to_string(client_seq)));
            const auto t0 = Clock::now();
            auto ack = c->read_sendack(6000);
            CHECK_MESSAGE(ack, c->uid() << ": no SENDACK within 6 s while Redis is down");
            if (ack) {
                MESSAGE(c->uid() << ": SENDACK reason " << int(ack->reason_code) << " after " << ms_since(t0) << " ms");
                CHECK(ack->client_seq == client_seq);
                CHECK(ack->reason_code != 1);
                CHECK(ack->reason_code == 0);
            }
        }
        ChatClient carol;
        REQUIRE(carol.connect(n2.port()));
        const auto t0 = Clock::now();
        LoginResult lr = carol.login("carol", "tk-carol", 4, 0, 6000);
        CHECK_MESSAGE(lr.answered, "no CONNACK within 6 s while Redis is down");
        if (lr.answered) {
            MESSAGE("login while Redis is down: CONNACK reason " << int(lr.reason) << " after " << ms_since(t0) << " ms");
            CHECK(lr.reason == 0);
        }
        if (round == 0)
            while (ms_since(t_stop) < 5000) std::this_thread::sleep_for(milliseconds(50));
    }
    while (ms_since(t_stop) < 10000) std::this_thread::sleep_for(milliseconds(50));
    CHECK(ping_pong(alice));
    CHECK(ping_pong(bob));
    CHECK(quiet(bob, 100));  // no refused message was delivered
    CHECK(quiet(alice, 100));

    CHECK(n1.process().stat("pipeline.cluster_connected") == 0);
    CHECK(n2.process().stat("pipeline.cluster_connected") == 0);
    const auto t_start = Clock::now();
    REQUIRE_MESSAGE(redis.start(), redis.log());
    // Both nodes hear each other again (resubscribed, with the client's
    // reconnection backoff of at most 2 s): messages cross nodes again.
    // (What was published before a node resubscribed is left to sync.)
    for (ImServer* node : {&n1, &n2})
        REQUIRE_MESSAGE(node->process().wait_stat("pipeline.cluster_connected", 1, 10000) == 1, logs(nodes));
    MESSAGE("both nodes reconnected " << ms_since(t_start) << " ms after Redis came back");
    // SENDs succeed again within 10 s, and cross-node delivery works.
    proto::SendackPacket ok;
    std::string ok_cmn;
    do {
        ++client_seq;
        ok_cmn = "a-rec-" + std::to_string(client_seq);
        REQUIRE(alice.send_message("bob", 1, "after the outage", client_seq, ok_cmn));
        auto ack = alice.read_sendack(6000);
        REQUIRE_MESSAGE(ack, "no SENDACK after Redis came back\n" << logs(nodes));
        ok = *ack;
        if (ok.reason_code == 1) break;
        std::this_thread::sleep_for(milliseconds(200));
    } while (ms_since(t_start) < 10000);
    REQUIRE_MESSAGE(ok.reason_code == 1, "SENDs still refused 10 s after Redis came back\n" << logs(nodes));
    MESSAGE("node 1 took SENDs again " << ms_since(t_start) << " ms after Redis came back");
    acked_cmns.push_back(ok_cmn);
    expect_recv(bob, "alice", 1, "alice", "after the outage", ok);
    proto::SendackPacket back;
    const auto t_b = Clock::now();
    do {
        ++client_seq;
        back = send_acked(bob, "alice", 1, "bob after the outage", client_seq, "b-rec-" + std::to_string(client_seq), 0, 0, 6000);
        if (back.reason_code == 1) break;
        std::this_thread::sleep_for(milliseconds(200));
    } while (ms_since(t_b) < 10000);
    REQUIRE(back.reason_code == 1);
    acked_cmns.push_back("b-rec-" + std::to_string(client_seq));
    expect_recv(alice, "bob", 1, "bob", "bob after the outage", back);

    // Token logins and /health too.
    bool logged_in = false;
    const auto t_login = Clock::now();
    do {
        ChatClient carol;
        if (carol.connect_login(n2.port(), "carol", 4, 0, "tk-carol", 6000)) {
            logged_in = ping_pong(carol);
            break;
        }
        std::this_thread::sleep_for(milliseconds(200));
    } while (ms_since(t_login) < 10000);
    CHECK_MESSAGE(logged_in, "no token login on node 2 within 10 s of Redis coming back");
    for (ImServer* n : {&n1, &n2}) {
        HttpResult h = wait_health(n->http_port(), 200, 10000);
        CHECK_MESSAGE(h.status == 200, h.status << " " << h.body);
    }
    // The sessions from before are still the same ones.
    CHECK(ping_pong(alice));
    CHECK(ping_pong(bob));
    // Every acked message once; seqs only went forward.
    json h = whole_log(n2.http_port(), "alice", "bob", 1);
    std::map<std::string, int> count;
    for (const json& m : h) ++count[m["client_msg_no"].get<std::string>()];
    for (const std::string& cmn : acked_cmns) CHECK_MESSAGE(count[cmn] == 1, cmn << " stored " << count[cmn] << " times");
    std::vector<uint32_t> seqs = seqs_of(h);
    CHECK(std::adjacent_find(seqs.begin(), seqs.end(), [](uint32_t a, uint32_t b) { return b <= a; }) == seqs.end());
}

// ---- a node killed during a burst ----

// Kills node `id`'s connection that reads its bus (named limaoim-bus-ID in
// CLIENT LIST), as a network fault would.
void cut_bus_connection(const RedisServer& redis, int id) {
    std::istringstream list(redis.cli("CLIENT LIST"));
    for (std::string line; std::getline(list, line);)
        if (line.find(" name=limaoim-bus-" + std::to_string(id) + " ") != std::string::npos) {
            const size_t at = line.find("id=");
            REQUIRE(at != std::string::npos);
            redis.cli("CLIENT KILL ID " + line.substr(at + 3, line.find(' ', at) - at - 3));
        }
}

TEST_CASE("cluster: a node cut from Redis while messages are sent to it gets them all when it reconnects; past "
          "--redis-bus-max it counts them missed and reads its caches again") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 2, true, {"--redis-bus-max", "100"});
    ImServer& n2 = *nodes[1];
    ChatClient alice = online(*nodes[0], "alice", 4, 0);
    ChatClient bob = online(n2, "bob", 4, 0);
    uint32_t client_seq = 0;
    auto send_while_cut = [&](uint32_t count) {
        // Frozen, node 2 reads nothing; its connection is cut meanwhile
        // (well within the 5 s its registration outlives it).
        REQUIRE(kill(n2.process().pid(), SIGSTOP) == 0);
        std::vector<proto::SendackPacket> acks;
        for (uint32_t i = 0; i < count; ++i) {
            ++client_seq;
            acks.push_back(send_acked(alice, "bob", 1, "while cut " + std::to_string(client_seq), client_seq,
                                      "cut-" + std::to_string(client_seq)));
            REQUIRE(acks.back().reason_code == 1);
        }
        cut_bus_connection(redis, 2);
        REQUIRE(kill(n2.process().pid(), SIGCONT) == 0);
        return acks;
    };

    // 20 while cut: every one arrives, in order, once node 2 reads on.
    const int64_t resyncs = n2.process().stat("pipeline.cluster_resyncs");
    for (const proto::SendackPacket& ack : send_while_cut(20))
        expect_recv(bob, "alice", 1, "alice", "while cut " + std::to_string(ack.client_seq), ack);
    CHECK(n2.process().stat("pipeline.cluster_events_missed") == 0);
    CHECK(n2.process().stat("pipeline.cluster_resyncs") == resyncs);

    // 400 while cut, the stream kept to about 100: the oldest are gone
    // (counted, the caches read again); the newest still arrive.
    const std::vector<proto::SendackPacket> acks = send_while_cut(400);
    CHECK(n2.process().wait_stat("pipeline.cluster_resyncs", resyncs + 1, 5000) == resyncs + 1);
    const int64_t missed = n2.process().stat("pipeline.cluster_events_missed");
    MESSAGE("node 2 missed " << missed << " events of 400");
    CHECK(missed >= 100);
    CHECK(missed <= 300);
    uint32_t received = 0, last_seq = 0;
    while (auto r = bob.read_recv(2000)) {
        ++received;
        CHECK(r->message_seq > last_seq);
        last_seq = r->message_seq;
        CHECK(bob.send_recvack(*r));
        if (last_seq == acks.back().message_seq) break;
    }
    CHECK(last_seq == acks.back().message_seq);
    CHECK(received == 400 - uint32_t(missed));
    CHECK(n2.log().find("trimmed from its stream") != std::string::npos);
}

TEST_CASE("cluster: kill -9 of one node during a burst: its clients resend on another node, every acked message "
          "is stored exactly once") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 3);
    std::vector<uint16_t> ports;
    for (auto& n : nodes) ports.push_back(n->port());
    std::vector<std::atomic<bool>> dead(nodes.size());
    // Members offline: the burst tests storage, not fan-out (test mode lets non-members send).
    post(nodes[1]->http_port(), "/channel", {{"channel_id", "gkill"}, {"channel_type", 2}, {"subscribers", {"reader"}}});

    constexpr int kSenders = 6;  // two per node
    constexpr uint32_t kEach = 1500;
    std::vector<Sender> senders(kSenders);
    for (int i = 0; i < kSenders; ++i) {
        senders[i].uid = "killer" + std::to_string(i);
        senders[i].node = size_t(i % 3);
    }
    std::atomic<uint32_t> acked_total{0};
    const auto deadline = Clock::now() + seconds(120);
    std::vector<std::thread> threads;
    for (int i = 0; i < kSenders; ++i)
        threads.emplace_back([&, i] {
            run_sender(senders[i], ports, "gkill", kEach, 64, false, 8000, deadline, acked_total, &dead);
        });
    // Killed once node 1's senders are a quarter through: the nodes' shares
    // of one channel's commits are far from even (the one that wins a
    // conflict tends to win the next), so the total says little about them.
    const auto t0 = Clock::now();
    while (std::min(senders[0].acked_count.load(), senders[3].acked_count.load()) < kEach / 4 && ms_since(t0) < 60000)
        std::this_thread::sleep_for(microseconds(500));
    dead[0] = true;
    nodes[0]->stop(SIGKILL, 5000);
    // (Read once it is dead: nothing more is acked through it.)
    std::vector<uint32_t> node1_acked_at_kill;
    for (int i = 0; i < kSenders; i += 3) node1_acked_at_kill.push_back(senders[i].acked_count.load());
    const uint32_t acked_at_kill = acked_total.load();
    MESSAGE("node 1 killed after " << acked_at_kill << " SENDACKs (" << senders[0].acked_count.load() << ", "
                                    << senders[1].acked_count.load() << ", " << senders[2].acked_count.load() << ", "
                                    << senders[3].acked_count.load() << ", " << senders[4].acked_count.load() << ", "
                                    << senders[5].acked_count.load() << " by sender), " << ms_since(t0) << " ms into the burst");
    for (auto& t : threads) t.join();
    MESSAGE("burst over after " << ms_since(t0) << " ms");
    for (uint32_t a : node1_acked_at_kill) {
        CHECK(a >= kEach / 4);
        CHECK_MESSAGE(a < kEach, "a node-1 sender had finished before the kill");
    }

    for (int i = 0; i < kSenders; ++i) {
        const Sender& s = senders[i];
        CAPTURE(s.uid);
        MESSAGE(s.uid << ": " << s.acked.size() << " acked, " << s.resent << " resent, " << s.reconnects
                      << " reconnects, " << s.refused << " refused");
        CHECK_MESSAGE(s.error.empty(), s.error);
        CHECK(s.finished);
        CHECK(s.refused == 0);
        CHECK(s.unexpected == 0);
        CHECK(s.changed == 0);
        if (i % 3 == 0) {
            CHECK(s.reconnects >= 1);  // its node died
            CHECK(std::count(s.nodes_used.begin(), s.nodes_used.end(), size_t(0)) == 1);  // and was not tried again
        } else {
            CHECK(s.reconnects == 0);  // the other nodes carried on undisturbed
        }
    }
    if (HttpResult h = wait_health(nodes[2]->http_port(), 200, 2000); h.status != 200)
        MESSAGE("node 3 /health: " << h.status << " " << h.body);
    check_exactly_once(nodes[2]->http_port(), "gkill", senders, kEach);
}

// ---- Sentinel failover ----

TEST_CASE("cluster: a Sentinel failover during a burst (master killed, replica promoted): no SENDACKed message lost, "
          "none stored twice" * doctest::test_suite("timeouts")) {
    RedisServer master;
    REQUIRE_MESSAGE(master.started(), "redis-server did not start:\n" << master.log());
    const std::vector<std::string> replica_of = {"--replicaof", "127.0.0.1", std::to_string(master.port())};
    // Two replicas: after the failover the new master still has one, so WAIT 1 can succeed again.
    RedisServer replica1(replica_of);
    RedisServer replica2(replica_of);
    REQUIRE_MESSAGE(replica1.started(), replica1.log());
    REQUIRE_MESSAGE(replica2.started(), replica2.log());
    auto t0 = Clock::now();
    bool synced = false;
    do {
        synced = replica1.cli("INFO replication").find("master_link_status:up") != std::string::npos &&
                 replica2.cli("INFO replication").find("master_link_status:up") != std::string::npos;
        if (synced) break;
        std::this_thread::sleep_for(milliseconds(100));
    } while (ms_since(t0) < 15000);
    REQUIRE_MESSAGE(synced, replica1.cli("INFO replication") << replica2.cli("INFO replication"));

    RedisSentinel sentinel(master.port(), "mymaster", 1, 1000, 3000);
    REQUIRE_MESSAGE(sentinel.started(), "redis-sentinel did not start");
    auto sentinel_cli = [&](const std::string& args) {
        return run_command("redis-cli -p " + std::to_string(sentinel.port()) + " " + args + " 2>&1").second;
    };
    // The sentinel knows both replicas before the test relies on it.
    t0 = Clock::now();
    std::string replicas;
    do {
        replicas = sentinel_cli("SENTINEL replicas mymaster");
        if (replicas.find(std::to_string(replica1.port())) != std::string::npos &&
            replicas.find(std::to_string(replica2.port())) != std::string::npos)
            break;
        std::this_thread::sleep_for(milliseconds(200));
    } while (ms_since(t0) < 20000);
    REQUIRE_MESSAGE(replicas.find(std::to_string(replica1.port())) != std::string::npos, replicas);
    REQUIRE_MESSAGE(replicas.find(std::to_string(replica2.port())) != std::string::npos, replicas);

    auto nodes = start_nodes(sentinel.url_for("mymaster"), 2, true,
                             {"--redis-wait-replicas", "1", "--redis-timeout-ms", "2000"});
    std::vector<uint16_t> ports;
    for (auto& n : nodes) ports.push_back(n->port());
    post(nodes[0]->http_port(), "/channel", {{"channel_id", "gfail"}, {"channel_type", 2}, {"subscribers", {"reader"}}});
    // Writes reach a replica (WAIT 1) before they are acked.
    ChatClient probe = online(*nodes[0], "probe", 4);
    REQUIRE(send_acked(probe, "gprobe", 2, "probe", 1, "probe-1").reason_code == 1);
    probe.raw().close();

    constexpr int kSenders = 4;  // two per node
    constexpr uint32_t kEach = 1000;
    std::vector<Sender> senders(kSenders);
    for (int i = 0; i < kSenders; ++i) {
        senders[i].uid = "fo" + std::to_string(i);
        senders[i].node = size_t(i % 2);
    }
    std::atomic<uint32_t> acked_total{0};
    const auto deadline = Clock::now() + seconds(120);
    std::vector<std::thread> threads;
    for (int i = 0; i < kSenders; ++i)
        threads.emplace_back([&, i] {
            run_sender(senders[i], ports, "gfail", kEach, 32, true, 8000, deadline, acked_total);
        });
    t0 = Clock::now();
    while (acked_total.load() < kSenders * kEach * 30 / 100 && ms_since(t0) < 60000)
        std::this_thread::sleep_for(microseconds(500));
    const uint32_t acked_at_kill = acked_total.load();
    const auto t_kill = Clock::now();
    REQUIRE(master.stop(SIGKILL));
    MESSAGE("master killed after " << acked_at_kill << " SENDACKs, " << ms_since(t0) << " ms into the burst");
    // The sentinel promotes a replica.
    std::string now_master;
    do {
        now_master = sentinel_cli("SENTINEL get-master-addr-by-name mymaster");
        if (now_master.find(std::to_string(master.port())) == std::string::npos && now_master.find("127.0.0.1") != std::string::npos)
            break;
        std::this_thread::sleep_for(milliseconds(100));
    } while (ms_since(t_kill) < 30000);
    CHECK_MESSAGE(now_master.find(std::to_string(master.port())) == std::string::npos, "no failover: " << now_master);
    MESSAGE("failover to " << now_master << " seen " << ms_since(t_kill) << " ms after the kill");
    for (auto& t : threads) t.join();
    MESSAGE("burst over after " << ms_since(t0) << " ms");
    CHECK(acked_at_kill < kSenders * kEach);  // the kill came during the burst

    uint32_t refused = 0;
    for (const Sender& s : senders) {
        CAPTURE(s.uid);
        MESSAGE(s.uid << ": " << s.acked.size() << " acked, " << s.refused << " refused and resent, " << s.resent
                      << " resent in all, " << s.reconnects << " reconnects");
        CHECK_MESSAGE(s.error.empty(), s.error);
        CHECK(s.finished);
        CHECK(s.unexpected == 0);
        CHECK(s.changed == 0);
        CHECK_MESSAGE(s.reconnects == 0, "a SEND got no SENDACK within 8 s during the failover");
        refused += s.refused;
    }
    MESSAGE(refused << " SENDs refused (reason != 1) during the failover");
    check_exactly_once(nodes[1]->http_port(), "gfail", senders, kEach);
}

TEST_CASE("cluster: conversations are the same through every node; an unread edit on one node holds on the others") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 2);
    const uint16_t h1 = nodes[0]->http_port(), h2 = nodes[1]->http_port();
    // bob's unread count for his chat with alice, as a node's API tells it (-1: no such conversation).
    auto unread = [](uint16_t http, const std::string& uid) -> int64_t {
        int status = 0;
        const json list = http_json(http, "GET", "/conversations?uid=" + uid, nullptr, &status);
        REQUIRE(status == 200);
        for (const json& item : list)
            if (item.value("channel_id", std::string()) == "alice" && item.value("channel_type", 0) == 1)
                return item.value("unread", int64_t(-2));
        return -1;
    };
    auto wait_unread = [&](uint16_t http, int64_t want) {
        const auto t0 = Clock::now();
        int64_t got = unread(http, "bob");
        while (got != want && ms_since(t0) < 3000) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            got = unread(http, "bob");
        }
        return got;
    };
    auto send_red_dot = [](uint16_t http, const std::string& text) {
        post(http, "/message/send",
             {{"header", {{"no_persist", 0}, {"red_dot", 1}, {"sync_once", 0}}},
              {"from_uid", "alice"},
              {"channel_id", "bob"},
              {"channel_type", 1},
              {"payload", b64(text)}});
    };
    // Two messages stored through node 1: both nodes count them.
    send_red_dot(h1, "one");
    send_red_dot(h1, "two");
    CHECK(wait_unread(h1, 2) == 2);
    CHECK(wait_unread(h2, 2) == 2);
    // Cleared through node 1: node 2 says 0 too, and does not write its 2 back.
    post(h1, "/conversations/setUnread", {{"uid", "bob"}, {"channel_id", "alice"}, {"channel_type", 1}, {"unread", 0}});
    CHECK(wait_unread(h2, 0) == 0);
    // One more, stored through node 2: 1 on both (not 3).
    send_red_dot(h2, "three");
    CHECK(wait_unread(h1, 1) == 1);
    CHECK(wait_unread(h2, 1) == 1);
    // Deleted through node 2: gone on node 1 too; and after node 1 restarts
    // (it reads the lists from Redis) still gone.
    post(h2, "/conversations/delete", {{"uids", {"bob"}}, {"channel_id", "alice"}, {"channel_type", 1}});
    CHECK(wait_unread(h1, -1) == -1);
    REQUIRE(nodes[0]->restart(SIGTERM));
    CHECK(unread(nodes[0]->http_port(), "bob") == -1);
}

TEST_CASE("cluster: a login event that comes late (an older login elsewhere) does not kick the newer session") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 1);
    ChatClient alice = online(*nodes[0], "alice", 4, 0);
    // A login event of (alice, APP) from node 9, as src/cluster/redis_cluster.cpp
    // encodes it: 'L', u16 node, u8 device flag, u64 login wall-clock ms, uid.
    auto add_login_event = [&](int64_t login_ms) {
        std::string event = "L";
        const uint16_t node = 9;
        event.append(reinterpret_cast<const char*>(&node), 2);
        event.push_back('\0');
        const uint64_t ms = uint64_t(login_ms);
        event.append(reinterpret_cast<const char*>(&ms), 8);
        event.append("alice");
        add_event(redis, "lim:bus:{1}", event, kTestClusterSecret);
    };
    const int64_t now = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    // A minute older than alice's login: late news, alice stays.
    add_login_event(now - 60000);
    std::this_thread::sleep_for(milliseconds(300));
    CHECK(ping_pong(alice));
    CHECK(nodes[0]->process().stat("pipeline.cluster_events_in") >= 1);
    // A login after hers: she is kicked.
    add_login_event(now + 60000);
    expect_kicked(alice, 5000);
}

// ---- trust: Redis AUTH, signed events, durability ----

TEST_CASE("cluster: forged events added on Redis are dropped: a token change does not let its publisher log in") {
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto nodes = start_nodes(redis.url(), 2, /*test_mode=*/false);
    ImServer& n2 = *nodes[1];
    set_token(n2.http_port(), "alice", "real-token", 0);  // through the node attacked: it knows the token now

    // What one who can write to the Redis, but has not the cluster secret,
    // sends node 2: a token change "from node 1" carrying the digest of a
    // token of their choice (the format before events were sealed), the
    // same with a made-up seal, and one sealed with another secret.
    auto [status, digest_hex] = run_command("printf evil-token | sha256sum | cut -c1-64");
    REQUIRE(status == 0);
    std::string digest;
    for (size_t i = 0; i + 1 < digest_hex.size(); i += 2) digest.push_back(char(std::stoi(digest_hex.substr(i, 2), nullptr, 16)));
    REQUIRE(digest.size() == 32);
    std::string token_event = "T";
    const uint16_t from_node = 1;
    token_event.append(reinterpret_cast<const char*>(&from_node), 2);
    token_event.push_back('\0');  // device flag APP
    add_event(redis, "lim:bus:{2}", token_event + digest + "alice", "");
    add_event(redis, "lim:bus:{2}", token_event + digest + "alice" + std::string(40, 'x'), "");
    add_event(redis, "lim:bus:{2}", token_event + "alice", "not-the-cluster-secret");
    CHECK(n2.process().wait_stat("pipeline.cluster_events_rejected", 3, 2000) == 3);

    ChatClient attacker;
    REQUIRE(attacker.connect(n2.port()));
    CHECK(attacker.login("alice", "evil-token", 4, 0).reason == 2);
    ChatClient alice = online(n2, "alice", 4, 0, "real-token");
    CHECK(ping_pong(alice));
    CHECK(n2.log().find("dropped an event with a bad MAC") != std::string::npos);

    // A sealed token change names no token: the receiver reads the stored
    // one (still real-token), so even a valid event cannot set it.
    add_event(redis, "lim:bus:{2}", token_event + "alice", kTestClusterSecret);
    expect_kicked(alice, 3000);
    ChatClient again = online(n2, "alice", 4, 0, "real-token");
    CHECK(ping_pong(again));
    const uint64_t kicking_seq = last_test_seq;

    // A genuine event that arrives 60 s late (a replay, or a node that fell
    // behind) is dropped; what it may have said is read again from Redis.
    const int64_t resyncs = n2.process().stat("pipeline.cluster_resyncs");
    add_event(redis, "lim:bus:{2}", token_event + "alice", kTestClusterSecret, 60000);
    CHECK(n2.process().wait_stat("pipeline.cluster_events_rejected", 4, 2000) == 4);
    CHECK(n2.process().wait_stat("pipeline.cluster_resyncs", resyncs + 1, 3000) == resyncs + 1);
    CHECK(ping_pong(again));  // not kicked by the late event

    // The kicking event published again, in time (its run and number seen):
    // dropped, no second kick (its resync waits out the 10 s between two).
    add_event(redis, "lim:bus:{2}", token_event + "alice", kTestClusterSecret, 0, kicking_seq);
    CHECK(n2.process().wait_stat("pipeline.cluster_events_rejected", 5, 2000) == 5);
    CHECK(ping_pong(again));
    CHECK(n2.log().find("seen already") != std::string::npos);
}

TEST_CASE("cluster: Redis with requirepass and an ACL user: credentials from the URL or a file; a wrong one stops the "
          "start without showing it") {
    RedisServer redis({"--requirepass", "rq-pass", "--user", "limaoim", "on", ">acl-pass", "~*", "&*", "+@all"});
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    const std::string host = "127.0.0.1:" + std::to_string(redis.port());
    const TempDir dir;
    const std::string password_file = dir.path("redis.pw");
    std::ofstream(password_file) << "acl-pass\n";

    auto n1 = start_node("redis://:rq-pass@" + host + "/0", 1);
    auto n2 = start_node("redis://limaoim:@" + host + "/0", 2, true, {"--redis-password-file", password_file});
    CHECK(n1->log().find("rq-pass") == std::string::npos);
    ChatClient alice = online(*n1, "alice", 4, 0);
    ChatClient bob = online(*n2, "bob", 4, 0);
    proto::SendackPacket ack = send_acked(alice, "bob", 1, "through an authenticated Redis", 1, "auth-1");
    REQUIRE(ack.reason_code == 1);
    expect_recv(bob, "alice", 1, "alice", "through an authenticated Redis", ack);

    for (const std::string& store : {"redis://:wrong-pass@" + host + "/0", "redis://limaoim:wrong-pass@" + host + "/0",
                                     "redis://" + host + "/0"}) {
        auto [status, out] = run_node("--store " + store + " --node-id 3 --cluster-secret " + kTestClusterSecret);
        CHECK_MESSAGE(status == 1, store << ": status " << status << "\n" << out);
        CHECK_MESSAGE((out.find("AUTH") != std::string::npos || out.find("NOAUTH") != std::string::npos), out);
        CHECK_MESSAGE(out.find("wrong-pass") == std::string::npos, out);
    }
    std::ofstream(password_file) << "wrong-pass\n";
    auto [status, out] = run_node("--store redis://limaoim:@" + host + "/0 --node-id 3 --cluster-secret " +
                                  kTestClusterSecret + " --redis-password-file " + password_file);
    CHECK_MESSAGE(status == 1, out);
    CHECK_MESSAGE(out.find("wrong-pass") == std::string::npos, out);
    // No cluster secret: refused before anything is opened.
    auto [no_secret, said] = run_node("--store redis://:rq-pass@" + host + "/0 --node-id 3");
    CHECK(no_secret == 2);
    CHECK_MESSAGE(said.find("cluster_secret") != std::string::npos, said);
    CHECK_MESSAGE(said.find("rq-pass") == std::string::npos, said);
}

TEST_CASE("cluster: durability group on a Redis that does not fsync every write is refused at start, accepted with "
          "--redis-durability-unchecked, and reported by /health when found after a reconnection") {
    RedisServer weak({"--appendfsync", "everysec"});
    REQUIRE_MESSAGE(weak.started(), "redis-server did not start:\n" << weak.log());
    auto [status, out] = run_node("--store " + weak.url() + " --node-id 1 --cluster-secret " + kTestClusterSecret);
    CHECK_MESSAGE(status == 1, out);
    CHECK_MESSAGE(out.find("appendfsync everysec") != std::string::npos, out);
    CHECK_MESSAGE(out.find("appendfsync always") != std::string::npos, out);
    CHECK_MESSAGE(out.find("--redis-durability-unchecked") != std::string::npos, out);
    {
        auto accepted = start_node(weak.url(), 1, true, {"--redis-durability-unchecked"});
        CHECK(accepted->log().find("accepted by --redis-durability-unchecked") != std::string::npos);
        CHECK(wait_health(accepted->http_port(), 200, 2000).status == 200);
    }
    auto none = start_node(weak.url(), 2, true, {"--durability", "none"});  // promises nothing: not checked
    CHECK(wait_health(none->http_port(), 200, 2000).status == 200);

    // Weakened under a running node: seen when it reconnects.
    RedisServer redis;
    REQUIRE_MESSAGE(redis.started(), "redis-server did not start:\n" << redis.log());
    auto node = start_node(redis.url(), 1);
    REQUIRE(wait_health(node->http_port(), 200, 2000).status == 200);
    REQUIRE(redis.cli("CONFIG SET appendfsync everysec") == "OK\n");
    redis.cli("CLIENT KILL TYPE normal");
    // (The killed connections may first fail the store's probe: wait for the durability's own answer.)
    HttpResult h;
    const auto t0 = Clock::now();
    do {
        h = wait_health(node->http_port(), 503, 5000);
    } while (h.body.find("durability") == std::string::npos && ms_since(t0) < 5000);
    CHECK_MESSAGE(h.status == 503, h.body);
    CHECK_MESSAGE(h.body.find("durability weaker than promised") != std::string::npos, h.body);
    CHECK(node->log().find("Redis durability is weaker") != std::string::npos);
}
