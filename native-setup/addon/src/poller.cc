// Poller: drains a non-blocking fd into a caller-owned buffer of fixed slots
// whenever libuv reports it readable, then calls JS once with the count.
//
//   slot i:  [ i*slotSize ................................. (i+1)*slotSize )
//            [ headroom - prefix ][ prefix ][ packet ....              ]
//                                           ^ i*slotSize + headroom
//
// The packet always starts `headroom` bytes into its slot, so the forwarding
// loop can write an outer header in front of it without copying. `prefix` is
// the virtio_net_hdr that an IFF_VNET_HDR TUN puts before each packet; it is
// read into the end of the headroom and JS finds it right before the packet.
//
// Nothing is allocated per packet or per batch: JS gets a small integer, the
// lengths go into a shared Int32Array and counters into a shared
// Float64Array. The packets are valid until the callback returns.
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cstring>
#include <vector>

#include "layout.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

using namespace layout::PollMode;
using namespace layout::RxCounter;
constexpr int32_t kMaxSlots = 1024;

struct Poller {
  napi_env env = nullptr;
  napi_ref self = nullptr;  // weak while idle, strong while polling
  napi_ref bytes_ref = nullptr, lengths_ref = nullptr, counters_ref = nullptr, callback_ref = nullptr;
  napi_async_context async = nullptr;
  uv_poll_t handle;
  int fd = -1;
  int32_t mode = kRead;
  uint8_t* base = nullptr;
  size_t slot_size = 0, headroom = 0, prefix = 0;
  int32_t slot_count = 0;
  int32_t* lengths = nullptr;
  double* counters = nullptr;
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iovs;
  bool polling = false, closing = false, closed = false, finalized = false;
  int failed_wakeups = 0;  // in a row, with an error and no packet
};

// A fd that keeps polling readable but only fails to read would spin the loop.
constexpr int kMaxFailedWakeups = 64;

void ReleaseJs(Poller* p) {
  napi_ref* refs[] = {&p->bytes_ref, &p->lengths_ref, &p->counters_ref, &p->callback_ref};
  for (napi_ref* r : refs) {
    if (*r != nullptr) napi_delete_reference(p->env, *r);
    *r = nullptr;
  }
  if (p->async != nullptr) napi_async_destroy(p->env, p->async);
  p->async = nullptr;
}

void OnClosed(uv_handle_t* h) {
  Poller* p = static_cast<Poller*>(h->data);
  p->closed = true;
  if (p->finalized) delete p;
}

void Stop(Poller* p) {
  if (!p->polling) return;
  uv_poll_stop(&p->handle);
  p->polling = false;
  uint32_t count = 0;
  if (p->self != nullptr) napi_reference_unref(p->env, p->self, &count);
}

void BeginClose(Poller* p) {
  if (p->closing) return;
  Stop(p);
  p->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), OnClosed);
}

void CleanupHook(void* arg) { BeginClose(static_cast<Poller*>(arg)); }

// Reads until EAGAIN or the slots are full; returns the packets kept.
int32_t ReadBatch(Poller* p) {
  double* c = p->counters;
  int32_t n = 0;
  const size_t lead = p->headroom - p->prefix;
  const size_t cap = p->slot_size - lead;
  if (p->mode == kRead) {
    while (n < p->slot_count) {
      uint8_t* at = p->base + static_cast<size_t>(n) * p->slot_size + lead;
      ssize_t r = read(p->fd, at, cap);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) {
          c[kErrors] += 1;
          c[kLastErrno] = errno;
        }
        break;
      }
      // A read that fills the slot may have lost the packet's tail.
      if (static_cast<size_t>(r) >= cap) {
        c[kTruncated] += 1;
        continue;
      }
      if (static_cast<size_t>(r) <= p->prefix) {
        c[kErrors] += 1;
        continue;
      }
      p->lengths[n++] = static_cast<int32_t>(static_cast<size_t>(r) - p->prefix);
      c[kBytes] += static_cast<double>(static_cast<size_t>(r) - p->prefix);
    }
  } else {
    int r;
    do {
      r = recvmmsg(p->fd, p->msgs.data(), static_cast<unsigned>(p->slot_count), MSG_DONTWAIT, nullptr);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno != EAGAIN) {
        c[kErrors] += 1;
        c[kLastErrno] = errno;
      }
      return 0;
    }
    for (int i = 0; i < r; i++) {
      const mmsghdr& m = p->msgs[i];
      if ((m.msg_hdr.msg_flags & MSG_TRUNC) || m.msg_len <= p->prefix) {
        c[kTruncated] += 1;
        continue;
      }
      // Rare: close the gap a truncated datagram left so slots stay dense.
      if (n != i)
        memmove(p->base + static_cast<size_t>(n) * p->slot_size + lead,
                p->base + static_cast<size_t>(i) * p->slot_size + lead, m.msg_len);
      p->lengths[n++] = static_cast<int32_t>(m.msg_len - p->prefix);
      c[kBytes] += static_cast<double>(m.msg_len - p->prefix);
    }
  }
  return n;
}

