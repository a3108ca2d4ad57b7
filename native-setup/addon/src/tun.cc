// TUN devices and the few link settings the data path depends on.
//
// Addresses and routes are left to `ip`: they are set once by the set-up
// scripts and carry policy. MTU, up/down and txqueuelen are here because an
// agent that creates its own device needs them and an ioctl is cheaper and
// easier to report on than spawning a process.
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fds.h"
#include "layout.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

// Bits of the `flags` argument of tunOpen (mirrored in src/io/native.ts).
using namespace layout::OpenFlag;

// tunOpen(name: string, flags: number): { fd, name }
// Attaches to the persistent device `name` if it exists (its multi-queue
// setting must match), or creates a device that lives as long as the fd.
napi_value TunOpen(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  char name[IFNAMSIZ];
  int32_t flags = 0;
  if (argc < 2 || !ArgString(env, argv[0], "name", name, sizeof(name)) || !ArgInt32(env, argv[1], "flags", &flags))
    return nullptr;

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "open /dev/net/tun", errno);

  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (flags & kMultiQueue) ifr.ifr_flags |= IFF_MULTI_QUEUE;
  if (flags & kVnetHdr) ifr.ifr_flags |= IFF_VNET_HDR;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err == EINVAL ? "TUNSETIFF (an existing device with other flags?)" : "TUNSETIFF", err);
  }

  TrackFd(env, fd);
  napi_value out, fdv, namev;
  DN_CALL(env, napi_create_object(env, &out));
  DN_CALL(env, napi_create_int32(env, fd, &fdv));
  DN_CALL(env, napi_create_string_utf8(env, ifr.ifr_name, NAPI_AUTO_LENGTH, &namev));
  napi_set_named_property(env, out, "fd", fdv);
  napi_set_named_property(env, out, "name", namev);
  return out;
}

// A helper for the ioctls whose single int argument comes from JS.
napi_value FdIntIoctl(napi_env env, napi_callback_info info, unsigned long request, const char* what,
                      bool by_value) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd = -1, value = 0;
  if (argc < 2 || !ArgInt32(env, argv[0], "fd", &fd) || !ArgInt32(env, argv[1], "value", &value)) return nullptr;
  int rc = by_value ? ioctl(fd, request, static_cast<unsigned long>(static_cast<uint32_t>(value)))
                    : ioctl(fd, request, &value);
  if (rc < 0) return ThrowErrno(env, what, errno);
  return Undefined(env);
}

// tunSetOffload(fd, TUN_F_* bits). Called on every attach, with 0 too: the
// device keeps the offloads of its previous owner otherwise.
napi_value TunSetOffload(napi_env env, napi_callback_info info) {
  return FdIntIoctl(env, info, TUNSETOFFLOAD, "TUNSETOFFLOAD", true);
}

napi_value TunSetVnetHdrSize(napi_env env, napi_callback_info info) {
  return FdIntIoctl(env, info, TUNSETVNETHDRSZ, "TUNSETVNETHDRSZ", false);
}

napi_value TunSetPersist(napi_env env, napi_callback_info info) {
  return FdIntIoctl(env, info, TUNSETPERSIST, "TUNSETPERSIST", true);
}

// Link ioctls go through any AF_INET socket; the name selects the device in
// the caller's network namespace.
napi_value LinkIoctl(napi_env env, napi_callback_info info, int kind) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  char name[IFNAMSIZ];
  if (argc < 2 || !ArgString(env, argv[0], "name", name, sizeof(name))) return nullptr;
  int32_t value = 0;
  bool up = false;
  if (kind == 1 ? !ArgBool(env, argv[1], "up", &up) : !ArgInt32(env, argv[1], "value", &value)) return nullptr;

  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return ThrowErrno(env, "socket", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
  int rc = 0;
  const char* what = "";
  if (kind == 0) {
    what = "SIOCSIFMTU";
    ifr.ifr_mtu = value;
    rc = ioctl(s, SIOCSIFMTU, &ifr);
  } else if (kind == 1) {
    what = "SIOCGIFFLAGS";
    rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
      what = "SIOCSIFFLAGS";
      if (up)
        ifr.ifr_flags |= IFF_UP;
      else
        ifr.ifr_flags &= ~IFF_UP;
      rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
  } else {
    what = "SIOCSIFTXQLEN";
    ifr.ifr_qlen = value;
    rc = ioctl(s, SIOCSIFTXQLEN, &ifr);
  }
  int err = errno;
  close(s);
  if (rc < 0) return ThrowErrno(env, what, err);
  return Undefined(env);
}

napi_value LinkSetMtu(napi_env env, napi_callback_info info) { return LinkIoctl(env, info, 0); }
napi_value LinkSetUp(napi_env env, napi_callback_info info) { return LinkIoctl(env, info, 1); }
napi_value LinkSetTxQueueLen(napi_env env, napi_callback_info info) { return LinkIoctl(env, info, 2); }

// closeFd(fd): only fds this binding opened in this environment, once: closing
// another number (a double close) would close whatever now has it.
napi_value CloseFd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd = -1;
  if (argc < 1 || !ArgInt32(env, argv[0], "fd", &fd)) return nullptr;
  if (!UntrackFd(env, fd)) return ThrowErrno(env, "close (not an fd this binding opened)", EBADF);
  if (close(fd) < 0 && errno != EINTR) return ThrowErrno(env, "close", errno);
  return Undefined(env);
}

}  // namespace

void InitTun(napi_env env, napi_value exports) {
  SetMethod(env, exports, "tunOpen", TunOpen);
  SetMethod(env, exports, "tunSetOffload", TunSetOffload);
  SetMethod(env, exports, "tunSetVnetHdrSize", TunSetVnetHdrSize);
  SetMethod(env, exports, "tunSetPersist", TunSetPersist);
  SetMethod(env, exports, "linkSetMtu", LinkSetMtu);
  SetMethod(env, exports, "linkSetUp", LinkSetUp);
  SetMethod(env, exports, "linkSetTxQueueLen", LinkSetTxQueueLen);
  SetMethod(env, exports, "closeFd", CloseFd);
}

}  // namespace distnat
