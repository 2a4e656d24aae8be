/*
 * AES-GCM for ESP (RFC 4106) over a batch of descriptors in the engine's
 * shared WebAssembly memory, on the OpenSSL that Node itself carries.
 *
 * Why here: WebAssembly has no AES or carry-less-multiply instructions, so a
 * constant-time AES in WASM is a bitsliced one, several times slower than
 * the CPU's AES-NI/VAES + PCLMUL, which OpenSSL uses. node:crypto reaches
 * them too but costs a cipher object, a copy and several JS<->C++ crossings
 * per packet; this is one Node-API call per batch, in place, no copy.
 *
 * Why dlsym: Node links OpenSSL into its binary and exports its symbols to
 * addons; resolving them at run time (RTLD_DEFAULT) needs neither libssl-dev
 * nor OpenSSL's headers at build time, and a Node built against a shared
 * libcrypto resolves the same way. When a symbol is missing, gcmInfo() says
 * which and TypeScript falls back to node:crypto per packet (src/kernel/gcm.ts).
 *
 * Division of work (assembly/esp.ts): the WASM kernel frames the packet
 * (header, RFC 4303 §2.4 trailer, sequence number, replay pre-check and the
 * ESN inference of RFC 4303 Appendix A) and leaves a descriptor in
 * INTERIM_AEAD_PENDING; this file runs only the AEAD of RFC 4106 §3-§5 on it:
 *   nonce = salt (4, from the SA record) ‖ IV (8, the ESP IV field)  §4
 *   AAD   = SPI ‖ seq-low (8) or SPI ‖ seq-high ‖ seq-low (12, ESN)  §5
 *   ICV   = the 16-byte GCM tag after the ciphertext                 §3
 * Sealing leaves STATUS_OK; opening INTERIM_AEAD_OPENED (the WASM kernel then
 * checks the trailer) or STATUS_AUTH, with the ciphertext restored so that
 * nothing unauthenticated is left decrypted in the slot.
 *
 * Every packet restarts its context with its nonce and direction (the key
 * schedule stays), so one context serves an SA whichever way it runs.
 *
 * Keys: one EVP context per SA record, cached per environment (each worker
 * thread has its own), keyed by (memory, record address, cipher, key bytes):
 * a record reused for another SA never meets a stale context. gcmSweep()
 * frees the contexts whose record changed (the SA was removed and wiped);
 * their key copies are wiped with OPENSSL_cleanse and EVP_CIPHER_CTX_free
 * clears the key schedule.
 *
 * Safety: every descriptor field is read once from the shared memory and
 * checked against the memory's size before it is used.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_io.h"

/* Record and descriptor layouts: assembly/layout.ts (the same numbers). */
#define SA_SPI 0
#define SA_SALT 16
#define SA_KEY 24
#define SA_CIPHER 60
#define SA_HEADER 64
#define D_BUF 0
#define D_LEN 4
#define D_SA 8
#define D_STATUS 12
#define D_SEQ 16
#define DESCRIPTOR_SIZE 32
#define ESP_HEADER 16
#define ESP_ICV 16

#define CIPHER_AES128GCM 1
#define CIPHER_AES256GCM 2

#define STATUS_OK 0
#define STATUS_AUTH 1
#define STATUS_MALFORMED 5
#define INTERIM_AEAD_PENDING 13
#define INTERIM_AEAD_OPENED 14

#define OP_SEAL 1
#define OP_OPEN 2

/* OpenSSL's control codes (include/openssl/evp.h; stable since 1.0.1). */
#define EVP_CTRL_GCM_GET_TAG 0x10
#define EVP_CTRL_GCM_SET_TAG 0x11

/* The contexts of one environment. A gateway has a few SAs per worker in use
 * at once; past this many the least recently used is dropped. */
#define CACHE_ENTRIES 64

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_cipher_st EVP_CIPHER;

