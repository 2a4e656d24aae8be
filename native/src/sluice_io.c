/*
 * sluice_io: the system-call shim of sluice's data path.
 *
 * Why this exists: node:dgram delivers one datagram per event and copies it
 * into a fresh Buffer, and Node has no TUN device at all. The engine keeps its
 * packets in one shared WebAssembly memory; this addon lets the kernel write a
 * whole batch of packets straight into slots of that memory (recvmmsg, read on
 * a TUN) and read a whole batch straight out of it (sendmmsg, write), so a
 * packet's bytes are never copied into a JavaScript object. Readiness comes
 * from libuv (uv_poll_t) on Node's own loop, so nothing ever spins. TUN
 * devices may use offloads (tun_offload.c): a 64 KB TCP super-packet per
 * read, a run of one flow's packets per write.
 *
 * Why plain C on Node-API (NAPI_VERSION 8): no C++ toolchain quirks, no
 * node-addon-api dependency, one binary for every Node >= 16.
 *
 * Safety rule: every offset and length that comes from JavaScript is read
 * exactly once (the arrays may be shared with other threads), checked against
 * the size of the buffer, and only then used. A bad one throws before any
 * system call is made; nothing is ever written outside the buffer.
 *
 * Address encoding (ADDRESS_BYTES = 28 per packet): the Linux socket address
 * exactly as the kernel reads and writes it, so recvmmsg/sendmmsg use the
 * caller's array in place:
 *   bytes 0-1   address family, native-endian u16: 2 = IPv4 (AF_INET),
 *               10 = IPv6 (AF_INET6), 0 = none (send on a connected socket)
 *   bytes 2-3   port, big-endian
 *   IPv4: bytes 4-7 the address, bytes 8-27 zero
 *   IPv6: bytes 4-7 flow info (big-endian), 8-23 the address, 24-27 scope id
 *         (native-endian u32)
 * src/io/address.ts encodes and decodes it.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sock_diag.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tun_offload.h"

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* Most packets one call handles; UIO_MAXIOV is also the kernel's cap for sendmmsg. */
#define BATCH_MAX 1024
#define ADDRESS_BYTES 28
#define DEFAULT_SOCKET_BUFFER (4 * 1024 * 1024)
#define TUN_PATH "/dev/net/tun"
#define MSG_TUN_MISSING "/dev/net/tun is missing: load the tun module or run with --device /dev/net/tun"
#define MSG_TUN_PERM "creating a TUN device needs CAP_NET_ADMIN (run as root)"

typedef union {
  char buf[CMSG_SPACE(sizeof(int))];
  struct cmsghdr align;
} control_buf;

/* A TUN device opened with offloads (IFF_VNET_HDR): its read buffer, the
 * super-packet being cut into segments across calls, and counters. */
typedef struct tun_device {
  struct tun_device *next;
  int fd;
  bool pending; /* tso holds segments not yet handed out */
  bool tcp_gro; /* TCP runs are coalesced (until the kernel refuses one) */
  bool udp_gro; /* UDP runs are coalesced too (until the kernel refuses one) */
  tso_state tso;
  struct {
    int64_t reads, superPackets, segments, checksums, malformed, writes, groups, coalesced, refused;
  } stats;
  uint8_t read[TSO_READ_MAX];
} tun_device;

/* Per-environment scratch for the message headers of one batch (the addon may
 * be loaded by several worker threads, each with its own environment), and
 * the TUN devices opened with offloads in that environment. */
typedef struct {
  struct mmsghdr msgs[BATCH_MAX];
  struct iovec iov[BATCH_MAX];
  control_buf ctl[BATCH_MAX];
  tun_device *devices;
} io_scratch;

/* ---------------------------------------------------------------- errors */

static const char *errno_name(int err) {
  const char *name = uv_err_name(-err);
  return name ? name : "EUNKNOWN";
}

