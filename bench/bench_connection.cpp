// bench_connection: the LiMaoIM connection load test on one machine.
//
// The original test ran `bench_connection -cids 1-25000 -hostname <server>
// -timeout 10m` on five load machines; here one machine opens all the clients
// over loopback. One process may hold only 20000 fds, so the parent forks
// worker processes (bench_connection_worker.h) and reports their counters,
// which live in a shared anonymous mapping, once a second.
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "bench_connection_options.h"
#include "bench_connection_shared.h"
#include "bench_connection_worker.h"

namespace {

using namespace limaoim::bench;

constexpr int64_t kSecondNs = 1'000'000'000;
constexpr int kExitPass = 0;
constexpr int kExitFail = 1;
constexpr int kExitUsage = 2;
// Descriptors a worker needs besides its sockets (stdio, epoll, slack).
constexpr uint64_t kSpareFds = 32;
constexpr int64_t kWorkerExitGraceNs = 30 * kSecondNs;
constexpr int64_t kPollNs = 100'000'000;  // how soon the end of all workers is noticed
// Bound on the workers' preparation (65536 -client-keys take about 2 s).
constexpr int64_t kPrepareTimeoutNs = 120 * kSecondNs;

volatile sig_atomic_t g_stop_signal = 0;

void on_stop_signal(int signal_number) { g_stop_signal = signal_number; }

int64_t monotonic_ns() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * kSecondNs + now.tv_nsec;
}

// The shared mapping: the control block, then one counter block per worker.
struct SharedRegion {
    SharedControl* control = nullptr;
    WorkerCounters* workers = nullptr;
    size_t bytes = 0;
};

