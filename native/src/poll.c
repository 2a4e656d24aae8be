/*
 * Readiness from libuv: poll(fd, events, callback) watches a descriptor with
 * a uv_poll_t on Node's own loop (level-triggered), so nothing spins and
 * nothing waits on a thread of its own.
 *
 * Threads: a handle still open when its environment (a worker) ends is
 * closed by an async cleanup hook that holds the environment's teardown
 * until libuv has called back; otherwise the close callback would run after
 * the addon was unloaded.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sluice_io.h"

typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback;
  napi_ref resource;
  napi_async_context context;
  /* Holds the environment's teardown (and so the unloading of this addon)
   * until the uv_close below has called back: libuv calls on_poll_closed
   * from the loop after the environment's cleanup hooks have run. */
  napi_async_cleanup_hook_handle teardown;
  int fd;
  int events;
  bool closed;   /* stop() called or the environment went away */
  bool env_gone; /* the environment is being torn down: no JS from here on */
} io_poll;

static const char *events_name(int events) {
  bool r = events & UV_READABLE, w = events & UV_WRITABLE;
  return r && w ? "rw" : r ? "r" : w ? "w" : "";
}

static bool parse_events(napi_env env, napi_value v, int *events) {
  char s[4];
  size_t len = 0;
  napi_valuetype t;
  if (v != NULL && napi_typeof(env, v, &t) == napi_ok && t == napi_string &&
      napi_get_value_string_utf8(env, v, s, sizeof s, &len) == napi_ok) {
    if (strcmp(s, "r") == 0) return *events = UV_READABLE, true;
    if (strcmp(s, "w") == 0) return *events = UV_WRITABLE, true;
    if (strcmp(s, "rw") == 0 || strcmp(s, "wr") == 0) return *events = UV_READABLE | UV_WRITABLE, true;
  }
  napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "events must be 'r', 'w' or 'rw'");
  return false;
}

static void on_poll_closed(uv_handle_t *handle) {
  io_poll *p = (io_poll *)handle->data;
  if (!p->env_gone) {
    if (p->callback) napi_delete_reference(p->env, p->callback);
    if (p->resource) napi_delete_reference(p->env, p->resource);
  }
  /* Last: once removed, the environment may finish tearing down and unload us. */
  if (p->teardown) napi_remove_async_cleanup_hook(p->teardown);
  free(p);
}

/* The environment (a worker, or the main thread at exit) is going away with the handle open. */
static void poll_teardown_hook(napi_async_cleanup_hook_handle handle, void *arg) {
  io_poll *p = (io_poll *)arg;
  p->env_gone = true;
  if (!p->closed) { /* else stop() already closed it, and on_poll_closed is on its way */
    p->closed = true;
    uv_poll_stop(&p->handle);
    uv_close((uv_handle_t *)&p->handle, on_poll_closed);
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  io_poll *p = (io_poll *)handle->data;
  if (p->closed) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, resource, argv[2];
  napi_get_reference_value(env, p->callback, &callback);
  napi_get_reference_value(env, p->resource, &resource);
  napi_create_string_utf8(env, events_name(status < 0 || !(events & (UV_READABLE | UV_WRITABLE)) ? p->events : events), NAPI_AUTO_LENGTH, &argv[0]);
  if (status < 0) argv[1] = make_errno_error(env, "uv_poll", -status, "poll");
  else napi_get_undefined(env, &argv[1]);
  if (callback && resource) {
    napi_status st = napi_make_callback(env, p->context, resource, callback, 2, argv, NULL);
    if (st == napi_pending_exception) {
      napi_value error;
      napi_get_and_clear_last_exception(env, &error);
      napi_fatal_exception(env, error);
    }
  }
  napi_close_handle_scope(env, scope);
}

static io_poll *poll_of(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  void *data = NULL;
  napi_get_cb_info(env, info, argc, argv, NULL, &data);
  return (io_poll *)data;
}

static napi_value poll_stop(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  io_poll *p = poll_of(env, info, &argc, NULL);
  if (p && !p->closed) {
    p->closed = true;
    napi_async_destroy(env, p->context);
    uv_poll_stop(&p->handle);
    uv_close((uv_handle_t *)&p->handle, on_poll_closed);
  }
  return NULL;
}

static napi_value poll_update(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  io_poll *p = poll_of(env, info, &argc, argv);
  int events;
  if (!parse_events(env, argv[0], &events)) return NULL;
  if (p->closed) return throw_errno(env, "uv_poll_start", EBADF, "poll handle is stopped");
  int r = uv_poll_start(&p->handle, events, on_poll);
  if (r < 0) return throw_errno(env, "uv_poll_start", -r, "poll update");
  p->events = events;
  return NULL;
}

static napi_value poll_ref(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  io_poll *p = poll_of(env, info, &argc, NULL);
  if (!p->closed) uv_ref((uv_handle_t *)&p->handle);
  return NULL;
}

static napi_value poll_unref(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  io_poll *p = poll_of(env, info, &argc, NULL);
  if (!p->closed) uv_unref((uv_handle_t *)&p->handle);
  return NULL;
}

/* poll(fd, events, callback) -> { fd, stop(), update(events), ref(), unref() } */
napi_value io_poll_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {NULL, NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, events;
  napi_valuetype t;
  if (!get_fd(env, argv[0], &fd) || !parse_events(env, argv[1], &events)) return NULL;
  if (argv[2] == NULL || napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function)
    return throw_type(env, "%s must be a function", "callback");
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL)
    return throw_errno(env, "napi_get_uv_event_loop", EINVAL, "poll");
  io_poll *p = (io_poll *)calloc(1, sizeof *p);
  if (!p) return throw_errno(env, "calloc", ENOMEM, "poll");
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r < 0) {
    free(p);
    return throw_errno(env, "uv_poll_init", -r, r == UV_EEXIST ? "poll (this fd is already polled: use update())" : "poll");
  }
  p->handle.data = p;
  p->env = env;
  p->fd = fd;
  p->events = events;
  r = uv_poll_start(&p->handle, events, on_poll);
  if (r < 0) {
    p->closed = p->env_gone = true; /* nothing to release but the memory */
    uv_close((uv_handle_t *)&p->handle, on_poll_closed);
    return throw_errno(env, "uv_poll_start", -r, "poll");
  }
  napi_value handle, name;
  napi_create_object(env, &handle);
  set_int(env, handle, "fd", fd);
  add_method(env, handle, "stop", poll_stop, p);
  add_method(env, handle, "update", poll_update, p);
  add_method(env, handle, "ref", poll_ref, p);
  add_method(env, handle, "unref", poll_unref, p);
  napi_create_reference(env, argv[2], 1, &p->callback);
  napi_create_reference(env, handle, 1, &p->resource);
  napi_create_string_utf8(env, "sluice_io.poll", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, handle, name, &p->context);
  if (napi_add_async_cleanup_hook(env, poll_teardown_hook, p, &p->teardown) != napi_ok) p->teardown = NULL;
  return handle;
}