static void set_string(napi_env env, napi_value obj, const char *key, const char *value) {
  napi_value v;
  if (napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}

static void set_int(napi_env env, napi_value obj, const char *key, int64_t value) {
  napi_value v;
  if (napi_create_int64(env, value, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}

static void set_bool(napi_env env, napi_value obj, const char *key, bool value) {
  napi_value v;
  if (napi_get_boolean(env, value, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}

static napi_value make_errno_error(napi_env env, const char *syscall, int err, const char *what) {
  char msg[512];
  if (what && *what)
    snprintf(msg, sizeof msg, "%s: %s failed: %s (%s)", what, syscall, errno_name(err), strerror(err));
  else
    snprintf(msg, sizeof msg, "%s failed: %s (%s)", syscall, errno_name(err), strerror(err));
  napi_value code, text, error;
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  set_int(env, error, "errno", -err);
  set_string(env, error, "syscall", syscall);
  return error;
}

/* Throws an Error whose message names the call and the errno (code = "EAGAIN" style). */
static napi_value throw_errno(napi_env env, const char *syscall, int err, const char *what) {
  napi_throw(env, make_errno_error(env, syscall, err, what));
  return NULL;
}

/* Throws an Error with a fixed one-line message, still carrying errno and code. */
static napi_value throw_errno_message(napi_env env, const char *syscall, int err, const char *message) {
  napi_value code, text, error;
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  set_int(env, error, "errno", -err);
  set_string(env, error, "syscall", syscall);
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *fmt, const char *a) {
  char msg[256];
  snprintf(msg, sizeof msg, fmt, a);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

/* ------------------------------------------------------------- arguments */

static bool is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (v == NULL) return true;
  if (napi_typeof(env, v, &t) != napi_ok) return true;
  return t == napi_undefined || t == napi_null;
}

/* An integer number in [min, max]; throws and returns false otherwise. */
static bool get_int(napi_env env, napi_value v, const char *name, int64_t min, int64_t max, int64_t *out) {
  napi_valuetype t;
  double d;
  char msg[200];
  if (v == NULL || napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    throw_type(env, "%s must be a number", name);
    return false;
  }
  napi_get_value_double(env, v, &d);
  if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max) {
    snprintf(msg, sizeof msg, "%s must be an integer in [%lld, %lld]", name, (long long)min, (long long)max);
    throw_range(env, msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool get_fd(napi_env env, napi_value v, int *fd) {
  int64_t x;
  if (!get_int(env, v, "fd", 0, INT32_MAX, &x)) return false;
  *fd = (int)x;
  return true;
}

static size_t element_size(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: return 8;
    default: return 1;
  }
}

/*
 * The packet buffer: an ArrayBuffer, or any TypedArray/DataView (which is how a
 * SharedArrayBuffer gets here: Node 20's napi_get_arraybuffer_info rejects a
 * SharedArrayBuffer, napi_get_typedarray_info over one works). Offsets are
 * relative to the start of the view.
 */
static bool get_bytes(napi_env env, napi_value v, const char *name, uint8_t **data, size_t *size) {
  bool is;
  void *p = NULL;
  size_t n = 0;
  if (v != NULL && napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t length;
    if (napi_get_typedarray_info(env, v, &type, &length, &p, NULL, NULL) != napi_ok) goto bad;
    n = length * element_size(type);
  } else if (v != NULL && napi_is_dataview(env, v, &is) == napi_ok && is) {
    if (napi_get_dataview_info(env, v, &n, &p, NULL, NULL) != napi_ok) goto bad;
  } else if (v != NULL && napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
    if (napi_get_arraybuffer_info(env, v, &p, &n) != napi_ok) goto bad;
  } else {
    goto bad;
  }
  if (p == NULL) n = 0; /* a detached or empty buffer */
  *data = (uint8_t *)p;
  *size = n;
  return true;
bad:
  throw_type(env, "%s must be an ArrayBuffer or a TypedArray/DataView (wrap a SharedArrayBuffer in a Uint8Array)", name);
  return false;
}

/* A TypedArray of the given type with at least `need` elements. */
static bool get_typed(napi_env env, napi_value v, const char *name, napi_typedarray_type want, size_t need,
                      void **data, size_t *length) {
  bool is = false;
  napi_typedarray_type type;
  char msg[200];
  if (v == NULL || napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, length, data, NULL, NULL) != napi_ok || type != want) {
    const char *kind = want == napi_int32_array ? "an Int32Array" : "a Uint8Array";
    snprintf(msg, sizeof msg, "%s must be %s", name, kind);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (*length < need) {
    snprintf(msg, sizeof msg, "%s holds %zu elements, the batch needs %zu", name, *length, need);
    throw_range(env, msg);
    return false;
  }
  return true;
}

static bool get_property(napi_env env, napi_value obj, const char *key, napi_value *out) {
  bool has = false;
  *out = NULL;
  if (is_nullish(env, obj)) return false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return false;
  if (napi_get_named_property(env, obj, key, out) != napi_ok) return false;
  if (is_nullish(env, *out)) {
    *out = NULL;
    return false;
  }
  return true;
}

static bool get_bool_option(napi_env env, napi_value obj, const char *key, bool fallback) {
  napi_value v;
  bool b = fallback;
  if (get_property(env, obj, key, &v)) napi_coerce_to_bool(env, v, &v), napi_get_value_bool(env, v, &b);
  return b;
}

static io_scratch *scratch(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return (io_scratch *)data;
}

/* Checks [offset, offset + length) lies in a buffer of `size` bytes. */
static bool check_range(napi_env env, const char *what, size_t index, int64_t offset, int64_t length, size_t size) {
  if (offset >= 0 && length >= 0 && (uint64_t)offset + (uint64_t)length <= (uint64_t)size) return true;
  char msg[256];
  snprintf(msg, sizeof msg, "packet %zu: %s [%lld, %lld) is outside the buffer of %zu bytes", index, what,
           (long long)offset, (long long)offset + (long long)length, size);
  throw_range(env, msg);
  return false;
}

/*
 * Points iov[0..n) at buffer[offsets[i], +lengths[i]) (a send or write), each
 * offset and length read once and checked first; false with a RangeError
 * thrown when one is outside the buffer.
 */
static bool gather_ranges(napi_env env, uint8_t *buf, size_t size, const int32_t *offsets, const int32_t *lengths,
                          size_t n, struct iovec *iov) {
  for (size_t i = 0; i < n; i++) {
    int32_t off = ((const volatile int32_t *)offsets)[i];
    int32_t len = ((const volatile int32_t *)lengths)[i];
    if (!check_range(env, "send range", i, off, len, size)) return false;
    iov[i].iov_base = buf + off;
    iov[i].iov_len = (size_t)len;
  }
  return true;
}

/* Points iov[0..n) at buffer[offsets[i], +capacity) (a receive or read), checked the same way. */
static bool place_ranges(napi_env env, uint8_t *buf, size_t size, const int32_t *offsets, size_t capacity, size_t n,
                         struct iovec *iov) {
  for (size_t i = 0; i < n; i++) {
    int32_t off = ((const volatile int32_t *)offsets)[i];
    if (!check_range(env, "receive range", i, off, (int64_t)capacity, size)) return false;
    iov[i].iov_base = buf + off;
    iov[i].iov_len = capacity;
  }
  return true;
}

static void set_nonblocking_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  fl = fcntl(fd, F_GETFD);
  if (fl >= 0) fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

/* ------------------------------------------------------------------ UDP */

/* Raises a socket buffer: the privileged *FORCE option first (ignores rmem_max), then the plain one. */
static int raise_buffer(int fd, int force_opt, int opt, int bytes) {
  if (bytes <= 0) return 0;
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) == 0) return 0;
  return setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
}

static int get_sockopt_int(int fd, int level, int opt, int *value) {
  socklen_t len = sizeof *value;
  return getsockopt(fd, level, opt, value, &len);
}

static void describe_udp(napi_env env, int fd, napi_value obj) {
  int v = 0;
  bool gso = get_sockopt_int(fd, SOL_UDP, UDP_SEGMENT, &v) == 0;
  int gro_on = 0;
  bool gro = get_sockopt_int(fd, SOL_UDP, UDP_GRO, &gro_on) == 0;
  set_bool(env, obj, "gso", gso);
  set_bool(env, obj, "gro", gro);
  set_bool(env, obj, "groEnabled", gro && gro_on != 0);
  if (get_sockopt_int(fd, SOL_SOCKET, SO_RCVBUF, &v) == 0) set_int(env, obj, "recvBufferSize", v);
  if (get_sockopt_int(fd, SOL_SOCKET, SO_SNDBUF, &v) == 0) set_int(env, obj, "sendBufferSize", v);
  /* Datagrams the kernel dropped because the receive buffer was full: the
   * only losses sluice cannot count itself. */
  uint32_t meminfo[SK_MEMINFO_VARS];
  socklen_t len = sizeof meminfo;
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo, &len) == 0 && len > SK_MEMINFO_DROPS * sizeof(uint32_t))
    set_int(env, obj, "drops", meminfo[SK_MEMINFO_DROPS]);
}

/* udpOpen(family, address, port, options?) -> { fd, port, gso, gro, groEnabled, recvBufferSize, sendBufferSize } */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4] = {NULL, NULL, NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t family, port;
  if (!get_int(env, argv[0], "family", 4, 6, &family)) return NULL;
  if (family != 4 && family != 6) return throw_range(env, "family must be 4 or 6");
  char address[INET6_ADDRSTRLEN + IFNAMSIZ + 2];
  size_t alen = 0;
  napi_valuetype t;
  if (argv[1] == NULL || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_string)
    return throw_type(env, "%s must be a string", "address");
  if (napi_get_value_string_utf8(env, argv[1], address, sizeof address, &alen) != napi_ok ||
      alen >= sizeof address - 1)
    return throw_range(env, "address is too long");
  if (!get_int(env, argv[2], "port", 0, 65535, &port)) return NULL;
  napi_value options = argv[3];

  struct sockaddr_storage ss;
  socklen_t sslen;
  memset(&ss, 0, sizeof ss);
  if (family == 4) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, address, &sin->sin_addr) != 1) return throw_type(env, "not an IPv4 address: %s", address);
    sslen = sizeof *sin;
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    char *scope = strchr(address, '%');
    if (scope) {
      *scope++ = 0;
      sin6->sin6_scope_id = if_nametoindex(scope);
      if (sin6->sin6_scope_id == 0) sin6->sin6_scope_id = (uint32_t)strtoul(scope, NULL, 10);
    }
    if (inet_pton(AF_INET6, address, &sin6->sin6_addr) != 1) return throw_type(env, "not an IPv6 address: %s", address);
    sslen = sizeof *sin6;
  }

  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) return throw_errno(env, "socket", errno, "udpOpen");

  int one = 1;
  char what[INET6_ADDRSTRLEN + 64];
  snprintf(what, sizeof what, "udpOpen %s port %d", address, (int)port);
  if (get_bool_option(env, options, "reuseport", false) &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "setsockopt(SO_REUSEPORT)", err, what);
  }
  napi_value v;
  if (family == 6 && get_property(env, options, "v6Only", &v)) {
    bool b = false;
    napi_coerce_to_bool(env, v, &v);
    napi_get_value_bool(env, v, &b);
    int flag = b ? 1 : 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &flag, sizeof flag);
  }
  int64_t rcv = DEFAULT_SOCKET_BUFFER, snd = DEFAULT_SOCKET_BUFFER;
  if (get_property(env, options, "recvBufferSize", &v) && !get_int(env, v, "recvBufferSize", 0, INT32_MAX, &rcv)) {
    close(fd);
    return NULL;
  }
  if (get_property(env, options, "sendBufferSize", &v) && !get_int(env, v, "sendBufferSize", 0, INT32_MAX, &snd)) {
    close(fd);
    return NULL;
  }
  /* Best effort: a small buffer costs throughput, not correctness. */
  raise_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, (int)rcv);
  raise_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, (int)snd);
  if (get_bool_option(env, options, "gro", false)) setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);

  if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind", err, what);
  }
  memset(&ss, 0, sizeof ss);
  sslen = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sslen);
  int bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  napi_value result;
  napi_create_object(env, &result);
  set_int(env, result, "fd", fd);
  set_int(env, result, "port", bound);
  describe_udp(env, fd, result);
  return result;
}