bool map_shared_region(uint32_t workers, SharedRegion& region) {
    region.bytes = sizeof(SharedControl) + workers * sizeof(WorkerCounters);
    void* memory = mmap(nullptr, region.bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return false;
    region.control = new (memory) SharedControl;
    region.workers = new (static_cast<char*>(memory) + sizeof(SharedControl)) WorkerCounters[workers];
    return true;
}

// Raises the soft fd limit to the hard one and checks that each worker's
// share of the clients fits under it. Empty string when fine.
std::string plan_worker_count(const Options& options, uint32_t& workers) {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    const uint64_t clients = options.total_count();
    workers = options.procs != 0
                  ? options.procs
                  : static_cast<uint32_t>((clients + kMaxSocketsPerWorker - 1) / kMaxSocketsPerWorker);
    workers = static_cast<uint32_t>(std::min<uint64_t>(workers, clients));
    // Each worker takes its share of the -cids and of the -storm-cids clients.
    const uint64_t per_worker = (options.client_count() + workers - 1) / workers + (options.storm_count() + workers - 1) / workers;
    if (per_worker + kSpareFds > limit.rlim_cur)
        return "-procs " + std::to_string(workers) + " gives " + std::to_string(per_worker) +
               " sockets per worker, above the fd limit of " + std::to_string(limit.rlim_cur);
    return {};
}

// Each worker takes a contiguous block of the -cids clients and one of the
// -storm-cids clients; global indices run over the -cids clients first.
std::vector<WorkerPlan> split_clients(const Options& options, uint32_t workers) {
    std::vector<WorkerPlan> plans(workers);
    const uint64_t clients = options.client_count();
    const uint64_t storm = options.storm_count();
    uint64_t next = 0, next_storm = 0;
    for (uint32_t i = 0; i < workers; ++i) {
        const uint64_t count = clients / workers + (i < clients % workers ? 1 : 0);
        const uint64_t storm_count = storm / workers + (i < storm % workers ? 1 : 0);
        plans[i] = {i, workers, options.first_cid + next, count, next,
                    options.storm_first_cid + next_storm, storm_count, clients + next_storm};
        next += count;
        next_storm += storm_count;
    }
    return plans;
}

void install_stop_handlers() {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;  // no SA_RESTART: the per-second sleep wakes up
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    signal(SIGPIPE, SIG_IGN);
}

struct Run {
    const Options& options;
    SharedRegion region;
    std::vector<pid_t> pids;
    std::vector<int> worker_status;  // waitpid status, -1 while running
    uint32_t workers_running = 0;
    int64_t start_ns = 0;
    int64_t end_ns = 0;
    FILE* report = nullptr;
    Totals previous;  // at the previous report
    LatencySnapshot previous_connack, previous_login, previous_pong;
    int64_t storm_start_ns = 0;         // 0: not decided yet
    int64_t storm_all_offered_ns = 0;   // when the last storm client was offered
    uint64_t established_before_storm = 0;  // -cids clients online when the storm began
};

bool fork_workers(Run& run, const std::vector<WorkerPlan>& plans) {
    std::fflush(nullptr);  // a child must not flush the parent's buffers again
    for (const WorkerPlan& plan : plans) {
        const pid_t pid = fork();
        if (pid < 0) {
            std::perror("bench_connection: fork");
            return false;
        }
        if (pid == 0) _exit(run_worker(run.options, plan, *run.region.control, run.region.workers[plan.index]));
        run.pids.push_back(pid);
        run.worker_status.push_back(-1);
        ++run.workers_running;
    }
    return true;
}

void reap_workers(Run& run, bool block) {
    for (size_t i = 0; i < run.pids.size(); ++i) {
        if (run.worker_status[i] != -1) continue;
        int status = 0;
        if (waitpid(run.pids[i], &status, block ? 0 : WNOHANG) == run.pids[i]) {
            run.worker_status[i] = status;
            --run.workers_running;
        }
    }
}

// Waits until every worker has prepared or exited (or a stop signal, or
// kPrepareTimeoutNs), then starts the clock. False if the run should not go on.
bool start_clock(Run& run) {
    const int64_t give_up = monotonic_ns() + kPrepareTimeoutNs;
    const auto all_prepared = [&run] {
        const uint64_t exited = run.pids.size() - run.workers_running;
        return run.region.control->ready.load(std::memory_order_acquire) + exited >= run.pids.size();
    };
    bool timed_out = false;
    while (!g_stop_signal && !all_prepared() && !timed_out) {
        usleep(1000);
        reap_workers(run, false);
        timed_out = monotonic_ns() >= give_up;
    }
    if (timed_out)
        std::fprintf(stderr, "bench_connection: the workers did not prepare within %llds\n",
                     static_cast<long long>(kPrepareTimeoutNs / kSecondNs));
    run.start_ns = monotonic_ns();
    run.region.control->start_ns.store(run.start_ns, std::memory_order_release);
    return !g_stop_signal && !timed_out;
}

Totals read_totals(const Run& run) { return sum_counters(run.region.workers, run.pids.size()); }

struct Latencies {
    LatencySnapshot connack, login, pong;
};

Latencies read_latencies(const Run& run) {
    Latencies latencies;
    for (size_t i = 0; i < run.pids.size(); ++i) {
        latencies.connack.add(run.region.workers[i].connect_to_connack);
        latencies.login.add(run.region.workers[i].login);
        latencies.pong.add(run.region.workers[i].pong);
    }
    return latencies;
}

// The phase of the second (begin_ns, end_ns]: 0 before the storm (the -cids
// ramp and the pause), 1 when storm clients were offered during it, 2 after
// the last was offered.
int storm_phase(const Run& run, int64_t begin_ns, int64_t end_ns) {
    if (run.storm_start_ns == 0 || run.storm_start_ns >= end_ns) return 0;
    return run.storm_all_offered_ns == 0 || run.storm_all_offered_ns > begin_ns ? 1 : 2;
}

const char* phase_name(int phase) {
    static constexpr const char* kNames[] = {"before_storm", "storm", "after_storm"};
    return kNames[phase];
}

// Milliseconds with one decimal for the text lines, "-" when no sample.
std::string format_ms(int64_t us) {
    if (us < 0) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.1fms", static_cast<double>(us) / 1000);
    return text;
}

// Microseconds for the CSV, empty when no sample.
std::string csv_us(int64_t us) { return us < 0 ? std::string() : std::to_string(us); }

// The storm begins -storm-delay after every -cids client came online or gave
// up; the parent publishes the moment and the workers start offering then.
// Also notes when the last storm client was offered.
void track_storm(Run& run) {
    const Options& options = run.options;
    if (!options.storm()) return;
    const Totals totals = read_totals(run);
    const int64_t now = monotonic_ns();
    if (run.storm_start_ns == 0 && totals.est_came_online + totals.est_gave_up >= options.client_count()) {
        run.storm_start_ns = now + options.storm_delay_ns;
        run.established_before_storm = totals.est_online();
        run.region.control->storm_start_ns.store(run.storm_start_ns, std::memory_order_release);
        if (!options.quiet) {
            std::printf("storm: %llu of %llu established clients online at t=%.1fs; %llu storm clients offered at %s "
                        "from t=%.1fs\n",
                        (unsigned long long)totals.est_online(), (unsigned long long)options.client_count(),
                        static_cast<double>(now - run.start_ns) / kSecondNs, (unsigned long long)options.storm_count(),
                        options.storm_rate == 0 ? "full speed" : (std::to_string(options.storm_rate) + "/s").c_str(),
                        static_cast<double>(run.storm_start_ns - run.start_ns) / kSecondNs);
            std::fflush(stdout);
        }
    }
    if (run.storm_start_ns != 0 && run.storm_all_offered_ns == 0 && totals.storm_launched >= options.storm_count())
        run.storm_all_offered_ns = now;
}

std::string failure_breakdown(const Totals& totals) {
    std::string text;
    for (size_t r = 0; r < kFailReasonCount; ++r) {
        if (totals.failed_by[r] == 0) continue;
        text += text.empty() ? " (" : " ";
        text += std::string(to_string(static_cast<FailReason>(r))) + "=" + std::to_string(totals.failed_by[r]);
    }
    return text.empty() ? text : text + ")";
}

void report_second(Run& run, int64_t second) {
    const Totals totals = read_totals(run);
    const Latencies latencies = read_latencies(run);
    const Totals& before = run.previous;
    const uint64_t clients = run.options.total_count();
    const uint64_t handshakes = totals.came_online - before.came_online;
    const auto delta_failed = [&](FailReason reason) {
        const auto r = static_cast<size_t>(reason);
        return (unsigned long long)(totals.failed_by[r] - before.failed_by[r]);
    };
    const LatencySnapshot connack = latencies.connack.minus(run.previous_connack);
    const LatencySnapshot login = latencies.login.minus(run.previous_login);
    const LatencySnapshot pong = latencies.pong.minus(run.previous_pong);
    const int phase = storm_phase(run, run.start_ns + (second - 1) * kSecondNs, run.start_ns + second * kSecondNs);
    const unsigned long long offered = totals.offered - before.offered, retries = totals.retries - before.retries;
    const unsigned long long tcp = totals.tcp_connected - before.tcp_connected;
    const unsigned long long closed = totals.closed_by_peer - before.closed_by_peer, dropped = totals.dropped - before.dropped;
    const unsigned long long established_lost = totals.est_closed_by_peer + totals.est_dropped;
    if (!run.options.quiet && run.options.storm()) {
        std::printf("t=%llds %s offered=%llu retries=%llu tcp=%llu connack=%llu online=%llu in_flight=%llu "
                    "reset=%llu refused=%llu timeout=%llu closed=%llu dropped=%llu est_online=%llu est_lost=%llu "
                    "connack_p50=%s p99=%s login_p99=%s pong_p99=%s\n",
                    static_cast<long long>(second), phase_name(phase), offered, retries, tcp,
                    (unsigned long long)handshakes, (unsigned long long)totals.online(), (unsigned long long)totals.in_flight,
                    delta_failed(FailReason::Reset), delta_failed(FailReason::Refused), delta_failed(FailReason::Timeout),
                    closed, dropped, (unsigned long long)totals.est_online(), established_lost,
                    format_ms(connack.percentile(0.5)).c_str(), format_ms(connack.percentile(0.99)).c_str(),
                    format_ms(login.percentile(0.99)).c_str(), format_ms(pong.percentile(0.99)).c_str());
        std::fflush(stdout);
    } else if (!run.options.quiet) {
        std::printf("t=%llds online=%llu connecting=%llu failed=%llu%s closed_by_peer=%llu dropped=%llu "
                    "pongs_missing=%llu pings=%llu pongs=%llu\n",
                    static_cast<long long>(second), (unsigned long long)totals.online(),
                    (unsigned long long)totals.connecting(clients), (unsigned long long)totals.failed,
                    failure_breakdown(totals).c_str(), (unsigned long long)totals.closed_by_peer,
                    (unsigned long long)totals.dropped, (unsigned long long)totals.pongs_missing,
                    (unsigned long long)totals.pings_sent, (unsigned long long)totals.pongs_received);
        std::fflush(stdout);
    }
    if (run.report != nullptr) {
        std::fprintf(run.report, "%lld,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,", static_cast<long long>(second),
                     (unsigned long long)totals.online(), (unsigned long long)totals.connecting(clients),
                     (unsigned long long)totals.failed, (unsigned long long)totals.closed_by_peer,
                     (unsigned long long)totals.dropped, (unsigned long long)totals.pongs_missing,
                     (unsigned long long)totals.pings_sent, (unsigned long long)totals.pongs_received,
                     (unsigned long long)handshakes);
        std::fprintf(run.report, "%d,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%s,%s,%s,%s,%s,%s\n", phase,
                     offered, retries, tcp, delta_failed(FailReason::Reset), delta_failed(FailReason::Refused),
                     delta_failed(FailReason::Timeout), closed, dropped, (unsigned long long)totals.est_online(),
                     established_lost, (unsigned long long)totals.in_flight, (unsigned long long)totals.retry_waiting,
                     csv_us(connack.percentile(0.5)).c_str(), csv_us(connack.percentile(0.99)).c_str(),
                     csv_us(login.percentile(0.5)).c_str(), csv_us(login.percentile(0.99)).c_str(),
                     csv_us(pong.percentile(0.5)).c_str(), csv_us(pong.percentile(0.99)).c_str());
        std::fflush(run.report);
    }
    run.previous = totals;
    run.previous_connack = latencies.connack;
    run.previous_login = latencies.login;
    run.previous_pong = latencies.pong;
}

// Reports each whole second of the run until the timeout, a stop signal, or
// every worker has ended (all of its clients failed or were closed), which
// is noticed within kPollNs.
void monitor(Run& run) {
    const int64_t deadline = run.start_ns + run.options.timeout_ns;
    int64_t second = 1;
    while (!g_stop_signal && run.workers_running > 0) {
        const int64_t report_ns = run.start_ns + second * kSecondNs;
        const int64_t wake_ns = std::min({deadline, report_ns, monotonic_ns() + kPollNs});
        const timespec wake{static_cast<time_t>(wake_ns / kSecondNs), static_cast<long>(wake_ns % kSecondNs)};
        if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, nullptr) == EINTR) continue;
        reap_workers(run, false);
        track_storm(run);
        if (wake_ns == report_ns) report_second(run, second++);
        if (wake_ns >= deadline) break;
        // -storm-hold: stop at the first whole second after it.
        if (wake_ns == report_ns && run.storm_all_offered_ns != 0 && run.options.storm_hold_ns >= 0 &&
            wake_ns >= run.storm_all_offered_ns + run.options.storm_hold_ns)
            break;
    }
    run.end_ns = monotonic_ns();
}