static struct {
  const EVP_CIPHER *(*aes_128_gcm)(void);
  const EVP_CIPHER *(*aes_256_gcm)(void);
  EVP_CIPHER_CTX *(*ctx_new)(void);
  void (*ctx_free)(EVP_CIPHER_CTX *);
  int (*init)(EVP_CIPHER_CTX *, const EVP_CIPHER *, void *, const unsigned char *, const unsigned char *, int);
  int (*update)(EVP_CIPHER_CTX *, unsigned char *, int *, const unsigned char *, int);
  int (*final)(EVP_CIPHER_CTX *, unsigned char *, int *);
  int (*ctrl)(EVP_CIPHER_CTX *, int, int, void *);
  void (*cleanse)(void *, size_t);
  const char *(*version)(int);
  const char *missing; /* the first symbol not found, or NULL */
} ossl;

static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static void *symbol(const char *name) {
  void *p = dlsym(RTLD_DEFAULT, name);
  if (!p && !ossl.missing) ossl.missing = name;
  return p;
}

static void resolve(void) {
  ossl.aes_128_gcm = (const EVP_CIPHER *(*)(void))symbol("EVP_aes_128_gcm");
  ossl.aes_256_gcm = (const EVP_CIPHER *(*)(void))symbol("EVP_aes_256_gcm");
  ossl.ctx_new = (EVP_CIPHER_CTX * (*)(void)) symbol("EVP_CIPHER_CTX_new");
  ossl.ctx_free = (void (*)(EVP_CIPHER_CTX *))symbol("EVP_CIPHER_CTX_free");
  ossl.init = (int (*)(EVP_CIPHER_CTX *, const EVP_CIPHER *, void *, const unsigned char *, const unsigned char *, int))symbol("EVP_CipherInit_ex");
  ossl.update = (int (*)(EVP_CIPHER_CTX *, unsigned char *, int *, const unsigned char *, int))symbol("EVP_CipherUpdate");
  ossl.final = (int (*)(EVP_CIPHER_CTX *, unsigned char *, int *))symbol("EVP_CipherFinal_ex");
  ossl.ctrl = (int (*)(EVP_CIPHER_CTX *, int, int, void *))symbol("EVP_CIPHER_CTX_ctrl");
  ossl.cleanse = (void (*)(void *, size_t))symbol("OPENSSL_cleanse");
  /* Optional: only for the io-path log line. */
  ossl.version = (const char *(*)(int))dlsym(RTLD_DEFAULT, "OpenSSL_version");
}

typedef struct {
  EVP_CIPHER_CTX *ctx;
  const uint8_t *memory; /* the memory the record is in */
  uint32_t record;
  uint32_t cipher;
  uint64_t used; /* for least-recently-used replacement */
  uint8_t key[32];
} gcm_entry;

struct gcm_cache {
  gcm_entry entries[CACHE_ENTRIES];
  uint64_t clock;
  /* gcmOnce: one context per key size, re-keyed per call, and the
   * plaintext of an open kept here until its tag verified. */
  EVP_CIPHER_CTX *once[2];
  uint8_t *plain;
  size_t plain_size;
};

static void drop(gcm_entry *e) {
  if (e->ctx) ossl.ctx_free(e->ctx);
  ossl.cleanse(e->key, sizeof e->key);
  memset(e, 0, sizeof *e);
}

void gcm_cache_free(gcm_cache *cache) {
  if (!cache) return;
  for (size_t i = 0; i < CACHE_ENTRIES; i++)
    if (cache->entries[i].ctx) drop(&cache->entries[i]);
  for (size_t i = 0; i < 2; i++)
    if (cache->once[i]) ossl.ctx_free(cache->once[i]);
  if (cache->plain) {
    ossl.cleanse(cache->plain, cache->plain_size);
    free(cache->plain);
  }
  free(cache);
}

static size_t key_bytes(uint32_t cipher) { return cipher == CIPHER_AES128GCM ? 16 : 32; }

/* Whether entry e still belongs to the record as it is now in memory. */
static bool matches(const gcm_entry *e, const uint8_t *memory, uint32_t record, uint32_t cipher, const uint8_t *key) {
  return e->ctx && e->memory == memory && e->record == record && e->cipher == cipher &&
         memcmp(e->key, key, key_bytes(cipher)) == 0;
}