/* udpCapabilities(fd) -> { gso, gro, groEnabled, recvBufferSize, sendBufferSize } */
static napi_value udp_capabilities(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  int type = 0;
  if (get_sockopt_int(fd, SOL_SOCKET, SO_TYPE, &type) != 0) return throw_errno(env, "getsockopt", errno, "udpCapabilities");
  napi_value result;
  napi_create_object(env, &result);
  describe_udp(env, fd, result);
  return result;
}

/* udpConnect(fd, address: Uint8Array, one 28-byte entry): fixes the peer; family 0 dissolves the association. */
static napi_value udp_connect(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint8_t *a;
  size_t n;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  if (!get_typed(env, argv[1], "address", napi_uint8_array, ADDRESS_BYTES, (void **)&a, &n)) return NULL;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, a, ADDRESS_BYTES);
  socklen_t len;
  if (ss.ss_family == AF_INET) len = sizeof(struct sockaddr_in);
  else if (ss.ss_family == AF_INET6) len = sizeof(struct sockaddr_in6);
  else if (ss.ss_family == 0) ss.ss_family = AF_UNSPEC, len = sizeof(struct sockaddr);
  else return throw_range(env, "address family is neither IPv4 nor IPv6");
  int r;
  do r = connect(fd, (struct sockaddr *)&ss, len);
  while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, "connect", errno, "udpConnect");
  return NULL;
}

/*
 * udpRecvBatch(fd, buffer, offsets, capacity, lengths, addresses, count, segments?) -> received
 * lengths[i] < 0: packet i did not fit in capacity and was cut (discard it).
 * segments[i] (optional Int32Array): the GRO segment size when packet i is a
 * coalesced super-packet (every segment that size, the last one maybe shorter), else 0.
 */
static napi_value udp_recv_batch(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint8_t *buf;
  size_t size, n_off, n_len, n_addr = 0, n_seg = 0;
  int64_t capacity, count;
  int32_t *offsets, *lengths, *segments = NULL;
  uint8_t *addresses = NULL;
  if (!get_fd(env, argv[0], &fd) || !get_bytes(env, argv[1], "buffer", &buf, &size)) return NULL;
  if (!get_int(env, argv[3], "capacity", 1, INT32_MAX, &capacity)) return NULL;
  if (!get_int(env, argv[6], "count", 0, INT32_MAX, &count)) return NULL;
  size_t n = count > BATCH_MAX ? BATCH_MAX : (size_t)count;
  if (!get_typed(env, argv[2], "offsets", napi_int32_array, n, (void **)&offsets, &n_off)) return NULL;
  if (!get_typed(env, argv[4], "lengths", napi_int32_array, n, (void **)&lengths, &n_len)) return NULL;
  if (!is_nullish(env, argv[5]) &&
      !get_typed(env, argv[5], "addresses", napi_uint8_array, n * ADDRESS_BYTES, (void **)&addresses, &n_addr))
    return NULL;
  if (argc > 7 && !is_nullish(env, argv[7]) &&
      !get_typed(env, argv[7], "segments", napi_int32_array, n, (void **)&segments, &n_seg))
    return NULL;
  if (n == 0) goto zero;
  io_scratch *s = scratch(env);
  if (!place_ranges(env, buf, size, offsets, (size_t)capacity, n, s->iov)) return NULL;
  for (size_t i = 0; i < n; i++) {
    struct msghdr *h = &s->msgs[i].msg_hdr;
    h->msg_name = addresses ? addresses + i * ADDRESS_BYTES : NULL;
    h->msg_namelen = addresses ? ADDRESS_BYTES : 0;
    h->msg_iov = &s->iov[i];
    h->msg_iovlen = 1;
    h->msg_control = segments ? s->ctl[i].buf : NULL;
    h->msg_controllen = segments ? sizeof s->ctl[i].buf : 0;
    h->msg_flags = 0;
    s->msgs[i].msg_len = 0;
  }
  int r;
  do r = recvmmsg(fd, s->msgs, (unsigned)n, MSG_DONTWAIT, NULL);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) goto zero;
    return throw_errno(env, "recvmmsg", errno, "udpRecvBatch");
  }
  for (int i = 0; i < r; i++) {
    struct msghdr *h = &s->msgs[i].msg_hdr;
    int32_t len = (int32_t)s->msgs[i].msg_len;
    lengths[i] = (h->msg_flags & MSG_TRUNC) ? -(len > 0 ? len : 1) : len;
    if (addresses && h->msg_namelen < ADDRESS_BYTES)
      memset(addresses + i * ADDRESS_BYTES + h->msg_namelen, 0, ADDRESS_BYTES - h->msg_namelen);
    if (segments) {
      int32_t seg = 0;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
          int gso;
          memcpy(&gso, CMSG_DATA(c), sizeof gso);
          seg = gso < len ? gso : 0; /* a "super-packet" of one segment is just a packet */
        }
      }
      segments[i] = seg;
    }
  }
  napi_value result;
  napi_create_int32(env, r, &result);
  return result;
