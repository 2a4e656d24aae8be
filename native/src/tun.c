/*
 * TUN devices on the engine's memory: batched reads into slots and writes
 * out of them, one system call per packet, or with offloads (IFF_VNET_HDR,
 * tun_offload.c) one read per 64 KB TCP super-packet handed out as
 * segments, and one write per run of one flow's TCP segments or UDP
 * datagrams. A device opened with offloads is kept in the environment's
 * scratch (its read buffer, the super-packet being handed out, counters).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "sluice_io.h"

#define TUN_PATH "/dev/net/tun"
#define MSG_TUN_MISSING "/dev/net/tun is missing: load the tun module or run with --device /dev/net/tun"
#define MSG_TUN_PERM "creating a TUN device needs CAP_NET_ADMIN (run as root)"

static void set_nonblocking_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  fl = fcntl(fd, F_GETFD);
  if (fl >= 0) fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

tun_device *find_device(io_scratch *s, int fd) {
  for (tun_device *d = s->devices; d; d = d->next)
    if (d->fd == fd) return d;
  return NULL;
}

void forget_device(io_scratch *s, int fd) {
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
napi_value tun_open(napi_env env, napi_callback_info info) {
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
napi_value tun_read_batch(napi_env env, napi_callback_info info) {
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
size_t gro_gather(struct iovec *packets, size_t i, size_t n, bool tcp, bool udp, struct virtio_net_hdr *header,
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
napi_value tun_write_batch(napi_env env, napi_callback_info info) {
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

/* tunOffloadStats(fd) -> counters of a device opened with offload, or null */
napi_value tun_offload_stats(napi_env env, napi_callback_info info) {
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
