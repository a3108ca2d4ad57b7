// BPF programs and maps through libbpf: open and load an object file, attach
// its programs to an interface (tc clsact or XDP), and the map operations the
// control plane needs (one element, batches, a dump, a shared mapping of an
// array). None of this is on the packet path: the programs run in the kernel.
//
// Errors throw like the rest of the binding (code, errno, syscall); a failed
// load carries the end of libbpf's log, which holds the verifier's reason.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fds.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

// The last few KB libbpf printed (warnings and the verifier log), for errors.
std::string g_log;
constexpr size_t kLogKeep = 6000;

int CollectLog(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof(line), format, args);
  if (n > 0) {
    g_log.append(line, std::min(static_cast<size_t>(n), sizeof(line) - 1));
    if (g_log.size() > kLogKeep) g_log.erase(0, g_log.size() - kLogKeep);
  }
  return 0;
}

// Throws like ThrowErrno, with libbpf's log of the failed step appended.
napi_value ThrowLibbpf(napi_env env, const std::string& what, int err) {
  std::string text = what;
  if (!g_log.empty()) {
    std::string log = g_log;
    while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
    text += "; libbpf: " + log;
  }
  g_log.clear();
  return ThrowErrno(env, text.c_str(), err);
}

struct Object {
  bpf_object* obj = nullptr;
};

void FinalizeObject(napi_env, void* data, void*) {
  Object* o = static_cast<Object*>(data);
  if (o->obj != nullptr) bpf_object__close(o->obj);
  delete o;
}

bool ArgObject(napi_env env, napi_value v, Object** out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) {
    ThrowType(env, "object must be a handle from bpfObjectOpen");
    return false;
  }
  void* data = nullptr;
  if (napi_get_value_external(env, v, &data) != napi_ok) return false;
  *out = static_cast<Object*>(data);
  if ((*out)->obj == nullptr) {
    napi_throw_error(env, "EBADF", "the BPF object is closed");
    return false;
  }
  return true;
}

bool ArgUint32(napi_env env, napi_value v, const char* name, uint32_t* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    char text[96];
    snprintf(text, sizeof(text), "%s must be a number", name);
    napi_throw_type_error(env, nullptr, text);
    return false;
  }
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

napi_value Double(napi_env env, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  return v;
}

void SetNumber(napi_env env, napi_value obj, const char* key, double value) {
  napi_set_named_property(env, obj, key, Double(env, value));
}

// bpfObjectOpen(path, maxEntries: {[map]: number}): handle. Opens the object
// file, sizes the named maps, loads every program and map.
napi_value ObjectOpen(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  char path[4096];
  if (argc < 2 || !ArgString(env, argv[0], "path", path, sizeof(path))) return nullptr;
  g_log.clear();
  bpf_object* obj = bpf_object__open_file(path, nullptr);
  if (obj == nullptr) return ThrowLibbpf(env, std::string("bpf_object__open_file ") + path, errno);

  napi_value names;
  uint32_t count = 0;
  if (napi_get_property_names(env, argv[1], &names) != napi_ok ||
      napi_get_array_length(env, names, &count) != napi_ok) {
    bpf_object__close(obj);
    return ThrowType(env, "maxEntries must be an object");
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value key, value;
    char name[128];
    uint32_t entries = 0;
    napi_get_element(env, names, i, &key);
    napi_get_property(env, argv[1], key, &value);
    if (!ArgString(env, key, "map name", name, sizeof(name)) || !ArgUint32(env, value, "maxEntries", &entries)) {
      bpf_object__close(obj);
      return nullptr;
    }
    bpf_map* map = bpf_object__find_map_by_name(obj, name);
    int err = map == nullptr ? ENOENT : -bpf_map__set_max_entries(map, entries);
    if (err != 0) {
      bpf_object__close(obj);
      return ThrowErrno(env, (std::string("bpf_map__set_max_entries ") + name).c_str(), err);
    }
  }
  int err = bpf_object__load(obj);
  if (err != 0) {
    bpf_object__close(obj);
    return ThrowLibbpf(env, std::string("bpf_object__load ") + path, -err);
  }
  g_log.clear();
  Object* o = new Object{obj};
  napi_value handle;
  if (napi_create_external(env, o, FinalizeObject, nullptr, &handle) != napi_ok) {
    FinalizeObject(env, o, nullptr);
    ThrowPendingOr(env, "napi_create_external failed");
    return nullptr;
  }
  return handle;
}

