/*
 * TUN offloads: the segmentation (TSO) and coalescing (GRO) that a NIC would
 * do, done by sluice for its TUN device (IFF_VNET_HDR), as wireguard-go does on
 * Linux. Sans-I/O: these functions only transform bytes; tun.c does the
 * reads and writes.
 *
 * Why: without offloads the kernel hands a TUN reader one MTU-sized packet per
 * read() and takes one per write(), and at a couple of Gbit/s those system
 * calls are the endpoint's main cost. With TUN_F_TSO4/6 the kernel hands over
 * one TCP super-packet of up to 64 KB per read (with a virtio_net_hdr saying
 * how to cut it), and with a GSO header on write it takes up to 64 KB of
 * coalesced TCP segments in one write.
 *
 * Buffer contracts:
 *  - tso_begin() takes one read (header + packet) and keeps pointers into it:
 *    the read buffer must not change until tso_next() returned 0.
 *  - tso_next() writes one complete packet (headers fixed, checksums correct)
 *    to out[0, capacity) and returns its length; never writes past capacity.
 *  - gro_*() work on packets in place; gro_finish() rewrites the first
 *    packet's IP and TCP/UDP headers (lengths, checksums) for the whole group.
 */
#ifndef SLUICE_TUN_OFFLOAD_H
#define SLUICE_TUN_OFFLOAD_H

#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdint.h>

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5 /* Linux 4.18+; older headers lack the name */
#endif

#define VNET_HDR_LEN ((size_t)sizeof(struct virtio_net_hdr))
/* The most a TUN read can carry: an IP packet of at most 64 KB plus the header. */
#define TSO_READ_MAX (65535 + VNET_HDR_LEN)
/* Segments one GRO write may carry (the kernel's MAX_SKB_FRAGS is 17+, but the
 * data is linear; 64 keeps the iovec small and matches UDP GSO's cap). */
#define GRO_MAX_SEGMENTS 64

/* A super-packet being cut into segments. */
typedef struct {
  const uint8_t *packet; /* the IP packet (after the virtio header) */
  size_t length;
  size_t l4;        /* where the TCP header starts (csum_start) */
  size_t headers;   /* IP + TCP header bytes copied into every segment */
  size_t mss;       /* payload bytes per segment (gso_size) */
  size_t at;        /* payload offset of the next segment */
  uint32_t index;   /* number of the next segment */
  int ipv6;
  int plain;        /* one ordinary packet: emitted once as it is */
} tso_state;

/*
 * Parses one read of `length` bytes (virtio header, then the packet).
 * Returns the number of packets it yields (>= 1) or -1 when it is malformed
 * (the read is then dropped whole). A non-GSO packet whose checksum the
 * kernel left to us (VIRTIO_NET_HDR_F_NEEDS_CSUM) gets it completed here,
 * in place.
 */
int tso_begin(tso_state *s, uint8_t *read, size_t length);

/* Writes the next packet to out; returns its length, 0 when none is left, -1 when it exceeds capacity. */
long tso_next(tso_state *s, uint8_t *out, size_t capacity);

/* A group of TCP segments being coalesced for one write. */
typedef struct {
  uint8_t *first; /* the first packet; its headers become the super-packet's */
  size_t first_length;
  size_t headers; /* IP + TCP header bytes of every member */
  size_t l4;
  size_t mss;     /* payload of the first member; every other member has at most this */
  size_t total;   /* bytes of the super-packet (IP packet) so far */
  uint32_t next_seq; /* TCP */
  uint32_t count;
  int ipv6;
  uint8_t protocol; /* TCP (6) or UDP (17) */
  int closed;     /* a short or PSH segment ended it */
  uint8_t flags;  /* TCP flags to put in the super-packet (PSH of the last member) */
} gro_group;

/*
 * Starts a group with `packet` when it is a candidate (IPv4 without options
 * or fragments, or IPv6 without extension headers; TCP with ACK and maybe
 * PSH only, when `tcp` is set; UDP when `udp` is set; a payload; a valid
 * checksum).
 * Returns 1 when it can start one, 0 when the packet must be written on its
 * own. UDP groups become VIRTIO_NET_HDR_GSO_UDP_L4 writes, which the kernel
 * cuts back into the same datagrams (UDP's only order is kept).
 */
int gro_start(gro_group *g, uint8_t *packet, size_t length, int tcp, int udp);

/* Appends `packet` when it continues the group's flow exactly; returns 1 when appended (its payload is at packet + g->headers). */
int gro_append(gro_group *g, const uint8_t *packet, size_t length);

/* Rewrites the first packet's headers for the whole group and fills the virtio header for the write. */
void gro_finish(gro_group *g, struct virtio_net_hdr *header);

/* The Internet checksum (RFC 1071) of data, folded, not complemented, summed onto `sum`. */
uint32_t checksum_add(uint32_t sum, const uint8_t *data, size_t length);

#endif
