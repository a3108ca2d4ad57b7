// File descriptors opened by the binding, per environment (main thread or
// worker): closed when the environment goes away, so a worker that ends
// without closing its devices does not leave a TUN queue attached or a socket
// receiving into nowhere.
#pragma once

#include <node_api.h>

namespace distnat {

void InitFds(napi_env env);
void TrackFd(napi_env env, int fd);
// Forgets fd; false if the binding did not open it (or it was closed already).
bool UntrackFd(napi_env env, int fd);

}  // namespace distnat
