// Raw IPv4 sockets: IPPROTO_RAW to send whole IPv4 packets (IP_HDRINCL is
// implied for it), and SOCK_RAW with a protocol (4 for IP-in-IP, 1 for ICMP)
// to receive every packet of that protocol addressed to this namespace, outer
// header included.
#include <linux/filter.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fds.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

// As root, *BUFFORCE passes net.core.{r,w}mem_max; otherwise fall back to the
// capped form so unprivileged tests still get the largest buffer allowed.
bool SetBuffer(int fd, int force_opt, int opt, int bytes) {
  if (bytes <= 0) return true;
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof(bytes)) == 0) return true;
  return setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes)) == 0;
}

// rawOpen(protocol, rcvbuf, sndbuf, device): fd. device "" binds to none.
napi_value RawOpen(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t protocol = 0, rcvbuf = 0, sndbuf = 0;
  char device[IFNAMSIZ];
  if (argc < 4 || !ArgInt32(env, argv[0], "protocol", &protocol) || !ArgInt32(env, argv[1], "rcvbuf", &rcvbuf) ||
      !ArgInt32(env, argv[2], "sndbuf", &sndbuf) || !ArgString(env, argv[3], "device", device, sizeof(device)))
    return nullptr;
  if (protocol < 1 || protocol > 255) return ThrowRange(env, "protocol must be 1..255");

  int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return ThrowErrno(env, "socket(AF_INET, SOCK_RAW)", errno);
  const char* what = nullptr;
  if (!SetBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf)) what = "SO_RCVBUF";
  if (what == nullptr && !SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf)) what = "SO_SNDBUF";
  if (what == nullptr && protocol != IPPROTO_RAW) {
    // Whole packets out of a receive socket too (a reply path for ICMP), so
    // both kinds take the same buffer layout.
    int one = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one)) < 0) what = "IP_HDRINCL";
  }
  if (what == nullptr && device[0] != '\0' &&
      setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, static_cast<socklen_t>(strlen(device))) < 0)
    what = "SO_BINDTODEVICE";
  if (what != nullptr) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, what, err);
  }
  TrackFd(env, fd);
  return Int(env, fd);
}

// socketBuffers(fd): [rcvbuf, sndbuf] as the kernel reports them (doubled).
napi_value SocketBuffers(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd = -1;
  if (argc < 1 || !ArgInt32(env, argv[0], "fd", &fd)) return nullptr;
  int r = 0, s = 0;
  socklen_t len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &r, &len) < 0) return ThrowErrno(env, "SO_RCVBUF", errno);
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &s, &len) < 0) return ThrowErrno(env, "SO_SNDBUF", errno);
  napi_value out;
  DN_CALL(env, napi_create_array_with_length(env, 2, &out));
  napi_set_element(env, out, 0, Int(env, r));
  napi_set_element(env, out, 1, Int(env, s));
  return out;
}

// socketDrops(fd): packets the kernel dropped for this socket (a full receive
// buffer, mostly), from SO_MEMINFO's SK_MEMINFO_DROPS.
napi_value SocketDrops(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd = -1;
  if (argc < 1 || !ArgInt32(env, argv[0], "fd", &fd)) return nullptr;
  uint32_t meminfo[SK_MEMINFO_VARS] = {0};
  socklen_t len = sizeof(meminfo);
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo, &len) < 0) return ThrowErrno(env, "SO_MEMINFO", errno);
  napi_value out;
  DN_CALL(env, napi_create_double(env, len > SK_MEMINFO_DROPS * sizeof(uint32_t) ? meminfo[SK_MEMINFO_DROPS] : 0, &out));
  return out;
}

// socketAttachFilter(fd, program: Uint8Array): a classic BPF socket filter
// (SO_ATTACH_FILTER), 8 bytes per instruction as struct sock_filter lays
// them out (code u16, jt u8, jf u8, k u32, host order). How the router's
// forwarding workers each take their share of the LAN's IP-in-IP.
napi_value SocketAttachFilter(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd = -1;
  void* data = nullptr;
  size_t length = 0;
  if (argc < 2 || !ArgInt32(env, argv[0], "fd", &fd) ||
      !ArgTyped(env, argv[1], napi_uint8_array, "program", &data, &length))
    return nullptr;
  if (length == 0 || length % sizeof(struct sock_filter) != 0 || length / sizeof(struct sock_filter) > BPF_MAXINSNS)
    return ThrowRange(env, "program must be 1..4096 instructions of 8 bytes");
  struct sock_fprog prog;
  prog.len = static_cast<unsigned short>(length / sizeof(struct sock_filter));
  prog.filter = static_cast<struct sock_filter*>(data);
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
    return ThrowErrno(env, "SO_ATTACH_FILTER", errno);
  return Undefined(env);
}

}  // namespace

void InitRaw(napi_env env, napi_value exports) {
  SetMethod(env, exports, "rawOpen", RawOpen);
  SetMethod(env, exports, "socketBuffers", SocketBuffers);
  SetMethod(env, exports, "socketDrops", SocketDrops);
  SetMethod(env, exports, "socketAttachFilter", SocketAttachFilter);
}

}  // namespace distnat