// bpfObjectClose(handle): closes every program and map fd of the object.
// Attachments hold their own references and stay.
napi_value ObjectClose(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  void* data = nullptr;
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok)
    return ThrowType(env, "object must be a handle from bpfObjectOpen");
  Object* o = static_cast<Object*>(data);
  if (o->obj != nullptr) bpf_object__close(o->obj);
  o->obj = nullptr;
  return Undefined(env);
}

// bpfProgramFd(handle, name) / bpfMapFd(handle, name): the fd, owned by the object.
napi_value ProgramFd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Object* o;
  char name[128];
  if (argc < 2 || !ArgObject(env, argv[0], &o) || !ArgString(env, argv[1], "name", name, sizeof(name)))
    return nullptr;
  bpf_program* prog = bpf_object__find_program_by_name(o->obj, name);
  if (prog == nullptr) return ThrowErrno(env, (std::string("no BPF program ") + name).c_str(), ENOENT);
  return Int(env, bpf_program__fd(prog));
}

napi_value MapFd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Object* o;
  char name[128];
  if (argc < 2 || !ArgObject(env, argv[0], &o) || !ArgString(env, argv[1], "name", name, sizeof(name)))
    return nullptr;
  bpf_map* map = bpf_object__find_map_by_name(o->obj, name);
  if (map == nullptr) return ThrowErrno(env, (std::string("no BPF map ") + name).c_str(), ENOENT);
  return Int(env, bpf_map__fd(map));
}

// bpfMapInfo(fd): { type, keySize, valueSize, maxEntries, flags, id, name }.
napi_value MapInfo(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd;
  if (argc < 1 || !ArgInt32(env, argv[0], "fd", &fd)) return nullptr;
  bpf_map_info mi;
  memset(&mi, 0, sizeof(mi));
  uint32_t len = sizeof(mi);
  int err = bpf_obj_get_info_by_fd(fd, &mi, &len);
  if (err != 0) return ThrowErrno(env, "BPF_OBJ_GET_INFO_BY_FD (map)", -err);
  napi_value out, name;
  DN_CALL(env, napi_create_object(env, &out));
  SetNumber(env, out, "type", mi.type);
  SetNumber(env, out, "keySize", mi.key_size);
  SetNumber(env, out, "valueSize", mi.value_size);
  SetNumber(env, out, "maxEntries", mi.max_entries);
  SetNumber(env, out, "flags", mi.map_flags);
  SetNumber(env, out, "id", mi.id);
  napi_create_string_utf8(env, mi.name, strnlen(mi.name, sizeof(mi.name)), &name);
  napi_set_named_property(env, out, "name", name);
  return out;
}

// bpfProgInfo(fd): { id, name, runTimeNs, runCount, jited } (run time needs BPF stats on).
napi_value ProgInfo(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd;
  if (argc < 1 || !ArgInt32(env, argv[0], "fd", &fd)) return nullptr;
  bpf_prog_info pi;
  memset(&pi, 0, sizeof(pi));
  uint32_t len = sizeof(pi);
  int err = bpf_obj_get_info_by_fd(fd, &pi, &len);
  if (err != 0) return ThrowErrno(env, "BPF_OBJ_GET_INFO_BY_FD (program)", -err);
  napi_value out, name, jited;
  DN_CALL(env, napi_create_object(env, &out));
  SetNumber(env, out, "id", pi.id);
  SetNumber(env, out, "runTimeNs", static_cast<double>(pi.run_time_ns));
  SetNumber(env, out, "runCount", static_cast<double>(pi.run_cnt));
  napi_create_string_utf8(env, pi.name, strnlen(pi.name, sizeof(pi.name)), &name);
  napi_set_named_property(env, out, "name", name);
  napi_get_boolean(env, pi.jited_prog_len > 0, &jited);
  napi_set_named_property(env, out, "jited", jited);
  return out;
}

