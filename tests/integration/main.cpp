// Cases in the test suite "timeouts" mostly wait out an injected timeout or
// outage (seconds of sleep, little code), those in "load" are timing-
// sensitive load tests: CI runs them once, in the unsanitized stage, and
// leaves them out of the ASan stage with -tse=timeouts,load
// (tools/setup.sh). Mark a new case so when it waits more than it works.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
