// A function run in a forked child whose stderr is kept: for the checks
// that end the process (LIMAOIM_ASSERT aborts; the parent judges how the
// child ended and what it said).
#pragma once

#include <csignal>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace limaoim::testing {

struct ChildEnd {
    int status = 0;      // as waitpid() reports it
    std::string stderr;  // all the child wrote there
    bool aborted() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT; }
};

template <typename Body>
ChildEnd run_in_child(Body&& body) {
    ChildEnd end;
    int out[2];
    if (pipe(out) != 0) return end;
    const pid_t child = fork();
    if (child < 0) return end;
    if (child == 0) {
        dup2(out[1], STDERR_FILENO);
        signal(SIGABRT, SIG_DFL);  // not the test framework's crash report
        body();
        _exit(0);
    }
    close(out[1]);
    char buffer[512];
    for (ssize_t n; (n = read(out[0], buffer, sizeof buffer)) > 0;) end.stderr.append(buffer, size_t(n));
    close(out[0]);
    waitpid(child, &end.status, 0);
    return end;
}

}  // namespace limaoim::testing
