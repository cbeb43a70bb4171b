// The stats segment writer (src/stats/segment.cpp), its reader, snapshot and
// Prometheus text (src/stats/) and limaoim-stat's table and JSON
// (tools/limaoim-stat), against real files in /dev/shm.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "limaoim/stats/prometheus.h"
#include "limaoim/stats/segment.h"
#include "limaoim/stats/reader.h"
#include "report.h"

using namespace limaoim;
using namespace limaoim::stat_tool;
using nlohmann::json;

namespace {

// A /dev/shm name of our own, removed whatever the test does.
struct ScratchInstance {
    std::string name;
    explicit ScratchInstance(const char* tag) : name("unittest-" + std::to_string(getpid()) + "-" + tag) {
        unlink(path().c_str());
    }
    ~ScratchInstance() { unlink(path().c_str()); }
    std::string path() const { return stats::segment_path(name); }
};

// The server's close reasons as it names them, codes 5-7 unused between
// its loop's and its gateway's.
const std::vector<std::string> kReasonNames = {
    "peer_closed",  "io_error",     "slow_consumer", "rejected",   "reassembly_budget",     "",
    "",             "",             "client_disconnect", "auth_timeout", "idle_timeout", "decode_error",
    "packet_before_connect", "auth_failed", "kicked", "shutdown", "protocol_violation",
};
constexpr size_t kNamedReasons = 14;
constexpr int kKickedCode = 14;

stats::SegmentInfo info_for(const ScratchInstance& instance, uint32_t workers, uint32_t slots) {
    stats::SegmentInfo info;
    info.instance = instance.name;
    info.workers = workers;
    info.slots_per_worker = slots;
    info.max_conns = 5000;
    info.port = 7777;
    info.close_reason_names = kReasonNames;
    return info;
}

bool file_exists(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
}

std::string expected_in_use(const ScratchInstance& instance) {
    return "another limaoim with instance " + instance.name + " is running (pid " + std::to_string(getpid()) +
           "): it holds the lock on " + instance.path();
}

// Runs `body` in a child process and returns what it returned, or nothing
// when it had not finished after `limit` (the child is killed): a regression
// that blocks fails the test instead of hanging the suite.
std::optional<std::string> in_child_within(const std::function<std::string()>& body,
                                           std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    int out[2];
    REQUIRE(pipe(out) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        close(out[0]);
        const std::string result = body();
        const ssize_t written = write(out[1], result.data(), result.size());
        _exit(written == ssize_t(result.size()) ? 0 : 1);
    }
    close(out[1]);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    bool finished = false;
    while (!(finished = waitpid(child, &status, WNOHANG) == child) && std::chrono::steady_clock::now() < deadline)
        usleep(10'000);
    if (!finished) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        close(out[0]);
        return std::nullopt;
    }
    std::string result;
    char buffer[4096];
    for (ssize_t n; (n = read(out[0], buffer, sizeof buffer)) > 0;) result.append(buffer, size_t(n));
    close(out[0]);
    return result;
}

std::string create_error(const stats::SegmentInfo& info) {
    stats::Segment segment;
    std::string error;
    return segment.create(info, error) ? "created" : error;
}

std::string reader_error(const std::string& instance) {
    SegmentReader reader;
    std::string error;
    return reader.open(instance, error) ? "opened" : error;
}

void open_conn(stats::Segment& segment, uint32_t worker, uint32_t slot, uint32_t generation, uint32_t in,
               uint32_t out, uint32_t kib) {
    stats::ConnCounters& c = segment.conns(worker)[slot];
    c.generation.store(generation);
    c.packets_in.store(in);
    c.packets_out.store(out);
    c.bytes_in_kib.store(kib);
}

// Two workers with different figures; the expected sums are computed from
// the same constants the checks use.
constexpr uint64_t kAccepted[2] = {7, 5};
constexpr uint64_t kKicked[2] = {1, 2};
constexpr uint64_t kConnectIn[2] = {30, 12};
constexpr uint64_t kBytesOut[2] = {1000, 24};

void fill_workers(stats::Segment& segment) {
    for (uint32_t w = 0; w < 2; ++w) {
        stats::WorkerBlock& b = segment.worker(w);
        b.connections.set(kAccepted[w] - kKicked[w]);
        b.authenticated.set(w + 1);
        b.by_device_flag[0].set(w + 1);
        b.accepted.set(kAccepted[w]);
        b.closed[kKickedCode].set(kKicked[w]);
        b.packets_in[1].set(kConnectIn[w]);
        b.packets_out[2].set(kConnectIn[w]);
        b.bytes_out.set(kBytesOut[w]);
        b.decode_errors[2].set(w);
        b.handshake_latency_us[4].set(10 * (w + 1));  // [16, 32) µs
        // Worker 1 holds twice worker 0's messaging figures: each sum is 3 times
        // worker 0's, and no two fields have the same sum.
        const uint64_t k = w + 1;
        b.sends.set(11 * k);
        b.sendacks[1].set(10 * k);  // success
        b.sendacks[8].set(1 * k);   // msg_key_error
        b.sends_in_flight.set(2 * k);
        b.send_pauses.set(3 * k);
        b.send_latency_us[6].set(10 * k);  // [64, 128) µs
        b.recvs.set(17 * k);
        b.recv_retransmits.set(5 * k);
        b.recvacks.set(13 * k);
        b.recvacks_unknown.set(7 * k);
        b.inflight.set(4 * k);
        b.inflight_expired.set(19 * k);
        b.inflight_evicted.set(23 * k);
        b.deliveries_stale.set(29 * k);
        b.deliveries_expired.set(41 * k);
        b.rate_limit_waits.set(31 * k);
        b.user_rate_limit_waits.set(37 * k);
    }
    stats::PipelineBlock& p = segment.pipeline();
    p.commits.set(101);
    p.commit_failures.set(2);
    p.messages_stored.set(250);
    p.queue_copies_stored.set(40);
    p.dedupe_hits.set(3);
    p.dedupe_entries.set(77);
    p.dedupe_evicted.set(5);
    p.commit_queue.set(6);
    p.commit_refused.set(8);
    p.cursor_advances.set(422);
    p.commit_latency_us[10].set(100);     // [1024, 2048) µs
    p.commit_batch_messages[0].set(60);   // 1 message
    p.commit_batch_messages[2].set(41);   // 4 to 7 messages
    p.fanout_messages.set(240);
    p.deliveries.set(310);
    p.deliveries_refused.set(9);
    p.offline_receivers.set(12);
    p.fanout_queue.set(14);
    p.fanout_no_receivers.set(16);
    p.fanout_held.set(424);
    p.fanout_hold_expired.set(425);
    // Conversations, webhook and datasource: distinct values from 401 up.
    p.conversation_updates.set(401);
    p.conversation_flushes.set(402);
    p.conversation_flush_failures.set(403);
    p.conversation_users.set(404);
    p.conversation_evictions.set(426);
    p.webhook_calls.set(405);
    p.webhook_failures.set(406);
    p.webhook_online_queue.set(407);
    p.webhook_online_dropped.set(408);
    p.webhook_offline_dropped.set(409);
    p.webhook_notify_queue.set(410);
    p.webhook_notify_sent.set(411);
    p.webhook_notify_dropped.set(412);
    p.datasource_calls.set(413);
    p.datasource_failures.set(414);
    p.commit_conflicts.set(415);
    p.cluster_nodes.set(3);
    p.cluster_connected.set(1);
    p.cluster_events_out.set(416);
    p.cluster_events_in.set(417);
    p.cluster_events_dropped.set(418);
    p.cluster_redis_errors.set(419);
    p.cluster_resyncs.set(420);
    p.cluster_events_rejected.set(421);
    p.cluster_events_missed.set(423);
    open_conn(segment, 0, 3, 1, 100, 50, 9);
    open_conn(segment, 1, 0, 3, 400, 1, 2);
    open_conn(segment, 1, 5, 5, 10, 10, 1);
    open_conn(segment, 0, 6, 8, 9000, 9000, 90);  // closed: even generation
}

struct Snapped {
    ScratchInstance instance{"snap"};
    stats::Segment segment;
    SegmentReader reader;
    Snapshot snapshot;