bool ArgKeyValue(napi_env env, napi_value v, const char* name, uint8_t** data, size_t* len) {
  return ArgBytes(env, v, name, data, len);
}

// bpfMapLookup(fd, key, value): true and value filled, or false when absent.
napi_value MapLookup(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd;
  uint8_t *key, *value;
  size_t klen, vlen;
  if (argc < 3 || !ArgInt32(env, argv[0], "fd", &fd) || !ArgKeyValue(env, argv[1], "key", &key, &klen) ||
      !ArgKeyValue(env, argv[2], "value", &value, &vlen))
    return nullptr;
  int err = bpf_map_lookup_elem(fd, key, value);
  napi_value out;
  if (err == -ENOENT) {
    napi_get_boolean(env, false, &out);
    return out;
  }
  if (err != 0) return ThrowErrno(env, "BPF_MAP_LOOKUP_ELEM", -err);
  napi_get_boolean(env, true, &out);
  return out;
}

// bpfMapUpdate(fd, key, value, flags): BPF_ANY 0, BPF_NOEXIST 1, BPF_EXIST 2.
napi_value MapUpdate(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd, flags;
  uint8_t *key, *value;
  size_t klen, vlen;
  if (argc < 4 || !ArgInt32(env, argv[0], "fd", &fd) || !ArgKeyValue(env, argv[1], "key", &key, &klen) ||
      !ArgKeyValue(env, argv[2], "value", &value, &vlen) || !ArgInt32(env, argv[3], "flags", &flags))
    return nullptr;
  int err = bpf_map_update_elem(fd, key, value, static_cast<uint64_t>(flags));
  if (err != 0) return ThrowErrno(env, "BPF_MAP_UPDATE_ELEM", -err);
  return Undefined(env);
}

// bpfMapDelete(fd, key): true when it was there.
napi_value MapDelete(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd;
  uint8_t* key;
  size_t klen;
  if (argc < 2 || !ArgInt32(env, argv[0], "fd", &fd) || !ArgKeyValue(env, argv[1], "key", &key, &klen))
    return nullptr;
  int err = bpf_map_delete_elem(fd, key);
  napi_value out;
  if (err == -ENOENT) {
    napi_get_boolean(env, false, &out);
    return out;
  }
  if (err != 0) return ThrowErrno(env, "BPF_MAP_DELETE_ELEM", -err);
  napi_get_boolean(env, true, &out);
  return out;
}

// bpfMapUpdateBatch(fd, keys, values, count, flags): count keys and values
// packed back to back. Throws (with `done`, the number applied) on failure.
napi_value MapUpdateBatch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd, flags;
  uint32_t count;
  uint8_t *keys, *values;
  size_t klen, vlen;
  if (argc < 5 || !ArgInt32(env, argv[0], "fd", &fd) || !ArgKeyValue(env, argv[1], "keys", &keys, &klen) ||
      !ArgKeyValue(env, argv[2], "values", &values, &vlen) || !ArgUint32(env, argv[3], "count", &count) ||
      !ArgInt32(env, argv[4], "flags", &flags))
    return nullptr;
  if (count == 0) return Int(env, 0);
  if (klen % count != 0 || vlen % count != 0) return ThrowRange(env, "keys and values must hold count elements");
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = static_cast<uint64_t>(flags));
  uint32_t done = count;
  int err = bpf_map_update_batch(fd, keys, values, &done, &opts);
  if (err != 0) {
    ThrowErrno(env, "BPF_MAP_UPDATE_BATCH", -err);
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) {
      SetNumber(env, exc, "done", done);
      napi_throw(env, exc);
    }
    return nullptr;
  }
  return Int(env, static_cast<int32_t>(done));
}

