/*
 * What the files of the sluice_io addon share: the per-environment scratch,
 * the TUN devices opened with offloads, the argument checks and errors of
 * napi_args.c, and the Node-API functions each file exports to the module
 * (sluice_io.c puts them on `exports`). Internal: nothing here is visible
 * outside the addon (-fvisibility=hidden).
 *
 *   sluice_io.c        module init, close(fd)
 *   napi_args.c        argument checks, errors, the batch's buffer ranges
 *   udp.c              UDP sockets: recvmmsg/sendmmsg, GSO/GRO, copyBatch
 *   tun.c              TUN devices: open, batched reads and writes, offloads
 *   offload_exports.c  the TUN offloads without a device, for tests and tools
 *   poll.c             readiness from libuv (uv_poll_t)
 *   tun_offload.c      TSO/GRO on bytes, sans-I/O
 *   gcm.c              AES-GCM of ESP (RFC 4106) per batch, on Node's OpenSSL
 */
#ifndef SLUICE_IO_H
#define SLUICE_IO_H

#define NAPI_VERSION 8
#include <node_api.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "tun_offload.h"

/* Most packets one call handles; UIO_MAXIOV is also the kernel's cap for sendmmsg. */
#define BATCH_MAX 1024
/* Bytes of one socket address entry (see udp.c). */
#define ADDRESS_BYTES 28

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
/* gcm.c: the EVP contexts of an environment's AES-GCM SAs. */
typedef struct gcm_cache gcm_cache;

typedef struct {
  struct mmsghdr msgs[BATCH_MAX];
  struct iovec iov[BATCH_MAX];
  control_buf ctl[BATCH_MAX];
  tun_device *devices;
  gcm_cache *gcm; /* created on first use */
} io_scratch;

/* Asks for the cache lines of [p, p + n) in a writable state ahead of the
 * stores: a slot's lines were last written by a worker on another core. */
static inline void prefetch_for_write(const void *p, size_t n) {
  for (size_t at = 0; at < n; at += 64) __builtin_prefetch((const uint8_t *)p + at, 1, 3);
}

/* The same for lines about to be read (a packet a worker just opened, for its checksum). */
static inline void prefetch_for_read(const void *p, size_t n) {
  for (size_t at = 0; at < n; at += 64) __builtin_prefetch((const uint8_t *)p + at, 0, 3);
}

/* ---- napi_args.c: results and errors */
void set_string(napi_env env, napi_value obj, const char *key, const char *value);
void set_int(napi_env env, napi_value obj, const char *key, int64_t value);
void set_bool(napi_env env, napi_value obj, const char *key, bool value);
void add_method(napi_env env, napi_value obj, const char *name, napi_callback cb, void *data);
napi_value make_errno_error(napi_env env, const char *syscall, int err, const char *what);
napi_value throw_errno(napi_env env, const char *syscall, int err, const char *what);
napi_value throw_errno_message(napi_env env, const char *syscall, int err, const char *message);
napi_value throw_type(napi_env env, const char *fmt, const char *a);
napi_value throw_range(napi_env env, const char *msg);

/* ---- napi_args.c: arguments (each throws and returns false when it refuses one) */
bool is_nullish(napi_env env, napi_value v);
bool get_int(napi_env env, napi_value v, const char *name, int64_t min, int64_t max, int64_t *out);
bool get_fd(napi_env env, napi_value v, int *fd);
bool get_bytes(napi_env env, napi_value v, const char *name, uint8_t **data, size_t *size);
bool get_typed(napi_env env, napi_value v, const char *name, napi_typedarray_type want, size_t need,
               void **data, size_t *length);
bool get_property(napi_env env, napi_value obj, const char *key, napi_value *out);
bool get_bool_option(napi_env env, napi_value obj, const char *key, bool fallback);
io_scratch *scratch(napi_env env);
bool check_range(napi_env env, const char *what, size_t index, int64_t offset, int64_t length, size_t size);
bool gather_ranges(napi_env env, uint8_t *buf, size_t size, const int32_t *offsets, const int32_t *lengths,
                   size_t n, struct iovec *iov);
bool place_ranges(napi_env env, uint8_t *buf, size_t size, const int32_t *offsets, size_t capacity, size_t n,
                  struct iovec *iov);

/* ---- tun.c: the offload devices of an environment, and one GRO write */
tun_device *find_device(io_scratch *s, int fd);
void forget_device(io_scratch *s, int fd);
size_t gro_gather(struct iovec *packets, size_t i, size_t n, bool tcp, bool udp, struct virtio_net_hdr *header,
                  struct iovec *iov, size_t *iov_count, uint8_t *saved, size_t *saved_length);

/* ---- the module's functions (their contracts: beside each, and native/README.md) */
napi_value udp_open(napi_env env, napi_callback_info info);
napi_value udp_capabilities(napi_env env, napi_callback_info info);
napi_value udp_connect(napi_env env, napi_callback_info info);
napi_value udp_recv_batch(napi_env env, napi_callback_info info);
napi_value udp_send_batch(napi_env env, napi_callback_info info);
napi_value udp_send_gso(napi_env env, napi_callback_info info);
napi_value copy_batch(napi_env env, napi_callback_info info);
napi_value tun_open(napi_env env, napi_callback_info info);
napi_value tun_read_batch(napi_env env, napi_callback_info info);
napi_value tun_write_batch(napi_env env, napi_callback_info info);
napi_value tun_offload_stats(napi_env env, napi_callback_info info);
napi_value offload_segment(napi_env env, napi_callback_info info);
napi_value offload_coalesce(napi_env env, napi_callback_info info);
napi_value io_poll_start(napi_env env, napi_callback_info info);
napi_value route_change(napi_env env, napi_callback_info info);
napi_value gcm_info(napi_env env, napi_callback_info info);
napi_value gcm_batch(napi_env env, napi_callback_info info);
napi_value gcm_sweep(napi_env env, napi_callback_info info);
napi_value gcm_once(napi_env env, napi_callback_info info);
napi_value gcm_cached(napi_env env, napi_callback_info info);
void gcm_cache_free(gcm_cache *cache);

#endif
