// The protocol test vectors (the files in meson's vectors_dir), parsed.
// Header-only: the unit suites use it without the support library.
#pragma once

#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace limaoim::testing {

// `file` (e.g. "packets.json") from the vectors directory; the test stops
// when it cannot be opened, so a missing vector file fails instead of
// checking nothing.
inline nlohmann::json load_vectors(const std::string& file) {
    const std::string path = std::string(LIMAOIM_VECTORS_DIR) + "/" + file;
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot open " << path);
    return nlohmann::json::parse(in);
}

}  // namespace limaoim::testing