zero:
  napi_create_int32(env, 0, &result);
  return result;
}

/* Points a message at a 28-byte socket address entry (family 0: none, the connected peer). */
static bool msg_set_address(napi_env env, struct msghdr *h, uint8_t *a, size_t index) {
  sa_family_t fam;
  memcpy(&fam, a, sizeof fam);
  if (fam == AF_INET) h->msg_name = a, h->msg_namelen = sizeof(struct sockaddr_in);
  else if (fam == AF_INET6) h->msg_name = a, h->msg_namelen = sizeof(struct sockaddr_in6);
  else if (fam != 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "packet %zu: address family %u is neither IPv4 (%d) nor IPv6 (%d)", index,
             (unsigned)fam, AF_INET, AF_INET6);
    throw_range(env, msg);
    return false;
  }
  return true;
}

/* Asks the kernel to cut the message into datagrams of gso bytes (UDP_SEGMENT). */
static void msg_set_gso(struct msghdr *h, control_buf *ctl, uint16_t gso) {
  memset(ctl, 0, sizeof *ctl);
  h->msg_control = ctl->buf;
  h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
  struct cmsghdr *c = CMSG_FIRSTHDR(h);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  memcpy(CMSG_DATA(c), &gso, sizeof gso);
}

/* Asks for the cache lines of [p, p + n) in a writable state ahead of the
 * stores: a slot's lines were last written by a worker on another core. */
static inline void prefetch_for_write(const void *p, size_t n) {
  for (size_t at = 0; at < n; at += 64) __builtin_prefetch((const uint8_t *)p + at, 1, 3);
}

/* The same for lines about to be read (a packet a worker just opened, for its checksum). */
static inline void prefetch_for_read(const void *p, size_t n) {
  for (size_t at = 0; at < n; at += 64) __builtin_prefetch((const uint8_t *)p + at, 0, 3);
}

/*
 * udpSendBatch(fd, buffer, offsets, lengths, addresses, count, options?) -> sent
 * options.gsoSize: with UDP GSO, each message is cut by the kernel into
 * datagrams of gsoSize bytes (the last may be shorter).
 * Like sendmmsg: an error on the first message throws; after that, the count
 * sent so far is returned and the error comes back on the next call.
 * EAGAIN and ENOBUFS (a full device queue) return 0: try again when writable.
 */
static napi_value udp_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint8_t *buf;
  size_t size, n_off, n_len, n_addr = 0;
  int64_t count, gso = 0;
  int32_t *offsets, *lengths;
  uint8_t *addresses = NULL;
  napi_value v, result;
  if (!get_fd(env, argv[0], &fd) || !get_bytes(env, argv[1], "buffer", &buf, &size)) return NULL;
  if (!get_int(env, argv[5], "count", 0, INT32_MAX, &count)) return NULL;
  size_t n = count > BATCH_MAX ? BATCH_MAX : (size_t)count;
  if (!get_typed(env, argv[2], "offsets", napi_int32_array, n, (void **)&offsets, &n_off)) return NULL;
  if (!get_typed(env, argv[3], "lengths", napi_int32_array, n, (void **)&lengths, &n_len)) return NULL;
  if (!is_nullish(env, argv[4]) &&
      !get_typed(env, argv[4], "addresses", napi_uint8_array, n * ADDRESS_BYTES, (void **)&addresses, &n_addr))
    return NULL;
  if (argc > 6 && get_property(env, argv[6], "gsoSize", &v) && !get_int(env, v, "gsoSize", 0, 65535, &gso))
    return NULL;
  if (n == 0) {
    napi_create_int32(env, 0, &result);
    return result;
  }
  io_scratch *s = scratch(env);
  if (!gather_ranges(env, buf, size, offsets, lengths, n, s->iov)) return NULL;
  for (size_t i = 0; i < n; i++) {
    struct msghdr *h = &s->msgs[i].msg_hdr;
    h->msg_name = NULL;
    h->msg_namelen = 0;
    if (addresses && !msg_set_address(env, h, addresses + i * ADDRESS_BYTES, i)) return NULL;
    h->msg_iov = &s->iov[i];
    h->msg_iovlen = 1;
    if (gso > 0) {
      msg_set_gso(h, &s->ctl[i], (uint16_t)gso);
    } else {
      h->msg_control = NULL;
      h->msg_controllen = 0;
    }
    h->msg_flags = 0;
  }
  int r;
  do r = sendmmsg(fd, s->msgs, (unsigned)n, MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) r = 0;
    else return throw_errno(env, "sendmmsg", errno, "udpSendBatch");
  }
  napi_create_int32(env, r, &result);
  return result;
}

/*
 * udpSendGso(fd, buffer, offsets, lengths, count, address, gsoSize) -> 1 | 0
 * One sendmsg whose payload is gathered from `count` packets (an iovec each,
 * straight out of their slots) and cut by the kernel (UDP_SEGMENT) into
 * datagrams of gsoSize bytes: every packet but the last must be exactly
 * gsoSize long, the last at most that, all to one address (28-byte entry 0 of
 * `address`, or null when connected). The whole stack is crossed once for
 * up to 64 datagrams instead of once each. Returns 1 when sent, 0 on
 * EAGAIN/ENOBUFS; throws on other errors (EIO and EINVAL: no GSO here).
 */
static napi_value udp_send_gso(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint8_t *buf;
  size_t size, n_off, n_len, n_addr = 0;
  int64_t count, gso;
  int32_t *offsets, *lengths;
  uint8_t *address = NULL;
  napi_value result;
  if (!get_fd(env, argv[0], &fd) || !get_bytes(env, argv[1], "buffer", &buf, &size)) return NULL;
  if (!get_int(env, argv[4], "count", 1, 64, &count)) return NULL;
  if (!get_int(env, argv[6], "gsoSize", 1, 65535, &gso)) return NULL;
  size_t n = (size_t)count;
  if (!get_typed(env, argv[2], "offsets", napi_int32_array, n, (void **)&offsets, &n_off)) return NULL;
  if (!get_typed(env, argv[3], "lengths", napi_int32_array, n, (void **)&lengths, &n_len)) return NULL;
  if (!is_nullish(env, argv[5]) &&
      !get_typed(env, argv[5], "address", napi_uint8_array, ADDRESS_BYTES, (void **)&address, &n_addr))
    return NULL;
  io_scratch *s = scratch(env);
  if (!gather_ranges(env, buf, size, offsets, lengths, n, s->iov)) return NULL;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    size_t len = s->iov[i].iov_len;
    if ((i + 1 < n && len != (size_t)gso) || len > (size_t)gso || len == 0)
      return throw_range(env, "udpSendGso: every packet but the last must be gsoSize bytes, the last 1 to gsoSize");
    total += len;
  }
  if (total > 65507) return throw_range(env, "udpSendGso: more than 65507 bytes in one send");
  struct msghdr h;
  memset(&h, 0, sizeof h);
  if (address && !msg_set_address(env, &h, address, 0)) return NULL;
  h.msg_iov = s->iov;
  h.msg_iovlen = n;
  msg_set_gso(&h, &s->ctl[0], (uint16_t)gso);
  ssize_t r;
  do r = sendmsg(fd, &h, MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      napi_create_int32(env, 0, &result);
      return result;
    }
    return throw_errno(env, "sendmsg", errno, "udpSendGso");
  }
  napi_create_int32(env, 1, &result);
  return result;
}

