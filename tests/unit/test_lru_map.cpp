// util/lru_map.h: the least recently used entries go first.
#include <doctest/doctest.h>

#include <string>

#include "limaoim/util/lru_map.h"

using limaoim::util::LruMap;

TEST_CASE("lru_map: trim forgets the least recently used; find and put make an entry the most recent") {
    LruMap<std::string, int> map;
    for (int i = 0; i < 4; ++i) map.put(std::string(1, 'k') + std::to_string(i), i);  // not "k" + ...: GCC 12 -Wrestrict false positive at -O2
    REQUIRE(map.find("k0"));         // k0 used: k1 is now the oldest
    map.put("k2", 20);               // k2 set again: k1, k3, k0, k2
    map.trim(2);
    CHECK(map.size() == 2);
    CHECK_FALSE(map.find("k1"));
    CHECK_FALSE(map.find("k3"));
    REQUIRE(map.find("k2"));
    CHECK(*map.find("k2") == 20);
    CHECK(*map.find("k0") == 0);     // k2, k0
    map.erase("k0");                 // erasing the newest leaves the list whole
    map.put("k5", 5);
    map.trim(1);
    CHECK_FALSE(map.find("k2"));
    CHECK(*map.find("k5") == 5);
    map.trim(0);
    CHECK(map.size() == 0);
    map.put("k6", 6);                // an emptied map links again from nothing
    CHECK(*map.find("k6") == 6);
}