    explicit Snapped(size_t top) {
        std::string error;
        REQUIRE(segment.create(info_for(instance, 2, 8), error));
        fill_workers(segment);
        REQUIRE(reader.open(instance.name, error));
        take_snapshot(reader, top, segment.header().start_time_unix_ms + 90'500, snapshot);
    }
};

struct Run {
    int exit_code;
    std::string output;
};

Run run_stat(const std::string& arguments, const std::string& environment = "") {
    const std::string command = environment + " " + LIMAOIM_STAT_BIN + " " + arguments;
    FILE* pipe = popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string output;
    char buffer[4096];
    for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
    const int status = pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace

TEST_CASE("create makes a sparse segment whose header describes it") {
    ScratchInstance instance("create");
    stats::Segment segment;
    std::string error;
    REQUIRE(segment.create(info_for(instance, 3, 100'000), error));
    CHECK(segment.path() == instance.path());

    const stats::Header& h = segment.header();
    CHECK(h.magic == stats::kMagic);
    CHECK(h.layout_version == stats::kLayoutVersion);
    CHECK(h.pid == getpid());
    CHECK(h.workers == 3);
    CHECK(h.capacity == 300'000);
    CHECK(h.max_conns == 5000);
    CHECK(h.port == 7777);
    CHECK(std::string(h.instance) == instance.name);
    CHECK(h.workers_offset == stats::workers_offset());
    CHECK(h.conns_offset == stats::workers_offset() + 3 * sizeof(stats::WorkerBlock));
    CHECK(h.pipeline_offset == stats::align_up(h.conns_offset + 300'000 * sizeof(stats::ConnCounters), 64));
    CHECK(std::string(h.close_reason_names[0]) == "peer_closed");
    CHECK(std::string(h.close_reason_names[5]).empty());
    CHECK(std::string(h.close_reason_names[kKickedCode]) == "kicked");
    CHECK(std::string(h.close_reason_names[16]) == "protocol_violation");
    CHECK(std::string(h.close_reason_names[stats::kMaxCloseReasons - 1]).empty());

    struct stat st;
    REQUIRE(stat(instance.path().c_str(), &st) == 0);
    CHECK(uint64_t(st.st_size) == stats::segment_size(3, 100'000));
    CHECK(h.total_size == uint64_t(st.st_size));
    // Only the header's page is written; the 4.8 MB of ConnCounters are holes.
    CHECK(uint64_t(st.st_blocks) * 512 <= 16 * 1024);
}

TEST_CASE("the segment holds as many worker blocks as the server has workers") {
    CHECK(stats::kMaxWorkers == 4096);
    CHECK(stats::conns_offset(1) == stats::workers_offset() + sizeof(stats::WorkerBlock));
    CHECK(stats::segment_size(1, 0) == stats::align_up(stats::conns_offset(1), 4096));
    CHECK(stats::segment_size(110, 20000) ==
          stats::align_up(stats::conns_offset(110) + 110 * 20000 * sizeof(stats::ConnCounters), 4096));

    ScratchInstance instance("many-workers");
    stats::Segment segment;
    std::string error;
    REQUIRE_MESSAGE(segment.create(info_for(instance, stats::kMaxWorkers, 2), error), error);
    segment.worker(stats::kMaxWorkers - 1).accepted.set(5);
    segment.conns(stats::kMaxWorkers - 1)[1].generation.store(1);
    SegmentReader reader;
    REQUIRE_MESSAGE(reader.open(instance.name, error), error);
    CHECK(reader.worker(stats::kMaxWorkers - 1).accepted.get() == 5);
    size_t live = 0;
    reader.for_each_live_conn([&](const ConnTraffic& c) {
        CHECK(c.worker == stats::kMaxWorkers - 1);
        CHECK(c.slot == 1);
        ++live;
    });
    CHECK(live == 1);
}

TEST_CASE("create refuses a segment held by a live server and leaves it alone") {
    ScratchInstance instance("live");
    stats::Segment first;
    std::string error;
    REQUIRE(first.create(info_for(instance, 1, 16), error));
    first.worker(0).accepted.set(42);

    stats::Segment second;
    CHECK_FALSE(second.create(info_for(instance, 1, 16), error));
    CHECK(error == expected_in_use(instance));
    CHECK(first.worker(0).accepted.get() == 42);
    CHECK(file_exists(instance.path()));

    // The lock, not the pid, tells: the same answer with any pid in the header.
    first.header().pid = 1;
    CHECK_FALSE(second.create(info_for(instance, 1, 16), error));
    CHECK(error.find("another limaoim with instance " + instance.name + " is running (pid 1)") == 0);

    first.remove();
    REQUIRE_MESSAGE(second.create(info_for(instance, 1, 16), error), error);
    CHECK(second.worker(0).accepted.get() == 0);
}

TEST_CASE("create replaces the segment of a server that died") {
    ScratchInstance instance("stale");
    {
        stats::Segment killed;
        std::string error;
        REQUIRE(killed.create(info_for(instance, 1, 16), error));
        killed.worker(0).accepted.set(99);
    }  // unmapped and unlocked but, as after kill -9, not unlinked
    REQUIRE(file_exists(instance.path()));

    stats::Segment segment;
    std::string error;
    REQUIRE_MESSAGE(segment.create(info_for(instance, 2, 16), error), error);
    CHECK(segment.header().pid == getpid());
    CHECK(segment.header().workers == 2);
    CHECK(segment.worker(0).accepted.get() == 0);
}

TEST_CASE("a forged header naming a live pid does not hold the instance: only the lock does") {
    // pid 1 always runs; a segment claiming it, with a valid magic but no
    // lock, is somebody's leftover or a squatter's bait.
    ScratchInstance instance("forged");
    {
        stats::Segment forged;
        std::string error;
        REQUIRE(forged.create(info_for(instance, 1, 16), error));
        forged.header().pid = 1;
        forged.worker(0).accepted.set(7);
    }
    SegmentReader reader;
    std::string error;
    REQUIRE(reader.open(instance.name, error));
    CHECK(reader.header().pid == 1);
    CHECK(reader.header().magic == stats::kMagic);
    CHECK_FALSE(reader.server_alive());

    stats::Segment segment;
    REQUIRE_MESSAGE(segment.create(info_for(instance, 1, 16), error), error);
    CHECK(segment.header().pid == getpid());
    CHECK(segment.worker(0).accepted.get() == 0);
    CHECK(reader.replaced());
}

TEST_CASE("create replaces a file that is not a segment") {
    ScratchInstance instance("garbage");
    std::ofstream(instance.path()) << "not a stats segment";
    stats::Segment segment;
    std::string error;
    REQUIRE(segment.create(info_for(instance, 1, 4), error));
    CHECK(segment.header().magic == stats::kMagic);
}

TEST_CASE("a FIFO at the segment's path fails fast, for the server and the reader") {
    ScratchInstance instance("fifo");
    REQUIRE(mkfifo(instance.path().c_str(), 0600) == 0);
    const std::string expected =
        instance.path() + " is a FIFO, not a stats segment: refusing to use it (remove it)";
    const auto started = std::chrono::steady_clock::now();
    const std::optional<std::string> created = in_child_within([&] { return create_error(info_for(instance, 1, 4)); });
    REQUIRE_MESSAGE(created.has_value(), "Segment::create blocked on a FIFO");
    CHECK(*created == expected);
    const std::optional<std::string> read = in_child_within([&] { return reader_error(instance.name); });
    REQUIRE_MESSAGE(read.has_value(), "SegmentReader::open blocked on a FIFO");
    CHECK(*read == expected);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(2));
    struct stat st;
    REQUIRE(lstat(instance.path().c_str(), &st) == 0);
    CHECK(S_ISFIFO(st.st_mode));  // refused, not removed
}

TEST_CASE("a symbolic link at the segment's path is refused and its target left alone") {
    ScratchInstance instance("symlink");
    ScratchInstance target("symlink-target");
    std::ofstream(target.path()) << "precious";
    REQUIRE(symlink(target.path().c_str(), instance.path().c_str()) == 0);
    const std::string expected =
        instance.path() + " is a symbolic link, not a stats segment: refusing to follow it (remove it)";
    CHECK(create_error(info_for(instance, 1, 4)) == expected);
    CHECK(reader_error(instance.name) == expected);
    std::ifstream kept(target.path());
    std::string content;
    kept >> content;
    CHECK(content == "precious");
    struct stat st;
    REQUIRE(lstat(instance.path().c_str(), &st) == 0);
    CHECK(S_ISLNK(st.st_mode));

    // A dangling link is refused too, and nothing is created at its target.
    unlink(target.path().c_str());
    CHECK(create_error(info_for(instance, 1, 4)) == expected);
    CHECK_FALSE(file_exists(target.path()));
}

TEST_CASE("another user's file at the segment's path is refused with its owner named") {
    if (geteuid() != 0) {
        MESSAGE("skipped: needs root to give a file to uid 65534");
        return;
    }
    ScratchInstance instance("foreign");
    std::ofstream(instance.path()) << std::string(sizeof(stats::Header) + 100, '\0');
    REQUIRE(chown(instance.path().c_str(), 65534, 65534) == 0);
    const std::string error = create_error(info_for(instance, 1, 4));
    CHECK_MESSAGE(error.find(instance.path() + " belongs to uid 65534") == 0, error);
    CHECK_MESSAGE(error.find("not to this user (uid 0") != std::string::npos, error);
    CHECK(reader_error(instance.name) == error);
    struct stat st;
    REQUIRE(stat(instance.path().c_str(), &st) == 0);
    CHECK(st.st_uid == 65534);
    CHECK(st.st_size == off_t(sizeof(stats::Header) + 100));
}

TEST_CASE("create rejects bad instance names and worker counts") {
    stats::Segment segment;
    std::string error;
    stats::SegmentInfo info;
    info.slots_per_worker = 4;
    for (const char* bad : {"", "a/b", "..", "0123456789012345678901234567890123456789012345678901234567890123"}) {
        info.instance = bad;
        CHECK_FALSE(segment.create(info, error));
        CHECK(error.find("invalid stats instance name") != std::string::npos);
    }
    ScratchInstance instance("workers");
    info.instance = instance.name;
    info.workers = stats::kMaxWorkers + 1;
    CHECK_FALSE(segment.create(info, error));
    CHECK(error == "stats segment: 4097 workers, at most 4096 fit");
    CHECK_FALSE(file_exists(instance.path()));
}

TEST_CASE("create rejects close reason names that do not fit the header") {
    ScratchInstance instance("reasons");
    stats::SegmentInfo info = info_for(instance, 1, 4);
    stats::Segment segment;
    std::string error;

    info.close_reason_names.assign(stats::kMaxCloseReasons + 1, "r");
    CHECK_FALSE(segment.create(info, error));
    CHECK(error == "stats segment: 33 close reason codes, at most 32 fit");

    info.close_reason_names = {"peer_closed", "a_reason_of_24_character"};
    CHECK_FALSE(segment.create(info, error));
    CHECK(error == "stats segment: close reason 1 name 'a_reason_of_24_character' is not a string of at most 23 "
                   "characters");
    CHECK_FALSE(file_exists(instance.path()));

    info.close_reason_names.assign(stats::kMaxCloseReasons, "reason_of_23_characters");
    REQUIRE_MESSAGE(segment.create(info, error), error);
    CHECK(std::string(segment.header().close_reason_names[31]) == "reason_of_23_characters");
}

TEST_CASE("remove unlinks; the destructor only unmaps") {
    ScratchInstance instance("remove");
    std::string error;
    {
        stats::Segment kept;
        REQUIRE(kept.create(info_for(instance, 1, 4), error));
    }
    CHECK(file_exists(instance.path()));
    REQUIRE(unlink(instance.path().c_str()) == 0);

    stats::Segment segment;
    REQUIRE(segment.create(info_for(instance, 1, 4), error));
    segment.remove();
    CHECK_FALSE(file_exists(instance.path()));
}

TEST_CASE("the reader explains why it cannot read a segment") {
    ScratchInstance instance("reader");
    SegmentReader reader;
    std::string error;

    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error == "no limaoim server is running with instance " + instance.name + " (no " + instance.path() + ")");

    std::ofstream(instance.path()) << std::string(sizeof(stats::Header) + 100, 'x');
    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error == instance.path() + " is not a limaoim stats segment (bad magic)");
    unlink(instance.path().c_str());

    stats::Segment segment;
    REQUIRE(segment.create(info_for(instance, 1, 4), error));
    segment.header().layout_version = stats::kLayoutVersion + 1;
    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error == "stats layout version " + std::to_string(stats::kLayoutVersion + 1) +
                       ", this limaoim-stat reads version " + std::to_string(stats::kLayoutVersion) +
                       ": use the limaoim-stat built with that server");

    segment.header().layout_version = stats::kLayoutVersion;
    segment.header().workers = stats::kMaxWorkers + 1;
    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error.find("inconsistent header: worker count") != std::string::npos);

    segment.header().workers = 2;  // the blocks it says there are would overlap the connections
    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error.find("inconsistent header: offsets") != std::string::npos);

    segment.header().workers = 1;
    segment.header().pipeline_offset += stats::kCacheLine;
    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error.find("inconsistent header: offsets") != std::string::npos);

    segment.header().pipeline_offset = stats::pipeline_offset(1, 4);
    std::memset(segment.header().close_reason_names[3], 'x', stats::kCloseReasonNameSize);
    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error.find("inconsistent header: close reason names") != std::string::npos);

    segment.header().close_reason_names[3][0] = '\0';
    REQUIRE(reader.open(instance.name, error));
    CHECK(reader.server_alive());
    CHECK_FALSE(reader.replaced());
    segment.remove();
    CHECK(reader.replaced());
}

TEST_CASE("the reader refuses a segment too short for its pipeline block") {
    ScratchInstance instance("short-pipeline");
    stats::Segment segment;
    std::string error;
    REQUIRE(segment.create(info_for(instance, 1, 4), error));
    // Everything before the pipeline block is there, and the header's size
    // says no more.
    const size_t cut = segment.header().pipeline_offset + sizeof(stats::PipelineBlock) - sizeof(stats::Counter);
    REQUIRE(truncate(instance.path().c_str(), off_t(cut)) == 0);
    segment.header().total_size = cut;
    SegmentReader reader;
    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error == instance.path() + " is not a limaoim stats segment (inconsistent header: file shorter than its "
                                     "header says)");
}

TEST_CASE("the reader tells a live server from a gone one by the segment's lock") {
    ScratchInstance instance("alive");
    std::optional<stats::Segment> segment(std::in_place);
    std::string error;
    REQUIRE(segment->create(info_for(instance, 1, 4), error));
    SegmentReader reader;
    REQUIRE(reader.open(instance.name, error));
    CHECK(reader.server_alive());
    CHECK(reader.server_alive());  // asking leaves nothing held
    segment.reset();               // as after kill -9: the file stays, the lock goes
    CHECK_FALSE(reader.server_alive());
    CHECK_FALSE(reader.replaced());

    // The reader's look at the lock does not keep a new server from starting.
    stats::Segment restarted;
    REQUIRE_MESSAGE(restarted.create(info_for(instance, 1, 4), error), error);
    CHECK(reader.replaced());
}

TEST_CASE("the reader waits for a header being written, and not forever") {
    ScratchInstance instance("incomplete");
    stats::Segment segment;
    std::string error;
    REQUIRE(segment.create(info_for(instance, 1, 4), error));
    std::atomic_ref<uint64_t> magic(segment.header().magic);

    // As in the instant between a server's create and its magic.
    magic.store(0);
    std::thread writer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        magic.store(stats::kMagic, std::memory_order_release);
    });
    SegmentReader reader;
    const auto started = std::chrono::steady_clock::now();
    const bool opened = reader.open(instance.name, error);
    const auto waited = std::chrono::steady_clock::now() - started;
    writer.join();
    REQUIRE_MESSAGE(opened, error);
    CHECK(waited >= std::chrono::milliseconds(150));
    CHECK(waited < std::chrono::milliseconds(1500));
    CHECK(reader.header().pid == getpid());