/* ------------------------------------------------------------------ TUN */

static tun_device *find_device(io_scratch *s, int fd) {
  for (tun_device *d = s->devices; d; d = d->next)
    if (d->fd == fd) return d;
  return NULL;
}

static void forget_device(io_scratch *s, int fd) {
  for (tun_device **at = &s->devices; *at; at = &(*at)->next) {
    if ((*at)->fd == fd) {
      tun_device *d = *at;
      *at = d->next;
      free(d);
      return;
    }
  }
}

/*
 * tunOpen(name, options?) -> { fd, name, offload }
 * options.offload: IFF_VNET_HDR with TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6:
 * reads may yield TCP super-packets, which tunReadBatch cuts into segments,
 * and tunWriteBatch coalesces runs of TCP segments or UDP datagrams into
 * super-packets. `offload` in the result says whether the kernel took TSO
 * (the device carries the virtio header either way).
 */
static napi_value tun_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[IFNAMSIZ + 1];
  size_t nlen = 0;
  napi_valuetype t;
  if (is_nullish(env, argv[0])) name[0] = 0;
  else {
    if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string) return throw_type(env, "%s must be a string", "name");
    napi_get_value_string_utf8(env, argv[0], name, sizeof name, &nlen);
    if (nlen >= IFNAMSIZ) return throw_range(env, "a TUN device name has at most 15 bytes");
  }
  bool multi = get_bool_option(env, argv[1], "multiQueue", false);
  bool offload = get_bool_option(env, argv[1], "offload", false);
  tun_device *device = NULL;
  if (offload && !(device = (tun_device *)calloc(1, sizeof *device))) return throw_errno(env, "calloc", ENOMEM, "tunOpen");

  int fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    free(device);
    if (err == ENOENT || err == ENODEV || err == ENXIO) return throw_errno_message(env, "open", err, MSG_TUN_MISSING);
    if (err == EPERM || err == EACCES) return throw_errno_message(env, "open", err, MSG_TUN_PERM);
    return throw_errno(env, "open", err, "tunOpen " TUN_PATH);
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (multi ? IFF_MULTI_QUEUE : 0) | (offload ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, nlen);
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    close(fd);
    free(device);
    if (err == EPERM || err == EACCES) return throw_errno_message(env, "ioctl(TUNSETIFF)", err, MSG_TUN_PERM);
    if (err == EBUSY) {
      char msg[160];
      snprintf(msg, sizeof msg, "TUN device %s is busy: it exists and is open%s, or is not a TUN device", name,
               multi ? " without multiQueue" : " (pass multiQueue to open more queues)");
      return throw_errno_message(env, "ioctl(TUNSETIFF)", err, msg);
    }
    return throw_errno(env, "ioctl(TUNSETIFF)", err, "tunOpen");
  }
  /* An entry left by a descriptor closed other than through close() would
   * make this one (same number) look like an offload device. */
  forget_device(scratch(env), fd);
  if (device) {
    /* Without TSO the device still carries a virtio header on every packet
     * (IFF_VNET_HDR cannot be undone), so it stays registered either way;
     * `offload` reports whether super-packets can come. */
    int header = (int)VNET_HDR_LEN;
    unsigned long features = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    offload = ioctl(fd, TUNSETVNETHDRSZ, &header) == 0 && ioctl(fd, TUNSETOFFLOAD, features) == 0;
    io_scratch *s = scratch(env);
    device->fd = fd;
    device->tcp_gro = true;
    device->udp_gro = true;
    device->next = s->devices;
    s->devices = device;
  }
  set_nonblocking_cloexec(fd);
  napi_value result;
  napi_create_object(env, &result);
  set_int(env, result, "fd", fd);
  ifr.ifr_name[IFNAMSIZ - 1] = 0;
  set_string(env, result, "name", ifr.ifr_name);
  set_bool(env, result, "offload", offload);
  return result;
}

/* Reads with offloads: one read() may be a super-packet, handed out as
 * segments, the rest kept for the next call. A malformed read is handed out
 * as one packet of length 0 so the caller counts it. */
static size_t tun_read_offload(napi_env env, tun_device *d, struct iovec *slots, size_t n, size_t capacity) {
  size_t i = 0;
  while (i < n) {
    if (d->pending) {
      if (i + 1 < n) prefetch_for_write(slots[i + 1].iov_base, d->tso.headers + d->tso.mss);
      long r = tso_next(&d->tso, slots[i].iov_base, capacity);
      if (r > 0) {
        slots[i++].iov_len = (size_t)r;
        d->stats.segments++;
        continue;
      }
      if (r < 0) slots[i++].iov_len = 0, d->stats.malformed++; /* a segment larger than a slot: the MTU is wrong */
      d->pending = false;
      continue;
    }
    ssize_t r;
    do r = read(d->fd, d->read, sizeof d->read);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || i > 0) break;
      throw_errno(env, "read", errno, "tunReadBatch");
      return (size_t)-1;
    }
    d->stats.reads++;
    int count = tso_begin(&d->tso, d->read, (size_t)r);
    if (count < 0) {
      slots[i++].iov_len = 0;
      d->stats.malformed++;
      continue;
    }
    if (!d->tso.plain) d->stats.superPackets++;
    else if (d->read[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) d->stats.checksums++; /* flags: the header's first byte */
    d->pending = true;
  }
  return i;
}

/*
 * tunReadBatch(fd, buffer, offsets, capacity, lengths, max) -> packets read
 * One read() per packet until EAGAIN or max. lengths[i] < 0: the packet was
 * longer than capacity (-lengths[i] is its real length) and was cut: discard it.
 * On a device opened with offload, a TCP super-packet comes out as segments
 * (a packet each), and what does not fit in max waits for the next call:
 * call again while it returns max, even when the fd is not readable.
 */
