/*
 * The TUN offloads without a device: offloadSegment cuts what a TUN read
 * returned into packets as tunReadBatch does, offloadCoalesce builds the
 * write tunWriteBatch would make of a run of packets. For tests and tools
 * (test/io/offload.test.ts checks tun_offload.c through them against
 * packets of its own); the data path never calls them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_io.h"

/*
 * offloadSegment(read, out, capacity, lengths) -> packets | -1
 * The segmentation of tunReadBatch without a device (for tests and tools):
 * `read` is what a read() returned (virtio header + packet); packet k goes to
 * out[k * capacity, +lengths[k]). -1: malformed, or a segment over capacity.
 */
napi_value offload_segment(napi_env env, napi_callback_info info) {
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
napi_value offload_coalesce(napi_env env, napi_callback_info info) {
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