    // A header that never completes (a server that died starting).
    magic.store(0);
    const auto again = std::chrono::steady_clock::now();
    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error == instance.path() + " is not a limaoim stats segment (its header is not complete)");
    CHECK(std::chrono::steady_clock::now() - again >= SegmentReader::kHeaderWait);
    magic.store(stats::kMagic);

    // An empty file: created, not sized yet.
    segment.remove();
    std::ofstream(instance.path()).close();
    CHECK_FALSE(reader.open(instance.name, error));
    CHECK(error == instance.path() + " is not a limaoim stats segment (shorter than its header)");
}

TEST_CASE("a snapshot sums the workers and finds the busiest live connections") {
    Snapped s(2);
    const stats::WorkerBlock& t = s.snapshot.totals;
    CHECK(t.accepted.get() == kAccepted[0] + kAccepted[1]);
    CHECK(t.connections.get() == kAccepted[0] - kKicked[0] + kAccepted[1] - kKicked[1]);
    CHECK(t.closed[kKickedCode].get() == kKicked[0] + kKicked[1]);
    CHECK(s.snapshot.close_reason_names[kKickedCode] == "kicked");
    CHECK(s.snapshot.close_reason_names[6].empty());
    CHECK(t.packets_in[1].get() == kConnectIn[0] + kConnectIn[1]);
    CHECK(t.bytes_out.get() == kBytesOut[0] + kBytesOut[1]);
    CHECK(t.handshake_latency_us[4].get() == 30);
    CHECK(s.snapshot.uptime_s == doctest::Approx(90.5));
    CHECK(s.snapshot.server_alive);

    REQUIRE(s.snapshot.per_worker.size() == 2);
    CHECK(s.snapshot.per_worker[0].connections == kAccepted[0] - kKicked[0]);
    CHECK(s.snapshot.per_worker[1].authenticated == 2);

    // The closed slot's 18000 packets do not count; worker 1 slot 0 has 401.
    REQUIRE(s.snapshot.top.size() == 2);
    CHECK(s.snapshot.top[0].worker == 1);
    CHECK(s.snapshot.top[0].slot == 0);
    CHECK(s.snapshot.top[1].worker == 0);
    CHECK(s.snapshot.top[1].slot == 3);
    CHECK(s.snapshot.top[1].kib_in == 9);

    // Taking a snapshot again starts from zero rather than adding up.
    take_snapshot(s.reader, 0, 0, s.snapshot);
    CHECK(s.snapshot.totals.accepted.get() == kAccepted[0] + kAccepted[1]);
    CHECK(s.snapshot.top.empty());
}

