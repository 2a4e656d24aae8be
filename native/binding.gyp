{
  # The I/O shim of sluice: batched system calls on UDP sockets and TUN devices
  # (see native/README.md). Plain C on Node-API, so it builds with what every
  # machine that runs node-gyp has (a C compiler and Node's headers), and keeps
  # working across Node versions without a rebuild.
  "targets": [
    {
      "target_name": "sluice_io",
      "sources": ["src/sluice_io.c", "src/napi_args.c", "src/udp.c", "src/tun.c", "src/poll.c", "src/offload_exports.c", "src/tun_offload.c", "src/route.c", "src/gcm.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      # gcm.c resolves Node's own OpenSSL with dlsym (no OpenSSL headers or libssl-dev needed).
      "libraries": ["-ldl", "-lpthread"],
      "conditions": [
        ["OS!='linux'", {
          # recvmmsg/sendmmsg, UDP GSO/GRO and /dev/net/tun are Linux interfaces;
          # elsewhere the addon is not built and the portable path runs instead.
          "type": "none",
          "sources!": ["src/sluice_io.c", "src/napi_args.c", "src/udp.c", "src/tun.c", "src/poll.c", "src/offload_exports.c", "src/tun_offload.c", "src/route.c", "src/gcm.c"]
        }]
      ]
    }
  ]
}
