/*
 * UDP sockets on the engine's memory: recvmmsg and sendmmsg of whole batches
 * straight into and out of slots, with UDP GSO (one send cut by the kernel
 * into datagrams) and GRO (one receive of several coalesced datagrams) where
 * the kernel has them, and copyBatch to spread a GRO receive over slots.
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
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice_io.h"

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define DEFAULT_SOCKET_BUFFER (4 * 1024 * 1024)

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
napi_value udp_open(napi_env env, napi_callback_info info) {
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
napi_value udp_capabilities(napi_env env, napi_callback_info info) {
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
napi_value udp_connect(napi_env env, napi_callback_info info) {
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
napi_value udp_recv_batch(napi_env env, napi_callback_info info) {
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

/*
 * udpSendBatch(fd, buffer, offsets, lengths, addresses, count, options?) -> sent
 * options.gsoSize: with UDP GSO, each message is cut by the kernel into
 * datagrams of gsoSize bytes (the last may be shorter).
 * Like sendmmsg: an error on the first message throws; after that, the count
 * sent so far is returned and the error comes back on the next call.
 * EAGAIN and ENOBUFS (a full device queue) return 0: try again when writable.
 */
napi_value udp_send_batch(napi_env env, napi_callback_info info) {
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
napi_value udp_send_gso(napi_env env, napi_callback_info info) {
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

/*
 * copyBatch(buffer, from, to, lengths, count)
 * memmove of buffer[from[i], +lengths[i]) to buffer[to[i]] for each i, in
 * order: one call for a whole receive instead of a copyWithin per packet
 * (each of which enters V8's runtime). All ranges are checked first.
 */
napi_value copy_batch(napi_env env, napi_callback_info info) {
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
