// A fresh directory under /tmp for one test, removed with everything in it
// when the test ends (also when a REQUIRE stops it). Header-only: the unit
// suites use it without the support library.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace limaoim::testing {

struct TempDir {
    std::filesystem::path root;
    TempDir() {
        char pattern[] = "/tmp/limaoim-test-XXXXXX";
        REQUIRE(mkdtemp(pattern) != nullptr);
        root = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(root, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    // A store's directory: its "data" subdirectory, which the store makes.
    std::string data() const { return (root / "data").string(); }
    std::string path(const std::string& name) const { return (root / name).string(); }
};

}  // namespace limaoim::testing