static napi_value tun_read_batch(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint8_t *buf;
  size_t size, n_off, n_len;
  int64_t capacity, max;
  int32_t *offsets, *lengths;
  if (!get_fd(env, argv[0], &fd) || !get_bytes(env, argv[1], "buffer", &buf, &size)) return NULL;
  if (!get_int(env, argv[3], "capacity", 1, INT32_MAX, &capacity)) return NULL;
  if (!get_int(env, argv[5], "max", 0, INT32_MAX, &max)) return NULL;
  size_t n = max > BATCH_MAX ? BATCH_MAX : (size_t)max;
  if (!get_typed(env, argv[2], "offsets", napi_int32_array, n, (void **)&offsets, &n_off)) return NULL;
  if (!get_typed(env, argv[4], "lengths", napi_int32_array, n, (void **)&lengths, &n_len)) return NULL;
  io_scratch *s = scratch(env);
  if (!place_ranges(env, buf, size, offsets, (size_t)capacity, n, s->iov)) return NULL;
  size_t i = 0;
  tun_device *d = find_device(s, fd);
  if (d) {
    i = tun_read_offload(env, d, s->iov, n, (size_t)capacity);
    if (i == (size_t)-1) return NULL;
    for (size_t k = 0; k < i; k++) lengths[k] = (int32_t)s->iov[k].iov_len;
  } else {
    for (; i < n; i++) {
      ssize_t r;
      do r = read(fd, s->iov[i].iov_base, (size_t)capacity);
      while (r < 0 && errno == EINTR);
      if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || i > 0) break;
        return throw_errno(env, "read", errno, "tunReadBatch");
      }
      lengths[i] = r > capacity ? (int32_t)-r : (int32_t)r;
    }
  }
  napi_value result;
  napi_create_int32(env, (int32_t)i, &result);
  return result;
}

/*
 * The iovec of one write with offloads, starting at packet i: a virtio
 * header, then packet i, then the payloads of the packets after it that
 * continue its flow (GRO; UDP flows too when `udp`). Returns how many packets
 * it takes (>= 1). When it takes more than one, the first packet's original
 * headers are kept in `saved` (`*saved_length` bytes) before they are
 * rewritten for the group, so a refused write can be undone.
 */
static size_t gro_gather(struct iovec *packets, size_t i, size_t n, bool tcp, bool udp, struct virtio_net_hdr *header,
                         struct iovec *iov, size_t *iov_count, uint8_t *saved, size_t *saved_length) {
  gro_group g;
  size_t j = i + 1;
  iov[0].iov_base = header;
  iov[0].iov_len = VNET_HDR_LEN;
  iov[1] = packets[i];
  *iov_count = 2;
  *saved_length = 0;
  memset(header, 0, sizeof *header);
  if (gro_start(&g, packets[i].iov_base, packets[i].iov_len, tcp, udp)) {
    for (; j < n; j++) {
      if (j + 1 < n) prefetch_for_read(packets[j + 1].iov_base, packets[j + 1].iov_len);
      if (!gro_append(&g, packets[j].iov_base, packets[j].iov_len)) break;
      iov[*iov_count].iov_base = (uint8_t *)packets[j].iov_base + g.headers;
      iov[*iov_count].iov_len = packets[j].iov_len - g.headers;
      (*iov_count)++;
    }
    if (g.count > 1) {
      *saved_length = g.headers; /* at most 40 + 60 bytes of IP and TCP headers */
      memcpy(saved, g.first, g.headers);
    }
    gro_finish(&g, header);
  }
  return j - i;
}

/*
 * tunWriteBatch(fd, buffer, offsets, lengths, count) -> packets written
 * One write() per packet; stops at EAGAIN. An error on the first packet
 * throws (err.index = 0); after that the count written so far is returned,
 * and the failed packet is as it was (so a next call can start with it).
 * On a device opened with offload, consecutive segments of one TCP flow, or
 * datagrams of one UDP flow, go out as one super-packet write (their first
 * packet's headers are rewritten in place for it).
 */
static napi_value tun_write_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint8_t *buf;
  size_t size, n_off, n_len;
  int64_t count;
  int32_t *offsets, *lengths;
  if (!get_fd(env, argv[0], &fd) || !get_bytes(env, argv[1], "buffer", &buf, &size)) return NULL;
  if (!get_int(env, argv[4], "count", 0, INT32_MAX, &count)) return NULL;
  size_t n = count > BATCH_MAX ? BATCH_MAX : (size_t)count;
  if (!get_typed(env, argv[2], "offsets", napi_int32_array, n, (void **)&offsets, &n_off)) return NULL;
  if (!get_typed(env, argv[3], "lengths", napi_int32_array, n, (void **)&lengths, &n_len)) return NULL;
  io_scratch *s = scratch(env);
  if (!gather_ranges(env, buf, size, offsets, lengths, n, s->iov)) return NULL;
  tun_device *d = find_device(s, fd);
  size_t i = 0;
  while (i < n) {
    struct virtio_net_hdr header;
    struct iovec iov[GRO_MAX_SEGMENTS + 1];
    uint8_t saved[128];
    size_t iov_count = 1, take = 1, saved_length = 0;
    ssize_t r;
    if (d) take = gro_gather(s->iov, i, n, d->tcp_gro, d->udp_gro, &header, iov, &iov_count, saved, &saved_length);
    do r = d ? writev(fd, iov, (int)iov_count) : write(fd, s->iov[i].iov_base, s->iov[i].iov_len);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      /* A refused write is undone: the group's first packet gets its own
       * headers back, whether it is written again here or by the caller. */
      int err = errno;
      if (saved_length > 0) memcpy(s->iov[i].iov_base, saved, saved_length);
      if (d && err == EINVAL && take > 1) {
        /* A kernel that refuses this kind of GSO write: no UDP GSO on TUN
         * writes (before 6.2), or the stable kernels (6.6.44, 6.10.3, …) that
         * refused a last TCP segment shorter than gso_size. Write that
         * protocol packet by packet on this device. */
        if (header.gso_type == VIRTIO_NET_HDR_GSO_UDP_L4) d->udp_gro = false;
        else d->tcp_gro = false;
        d->stats.refused++;
        continue;
      }
      if (err == EAGAIN || err == EWOULDBLOCK || i > 0) break;
      napi_value error = make_errno_error(env, d ? "writev" : "write", err, "tunWriteBatch");
      set_int(env, error, "index", 0);
      napi_throw(env, error);
      return NULL;
    }
    if (d) {
      d->stats.writes++;
      if (take > 1) d->stats.groups++, d->stats.coalesced += (int64_t)take;
    }
    i += take;
  }
  napi_value result;
  napi_create_int32(env, (int32_t)i, &result);
  return result;
}

/*
 * copyBatch(buffer, from, to, lengths, count)
 * memmove of buffer[from[i], +lengths[i]) to buffer[to[i]] for each i, in
 * order: one call for a whole receive instead of a copyWithin per packet
 * (each of which enters V8's runtime). All ranges are checked first.
 */