TEST_CASE("latency quantiles interpolate inside the power-of-two buckets") {
    constexpr HistogramOf us = HistogramOf::Microseconds;
    stats::WorkerBlock block;
    const Histogram& latency = block.handshake_latency_us;
    CHECK_FALSE(histogram_quantile(latency, us, 0.5).has_value());
    block.handshake_latency_us[3].set(100);  // [8, 16) µs
    CHECK(*histogram_quantile(latency, us, 0.5) == doctest::Approx(12));
    block.handshake_latency_us[0].set(100);  // [0, 2) µs
    CHECK(*histogram_quantile(latency, us, 0.25) == doctest::Approx(1));
    CHECK(*histogram_quantile(latency, us, 0.75) == doctest::Approx(12));
    block.handshake_latency_us[10].set(2);  // [1024, 2048) µs
    CHECK(*histogram_quantile(latency, us, 0.999) > 1024);
}

TEST_CASE("count quantiles stay on the whole numbers each bucket holds") {
    constexpr HistogramOf counts = HistogramOf::Counts;
    stats::PipelineBlock block;
    const Histogram& batch = block.commit_batch_messages;
    block.commit_batch_messages[0].set(100);  // 1 message
    CHECK(*histogram_quantile(batch, counts, 0.5) == doctest::Approx(1));
    CHECK(*histogram_quantile(batch, counts, 1.0) == doctest::Approx(1));
    block.commit_batch_messages[2].set(100);  // 4 to 7 messages
    CHECK(*histogram_quantile(batch, counts, 0.75) == doctest::Approx(5.5));
    CHECK(*histogram_quantile(batch, counts, 1.0) == doctest::Approx(7));
}

