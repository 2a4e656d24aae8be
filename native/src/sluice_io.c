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
 * The files by role (sluice_io.h lists them): this one makes the module;
 * napi_args.c checks arguments and makes errors; udp.c, tun.c and poll.c are
 * the UDP sockets, the TUN devices and readiness; route.c the routes into a
 * TUN device (rtnetlink); offload_exports.c exposes the TUN offloads
 * (tun_offload.c) to tests; gcm.c runs the AES-GCM of ESP batches on the
 * OpenSSL inside Node.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice_io.h"

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
  gcm_cache_free(s->gcm);
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
      {"routeChange", route_change},
      {"close", io_close},
      {"gcmInfo", gcm_info},
      {"gcmBatch", gcm_batch},
      {"gcmSweep", gcm_sweep},
      {"gcmOnce", gcm_once},
      {"gcmCached", gcm_cached},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) add_method(env, exports, fns[i].name, fns[i].cb, NULL);
  set_int(env, exports, "ADDRESS_BYTES", ADDRESS_BYTES);
  set_int(env, exports, "BATCH_MAX", BATCH_MAX);
  set_int(env, exports, "AF_INET", AF_INET);
  set_int(env, exports, "AF_INET6", AF_INET6);
  set_int(env, exports, "ABI", 3);
  return exports;
}

