/* The C side of package rdp: a FreeRDP 2 client instance with the callbacks
 * the Go side needs. Every function here runs on the session's own thread
 * unless its comment says otherwise. No Go pointer is ever stored: C knows a
 * session only by its cgo.Handle, an integer. */
#ifndef KEYWAY_RDP_H
#define KEYWAY_RDP_H

#include <stdint.h>
#include <freerdp/freerdp.h>

/* kwConfig carries the settings of one connection; its strings are owned by
 * the caller and copied by FreeRDP. */
typedef struct {
	/* host is the path of a Unix socket that Go forwards to the server
	 * (FreeRDP's "/path" form of the host name); port is the server's. */
	const char* host;
	int port;
	const char* username;
	const char* password;
	const char* domain;
	const char* configDir; /* FreeRDP's ConfigPath: a private temp dir */
	int security;          /* kwSecAny, ... */
	int width, height, depth;
	int clipboard;
	uint32_t keyboardLayout;
} kwConfig;

enum { kwSecAny = 0, kwSecNLA = 1, kwSecTLS = 2, kwSecRDP = 3 };

/* kw_new makes an instance and its context for the session handle; NULL on
 * failure. */
freerdp* kw_new(uintptr_t handle);
int kw_configure(freerdp* inst, const kwConfig* cfg);
/* kw_connect runs FreeRDP's whole connection sequence (blocking). */
int kw_connect(freerdp* inst);
/* kw_wait waits up to timeoutMs for network input or a wake-up and
 * processes it: 1 to go on, 0 when the connection ended. */
int kw_wait(freerdp* inst, uint32_t timeoutMs);
/* kw_wake makes kw_wait return; any thread may call it while the instance
 * lives. kw_abort likewise cancels a connection under way. */
void kw_wake(freerdp* inst);
void kw_clear_wake(freerdp* inst);
void kw_abort(freerdp* inst);
uint32_t kw_last_error(freerdp* inst);
uint32_t kw_selected_protocol(freerdp* inst);
/* kw_free disconnects if needed and frees every object of the instance. */
void kw_free(freerdp* inst);

int kw_key(freerdp* inst, uint16_t flags, uint16_t code);
int kw_unicode(freerdp* inst, uint16_t flags, uint16_t code);
int kw_mouse(freerdp* inst, uint16_t flags, uint16_t x, uint16_t y);
int kw_has_hwheel(freerdp* inst);
/* kw_clip_set stores UTF-16LE text (NUL-terminated, len bytes) as the local
 * clipboard and announces it to the server, or, until the server has sent
 * Monitor Ready on its clipboard channel, keeps it to announce then. */
int kw_clip_set(freerdp* inst, const void* utf16, size_t len);
enum { kwClipFailed = 0, kwClipSent = 1, kwClipPending = 2 };
/* kw_disp_layout asks the server for a new desktop size over the display
 * control channel; 0 when the channel is not open. */
int kw_disp_layout(freerdp* inst, uint32_t width, uint32_t height);

/* kw_thread_handle tags the calling thread with a session handle, so that
 * FreeRDP's log messages on it reach that session. */
void kw_thread_handle(uintptr_t handle);
/* kw_log_setup routes FreeRDP's process-wide log (WLog) to Go. */
void kw_log_setup(void);

#endif
