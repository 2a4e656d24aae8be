/*
 * TSO segmentation and GRO coalescing for a TUN device with IFF_VNET_HDR (see
 * tun_offload.h for the contracts). The rules follow what the kernel itself
 * does in tcp_gso_segment() and tcp_gro_receive(): a segment gets the super-
 * packet's headers with the IP length and ID, the TCP sequence number, the
 * FIN/PSH/CWR flags and both checksums fixed; a group only takes the exact
 * continuation of one flow with identical headers and options.
 *
 * Checksums: RFC 1071 sums of native-endian words. The one's complement sum
 * does not depend on byte order (RFC 1071 §2(B)), so sums are taken over
 * memory as it is and stored back the same way; only the pseudo-header's
 * protocol and length, which are numbers, are converted with htons().
 */
#include "tun_offload.h"

#include <arpa/inet.h>
#include <string.h>

#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80
/* Segment headers up to this size are built on the stack (IPv4 + TCP with
 * options is at most 120 bytes; IPv6 extension headers may make more). */
#define TSO_HEADERS_LOCAL 256

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static inline uint32_t fold(uint64_t acc) {
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffu) + (acc >> 16);
  acc = (acc & 0xffffu) + (acc >> 16);
  return (uint32_t)acc;
}

/* 32-bit words into a 64-bit accumulator: 2^16 ≡ 1 (mod 0xffff), so the fold
 * at the end gives the same sum as 16-bit words, with no carries to track for
 * up to 2^32 words. The loop is plain so the compiler vectorizes it; built
 * for AVX2 too, picked at load time where the CPU has it (about 1.5× here). */
__attribute__((target_clones("avx2", "default"), optimize("O3")))
static uint64_t sum_words(const uint8_t *p, size_t words) {
  uint64_t a = 0;
  for (size_t i = 0; i < words; i++) {
    uint32_t w;
    memcpy(&w, p + 4 * i, 4);
    a += w;
  }
  return a;
}

uint32_t checksum_add(uint32_t sum, const uint8_t *p, size_t n) {
  uint64_t a = sum + sum_words(p, n / 4);
  p += n & ~(size_t)3;
  n &= 3;
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    a += w;
    p += 2, n -= 2;
  }
  if (n) {
    /* RFC 1071: an odd byte is padded with a zero byte after it, in memory order. */
    uint8_t last[2] = {p[0], 0};
    uint16_t w;
    memcpy(&w, last, 2);
    a += w;
  }
  return fold(a);
}

/* As sum_words, storing each word to dst as it goes: one pass over the source. */
__attribute__((target_clones("avx2", "default"), optimize("O3")))
static uint64_t copy_sum_words(uint8_t *restrict dst, const uint8_t *restrict src, size_t words) {
  uint64_t a = 0;
  for (size_t i = 0; i < words; i++) {
    uint32_t w;
    memcpy(&w, src + 4 * i, 4);
    memcpy(dst + 4 * i, &w, 4);
    a += w;
  }
  return a;
}

/* Copies n bytes from src to dst (not overlapping) and returns checksum_add(sum, src, n). */
static uint32_t copy_checksum_add(uint32_t sum, uint8_t *dst, const uint8_t *src, size_t n) {
  size_t whole = n & ~(size_t)3;
  uint64_t a = sum + copy_sum_words(dst, src, whole / 4);
  memcpy(dst + whole, src + whole, n - whole);
  return checksum_add(fold(a), src + whole, n - whole);
}

/* The pseudo-header (RFC 793 §3.1, RFC 768, RFC 8200 §8.1) of a packet whose transport segment is `length` bytes. */
static uint32_t pseudo_header(const uint8_t *ip, int ipv6, uint8_t protocol, size_t length) {
  uint32_t sum = ipv6 ? checksum_add(0, ip + 8, 32) : checksum_add(0, ip + 12, 8);
  return fold((uint64_t)sum + htons(protocol) + htons((uint16_t)length));
}

static void store_checksum(uint8_t *field, uint32_t folded_sum) {
  uint16_t c = (uint16_t)~folded_sum;
  memcpy(field, &c, 2);
}