void CallJs(Poller* p, int32_t value) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value self, cb, arg, result;
  if (napi_get_reference_value(env, p->self, &self) == napi_ok && self != nullptr &&
      napi_get_reference_value(env, p->callback_ref, &cb) == napi_ok && cb != nullptr) {
    napi_create_int32(env, value, &arg);
    napi_status st = napi_make_callback(env, p->async, self, cb, 1, &arg, &result);
    if (st == napi_pending_exception) {
      // A throwing handler is the application's bug: report it the way an
      // exception from any other I/O callback is reported.
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

void OnReadable(uv_poll_t* h, int status, int /*events*/) {
  Poller* p = static_cast<Poller*>(h->data);
  if (p->closing) return;
  if (status < 0) {
    // The fd is gone or broken; polling again would spin. JS learns of it
    // through a negative count: -errno.
    p->counters[kErrors] += 1;
    p->counters[kLastErrno] = -status;
    Stop(p);
    CallJs(p, status);
    return;
  }
  p->counters[kWakeups] += 1;
  const double errors_before = p->counters[kErrors];
  int32_t n = ReadBatch(p);
  if (n == 0) {
    if (p->counters[kErrors] == errors_before) return;
    if (++p->failed_wakeups < kMaxFailedWakeups) return;
    Stop(p);
    CallJs(p, -static_cast<int32_t>(p->counters[kLastErrno]));
    return;
  }
  p->failed_wakeups = 0;
  p->counters[kBatches] += 1;
  p->counters[kPackets] += n;
  CallJs(p, n);
}

void Finalize(napi_env env, void* data, void*) {
  Poller* p = static_cast<Poller*>(data);
  p->finalized = true;
  napi_remove_env_cleanup_hook(env, CleanupHook, p);
  ReleaseJs(p);
  if (p->self != nullptr) napi_delete_reference(env, p->self);
  p->self = nullptr;
  if (!p->closing) {
    p->polling = false;  // the strong ref is gone with the object
    p->closing = true;
    uv_poll_stop(&p->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), OnClosed);
  } else if (p->closed) {
    delete p;
  }
}

Poller* Unwrap(napi_env env, napi_callback_info info) {
  napi_value self;
  if (napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr) != napi_ok) return nullptr;
  void* p = nullptr;
  if (napi_unwrap(env, self, &p) != napi_ok) {
    ThrowType(env, "not a Poller");
    return nullptr;
  }
  return static_cast<Poller*>(p);
}

