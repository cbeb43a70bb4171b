// The demo chat page (clients/js/demo), served at /demo/ from the server's
// own binary: tools/build/embed_assets.py writes demo_files() at build time.
#pragma once

#include <span>

#include "limaoim/http/api.h"

namespace limaoim::http {

// Every file of the page, or, when it could not be built (clients/js has no
// node_modules: `npm ci` was not run), one 404 page at /demo/ saying so.
std::span<const StaticFile> demo_files();
bool demo_built();

}  // namespace limaoim::http