static void ipv4_header_checksum(uint8_t *ip, size_t header_length) {
  ip[10] = ip[11] = 0;
  store_checksum(ip + 10, checksum_add(0, ip, header_length));
}

/* ------------------------------------------------------------------ TSO */

/*
 * Where an IPv6 packet's transport header starts, past hop-by-hop and
 * destination options headers (RFC 8200 §4), with its protocol; 0 when the
 * chain holds anything else. A routing header would make the pseudo-header's
 * destination the final one rather than the header's, so it is refused.
 */
static size_t ipv6_transport(const uint8_t *packet, size_t len, uint8_t *protocol) {
  size_t at = 40;
  uint8_t next = packet[6];
  while (next == 0 || next == 60) {
    if (at + 8 > len) return 0;
    next = packet[at];
    at += ((size_t)packet[at + 1] + 1) * 8;
  }
  if (at > len) return 0;
  *protocol = next;
  return at;
}

int tso_begin(tso_state *s, uint8_t *read, size_t length) {
  memset(s, 0, sizeof *s);
  if (length < VNET_HDR_LEN) return -1;
  struct virtio_net_hdr h;
  memcpy(&h, read, sizeof h);
  uint8_t *packet = read + VNET_HDR_LEN;
  size_t len = length - VNET_HDR_LEN;
  s->packet = packet;
  s->length = len;
  uint8_t gso = h.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
  if (gso == VIRTIO_NET_HDR_GSO_NONE) {
    if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      /* The kernel stored the pseudo-header sum in the field and left the
       * rest to the "hardware": sum from csum_start to the end, field included. */
      size_t start = h.csum_start, field = (size_t)h.csum_start + h.csum_offset;
      if (start >= len || field + 2 > len) return -1;
      uint32_t sum = checksum_add(0, packet + start, len - start);
      uint16_t c = (uint16_t)~sum;
      if (c == 0) c = 0xffff; /* UDP: 0 would mean "no checksum" (RFC 768); for TCP both are zero */
      memcpy(packet + field, &c, 2);
    }
    s->plain = 1;
    return 1;
  }
  if (gso != VIRTIO_NET_HDR_GSO_TCPV4 && gso != VIRTIO_NET_HDR_GSO_TCPV6) return -1;
  if (len < 20) return -1;
  /* Where TCP starts comes from the IP header, not csum_start: a forwarded
   * packet the kernel's GRO built arrives DATA_VALID, with csum_start 0. */
  size_t l4;
  if (gso == VIRTIO_NET_HDR_GSO_TCPV4) {
    l4 = (size_t)(packet[0] & 15) * 4;
    if (packet[0] >> 4 != 4 || l4 < 20 || packet[9] != IPPROTO_TCP_) return -1;
  } else {
    uint8_t protocol = 0;
    if (len < 40 || packet[0] >> 4 != 6 || (l4 = ipv6_transport(packet, len, &protocol)) == 0 || protocol != IPPROTO_TCP_) return -1;
    s->ipv6 = 1;
  }
  if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && h.csum_start != l4) return -1;
  if (l4 + 20 > len) return -1;
  size_t tcp_header = (size_t)(packet[l4 + 12] >> 4) * 4;
  if (tcp_header < 20 || l4 + tcp_header >= len || h.gso_size == 0) return -1;
  s->l4 = l4;
  s->headers = l4 + tcp_header;
  s->mss = h.gso_size;
  size_t payload = len - s->headers;
  return (int)((payload + s->mss - 1) / s->mss);
}