TEST_CASE("rates are per second and survive a counter that went back") {
    const Traffic before{10, 4, 100, 50, 4000, 2000, 6, 20, 18};
    const Traffic after{30, 8, 300, 50, 10000, 1000, 26, 60, 3};
    const Rates r = rates_between(before, after, 2.0);
    CHECK(r.sends == doctest::Approx(10));
    CHECK(r.recvs == doctest::Approx(20));
    CHECK(r.recvacks == doctest::Approx(1.5));  // restarted: 3 since zero
    CHECK(r.accepted == doctest::Approx(10));
    CHECK(r.closed == doctest::Approx(2));
    CHECK(r.packets_in == doctest::Approx(100));
    CHECK(r.packets_out == doctest::Approx(0));
    CHECK(r.bytes_in == doctest::Approx(3000));
    CHECK(r.bytes_out == doctest::Approx(500));  // restarted: 1000 since zero
}

TEST_CASE("JSON has the documented keys and the summed values") {
    Snapped s(5);
    const Rates rates = rates_between(Traffic{}, traffic_of(s.snapshot), 2.0);
    const json j = to_json(s.snapshot, &rates);
    for (const char* key : {"instance", "pid", "uptime_s", "workers", "capacity", "max_conns", "mode", "io_backend", "gauges",
                            "counters", "handshake_latency_us", "messages", "pipeline", "per_worker", "top", "rates"})
        CHECK_MESSAGE(j.contains(key), key);
    CHECK(j["instance"] == s.instance.name);
    CHECK(j["mode"] == "release");
    CHECK(j["io_backend"] == "unknown");  // info_for() names none
    CHECK(j["gauges"]["device_flags"]["app"] == 3);
    CHECK(j["gauges"]["device_flags"].size() == stats::kDeviceFlagBuckets);

    const json& c = j["counters"];
    CHECK(c["accepted"] == kAccepted[0] + kAccepted[1]);
    CHECK(c["bytes_out"] == kBytesOut[0] + kBytesOut[1]);
    CHECK(c["closed"].size() == kNamedReasons);  // the names the server wrote, no unused codes
    CHECK_FALSE(c["closed"].contains(""));
    CHECK(c["closed"]["kicked"] == kKicked[0] + kKicked[1]);
    CHECK(c["closed"]["peer_closed"] == 0);
    CHECK(c["closed"]["reassembly_budget"] == 0);
    CHECK(c["packets_in"]["connect"] == kConnectIn[0] + kConnectIn[1]);
    CHECK(c["packets_out"]["connack"] == kConnectIn[0] + kConnectIn[1]);
    CHECK(c["decode_errors"]["unknown_type"] == 1);
    CHECK_FALSE(c["decode_errors"].contains("none"));

    CHECK(j["handshake_latency_us"]["buckets"].size() == stats::kLatencyBuckets);
    CHECK(j["handshake_latency_us"]["p50"].get<double>() == doctest::Approx(24));
    CHECK(j["per_worker"][1]["connections"] == kAccepted[1] - kKicked[1]);
    CHECK(j["top"].size() == 3);
    CHECK(j["top"][0]["packets_in"] == 400);
    CHECK(j["rates"]["accepted_per_s"].get<double>() == doctest::Approx((kAccepted[0] + kAccepted[1]) / 2.0));
    CHECK(j["rates"]["sends_per_s"].get<double>() == doctest::Approx(33 / 2.0));
    CHECK(j["rates"]["recvs_per_s"].get<double>() == doctest::Approx(51 / 2.0));
    CHECK(j["rates"]["recvacks_per_s"].get<double>() == doctest::Approx(39 / 2.0));

    take_snapshot(s.reader, 0, 0, s.snapshot);
    const json plain = to_json(s.snapshot, nullptr);
    CHECK_FALSE(plain.contains("top"));
    CHECK_FALSE(plain.contains("rates"));
}