// Tells the workers to close their sockets and waits for them; a worker that
// does not finish within the grace period is killed.
void stop_workers(Run& run) {
    run.region.control->stop.store(1, std::memory_order_relaxed);
    const int64_t give_up = monotonic_ns() + kWorkerExitGraceNs;
    while (run.workers_running > 0 && monotonic_ns() < give_up) {
        reap_workers(run, false);
        if (run.workers_running > 0) usleep(10'000);
    }
    for (size_t i = 0; i < run.pids.size(); ++i)
        if (run.worker_status[i] == -1) kill(run.pids[i], SIGKILL);
    reap_workers(run, true);
}

double seconds(int64_t ns) { return static_cast<double>(ns) / kSecondNs; }

double cpu_seconds(const rusage& usage, bool user) {
    const timeval& t = user ? usage.ru_utime : usage.ru_stime;
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

std::string worker_problems(const Run& run) {
    std::string text;
    for (size_t i = 0; i < run.pids.size(); ++i) {
        const int status = run.worker_status[i];
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
        text += (text.empty() ? " worker " : "; worker ") + std::to_string(i) +
                (WIFSIGNALED(status) ? " killed by signal " + std::to_string(WTERMSIG(status))
                                     : " exited with status " + std::to_string(WEXITSTATUS(status)));
    }
    return text;
}

// The -cids clients' ramp (without a storm: every client's).
void print_ramp(const Run& run, const Totals& totals) {
    const uint64_t clients = run.options.client_count();
    const uint64_t came_online = run.options.storm() ? totals.est_came_online : totals.came_online;
    const int64_t last_online_ns = run.options.storm() ? totals.est_last_online_ns : totals.last_online_ns;
    if (came_online == 0) {
        std::printf("  ramp: no client came online\n");
        return;
    }
    const double ramp = seconds(last_online_ns - run.start_ns);
    const double rate = ramp > 0 ? static_cast<double>(came_online) / ramp : 0;
    if (came_online == clients)
        std::printf("  ramp: all %llu clients online after %.2fs (%.0f handshakes/s)\n", (unsigned long long)clients, ramp, rate);
    else
        std::printf("  ramp: only %llu of %llu clients came online, the last after %.2fs (%.0f handshakes/s)\n",
                    (unsigned long long)came_online, (unsigned long long)clients, ramp, rate);
}

double percent(uint64_t part, uint64_t whole) { return whole == 0 ? 0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole); }

// The storm's lines of the summary.
void print_storm(const Run& run, const Totals& totals) {
    const Options& options = run.options;
    const uint64_t storm = options.storm_count();
    if (run.storm_start_ns == 0) {
        std::printf("  storm: did not start (the established clients had not all come online or given up)\n");
        return;
    }
    const double from = seconds(run.storm_start_ns - run.start_ns);
    const double offer_end = seconds((run.storm_all_offered_ns != 0 ? run.storm_all_offered_ns : run.end_ns) - run.start_ns);
    const double offered_rate = offer_end > from ? static_cast<double>(totals.storm_launched) / (offer_end - from) : 0;
    const uint64_t storm_online = totals.came_online - totals.est_came_online;
    const double last = seconds(totals.last_online_ns - run.start_ns);
    const double handshake_rate = last > from ? static_cast<double>(storm_online) / (last - from) : 0;
    std::printf("  storm: %llu clients (cids %llu-%llu) at %s from t=%.1fs: offered %llu by t=%.1fs (%.0f/s); "
                "%llu came online (%.1f%%), the last at t=%.1fs (%.0f handshakes/s from the storm's start)\n",
                (unsigned long long)storm, (unsigned long long)options.storm_first_cid,
                (unsigned long long)options.storm_last_cid,
                options.storm_rate == 0 ? "full speed" : (std::to_string(options.storm_rate) + "/s").c_str(), from,
                (unsigned long long)totals.storm_launched, offer_end, offered_rate, (unsigned long long)storm_online,
                percent(storm_online, storm), storm_online == 0 ? 0.0 : last, handshake_rate);
    std::printf("  connects: offered %llu (retries %llu), TCP connected %llu, reset before CONNACK %llu, refused %llu, "
                "timed out %llu, gave up %llu, in flight at the end %llu\n",
                (unsigned long long)totals.offered, (unsigned long long)totals.retries,
                (unsigned long long)totals.tcp_connected,
                (unsigned long long)totals.failed_by[static_cast<size_t>(FailReason::Reset)],
                (unsigned long long)totals.failed_by[static_cast<size_t>(FailReason::Refused)],
                (unsigned long long)totals.failed_by[static_cast<size_t>(FailReason::Timeout)],
                (unsigned long long)totals.gave_up, (unsigned long long)totals.in_flight);
    std::printf("  established: %llu online when the storm began, %llu at the end; lost %llu (closed by the server %llu, "
                "dropped for missed PONGs %llu); all online clients: closed by the server %llu, dropped %llu\n",
                (unsigned long long)run.established_before_storm, (unsigned long long)totals.est_online(),
                (unsigned long long)(totals.est_closed_by_peer + totals.est_dropped),
                (unsigned long long)totals.est_closed_by_peer, (unsigned long long)totals.est_dropped,
                (unsigned long long)totals.closed_by_peer, (unsigned long long)totals.dropped);
    const Latencies latencies = read_latencies(run);
    std::printf("  latency over the run: CONNECT->CONNACK p50 %s p99 %s; connect()->CONNACK p50 %s p99 %s; "
                "PING->PONG p50 %s p99 %s\n",
                format_ms(latencies.connack.percentile(0.5)).c_str(), format_ms(latencies.connack.percentile(0.99)).c_str(),
                format_ms(latencies.login.percentile(0.5)).c_str(), format_ms(latencies.login.percentile(0.99)).c_str(),
                format_ms(latencies.pong.percentile(0.5)).c_str(), format_ms(latencies.pong.percentile(0.99)).c_str());
}

void print_cpu(const Run& run) {
    rusage self{}, children{};
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    const double user = cpu_seconds(self, true) + cpu_seconds(children, true);
    const double system = cpu_seconds(self, false) + cpu_seconds(children, false);
    const double wall = seconds(run.end_ns - run.start_ns);
    std::printf("  cpu: user %.2fs sys %.2fs = %.0f%% of one core over %.1fs; largest worker RSS %.1f MiB\n", user,
                system, wall > 0 ? 100 * (user + system) / wall : 0, wall, children.ru_maxrss / 1024.0);
}

// With a storm: PASS when every -cids client came online, no online client
// was lost (closed by the server or dropped) and the server reset or refused
// no connect. Storm clients still waiting (or timed out) do not fail it.
int storm_verdict(const Run& run, const Totals& totals, const std::string& problems) {
    std::string reasons;
    const auto add = [&reasons](uint64_t count, const char* what) {
        if (count != 0) reasons += (reasons.empty() ? " " : "; ") + std::to_string(count) + what;
    };
    add(run.options.client_count() - totals.est_came_online, " established clients never came online");
    add(totals.est_closed_by_peer + totals.est_dropped, " established clients lost");
    add(totals.closed_by_peer + totals.dropped - totals.est_closed_by_peer - totals.est_dropped, " storm clients lost after their CONNACK");
    add(totals.reset_before_connack(), " connects reset or refused before their CONNACK");
    if (run.storm_start_ns == 0) reasons += (reasons.empty() ? " " : "; ") + std::string("the storm did not start");
    if (!problems.empty()) reasons += (reasons.empty() ? "" : ";") + problems;
    const uint64_t storm_waiting = run.options.storm_count() - (totals.came_online - totals.est_came_online);
    const std::string note = storm_waiting == 0 ? std::string()
                                                : " (" + std::to_string(storm_waiting) + " storm clients not online at the end)";
    if (reasons.empty()) {
        std::printf("verdict: PASS: no established client lost, no connect reset or refused%s%s\n", note.c_str(),
                    g_stop_signal ? " (stopped early)" : "");
        return kExitPass;
    }
    std::printf("verdict: FAIL:%s%s%s\n", reasons.c_str(), note.c_str(), g_stop_signal ? " (stopped early)" : "");
    return kExitFail;
}

// Prints the summary and returns the exit status.
int summarize(const Run& run) {
    const Options& options = run.options;
    const Totals totals = read_totals(run);
    const uint64_t clients = options.total_count();
    const std::string client_keys =
        options.client_keys == 0 ? std::string()
                                 : ", " + std::to_string(options.client_keys) + " pre-made client keys per worker (no shared secret)";
    const std::string storm =
        options.storm() ? " + " + std::to_string(options.storm_count()) + " storm clients (cids " +
                              std::to_string(options.storm_first_cid) + "-" + std::to_string(options.storm_last_cid) + ")"
                        : std::string();
    const std::string retry = options.retry_ms == 0 ? std::string() : ", retry after " + std::to_string(options.retry_ms) + " ms";
    std::printf("summary: %llu clients (cids %llu-%llu)%s to %s port %u%s, %s version %u%s%s, %zu workers, %.1fs%s\n",
                (unsigned long long)options.client_count(), (unsigned long long)options.first_cid,
                (unsigned long long)options.last_cid, storm.c_str(), inet_ntoa(options.server), options.port,
                options.ws ? " (WebSocket)" : "", limaoim::proto::dialect(options.dialect).name,
                options.version, client_keys.c_str(), retry.c_str(), run.pids.size(), seconds(run.end_ns - run.start_ns),
                g_stop_signal ? " (stopped early by a signal)" : "");
    print_ramp(run, totals);
    if (options.storm()) print_storm(run, totals);
    std::printf("  end: online=%llu never_online=%llu failed=%llu%s closed_by_peer=%llu dropped=%llu pongs_missing=%llu "
                "pings=%llu pongs=%llu retries=%llu gave_up=%llu\n",
                (unsigned long long)totals.online(), (unsigned long long)(clients - totals.came_online),
                (unsigned long long)totals.failed, failure_breakdown(totals).c_str(),
                (unsigned long long)totals.closed_by_peer, (unsigned long long)totals.dropped,
                (unsigned long long)totals.pongs_missing, (unsigned long long)totals.pings_sent,
                (unsigned long long)totals.pongs_received, (unsigned long long)totals.retries,
                (unsigned long long)totals.gave_up);
    print_cpu(run);
    const std::string problems = worker_problems(run);
    if (options.storm()) return storm_verdict(run, totals, problems);
    const bool pass = totals.came_online == clients && totals.dropped == 0 && totals.closed_by_peer == 0 && problems.empty();
    if (pass) {
        std::printf("verdict: PASS: all %llu clients came online and stayed online%s\n", (unsigned long long)clients,
                    g_stop_signal ? " until stopped early" : " until the timeout");
    } else {
        std::string reasons;
        const auto add = [&reasons](uint64_t count, const char* what) {
            if (count != 0) reasons += (reasons.empty() ? " " : "; ") + std::to_string(count) + what;
        };
        add(clients - totals.came_online, " never came online");
        add(totals.dropped, " dropped (no PONG)");
        add(totals.closed_by_peer, " closed by the server");
        if (!problems.empty()) reasons += (reasons.empty() ? "" : ";") + problems;
        std::printf("verdict: FAIL:%s%s\n", reasons.c_str(), g_stop_signal ? " (stopped early)" : "");
    }
    return pass ? kExitPass : kExitFail;
}

int usage_error(const std::string& message) {
    std::fprintf(stderr, "bench_connection: %s\n(run bench_connection -help for the flags)\n", message.c_str());
    return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
    const ParseResult parsed = parse_options(argc, argv);
    if (parsed.help) {
        std::fputs(usage_text(), stdout);
        return kExitPass;
    }
    if (!parsed.options) return usage_error(parsed.error);
    Run run{*parsed.options};
    uint32_t workers = 0;
    if (std::string error = plan_worker_count(run.options, workers); !error.empty()) return usage_error(error);
    if (!run.options.report_path.empty()) {
        run.report = std::fopen(run.options.report_path.c_str(), "w");
        if (run.report == nullptr) return usage_error("-report " + run.options.report_path + ": " + std::strerror(errno));
        std::fputs("t_s,online,connecting,failed,closed_by_peer,dropped,pongs_missing,pings_sent,pongs_received,"
                   "handshakes_per_s,phase,offered_per_s,retries_per_s,tcp_connected_per_s,reset_per_s,refused_per_s,"
                   "timeouts_per_s,closed_after_connack_per_s,dropped_per_s,established_online,established_lost,"
                   "in_flight,retry_waiting,connack_p50_us,connack_p99_us,login_p50_us,login_p99_us,pong_p50_us,"
                   "pong_p99_us\n", run.report);
    }
    if (!map_shared_region(workers, run.region)) {
        std::perror("bench_connection: mmap");
        return kExitFail;
    }
    install_stop_handlers();
    const bool forked = fork_workers(run, split_clients(run.options, workers));
    const bool started = forked && start_clock(run);
    if (started) monitor(run);
    else run.end_ns = monotonic_ns();
    stop_workers(run);
    const int status = forked ? summarize(run) : kExitFail;
    if (run.report != nullptr) std::fclose(run.report);
    return status;
}