long tso_next(tso_state *s, uint8_t *out, size_t capacity) {
  if (s->plain) {
    if (s->index > 0) return 0;
    if (s->length > capacity) return -1;
    memcpy(out, s->packet, s->length);
    s->index = 1;
    return (long)s->length;
  }
  size_t payload = s->length - s->headers;
  if (s->at >= payload) return 0;
  size_t piece = payload - s->at < s->mss ? payload - s->at : s->mss;
  size_t total = s->headers + piece;
  if (total > capacity) return -1;
  const uint8_t *in = s->packet;
  /* Nothing is read back from `out` (except by the fallback for headers
   * too long for the stack): its cache lines were last written by a worker
   * on the other core, so stores to them wait for ownership and a load of a
   * just-stored byte waits with them (measured: the sums took 15× their
   * in-cache time). The headers are fixed in a local copy, written out
   * whole; the payload is summed in the same pass that copies it. */
  uint8_t local[TSO_HEADERS_LOCAL];
  uint8_t *h = s->headers <= sizeof local ? local : out;
  memcpy(h, in, s->headers);
  int last = s->at + piece >= payload;
  if (s->ipv6) {
    put16(h + 4, (uint16_t)(total - 40));
  } else {
    put16(h + 2, (uint16_t)total);
    put16(h + 4, (uint16_t)(get16(in + 4) + s->index)); /* as tcp_gso_segment: the ID counts up */
    ipv4_header_checksum(h, s->l4);
  }
  uint8_t *tcp = h + s->l4;
  put32(tcp + 4, get32(in + s->l4 + 4) + (uint32_t)s->at);
  /* CWR only on the first segment; FIN and PSH only on the last (RFC 3168 §6.1.2, tcp_gso_segment). */
  if (s->index > 0) tcp[13] &= (uint8_t)~TCP_CWR;
  if (!last) tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
  tcp[16] = tcp[17] = 0;
  /* The TCP header's length is a multiple of 4, so the two sums pair up. */
  uint32_t sum = checksum_add(pseudo_header(h, s->ipv6, IPPROTO_TCP_, total - s->l4), tcp, s->headers - s->l4);
  store_checksum(tcp + 16, copy_checksum_add(sum, out + s->headers, in + s->headers + s->at, piece));
  if (h == local) memcpy(out, local, s->headers);
  s->at += piece;
  s->index++;
  return (long)total;
}

/* ------------------------------------------------------------------ GRO */

/* Where the IP header ends and whether it may start or join a group: IPv4
 * without options or fragments, with a good header checksum (the rewrite in
 * gro_finish would hide a bad one), or IPv6 without extension headers; the
 * length exact. Returns the transport header's offset, or 0. */
static size_t gro_ip(const uint8_t *p, size_t length, int *ipv6, uint8_t *protocol) {
  if (length < 28) return 0;
  if (p[0] == 0x45) {
    if (get16(p + 2) != length || (get16(p + 6) & 0x3fff) != 0 || checksum_add(0, p, 20) != 0xffff) return 0;
    *ipv6 = 0, *protocol = p[9];
    return 20;
  }
  if (p[0] >> 4 == 6 && length >= 48 && (size_t)get16(p + 4) + 40 == length) {
    *ipv6 = 1, *protocol = p[6];
    return 40;
  }
  return 0;
}

/* The transport checksum of a whole packet verifies (RFC 768: an IPv4 UDP checksum of 0 means none was sent). */
static int transport_checksum_ok(const uint8_t *ip, size_t length, size_t l4, int ipv6, uint8_t protocol) {
  if (protocol == IPPROTO_UDP_ && !ipv6 && ip[l4 + 6] == 0 && ip[l4 + 7] == 0) return 1;
  return checksum_add(pseudo_header(ip, ipv6, protocol, length - l4), ip + l4, length - l4) == 0xffff;
}

int gro_start(gro_group *g, uint8_t *p, size_t length, int tcp, int udp) {
  int ipv6;
  uint8_t protocol;
  size_t l4 = gro_ip(p, length, &ipv6, &protocol), headers;
  uint8_t flags = 0;
  if (l4 == 0) return 0;
  if (protocol == IPPROTO_TCP_ && tcp) {
    if (length < l4 + 20) return 0;
    headers = l4 + (size_t)(p[l4 + 12] >> 4) * 4;
    flags = p[l4 + 13];
    if (headers < l4 + 20 || headers >= length || (flags & (uint8_t)~TCP_PSH) != TCP_ACK) return 0;
  } else if (protocol == IPPROTO_UDP_ && udp) {
    headers = l4 + 8;
    if (headers >= length || get16(p + l4 + 4) != length - l4) return 0;
  } else {
    return 0;
  }
  /* The kernel trusts a GSO write's checksum (CHECKSUM_PARTIAL): check each member here, as its GRO does. */
  if (!transport_checksum_ok(p, length, l4, ipv6, protocol)) return 0;
  g->first = p;
  g->first_length = length;
  g->headers = headers;
  g->l4 = l4;
  g->mss = length - headers;
  g->total = length;
  g->next_seq = protocol == IPPROTO_TCP_ ? get32(p + l4 + 4) + (uint32_t)g->mss : 0;
  g->count = 1;
  g->ipv6 = ipv6;
  g->protocol = protocol;
  g->closed = (flags & TCP_PSH) != 0;
  g->flags = flags;
  return 1;
}

