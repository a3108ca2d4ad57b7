// sd_notify(3) without libsystemd: one datagram to the service manager's
// socket (NOTIFY_SOCKET), e.g. "READY=1" once a daemon works. Node's dgram
// module has no AF_UNIX datagram sockets, hence this. A name starting with
// '@' is in the abstract namespace, as systemd spells it.
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

// systemd reads a notification into a buffer of this size (NOTIFY_BUFFER_MAX).
constexpr size_t kMaxMessage = 4096;

// sdNotify(socket, message): undefined; throws with the errno (ENOENT,
// ECONNREFUSED when nothing listens, EAGAIN when its queue is full).
napi_value SdNotify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  sockaddr_un addr{};
  char path[sizeof(addr.sun_path) + 1];
  char message[kMaxMessage + 1];
  if (argc < 2 || !ArgString(env, argv[0], "socket", path, sizeof(path)) ||
      !ArgString(env, argv[1], "message", message, sizeof(message)))
    return nullptr;
  size_t path_len = strlen(path);
  if (path_len < 2 || (path[0] != '/' && path[0] != '@'))
    return ThrowRange(env, "socket must be an absolute path or an abstract name starting with '@'");
  // A path needs its terminating NUL inside sun_path; an abstract name does not.
  if (path[0] == '/' && path_len >= sizeof(addr.sun_path)) return ThrowRange(env, "socket path is too long");
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, path_len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_len + (path[0] == '/' ? 1 : 0));

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, "socket(AF_UNIX, SOCK_DGRAM)", errno);
  ssize_t sent = sendto(fd, message, strlen(message), MSG_NOSIGNAL | MSG_DONTWAIT,
                        reinterpret_cast<sockaddr*>(&addr), addr_len);
  int err = errno;
  close(fd);
  if (sent < 0) return ThrowErrno(env, "sendto(NOTIFY_SOCKET)", err);
  return Undefined(env);
}

}  // namespace

void InitNotify(napi_env env, napi_value exports) { SetMethod(env, exports, "sdNotify", SdNotify); }

}  // namespace distnat
