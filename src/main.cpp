// limaoim: loads the configuration (file < environment < flags) and runs
// the server (server/server.h), or only checks the configuration.
#include <cstdio>
#include <optional>
#include <string>

#include "limaoim/config.h"
#include "limaoim/log/log.h"
#include "limaoim/server/server.h"

int main(int argc, char** argv) {
    using namespace limaoim;
    std::string error;
    bool exit_now = false;
    std::optional<Config> config = load_config(argc, argv, error, exit_now);
    if (exit_now) return 0;
    if (!config || !read_secret_files(*config, error)) {
        log::write(log::Level::Error, "limaoim", "%s", error.c_str());
        return 2;
    }
    if (config->check_only) {
        // The checks of a start, then nothing: no store, port or stats segment is opened.
        if (const std::string problem = start_problem(*config); !problem.empty()) {
            log::write(log::Level::Error, "config", "%s", problem.c_str());
            return 2;
        }
        std::printf("config OK: %s\n", summary(*config).c_str());
        return 0;
    }
    Server server(*config);
    return server.run();
}