static int same(const uint8_t *a, const uint8_t *b, size_t from, size_t to) { return memcmp(a + from, b + from, to - from) == 0; }

int gro_append(gro_group *g, const uint8_t *p, size_t length) {
  if (g->closed || g->count >= GRO_MAX_SEGMENTS || length <= g->headers) return 0;
  size_t payload = length - g->headers;
  if (payload > g->mss || g->total + payload > 65535) return 0;
  const uint8_t *f = g->first;
  int ipv6 = 0;
  uint8_t protocol = 0;
  if (gro_ip(p, length, &ipv6, &protocol) != g->l4 || ipv6 != g->ipv6 || protocol != g->protocol) return 0;
  /* IPv6: version, class, flow label; next header, hop limit; addresses. IPv4:
   * version/IHL and TOS; flags/fragment, TTL, protocol; addresses (not length, ID, checksum). */
  if (ipv6 ? !same(p, f, 0, 4) || !same(p, f, 6, 40) : !same(p, f, 0, 2) || !same(p, f, 6, 10) || !same(p, f, 12, 20)) return 0;
  const uint8_t *t = p + g->l4, *ft = f + g->l4;
  uint8_t flags = 0;
  if (protocol == IPPROTO_TCP_) {
    flags = t[13];
    /* Ports; ack; data offset; window and urgent pointer; options byte for byte. */
    if (!same(t, ft, 0, 4) || get32(t + 4) != g->next_seq || !same(t, ft, 8, 13) || !same(t, ft, 14, 16) ||
        !same(t, ft, 18, g->headers - g->l4) || (flags & (uint8_t)~TCP_PSH) != TCP_ACK)
      return 0;
  } else {
    /* UDP: the same ports, a whole datagram; order is all there is to keep. */
    if (!same(t, ft, 0, 4) || get16(t + 4) != length - g->l4) return 0;
  }
  if (!transport_checksum_ok(p, length, g->l4, ipv6, protocol)) return 0;
  g->total += payload;
  g->next_seq += (uint32_t)payload;
  g->count++;
  g->flags |= flags & TCP_PSH;
  if (payload < g->mss || (flags & TCP_PSH)) g->closed = 1;
  return 1;
}

void gro_finish(gro_group *g, struct virtio_net_hdr *h) {
  memset(h, 0, sizeof *h);
  if (g->count < 2) return; /* one packet: written as it is, its checksum verified by the kernel */
  uint8_t *p = g->first;
  if (g->ipv6) {
    put16(p + 4, (uint16_t)(g->total - 40));
  } else {
    put16(p + 2, (uint16_t)g->total);
    ipv4_header_checksum(p, 20);
  }
  uint8_t *l4 = p + g->l4;
  size_t field = 16;
  if (g->protocol == IPPROTO_TCP_) {
    l4[13] = g->flags;
    h->gso_type = g->ipv6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
  } else {
    /* The kernel cuts it back into datagrams of gso_size, each with its own length and checksum. */
    put16(l4 + 4, (uint16_t)(g->total - g->l4));
    field = 6;
    h->gso_type = VIRTIO_NET_HDR_GSO_UDP_L4;
  }
  /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, uncomplemented;
   * whoever needs the full checksum sums from csum_start over it. */
  uint16_t c = (uint16_t)pseudo_header(p, g->ipv6, g->protocol, g->total - g->l4);
  memcpy(l4 + field, &c, 2);
  h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  h->hdr_len = (uint16_t)g->headers;
  h->gso_size = (uint16_t)g->mss;
  h->csum_start = (uint16_t)g->l4;
  h->csum_offset = (uint16_t)field;
}