TEST_CASE("JSON has the messaging figures of the workers and of the pipeline") {
    Snapped s(0);
    s.segment.worker(1).sendacks[27].set(4);  // no name: shown because counted
    s.segment.worker(0).sendacks[20].set(2);  // a WKProto code: named, shown because counted
    take_snapshot(s.reader, 0, 0, s.snapshot);
    const json j = to_json(s.snapshot, nullptr);

    const json& m = j["messages"];
    const std::pair<const char*, uint64_t> worker_sums[] = {
        {"sends", 33},          {"sends_in_flight", 6},   {"send_pauses", 9},       {"recvs", 51},
        {"recv_retransmits", 15}, {"recvacks", 39},       {"recvacks_unknown", 21}, {"inflight", 12},
        {"inflight_expired", 57}, {"inflight_evicted", 69}, {"deliveries_stale", 87}, {"rate_limit_waits", 93},
        {"user_rate_limit_waits", 111}, {"deliveries_expired", 123},
    };
    for (const auto& [key, sum] : worker_sums) CHECK_MESSAGE(m[key] == sum, key);
    CHECK(m.size() == std::size(worker_sums) + 2);  // and sendacks, send_latency_us
    CHECK(m["sendacks"]["success"] == 30);
    CHECK(m["sendacks"]["msg_key_error"] == 3);
    CHECK(m["sendacks"]["error"] == 0);
    CHECK(m["sendacks"]["subscriber_not_exist"] == 0);
    CHECK(m["sendacks"]["not_allow_send"] == 0);
    CHECK(m["sendacks"]["reason27"] == 4);
    CHECK(m["sendacks"]["not_support_header"] == 2);
    CHECK_FALSE(m["sendacks"].contains("reason26"));
    CHECK_FALSE(m["sendacks"].contains("connect_kick"));
    CHECK(m["sendacks"].size() == 14);
    CHECK(m["send_latency_us"]["buckets"].size() == stats::kLatencyBuckets);
    CHECK(m["send_latency_us"]["buckets"][6] == 30);
    CHECK(m["send_latency_us"]["count"] == 30);
    CHECK(m["send_latency_us"]["p50"].get<double>() == doctest::Approx(96));

    const json& p = j["pipeline"];
    const std::pair<const char*, uint64_t> pipeline_values[] = {
        {"commits", 101},         {"commit_failures", 2}, {"messages_stored", 250}, {"queue_copies_stored", 40},
        {"dedupe_hits", 3},       {"dedupe_entries", 77}, {"dedupe_evicted", 5},    {"commit_queue", 6},
        {"commit_refused", 8}, {"cursor_advances", 422},    {"fanout_messages", 240}, {"deliveries", 310},    {"deliveries_refused", 9},
        {"offline_receivers", 12}, {"fanout_queue", 14}, {"fanout_no_receivers", 16},
        {"fanout_held", 424}, {"fanout_hold_expired", 425},
        {"conversation_updates", 401}, {"conversation_flushes", 402}, {"conversation_flush_failures", 403},
        {"conversation_users", 404}, {"webhook_calls", 405}, {"webhook_failures", 406},
        {"webhook_online_queue", 407}, {"webhook_online_dropped", 408}, {"webhook_offline_dropped", 409},
        {"webhook_notify_queue", 410}, {"webhook_notify_sent", 411}, {"webhook_notify_dropped", 412},
        {"datasource_calls", 413}, {"datasource_failures", 414}, {"commit_conflicts", 415},
        {"cluster_nodes", 3}, {"cluster_connected", 1}, {"cluster_events_out", 416}, {"cluster_events_in", 417},
        {"cluster_events_dropped", 418}, {"cluster_redis_errors", 419}, {"cluster_resyncs", 420},
        {"cluster_events_rejected", 421}, {"cluster_events_missed", 423}, {"conversation_evictions", 426},
    };
    for (const auto& [key, value] : pipeline_values) CHECK_MESSAGE(p[key] == value, key);
    CHECK(p.size() == std::size(pipeline_values) + 2);  // and the two histograms
    CHECK(p["commit_latency_us"]["buckets"][10] == 100);
    CHECK(p["commit_latency_us"]["p50"].get<double>() == doctest::Approx(1536));
    CHECK(p["commit_batch_messages"]["buckets"][0] == 60);
    CHECK(p["commit_batch_messages"]["buckets"][2] == 41);
    CHECK(p["commit_batch_messages"]["count"] == 101);
    CHECK(p["commit_batch_messages"]["p50"].get<double>() == doctest::Approx(1));
}

TEST_CASE("Prometheus text has the messaging families") {
    Snapped s(0);
    const std::string text = render_prometheus(s.snapshot);
    const auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
    const std::pair<const char*, uint64_t> counters[] = {
        {"sends_total", 33},           {"send_pauses_total", 9},       {"recvs_total", 51},
        {"recv_retransmits_total", 15}, {"recvacks_total", 39},        {"recvacks_unknown_total", 21},
        {"inflight_expired_total", 57}, {"inflight_evicted_total", 69}, {"deliveries_stale_total", 87},
        {"commits_total", 101},        {"commit_failures_total", 2},   {"messages_stored_total", 250},
        {"queue_copies_stored_total", 40}, {"dedupe_hits_total", 3},   {"dedupe_evicted_total", 5},
        {"commit_refused_total", 8}, {"cursor_advances_total", 422},   {"fanout_messages_total", 240}, {"deliveries_total", 310},
        {"deliveries_refused_total", 9}, {"offline_receivers_total", 12}, {"rate_limit_waits_total", 93},
        {"fanout_no_receivers_total", 16}, {"user_rate_limit_waits_total", 111}, {"deliveries_expired_total", 123},
        {"fanout_held_total", 424}, {"fanout_hold_expired_total", 425},
        {"conversation_updates_total", 401}, {"conversation_flushes_total", 402},
        {"conversation_flush_failures_total", 403}, {"webhook_calls_total", 405}, {"webhook_failures_total", 406},
        {"webhook_online_dropped_total", 408}, {"webhook_offline_dropped_total", 409},
        {"webhook_notify_sent_total", 411}, {"webhook_notify_dropped_total", 412}, {"datasource_calls_total", 413},
        {"datasource_failures_total", 414}, {"commit_conflicts_total", 415}, {"cluster_events_out_total", 416},
        {"cluster_events_in_total", 417}, {"cluster_events_dropped_total", 418}, {"cluster_redis_errors_total", 419},
        {"cluster_resyncs_total", 420}, {"cluster_events_rejected_total", 421}, {"cluster_events_missed_total", 423},
        {"conversation_evictions_total", 426},
    };
    for (const auto& [name, value] : counters) {
        CHECK_MESSAGE(has("# TYPE limaoim_" + std::string(name) + " counter"), name);
        CHECK_MESSAGE(has("limaoim_" + std::string(name) + " " + std::to_string(value)), name);
    }
    const std::pair<const char*, uint64_t> gauges[] = {
        {"sends_in_flight", 6}, {"inflight", 12}, {"dedupe_entries", 77}, {"commit_queue", 6}, {"fanout_queue", 14},
        {"conversation_users", 404}, {"webhook_online_queue", 407}, {"webhook_notify_queue", 410},
        {"cluster_nodes", 3}, {"cluster_connected", 1},
    };
    for (const auto& [name, value] : gauges) {
        CHECK_MESSAGE(has("# TYPE limaoim_" + std::string(name) + " gauge"), name);
        CHECK_MESSAGE(has("limaoim_" + std::string(name) + " " + std::to_string(value)), name);
    }

    CHECK(has("# TYPE limaoim_sendacks_total counter"));
    CHECK(has("limaoim_sendacks_total{reason=\"success\"} 30"));
    CHECK(has("limaoim_sendacks_total{reason=\"msg_key_error\"} 3"));
    CHECK(has("limaoim_sendacks_total{reason=\"error\"} 0"));
    CHECK(text.find("reason=\"reason13\"") == std::string::npos);

    CHECK(has("# TYPE limaoim_send_latency_seconds histogram"));
    CHECK(has("limaoim_send_latency_seconds_bucket{le=\"6.4e-05\"} 0"));
    CHECK(has("limaoim_send_latency_seconds_bucket{le=\"0.000128\"} 30"));
    CHECK(has("limaoim_send_latency_seconds_bucket{le=\"+Inf\"} 30"));
    CHECK(has("limaoim_send_latency_seconds_count 30"));
    CHECK(has("# TYPE limaoim_commit_latency_seconds histogram"));
    CHECK(has("limaoim_commit_latency_seconds_bucket{le=\"0.002048\"} 100"));
    CHECK(has("limaoim_commit_latency_seconds_count 100"));
    // Whole numbers: each bucket's le is the greatest count it holds.
    CHECK(has("# TYPE limaoim_commit_batch_messages histogram"));
    CHECK(has("limaoim_commit_batch_messages_bucket{le=\"1\"} 60"));
    CHECK(has("limaoim_commit_batch_messages_bucket{le=\"3\"} 60"));
    CHECK(has("limaoim_commit_batch_messages_bucket{le=\"7\"} 101"));
    CHECK(has("limaoim_commit_batch_messages_sum 285.5"));  // 60 * 1 + 41 * 5.5
    CHECK(has("limaoim_commit_batch_messages_count 101"));
}