// bpfMapDeleteKeys(fd, keys, count): deletes each key that is there; returns how many were.
napi_value MapDeleteKeys(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd;
  uint32_t count;
  uint8_t* keys;
  size_t klen;
  if (argc < 3 || !ArgInt32(env, argv[0], "fd", &fd) || !ArgKeyValue(env, argv[1], "keys", &keys, &klen) ||
      !ArgUint32(env, argv[2], "count", &count))
    return nullptr;
  if (count == 0) return Int(env, 0);
  if (klen % count != 0) return ThrowRange(env, "keys must hold count elements");
  size_t ksize = klen / count;
  int32_t deleted = 0;
  for (uint32_t i = 0; i < count; i++) {
    int err = bpf_map_delete_elem(fd, keys + i * ksize);
    if (err == 0)
      deleted++;
    else if (err != -ENOENT)
      return ThrowErrno(env, "BPF_MAP_DELETE_ELEM", -err);
  }
  return Int(env, deleted);
}

// bpfMapDump(fd, keys, values, max): walks the map (get_next_key + lookup)
// into the caller's buffers; returns the number of entries written.
napi_value MapDump(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd;
  uint32_t max;
  uint8_t *keys, *values;
  size_t klen, vlen;
  if (argc < 4 || !ArgInt32(env, argv[0], "fd", &fd) || !ArgKeyValue(env, argv[1], "keys", &keys, &klen) ||
      !ArgKeyValue(env, argv[2], "values", &values, &vlen) || !ArgUint32(env, argv[3], "max", &max))
    return nullptr;
  if (max == 0) return Int(env, 0);
  if (klen % max != 0 || vlen % max != 0) return ThrowRange(env, "keys and values must hold max elements");
  size_t ksize = klen / max, vsize = vlen / max;
  std::vector<uint8_t> cur(ksize);
  const void* prev = nullptr;
  uint32_t n = 0;
  while (n < max) {
    int err = bpf_map_get_next_key(fd, prev, cur.data());
    if (err == -ENOENT) break;
    if (err != 0) return ThrowErrno(env, "BPF_MAP_GET_NEXT_KEY", -err);
    memcpy(keys + n * ksize, cur.data(), ksize);
    prev = keys + n * ksize;
    err = bpf_map_lookup_elem(fd, cur.data(), values + n * vsize);
    if (err == -ENOENT) continue;  // deleted meanwhile
    if (err != 0) return ThrowErrno(env, "BPF_MAP_LOOKUP_ELEM", -err);
    n++;
  }
  return Int(env, static_cast<int32_t>(n));
}

void Unmap(napi_env, void* data, void* hint) { munmap(data, reinterpret_cast<size_t>(hint)); }

// bpfMapMmap(fd, bytes, writable): an ArrayBuffer over a BPF_F_MMAPABLE
// array's values, shared with the programs; unmapped when collected.
napi_value MapMmap(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t fd;
  uint32_t bytes;
  bool writable;
  if (argc < 3 || !ArgInt32(env, argv[0], "fd", &fd) || !ArgUint32(env, argv[1], "bytes", &bytes) ||
      !ArgBool(env, argv[2], "writable", &writable))
    return nullptr;
  if (bytes == 0) return ThrowRange(env, "bytes must be positive");
  void* p = mmap(nullptr, bytes, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ThrowErrno(env, "mmap (BPF map)", errno);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, bytes, Unmap, reinterpret_cast<void*>(static_cast<size_t>(bytes)),
                                       &ab) != napi_ok) {
    munmap(p, bytes);
    ThrowPendingOr(env, "napi_create_external_arraybuffer failed");
    return nullptr;
  }
  return ab;
}