static napi_value copy_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *buf;
  size_t size, n_from, n_to, n_len;
  int64_t count;
  int32_t *from, *to, *lengths;
  if (!get_bytes(env, argv[0], "buffer", &buf, &size)) return NULL;
  if (!get_int(env, argv[4], "count", 0, BATCH_MAX, &count)) return NULL;
  size_t n = (size_t)count;
  if (!get_typed(env, argv[1], "from", napi_int32_array, n, (void **)&from, &n_from)) return NULL;
  if (!get_typed(env, argv[2], "to", napi_int32_array, n, (void **)&to, &n_to)) return NULL;
  if (!get_typed(env, argv[3], "lengths", napi_int32_array, n, (void **)&lengths, &n_len)) return NULL;
  io_scratch *s = scratch(env);
  for (size_t i = 0; i < n; i++) {
    int32_t f = ((volatile int32_t *)from)[i], t = ((volatile int32_t *)to)[i], len = ((volatile int32_t *)lengths)[i];
    if (!check_range(env, "copy source", i, f, len, size) || !check_range(env, "copy target", i, t, len, size)) return NULL;
    s->iov[i].iov_base = buf + t;
    s->iov[i].iov_len = (size_t)len;
    s->msgs[i].msg_len = (unsigned)f; /* the checked source, kept until the copies below */
  }
  for (size_t i = 0; i < n; i++) {
    if (i + 1 < n) prefetch_for_write(s->iov[i + 1].iov_base, s->iov[i + 1].iov_len);
    memmove(s->iov[i].iov_base, buf + s->msgs[i].msg_len, s->iov[i].iov_len);
  }
  return NULL;
}

/* tunOffloadStats(fd) -> counters of a device opened with offload, or null */
static napi_value tun_offload_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL}, result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  tun_device *d = find_device(scratch(env), fd);
  if (!d) {
    napi_get_null(env, &result);
    return result;
  }
  napi_create_object(env, &result);
  set_int(env, result, "reads", d->stats.reads);
  set_int(env, result, "superPackets", d->stats.superPackets);
  set_int(env, result, "segments", d->stats.segments);
  set_int(env, result, "checksums", d->stats.checksums);
  set_int(env, result, "malformed", d->stats.malformed);
  set_int(env, result, "writes", d->stats.writes);
  set_int(env, result, "groups", d->stats.groups);
  set_int(env, result, "coalesced", d->stats.coalesced);
  set_int(env, result, "refused", d->stats.refused);
  return result;
}

/*
 * offloadSegment(read, out, capacity, lengths) -> packets | -1
 * The segmentation of tunReadBatch without a device (for tests and tools):
 * `read` is what a read() returned (virtio header + packet); packet k goes to
 * out[k * capacity, +lengths[k]). -1: malformed, or a segment over capacity.
 */
static napi_value offload_segment(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4] = {NULL}, result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *in, *out;
  size_t in_size, out_size, n_len;
  int64_t capacity;
  int32_t *lengths;
  if (!get_bytes(env, argv[0], "read", &in, &in_size) || !get_bytes(env, argv[1], "out", &out, &out_size)) return NULL;
  if (!get_int(env, argv[2], "capacity", 1, 65535, &capacity)) return NULL;
  if (!get_typed(env, argv[3], "lengths", napi_int32_array, 0, (void **)&lengths, &n_len)) return NULL;
  uint8_t *copy = malloc(in_size ? in_size : 1); /* tso_begin completes checksums in place: leave the input as it is */
  if (!copy) return throw_errno(env, "malloc", ENOMEM, "offloadSegment");
  memcpy(copy, in, in_size);
  tso_state st;
  int count = tso_begin(&st, copy, in_size);
  size_t k = 0;
  if (count > 0) {
    for (;; k++) {
      if (k == (size_t)count) break; /* all handed out: no spare slot needed to learn it */
      if ((k + 1) * (size_t)capacity > out_size || k >= n_len) { count = -1; break; }
      long r = tso_next(&st, out + k * (size_t)capacity, (size_t)capacity);
      if (r == 0) break;
      if (r < 0) { count = -1; break; }
      lengths[k] = (int32_t)r;
    }
  }
  free(copy);
  napi_create_int32(env, count < 0 ? -1 : (int32_t)k, &result);
  return result;
}

/*
 * offloadCoalesce(buffer, offsets, lengths, count, out) -> { packets, length }
 * The GRO of tunWriteBatch without a device: the bytes the write starting at
 * packet 0 would carry (virtio header + super-packet) go to out, and
 * `packets` says how many packets they took. The first packet's headers are
 * rewritten in place, as for a real write.
 */
static napi_value offload_coalesce(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5] = {NULL}, result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *buf, *out;
  size_t size, out_size, n_off, n_len;
  int64_t count;
  int32_t *offsets, *lengths;
  if (!get_bytes(env, argv[0], "buffer", &buf, &size) || !get_bytes(env, argv[4], "out", &out, &out_size)) return NULL;
  if (!get_int(env, argv[3], "count", 1, BATCH_MAX, &count)) return NULL;
  size_t n = (size_t)count;
  if (!get_typed(env, argv[1], "offsets", napi_int32_array, n, (void **)&offsets, &n_off)) return NULL;
  if (!get_typed(env, argv[2], "lengths", napi_int32_array, n, (void **)&lengths, &n_len)) return NULL;
  io_scratch *s = scratch(env);
  if (!gather_ranges(env, buf, size, offsets, lengths, n, s->iov)) return NULL;
  struct virtio_net_hdr header;
  struct iovec iov[GRO_MAX_SEGMENTS + 1];
  uint8_t saved[128];
  size_t iov_count, saved_length;
  size_t take = gro_gather(s->iov, 0, n, true, true, &header, iov, &iov_count, saved, &saved_length);
  size_t at = 0;
  for (size_t k = 0; k < iov_count; k++) {
    if (at + iov[k].iov_len > out_size) return throw_range(env, "offloadCoalesce: out is too small");
    memcpy(out + at, iov[k].iov_base, iov[k].iov_len);
    at += iov[k].iov_len;
  }
  napi_create_object(env, &result);
  set_int(env, result, "packets", (int64_t)take);
  set_int(env, result, "length", (int64_t)at);
  return result;
}

/* ------------------------------------------------------------ readiness */

typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback;
  napi_ref resource;
  napi_async_context context;
  /* Holds the environment's teardown (and so the unloading of this addon)
   * until the uv_close below has called back: libuv calls on_poll_closed
   * from the loop after the environment's cleanup hooks have run. */
  napi_async_cleanup_hook_handle teardown;
  int fd;
  int events;
  bool closed;   /* stop() called or the environment went away */
  bool env_gone; /* the environment is being torn down: no JS from here on */
} io_poll;

static const char *events_name(int events) {
  bool r = events & UV_READABLE, w = events & UV_WRITABLE;
  return r && w ? "rw" : r ? "r" : w ? "w" : "";
}

static bool parse_events(napi_env env, napi_value v, int *events) {
  char s[4];
  size_t len = 0;
  napi_valuetype t;
  if (v != NULL && napi_typeof(env, v, &t) == napi_ok && t == napi_string &&
      napi_get_value_string_utf8(env, v, s, sizeof s, &len) == napi_ok) {
    if (strcmp(s, "r") == 0) return *events = UV_READABLE, true;
    if (strcmp(s, "w") == 0) return *events = UV_WRITABLE, true;
    if (strcmp(s, "rw") == 0 || strcmp(s, "wr") == 0) return *events = UV_READABLE | UV_WRITABLE, true;
  }
  napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "events must be 'r', 'w' or 'rw'");
  return false;
}