TEST_CASE("Prometheus text has typed families, labels and a cumulative histogram") {
    Snapped s(0);
    const std::string text = render_prometheus(s.snapshot);
    const auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
    CHECK(has("# TYPE limaoim_accepted_total counter"));
    CHECK(has("limaoim_accepted_total " + std::to_string(kAccepted[0] + kAccepted[1])));
    CHECK(has("limaoim_closed_total{reason=\"kicked\"} " + std::to_string(kKicked[0] + kKicked[1])));
    CHECK(has("limaoim_closed_total{reason=\"protocol_violation\"} 0"));
    CHECK(text.find("limaoim_closed_total{reason=\"\"}") == std::string::npos);
    CHECK(has("limaoim_packets_in_total{type=\"connect\"} " + std::to_string(kConnectIn[0] + kConnectIn[1])));
    CHECK_FALSE(has("limaoim_packets_in_total{type=\"type12\"} 0"));
    CHECK(has("limaoim_authenticated_by_device_flag{device_flag=\"app\"} 3"));
    CHECK(has("limaoim_worker_connections{worker=\"1\"} " + std::to_string(kAccepted[1] - kKicked[1])));
    CHECK(has("# TYPE limaoim_handshake_latency_seconds histogram"));
    CHECK(has("limaoim_handshake_latency_seconds_bucket{le=\"1.6e-05\"} 0"));
    CHECK(has("limaoim_handshake_latency_seconds_bucket{le=\"3.2e-05\"} 30"));
    CHECK(has("limaoim_handshake_latency_seconds_bucket{le=\"+Inf\"} 30"));
    CHECK(has("limaoim_handshake_latency_seconds_count 30"));

    // Every sample belongs to a family declared just before it.
    std::istringstream lines(text);
    std::string line, family;
    while (std::getline(lines, line)) {
        if (line.rfind("# TYPE ", 0) == 0) {
            family = line.substr(7, line.find(' ', 7) - 7);
        } else if (line[0] != '#') {
            CHECK_MESSAGE(line.rfind(family, 0) == 0, line);
        }
    }
}

TEST_CASE("the table shows sums, quantiles and per-worker connections") {
    Snapped s(2);
    const std::string table = render_table(s.snapshot, nullptr);
    CHECK(table.find("pid " + std::to_string(getpid()) + " (running)") != std::string::npos);
    CHECK(table.find("uptime 0d 00:01:30") != std::string::npos);
    CHECK(table.find("w0 6/1 w1 3/2") != std::string::npos);
    CHECK(table.find("p50 24 us") != std::string::npos);
    CHECK(table.find("kicked") != std::string::npos);
    CHECK(table.find("packet_before_connect") != std::string::npos);
    CHECK(table.find("busiest live connections") != std::string::npos);
}

TEST_CASE("the table has a messages section with the pipeline's figures") {
    Snapped s(0);
    const Rates rates = rates_between(Traffic{}, traffic_of(s.snapshot), 3.0);
    const std::string table = render_table(s.snapshot, &rates);
    const auto has_row = [&](const std::string& label, uint64_t value) {
        char line[128];
        std::snprintf(line, sizeof line, "\n  %-26s %14llu\n", label.c_str(), static_cast<unsigned long long>(value));
        return table.find(line) != std::string::npos;
    };
    const std::pair<const char*, uint64_t> rows[] = {
        {"sends", 33},              {"sends in flight", 6},      {"send pauses", 9},
        {"RECVs", 51},              {"RECV retransmits", 15},    {"RECVACKs", 39},
        {"unknown RECVACKs", 21},   {"RECVs in flight", 12},     {"in-flight expired", 57},
        {"in-flight evicted", 69},  {"stale deliveries", 87},    {"commits", 101},
        {"commit failures", 2},     {"messages stored", 250},    {"queue copies stored", 40},
        {"dedupe hits", 3},         {"dedupe entries", 77},      {"dedupe evicted", 5},
        {"commit queue", 6},        {"commits refused", 8},      {"messages fanned out", 240},
        {"deliveries", 310},        {"deliveries refused", 9},   {"offline receivers", 12},
        {"no receivers known", 16}, {"fan-out queue", 14},      {"rate-limit waits", 93},
        {"conversation updates", 401},
        {"flushes", 402},           {"flush failures", 403},     {"users in memory", 404},
        {"users evicted", 426},
        {"calls", 405},             {"failures", 406},           {"online-status queue", 407},
        {"online-status dropped", 408}, {"msg.offline dropped", 409}, {"msg.notify queue", 410},
        {"msg.notify sent", 411},   {"msg.notify dropped", 412}, {"calls", 413},
        {"failures", 414},
    };
    for (const auto& [label, value] : rows) CHECK_MESSAGE(has_row(label, value), label);
    CHECK(table.find("\nmessages\n") != std::string::npos);
    for (const char* section : {"\nconversations\n", "\nwebhook\n", "\ndatasource\n"})
        CHECK_MESSAGE(table.find(section) != std::string::npos, section);
    // Two to a line, in columns as wide as the longest name.
    CHECK(table.find("\n  error                                0  success                             30\n") !=
          std::string::npos);
    CHECK(table.find("\n  msg_key_error                        3  payload_decode_error                 0\n") !=
          std::string::npos);
    CHECK(table.find("\n  forward_send_packet_error            0  not_allow_send                       0\n") !=
          std::string::npos);
    CHECK(table.find("reason12") == std::string::npos);
    CHECK(table.find("SEND->SENDACK latency      p50 96 us  p99 127 us  (n=30)") != std::string::npos);
    CHECK(table.find("commit latency             p50 1.54 ms  p99 2.04 ms  (n=100)") != std::string::npos);
    CHECK(table.find("messages per commit p50               1.0") != std::string::npos);
    CHECK(table.find("\n  sends/s          11.0   RECVs/s        17.0   RECVACKs/s     13.0\n") != std::string::npos);
}

