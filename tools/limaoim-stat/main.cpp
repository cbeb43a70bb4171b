// limaoim-stat: prints a limaoim server's statistics from its shared-memory
// segment, /dev/shm/limaoim-<instance>. Never talks to the server.
//
// Exit status: 0 ok; 1 printed, but the server that wrote the segment is not
// running; 2 nothing printed (no segment, not a segment, other layout, usage).
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "limaoim/log/clock.h"
#include "limaoim/stats/reader.h"
#include "report.h"

namespace {

using namespace limaoim::stat_tool;
using Clock = std::chrono::steady_clock;

constexpr int kExitOk = 0;
constexpr int kExitStale = 1;
constexpr int kExitError = 2;

struct Options {
    std::string instance = "6666";
    double watch_s = 0;    // 0: print once
    uint64_t refreshes = 0;  // with watch_s: 0 runs until Ctrl-C
    bool json = false;
    bool prometheus = false;
    size_t top = 0;
};

void warn_stale(const Snapshot& s) {
    std::cerr << "limaoim-stat: warning: server pid " << s.pid << " is not running (stale segment)\n";
}

int print_once(const SegmentReader& reader, const Options& options) {
    Snapshot snapshot;
    take_snapshot(reader, options.top, uint64_t(limaoim::clock::wall_ms()), snapshot);
    if (!snapshot.server_alive) warn_stale(snapshot);
    if (options.json)
        std::cout << to_json(snapshot, nullptr).dump(2) << '\n';
    else if (options.prometheus)
        std::cout << render_prometheus(snapshot);
    else
        std::cout << render_table(snapshot, nullptr);
    std::cout.flush();
    return snapshot.server_alive ? kExitOk : kExitStale;
}

// SIGINT and SIGTERM stay blocked during the live view and are taken by
// sigtimedwait, so a Ctrl-C that lands while a frame is drawn still ends the
// next wait at once, and no handler runs in the middle of output.
sigset_t block_stop_signals() {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, nullptr);
    return stop;
}

// False when a stop signal arrived before the deadline.
bool wait_until(const sigset_t& stop, Clock::time_point deadline) {
    for (;;) {
        const auto left = deadline - Clock::now();
        if (left <= Clock::duration::zero()) return true;
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
        const timespec timeout{time_t(ns / 1'000'000'000), long(ns % 1'000'000'000)};
        if (sigtimedwait(&stop, nullptr, &timeout) > 0) return false;
        if (errno != EAGAIN && errno != EINTR) return true;
    }
}

void print_frame(const Snapshot& snapshot, const Rates& rates, const Options& options, uint64_t frame) {
    if (options.json) {
        std::cout << to_json(snapshot, &rates).dump() << '\n';
    } else {
        if (isatty(STDOUT_FILENO))
            std::cout << "\x1b[H\x1b[2J";  // home and clear: redraw in place
        else if (frame > 0)
            std::cout << '\n';
        std::cout << render_table(snapshot, &rates);
    }
    std::cout.flush();
}

int watch(SegmentReader& reader, const Options& options) {
    const sigset_t stop = block_stop_signals();
    const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.watch_s));
    const Clock::time_point start = Clock::now();
    Snapshot snapshot;
    std::optional<Traffic> previous;
    Clock::time_point previous_at;
    bool was_alive = true;
    for (uint64_t frame = 0; options.refreshes == 0 || frame < options.refreshes; ++frame) {
        if (frame > 0 && !wait_until(stop, start + interval * int64_t(frame))) break;
        if (reader.replaced()) {  // the server exited or restarted
            std::string error;
            if (!reader.open(options.instance, error)) {
                std::cerr << "limaoim-stat: " << error << '\n';
                return kExitError;
            }
            previous.reset();
        }
        take_snapshot(reader, options.top, uint64_t(limaoim::clock::wall_ms()), snapshot);
        const Clock::time_point now = Clock::now();
        const Traffic traffic = traffic_of(snapshot);
        // The first frame has nothing to compare with: averages since start.
        const Rates rates = previous ? rates_between(*previous, traffic, std::chrono::duration<double>(now - previous_at).count())
                                     : rates_between(Traffic{}, traffic, snapshot.uptime_s);
        if (was_alive && !snapshot.server_alive) warn_stale(snapshot);
        was_alive = snapshot.server_alive;
        print_frame(snapshot, rates, options, frame);
        previous = traffic;
        previous_at = now;
    }
    return was_alive ? kExitOk : kExitStale;
}

void define_options(CLI::App& app, Options& options) {
    app.add_option("--instance", options.instance, "server instance: its --instance, by default its port")
        ->envname("LIMAOIM_INSTANCE")
        ->capture_default_str();
    auto* watch = app.add_option("-w,--watch", options.watch_s, "redraw every SECONDS with per-second rates")
                      ->check(CLI::Range(0.05, 86400.0));
    app.add_option("-n,--count", options.refreshes, "with -w: stop after COUNT refreshes")
        ->check(CLI::PositiveNumber)
        ->needs(watch);
    auto* json = app.add_flag("--json", options.json, "print JSON (one object per line with -w)");
    auto* prometheus = app.add_flag("--prometheus", options.prometheus, "print Prometheus text exposition format");
    json->excludes(prometheus);
    prometheus->excludes(watch);
    app.add_option("--top", options.top, "show the N live connections with the most packets")
        ->check(CLI::Range(size_t(1), size_t(1'000'000)));
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"limaoim-stat: statistics of a running limaoim server, read from its shared-memory segment"};
    Options options;
    define_options(app, options);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? kExitOk : kExitError;
    }

    SegmentReader reader;
    std::string error;
    if (!reader.open(options.instance, error)) {
        std::cerr << "limaoim-stat: " << error << '\n';
        return kExitError;
    }
    return options.watch_s > 0 ? watch(reader, options) : print_once(reader, options);
}
