// writeBatch: many packets out in one call from JS.
//
// The packets lie anywhere in one caller-owned buffer; `pairs` holds
// (offset, length) for each, so a forwarding loop can send straight out of the
// slots it read into, after writing an outer header into the headroom.
//
// Failures are per packet and never throw: a full queue (EAGAIN, ENOBUFS)
// counts as dropped, anything else as an error with the errno kept, and a
// pair that points outside the buffer as invalid.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>

#include "layout.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

using namespace layout::WriteMode;
using namespace layout::TxCounter;
constexpr int kChunk = 64;
constexpr int kMaxPrefix = 64;

bool IsQueueFull(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS; }

void CountFailure(double* c, int err) {
  if (IsQueueFull(err)) {
    c[kDropped] += 1;
  } else {
    c[kErrors] += 1;
    c[kLastErrno] = err;
  }
}

int32_t WriteEach(int fd, int32_t mode, size_t prefix, uint8_t* base, size_t len, const int32_t* pairs,
                  int32_t count, double* c) {
  static const uint8_t zero_hdr[kMaxPrefix] = {0};
  int32_t sent = 0;
  for (int32_t i = 0; i < count; i++) {
    int64_t off = pairs[2 * i], n = pairs[2 * i + 1];
    int64_t lead = mode == kWriteHdrInBuf ? static_cast<int64_t>(prefix) : 0;
    if (n <= 0 || off - lead < 0 || off + n > static_cast<int64_t>(len)) {
      c[kInvalid] += 1;
      continue;
    }
    ssize_t r;
    do {
      if (mode == kWriteZeroHdr) {
        iovec iov[2] = {{const_cast<uint8_t*>(zero_hdr), prefix}, {base + off, static_cast<size_t>(n)}};
        r = writev(fd, iov, 2);
      } else {
        r = write(fd, base + off - lead, static_cast<size_t>(n + lead));
      }
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      CountFailure(c, errno);
      continue;
    }
    sent++;
    c[kBytes] += static_cast<double>(n);
  }
  return sent;
}

int32_t SendMany(int fd, uint8_t* base, size_t len, const int32_t* pairs, int32_t count, double* c) {
  mmsghdr msgs[kChunk];
  iovec iovs[kChunk];
  sockaddr_in addrs[kChunk];
  int32_t sent = 0;
  int32_t i = 0;
  while (i < count) {
    // Gather the next chunk of valid packets.
    int k = 0;
    for (; i < count && k < kChunk; i++) {
      int64_t off = pairs[2 * i], n = pairs[2 * i + 1];
      if (n < 20 || off < 0 || off + n > static_cast<int64_t>(len)) {
        c[kInvalid] += 1;
        continue;
      }
      memset(&addrs[k], 0, sizeof(sockaddr_in));
      addrs[k].sin_family = AF_INET;
      memcpy(&addrs[k].sin_addr, base + off + 16, 4);  // IPv4 destination address
      iovs[k].iov_base = base + off;
      iovs[k].iov_len = static_cast<size_t>(n);
      memset(&msgs[k], 0, sizeof(mmsghdr));
      msgs[k].msg_hdr.msg_name = &addrs[k];
      msgs[k].msg_hdr.msg_namelen = sizeof(sockaddr_in);
      msgs[k].msg_hdr.msg_iov = &iovs[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      k++;
    }
    // sendmmsg stops at the first failing message; account for it and go on
    // with the rest unless the queue is full, when the rest would fail too.
    int done = 0;
    while (done < k) {
      int r = sendmmsg(fd, msgs + done, static_cast<unsigned>(k - done), MSG_DONTWAIT);
      if (r > 0) {
        for (int j = done; j < done + r; j++) c[kBytes] += static_cast<double>(iovs[j].iov_len);
        sent += r;
        done += r;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      int err = r < 0 ? errno : EIO;
      if (IsQueueFull(err)) {
        c[kDropped] += k - done;
        done = k;
      } else {
        CountFailure(c, err);
        done += 1;
      }
    }
  }
  return sent;
}

// writeBatch(fd, mode, prefix, bytes, pairs: Int32Array, count, counters: Float64Array): sent
napi_value WriteBatch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 7) return ThrowType(env, "writeBatch needs 7 arguments");
  int32_t fd, mode, prefix, count;
  uint8_t* bytes;
  size_t bytes_len, pairs_len, counters_len;
  void *pairs, *counters;
  if (!ArgInt32(env, argv[0], "fd", &fd) || !ArgInt32(env, argv[1], "mode", &mode) ||
      !ArgInt32(env, argv[2], "prefix", &prefix) || !ArgBytes(env, argv[3], "bytes", &bytes, &bytes_len) ||
      !ArgTyped(env, argv[4], napi_int32_array, "pairs", &pairs, &pairs_len) ||
      !ArgInt32(env, argv[5], "count", &count) ||
      !ArgTyped(env, argv[6], napi_float64_array, "counters", &counters, &counters_len))
    return nullptr;
  if (mode < kWrite || mode > kWriteHdrInBuf) return ThrowRange(env, "unknown mode");
  if (prefix < 0 || prefix > kMaxPrefix) return ThrowRange(env, "prefix must be 0..64");
  if (count < 0 || static_cast<size_t>(count) * 2 > pairs_len) return ThrowRange(env, "count exceeds pairs");
  if (counters_len < layout::TxCounter::kCount) return ThrowRange(env, "counters is too short");
  double* c = static_cast<double*>(counters);
  c[kCalls] += 1;
  const int32_t* p = static_cast<const int32_t*>(pairs);
  int32_t sent = mode == kSendmmsg ? SendMany(fd, bytes, bytes_len, p, count, c)
                                   : WriteEach(fd, mode, static_cast<size_t>(prefix), bytes, bytes_len, p, count, c);
  c[kPackets] += sent;
  return Int(env, sent);
}

}  // namespace

void InitBatch(napi_env env, napi_value exports) { SetMethod(env, exports, "writeBatch", WriteBatch); }

}  // namespace distnat