TEST_CASE("limaoim-stat exit codes and output") {
    ScratchInstance instance("binary");
    const std::string flag = "--instance " + instance.name;

    Run missing = run_stat(flag + " 2>&1");
    CHECK(missing.exit_code == 2);
    CHECK(missing.output.find("no limaoim server is running with instance " + instance.name) != std::string::npos);

    std::optional<stats::Segment> segment(std::in_place);
    std::string error;
    REQUIRE(segment->create(info_for(instance, 2, 8), error));
    fill_workers(*segment);

    Run one = run_stat(flag + " --json --top 1");
    REQUIRE(one.exit_code == 0);
    const json j = json::parse(one.output);
    CHECK(j["counters"]["accepted"] == kAccepted[0] + kAccepted[1]);
    CHECK(j["counters"]["closed"]["kicked"] == kKicked[0] + kKicked[1]);
    CHECK(j["top"].size() == 1);
    CHECK(j["messages"]["sends"] == 33);
    CHECK(j["pipeline"]["commits"] == 101);

    Run prometheus = run_stat("--prometheus", "LIMAOIM_INSTANCE=" + instance.name);
    CHECK(prometheus.exit_code == 0);
    CHECK(prometheus.output.find("\nlimaoim_accepted_total " + std::to_string(kAccepted[0] + kAccepted[1]) + "\n") !=
          std::string::npos);

    Run live = run_stat(flag + " --json -w 0.05 -n 3");
    CHECK(live.exit_code == 0);
    std::istringstream lines(live.output);
    int frames = 0;
    for (std::string line; std::getline(lines, line); ++frames) {
        const json frame = json::parse(line);
        CHECK(frame["rates"]["interval_s"].get<double>() > 0);
        CHECK(frame["counters"]["accepted"] == kAccepted[0] + kAccepted[1]);
        CHECK(frame["rates"].contains("sends_per_s"));
    }
    CHECK(frames == 3);

    segment->header().layout_version = stats::kLayoutVersion + 1;
    Run other_layout = run_stat(flag + " 2>&1");
    CHECK(other_layout.exit_code == 2);
    CHECK(other_layout.output.find("this limaoim-stat reads version") != std::string::npos);
    segment->header().layout_version = stats::kLayoutVersion;

    // Killed: the file stays, its lock is gone.
    segment.reset();
    Run stale = run_stat(flag + " 2>&1");
    CHECK(stale.exit_code == 1);
    CHECK(stale.output.find("server pid " + std::to_string(getpid()) + " is not running (stale segment)") !=
          std::string::npos);
    CHECK(stale.output.find("accepted") != std::string::npos);
}

TEST_CASE("limaoim-stat -w follows a restarted server whose header is still being written") {
    ScratchInstance instance("restart");
    std::optional<stats::Segment> segment(std::in_place);
    std::string error;
    REQUIRE(segment->create(info_for(instance, 2, 8), error));
    fill_workers(*segment);

    // After ~250 ms the server is killed and a new one starts; its magic
    // shows up 300 ms after its file, longer than the view's 100 ms refresh.
    std::thread restart([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        segment.reset();
        std::string restart_error;
        segment.emplace();
        if (!segment->create(info_for(instance, 1, 8), restart_error)) return;
        std::atomic_ref<uint64_t> magic(segment->header().magic);
        magic.store(0);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        magic.store(stats::kMagic, std::memory_order_release);
    });
    Run live = run_stat("--instance " + instance.name + " --json -w 0.1 -n 10");
    restart.join();
    CHECK_MESSAGE(live.exit_code == 0, live.output);
    std::istringstream lines(live.output);
    std::vector<json> frames;
    for (std::string line; std::getline(lines, line);) frames.push_back(json::parse(line, nullptr, false));
    REQUIRE(frames.size() == 10);
    CHECK(frames.front()["workers"] == 2);
    CHECK(frames.back()["workers"] == 1);
    CHECK(frames.back()["counters"]["accepted"] == 0);
}

TEST_CASE("each worker's loop age comes from its heartbeat; a worker not started has none") {
    Snapped s(0);
    // Worker 0 went round 1.5 s ago; worker 1 has not started (heartbeat 0).
    s.segment.worker(0).loop_heartbeat_ms.set(stats::monotonic_ms() - 1500);
    take_snapshot(s.reader, 0, 0, s.snapshot);
    REQUIRE(s.snapshot.per_worker.size() == 2);
    REQUIRE(s.snapshot.per_worker[0].loop_age_ms.has_value());
    CHECK(*s.snapshot.per_worker[0].loop_age_ms >= 1500);
    CHECK(*s.snapshot.per_worker[0].loop_age_ms < 3000);
    CHECK_FALSE(s.snapshot.per_worker[1].loop_age_ms.has_value());

    const json j = to_json(s.snapshot, nullptr);
    CHECK(j["per_worker"][0]["loop_age_ms"].get<uint64_t>() >= 1500);
    CHECK(j["per_worker"][1]["loop_age_ms"].is_null());

    const std::string text = render_prometheus(s.snapshot);
    CHECK(text.find("# TYPE limaoim_worker_loop_age_seconds gauge\n") != std::string::npos);
    CHECK(text.find("limaoim_worker_loop_age_seconds{worker=\"0\"} 1.") != std::string::npos);
    CHECK(text.find("limaoim_worker_loop_age_seconds{worker=\"1\"}") == std::string::npos);

    const std::string table = render_table(s.snapshot, nullptr);
    CHECK(table.find("per worker loop age") != std::string::npos);
    CHECK(table.find(" w1 -") != std::string::npos);
}

TEST_CASE("the server's own segment and limaoim-stat's reader render the same Prometheus text") {
    Snapped s(0);
    stats::Snapshot own;
    const uint64_t now = s.segment.header().start_time_unix_ms + 90'500;
    stats::take_snapshot(s.segment.view(), true, now, own);
    take_snapshot(s.reader, 0, now, s.snapshot);
    CHECK(stats::render_prometheus(own) == render_prometheus(s.snapshot));
    CHECK(own.instance == s.instance.name);
    CHECK(own.totals.rate_limit_waits.get() == 93);
    CHECK(own.pipeline.webhook_notify_sent.get() == 411);
}

TEST_CASE("promtool accepts the Prometheus text") {
    if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
        MESSAGE("skipped: promtool is not installed (apt-get install prometheus)");
        return;
    }
    Snapped s(0);
    s.segment.worker(0).loop_heartbeat_ms.set(stats::monotonic_ms());
    take_snapshot(s.reader, 0, 0, s.snapshot);
    const std::string path = "/tmp/limaoim-unit-metrics-" + std::to_string(getpid()) + ".txt";
    std::ofstream(path) << render_prometheus(s.snapshot);
    Run checked = [&] {
        FILE* pipe = popen(("promtool check metrics < " + path + " 2>&1").c_str(), "r");
        REQUIRE(pipe != nullptr);
        std::string output;
        char buffer[4096];
        for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
        const int status = pclose(pipe);
        return Run{WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
    }();
    unlink(path.c_str());
    CHECK_MESSAGE(checked.exit_code == 0, checked.output);
    CHECK_MESSAGE(checked.output.empty(), checked.output);
}
