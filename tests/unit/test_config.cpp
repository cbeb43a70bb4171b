// load_config: precedence (defaults < file < LIMAOIM_* < flags), the one-to-one
// spellings of every option, each validation message, tokens, and the
// example file and docs staying in step with the option table.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "limaoim/config.h"
#include "limaoim/log/log.h"
#include "child.h"
#include "temp_dir.h"

extern char** environ;

namespace {

using limaoim::Config;
using limaoim::Mode;
using limaoim::TokenEntry;
using limaoim::testing::TempDir;

struct Loaded {
    std::optional<Config> config;
    std::string error;
    bool exit_now = false;
};

Loaded load(std::vector<std::string> args) {
    args.insert(args.begin(), "limaoim");
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    Loaded result;
    result.config = limaoim::load_config(static_cast<int>(args.size()), argv.data(), result.error, result.exit_now);
    return result;
}

std::string error_of(std::vector<std::string> args) {
    Loaded loaded = load(std::move(args));
    CHECK_FALSE(loaded.config.has_value());
    CHECK_FALSE(loaded.exit_now);
    return loaded.error;
}

Config loaded_config(std::vector<std::string> args) {
    Loaded loaded = load(std::move(args));
    INFO("error: " << loaded.error);
    REQUIRE(loaded.config.has_value());
    return *loaded.config;
}

// Every test starts and ends without LIMAOIM_* variables, whatever the
// environment of the test runner held.
struct CleanEnvironment {
    CleanEnvironment() { clear(); }
    ~CleanEnvironment() { clear(); }
    static void clear() {
        std::vector<std::string> names;
        for (char** entry = environ; *entry != nullptr; ++entry) {
            std::string_view text = *entry;
            if (text.starts_with("LIMAOIM_")) names.emplace_back(text.substr(0, text.find('=')));
        }
        for (const std::string& name : names) unsetenv(name.c_str());
    }
    static void set(const std::string& name, const std::string& value) { setenv(name.c_str(), value.c_str(), 1); }
};

class TempToml {
public:
    explicit TempToml(const std::string& contents) {
        static int counter = 0;
        path_ = "/tmp/limaoim-test-config-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".toml";
        std::ofstream(path_) << contents;
    }
    ~TempToml() { std::remove(path_.c_str()); }
    TempToml(const TempToml&) = delete;
    TempToml& operator=(const TempToml&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// What load_config writes to stdout (help and version go there).
std::string stdout_of(const std::vector<std::string>& args, Loaded& loaded) {
    std::string path = "/tmp/limaoim-test-config-stdout-" + std::to_string(getpid());
    std::fflush(stdout);
    std::cout.flush();
    int saved = dup(STDOUT_FILENO);
    int file = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(file, STDOUT_FILENO);
    close(file);
    loaded = load(args);
    std::cout.flush();
    std::fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    std::remove(path.c_str());
    return text.str();
}

std::string flag_of(std::string_view key) {
    std::string flag = "--" + std::string(key);
    std::replace(flag.begin(), flag.end(), '_', '-');
    return flag;
}

std::string env_of(std::string_view key) {
    std::string name = "LIMAOIM_";
    for (char c : key) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot read " << path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// One valid, non-default value per option: as a flag/env text and as TOML.
struct Sample {
    std::string text;
    std::string toml;
};

const std::map<std::string, Sample>& samples() {
    static const std::map<std::string, Sample> table = {
        {"mode", {"test", "\"test\""}},
        {"addr", {"127.0.0.3", "\"127.0.0.3\""}},
        {"port", {"7001", "7001"}},
        {"http_addr", {"127.0.0.1:1600", "\"127.0.0.1:1600\""}},
        {"http_secret", {"s3cret", "\"s3cret\""}},
        {"ws_addr", {"127.0.0.1:2200", "\"127.0.0.1:2200\""}},
        {"wk_addr", {"127.0.0.1:5100", "\"127.0.0.1:5100\""}},
        {"wk_ws_addr", {"127.0.0.1:5200", "\"127.0.0.1:5200\""}},
        {"ws_max_message", {"65536", "65536"}},
        {"http_body_limit", {"2048", "2048"}},
        {"http_allowed_origins", {"http://a.example:8080", "\"http://a.example:8080\""}},
        {"http_max_connections", {"32", "32"}},
        {"api_threads", {"3", "3"}},
        {"data_dir", {"/tmp/limaoim-data", "\"/tmp/limaoim-data\""}},
        {"durability", {"none", "\"none\""}},
        {"commit_window_us", {"250", "250"}},
        {"msg_timeout_ms", {"300", "300"}},
        {"retry_scan_ms", {"50", "50"}},
        {"max_deliveries", {"3", "3"}},
        {"max_inflight", {"2", "2"}},
        {"max_sends_in_flight", {"1", "1"}},
        {"dedupe_window_ms", {"0", "0"}},
        {"dedupe_max", {"7", "7"}},
        {"store", {"redis://127.0.0.1:6379/2", "\"redis://127.0.0.1:6379/2\""}},
        {"node_id", {"1023", "1023"}},
        {"redis_timeout_ms", {"750", "750"}},
        {"redis_wait_replicas", {"2", "2"}},
        {"redis_log_max", {"5000", "5000"}},
        {"redis_bus_max", {"2000", "2000"}},
        {"redis_password_file", {"/run/secrets/redis", "\"/run/secrets/redis\""}},
        {"redis_durability_unchecked", {"true", "true"}},
        {"cluster_secret", {"0123456789abcdef", "\"0123456789abcdef\""}},
        {"cluster_secret_file", {"/run/secrets/cluster", "\"/run/secrets/cluster\""}},
        {"http_secret_file", {"/run/secrets/http", "\"/run/secrets/http\""}},
        {"instance", {"edge-1", "\"edge-1\""}},
        {"workers", {"4096", "4096"}},
        {"max_conns", {"12", "12"}},
        {"auth_timeout_ms", {"100", "100"}},
        {"idle_timeout_ms", {"120000", "120000"}},
        {"kick_delay_ms", {"250", "250"}},
        {"shutdown_timeout_ms", {"5000", "5000"}},
        {"max_packet", {"268435455", "268435455"}},
        {"max_connect_packet", {"16", "16"}},
        {"send_cap", {"1024", "1024"}},
        {"sndbuf", {"0", "0"}},
        {"max_pending_handshakes", {"17", "17"}},
        {"handshakes_per_iteration", {"3", "3"}},
        {"reassembly_budget", {"2097152", "2097152"}},
        {"reassembly_timeout_ms", {"1500", "1500"}},
        {"recv_buffers", {"32768", "32768"}},
        {"recv_buffer_size", {"65536", "65536"}},
        {"recv_mode", {"multishot", "\"multishot\""}},
        {"io_backend", {"epoll", "\"epoll\""}},
        {"server_key_reuse", {"64", "64"}},
        {"log_level", {"warn", "\"warn\""}},
        {"verbose", {"true", "true"}},
        {"webhook", {"https://biz.example:8443/hook", "\"https://biz.example:8443/hook\""}},
        {"webhook_timeout_ms", {"600000", "600000"}},
        {"webhook_notify_batch", {"1", "1"}},
        {"webhook_notify_scan_ms", {"10", "10"}},
        {"webhook_queue_max", {"7", "7"}},
        {"webhook_online_queue_max", {"5", "5"}},
        {"webhook_online_batch", {"1000000", "1000000"}},
        {"datasource", {"http://127.0.0.1:9000/datasource", "\"http://127.0.0.1:9000/datasource\""}},
        {"datasource_timeout_ms", {"60000", "60000"}},
        {"datasource_cache_ms", {"0", "0"}},
        {"conversation_max", {"1000000", "1000000"}},
        {"conversation_flush_ms", {"10", "10"}},
        {"conversation_flush_users", {"1", "1"}},
        {"conversation_users_max", {"100000000", "100000000"}},
        {"max_messages_per_second", {"0", "0"}},
        {"max_messages_per_user", {"7", "7"}},
    };
    return table;
}

}  // namespace

TEST_CASE_FIXTURE(CleanEnvironment, "the HTTP API binds off loopback only with a secret; durability is one of three") {
    CHECK(error_of({"--http-addr=0.0.0.0:1516"}).find("http_secret") != std::string::npos);
    CHECK(error_of({"--ws-addr=2122"}).find("ws_addr must be HOST:PORT") != std::string::npos);
    CHECK(error_of({"--ws-addr=0.0.0.0:99999"}).find("ws_addr's port") != std::string::npos);
    CHECK(error_of({"--ws-max-message=100"}).find("ws_max_message") != std::string::npos);
    CHECK(loaded_config({"--ws-addr", ""}).ws_addr.empty());  // empty: no WebSocket listener
    CHECK(error_of({"--wk-addr=5100"}).find("wk_addr must be HOST:PORT") != std::string::npos);
    CHECK(error_of({"--wk-ws-addr=0.0.0.0:0"}).find("wk_ws_addr's port") != std::string::npos);
    CHECK(loaded_config({}).wk_addr.empty());  // off unless asked for
    CHECK(loaded_config({}).wk_ws_addr.empty());
    CHECK(loaded_config({"--http-addr=0.0.0.0:1516", "--http-secret=s"}).http_secret == "s");
    CHECK(loaded_config({"--http-addr=[::1]:1516"}).http_addr == "[::1]:1516");
    CHECK(loaded_config({"--http-addr=localhost:1516"}).http_addr == "localhost:1516");
    // A name that only starts like a loopback address is not one: it needs the secret.
    CHECK(error_of({"--http-addr", "127.example.com:1516"}).find("http_secret") != std::string::npos);
    CHECK(error_of({"--http-addr=127.0.0.1"}).find("HOST:PORT") != std::string::npos);
    // Origins as browsers send them; the list splits on commas.
    CHECK(allowed_origins(loaded_config({"--http-allowed-origins= http://a.example:8080 ,https://b.example,"})) ==
          std::vector<std::string>{"http://a.example:8080", "https://b.example"});
    for (const char* bad : {"a.example", "http://a.example/", "ftp://a.example", "http://", "http://a b"}) {
        CAPTURE(bad);
        CHECK(error_of({std::string("--http-allowed-origins=") + bad}).find("http_allowed_origins") != std::string::npos);
    }
    CHECK(error_of({"--http-addr=127.0.0.1:99999"}).find("port") != std::string::npos);
    CHECK(error_of({"--durability=fast"}).find("durability") != std::string::npos);
    CHECK(loaded_config({"--durability=sync"}).durability == "sync");
}

TEST_CASE_FIXTURE(CleanEnvironment, "no file, variables or flags: the built-in defaults") {
    Config config = loaded_config({});
    CHECK(config == Config{});
    CHECK(config.mode == Mode::Release);
    CHECK(config.port == 6666);
    CHECK(config.tokens.empty());
    CHECK(std::string(limaoim::to_string(Mode::Release)) == "release");
    CHECK(std::string(limaoim::to_string(Mode::Test)) == "test");
    CHECK(std::string(limaoim::to_string(Mode::Debug)) == "debug");
}

TEST_CASE_FIXTURE(CleanEnvironment, "every option has a flag, a TOML key and a variable, all with the same effect") {
    std::vector<std::string> keys;
    for (std::string_view key : limaoim::option_keys()) {
        if (key != "tokens") keys.emplace_back(key);
    }
    std::vector<std::string> sampled;
    for (const auto& [key, sample] : samples()) sampled.push_back(key);
    std::sort(keys.begin(), keys.end());
    REQUIRE_MESSAGE(keys == sampled, "samples() must give one value for each option");

    for (const auto& [key, sample] : samples()) {
        INFO("option " << key);
        Config by_flag = loaded_config({flag_of(key) + "=" + sample.text});
        CHECK(by_flag != Config{});

        CleanEnvironment::set(env_of(key), sample.text);
        Config by_env = loaded_config({});
        CleanEnvironment::clear();
        CHECK(by_env == by_flag);

        TempToml file(key + " = " + sample.toml + "\n");
        Config by_file = loaded_config({"--config", file.path()});
        by_file.config_path.clear();
        CHECK(by_file == by_flag);
    }
}

TEST_CASE_FIXTURE(CleanEnvironment, "the file overrides the defaults and leaves other options alone") {
    TempToml file("mode = \"debug\"\nport = 7000\nmax_conns = 5\nverbose = true\n");
    Config config = loaded_config({"--config", file.path()});
    CHECK(config.config_path == file.path());
    CHECK(config.mode == Mode::Debug);
    CHECK(config.port == 7000);
    CHECK(config.max_conns == 5);
    CHECK(config.verbose);
    CHECK(config.addr == Config{}.addr);
    CHECK(config.idle_timeout_ms == Config{}.idle_timeout_ms);
}

TEST_CASE_FIXTURE(CleanEnvironment, "variables override the file; flags override variables") {
    TempToml file("port = 7000\nmax_conns = 5\nworkers = 3\n");
    CleanEnvironment::set("LIMAOIM_PORT", "7100");
    CleanEnvironment::set("LIMAOIM_MAX_CONNS", "50");

    Config from_env = loaded_config({"--config", file.path()});
    CHECK(from_env.port == 7100);
    CHECK(from_env.max_conns == 50);
    CHECK(from_env.workers == 3);

    Config from_flags = loaded_config({"--config", file.path(), "--port", "7200"});
    CHECK(from_flags.port == 7200);
    CHECK(from_flags.max_conns == 50);
    CHECK(from_flags.workers == 3);
}

TEST_CASE_FIXTURE(CleanEnvironment, "-c is --config (the original's spelling)") {
    TempToml file("port = 7500\n");
    CHECK(loaded_config({"-c", file.path()}).port == 7500);
    CHECK(loaded_config({"-c", file.path()}).config_path == file.path());
}

TEST_CASE_FIXTURE(CleanEnvironment, "LIMAOIM_CONFIG names the file unless --config does") {
    TempToml by_env("port = 7300\n");
    TempToml by_flag("port = 7400\n");
    CleanEnvironment::set("LIMAOIM_CONFIG", by_env.path());
    CHECK(loaded_config({}).port == 7300);
    CHECK(loaded_config({}).config_path == by_env.path());
    CHECK(loaded_config({"--config", by_flag.path()}).port == 7400);
}

TEST_CASE_FIXTURE(CleanEnvironment, "a flag given twice: the last one wins") {
    CHECK(loaded_config({"--port", "7000", "--port", "7001"}).port == 7001);
}

TEST_CASE_FIXTURE(CleanEnvironment, "verbose: a flag without value, or true/false text") {
    CHECK(loaded_config({"--verbose"}).verbose);
    CleanEnvironment::set("LIMAOIM_VERBOSE", "yes");
    CHECK(loaded_config({}).verbose);
    CHECK_FALSE(loaded_config({"--verbose=false"}).verbose);
    CleanEnvironment::set("LIMAOIM_VERBOSE", "loud");
    CHECK(error_of({}) == "LIMAOIM_VERBOSE: 'loud' is not one of true, false, 1, 0, yes, no, on, off");
}

TEST_CASE_FIXTURE(CleanEnvironment, "errors name the source and the problem") {
    SUBCASE("a variable that is not a number") {
        CleanEnvironment::set("LIMAOIM_MAX_CONNS", "12x");
        CHECK(error_of({}) == "LIMAOIM_MAX_CONNS: '12x' is not a number");
    }
    SUBCASE("an unknown mode") {
        CHECK(error_of({"--mode", "prod"}) == "--mode: 'prod' is not one of release, test, debug");
    }
    SUBCASE("a value out of range in the file, with its line") {
        TempToml file("port = 7000\nmax_packet = 8\n");
        CHECK(error_of({"--config", file.path()}) ==
              file.path() + ": max_packet must be between 16 and 268435455, got 8 (line 2)");
    }
    SUBCASE("an unknown key in the file") {
        TempToml file("port = 7000\nmax_con = 5\n");
        CHECK(error_of({"--config", file.path()}) == file.path() + ": unknown key 'max_con' (line 2)");
    }
    SUBCASE("a table the file does not know is an unknown key too") {
        TempToml file("[server]\nport = 7000\n");
        CHECK(error_of({"--config", file.path()}) == file.path() + ": unknown key 'server' (line 1)");
    }
    SUBCASE("a TOML value of the wrong type") {
        TempToml file("port = \"7000\"\n");
        CHECK(error_of({"--config", file.path()}) == file.path() + ": port must be an integer (line 1)");
        TempToml text_file("mode = 1\n");
        CHECK(error_of({"--config", text_file.path()}) == text_file.path() + ": mode must be a string (line 1)");
        TempToml bool_file("verbose = \"yes\"\n");
        CHECK(error_of({"--config", bool_file.path()}) == bool_file.path() + ": verbose must be true or false (line 1)");
    }
    SUBCASE("invalid TOML: the parser's message at its line") {
        TempToml file("port = 7000\nmode = \"test\n");
        std::string error = error_of({"--config", file.path()});
        CHECK(error.starts_with(file.path() + ":2:"));
        CHECK(error.size() > file.path().size() + 6);
    }
    SUBCASE("an unreadable file") {
        std::string missing = "/tmp/limaoim-test-config-missing-" + std::to_string(getpid()) + ".toml";
        CHECK(error_of({"--config", missing}) == missing + ": cannot read: No such file or directory");
        CHECK(error_of({"--config", "/tmp"}) == "/tmp: cannot read: Is a directory");
    }
    SUBCASE("an unknown flag") {
        CHECK(error_of({"--max-con", "5"}).find("--max-con") != std::string::npos);
    }
    SUBCASE("a store that is neither embedded nor redis") {
        CHECK(error_of({"--store", "mysql://x"}) == "--store: store must be 'embedded', a redis:// or a redis+sentinel:// URL, got 'mysql://x'");
    }
    SUBCASE("an instance name with a slash") {
        CHECK(error_of({"--instance", "a/b"}) == "--instance: instance must not contain '/', got 'a/b'");
    }
}

TEST_CASE_FIXTURE(CleanEnvironment, "ranges: the limits are accepted, one past them refused") {
    struct Case {
        std::string flag, value, error;  // empty error: accepted
    };
    const Case cases[] = {
        {"--port", "1", ""},
        {"--port", "65535", ""},
        {"--port", "0", "--port: port must be between 1 and 65535, got 0"},
        {"--port", "65536", "--port: port must be between 1 and 65535, got 65536"},
        {"--port", "-1", "--port: port must be between 1 and 65535, got -1"},
        {"--port", " 1", "--port: ' 1' is not a number"},
        {"--port", "", "--port: '' is not a number"},
        {"--node-id", "1024", "--node-id: node_id must be between 0 and 1023, got 1024"},
        {"--workers", "4097", "--workers: workers must be between 0 and 4096, got 4097"},
        {"--max-conns", "0", "--max-conns: max_conns must be at least 1, got 0"},
        {"--max-conns", "18446744073709551615", ""},
        {"--max-conns", "18446744073709551616",
         "--max-conns: max_conns must be at least 1, got 18446744073709551616"},
        {"--auth-timeout-ms", "99", "--auth-timeout-ms: auth_timeout_ms must be between 100 and 4294967295, got 99"},
        {"--idle-timeout-ms", "99", "--idle-timeout-ms: idle_timeout_ms must be between 100 and 4294967295, got 99"},
        {"--kick-delay-ms", "99", "--kick-delay-ms: kick_delay_ms must be between 100 and 4294967295, got 99"},
        {"--shutdown-timeout-ms", "4294967296",
         "--shutdown-timeout-ms: shutdown_timeout_ms must be between 100 and 4294967295, got 4294967296"},
        {"--max-packet", "16", ""},
        {"--max-packet", "15", "--max-packet: max_packet must be between 16 and 268435455, got 15"},
        {"--max-packet", "268435456", "--max-packet: max_packet must be between 16 and 268435455, got 268435456"},
        {"--send-cap", "1023", "--send-cap: send_cap must be between 1024 and 4294967295, got 1023"},
        {"--max-pending-handshakes", "0",
         "--max-pending-handshakes: max_pending_handshakes must be between 1 and 4294967295, got 0"},
        {"--recv-buffers", "16", ""},
        {"--recv-buffers", "8", "--recv-buffers: recv_buffers must be between 16 and 32768, got 8"},
        {"--recv-buffers", "65536", "--recv-buffers: recv_buffers must be between 16 and 32768, got 65536"},
        {"--recv-buffers", "1000", "--recv-buffers: recv_buffers must be a power of two, got 1000"},
        {"--recv-buffer-size", "256", ""},
        {"--recv-buffer-size", "255", "--recv-buffer-size: recv_buffer_size must be between 256 and 65536, got 255"},
        {"--recv-buffer-size", "65537",
         "--recv-buffer-size: recv_buffer_size must be between 256 and 65536, got 65537"},
    };
    for (const Case& c : cases) {
        INFO(c.flag << " " << c.value);
        Loaded loaded = load({c.flag, c.value});
        CHECK(loaded.error == c.error);
        CHECK(loaded.config.has_value() == c.error.empty());
    }
}

TEST_CASE_FIXTURE(CleanEnvironment, "tokens from the file, the variable and flags add up") {
    TempToml file(
        "[[tokens]]\nuid = \"alice\"\ntoken = \"from-file\"\n"
        "[[tokens]]\nuid = \"bob\"\ndevice_flag = 1\ntoken = \"bob-web\"\n");
    CleanEnvironment::set("LIMAOIM_TOKENS", "carol:2:carol-pc,dave:0:a:b:c");
    Config config = loaded_config({"--config", file.path(), "--token", "erin:1:erin-web", "--token", "frank:0:f"});
    std::vector<TokenEntry> expected = {
        {"alice", 0, "from-file"}, {"bob", 1, "bob-web"}, {"carol", 2, "carol-pc"},
        {"dave", 0, "a:b:c"},      {"erin", 1, "erin-web"}, {"frank", 0, "f"},
    };
    CHECK(config.tokens == expected);
}

TEST_CASE_FIXTURE(CleanEnvironment, "a later source's token for the same uid and device flag replaces the earlier") {
    TempToml file("[[tokens]]\nuid = \"alice\"\ntoken = \"old\"\n[[tokens]]\nuid = \"alice\"\ndevice_flag = 1\ntoken = \"web\"\n");
    CleanEnvironment::set("LIMAOIM_TOKENS", "alice:0:newer");
    Config config = loaded_config({"--config", file.path(), "--token", "alice:1:newest"});
    std::vector<TokenEntry> expected = {{"alice", 0, "newer"}, {"alice", 1, "newest"}};
    CHECK(config.tokens == expected);
}

TEST_CASE_FIXTURE(CleanEnvironment, "invalid tokens are refused with the source") {
    // The token part of a malformed entry is never shown: error messages end up in logs.
    CHECK(error_of({"--token", "alice:secret"}) == "--token: 'alice:...' is not UID:DEVICE_FLAG:TOKEN");
    CHECK(error_of({"--token", "s3cret-token"}) ==
          "--token: an entry without ':' (not shown: it may be a token) is not UID:DEVICE_FLAG:TOKEN");
    CHECK(error_of({"--token", "alice:256:secret"}) == "--token: device_flag must be between 0 and 255, got 256");
    CHECK(error_of({"--token", "alice:x:secret"}) == "--token: 'x' is not a number");
    CHECK(error_of({"--token", ":0:secret"}) == "--token: token uid must not be empty");
    CHECK(error_of({"--token", "alice:0:"}) == "--token: token for uid 'alice' must not be empty");
    CHECK(error_of({"--token", "al@ce:0:secret"}) == "--token: token uid must not contain '@', got 'al@ce'");

    CleanEnvironment::set("LIMAOIM_TOKENS", "alice:0:secret,,bob:0:x");
    CHECK(error_of({}) == "LIMAOIM_TOKENS: '' is not UID:DEVICE_FLAG:TOKEN");
    CleanEnvironment::clear();

    TempToml no_token("[[tokens]]\nuid = \"alice\"\n");
    CHECK(error_of({"--config", no_token.path()}) ==
          no_token.path() + ": tokens[0]: token for uid 'alice' must not be empty (line 1)");
    TempToml typo("[[tokens]]\nuid = \"alice\"\ntoken = \"t\"\n[[tokens]]\nuid = \"bob\"\ndevice_flg = 1\n");
    CHECK(error_of({"--config", typo.path()}) ==
          typo.path() + ": tokens[1]: unknown key 'device_flg' (expected uid, token, device_flag) (line 6)");
    TempToml big_flag("[[tokens]]\nuid = \"alice\"\ntoken = \"t\"\ndevice_flag = 300\n");
    CHECK(error_of({"--config", big_flag.path()}) ==
          big_flag.path() + ": tokens[0]: device_flag must be between 0 and 255, got 300 (line 4)");
    TempToml not_tables("tokens = [\"alice:0:t\"]\n");
    CHECK(error_of({"--config", not_tables.path()}) ==
          not_tables.path() + ": tokens[0]: must be a table ([[tokens]]) (line 1)");
}

TEST_CASE_FIXTURE(CleanEnvironment, "addr takes HOST, HOST:PORT and tcp://HOST:PORT") {
    Config url = loaded_config({"--addr", "tcp://127.0.0.1:7000"});
    CHECK(url.addr == "127.0.0.1");
    CHECK(url.port == 7000);

    Config host_port = loaded_config({"--addr", "127.0.0.2:7001"});
    CHECK(host_port.addr == "127.0.0.2");
    CHECK(host_port.port == 7001);

    Config v6 = loaded_config({"--addr", "tcp://[::1]:7002"});
    CHECK(v6.addr == "::1");
    CHECK(v6.port == 7002);

    Config bare_v6 = loaded_config({"--addr", "::1"});
    CHECK(bare_v6.addr == "::1");
    CHECK(bare_v6.port == Config{}.port);

    CHECK(loaded_config({"--addr", "127.0.0.1:7000", "--port", "7100"}).port == 7100);

    TempToml file("addr = \"tcp://127.0.0.4:7003\"\n");
    Config from_file = loaded_config({"--config", file.path()});
    CHECK(from_file.addr == "127.0.0.4");
    CHECK(from_file.port == 7003);
    TempToml both("port = 7100\naddr = \"127.0.0.1:7000\"\n");
    CHECK(loaded_config({"--config", both.path()}).port == 7100);

    CHECK(error_of({"--addr", "tcp://127.0.0.1:0"}) == "--addr: port must be between 1 and 65535, got 0");
    CHECK(error_of({"--addr", "tcp://:7000"}) == "--addr: 'tcp://:7000' has no host");
    CHECK(error_of({"--addr", "[::1"}) == "--addr: '[::1' has an unclosed '['");
}

TEST_CASE_FIXTURE(CleanEnvironment, "--help prints every flag and stops; --version prints the version") {
    Loaded help;
    std::string text = stdout_of({"--help"}, help);
    CHECK(help.exit_now);
    CHECK_FALSE(help.config.has_value());
    CHECK(help.error.empty());
    for (std::string_view key : limaoim::option_keys()) {
        std::string flag = key == "tokens" ? "--token" : flag_of(key);
        CHECK_MESSAGE(text.find(flag) != std::string::npos, flag << " missing from --help");
    }
    CHECK(text.find("--config") != std::string::npos);
    CHECK(text.find("=200000") != std::string::npos);  // defaults are shown

    Loaded version;
    CHECK(stdout_of({"--version"}, version) == "limaoim 0.1.0\n");
    CHECK(version.exit_now);
    CHECK_FALSE(version.config.has_value());

    CHECK_FALSE(load({}).exit_now);
}

TEST_CASE_FIXTURE(CleanEnvironment, "limaoim.example.toml loads, names every option and holds the defaults") {
    std::string path = std::string(LIMAOIM_SOURCE_DIR) + "/limaoim.example.toml";
    Config config = loaded_config({"--config", path});
    config.config_path.clear();
    CHECK(config == Config{});

    std::string text = read_text(path);
    for (std::string_view key : limaoim::option_keys()) {
        std::string spelled = key == "tokens" ? "[[tokens]]" : "\n" + std::string(key) + " = ";
        CHECK_MESSAGE(text.find(spelled) != std::string::npos, key << " missing from limaoim.example.toml");
    }
}

TEST_CASE("docs/CONFIG.md lists every option's flag, key and variable") {
    std::string text = read_text(std::string(LIMAOIM_SOURCE_DIR) + "/docs/CONFIG.md");
    for (std::string_view key : limaoim::option_keys()) {
        std::string flag = key == "tokens" ? "--token" : flag_of(key);
        for (const std::string& name : {flag, "`" + std::string(key) + "`", env_of(key)}) {
            CHECK_MESSAGE(text.find(name) != std::string::npos, name << " missing from docs/CONFIG.md");
        }
    }
}

TEST_CASE_FIXTURE(CleanEnvironment, "the TOML example in docs/CONFIG.md loads") {
    std::string text = read_text(std::string(LIMAOIM_SOURCE_DIR) + "/docs/CONFIG.md");
    size_t start = text.find("```toml\n");
    REQUIRE(start != std::string::npos);
    start += 8;
    size_t end = text.find("```", start);
    REQUIRE(end != std::string::npos);
    TempToml file(text.substr(start, end - start));
    Config config = loaded_config({"--config", file.path()});
    CHECK(config.port == 6666);
    CHECK(config.instance == "edge-1");
    CHECK(config.tokens.size() == 2);
}

TEST_CASE_FIXTURE(CleanEnvironment, "webhook and datasource take http:// or https:// URLs with a host, empty = off") {
    CHECK(loaded_config({}).webhook.empty());
    CHECK(loaded_config({"--webhook", "http://127.0.0.1:8080/hook"}).webhook == "http://127.0.0.1:8080/hook");
    CHECK(loaded_config({"--webhook", "https://user:pw@biz.example/hook?x=1"}).webhook ==
          "https://user:pw@biz.example/hook?x=1");
    CHECK(loaded_config({"--datasource", "http://[::1]:9000"}).datasource == "http://[::1]:9000");
    CHECK(loaded_config({"--webhook", ""}).webhook.empty());
    // Messages show a URL's scheme and host only: credentials, path and query may be secrets.
    CHECK(error_of({"--webhook", "ftp://u:pw@biz.example/hook?key=s3cret"}) ==
          "--webhook: webhook must be an http:// or https:// URL (empty = off), got 'ftp://biz.example/...'");
    CHECK(error_of({"--webhook", "biz.example/hook"}) ==
          "--webhook: webhook must be an http:// or https:// URL (empty = off), got a value without '://' (not shown)");
    CHECK(error_of({"--webhook", "http:///hook"}) == "--webhook: webhook has no host, got 'http:///...'");
    CHECK(error_of({"--webhook", "http://:80/hook"}) == "--webhook: webhook has no host, got 'http://:80/...'");
    CHECK(error_of({"--datasource", "https://biz.example/a b"}) ==
          "--datasource: datasource must not contain spaces or control characters, got 'https://biz.example/...'");
    TempToml file("datasource = \"mysql://db\"\n");
    CHECK(error_of({"--config", file.path()}) ==
          file.path() + ": datasource must be an http:// or https:// URL (empty = off), got 'mysql://db' (line 1)");
}

TEST_CASE_FIXTURE(CleanEnvironment, "the new options' ranges") {
    struct Case {
        std::string flag, value, error;  // empty error: accepted
    };
    const Case cases[] = {
        {"--webhook-timeout-ms", "99", "--webhook-timeout-ms: webhook_timeout_ms must be between 100 and 600000, got 99"},
        {"--webhook-notify-batch", "0", "--webhook-notify-batch: webhook_notify_batch must be between 1 and 10000, got 0"},
        {"--webhook-notify-batch", "10001",
         "--webhook-notify-batch: webhook_notify_batch must be between 1 and 10000, got 10001"},
        {"--webhook-notify-scan-ms", "9",
         "--webhook-notify-scan-ms: webhook_notify_scan_ms must be between 10 and 600000, got 9"},
        {"--webhook-queue-max", "0", "--webhook-queue-max: webhook_queue_max must be at least 1, got 0"},
        {"--webhook-queue-max", "18446744073709551615", ""},
        {"--webhook-online-queue-max", "0",
         "--webhook-online-queue-max: webhook_online_queue_max must be between 1 and 100000000, got 0"},
        {"--webhook-online-batch", "0", "--webhook-online-batch: webhook_online_batch must be between 1 and 1000000, got 0"},
        {"--datasource-timeout-ms", "60001",
         "--datasource-timeout-ms: datasource_timeout_ms must be between 100 and 60000, got 60001"},
        {"--datasource-cache-ms", "86400001",
         "--datasource-cache-ms: datasource_cache_ms must be between 0 and 86400000, got 86400001"},
        {"--conversation-max", "0", "--conversation-max: conversation_max must be between 1 and 1000000, got 0"},
        {"--conversation-max", "1000001",
         "--conversation-max: conversation_max must be between 1 and 1000000, got 1000001"},
        {"--conversation-flush-ms", "9",
         "--conversation-flush-ms: conversation_flush_ms must be between 10 and 3600000, got 9"},
        {"--conversation-flush-users", "0",
         "--conversation-flush-users: conversation_flush_users must be between 1 and 1000000, got 0"},
        {"--conversation-users-max", "0",
         "--conversation-users-max: conversation_users_max must be between 1 and 100000000, got 0"},
        {"--max-messages-per-second", "4294967295", ""},
        {"--max-messages-per-second", "4294967296",
         "--max-messages-per-second: max_messages_per_second must be between 0 and 4294967295, got 4294967296"},
    };
    for (const Case& c : cases) {
        INFO(c.flag << " " << c.value);
        Loaded loaded = load({c.flag, c.value});
        CHECK(loaded.error == c.error);
        CHECK(loaded.config.has_value() == c.error.empty());
    }
}

TEST_CASE_FIXTURE(CleanEnvironment, "max_messages_per_user defaults to 100, or unlimited in test mode unless a source sets it") {
    CHECK(loaded_config({}).max_messages_per_user == 100);
    CHECK(loaded_config({"--mode", "debug"}).max_messages_per_user == 100);
    CHECK(loaded_config({"--mode", "test"}).max_messages_per_user == 0);
    CHECK(loaded_config({"--mode", "test", "--max-messages-per-user", "100"}).max_messages_per_user == 100);
    CHECK(loaded_config({"--max-messages-per-user", "0"}).max_messages_per_user == 0);
    TempToml file("mode = \"test\"\nmax_messages_per_user = 5\n");
    CHECK(loaded_config({"--config", file.path()}).max_messages_per_user == 5);
}

TEST_CASE_FIXTURE(CleanEnvironment, "conversation_max defaults to 100, or 100000 in test mode unless a source sets it") {
    CHECK(loaded_config({}).conversation_max == 100);
    CHECK(loaded_config({"--mode", "debug"}).conversation_max == 100);
    CHECK(loaded_config({"--mode", "test"}).conversation_max == limaoim::kTestModeConversationMax);
    CHECK(loaded_config({"--mode", "test", "--conversation-max", "100"}).conversation_max == 100);
    CleanEnvironment::set("LIMAOIM_MODE", "test");
    CHECK(loaded_config({}).conversation_max == 100000);
    CleanEnvironment::set("LIMAOIM_CONVERSATION_MAX", "7");
    CHECK(loaded_config({}).conversation_max == 7);
    CleanEnvironment::clear();
    TempToml file("mode = \"test\"\nconversation_max = 100\n");
    CHECK(loaded_config({"--config", file.path()}).conversation_max == 100);
    TempToml test_only("mode = \"test\"\n");
    CHECK(loaded_config({"--config", test_only.path()}).conversation_max == 100000);
    CHECK(loaded_config({"--config", test_only.path(), "--mode", "release"}).conversation_max == 100);
}

TEST_CASE_FIXTURE(CleanEnvironment, "--check-config FILE loads FILE like --config, with every check, and says so") {
    TempToml file("port = 7000\nhttp_addr = \"0.0.0.0:1516\"\nhttp_secret = \"s3cret-value\"\n"
                  "webhook = \"https://user:pw@biz.example/hook?token=t0ps3cret\"\n");
    Config config = loaded_config({"--check-config", file.path()});
    CHECK(config.check_only);
    CHECK(config.config_path == file.path());
    CHECK(config.port == 7000);
    CHECK_FALSE(loaded_config({"--config", file.path()}).check_only);
    // The rules that join options, after all sources, apply as at a start.
    TempToml open_api("http_addr = \"0.0.0.0:1516\"\n");
    CHECK(error_of({"--check-config", open_api.path()}).find("http_secret") != std::string::npos);
    CHECK(error_of({"--check-config", "/nonexistent/limaoim.toml"}) ==
          "/nonexistent/limaoim.toml: cannot read: No such file or directory");
    CHECK(error_of({"--check-config", file.path(), "--config", file.path()}).find("excludes") != std::string::npos);
    // Environment and flags still apply on top.
    CleanEnvironment::set("LIMAOIM_PORT", "7100");
    CHECK(loaded_config({"--check-config", file.path()}).port == 7100);
    CHECK(loaded_config({"--check-config", file.path(), "--port", "7200"}).port == 7200);

    // The summary names the setup and never a secret, a token or a URL's credentials, path or query.
    const std::string line = limaoim::summary(config);
    CHECK(line.find("listen 0.0.0.0:7000") != std::string::npos);
    CHECK(line.find("HTTP API 0.0.0.0:1516 (bearer secret set)") != std::string::npos);
    CHECK(line.find("webhook https://biz.example") != std::string::npos);
    CHECK(line.find("datasource off") != std::string::npos);
    for (const char* secret : {"s3cret-value", "pw", "t0ps3cret", "/hook"})
        CHECK_MESSAGE(line.find(secret) == std::string::npos, secret);
}

TEST_CASE_FIXTURE(CleanEnvironment, "log_level: one of four names; --verbose and --mode debug mean debug") {
    CHECK(limaoim::effective_log_level(loaded_config({})) == "info");
    CHECK(limaoim::effective_log_level(loaded_config({"--log-level", "error"})) == "error");
    CHECK(limaoim::effective_log_level(loaded_config({"--mode", "debug"})) == "debug");
    CHECK(limaoim::effective_log_level(loaded_config({"--mode", "debug", "--log-level", "warn"})) == "warn");
    CHECK(limaoim::effective_log_level(loaded_config({"--log-level", "warn", "--verbose"})) == "debug");
    CHECK(error_of({"--log-level", "loud"}) ==
          "--log-level: log_level must be 'error', 'warn', 'info' or 'debug', got 'loud'");
}

TEST_CASE_FIXTURE(CleanEnvironment, "secret files: read at start, line end stripped, never shown; Redis needs a cluster secret") {
    const TempDir dir;
    const std::string password = dir.path("redis"), secret = dir.path("cluster"), empty = dir.path("empty");
    std::ofstream(password) << "p@ss word\n";
    std::ofstream(secret) << "0123456789abcdef0123\r\n";
    std::ofstream(empty) << "\n";
    std::string error;

    Config config = loaded_config({"--store", "redis://h:1", "--redis-password-file", password, "--cluster-secret-file", secret});
    CHECK(config.redis_password.empty());  // not until read_secret_files()
    REQUIRE_MESSAGE(limaoim::read_secret_files(config, error), error);
    CHECK(config.redis_password == "p@ss word");
    CHECK(config.cluster_secret == "0123456789abcdef0123");
    CHECK(limaoim::signed_cluster(config).empty());
    CHECK(limaoim::summary(config).find("p@ss") == std::string::npos);
    // A password with '/' (base64) in the URL: the Redis parser takes it up to
    // the last '@'; the summary must not show the part before the '/'.
    config = loaded_config({"--store", "redis://:ab/cd@h:6379/0", "--node-id", "1"});
    CHECK(limaoim::summary(config).find(":ab") == std::string::npos);
    CHECK(limaoim::summary(config).find("store redis://(not shown") != std::string::npos);

    config = loaded_config({"--redis-password-file", empty});
    CHECK_FALSE(limaoim::read_secret_files(config, error));
    CHECK(error == "redis_password_file: " + empty + " is empty");
    config = loaded_config({"--cluster-secret-file", dir.path("missing")});
    CHECK_FALSE(limaoim::read_secret_files(config, error));
    CHECK(error.find("cluster_secret_file: " + dir.path("missing") + ": cannot read") == 0);
    config = loaded_config({"--cluster-secret-file", secret, "--cluster-secret", "0123456789abcdef"});
    CHECK_FALSE(limaoim::read_secret_files(config, error));
    CHECK(error.find("give the secret once") != std::string::npos);

    // The API's secret from a file: it counts for a non-loopback http_addr.
    config = loaded_config({"--http-addr", "0.0.0.0:1516", "--http-secret-file", secret});
    REQUIRE_MESSAGE(limaoim::read_secret_files(config, error), error);
    CHECK(config.http_secret == "0123456789abcdef0123");
    CHECK(limaoim::summary(config).find("(bearer secret set)") != std::string::npos);
    CHECK(limaoim::summary(config).find("0123456789") == std::string::npos);
    config = loaded_config({"--http-secret-file", secret, "--http-secret", "x"});
    CHECK_FALSE(limaoim::read_secret_files(config, error));
    CHECK(error.find("http_secret_file") != std::string::npos);
    CHECK(error.find("give the secret once") != std::string::npos);

    CHECK(limaoim::signed_cluster(loaded_config({})).empty());  // embedded: no other node
    CHECK(limaoim::signed_cluster(loaded_config({"--store", "redis://h:1"})).find("cluster_secret_file") != std::string::npos);
    CHECK(limaoim::signed_cluster(loaded_config({"--store", "redis://h:1", "--cluster-secret", "short"})) ==
          "cluster_secret must be at least 16 bytes");
}

TEST_CASE("LIMAOIM_ASSERT: a broken invariant is logged with its place, then the process aborts") {
    const limaoim::testing::ChildEnd end = limaoim::testing::run_in_child([] {
        const int sends_handed_over = 0;
        LIMAOIM_ASSERT(sends_handed_over > 0);
    });
    CHECK(end.aborted());
    CHECK(end.stderr.find("error invariant: ") != std::string::npos);
    CHECK(end.stderr.find("test_config.cpp:") != std::string::npos);
    CHECK(end.stderr.find("sends_handed_over > 0 does not hold") != std::string::npos);
}