napi_value NumPossibleCpus(napi_env env, napi_callback_info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) return ThrowErrno(env, "libbpf_num_possible_cpus", -n);
  return Int(env, n);
}

// bpfEnableStats(): an fd; while it is open the kernel keeps run time and
// count per program (BPF_ENABLE_STATS). closeFd ends it.
napi_value EnableStats(napi_env env, napi_callback_info) {
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) return ThrowErrno(env, "BPF_ENABLE_STATS", -fd);
  TrackFd(env, fd);
  return Int(env, fd);
}

bool ArgTcHook(napi_env env, napi_value ifv, napi_value ingressv, bpf_tc_hook* hook) {
  uint32_t ifindex;
  bool ingress;
  if (!ArgUint32(env, ifv, "ifindex", &ifindex) || !ArgBool(env, ingressv, "ingress", &ingress)) return false;
  memset(hook, 0, sizeof(*hook));
  hook->sz = sizeof(*hook);
  hook->ifindex = static_cast<int>(ifindex);
  hook->attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  return true;
}

// bpfTcAttach(ifindex, ingress, progFd, handle, priority): a direct-action
// cls_bpf filter on the clsact qdisc (made when missing), replacing one with
// the same handle and priority.
napi_value TcAttach(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  bpf_tc_hook hook;
  int32_t prog;
  uint32_t handle, priority;
  if (argc < 5 || !ArgTcHook(env, argv[0], argv[1], &hook) || !ArgInt32(env, argv[2], "progFd", &prog) ||
      !ArgUint32(env, argv[3], "handle", &handle) || !ArgUint32(env, argv[4], "priority", &priority))
    return nullptr;
  g_log.clear();
  int err = bpf_tc_hook_create(&hook);
  if (err != 0 && err != -EEXIST) return ThrowLibbpf(env, "creating the clsact qdisc", -err);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog, .flags = BPF_TC_F_REPLACE, .handle = handle, .priority = priority);
  err = bpf_tc_attach(&hook, &opts);
  if (err != 0) return ThrowLibbpf(env, "attaching the tc program", -err);
  return Int(env, static_cast<int32_t>(opts.prog_id));
}

// bpfTcDetach(ifindex, ingress, handle, priority): true when a filter was removed.
napi_value TcDetach(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  bpf_tc_hook hook;
  uint32_t handle, priority;
  if (argc < 4 || !ArgTcHook(env, argv[0], argv[1], &hook) || !ArgUint32(env, argv[2], "handle", &handle) ||
      !ArgUint32(env, argv[3], "priority", &priority))
    return nullptr;
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
  int err = bpf_tc_detach(&hook, &opts);
  napi_value out;
  if (err == -ENOENT || err == -EINVAL || err == -ENODEV) {
    // ENOENT: no such filter; EINVAL: no clsact qdisc; ENODEV: the interface is gone.
    napi_get_boolean(env, false, &out);
    return out;
  }
  if (err != 0) return ThrowErrno(env, "detaching the tc program", -err);
  napi_get_boolean(env, true, &out);
  return out;
}

// bpfTcQuery(ifindex, ingress, handle, priority): the attached program's id, or 0.
napi_value TcQuery(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  bpf_tc_hook hook;
  uint32_t handle, priority;
  if (argc < 4 || !ArgTcHook(env, argv[0], argv[1], &hook) || !ArgUint32(env, argv[2], "handle", &handle) ||
      !ArgUint32(env, argv[3], "priority", &priority))
    return nullptr;
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
  int err = bpf_tc_query(&hook, &opts);
  if (err == -ENOENT || err == -EINVAL || err == -ENODEV) return Int(env, 0);
  if (err != 0) return ThrowErrno(env, "querying the tc program", -err);
  return Int(env, static_cast<int32_t>(opts.prog_id));
}

