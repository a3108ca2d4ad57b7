#include "fds.h"

#include <unistd.h>

#include <set>

namespace distnat {
namespace {

struct EnvFds {
  std::set<int> fds;
};

void CloseAll(napi_env, void* data, void*) {
  EnvFds* e = static_cast<EnvFds*>(data);
  for (int fd : e->fds) close(fd);
  delete e;
}

EnvFds* Get(napi_env env) {
  void* data = nullptr;
  napi_get_instance_data(env, &data);
  return static_cast<EnvFds*>(data);
}

}  // namespace

void InitFds(napi_env env) { napi_set_instance_data(env, new EnvFds(), CloseAll, nullptr); }

void TrackFd(napi_env env, int fd) {
  if (EnvFds* e = Get(env)) e->fds.insert(fd);
}

bool UntrackFd(napi_env env, int fd) {
  EnvFds* e = Get(env);
  return e != nullptr && e->fds.erase(fd) > 0;
}

}  // namespace distnat