/* The context for the SA record at `record`, keyed now; NULL when OpenSSL refused. */
static gcm_entry *context_for(gcm_cache *cache, const uint8_t *memory, uint32_t record, uint32_t cipher, int enc) {
  const uint8_t *key = memory + record + SA_KEY;
  gcm_entry *victim = &cache->entries[0];
  for (size_t i = 0; i < CACHE_ENTRIES; i++) {
    gcm_entry *e = &cache->entries[i];
    if (matches(e, memory, record, cipher, key)) {
      e->used = ++cache->clock;
      return e;
    }
    if (!e->ctx) victim = e;
    else if (victim->ctx && e->used < victim->used) victim = e;
  }
  if (victim->ctx) drop(victim);
  victim->ctx = ossl.ctx_new();
  if (!victim->ctx) return NULL;
  const EVP_CIPHER *c = cipher == CIPHER_AES128GCM ? ossl.aes_128_gcm() : ossl.aes_256_gcm();
  if (ossl.init(victim->ctx, c, NULL, key, NULL, enc) != 1) {
    drop(victim);
    return NULL;
  }
  victim->memory = memory;
  victim->record = record;
  victim->cipher = cipher;
  memcpy(victim->key, key, key_bytes(cipher));
  victim->used = ++cache->clock;
  return victim;
}

static inline uint32_t load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* RFC 4106 §5: SPI ‖ seq-low, or SPI ‖ seq-high ‖ seq-low with ESN (RFC 4303 §2.2.1). */
static int build_aad(uint8_t aad[12], const uint8_t *esp, uint64_t seq, bool esn) {
  memcpy(aad, esp, 4);
  if (!esn) {
    memcpy(aad + 4, esp + 4, 4);
    return 8;
  }
  uint32_t high = (uint32_t)(seq >> 32);
  aad[4] = (uint8_t)(high >> 24);
  aad[5] = (uint8_t)(high >> 16);
  aad[6] = (uint8_t)(high >> 8);
  aad[7] = (uint8_t)high;
  memcpy(aad + 8, esp + 4, 4);
  return 12;
}

/* One pass of GCM: (re)starts with the nonce, feeds AAD, en/decrypts in place. */
static bool gcm_pass(EVP_CIPHER_CTX *ctx, int enc, const uint8_t nonce[12], const uint8_t *aad, int aad_len,
                     uint8_t *data, int len) {
  int out = 0;
  if (ossl.init(ctx, NULL, NULL, NULL, nonce, enc) != 1) return false;
  if (ossl.update(ctx, NULL, &out, aad, aad_len) != 1) return false;
  if (len > 0 && ossl.update(ctx, data, &out, data, len) != 1) return false;
  return true;
}