// new Poller(fd, mode, bytes: Uint8Array, slotSize, headroom, prefix, slotCount,
//            lengths: Int32Array, counters: Float64Array, callback(count))
napi_value New(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10], self;
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, nullptr));
  if (argc < 10) return ThrowType(env, "Poller needs 10 arguments");
  int32_t fd, mode, slot_size, headroom, prefix, slot_count;
  uint8_t* bytes;
  size_t bytes_len, lengths_len, counters_len;
  void *lengths, *counters;
  if (!ArgInt32(env, argv[0], "fd", &fd) || !ArgInt32(env, argv[1], "mode", &mode) ||
      !ArgBytes(env, argv[2], "bytes", &bytes, &bytes_len) || !ArgInt32(env, argv[3], "slotSize", &slot_size) ||
      !ArgInt32(env, argv[4], "headroom", &headroom) || !ArgInt32(env, argv[5], "prefix", &prefix) ||
      !ArgInt32(env, argv[6], "slotCount", &slot_count) ||
      !ArgTyped(env, argv[7], napi_int32_array, "lengths", &lengths, &lengths_len) ||
      !ArgTyped(env, argv[8], napi_float64_array, "counters", &counters, &counters_len))
    return nullptr;
  napi_valuetype cbt;
  napi_typeof(env, argv[9], &cbt);
  if (cbt != napi_function) return ThrowType(env, "callback must be a function");
  if (mode != kRead && mode != kRecvmmsg) return ThrowRange(env, "unknown mode");
  if (slot_count < 1 || slot_count > kMaxSlots) return ThrowRange(env, "slotCount must be 1..1024");
  if (headroom < 0 || prefix < 0 || prefix > headroom || slot_size <= headroom + 64)
    return ThrowRange(env, "need 0 <= prefix <= headroom and slotSize > headroom + 64");
  if (static_cast<size_t>(slot_size) * static_cast<size_t>(slot_count) > bytes_len)
    return ThrowRange(env, "bytes is smaller than slotSize * slotCount");
  if (lengths_len < static_cast<size_t>(slot_count)) return ThrowRange(env, "lengths has fewer than slotCount");
  if (counters_len < layout::RxCounter::kCount) return ThrowRange(env, "counters is too short");

  uv_loop_t* loop;
  DN_CALL(env, napi_get_uv_event_loop(env, &loop));
  Poller* p = new Poller();
  p->env = env;
  p->fd = fd;
  p->mode = mode;
  p->base = bytes;
  p->slot_size = static_cast<size_t>(slot_size);
  p->headroom = static_cast<size_t>(headroom);
  p->prefix = static_cast<size_t>(prefix);
  p->slot_count = slot_count;
  p->lengths = static_cast<int32_t*>(lengths);
  p->counters = static_cast<double*>(counters);
  if (mode == kRecvmmsg) {
    p->msgs.assign(static_cast<size_t>(slot_count), mmsghdr{});
    p->iovs.assign(static_cast<size_t>(slot_count), iovec{});
    const size_t lead = p->headroom - p->prefix;
    for (int32_t i = 0; i < slot_count; i++) {
      p->iovs[i].iov_base = p->base + static_cast<size_t>(i) * p->slot_size + lead;
      p->iovs[i].iov_len = p->slot_size - lead;
      p->msgs[i].msg_hdr.msg_iov = &p->iovs[i];
      p->msgs[i].msg_hdr.msg_iovlen = 1;
    }
  }
  int rc = uv_poll_init(loop, &p->handle, fd);
  if (rc < 0) {
    delete p;
    return ThrowErrno(env, "uv_poll_init", -rc);
  }
  p->handle.data = p;
  napi_create_reference(env, argv[2], 1, &p->bytes_ref);
  napi_create_reference(env, argv[7], 1, &p->lengths_ref);
  napi_create_reference(env, argv[8], 1, &p->counters_ref);
  napi_create_reference(env, argv[9], 1, &p->callback_ref);
  napi_value name;
  napi_create_string_utf8(env, "distnat.Poller", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, self, name, &p->async);
  if (napi_wrap(env, self, p, Finalize, nullptr, &p->self) != napi_ok) {
    ReleaseJs(p);
    p->closing = true;
    p->finalized = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), OnClosed);
    return ThrowType(env, "cannot wrap Poller");
  }
  napi_add_env_cleanup_hook(env, CleanupHook, p);
  return self;
}

napi_value Start(napi_env env, napi_callback_info info) {
  Poller* p = Unwrap(env, info);
  if (p == nullptr) return nullptr;
  if (p->closing) return ThrowType(env, "Poller is closed");
  if (!p->polling) {
    int rc = uv_poll_start(&p->handle, UV_READABLE, OnReadable);
    if (rc < 0) return ThrowErrno(env, "uv_poll_start", -rc);
    p->polling = true;
    uint32_t count = 0;
    napi_reference_ref(env, p->self, &count);
  }
  return Undefined(env);
}

napi_value StopJs(napi_env env, napi_callback_info info) {
  Poller* p = Unwrap(env, info);
  if (p == nullptr) return nullptr;
  if (!p->closing) Stop(p);
  return Undefined(env);
}

// close(): stops and releases the buffers; the fd itself belongs to the caller
// and must be closed after this (epoll must forget it first).
napi_value Close(napi_env env, napi_callback_info info) {
  Poller* p = Unwrap(env, info);
  if (p == nullptr) return nullptr;
  if (!p->closing) {
    BeginClose(p);
    napi_remove_env_cleanup_hook(env, CleanupHook, p);
    ReleaseJs(p);
  }
  return Undefined(env);
}

// ref()/unref(): whether an idle wait on this fd keeps the process alive.
napi_value RefJs(napi_env env, napi_callback_info info) {
  Poller* p = Unwrap(env, info);
  if (p != nullptr && !p->closing) uv_ref(reinterpret_cast<uv_handle_t*>(&p->handle));
  return Undefined(env);
}

napi_value UnrefJs(napi_env env, napi_callback_info info) {
  Poller* p = Unwrap(env, info);
  if (p != nullptr && !p->closing) uv_unref(reinterpret_cast<uv_handle_t*>(&p->handle));
  return Undefined(env);
}

}  // namespace

void InitPoller(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"start", nullptr, Start, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"stop", nullptr, StopJs, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"close", nullptr, Close, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"ref", nullptr, RefJs, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"unref", nullptr, UnrefJs, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_value cls;
  if (napi_define_class(env, "Poller", NAPI_AUTO_LENGTH, New, nullptr, sizeof(methods) / sizeof(methods[0]),
                        methods, &cls) == napi_ok)
    napi_set_named_property(env, exports, "Poller", cls);
}

}  // namespace distnat