static void on_poll_closed(uv_handle_t *handle) {
  io_poll *p = (io_poll *)handle->data;
  if (!p->env_gone) {
    if (p->callback) napi_delete_reference(p->env, p->callback);
    if (p->resource) napi_delete_reference(p->env, p->resource);
  }
  /* Last: once removed, the environment may finish tearing down and unload us. */
  if (p->teardown) napi_remove_async_cleanup_hook(p->teardown);
  free(p);
}

/* The environment (a worker, or the main thread at exit) is going away with the handle open. */
static void poll_teardown_hook(napi_async_cleanup_hook_handle handle, void *arg) {
  io_poll *p = (io_poll *)arg;
  p->env_gone = true;
  if (!p->closed) { /* else stop() already closed it, and on_poll_closed is on its way */
    p->closed = true;
    uv_poll_stop(&p->handle);
    uv_close((uv_handle_t *)&p->handle, on_poll_closed);
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  io_poll *p = (io_poll *)handle->data;
  if (p->closed) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, resource, argv[2];
  napi_get_reference_value(env, p->callback, &callback);
  napi_get_reference_value(env, p->resource, &resource);
  napi_create_string_utf8(env, events_name(status < 0 || !(events & (UV_READABLE | UV_WRITABLE)) ? p->events : events), NAPI_AUTO_LENGTH, &argv[0]);
  if (status < 0) argv[1] = make_errno_error(env, "uv_poll", -status, "poll");
  else napi_get_undefined(env, &argv[1]);
  if (callback && resource) {
    napi_status st = napi_make_callback(env, p->context, resource, callback, 2, argv, NULL);
    if (st == napi_pending_exception) {
      napi_value error;
      napi_get_and_clear_last_exception(env, &error);
      napi_fatal_exception(env, error);
    }
  }
  napi_close_handle_scope(env, scope);
}

static io_poll *poll_of(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  void *data = NULL;
  napi_get_cb_info(env, info, argc, argv, NULL, &data);
  return (io_poll *)data;
}

static napi_value poll_stop(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  io_poll *p = poll_of(env, info, &argc, NULL);
  if (p && !p->closed) {
    p->closed = true;
    napi_async_destroy(env, p->context);
    uv_poll_stop(&p->handle);
    uv_close((uv_handle_t *)&p->handle, on_poll_closed);
  }
  return NULL;
}

static napi_value poll_update(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  io_poll *p = poll_of(env, info, &argc, argv);
  int events;
  if (!parse_events(env, argv[0], &events)) return NULL;
  if (p->closed) return throw_errno(env, "uv_poll_start", EBADF, "poll handle is stopped");
  int r = uv_poll_start(&p->handle, events, on_poll);
  if (r < 0) return throw_errno(env, "uv_poll_start", -r, "poll update");
  p->events = events;
  return NULL;
}

static napi_value poll_ref(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  io_poll *p = poll_of(env, info, &argc, NULL);
  if (!p->closed) uv_ref((uv_handle_t *)&p->handle);
  return NULL;
}

static napi_value poll_unref(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  io_poll *p = poll_of(env, info, &argc, NULL);
  if (!p->closed) uv_unref((uv_handle_t *)&p->handle);
  return NULL;
}

static void add_method(napi_env env, napi_value obj, const char *name, napi_callback cb, void *data) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, data, &fn);
  napi_set_named_property(env, obj, name, fn);
}

/* poll(fd, events, callback) -> { fd, stop(), update(events), ref(), unref() } */
static napi_value io_poll_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {NULL, NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, events;
  napi_valuetype t;
  if (!get_fd(env, argv[0], &fd) || !parse_events(env, argv[1], &events)) return NULL;
  if (argv[2] == NULL || napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function)
    return throw_type(env, "%s must be a function", "callback");
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL)
    return throw_errno(env, "napi_get_uv_event_loop", EINVAL, "poll");
  io_poll *p = (io_poll *)calloc(1, sizeof *p);
  if (!p) return throw_errno(env, "calloc", ENOMEM, "poll");
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r < 0) {
    free(p);
    return throw_errno(env, "uv_poll_init", -r, r == UV_EEXIST ? "poll (this fd is already polled: use update())" : "poll");
  }
  p->handle.data = p;
  p->env = env;
  p->fd = fd;
  p->events = events;
  r = uv_poll_start(&p->handle, events, on_poll);
  if (r < 0) {
    p->closed = p->env_gone = true; /* nothing to release but the memory */
    uv_close((uv_handle_t *)&p->handle, on_poll_closed);
    return throw_errno(env, "uv_poll_start", -r, "poll");
  }
  napi_value handle, name;
  napi_create_object(env, &handle);
  set_int(env, handle, "fd", fd);
  add_method(env, handle, "stop", poll_stop, p);
  add_method(env, handle, "update", poll_update, p);
  add_method(env, handle, "ref", poll_ref, p);
  add_method(env, handle, "unref", poll_unref, p);
  napi_create_reference(env, argv[2], 1, &p->callback);
  napi_create_reference(env, handle, 1, &p->resource);
  napi_create_string_utf8(env, "sluice_io.poll", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, handle, name, &p->context);
  if (napi_add_async_cleanup_hook(env, poll_teardown_hook, p, &p->teardown) != napi_ok) p->teardown = NULL;
  return handle;
}

/* close(fd) */
static napi_value io_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  forget_device(scratch(env), fd);
  /* On Linux the descriptor is released even when close() reports EINTR: never retry. */
  if (close(fd) != 0 && errno != EINTR) return throw_errno(env, "close", errno, "close");
  return NULL;
}

/* --------------------------------------------------------------- module */

static void free_scratch(napi_env env, void *data, void *hint) {
  io_scratch *s = (io_scratch *)data;
  while (s->devices) {
    tun_device *d = s->devices;
    s->devices = d->next;
    free(d);
  }
  free(s);
}

NAPI_MODULE_INIT() {
  io_scratch *s = (io_scratch *)calloc(1, sizeof *s);
  if (!s) {
    napi_throw_error(env, "ENOMEM", "sluice_io: out of memory");
    return NULL;
  }
  napi_set_instance_data(env, s, free_scratch, NULL);
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"udpOpen", udp_open},
      {"udpCapabilities", udp_capabilities},
      {"udpConnect", udp_connect},
      {"udpRecvBatch", udp_recv_batch},
      {"udpSendBatch", udp_send_batch},
      {"udpSendGso", udp_send_gso},
      {"tunOpen", tun_open},
      {"tunReadBatch", tun_read_batch},
      {"tunWriteBatch", tun_write_batch},
      {"tunOffloadStats", tun_offload_stats},
      {"copyBatch", copy_batch},
      {"offloadSegment", offload_segment},
      {"offloadCoalesce", offload_coalesce},
      {"poll", io_poll_start},
      {"close", io_close},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) add_method(env, exports, fns[i].name, fns[i].cb, NULL);
  set_int(env, exports, "ADDRESS_BYTES", ADDRESS_BYTES);
  set_int(env, exports, "BATCH_MAX", BATCH_MAX);
  set_int(env, exports, "AF_INET", AF_INET);
  set_int(env, exports, "AF_INET6", AF_INET6);
  set_int(env, exports, "ABI", 2);
  return exports;
}
