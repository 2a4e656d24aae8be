/*
 * Node-API plumbing shared by the addon's functions: reading and checking
 * arguments, building results, and errors shaped like Node's own.
 *
 * Safety rule: every offset and length that comes from JavaScript is read
 * exactly once (the arrays may be shared with other threads), checked against
 * the size of the buffer, and only then used. A bad one throws before any
 * system call is made; nothing is ever written outside the buffer.
 *
 * Errors: a system error is an Error whose `code` is the errno's name
 * ("EADDRINUSE"), `errno` is -errno and `syscall` names the call, as Node's
 * are; a bad argument is a TypeError (ERR_INVALID_ARG_TYPE) or a RangeError
 * (ERR_OUT_OF_RANGE) naming it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "sluice_io.h"

/* ---------------------------------------------------------------- errors */

static const char *errno_name(int err) {
  const char *name = uv_err_name(-err);
  return name ? name : "EUNKNOWN";
}

void set_string(napi_env env, napi_value obj, const char *key, const char *value) {
  napi_value v;
  if (napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}

void set_int(napi_env env, napi_value obj, const char *key, int64_t value) {
  napi_value v;
  if (napi_create_int64(env, value, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}

void set_bool(napi_env env, napi_value obj, const char *key, bool value) {
  napi_value v;
  if (napi_get_boolean(env, value, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}

napi_value make_errno_error(napi_env env, const char *syscall, int err, const char *what) {
  char msg[512];
  if (what && *what)
    snprintf(msg, sizeof msg, "%s: %s failed: %s (%s)", what, syscall, errno_name(err), strerror(err));
  else
    snprintf(msg, sizeof msg, "%s failed: %s (%s)", syscall, errno_name(err), strerror(err));
  napi_value code, text, error;
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  set_int(env, error, "errno", -err);
  set_string(env, error, "syscall", syscall);
  return error;
}

/* Throws an Error whose message names the call and the errno (code = "EAGAIN" style). */
napi_value throw_errno(napi_env env, const char *syscall, int err, const char *what) {
  napi_throw(env, make_errno_error(env, syscall, err, what));
  return NULL;
}

/* Throws an Error with a fixed one-line message, still carrying errno and code. */
napi_value throw_errno_message(napi_env env, const char *syscall, int err, const char *message) {
  napi_value code, text, error;
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  set_int(env, error, "errno", -err);
  set_string(env, error, "syscall", syscall);
  napi_throw(env, error);
  return NULL;
}

napi_value throw_type(napi_env env, const char *fmt, const char *a) {
  char msg[256];
  snprintf(msg, sizeof msg, fmt, a);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

void add_method(napi_env env, napi_value obj, const char *name, napi_callback cb, void *data) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, data, &fn);
  napi_set_named_property(env, obj, name, fn);
}

/* ------------------------------------------------------------- arguments */

bool is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (v == NULL) return true;
  if (napi_typeof(env, v, &t) != napi_ok) return true;
  return t == napi_undefined || t == napi_null;
}

/* An integer number in [min, max]; throws and returns false otherwise. */
bool get_int(napi_env env, napi_value v, const char *name, int64_t min, int64_t max, int64_t *out) {
  napi_valuetype t;
  double d;
  char msg[200];
  if (v == NULL || napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    throw_type(env, "%s must be a number", name);
    return false;
  }
  napi_get_value_double(env, v, &d);
  if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max) {
    snprintf(msg, sizeof msg, "%s must be an integer in [%lld, %lld]", name, (long long)min, (long long)max);
    throw_range(env, msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

bool get_fd(napi_env env, napi_value v, int *fd) {
  int64_t x;
  if (!get_int(env, v, "fd", 0, INT32_MAX, &x)) return false;
  *fd = (int)x;
  return true;
}

static size_t element_size(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: return 8;
    default: return 1;
  }
}

/*
 * The packet buffer: an ArrayBuffer, or any TypedArray/DataView (which is how a
 * SharedArrayBuffer gets here: Node 20's napi_get_arraybuffer_info rejects a
 * SharedArrayBuffer, napi_get_typedarray_info over one works). Offsets are
 * relative to the start of the view.
 */
bool get_bytes(napi_env env, napi_value v, const char *name, uint8_t **data, size_t *size) {
  bool is;
  void *p = NULL;
  size_t n = 0;
  if (v != NULL && napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t length;
    if (napi_get_typedarray_info(env, v, &type, &length, &p, NULL, NULL) != napi_ok) goto bad;
    n = length * element_size(type);
  } else if (v != NULL && napi_is_dataview(env, v, &is) == napi_ok && is) {
    if (napi_get_dataview_info(env, v, &n, &p, NULL, NULL) != napi_ok) goto bad;
  } else if (v != NULL && napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
    if (napi_get_arraybuffer_info(env, v, &p, &n) != napi_ok) goto bad;
  } else {
    goto bad;
  }
  if (p == NULL) n = 0; /* a detached or empty buffer */
  *data = (uint8_t *)p;
  *size = n;
  return true;
bad:
  throw_type(env, "%s must be an ArrayBuffer or a TypedArray/DataView (wrap a SharedArrayBuffer in a Uint8Array)", name);
  return false;
}

/* A TypedArray of the given type with at least `need` elements. */
bool get_typed(napi_env env, napi_value v, const char *name, napi_typedarray_type want, size_t need,
                      void **data, size_t *length) {
  bool is = false;
  napi_typedarray_type type;
  char msg[200];
  if (v == NULL || napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, length, data, NULL, NULL) != napi_ok || type != want) {
    const char *kind = want == napi_int32_array ? "an Int32Array" : "a Uint8Array";
    snprintf(msg, sizeof msg, "%s must be %s", name, kind);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (*length < need) {
    snprintf(msg, sizeof msg, "%s holds %zu elements, the batch needs %zu", name, *length, need);
    throw_range(env, msg);
    return false;
  }
  return true;
}

bool get_property(napi_env env, napi_value obj, const char *key, napi_value *out) {
  bool has = false;
  *out = NULL;
  if (is_nullish(env, obj)) return false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return false;
  if (napi_get_named_property(env, obj, key, out) != napi_ok) return false;
  if (is_nullish(env, *out)) {
    *out = NULL;
    return false;
  }
  return true;
}

bool get_bool_option(napi_env env, napi_value obj, const char *key, bool fallback) {
  napi_value v;
  bool b = fallback;
  if (get_property(env, obj, key, &v)) napi_coerce_to_bool(env, v, &v), napi_get_value_bool(env, v, &b);
  return b;
}

io_scratch *scratch(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return (io_scratch *)data;
}

/* Checks [offset, offset + length) lies in a buffer of `size` bytes. */
bool check_range(napi_env env, const char *what, size_t index, int64_t offset, int64_t length, size_t size) {
  if (offset >= 0 && length >= 0 && (uint64_t)offset + (uint64_t)length <= (uint64_t)size) return true;
  char msg[256];
  snprintf(msg, sizeof msg, "packet %zu: %s [%lld, %lld) is outside the buffer of %zu bytes", index, what,
           (long long)offset, (long long)offset + (long long)length, size);
  throw_range(env, msg);
  return false;
}

/*
 * Points iov[0..n) at buffer[offsets[i], +lengths[i]) (a send or write), each
 * offset and length read once and checked first; false with a RangeError
 * thrown when one is outside the buffer.
 */
bool gather_ranges(napi_env env, uint8_t *buf, size_t size, const int32_t *offsets, const int32_t *lengths,
                          size_t n, struct iovec *iov) {
  for (size_t i = 0; i < n; i++) {
    int32_t off = ((const volatile int32_t *)offsets)[i];
    int32_t len = ((const volatile int32_t *)lengths)[i];
    if (!check_range(env, "send range", i, off, len, size)) return false;
    iov[i].iov_base = buf + off;
    iov[i].iov_len = (size_t)len;
  }
  return true;
}

/* Points iov[0..n) at buffer[offsets[i], +capacity) (a receive or read), checked the same way. */
bool place_ranges(napi_env env, uint8_t *buf, size_t size, const int32_t *offsets, size_t capacity, size_t n,
                         struct iovec *iov) {
  for (size_t i = 0; i < n; i++) {
    int32_t off = ((const volatile int32_t *)offsets)[i];
    if (!check_range(env, "receive range", i, off, (int64_t)capacity, size)) return false;
    iov[i].iov_base = buf + off;
    iov[i].iov_len = capacity;
  }
  return true;
}
