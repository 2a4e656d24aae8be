/*
 * route.c: routes into a TUN device through rtnetlink, in the calling thread.
 *
 * Why not `ip route`: starting a process from Node forks the whole process
 * (its heap and the engine's shared memory mapped), which on the 2-core bed
 * stopped the event loop 20-30 ms each time a child SA's routes changed,
 * and put that stop on the path of a new tunnel's first packet. One netlink
 * request with its acknowledgement costs microseconds and says which route
 * failed and why (the errno), so a batch needs no retry one by one.
 *
 * The requests are those `ip route replace PREFIX dev DEV` and
 * `ip route del PREFIX dev DEV` send (iproute2's iproute_modify): the main
 * table, protocol boot, link scope for IPv4 (universe for IPv6) on a
 * replace; on a delete any protocol, type and scope (RT_SCOPE_NOWHERE) so
 * that the route goes whoever made it.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice_io.h"

struct route_request {
  struct nlmsghdr header;
  struct rtmsg route;
  char attributes[64];
};

static void add_attribute(struct nlmsghdr *header, unsigned short type, const void *data, size_t length) {
  struct rtattr *attribute = (struct rtattr *)((char *)header + NLMSG_ALIGN(header->nlmsg_len));
  attribute->rta_type = type;
  attribute->rta_len = (unsigned short)RTA_LENGTH(length);
  memcpy(RTA_DATA(attribute), data, length);
  header->nlmsg_len = NLMSG_ALIGN(header->nlmsg_len) + RTA_ALIGN(attribute->rta_len);
}

/* Sends one request and waits for its acknowledgement: 0, or the errno the kernel answered. */
static int netlink_request(struct nlmsghdr *request) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return errno;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  int result = 0;
  ssize_t sent;
  do sent = sendto(fd, request, request->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    result = errno;
  } else {
    char answer[1024];
    for (;;) {
      ssize_t r = recv(fd, answer, sizeof answer, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        result = errno;
        break;
      }
      struct nlmsghdr *h = (struct nlmsghdr *)answer;
      if (!NLMSG_OK(h, (size_t)r) || h->nlmsg_seq != request->nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *error = (const struct nlmsgerr *)NLMSG_DATA(h);
        result = error->error < 0 ? -error->error : 0;
        break;
      }
    }
  }
  close(fd);
  return result;
}

/*
 * routeChange(replace, device, family, destination, prefixLength) -> 0 | errno
 * replace true: the route to destination/prefixLength through the device,
 * replacing one to the same prefix; false: that route removed. destination
 * is 4 (family 4) or 16 (family 6) bytes. The kernel's refusal is returned as
 * its errno (ENODEV: no such device; ESRCH on delete: no such route), not
 * thrown, so that the caller can name the route that failed.
 */
napi_value route_change(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool replace;
  char device[IFNAMSIZ + 1];
  size_t device_length;
  int64_t family, prefix_length;
  uint8_t *destination;
  size_t destination_length;
  if (napi_get_value_bool(env, argv[0], &replace) != napi_ok) return throw_type(env, "%s must be a boolean", "replace");
  if (napi_get_value_string_utf8(env, argv[1], device, sizeof device, &device_length) != napi_ok || device_length == 0 ||
      device_length > IFNAMSIZ - 1)
    return throw_type(env, "%s must be a device name of 1 to 15 bytes", "device");
  if (!get_int(env, argv[2], "family", 4, 6, &family)) return NULL;
  if (family == 5) return throw_range(env, "family must be 4 or 6");
  if (!get_bytes(env, argv[3], "destination", &destination, &destination_length)) return NULL;
  size_t address_bytes = family == 4 ? 4 : 16;
  if (destination_length != address_bytes) return throw_range(env, "destination must be 4 bytes for IPv4, 16 for IPv6");
  if (!get_int(env, argv[4], "prefixLength", 0, (int64_t)address_bytes * 8, &prefix_length)) return NULL;

  napi_value result;
  unsigned index = if_nametoindex(device);
  if (index == 0) {
    napi_create_int32(env, errno ? errno : ENODEV, &result);
    return result;
  }
  static unsigned sequence;
  struct route_request request;
  memset(&request, 0, sizeof request);
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof request.route);
  request.header.nlmsg_type = replace ? RTM_NEWROUTE : RTM_DELROUTE;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (replace ? NLM_F_CREATE | NLM_F_REPLACE : 0);
  request.header.nlmsg_seq = __atomic_add_fetch(&sequence, 1, __ATOMIC_RELAXED);
  request.route.rtm_family = family == 4 ? AF_INET : AF_INET6;
  request.route.rtm_dst_len = (unsigned char)prefix_length;
  request.route.rtm_table = RT_TABLE_MAIN;
  if (replace) {
    request.route.rtm_protocol = RTPROT_BOOT;
    request.route.rtm_type = RTN_UNICAST;
    request.route.rtm_scope = family == 4 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  } else {
    request.route.rtm_scope = RT_SCOPE_NOWHERE;
  }
  add_attribute(&request.header, RTA_DST, destination, address_bytes);
  add_attribute(&request.header, RTA_OIF, &index, sizeof index);
  napi_create_int32(env, netlink_request(&request.header), &result);
  return result;
}