// bpfXdpAttach(ifindex, progFd, flags): XDP_FLAGS_* (1 update-if-noexist, 2 skb, 4 drv).
napi_value XdpAttach(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  uint32_t ifindex, flags;
  int32_t prog;
  if (argc < 3 || !ArgUint32(env, argv[0], "ifindex", &ifindex) || !ArgInt32(env, argv[1], "progFd", &prog) ||
      !ArgUint32(env, argv[2], "flags", &flags))
    return nullptr;
  g_log.clear();
  int err = bpf_xdp_attach(static_cast<int>(ifindex), prog, flags, nullptr);
  if (err != 0) return ThrowLibbpf(env, "attaching the XDP program", -err);
  return Undefined(env);
}

napi_value XdpDetach(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  uint32_t ifindex, flags;
  if (argc < 2 || !ArgUint32(env, argv[0], "ifindex", &ifindex) || !ArgUint32(env, argv[1], "flags", &flags))
    return nullptr;
  int err = bpf_xdp_detach(static_cast<int>(ifindex), flags, nullptr);
  if (err != 0 && err != -ENODEV) return ThrowErrno(env, "detaching the XDP program", -err);
  return Undefined(env);
}

// bpfXdpQuery(ifindex, flags): the attached program's id, or 0.
napi_value XdpQuery(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  uint32_t ifindex, flags;
  if (argc < 2 || !ArgUint32(env, argv[0], "ifindex", &ifindex) || !ArgUint32(env, argv[1], "flags", &flags))
    return nullptr;
  uint32_t id = 0;
  int err = bpf_xdp_query_id(static_cast<int>(ifindex), static_cast<int>(flags), &id);
  if (err != 0 && err != -ENODEV) return ThrowErrno(env, "querying the XDP program", -err);
  return Int(env, static_cast<int32_t>(id));
}

// bpfCloseFd(fd): the statistics fd of bpfEnableStats (fds are tracked per
// addon, so this addon closes its own).
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

void InitBpf(napi_env env, napi_value exports) {
  libbpf_set_print(CollectLog);
  SetMethod(env, exports, "bpfCloseFd", CloseFd);
  SetMethod(env, exports, "bpfObjectOpen", ObjectOpen);
  SetMethod(env, exports, "bpfObjectClose", ObjectClose);
  SetMethod(env, exports, "bpfProgramFd", ProgramFd);
  SetMethod(env, exports, "bpfMapFd", MapFd);
  SetMethod(env, exports, "bpfMapInfo", MapInfo);
  SetMethod(env, exports, "bpfProgInfo", ProgInfo);
  SetMethod(env, exports, "bpfMapLookup", MapLookup);
  SetMethod(env, exports, "bpfMapUpdate", MapUpdate);
  SetMethod(env, exports, "bpfMapDelete", MapDelete);
  SetMethod(env, exports, "bpfMapUpdateBatch", MapUpdateBatch);
  SetMethod(env, exports, "bpfMapDeleteKeys", MapDeleteKeys);
  SetMethod(env, exports, "bpfMapDump", MapDump);
  SetMethod(env, exports, "bpfMapMmap", MapMmap);
  SetMethod(env, exports, "bpfNumPossibleCpus", NumPossibleCpus);
  SetMethod(env, exports, "bpfEnableStats", EnableStats);
  SetMethod(env, exports, "bpfTcAttach", TcAttach);
  SetMethod(env, exports, "bpfTcDetach", TcDetach);
  SetMethod(env, exports, "bpfTcQuery", TcQuery);
  SetMethod(env, exports, "bpfXdpAttach", XdpAttach);
  SetMethod(env, exports, "bpfXdpDetach", XdpDetach);
  SetMethod(env, exports, "bpfXdpQuery", XdpQuery);
}

}  // namespace distnat