/* Runs the AEAD of one pending descriptor; returns its new status. */
static uint8_t run_one(gcm_cache *cache, uint8_t *memory, size_t size, uint8_t *d, int op) {
  uint32_t buf = load32(d + D_BUF), len = load32(d + D_LEN), sa = load32(d + D_SA);
  uint64_t seq = load64(d + D_SEQ);
  if ((uint64_t)sa + SA_HEADER > size || (uint64_t)buf + len > size || len < ESP_HEADER + ESP_ICV || len > (1u << 30))
    return STATUS_MALFORMED;
  uint32_t cipher = load32(memory + sa + SA_CIPHER);
  if (cipher != CIPHER_AES128GCM && cipher != CIPHER_AES256GCM) return STATUS_MALFORMED;
  bool esn = (load32(memory + sa + 4) & 1) != 0;
  int enc = op == OP_SEAL ? 1 : 0;
  gcm_entry *e = context_for(cache, memory, sa, cipher, enc);
  if (!e) return STATUS_MALFORMED;

  uint8_t *esp = memory + buf;
  uint8_t nonce[12], aad[12], tag[16];
  memcpy(nonce, memory + sa + SA_SALT, 4); /* RFC 4106 §4 */
  memcpy(nonce + 4, esp + 8, 8);
  int aad_len = build_aad(aad, esp, seq, esn);
  uint8_t *payload = esp + ESP_HEADER;
  int ct_len = (int)(len - ESP_HEADER - ESP_ICV);
  int out = 0;

  if (enc) {
    if (!gcm_pass(e->ctx, 1, nonce, aad, aad_len, payload, ct_len)) return STATUS_MALFORMED;
    if (ossl.final(e->ctx, tag, &out) != 1 || ossl.ctrl(e->ctx, EVP_CTRL_GCM_GET_TAG, 16, payload + ct_len) != 1)
      return STATUS_MALFORMED;
    return STATUS_OK;
  }
  memcpy(tag, payload + ct_len, 16);
  if (!gcm_pass(e->ctx, 0, nonce, aad, aad_len, payload, ct_len)) return STATUS_MALFORMED;
  if (ossl.ctrl(e->ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1) return STATUS_MALFORMED;
  if (ossl.final(e->ctx, tag, &out) == 1) return INTERIM_AEAD_OPENED;
  /* Forged: CTR is its own inverse, so encrypting the plaintext again under
   * the same nonce puts the ciphertext back (the tag is not needed). */
  gcm_pass(e->ctx, 1, nonce, aad, aad_len, payload, ct_len);
  ossl.final(e->ctx, tag, &out);
  ossl.cleanse(tag, sizeof tag);
  return STATUS_AUTH;
}

static gcm_cache *cache_of(napi_env env) {
  io_scratch *s = scratch(env);
  if (!s) return NULL;
  if (!s->gcm) s->gcm = (gcm_cache *)calloc(1, sizeof *s->gcm);
  return s->gcm;
}

/* gcmInfo() -> { ok, reason, version } */
napi_value gcm_info(napi_env env, napi_callback_info info) {
  pthread_once(&resolved, resolve);
  napi_value result;
  napi_create_object(env, &result);
  set_bool(env, result, "ok", ossl.missing == NULL);
  if (ossl.missing) {
    char reason[160];
    snprintf(reason, sizeof reason, "this node exports no %s to addons", ossl.missing);
    set_string(env, result, "reason", reason);
  }
  if (ossl.version) set_string(env, result, "version", ossl.version(0));
  return result;
}

/* gcmBatch(memory: Uint8Array, descriptors, count, op) -> packets run.
 * Runs the AEAD of every descriptor in INTERIM_AEAD_PENDING; others are left alone. */
napi_value gcm_batch(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4] = {NULL, NULL, NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  pthread_once(&resolved, resolve);
  if (ossl.missing) return throw_type(env, "AES-GCM is unavailable: no %s", ossl.missing);
  uint8_t *memory;
  size_t size;
  int64_t at, count, op;
  if (!get_bytes(env, argv[0], "memory", &memory, &size)) return NULL;
  if (!get_int(env, argv[1], "descriptors", 0, (int64_t)size, &at)) return NULL;
  if (!get_int(env, argv[2], "count", 0, 1 << 20, &count)) return NULL;
  if (!get_int(env, argv[3], "op", OP_SEAL, OP_OPEN, &op)) return NULL;
  if ((uint64_t)at + (uint64_t)count * DESCRIPTOR_SIZE > size) return throw_range(env, "descriptors run past the memory");
  gcm_cache *cache = cache_of(env);
  if (!cache) return throw_range(env, "out of memory");
  int64_t ran = 0;
  for (int64_t i = 0; i < count; i++) {
    uint8_t *d = memory + at + i * DESCRIPTOR_SIZE;
    if (d[D_STATUS] != INTERIM_AEAD_PENDING) continue;
    d[D_STATUS] = run_one(cache, memory, size, d, (int)op);
    ran++;
  }
  napi_value result;
  napi_create_int64(env, ran, &result);
  return result;
}

/* gcmCached() -> how many SA contexts this environment holds (tests: keys leave with their SAs). */
napi_value gcm_cached(napi_env env, napi_callback_info info) {
  int64_t n = 0;
  io_scratch *s = scratch(env);
  if (s && s->gcm)
    for (size_t i = 0; i < CACHE_ENTRIES; i++)
      if (s->gcm->entries[i].ctx) n++;
  napi_value result;
  napi_create_int64(env, n, &result);
  return result;
}

/* gcmSweep(memory: Uint8Array) -> contexts freed: those whose SA record no
 * longer holds their key (removed and wiped, or reused). */
napi_value gcm_sweep(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  pthread_once(&resolved, resolve);
  uint8_t *memory;
  size_t size;
  if (!get_bytes(env, argv[0], "memory", &memory, &size)) return NULL;
  int64_t freed = 0;
  io_scratch *s = scratch(env);
  if (s && s->gcm && !ossl.missing) {
    for (size_t i = 0; i < CACHE_ENTRIES; i++) {
      gcm_entry *e = &s->gcm->entries[i];
      if (!e->ctx || e->memory != memory) continue;
      bool live = (uint64_t)e->record + SA_HEADER <= size &&
                  matches(e, memory, e->record, load32(memory + e->record + SA_CIPHER), memory + e->record + SA_KEY);
      if (!live) {
        drop(e);
        freed++;
      }
    }
  }
  napi_value result;
  napi_create_int64(env, freed, &result);
  return result;
}

/* gcmOnce(encrypt, key, nonce, aad, input, output) -> bool: one AES-GCM
 * message (sluice/crypto). Sealing writes ciphertext ‖ tag (input + 16
 * bytes) to output; opening verifies input = ciphertext ‖ tag and only then
 * writes the plaintext to output, returning false (output untouched) when
 * the tag does not verify. Lengths are checked by the caller and again here. */
napi_value gcm_once(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  pthread_once(&resolved, resolve);
  if (ossl.missing) return throw_type(env, "AES-GCM is unavailable: no %s", ossl.missing);
  bool enc;
  uint8_t *key, *nonce, *aad, *in, *out;
  size_t key_len, nonce_len, aad_len, in_len, out_len;
  if (napi_get_value_bool(env, argv[0], &enc) != napi_ok) return throw_type(env, "%s must be a boolean", "encrypt");
  if (!get_bytes(env, argv[1], "key", &key, &key_len) || !get_bytes(env, argv[2], "nonce", &nonce, &nonce_len) ||
      !get_bytes(env, argv[3], "aad", &aad, &aad_len) || !get_bytes(env, argv[4], "input", &in, &in_len) ||
      !get_bytes(env, argv[5], "output", &out, &out_len))
    return NULL;
  if (key_len != 16 && key_len != 32) return throw_range(env, "key must be 16 or 32 bytes");
  if (nonce_len != 12) return throw_range(env, "nonce must be 12 bytes");
  if (aad_len > INT32_MAX || in_len > INT32_MAX - 16) return throw_range(env, "input too long");
  if (enc ? out_len < in_len + 16 : (in_len < 16 || out_len < in_len - 16)) return throw_range(env, "output too short");
  gcm_cache *cache = cache_of(env);
  if (!cache) return throw_range(env, "out of memory");
  int slot = key_len == 16 ? 0 : 1;
  if (!cache->once[slot] && !(cache->once[slot] = ossl.ctx_new())) return throw_range(env, "out of memory");
  EVP_CIPHER_CTX *ctx = cache->once[slot];
  const EVP_CIPHER *c = key_len == 16 ? ossl.aes_128_gcm() : ossl.aes_256_gcm();
  int n = 0;
  bool ok = false;
  napi_value result;
  if (enc) {
    int len = (int)in_len;
    ok = ossl.init(ctx, c, NULL, key, nonce, 1) == 1 && ossl.update(ctx, NULL, &n, aad, (int)aad_len) == 1 &&
         (len == 0 || ossl.update(ctx, out, &n, in, len) == 1) && ossl.final(ctx, out + len, &n) == 1 &&
         ossl.ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + len) == 1;
    if (!ok) return throw_range(env, "AES-GCM sealing failed");
  } else {
    int len = (int)(in_len - 16);
    if (cache->plain_size < (size_t)len) {
      if (cache->plain) {
        ossl.cleanse(cache->plain, cache->plain_size);
        free(cache->plain);
      }
      cache->plain_size = 0;
      cache->plain = (uint8_t *)malloc((size_t)len);
      if (!cache->plain) return throw_range(env, "out of memory");
      cache->plain_size = (size_t)len;
    }
    uint8_t tag[16];
    memcpy(tag, in + len, 16);
    ok = ossl.init(ctx, c, NULL, key, nonce, 0) == 1 && ossl.update(ctx, NULL, &n, aad, (int)aad_len) == 1 &&
         (len == 0 || ossl.update(ctx, cache->plain, &n, in, len) == 1) &&
         ossl.ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 && ossl.final(ctx, tag, &n) == 1;
    if (ok && len > 0) memcpy(out, cache->plain, (size_t)len);
    if (len > 0) ossl.cleanse(cache->plain, (size_t)len);
  }
  napi_get_boolean(env, ok, &result);
  return result;
}
